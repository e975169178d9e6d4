//! Blob files: `blobs/<algorithm>/<hex>`, written through `ingest/` and renamed into place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use strata_oci::{Algorithm, Digest, Digester};

use crate::{Result, Store, StoreError};

/// Copy buffer for ingest: large enough that hashing, not syscalls, dominates.
const COPY_BUFFER: usize = 1 << 20;

/// The outcome of an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub digest: Digest,
    pub size: u64,
    /// False when the blob was already in the store (the input was still read and verified).
    pub created: bool,
}

static INGEST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir()
            .join(digest.algorithm().to_string())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io(&path, e),
        })
    }

    /// Reads a small blob (a manifest, a config) whole, refusing one larger than `limit`.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let size = self.blob_size(digest)?;
        if size > limit {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                limit,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(data)
    }

    /// Stores `data`; a blob already present is verified, not written again.
    pub fn ingest_bytes(&self, data: &[u8]) -> Result<Ingested> {
        let digest = Digest::sha256_of(data);
        self.ingest(data, Some(&digest))
    }

    /// Streams `reader` into the store (see [`BlobWriter`]). When `expected` is already stored,
    /// the input is still read and verified, but nothing is written.
    pub fn ingest(&self, mut reader: impl Read, expected: Option<&Digest>) -> Result<Ingested> {
        if let Some(digest) = expected
            && self.has_blob(digest)
        {
            return self.verify_known(reader, digest);
        }
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut writer = self.blob_writer(algorithm)?;
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(Path::new("<input>"), e)),
            };
            writer
                .write_all(&buf[..n])
                .map_err(|e| StoreError::io(&writer.temp_path, e))?;
        }
        writer.commit(expected)
    }

    /// A writer for content produced on the fly (a layer being tarred). Bytes go to a private
    /// temporary file and are digested on the way; [`BlobWriter::commit`] fsyncs, verifies and
    /// renames into place, so a reader of `blobs/` never sees a partial or wrong blob. Dropped
    /// without commit, it leaves nothing. Two processes writing the same blob both succeed: the
    /// second rename replaces identical bytes.
    pub fn blob_writer(&self, algorithm: Algorithm) -> Result<BlobWriter> {
        let (temp_path, file) = self.create_ingest_file()?;
        Ok(BlobWriter {
            store: self.clone(),
            temp_path,
            file: Some(io::BufWriter::with_capacity(COPY_BUFFER, file)),
            digester: Digester::new(algorithm),
            size: 0,
        })
    }

    /// The blob exists: read the input anyway (callers stream archives) and check it matches.
    fn verify_known(&self, mut reader: impl Read, digest: &Digest) -> Result<Ingested> {
        let mut digester = Digester::new(digest.algorithm());
        let size = io::copy(&mut reader, &mut digester)
            .map_err(|e| StoreError::io(Path::new("<input>"), e))?;
        let actual = digester.finish();
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(Ingested {
            digest: digest.clone(),
            size,
            created: false,
        })
    }

    fn create_ingest_file(&self) -> Result<(PathBuf, File)> {
        let dir = self.ingest_dir();
        loop {
            let name = format!(
                "{}-{}-{}.partial",
                std::process::id(),
                INGEST_SEQUENCE.fetch_add(1, Ordering::Relaxed),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            );
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
    }

    /// Every blob digest present on disk.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut blobs = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.blob_dir().join(algorithm.to_string());
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
                let name = entry.file_name();
                let Some(digest) = name
                    .to_str()
                    .and_then(|hex| format!("{algorithm}:{hex}").parse::<Digest>().ok())
                else {
                    continue;
                };
                let size = entry
                    .metadata()
                    .map_err(|e| StoreError::io(&entry.path(), e))?
                    .len();
                blobs.push((digest, size));
            }
        }
        blobs.sort();
        Ok(blobs)
    }

    /// Removes a blob file. Only garbage collection calls this, under the exclusive content lock.
    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Leftovers of ingests that were killed. Only safe under the exclusive content lock.
    pub fn remove_stale_ingests(&self) -> Result<u64> {
        let dir = self.ingest_dir();
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            removed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
        }
        Ok(removed)
    }
}

pub struct BlobWriter {
    store: Store,
    temp_path: PathBuf,
    file: Option<io::BufWriter<File>>,
    digester: Digester,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf)?;
        self.digester.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl BlobWriter {
    pub fn bytes_written(&self) -> u64 {
        self.size
    }

    /// Makes the blob visible, after checking it against `expected` when given.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Ingested> {
        let file = self.file.take().expect("commit consumes the writer");
        let digester = std::mem::replace(&mut self.digester, Digester::new(Algorithm::Sha256));
        let digest = digester.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        let file = file
            .into_inner()
            .map_err(|e| StoreError::io(&self.temp_path, e.into_error()))?;
        file.sync_data()
            .map_err(|e| StoreError::io(&self.temp_path, e))?;
        drop(file);
        let final_path = self.store.blob_path(&digest);
        let created = !final_path.exists();
        let parent = final_path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        std::fs::rename(&self.temp_path, &final_path)
            .map_err(|e| StoreError::io(&final_path, e))?;
        sync_dir(parent)?;
        Ok(Ingested {
            digest,
            size: self.size,
            created,
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Not committed (or commit failed): the temporary file is garbage.
        let _ = std::fs::remove_file(&self.temp_path);
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic writes target a file in a directory");
    let temp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        INGEST_SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&temp).map_err(|e| StoreError::io(&temp, e))?;
        file.write_all(data).map_err(|e| StoreError::io(&temp, e))?;
        file.sync_data().map_err(|e| StoreError::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| StoreError::io(path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
