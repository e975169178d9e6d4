//! `strata registry ...`: the OCI distribution registry server (crates/registry).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use strata_registry::config::{AuthScheme as ConfigAuth, Config};

/// Where `serve` keeps its data unless told otherwise; deliberately not the image store.
const DEFAULT_ROOT: &str = "/var/lib/strata/registry";
const DEFAULT_ADDR: &str = "127.0.0.1:5000";
/// Longer than any push takes between uploading a blob and pushing the manifest naming it.
const DEFAULT_GC_GRACE: u64 = 3600;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve an OCI distribution registry
    Serve(Box<ServeArgs>),
    /// Delete blobs that no manifest of any repository references (run while stopped)
    Gc(GcArgs),
    /// Print an htpasswd line (bcrypt) for USER with the password read from stdin
    Passwd(PasswdArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Registry storage directory [default: /var/lib/strata/registry]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// YAML configuration file in Distribution's format (version, log, storage, http, auth,
    /// proxy; plus gc), see docs/registry.md; flags win
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve pulls only: pushes and deletes get 405 UNSUPPORTED
    #[arg(long)]
    read_only: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require HTTP Basic authentication against this htpasswd file (bcrypt entries)
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Authentication scheme: none, basic (needs --htpasswd) or token (built-in token server
    /// at /token; users from --htpasswd, grants from the config file) [default: basic with
    /// --htpasswd, else none]
    #[arg(long, value_name = "SCHEME")]
    auth: Option<AuthScheme>,
    /// Token realm sent in challenges [default: http(s)://ADDR/token]
    #[arg(long, value_name = "URL")]
    token_realm: Option<String>,
    /// Token service (audience) [default: strata-registry]
    #[arg(long, value_name = "NAME")]
    token_service: Option<String>,
    /// Collect garbage while serving, every SECONDS (off by default)
    #[arg(long, value_name = "SECONDS")]
    gc_interval: Option<u64>,
    /// Online collection spares unreferenced blobs touched within SECONDS [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    gc_grace: Option<u64>,
    /// Be a pull-through cache of this registry (e.g. https://registry-1.docker.io)
    #[arg(long, value_name = "URL")]
    proxy_remote: Option<String>,
    /// User name for the upstream registry (password: STRATA_PROXY_PASSWORD)
    #[arg(long, value_name = "USER", requires = "proxy_remote")]
    proxy_username: Option<String>,
    /// How long a cached tag is served without asking upstream; after it a HEAD checks the
    /// tag (seconds or 30s/5m/1h; replaces the config's proxy.tagttl) [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    proxy_tag_ttl: Option<Duration>,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    strata_registry::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (seconds, or like 30s, 5m, 1h30m)"))
}

#[derive(Args)]
pub struct PasswdArgs {
    /// User name of the entry
    user: String,
}

#[derive(Args)]
pub struct GcArgs {
    /// Registry storage directory [default: /var/lib/strata/registry]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Only report what would be deleted
    #[arg(long)]
    dry_run: bool,
    /// Also delete manifests that no tag points at (and are not referenced by a tagged index
    /// or as a subject)
    #[arg(long)]
    delete_untagged: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthScheme {
    None,
    Basic,
    Token,
}

impl From<ConfigAuth> for AuthScheme {
    fn from(scheme: ConfigAuth) -> AuthScheme {
        match scheme {
            ConfigAuth::None => AuthScheme::None,
            ConfigAuth::Basic => AuthScheme::Basic,
            ConfigAuth::Token => AuthScheme::Token,
        }
    }
}

const DEFAULT_TOKEN_SERVICE: &str = "strata-registry";
const DEFAULT_TOKEN_EXPIRATION: u64 = 300;

/// `root` is the image-store root, which the registry does not use.
pub fn run(_root: &Path, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve(*args),
        RegistryCommand::Passwd(args) => passwd(args),
        RegistryCommand::Gc(args) => gc(args),
    }
}

/// `RUST_LOG` when set, else `default_level` (the config's `log.level`), else info.
fn init_logging(default_level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level.unwrap_or("info")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn serve(args: ServeArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    init_logging(config.log_level.as_deref());
    for warning in &config.warnings {
        tracing::warn!("config: {warning}");
    }
    let addr = match args.addr.or(config.addr) {
        Some(addr) => addr,
        None => DEFAULT_ADDR.parse()?,
    };
    let root = args
        .root
        .or(config.root)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let tls = match (
        args.tls_cert.or(config.tls_cert),
        args.tls_key.or(config.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(
            strata_registry::tls::server_config(&cert, &key)
                .with_context(|| format!("loading TLS certificate {}", cert.display()))?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate and a key"),
    };
    let mut htpasswd = match args.htpasswd.or(config.htpasswd) {
        Some(path) => {
            let users = strata_registry::auth::Htpasswd::load(&path)?;
            Some(match &config.htpasswd_realm {
                Some(realm) => users.with_realm(realm),
                None => users,
            })
        }
        None => None,
    };
    if htpasswd.is_some() && tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!("basic authentication without TLS sends passwords in clear text");
    }
    let scheme = args
        .auth
        .or(config.auth.map(AuthScheme::from))
        .unwrap_or(if htpasswd.is_some() {
            AuthScheme::Basic
        } else {
            AuthScheme::None
        });
    let token = match scheme {
        AuthScheme::Token => {
            let settings = config.token;
            let realm = match args.token_realm.or(settings.realm) {
                Some(realm) => realm,
                None if addr.ip().is_unspecified() => {
                    anyhow::bail!("token authentication on {addr} needs --token-realm URL")
                }
                None => format!(
                    "{}://{addr}/token",
                    if tls.is_some() { "https" } else { "http" }
                ),
            };
            let service = args
                .token_service
                .or(settings.service)
                .unwrap_or_else(|| DEFAULT_TOKEN_SERVICE.to_owned());
            let key = match &settings.key_file {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("reading token key {}", path.display()))?,
                None => strata_registry::token::TokenConfig::random_key(),
            };
            anyhow::ensure!(key.len() >= 16, "the token key must be at least 16 bytes");
            let grants = settings.grants.unwrap_or_else(|| {
                ["repository:*", "registry:catalog"]
                    .map(|resource| {
                        let (kind, name) = resource.split_once(':').unwrap_or_default();
                        strata_registry::token::Grant {
                            user: "*".to_owned(),
                            kind: kind.to_owned(),
                            name: name.to_owned(),
                            actions: vec!["*".to_owned()],
                        }
                    })
                    .to_vec()
            });
            Some(strata_registry::token::TokenConfig {
                realm,
                issuer: settings.issuer.unwrap_or_else(|| service.clone()),
                service,
                expiration: settings
                    .expiration
                    .unwrap_or(Duration::from_secs(DEFAULT_TOKEN_EXPIRATION)),
                grants,
                users: htpasswd.take(),
                key,
            })
        }
        AuthScheme::Basic => {
            anyhow::ensure!(htpasswd.is_some(), "basic authentication needs --htpasswd");
            None
        }
        AuthScheme::None => {
            htpasswd = None;
            None
        }
    };
    let online_gc = args
        .gc_interval
        .map(Duration::from_secs)
        .or(config.gc_interval)
        .filter(|interval| !interval.is_zero())
        .map(|interval| strata_registry::OnlineGc {
            interval,
            grace: args
                .gc_grace
                .map(Duration::from_secs)
                .or(config.gc_grace)
                .unwrap_or(Duration::from_secs(DEFAULT_GC_GRACE)),
        });
    let read_only = args.read_only || config.read_only;
    if read_only {
        tracing::info!("read-only mode: pushes and deletes are refused");
    }
    let options = strata_registry::ServerOptions {
        htpasswd,
        online_gc,
        token,
        read_only,
        delete_disabled: config.delete_enabled == Some(false),
    };
    // The flags replace the config's upstream for every repository and its proxy.tagttl;
    // namespaces, and the tagttl a namespace sets, stay.
    let proxy_settings = config.proxy.unwrap_or_default();
    let tag_ttl = args
        .proxy_tag_ttl
        .or(proxy_settings.ttl)
        .unwrap_or(strata_registry::proxy::DEFAULT_TAG_TTL);
    let mut proxy = Vec::new();
    match args.proxy_remote {
        Some(url) => proxy.push((
            None,
            strata_registry::proxy::UpstreamConfig {
                url,
                username: args.proxy_username,
                password: std::env::var("STRATA_PROXY_PASSWORD").ok(),
                tag_ttl,
            },
        )),
        None => {
            if let Some(url) = proxy_settings.url {
                proxy.push((
                    None,
                    strata_registry::proxy::UpstreamConfig {
                        url,
                        username: proxy_settings.username,
                        password: proxy_settings.password,
                        tag_ttl,
                    },
                ));
            }
        }
    }
    for upstream in proxy_settings.upstreams {
        proxy.push((
            Some(upstream.namespace),
            strata_registry::proxy::UpstreamConfig {
                url: upstream.url,
                username: upstream.username,
                password: upstream.password,
                tag_ttl: upstream.ttl.unwrap_or(tag_ttl),
            },
        ));
    }
    let s3 = config.s3;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        if let Some(s3) = s3 {
            // Uploads in progress are staged under the root; everything else is in the bucket.
            let storage = strata_registry::storage::S3Storage::open(&s3, &root)
                .with_context(|| format!("opening S3 storage in bucket {}", s3.bucket))?;
            tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, "storage: s3");
            return listen(addr, root, tls, proxy, storage, options).await;
        }
        let storage = strata_registry::FsStorage::open(&root)
            .with_context(|| format!("opening registry storage at {}", root.display()))?;
        listen(addr, root, tls, proxy, storage, options).await
    })
}

