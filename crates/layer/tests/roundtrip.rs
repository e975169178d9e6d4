//! `write_layer` -> `apply_layer` round trips and changeset semantics.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{RawTar, sample_tree, set_all_mtimes, snapshot};
use strata_layer::{ApplyOptions, CreateOptions, apply_layer, write_layer};

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn write_then_apply_reproduces_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    sample_tree(&src);
    // Not a multiple of any buffer size, to cross chunk boundaries.
    fs::write(src.join("big.bin"), pseudo_random(3 * 1024 * 1024 + 123)).unwrap();
    set_all_mtimes(&src, 1_700_000_000);

    let (tar, created) = write_layer(&src, &CreateOptions::default(), Vec::new()).unwrap();
    let applied = apply_layer(&dst, &tar[..], &ApplyOptions::default()).unwrap();
    assert_eq!(applied.entries, created.entries);
    assert_eq!(applied.bytes, tar.len() as u64);
    assert_eq!(applied.devices_skipped, 0);

    let mut expected = snapshot(&src, None);
    expected
        .remove(Path::new("socket"))
        .expect("sample tree has a socket");
    expected.remove(Path::new(""));
    let mut actual = snapshot(&dst, None);
    actual.remove(Path::new(""));
    assert_eq!(expected, actual);
}

#[test]
fn whiteouts_and_opaque_dirs_apply_across_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, root) = (tmp.path().join("lower"), tmp.path().join("root"));
    fs::create_dir(&root).unwrap();
    for dir in ["d/sub", "o/sub", "p", "q"] {
        fs::create_dir_all(lower.join(dir)).unwrap();
    }
    for file in [
        "a",
        "keep",
        "d/x",
        "d/y",
        "d/sub/z",
        "o/old",
        "o/sub/old2",
        "p/old",
        "q/old",
    ] {
        fs::write(lower.join(file), file).unwrap();
    }
    std::os::unix::fs::symlink("a", lower.join("link")).unwrap();
    let (layer1, _) = write_layer(&lower, &CreateOptions::default(), Vec::new()).unwrap();

    let layer2 = RawTar::new()
        .file(b".wh.a", b"")
        .file(b"d/.wh.x", b"")
        // Opaque marker before its siblings...
        .dir(b"o/")
        .file(b"o/.wh..wh..opq", b"")
        .file(b"o/new", b"new")
        .dir(b"o/sub/")
        .file(b"o/sub/new2", b"new2")
        // ...and after them: the same result (OCI: order is irrelevant).
        .dir(b"p/")
        .file(b"p/kept", b"kept")
        .file(b"p/.wh..wh..opq", b"")
        // Whiteout of a path this layer itself provides keeps it.
        .file(b"q/mine", b"mine")
        .file(b"q/.wh.mine", b"")
        // Whiteout of something that never existed is fine.
        .file(b".wh.never", b"")
        .finish();

    let opts = ApplyOptions::default();
    apply_layer(&root, &layer1[..], &opts).unwrap();
    let stats = apply_layer(&root, &layer2[..], &opts).unwrap();
    assert_eq!(stats.entries, 13);

    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names(&root), set(&["d", "keep", "link", "o", "p", "q"]));
    assert_eq!(names(&root.join("d")), set(&["sub", "y"]));
    assert_eq!(names(&root.join("d/sub")), set(&["z"]));
    assert_eq!(names(&root.join("o")), set(&["new", "sub"]));
    assert_eq!(names(&root.join("o/sub")), set(&["new2"]));
    assert_eq!(names(&root.join("p")), set(&["kept"]));
    assert_eq!(names(&root.join("q")), set(&["mine", "old"]));
    // The dangling symlink stays a symlink (never followed or "fixed").
    assert!(
        fs::symlink_metadata(root.join("link"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn entries_replace_what_lower_layers_had() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let lower = RawTar::new()
        .file(b"file-to-dir", b"f")
        .dir(b"dir-to-file/")
        .file(b"dir-to-file/inner", b"i")
        .dir(b"dir-to-link/")
        .file(b"dir-to-link/inner", b"i")
        .symlink(b"link-to-dir", b"elsewhere")
        .dir_mode(b"merged/", 0o700)
        .file(b"merged/old", b"o")
        .finish();
    let upper = RawTar::new()
        .dir_mode(b"file-to-dir/", 0o750)
        .file(b"dir-to-file", b"now a file")
        .symlink(b"dir-to-link", b"target")
        .dir(b"link-to-dir/")
        .dir_mode(b"merged/", 0o711)
        .file(b"merged/new", b"n")
        .finish();
    let opts = ApplyOptions::default();
    apply_layer(root, &lower[..], &opts).unwrap();
    apply_layer(root, &upper[..], &opts).unwrap();

    use std::os::unix::fs::PermissionsExt;
    let md = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert!(md("file-to-dir").is_dir());
    assert_eq!(md("file-to-dir").permissions().mode() & 0o7777, 0o750);
    assert_eq!(fs::read(root.join("dir-to-file")).unwrap(), b"now a file");
    assert_eq!(
        fs::read_link(root.join("dir-to-link")).unwrap(),
        Path::new("target")
    );
    assert!(md("link-to-dir").is_dir());
    // Directory over directory merges and takes the new metadata.
    assert_eq!(names(&root.join("merged")).len(), 2);
    assert_eq!(md("merged").permissions().mode() & 0o7777, 0o711);
    assert_eq!(
        std::os::unix::fs::MetadataExt::mtime(&md("merged")),
        1_600_000_000
    );
}

#[test]
fn devices_are_skipped_and_counted_when_not_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = RawTar::new()
        .device(b"dev/null", b'3', 1, 3)
        .device(b"dev/sda", b'4', 8, 0)
        .device(b"dev/pipe", b'6', 0, 0)
        .finish();
    let opts = ApplyOptions {
        allow_device_nodes: false,
        ..ApplyOptions::default()
    };
    let stats = apply_layer(tmp.path(), &tar[..], &opts).unwrap();
    assert_eq!(stats.devices_skipped, 2);
    assert_eq!(
        names(&tmp.path().join("dev"))
            .into_iter()
            .collect::<Vec<_>>(),
        ["pipe"]
    );
}

#[test]
fn archive_without_end_marker_and_with_old_style_dirs_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = RawTar::new();
    // Pre-POSIX directory: regular type flag, trailing slash.
    let mut old_dir = common::Hdr::new(b"olddir/", b'0');
    old_dir.mode = 0o755;
    tar.header(old_dir).file(b"olddir/f", b"x");
    let bytes = tar.unfinished();
    apply_layer(tmp.path(), &bytes[..], &ApplyOptions::default()).unwrap();
    assert!(tmp.path().join("olddir").is_dir());
    assert_eq!(fs::read(tmp.path().join("olddir/f")).unwrap(), b"x");
}

