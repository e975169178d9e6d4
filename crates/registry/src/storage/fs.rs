//! The filesystem backend. Layout and invariants: docs/registry-storage.md.
//!
//! Blob bytes live once under `blobs/` whatever the number of repositories; repositories hold
//! small link files. Every file that becomes visible is written under `tmp/`, fsynced and
//! renamed into place, so a crash leaves either the old or the new state, never a torn file.
//!
//! Link files are tiny and local, so they are read with `std::fs` directly on the async worker
//! (a few microseconds, cheaper than a blocking-pool hop); anything that fsyncs, renames or
//! hashes whole files goes through `spawn_blocking`.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{Value, json};
use strata_oci::{Algorithm, Digest, Digester};
use tokio::io::AsyncSeekExt;

use super::{
    BlobReader, ByteStream, Referrer, Storage, StorageError, StorageResult, StoredManifest,
};
use crate::gc::{GcOptions, GcReport};
use crate::names::Reference;

/// Written to `<root>/format`; bump when the layout changes incompatibly.
pub const FORMAT: &str = "strata-registry-storage 1";

/// Request-body chunks queued between the receiving task and the writing thread of an upload
/// (hyper's chunks are up to a few hundred KiB, so this bounds an upload's memory to a few MiB).
const WRITE_QUEUE: usize = 16;

/// While a large body is written, the bytes already written are flushed to disk every
/// [`FLUSH_EVERY`] bytes by another thread, so the fsync that commits the blob only waits for
/// the tail instead of the whole blob: disk writeback overlaps receiving and hashing.
const FLUSH_EVERY: u64 = 32 << 20;

/// A thread running `fdatasync` on an upload's file whenever kicked (kicks during a flush
/// coalesce into one more flush).
struct Flusher {
    kick: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Flusher {
    /// Starts flushing `file` at once; `None` when no thread can be had (the commit's fsync
    /// then does all the work).
    fn start(file: &std::fs::File) -> Option<Flusher> {
        let file = file.try_clone().ok()?;
        let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("upload-flush".into())
            .spawn(move || {
                file.sync_data()?;
                while kicked.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(Flusher { kick, thread })
    }

    fn kick(&self) {
        let _ = self.kick.try_send(());
    }

    /// Waits for the flush in progress; its error, if any flush failed.
    fn finish(self) -> io::Result<()> {
        drop(self.kick);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the flush thread panicked")))
    }
}

/// The running digest of an upload's data file, kept in memory between chunks so a chunked
/// upload is hashed once. After a restart (or a failed write) it is rebuilt from the file.
struct UploadHasher {
    /// Digest state over the first `hashed` bytes of the data file.
    digester: Option<Digester>,
    hashed: u64,
    last_used: std::time::Instant,
}

impl Default for UploadHasher {
    fn default() -> UploadHasher {
        UploadHasher {
            digester: None,
            hashed: 0,
            last_used: std::time::Instant::now(),
        }
    }
}

/// Past this many in-memory upload digests, idle ones are dropped when an upload starts (an
/// abandoned upload would otherwise keep its entry for the life of the process). A dropped
/// digest is rebuilt from the data file if its client comes back.
const HASHER_LIMIT: usize = 1024;
const HASHER_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

pub struct FsStorage {
    root: PathBuf,
    /// One entry per upload seen since start; the async mutex serialises requests on an upload.
    hashers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadHasher>>>>,
    /// Online garbage collection holds this exclusively for a whole mark-and-sweep pass; every
    /// operation that makes content reachable (commit of an upload, mount, manifest put, the
    /// refresh of a reused blob's link) holds it shared, so a pass sees each one entirely
    /// before or entirely after.
    collection: tokio::sync::RwLock<()>,
}

/// A blob link older than this is refreshed when the blob is looked up, so that online
/// collection (which spares blobs with a link younger than its grace period) does not delete
/// a blob a client has just been told exists.
const LINK_REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs blocking filesystem work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StorageError::Io {
            path: PathBuf::new(),
            source: io::Error::other(error),
        })?
}

/// Reads a small file, `None` when it does not exist.
fn read_optional(path: &Path) -> StorageResult<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path)(error)),
    }
}

fn remove_optional(path: &Path) -> StorageResult<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error(path)(error)),
    }
}

fn sync_dir(path: &Path) -> StorageResult<()> {
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(path))
}

