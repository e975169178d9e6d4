//! Advisory file locks between strata processes sharing one root.
//!
//! `content.lock`: every command that adds blobs holds it shared from its first ingest until its
//! records are committed; garbage collection holds it exclusively. `meta.lock`: held exclusively
//! around each metadata transaction, because the database file admits one process at a time and
//! we would rather queue than fail.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::{Result, Store, StoreError};

/// Held for as long as content being added must not be collected (shared), or while collecting
/// (exclusive). Released on drop.
#[derive(Debug)]
pub struct ContentLock {
    _file: File,
}

pub(crate) struct MetaLock {
    _file: File,
}

fn lock_file(path: &Path, operation: FlockOperation) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    loop {
        match flock(&file, operation) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(StoreError::io(path, e.into())),
        }
    }
}

impl Store {
    /// Taken by every command that ingests content, before its first blob.
    pub fn lock_content_shared(&self) -> Result<ContentLock> {
        let file = lock_file(&self.root.join("content.lock"), FlockOperation::LockShared)?;
        Ok(ContentLock { _file: file })
    }

    /// Taken by garbage collection: waits for every in-flight ingest to commit or end.
    pub fn lock_content_exclusive(&self) -> Result<ContentLock> {
        let file = lock_file(
            &self.root.join("content.lock"),
            FlockOperation::LockExclusive,
        )?;
        Ok(ContentLock { _file: file })
    }

    pub(crate) fn lock_meta(&self) -> Result<MetaLock> {
        let file = lock_file(&self.root.join("meta.lock"), FlockOperation::LockExclusive)?;
        Ok(MetaLock { _file: file })
    }
}
