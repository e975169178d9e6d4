//! `push`: a stored image to a registry, byte for byte, so its digests stay the same.

use std::sync::Arc;

use strata_image::document::{Document, MAX_MANIFEST_BYTES, StoredImage, parse_document};
use strata_oci::{Digest, Reference};
use strata_store::{BlobRef, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::http::{BlobPush, Registry};
use crate::record::{add_repo_digest, stored_manifest};
use crate::{ClientError, Result};

#[derive(Debug, Clone)]
pub struct Pushed {
    /// The digest the destination reference now points at.
    pub digest: Digest,
    pub size: u64,
    /// Each blob and what was done with it.
    pub blobs: Vec<(Digest, BlobPush)>,
    /// The repository blobs were mounted from, if any.
    pub mounted_from: Option<String>,
}

/// One manifest to push with the blobs it references.
pub(crate) struct ManifestUpload {
    pub(crate) descriptor: BlobRef,
    pub(crate) blobs: Vec<BlobRef>,
}

/// What to push for a stored image: the index it was pulled as when every platform it lists is
/// stored, otherwise its platform manifest alone (an index with absent children would be
/// refused by the registry).
pub(crate) fn plan(store: &Store, image: &StoredImage) -> Result<(Vec<ManifestUpload>, BlobRef)> {
    let platform_only = || {
        let mut blobs = vec![image.manifest.config.clone()];
        blobs.extend(image.manifest.layers.iter().cloned());
        (
            vec![ManifestUpload {
                descriptor: image.manifest_ref.clone(),
                blobs,
            }],
            image.manifest_ref.clone(),
        )
    };
    if image.record.target.digest == image.record.manifest {
        return Ok(platform_only());
    }
    let bytes = store.read_blob(&image.record.target.digest, MAX_MANIFEST_BYTES)?;
    let Document::Index(index) = parse_document(&bytes, &image.record.target.digest)? else {
        return Ok(platform_only());
    };
    let mut uploads = Vec::new();
    for entry in &index.manifests {
        let child = &entry.descriptor;
        let complete = store.has_blob(&child.digest)
            && stored_manifest(store, &child.digest).is_ok_and(|m| {
                std::iter::once(&m.config)
                    .chain(&m.layers)
                    .all(|b| store.has_blob(&b.digest))
            });
        if !complete {
            tracing::info!(
                "pushing the platform manifest only: {} of the index is not stored",
                child.digest
            );
            return Ok(platform_only());
        }
        let m = stored_manifest(store, &child.digest)?;
        let mut blobs = vec![m.config.clone()];
        blobs.extend(m.layers);
        uploads.push(ManifestUpload {
            descriptor: child.clone(),
            blobs,
        });
    }
    Ok((uploads, image.record.target.clone()))
}

/// Pushes the stored image `source` (anything `strata inspect` accepts) to `destination`.
pub async fn push(
    registry: &Registry,
    store: &Store,
    source: &str,
    destination: &Reference,
) -> Result<Pushed> {
    let catalog = store.catalog()?;
    let image = StoredImage::resolve(store, &catalog, source)?;
    let repository = destination.path().to_string();
    // A repository of the same registry known to hold this image: blobs can be mounted from it.
    let mount_from = image.record.repo_digests.iter().find_map(|rd| {
        let known = Reference::parse(rd).ok()?;
        (known.domain() == destination.domain() && known.path() != repository)
            .then(|| known.path().to_string())
    });
    let (uploads, top) = plan(store, &image)?;

    let semaphore = Arc::new(Semaphore::new(registry.options().parallel.max(1)));
    let mut pushed_blobs = Vec::new();
    for upload in &uploads {
        let mut transfers = JoinSet::new();
        for blob in &upload.blobs {
            if pushed_blobs.iter().any(|(d, _)| *d == blob.digest) {
                continue;
            }
            let (registry, store, repository, blob, mount_from) = (
                registry.clone(),
                store.clone(),
                repository.clone(),
                blob.clone(),
                mount_from.clone(),
            );
            let semaphore = semaphore.clone();
            transfers.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let done = registry
                    .push_blob(&repository, &blob, &store, mount_from.as_deref())
                    .await?;
                Ok::<_, ClientError>((blob.digest, done))
            });
        }
        while let Some(joined) = transfers.join_next().await {
            let done =
                joined.map_err(|e| ClientError::Invalid(format!("upload task failed: {e}")))??;
            pushed_blobs.push(done);
        }
        if upload.descriptor.digest != top.digest {
            let bytes = store.read_blob(&upload.descriptor.digest, MAX_MANIFEST_BYTES)?;
            registry
                .put_manifest(
                    &repository,
                    &upload.descriptor.digest.to_string(),
                    &upload.descriptor.media_type,
                    &bytes,
                )
                .await?;
        }
    }
    let bytes = store.read_blob(&top.digest, MAX_MANIFEST_BYTES)?;
    let reference = match (destination.tag(), destination.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(digest)) if *digest == top.digest => digest.to_string(),
        (None, Some(digest)) => {
            return Err(ClientError::Invalid(format!(
                "cannot push to {destination}: the image's digest is {}, not {digest}",
                top.digest
            )));
        }
        (None, None) => strata_oci::DEFAULT_TAG.to_string(),
    };
    registry
        .put_manifest(&repository, &reference, &top.media_type, &bytes)
        .await?;
    add_repo_digest(
        store,
        &image.record.target.digest,
        format!("{}@{}", destination.name(), top.digest),
    )?;
    Ok(Pushed {
        digest: top.digest.clone(),
        size: top.size,
        blobs: pushed_blobs,
        mounted_from: mount_from,
    })
}