fn list_dir(path: &Path) -> StorageResult<Vec<String>> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(path)(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(path))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn parse_digest_file(path: &Path, bytes: &[u8]) -> StorageResult<Digest> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| StorageError::Corrupt {
            path: path.to_owned(),
            reason: "not a digest".into(),
        })
}

/// Digests a whole file with `algorithm` (blocking).
fn digest_file(path: &Path, algorithm: Algorithm) -> StorageResult<(Digester, u64)> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut digester = Digester::new(algorithm);
    let mut buffer = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let read = file.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            return Ok((digester, total));
        }
        digester.update(&buffer[..read]);
        total += read as u64;
    }
}

impl FsStorage {
    /// Opens (creating when absent) a registry root.
    pub fn open(root: impl Into<PathBuf>) -> StorageResult<FsStorage> {
        let root = root.into();
        for dir in ["blobs", "repositories", "uploads", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        let format_path = root.join("format");
        match read_optional(&format_path)? {
            Some(bytes) if String::from_utf8_lossy(&bytes).trim() == FORMAT => {}
            Some(bytes) => {
                return Err(StorageError::Corrupt {
                    path: format_path,
                    reason: format!(
                        "unsupported registry storage format {:?} (expected {FORMAT:?})",
                        String::from_utf8_lossy(&bytes).trim()
                    ),
                });
            }
            None => write_atomic(&root, &format_path, format!("{FORMAT}\n").as_bytes())?,
        }
        Ok(FsStorage {
            root,
            hashers: Mutex::new(HashMap::new()),
            collection: tokio::sync::RwLock::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn hasher(&self, id: &str) -> Arc<tokio::sync::Mutex<UploadHasher>> {
        let mut hashers = self
            .hashers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        hashers.entry(id.to_owned()).or_default().clone()
    }

    fn forget_hasher(&self, id: &str) {
        let mut hashers = self
            .hashers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        hashers.remove(id);
    }

    fn upload_dir(&self, repository: &str, id: &str) -> StorageResult<PathBuf> {
        // The id becomes a path: only canonical UUIDs are accepted.
        let unknown = || StorageError::UploadUnknown(id.to_owned());
        let parsed = uuid::Uuid::parse_str(id).map_err(|_| unknown())?;
        if parsed.hyphenated().to_string() != id {
            return Err(unknown());
        }
        let dir = self.root.join("uploads").join(id);
        let state_path = dir.join("state");
        let state = read_optional(&state_path)?.ok_or_else(unknown)?;
        let state: Value =
            serde_json::from_slice(&state).map_err(|error| StorageError::Corrupt {
                path: state_path.clone(),
                reason: error.to_string(),
            })?;
        if state["repository"].as_str() != Some(repository) {
            return Err(unknown());
        }
        Ok(dir)
    }

    /// Brings the in-memory digest up to the `length` bytes of the data file.
    async fn catch_up(
        &self,
        hasher: &mut UploadHasher,
        data: &Path,
        length: u64,
    ) -> StorageResult<()> {
        if hasher.digester.is_some() && hasher.hashed == length {
            return Ok(());
        }
        let path = data.to_owned();
        let (digester, hashed) = blocking(move || digest_file(&path, Algorithm::Sha256)).await?;
        hasher.digester = Some(digester);
        hasher.hashed = hashed;
        Ok(())
    }

    /// Appends `body` to the upload's data file, keeping `hasher` in step. Returns the offset.
    ///
    /// The request body is received on the async worker while a blocking thread writes and
    /// hashes the chunks it is handed (moved, not copied), so receiving, hashing and writing
    /// overlap; the queue between them is bounded ([`WRITE_QUEUE`] chunks).
    async fn append(
        &self,
        hasher: &mut UploadHasher,
        data: &Path,
        start: Option<u64>,
        body: Option<ByteStream>,
    ) -> StorageResult<u64> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(data)
            .map_err(io_error(data))?;
        let mut offset = file.metadata().map_err(io_error(data))?.len();
        if let Some(start) = start
            && start != offset
        {
            return Err(StorageError::UploadOutOfOrder { offset });
        }
        self.catch_up(hasher, data, offset).await?;
        let Some(mut body) = body else {
            return Ok(offset);
        };
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_QUEUE);
        let mut digester = hasher.digester.take();
        let path = data.to_owned();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut written = 0u64;
            let mut flusher: Option<Flusher> = None;
            let mut failure = None;
            while let Some(chunk) = receiver.blocking_recv() {
                if let Err(error) = file.write_all(&chunk) {
                    // Part of the chunk may be in the file without being hashed.
                    digester = None;
                    failure = Some(error);
                    break;
                }
                if let Some(digester) = digester.as_mut() {
                    digester.update(&chunk);
                }
                let before = written;
                written += chunk.len() as u64;
                if before / FLUSH_EVERY != written / FLUSH_EVERY {
                    match &flusher {
                        Some(flusher) => flusher.kick(),
                        None => flusher = Flusher::start(&file),
                    }
                }
            }
            if let Some(flusher) = flusher
                && let Err(error) = flusher.finish()
            {
                // The kernel reports a writeback error once: a later fsync of the file could
                // succeed although bytes were lost. What this upload wrote is dropped.
                let _ = file.set_len(0);
                digester = None;
                failure.get_or_insert(error);
            }
            match failure {
                Some(error) => (digester, written, Err(io_error(&path)(error))),
                None => (digester, written, Ok(())),
            }
        });
        let mut received = Ok(());
        while let Some(chunk) = body.next().await {
            match chunk {
                // A closed queue means the writer failed; its error is reported below.
                Ok(chunk) => {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    received = Err(StorageError::UploadBody(error));
                    break;
                }
            }
        }
        drop(sender);
        let (digester, written, stored) = writer.await.map_err(|error| StorageError::Io {
            path: data.to_owned(),
            source: io::Error::other(error),
        })?;
        // Whatever was written is kept and hashed (the client can ask for the offset and go
        // on); after a failed write the digest is rebuilt from the file when needed.
        hasher.digester = digester;
        hasher.hashed += written;
        offset += written;
        hasher.last_used = std::time::Instant::now();
        stored?;
        received?;
        Ok(offset)
    }

