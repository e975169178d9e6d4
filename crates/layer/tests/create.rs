//! `write_layer`: determinism, ordering, metadata, overlay translation.
//! The output is checked with the independent `tar` crate parser.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{LONG_NAME, is_root, sample_tree};
use strata_layer::{CreateOptions, write_layer};

pub struct Listed {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    mtime: u64,
    size: u64,
    link: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
    uname_empty: bool,
}

fn list(bytes: &[u8]) -> Vec<Listed> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        let header = entry.header();
        out.push(Listed {
            path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            mtime: header.mtime().unwrap(),
            size: header.entry_size().unwrap(),
            link: entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
            xattrs,
            uname_empty: header.username_bytes().is_none_or(|u| u.is_empty()),
        });
    }
    out
}

fn layer(dir: &Path, opts: &CreateOptions) -> Vec<u8> {
    let (bytes, stats) = write_layer(dir, opts, Vec::new()).unwrap();
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert_eq!(stats.entries as usize, list(&bytes).len());
    bytes
}

#[test]
fn output_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    fs::create_dir(&one).unwrap();
    fs::create_dir(&two).unwrap();
    sample_tree(&one);
    sample_tree(&two);
    let opts = CreateOptions::default();
    let first = layer(&one, &opts);
    assert_eq!(first, layer(&one, &opts), "same tree twice");
    assert_eq!(
        first,
        layer(&two, &opts),
        "identical trees at different paths"
    );
}

#[test]
fn entries_are_sorted_relative_and_numeric() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let entries = list(&layer(tmp.path(), &CreateOptions::default()));
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let long = format!("deep/{LONG_NAME}");
    let mut expected = vec![
        "a/",
        "a/z",
        "a-b",
        "bin/",
        "bin/link",
        "bin/long-target",
        "bin/tool",
        "bin/tool-alias",
        "deep/",
        &long,
        "empty",
        "etc/",
        "etc/conf.d/",
        "etc/conf.d/a.conf",
        "etc/hosts",
        "fifo",
    ];
    if is_root() {
        expected.push("null");
    }
    expected.extend(["ro/", "ro/f", "tmp/"]);
    // Depth-first, children bytewise; no "./", no socket, no root entry.
    assert_eq!(paths, expected);
    for e in &entries {
        assert!(e.uname_empty, "{} has a user name", e.path);
    }
    let by_path = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by_path("bin/tool").mode, 0o4755);
    assert_eq!(by_path("bin/tool").size, 70_000);
    assert_eq!(by_path("tmp/").mode, 0o1777);
    assert_eq!(by_path("ro/").mode, 0o555);
    assert_eq!(by_path("empty").mode, if is_root() { 0 } else { 0o444 });
    assert_eq!(by_path("fifo").kind, tar::EntryType::Fifo);
    assert_eq!(by_path("bin/link").kind, tar::EntryType::Symlink);
    assert_eq!(by_path("bin/link").link.as_deref(), Some("tool"));
    assert_eq!(
        by_path("bin/long-target").link.as_deref(),
        Some("x".repeat(150).as_str())
    );
    if is_root() {
        assert_eq!(by_path("etc/hosts").uid, 1234);
        assert_eq!(by_path("null").kind, tar::EntryType::Char);
    }
}

#[test]
fn hardlinks_become_link_entries_to_the_first_path() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let entries = list(&layer(tmp.path(), &CreateOptions::default()));
    let tool = entries.iter().find(|e| e.path == "bin/tool").unwrap();
    let alias = entries.iter().find(|e| e.path == "bin/tool-alias").unwrap();
    assert_eq!(tool.kind, tar::EntryType::Regular);
    assert_eq!(alias.kind, tar::EntryType::Link);
    assert_eq!(alias.link.as_deref(), Some("bin/tool"));
    assert_eq!(alias.size, 0);
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("new"), "n").unwrap();
    fs::write(dir.join("old"), "o").unwrap();
    common::set_mtime(&dir.join("new"), 2_000_000_000);
    common::set_mtime(&dir.join("old"), 1_000);
    let opts = CreateOptions {
        source_date_epoch: Some(1_500_000_000),
        ..CreateOptions::default()
    };
    let entries = list(&layer(dir, &opts));
    assert_eq!(entries[0].path, "new");
    assert_eq!(entries[0].mtime, 1_500_000_000);
    assert_eq!(entries[1].path, "old");
    assert_eq!(entries[1].mtime, 1_000);
}

