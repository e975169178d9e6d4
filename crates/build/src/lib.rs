//! `strata build`: builds a Dockerfile into the local store, the way BuildKit's Dockerfile
//! frontend does, one stage after the other.
//!
//! - Parsing and planning are [`strata_dockerfile`]'s: ARG/ENV substitution, stage bases, the
//!   stages the target needs.
//! - Bases: `scratch`, an earlier stage, or an image already in the local store.
//! - Metadata instructions update the image config and history exactly as BuildKit writes them
//!   ([`config`]).
//! - `RUN` executes in a sandbox ([`sandbox`]): the stage's layers as overlay lower dirs, a fresh
//!   upper dir that becomes the new layer, private mount/PID/IPC/UTS namespaces made by util-linux
//!   `unshare` around a re-executed strata (`__sandbox-run`).
//! - `COPY`/`ADD` stage the files under their destination in a directory that becomes the
//!   layer ([`copy`]).
//!
//! Not supported yet (each fails with an error naming the instruction and line): `RUN --mount`,
//! `RUN --security=insecure`, `COPY --link/--parents/--exclude`, `ADD` of URLs and git
//! repositories, `ADD --checksum`, `FROM --platform` other than the host, ONBUILD triggers of
//! base images. There is no build cache and stages run sequentially.

mod config;
mod copy;
pub mod pattern;
pub mod sandbox;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use strata_dockerfile::{
    Base, BuildPlan, Instruction, PlanOptions, PlannedStage, PlannedStep, Platform as DfPlatform,
    RunScript,
};
use strata_image::document::StoredImage;
use strata_image::{ImageError, NewLayer, commit_image, layer_io};
use strata_layer::CreateOptions;
use strata_oci::{Algorithm, Digest, Platform, Reference, media_types};
use strata_store::{BlobRef, Store, StoreError};

pub use sandbox::{SandboxSpec, run_in_namespace};

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
}

/// What [`build`] produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image ID (config digest).
    pub image_id: Digest,
    pub manifest: Digest,
}

#[derive(Debug, Clone)]
struct LayerInfo {
    blob: BlobRef,
    diff_id: Digest,
    sizes: layer_io::LayerSizes,
}

/// The state of a stage while it is being built.
#[derive(Debug, Clone)]
struct StageState {
    /// The image config's `config` object.
    config: Map<String, Value>,
    author: Option<String>,
    layers: Vec<LayerInfo>,
    history: Vec<Value>,
    /// Directories that, stacked bottom first, give the stage's root filesystem.
    lowers: Vec<PathBuf>,
    cmd_set: bool,
}

impl StageState {
    fn scratch() -> StageState {
        let mut config = Map::new();
        config.insert("Env".into(), json!([format!("PATH={DEFAULT_PATH}")]));
        config.insert("WorkingDir".into(), json!("/"));
        StageState {
            config,
            author: None,
            layers: Vec::new(),
            history: Vec::new(),
            lowers: Vec::new(),
            cmd_set: false,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        config::env_pairs(&self.config)
    }

    fn workdir(&self) -> String {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => "/".to_string(),
        }
    }

    fn shell(&self) -> Vec<String> {
        match self.config.get("Shell").and_then(Value::as_array) {
            Some(s) if !s.is_empty() => s
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }

    /// `path` (absolute) with the symlinks of its directories resolved inside the stage's root
    /// filesystem (absolute targets start at its root, `..` stops there); the last component
    /// is resolved too when `follow_last`.
    fn resolve_path(&self, path: &str, follow_last: bool) -> String {
        let mut pending: Vec<String> = path
            .split('/')
            .rev()
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let is_last = pending.is_empty();
            let candidate = format!("{}/{part}", resolved.join("/"));
            let link = (!is_last || follow_last)
                .then(|| self.rootfs_path(&candidate))
                .flatten()
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink()))
                .and_then(|p| std::fs::read_link(p).ok());
            match link {
                Some(target) if hops < 255 => {
                    hops += 1;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    pending.extend(
                        target
                            .split('/')
                            .rev()
                            .filter(|p| !p.is_empty())
                            .map(String::from),
                    );
                }
                _ => resolved.push(part),
            }
        }
        format!("/{}", resolved.join("/"))
    }

    /// The path of `rel` (relative to `/`) in the topmost directory that has it, unless a
    /// whiteout hides it.
    fn rootfs_path(&self, rel: &str) -> Option<PathBuf> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let rel = rel.trim_start_matches('/');
        for lower in self.lowers.iter().rev() {
            let path = if rel.is_empty() {
                lower.clone()
            } else {
                lower.join(rel)
            };
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.file_type().is_char_device() && meta.rdev() == 0 {
                    return None;
                }
                return Some(path);
            }
        }
        None
    }
}

