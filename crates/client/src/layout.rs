//! Writing OCI image layout directories, and the direct registry -> layout copy: blobs stream
//! from the HTTP body into the layout's `blobs/`, digested on the way, and appear there only by
//! rename after their digest and size matched (then fsynced). No store is involved.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use strata_image::document::{Document, parse_document};
use strata_oci::{Digest, Digester, Reference, media_types};
use strata_store::{BlobRef, layout::REF_NAME};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::http::{BlobSink, Registry};
use crate::{ClientError, Result};

/// Buffer between the HTTP body's small chunks and the file: few, large writes.
const WRITE_BUFFER: usize = 1 << 20;

pub(crate) fn layout_blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().to_string())
        .join(digest.hex())
}

fn io_error(path: &Path, e: io::Error) -> ClientError {
    ClientError::io(path.display().to_string(), e)
}

/// A blob being written into a layout: a temporary file beside its final name.
pub(crate) struct LayoutBlobWriter {
    final_path: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    /// The digest is computed on its own thread, off the path that reads the HTTP body and
    /// writes the file (SHA-256 is the largest CPU cost of a download).
    digesting: Digesting,
    size: u64,
    /// Bytes written when the last background sync started.
    synced_at: u64,
    /// A background `fdatasync` of what was written so far, so the one at commit finds little
    /// left to write back.
    syncing: Option<std::thread::JoinHandle<io::Result<()>>>,
}

/// Written bytes between background syncs.
const SYNC_EVERY: u64 = 32 << 20;

/// Chunks queued for the digest thread (HTTP body chunks: at most a few MiB).
const DIGEST_QUEUE: usize = 256;

/// A digester on its own thread, fed chunks in order.
struct Digesting {
    chunks: std::sync::mpsc::SyncSender<bytes::Bytes>,
    result: std::thread::JoinHandle<Digest>,
}

impl Digesting {
    fn start(algorithm: strata_oci::Algorithm) -> Digesting {
        let (chunks, received) = std::sync::mpsc::sync_channel::<bytes::Bytes>(DIGEST_QUEUE);
        let result = std::thread::spawn(move || {
            let mut digester = Digester::new(algorithm);
            for chunk in received {
                digester.update(&chunk);
            }
            digester.finish()
        });
        Digesting { chunks, result }
    }

    fn update(&self, chunk: bytes::Bytes) -> io::Result<()> {
        self.chunks
            .send(chunk)
            .map_err(|_| io::Error::other("digest thread failed"))
    }

    fn finish(self) -> io::Result<Digest> {
        drop(self.chunks);
        self.result
            .join()
            .map_err(|_| io::Error::other("digest thread failed"))
    }
}

