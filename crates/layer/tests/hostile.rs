//! Hostile layers: each case is applied into `<tmp>/jail/root`, where `<tmp>`
//! and `jail` also hold sentinels. Nothing outside `root` may change, and
//! the outcome must be the expected clear error or a safe in-root result.
//!
//! Cases that aim at absolute host paths aim at the jail's own sentinel, so
//! a regression is caught by the snapshot instead of damaging the host.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Hdr, RawTar, snapshot};
use strata_layer::{ApplyOptions, LayerError, apply_layer};

enum Expect {
    /// Must fail; the message must contain this text.
    Error(&'static str),
    /// Must succeed; then this checks the root.
    Safe(fn(&Path)),
}

struct Case {
    name: &'static str,
    /// Builds the layers to apply in order, given the jail's absolute path
    /// (for cases that aim at real host paths).
    layers: fn(&Path) -> Vec<Vec<u8>>,
    opts: fn() -> ApplyOptions,
    expect: Expect,
}

fn default_opts() -> ApplyOptions {
    ApplyOptions::default()
}

fn small_limits() -> ApplyOptions {
    ApplyOptions {
        max_total_bytes: 1 << 20,
        max_entries: 10,
        max_header_size: 64 << 10,
        ..ApplyOptions::default()
    }
}

fn no_devices() -> ApplyOptions {
    ApplyOptions {
        allow_device_nodes: false,
        ..ApplyOptions::default()
    }
}

fn with_ownership() -> ApplyOptions {
    ApplyOptions {
        preserve_ownership: rustix::process::geteuid().is_root(),
        ..ApplyOptions::default()
    }
}

fn err(name: &'static str, layers: fn(&Path) -> Vec<Vec<u8>>, text: &'static str) -> Case {
    Case {
        name,
        layers,
        opts: default_opts,
        expect: Expect::Error(text),
    }
}

fn safe(name: &'static str, layers: fn(&Path) -> Vec<Vec<u8>>, check: fn(&Path)) -> Case {
    Case {
        name,
        layers,
        opts: default_opts,
        expect: Expect::Safe(check),
    }
}

fn with_opts(mut case: Case, opts: fn() -> ApplyOptions) -> Case {
    case.opts = opts;
    case
}

fn one(tar: &mut RawTar) -> Vec<Vec<u8>> {
    vec![tar.finish()]
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_encoded_bytes().to_vec()
}

fn is_file_with(p: &Path, content: &[u8]) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) && fs::read(p).unwrap() == content
}

fn nothing_to_check(_: &Path) {}

/// Where an absolute host path `<jail>/<name>` lands when re-rooted.
fn in_root(root: &Path, name: &str) -> std::path::PathBuf {
    let jail = root.parent().unwrap();
    root.join(jail.strip_prefix("/").unwrap()).join(name)
}

fn check(case: &Case) {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path();
    fs::write(top.join("outer-sentinel"), b"outer").unwrap();
    let jail = top.join("jail");
    fs::create_dir(&jail).unwrap();
    fs::write(jail.join("sentinel"), b"precious").unwrap();
    fs::create_dir(jail.join("sibling")).unwrap();
    fs::write(jail.join("sibling/keep"), b"keep").unwrap();
    let root = jail.join("root");
    fs::create_dir(&root).unwrap();

    let layers = (case.layers)(&jail);
    let before = snapshot(top, Some(&root));
    let opts = (case.opts)();
    let mut result: Result<(), LayerError> = Ok(());
    for layer in &layers {
        result = apply_layer(&root, &layer[..], &opts).map(|_| ());
        if result.is_err() {
            break;
        }
    }
    let after = snapshot(top, Some(&root));
    assert_eq!(
        before, after,
        "case {}: something outside the root changed",
        case.name
    );
    match &case.expect {
        Expect::Error(text) => {
            let e = result.expect_err(case.name);
            let message = e.to_string();
            eprintln!("{}: {message}", case.name);
            assert!(
                message.contains(text),
                "case {}: error {message:?} lacks {text:?}",
                case.name
            );
        }
        Expect::Safe(verify) => {
            if let Err(e) = result {
                panic!("case {}: unexpected error {e}", case.name);
            }
            verify(&root);
        }
    }
}

