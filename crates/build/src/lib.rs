//! `strata build`: builds a Dockerfile into the local store, the way BuildKit's Dockerfile
//! frontend does.
//!
//! - Parsing and planning are [`strata_dockerfile`]'s: ARG/ENV substitution, stage bases, the
//!   stages the target needs and what each depends on.
//! - Every needed stage runs on its own thread as soon as the stages it depends on are built,
//!   so independent stages run in parallel ([`Engine::run`]).
//! - Each step has a content-addressed cache key ([`cache`]); a step whose key is in the store's
//!   build cache reuses the recorded layer without running. Layers made or reused stay in the
//!   store as snapshots (`snapshots/<chainID>/fs`), so later steps and builds stack them as
//!   overlay lower directories instead of unpacking anything.
//! - Metadata instructions update the image config and history exactly as BuildKit writes them
//!   ([`config`]).
//! - `RUN` executes in a sandbox ([`run`], [`sandbox`]): the stage's snapshots as overlay lower
//!   dirs, a fresh upper dir that becomes the new layer, private mount/PID/IPC/UTS namespaces
//!   made by util-linux `unshare` around a re-executed strata (`__sandbox-run`). `RUN --mount`
//!   (bind, cache, tmpfs, secret, ssh) is prepared by [`mounts`] and mounted by the sandbox
//!   (docs/build.md).
//! - `COPY`/`ADD` stage the files under their destination in a directory that becomes the
//!   layer ([`copy`]); `COPY --from` reads a read-only overlay of the source stage; ADD
//!   downloads URLs and extracts local archives ([`add`]). Inherited ONBUILD triggers run
//!   first in a stage ([`onbuild`]).
//!
//! Not supported yet (each fails with an error naming the instruction and line):
//! `RUN --security=insecure`, a required `RUN --mount=type=ssh`, `FROM --platform` other than
//! the host.

mod add;
pub mod cache;
mod config;
mod copy;
mod git;
mod mode;
pub mod mounts;
mod onbuild;
pub mod pattern;
pub mod progress;
mod run;
pub mod sandbox;
pub mod source;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use strata_dockerfile::{
    Base, BuildPlan, Instruction, PlanOptions, PlannedStage, PlannedStep, Platform as DfPlatform,
};
use strata_image::document::StoredImage;
use strata_image::{ImageError, NewLayer, commit_image, layer_io};
use strata_layer::CreateOptions;
use strata_oci::{Algorithm, Digest, Platform, Reference, media_types};
use strata_store::{BlobRef, BuildCacheRecord, CachedLayer, Store, StoreError};

pub use progress::{Event, NoProgress, PlainProgress, Progress};
pub use sandbox::{SandboxSpec, run_in_namespace};
pub use source::{ImageSource, PullPolicy};

use crate::state::{LayerInfo, StageState};

/// The `PATH` BuildKit gives a RUN (and a `FROM scratch` image) when none is set.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] strata_dockerfile::ParseError),
    #[error(transparent)]
    Plan(#[from] strata_dockerfile::PlanError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] strata_layer::LayerError),
    /// A step failed; names the instruction and its line.
    #[error("Dockerfile:{line}: {instruction}: {message}")]
    Step {
        line: usize,
        instruction: String,
        message: String,
    },
    /// Another stage failed first, so this one stopped.
    #[error("canceled: another stage failed")]
    Canceled,
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> BuildError {
    BuildError::Other(format!("{what}: {e}"))
}

/// Inputs of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's path.
    pub dockerfile: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<Reference>,
    /// `--label`: added to the image config without a history entry.
    pub labels: Vec<(String, String)>,
    /// Sets the image's and history's creation time and clamps file times.
    pub source_date_epoch: Option<i64>,
    /// The strata executable, re-executed as the RUN sandbox (`__sandbox-run`).
    pub sandbox_exe: PathBuf,
    /// `--no-cache`: run every step (new results still enter the cache).
    pub no_cache: bool,
    /// `--secret id=..,src=..|env=..`: secret id -> where its content comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--build-context name=path`: named local contexts for `COPY --from=name` and
    /// `RUN --mount=from=name`.
    pub build_contexts: BTreeMap<String, PathBuf>,
    /// `--build-context NAME=docker-image://REF`: `FROM NAME` / `COPY --from=NAME` use image REF.
    pub image_contexts: BTreeMap<String, String>,
    /// `--pull`: whether base images are fetched again even when the store has them.
    pub pull: PullPolicy,
    /// Where images the store lacks come from; `None`: the store only.
    pub image_source: Option<Arc<dyn ImageSource>>,
}

impl BuildOptions {
    /// Options for building `context/Dockerfile` with everything else at its default.
    pub fn new(context: &Path, sandbox_exe: &Path) -> BuildOptions {
        BuildOptions {
            context: context.to_path_buf(),
            dockerfile: context.join("Dockerfile"),
            build_args: BTreeMap::new(),
            target: None,
            tags: Vec::new(),
            labels: Vec::new(),
            source_date_epoch: None,
            sandbox_exe: sandbox_exe.to_path_buf(),
            no_cache: false,
            secrets: BTreeMap::new(),
            build_contexts: BTreeMap::new(),
            image_contexts: BTreeMap::new(),
            pull: PullPolicy::Missing,
            image_source: None,
        }
    }
}

/// Where a `--secret` comes from. Only the source is kept; the content is read when a RUN
/// mounts it, and goes nowhere but into that RUN's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE`
    File(PathBuf),
    /// `env=VARIABLE` (of the `strata build` process)
    Env(String),
}

/// What [`build`] produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image ID (config digest).
    pub image_id: Digest,
    pub manifest: Digest,
}

