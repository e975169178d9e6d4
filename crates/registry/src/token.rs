//! Docker registry token authentication (<https://distribution.github.io/distribution/spec/auth/token/>):
//! a built-in token server (`GET /token?service=&scope=`) that checks HTTP Basic credentials
//! against the htpasswd users (or serves anonymous requests) and issues HS256-signed JWTs
//! granting the intersection of the requested scopes and the configured grants; and the
//! verifier the registry runs on every `/v2/` request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::auth::Htpasswd;
use crate::names::Route;

/// Account name of requests to the token endpoint without credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Granted to whom, on what, which actions (from the configuration file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A user of the htpasswd file, `"*"` for every authenticated user, or `"anonymous"` for
    /// token requests without credentials.
    pub user: String,
    /// Resource type: `repository` (default) or `registry` (name `catalog`).
    #[serde(default = "default_type", rename = "type")]
    pub kind: String,
    /// Resource name; `*` matches any run of characters (including `/`), `?` one character.
    #[serde(alias = "repository")]
    pub name: String,
    /// `pull`, `push`, `delete`, or `*` for all of them.
    pub actions: Vec<String>,
}

fn default_type() -> String {
    "repository".to_owned()
}

/// One resource and the actions on it, as in a scope and a token's `access` claim.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Parses a scope, `type:name:action,action` (the name may contain `:` for a port).
pub fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some(Access {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions: actions
            .split(',')
            .filter(|action| !action.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Glob match: `*` any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Settings of the built-in token server and verifier.
pub struct TokenConfig {
    /// Absolute URL of the token endpoint, sent as the challenge's realm.
    pub realm: String,
    /// The `service` of the challenge and the tokens' audience.
    pub service: String,
    /// The tokens' issuer.
    pub issuer: String,
    /// Lifetime of issued tokens.
    pub expiration: Duration,
    pub grants: Vec<Grant>,
    /// Users who may ask for tokens with Basic credentials.
    pub users: Option<Htpasswd>,
    /// HMAC-SHA256 signing key.
    pub key: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    #[serde(default)]
    access: Vec<Access>,
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("invalid token signature")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued for another service or by another issuer")]
    Audience,
}

/// Lifetime of refresh tokens (`POST /token` with `access_type=offline`).
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Tolerated clock difference for `exp` and `nbf`.
const LEEWAY: u64 = 5;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A verified token: who it was issued to and what it grants.
#[derive(Debug)]
pub struct Verified {
    pub subject: String,
    pub access: Vec<Access>,
    /// `exp`, in Unix seconds.
    pub expires: u64,
}

impl Verified {
    /// Whether the token grants `action` on the resource `kind`/`name`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|access| {
            access.kind == kind
                && access.name == name
                && access.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

impl TokenConfig {
    /// A random 256-bit signing key (tokens then last as long as the process).
    pub fn random_key() -> Vec<u8> {
        let mut key = vec![0u8; 32];
        // Fails only when the OS has no randomness; fall back to UUIDs (also OS random).
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            key = [
                uuid::Uuid::new_v4().into_bytes(),
                uuid::Uuid::new_v4().into_bytes(),
            ]
            .concat();
        }
        key
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.key)
    }

    /// What `account` may do on the resource of `requested` under the grants.
    pub fn granted(&self, account: &str, requested: &Access) -> Vec<String> {
        let authenticated = account != ANONYMOUS;
        let mut actions = Vec::new();
        for grant in &self.grants {
            let who = grant.user == account || (grant.user == "*" && authenticated);
            if !who || grant.kind != requested.kind || !glob_match(&grant.name, &requested.name) {
                continue;
            }
            for action in &requested.actions {
                let allowed = grant.actions.iter().any(|a| a == "*" || a == action);
                if allowed && !actions.contains(action) {
                    actions.push(action.clone());
                }
            }
        }
        actions
    }

    /// Signs a token for `account` granting `access`; returns it and its lifetime in seconds.
    pub fn issue(&self, account: &str, access: Vec<Access>) -> (String, u64) {
        self.issue_at(account, access, now())
    }

    fn issue_at(&self, account: &str, access: Vec<Access>, issued: u64) -> (String, u64) {
        let lifetime = self.expiration.as_secs().max(1);
        self.sign(account, access, issued, lifetime, self.service.clone())
    }

    /// The audience of refresh tokens: never the service, so a refresh token is refused as an
    /// access token (and an access token as a refresh token).
    fn refresh_audience(&self) -> String {
        format!("{}#refresh", self.service)
    }

    /// A refresh token for `account` (OAuth2 `access_type=offline`): it grants nothing itself
    /// and buys access tokens from `POST /token` for [`REFRESH_LIFETIME`].
    pub fn issue_refresh(&self, account: &str) -> String {
        self.sign(
            account,
            Vec::new(),
            now(),
            REFRESH_LIFETIME.as_secs(),
            self.refresh_audience(),
        )
        .0
    }

    /// The account a refresh token was issued to, when it is ours, unexpired and a refresh
    /// token.
    pub fn verify_refresh(&self, token: &str) -> Result<String, TokenError> {
        let claims = self.verify_claims(token, &self.refresh_audience())?;
        Ok(claims.sub)
    }

    fn sign(
        &self,
        account: &str,
        access: Vec<Access>,
        issued: u64,
        lifetime: u64,
        audience: String,
    ) -> (String, u64) {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: account.to_owned(),
            aud: audience,
            exp: issued + lifetime,
            nbf: issued.saturating_sub(1),
            iat: issued,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = b64(&serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let signature = hmac::sign(&self.hmac_key(), signing_input.as_bytes());
        (
            format!("{signing_input}.{}", b64(signature.as_ref())),
            lifetime,
        )
    }

    /// Checks signature, algorithm, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let claims = self.verify_claims(token, &self.service)?;
        Ok(Verified {
            subject: claims.sub,
            access: claims.access,
            expires: claims.exp,
        })
    }

    fn verify_claims(&self, token: &str, audience: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|_| TokenError::Malformed)
        };
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signing_input = &token[..token.len() - signature.len() - 1];
        hmac::verify(
            &self.hmac_key(),
            signing_input.as_bytes(),
            &decode(signature)?,
        )
        .map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        let now = now();
        if claims.exp + LEEWAY <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY {
            return Err(TokenError::NotYetValid);
        }
        if claims.aud != audience || claims.iss != self.issuer {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }

    /// The `WWW-Authenticate` value asking for a token, with the scope the request needs.
    pub fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> String {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        value
    }
}

/// Tokens already verified, by their text: a client sends the same token on every request of
/// a push or pull, and a hash lookup is cheaper than decoding, an HMAC and a JSON parse. Expiry
/// is still checked on every use.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Verified>>>,
}

