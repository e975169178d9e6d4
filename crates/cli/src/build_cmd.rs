//! `strata build`: Docker-compatible flags over `strata_build::build`, and the hidden
//! `strata build __sandbox-run SPEC` the RUN sandbox re-executes inside its namespaces.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use strata_build::{Event, Progress};
use strata_image::SaveFormat;
use strata_oci::{Platform, Reference};
use strata_store::Store;

use crate::build_progress::{BuildProgress, Mode, Outcome};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BuildArgs {
    #[command(subcommand)]
    internal: Option<Internal>,
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short, long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: "CONTEXT/Dockerfile")
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Set build-time variables (KEY=VALUE, or KEY to take the value from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Set type of progress output ("auto", "plain", "tty", "rawjson", "quiet")
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pull: bool,
    /// Output destination (format: "type=local,dest=path"; types local, tar, oci, docker,
    /// image; "-o DIR" is type=local, "-o -" a tar on stdout)
    #[arg(short, long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Check the Dockerfile and build arguments for problems without building
    #[arg(long)]
    check: bool,
    /// Additional build contexts (NAME=DIR, or NAME=docker-image://REF)
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// Networking mode for RUN instructions during the build ("default" = "host" here)
    #[arg(long, default_value = "default")]
    network: String,
    /// Target platform (only this host's platform is supported)
    #[arg(long)]
    platform: Option<String>,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or
    /// "id=mysecret,env=VARIABLE")
    #[arg(long = "secret", value_name = "id=..,src=..")]
    secrets: Vec<String>,
    /// Build context directory
    context: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Internal {
    /// Runs a RUN step inside the sandbox namespaces (used by the builder itself)
    #[command(name = "__sandbox-run", hide = true)]
    SandboxRun { spec: PathBuf },
}

pub fn build(root: &Path, args: BuildArgs) -> Result<()> {
    if let Some(Internal::SandboxRun { spec }) = &args.internal {
        let code = match strata_build::run_in_namespace(spec) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("strata sandbox: {e}");
                125
            }
        };
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    let Some(context) = args.context.clone() else {
        bail!("\"strata build\" requires exactly 1 argument: the build context directory");
    };
    // `strata build -`: the Dockerfile on stdin and no context (`docker build - < Dockerfile`).
    let stdin_context = context.as_os_str() == "-";
    if stdin_context && args.file.is_some() {
        bail!("a build context (tar) on standard input is not supported yet; only a Dockerfile");
    }
    if context.to_string_lossy().contains("://") || context.to_string_lossy().starts_with("git@") {
        bail!("remote build contexts (URLs, git) are not supported yet");
    }
    if !stdin_context && !context.is_dir() {
        bail!("unable to prepare context: path {:?} not found", context);
    }
    let mode = Mode::parse(&args.progress, args.quiet)?;
    let quiet = mode == Mode::Quiet;
    let dockerfile_from_stdin =
        stdin_context || args.file.as_ref().is_some_and(|f| f.as_os_str() == "-");
    let dockerfile = match &args.file {
        Some(f) if !dockerfile_from_stdin => f.clone(),
        _ => context.join("Dockerfile"),
    };
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.push((k.to_string(), v.to_string()));
    }
    let mut tags = Vec::new();
    for t in &args.tags {
        let reference = Reference::parse(t)
            .with_context(|| format!("invalid tag {t:?}: invalid reference format"))?
            .with_default_tag();
        tags.push(reference);
    }
    let outputs = args
        .outputs
        .iter()
        .map(|o| OutputSpec::parse(o))
        .collect::<Result<Vec<_>>>()?;
    for output in &outputs {
        for name in output.names() {
            if !tags.contains(name) {
                tags.push(name.clone());
            }
        }
    }
    let (build_contexts, image_contexts) = parse_build_contexts(&args.build_contexts)?;
    check_platform(args.platform.as_deref())?;
    match args.network.as_str() {
        "default" | "host" => {}
        other => bail!(
            "--network={other} is not supported yet (RUN uses the host network, as \"default\" \
             and \"host\" do; per step: RUN --network=none)"
        ),
    }
    if args.check {
        let text = read_dockerfile(&dockerfile, dockerfile_from_stdin)?;
        let name = if dockerfile_from_stdin {
            "Dockerfile".to_string()
        } else {
            display_name(&dockerfile)
        };
        return check_command(&name, &text, &build_args, args.target.as_deref());
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not an integer"))?,
        ),
        _ => None,
    };
    let exe = std::env::current_exe().context("locating the strata executable")?;
    if rustix::process::geteuid().is_root() && std::env::var_os(PRIVATE_MOUNTS_ENV).is_none() {
        return rerun_in_private_mount_namespace(&exe);
    }
    let interrupted = watch_interrupts();
    let store = Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
    // A Dockerfile on stdin goes to a file in the store's build area for the build to read
    // (removed afterwards; a leftover is removed by the next build as a stale build dir).
    let stdin_dockerfile = if dockerfile_from_stdin {
        let text = read_dockerfile(&dockerfile, true)?;
        Some(StdinDockerfile::write(&store, &text)?)
    } else {
        None
    };
    let dockerfile = stdin_dockerfile
        .as_ref()
        .map_or(dockerfile, |d| d.path.clone());
    let context = match &stdin_dockerfile {
        Some(d) if stdin_context => d.empty_context()?,
        _ => context,
    };
    let display = if stdin_dockerfile.is_some() {
        "Dockerfile".to_string()
    } else {
        display_name(&dockerfile)
    };
    // Build checks run first; `# check=error=true` stops the build before anything runs.
    // (An unreadable Dockerfile is reported by the build itself.)
    let text = std::fs::read_to_string(&dockerfile).unwrap_or_default();
    let warnings = lint(&text, &build_args, args.target.as_deref());
    if warnings.iter().any(|w| w.error) {
        let mut out = std::io::stderr().lock();
        print_check_warnings(&mut out, &display, &text, &warnings)?;
        bail!("lint violation found for rules: {}", rule_names(&warnings));
    }
    // A setting of the checks, not an argument of the Dockerfile (as in BuildKit).
    build_args.remove("BUILDKIT_DOCKERFILE_CHECK");
    let options = strata_build::BuildOptions {
        context,
        dockerfile,
        build_args,
        target: args.target.clone(),
        tags,
        labels,
        source_date_epoch,
        sandbox_exe: exe,
        no_cache: args.no_cache,
        secrets: parse_secrets(&args.secrets)?,
        build_contexts,
        image_contexts,
        pull: if args.pull {
            strata_build::PullPolicy::Always
        } else {
            strata_build::PullPolicy::Missing
        },
        image_source: Some(Arc::new(RegistrySource)),
    };
    let existed_before: std::collections::BTreeSet<strata_oci::Digest> =
        store.catalog()?.images.keys().cloned().collect();
    let progress = BuildProgress::new(mode);
    let result = strata_build::build(&store, &options, &progress);
    drop(stdin_dockerfile);
    let result = result.map_err(anyhow::Error::from).and_then(|output| {
        for output_spec in &outputs {
            output_spec.export(&store, &output, &progress)?;
        }
        Ok(output)
    });
    // A build that completed before the interrupt took effect stands (its image is stored
    // and tagged); one that did not is reported as canceled.
    let canceled = result.is_err() && interrupted.load(Ordering::SeqCst);
    progress.finish(match (&result, canceled) {
        (_, true) => Outcome::Canceled,
        (Ok(_), _) => Outcome::Finished,
        (Err(_), false) => Outcome::Failed,
    });
    if canceled {
        let _ = std::io::stdout().flush();
        eprintln!("ERROR: the build was interrupted (canceled)");
        std::process::exit(130);
    }
    let output = result?;
    // Only outputs asked for, and no name: the image does not stay in the store (as with
    // BuildKit's local/tar/oci exporters), unless it was there before.
    let image_output = outputs.is_empty() || outputs.iter().any(|o| o.keeps_image());
    if !image_output && options.tags.is_empty() && !existed_before.contains(&output.manifest) {
        strata_image::remove_image(&store, &output.image_id.to_string(), false)
            .context("removing the untagged image after exporting it")?;
    }
    if mode == Mode::RawJson {
        // Machine-readable progress stays one JSON object per line.
        for w in &warnings {
            let message = format!("{}: {} (line {})", w.rule, w.message, w.line);
            progress.event(&Event::Warning { message: &message });
        }
    } else if !quiet && !warnings.is_empty() {
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "\n {} warning{} found (use --check for details):",
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        )?;
        for w in &warnings {
            writeln!(err, " - {}: {} (line {})", w.rule, w.message, w.line)?;
        }
    }
    if let Some(path) = &args.iidfile {
        write_atomically(path, output.image_id.to_string().as_bytes())?;
    }
    // (Not after an archive streamed to stdout, which the ID would corrupt.)
    let stdout_taken = outputs.iter().any(OutputSpec::writes_stdout);
    if quiet && !stdout_taken {
        println!("{}", output.image_id);
    }
    Ok(())
}

