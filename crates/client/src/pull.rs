//! `pull`: a registry image into the store. Manifest (and index), config and layers are
//! verified as they stream; layers already stored are not downloaded; the record is committed
//! last, and on failure the blobs this pull added are removed again.

use std::sync::Arc;

use strata_image::document::{Document, MAX_CONFIG_BYTES, parse_document};
use strata_oci::{Digest, Platform, Reference, media_types};
use strata_store::{BlobRef, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::http::{FetchedManifest, Registry};
use crate::record::{NewImage, Recorded, record_image};
use crate::{ClientError, Result};

/// What happened to one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStatus {
    /// Already in the store: not downloaded.
    Exists,
    Downloaded,
}

/// Told about each layer as its fate is known (for progress lines).
pub type LayerObserver = Arc<dyn Fn(&Digest, LayerStatus) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Pulled {
    /// The digest of what the reference names (manifest or index).
    pub digest: Digest,
    pub recorded: Recorded,
    pub layers: Vec<(Digest, LayerStatus)>,
}

/// Chooses the manifest for `platform` from an index: the best platform match, or the first
/// manifest when none of them declares a platform.
pub fn choose_manifest(
    index: &strata_image::document::Index,
    platform: &Platform,
) -> Result<BlobRef> {
    let manifests: Vec<_> = index
        .manifests
        .iter()
        .filter(|m| media_types::is_manifest(&m.descriptor.media_type))
        .collect();
    let with_platform: Vec<(&BlobRef, &Platform)> = manifests
        .iter()
        .filter_map(|m| m.platform.as_ref().map(|p| (&m.descriptor, p)))
        .collect();
    if let Some(best) = platform.best_match(with_platform.iter().map(|(_, p)| *p)) {
        return Ok(with_platform[best].0.clone());
    }
    if with_platform.is_empty()
        && let Some(first) = manifests.first()
    {
        return Ok(first.descriptor.clone());
    }
    let available: Vec<String> = with_platform.iter().map(|(_, p)| p.to_string()).collect();
    Err(ClientError::Invalid(format!(
        "no manifest for platform {platform} (available: {})",
        available.join(", ")
    )))
}

/// Resolves a reference to the manifest to use: fetches it, and when it is an index, the
/// platform manifest it lists. Returns (target, platform manifest).
pub async fn resolve_manifest(
    registry: &Registry,
    reference: &Reference,
    platform: &Platform,
) -> Result<(FetchedManifest, FetchedManifest)> {
    let repository = reference.path();
    let tag_or_digest = match reference.digest() {
        Some(d) => d.to_string(),
        None => reference
            .tag()
            .unwrap_or(strata_oci::DEFAULT_TAG)
            .to_string(),
    };
    let target = registry.get_manifest(repository, &tag_or_digest).await?;
    match parse_document(&target.bytes, &target.digest)? {
        Document::Manifest(_) => Ok((target.clone(), target)),
        Document::Index(index) => {
            let chosen = choose_manifest(&index, platform)?;
            let manifest = registry
                .get_manifest(repository, &chosen.digest.to_string())
                .await?;
            Ok((target, manifest))
        }
    }
}

/// Pulls `reference` into `store` and points `names` at it.
pub async fn pull(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    names: Vec<Reference>,
    observer: Option<LayerObserver>,
) -> Result<Pulled> {
    let lock = store.lock_content_shared()?;
    let mut added: Vec<Digest> = Vec::new();
    let result = pull_locked(
        registry,
        store,
        reference,
        platform,
        names,
        observer.unwrap_or_else(|| Arc::new(|_: &Digest, _| {})),
        &mut added,
    )
    .await;
    drop(lock);
    if result.is_err()
        && !added.is_empty()
        && let Err(e) = strata_image::gc::remove_unreferenced(store, &added)
    {
        tracing::warn!("could not remove blobs of the failed pull: {e}");
    }
    result
}

async fn pull_locked(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    names: Vec<Reference>,
    observer: LayerObserver,
    added: &mut Vec<Digest>,
) -> Result<Pulled> {
    let repository = reference.path().to_string();
    let (target, manifest_doc) = resolve_manifest(registry, reference, platform).await?;
    let manifest = match parse_document(&manifest_doc.bytes, &manifest_doc.digest)? {
        Document::Manifest(m) => m,
        Document::Index(_) => {
            return Err(ClientError::Invalid(format!(
                "{reference}: the index lists another index; nested indexes are not supported"
            )));
        }
    };

    let config_bytes = registry
        .fetch_small_blob(&repository, &manifest.config, MAX_CONFIG_BYTES as usize)
        .await?;
    let mut layers = Vec::new();
    let semaphore = Arc::new(Semaphore::new(registry.options().parallel.max(1)));
    let mut downloads = JoinSet::new();
    for layer in &manifest.layers {
        if store.has_blob(&layer.digest) {
            layers.push((layer.digest.clone(), LayerStatus::Exists));
            observer(&layer.digest, LayerStatus::Exists);
            continue;
        }
        layers.push((layer.digest.clone(), LayerStatus::Downloaded));
        let (registry, store, repository, layer) = (
            registry.clone(),
            store.clone(),
            repository.clone(),
            layer.clone(),
        );
        let (semaphore, observer) = (semaphore.clone(), observer.clone());
        downloads.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let ingested = registry.fetch_blob(&repository, &layer, &store).await?;
            observer(&layer.digest, LayerStatus::Downloaded);
            Ok(ingested)
        });
    }
    let mut failure = None;
    while let Some(joined) = downloads.join_next().await {
        match joined {
            Ok(Ok(ingested)) => {
                if ingested.created {
                    added.push(ingested.digest);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
                // Dropping the set aborts the other downloads (their partial files go too).
                downloads.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                failure.get_or_insert(ClientError::Invalid(format!("download task failed: {e}")));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // Small documents last, so a visible manifest never precedes its layers. Each was verified
    // against its digest when fetched; one already stored is not written again (a repeated
    // pull then writes nothing).
    for (bytes, digest) in [
        (&config_bytes, &manifest.config.digest),
        (&manifest_doc.bytes, &manifest_doc.digest),
        (&target.bytes, &target.digest),
    ] {
        let ingested = store.ingest(&bytes[..], Some(digest))?;
        if ingested.created {
            added.push(ingested.digest);
        }
    }
    let new_image = NewImage {
        target: target.descriptor(),
        manifest: manifest_doc.digest.clone(),
        names,
        repo_digest: Some(format!("{}@{}", reference.name(), target.digest)),
    };
    let store_for_record = store.clone();
    // Layer verification reads every new layer: blocking work.
    let recorded = tokio::task::spawn_blocking(move || record_image(&store_for_record, new_image))
        .await
        .map_err(|e| ClientError::Invalid(format!("record task failed: {e}")))??;
    Ok(Pulled {
        digest: target.digest,
        recorded,
        layers,
    })
}
