use strata_image::ImageError;
use strata_store::StoreError;

/// Errors of the registry client. Each names the registry, repository or reference involved.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Image(#[from] ImageError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry}: {message}")]
    Connection { registry: String, message: String },

    #[error(
        "TLS handshake with registry {registry} failed: {message} (for a registry with a \
         self-signed certificate or without TLS, pass --tls-verify=false)"
    )]
    Tls { registry: String, message: String },

    #[error("unauthorized: registry {registry} refused access to {scope}{hint}")]
    Unauthorized {
        registry: String,
        scope: String,
        hint: &'static str,
    },

    #[error("manifest unknown: {reference} not found")]
    ManifestUnknown { reference: String },

    #[error("name unknown: repository {repository} does not exist on {registry}")]
    NameUnknown {
        registry: String,
        repository: String,
    },

    /// Any other unexpected registry answer.
    #[error("registry {registry}: {method} {path}: HTTP {status}{detail}")]
    Registry {
        registry: String,
        method: String,
        path: String,
        status: u16,
        detail: String,
    },

    #[error("{what} {expected} from {registry}: received content has digest {actual}")]
    DigestMismatch {
        registry: String,
        what: &'static str,
        expected: String,
        actual: String,
    },

    /// Content that cannot be used (wrong size, too large, no matching platform).
    #[error("{0}")]
    Invalid(String),

    #[error("credentials: {0}")]
    Credentials(String),

    #[error("invalid image location {input:?}: {message}")]
    Location { input: String, message: String },
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