/// Past this many remembered tokens the memory is emptied (expired tokens go with it).
const VERIFIED_LIMIT: usize = 4096;

impl VerifiedTokens {
    /// [`TokenConfig::verify`], remembering successes until they expire.
    pub fn verify(
        &self,
        config: &TokenConfig,
        token: &str,
    ) -> Result<std::sync::Arc<Verified>, TokenError> {
        let lock = || {
            self.entries
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
        };
        if let Some(verified) = lock().get(token).cloned() {
            return if verified.expires + LEEWAY <= now() {
                lock().remove(token);
                Err(TokenError::Expired)
            } else {
                Ok(verified)
            };
        }
        let verified = std::sync::Arc::new(config.verify(token)?);
        let mut entries = lock();
        if entries.len() >= VERIFIED_LIMIT {
            entries.clear();
        }
        entries.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }
}

/// What a request on `route` with `method` needs: (type, name, action); uploads always need
/// push. `None`: only a valid
/// token (the base endpoint) or nothing (unknown routes answer 404 anyway).
pub fn required_access(route: &Route, method: &axum::http::Method) -> Option<Access> {
    use axum::http::Method;
    let action = match *method {
        // Upload sessions belong to pushers whatever the method (status, cancel).
        _ if matches!(route, Route::UploadStart { .. } | Route::Upload { .. }) => "push",
        Method::GET | Method::HEAD => "pull",
        Method::POST | Method::PUT | Method::PATCH => "push",
        Method::DELETE => "delete",
        _ => "pull",
    };
    match route {
        Route::Base => None,
        Route::Catalog => Some(Access {
            kind: "registry".to_owned(),
            name: "catalog".to_owned(),
            actions: vec!["*".to_owned()],
        }),
        other => other.name().map(|name| Access {
            kind: "repository".to_owned(),
            name: name.to_owned(),
            actions: vec![action.to_owned()],
        }),
    }
}