#[test]
fn xattrs_are_pax_records_without_overlay_internals() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    if is_root() {
        for (name, value) in [("trusted.overlay.opaque", "y"), ("trusted.test", "kept")] {
            rustix::fs::setxattr(
                tmp.path().join("etc").as_path(),
                name,
                value.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
    }
    let entries = list(&layer(tmp.path(), &CreateOptions::default()));
    let hosts = entries.iter().find(|e| e.path == "etc/hosts").unwrap();
    assert_eq!(
        hosts.xattrs,
        vec![("user.comment".to_owned(), b"hello\0binary".to_vec())]
    );
    if is_root() {
        let etc = entries.iter().find(|e| e.path == "etc/").unwrap();
        assert_eq!(
            etc.xattrs,
            vec![("trusted.test".to_owned(), b"kept".to_vec())]
        );
        // Not in overlay mode: no opaque marker either.
        assert!(!entries.iter().any(|e| e.path.contains(".wh.")));
    }
}

#[test]
fn missing_source_is_a_clear_error() {
    let err = write_layer(
        Path::new("/nonexistent/strata"),
        &CreateOptions::default(),
        Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/strata"), "{err}");
}

struct OverlayMount {
    merged: std::path::PathBuf,
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

#[test]
fn overlay_upper_whiteouts_and_opaque_dirs_are_translated() {
    if !is_root() {
        eprintln!("note: skipping overlay upper test (needs root to mount overlayfs)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (lower, upper, work, merged) = (
        base.join("lower"),
        base.join("upper"),
        base.join("work"),
        base.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    fs::write(lower.join("gone"), "g").unwrap();
    fs::create_dir(lower.join("opaque")).unwrap();
    fs::write(lower.join("opaque/old"), "o").unwrap();
    fs::write(lower.join("kept"), "k").unwrap();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("note: skipping overlay upper test (overlayfs mount failed)");
        return;
    }
    let mount = OverlayMount {
        merged: merged.clone(),
    };
    fs::remove_file(merged.join("gone")).unwrap();
    fs::remove_dir_all(merged.join("opaque")).unwrap();
    fs::create_dir(merged.join("opaque")).unwrap();
    fs::write(merged.join("opaque/new"), "n").unwrap();
    fs::write(merged.join("added"), "a").unwrap();
    drop(mount);

    let opts = CreateOptions {
        overlay_upper: true,
        ..CreateOptions::default()
    };
    let entries = list(&layer(&upper, &opts));
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".wh.gone",
            "added",
            "opaque/",
            "opaque/.wh..wh..opq",
            "opaque/new"
        ]
    );
    let whiteout = &entries[0];
    assert_eq!(
        (whiteout.kind, whiteout.mode, whiteout.size),
        (tar::EntryType::Regular, 0, 0)
    );
    for e in &entries {
        assert!(
            e.xattrs.iter().all(|(n, _)| !n.contains("overlay")),
            "{}",
            e.path
        );
    }

    // Without overlay translation the whiteout is a plain 0/0 char device.
    let raw = list(&layer(&upper, &CreateOptions::default()));
    let gone = raw.iter().find(|e| e.path == "gone").unwrap();
    assert_eq!(gone.kind, tar::EntryType::Char);
    assert!(!raw.iter().any(|e| e.path.contains(".wh.")));
}
