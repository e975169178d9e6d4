//! Helpers shared by the `strata build` integration tests.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Strata, have, peers_required, run_tool};

/// Whether the sandbox can run (root); skips otherwise unless STRATA_REQUIRE_PEERS=1.
pub fn can_build() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = root && Path::new("/bin/busybox").is_file() && have("unshare", &["--version"]);
    if !tools {
        assert!(
            !peers_required(),
            "building needs root, /bin/busybox and unshare (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: building needs root, /bin/busybox and unshare");
    }
    tools
}

/// A context directory with `files` (path, content) and a Dockerfile.
pub fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let p = ctx.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    ctx
}

pub fn build(strata: &Strata, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    strata.run(&args)
}

pub fn build_ok(strata: &Strata, ctx: &Path, extra: &[&str]) -> String {
    let out = build(strata, ctx, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed: {stderr}");
    stderr
}

pub fn build_fails(strata: &Strata, ctx: &Path, extra: &[&str]) -> String {
    let out = build(strata, ctx, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "build should have failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

pub fn unpack(strata: &Strata, image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("rootfs");
    strata.ok(&["unpack", image, target.to_str().unwrap()]);
    dir
}

pub fn read(dir: &tempfile::TempDir, path: &str) -> String {
    std::fs::read_to_string(dir.path().join("rootfs").join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The image config blob (as written) of `image`.
pub fn config_of(strata: &Strata, image: &str) -> Value {
    let id = strata.ok(&["inspect", "--format", "{{.Id}}", image]);
    let hex = id.trim().trim_start_matches("sha256:");
    let bytes = std::fs::read(strata.root().join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn mounts_mentioning(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap();
    let needle = path.to_str().unwrap();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

pub fn leftover_build_dirs(strata: &Strata) -> Vec<PathBuf> {
    std::fs::read_dir(strata.root().join("build"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

pub fn sha256_hex(data: &[u8]) -> String {
    super::sha256(data)
        .trim_start_matches("sha256:")
        .to_string()
}

/// `dir/bin` with busybox-static and a link per applet, and an empty `dir/etc`: the start of
/// every test's busybox image (each adds its own /etc files).
pub fn busybox_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = run_tool("/bin/busybox", &["--list"]);
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
}
