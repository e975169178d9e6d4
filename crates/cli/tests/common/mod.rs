//! Helpers for running the real `strata` binary against a throw-away store.
#![allow(dead_code)]

pub mod build;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Strata {
    pub root: tempfile::TempDir,
}

impl Strata {
    pub fn new() -> Strata {
        Strata {
            root: tempfile::Builder::new()
                .prefix("strata-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .arg("--root")
            .arg(self.root.path())
            .stdin(Stdio::null());
        command.env_remove("SOURCE_DATE_EPOCH");
        command
    }

    /// Runs strata with `args`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "strata {args:?} failed: {}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// Runs strata with `args`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "strata {args:?} should have failed\nstdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let stderr = String::from_utf8(output.stderr).expect("utf-8 output");
        assert!(
            !stderr.contains("panicked"),
            "strata {args:?} panicked: {stderr}"
        );
        stderr
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run strata")
    }

    /// Every blob file: (name as digest string, bytes).
    pub fn blob_names(&self) -> Vec<String> {
        let dir = self.root().join("blobs/sha256");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Asserts every blob's content digests to its name.
    pub fn assert_blobs_verified(&self) {
        use sha2::{Digest as _, Sha256};
        for name in self.blob_names() {
            let hex = name.trim_start_matches("sha256:");
            let data = std::fs::read(self.root().join("blobs/sha256").join(hex)).unwrap();
            let actual = hex::encode(Sha256::digest(&data));
            assert_eq!(actual, hex, "blob {name} does not match its content");
        }
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// Whether tests that need peer tools must run (CI) rather than skip.
pub fn peers_required() -> bool {
    std::env::var_os("STRATA_REQUIRE_PEERS").is_some_and(|v| v == "1")
}

/// Returns true when `tool` runs; when it does not, skips (or fails under STRATA_REQUIRE_PEERS).
pub fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !peers_required(),
            "{tool} is required (STRATA_REQUIRE_PEERS=1) but `{tool} {probe:?}` failed"
        );
        eprintln!("skipping: {tool} not available");
    }
    ok
}

/// Runs a peer tool, asserting success; returns stdout.
pub fn run_tool(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A small root filesystem with the shapes layers must carry: nested dirs, a symlink, a
/// hardlink, an executable, an empty dir.
pub fn sample_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::create_dir_all(dir.join("var/empty")).unwrap();
    std::fs::write(dir.join("etc/os-release"), "NAME=strata-test\n").unwrap();
    std::fs::write(dir.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        dir.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
    std::fs::hard_link(dir.join("etc/os-release"), dir.join("etc/os-release.hard")).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("usr/bin/blob"), big).unwrap();
}

pub fn debian_rootfs() -> Option<PathBuf> {
    let path = std::env::var_os("STRATA_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/strata-test/bookworm-rootfs"));
    if path.join("etc/debian_version").is_file() {
        return Some(path);
    }
    assert!(
        !peers_required(),
        "the Debian rootfs is required but missing at {}",
        path.display()
    );
    eprintln!("skipping: no Debian rootfs at {}", path.display());
    None
}

/// The port of this test process's moto_server (a local S3), started on first use and stopped
/// by a detached watcher once the process is gone; None (a skip) when moto_server is missing,
/// unless STRATA_REQUIRE_PEERS=1.
pub fn moto_port() -> Option<u16> {
    static MOTO: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();
    *MOTO.get_or_init(|| {
        if !have("moto_server", &["--help"]) {
            return None;
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("strata-moto-{port}.log"));
        let script = format!(
            "(moto_server -H 127.0.0.1 -p {port} >{log} 2>&1 & m=$!; \
             while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill $m) \
             </dev/null >/dev/null 2>&1 &",
            log = log.display(),
            parent = std::process::id()
        );
        let started = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(started.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while ureq::get(&format!("http://127.0.0.1:{port}/"))
            .call()
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(port)
    })
}

/// Spawns `command` (a `strata registry serve ...` the caller has set up), its log in `log`, and
/// waits until the server has bound its socket: it logs "registry listening" then, the only
/// sign a TLS server gives a plain-HTTP prober. Panics with the log when the server exits or
/// has not started within 20 s.
pub fn spawn_registry(mut command: Command, log: &Path) -> std::process::Child {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("registry listening") {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("registry exited with {status}: {text}");
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("registry did not start: {text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
