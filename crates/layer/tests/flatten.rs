//! `flatten_layers`: applying the flattened tar must give the same tree as
//! applying the layers one by one.

mod common;

use std::collections::HashSet;
use std::io::Cursor;
use std::path::Path;

use common::{RawTar, snapshot_with};
use strata_layer::{ApplyOptions, LayerError, apply_layer, flatten_layers};

fn flatten(layers: &[Vec<u8>]) -> Result<Vec<u8>, LayerError> {
    let owned = layers.to_vec();
    flatten_layers(
        &mut |i| Ok(Box::new(Cursor::new(owned[i].clone())) as Box<dyn std::io::Read>),
        owned.len(),
        Vec::new(),
    )
}

/// Checks flatten == sequential apply, and the flattened tar's shape.
fn assert_equivalent(name: &str, layers: &[Vec<u8>]) {
    let tmp = tempfile::tempdir().unwrap();
    let (sequential, flattened) = (tmp.path().join("seq"), tmp.path().join("flat"));
    std::fs::create_dir(&sequential).unwrap();
    std::fs::create_dir(&flattened).unwrap();
    let opts = ApplyOptions::default();
    for layer in layers {
        apply_layer(&sequential, &layer[..], &opts).unwrap();
    }
    let flat = flatten(layers).unwrap();
    apply_layer(&flattened, &flat[..], &opts).unwrap();

    // Directory mtimes legitimately differ (a lower directory changed by a
    // later layer gets "now" when applied in steps); everything else must not.
    let mut expected = snapshot_with(&sequential, None, false);
    let mut actual = snapshot_with(&flattened, None, false);
    expected.remove(Path::new(""));
    actual.remove(Path::new(""));
    assert_eq!(expected, actual, "scenario {name}");

    let mut archive = tar::Archive::new(&flat[..]);
    let mut seen = HashSet::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        assert!(
            !path.contains(".wh."),
            "scenario {name}: whiteout {path} emitted"
        );
        if entry.header().entry_type() == tar::EntryType::Link {
            let target = String::from_utf8(entry.link_name_bytes().unwrap().into_owned()).unwrap();
            assert!(
                seen.contains(&target),
                "scenario {name}: link {path} before {target}"
            );
        }
        assert!(
            seen.insert(path.trim_end_matches('/').to_owned()),
            "scenario {name}: duplicate {path}"
        );
    }
}

#[test]
fn whiteouts_opaques_and_overrides() {
    let lower = RawTar::new()
        .file(b"a", b"a")
        .file(b"keep", b"keep")
        .dir(b"d/")
        .file(b"d/x", b"x")
        .file(b"d/y", b"y")
        .dir(b"o/")
        .file(b"o/old", b"old")
        .dir(b"o/sub/")
        .file(b"o/sub/old2", b"old2")
        .dir(b"p/")
        .file(b"p/old", b"old")
        .file(b"file-to-dir", b"f")
        .dir(b"dir-to-file/")
        .file(b"dir-to-file/inner", b"i")
        .symlink(b"link", b"a")
        .finish();
    let upper = RawTar::new()
        .file(b".wh.a", b"")
        .file(b"d/.wh.x", b"")
        .dir(b"o/")
        .file(b"o/.wh..wh..opq", b"")
        .file(b"o/new", b"new")
        .dir(b"o/sub/")
        .file(b"o/sub/new2", b"new2")
        .dir(b"p/")
        .file(b"p/kept", b"kept")
        .file(b"p/.wh..wh..opq", b"")
        .dir_mode(b"file-to-dir/", 0o700)
        .file(b"file-to-dir/child", b"c")
        .file(b"dir-to-file", b"now a file")
        .finish();
    assert_equivalent("whiteouts", &[lower, upper]);
}

#[test]
fn directory_metadata_from_the_top_wins() {
    let mut d0 = common::Hdr::new(b"d/", b'5');
    d0.mode = 0o755;
    let mut d1 = common::Hdr::new(b"d/", b'5');
    d1.mode = 0o710;
    d1.mtime = 1_234;
    let layers = [
        RawTar::new().header(d0).file(b"d/f", b"f").finish(),
        RawTar::new().header(d1).file(b"d/g", b"g").finish(),
    ];
    assert_equivalent("dir metadata", &layers);
}

#[test]
fn hardlink_survives_when_its_target_is_replaced() {
    let layers = [
        RawTar::new().file(b"a", b"original").finish(),
        RawTar::new().hardlink(b"b", b"a").finish(),
        RawTar::new().file(b"a", b"replacement").finish(),
    ];
    assert_equivalent("link target replaced", &layers);
}

#[test]
fn hardlink_survives_when_its_target_is_whited_out() {
    let layers = [
        RawTar::new()
            .file(b"x", b"content")
            .hardlink(b"y", b"x")
            .hardlink(b"z", b"x")
            .finish(),
        RawTar::new().file(b".wh.x", b"").finish(),
    ];
    assert_equivalent("link target whited out", &layers);
}

#[test]
fn hardlink_chains_across_layers() {
    let layers = [
        RawTar::new()
            .dir(b"bin/")
            .file(b"bin/f", b"payload")
            .finish(),
        RawTar::new().hardlink(b"g", b"bin/f").finish(),
        RawTar::new().hardlink(b"h", b"g").finish(),
        RawTar::new().file(b"bin/.wh.f", b"").finish(),
    ];
    assert_equivalent("link chain", &layers);
}

#[test]
fn duplicates_in_one_layer_and_opaque_root() {
    let layers = [
        RawTar::new()
            .file(b"gone", b"g")
            .file(b"dup", b"first")
            .file(b"dup", b"second")
            .finish(),
        RawTar::new()
            .file(b".wh..wh..opq", b"")
            .file(b"fresh", b"f")
            .finish(),
        RawTar::new().file(b"dup", b"1").file(b"dup", b"2").finish(),
    ];
    assert_equivalent("duplicates", &layers);
}

#[test]
fn zero_layers_is_an_empty_archive() {
    let flat = flatten(&[]).unwrap();
    assert_eq!(flat, vec![0u8; 1024]);
}

#[test]
fn hardlink_to_missing_target_is_an_error() {
    let err = flatten(&[RawTar::new().hardlink(b"l", b"missing").finish()]).unwrap_err();
    assert!(err.to_string().contains("\"missing\""), "{err}");
}

#[test]
fn escaping_paths_are_rejected() {
    let err = flatten(&[RawTar::new().file(b"../x", b"x").finish()]).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
}
