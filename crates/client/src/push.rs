//! `push`: a stored image to a registry, byte for byte, so its digests stay the same.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use strata_image::document::{Document, MAX_MANIFEST_BYTES, StoredImage, parse_document};
use strata_oci::{Digest, Digester, Reference, media_types};
use strata_store::{BlobRef, Catalog, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::gzip;
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
    // Shared with other writers: prune (exclusive) must not remove the compressed blobs this
    // push keeps while they are written.
    let _lock = store.lock_content_shared()?;
    let catalog = store.catalog()?;
    let image = StoredImage::resolve(store, &catalog, source)?;
    let repository = destination.path().to_string();
    // A repository of the same registry known to hold this image: blobs can be mounted from it.
    let mount_from = image.record.repo_digests.iter().find_map(|rd| {
        let known = Reference::parse(rd).ok()?;
        (known.domain() == destination.domain() && known.path() != repository)
            .then(|| known.path().to_string())
    });
    let (uploads, mut top) = plan(store, &image)?;
    let upload_permits = Arc::new(Semaphore::new(registry.options().parallel.max(1)));
    // One layer compresses at a time, on every core (see gzip::parallel_gzip).
    let cpu_permits = Arc::new(Semaphore::new(1));
    // Uncompressed layers (from import, load, build) go out gzip-compressed, in a rewritten
    // manifest, when a single manifest is pushed (an index's children keep their digests).
    // Each layer is uploaded while it is compressed, the largest first.
    let compress = registry.options().compress_layers
        && uploads.len() == 1
        && uploads[0].descriptor.digest == top.digest
        && uploads[0]
            .blobs
            .iter()
            .any(|b| is_uncompressed_layer(&b.media_type));

    let mut replaced: HashMap<Digest, BlobRef> = HashMap::new();
    let mut pushed_blobs: Vec<(Digest, BlobPush)> = Vec::new();
    let mut started: Vec<Digest> = Vec::new();
    // (diffID, gzip blob) compressed by this push and kept in the store.
    let mut newly_kept: Vec<(Digest, BlobRef)> = Vec::new();
    for upload in &uploads {
        let mut transfers = JoinSet::new();
        let mut blobs = upload.blobs.clone();
        blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
        for blob in blobs {
            if started.contains(&blob.digest) {
                continue;
            }
            started.push(blob.digest.clone());
            let (registry, store, repository, mount_from) = (
                registry.clone(),
                store.clone(),
                repository.clone(),
                mount_from.clone(),
            );
            let (upload_permits, cpu_permits) = (upload_permits.clone(), cpu_permits.clone());
            let compress = compress && is_uncompressed_layer(&blob.media_type);
            // A gzip form of the layer kept by an earlier push (or pulled): nothing to compress.
            let cached = compress
                .then(|| cached_gzip(&store, &catalog, &blob))
                .flatten();
            transfers.spawn(async move {
                if compress && cached.is_none() {
                    let _permit = upload_permits.acquire_owned().await;
                    let (sent, kept) =
                        push_compressing(&registry, &store, &repository, &blob, cpu_permits)
                            .await?;
                    return Ok((blob.digest, sent, BlobPush::Uploaded, kept));
                }
                let sent = cached.unwrap_or_else(|| blob.clone());
                let _permit = upload_permits.acquire_owned().await;
                let path = store.blob_path(&sent.digest);
                let done = registry
                    .push_blob(&repository, &sent, &path, mount_from.as_deref())
                    .await?;
                Ok::<_, ClientError>((blob.digest, sent, done, None))
            });
        }
        while let Some(joined) = transfers.join_next().await {
            let (original, sent, done, kept) =
                joined.map_err(|e| ClientError::Invalid(format!("upload task failed: {e}")))??;
            pushed_blobs.push((sent.digest.clone(), done));
            if let Some(kept) = kept {
                newly_kept.push((original.clone(), kept));
            }
            if sent.digest != original {
                replaced.insert(original, sent);
            }
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
    let mut top_bytes = None;
    if !replaced.is_empty() {
        let stored = store.read_blob(&top.digest, MAX_MANIFEST_BYTES)?;
        let bytes = rewrite_manifest(&stored, &top.digest, &replaced)?;
        top = BlobRef {
            media_type: top.media_type.clone(),
            digest: Digest::sha256_of(&bytes),
            size: bytes.len() as u64,
        };
        top_bytes = Some(bytes);
    }
    let bytes = match top_bytes {
        Some(bytes) => bytes,
        None => store.read_blob(&top.digest, MAX_MANIFEST_BYTES)?,
    };
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
        &newly_kept,
    )?;
    Ok(Pushed {
        digest: top.digest.clone(),
        size: top.size,
        blobs: pushed_blobs,
        mounted_from: mount_from,
    })
}

fn is_uncompressed_layer(media_type: &str) -> bool {
    media_type == media_types::OCI_LAYER || media_type == media_types::DOCKER_LAYER
}

fn gzip_media_type(media_type: &str) -> &'static str {
    if media_type == media_types::DOCKER_LAYER {
        media_types::DOCKER_LAYER_GZIP
    } else {
        media_types::OCI_LAYER_GZIP
    }
}

