//! The local image store: content-addressed blobs in an OCI image layout, and the metadata
//! (tags, image records, layer mappings) in a small transactional database.
//!
//! The on-disk format is specified in `docs/store-format.md`; [`FORMAT_VERSION`] is the version
//! written there. Invariants:
//! - a blob file appears under `blobs/` only by an atomic rename after its digest was verified
//!   and its bytes were fsynced, so a blob that is visible is always complete and correct;
//! - the metadata database is the source of truth; every `index.json` is a view rewritten from
//!   it after each committed update;
//! - commands that add content hold the shared content lock for their whole run, and garbage
//!   collection holds it exclusively, so nothing in flight is ever collected.

mod blobs;
mod catalog;
mod error;
pub mod layout;
mod lock;
mod meta;

pub use blobs::{BlobWriter, Ingested};
pub use catalog::{
    BlobRef, BuildCacheRecord, CachedLayer, Catalog, ImageRecord, LayerRecord, Resolved,
    SnapshotRecord,
};
pub use error::StoreError;
pub use lock::ContentLock;

use std::path::{Path, PathBuf};

/// Version of the on-disk layout described in `docs/store-format.md`.
pub const FORMAT_VERSION: u32 = 1;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An opened store root. Cheap to hold: it keeps no file open between operations, so several
/// strata processes can share one root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating its layout on first use and refusing a root written
    /// by a newer, incompatible format.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            store.root.clone(),
            store.blob_dir(),
            store.ingest_dir(),
            store.repositories_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        {
            // Under the metadata lock, so an empty first index.json never replaces a view
            // another process has just written.
            let _lock = store.lock_meta()?;
            layout::ensure_layout_file(&store.root)?;
        }
        meta::check_format(&store)?;
        Ok(store)
    }

    /// The default root: `/var/lib/strata` for root, `$XDG_DATA_HOME/strata` (or
    /// `~/.local/share/strata`) otherwise.
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/strata");
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(data).join("strata");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".local/share/strata")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    fn repositories_dir(&self) -> PathBuf {
        self.root.join("repositories")
    }

    /// Where unpacked layer snapshots live: `snapshots/<chainID hex>/fs`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Reads the whole catalog in one read transaction.
    pub fn catalog(&self) -> Result<Catalog> {
        meta::load(self)
    }

    /// Applies `change` to the catalog in one write transaction, then rewrites the `index.json`
    /// views. When `change` fails nothing is written.
    pub fn update<T, E: From<StoreError>>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, E>,
    ) -> Result<T, E> {
        meta::update(self, change, |catalog| layout::sync(self, catalog))
    }

    /// Rewrites every `index.json` view from the catalog (used after a crash between a commit and
    /// the view update, and by prune).
    pub fn sync_layouts(&self) -> Result<()> {
        meta::update(
            self,
            |_| Ok::<(), StoreError>(()),
            |catalog| layout::sync(self, catalog),
        )
    }
}