fn cases() -> Vec<Case> {
    vec![
        err(
            "dotdot_file",
            |_| one(RawTar::new().file(b"../x", b"pwned")),
            "escapes the layer root",
        ),
        err(
            "nested_dotdot",
            |_| one(RawTar::new().file(b"a/../../x", b"pwned")),
            "escapes",
        ),
        err(
            "deep_dotdot",
            |_| {
                one(RawTar::new()
                    .dir(b"a/")
                    .dir(b"a/b/")
                    .file(b"a/b/../../../../x", b"p"))
            },
            "escapes",
        ),
        // Absolute names aim at the real jail; they must land under the root.
        safe(
            "absolute_path_lands_in_root",
            |jail| {
                one(RawTar::new()
                    .pax(&[("path", &bytes(&jail.join("sentinel")))])
                    .file(b"x", b"in root"))
            },
            |root| assert!(is_file_with(&in_root(root, "sentinel"), b"in root")),
        ),
        safe(
            "symlink_to_slash_then_write",
            |jail| {
                let mut through = b"a".to_vec();
                through.extend_from_slice(&bytes(&jail.join("sentinel")));
                one(RawTar::new()
                    .symlink(b"a", b"/")
                    .pax(&[("path", &through)])
                    .file(b"x", b"in root"))
            },
            |root| assert!(is_file_with(&in_root(root, "sentinel"), b"in root")),
        ),
        safe(
            "symlink_dotdot_then_write",
            |_| {
                one(RawTar::new()
                    .symlink(b"a", b"../..")
                    .file(b"a/x", b"in root"))
            },
            |root| assert!(is_file_with(&root.join("x"), b"in root")),
        ),
        safe(
            "symlink_chain_then_write",
            |_| {
                one(RawTar::new()
                    .symlink(b"a", b"b")
                    .symlink(b"b", b"c/../../..")
                    .dir(b"c/")
                    .file(b"a/x", b"in root"))
            },
            |root| assert!(is_file_with(&root.join("x"), b"in root")),
        ),
        err(
            "symlink_to_host_jail_then_write",
            |jail| {
                one(RawTar::new()
                    .symlink(b"a", &bytes(jail))
                    .file(b"a/sentinel", b"pwned"))
            },
            "resolving the parent directory",
        ),
        err(
            "hardlink_dotdot",
            |_| one(RawTar::new().hardlink(b"h", b"../../outer-sentinel")),
            "hardlink target",
        ),
        err(
            "hardlink_absolute_host_path",
            |jail| one(RawTar::new().hardlink(b"h", &bytes(&jail.join("sentinel")))),
            "does not exist inside the layer root",
        ),
        err(
            "hardlink_through_symlink_dir",
            |_| {
                one(RawTar::new()
                    .symlink(b"d", b"..")
                    .hardlink(b"h", b"d/sentinel"))
            },
            "does not exist inside the layer root",
        ),
        err(
            "hardlink_through_symlink_to_host_jail",
            |jail| {
                one(RawTar::new()
                    .symlink(b"d", &bytes(jail))
                    .hardlink(b"h", b"d/sentinel"))
            },
            "does not exist inside the layer root",
        ),
        err(
            "hardlink_to_root",
            |_| one(RawTar::new().hardlink(b"h", b".")),
            "is the layer root",
        ),
        err(
            "hardlink_to_directory",
            |_| one(RawTar::new().dir(b"d/").hardlink(b"h", b"d")),
            "is a directory",
        ),
        err(
            "whiteout_dotdot",
            |_| one(RawTar::new().file(b".wh...", b"")),
            "whiteout does not name",
        ),
        err(
            "whiteout_dot",
            |_| one(RawTar::new().file(b".wh..", b"")),
            "whiteout does not name",
        ),
        err(
            "whiteout_empty",
            |_| one(RawTar::new().file(b"d/.wh.", b"")),
            "whiteout does not name",
        ),
        err(
            "whiteout_parent_sibling",
            |_| one(RawTar::new().file(b"../.wh.sibling", b"")),
            "escapes",
        ),
        err(
            "whiteout_nested_escape",
            |_| one(RawTar::new().file(b"a/../../.wh.sentinel", b"")),
            "escapes",
        ),
        safe(
            "whiteout_through_symlinked_dir",
            |_| {
                let lower = RawTar::new()
                    .symlink(b"l", b"..")
                    .file(b"sibling", b"in root")
                    .finish();
                let upper = RawTar::new().file(b"l/.wh.sibling", b"").finish();
                vec![lower, upper]
            },
            |root| assert!(!root.join("sibling").exists()),
        ),
        safe(
            "whiteout_through_symlink_to_host_jail",
            |jail| {
                let lower = RawTar::new().symlink(b"l", &bytes(jail)).finish();
                vec![lower, RawTar::new().file(b"l/.wh.sentinel", b"").finish()]
            },
            |root| assert!(fs::symlink_metadata(root.join("l")).unwrap().is_symlink()),
        ),
        safe(
            "whiteout_of_symlink_pointing_out",
            |_| {
                vec![
                    RawTar::new().symlink(b"s", b"../sentinel").finish(),
                    RawTar::new().file(b".wh.s", b"").finish(),
                ]
            },
            |root| assert!(fs::symlink_metadata(root.join("s")).is_err()),
        ),
        safe(
            "opaque_in_symlinked_dir",
            |_| {
                vec![
                    RawTar::new()
                        .symlink(b"l", b"../..")
                        .file(b"keep", b"k")
                        .finish(),
                    RawTar::new().file(b"l/.wh..wh..opq", b"").finish(),
                ]
            },
            nothing_to_check,
        ),
        err(
            "opaque_through_symlink_to_host_jail",
            |jail| {
                vec![
                    RawTar::new().symlink(b"l", &bytes(jail)).finish(),
                    RawTar::new().file(b"l/.wh..wh..opq", b"").finish(),
                ]
            },
            "resolving the opaque directory",
        ),
        safe(
            "opaque_removes_symlink_child_without_following",
            |_| {
                vec![
                    RawTar::new()
                        .dir(b"d/")
                        .symlink(b"d/s", b"../../sentinel")
                        .symlink(b"d/t", b"../../sibling")
                        .finish(),
                    RawTar::new()
                        .dir(b"d/")
                        .file(b"d/.wh..wh..opq", b"")
                        .finish(),
                ]
            },
            |root| assert_eq!(fs::read_dir(root.join("d")).unwrap().count(), 0),
        ),
        safe(
            "opaque_at_root",
            |_| {
                vec![
                    RawTar::new().file(b"a", b"a").dir(b"d/").finish(),
                    RawTar::new()
                        .file(b".wh..wh..opq", b"")
                        .file(b"b", b"b")
                        .finish(),
                ]
            },
            |root| {
                assert!(!root.join("a").exists() && !root.join("d").exists());
                assert!(is_file_with(&root.join("b"), b"b"));
            },
        ),
        safe(
            "dir_replaced_by_symlink_then_file_under_it",
            |_| {
                one(RawTar::new()
                    .dir(b"d/")
                    .symlink(b"d", b"../..")
                    .file(b"d/x", b"in root"))
            },
            |root| assert!(is_file_with(&root.join("x"), b"in root")),
        ),
        safe(
            "dir_metadata_then_dir_replaced_by_symlink",
            |_| {
                one(RawTar::new()
                    .dir_mode(b"d/", 0o777)
                    .symlink(b"d", b"../../"))
            },
            |root| assert!(fs::symlink_metadata(root.join("d")).unwrap().is_symlink()),
        ),
        safe(
            "file_over_relative_symlink_pointing_out",
            |_| {
                vec![
                    RawTar::new().symlink(b"s", b"../sentinel").finish(),
                    RawTar::new().file(b"s", b"replaced").finish(),
                ]
            },
            |root| assert!(is_file_with(&root.join("s"), b"replaced")),
        ),
        safe(
            "file_over_absolute_symlink_pointing_out",
            |jail| {
                vec![
                    RawTar::new()
                        .symlink(b"s", &bytes(&jail.join("sentinel")))
                        .finish(),
                    RawTar::new().file(b"s", b"replaced").finish(),
                ]
            },
            |root| assert!(is_file_with(&root.join("s"), b"replaced")),
        ),
        safe(
            "file_over_symlink_same_layer",
            |_| {
                one(RawTar::new()
                    .symlink(b"s", b"../sentinel")
                    .file(b"s", b"replaced"))
            },
            |root| assert!(is_file_with(&root.join("s"), b"replaced")),
        ),
        safe(
            "chmod_via_dir_entry_on_symlink",
            |_| {
                vec![
                    RawTar::new().symlink(b"s", b"..").finish(),
                    RawTar::new().dir_mode(b"s/", 0o777).finish(),
                ]
            },
            |root| {
                let md = fs::symlink_metadata(root.join("s")).unwrap();
                assert!(md.is_dir() && md.permissions().mode() & 0o777 == 0o777);
            },
        ),
        with_opts(
            safe(
                "chown_via_dir_entry_on_symlink",
                |_| {
                    let mut h = Hdr::new(b"s/", b'5');
                    h.uid = 4242;
                    h.gid = 4242;
                    vec![
                        RawTar::new().symlink(b"s", b"..").finish(),
                        RawTar::new().header(h).finish(),
                    ]
                },
                |root| assert!(fs::symlink_metadata(root.join("s")).unwrap().is_dir()),
            ),
            with_ownership,
        ),
        with_opts(
            safe(
                "chown_of_symlink_pointing_out",
                |_| {
                    let mut h = Hdr::new(b"s", b'2');
                    h.link = b"../sentinel".to_vec();
                    h.uid = 4242;
                    one(RawTar::new().header(h))
                },
                |root| assert!(fs::symlink_metadata(root.join("s")).unwrap().is_symlink()),
            ),
            with_ownership,
        ),
        safe(
            "xattrs_on_symlink_pointing_out",
            |_| {
                one(RawTar::new()
                    .pax(&[
                        ("SCHILY.xattr.user.evil", b"1"),
                        ("SCHILY.xattr.trusted.evil", b"2"),
                    ])
                    .symlink(b"s", b"../sentinel"))
            },
            |root| assert!(fs::symlink_metadata(root.join("s")).unwrap().is_symlink()),
        ),
        safe(
            "overlay_xattrs_are_not_honoured",
            |_| {
                one(RawTar::new()
                    .pax(&[
                        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                        ("SCHILY.xattr.user.overlay.opaque", b"y"),
                    ])
                    .dir(b"d/"))
            },
            |root| {
                assert!(
                    common::xattrs(&root.join("d"))
                        .iter()
                        .all(|(n, _)| !n.contains("overlay"))
                )
            },
        ),
        safe(
            "hardlink_over_symlink_pointing_out",
            |_| {
                vec![
                    RawTar::new()
                        .symlink(b"s", b"../sentinel")
                        .file(b"f", b"data")
                        .finish(),
                    RawTar::new().hardlink(b"s", b"f").finish(),
                ]
            },
            |root| {
                let (s, f) = (root.join("s"), root.join("f"));
                assert_eq!(
                    fs::symlink_metadata(&s).unwrap().ino(),
                    fs::metadata(f).unwrap().ino()
                );
            },
        ),
        safe(
            "hardlink_to_symlink_links_the_symlink",
            |_| {
                one(RawTar::new()
                    .symlink(b"s", b"../sentinel")
                    .hardlink(b"h", b"s"))
            },
            |root| assert!(fs::symlink_metadata(root.join("h")).unwrap().is_symlink()),
        ),
        safe(
            "hardlink_target_with_dotdot_inside_root",
            |_| {
                one(RawTar::new()
                    .dir(b"a/")
                    .file(b"f", b"data")
                    .hardlink(b"h", b"a/../f"))
            },
            |root| assert!(is_file_with(&root.join("h"), b"data")),
        ),
        safe(
            "hardlink_to_itself",
            |_| one(RawTar::new().file(b"f", b"x").hardlink(b"f", b"f")),
            |root| assert!(is_file_with(&root.join("f"), b"x")),
        ),
        safe(
            "replace_dir_holding_symlinks_out",
            |_| {
                vec![
                    RawTar::new()
                        .dir(b"d/")
                        .symlink(b"d/s", b"../../../sentinel")
                        .symlink(b"d/r", b"../../sibling")
                        .finish(),
                    RawTar::new().file(b"d", b"file now").finish(),
                ]
            },
            |root| assert!(is_file_with(&root.join("d"), b"file now")),
        ),
        with_opts(
            safe(
                "char_device_skipped_without_permission",
                |_| one(RawTar::new().device(b"null", b'3', 1, 3)),
                |root| assert!(!root.join("null").exists()),
            ),
            no_devices,
        ),
        with_opts(
            safe(
                "block_device_skipped_without_permission",
                |_| one(RawTar::new().device(b"sda", b'4', 8, 0)),
                |root| assert!(!root.join("sda").exists()),
            ),
            no_devices,
        ),
        with_opts(
            safe(
                "device_over_symlink_pointing_out_still_removes_it",
                |_| {
                    vec![
                        RawTar::new().symlink(b"null", b"../sentinel").finish(),
                        RawTar::new().device(b"null", b'3', 1, 3).finish(),
                    ]
                },
                |root| assert!(fs::symlink_metadata(root.join("null")).is_err()),
            ),
            no_devices,
        ),
        safe(
            "fifo_is_created_in_root",
            |_| one(RawTar::new().device(b"p", b'6', 0, 0)),
            |root| {
                assert!(
                    fs::symlink_metadata(root.join("p"))
                        .unwrap()
                        .file_type()
                        .is_fifo()
                )
            },
        ),
        safe(
            "fifo_over_symlink_pointing_out",
            |_| {
                one(RawTar::new()
                    .symlink(b"p", b"../sentinel")
                    .device(b"p", b'6', 0, 0))
            },
            |root| {
                assert!(
                    fs::symlink_metadata(root.join("p"))
                        .unwrap()
                        .file_type()
                        .is_fifo()
                )
            },
        ),
        with_opts(
            err(
                "huge_pax_header",
                |_| {
                    let mut h = Hdr::new(b"pax", b'x');
                    h.size = Some(16 << 20);
                    vec![RawTar::new().header(h).unfinished()]
                },
                "extension header size exceeds the limit",
            ),
            small_limits,
        ),
        with_opts(
            err(
                "huge_gnu_long_name",
                |_| {
                    let mut h = Hdr::new(b"././@LongLink", b'L');
                    h.size = Some(100 << 20);
                    vec![RawTar::new().header(h).unfinished()]
                },
                "extension header size exceeds the limit",
            ),
            small_limits,
        ),
        with_opts(
            err(
                "declared_size_bomb",
                |_| {
                    let mut h = Hdr::new(b"bomb", b'0');
                    h.size = Some(0o77_777_777_777);
                    vec![RawTar::new().header(h).unfinished()]
                },
                "uncompressed layer size exceeds the limit",
            ),
            small_limits,
        ),
        with_opts(
            err(
                "pax_size_bomb",
                |_| {
                    vec![
                        RawTar::new()
                            .pax(&[("size", b"99999999999999")])
                            .file(b"bomb", b"")
                            .unfinished(),
                    ]
                },
                "uncompressed layer size exceeds the limit",
            ),
            small_limits,
        ),
        with_opts(
            err(
                "trailing_garbage_bomb",
                |_| {
                    let mut tar = RawTar::new().file(b"f", b"x").finish();
                    tar.extend(std::iter::repeat_n(0u8, 2 << 20));
                    vec![tar]
                },
                "uncompressed layer size exceeds the limit",
            ),
            small_limits,
        ),
        with_opts(
            err(
                "too_many_entries",
                |_| {
                    let mut tar = RawTar::new();
                    for i in 0..20 {
                        tar.file(format!("f{i}").as_bytes(), b"");
                    }
                    one(&mut tar)
                },
                "entry count exceeds the limit",
            ),
            small_limits,
        ),
        err(
            "nul_in_pax_path",
            |_| one(RawTar::new().pax(&[("path", b"a\0b")]).file(b"x", b"")),
            "NUL",
        ),
        err(
            "nul_in_symlink_target",
            |_| {
                one(RawTar::new()
                    .pax(&[("linkpath", b"x\0y")])
                    .symlink(b"s", b"x"))
            },
            "NUL",
        ),
        err(
            "empty_symlink_target",
            |_| one(RawTar::new().symlink(b"s", b"")),
            "symlink target is empty",
        ),
        err(
            "file_named_dot",
            |_| one(RawTar::new().file(b".", b"x")),
            "layer root itself",
        ),
        err(
            "file_named_dotdot",
            |_| one(RawTar::new().file(b"..", b"x")),
            "escapes",
        ),
        err(
            "file_named_empty",
            |_| one(RawTar::new().file(b"", b"x")),
            "layer root itself",
        ),
        err(
            "symlink_named_slash",
            |_| one(RawTar::new().symlink(b"/", b"/etc")),
            "layer root itself",
        ),
        err(
            "gnu_long_name_escape",
            |_| {
                one(RawTar::new()
                    .gnu_long_name(b"../../x")
                    .file(b"ignored", b"x"))
            },
            "escapes",
        ),
        err(
            "pax_path_escape",
            |_| {
                one(RawTar::new()
                    .pax(&[("path", b"../../x")])
                    .file(b"ignored", b"x"))
            },
            "escapes",
        ),
        err(
            "ustar_prefix_escape",
            |_| {
                let mut h = Hdr::new(b"x", b'0');
                h.prefix = b"..".to_vec();
                one(RawTar::new().header(h))
            },
            "escapes",
        ),
        err(
            "gnu_long_link_escape",
            |_| {
                one(RawTar::new()
                    .gnu_long_link(b"../../outer-sentinel")
                    .hardlink(b"h", b"x"))
            },
            "hardlink target",
        ),
        safe(
            "root_entry_only_changes_root",
            |_| one(RawTar::new().dir_mode(b"./", 0o777).dir_mode(b"/", 0o777)),
            |root| {
                assert_eq!(
                    fs::metadata(root).unwrap().permissions().mode() & 0o777,
                    0o777
                )
            },
        ),
        err(
            "bad_checksum",
            |_| {
                let mut h = Hdr::new(b"f", b'0');
                h.checksum_delta = 1;
                one(RawTar::new().header(h))
            },
            "checksum mismatch",
        ),
        err(
            "truncated_content",
            |_| {
                let mut tar = RawTar::new().file(b"f", &[7u8; 2000]).unfinished();
                tar.truncate(1024);
                vec![tar]
            },
            "truncated",
        ),
        err(
            "gnu_sparse_entry",
            |_| one(RawTar::new().header(Hdr::new(b"s", b'S'))),
            "sparse",
        ),
        err(
            "negative_base256_size",
            |_| {
                let mut h = Hdr::new(b"f", b'0');
                h.size_field = Some([0xff; 12]);
                one(RawTar::new().header(h))
            },
            "invalid size field",
        ),
        err(
            "unknown_entry_type",
            |_| one(RawTar::new().header(Hdr::new(b"v", b'V'))),
            "unsupported",
        ),
        err(
            "path_longer_than_path_max",
            |_| {
                let deep = "a/".repeat(3000) + "x";
                one(RawTar::new()
                    .pax(&[("path", deep.as_bytes())])
                    .file(b"ignored", b"x"))
            },
            "resolving the parent directory",
        ),
        err(
            "file_under_regular_file",
            |_| one(RawTar::new().file(b"f", b"x").file(b"f/x", b"y")),
            "resolving the parent directory",
        ),
        err(
            "symlink_loop_then_write",
            |_| {
                one(RawTar::new()
                    .symlink(b"a", b"b")
                    .symlink(b"b", b"a")
                    .file(b"a/x", b"x"))
            },
            "resolving the parent directory",
        ),
        err(
            "malformed_pax_record",
            |_| {
                let mut h = Hdr::new(b"pax", b'x');
                h.data = b"999 path=../../x\n".to_vec();
                one(RawTar::new().header(h).file(b"f", b""))
            },
            "PAX record length",
        ),
        err(
            "symlink_into_proc_stays_in_root",
            |_| {
                one(RawTar::new()
                    .symlink(b"p", b"/proc/self/root")
                    .file(b"p/x", b"x"))
            },
            "resolving the parent directory",
        ),
        safe(
            "dir_over_file_and_file_over_dir",
            |_| {
                vec![
                    RawTar::new()
                        .file(b"a", b"x")
                        .dir(b"b/")
                        .file(b"b/inner", b"y")
                        .finish(),
                    RawTar::new().dir(b"a/").file(b"b", b"z").finish(),
                ]
            },
            |root| {
                assert!(root.join("a").is_dir());
                assert!(is_file_with(&root.join("b"), b"z"));
            },
        ),
    ]
}

#[test]
fn hostile_layers_cannot_escape_the_root() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        check(case);
    }
    eprintln!("{} hostile cases passed", cases.len());
}