/// A stored gzip blob of the uncompressed layer `layer` (its diffID is its digest), as the
/// catalog records it: kept by an earlier push, or pulled.
fn cached_gzip(store: &Store, catalog: &Catalog, layer: &BlobRef) -> Option<BlobRef> {
    let gzip = catalog.layers.get(&layer.digest)?.blobs.iter().find(|b| {
        matches!(
            strata_layer::Compression::from_media_type(&b.media_type),
            Ok(strata_layer::Compression::Gzip)
        ) && store.has_blob(&b.digest)
    })?;
    Some(BlobRef {
        media_type: gzip_media_type(&layer.media_type).to_string(),
        digest: gzip.digest.clone(),
        size: gzip.size,
    })
}

/// Pushes the stored uncompressed layer `layer` gzip-compressed. Returns what was sent and, when
/// the compressed blob was also kept in the store, its descriptor.
async fn push_compressing(
    registry: &Registry,
    store: &Store,
    repository: &str,
    layer: &BlobRef,
    cpu_permits: Arc<Semaphore>,
) -> Result<(BlobRef, Option<BlobRef>)> {
    let progress = registry.options().progress.clone();
    let attempts = registry.options().attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(p) = &progress {
            if attempt == 1 {
                p.0.started(&layer.digest, layer.size);
            } else {
                p.0.restarted(&layer.digest);
            }
        }
        let cpu = cpu_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ClientError::Invalid(format!("compression slots: {e}")))?;
        let result = compress_while_uploading(registry, store, repository, layer, cpu).await;
        match result {
            Err(ClientError::Connection { message, .. }) if attempt < attempts => {
                let delay = registry.options().backoff * 2u32.pow((attempt - 1).min(6));
                tracing::info!(
                    "uploading layer {} compressed: {message}; starting over in {delay:?}",
                    layer.digest
                );
                tokio::time::sleep(delay).await;
            }
            // The registry wants the content in chunks: compress into a file first.
            Err(ClientError::Registry { status: 413, .. }) => {
                let cpu = cpu_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| ClientError::Invalid(format!("compression slots: {e}")))?;
                let (store_for_task, original) = (store.clone(), layer.clone());
                let (sent, file) = tokio::task::spawn_blocking(move || {
                    let compressed = compress_to_file(&store_for_task, &original);
                    drop(cpu);
                    compressed
                })
                .await
                .map_err(|e| ClientError::Invalid(format!("compression task failed: {e}")))??;
                registry
                    .push_blob(repository, &sent, file.path(), None)
                    .await?;
                return Ok((sent, None));
            }
            result => {
                if let Some(p) = &progress {
                    p.0.finished(&layer.digest);
                }
                return result;
            }
        }
    }
}

/// One attempt of [`push_compressing`]: an upload session whose content is streamed as the
/// layer is compressed (no temporary file), the compressed blob kept in the store on the way.
/// `cpu` is released as soon as the compression is done.
async fn compress_while_uploading(
    registry: &Registry,
    store: &Store,
    repository: &str,
    layer: &BlobRef,
    cpu: OwnedSemaphorePermit,
) -> Result<(BlobRef, Option<BlobRef>)> {
    // A few members in flight: enough to keep the connection busy while the next compresses.
    // Compression starts at once; the session is opened meanwhile.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let producer = {
        let (store, layer) = (store.clone(), layer.clone());
        let progress = registry.options().progress.clone();
        tokio::task::spawn_blocking(move || {
            let compressed = compress_into_channel(&store, &layer, &tx, progress);
            if let Err(e) = &compressed {
                // Abort the request rather than let it end as if the content were complete.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            // The request body ends and the next layer may compress while this one is synced.
            drop(tx);
            drop(cpu);
            compressed.and_then(|(media_type, sink)| sink.finish(media_type))
        })
    };
    let patched = match registry.start_upload(repository).await {
        Ok(location) => {
            let body =
                reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                }));
            registry.patch_stream(repository, &location, body).await
        }
        Err(e) => {
            // Closing the queue stops the compression (it is awaited below).
            drop(rx);
            Err(e)
        }
    };
    let produced = producer
        .await
        .map_err(|e| ClientError::Invalid(format!("compression task failed: {e}")))?;
    let (sent, kept) = match (produced, patched) {
        // The upload failed first: the compressor only saw its queue close.
        (Err(ClientError::Io { source, .. }), Err(e))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Err(e);
        }
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        (Ok(produced), Ok((next, received))) => {
            if let Some(received) = received
                && received != produced.0.size
            {
                return Err(ClientError::Invalid(format!(
                    "registry {}: upload of layer {} compressed: it received {received} of {} bytes",
                    registry.domain(),
                    layer.digest,
                    produced.0.size
                )));
            }
            registry
                .finish_upload(repository, &next, &produced.0)
                .await?;
            produced
        }
    };
    Ok((sent, kept))
}

