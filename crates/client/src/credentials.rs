//! Registry credentials, read where Docker and the containers tools keep them:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, then Docker's
//! `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) with its
//! `credHelpers`, `auths` (base64 `user:password`) and `credsStore`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::{ClientError, Result};

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug logs.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The key credentials are stored under: Docker Hub's historical URL, else the host[:port].
pub fn registry_key(domain: &str) -> String {
    match domain {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// Reduces an `auths` key (`https://host:5000/v1/`, `host:5000`) to its host[:port].
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn keys_match(stored: &str, wanted: &str) -> bool {
    normalize_key(stored) == normalize_key(wanted)
}

/// Docker's client config file.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The containers-auth.json files consulted before Docker's config.
fn containers_auth_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        paths.push(PathBuf::from(file));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        paths.push(PathBuf::from(dir).join("containers/auth.json"));
    }
    paths
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Credentials(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::io(path.display().to_string(), e)),
    }
}

/// Credentials for `domain` (a reference's registry domain), or `None` for anonymous access.
pub fn lookup(domain: &str) -> Result<Option<Credentials>> {
    let key = registry_key(domain);
    for path in containers_auth_paths() {
        if let Some(config) = read_json(&path)?
            && let Some(found) = from_config(&config, &key)?
        {
            return Ok(Some(found));
        }
    }
    if let Some(path) = docker_config_path()
        && let Some(config) = read_json(&path)?
    {
        return from_config(&config, &key);
    }
    Ok(None)
}

/// Looks `key` up in one config: a credential helper for it, its `auths` entry, the default
/// `credsStore`, in Docker's order.
fn from_config(config: &Value, key: &str) -> Result<Option<Credentials>> {
    if let Some(helpers) = config.get("credHelpers").and_then(Value::as_object)
        && let Some(helper) = helpers
            .iter()
            .find(|(k, _)| keys_match(k, key))
            .and_then(|(_, v)| v.as_str())
    {
        return helper_get(helper, key);
    }
    if let Some(auths) = config.get("auths").and_then(Value::as_object)
        && let Some(entry) = auths
            .iter()
            .find(|(k, _)| keys_match(k, key))
            .map(|(_, v)| v)
    {
        if let Some(auth) = entry.get("auth").and_then(Value::as_str)
            && !auth.is_empty()
        {
            return decode_auth(auth).map(Some);
        }
        if let (Some(username), Some(password)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                username: username.into(),
                password: password.into(),
            }));
        }
    }
    if let Some(store) = config.get("credsStore").and_then(Value::as_str)
        && !store.is_empty()
    {
        return helper_get(store, key);
    }
    Ok(None)
}

/// Decodes base64 `user:password`.
pub fn decode_auth(auth: &str) -> Result<Credentials> {
    let bytes = STANDARD
        .decode(auth.trim())
        .map_err(|e| ClientError::Credentials(format!("invalid base64 \"auth\" entry: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ClientError::Credentials("\"auth\" entry is not UTF-8".into()))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| ClientError::Credentials("\"auth\" entry has no ':'".into()))?;
    Ok(Credentials {
        username: username.into(),
        password: password.into(),
    })
}

pub fn encode_auth(credentials: &Credentials) -> String {
    STANDARD.encode(format!("{}:{}", credentials.username, credentials.password))
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin.
fn run_helper(helper: &str, action: &str, input: &str) -> Result<std::process::Output> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ClientError::Credentials(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| ClientError::io(format!("writing to {program}"), e))?;
    }
    child
        .wait_with_output()
        .map_err(|e| ClientError::io(format!("running {program}"), e))
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>> {
    let output = run_helper(helper, "get", key)?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout);
        // The helpers' protocol: "credentials not found in native keychain" means none stored.
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(ClientError::Credentials(format!(
            "docker-credential-{helper} get failed: {}{}",
            message.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let value: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        ClientError::Credentials(format!("docker-credential-{helper} get: invalid JSON: {e}"))
    })?;
    let field = |name| value.get(name).and_then(Value::as_str).unwrap_or_default();
    Ok(Some(Credentials {
        username: field("Username").into(),
        password: field("Secret").into(),
    }))
}

/// Stores credentials for `domain` in Docker's config (or its `credsStore` helper), keeping
/// every other setting of the file.
pub fn store(domain: &str, credentials: &Credentials) -> Result<PathBuf> {
    let path = docker_config_path()
        .ok_or_else(|| ClientError::Credentials("neither DOCKER_CONFIG nor HOME is set".into()))?;
    let key = registry_key(domain);
    let mut config = read_json(&path)?.unwrap_or_else(|| json!({}));
    let object = config
        .as_object_mut()
        .ok_or_else(|| ClientError::Credentials(format!("{}: not an object", path.display())))?;
    let helper = object
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let auths = object
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(ClientError::Credentials(format!(
            "{}: \"auths\" is not an object",
            path.display()
        )));
    };
    auths.retain(|k, _| !keys_match(k, &key));
    if let Some(helper) = helper {
        let input = json!({"ServerURL": key, "Username": credentials.username, "Secret": credentials.password});
        let output = run_helper(&helper, "store", &input.to_string())?;
        if !output.status.success() {
            return Err(ClientError::Credentials(format!(
                "docker-credential-{helper} store failed: {}",
                String::from_utf8_lossy(&output.stdout).trim()
            )));
        }
        auths.insert(key, json!({}));
    } else {
        auths.insert(key, json!({"auth": encode_auth(credentials)}));
    }
    write_config(&path, &config)?;
    Ok(path)
}

/// Removes stored credentials for `domain`; false when there were none.
pub fn remove(domain: &str) -> Result<bool> {
    let Some(path) = docker_config_path() else {
        return Ok(false);
    };
    let key = registry_key(domain);
    let Some(mut config) = read_json(&path)? else {
        return Ok(false);
    };
    let helper = config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mut removed = false;
    if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
        let before = auths.len();
        auths.retain(|k, _| !keys_match(k, &key));
        removed = auths.len() != before;
    }
    if let Some(helper) = helper {
        // Best effort: the helper may hold nothing for this registry.
        removed |= run_helper(&helper, "erase", &key).is_ok_and(|o| o.status.success());
    }
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}

fn write_config(path: &Path, config: &Value) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ClientError::io(dir.display().to_string(), e))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| ClientError::io(dir.display().to_string(), e))?;
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    temp.write_all(text.as_bytes())
        .map_err(|e| ClientError::io(path.display().to_string(), e))?;
    // The file holds secrets: owner-only, as Docker writes it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ClientError::io(path.display().to_string(), e))?;
    temp.persist(path)
        .map_err(|e| ClientError::io(path.display().to_string(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entry_is_found_by_host() {
        let config = json!({"auths": {"https://127.0.0.1:5000/v1/": {"auth": "dTpwOmM="}}});
        let found = from_config(&config, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(found.username, "u");
        assert_eq!(found.password, "p:c");
        assert!(from_config(&config, "127.0.0.1:5001").unwrap().is_none());
    }

    #[test]
    fn docker_hub_key() {
        assert_eq!(registry_key("docker.io"), "https://index.docker.io/v1/");
        let c = Credentials {
            username: "a".into(),
            password: "b".into(),
        };
        assert_eq!(decode_auth(&encode_auth(&c)).unwrap(), c);
    }
}
