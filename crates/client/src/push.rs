//! `push`: a stored image to a registry, byte for byte, so its digests stay the same.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use strata_image::document::{Document, MAX_MANIFEST_BYTES, StoredImage, parse_document};
use strata_oci::{Digest, Digester, Reference, media_types};
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
    let (uploads, mut top) = plan(store, &image)?;
    let upload_permits = Arc::new(Semaphore::new(registry.options().parallel.max(1)));
    // One layer compresses at a time, on every core (see parallel_gzip).
    let cpu_permits = Arc::new(Semaphore::new(1));
    // Uncompressed layers (from import, load, build) go out gzip-compressed, in a rewritten
    // manifest, when a single manifest is pushed (an index's children keep their digests).
    // Each layer is uploaded as soon as it is compressed, the largest first.
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
            transfers.spawn(async move {
                let (sent, path, temp) = if compress {
                    let _cpu = cpu_permits.acquire_owned().await;
                    let (store, original) = (store.clone(), blob.clone());
                    let (new, file) =
                        tokio::task::spawn_blocking(move || compress_one(&store, &original))
                            .await
                            .map_err(|e| {
                                ClientError::Invalid(format!("compression task failed: {e}"))
                            })??;
                    let path = file.path().to_path_buf();
                    (new, path, Some(file))
                } else {
                    let path = store.blob_path(&blob.digest);
                    (blob.clone(), path, None)
                };
                let _permit = upload_permits.acquire_owned().await;
                let done = registry
                    .push_blob(&repository, &sent, &path, mount_from.as_deref())
                    .await?;
                drop(temp);
                Ok::<_, ClientError>((blob.digest, sent, done))
            });
        }
        while let Some(joined) = transfers.join_next().await {
            let (original, sent, done) =
                joined.map_err(|e| ClientError::Invalid(format!("upload task failed: {e}")))??;
            pushed_blobs.push((sent.digest.clone(), done));
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
    )?;
    Ok(Pushed {
        digest: top.digest.clone(),
        size: top.size,
        blobs: pushed_blobs,
        mounted_from: mount_from,
    })
}

/// Read and write buffer of the layer compressor.
const COMPRESS_BUFFER: usize = 1 << 20;

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