impl LayoutBlobWriter {
    pub(crate) fn new(dir: &Path, digest: &Digest) -> Result<LayoutBlobWriter> {
        let final_path = layout_blob_path(dir, digest);
        let parent = final_path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        // Readable by all, as skopeo and the hard-linked store blobs are.
        let temp = tempfile::Builder::new()
            .prefix(".ingest-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(parent)
            .map_err(|e| io_error(parent, e))?;
        Ok(LayoutBlobWriter {
            final_path,
            file: BufWriter::with_capacity(WRITE_BUFFER, temp),
            digesting: Digesting::start(digest.algorithm()),
            size: 0,
            synced_at: 0,
            syncing: None,
        })
    }

    /// Starts writing back what was written so far, unless a write-back is still running.
    fn sync_in_background(&mut self) -> io::Result<()> {
        if self.syncing.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        if let Some(done) = self.syncing.take() {
            done.join()
                .unwrap_or_else(|_| Err(io::Error::other("sync thread failed")))?;
        }
        self.file.flush()?;
        let file = self.file.get_ref().as_file().try_clone()?;
        self.synced_at = self.size;
        self.syncing = Some(std::thread::spawn(move || file.sync_data()));
        Ok(())
    }

    /// Checks the digest, fsyncs and renames into place.
    pub(crate) fn commit(self, expected: &Digest, registry: &str) -> Result<()> {
        let actual = self
            .digesting
            .finish()
            .map_err(|e| io_error(&self.final_path, e))?;
        if actual != *expected {
            return Err(ClientError::DigestMismatch {
                registry: registry.to_string(),
                what: "blob",
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let path = self.final_path;
        if let Some(syncing) = self.syncing {
            syncing
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("sync thread failed")))
                .map_err(|e| io_error(&path, e))?;
        }
        let temp = self
            .file
            .into_inner()
            .map_err(|e| io_error(&path, e.into_error()))?;
        temp.as_file().sync_data().map_err(|e| io_error(&path, e))?;
        temp.persist(&path).map_err(|e| io_error(&path, e.error))?;
        Ok(())
    }
}

impl LayoutBlobWriter {
    fn written(&mut self, n: usize) -> io::Result<()> {
        self.size += n as u64;
        if self.size - self.synced_at >= SYNC_EVERY {
            self.sync_in_background()?;
        }
        Ok(())
    }
}

impl Write for LayoutBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digesting
            .update(bytes::Bytes::copy_from_slice(&buf[..n]))?;
        self.written(n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobSink for LayoutBlobWriter {
    fn bytes_written(&self) -> u64 {
        self.size
    }

    fn write_chunk(&mut self, chunk: bytes::Bytes) -> io::Result<()> {
        self.file.write_all(&chunk)?;
        let n = chunk.len();
        self.digesting.update(chunk)?;
        self.written(n)
    }
}

/// Writes `data` (already verified) as a blob of the layout, unless it is there.
pub(crate) fn write_small_blob(dir: &Path, digest: &Digest, data: &[u8]) -> Result<()> {
    let path = layout_blob_path(dir, digest);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64) {
        return Ok(());
    }
    let mut writer = LayoutBlobWriter::new(dir, digest)?;
    writer.write_all(data).map_err(|e| io_error(&path, e))?;
    writer.commit(digest, "")
}

/// Creates the layout directory and its `oci-layout` file when missing.
pub(crate) fn ensure_layout(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let layout_path = dir.join("oci-layout");
    if !layout_path.exists() {
        std::fs::write(&layout_path, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(|e| io_error(&layout_path, e))?;
    }
    Ok(())
}

/// Adds `top` to the layout's `index.json` (atomically), replacing the entry with the same
/// `tag` (or, untagged, the same digest).
pub(crate) fn write_index_entry(dir: &Path, top: &BlobRef, tag: Option<&str>) -> Result<()> {
    let index_path = dir.join("index.json");
    let mut manifests_json: Vec<Value> = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut descriptor = json!({
        "mediaType": top.media_type,
        "digest": top.digest.to_string(),
        "size": top.size,
    });
    if let Some(tag) = tag {
        manifests_json.retain(|m| {
            m.pointer("/annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
                != Some(tag)
        });
        descriptor["annotations"] = json!({ REF_NAME: tag });
    } else {
        manifests_json
            .retain(|m| m.get("digest").and_then(Value::as_str) != Some(&top.digest.to_string()));
    }
    manifests_json.push(descriptor);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests_json,
    });
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error(dir, e))?;
    std::fs::write(temp.path(), serde_json::to_vec(&index).unwrap_or_default())
        .map_err(|e| io_error(&index_path, e))?;
    temp.persist(&index_path)
        .map_err(|e| io_error(&index_path, e.error))?;
    Ok(())
}

/// Copies a registry image that is a single manifest straight into an OCI layout directory.
/// Returns `None` (having written nothing) when the reference names an index: the caller then
/// goes through a store, which decides between the whole index and one platform.
pub(crate) async fn registry_to_layout(
    registry: &Registry,
    reference: &Reference,
    dir: &Path,
    tag: Option<&str>,
) -> Result<Option<Digest>> {
    let repository = reference.path().to_string();
    let tag_or_digest = match reference.digest() {
        Some(d) => d.to_string(),
        None => reference
            .tag()
            .unwrap_or(strata_oci::DEFAULT_TAG)
            .to_string(),
    };
    let target = registry.get_manifest(&repository, &tag_or_digest).await?;
    let manifest = match parse_document(&target.bytes, &target.digest)? {
        Document::Manifest(m) => m,
        Document::Index(_) => return Ok(None),
    };
    ensure_layout(dir)?;
    let semaphore = Arc::new(Semaphore::new(registry.options().parallel.max(1)));
    let mut downloads = JoinSet::new();
    // Largest first, so the longest transfer starts at once.
    let mut blobs: Vec<BlobRef> = std::iter::once(manifest.config.clone())
        .chain(manifest.layers.iter().cloned())
        .collect();
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    blobs.dedup_by(|a, b| a.digest == b.digest);
    for blob in blobs {
        let path = layout_blob_path(dir, &blob.digest);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
            continue;
        }
        let (registry, repository, dir, semaphore) = (
            registry.clone(),
            repository.clone(),
            dir.to_path_buf(),
            semaphore.clone(),
        );
        downloads.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let writer = registry
                .download(&repository, &blob, || {
                    LayoutBlobWriter::new(&dir, &blob.digest)
                })
                .await?;
            let domain = registry.domain().to_string();
            // The fsync blocks: off the async workers.
            tokio::task::spawn_blocking(move || writer.commit(&blob.digest, &domain))
                .await
                .map_err(|e| ClientError::Invalid(format!("blob commit task failed: {e}")))?
        });
    }
    let mut failure = None;
    while let Some(joined) = downloads.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
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
    // The manifest last: a visible manifest never precedes its blobs.
    write_small_blob(dir, &target.digest, &target.bytes)?;
    write_index_entry(dir, &target.descriptor(), tag)?;
    Ok(Some(target.digest))
}
