//! Image references (`docker.io/library/nginx:1.25@sha256:…`), parsed and
//! normalised exactly as Docker does (`ParseNormalizedNamed` from
//! `github.com/distribution/reference`).
//!
//! Grammar:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path
//! domain           := host [":" port]
//! host             := domain-name | "[" IPv6 "]"
//! domain-name      := domain-component ("." domain-component)*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port             := [0-9]+
//! path             := path-component ("/" path-component)*
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [\w][\w.-]{0,127}
//! ```
//!
//! Normalisation: a first component is a registry domain only if it contains
//! `.` or `:`, is `localhost`, or has upper case letters; otherwise the
//! reference is on Docker Hub (`docker.io`), where single-component paths live
//! under `library/`. `index.docker.io` is an alias of `docker.io`.
//!
//! Two points where behaviour is pinned down explicitly:
//! - The 255-character limit applies to the repository path, as in current
//!   `distribution/reference` (older versions also counted the domain).
//! - Docker accepts a few inputs whose would-be domain is not a valid host
//!   but whose whole text is a valid path (`a_b.c/foo`), yielding a name
//!   with *no* registry. Every [`Reference`] here has a registry, so such
//!   inputs are rejected as an invalid domain.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The historical Docker Hub domain, normalised to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The Docker Hub namespace of official images (`nginx` is `library/nginx`).
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag implied when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Maximum length of the repository path (the name without its domain).
pub const MAX_PATH_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;

/// Why a string is not a valid image reference. Variants carry the rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: repository name must have at least one component")]
    Empty,
    #[error(
        "invalid repository name {input:?}: cannot specify 64-byte hexadecimal strings \
         (it would be ambiguous with an image ID)"
    )]
    AmbiguousIdentifier { input: String },
    #[error("invalid reference format {input:?}: repository name {repository:?} must be lowercase")]
    Uppercase { input: String, repository: String },
    #[error(
        "invalid reference format {input:?}: repository name must not be more than \
         {MAX_PATH_LENGTH} characters (it has {length})"
    )]
    NameTooLong { input: String, length: usize },
    #[error("invalid reference format {input:?}: invalid registry domain {domain:?}: {reason}")]
    InvalidDomain {
        input: String,
        domain: String,
        reason: String,
    },
    #[error("invalid reference format {input:?}: {reason}")]
    InvalidPath { input: String, reason: String },
    #[error("invalid reference format {input:?}: invalid tag {tag:?}: {reason}")]
    InvalidTag {
        input: String,
        tag: String,
        reason: String,
    },
    #[error("invalid reference format {input:?}: {source}")]
    InvalidDigest { input: String, source: DigestError },
}