/// Builds `options.dockerfile` into `store`; progress goes to `progress` in BuildKit's plain
/// format.
pub fn build(
    store: &Store,
    options: &BuildOptions,
    progress: &mut dyn Write,
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
    // Base images must be in the store; their ENV feeds the planner's substitution.
    let catalog = store.catalog()?;
    let mut images: HashMap<String, StoredImage> = HashMap::new();
    for stage in &first.stages {
        let mut refs: Vec<(&String, bool)> = stage.image_refs.iter().map(|r| (r, false)).collect();
        if let Base::Image(r) = &stage.base {
            refs.push((r, true));
        }
        for (reference, is_base) in refs {
            if images.contains_key(reference) {
                continue;
            }
            let image = StoredImage::resolve(store, &catalog, reference).map_err(|e| {
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
                BuildError::Step {
                    line,
                    instruction: if is_base { "FROM" } else { "COPY --from" }.into(),
                    message: format!(
                        "{reference}: image not found locally; pull it with `strata pull` ({e})"
                    ),
                }
            })?;
            if is_base {
                let env = image
                    .config
                    .value
                    .get("config")
                    .and_then(|c| c.as_object())
                    .map(config::env_pairs)
                    .unwrap_or_default();
                plan_options.image_env.insert(reference.clone(), env);
            }
            images.insert(reference.clone(), image);
        }
    }
    let plan = strata_dockerfile::plan(&df, &plan_options)?;

    if !plan.unused_build_args.is_empty() {
        let _ = writeln!(
            progress,
            "[Warning] One or more build-args {:?} were not consumed",
            plan.unused_build_args
        );
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
    let _cleanup = RemoveOnDrop(dir.clone());
    let lock = store.lock_content_shared()?;
    let mut builder = Builder {
        store,
        options,
        df: &df,
        plan: &plan,
        images,
        dir,
        states: HashMap::new(),
        stage_fs: HashMap::new(),
        added: Vec::new(),
        progress,
        step_number: 0,
        sequence: 0,
        created: created_time(options.source_date_epoch)?,
    };
    let result = builder.run();
    let added = std::mem::take(&mut builder.added);
    drop(builder);
    drop(lock);
    // On failure everything added goes; on success the layers of other stages, which no
    // image references.
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

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Builder<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    df: &'a strata_dockerfile::Dockerfile,
    plan: &'a BuildPlan,
    images: HashMap<String, StoredImage>,
    dir: PathBuf,
    states: HashMap<usize, StageState>,
    /// Materialised root filesystems of stages and images used by `COPY --from`.
    stage_fs: HashMap<String, PathBuf>,
    added: Vec<Digest>,
    progress: &'a mut dyn Write,
    step_number: usize,
    sequence: usize,
    created: DateTime<Utc>,
}

fn step_error(step: &PlannedStep, message: impl Into<String>) -> BuildError {
    BuildError::Step {
        line: step.span.line,
        instruction: step.instruction.name().to_string(),
        message: message.into(),
    }
}

impl Builder<'_> {
    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.progress, "{}", line.as_ref());
        let _ = self.progress.flush();
    }

    fn next_dir(&mut self, kind: &str) -> Result<PathBuf> {
        self.sequence += 1;
        let path = self.dir.join(format!("{kind}-{}", self.sequence));
        std::fs::create_dir_all(&path).map_err(|e| io_err(path.display(), e))?;
        Ok(path)
    }

    fn run(&mut self) -> Result<BuildOutput> {
        let multi = self.plan.stages.len() > 1;
        for stage in &self.plan.stages {
            let state = self.start_stage(stage)?;
            let state = self.build_stage(stage, state, multi)?;
            self.states.insert(stage.index, state);
        }
        let state = self
            .states
            .remove(&self.plan.target)
            .ok_or_else(|| BuildError::Other("the target stage was not built".into()))?;
        self.export(state)
    }

    fn start_stage(&mut self, stage: &PlannedStage) -> Result<StageState> {
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
            Base::Scratch => Ok(StageState::scratch()),
            Base::Stage(j) => {
                let parent = &self.df.stages[*j];
                if parent
                    .instructions
                    .iter()
                    .any(|n| matches!(n.instruction, Instruction::Onbuild(_)))
                {
                    return Err(BuildError::Step {
                        line: from.span.line,
                        instruction: "FROM".into(),
                        message: format!(
                            "stage {} has ONBUILD triggers, which are not supported yet",
                            parent.name.clone().unwrap_or_else(|| j.to_string())
                        ),
                    });
                }
                let mut state = self.states.get(j).cloned().ok_or_else(|| {
                    BuildError::Other(format!(
                        "stage {j} was not built before stage {}",
                        stage.index
                    ))
                })?;
                // ONBUILD does not carry over from a base stage.
                state.config.remove("OnBuild");
                state.cmd_set = false;
                Ok(state)
            }
            Base::Image(reference) => {
                let image = self.images.get(reference).cloned().ok_or_else(|| {
                    BuildError::Other(format!("{reference}: image not found locally"))
                })?;
                let value = &image.config.value;
                if value
                    .pointer("/config/OnBuild")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
                {
                    return Err(BuildError::Step {
                        line: from.span.line,
                        instruction: "FROM".into(),
                        message: format!(
                            "{reference} has ONBUILD triggers, which are not supported yet"
                        ),
                    });
                }
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
                let lowers = strata_image::snapshot::prepare(self.store, &image)?;
                let catalog = self.store.catalog()?;
                let mut layers = Vec::new();
                for (blob, diff_id) in image.manifest.layers.iter().zip(&image.config.diff_ids) {
                    let sizes = layer_io::measured_sizes(self.store, &catalog, blob, diff_id)?;
                    layers.push(LayerInfo {
                        blob: blob.clone(),
                        diff_id: diff_id.clone(),
                        sizes,
                    });
                }
                Ok(StageState {
                    config: value
                        .get("config")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
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
                    lowers,
                    cmd_set: false,
                })
            }
        }
    }

    fn build_stage(
        &mut self,
        stage: &PlannedStage,
        mut state: StageState,
        multi: bool,
    ) -> Result<StageState> {
        let name = match (&stage.name, multi) {
            (Some(n), _) => format!("{n} "),
            (None, true) => format!("stage-{} ", stage.index),
            (None, false) => String::new(),
        };
        let total = stage.steps.len() + 1;
        let from_line = self.df.stages[stage.index].from.span.line;
        self.step_number += 1;
        let header = format!(
            "#{} [{name}1/{total}] {}",
            self.step_number,
            self.df.line(from_line).trim()
        );
        self.say(header);
        for (i, step) in stage.steps.iter().enumerate() {
            self.step_number += 1;
            let header = format!(
                "#{} [{name}{}/{total}] {}",
                self.step_number,
                i + 2,
                self.df.line(step.span.line).trim()
            );
            self.say(header);
            let started = Instant::now();
            self.dispatch(stage, step, &mut state)?;
            let done = format!(
                "#{} DONE {:.1}s",
                self.step_number,
                started.elapsed().as_secs_f64()
            );
            self.say(done);
        }
        Ok(state)
    }

    fn history(&self, state: &mut StageState, created_by: String, empty: bool) {
        let mut entry = Map::new();
        entry.insert("created".into(), json!(go_time(&self.created)));
        entry.insert("created_by".into(), json!(created_by));
        entry.insert("comment".into(), json!("buildkit.dockerfile.v0"));
        if empty {
            entry.insert("empty_layer".into(), json!(true));
        }
        state.history.push(Value::Object(entry));
    }

    fn dispatch(
        &mut self,
        stage: &PlannedStage,
        step: &PlannedStep,
        state: &mut StageState,
    ) -> Result<()> {
        match &step.instruction {
            Instruction::Run(run) => self.run_step(step, run, state),
            Instruction::Copy(c) => {
                if c.link {
                    return Err(step_error(step, "--link is not supported yet"));
                }
                if c.parents {
                    return Err(step_error(step, "--parents is not supported yet"));
                }
                if !c.exclude.is_empty() {
                    return Err(step_error(step, "--exclude is not supported yet"));
                }
                let req = copy::CopyRequest {
                    sources: &c.sources,
                    heredocs: &c.heredocs,
                    dest: &c.dest,
                    from: c.from.as_deref(),
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    is_add: false,
                };
                self.copy_step(stage, step, &req, state)
            }
            Instruction::Add(a) => {
                if a.link {
                    return Err(step_error(step, "--link is not supported yet"));
                }
                if a.checksum.is_some() {
                    return Err(step_error(step, "--checksum is not supported yet"));
                }
                if a.keep_git_dir.is_some() {
                    return Err(step_error(step, "--keep-git-dir is not supported yet"));
                }
                if !a.exclude.is_empty() {
                    return Err(step_error(step, "--exclude is not supported yet"));
                }
                let req = copy::CopyRequest {
                    sources: &a.sources,
                    heredocs: &a.heredocs,
                    dest: &a.dest,
                    from: None,
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    is_add: true,
                };
                self.copy_step(stage, step, &req, state)
            }
            Instruction::Workdir(_) => {
                let created_by =
                    config::apply(&step.instruction, step, state)?.expect("WORKDIR has history");
                self.workdir_step(step, state, created_by)
            }
            other => {
                let created_by = config::apply(other, step, state)?;
                if let Some(created_by) = created_by {
                    self.history(state, created_by, true);
                }
                Ok(())
            }
        }
    }

    /// WORKDIR: like BuildKit's `mkdir -p` (owned by the current USER), a layer when the
    /// directory is new, an empty-layer history entry otherwise.
    fn workdir_step(
        &mut self,
        step: &PlannedStep,
        state: &mut StageState,
        created_by: String,
    ) -> Result<()> {
        let workdir = state.workdir();
        let resolved = state.resolve_path(&workdir, true);
        let exists = resolved == "/"
            || state
                .rootfs_path(&resolved)
                .and_then(|p| std::fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_dir());
        if exists {
            self.history(state, created_by, true);
            return Ok(());
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
        let layer = self.commit_layer(&staging, false)?;
        state.layers.push(layer);
        state.lowers.push(staging);
        self.history(state, created_by, false);
        Ok(())
    }

    fn run_step(
        &mut self,
        step: &PlannedStep,
        run: &strata_dockerfile::Run,
        state: &mut StageState,
    ) -> Result<()> {
        use strata_dockerfile::{NetworkMode, SecurityMode};
        if !run.mounts.is_empty() || !run.mount_flags.is_empty() {
            return Err(step_error(step, "--mount is not supported yet"));
        }
        if !rustix::process::geteuid().is_root() {
            return Err(step_error(
                step,
                "RUN needs root (rootless builds are not supported yet)",
            ));
        }
        if run.security == Some(SecurityMode::Insecure) {
            return Err(step_error(step, "--security=insecure is not supported yet"));
        }
        let no_network = run.network == Some(NetworkMode::None);
        let shell = state.shell();
        let (argv, script, display) = match run.script() {
            RunScript::Exec(v) => {
                let display = v.join(" ");
                (v, None, display)
            }
            RunScript::Shell(s) => {
                let mut argv = shell.clone();
                argv.push(s);
                let display = argv.join(" ");
                (argv, None, display)
            }
            RunScript::Shebang(body) => {
                let name = run
                    .heredocs
                    .first()
                    .map_or_else(|| "EOF".to_string(), |h| h.name.clone());
                if name.contains('/') || name == "." || name == ".." {
                    return Err(step_error(step, format!("invalid heredoc name {name:?}")));
                }
                let mut argv = shell.clone();
                argv.push(format!("{}/{name}", sandbox::SCRIPT_DIR));
                let display = argv.join(" ");
                (argv, Some((name, body)), display)
            }
        };
        if argv.is_empty() {
            return Err(step_error(step, "empty command"));
        }
        // Environment: the image's, then build args ENV does not override.
        let env = state.env();
        let mut run_env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut history_args = Vec::new();
        for (k, v) in &step.build_args {
            let is_proxy = strata_dockerfile::plan::PROXY_ARGS.contains(&k.as_str());
            match env.iter().find(|(ek, _)| ek == k) {
                Some((_, ev)) => {
                    if !is_proxy {
                        history_args.push(format!("{k}={ev}"));
                    }
                }
                None => {
                    run_env.push(format!("{k}={v}"));
                    if !is_proxy {
                        history_args.push(format!("{k}={v}"));
                    }
                }
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            run_env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let mut created_by = String::from("RUN ");
        if !history_args.is_empty() {
            created_by.push_str(&format!(
                "|{} {} ",
                history_args.len(),
                history_args.join(" ")
            ));
        }
        created_by.push_str(&display);
        created_by.push_str(" # buildkit");

        let user = state
            .config
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (uid, gid) = copy::resolve_user(state, &user, false)
            .map_err(|m| step_error(step, format!("USER {user}: {m}")))?;

        let dir = self.next_dir("run")?;
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).map_err(|e| io_err(d.display(), e))?;
        }
        let hosts = dir.join("hosts");
        std::fs::write(
            &hosts,
            format!(
                "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n",
                h = sandbox::HOSTNAME
            ),
        )
        .map_err(|e| io_err(hosts.display(), e))?;
        let resolv = dir.join("resolv.conf");
        let resolv_text = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&resolv, resolv_text).map_err(|e| io_err(resolv.display(), e))?;
        let mut lowers: Vec<PathBuf> = state.lowers.iter().rev().cloned().collect();
        if lowers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty).map_err(|e| io_err(empty.display(), e))?;
            lowers.push(empty);
        }
        let spec = SandboxSpec {
            lowers,
            upper: upper.clone(),
            work: work.clone(),
            merged: merged.clone(),
            argv,
            env: run_env,
            cwd: state.workdir(),
            uid,
            gid,
            hosts_file: hosts,
            resolv_file: resolv,
            script,
            created_list: dir.join("created.json"),
        };
        let spec_path = dir.join("spec.json");
        std::fs::write(
            &spec_path,
            serde_json::to_vec(&spec).expect("JSON values serialise"),
        )
        .map_err(|e| io_err(spec_path.display(), e))?;

        let mut command = Command::new("unshare");
        command.args([
            "--mount",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
        ]);
        if no_network {
            command.arg("--net");
        }
        command
            .arg("--")
            .arg(&self.options.sandbox_exe)
            .arg("build")
            .arg("__sandbox-run")
            .arg(&spec_path);
        let (reader, writer) = std::io::pipe().map_err(|e| io_err("creating a pipe", e))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| io_err("creating a pipe", e))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .env_clear()
            .env("PATH", DEFAULT_PATH);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| step_error(step, format!("starting the sandbox (unshare): {e}")))?;
        drop(command);
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut lines = std::io::BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches('\n').to_string();
                    let out = format!(
                        "#{} {:.3} {line}",
                        self.step_number,
                        started.elapsed().as_secs_f64()
                    );
                    self.say(out);
                    tail.push_back(line);
                    if tail.len() > 10 {
                        tail.pop_front();
                    }
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| step_error(step, format!("waiting for the sandbox: {e}")))?;
        if !status.success() {
            let code = status.code().unwrap_or(-1);
            let original = self.df.line(step.span.line).trim().to_string();
            self.say(format!(
                "#{} ERROR: process \"{display}\" did not complete successfully: exit code: {code}",
                self.step_number
            ));
            self.say("------");
            self.say(format!(" > {original}:"));
            for line in &tail {
                self.say(line);
            }
            self.say("------");
            return Err(step_error(
                step,
                format!("process \"{display}\" did not complete successfully: exit code: {code}"),
            ));
        }
        sandbox::remove_created_mountpoints(&upper, &spec.created_list);
        prune_untouched_copy_ups(&upper, &spec.created_list, state);
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::remove_dir(&merged);
        let layer = self.commit_layer(&upper, true)?;
        state.layers.push(layer);
        state.lowers.push(upper);
        self.history(state, created_by, false);
        Ok(())
    }

    fn commit_layer(&mut self, dir: &Path, overlay_upper: bool) -> Result<LayerInfo> {
        let writer = self.store.blob_writer(Algorithm::Sha256)?;
        let create = CreateOptions {
            source_date_epoch: self.options.source_date_epoch,
            overlay_upper,
        };
        let (writer, _) = strata_layer::write_layer(dir, &create, writer)?;
        let blob = writer.commit(None)?;
        if blob.created {
            self.added.push(blob.digest.clone());
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

    /// The root filesystem of a stage or image named by `COPY --from`, applied into a
    /// directory once per build.
    fn source_fs(&mut self, step: &PlannedStep, from: &str) -> Result<PathBuf> {
        if let Some(path) = self.stage_fs.get(from) {
            return Ok(path.clone());
        }
        let stage_index = match from.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => self.df.stages.iter().position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(from))
            }),
        };
        let target = self.next_dir("from")?;
        match stage_index {
            Some(index) => {
                let state = self.states.get(&index).ok_or_else(|| {
                    step_error(step, format!("--from={from}: the stage was not built"))
                })?;
                let options = strata_layer::ApplyOptions::default();
                for layer in &state.layers {
                    let mut reader = layer_io::open_layer(self.store, &layer.blob)?;
                    strata_layer::apply_layer(&target, &mut reader, &options)?;
                }
            }
            None => {
                if !self.images.contains_key(from) {
                    return Err(step_error(
                        step,
                        format!(
                            "--from={from}: image not found locally; pull it with `strata pull`"
                        ),
                    ));
                }
                strata_image::unpack(self.store, from, &target)?;
            }
        }
        self.stage_fs.insert(from.to_string(), target.clone());
        Ok(target)
    }

    fn copy_step(
        &mut self,
        _stage: &PlannedStage,
        step: &PlannedStep,
        req: &copy::CopyRequest<'_>,
        state: &mut StageState,
    ) -> Result<()> {
        let source_root = match req.from {
            Some(from) => copy::SourceRoot {
                dir: self.source_fs(step, from)?,
                ignore: pattern::IgnoreRules::default(),
            },
            None => copy::SourceRoot {
                dir: self.options.context.clone(),
                ignore: context_ignore(&self.options.context, &self.options.dockerfile)?,
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
        let created_by = copy::stage_copy(req, &source_root, &heredoc_dir, &staging, state, step)?;
        let layer = self.commit_layer(&staging, false)?;
        state.layers.push(layer);
        state.lowers.push(staging);
        self.history(state, created_by, false);
        Ok(())
    }

    fn export(&mut self, mut state: StageState) -> Result<BuildOutput> {
        if !self.options.labels.is_empty() {
            let labels = state
                .config
                .entry("Labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            for (k, v) in &self.options.labels {
                labels
                    .as_object_mut()
                    .expect("checked above")
                    .insert(k.clone(), json!(v));
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
        image.insert("created".into(), json!(go_time(&self.created)));
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
        let config_bytes = serde_json::to_vec(&Value::Object(image)).expect("JSON serialises");
        let layers: Vec<NewLayer> = state
            .layers
            .iter()
            .map(|l| NewLayer {
                diff_id: l.diff_id.clone(),
                blob: l.blob.clone(),
                sizes: l.sizes,
            })
            .collect();
        let committed = commit_image(
            self.store,
            &config_bytes,
            &layers,
            &self.options.tags,
            &mut self.added,
        )?;
        self.step_number += 1;
        let n = self.step_number;
        self.say(format!("#{n} exporting to image"));
        self.say(format!("#{n} exporting layers done"));
        self.say(format!(
            "#{n} exporting manifest {} done",
            committed.manifest
        ));
        self.say(format!("#{n} exporting config {} done", committed.id));
        self.say(format!("#{n} writing image {} done", committed.id));
        for tag in &self.options.tags {
            self.say(format!("#{n} naming to {tag} done"));
        }
        self.say(format!("#{n} DONE"));
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
fn prune_untouched_copy_ups(upper: &Path, created_list: &Path, state: &StageState) {
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
