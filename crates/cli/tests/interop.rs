//! Interoperability with the peer tools, byte for byte: docker (load/run/save), skopeo and umoci
//! reading the store, and the OCI JSON schemas. Skips when a peer is missing, unless
//! STRATA_REQUIRE_PEERS=1 (as in CI, which installs them).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Strata, debian_rootfs, fixtures, have, run_tool};
use serde_json::Value;

fn docker_ready() -> bool {
    have("docker", &["info"])
}

/// A unique repository name so parallel tests and earlier runs never collide in dockerd.
fn unique(name: &str) -> String {
    format!("strata-test/{name}-{}", std::process::id())
}

/// Imports the Debian rootfs and returns (strata, reference, image ID).
fn import_debian(tag: &str) -> Option<(Strata, String, String)> {
    let rootfs = debian_rootfs()?;
    let strata = Strata::new();
    let reference = format!("{}:{tag}", unique("debian"));
    let id = strata
        .ok(&[
            "import",
            "--change",
            r#"CMD ["bash"]"#,
            rootfs.to_str().unwrap(),
            &reference,
        ])
        .trim()
        .to_string();
    Some((strata, reference, id))
}

#[test]
fn docker_loads_and_runs_what_strata_saves() {
    if !docker_ready() {
        return;
    }
    let Some((strata, reference, id)) = import_debian("save") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("debian.tar");
    strata.ok(&["save", "-o", archive.to_str().unwrap(), &reference]);
    let out = run_tool("docker", &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {reference}")), "{out}");
    let docker_id = run_tool(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", &reference],
    );
    assert_eq!(docker_id.trim(), id, "docker computes the same image ID");
    let version = run_tool(
        "docker",
        &["run", "--rm", &reference, "cat", "/etc/debian_version"],
    );
    let expected =
        std::fs::read_to_string(debian_rootfs().unwrap().join("etc/debian_version")).unwrap();
    assert_eq!(version, expected);
    run_tool("docker", &["rmi", "-f", &reference]);
}

#[test]
fn strata_loads_docker_save_with_same_id_and_diff_ids() {
    if !docker_ready() {
        return;
    }
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    let reference = format!("{}:docker", unique("debian"));
    let dir = tempfile::tempdir().unwrap();
    let rootfs_tar = dir.path().join("rootfs.tar");
    let status = Command::new("tar")
        .args([
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            rootfs_tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    run_tool(
        "docker",
        &[
            "import",
            "--change",
            "CMD [\"bash\"]",
            rootfs_tar.to_str().unwrap(),
            &reference,
        ],
    );
    let archive = dir.path().join("docker-save.tar");
    run_tool(
        "docker",
        &["save", "-o", archive.to_str().unwrap(), &reference],
    );
    let docker: Vec<Value> =
        serde_json::from_str(&run_tool("docker", &["image", "inspect", &reference])).unwrap();
    run_tool("docker", &["rmi", "-f", &reference]);

    let strata = Strata::new();
    let out = strata.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out, format!("Loaded image: {reference}\n"));
    let ours: Vec<Value> = serde_json::from_str(&strata.ok(&["inspect", &reference])).unwrap();
    assert_eq!(ours[0]["Id"], docker[0]["Id"], "same image ID");
    assert_eq!(
        ours[0]["RootFS"]["Layers"], docker[0]["RootFS"]["Layers"],
        "same diff_ids"
    );
    assert_eq!(ours[0]["Size"], docker[0]["Size"], "same size");
    assert_eq!(ours[0]["Config"]["Cmd"], docker[0]["Config"]["Cmd"]);
    strata.assert_blobs_verified();

    // OCI tools read the loaded image straight from the store.
    if have("skopeo", &["--version"]) {
        let (name, tag) = reference.rsplit_once(':').unwrap();
        let layout = strata.root().join("repositories/docker.io").join(name);
        let skopeo: Value = serde_json::from_str(&run_tool(
            "skopeo",
            &["inspect", &format!("oci:{}:{tag}", layout.display())],
        ))
        .unwrap();
        assert_eq!(skopeo["Layers"].as_array().unwrap().len(), 1);
        let config: Value = serde_json::from_str(&run_tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("oci:{}:{tag}", layout.display()),
            ],
        ))
        .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], docker[0]["RootFS"]["Layers"]);
    }
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    if !have("skopeo", &["--version"]) || !have("umoci", &["--version"]) {
        return;
    }
    let strata = Strata::new();
    let tree = tempfile::tempdir().unwrap();
    common::sample_tree(tree.path());
    strata.ok(&[
        "import",
        tree.path().to_str().unwrap(),
        "localhost:5000/team/app:v1",
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(strata.root().join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let layout = strata.root().join("repositories/localhost_5000/team/app");
    let skopeo: Value = serde_json::from_str(&run_tool(
        "skopeo",
        &["inspect", &format!("oci:{}:v1", layout.display())],
    ))
    .unwrap();
    assert_eq!(skopeo["Digest"], manifest_digest.as_str());
    assert_eq!(skopeo["Layers"].as_array().unwrap().len(), 1);
    // The root is one layout too, with full references as names.
    let root_ref = format!("oci:{}:localhost:5000/team/app:v1", strata.root().display());
    let skopeo_root: Value =
        serde_json::from_str(&run_tool("skopeo", &["inspect", &root_ref])).unwrap();
    assert_eq!(skopeo_root["Digest"], manifest_digest.as_str());

    let bundle = tempfile::tempdir().unwrap();
    let bundle_dir = bundle.path().join("bundle");
    run_tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", layout.display()),
            bundle_dir.to_str().unwrap(),
        ],
    );
    let rootfs = bundle_dir.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(),
        "NAME=strata-test\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin")).unwrap(),
        Path::new("usr/bin")
    );

    // skopeo can copy out of the store and strata can load the result.
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("copy.tar");
    run_tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker-archive:{}:copied/app:v1", archive.display()),
        ],
    );
    let other = Strata::new();
    assert_eq!(
        other.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: copied/app:v1\n"
    );
}