/// A normalised image reference: registry domain, repository path, and an
/// optional tag and/or digest.
///
/// Always fully qualified: `nginx` parses to domain `docker.io`, path
/// `library/nginx`. Equality, hashing and ordering are on that normalised form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference as typed by a user, normalising familiar names
    /// (`ParseNormalizedNamed`). No default tag is added: see [`Reference::with_default_tag`].
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // A bare image ID would otherwise parse as the repository
        // `library/<id>`; Docker refuses it rather than guess.
        if is_image_id(input) {
            return Err(ReferenceError::AmbiguousIdentifier {
                input: input.to_owned(),
            });
        }

        let (domain, remainder) = split_docker_domain(input);

        // Checked before the grammar so that the user gets the specific
        // complaint; the repository is everything before a `:` tag separator.
        let repository = remainder.split(':').next().unwrap_or_default();
        if repository.chars().any(char::is_uppercase) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
                repository: repository.to_owned(),
            });
        }

        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
            None => (&*remainder, None),
        };
        // The path cannot contain ':', so the first ':' after the last '/'
        // starts the tag.
        let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
        let (path, tag) = match name_and_tag[last_slash..].find(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            None => (name_and_tag, None),
        };

        validate_domain(domain).map_err(|reason| ReferenceError::InvalidDomain {
            input: input.to_owned(),
            domain: domain.to_owned(),
            reason,
        })?;
        validate_path(path).map_err(|reason| ReferenceError::InvalidPath {
            input: input.to_owned(),
            reason,
        })?;
        if path.len() > MAX_PATH_LENGTH {
            return Err(ReferenceError::NameTooLong {
                input: input.to_owned(),
                length: path.len(),
            });
        }
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
                input: input.to_owned(),
                tag: tag.to_owned(),
                reason,
            })?;
        }
        let digest = digest.map(Digest::from_str).transpose().map_err(|source| {
            ReferenceError::InvalidDigest {
                input: input.to_owned(),
                source,
            }
        })?;

        Ok(Reference {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry domain, with optional port: `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/nginx`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, `domain/path`: `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True when the reference has neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// Adds the `latest` tag if the reference has neither tag nor digest
    /// (Docker's `TagNameOnly`). A digest-only reference stays digest-only.
    pub fn with_default_tag(mut self) -> Reference {
        if self.is_name_only() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    /// The same repository and digest with `tag` replacing any existing tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
            input: self.to_string(),
            tag: tag.to_owned(),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// The same repository and tag with `digest` replacing any existing digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    pub fn without_tag(&self) -> Reference {
        Reference {
            tag: None,
            ..self.clone()
        }
    }

    pub fn without_digest(&self) -> Reference {
        Reference {
            digest: None,
            ..self.clone()
        }
    }

    /// Just the repository, with tag and digest removed (Docker's `TrimNamed`).
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The reference Docker records for an image (`ParseDockerRef`): a digest
    /// wins over a tag when both are present, and a bare name gets `latest`.
    pub fn docker_ref(&self) -> Reference {
        if self.digest.is_some() {
            self.without_tag()
        } else {
            self.clone().with_default_tag()
        }
    }

    /// The name as Docker's UI shows it (`FamiliarName`): Docker Hub's domain
    /// and `library/` prefix are dropped, so `docker.io/library/nginx` is
    /// `nginx` and `docker.io/user/app` is `user/app`.
    ///
    /// As in Docker, `docker.io/library/<64 hex>` becomes the bare hex string,
    /// which [`Reference::parse`] refuses as ambiguous with an image ID.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            // `library/a/b` keeps its prefix: only single-component official
            // names are shortened, so the result parses back to the same path.
            Some(official) if !official.contains('/') => official.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The familiar name plus tag and digest (`FamiliarString`):
    /// `nginx:latest`, `nginx@sha256:…`, `nginx:1@sha256:…`.
    pub fn familiar_string(&self) -> String {
        let mut familiar = self.familiar_name();
        self.write_tag_and_digest(&mut familiar);
        familiar
    }

    fn write_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut full = self.name();
        self.write_tag_and_digest(&mut full);
        f.write_str(&full)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Reference::parse(input)
    }
}

impl TryFrom<&str> for Reference {
    type Error = ReferenceError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        Reference::parse(input)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Reference::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A 64-character lowercase hex string: what `docker images` shows as an image ID.
fn is_image_id(input: &str) -> bool {
    input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's `splitDockerDomain`: decides whether the first component is a
/// registry and returns `(domain, remainder)`, where the remainder still
/// carries any tag and digest.
fn split_docker_domain(input: &str) -> (&str, Cow<'_, str>) {
    let Some((first, rest)) = input.split_once('/') else {
        // A single component such as `ubuntu:22.04` is always an official Docker
        // Hub image, even if it looks like a hostname or `host:port`.
        return (
            DEFAULT_DOMAIN,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{input}")),
        );
    };
    let (domain, remainder) = if first == "localhost" {
        (first, rest)
    } else if first == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, rest)
    } else if first.contains(['.', ':']) {
        (first, rest)
    } else if first.chars().any(char::is_uppercase) {
        // Paths are lowercase, so an upper-case first component can only be a host.
        (first, rest)
    } else {
        (DEFAULT_DOMAIN, input)
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        (
            domain,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{remainder}")),
        )
    } else {
        (domain, Cow::Borrowed(remainder))
    }
}

/// Validates `host[:port]`, where host is a DNS-like name, an IPv4 address or
/// a bracketed IPv6 address.
fn validate_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(bracketed) = domain.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err("IPv6 address is missing its closing ']'".to_owned());
        };
        // Only plain hex-and-colon forms: zone identifiers (`%eth0`) and
        // embedded IPv4 are excluded, as in Docker.
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "IPv6 address {address:?} may only contain hex digits and ':'"
            ));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err("unexpected characters after the IPv6 address".to_owned()),
            },
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };

    if let Some(host) = host {
        if host.is_empty() {
            return Err("host name is empty".to_owned());
        }
        for label in host.split('.') {
            let valid = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !valid {
                return Err(format!(
                    "host name component {label:?} must be letters, digits and inner '-'"
                ));
            }
        }
    }
    match port {
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("port {port:?} must be a number"))
        }
        _ => Ok(()),
    }
}

/// Validates a repository path: `/`-separated components of lowercase
/// alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn validate_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        validate_path_component(component).map_err(|problem| {
            if component.is_empty() {
                format!("repository path {path:?} {problem}")
            } else {
                format!("repository path component {component:?} {problem}")
            }
        })?;
    }
    Ok(())
}

fn validate_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("has an empty component (leading, trailing or doubled '/')".to_owned());
    }
    if let Some(bad) = component
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(format!("contains invalid character {bad:?}"));
    }
    let is_separator = |c: char| matches!(c, '.' | '_' | '-');
    if component.starts_with(is_separator) || component.ends_with(is_separator) {
        return Err("must start and end with a lowercase letter or digit".to_owned());
    }
    for separator in component.split(|c: char| c.is_ascii_alphanumeric()) {
        let allowed =
            matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err(format!(
                "contains invalid separator {separator:?} (allowed: '.', '_', '__' or dashes)"
            ));
        }
    }
    Ok(())
}

/// Validates a tag: `[\w][\w.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let Some(first) = tag.chars().next() else {
        return Err("tag is empty".to_owned());
    };
    if !is_word(first) {
        return Err("must start with a letter, digit or '_'".to_owned());
    }
    if let Some(bad) = tag.chars().find(|&c| !(is_word(c) || c == '.' || c == '-')) {
        return Err(format!("contains invalid character {bad:?}"));
    }
    if tag.len() > MAX_TAG_LENGTH {
        return Err(format!(
            "must not be more than {MAX_TAG_LENGTH} characters (it has {})",
            tag.len()
        ));
    }
    Ok(())
}
