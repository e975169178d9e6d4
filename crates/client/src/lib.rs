//! The registry client of strata: the OCI distribution API over HTTP(S) (ping, manifests,
//! blobs, uploads, tags) with Docker-compatible authentication and credentials, and the
//! operations built on it: pull, push, copy between transports, remote inspection.
//!
//! Every downloaded byte is digested as it streams and compared with the expected digest before
//! it becomes visible in the store; images are recorded in the catalog only once all their
//! content is stored and verified.

pub mod auth;
pub mod config;
pub mod copy;
pub mod credentials;
mod error;
mod gzip;
pub mod http;
mod layout;
pub mod location;
pub mod pull;
pub mod push;
pub mod record;

pub use copy::{Copied, copy};
pub use error::{ClientError, Result};
pub use http::{BlobPush, ClientOptions, FetchedManifest, Progress, Registry, TransferObserver};
pub use location::Location;
pub use pull::{LayerObserver, LayerStatus, Pulled, pull};
pub use push::{Pushed, push};
