//! Manifests, indexes and configs: parsed from bytes with size bounds, never trusted.

use serde::Deserialize;
use serde_json::Value;
use strata_oci::{Digest, Platform, media_types};
use strata_store::{BlobRef, ImageRecord, Store};

use crate::{ImageError, Result};

/// Manifests and indexes above this size are refused (the distribution spec's limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Image configs above this size are refused.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    #[serde(flatten)]
    pub descriptor: BlobRef,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<IndexEntry>,
}

#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

fn invalid(what: &'static str, digest: &Digest, message: impl Into<String>) -> ImageError {
    ImageError::Document {
        what,
        digest: digest.to_string(),
        message: message.into(),
    }
}

/// Parses a manifest or an index. The JSON's own `mediaType` wins over the descriptor's, and a
/// document without one is told apart by its fields, as registries do.
pub fn parse_document(bytes: &[u8], digest: &Digest) -> Result<Document> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("manifest", digest, e.to_string()))?;
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_index = media_types::is_index(&media_type)
        || (media_type.is_empty() && value.get("manifests").is_some());
    if is_index {
        let index: Index =
            serde_json::from_value(value).map_err(|e| invalid("index", digest, e.to_string()))?;
        return Ok(Document::Index(index));
    }
    if !media_type.is_empty() && !media_types::is_manifest(&media_type) {
        return Err(invalid(
            "manifest",
            digest,
            format!("unsupported media type {media_type:?}"),
        ));
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| invalid("manifest", digest, e.to_string()))?;
    Ok(Document::Manifest(manifest))
}

/// An image config's parsed JSON and its diffIDs.
#[derive(Debug, Clone)]
pub struct Config {
    pub value: Value,
    pub diff_ids: Vec<Digest>,
}

pub fn parse_config(bytes: &[u8], digest: &Digest) -> Result<Config> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("config", digest, e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("config", digest, "not a JSON object"));
    }
    let diff_ids = match value.pointer("/rootfs/diff_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| {
                id.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    invalid(
                        "config",
                        digest,
                        format!("rootfs.diff_ids holds an invalid digest {id}"),
                    )
                })
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(invalid(
                "config",
                digest,
                format!("rootfs.diff_ids is not a list: {other}"),
            ));
        }
    };
    Ok(Config { value, diff_ids })
}

/// Picks the best manifest for `platform` from an index, among children present in the store;
/// an index whose children carry no platform gives its first present manifest.
pub fn choose_platform<'a>(
    store: &Store,
    index: &'a Index,
    platform: &Platform,
) -> Option<&'a IndexEntry> {
    let present: Vec<&IndexEntry> = index
        .manifests
        .iter()
        .filter(|m| {
            media_types::is_manifest(&m.descriptor.media_type)
                && store.has_blob(&m.descriptor.digest)
        })
        .collect();
    let with_platform: Vec<(&IndexEntry, &Platform)> = present
        .iter()
        .filter_map(|m| m.platform.as_ref().map(|p| (*m, p)))
        .collect();
    match platform.best_match(with_platform.iter().map(|(_, p)| *p)) {
        Some(best) => Some(with_platform[best].0),
        None if with_platform.is_empty() => present.first().copied(),
        None => None,
    }
}

/// An image as stored: its record, manifest and config.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub record: ImageRecord,
    /// The platform manifest's descriptor (the record's target unless that is an index).
    pub manifest_ref: BlobRef,
    pub manifest: Manifest,
    pub config: Config,
}

impl StoredImage {
    /// The image a user's string names (see [`strata_store::Catalog::resolve`]).
    pub fn resolve(
        store: &Store,
        catalog: &strata_store::Catalog,
        input: &str,
    ) -> Result<StoredImage> {
        let key = catalog.resolve(input)?.keys().remove(0);
        let record = catalog
            .images
            .get(&key)
            .ok_or_else(|| strata_store::StoreError::ImageNotFound(input.into()))?;
        StoredImage::load(store, record)
    }

    pub fn load(store: &Store, record: &ImageRecord) -> Result<StoredImage> {
        let manifest_bytes = store.read_blob(&record.manifest, MAX_MANIFEST_BYTES)?;
        let manifest = match parse_document(&manifest_bytes, &record.manifest)? {
            Document::Manifest(m) => m,
            Document::Index(_) => {
                return Err(invalid(
                    "manifest",
                    &record.manifest,
                    "is an index, not a manifest",
                ));
            }
        };
        let config_bytes = store.read_blob(&manifest.config.digest, MAX_CONFIG_BYTES)?;
        let config = parse_config(&config_bytes, &manifest.config.digest)?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(
                "manifest",
                &record.manifest,
                format!(
                    "has {} layers but its config lists {} diff_ids",
                    manifest.layers.len(),
                    config.diff_ids.len()
                ),
            ));
        }
        let manifest_ref = BlobRef {
            media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string()),
            digest: record.manifest.clone(),
            size: manifest_bytes.len() as u64,
        };
        Ok(StoredImage {
            record: record.clone(),
            manifest_ref,
            manifest,
            config,
        })
    }

    /// Every blob this image needs, in a stable order: target, manifest, config, layers.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut blobs = vec![self.record.target.clone()];
        if self.record.manifest != self.record.target.digest {
            blobs.push(self.manifest_ref.clone());
        }
        blobs.push(self.manifest.config.clone());
        blobs.extend(self.manifest.layers.iter().cloned());
        blobs
    }
}
