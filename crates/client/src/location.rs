//! Where images are copied from and to, written as containers-transports(5) does:
//! `docker://REF`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`; a
//! bare reference names an image of the local store.

use std::fmt;
use std::path::PathBuf;

use strata_oci::Reference;

use crate::{ClientError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Registry(Reference),
    OciDir {
        dir: PathBuf,
        tag: Option<String>,
    },
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    DockerArchive {
        file: PathBuf,
        reference: Option<Reference>,
    },
    /// The local store: anything `strata inspect` accepts.
    Store(String),
}

fn invalid(input: &str, message: impl Into<String>) -> ClientError {
    ClientError::Location {
        input: input.into(),
        message: message.into(),
    }
}

/// `PATH[:SUFFIX]`, split at the first `:` as the containers tools do (so paths cannot hold one).
fn split_path(input: &str, rest: &str) -> Result<(PathBuf, Option<String>)> {
    let (path, suffix) = match rest.split_once(':') {
        Some((path, suffix)) => (path, Some(suffix.to_string()).filter(|s| !s.is_empty())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid(input, "the path is empty"));
    }
    Ok((PathBuf::from(path), suffix))
}

/// Parses a registry reference, adding `latest` when it has neither tag nor digest.
pub fn parse_registry_reference(input: &str, text: &str) -> Result<Reference> {
    Reference::parse(text)
        .map(Reference::with_default_tag)
        .map_err(|e| invalid(input, e.to_string()))
}

impl Location {
    pub fn parse(input: &str) -> Result<Location> {
        if let Some(rest) = input.strip_prefix("docker://") {
            return Ok(Location::Registry(parse_registry_reference(input, rest)?));
        }
        if let Some(rest) = input.strip_prefix("oci:") {
            let (dir, tag) = split_path(input, rest)?;
            return Ok(Location::OciDir { dir, tag });
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (file, tag) = split_path(input, rest)?;
            return Ok(Location::OciArchive { file, tag });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            let (file, reference) = split_path(input, rest)?;
            let reference = reference
                .map(|r| parse_registry_reference(input, &r))
                .transpose()?;
            return Ok(Location::DockerArchive { file, reference });
        }
        if let Some((transport, _)) = input.split_once(':')
            && matches!(
                transport,
                "dir" | "docker-daemon" | "containers-storage" | "ostree" | "sif" | "tarball"
            )
        {
            return Err(invalid(
                input,
                format!("the {transport}: transport is not supported"),
            ));
        }
        if input.is_empty() {
            return Err(invalid(input, "empty"));
        }
        Ok(Location::Store(input.to_string()))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = |s: &Option<String>| s.as_ref().map(|s| format!(":{s}")).unwrap_or_default();
        match self {
            Location::Registry(r) => write!(f, "docker://{r}"),
            Location::OciDir { dir, tag } => write!(f, "oci:{}{}", dir.display(), suffix(tag)),
            Location::OciArchive { file, tag } => {
                write!(f, "oci-archive:{}{}", file.display(), suffix(tag))
            }
            Location::DockerArchive { file, reference } => write!(
                f,
                "docker-archive:{}{}",
                file.display(),
                suffix(&reference.as_ref().map(|r| r.to_string()))
            ),
            Location::Store(name) => write!(f, "{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let r = |s: &str| Reference::parse(s).unwrap();
        let cases = [
            (
                "docker://busybox",
                Location::Registry(r("docker.io/library/busybox:latest")),
            ),
            (
                "docker://127.0.0.1:5000/a/b:1",
                Location::Registry(r("127.0.0.1:5000/a/b:1")),
            ),
            (
                "oci:/tmp/lay",
                Location::OciDir {
                    dir: "/tmp/lay".into(),
                    tag: None,
                },
            ),
            (
                "oci:/tmp/lay:v1",
                Location::OciDir {
                    dir: "/tmp/lay".into(),
                    tag: Some("v1".into()),
                },
            ),
            (
                "oci-archive:x.tar:t",
                Location::OciArchive {
                    file: "x.tar".into(),
                    tag: Some("t".into()),
                },
            ),
            (
                "docker-archive:x.tar:app:2",
                Location::DockerArchive {
                    file: "x.tar".into(),
                    reference: Some(r("app:2")),
                },
            ),
            (
                "docker-archive:x.tar",
                Location::DockerArchive {
                    file: "x.tar".into(),
                    reference: None,
                },
            ),
            ("debian:12", Location::Store("debian:12".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(Location::parse(input).unwrap(), expected, "{input}");
        }
        assert!(Location::parse("oci:").is_err());
        assert!(Location::parse("docker://UPPER").is_err());
        assert!(Location::parse("dir:/x").is_err());
    }
}