async fn listen<S: strata_registry::Storage>(
    addr: SocketAddr,
    root: PathBuf,
    tls: Option<std::sync::Arc<strata_registry::tls::ServerConfig>>,
    proxy: Vec<(Option<String>, strata_registry::proxy::UpstreamConfig)>,
    storage: S,
    options: strata_registry::ServerOptions,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let upstreams: Vec<String> = proxy
        .iter()
        .map(|(namespace, upstream)| {
            let ttl = upstream.tag_ttl.as_secs_f64();
            match namespace {
                Some(namespace) => format!("{namespace}/=>{} (tag ttl {ttl}s)", upstream.url),
                None => format!("{} (tag ttl {ttl}s)", upstream.url),
            }
        })
        .collect();
    tracing::info!(
        addr = %listener.local_addr()?,
        root = %root.display(),
        tls = tls.is_some(),
        proxy = if upstreams.is_empty() { "none".to_owned() } else { upstreams.join(" ") },
        "registry listening"
    );
    if proxy.is_empty() {
        run_server(listener, tls, storage, options).await?;
    } else {
        let storage = strata_registry::proxy::ProxyStorage::with_upstreams(storage, proxy)
            .map_err(|error| anyhow::anyhow!("setting up the upstream client: {error}"))?;
        run_server(listener, tls, storage, options).await?;
    }
    tracing::info!("registry stopped");
    Ok(())
}

