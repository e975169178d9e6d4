//! The metadata model, held in memory while a command works on it. Pure: no I/O here, so every
//! rule about names, tags and deletion is testable on plain values.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_oci::{Digest, Reference};

use crate::StoreError;

/// A content descriptor as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// One image in the store, keyed by the digest of what `index.json` points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest (or index) as `index.json` references it.
    pub target: BlobRef,
    /// The platform manifest in use: `target.digest` unless the target is an index.
    pub manifest: Digest,
    /// The config digest, which is the image ID.
    pub config: Digest,
    /// When the image entered the store.
    pub added_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tag_time: Option<DateTime<Utc>>,
    /// `name@digest` of registries this image is known under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// The image ID this one was built on, when built here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
}

/// What the store knows about one uncompressed layer (keyed by its diffID).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Stored blobs whose uncompressed content is this layer.
    pub blobs: Vec<BlobRef>,
    /// Size of the uncompressed tar, when it has been measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
    /// Bytes of file content the layer adds (regular files and symlink targets, each hardlinked
    /// file once): what Docker reports as a layer's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<u64>,
}

impl LayerRecord {
    /// The size to show for this layer: Docker's content size when measured.
    pub fn display_size(&self) -> Option<u64> {
        self.content_size.or(self.uncompressed_size)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Full normalised reference (`docker.io/library/debian:12`) -> image key.
    pub tags: BTreeMap<String, Digest>,
    /// Image key (target digest) -> record.
    pub images: BTreeMap<Digest, ImageRecord>,
    /// diffID -> layer record.
    pub layers: BTreeMap<Digest, LayerRecord>,
    /// chainID -> unpacked layer snapshot.
    pub snapshots: BTreeMap<Digest, SnapshotRecord>,
    /// Build cache key -> what that build step produced.
    pub build_cache: BTreeMap<Digest, BuildCacheRecord>,
}

/// The outcome of one cached build step, keyed by the step's cache key (a digest over the
/// parent key, the instruction and the content it reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildCacheRecord {
    /// The layer the step added; `None` when it changed only metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<CachedLayer>,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// The history entry's `created` time, reused on every hit so a cached build gives the
    /// same image ID.
    pub created: DateTime<Utc>,
    pub last_used: DateTime<Utc>,
}

/// A layer a build step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub diff_id: Digest,
    pub blob: BlobRef,
    /// Bytes of the uncompressed tar.
    #[serde(default)]
    pub uncompressed_size: u64,
    /// Bytes of file content, as [`LayerRecord::content_size`].
    #[serde(default)]
    pub content_size: u64,
}

/// One layer unpacked for overlayfs under `snapshots/<chainID hex>/fs`: its own changes only,
/// whiteouts as overlay whiteouts, to be stacked on its parent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The layer's diffID.
    pub diff_id: Digest,
    /// chainID of the snapshot below, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    pub created_at: DateTime<Utc>,
}

/// How a user's string named an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// By tag: the full reference and the image key it points at.
    Tag { reference: String, key: Digest },
    /// By image ID (full or prefix) or manifest digest: every record with that image ID.
    Id { config: Digest, keys: Vec<Digest> },
}

impl Resolved {
    pub fn keys(&self) -> Vec<Digest> {
        match self {
            Resolved::Tag { key, .. } => vec![key.clone()],
            Resolved::Id { keys, .. } => keys.clone(),
        }
    }
}

impl Catalog {
    /// Tags pointing at `key`, sorted.
    pub fn tags_of(&self, key: &Digest) -> Vec<&str> {
        self.tags
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// Records sharing the image ID `config`.
    pub fn keys_with_config(&self, config: &Digest) -> Vec<Digest> {
        self.images
            .values()
            .filter(|r| r.config == *config)
            .map(|r| r.target.digest.clone())
            .collect()
    }

    /// Resolves what a user typed the way Docker does: a reference (with `latest` implied), then
    /// a full image ID or manifest digest, then a unique image-ID prefix.
    pub fn resolve(&self, input: &str) -> Result<Resolved, StoreError> {
        let not_found = || StoreError::ImageNotFound(input.to_string());
        if let Ok(digest) = input.parse::<Digest>() {
            return self.resolve_digest(&digest).ok_or_else(not_found);
        }
        if let Ok(reference) = Reference::parse(input) {
            if let Some(digest) = reference.digest() {
                let by_digest = self.resolve_digest(digest).ok_or_else(not_found)?;
                return Ok(by_digest);
            }
            let full = reference.with_default_tag().to_string();
            if let Some(key) = self.tags.get(&full) {
                return Ok(Resolved::Tag {
                    reference: full,
                    key: key.clone(),
                });
            }
        }
        self.resolve_id_prefix(input)?.ok_or_else(not_found)
    }

    fn resolve_digest(&self, digest: &Digest) -> Option<Resolved> {
        let record = self
            .images
            .values()
            .find(|r| r.config == *digest)
            .or_else(|| {
                self.images
                    .values()
                    .find(|r| r.target.digest == *digest || r.manifest == *digest)
            })?;
        Some(Resolved::Id {
            config: record.config.clone(),
            keys: self.keys_with_config(&record.config),
        })
    }

    fn resolve_id_prefix(&self, input: &str) -> Result<Option<Resolved>, StoreError> {
        let prefix = input.strip_prefix("sha256:").unwrap_or(input);
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Ok(None);
        }
        let mut configs: Vec<&Digest> = self
            .images
            .values()
            .map(|r| &r.config)
            .filter(|c| c.hex().starts_with(prefix))
            .collect();
        configs.sort();
        configs.dedup();
        match configs.as_slice() {
            [] => Ok(None),
            [config] => Ok(Some(Resolved::Id {
                config: (*config).clone(),
                keys: self.keys_with_config(config),
            })),
            _ => Err(StoreError::Conflict(format!(
                "image ID prefix {input:?} is ambiguous: it matches {} images",
                configs.len()
            ))),
        }
    }

