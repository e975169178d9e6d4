//! `strata build`: Docker-compatible flags over `strata_build::build`, and the hidden
//! `strata build __sandbox-run SPEC` the RUN sandbox re-executes inside its namespaces.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use strata_oci::Reference;
use strata_store::Store;

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
    /// Set type of progress output ("auto", "plain", "tty", "quiet"); always rendered plain
    #[arg(long, default_value = "auto")]
    progress: String,
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
    if context.as_os_str() == "-" {
        bail!("building from a context on standard input is not supported yet");
    }
    if context.to_string_lossy().contains("://") || context.to_string_lossy().starts_with("git@") {
        bail!("remote build contexts (URLs, git) are not supported yet");
    }
    if !context.is_dir() {
        bail!("unable to prepare context: path {:?} not found", context);
    }
    let quiet = args.quiet || args.progress == "quiet";
    match args.progress.as_str() {
        "auto" | "plain" | "tty" | "quiet" => {}
        other => bail!("invalid --progress {other:?}: expected auto, plain, tty or quiet"),
    }
    let dockerfile = match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            bail!("-f -: reading the Dockerfile from standard input is not supported yet")
        }
        Some(f) => f.clone(),
        None => context.join("Dockerfile"),
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
        build_contexts: BTreeMap::new(),
    };
    let store = Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
    let output = if quiet {
        strata_build::build(&store, &options, &strata_build::NoProgress)?
    } else {
        let progress = strata_build::PlainProgress::new(std::io::stderr());
        strata_build::build(&store, &options, &progress)?
    };
    if let Some(path) = &args.iidfile {
        std::fs::write(path, output.image_id.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if quiet {
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
    let status = command
        .status()
        .context("running the build in a private mount namespace (util-linux unshare)")?;
    let _ = std::io::stdout().flush();
    std::process::exit(status.code().unwrap_or(130));
}