async fn run_server<S: strata_registry::Storage>(
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<strata_registry::tls::ServerConfig>>,
    storage: S,
    options: strata_registry::ServerOptions,
) -> Result<()> {
    match tls {
        Some(config) => {
            strata_registry::serve_tls(listener, config, storage, options, shutdown_signal()).await
        }
        None => strata_registry::serve(listener, storage, options, shutdown_signal()).await,
    }
    .context("serving")
}

/// Completes on SIGINT or SIGTERM; in-flight requests then finish before `serve` returns.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}

fn passwd(args: PasswdArgs) -> Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password");
    println!(
        "{}",
        strata_registry::auth::htpasswd_line(&args.user, password)?
    );
    Ok(())
}

fn gc(args: GcArgs) -> Result<()> {
    let options = strata_registry::gc::GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: None,
    };
    let root = args.root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let report = strata_registry::gc::collect(&root, options)
        .with_context(|| format!("collecting garbage in {}", root.display()))?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for (repository, digest) in &report.manifests_deleted {
        println!("{verb} manifest {repository}@{digest}");
    }
    for digest in &report.blobs_deleted {
        println!("{verb} blob {digest}");
    }
    for id in &report.uploads_deleted {
        println!("{verb} abandoned upload {id}");
    }
    println!(
        "{verb} {} manifests, {} blobs, {} bytes, {} abandoned uploads",
        report.manifests_deleted.len(),
        report.blobs_deleted.len(),
        report.bytes_freed,
        report.uploads_deleted.len()
    );
    Ok(())
}
