//! Recording an image whose blobs are all in the store: the same checks `strata load` makes
//! (sizes, diffIDs), then one catalog transaction (tags, repo digests, layer records).

use strata_image::document::{
    Document, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Manifest, parse_config, parse_document,
};
use strata_image::layer_io::{self, LayerSizes};
use strata_oci::{Digest, Reference};
use strata_store::{BlobRef, ImageRecord, Store};

use crate::{ClientError, Result};

/// An image ready to record.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// What the image is known by: its manifest, or the index it was chosen from.
    pub target: BlobRef,
    /// The platform manifest (equal to `target` unless that is an index).
    pub manifest: Digest,
    /// Tags to point at the image.
    pub names: Vec<Reference>,
    /// `name@digest` under which a registry serves the target.
    pub repo_digest: Option<String>,
}

/// The outcome of [`record_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The catalog key (target digest).
    pub key: Digest,
    /// The image ID (config digest).
    pub id: Digest,
    /// False when the record and all the tags were already as requested.
    pub changed: bool,
}

/// Reads a stored manifest (not an index).
pub fn stored_manifest(store: &Store, digest: &Digest) -> Result<Manifest> {
    let bytes = store.read_blob(digest, MAX_MANIFEST_BYTES)?;
    match parse_document(&bytes, digest)? {
        Document::Manifest(m) => Ok(m),
        Document::Index(_) => Err(ClientError::Invalid(format!(
            "{digest} is an image index where a manifest was expected"
        ))),
    }
}

/// Checks the stored blobs of `image` and records it.
pub fn record_image(store: &Store, image: NewImage) -> Result<Recorded> {
    let manifest = stored_manifest(store, &image.manifest)?;
    let config_bytes = store.read_blob(&manifest.config.digest, MAX_CONFIG_BYTES)?;
    let config = parse_config(&config_bytes, &manifest.config.digest)?;
    if config.diff_ids.len() != manifest.layers.len() {
        return Err(ClientError::Invalid(format!(
            "manifest {}: {} layers but its config lists {} diff_ids",
            image.manifest,
            manifest.layers.len(),
            config.diff_ids.len()
        )));
    }
    let catalog = store.catalog()?;
    let mut layers: Vec<(Digest, BlobRef, LayerSizes)> = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.diff_ids) {
        let size = store.blob_size(&layer.digest)?;
        if size != layer.size {
            return Err(ClientError::Invalid(format!(
                "layer {} is {size} bytes but the manifest says {}",
                layer.digest, layer.size
            )));
        }
        let sizes = layer_io::measured_sizes(store, &catalog, layer, diff_id)?;
        layers.push((diff_id.clone(), layer.clone(), sizes));
    }
    let id = manifest.config.digest.clone();
    let key = image.target.digest.clone();
    if is_recorded(&catalog, &key, &image, &layers) {
        // A repeated pull: skip the write transaction and the index.json rewrite.
        return Ok(Recorded {
            key,
            id,
            changed: false,
        });
    }
    let now = chrono::Utc::now();
    store.update::<_, ClientError>(|catalog| {
        let mut changed = false;
        let record = match catalog.images.get(&key) {
            Some(existing) => existing.clone(),
            None => {
                changed = true;
                ImageRecord {
                    target: image.target.clone(),
                    manifest: image.manifest.clone(),
                    config: id.clone(),
                    added_at: now,
                    last_tag_time: None,
                    repo_digests: Vec::new(),
                    parent: None,
                }
            }
        };
        let mut record = record;
        if let Some(repo_digest) = &image.repo_digest
            && !record.repo_digests.contains(repo_digest)
        {
            record.repo_digests.push(repo_digest.clone());
        }
        for name in &image.names {
            let tagged = name.without_digest().with_default_tag().to_string();
            if catalog.tags.get(&tagged) != Some(&key) {
                changed = true;
                record.last_tag_time = Some(now);
            }
            catalog.set_tag(name, &key);
        }
        catalog.images.insert(key.clone(), record);
        for (diff_id, blob, sizes) in layers {
            strata_image::upsert_layer(catalog, diff_id, blob, sizes);
        }
        Ok(Recorded {
            key: key.clone(),
            id: id.clone(),
            changed,
        })
    })
}

/// Whether the catalog already holds exactly what recording `image` would write.
fn is_recorded(
    catalog: &strata_store::Catalog,
    key: &Digest,
    image: &NewImage,
    layers: &[(Digest, BlobRef, LayerSizes)],
) -> bool {
    let Some(record) = catalog.images.get(key) else {
        return false;
    };
    image
        .repo_digest
        .as_ref()
        .is_none_or(|d| record.repo_digests.contains(d))
        && image.names.iter().all(|name| {
            catalog
                .tags
                .get(&name.without_digest().with_default_tag().to_string())
                == Some(key)
        })
        && layers.iter().all(|(diff_id, blob, _)| {
            catalog
                .layers
                .get(diff_id)
                .is_some_and(|l| l.blobs.iter().any(|b| b.digest == blob.digest))
        })
}

/// Adds `repo_digest` to an existing record (after a push), and records the compressed layers
/// the push kept in the store, `(diffID, gzip blob)`, so the next push reuses them.
pub fn add_repo_digest(
    store: &Store,
    key: &Digest,
    repo_digest: String,
    kept_layers: &[(Digest, BlobRef)],
) -> Result<()> {
    store.update::<_, ClientError>(|catalog| {
        if let Some(record) = catalog.images.get_mut(key)
            && !record.repo_digests.contains(&repo_digest)
        {
            record.repo_digests.push(repo_digest);
        }
        for (diff_id, blob) in kept_layers {
            let layer = catalog.layers.entry(diff_id.clone()).or_default();
            if !layer.blobs.iter().any(|b| b.digest == blob.digest) {
                layer.blobs.push(blob.clone());
            }
        }
        Ok(())
    })
}