/// `--secret` values, as Docker's buildx reads them: `type=file|env`, `id=`, `src=`/`source=`,
/// `env=`. Without a type, `env=` makes an environment secret and `src=` a file one; with
/// neither, an environment variable named like the id is used when set, else the file `id`.
fn parse_secrets(values: &[String]) -> Result<BTreeMap<String, strata_build::SecretSource>> {
    use strata_build::SecretSource;
    let mut secrets = BTreeMap::new();
    for value in values {
        let (mut kind, mut id, mut src, mut env) = (None, None, None, None);
        for field in value.split(',') {
            let (key, v) = field
                .split_once('=')
                .with_context(|| format!("--secret {value:?}: field {field:?} is not key=value"))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "type" => kind = Some(v.to_string()),
                "id" => id = Some(v.to_string()),
                "src" | "source" => src = Some(v.to_string()),
                "env" => env = Some(v.to_string()),
                other => bail!("--secret {value:?}: unexpected key {other:?}"),
            }
        }
        let id = match id.or_else(|| src.clone()).or_else(|| env.clone()) {
            Some(id) if !id.is_empty() => id,
            _ => bail!("--secret {value:?}: an id is required"),
        };
        let source = match kind.as_deref() {
            Some("file") => SecretSource::File(PathBuf::from(src.unwrap_or_else(|| id.clone()))),
            Some("env") => SecretSource::Env(env.or(src).unwrap_or_else(|| id.clone())),
            Some(other) => bail!("--secret {value:?}: unsupported type {other:?} (file or env)"),
            None => match (src, env) {
                (Some(_), Some(_)) => bail!("--secret {value:?}: give either src= or env="),
                (Some(src), None) => SecretSource::File(PathBuf::from(src)),
                (None, Some(env)) => SecretSource::Env(env),
                (None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
                (None, None) => SecretSource::File(PathBuf::from(&id)),
            },
        };
        if let SecretSource::File(path) = &source
            && !path.is_file()
        {
            bail!(
                "--secret {value:?}: secret file {} not found",
                path.display()
            );
        }
        secrets.insert(id, source);
    }
    Ok(secrets)
}

