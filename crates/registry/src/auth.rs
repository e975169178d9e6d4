//! HTTP Basic authentication against an htpasswd file of bcrypt hashes (the format Distribution
//! reads, e.g. from `htpasswd -B` or `strata registry passwd`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "strata-registry";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected `user:bcrypt-hash` ($2a$, $2b$ or $2y$)")]
    Entry { path: PathBuf, line: usize },
    #[error("hashing the password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

/// Users and their bcrypt hashes, plus the credentials already verified (bcrypt is slow by
/// design; a client sends the same header on every request).
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    realm: String,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Htpasswd::parse(&text).map_err(|line| AuthError::Entry {
            path: path.to_owned(),
            line,
        })
    }

    /// Parses htpasswd text; `Err(line number)` on an entry that is not `user:bcrypt`.
    pub fn parse(text: &str) -> Result<Htpasswd, usize> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or(index + 1)?;
            let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
            if user.is_empty() || !bcrypt {
                return Err(index + 1);
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
            realm: REALM.to_owned(),
        })
    }

    /// Sets the realm of the Basic challenge (`auth.htpasswd.realm` of the config).
    pub fn with_realm(mut self, realm: impl Into<String>) -> Htpasswd {
        self.realm = realm.into();
        self
    }

    /// Whether `user` has an entry.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The realm of the Basic challenge [default: [`REALM`]].
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Whether an `Authorization` header value carries valid Basic credentials. Blocking
    /// (bcrypt) on first sight of a credential: call off the async workers.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        self.check_user(authorization).is_some()
    }

    /// Like [`Htpasswd::check`], returning the user name of valid credentials.
    pub fn check_user(&self, authorization: Option<&str>) -> Option<String> {
        let (user, password) = authorization.and_then(basic_credentials)?;
        let hash = self.users.get(&user)?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let verified = |this: &Htpasswd| {
            this.verified
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .contains(&key)
        };
        if verified(self) {
            return Some(user);
        }
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return None;
        }
        self.verified
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(key);
        Some(user)
    }
}

/// `user:hash` for an htpasswd file.
pub fn htpasswd_line(user: &str, password: &str) -> Result<String, AuthError> {
    Ok(format!(
        "{user}:{}",
        bcrypt::hash(password, bcrypt::DEFAULT_COST)?
    ))
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Shared by the middleware.
pub type SharedHtpasswd = Arc<Htpasswd>;

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn checks_bcrypt_credentials() {
        // Low cost keeps the test fast; the format is the same.
        let hash = bcrypt::hash("secret", 4).unwrap();
        let htpasswd = Htpasswd::parse(&format!("# users\nalice:{hash}\n")).unwrap();
        assert!(htpasswd.check(Some(&basic("alice", "secret"))));
        assert!(htpasswd.check(Some(&basic("alice", "secret"))), "cached");
        assert!(!htpasswd.check(Some(&basic("alice", "wrong"))));
        assert!(!htpasswd.check(Some(&basic("bob", "secret"))));
        assert!(!htpasswd.check(Some("Bearer abc")));
        assert!(!htpasswd.check(None));
    }

    #[test]
    fn refuses_non_bcrypt_entries() {
        assert_eq!(Htpasswd::parse("alice:{SHA}abc").err(), Some(1));
        assert_eq!(Htpasswd::parse("\nnocolon").err(), Some(2));
        let line = htpasswd_line("carol", "pw").unwrap();
        assert!(Htpasswd::parse(&line).is_ok());
    }
}
