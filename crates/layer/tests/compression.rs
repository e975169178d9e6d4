//! Compression round trips and media-type handling.

use std::io::{Read, Write};

use strata_layer::{Compression, LayerError, compress, decompress};

fn sample() -> Vec<u8> {
    (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect()
}

fn round_trip(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut enc = compress(c, Vec::new()).unwrap();
    enc.write_all(data).unwrap();
    let blob = enc.finish().unwrap();
    assert_eq!(Compression::sniff(&blob), c);
    let mut out = Vec::new();
    decompress(c, &blob[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn all_codecs_round_trip() {
    let data = sample();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        assert_eq!(round_trip(c, &data), data, "{c:?}");
        assert_eq!(round_trip(c, b""), b"", "{c:?} empty");
    }
}

#[test]
fn compressed_output_is_smaller_and_deterministic() {
    let data = sample();
    for c in [Compression::Gzip, Compression::Zstd] {
        let blob = |d: &[u8]| {
            let mut enc = compress(c, Vec::new()).unwrap();
            enc.write_all(d).unwrap();
            enc.finish().unwrap()
        };
        let first = blob(&data);
        assert!(first.len() < data.len() / 4, "{c:?}");
        assert_eq!(first, blob(&data), "{c:?} must be reproducible");
    }
}

#[test]
fn concatenated_members_and_frames_decode_fully() {
    for c in [Compression::Gzip, Compression::Zstd] {
        let mut blob = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut enc = compress(c, Vec::new()).unwrap();
            enc.write_all(part).unwrap();
            blob.extend(enc.finish().unwrap());
        }
        let mut out = String::new();
        decompress(c, &blob[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second", "{c:?}");
    }
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    for c in [Compression::Gzip, Compression::Zstd] {
        let mut out = Vec::new();
        let garbage = [0x1f, 0x8b, 0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5, 6, 7, 8];
        let result = decompress(c, &garbage[..]).and_then(|mut r| {
            r.read_to_end(&mut out)
                .map_err(|error| LayerError::Compression {
                    codec: "test",
                    op: "read",
                    error,
                })
        });
        assert!(result.is_err(), "{c:?}");
    }
}

#[test]
fn media_types() {
    let cases = [
        ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Zstd,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Compression::None,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Compression::Zstd,
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar",
            Compression::None,
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Compression::Gzip,
        ),
    ];
    for (mt, c) in cases {
        assert_eq!(Compression::from_media_type(mt).unwrap(), c, "{mt}");
    }
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        assert_eq!(Compression::from_media_type(c.oci_media_type()).unwrap(), c);
    }
    for bad in [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/json",
        "",
    ] {
        let err = Compression::from_media_type(bad).unwrap_err();
        assert!(matches!(err, LayerError::UnsupportedMediaType(ref m) if m == bad));
        assert!(err.to_string().contains("unsupported layer media type"));
    }
}

#[test]
fn sniffing() {
    assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    assert_eq!(
        Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
        Compression::Zstd
    );
    assert_eq!(Compression::sniff(b"ustar"), Compression::None);
    assert_eq!(Compression::sniff(&[0x1f]), Compression::None);
    assert_eq!(Compression::sniff(&[]), Compression::None);
}
