//! The one error type of this crate.
//!
//! Every variant that concerns an archive entry carries the entry's path (as
//! written in the tar, or relative to the source directory when creating), so
//! a message always says *what* went wrong and *where*. I/O causes are part of
//! the message rather than exposed through `source()`, so that printing the
//! error with `{}` alone never loses the OS reason and `{:#}` never repeats it.

use std::io;

/// Errors from creating, applying, flattening or (de)compressing layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The layer media type names a format this crate cannot read.
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),

    /// A compression codec could not be set up or finished.
    #[error("{codec} {op} failed: {error}")]
    Compression {
        codec: &'static str,
        op: &'static str,
        error: io::Error,
    },

    /// The byte stream is not a well-formed tar archive (bad checksum,
    /// truncated data, unparsable numeric field, ...).
    #[error("malformed tar archive at entry {path:?} (archive offset {offset}): {reason}")]
    MalformedTar {
        path: String,
        offset: u64,
        reason: String,
    },

    /// An entry name is unusable: it escapes the root, contains NUL, names
    /// the root where a file is required, or is an invalid whiteout.
    #[error("tar entry {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    /// A hardlink entry whose target cannot be linked safely.
    #[error("tar entry {path:?}: hardlink target {target:?} {reason}")]
    InvalidHardlink {
        path: String,
        target: String,
        reason: &'static str,
    },

    /// A well-formed entry this crate deliberately does not handle
    /// (e.g. GNU sparse files, overlayfs redirects).
    #[error("tar entry {path:?}: unsupported: {reason}")]
    Unsupported { path: String, reason: String },

    /// A configured bound was hit (total bytes, entry count, header size).
    #[error("tar entry {path:?}: {limit} exceeds the limit of {max}")]
    LimitExceeded {
        path: String,
        limit: &'static str,
        max: u64,
    },

    /// An operating-system call failed while handling an entry. `op` says
    /// what was being attempted.
    #[error("tar entry {path:?}: {op}: {error}")]
    Io {
        path: String,
        op: &'static str,
        error: io::Error,
    },
}

/// Longest path rendered in full in a message; hostile archives can carry
/// megabyte-long names.
const MAX_DISPLAYED_PATH: usize = 512;

/// Renders raw tar path bytes for messages (lossy, never fails, truncated).
pub(crate) fn display_path(raw: &[u8]) -> String {
    if raw.len() <= MAX_DISPLAYED_PATH {
        return String::from_utf8_lossy(raw).into_owned();
    }
    format!(
        "{}...({} bytes)",
        String::from_utf8_lossy(&raw[..MAX_DISPLAYED_PATH]),
        raw.len()
    )
}

impl LayerError {
    pub(crate) fn io(path: &[u8], op: &'static str, error: impl Into<io::Error>) -> Self {
        LayerError::Io {
            path: display_path(path),
            op,
            error: error.into(),
        }
    }

    pub(crate) fn invalid_path(path: &[u8], reason: &'static str) -> Self {
        LayerError::InvalidPath {
            path: display_path(path),
            reason,
        }
    }
}
