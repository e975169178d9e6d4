//! Crash and concurrency safety of the store, with the real binary: `kill -9` at random moments
//! and concurrent loads.

mod common;

use std::time::{Duration, Instant};

use common::Strata;
use serde_json::Value;

/// An archive big enough that a load takes a while: ~48 MB over several files.
fn make_archive(dir: &std::path::Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..12 {
        let data: Vec<u8> = (0..4_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(tree.join(format!("file{i}")), data).unwrap();
    }
    let source = Strata::new();
    source.ok(&["import", tree.to_str().unwrap(), "crash/test:1"]);
    let archive = dir.join("image.tar");
    source.ok(&["save", "-o", archive.to_str().unwrap(), "crash/test:1"]);
    archive
}

/// The store invariants that must hold whatever moment a process died at.
fn assert_consistent(strata: &Strata) {
    strata.assert_blobs_verified();
    for entry in std::fs::read_dir(strata.root().join("blobs/sha256"))
        .into_iter()
        .flatten()
    {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().contains('.'),
            "temporary file {name:?} visible under blobs/"
        );
    }
    // Every image the catalog lists is complete.
    for id in strata.ok(&["images", "-q", "--no-trunc"]).lines() {
        let out = strata.ok(&["inspect", id]);
        let images: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(images[0]["Id"], id);
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(strata.root().join("index.json")).unwrap()).unwrap();
    for manifest in index["manifests"].as_array().unwrap() {
        let digest = manifest["digest"].as_str().unwrap();
        assert!(
            strata
                .root()
                .join("blobs/sha256")
                .join(&digest[7..])
                .exists(),
            "index.json names missing {digest}"
        );
    }
}

#[test]
fn kill_9_during_load_never_corrupts_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let archive = make_archive(dir.path());
    let strata = Strata::new();
    // How long one load takes here, to spread the kills over its whole run.
    let probe = Strata::new();
    let start = Instant::now();
    probe.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let duration = start.elapsed().max(Duration::from_millis(50));

    let mut rng: u64 = 42;
    for round in 0..12 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = duration.mul_f64((rng >> 33) as f64 / (1u64 << 31) as f64);
        let mut child = strata
            .command()
            .args(["load", "-q", "-i", archive.to_str().unwrap()])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {delay:?} ({status})");
        assert_consistent(&strata);
    }
    // The next command works and a retried load succeeds.
    strata.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert_consistent(&strata);
    assert_eq!(
        strata.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "crash/test:1\n"
    );
    // Leftover partial files are garbage that prune reclaims.
    strata.ok(&["system", "prune", "-f"]);
    assert_eq!(
        std::fs::read_dir(strata.root().join("ingest"))
            .unwrap()
            .count(),
        0
    );
    assert_consistent(&strata);
}

#[test]
fn concurrent_loads_of_one_archive_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let archive = make_archive(dir.path());
    for _ in 0..3 {
        let strata = Strata::new();
        let children: Vec<_> = (0..2)
            .map(|_| {
                strata
                    .command()
                    .args(["load", "-i", archive.to_str().unwrap()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "concurrent load failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "Loaded image: crash/test:1\n"
            );
        }
        assert_consistent(&strata);
        assert_eq!(strata.ok(&["images", "-q"]).lines().count(), 1);
    }
}