/// Builds `options.dockerfile` into `store`, reporting to `progress`.
pub fn build(
    store: &Store,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildOutput> {
    let text = std::fs::read_to_string(&options.dockerfile)
        .map_err(|e| io_err(format!("reading {}", options.dockerfile.display()), e))?;
    let df = strata_dockerfile::parse(&text)?;
    let host = Platform::host();
    let df_platform = DfPlatform {
        os: host.os.clone(),
        arch: host.architecture.clone(),
        variant: host.variant.clone(),
    };
    let mut plan_options = PlanOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        build_platform: df_platform.clone(),
        target_platform: df_platform,
        image_env: BTreeMap::new(),
    };
    let first = strata_dockerfile::plan(&df, &plan_options)?;
    // Base images come from the store, pulled first when missing (or always with `--pull`);
    // their ENV feeds the planner's substitution.
    let mut catalog = store.catalog()?;
    let mut resolve_vertices = 0;
    let mut images: HashMap<String, StoredImage> = HashMap::new();
    for stage in &first.stages {
        let mut refs: Vec<(&String, bool)> = stage
            .image_refs
            .iter()
            .filter(|r| !options.build_contexts.contains_key(r.as_str()))
            .map(|r| (r, false))
            .collect();
        if let Base::Image(r) = &stage.base {
            refs.push((r, true));
        }
        for (reference, is_base) in refs {
            if images.contains_key(reference) {
                continue;
            }
            let line = if is_base {
                df.stages[stage.index].from.span.line
            } else {
                stage
                    .steps
                    .iter()
                    .find(|s| match &s.instruction {
                        Instruction::Copy(c) => c.from.as_deref() == Some(reference.as_str()),
                        _ => false,
                    })
                    .or(stage.steps.first())
                    .map_or(0, |s| s.span.line)
            };
            let instruction = if is_base { "FROM" } else { "COPY --from" };
            // A named image context stands in for the name as written.
            let source_ref = options.image_contexts.get(reference).unwrap_or(reference);
            let local = StoredImage::resolve(store, &catalog, source_ref);
            let image = match (&options.image_source, options.pull, local) {
                (Some(source), PullPolicy::Always, _) | (Some(source), _, Err(_)) => {
                    resolve_vertices += 1;
                    source::pull_image(store, &**source, source_ref, resolve_vertices, progress)
                        .map_err(|message| BuildError::Step {
                            line,
                            instruction: instruction.into(),
                            message,
                        })?;
                    catalog = store.catalog()?;
                    StoredImage::resolve(store, &catalog, source_ref)
                }
                (_, _, local) => local,
            };
            let image = image.map_err(|e| BuildError::Step {
                line,
                instruction: instruction.into(),
                message: format!(
                    "{source_ref}: image not found locally{} ({e})",
                    if options.image_source.is_none() {
                        "; pull it with `strata pull`"
                    } else {
                        ""
                    }
                ),
            })?;
            if is_base {
                let mut env = image
                    .config
                    .value
                    .get("config")
                    .and_then(|c| c.as_object())
                    .map(config::env_pairs)
                    .unwrap_or_default();
                // As the stage's config gets it (start_stage), so `$PATH` expands to it.
                if !env.iter().any(|(k, _)| k == "PATH") {
                    env.push(("PATH".into(), DEFAULT_PATH.into()));
                }
                plan_options.image_env.insert(reference.clone(), env);
            }
            images.insert(reference.clone(), image);
        }
    }
    let plan = strata_dockerfile::plan(&df, &plan_options)?;

    if !plan.unused_build_args.is_empty() {
        let message = format!(
            "One or more build-args {:?} were not consumed",
            plan.unused_build_args
        );
        progress.event(&Event::Warning { message: &message });
    }
    let build_root = store.root().join("build");
    std::fs::create_dir_all(&build_root).map_err(|e| io_err(build_root.display(), e))?;
    remove_stale_build_dirs(&build_root);
    let dir = build_root.join(format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir(&dir).map_err(|e| io_err(dir.display(), e))?;
    let cleanup = BuildDir {
        path: dir.clone(),
        mounts: Mutex::new(Vec::new()),
    };
    let lock = store.lock_content_shared()?;
    let context = options
        .context
        .canonicalize()
        .map_err(|e| io_err(options.context.display(), e))?;
    let checksums =
        cache::ChecksumCache::load(&store.root().join("build-cache/checksums"), &context);
    let engine = Engine {
        store,
        options,
        df: &df,
        plan: &plan,
        images,
        dir: &cleanup,
        progress,
        sequence: AtomicUsize::new(0),
        vertices: AtomicUsize::new(resolve_vertices),
        added: Mutex::new(Vec::new()),
        created: created_time(options.source_date_epoch)?,
        results: Mutex::new(HashMap::new()),
        finished: Condvar::new(),
        failed: AtomicBool::new(false),
        stage_fs: Mutex::new(HashMap::new()),
        checksums,
        context_ignore: context_ignore(&options.context, &options.dockerfile)?,
        no_ignore: pattern::IgnoreRules::default(),
        catalog,
        new_cache: Mutex::new(Vec::new()),
    };
    let result = engine.run();
    let _ = engine.checksums.save();
    let added = std::mem::take(&mut *engine.added.lock().unwrap_or_else(|e| e.into_inner()));
    drop(engine);
    drop(cleanup);
    drop(lock);
    // On failure, what was added for the image itself goes (its layers stay in the cache).
    if !added.is_empty() {
        let _ = strata_image::gc::remove_unreferenced(store, &added);
    }
    result
}

fn created_time(epoch: Option<i64>) -> Result<DateTime<Utc>> {
    match epoch {
        Some(e) => DateTime::<Utc>::from_timestamp(e, 0)
            .ok_or_else(|| BuildError::Other(format!("SOURCE_DATE_EPOCH {e} is out of range"))),
        None => Ok(Utc::now()),
    }
}

/// The build's scratch directory; its overlay mounts are detached and the directory removed
/// when the build ends.
struct BuildDir {
    path: PathBuf,
    mounts: Mutex<Vec<PathBuf>>,
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        let mounts = std::mem::take(&mut *self.mounts.lock().unwrap_or_else(|e| e.into_inner()));
        for mount in mounts.iter().rev() {
            let _ = rustix::mount::unmount(mount, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One build in progress; shared by the threads of its stages.
pub(crate) struct Engine<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    df: &'a strata_dockerfile::Dockerfile,
    plan: &'a BuildPlan,
    images: HashMap<String, StoredImage>,
    dir: &'a BuildDir,
    progress: &'a dyn Progress,
    sequence: AtomicUsize,
    vertices: AtomicUsize,
    /// Blobs this build created (removed again when the build fails and nothing needs them).
    added: Mutex<Vec<Digest>>,
    created: DateTime<Utc>,
    /// Built stages by index.
    results: Mutex<HashMap<usize, Arc<StageState>>>,
    finished: Condvar,
    failed: AtomicBool,
    /// Read-only root filesystems of stages and images used by `COPY --from`, by name.
    stage_fs: Mutex<HashMap<String, PathBuf>>,
    checksums: cache::ChecksumCache,
    context_ignore: pattern::IgnoreRules,
    no_ignore: pattern::IgnoreRules,
    /// The catalog as the build found it (build cache lookups, layer sizes).
    catalog: strata_store::Catalog,
    /// Cache records of steps that ran, written once at the end.
    new_cache: Mutex<Vec<(Digest, BuildCacheRecord)>>,
}

fn step_error(step: &PlannedStep, message: impl Into<String>) -> BuildError {
    BuildError::Step {
        line: step.span.line,
        instruction: step.instruction.name().to_string(),
        message: message.into(),
    }
}

/// What a layer step produced when it ran.
struct StepOutcome {
    /// The directory holding the layer's content (in snapshot form), if the step added one.
    layer_dir: Option<(PathBuf, bool)>,
    created_by: String,
    /// Whether `layer_dir` may become the layer's snapshot (otherwise one is unpacked from
    /// the layer when a later step needs it).
    keep_dir: bool,
}

impl Engine<'_> {
    fn next_dir(&self, kind: &str) -> Result<PathBuf> {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.dir.path.join(format!("{kind}-{n}"));
        std::fs::create_dir_all(&path).map_err(|e| io_err(path.display(), e))?;
        Ok(path)
    }

    fn start_vertex(&self, name: &str) -> usize {
        let vertex = self.vertices.fetch_add(1, Ordering::Relaxed) + 1;
        self.progress.event(&Event::Started { vertex, name });
        vertex
    }

    fn log(&self, vertex: usize, started: Instant, line: &str) {
        self.progress.event(&Event::Log {
            vertex,
            elapsed: started.elapsed(),
            line,
        });
    }

    fn run(&self) -> Result<BuildOutput> {
        let errors: Vec<BuildError> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .plan
                .stages
                .iter()
                .map(|stage| scope.spawn(move || self.stage_thread(stage)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| match h.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some(BuildError::Other("a build thread panicked".into())),
                })
                .collect()
        });
        if let Some(error) = errors
            .into_iter()
            .find(|e| !matches!(e, BuildError::Canceled))
        {
            return Err(error);
        }
        let state = self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.plan.target)
            .cloned()
            .ok_or_else(|| BuildError::Other("the target stage was not built".into()))?;
        let records =
            std::mem::take(&mut *self.new_cache.lock().unwrap_or_else(|e| e.into_inner()));
        let output = self.export((*state).clone())?;
        if !records.is_empty() {
            self.store.update::<_, BuildError>(|catalog| {
                for (key, record) in records {
                    catalog.build_cache.insert(key, record);
                }
                Ok(())
            })?;
        }
        Ok(output)
    }

    fn stage_thread(&self, stage: &PlannedStage) -> Result<()> {
        // Wait for the stages this one needs.
        {
            let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if self.failed.load(Ordering::SeqCst) {
                    return Err(BuildError::Canceled);
                }
                if stage.depends_on.iter().all(|d| results.contains_key(d)) {
                    break;
                }
                results = self
                    .finished
                    .wait(results)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        match self.build_stage(stage) {
            Ok(state) => {
                self.results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(stage.index, Arc::new(state));
                self.finished.notify_all();
                Ok(())
            }
            Err(e) => {
                self.failed.store(true, Ordering::SeqCst);
                // Taking the lock orders the flag before any waiter's next check.
                drop(self.results.lock());
                self.finished.notify_all();
                Err(e)
            }
        }
    }

    fn stage_result(&self, index: usize) -> Option<Arc<StageState>> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    }

    /// The key every stage's chain starts from: what changes every layer of a build.
    fn root_key(&self) -> cache::KeyBuilder {
        let mut key = cache::KeyBuilder::new("stage");
        let host = Platform::host();
        key.add(format!(
            "{}/{}/{}",
            host.os,
            host.architecture,
            host.variant.as_deref().unwrap_or("")
        ));
        key.add(
            self.options
                .source_date_epoch
                .map(|e| e.to_string())
                .unwrap_or_default(),
        );
        key
    }

    fn start_stage(&self, stage: &PlannedStage) -> Result<StageState> {
        let from = &self.df.stages[stage.index].from;
        if let Some(p) = &stage.platform {
            let host = Platform::host();
            let wanted = strata_oci::Platform::parse(p).map_err(|e| BuildError::Step {
                line: from.span.line,
                instruction: "FROM".into(),
                message: format!("invalid --platform {p:?}: {e}"),
            })?;
            if wanted.os != host.os || wanted.architecture != host.architecture {
                return Err(BuildError::Step {
                    line: from.span.line,
                    instruction: "FROM".into(),
                    message: format!(
                        "--platform={p} is not supported yet (only the host platform {}/{})",
                        host.os, host.architecture
                    ),
                });
            }
        }
        match &stage.base {
            Base::Scratch => {
                let mut key = self.root_key();
                key.add("scratch");
                Ok(StageState::scratch(key.finish()))
            }
            Base::Stage(j) => {
                let mut state = self.stage_result(*j).map(|s| (*s).clone()).ok_or_else(|| {
                    BuildError::Other(format!(
                        "stage {j} was not built before stage {}",
                        stage.index
                    ))
                })?;
                // The base stage's ONBUILD triggers stay in its config for `build_stage`
                // to run (`onbuild`).
                state.cmd_set = false;
                Ok(state)
            }
            Base::Image(reference) => {
                let image = self.images.get(reference).cloned().ok_or_else(|| {
                    BuildError::Other(format!("{reference}: image not found locally"))
                })?;
                let value = &image.config.value;
                let host = Platform::host();
                let arch = value.get("architecture").and_then(Value::as_str);
                let os = value.get("os").and_then(Value::as_str);
                if arch.is_some_and(|a| a != host.architecture) || os.is_some_and(|o| o != host.os)
                {
                    return Err(BuildError::Step {
                        line: from.span.line,
                        instruction: "FROM".into(),
                        message: format!(
                            "{reference} is {}/{}; building for another platform than the host ({}/{}) is not supported yet",
                            os.unwrap_or("?"),
                            arch.unwrap_or("?"),
                            host.os,
                            host.architecture
                        ),
                    });
                }
                let mut layers = Vec::new();
                for (blob, diff_id) in image.manifest.layers.iter().zip(&image.config.diff_ids) {
                    let sizes = layer_io::measured_sizes(self.store, &self.catalog, blob, diff_id)?;
                    layers.push(LayerInfo {
                        blob: blob.clone(),
                        diff_id: diff_id.clone(),
                        sizes,
                    });
                }
                let mut key = self.root_key();
                key.add("image").add(image.record.config.to_string());
                let mut config = value
                    .get("config")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                config::ensure_default_path(&mut config);
                Ok(StageState {
                    config,
                    author: value
                        .get("author")
                        .and_then(Value::as_str)
                        .map(String::from),
                    layers,
                    history: value
                        .get("history")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    lowers: Vec::new(),
                    cmd_set: false,
                    key: key.finish(),
                    new_history: 0,
                })
            }
        }
    }

    fn build_stage(&self, stage: &PlannedStage) -> Result<StageState> {
        let multi = self.plan.stages.len() > 1;
        let name = match (&stage.name, multi) {
            (Some(n), _) => format!("{n} "),
            (None, true) => format!("stage-{} ", stage.index),
            (None, false) => String::new(),
        };
        let from_span = self.df.stages[stage.index].from.span;
        let from_line = from_span.line;
        let header_text =
            |steps: usize| format!("[{name}1/{}] {}", steps + 1, self.df.line(from_line).trim());
        let started = Instant::now();
        // Inherited ONBUILD triggers run first (`onbuild`).
        let started_stage = self.start_stage(stage).and_then(|mut state| {
            let triggers = onbuild::take_triggers(&mut state);
            let steps = onbuild::plan_triggers(
                &triggers,
                self.df.escape,
                &state,
                &self.options.build_args,
                from_span,
            )?;
            Ok((state, triggers, steps))
        });
        let trigger_count = started_stage.as_ref().map_or(0, |(_, _, s)| s.len());
        let total = stage.steps.len() + trigger_count + 1;
        let vertex = self.start_vertex(&header_text(total - 1));
        let (mut state, triggers, trigger_steps) = match started_stage {
            Ok(started) => started,
            Err(e) => {
                self.progress.event(&Event::Error {
                    vertex,
                    message: &e.to_string(),
                });
                return Err(e);
            }
        };
        self.progress.event(&Event::Done {
            vertex,
            elapsed: started.elapsed(),
        });
        for (i, step) in trigger_steps.iter().chain(&stage.steps).enumerate() {
            if self.failed.load(Ordering::SeqCst) {
                return Err(BuildError::Canceled);
            }
            let text = match triggers.get(i) {
                Some(trigger) if i < trigger_count => trigger.trim(),
                _ => self.df.line(step.span.line).trim(),
            };
            let header = format!("[{name}{}/{total}] {text}", i + 2);
            let vertex = self.start_vertex(&header);
            let started = Instant::now();
            match self.dispatch(vertex, step, &mut state) {
                Ok(true) => self.progress.event(&Event::Cached { vertex }),
                Ok(false) => self.progress.event(&Event::Done {
                    vertex,
                    elapsed: started.elapsed(),
                }),
                Err(e) => {
                    if !matches!(e, BuildError::Step { .. }) || !self.reported_error(&e) {
                        self.progress.event(&Event::Error {
                            vertex,
                            message: &e.to_string(),
                        });
                    }
                    return Err(e);
                }
            }
        }
        Ok(state)
    }

    /// Whether the step already reported `error` itself (a failing RUN shows its output).
    fn reported_error(&self, error: &BuildError) -> bool {
        matches!(error, BuildError::Step { message, .. } if message.starts_with("process \""))
    }

    /// A history entry; `created` is `None` for metadata-only steps, which take the time of
    /// the build's newest layer when the image is exported.
    fn history(
        &self,
        state: &mut StageState,
        created_by: String,
        empty: bool,
        created: Option<DateTime<Utc>>,
    ) {
        let mut entry = Map::new();
        entry.insert(
            "created".into(),
            created.map_or(Value::Null, |t| json!(go_time(&t))),
        );
        entry.insert("created_by".into(), json!(created_by));
        entry.insert("comment".into(), json!("buildkit.dockerfile.v0"));
        if empty {
            entry.insert("empty_layer".into(), json!(true));
        }
        state.history.push(Value::Object(entry));
        state.new_history += 1;
    }

    /// Runs one step; returns whether its result came from the cache.
    fn dispatch(&self, vertex: usize, step: &PlannedStep, state: &mut StageState) -> Result<bool> {
        let key = self.step_key(step, state)?;
        match &step.instruction {
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
                self.layer_step(vertex, step, state, key, String::new())
            }
            Instruction::Workdir(_) => {
                let created_by = config::apply(&step.instruction, step, state)?
                    .ok_or_else(|| step_error(step, "WORKDIR without a history entry"))?;
                self.layer_step(vertex, step, state, key, created_by)
            }
            other => {
                let created_by = config::apply(other, step, state)?;
                if let Some(created_by) = created_by {
                    self.history(state, created_by, true, None);
                }
                if let Some(key) = key {
                    state.key = key;
                }
                Ok(false)
            }
        }
    }

    /// A step that may add a layer: taken from the cache when its key is there, run otherwise.
    /// `workdir_created_by` is WORKDIR's history entry (empty for the other instructions).
    fn layer_step(
        &self,
        vertex: usize,
        step: &PlannedStep,
        state: &mut StageState,
        key: Option<Digest>,
        workdir_created_by: String,
    ) -> Result<bool> {
        let hit = match &key {
            Some(key) if !self.options.no_cache => self.cached(key)?,
            _ => None,
        };
        if let (Some(record), Some(key)) = (hit, &key) {
            if let Some(layer) = &record.layer {
                state.layers.push(LayerInfo {
                    blob: layer.blob.clone(),
                    diff_id: layer.diff_id.clone(),
                    sizes: layer_io::LayerSizes {
                        uncompressed: layer.uncompressed_size,
                        content: layer.content_size,
                    },
                });
            }
            let created = self
                .options
                .source_date_epoch
                .map_or(record.created, |_| self.created);
            self.history(
                state,
                record.created_by.clone(),
                record.layer.is_none(),
                Some(created),
            );
            state.key = key.clone();
            return Ok(true);
        }
        self.ensure_lowers(state)?;
        let outcome = match &step.instruction {
            Instruction::Run(run) => {
                let (upper, created_by) = run::run_step(self, vertex, step, run, state)?;
                StepOutcome {
                    layer_dir: Some((upper, true)),
                    created_by,
                    keep_dir: true,
                }
            }
            Instruction::Copy(_) | Instruction::Add(_) => self.copy_step(step, state)?,
            Instruction::Workdir(_) => self.workdir_step(step, state, workdir_created_by)?,
            other => {
                return Err(step_error(
                    step,
                    format!("{} does not add a layer", other.name()),
                ));
            }
        };
        let layer = match &outcome.layer_dir {
            Some((dir, overlay_upper)) => {
                let layer = self.commit_layer(dir, *overlay_upper)?;
                let diff_ids: Vec<Digest> = state
                    .layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .chain([layer.diff_id.clone()])
                    .collect();
                let chains = strata_image::snapshot::chain_ids(&diff_ids);
                let chain = chains.last().expect("at least the new layer");
                let parent = chains.len().checked_sub(2).map(|i| &chains[i]);
                // The lowers were completed before the step ran; they stay complete when this
                // layer's dir becomes its snapshot, else one is unpacked when needed.
                if outcome.keep_dir {
                    let fs = strata_image::snapshot::adopt(
                        self.store,
                        dir,
                        chain,
                        parent,
                        &layer.diff_id,
                    )?;
                    state.lowers.push(fs);
                }
                state.layers.push(layer.clone());
                Some(layer)
            }
            None => None,
        };
        self.history(
            state,
            outcome.created_by.clone(),
            layer.is_none(),
            Some(self.created),
        );
        if let Some(key) = key {
            state.key = key.clone();
            let now = Utc::now();
            self.new_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((
                    key,
                    BuildCacheRecord {
                        layer: layer.map(|l| CachedLayer {
                            diff_id: l.diff_id,
                            blob: l.blob,
                            uncompressed_size: l.sizes.uncompressed,
                            content_size: l.sizes.content,
                        }),
                        created_by: outcome.created_by,
                        created: self.created,
                        last_used: now,
                    },
                ));
        } else {
            // Not cacheable: nothing after it in this stage may come from the cache either.
            let mut k = cache::KeyBuilder::new("uncacheable");
            k.add(state.key.to_string()).add(Utc::now().to_rfc3339());
            state.key = k.finish();
        }
        Ok(false)
    }

    /// The cache record of `key`, when its layer blob is still in the store.
    fn cached(&self, key: &Digest) -> Result<Option<BuildCacheRecord>> {
        let Some(record) = self.catalog.build_cache.get(key) else {
            return Ok(None);
        };
        if let Some(layer) = &record.layer
            && !self.store.has_blob(&layer.blob.digest)
        {
            return Ok(None);
        }
        Ok(Some(record.clone()))
    }

    /// The cache key of the state after `step`, or `None` when the step cannot be cached.
    fn step_key(&self, step: &PlannedStep, state: &StageState) -> Result<Option<Digest>> {
        let mut key = cache::KeyBuilder::new("step");
        key.add(state.key.to_string());
        key.add(format!("{:?}", step.instruction));
        match &step.instruction {
            Instruction::Run(run) => {
                for (k, v) in &step.build_args {
                    key.add(format!("{k}={v}"));
                }
                for mount in &run.mounts {
                    if let strata_dockerfile::Mount::Bind(bind) = mount {
                        let source = bind.source.as_deref().unwrap_or("");
                        key.add(self.source_digest(step, bind.from.as_deref(), source)?);
                    }
                }
            }
            // The instruction's Debug covers --exclude/--parents/--link/--chmod/--chown; the
            // context digests below cover everything those can read.
            Instruction::Copy(c) => {
                for source in &c.sources {
                    key.add(self.copy_source_digest(
                        step,
                        c.from.as_deref(),
                        source,
                        &c.exclude,
                        c.parents,
                    )?);
                }
            }
            Instruction::Add(a) => {
                for source in &a.sources {
                    if add::is_git(source) {
                        // Keyed by the commit the ref names now.
                        let commit = git::GitRef::parse(source)
                            .and_then(|r| git::resolve(&r))
                            .map_err(|e| step_error(step, e))?;
                        key.add(format!("git {source} {commit}"));
                        continue;
                    }
                    if let (true, Some(checksum)) = (add::is_url(source), &a.checksum) {
                        // Pinned content: keyed by the checksum without downloading, as
                        // BuildKit does; the step verifies what it downloads.
                        key.add(format!("url {source} {checksum}"));
                        continue;
                    }
                    if add::is_url(source) {
                        // Keyed by its content: downloaded once per build, reused by the step.
                        let download = add::fetch(
                            &self.dir.path.join("downloads"),
                            source,
                            a.checksum.as_deref(),
                        )
                        .map_err(|e| step_error(step, e))?;
                        key.add(format!(
                            "url {source} {} {}",
                            download.digest, download.mtime
                        ));
                        continue;
                    }
                    key.add(self.copy_source_digest(step, None, source, &a.exclude, false)?);
                }
            }
            _ => {}
        }
        Ok(Some(key.finish()))
    }

    /// [`Self::source_digest`] of a COPY/ADD source, leaving out of the digest what its
    /// `--exclude` patterns keep out of the copy when that is certain: a context source
    /// without globs (patterns apply below it) or a `--parents` one (below its pivot).
    fn copy_source_digest(
        &self,
        step: &PlannedStep,
        from: Option<&str>,
        source: &str,
        exclude: &[String],
        parents: bool,
    ) -> Result<String> {
        let root = match from {
            None if !exclude.is_empty() => &self.options.context,
            _ => return self.source_digest(step, from, source),
        };
        let base = match (parents, source.split_once("/./")) {
            (true, Some((pivot, _))) => pivot,
            (true, None) => "",
            (false, _) if !pattern::has_glob(source) => source,
            _ => return self.source_digest(step, from, source),
        };
        let (Some(prefix), Some(base)) = (cache::source_prefix(source), cache::source_prefix(base))
        else {
            return self.source_digest(step, from, source);
        };
        if cache::prefix_has_symlink(root, &prefix) {
            return self.source_digest(step, from, source);
        }
        let ignore = self.context_ignore.with_rules_below(&base, exclude);
        let digest = self
            .checksums
            .tree_digest(root, &prefix, &ignore)
            .map_err(|e| step_error(step, format!("reading {source}: {e}")))?;
        Ok(format!("tree {digest}"))
    }

    /// What a COPY (or bind mount) source reads: a stage's key, an image's ID, or a digest of
    /// the context files under the source's fixed prefix.
    fn source_digest(
        &self,
        step: &PlannedStep,
        from: Option<&str>,
        source: &str,
    ) -> Result<String> {
        let ephemeral;
        let (root, ignore, checksums) = match from {
            None => (
                self.options.context.clone(),
                &self.context_ignore,
                &self.checksums,
            ),
            Some(name) => {
                if let Some(index) = self.stage_index(name) {
                    let state = self.stage_result(index).ok_or_else(|| {
                        step_error(step, format!("--from={name}: the stage was not built"))
                    })?;
                    return Ok(format!("stage {}", state.key));
                }
                match self.options.build_contexts.get(name) {
                    Some(dir) => {
                        ephemeral = cache::ChecksumCache::ephemeral();
                        (dir.clone(), &self.no_ignore, &ephemeral)
                    }
                    None => {
                        let image = self.images.get(name).ok_or_else(|| {
                            step_error(
                                step,
                                format!("--from={name}: image not found locally; pull it with `strata pull`"),
                            )
                        })?;
                        return Ok(format!("image {}", image.record.config));
                    }
                }
            }
        };
        let prefix = match cache::source_prefix(source) {
            Some(p) if !cache::prefix_has_symlink(&root, &p) => p,
            // Sources that leave the root or pass a symlink: digest everything.
            _ => String::new(),
        };
        let digest = checksums
            .tree_digest(&root, &prefix, ignore)
            .map_err(|e| step_error(step, format!("reading {source}: {e}")))?;
        Ok(format!("tree {digest}"))
    }

    fn stage_index(&self, name: &str) -> Option<usize> {
        match name.parse::<usize>() {
            Ok(n) if n < self.df.stages.len() => Some(n),
            Ok(_) => None,
            Err(_) => self.df.stages.iter().position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }),
        }
    }

    /// Gives every layer of `state` its snapshot directory, unpacking what is missing.
    fn ensure_lowers(&self, state: &mut StageState) -> Result<()> {
        if state.lowers.len() == state.layers.len() {
            return Ok(());
        }
        let stack: Vec<strata_image::snapshot::StackLayer<'_>> = state
            .layers
            .iter()
            .map(|l| strata_image::snapshot::StackLayer {
                blob: &l.blob,
                diff_id: &l.diff_id,
            })
            .collect();
        state.lowers = strata_image::snapshot::ensure(self.store, &stack)?;
        Ok(())
    }

    fn commit_layer(&self, dir: &Path, overlay_upper: bool) -> Result<LayerInfo> {
        let writer = self.store.blob_writer(Algorithm::Sha256)?;
        let create = CreateOptions {
            source_date_epoch: self.options.source_date_epoch,
            overlay_upper,
        };
        let (writer, _) = strata_layer::write_layer(dir, &create, writer)?;
        let blob = writer.commit(None)?;
        if blob.created {
            self.added
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(blob.digest.clone());
        }
        let blob_ref = BlobRef {
            media_type: media_types::OCI_LAYER.to_string(),
            digest: blob.digest.clone(),
            size: blob.size,
        };
        let sizes = layer_io::scan_layer(self.store, &blob_ref, &blob.digest)?;
        Ok(LayerInfo {
            blob: blob_ref,
            diff_id: blob.digest,
            sizes,
        })
    }

    /// WORKDIR: like BuildKit's `mkdir -p` (owned by the current USER), a layer when the
    /// directory is new, an empty-layer history entry otherwise.
    fn workdir_step(
        &self,
        step: &PlannedStep,
        state: &StageState,
        created_by: String,
    ) -> Result<StepOutcome> {
        let workdir = state.workdir();
        let resolved = state.resolve_path(&workdir, true);
        let exists = resolved == "/"
            || state
                .rootfs_path(&resolved)
                .and_then(|p| std::fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_dir());
        if exists {
            return Ok(StepOutcome {
                layer_dir: None,
                created_by,
                keep_dir: true,
            });
        }
        let user = state
            .config
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (uid, gid) = copy::resolve_user(state, &user, false)
            .map_err(|m| step_error(step, format!("USER {user}: {m}")))?;
        let staging = self.next_dir("workdir")?;
        copy::stage_workdir(&staging, &workdir, state, uid, gid, step)?;
        Ok(StepOutcome {
            layer_dir: Some((staging, false)),
            created_by,
            keep_dir: true,
        })
    }

    /// The root filesystem a `COPY --from` (or a bind mount's `from`) reads: a named build
    /// context, or a read-only overlay of a stage's or an image's snapshots, made once per
    /// build.
    fn source_fs(&self, step: &PlannedStep, from: &str) -> Result<PathBuf> {
        if let Some(dir) = self.options.build_contexts.get(from) {
            return Ok(dir.clone());
        }
        if let Some(path) = self
            .stage_fs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(from)
        {
            return Ok(path.clone());
        }
        let lowers = match self.stage_index(from) {
            Some(index) => {
                let state = self.stage_result(index).ok_or_else(|| {
                    step_error(step, format!("--from={from}: the stage was not built"))
                })?;
                let mut state = (*state).clone();
                self.ensure_lowers(&mut state)?;
                state.lowers
            }
            None => {
                let image = self.images.get(from).ok_or_else(|| {
                    step_error(
                        step,
                        format!(
                            "--from={from}: image not found locally; pull it with `strata pull`"
                        ),
                    )
                })?;
                strata_image::snapshot::prepare(self.store, image)?
            }
        };
        let target = self.next_dir("from")?;
        self.mount_read_only(&lowers, &target)
            .map_err(|e| step_error(step, format!("--from={from}: {e}")))?;
        self.stage_fs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(from.to_string(), target.clone());
        Ok(target)
    }

    /// Mounts the snapshot stack `lowers` (bottom first) read-only at `target`. The build runs
    /// in its own mount namespace (`strata build` re-executes itself under `unshare`), so
    /// these mounts vanish with it even when it is killed.
    fn mount_read_only(
        &self,
        lowers: &[PathBuf],
        target: &Path,
    ) -> std::result::Result<(), String> {
        // overlayfs needs two lower directories when it has no upper one.
        let empty = self.dir.path.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
        let mut dirs: Vec<String> = lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        dirs.push(empty.display().to_string());
        if dirs.iter().any(|d| d.contains([':', ','])) {
            return Err("a snapshot path contains ':' or ',', which overlayfs cannot take".into());
        }
        let data = format!("lowerdir={}", dirs.join(":"));
        if data.len() >= 4000 {
            return Err(format!(
                "{} layers do not fit in one overlay mount's options; images this deep are not supported yet",
                lowers.len()
            ));
        }
        let data = std::ffi::CString::new(data).map_err(|e| e.to_string())?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::RDONLY,
            data.as_c_str(),
        )
        .map_err(|e| {
            format!(
                "mounting the source's layers at {}: {e} (strata build needs root and its own mount namespace)",
                target.display()
            )
        })?;
        self.dir
            .mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.to_path_buf());
        Ok(())
    }

    fn copy_step(&self, step: &PlannedStep, state: &StageState) -> Result<StepOutcome> {
        let req = copy::CopyRequest::from_instruction(step)?;
        let source_root = match req.from {
            Some(from) => copy::SourceRoot {
                dir: self.source_fs(step, from)?,
                ignore: pattern::IgnoreRules::default(),
            },
            None => copy::SourceRoot {
                dir: self.options.context.clone(),
                ignore: self.context_ignore.clone(),
            },
        };
        let source_root = copy::SourceRoot {
            dir: source_root
                .dir
                .canonicalize()
                .map_err(|e| io_err(source_root.dir.display(), e))?,
            ignore: source_root.ignore,
        };
        let staging = self.next_dir("copy")?;
        let heredoc_dir = self.next_dir("heredoc")?;
        let downloads = self.dir.path.join("downloads");
        let staged = copy::stage_copy(
            &req,
            &source_root,
            &heredoc_dir,
            &downloads,
            &staging,
            state,
            step,
        )?;
        Ok(StepOutcome {
            layer_dir: Some((staging, false)),
            created_by: staged.created_by,
            keep_dir: !staged.linked,
        })
    }

    fn export(&self, mut state: StageState) -> Result<BuildOutput> {
        if !self.options.labels.is_empty() {
            let labels = state
                .config
                .entry("Labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            for (k, v) in &self.options.labels {
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert(k.clone(), json!(v));
                }
            }
        }
        // Metadata-only history entries, and the image, take the time of the newest layer
        // this build made or reused, so an unchanged build gives the same image ID.
        let new_from = state.history.len().saturating_sub(state.new_history);
        let newest = state.history[new_from..]
            .iter()
            .filter_map(|h| h.get("created").and_then(Value::as_str))
            .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .max()
            .unwrap_or(self.created);
        let newest = self
            .options
            .source_date_epoch
            .map_or(newest, |_| self.created);
        for entry in &mut state.history[new_from..] {
            if let Some(entry) = entry.as_object_mut()
                && entry.get("created").is_none_or(Value::is_null)
            {
                entry.insert("created".into(), json!(go_time(&newest)));
            }
        }
        let host = Platform::host();
        let mut image = Map::new();
        image.insert("architecture".into(), json!(host.architecture));
        if let Some(author) = &state.author {
            image.insert("author".into(), json!(author));
        }
        image.insert(
            "config".into(),
            Value::Object(config::ordered(&state.config)),
        );
        image.insert("created".into(), json!(go_time(&newest)));
        image.insert("history".into(), Value::Array(state.history.clone()));
        image.insert("os".into(), json!(host.os));
        image.insert(
            "rootfs".into(),
            json!({
                "type": "layers",
                "diff_ids": state.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            }),
        );
        if let Some(variant) = &host.variant {
            image.insert("variant".into(), json!(variant));
        }
        let config_bytes = serde_json::to_vec(&Value::Object(image))
            .map_err(|e| BuildError::Other(format!("encoding the image config: {e}")))?;
        let layers: Vec<NewLayer> = state
            .layers
            .iter()
            .map(|l| NewLayer {
                diff_id: l.diff_id.clone(),
                blob: l.blob.clone(),
                sizes: l.sizes,
            })
            .collect();
        let started = Instant::now();
        let vertex = self.start_vertex("exporting to image");
        let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
        let committed = commit_image(
            self.store,
            &config_bytes,
            &layers,
            &self.options.tags,
            &mut added,
        )?;
        drop(added);
        self.log(vertex, started, "exporting layers done");
        self.log(
            vertex,
            started,
            &format!("exporting manifest {} done", committed.manifest),
        );
        self.log(
            vertex,
            started,
            &format!("exporting config {} done", committed.id),
        );
        self.log(
            vertex,
            started,
            &format!("writing image {} done", committed.id),
        );
        for tag in &self.options.tags {
            self.log(vertex, started, &format!("naming to {tag} done"));
        }
        self.progress.event(&Event::Done {
            vertex,
            elapsed: started.elapsed(),
        });
        Ok(BuildOutput {
            image_id: committed.id,
            manifest: committed.manifest,
        })
    }
}

