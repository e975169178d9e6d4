//! The `serve --config FILE` file: YAML in the shape of CNCF Distribution's configuration
//! (`version`, `log`, `storage`, `http`, `auth`, `proxy`), plus strata's `gc` section. A
//! Distribution config file is accepted as it is: the Distribution settings strata does not
//! implement are reported as warnings ([`Config::warnings`]), settings that would change
//! security or where data lives and that strata cannot honour are errors, and any other key is
//! an error naming it. Documented in docs/registry.md.
//!
//! A file without `version` is strata's earlier flat JSON format (`{"addr", "root",
//! "tls_cert", ...}`), still read as before.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use crate::storage::S3Config;
use crate::token::Grant;

/// Configuration files larger than this are refused (a real one is a few KiB).
const MAX_CONFIG_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    None,
    Basic,
    Token,
}

/// The built-in token server's settings (`auth.token`).
#[derive(Debug, Default, Clone)]
pub struct TokenSettings {
    pub realm: Option<String>,
    pub service: Option<String>,
    pub issuer: Option<String>,
    pub expiration: Option<Duration>,
    /// HMAC-SHA256 signing key file (its bytes).
    pub key_file: Option<PathBuf>,
    pub grants: Option<Vec<Grant>>,
}

/// The upstreams of a pull-through cache (`proxy`).
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// For every repository no namespace covers (`proxy.remoteurl`).
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// strata: `<namespace>/<rest>` is fetched as `<rest>` from the namespace's registry.
    pub upstreams: Vec<NamespaceUpstream>,
    /// `proxy.tagttl` (strata): how long a cached tag is served without asking upstream; the
    /// default for every upstream.
    pub ttl: Option<Duration>,
}

/// One entry of `proxy.upstreams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceUpstream {
    pub namespace: String,
    #[serde(rename = "remoteurl")]
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// This upstream's tag TTL, `tagttl` (else `proxy.tagttl`).
    #[serde(rename = "tagttl", default, deserialize_with = "optional_duration")]
    pub ttl: Option<Duration>,
}

/// A present duration field, as [`Seconds`] reads it.
fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Seconds::deserialize(deserializer).map(|Seconds(duration)| Some(duration))
}

/// A configuration file, resolved; `None` means "not set here" (flags and defaults apply).
#[derive(Debug, Default)]
pub struct Config {
    pub addr: Option<SocketAddr>,
    pub root: Option<PathBuf>,
    pub s3: Option<S3Config>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub htpasswd: Option<PathBuf>,
    /// Realm of the Basic challenge (`auth.htpasswd.realm`).
    pub htpasswd_realm: Option<String>,
    pub auth: Option<AuthScheme>,
    pub token: TokenSettings,
    pub proxy: Option<ProxySettings>,
    /// Whether DELETE of manifests, tags and blobs is served (`storage.delete.enabled`; a
    /// Distribution-style file without it disables deletes, as Distribution does).
    pub delete_enabled: Option<bool>,
    /// `storage.maintenance.readonly.enabled`.
    pub read_only: bool,
    pub gc_interval: Option<Duration>,
    pub gc_grace: Option<Duration>,
    /// `log.level`: the log filter when `RUST_LOG` is not set.
    pub log_level: Option<String>,
    /// Distribution settings present in the file that strata ignores, one line each.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_CONFIG_SIZE + 1),
            &mut text,
        )
        .map_err(read_error)?;
        if text.len() as u64 > MAX_CONFIG_SIZE {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("larger than {MAX_CONFIG_SIZE} bytes"),
            });
        }
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses configuration text (YAML, or JSON, which is YAML too).
    pub fn parse(text: &str) -> Result<Config, String> {
        let document: Value = serde_norway::from_str(text).map_err(|error| error.to_string())?;
        match &document {
            Value::Mapping(mapping) if mapping.contains_key("version") => {}
            Value::Mapping(_) => {
                let legacy: LegacyConfig = serde_norway::from_str(text).map_err(|error| {
                    format!(
                        "{error} (a file without `version` is read as strata's flat JSON \
                         format; a Distribution-style file starts with `version: 0.1`)"
                    )
                })?;
                return Ok(legacy.into_config());
            }
            Value::Null => return Err("empty configuration".to_owned()),
            _ => return Err("expected a mapping of settings at the top level".to_owned()),
        }
        let file: DistributionConfig =
            serde_norway::from_str(text).map_err(|error| error.to_string())?;
        file.into_config()
    }
}