/// Set in the re-executed build, which runs in its own mount namespace.
const PRIVATE_MOUNTS_ENV: &str = "STRATA_BUILD_PRIVATE_MOUNTS";

/// Runs this same command again in a private mount namespace (util-linux `unshare`), so the
/// overlay mounts the build makes belong to it alone and vanish when it ends, however it ends.
fn rerun_in_private_mount_namespace(exe: &Path) -> Result<()> {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(PRIVATE_MOUNTS_ENV, "1");
    let _ = std::io::stdout().flush();
    // exec, not spawn: `unshare` without --fork execs strata in place, so the build keeps
    // this process's ID and a signal sent to it (Ctrl-C, kill) reaches the build itself.
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    Err(error).context("running the build in a private mount namespace (util-linux unshare)")
}

/// The largest Dockerfile read from standard input.
const MAX_STDIN_DOCKERFILE: u64 = 16 << 20;

/// The Dockerfile's text: from `path`, or from standard input (`-f -`), bounded in size.
fn read_dockerfile(path: &Path, from_stdin: bool) -> Result<String> {
    if !from_stdin {
        return std::fs::read_to_string(path)
            .with_context(|| format!("reading the Dockerfile {}", path.display()));
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN_DOCKERFILE + 1)
        .read_to_end(&mut bytes)
        .context("reading the Dockerfile from standard input")?;
    if bytes.len() as u64 > MAX_STDIN_DOCKERFILE {
        bail!("the Dockerfile on standard input is larger than {MAX_STDIN_DOCKERFILE} bytes");
    }
    String::from_utf8(bytes).context("the Dockerfile on standard input is not UTF-8")
}