    /// Points `reference` (its name and tag, `latest` when it has none) at `key`; returns the
    /// key it pointed at before, if another.
    pub fn set_tag(&mut self, reference: &Reference, key: &Digest) -> Option<Digest> {
        let tagged = reference.without_digest().with_default_tag();
        let previous = self.tags.insert(tagged.to_string(), key.clone());
        previous.filter(|p| p != key)
    }

    /// Records that are neither tagged nor the parent of another image: docker's `dangling=true`.
    pub fn is_dangling(&self, key: &Digest) -> bool {
        !self.tags.values().any(|k| k == key)
    }

    /// Image IDs of images built on `config`.
    pub fn children_of(&self, config: &Digest) -> Vec<Digest> {
        let mut children: Vec<Digest> = self
            .images
            .values()
            .filter(|r| r.parent.as_ref() == Some(config))
            .map(|r| r.config.clone())
            .collect();
        children.sort();
        children.dedup();
        children
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn record(key: char, config: char) -> ImageRecord {
        ImageRecord {
            target: BlobRef {
                media_type: strata_oci::media_types::OCI_MANIFEST.into(),
                digest: digest(key),
                size: 1,
            },
            manifest: digest(key),
            config: digest(config),
            added_at: DateTime::UNIX_EPOCH,
            last_tag_time: None,
            repo_digests: vec![],
            parent: None,
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for (key, config) in [('1', 'a'), ('2', 'b'), ('3', 'b'), ('4', 'c')] {
            c.images.insert(digest(key), record(key, config));
        }
        let mut tag = |r: &str, k: char| c.set_tag(&Reference::parse(r).unwrap(), &digest(k));
        tag("debian:12", '1');
        tag("localhost:5000/x/y", '2');
        c
    }

    fn check(input: &str, expected: Result<Resolved, &str>) {
        let got = catalog().resolve(input).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "resolving {input:?}");
    }

    #[test]
    fn resolve_cases() {
        let tag = |r: &str, k| {
            Ok(Resolved::Tag {
                reference: r.to_string(),
                key: digest(k),
            })
        };
        let id = |c, keys: &[char]| {
            Ok(Resolved::Id {
                config: digest(c),
                keys: keys.iter().map(|k| digest(*k)).collect(),
            })
        };
        check("debian:12", tag("docker.io/library/debian:12", '1'));
        check(
            "docker.io/library/debian:12",
            tag("docker.io/library/debian:12", '1'),
        );
        check("localhost:5000/x/y", tag("localhost:5000/x/y:latest", '2'));
        check(
            "localhost:5000/x/y:latest",
            tag("localhost:5000/x/y:latest", '2'),
        );
        check("debian", Err("No such image: debian"));
        check("aaaa", id('a', &['1']));
        check("sha256:aaaa", id('a', &['1']));
        check("bbb", id('b', &['2', '3']));
        check(&digest('c').to_string(), id('c', &['4']));
        check(&digest('3').to_string(), id('b', &['2', '3']));
        check(&format!("debian@{}", digest('4')), id('c', &['4']));
        check("dddd", Err("No such image: dddd"));
        check("ABC", Err("No such image: ABC"));
    }

    #[test]
    fn ambiguous_prefix_is_refused() {
        let mut c = catalog();
        let mut r = record('5', 'a');
        r.config = format!("sha256:aa{}", "b".repeat(62)).parse().unwrap();
        c.images.insert(digest('5'), r);
        let err = c.resolve("aa").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
    }

    #[test]
    fn retag_reports_displaced_image() {
        let mut c = catalog();
        let reference = Reference::parse("debian:12").unwrap();
        assert_eq!(c.set_tag(&reference, &digest('4')), Some(digest('1')));
        assert_eq!(c.set_tag(&reference, &digest('4')), None);
        assert!(c.is_dangling(&digest('1')));
        assert!(!c.is_dangling(&digest('4')));
    }
}
