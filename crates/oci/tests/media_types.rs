use strata_oci::media_types::{self, LayerCompression};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
    Config,
    Layer(LayerCompression),
    Other,
}

fn classify(media_type: &str) -> Result<Kind, String> {
    let flags = [
        media_types::is_manifest(media_type),
        media_types::is_index(media_type),
        media_types::is_config(media_type),
        media_types::is_layer(media_type),
    ];
    let kind = match (flags, media_types::layer_compression(media_type)) {
        ([true, false, false, false], None) => Kind::Manifest,
        ([false, true, false, false], None) => Kind::Index,
        ([false, false, true, false], None) => Kind::Config,
        ([false, false, false, true], Some(compression)) => Kind::Layer(compression),
        ([false, false, false, false], None) => Kind::Other,
        inconsistent => return Err(format!("{media_type:?}: inconsistent {inconsistent:?}")),
    };
    Ok(kind)
}

#[test]
fn media_types_are_classified() {
    use Kind::*;
    use LayerCompression::{Gzip, Zstd};
    let uncompressed = LayerCompression::None;
    let cases = [
        (media_types::OCI_MANIFEST, Manifest),
        (media_types::DOCKER_MANIFEST, Manifest),
        (media_types::OCI_INDEX, Index),
        (media_types::DOCKER_MANIFEST_LIST, Index),
        (media_types::OCI_CONFIG, Config),
        (media_types::DOCKER_CONFIG, Config),
        (media_types::OCI_LAYER, Layer(uncompressed)),
        (media_types::OCI_LAYER_GZIP, Layer(Gzip)),
        (media_types::OCI_LAYER_ZSTD, Layer(Zstd)),
        (
            media_types::OCI_LAYER_NON_DISTRIBUTABLE,
            Layer(uncompressed),
        ),
        (media_types::OCI_LAYER_NON_DISTRIBUTABLE_GZIP, Layer(Gzip)),
        (media_types::OCI_LAYER_NON_DISTRIBUTABLE_ZSTD, Layer(Zstd)),
        (media_types::DOCKER_LAYER, Layer(uncompressed)),
        (media_types::DOCKER_LAYER_GZIP, Layer(Gzip)),
        (media_types::DOCKER_LAYER_ZSTD, Layer(Zstd)),
        (media_types::DOCKER_FOREIGN_LAYER, Layer(Gzip)),
        (
            media_types::DOCKER_FOREIGN_LAYER_UNCOMPRESSED,
            Layer(uncompressed),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar+gzip",
            Layer(Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar+zstd",
            Layer(Zstd),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip; charset=binary",
            Layer(Gzip),
        ),
        (" application/vnd.oci.image.manifest.v1+json ", Manifest),
        (media_types::OCI_EMPTY_JSON, Other),
        (media_types::OCI_LAYOUT_HEADER, Other),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            Other,
        ),
        ("application/vnd.oci.image.layer.v1.tar+bzip2", Other),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip+zstd",
            Other,
        ),
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            Other,
        ),
        ("application/vnd.oci.image.manifest.v2+json", Other),
        ("application/vnd.OCI.image.manifest.v1+json", Other),
        ("application/json", Other),
        ("", Other),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(media_type, expected)| match classify(media_type) {
            Ok(kind) if kind == expected => None,
            Ok(kind) => Some(format!(
                "{media_type:?}: got {kind:?}, expected {expected:?}"
            )),
            Err(error) => Some(error),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn constants_have_the_registered_values() {
    assert_eq!(
        media_types::OCI_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        media_types::OCI_INDEX,
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        media_types::OCI_CONFIG,
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        media_types::OCI_EMPTY_JSON,
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        media_types::OCI_LAYOUT_HEADER,
        "application/vnd.oci.layout.header.v1+json"
    );
    assert_eq!(
        media_types::DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        media_types::DOCKER_MANIFEST_LIST,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        media_types::DOCKER_CONFIG,
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        media_types::DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        media_types::DOCKER_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    // Agree with oci-spec where it defines the same types.
    use strata_oci::spec::MediaType;
    assert_eq!(
        MediaType::ImageManifest.to_string(),
        media_types::OCI_MANIFEST
    );
    assert_eq!(MediaType::ImageIndex.to_string(), media_types::OCI_INDEX);
    assert_eq!(MediaType::ImageConfig.to_string(), media_types::OCI_CONFIG);
    assert_eq!(
        MediaType::ImageLayerZstd.to_string(),
        media_types::OCI_LAYER_ZSTD
    );
    assert_eq!(
        MediaType::EmptyJSON.to_string(),
        media_types::OCI_EMPTY_JSON
    );
}

#[test]
fn compression_media_types_and_magic() {
    for compression in [
        LayerCompression::None,
        LayerCompression::Gzip,
        LayerCompression::Zstd,
    ] {
        assert_eq!(
            media_types::layer_compression(compression.oci_media_type()),
            Some(compression)
        );
        assert_eq!(
            media_types::layer_compression(compression.docker_media_type()),
            Some(compression)
        );
    }
    assert_eq!(
        LayerCompression::detect(&[0x1f, 0x8b, 0x08, 0x00]),
        LayerCompression::Gzip
    );
    assert_eq!(
        LayerCompression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0x00]),
        LayerCompression::Zstd
    );
    assert_eq!(
        LayerCompression::detect(b"etc/\0\0\0"),
        LayerCompression::None
    );
    assert_eq!(LayerCompression::detect(&[0x1f]), LayerCompression::None);
    assert_eq!(LayerCompression::detect(&[]), LayerCompression::None);
}