/// Digests and counts what goes through it.
struct HashingWriter<W> {
    inner: W,
    digester: Digester,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses (gzip, fastest level) a stored layer into a temporary file, digesting the
/// output as it is written.
fn compress_one(store: &Store, blob: &BlobRef) -> Result<(BlobRef, tempfile::NamedTempFile)> {
    let what = || format!("compressing layer {}", blob.digest);
    let input = store.open_blob(&blob.digest)?;
    let file = tempfile::Builder::new()
        .prefix("strata-push-")
        .tempfile()
        .map_err(|e| ClientError::io(what(), e))?;
    let mut output = HashingWriter {
        inner: BufWriter::with_capacity(COMPRESS_BUFFER, file),
        digester: Digester::new(strata_oci::Algorithm::Sha256),
        size: 0,
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    parallel_gzip(input, &mut output, threads).map_err(|e| ClientError::io(what(), e))?;
    output.flush().map_err(|e| ClientError::io(what(), e))?;
    let file = output
        .inner
        .into_inner()
        .map_err(|e| ClientError::io(what(), e.into_error()))?;
    let new = BlobRef {
        media_type: gzip_media_type(&blob.media_type).to_string(),
        digest: output.digester.finish(),
        size: output.size,
    };
    Ok((new, file))
}

/// Input per independently compressed piece of [`parallel_gzip`].
const GZIP_CHUNK: usize = 4 << 20;

/// Gzip (fastest level) of everything `input` holds into `output`, as one standard gzip member,
/// compressed on `threads` threads the way pigz does: the input is cut into fixed 4 MiB pieces,
/// each deflated on its own and ended with a sync flush (the last one with the final block), and
/// the pieces are concatenated in order. The output depends only on the input.
fn parallel_gzip(
    input: impl std::io::Read + Send,
    output: &mut impl Write,
    threads: usize,
) -> std::io::Result<()> {
    use std::collections::BTreeMap;
    use std::sync::mpsc;
    type Piece = (usize, std::io::Result<(flate2::Crc, Vec<u8>)>);

    // Header: deflate, no flags, no mtime, "fastest" extra flags, unknown OS.
    output.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255])?;
    let threads = threads.max(1);
    // reader -> (index, chunk, last) -> workers -> (index, crc, deflated) -> this thread, which
    // writes the pieces in order. Bounded queues keep at most a few chunks in memory.
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<(usize, Vec<u8>, bool)>(threads);
    // Shared by the workers, and dropped with the last of them, so the reader stops too.
    let chunk_rx = Arc::new(std::sync::Mutex::new(chunk_rx));
    let (piece_tx, piece_rx) = mpsc::sync_channel::<Piece>(threads * 2);
    let mut crc = flate2::Crc::new();
    std::thread::scope(|scope| -> std::io::Result<()> {
        let reader = scope.spawn(move || -> std::io::Result<()> {
            let mut input = input;
            let mut current = read_chunk(&mut input)?;
            let mut index = 0;
            loop {
                let next = read_chunk(&mut input)?;
                let last = next.is_empty();
                if chunk_tx.send((index, current, last)).is_err() || last {
                    return Ok(());
                }
                current = next;
                index += 1;
            }
        });
        for _ in 0..threads {
            let (chunk_rx, piece_tx) = (chunk_rx.clone(), piece_tx.clone());
            scope.spawn(move || {
                loop {
                    let received = chunk_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((index, chunk, last)) = received else {
                        return;
                    };
                    let piece = deflate_piece(&chunk, last).map(|deflated| {
                        let mut crc = flate2::Crc::new();
                        crc.update(&chunk);
                        (crc, deflated)
                    });
                    if piece_tx.send((index, piece)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((piece_tx, chunk_rx));
        let mut waiting: BTreeMap<usize, (flate2::Crc, Vec<u8>)> = BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        for (index, piece) in piece_rx.iter() {
            match piece {
                Ok(piece) => {
                    waiting.insert(index, piece);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            while let Some((piece_crc, deflated)) = waiting.remove(&next) {
                crc.combine(&piece_crc);
                if let Err(e) = output.write_all(&deflated) {
                    result = Err(e);
                    break;
                }
                next += 1;
            }
            if result.is_err() {
                break;
            }
        }
        // On an error, dropping the receiver stops the workers, which stops the reader.
        drop(piece_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader thread failed")));
        result.and(read)
    })?;
    output.write_all(&crc.sum().to_le_bytes())?;
    output.write_all(&crc.amount().to_le_bytes())?;
    Ok(())
}

/// Up to [`GZIP_CHUNK`] bytes; empty at the end of the input.
fn read_chunk(input: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut chunk = Vec::with_capacity(GZIP_CHUNK);
    input.take(GZIP_CHUNK as u64).read_to_end(&mut chunk)?;
    Ok(chunk)
}

/// Raw deflate of one piece: ended with a sync flush (byte-aligned, not final), or with the
/// final block when `last`.
fn deflate_piece(piece: &[u8], last: bool) -> std::io::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut compress = Compress::new(Compression::fast(), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(piece.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&piece[consumed..], &mut out, flush)
            .map_err(std::io::Error::other)?;
        let all_in = compress.total_in() as usize == piece.len();
        match (last, status) {
            (true, Status::StreamEnd) => return Ok(out),
            // A sync flush is complete once the output buffer was not filled.
            (false, _) if all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parallel_gzip_is_one_standard_member() {
        // Compressible and incompressible parts, several pieces, a short last piece.
        let mut data = Vec::new();
        for i in 0..(GZIP_CHUNK * 5 / 2) {
            data.push(if i % 3 == 0 {
                (i * 7919 % 251) as u8
            } else {
                b'a'
            });
        }
        for threads in [1, 2, 3] {
            let mut gz = Vec::new();
            parallel_gzip(&data[..], &mut gz, threads).unwrap();
            let mut back = Vec::new();
            // The single-member decoder: no reliance on multi-member support.
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "{threads} threads");
            let mut again = Vec::new();
            parallel_gzip(&data[..], &mut again, threads).unwrap();
            assert_eq!(gz, again, "deterministic");
        }
        let mut empty = Vec::new();
        parallel_gzip(&b""[..], &mut empty, 2).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
