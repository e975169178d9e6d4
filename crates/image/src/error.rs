use strata_layer::LayerError;
use strata_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Layer(#[from] LayerError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// An archive (docker save, OCI archive) that is malformed; `entry` names the file inside it.
    #[error("invalid archive: {entry}: {message}")]
    Archive { entry: String, message: String },

    /// A manifest, index or config in the store or an archive that cannot be used.
    #[error("{what} {digest}: {message}")]
    Document {
        what: &'static str,
        digest: String,
        message: String,
    },

    #[error("invalid reference {input:?}: {message}")]
    Reference { input: String, message: String },

    #[error("invalid --change {input:?}: {message}")]
    Change { input: String, message: String },

    #[error("{0}")]
    Conflict(String),
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ImageError {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn archive(entry: impl Into<String>, message: impl Into<String>) -> ImageError {
        ImageError::Archive {
            entry: entry.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