    /// Appends the optional last chunk and verifies the whole upload against `expected`.
    /// Returns the upload directory (its `data` is the verified content) and the size; the
    /// caller makes the data a blob and removes the directory. On mismatch the upload is
    /// deleted.
    pub(crate) async fn upload_verify(
        &self,
        repository: &str,
        id: &str,
        expected: &Digest,
        body: Option<ByteStream>,
    ) -> StorageResult<(PathBuf, u64)> {
        let dir = self.upload_dir(repository, id)?;
        let data = dir.join("data");
        let hasher = self.hasher(id);
        let mut hasher = hasher.lock().await;
        let size = self.append(&mut hasher, &data, None, body).await?;
        let actual = if expected.algorithm() == Algorithm::Sha256 {
            let digester = hasher
                .digester
                .take()
                .unwrap_or_else(|| Digester::new(Algorithm::Sha256));
            digester.finish()
        } else {
            let path = data.clone();
            let algorithm = expected.algorithm();
            blocking(move || digest_file(&path, algorithm))
                .await?
                .0
                .finish()
        };
        hasher.digester = None;
        drop(hasher);
        self.forget_hasher(id);
        if actual != *expected {
            // Nothing of a mismatching upload is kept.
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok((dir, size))
    }

    /// Drops idle, unlocked upload digests once there are more than `limit`. A request that
    /// fetched an entry just before it was dropped keeps using it unshared; only a client
    /// sending concurrent requests to one upload could then interleave writes, and the final
    /// digest check still refuses the result.
    fn evict_idle_hashers(&self, limit: usize, idle: std::time::Duration) {
        let mut hashers = self
            .hashers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if hashers.len() <= limit {
            return;
        }
        hashers.retain(|_, hasher| match hasher.try_lock() {
            Ok(state) => state.last_used.elapsed() < idle,
            Err(_) => true,
        });
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn repository_dir(&self, repository: &str) -> PathBuf {
        self.root.join("repositories").join(repository)
    }

    fn layer_link(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.repository_dir(repository)
            .join("_layers")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn revision_link(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.repository_dir(repository)
            .join("_manifests/revisions")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn tags_dir(&self, repository: &str) -> PathBuf {
        self.repository_dir(repository).join("_manifests/tags")
    }

    fn referrers_dir(&self, repository: &str, subject: &Digest) -> PathBuf {
        self.repository_dir(repository)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    /// Whether `digest` is linked into `repository` and its bytes exist: its size.
    fn linked_blob_size(&self, repository: &str, digest: &Digest) -> StorageResult<Option<u64>> {
        if read_optional(&self.layer_link(repository, digest))?.is_none() {
            return Ok(None);
        }
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(&path)(error)),
        }
    }

    fn read_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> StorageResult<Option<StoredManifest>> {
        let link = self.revision_link(repository, digest);
        let Some(revision) = read_optional(&link)? else {
            return Ok(None);
        };
        let revision: Value =
            serde_json::from_slice(&revision).map_err(|error| StorageError::Corrupt {
                path: link.clone(),
                reason: error.to_string(),
            })?;
        let Some(bytes) = read_optional(&self.blob_path(digest))? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest: digest.clone(),
            media_type: revision["mediaType"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            bytes: bytes.into(),
        }))
    }

    /// Writes a manifest (bytes, revision, referrer, tag) under the collection lock; with
    /// `check`, first verifies its references there (see [`Storage::manifest_push`]).
    async fn store_manifest(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
        check: bool,
    ) -> StorageResult<()> {
        let blob = self.blob_path(&manifest.digest);
        let revision = self.revision_link(repository, &manifest.digest);
        let tag_link = tag.map(|tag| self.tags_dir(repository).join(tag));
        let referrer_link = referrer.as_ref().map(|referrer| {
            self.referrers_dir(repository, &referrer.subject)
                .join(format!(
                    "{}-{}",
                    manifest.digest.algorithm(),
                    manifest.digest.hex()
                ))
        });
        let root = self.root.clone();
        let _commit = self.collection.read().await;
        // The handler checked the references before taking the lock; a collection pass may
        // have swept an unreferenced blob since. Checked again under the lock, the manifest
        // lands only while everything it names exists (and then protects it).
        if check {
            self.check_references(repository, &manifest.bytes)?;
        }
        blocking(move || {
            // Bytes first, then the links that make them visible.
            if !blob.exists() {
                write_atomic(&root, &blob, &manifest.bytes)?;
            }
            let revision_json = json!({ "mediaType": manifest.media_type }).to_string();
            write_atomic(&root, &revision, revision_json.as_bytes())?;
            if let (Some(referrer), Some(link)) = (referrer, referrer_link) {
                write_atomic(&root, &link, referrer.descriptor.to_string().as_bytes())?;
            }
            if let Some(tag_link) = tag_link {
                write_atomic(&root, &tag_link, manifest.digest.to_string().as_bytes())?;
            }
            Ok(())
        })
        .await
    }

    /// `ManifestBlobUnknown` unless every blob and child manifest `bytes` names is in
    /// `repository`.
    fn check_references(&self, repository: &str, bytes: &[u8]) -> StorageResult<()> {
        let Ok(parsed) = crate::manifest::parse(bytes) else {
            return Ok(());
        };
        for blob in &parsed.references.blobs {
            if self.linked_blob_size(repository, blob)?.is_none() {
                return Err(StorageError::ManifestBlobUnknown(blob.clone()));
            }
        }
        for child in &parsed.references.manifests {
            if read_optional(&self.revision_link(repository, child))?.is_none()
                || !self.blob_path(child).exists()
            {
                return Err(StorageError::ManifestBlobUnknown(child.clone()));
            }
        }
        Ok(())
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> StorageResult<Option<Digest>> {
        let path = self.tags_dir(repository).join(tag);
        read_optional(&path)?
            .map(|bytes| parse_digest_file(&path, &bytes))
            .transpose()
    }
}

/// Size of the chunks of a blob download: few reads (and, for uncached bytes, blocking-pool
/// round trips) for a large layer, bounded memory per connection (one chunk being read, one
/// being sent).
const BLOB_READ_CHUNK: u64 = 512 << 10;

/// Chunks of one download read ahead of the socket.
const BLOB_READS_IN_FLIGHT: usize = 2;

/// `len` bytes of `file` at `position` as far as the page cache holds them, read without waiting
/// for the disk (`preadv2(RWF_NOWAIT)`): the buffer and how much of it was filled. Run on the
/// async worker, so a download of a cached blob (the usual case for a hot layer) costs no
/// blocking-pool hand-off, and its two thread wake-ups, per chunk. A blob file is never shorter
/// than the size it was committed with, so end of file before `len` is an error.
fn read_cached_at(file: &std::fs::File, position: u64, len: usize) -> io::Result<(Vec<u8>, usize)> {
    use rustix::io::{Errno, ReadWriteFlags};
    let mut buffer = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let slice = &mut [io::IoSliceMut::new(&mut buffer[filled..])];
        match rustix::io::preadv2(
            file,
            slice,
            position + filled as u64,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(read) => filled += read,
            // Not (all) cached, or a kernel (< 4.14) or filesystem without non-blocking reads:
            // the rest is read on the blocking pool.
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => break,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok((buffer, filled))
}

/// `len` bytes of `file` at `position`: what the page cache has without waiting, the rest on
/// the blocking pool.
async fn read_chunk(
    file: Arc<std::fs::File>,
    position: u64,
    len: usize,
) -> io::Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt as _;
    let (mut buffer, filled) = read_cached_at(&file, position, len)?;
    if filled < len {
        buffer = tokio::task::spawn_blocking(move || {
            file.read_exact_at(&mut buffer[filled..], position + filled as u64)
                .map(|()| buffer)
        })
        .await
        .map_err(io::Error::other)??;
    }
    Ok(bytes::Bytes::from(buffer))
}

/// Writes `bytes` to `target` atomically: temp file under `<root>/tmp`, fsync, rename, fsync
/// of the directory.
fn write_atomic(root: &Path, target: &Path, bytes: &[u8]) -> StorageResult<()> {
    let temp = root.join("tmp").join(uuid::Uuid::new_v4().to_string());
    let result = (|| {
        let mut file = std::fs::File::create(&temp).map_err(io_error(&temp))?;
        file.write_all(bytes).map_err(io_error(&temp))?;
        file.sync_all().map_err(io_error(&temp))?;
        let parent = target.parent().unwrap_or(root);
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        std::fs::rename(&temp, target).map_err(io_error(target))?;
        sync_dir(parent)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

impl Storage for FsStorage {
    async fn blob_size(&self, repository: &str, digest: &Digest) -> StorageResult<Option<u64>> {
        let Some(size) = self.linked_blob_size(repository, digest)? else {
            return Ok(None);
        };
        let link = self.layer_link(repository, digest);
        let stale = std::fs::metadata(&link)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_none_or(|age| age > LINK_REFRESH_AFTER);
        if !stale {
            return Ok(Some(size));
        }
        // The client may now skip uploading this blob and reference it: refresh the link
        // under the collection lock, after checking the bytes survived any pass in between.
        let _commit = self.collection.read().await;
        if !self.blob_path(digest).exists() {
            return Ok(None);
        }
        let touched = std::fs::File::options()
            .write(true)
            .open(&link)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()));
        if let Err(error) = touched {
            tracing::warn!(link = %link.display(), "refreshing a blob link: {error}");
        }
        Ok(Some(size))
    }

    async fn blob_open(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> StorageResult<(u64, BlobReader)> {
        if self.linked_blob_size(repository, digest)?.is_none() {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        let path = self.blob_path(digest);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(StorageError::BlobUnknown(digest.clone()));
            }
            Err(error) => return Err(io_error(&path)(error)),
        };
        let size = file.metadata().await.map_err(io_error(&path))?.len();
        if offset > 0 {
            file.seek(io::SeekFrom::Start(offset))
                .await
                .map_err(io_error(&path))?;
        }
        Ok((size, Box::pin(file)))
    }

    /// Each chunk is read straight into the buffer that becomes the body chunk (no intermediate
    /// buffer and copy as with `tokio::fs::File`): on the async worker as far as the page cache
    /// holds it (`RWF_NOWAIT`), the rest by a blocking-pool task, so disk reads never stall the
    /// runtime. No thread is held between chunks, so a slow client costs no blocking thread.
    /// Reading cached chunks on the worker cut the server's CPU per 256 MiB loopback pull from
    /// 64-75 ms to 36-45 ms (two thread wake-ups per 512 KiB chunk saved; bench/README.md).
    async fn blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> StorageResult<ByteStream> {
        if self.linked_blob_size(repository, digest)?.is_none() {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        let path = self.blob_path(digest);
        let file = match std::fs::File::open(&path) {
            Ok(file) => Arc::new(file),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(StorageError::BlobUnknown(digest.clone()));
            }
            Err(error) => return Err(io_error(&path)(error)),
        };
        let end = offset.saturating_add(length);
        // Two chunks in flight, delivered in order: a chunk that needs the disk is read on the
        // blocking pool while the previous one is being sent.
        let positions = futures_util::stream::iter((offset..end).step_by(BLOB_READ_CHUNK as usize));
        let chunks = positions
            .map(move |position| {
                let want = (end - position).min(BLOB_READ_CHUNK) as usize;
                read_chunk(file.clone(), position, want)
            })
            .buffered(BLOB_READS_IN_FLIGHT);
        Ok(chunks.boxed())
    }

    async fn blob_unlink(&self, repository: &str, digest: &Digest) -> StorageResult<()> {
        if remove_optional(&self.layer_link(repository, digest))? {
            Ok(())
        } else {
            Err(StorageError::BlobUnknown(digest.clone()))
        }
    }

    async fn blob_mount(
        &self,
        repository: &str,
        from: &str,
        digest: &Digest,
    ) -> StorageResult<bool> {
        if self.linked_blob_size(from, digest)?.is_none() {
            return Ok(false);
        }
        let _commit = self.collection.read().await;
        if !self.blob_path(digest).exists() {
            return Ok(false);
        }
        let link = self.layer_link(repository, digest);
        write_atomic(&self.root, &link, digest.to_string().as_bytes())?;
        Ok(true)
    }

    async fn upload_create(&self, repository: &str) -> StorageResult<String> {
        self.evict_idle_hashers(HASHER_LIMIT, HASHER_IDLE);
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let dir = self.root.join("uploads").join(&id);
        let root = self.root.clone();
        let state = json!({ "repository": repository, "started": unix_now() }).to_string();
        blocking(move || {
            std::fs::create_dir(&dir).map_err(io_error(&dir))?;
            let data = dir.join("data");
            std::fs::File::create(&data).map_err(io_error(&data))?;
            // The state file is what makes the upload exist: written last.
            write_atomic(&root, &dir.join("state"), state.as_bytes())
        })
        .await?;
        Ok(id)
    }

    async fn upload_offset(&self, repository: &str, id: &str) -> StorageResult<u64> {
        let data = self.upload_dir(repository, id)?.join("data");
        let metadata = tokio::fs::metadata(&data).await.map_err(io_error(&data))?;
        Ok(metadata.len())
    }

    async fn upload_append(
        &self,
        repository: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<u64> {
        let data = self.upload_dir(repository, id)?.join("data");
        let hasher = self.hasher(id);
        let mut hasher = hasher.lock().await;
        self.append(&mut hasher, &data, start, Some(body)).await
    }

    async fn upload_complete(
        &self,
        repository: &str,
        id: &str,
        expected: &Digest,
        body: Option<ByteStream>,
    ) -> StorageResult<u64> {
        let (dir, size) = self.upload_verify(repository, id, expected, body).await?;
        let data = dir.join("data");
        let blob = self.blob_path(expected);
        let link = self.layer_link(repository, expected);
        let root = self.root.clone();
        let expected = expected.clone();
        let _commit = self.collection.read().await;
        blocking(move || {
            let file = std::fs::File::open(&data).map_err(io_error(&data))?;
            file.sync_all().map_err(io_error(&data))?;
            let parent = blob.parent().unwrap_or(&root);
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            // Concurrent pushes of one blob each rename identical bytes over the same name:
            // the last rename wins and readers holding the old inode are unaffected.
            std::fs::rename(&data, &blob).map_err(io_error(&blob))?;
            sync_dir(parent)?;
            write_atomic(&root, &link, expected.to_string().as_bytes())?;
            std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
            Ok(size)
        })
        .await
    }

    async fn upload_cancel(&self, repository: &str, id: &str) -> StorageResult<()> {
        let dir = self.upload_dir(repository, id)?;
        let hasher = self.hasher(id);
        let _guard = hasher.lock().await;
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(io_error(&dir))?;
        drop(_guard);
        self.forget_hasher(id);
        Ok(())
    }

    async fn manifest_get(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> StorageResult<Option<StoredManifest>> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => match self.resolve_tag(repository, tag)? {
                Some(digest) => digest,
                None => return Ok(None),
            },
        };
        self.read_manifest(repository, &digest)
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> StorageResult<bool> {
        Ok(
            read_optional(&self.revision_link(repository, digest))?.is_some()
                && self.blob_path(digest).exists(),
        )
    }

    async fn manifest_push(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> StorageResult<()> {
        self.store_manifest(repository, tag, manifest, referrer, true)
            .await
    }

    async fn manifest_put(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> StorageResult<()> {
        self.store_manifest(repository, tag, manifest, referrer, false)
            .await
    }

    async fn manifest_delete(&self, repository: &str, reference: &Reference) -> StorageResult<()> {
        let digest = match reference {
            Reference::Tag(tag) => {
                return if remove_optional(&self.tags_dir(repository).join(tag))? {
                    Ok(())
                } else {
                    Err(StorageError::ManifestUnknown(tag.clone()))
                };
            }
            Reference::Digest(digest) => digest,
        };
        let Some(manifest) = self.read_manifest(repository, digest)? else {
            return Err(StorageError::ManifestUnknown(digest.to_string()));
        };
        remove_optional(&self.revision_link(repository, digest))?;
        let tags_dir = self.tags_dir(repository);
        for tag in list_dir(&tags_dir)? {
            let path = tags_dir.join(&tag);
            if let Some(bytes) = read_optional(&path)?
                && parse_digest_file(&path, &bytes).ok().as_ref() == Some(digest)
            {
                remove_optional(&path)?;
            }
        }
        if let Some(subject) = crate::manifest::subject_of(&manifest.bytes) {
            let link = self.referrers_dir(repository, &subject).join(format!(
                "{}-{}",
                digest.algorithm(),
                digest.hex()
            ));
            remove_optional(&link)?;
        }
        Ok(())
    }

    async fn tags(&self, repository: &str) -> StorageResult<Option<Vec<String>>> {
        let dir = self.repository_dir(repository);
        if !dir.join("_manifests").is_dir() && !dir.join("_layers").is_dir() {
            return Ok(None);
        }
        Ok(Some(list_dir(&self.tags_dir(repository))?))
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        let mut found = Vec::new();
        find_repositories(&self.root.join("repositories"), "", &mut found)?;
        found.sort();
        Ok(found)
    }

    async fn collect_garbage(&self, grace: std::time::Duration) -> StorageResult<GcReport> {
        let _pass = self.collection.write().await;
        let root = self.root.clone();
        let options = GcOptions {
            grace: Some(grace),
            ..GcOptions::default()
        };
        blocking(move || crate::gc::collect_in(&root, options)).await
    }

    async fn referrers(&self, repository: &str, subject: &Digest) -> StorageResult<Vec<Value>> {
        let dir = self.referrers_dir(repository, subject);
        let mut descriptors = Vec::new();
        for name in list_dir(&dir)? {
            let path = dir.join(&name);
            let Some(bytes) = read_optional(&path)? else {
                continue;
            };
            let descriptor: Value =
                serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            descriptors.push(descriptor);
        }
        Ok(descriptors)
    }
}

/// Every repository under a registry root, sorted.
pub fn list_repositories(root: &Path) -> StorageResult<Vec<String>> {
    let mut found = Vec::new();
    find_repositories(&root.join("repositories"), "", &mut found)?;
    found.sort();
    Ok(found)
}

/// A directory is a repository when it holds `_manifests` or `_layers`; names never have a
/// component starting with `_`, so those are never descended into.
fn find_repositories(dir: &Path, prefix: &str, found: &mut Vec<String>) -> StorageResult<()> {
    let children = list_dir(dir)?;
    if !prefix.is_empty()
        && children
            .iter()
            .any(|child| child == "_manifests" || child == "_layers")
    {
        found.push(prefix.to_owned());
    }
    for child in children {
        if child.starts_with('_') || !dir.join(&child).is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            child.clone()
        } else {
            format!("{prefix}/{child}")
        };
        find_repositories(&dir.join(&child), &name, found)?;
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let chunks: Vec<io::Result<bytes::Bytes>> = parts
            .iter()
            .map(|part| Ok(bytes::Bytes::from_static(part)))
            .collect();
        stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn uploads_verify_digests_across_lost_hasher_state() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let id = storage.upload_create("r").await.unwrap();
        assert_eq!(
            storage
                .upload_append("r", &id, Some(0), body(&[b"ab", b"cd"]))
                .await
                .unwrap(),
            4
        );
        // As after a restart: the running digest is gone and must be rebuilt from the file.
        storage.forget_hasher(&id);
        let out_of_order = storage
            .upload_append("r", &id, Some(3), body(&[b"x"]))
            .await;
        assert!(matches!(
            out_of_order,
            Err(StorageError::UploadOutOfOrder { offset: 4 })
        ));
        assert_eq!(
            storage
                .upload_append("r", &id, None, body(&[b"ef"]))
                .await
                .unwrap(),
            6
        );
        let digest = Digest::sha256_of(b"abcdef");
        assert_eq!(
            storage
                .upload_complete("r", &id, &digest, None)
                .await
                .unwrap(),
            6
        );
        assert_eq!(storage.blob_size("r", &digest).await.unwrap(), Some(6));
        assert_eq!(storage.blob_size("other", &digest).await.unwrap(), None);
        assert!(matches!(
            storage.upload_offset("r", &id).await,
            Err(StorageError::UploadUnknown(_))
        ));
    }

    #[tokio::test]
    async fn idle_upload_digests_are_evicted_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let id = storage.upload_create("r").await.unwrap();
            storage
                .upload_append("r", &id, None, body(&[b"xy"]))
                .await
                .unwrap();
            ids.push(id);
        }
        storage.evict_idle_hashers(1, std::time::Duration::ZERO);
        assert!(storage.hashers.lock().unwrap().is_empty());
        let digest = Digest::sha256_of(b"xyz");
        let size = storage
            .upload_complete("r", &ids[0], &digest, Some(body(&[b"z"])))
            .await;
        assert_eq!(size.unwrap(), 3);
    }

    #[tokio::test]
    async fn empty_and_sha512_blobs_and_foreign_upload_ids() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let id = storage.upload_create("r").await.unwrap();
        let empty = Digest::sha256_of(b"");
        assert_eq!(
            storage
                .upload_complete("r", &id, &empty, Some(body(&[])))
                .await
                .unwrap(),
            0
        );
        let id = storage.upload_create("r").await.unwrap();
        let long = Digest::sha512_of(b"sha512 content");
        storage
            .upload_complete("r", &id, &long, Some(body(&[b"sha512 ", b"content"])))
            .await
            .unwrap();
        assert_eq!(storage.blob_size("r", &long).await.unwrap(), Some(14));

        let id = storage.upload_create("r").await.unwrap();
        for (repository, upload) in [
            ("other", id.as_str()),
            ("r", "../../etc"),
            ("r", &id.to_uppercase()),
        ] {
            let result = storage.upload_offset(repository, upload).await;
            assert!(
                matches!(result, Err(StorageError::UploadUnknown(_))),
                "{repository} {upload}"
            );
        }
    }

    #[test]
    fn other_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("format"), "strata-registry-storage 99\n").unwrap();
        assert!(matches!(
            FsStorage::open(dir.path()),
            Err(StorageError::Corrupt { .. })
        ));
    }