/// Where compressed bytes are digested: the store's blob writer (which keeps them) or, when
/// the store cannot take them, a digester alone.
enum CompressedSink {
    Store(strata_store::BlobWriter),
    Digest(Digester, u64),
}

impl CompressedSink {
    /// The compressed blob and, if the store kept it (synced and in place now), the same.
    fn finish(self, media_type: String) -> Result<(BlobRef, Option<BlobRef>)> {
        Ok(match self {
            CompressedSink::Store(writer) => {
                let stored = writer.commit(None)?;
                let blob = BlobRef {
                    media_type,
                    digest: stored.digest,
                    size: stored.size,
                };
                (blob.clone(), Some(blob))
            }
            CompressedSink::Digest(digester, size) => (
                BlobRef {
                    media_type,
                    digest: digester.finish(),
                    size,
                },
                None,
            ),
        })
    }
}

/// Compresses the stored layer into `tx`, member by member, digesting it and writing it into
/// the store as well. Returns the compressed blob's media type and where it was digested.
fn compress_into_channel(
    store: &Store,
    layer: &BlobRef,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    progress: Option<crate::Progress>,
) -> Result<(String, CompressedSink)> {
    let what = || format!("compressing layer {}", layer.digest);
    let input = store.open_blob(&layer.digest)?;
    let mut sink = match store.blob_writer(strata_oci::Algorithm::Sha256) {
        Ok(writer) => CompressedSink::Store(writer),
        Err(e) => {
            tracing::warn!("not keeping the compressed layer {}: {e}", layer.digest);
            CompressedSink::Digest(Digester::new(strata_oci::Algorithm::Sha256), 0)
        }
    };
    gzip::parallel_gzip(input, compression_threads(), |member, input_len| {
        match &mut sink {
            CompressedSink::Store(writer) => writer.write_all(&member)?,
            CompressedSink::Digest(digester, size) => {
                digester.update(&member);
                *size += member.len() as u64;
            }
        }
        if let Some(p) = &progress {
            p.0.advanced(&layer.digest, input_len as u64);
        }
        tx.blocking_send(Ok(bytes::Bytes::from(member)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    })
    .map_err(|e| ClientError::io(what(), e))?;
    Ok((gzip_media_type(&layer.media_type).to_string(), sink))
}

fn compression_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Compresses a stored layer into a temporary file (for registries that take uploads only in
/// chunks, which need the size and digest first).
fn compress_to_file(store: &Store, layer: &BlobRef) -> Result<(BlobRef, tempfile::NamedTempFile)> {
    let what = || format!("compressing layer {}", layer.digest);
    let input = store.open_blob(&layer.digest)?;
    let file = tempfile::Builder::new()
        .prefix("strata-push-")
        .tempfile()
        .map_err(|e| ClientError::io(what(), e))?;
    let mut output = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut digester = Digester::new(strata_oci::Algorithm::Sha256);
    let mut size = 0u64;
    gzip::parallel_gzip(input, compression_threads(), |member, _| {
        digester.update(&member);
        size += member.len() as u64;
        output.write_all(&member)
    })
    .map_err(|e| ClientError::io(what(), e))?;
    let file = output
        .into_inner()
        .map_err(|e| ClientError::io(what(), e.into_error()))?;
    let blob = BlobRef {
        media_type: gzip_media_type(&layer.media_type).to_string(),
        digest: digester.finish(),
        size,
    };
    Ok((blob, file))
}

/// The stored manifest with its compressed layers' descriptors replaced (other fields, their
/// order and unknown fields kept).
fn rewrite_manifest(
    stored: &[u8],
    digest: &Digest,
    replaced: &HashMap<Digest, BlobRef>,
) -> Result<Vec<u8>> {
    let invalid = |e: String| ClientError::Invalid(format!("manifest {digest}: {e}"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(stored).map_err(|e| invalid(e.to_string()))?;
    let layers = manifest
        .get_mut("layers")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| invalid("no layers".into()))?;
    for layer in layers {
        let Some(old) = layer
            .get("digest")
            .and_then(serde_json::Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        if let Some(new) = replaced.get(&old) {
            layer["mediaType"] = new.media_type.clone().into();
            layer["digest"] = new.digest.to_string().into();
            layer["size"] = new.size.into();
        }
    }
    serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))
}
