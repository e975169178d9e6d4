use std::path::{Path, PathBuf};

use strata_oci::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error("blob {digest} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },

    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),

    #[error("blob {digest} is larger than the {limit}-byte limit for this kind of content")]
    TooLarge { digest: Digest, limit: u64 },

    #[error("metadata database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },

    #[error("corrupt metadata record {key:?}: {message}")]
    CorruptRecord { key: String, message: String },

    #[error(
        "store at {} has format version {found}; this strata understands version {supported}",
        root.display()
    )]
    FormatVersion {
        root: PathBuf,
        found: String,
        supported: u32,
    },

    #[error("No such image: {0}")]
    ImageNotFound(String),

    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn db(path: &Path, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: path.to_path_buf(),
            message: e.into().to_string(),
        }
    }
}