#[test]
fn gnu_and_pax_extensions_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let long_name = format!("dir/{}", "n".repeat(150));
    let long_target = "t".repeat(150);
    let mut prefixed = common::Hdr::new(b"file", b'0');
    prefixed.prefix = b"dir/prefixed".to_vec();
    prefixed.data = b"via prefix".to_vec();
    let tar = RawTar::new()
        .gnu_long_name(long_name.as_bytes())
        .file(b"truncated-name", b"long")
        .gnu_long_link(long_target.as_bytes())
        .symlink(b"dir/link", b"truncated-target")
        .header(prefixed)
        .pax(&[
            ("path", b"dir/pax-name"),
            ("mtime", b"1234567890.75"),
            ("SCHILY.xattr.user.note", b"a\nb"),
            ("uname", b"ignored"),
        ])
        .file(b"ignored", b"pax")
        .finish();
    apply_layer(tmp.path(), &tar[..], &ApplyOptions::default()).unwrap();
    let dir = tmp.path().join("dir");
    assert_eq!(fs::read(dir.join("n".repeat(150))).unwrap(), b"long");
    assert_eq!(
        fs::read_link(dir.join("link")).unwrap(),
        Path::new(&long_target)
    );
    assert_eq!(fs::read(dir.join("prefixed/file")).unwrap(), b"via prefix");
    let pax = dir.join("pax-name");
    assert_eq!(fs::read(&pax).unwrap(), b"pax");
    assert_eq!(
        std::os::unix::fs::MetadataExt::mtime(&fs::metadata(&pax).unwrap()),
        1_234_567_890
    );
    assert_eq!(
        common::xattrs(&pax),
        vec![("user.note".to_owned(), b"a\nb".to_vec())]
    );
}