/// Durations are seconds (`3600`) or Go-style text as in Distribution's files (`"1h30m"`,
/// `"10s"`, `"500ms"`).
#[derive(Debug, Clone, Copy)]
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Seconds, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(seconds) => Ok(Seconds(Duration::from_secs(seconds))),
            Raw::Text(text) => parse_duration(&text)
                .map(Seconds)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {text:?}"))),
        }
    }
}

/// `1h30m`, `10s`, `250ms`, `2d` (a day being 24 h); `None` when malformed.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86400),
            _ => return None,
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(number).ok()?)?)?;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// `http.addr` as Go writes it: `HOST:PORT` with an IP address or `localhost`, or `:PORT` for
/// every interface.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let invalid = || format!("http.addr: {text:?} is not HOST:PORT (an IP address, or :PORT)");
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return Err(invalid()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Records a warning for each ignored Distribution setting that is present.
fn ignored(warnings: &mut Vec<String>, settings: &[(&str, &Option<Value>)]) {
    for (name, value) in settings {
        if value.is_some() {
            warnings.push(format!(
                "{name}: a Distribution setting strata does not implement; ignored"
            ));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributionConfig {
    version: Value,
    log: Option<LogSection>,
    /// Distribution's deprecated top-level `loglevel`.
    loglevel: Option<String>,
    storage: Option<StorageSection>,
    http: Option<HttpSection>,
    auth: Option<AuthSection>,
    proxy: Option<ProxySection>,
    /// strata: online garbage collection.
    gc: Option<GcSection>,
    // Distribution sections strata does not implement.
    middleware: Option<Value>,
    reporting: Option<Value>,
    notifications: Option<Value>,
    redis: Option<Value>,
    health: Option<Value>,
    validation: Option<Value>,
    compatibility: Option<Value>,
    catalog: Option<Value>,
    policy: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
    formatter: Option<Value>,
    fields: Option<Value>,
    hooks: Option<Value>,
    accesslog: Option<Value>,
    reportcaller: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    filesystem: Option<FilesystemSection>,
    s3: Option<S3Section>,
    delete: Option<Enabled>,
    maintenance: Option<MaintenanceSection>,
    cache: Option<Value>,
    redirect: Option<Value>,
    tag: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enabled {
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesystemSection {
    rootdirectory: Option<PathBuf>,
    maxthreads: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    bucket: String,
    region: Option<String>,
    regionendpoint: Option<String>,
    accesskey: Option<String>,
    secretkey: Option<String>,
    rootdirectory: Option<String>,
    forcepathstyle: Option<bool>,
    /// strata: where upload sessions are staged before they go to the bucket [default: the
    /// serve `--root`].
    uploaddirectory: Option<PathBuf>,
    encrypt: Option<Value>,
    keyid: Option<Value>,
    secure: Option<Value>,
    skipverify: Option<Value>,
    v4auth: Option<Value>,
    chunksize: Option<Value>,
    multipartcopychunksize: Option<Value>,
    multipartcopymaxconcurrency: Option<Value>,
    multipartcopythresholdsize: Option<Value>,
    storageclass: Option<Value>,
    objectacl: Option<Value>,
    useragent: Option<Value>,
    usedualstack: Option<Value>,
    accelerate: Option<Value>,
    loglevel: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceSection {
    readonly: Option<Enabled>,
    uploadpurging: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    addr: Option<String>,
    net: Option<String>,
    tls: Option<TlsSection>,
    host: Option<Value>,
    prefix: Option<Value>,
    secret: Option<Value>,
    relativeurls: Option<Value>,
    draintimeout: Option<Value>,
    headers: Option<Value>,
    debug: Option<Value>,
    http2: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    clientcas: Option<Value>,
    letsencrypt: Option<Value>,
    minimumtls: Option<Value>,
    ciphersuites: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    htpasswd: Option<HtpasswdSection>,
    token: Option<TokenSection>,
    silly: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HtpasswdSection {
    realm: Option<String>,
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    realm: Option<String>,
    service: Option<String>,
    issuer: Option<String>,
    /// strata: token lifetime.
    expiration: Option<Seconds>,
    /// strata: the HMAC signing key file.
    keyfile: Option<PathBuf>,
    /// strata: who may do what.
    grants: Option<Vec<Grant>>,
    rootcertbundle: Option<Value>,
    jwks: Option<Value>,
    autoredirect: Option<Value>,
    signingalgorithms: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySection {
    remoteurl: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// strata: upstreams by namespace.
    upstreams: Option<Vec<NamespaceUpstream>>,
    /// strata: how long a cached tag is served without asking upstream.
    tagttl: Option<Seconds>,
    /// Distribution: how long cached content is kept. strata keeps it until the collector
    /// finds it unreferenced, so this is warned about, not read as the tag TTL (a copied
    /// `ttl: 168h` would otherwise serve week-old tags).
    ttl: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcSection {
    /// Time between online collection passes (off when absent or 0).
    interval: Option<Seconds>,
    /// Unreferenced blobs younger than this are spared.
    grace: Option<Seconds>,
}

impl DistributionConfig {
    fn into_config(self) -> Result<Config, String> {
        let version = match &self.version {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            other => format!("{other:?}"),
        };
        if version != "0.1" {
            return Err(format!(
                "version: {version:?} is not supported (Distribution's format is version 0.1)"
            ));
        }
        let mut config = Config::default();
        let warnings = &mut config.warnings;
        ignored(
            warnings,
            &[
                ("middleware", &self.middleware),
                ("reporting", &self.reporting),
                ("notifications", &self.notifications),
                ("redis", &self.redis),
                ("health", &self.health),
                ("validation", &self.validation),
                ("compatibility", &self.compatibility),
                ("catalog", &self.catalog),
                ("policy", &self.policy),
            ],
        );
        config.log_level = self.loglevel;
        if let Some(log) = self.log {
            ignored(
                warnings,
                &[
                    ("log.formatter", &log.formatter),
                    ("log.fields", &log.fields),
                    ("log.hooks", &log.hooks),
                    ("log.accesslog", &log.accesslog),
                    ("log.reportcaller", &log.reportcaller),
                ],
            );
            config.log_level = log.level.or(config.log_level);
        }
        if let Some(level) = &config.log_level
            && !["error", "warn", "info", "debug", "trace"].contains(&level.as_str())
        {
            return Err(format!(
                "log.level: {level:?} is not one of error, warn, info, debug"
            ));
        }
        // Distribution refuses deletes unless `storage.delete.enabled` says otherwise.
        config.delete_enabled = Some(false);
        if let Some(storage) = self.storage {
            ignored(
                warnings,
                &[
                    ("storage.cache", &storage.cache),
                    ("storage.redirect", &storage.redirect),
                    ("storage.tag", &storage.tag),
                ],
            );
            if storage.filesystem.is_some() && storage.s3.is_some() {
                return Err("storage: choose one of filesystem and s3".to_owned());
            }
            if let Some(filesystem) = storage.filesystem {
                ignored(
                    warnings,
                    &[("storage.filesystem.maxthreads", &filesystem.maxthreads)],
                );
                config.root = filesystem.rootdirectory;
            }
            if let Some(s3) = storage.s3 {
                ignored(
                    warnings,
                    &[
                        ("storage.s3.encrypt", &s3.encrypt),
                        ("storage.s3.keyid", &s3.keyid),
                        ("storage.s3.secure", &s3.secure),
                        ("storage.s3.skipverify", &s3.skipverify),
                        ("storage.s3.v4auth", &s3.v4auth),
                        ("storage.s3.chunksize", &s3.chunksize),
                        (
                            "storage.s3.multipartcopychunksize",
                            &s3.multipartcopychunksize,
                        ),
                        (
                            "storage.s3.multipartcopymaxconcurrency",
                            &s3.multipartcopymaxconcurrency,
                        ),
                        (
                            "storage.s3.multipartcopythresholdsize",
                            &s3.multipartcopythresholdsize,
                        ),
                        ("storage.s3.storageclass", &s3.storageclass),
                        ("storage.s3.objectacl", &s3.objectacl),
                        ("storage.s3.useragent", &s3.useragent),
                        ("storage.s3.usedualstack", &s3.usedualstack),
                        ("storage.s3.accelerate", &s3.accelerate),
                        ("storage.s3.loglevel", &s3.loglevel),
                    ],
                );
                config.root = s3.uploaddirectory;
                config.s3 = Some(S3Config {
                    bucket: s3.bucket,
                    endpoint: s3.regionendpoint,
                    region: s3.region.unwrap_or_else(|| "us-east-1".to_owned()),
                    access_key: s3.accesskey,
                    secret_key: s3.secretkey,
                    prefix: s3
                        .rootdirectory
                        .unwrap_or_default()
                        .trim_matches('/')
                        .to_owned(),
                    virtual_hosted: s3.forcepathstyle == Some(false),
                });
            }
            if let Some(delete) = storage.delete {
                config.delete_enabled = Some(delete.enabled);
            }
            if let Some(maintenance) = storage.maintenance {
                ignored(
                    warnings,
                    &[(
                        "storage.maintenance.uploadpurging (strata gc removes abandoned uploads)",
                        &maintenance.uploadpurging,
                    )],
                );
                config.read_only = maintenance
                    .readonly
                    .is_some_and(|readonly| readonly.enabled);
            }
        }
        if let Some(http) = self.http {
            ignored(
                warnings,
                &[
                    ("http.host", &http.host),
                    ("http.prefix", &http.prefix),
                    ("http.secret", &http.secret),
                    ("http.relativeurls", &http.relativeurls),
                    ("http.draintimeout", &http.draintimeout),
                    ("http.headers", &http.headers),
                    ("http.debug (metrics are served at /metrics)", &http.debug),
                    ("http.http2", &http.http2),
                ],
            );
            if let Some(net) = http.net
                && net != "tcp"
            {
                return Err(format!("http.net: {net:?} is not supported (only tcp)"));
            }
            config.addr = http.addr.as_deref().map(parse_addr).transpose()?;
            if let Some(tls) = http.tls {
                if tls.clientcas.is_some() {
                    return Err(
                        "http.tls.clientcas: client certificate authentication is not supported"
                            .to_owned(),
                    );
                }
                if tls.letsencrypt.is_some() {
                    return Err(
                        "http.tls.letsencrypt: ACME is not supported; give certificate \
                                and key"
                            .to_owned(),
                    );
                }
                ignored(
                    warnings,
                    &[
                        (
                            "http.tls.minimumtls (rustls speaks TLS 1.2 and 1.3)",
                            &tls.minimumtls,
                        ),
                        ("http.tls.ciphersuites", &tls.ciphersuites),
                    ],
                );
                if tls.certificate.is_some() != tls.key.is_some() {
                    return Err("http.tls: needs both certificate and key".to_owned());
                }
                config.tls_cert = tls.certificate;
                config.tls_key = tls.key;
            }
        }
        if let Some(auth) = self.auth {
            if auth.silly.is_some() {
                return Err(
                    "auth.silly: Distribution's test-only scheme is not supported".to_owned(),
                );
            }
            if let Some(htpasswd) = auth.htpasswd {
                config.htpasswd = Some(htpasswd.path);
                config.htpasswd_realm = htpasswd.realm;
                config.auth = Some(AuthScheme::Basic);
            }
            if let Some(token) = auth.token {
                if token.rootcertbundle.is_some() || token.jwks.is_some() {
                    return Err(
                        "auth.token.rootcertbundle/jwks: strata verifies the tokens of \
                                its built-in token server only (users from auth.htpasswd, \
                                grants from auth.token.grants)"
                            .to_owned(),
                    );
                }
                ignored(
                    warnings,
                    &[
                        ("auth.token.autoredirect", &token.autoredirect),
                        ("auth.token.signingalgorithms", &token.signingalgorithms),
                    ],
                );
                config.auth = Some(AuthScheme::Token);
                config.token = TokenSettings {
                    realm: token.realm,
                    service: token.service,
                    issuer: token.issuer,
                    expiration: token.expiration.map(|Seconds(duration)| duration),
                    key_file: token.keyfile,
                    grants: token.grants,
                };
            }
        }
        if let Some(proxy) = self.proxy {
            ignored(warnings, &[("proxy.ttl", &proxy.ttl)]);
            let upstreams = proxy.upstreams.unwrap_or_default();
            if proxy.remoteurl.is_none() && upstreams.is_empty() {
                return Err("proxy: needs remoteurl or upstreams".to_owned());
            }
            let mut namespaces = std::collections::HashSet::new();
            for upstream in &upstreams {
                if !crate::names::is_valid_repository(&upstream.namespace) {
                    return Err(format!(
                        "proxy.upstreams: namespace {:?} is not a valid repository name prefix",
                        upstream.namespace
                    ));
                }
                if !namespaces.insert(upstream.namespace.as_str()) {
                    return Err(format!(
                        "proxy.upstreams: namespace {:?} appears twice",
                        upstream.namespace
                    ));
                }
            }
            config.proxy = Some(ProxySettings {
                url: proxy.remoteurl,
                username: proxy.username,
                password: proxy.password,
                upstreams,
                ttl: proxy.tagttl.map(|Seconds(duration)| duration),
            });
        }
        if let Some(gc) = self.gc {
            config.gc_interval = gc.interval.map(|Seconds(duration)| duration);
            config.gc_grace = gc.grace.map(|Seconds(duration)| duration);
        }
        Ok(config)
    }
}

/// strata's first configuration format: flat JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyConfig {
    addr: Option<SocketAddr>,
    root: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    htpasswd: Option<PathBuf>,
    proxy: Option<LegacyProxy>,
    auth: Option<AuthScheme>,
    token: Option<LegacyToken>,
    storage: Option<LegacyStorage>,
    read_only: Option<bool>,
}

/// `{"s3": {...}}` or `{"filesystem": {}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyStorage {
    /// The default; accepted for completeness.
    #[serde(rename = "filesystem")]
    _filesystem: Option<serde_norway::Mapping>,
    s3: Option<S3Config>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyToken {
    realm: Option<String>,
    service: Option<String>,
    issuer: Option<String>,
    expiration: Option<u64>,
    key_file: Option<PathBuf>,
    grants: Option<Vec<Grant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyProxy {
    url: String,
    username: Option<String>,
    password: Option<String>,
}

impl LegacyConfig {
    fn into_config(self) -> Config {
        Config {
            addr: self.addr,
            root: self.root,
            s3: self.storage.and_then(|storage| storage.s3),
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            htpasswd: self.htpasswd,
            auth: self.auth,
            token: self
                .token
                .map(|token| TokenSettings {
                    realm: token.realm,
                    service: token.service,
                    issuer: token.issuer,
                    expiration: token.expiration.map(Duration::from_secs),
                    key_file: token.key_file,
                    grants: token.grants,
                })
                .unwrap_or_default(),
            proxy: self.proxy.map(|proxy| ProxySettings {
                url: Some(proxy.url),
                username: proxy.username,
                password: proxy.password,
                upstreams: Vec::new(),
                ttl: None,
            }),
            read_only: self.read_only.unwrap_or(false),
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_sample_configs_are_accepted() {
        // Debian's /etc/docker/registry/config.yml and the project's bench setup.
        let debian = "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    \
                      blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: \
                      /var/lib/docker-registry\n  delete:\n    enabled: true\nhttp:\n  addr: \
                      :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nauth:\n  \
                      htpasswd:\n    realm: basic-realm\n    path: /etc/docker/registry\n\
                      health:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    \
                      threshold: 3\n";
        let config = Config::parse(debian).unwrap();
        assert_eq!(config.addr, Some("0.0.0.0:5000".parse().unwrap()));
        assert_eq!(config.root, Some("/var/lib/docker-registry".into()));
        assert_eq!(config.delete_enabled, Some(true));
        assert_eq!(config.auth, Some(AuthScheme::Basic));
        assert_eq!(config.htpasswd_realm.as_deref(), Some("basic-realm"));
        let warned: Vec<&str> = config
            .warnings
            .iter()
            .map(|warning| warning.split(':').next().unwrap())
            .collect();
        assert_eq!(
            warned,
            ["health", "log.fields", "storage.cache", "http.headers"]
        );

        let bench = "version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: \
                     /tmp/r}\n  delete: {enabled: true}\nhttp: {addr: 127.0.0.1:5000}\n";
        let config = Config::parse(bench).unwrap();
        assert_eq!(config.log_level.as_deref(), Some("error"));
        assert!(config.warnings.is_empty());
        assert!(!config.read_only);
    }

    #[test]
    fn strata_settings_map_onto_the_config() {
        let text = r#"
version: "0.1"
storage:
  s3: {bucket: b, regionendpoint: "http://127.0.0.1:9000", rootdirectory: /reg/, accesskey: a,
       secretkey: s, uploaddirectory: /var/tmp/up}
  maintenance: {readonly: {enabled: true}}
http: {addr: "[::1]:5001", tls: {certificate: c.pem, key: k.pem}}
auth:
  htpasswd: {path: /etc/htpasswd}
  token:
    expiration: 5m
    keyfile: /etc/key
    grants: [{user: alice, repository: "*", actions: ["*"]}]
proxy:
  remoteurl: "http://127.0.0.1:5002"
  username: u
  password: p
  tagttl: 168h
  upstreams:
    - {namespace: hub, remoteurl: "https://registry-1.docker.io", tagttl: 30s}
    - {namespace: mirrors/ghcr, remoteurl: "https://ghcr.io", username: g, password: h}
gc: {interval: 1h30m, grace: 600}
"#;
        let config = Config::parse(text).unwrap();
        let s3 = config.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str(), s3.region.as_str()),
            ("b", "reg", "us-east-1")
        );
        assert_eq!(config.root, Some("/var/tmp/up".into()));
        assert!(config.read_only);
        assert_eq!(config.delete_enabled, Some(false));
        assert_eq!(config.addr, Some("[::1]:5001".parse().unwrap()));
        assert_eq!(config.tls_key, Some("k.pem".into()));
        assert_eq!(config.auth, Some(AuthScheme::Token));
        assert_eq!(config.htpasswd, Some("/etc/htpasswd".into()));
        assert_eq!(config.token.expiration, Some(Duration::from_secs(300)));
        assert_eq!(config.token.grants.unwrap()[0].user, "alice");
        let proxy = config.proxy.unwrap();
        assert_eq!(proxy.url.as_deref(), Some("http://127.0.0.1:5002"));
        assert_eq!(proxy.upstreams[1].namespace, "mirrors/ghcr");
        assert_eq!(proxy.upstreams[1].username.as_deref(), Some("g"));
        assert_eq!(proxy.ttl, Some(Duration::from_secs(168 * 3600)));
        assert_eq!(proxy.upstreams[0].ttl, Some(Duration::from_secs(30)));
        assert_eq!(proxy.upstreams[1].ttl, None);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.gc_interval, Some(Duration::from_secs(5400)));
        assert_eq!(config.gc_grace, Some(Duration::from_secs(600)));
    }

    #[test]
    fn distributions_proxy_ttl_is_not_the_tag_ttl() {
        // Distribution's `proxy.ttl` is how long cached content is kept; read as strata's tag
        // TTL, a copied `ttl: 168h` would serve week-old tags.
        let config = Config::parse("version: 0.1\nproxy: {remoteurl: x, ttl: 168h}\n").unwrap();
        assert_eq!(config.proxy.unwrap().ttl, None);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0].starts_with("proxy.ttl:"),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn legacy_json_is_still_read() {
        let config = Config::parse(
            r#"{"addr": "127.0.0.1:5000", "root": "/srv/r", "auth": "token",
                "token": {"expiration": 60}, "proxy": {"url": "http://u"},
                "storage": {"s3": {"bucket": "b", "endpoint": "http://127.0.0.1:1"}}}"#,
        )
        .unwrap();
        assert_eq!(config.s3.unwrap().bucket, "b");
        assert_eq!(config.root, Some("/srv/r".into()));
        assert_eq!(config.auth, Some(AuthScheme::Token));
        assert_eq!(config.token.expiration, Some(Duration::from_secs(60)));
        assert_eq!(config.delete_enabled, None);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            (
                "version: 0.1\nstorage:\n  filesystem: {rootdir: /x}\n",
                "unknown field `rootdir`",
            ),
            (
                "version: 0.1\nstorage: {filesystem: {rootdirectory: /x}}\nhttpp: {}\n",
                "httpp",
            ),
            ("version: 0.2\n", "version"),
            (
                "version: 0.1\nhttp: {addr: \"example.com:80\"}\n",
                "http.addr",
            ),
            (
                "version: 0.1\nhttp: {tls: {certificate: c}}\n",
                "needs both certificate and key",
            ),
            (
                "version: 0.1\nstorage: {azure: {}}\n",
                "unknown field `azure`",
            ),
            (
                "version: 0.1\nauth: {token: {rootcertbundle: /x}}\n",
                "auth.token.rootcertbundle",
            ),
            ("version: 0.1\ngc: {interval: 5x}\n", "invalid duration"),
            (
                "version: 0.1\nproxy: {username: u}\n",
                "needs remoteurl or upstreams",
            ),
            (
                "version: 0.1\nproxy: {upstreams: [{namespace: Hub, remoteurl: x}]}\n",
                "namespace \"Hub\"",
            ),
            (
                "version: 0.1\nproxy: {upstreams: [{namespace: a, remoteurl: x}, \
                 {namespace: a, remoteurl: y}]}\n",
                "appears twice",
            ),
            (
                "version: 0.1\nproxy: {remoteurl: x, tagttl: soon}\n",
                "invalid duration \"soon\"",
            ),
            (
                "version: 0.1\nproxy: {upstreams: [{namespace: a, remoteurl: x, tagttl: 1y}]}\n",
                "invalid duration \"1y\"",
            ),
            ("version: 0.1\nlog: {level: loud}\n", "log.level"),
            ("{\"adr\": \"127.0.0.1:1\"}", "unknown field `adr`"),
            ("", "empty"),
            ("- a\n", "mapping"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        for (text, seconds) in [("10", 10), ("10s", 10), ("1h30m", 5400), ("2d", 172800)] {
            assert_eq!(parse_duration(text), Some(Duration::from_secs(seconds)));
        }
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for text in ["", "h", "1x", "-1s", "1.5h"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }
}
