//! The OCI / Docker image model for strata: content digests, image
//! references, media types and platforms.
//!
//! Pure parsing, validation and hashing; this crate performs no I/O.
//! Everything is re-exported at the crate root; the modules stay public so
//! that `strata_oci::media_types::OCI_MANIFEST` reads naturally too.

pub mod digest;
pub mod media_types;
pub mod platform;
pub mod reference;

pub use digest::*;
pub use media_types::*;
pub use platform::*;
pub use reference::*;

/// The OCI image-spec types (manifests, indexes, configs, descriptors).
pub use oci_spec::image as spec;
