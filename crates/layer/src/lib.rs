//! OCI image layers: create, apply, flatten, and (de)compress layer tars.
//!
//! - [`write_layer`] archives a directory (optionally an overlayfs upper
//!   directory) into a deterministic, uncompressed layer tar.
//! - [`apply_layer`] applies an uncompressed layer tar onto a directory with
//!   OCI changeset semantics, never touching anything outside that directory.
//! - [`flatten_layers`] merges a stack of layers into one tar.
//! - [`compress`] / [`decompress`] wrap streams for the layer media types.

mod apply;
mod compression;
mod create;
mod error;
mod flatten;
mod fs_util;
mod paths;
mod tar_format;

pub use apply::{ApplyOptions, ApplyStats, apply_layer};
pub use compression::{Compression, Compressor, GZIP_LEVEL, ZSTD_LEVEL, compress, decompress};
pub use create::{CreateOptions, LayerStats, write_layer};
pub use error::LayerError;
pub use flatten::flatten_layers;
