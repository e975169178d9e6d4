//! Writing a new image (from `import` or `build`) into the store.

use chrono::Utc;
use serde_json::json;
use strata_oci::{Digest, Reference, media_types};
use strata_store::{BlobRef, ImageRecord, Store};

use crate::layer_io::LayerSizes;
use crate::load::upsert_layer;
use crate::{ImageError, Result};

/// A stored layer blob that goes into a new image.
#[derive(Debug, Clone)]
pub struct NewLayer {
    pub diff_id: Digest,
    pub blob: BlobRef,
    pub sizes: LayerSizes,
}

/// The digests of a committed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedImage {
    /// The config digest: the image ID.
    pub id: Digest,
    pub manifest: Digest,
}

/// Stores `config` and an OCI manifest over `layers`, then, in one catalog transaction,
/// records the image and its layers and points `tags` at it. Blobs this creates are appended to
/// `added` so a caller can remove them again if it fails later.
pub fn commit_image(
    store: &Store,
    config: &[u8],
    layers: &[NewLayer],
    tags: &[Reference],
    added: &mut Vec<Digest>,
) -> Result<CommittedImage> {
    let config_blob = store.ingest_bytes(config)?;
    if config_blob.created {
        added.push(config_blob.digest.clone());
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "digest": config_blob.digest.to_string(),
            "size": config_blob.size,
        },
        "layers": layers.iter().map(|l| &l.blob).collect::<Vec<_>>(),
    });
    let manifest_blob =
        store.ingest_bytes(&serde_json::to_vec(&manifest).expect("JSON values serialise"))?;
    if manifest_blob.created {
        added.push(manifest_blob.digest.clone());
    }
    let key = manifest_blob.digest.clone();
    let now = Utc::now();
    store.update::<_, ImageError>(|catalog| {
        // Re-tagging with tags that already point here changes nothing (no write at all).
        let retagged = tags.iter().any(|t| {
            catalog
                .tags
                .get(&t.without_digest().with_default_tag().to_string())
                != Some(&key)
        });
        let previous = catalog.images.get(&key);
        let record = ImageRecord {
            target: BlobRef {
                media_type: media_types::OCI_MANIFEST.to_string(),
                digest: key.clone(),
                size: manifest_blob.size,
            },
            manifest: key.clone(),
            config: config_blob.digest.clone(),
            added_at: previous.map_or(now, |existing| existing.added_at),
            last_tag_time: if retagged {
                Some(now)
            } else {
                previous.and_then(|p| p.last_tag_time)
            },
            repo_digests: previous.map(|p| p.repo_digests.clone()).unwrap_or_default(),
            parent: previous.and_then(|p| p.parent.clone()),
        };
        catalog.images.insert(key.clone(), record);
        for layer in layers {
            upsert_layer(
                catalog,
                layer.diff_id.clone(),
                layer.blob.clone(),
                layer.sizes,
            );
        }
        for tag in tags {
            catalog.set_tag(tag, &key);
        }
        Ok(())
    })?;
    Ok(CommittedImage {
        id: config_blob.digest,
        manifest: key,
    })
}