/// The scope string of an access (`repository:name:pull,push`).
pub fn scope_string(access: &Access) -> String {
    format!(
        "{}:{}:{}",
        access.kind,
        access.name,
        access.actions.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TokenConfig {
        TokenConfig {
            realm: "http://127.0.0.1:5000/token".into(),
            service: "strata-registry".into(),
            issuer: "strata-registry".into(),
            expiration: Duration::from_secs(300),
            grants: vec![
                Grant {
                    user: "alice".into(),
                    kind: "repository".into(),
                    name: "*".into(),
                    actions: vec!["*".into()],
                },
                Grant {
                    user: "*".into(),
                    kind: "repository".into(),
                    name: "library/*".into(),
                    actions: vec!["pull".into()],
                },
                Grant {
                    user: ANONYMOUS.into(),
                    kind: "repository".into(),
                    name: "public/?ne".into(),
                    actions: vec!["pull".into()],
                },
            ],
            users: None,
            key: b"0123456789abcdef0123456789abcdef".to_vec(),
        }
    }

    #[test]
    fn parses_scopes() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(Access {
                kind: "repository".into(),
                name: "a/b".into(),
                actions: vec!["pull".into(), "push".into()],
            })
        );
        assert_eq!(
            parse_scope("repository:host:5000/a:pull").unwrap().name,
            "host:5000/a"
        );
        assert_eq!(parse_scope("registry:catalog:*").unwrap().actions, ["*"]);
        assert_eq!(parse_scope("nonsense"), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b/c"));
        assert!(glob_match("library/*", "library/debian"));
        assert!(!glob_match("library/*", "other/debian"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*/x*y", "q/r/xzzy"));
        assert!(!glob_match("abc", "abcd"));
    }

    #[test]
    fn grants_intersect_requests() {
        let config = config();
        let request = parse_scope("repository:library/debian:pull,push,delete").unwrap();
        assert_eq!(
            config.granted("alice", &request),
            ["pull", "push", "delete"]
        );
        assert_eq!(config.granted("bob", &request), ["pull"]);
        assert!(config.granted(ANONYMOUS, &request).is_empty());
        let public = parse_scope("repository:public/one:pull,push").unwrap();
        assert_eq!(config.granted(ANONYMOUS, &public), ["pull"]);
        let catalog = parse_scope("registry:catalog:*").unwrap();
        assert!(config.granted("alice", &catalog).is_empty());
    }

    #[test]
    fn issues_and_verifies_tokens() {
        let issuer = config();
        let access = vec![parse_scope("repository:a:pull").unwrap()];
        let (token, lifetime) = issuer.issue("bob", access);
        assert_eq!(lifetime, 300);
        let verified = issuer.verify(&token).unwrap();
        assert_eq!(verified.subject, "bob");
        assert!(verified.allows("repository", "a", "pull"));
        assert!(!verified.allows("repository", "a", "push"));
        assert!(!verified.allows("repository", "b", "pull"));

        let (expired, _) = issuer.issue_at("bob", Vec::new(), now() - 1000);
        assert_eq!(issuer.verify(&expired).err(), Some(TokenError::Expired));
        let other = TokenConfig {
            key: b"another key".to_vec(),
            ..config()
        };
        let (forged, _) = other.issue("bob", Vec::new());
        assert_eq!(issuer.verify(&forged).err(), Some(TokenError::Signature));
        let elsewhere = TokenConfig {
            service: "elsewhere".into(),
            ..config()
        };
        let (foreign, _) = elsewhere.issue("bob", Vec::new());
        assert_eq!(issuer.verify(&foreign).err(), Some(TokenError::Audience));
        // alg=none with the original payload.
        let payload = token.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
        assert_eq!(issuer.verify(&none).err(), Some(TokenError::Algorithm));
        assert_eq!(issuer.verify("abc").err(), Some(TokenError::Malformed));

        let cache = VerifiedTokens::default();
        assert_eq!(cache.verify(&issuer, &token).unwrap().subject, "bob");
        assert_eq!(cache.verify(&issuer, &token).unwrap().subject, "bob");
        assert_eq!(
            cache.verify(&issuer, &forged).err(),
            Some(TokenError::Signature)
        );
        assert_eq!(
            cache.verify(&issuer, &expired).err(),
            Some(TokenError::Expired)
        );
    }

    #[test]
    fn routes_need_actions() {
        use axum::http::Method;
        let need = |path: &str, method: Method| {
            required_access(&crate::names::parse_route(path).unwrap(), &method)
                .map(|access| scope_string(&access))
        };
        assert_eq!(need("/v2/", Method::GET), None);
        assert_eq!(
            need("/v2/_catalog", Method::GET).as_deref(),
            Some("registry:catalog:*")
        );
        let manifest = "/v2/a/b/manifests/v1";
        assert_eq!(
            need(manifest, Method::HEAD).as_deref(),
            Some("repository:a/b:pull")
        );
        assert_eq!(
            need(manifest, Method::PUT).as_deref(),
            Some("repository:a/b:push")
        );
        assert_eq!(
            need(manifest, Method::DELETE).as_deref(),
            Some("repository:a/b:delete")
        );
        assert_eq!(
            need("/v2/a/blobs/uploads/x", Method::GET).as_deref(),
            Some("repository:a:push")
        );
        assert_eq!(
            need("/v2/a/blobs/uploads/x", Method::DELETE).as_deref(),
            Some("repository:a:push")
        );
        assert_eq!(
            need("/v2/a/referrers/sha256:0", Method::GET).as_deref(),
            Some("repository:a:pull")
        );
    }

    #[test]
    fn challenges() {
        assert_eq!(
            config().challenge(Some("repository:a:push"), None),
            "Bearer realm=\"http://127.0.0.1:5000/token\",service=\"strata-registry\",scope=\"repository:a:push\""
        );
    }
}