    /// A download chunk is the file's bytes whether the page cache holds all, part or none of
    /// them (evicted with POSIX_FADV_DONTNEED, where the filesystem honours it), at offsets on
    /// and off page boundaries; a file shorter than the chunk is an error, not short data.
    #[tokio::test]
    async fn chunks_read_the_same_bytes_cached_or_not() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&bytes).unwrap();
        file.sync_all().unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let cases = [
            (0, 524_288),
            (4096, 4096),
            (1001, 1_000_000),
            (2_999_999, 1),
        ];
        for evict in [false, true] {
            for (position, len) in cases {
                if evict {
                    // Drop the whole file, then bring the first half of the range back (no
                    // readahead): a partly cached range.
                    use rustix::fs::{Advice, fadvise};
                    fadvise(&*file, 0, None, Advice::DontNeed).unwrap();
                    fadvise(&*file, 0, None, Advice::Random).unwrap();
                    let _ = read_exactly(&file, position, len / 2);
                    fadvise(&*file, 0, None, Advice::Normal).unwrap();
                }
                let chunk = read_chunk(file.clone(), position, len).await.unwrap();
                let position = position as usize;
                assert!(
                    chunk == bytes[position..position + len],
                    "evict {evict} position {position} len {len}"
                );
            }
        }
        let error = read_chunk(file.clone(), 2_999_000, 1001).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
    }

    fn read_exactly(file: &std::fs::File, position: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        let mut buffer = vec![0; len];
        file.read_exact_at(&mut buffer, position)?;
        Ok(buffer)
    }
}