/// The name a Dockerfile is shown under in check output (`Dockerfile`, `Dockerfile.dev`).
fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A Dockerfile read from standard input, written where the build can read it.
struct StdinDockerfile {
    dir: PathBuf,
    path: PathBuf,
}

impl StdinDockerfile {
    fn write(store: &Store, text: &str) -> Result<StdinDockerfile> {
        // Named like the builder's own build dirs (`PID-...`), so a leftover is removed by
        // the next build once this process is gone.
        let dir = store
            .root()
            .join("build")
            .join(format!("{}-stdin-dockerfile", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("Dockerfile");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(StdinDockerfile { dir, path })
    }

    /// An empty directory beside it: the context of `strata build -`.
    fn empty_context(&self) -> Result<PathBuf> {
        let context = self.dir.join("context");
        std::fs::create_dir_all(&context)
            .with_context(|| format!("creating {}", context.display()))?;
        Ok(context)
    }
}

impl Drop for StdinDockerfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Named contexts from `--build-context NAME=...`: local directories, and images
/// (`docker-image://REF`).
type NamedContexts = (BTreeMap<String, PathBuf>, BTreeMap<String, String>);

/// `--build-context NAME=DIR|docker-image://REF`.
fn parse_build_contexts(specs: &[String]) -> Result<NamedContexts> {
    let mut dirs = BTreeMap::new();
    let mut images = BTreeMap::new();
    for spec in specs {
        let Some((name, value)) = spec.split_once('=') else {
            bail!("invalid --build-context {spec:?}: expected NAME=PATH");
        };
        if name.is_empty() {
            bail!("invalid --build-context {spec:?}: the name is empty");
        }
        if dirs.contains_key(name) || images.contains_key(name) {
            bail!("--build-context {name} is given twice");
        }
        if let Some(image) = value.strip_prefix("docker-image://") {
            Reference::parse(image)
                .with_context(|| format!("--build-context {name}={value}: invalid image"))?;
            images.insert(name.to_string(), image.to_string());
            continue;
        }
        if let Some(scheme) = ["oci-layout://", "target:", "http://", "https://", "git@"]
            .iter()
            .find(|s| value.starts_with(**s))
        {
            bail!(
                "--build-context {name}={value}: {scheme} contexts are not supported yet \
                 (local directories and docker-image:// are)"
            );
        }
        let path = PathBuf::from(value);
        if !path.is_dir() {
            bail!("--build-context {name}={value}: not a directory");
        }
        let path = path
            .canonicalize()
            .with_context(|| format!("--build-context {name}={value}"))?;
        dirs.insert(name.to_string(), path);
    }
    Ok((dirs, images))
}

/// `--platform`: only the host's platform can be built for now.
fn check_platform(platform: Option<&str>) -> Result<()> {
    let Some(text) = platform else {
        return Ok(());
    };
    let host = Platform::host();
    for one in text.split(',') {
        let wanted =
            Platform::parse(one.trim()).with_context(|| format!("invalid --platform {one:?}"))?;
        let same_variant = wanted.variant.is_none() || wanted.variant == host.variant;
        if wanted.os != host.os || wanted.architecture != host.architecture || !same_variant {
            bail!(
                "--platform={one}: building for another platform is not supported yet (this \
                 host is {}/{})",
                host.os,
                host.architecture
            );
        }
    }
    Ok(())
}

/// The planner's options for checks: the host platform, the build args and the target.
fn plan_options(
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> strata_dockerfile::PlanOptions {
    let host = Platform::host();
    let platform = strata_dockerfile::Platform {
        os: host.os.clone(),
        arch: host.architecture.clone(),
        variant: host.variant.clone(),
    };
    strata_dockerfile::PlanOptions {
        build_args: build_args.clone(),
        target: target.map(str::to_string),
        build_platform: platform.clone(),
        target_platform: platform,
        image_env: BTreeMap::new(),
    }
}

/// Parses `df` with the check settings of `BUILDKIT_DOCKERFILE_CHECK` (a build arg that
/// overrides the `# check=` directive, as in BuildKit).
fn parse_for_check(
    text: &str,
    build_args: &BTreeMap<String, String>,
) -> Result<strata_dockerfile::Dockerfile, strata_dockerfile::ParseError> {
    let mut df = strata_dockerfile::parse(text)?;
    if let Some(value) = build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        df.check = strata_dockerfile::parser::parse_check_directive(value);
    }
    Ok(df)
}

/// The build checks of a Dockerfile that parses (none otherwise: the build reports that).
fn lint(
    text: &str,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Vec<strata_dockerfile::Warning> {
    let Ok(df) = parse_for_check(text, build_args) else {
        return Vec::new();
    };
    let mut warnings = strata_dockerfile::check(&df, &plan_options(build_args, target));
    warnings.sort_by_key(|w| w.line);
    warnings
}

fn rule_names(warnings: &[strata_dockerfile::Warning]) -> String {
    let mut names: Vec<&str> = warnings.iter().map(|w| w.rule).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// `strata build --check`: parse, plan the stages and arguments, run the checks and report
/// them as `docker build --check` does (on stdout); exit 1 when there are any. Runs nothing.
fn check_command(
    name: &str,
    text: &str,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<()> {
    let df = parse_for_check(text, build_args)?;
    let options = plan_options(build_args, target);
    // Checks first, so that a Dockerfile the planner rejects still gets its warnings.
    let mut warnings = strata_dockerfile::check(&df, &options);
    warnings.sort_by_key(|w| w.line);
    let planned = strata_dockerfile::plan(&df, &options);
    let mut out = std::io::stdout().lock();
    if warnings.is_empty() {
        planned?;
        writeln!(out, "Check complete, no warnings found.")?;
        return Ok(());
    }
    if warnings.len() == 1 {
        writeln!(out, "Check complete, 1 warning has been found!")?;
    } else {
        writeln!(
            out,
            "Check complete, {} warnings have been found!",
            warnings.len()
        )?;
    }
    print_check_warnings(&mut out, name, text, &warnings)?;
    out.flush()?;
    drop(out);
    planned?;
    if warnings.iter().any(|w| w.error) {
        bail!("lint violation found for rules: {}", rule_names(&warnings));
    }
    std::process::exit(1);
}

/// Each warning as BuildKit prints it: rule and documentation URL, the message, and the source
/// lines around it with the offending one marked.
fn print_check_warnings(
    out: &mut dyn Write,
    name: &str,
    text: &str,
    warnings: &[strata_dockerfile::Warning],
) -> Result<()> {
    let lines: Vec<&str> = text.split('\n').collect();
    for w in warnings {
        writeln!(out, "\nWARNING: {} - {}", w.rule, w.url)?;
        writeln!(out, "{}", w.message)?;
        if w.line == 0 || w.line > lines.len() {
            continue;
        }
        // Two lines of context either side, as BuildKit shows a one-line range.
        let first = w.line.saturating_sub(2).max(1);
        let last = (w.line + 2).min(lines.len());
        writeln!(out, "{name}:{}\n--------------------", w.line)?;
        for n in first..=last {
            let mark = if n == w.line { ">>>" } else { "   " };
            writeln!(out, " {n:>3} | {mark} {}", lines[n - 1])?;
        }
        writeln!(out, "--------------------")?;
    }
    Ok(())
}

/// Base images the store lacks, pulled with strata's registry client as `strata pull` does
/// (registries.json mirrors first, credentials from the Docker config).
#[derive(Debug)]
struct RegistrySource;

impl strata_build::ImageSource for RegistrySource {
    fn pull(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
        log: &dyn Fn(&str),
    ) -> std::result::Result<(), String> {
        let parsed = Reference::parse(reference)
            .map_err(|e| format!("invalid reference {reference:?}: {e}"))?;
        let parsed = if parsed.digest().is_some() {
            parsed
        } else {
            parsed.with_default_tag()
        };
        // The name the Dockerfile used is recorded, so the image resolves under it (a pull by
        // digest records no tag, as Docker does).
        let names = if parsed.tag().is_some() {
            vec![parsed.without_digest()]
        } else {
            Vec::new()
        };
        let (sender, receiver) = std::sync::mpsc::channel::<String>();
        let observer: strata_client::LayerObserver = {
            let sender = Mutex::new(sender.clone());
            Arc::new(move |digest: &strata_oci::Digest, status| {
                let status = match status {
                    strata_client::LayerStatus::Exists => "already exists",
                    strata_client::LayerStatus::Downloaded => "done",
                };
                let _ = sender
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send(format!("{digest} {status}"));
            })
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let options = strata_client::ClientOptions::default();
        let task =
            strata_client::config::with_pull_sources(parsed.domain(), &options, |registry| {
                let (names, observer) = (names.clone(), Some(observer.clone()));
                let (parsed, platform) = (&parsed, platform);
                async move {
                    strata_client::pull(&registry, store, parsed, platform, names, observer).await
                }
            });
        log(&format!("resolve {parsed}"));
        drop(sender);
        let pulled = runtime.block_on(task);
        // Layer lines as the pull settled them (the observer runs on the runtime's threads).
        for line in receiver.try_iter() {
            log(&line);
        }
        let pulled = pulled.map_err(|e| e.to_string())?;
        log(&format!(
            "{parsed}@{}: {}",
            pulled.digest,
            if pulled.recorded.changed {
                "downloaded newer image"
            } else {
                "image is up to date"
            }
        ));
        Ok(())
    }
}

/// How long an interrupted build may take to clean up before the process exits anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Watches for SIGINT/SIGTERM. On one: the returned flag is set and the RUN sandboxes (this
/// process's children, each a util-linux `unshare --kill-child` whose PID namespace dies with
/// it) are killed, again and again, so the running steps fail and the build unwinds through
/// its normal cleanup (mounts detached, build dir removed, nothing tagged). Should cleanup
/// hang, the process exits after [`CANCEL_GRACE`]: its mounts live in its private mount
/// namespace and vanish, and the next build removes the build dir.
fn watch_interrupts() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return flag;
    };
    // Registered here, before the build starts, so no early signal slips past.
    let signals = runtime.block_on(async {
        let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        interrupt.ok().zip(terminate.ok())
    });
    let Some((mut interrupt, mut terminate)) = signals else {
        return flag;
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        set.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + CANCEL_GRACE;
        while Instant::now() < deadline {
            kill_children();
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("ERROR: the build was interrupted and did not stop in time; exiting");
        std::process::exit(130);
    });
    flag
}

/// SIGKILLs every child process of this process (any thread's).
fn kill_children() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomically(path, |file| Ok(file.write_all(bytes)?))
}

/// Creates `path` through a temporary sibling that `fill` writes, synced, then renamed, so a
/// failed or interrupted write leaves nothing at `path`.
fn write_file_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let temp = temp_sibling(path);
    let result = (|| {
        let file =
            std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        let mut writer = std::io::BufWriter::new(&file);
        fill(&mut writer)?;
        writer.flush()?;
        drop(writer);
        file.sync_all()?;
        std::fs::rename(&temp, path)
            .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// `.NAME.strata-tmp-PID` next to `path`.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.strata-tmp-{}", std::process::id()))
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OutputSpec {
    /// The image's root filesystem into a directory.
    Local { dest: PathBuf },
    /// The root filesystem as one tar.
    Tar { dest: Destination },
    /// The image as an archive: OCI layout, or Docker's `docker load` format.
    Archive {
        format: SaveFormat,
        dest: Destination,
        names: Vec<Reference>,
    },
    /// Into the store (the default), under `name=` as well.
    Image { names: Vec<Reference> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    File(PathBuf),
    Stdout,
}

impl OutputSpec {
    /// Parses `--output` as buildx does: `type=TYPE,dest=..,name=..`; a bare path is
    /// `type=local,dest=PATH`, `-` a tar on stdout.
    fn parse(text: &str) -> Result<OutputSpec> {
        if text == "-" {
            return Ok(OutputSpec::Tar {
                dest: Destination::Stdout,
            });
        }
        if !text.contains('=') {
            if text.is_empty() {
                bail!("invalid --output \"\": empty");
            }
            return Ok(OutputSpec::Local {
                dest: PathBuf::from(text),
            });
        }
        let mut kind = None;
        let mut dest = None;
        let mut names = Vec::new();
        for field in text.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                bail!("invalid --output {text:?}: {field:?} is not KEY=VALUE");
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "type" => kind = Some(value.to_string()),
                "dest" => dest = Some(value.to_string()),
                "name" => {
                    let name = Reference::parse(value)
                        .with_context(|| format!("invalid --output name {value:?}"))?
                        .with_default_tag();
                    names.push(name);
                }
                other => bail!("invalid --output {text:?}: unsupported attribute {other:?}"),
            }
        }
        let Some(kind) = kind else {
            bail!("invalid --output {text:?}: type is required (local, tar, oci, docker, image)");
        };
        let file_dest = |dest: Option<String>| -> Result<Destination> {
            match dest.as_deref() {
                None | Some("") => bail!("--output type={kind}: dest=FILE is required"),
                Some("-") => Ok(Destination::Stdout),
                Some(path) => Ok(Destination::File(PathBuf::from(path))),
            }
        };
        let no_names = |names: &[Reference]| -> Result<()> {
            if names.is_empty() {
                Ok(())
            } else {
                bail!("--output type={kind}: name= applies to oci, docker and image outputs")
            }
        };
        Ok(match kind.as_str() {
            "local" => {
                no_names(&names)?;
                match dest.as_deref() {
                    None | Some("") => bail!("--output type=local: dest=DIR is required"),
                    Some("-") => bail!("--output type=local: dest must be a directory, not \"-\""),
                    Some(path) => OutputSpec::Local {
                        dest: PathBuf::from(path),
                    },
                }
            }
            "tar" => {
                no_names(&names)?;
                OutputSpec::Tar {
                    dest: file_dest(dest)?,
                }
            }
            "oci" | "docker" => OutputSpec::Archive {
                format: if kind == "oci" {
                    SaveFormat::Oci
                } else {
                    SaveFormat::Docker
                },
                dest: file_dest(dest)?,
                names,
            },
            "image" => {
                if dest.is_some() {
                    bail!("--output type=image takes no dest (the image goes into the store)");
                }
                OutputSpec::Image { names }
            }
            "registry" => {
                bail!("--output type=registry is not supported yet: build, then `strata push`")
            }
            other => bail!(
                "invalid --output {text:?}: unknown type {other:?} (local, tar, oci, docker, image)"
            ),
        })
    }

    /// Names the image is stored and archived under.
    fn names(&self) -> &[Reference] {
        match self {
            OutputSpec::Archive { names, .. } | OutputSpec::Image { names } => names,
            _ => &[],
        }
    }

    fn writes_stdout(&self) -> bool {
        matches!(
            self,
            OutputSpec::Tar {
                dest: Destination::Stdout
            } | OutputSpec::Archive {
                dest: Destination::Stdout,
                ..
            }
        )
    }

    /// Whether this output is the store itself.
    fn keeps_image(&self) -> bool {
        matches!(self, OutputSpec::Image { .. })
    }

    /// Writes the built image to this output, as a progress step of its own.
    fn export(
        &self,
        store: &Store,
        built: &strata_build::BuildOutput,
        progress: &BuildProgress,
    ) -> Result<()> {
        let name = match self {
            OutputSpec::Local { .. } => "exporting to client directory",
            OutputSpec::Tar { .. } => "exporting to client tarball",
            OutputSpec::Archive {
                format: SaveFormat::Oci,
                ..
            } => "exporting to oci image format",
            OutputSpec::Archive { .. } => "exporting to docker image format",
            OutputSpec::Image { .. } => return Ok(()),
        };
        let vertex = progress.next_vertex();
        let started = Instant::now();
        progress.event(&Event::Started { vertex, name });
        let id = built.image_id.to_string();
        let result = match self {
            OutputSpec::Local { dest } => export_local(store, &id, dest),
            OutputSpec::Tar { dest } => write_destination(dest, |out| {
                strata_image::export(store, &id, out)?;
                Ok(())
            }),
            OutputSpec::Archive { format, dest, .. } => write_destination(dest, |out| {
                strata_image::save(store, std::slice::from_ref(&id), *format, out)?;
                Ok(())
            }),
            OutputSpec::Image { .. } => Ok(()),
        };
        match &result {
            Ok(()) => {
                let line = match self {
                    OutputSpec::Local { .. } => "copying files done",
                    _ => "sending tarball done",
                };
                progress.event(&Event::Log {
                    vertex,
                    elapsed: started.elapsed(),
                    line,
                });
                progress.event(&Event::Done {
                    vertex,
                    elapsed: started.elapsed(),
                });
            }
            Err(e) => progress.event(&Event::Error {
                vertex,
                message: &format!("{e:#}"),
            }),
        }
        result
    }
}

/// Streams an archive to a file (atomically) or to stdout (never to a terminal).
fn write_destination(
    dest: &Destination,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match dest {
        Destination::Stdout => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!(
                    "refusing to write a tar archive to the terminal: redirect stdout or use dest=FILE"
                );
            }
            let mut out = std::io::BufWriter::new(stdout.lock());
            fill(&mut out)?;
            out.flush()?;
            Ok(())
        }
        Destination::File(path) => write_file_atomically(path, |out| fill(out)),
    }
}

/// The image's root filesystem into `dest`: unpacked beside it first, then moved in, so a
/// failure leaves `dest` as it was. Into an existing directory the files are merged,
/// replacing same-named ones (as BuildKit's local exporter does).
fn export_local(store: &Store, id: &str, dest: &Path) -> Result<()> {
    if dest.exists() && !dest.is_dir() {
        bail!(
            "--output type=local: {} exists and is not a directory",
            dest.display()
        );
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let temp = temp_sibling(dest);
    let _ = std::fs::remove_dir_all(&temp);
    let result = (|| {
        strata_image::unpack(store, id, &temp)?;
        if dest.exists() {
            merge_into(&temp, dest)
        } else {
            std::fs::rename(&temp, dest)
                .with_context(|| format!("renaming {} to {}", temp.display(), dest.display()))
        }
    })();
    let _ = std::fs::remove_dir_all(&temp);
    result.with_context(|| format!("exporting the root filesystem to {}", dest.display()))
}

/// Moves every entry of `from` into `to`: directories merge, anything else replaces.
fn merge_into(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let source_is_dir = entry.file_type()?.is_dir();
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() && source_is_dir => merge_into(&source, &target)?,
            Ok(meta) => {
                if meta.is_dir() {
                    std::fs::remove_dir_all(&target)?;
                } else {
                    std::fs::remove_file(&target)?;
                }
                std::fs::rename(&source, &target)?;
            }
            Err(_) => std::fs::rename(&source, &target)
                .with_context(|| format!("moving {} to {}", source.display(), target.display()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_as_buildx_reads_them() {
        let reference = |s: &str| Reference::parse(s).unwrap().with_default_tag();
        let cases = [
            (
                "out-dir",
                OutputSpec::Local {
                    dest: "out-dir".into(),
                },
            ),
            (
                "-",
                OutputSpec::Tar {
                    dest: Destination::Stdout,
                },
            ),
            (
                "type=local,dest=/tmp/x",
                OutputSpec::Local {
                    dest: "/tmp/x".into(),
                },
            ),
            (
                "type=tar,dest=-",
                OutputSpec::Tar {
                    dest: Destination::Stdout,
                },
            ),
            (
                "type=oci,dest=a.tar,name=app",
                OutputSpec::Archive {
                    format: SaveFormat::Oci,
                    dest: Destination::File("a.tar".into()),
                    names: vec![reference("app")],
                },
            ),
            (
                "type=docker,name=a:1,dest=b.tar,name=b",
                OutputSpec::Archive {
                    format: SaveFormat::Docker,
                    dest: Destination::File("b.tar".into()),
                    names: vec![reference("a:1"), reference("b")],
                },
            ),
            (
                "type=image,name=x",
                OutputSpec::Image {
                    names: vec![reference("x")],
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(OutputSpec::parse(text).unwrap(), expected, "{text}");
        }
        for bad in [
            "",
            "type=local,dest=-",
            "type=docker",
            "type=image,dest=x",
            "type=registry,name=x",
            "type=oci,dest=x,name=Bad Name",
        ] {
            assert!(OutputSpec::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn check_excerpts_show_two_lines_around_the_problem() {
        let text = "FROM a\nRUN b\nCMD c\nLABEL d=e\nUSER f\n";
        let warning = strata_dockerfile::Warning {
            rule: "JSONArgsRecommended",
            description: "",
            url: "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/".into(),
            message: "JSON arguments recommended for CMD".into(),
            line: 3,
            error: false,
        };
        let mut out = Vec::new();
        print_check_warnings(&mut out, "Dockerfile", text, &[warning]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n\
             JSON arguments recommended for CMD\n\
             Dockerfile:3\n\
             --------------------\n   \
             1 |     FROM a\n   \
             2 |     RUN b\n   \
             3 | >>> CMD c\n   \
             4 |     LABEL d=e\n   \
             5 |     USER f\n\
             --------------------\n"
        );
    }
}