/// The context's ignore rules: `<Dockerfile>.dockerignore` next to the Dockerfile, else the
/// context's `.dockerignore`.
fn context_ignore(context: &Path, dockerfile: &Path) -> Result<pattern::IgnoreRules> {
    let mut candidates = Vec::new();
    if let Some(name) = dockerfile.file_name() {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        candidates.push(dockerfile.with_file_name(n));
    }
    candidates.push(context.join(".dockerignore"));
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(pattern::IgnoreRules::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path.display(), e)),
        }
    }
    Ok(pattern::IgnoreRules::default())
}

/// Creating a mount point such as `/etc/hosts` copies its parent directory up; when nothing
/// else changed that directory (empty in the upper dir, same mode and owner as below, not
/// opaque; its mtime changed with the mount point itself),
/// it is removed so the layer does not carry it.
pub(crate) fn prune_untouched_copy_ups(upper: &Path, created_list: &Path, state: &StageState) {
    use std::os::unix::fs::MetadataExt;
    let Ok(bytes) = std::fs::read(created_list) else {
        return;
    };
    let Ok(created) = serde_json::from_slice::<Vec<String>>(&bytes) else {
        return;
    };
    let mut parents: Vec<&str> = created
        .iter()
        .filter_map(|p| p.rsplit_once('/').map(|(parent, _)| parent))
        .collect();
    parents.sort();
    parents.dedup();
    for parent in parents {
        let path = upper.join(parent);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || std::fs::read_dir(&path).map_or(true, |mut d| d.next().is_some()) {
            continue;
        }
        let mut buf = [0u8; 8];
        let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|name| rustix::fs::lgetxattr(&path, *name, &mut buf[..]).is_ok());
        if opaque {
            continue;
        }
        let Some(below) = state
            .rootfs_path(parent)
            .and_then(|p| std::fs::symlink_metadata(p).ok())
        else {
            continue;
        };
        if below.mode() == meta.mode() && below.uid() == meta.uid() && below.gid() == meta.gid() {
            let _ = std::fs::remove_dir(&path);
        }
    }
}

/// Go's `time.RFC3339Nano`: trailing zeros of the fraction dropped.
fn go_time(t: &DateTime<Utc>) -> String {
    let text = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match text.split_once('.') {
        Some((whole, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{whole}Z")
            } else {
                format!("{whole}.{digits}Z")
            }
        }
        None => text,
    }
}

/// Removes build directories left by builds whose process is gone (killed mid-build).
fn remove_stale_build_dirs(build_root: &Path) {
    let Ok(entries) = std::fs::read_dir(build_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
