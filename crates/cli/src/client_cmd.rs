//! `strata pull|push|copy|login|logout|tags` and `inspect docker://REF`: the registry client
//! (crates/client), with Docker-like output.

// Until main.rs dispatches push/copy/login/logout/tags/inspect-remote, their entry points are
// unused in the binary. Remove once wired.

use std::io::{self, BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use serde_json::{Value, json};
use strata_client::credentials::{self, Credentials};
use strata_client::location::parse_registry_reference;
use strata_client::{BlobPush, ClientOptions, LayerStatus, Location, Registry};
use strata_oci::{Platform, Reference};
use strata_store::Store;

fn open(root: &Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("opening the store at {}", root.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Options every registry command shares.
#[derive(Args, Clone)]
pub struct RegistryOptions {
    /// Require HTTPS with a verified certificate (false: accept any certificate, allow HTTP)
    #[arg(long = "tls-verify", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
    /// Blobs transferred at the same time
    #[arg(long, default_value_t = 3, value_name = "N")]
    parallel: usize,
    /// push: gzip uncompressed layers (the pushed manifest then differs from the stored one);
    /// false pushes byte for byte. copy is always byte for byte
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    compress: bool,
}

impl RegistryOptions {
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            insecure: !self.tls_verify,
            parallel: self.parallel.max(1),
            compress_layers: self.compress,
            ..ClientOptions::default()
        }
    }
}

/// Progress bars per blob on a terminal (nothing otherwise).
struct Bars(std::sync::Arc<crate::progress::TransferBars>);

impl strata_client::TransferObserver for Bars {
    fn started(&self, digest: &strata_oci::Digest, total: u64) {
        self.0.start(&digest.hex()[..12], total);
    }
    fn advanced(&self, digest: &strata_oci::Digest, bytes: u64) {
        self.0.advance(&digest.hex()[..12], bytes);
    }
    fn restarted(&self, digest: &strata_oci::Digest) {
        self.0.reset(&digest.hex()[..12]);
    }
    fn finished(&self, digest: &strata_oci::Digest) {
        self.0.finish(&digest.hex()[..12]);
    }
}

/// Bars for a transfer unless `quiet` or stderr is not a terminal; sets them in `options`.
fn transfer_bars(
    quiet: bool,
    verb: &'static str,
    options: &mut ClientOptions,
) -> Option<std::sync::Arc<crate::progress::TransferBars>> {
    let bars = std::sync::Arc::new(
        (!quiet)
            .then(|| crate::progress::TransferBars::on_terminal(verb))
            .flatten()?,
    );
    options.progress = Some(strata_client::Progress(std::sync::Arc::new(Bars(
        bars.clone(),
    ))));
    Some(bars)
}

fn parse_platform(platform: Option<&str>) -> Result<Platform> {
    match platform {
        Some(p) => Platform::parse(p).with_context(|| format!("invalid --platform {p:?}")),
        None => Ok(Platform::host()),
    }
}

/// A registry reference, with or without `docker://`; `latest` when neither tag nor digest.
fn registry_reference(input: &str) -> Result<Reference> {
    let text = input.strip_prefix("docker://").unwrap_or(input);
    Ok(parse_registry_reference(input, text)?)
}

#[derive(Args)]
pub struct PullArgs {
    /// NAME[:TAG|@DIGEST]
    pub reference: String,
    /// Platform to pull from a multi-platform image (os/arch[/variant]; default: this host)
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

pub fn pull(root: &Path, args: PullArgs) -> Result<()> {
    let reference = registry_reference(&args.reference)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let store = open(root)?;
    let out = io::stdout();
    let label = reference.tag().map_or_else(
        || {
            reference
                .digest()
                .map(|d| d.to_string())
                .unwrap_or_default()
        },
        str::to_string,
    );
    let familiar_repo = reference.familiar_name();
    let repo_path = familiar_repo
        .split_once('/')
        .filter(|_| reference.domain() != "docker.io")
        .map_or(familiar_repo.as_str(), |(_, p)| p);
    if !args.quiet {
        writeln!(
            out.lock(),
            "{label}: Pulling from {}",
            if reference.domain() == "docker.io" {
                reference.path()
            } else {
                repo_path
            }
        )?;
    }
    // Tags are what the user named; a pull by digest records no tag, as Docker does.
    let names = if reference.tag().is_some() {
        vec![reference.without_digest()]
    } else {
        Vec::new()
    };
    let mut options = args.registry.client_options();
    let bars = transfer_bars(args.quiet, "Downloading", &mut options);
    // Layer lines as each layer is settled, as Docker prints them.
    let observer: Option<strata_client::LayerObserver> = (!args.quiet).then(|| {
        let bars = bars.clone();
        std::sync::Arc::new(move |digest: &strata_oci::Digest, status: LayerStatus| {
            let status = match status {
                LayerStatus::Exists => "Already exists",
                LayerStatus::Downloaded => "Pull complete",
            };
            let line = format!("{}: {status}", &digest.hex()[..12]);
            match &bars {
                Some(bars) => bars.println(&line),
                None => {
                    let _ = writeln!(io::stdout().lock(), "{line}");
                }
            }
        }) as strata_client::LayerObserver
    });
    // The registry's mirrors (registries.json) first, then the registry itself.
    let pulled = runtime()?.block_on(strata_client::config::with_pull_sources(
        reference.domain(),
        &options,
        |registry| {
            let (names, observer) = (names.clone(), observer.clone());
            let (store, reference, platform) = (&store, &reference, &platform);
            async move {
                strata_client::pull(&registry, store, reference, platform, names, observer).await
            }
        },
    ));
    if let Some(bars) = &bars {
        bars.clear();
    }
    let pulled = pulled?;
    let mut out = out.lock();
    if args.quiet {
        writeln!(out, "{}", reference.familiar_string())?;
        return Ok(());
    }
    writeln!(out, "Digest: {}", pulled.digest)?;
    if pulled.recorded.changed {
        writeln!(
            out,
            "Status: Downloaded newer image for {}",
            reference.familiar_string()
        )?;
    } else {
        writeln!(
            out,
            "Status: Image is up to date for {}",
            reference.familiar_string()
        )?;
    }
    writeln!(out, "{reference}")?;
    Ok(())
}

#[derive(Args)]
pub struct PushArgs {
    /// Local image to push (NAME[:TAG]); it goes to the registry its name says
    pub image: String,
    /// Push to this reference instead (docker://NAME[:TAG] or NAME[:TAG])
    pub destination: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

pub fn push(root: &Path, args: PushArgs) -> Result<()> {
    let destination = registry_reference(args.destination.as_deref().unwrap_or(&args.image))?;
    let store = open(root)?;
    let mut out = io::stdout().lock();
    if !args.quiet {
        writeln!(
            out,
            "The push refers to repository [{}]",
            destination.name()
        )?;
    }
    let mut options = args.registry.client_options();
    let bars = transfer_bars(args.quiet, "Pushing", &mut options);
    let pushed = runtime()?.block_on(async {
        let registry = Registry::connect(destination.domain(), options).await?;
        strata_client::push(&registry, &store, &args.image, &destination).await
    });
    if let Some(bars) = &bars {
        bars.clear();
    }
    let pushed = pushed?;
    if args.quiet {
        writeln!(out, "{}@{}", destination.name(), pushed.digest)?;
        return Ok(());
    }
    for (digest, done) in &pushed.blobs {
        let status = match (done, &pushed.mounted_from) {
            (BlobPush::Uploaded, _) => "Pushed".to_string(),
            (BlobPush::Mounted, Some(from)) => format!("Mounted from {from}"),
            _ => "Layer already exists".to_string(),
        };
        writeln!(out, "{}: {status}", &digest.hex()[..12])?;
    }
    let tag = destination.tag().unwrap_or(strata_oci::DEFAULT_TAG);
    writeln!(
        out,
        "{tag}: digest: {} size: {}",
        pushed.digest, pushed.size
    )?;
    Ok(())
}

#[derive(Args)]
pub struct CopyArgs {
    /// Source: docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF],
    /// or a local image
    pub source: String,
    /// Destination, in the same forms
    pub destination: String,
    /// Platform to copy from a multi-platform source (default: this host)
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress output
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

pub fn copy(root: &Path, args: CopyArgs) -> Result<()> {
    let source = Location::parse(&args.source)?;
    let destination = Location::parse(&args.destination)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let store = open(root)?;
    let mut options = args.registry.client_options();
    let bars = transfer_bars(args.quiet, "Copying", &mut options);
    let copied = runtime()?.block_on(strata_client::copy(
        &store,
        &source,
        &destination,
        &options,
        &platform,
    ));
    if let Some(bars) = &bars {
        bars.clear();
    }
    let copied = copied?;
    if !args.quiet {
        writeln!(
            io::stdout().lock(),
            "Copied {source} to {destination}: {}",
            copied.digest
        )?;
    }
    Ok(())
}

#[derive(Args)]
pub struct LoginArgs {
    /// Registry host[:port] (default: Docker Hub)
    pub server: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

fn server_domain(server: Option<&str>) -> String {
    let server = server.unwrap_or("docker.io");
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = server.split('/').next().unwrap_or(server);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.into(),
    }
}

pub fn login(_root: &Path, args: LoginArgs) -> Result<()> {
    let domain = server_domain(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => bail!("a username is required (-u USERNAME)"),
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("a password is required (-p PASSWORD or --password-stdin)"),
    };
    let credentials = Credentials { username, password };
    let mut options = args.registry.client_options();
    options.credentials = Some(credentials.clone());
    runtime()?.block_on(async {
        let registry = Registry::connect(&domain, options).await?;
        registry.check_login().await
    })?;
    credentials::store(&domain, &credentials)?;
    writeln!(io::stdout().lock(), "Login Succeeded")?;
    Ok(())
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub)
    pub server: Option<String>,
}

pub fn logout(_root: &Path, args: LogoutArgs) -> Result<()> {
    let domain = server_domain(args.server.as_deref());
    let key = credentials::registry_key(&domain);
    if credentials::remove(&domain)? {
        writeln!(io::stdout().lock(), "Removing login credentials for {key}")?;
    } else {
        writeln!(io::stdout().lock(), "Not logged in to {key}")?;
    }
    Ok(())
}

#[derive(Args)]
pub struct TagsArgs {
    /// docker://REPOSITORY
    pub repository: String,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

pub fn tags(_root: &Path, args: TagsArgs) -> Result<()> {
    let Some(text) = args.repository.strip_prefix("docker://") else {
        bail!("tags needs a registry repository: docker://NAME");
    };
    let reference =
        Reference::parse(text).with_context(|| format!("invalid reference {text:?}"))?;
    let tags = runtime()?.block_on(async {
        let registry =
            Registry::connect(reference.domain(), args.registry.client_options()).await?;
        registry.list_tags(reference.path()).await
    })?;
    let mut out = io::stdout().lock();
    for tag in tags {
        writeln!(out, "{tag}")?;
    }
    Ok(())
}

#[derive(Args)]
pub struct RemoteInspectArgs {
    /// docker://NAME[:TAG|@DIGEST]
    pub reference: String,
    /// Print the manifest (or index) exactly as the registry serves it
    #[arg(long, conflicts_with = "config")]
    pub raw: bool,
    /// Print the image's config
    #[arg(long)]
    pub config: bool,
    /// Platform to describe from a multi-platform image (default: this host)
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

/// `strata inspect [--raw|--config] docker://REF` (the local `inspect` hands such arguments
/// here), with default registry options.
pub fn inspect_docker_reference(
    root: &Path,
    reference: &str,
    raw: bool,
    config: bool,
) -> Result<()> {
    inspect_remote(
        root,
        RemoteInspectArgs {
            reference: reference.to_string(),
            raw,
            config,
            platform: None,
            registry: RegistryOptions {
                tls_verify: true,
                parallel: 3,
                compress: true,
            },
        },
    )
}

pub fn inspect_remote(_root: &Path, args: RemoteInspectArgs) -> Result<()> {
    let reference = registry_reference(&args.reference)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let output = runtime()?.block_on(async {
        let registry =
            Registry::connect(reference.domain(), args.registry.client_options()).await?;
        let (target, manifest) =
            strata_client::pull::resolve_manifest(&registry, &reference, &platform).await?;
        if args.raw {
            return Ok::<_, anyhow::Error>(target.bytes);
        }
        let parsed =
            match strata_image::document::parse_document(&manifest.bytes, &manifest.digest)? {
                strata_image::document::Document::Manifest(m) => m,
                strata_image::document::Document::Index(_) => bail!("{reference}: nested index"),
            };
        let config_bytes = registry
            .fetch_small_blob(
                reference.path(),
                &parsed.config,
                strata_image::document::MAX_CONFIG_BYTES as usize,
            )
            .await?;
        if args.config {
            return Ok(config_bytes);
        }
        let config: Value =
            serde_json::from_slice(&config_bytes).context("parsing the image config")?;
        let tags = registry
            .list_tags(reference.path())
            .await
            .unwrap_or_default();
        let value = json!({
            "Name": reference.name(),
            "Digest": target.digest.to_string(),
            "RepoTags": tags,
            "Created": config.get("created").cloned().unwrap_or(Value::Null),
            "DockerVersion": config.get("docker_version").cloned().unwrap_or(json!("")),
            "Labels": config.pointer("/config/Labels").cloned().unwrap_or(Value::Null),
            "Architecture": config.get("architecture").cloned().unwrap_or(json!("")),
            "Os": config.get("os").cloned().unwrap_or(json!("")),
            "Layers": parsed.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
            "LayersData": parsed.layers.iter().map(|l| json!({
                "MIMEType": l.media_type, "Digest": l.digest.to_string(), "Size": l.size,
            })).collect::<Vec<_>>(),
            "Env": config.pointer("/config/Env").cloned().unwrap_or(Value::Null),
        });
        let mut text = serde_json::to_vec_pretty(&value)?;
        text.push(b'\n');
        Ok(text)
    })?;
    let mut out = io::stdout().lock();
    out.write_all(&output)?;
    if args.config {
        out.write_all(b"\n")?;
    }
    Ok(())
}