#[test]
fn everything_strata_writes_validates_against_the_oci_schemas() {
    if !have("python3", &["-c", "import jsonschema, referencing"]) {
        return;
    }
    let strata = Strata::new();
    let tree = tempfile::tempdir().unwrap();
    common::sample_tree(tree.path());
    strata.ok(&[
        "import",
        "--change",
        "EXPOSE 80",
        "--change",
        "LABEL a=b",
        tree.path().to_str().unwrap(),
        "schema/a:1",
    ]);
    strata.ok(&["tag", "schema/a:1", "localhost:5000/schema/b:2"]);
    strata.ok(&[
        "load",
        "-i",
        fixtures()
            .join("ggcr/tarball/test_link.tar")
            .to_str()
            .unwrap(),
    ]);
    strata.ok(&[
        "load",
        "-i",
        fixtures()
            .join("ggcr/tarball/hello-world-v25.tar")
            .to_str()
            .unwrap(),
    ]);
    let saved = tree.path().join("saved.tar");
    strata.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        saved.to_str().unwrap(),
        "schema/a:1",
        "bazel/v1/tarball:test_image_3",
    ]);

    let mut by_kind: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(strata.root().join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let Ok(value) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        let kind = match value["mediaType"].as_str() {
            Some(t) if t.contains("manifest") && !t.contains("list") => "manifest",
            Some(t) if t.contains("index") || t.contains("list") => "index",
            _ if value.get("rootfs").is_some() => "config",
            _ => continue,
        };
        by_kind
            .entry(kind)
            .or_default()
            .push(path.display().to_string());
    }
    let mut indexes = vec![strata.root().join("index.json").display().to_string()];
    for repo in [
        "repositories/docker.io/schema/a",
        "repositories/localhost_5000/schema/b",
    ] {
        indexes.push(
            strata
                .root()
                .join(repo)
                .join("index.json")
                .display()
                .to_string(),
        );
    }
    let extracted = tree.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    tar::Archive::new(std::fs::File::open(&saved).unwrap())
        .unpack(&extracted)
        .unwrap();
    indexes.push(extracted.join("index.json").display().to_string());
    by_kind.entry("index").or_default().extend(indexes);
    let layouts = vec![
        strata.root().join("oci-layout").display().to_string(),
        extracted.join("oci-layout").display().to_string(),
    ];
    by_kind.insert("layout", layouts);
    assert!(
        by_kind["manifest"].len() >= 3 && by_kind["config"].len() >= 3,
        "{by_kind:?}"
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-oci-json.py");
    let schemas = fixtures().join("image-spec-schema");
    for (kind, files) in &by_kind {
        let mut args = vec![schemas.display().to_string(), kind.to_string()];
        args.extend(files.iter().cloned());
        let output = Command::new(&script).args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "{kind} documents fail the OCI schema:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A busybox root filesystem as a tar, for images docker can run and build on.
fn busybox_rootfs_tar(dir: &Path) -> Option<std::path::PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        assert!(
            !common::peers_required(),
            "busybox-static is required but /bin/busybox is missing"
        );
        eprintln!("skipping: no /bin/busybox");
        return None;
    }
    let rootfs = dir.join("busybox-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "ls", "mkdir", "rm", "ln", "sha256sum"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("busybox.tar");
    let status = Command::new("tar")
        .args([
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    Some(tar)
}

#[test]
fn multi_layer_docker_images_round_trip_both_ways() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(base_tar) = busybox_rootfs_tar(dir.path()) else {
        return;
    };
    let base = format!("{}:base", unique("busybox"));
    let built = format!("{}:built", unique("busybox"));
    run_tool(
        "docker",
        &[
            "import",
            "--change",
            "CMD [\"sh\"]",
            base_tar.to_str().unwrap(),
            &base,
        ],
    );
    // Layers that add, change and delete files (whiteouts), plus an ENV-only step.
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN mkdir -p /data/sub && echo one > /data/one && echo two > /data/sub/two\n\
             ENV GREETING=hello\nRUN rm /data/one && echo changed > /data/sub/two && ln -s sub/two /data/link\n\
             COPY file.txt /data/file.txt\nCMD [\"cat\", \"/data/sub/two\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(context.join("file.txt"), "from the context\n").unwrap();
    let output = Command::new("docker")
        .args(["build", "-q", "-t", &built, context.to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let archive = dir.path().join("built.tar");
    run_tool(
        "docker",
        &["save", "-o", archive.to_str().unwrap(), &built, &base],
    );
    let docker: Vec<Value> =
        serde_json::from_str(&run_tool("docker", &["image", "inspect", &built])).unwrap();

    let strata = Strata::new();
    let out = strata.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains(&format!("Loaded image: {built}"))
            && out.contains(&format!("Loaded image: {base}")),
        "{out}"
    );
    let ours: Vec<Value> = serde_json::from_str(&strata.ok(&["inspect", &built])).unwrap();
    assert_eq!(ours[0]["Id"], docker[0]["Id"]);
    assert_eq!(ours[0]["RootFS"]["Layers"], docker[0]["RootFS"]["Layers"]);
    assert_eq!(ours[0]["Size"], docker[0]["Size"]);
    assert_eq!(ours[0]["Config"]["Env"], docker[0]["Config"]["Env"]);
    let history = strata.ok(&["history", "--no-trunc", &built]);
    assert!(
        history.contains("ENV GREETING=hello") && history.contains("0B"),
        "{history}"
    );
    // The merged filesystem honours the whiteout.
    let rootfs = dir.path().join("unpacked");
    strata.ok(&["unpack", &built, rootfs.to_str().unwrap()]);
    assert!(
        !rootfs.join("data/one").exists(),
        "deleted in a later layer"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/sub/two")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("data/link")).unwrap(),
        Path::new("sub/two")
    );

    // Snapshots stacked by overlayfs give the same tree as unpacking, and are shared and pruned.
    if rustix_is_root() {
        let lowerdir = strata
            .ok(&["debug", "snapshots", &built])
            .trim()
            .to_string();
        assert_eq!(
            lowerdir.split(':').count(),
            4,
            "one snapshot per layer: {lowerdir}"
        );
        let mountpoint = dir.path().join("merged");
        std::fs::create_dir(&mountpoint).unwrap();
        run_tool(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!("lowerdir={lowerdir}"),
                mountpoint.to_str().unwrap(),
            ],
        );
        let merged = tree_listing(&mountpoint);
        run_tool("umount", &[mountpoint.to_str().unwrap()]);
        assert_eq!(
            merged,
            tree_listing(&rootfs),
            "overlay of the snapshots differs from unpack"
        );
        let base_lowerdir = strata.ok(&["debug", "snapshots", &base]).trim().to_string();
        assert!(
            lowerdir.ends_with(&base_lowerdir),
            "the base layer's snapshot is shared"
        );
        strata.ok(&["rmi", &built]);
        let pruned = strata.ok(&["system", "prune", "-f"]);
        assert_eq!(pruned.matches("Deleted snapshot").count(), 3, "{pruned}");
        assert!(
            Path::new(&base_lowerdir).is_dir(),
            "the base image still needs its snapshot"
        );
        strata.ok(&["load", "-i", archive.to_str().unwrap()]);
    }

    // And back: docker loads strata's save of both images and runs the built one.
    let saved = dir.path().join("saved.tar");
    strata.ok(&["save", "-o", saved.to_str().unwrap(), &built, &base]);
    run_tool("docker", &["rmi", "-f", &built, &base]);
    run_tool("docker", &["load", "-i", saved.to_str().unwrap()]);
    let again: Vec<Value> =
        serde_json::from_str(&run_tool("docker", &["image", "inspect", &built])).unwrap();
    assert_eq!(again[0]["Id"], docker[0]["Id"]);
    assert_eq!(run_tool("docker", &["run", "--rm", &built]), "changed\n");
    run_tool("docker", &["rmi", "-f", &built, &base]);
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Every path under `root` with its type, mode, size, content digest or link target.
fn tree_listing(root: &Path) -> Vec<String> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let detail = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_file() {
                hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap()))
            } else {
                String::new()
            };
            out.push(format!(
                "{relative} {:o} {}:{} {detail}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ));
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    out.sort();
    out
}
