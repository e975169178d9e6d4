//! Per-registry settings from `registries.json` (format: docs/client.md): `insecure` and
//! `mirrors`. Read from `$STRATA_REGISTRIES_CONFIG`, else
//! `$XDG_CONFIG_HOME/strata/registries.json` (`~/.config/strata/registries.json`); a missing
//! file means no settings.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use serde::Deserialize;

use crate::http::{ClientOptions, Registry};
use crate::{ClientError, Result};

/// The format version this strata reads.
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    pub version: u32,
    /// Keyed by registry domain as references spell it (`docker.io`, `host:port`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Plain HTTP or unverified TLS allowed (as `--tls-verify=false`).
    #[serde(default)]
    pub insecure: bool,
    /// Registries tried in order before this one when pulling from it.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// Where the settings are read from.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STRATA_REGISTRIES_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("strata").join("registries.json"))
}

impl RegistriesConfig {
    /// Parses a settings file's bytes; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<RegistriesConfig> {
        let config: RegistriesConfig = serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Invalid(format!("{origin}: {e}")))?;
        if config.version != CONFIG_VERSION {
            return Err(ClientError::Invalid(format!(
                "{origin}: version {} is not supported (this strata reads version {CONFIG_VERSION})",
                config.version
            )));
        }
        Ok(config)
    }

    /// The settings file, or no settings when there is none.
    pub fn load() -> Result<RegistriesConfig> {
        let Some(path) = config_path() else {
            return Ok(RegistriesConfig::default());
        };
        match std::fs::read(&path) {
            Ok(bytes) => RegistriesConfig::parse(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(e) => Err(ClientError::io(path.display().to_string(), e)),
        }
    }

    pub fn get(&self, domain: &str) -> Option<&RegistryConfig> {
        self.registries.get(domain).or_else(|| match domain {
            "docker.io" => self.registries.get("index.docker.io"),
            _ => None,
        })
    }

    pub fn insecure(&self, domain: &str) -> bool {
        self.get(domain).is_some_and(|r| r.insecure)
    }

    /// The registries to pull `domain`'s images from, in order: its mirrors, then itself.
    pub fn pull_sources(&self, domain: &str) -> Vec<String> {
        let mut sources: Vec<String> = self
            .get(domain)
            .map(|r| r.mirrors.clone())
            .unwrap_or_default();
        sources.retain(|m| m != domain);
        sources.push(domain.to_string());
        sources
    }
}

/// Runs `operation` against `domain`'s mirrors in order and then `domain` itself, until one
/// succeeds; a mirror that fails (unreachable, lacks the image, refuses access, serves bad
/// content) is logged and skipped. The origin's error is the one returned.
pub async fn with_pull_sources<T, F, Fut>(
    domain: &str,
    options: &ClientOptions,
    mut operation: F,
) -> Result<T>
where
    F: FnMut(Registry) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let sources = RegistriesConfig::load()?.pull_sources(domain);
    let last = sources.len() - 1;
    for (i, source) in sources.iter().enumerate() {
        let mut options = options.clone();
        if i < last {
            // A mirror that does not answer is passed over quickly.
            options.attempts = options.attempts.min(2);
        }
        let attempt = async {
            let registry = Registry::connect(source, options).await?;
            operation(registry).await
        };
        match attempt.await {
            Ok(value) => return Ok(value),
            Err(e) if i < last => {
                tracing::warn!("mirror {source} of {domain}: {e}; trying the next source");
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the origin is always a source")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_sources() {
        let config = RegistriesConfig::parse(
            br#"{"version": 1, "registries": {
                "docker.io": {"mirrors": ["mirror.example:5000", "127.0.0.1:5001"]},
                "internal.example:5000": {"insecure": true}}}"#,
            "test",
        )
        .unwrap();
        assert_eq!(
            config.pull_sources("docker.io"),
            ["mirror.example:5000", "127.0.0.1:5001", "docker.io"]
        );
        assert_eq!(config.pull_sources("quay.io"), ["quay.io"]);
        assert!(config.insecure("internal.example:5000"));
        assert!(!config.insecure("docker.io"));
    }

    #[test]
    fn refuses_other_versions_and_unknown_fields() {
        let e = RegistriesConfig::parse(br#"{"version": 2}"#, "f.json").unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = RegistriesConfig::parse(
            br#"{"version": 1, "registries": {"h": {"mirror": []}}}"#,
            "f.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
