//! Media types of OCI and Docker image content, and classification helpers.
//!
//! Registries and daemons serve both families, so every helper accepts the
//! OCI type and its Docker schema 2 counterpart.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform list of manifests).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer tarball.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Layers that must not be pushed to other registries (deprecated in image-spec 1.1).
pub const OCI_LAYER_NON_DISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NON_DISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NON_DISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The `{}` blob used as config or layer placeholder by artifacts.
pub const OCI_EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
/// The `oci-layout` file at the root of an OCI image layout.
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform), schema 2.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker container image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Gzip-compressed Docker layer: the usual Docker layer type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Uncompressed Docker layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Zstd-compressed Docker layer (introduced by containerd, not by Docker itself).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Gzip-compressed Docker layer that must be fetched from its `urls` (Windows base layers).
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Uncompressed foreign Docker layer.
pub const DOCKER_FOREIGN_LAYER_UNCOMPRESSED: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar";

/// Strips media type parameters (`; charset=…`) and surrounding blanks, which
/// some registries add to `Content-Type` headers.
fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

/// Whether `media_type` is a single-platform image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_MANIFEST | DOCKER_MANIFEST)
}

/// Whether `media_type` is a multi-platform index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether `media_type` is an image configuration (OCI or Docker).
pub fn is_config(media_type: &str) -> bool {
    matches!(essence(media_type), OCI_CONFIG | DOCKER_CONFIG)
}

/// Whether `media_type` is a filesystem layer this crate knows how to decompress.
pub fn is_layer(media_type: &str) -> bool {
    layer_compression(media_type).is_some()
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// Recognises compression from a blob's first bytes. Useful because old
    /// Docker versions labelled gzip layers with the uncompressed type.
    pub fn detect(magic: &[u8]) -> LayerCompression {
        const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
        const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
        if magic.starts_with(GZIP_MAGIC) {
            LayerCompression::Gzip
        } else if magic.starts_with(ZSTD_MAGIC) {
            LayerCompression::Zstd
        } else {
            LayerCompression::None
        }
    }

    /// The OCI layer media type for content compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            LayerCompression::None => OCI_LAYER,
            LayerCompression::Gzip => OCI_LAYER_GZIP,
            LayerCompression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// The Docker schema 2 layer media type for content compressed this way.
    pub fn docker_media_type(self) -> &'static str {
        match self {
            LayerCompression::None => DOCKER_LAYER,
            LayerCompression::Gzip => DOCKER_LAYER_GZIP,
            LayerCompression::Zstd => DOCKER_LAYER_ZSTD,
        }
    }
}

/// The compression of a layer, judged by its media type alone.
///
/// Returns `None` for anything that is not a known layer type, including
/// layers wrapped in a further encoding this crate cannot undo (for example
/// `…tar+gzip+encrypted`). A `+gzip`/`+zstd` suffix is honoured on the
/// uncompressed base types, as containerd does.
pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    let mut parts = essence(media_type).split('+');
    let base = parts.next().unwrap_or_default();
    let suffix = parts.next();
    if parts.next().is_some() {
        // Stacked encodings (`+gzip+encrypted`) need a step we cannot perform.
        return None;
    }
    let uncompressed_base = matches!(
        base,
        OCI_LAYER | OCI_LAYER_NON_DISTRIBUTABLE | DOCKER_LAYER | DOCKER_FOREIGN_LAYER_UNCOMPRESSED
    );
    match (base, suffix) {
        (_, None) if uncompressed_base => Some(LayerCompression::None),
        (_, Some("gzip")) if uncompressed_base => Some(LayerCompression::Gzip),
        (_, Some("zstd")) if uncompressed_base => Some(LayerCompression::Zstd),
        (DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER, None) => Some(LayerCompression::Gzip),
        (DOCKER_LAYER_ZSTD, None) => Some(LayerCompression::Zstd),
        _ => None,
    }
}
