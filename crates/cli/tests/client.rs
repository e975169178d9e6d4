//! The registry client against real registries (CNCF Distribution 2.8, `docker-registry`, run
//! as a process on a free loopback port), the peer tools (skopeo, docker), and a hand-written
//! HTTP server for the failures a real registry does not produce on demand (corrupt bytes,
//! rate limiting, connections cut mid-blob). Peer-based tests skip when the peer is missing,
//! unless STRATA_REQUIRE_PEERS=1.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Strata, free_port, have, peers_required, run_tool, sha256};
use serde_json::{Value, json};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// The client commands are part of the CLI (a guard against losing their wiring).
fn client_commands(strata: &Strata) -> bool {
    assert!(
        strata.run(&["push", "--help"]).status.success(),
        "`strata push` is missing from the CLI"
    );
    true
}

/// A Distribution registry process with its own storage, killed on drop.
struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl TestRegistry {
    /// Starts a registry, or returns None (skip) when the binary is missing.
    fn start(htpasswd: Option<&str>) -> Option<TestRegistry> {
        if !Path::new(REGISTRY_BINARY).exists() {
            assert!(
                !peers_required(),
                "{REGISTRY_BINARY} is required (STRATA_REQUIRE_PEERS=1): apt-get install docker-registry"
            );
            eprintln!("skipping: {REGISTRY_BINARY} not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("strata-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let auth = match htpasswd {
            Some(line) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = TestRegistry {
            dir,
            port,
            child: None,
        };
        registry.spawn();
        Some(registry)
    }

    fn spawn(&mut self) {
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A root filesystem with busybox, so docker can run the image.
fn busybox_rootfs(dir: &Path) -> bool {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox missing");
        return false;
    }
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/os-release"), "NAME=\"strata client test\"\n").unwrap();
    true
}

/// The busybox rootfs, built once per test process: importing one directory twice gives the
/// same layer.
fn shared_rootfs() -> Option<&'static Path> {
    static ROOTFS: std::sync::OnceLock<Option<tempfile::TempDir>> = std::sync::OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            busybox_rootfs(dir.path()).then_some(dir)
        })
        .as_ref()
        .map(|d| d.path())
}

/// Imports the busybox rootfs as `reference`; returns the image ID.
fn import_image(strata: &Strata, reference: &str, change: &str) -> Option<String> {
    let path = shared_rootfs()?.to_str().unwrap();
    Some(
        strata
            .ok(&["import", "--change", change, path, reference])
            .trim()
            .to_string(),
    )
}

/// The digest the store's root index.json gives a full reference.
fn stored_target(strata: &Strata, full_reference: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(strata.root().join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["io.containerd.image.name"] == full_reference)
        .unwrap_or_else(|| panic!("{full_reference} not in index.json: {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn digest_line(output: &str, prefix: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {output}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn push_pull_copy_round_trip_preserves_digests() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let Some(registry) = TestRegistry::start(None) else {
        return;
    };
    let host = registry.host();
    let reference = format!("{host}/strata/roundtrip:v1");
    let Some(id) = import_image(&local, &reference, "CMD [\"sh\"]") else {
        return;
    };
    // Byte for byte: the layer stays uncompressed, the digest is the stored one.
    let pushed = local.ok(&["push", "--compress=false", &reference]);
    assert!(
        pushed.contains(&format!(
            "The push refers to repository [{host}/strata/roundtrip]"
        )),
        "{pushed}"
    );
    let digest = digest_line(&pushed, "v1: digest: ");
    assert_eq!(
        stored_target(&local, &reference),
        digest,
        "push preserves the manifest digest"
    );
    // Pushing again uploads nothing.
    let again = local.ok(&["push", "--compress=false", &reference]);
    assert!(!again.contains(": Pushed"), "{again}");

    // The registry and skopeo agree on the digest; tags and remote inspect see it.
    if have("skopeo", &["--version"]) {
        let inspected: Value = serde_json::from_str(&run_tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ],
        ))
        .unwrap();
        assert_eq!(inspected["Digest"], digest.as_str());
    }
    assert_eq!(
        local
            .ok(&["tags", &format!("docker://{host}/strata/roundtrip")])
            .trim(),
        "v1"
    );
    let unknown = local.fails(&["tags", &format!("docker://{host}/strata/nothere")]);
    assert!(
        unknown.contains(&format!(
            "name unknown: repository {host}/strata/nothere does not exist"
        )),
        "{unknown}"
    );
    let missing_tag = local.fails(&["pull", &format!("{host}/strata/roundtrip:v9")]);
    assert!(missing_tag.contains("manifest unknown"), "{missing_tag}");
    let raw = local
        .command()
        .args(["inspect", "--raw", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(raw.status.success());
    assert_eq!(
        sha256(&raw.stdout),
        digest,
        "--raw prints the manifest byte for byte"
    );
    let config: Value =
        serde_json::from_str(&local.ok(&["inspect", "--config", &format!("docker://{reference}")]))
            .unwrap();
    assert_eq!(config["config"]["Cmd"], json!(["sh"]));
    let remote: Value =
        serde_json::from_str(&local.ok(&["inspect", &format!("docker://{reference}")])).unwrap();
    assert_eq!(remote["Digest"], digest.as_str());

    // Pull into a fresh store: same digest and image ID, repo digest recorded.
    let puller = Strata::new();
    let pulled = puller.ok(&["pull", &reference]);
    assert!(
        pulled.contains("v1: Pulling from strata/roundtrip"),
        "{pulled}"
    );
    assert!(pulled.contains("Pull complete"), "{pulled}");
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {reference}")),
        "{pulled}"
    );
    assert_eq!(digest_line(&pulled, "Digest: "), digest);
    assert_eq!(stored_target(&puller, &reference), digest);
    assert_eq!(
        puller
            .ok(&["inspect", "--format", "{{.Id}}", &reference])
            .trim(),
        id
    );
    let repo_digests = puller.ok(&["inspect", "--format", "{{json .RepoDigests}}", &reference]);
    assert!(
        repo_digests.contains(&format!("{host}/strata/roundtrip@{digest}")),
        "{repo_digests}"
    );
    puller.assert_blobs_verified();
    let repeat = puller.ok(&["pull", &reference]);
    assert!(
        repeat.contains("Already exists") && repeat.contains("Image is up to date"),
        "{repeat}"
    );

    // The puller knows the image from strata/roundtrip: pushing it to another repository of
    // the registry mounts every blob instead of uploading it.
    let mounted = puller.ok(&[
        "push",
        "--compress=false",
        &reference,
        &format!("{host}/strata/mounted:v1"),
    ]);
    assert!(
        mounted.contains("Mounted from strata/roundtrip"),
        "{mounted}"
    );
    assert!(!mounted.contains(": Pushed"), "{mounted}");
    assert_eq!(digest_line(&mounted, "v1: digest: "), digest);

    // Registry to registry, through a temporary store: digest unchanged, the source repository
    // still known for mounts.
    let copied = local.ok(&[
        "copy",
        &format!("docker://{reference}"),
        &format!("docker://{host}/strata/copied:v1"),
    ]);
    assert!(copied.trim_end().ends_with(&digest), "{copied}");

    // A second image sharing the layer: the pull downloads only what is new.
    let reference2 = format!("{host}/strata/roundtrip:v2");
    import_image(&local, &reference2, "CMD [\"ls\"]").unwrap();
    local.ok(&["push", "--compress=false", &reference2]);
    let shared = puller.ok(&["pull", &reference2]);
    assert!(
        shared.contains("Already exists"),
        "the shared layer is not downloaded again: {shared}"
    );

    // registry -> OCI layout -> docker archive -> another store, digests unchanged.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let archive = work.path().join("image.tar");
    let oci = format!("oci:{}:v1", layout.display());
    local.ok(&["copy", &format!("docker://{reference}"), &oci]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    if have("skopeo", &["--version"]) {
        let inspected: Value =
            serde_json::from_str(&run_tool("skopeo", &["inspect", &oci])).unwrap();
        assert_eq!(inspected["Digest"], digest.as_str());
    }
    local.ok(&[
        "copy",
        &oci,
        &format!("docker-archive:{}:copied/app:1", archive.display()),
    ]);
    let target = Strata::new();
    target.ok(&[
        "copy",
        &format!("docker-archive:{}", archive.display()),
        "copied/app:2",
    ]);
    assert_eq!(stored_target(&target, "docker.io/copied/app:2"), digest);
    assert_eq!(
        target
            .ok(&["inspect", "--format", "{{.Id}}", "copied/app:2"])
            .trim(),
        id
    );
    target.assert_blobs_verified();

    // oci-archive, and back to the registry under another name (cross-repository mount).
    let oci_archive = format!("oci-archive:{}:t", work.path().join("oci.tar").display());
    target.ok(&["copy", "copied/app:2", &oci_archive]);
    let back = format!("{host}/strata/other:copied");
    target.ok(&["copy", &oci_archive, &format!("docker://{back}")]);
    let remote: Value =
        serde_json::from_str(&local.ok(&["inspect", &format!("docker://{back}")])).unwrap();
    assert_eq!(remote["Digest"], digest.as_str());
}

#[test]
fn push_compresses_uncompressed_layers() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let Some(registry) = TestRegistry::start(None) else {
        return;
    };
    let reference = format!("{}/strata/gzipped:v1", registry.host());
    let Some(id) = import_image(&local, &reference, "CMD [\"sh\"]") else {
        return;
    };
    let pushed = local.ok(&["push", &reference]);
    assert!(pushed.contains(": Pushed"), "{pushed}");
    let digest = digest_line(&pushed, "v1: digest: ");
    assert_ne!(
        stored_target(&local, &reference),
        digest,
        "the pushed manifest names the compressed layer"
    );
    let raw = local
        .command()
        .args(["inspect", "--raw", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert_eq!(sha256(&raw.stdout), digest);
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let repo_digests = local.ok(&["inspect", "--format", "{{json .RepoDigests}}", &reference]);
    assert!(repo_digests.contains(&digest), "{repo_digests}");
    // The compressed layer was kept in the store, verified by its name.
    let gzip_layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        local.blob_names().contains(&gzip_layer),
        "{gzip_layer} kept: {:?}",
        local.blob_names()
    );
    local.assert_blobs_verified();
    // Pushing again finds every blob there.
    let again = local.ok(&["push", &reference]);
    assert!(!again.contains(": Pushed"), "{again}");
    assert_eq!(digest_line(&again, "v1: digest: "), digest);
    // To another repository: the kept blob is sent as it is, the same manifest results.
    let elsewhere = format!("{}/strata/gzipped-copy:v1", registry.host());
    let copied = local.ok(&["push", &reference, &elsewhere]);
    assert_eq!(digest_line(&copied, "v1: digest: "), digest);
    // Prune drops the kept blob (no image references it); compressing again gives the same.
    local.ok(&["system", "prune", "-f"]);
    assert!(!local.blob_names().contains(&gzip_layer));
    registry_delete_blob(&registry, "strata/gzipped", &gzip_layer);
    let recompressed = local.ok(&["push", &reference]);
    assert!(recompressed.contains(": Pushed"), "{recompressed}");
    assert_eq!(digest_line(&recompressed, "v1: digest: "), digest);
    assert!(local.blob_names().contains(&gzip_layer));
    // A pull decompresses and checks the diffIDs: the same image.
    let puller = Strata::new();
    puller.ok(&["pull", &reference]);
    assert_eq!(
        puller
            .ok(&["inspect", "--format", "{{.Id}}", &reference])
            .trim(),
        id
    );
    puller.assert_blobs_verified();
    // A repeated pull rewrites no blob (each would be a new file, renamed over the old one).
    let inodes = |strata: &Strata| -> Vec<(String, u64)> {
        use std::os::unix::fs::MetadataExt;
        strata
            .blob_names()
            .into_iter()
            .map(|name| {
                let path = strata
                    .root()
                    .join("blobs/sha256")
                    .join(name.trim_start_matches("sha256:"));
                (name, std::fs::metadata(path).unwrap().ino())
            })
            .collect()
    };
    let before = inodes(&puller);
    let again = puller.ok(&["pull", &reference]);
    assert!(again.contains("Image is up to date"), "{again}");
    assert_eq!(inodes(&puller), before);
}

/// Deletes a blob from a repository of the test registry (its config enables deletes).
fn registry_delete_blob(registry: &TestRegistry, repository: &str, digest: &str) {
    let url = format!("http://{}/v2/{repository}/blobs/{digest}", registry.host());
    let status = ureq::delete(&url)
        .call()
        .map(|r| r.status())
        .unwrap_or_else(|e| match e {
            ureq::Error::Status(code, _) => code,
            other => panic!("DELETE {url}: {other}"),
        });
    assert_eq!(status, 202, "DELETE {url}");
}

/// Writes `registries.json` under a fresh XDG_CONFIG_HOME, returned.
fn registries_config(json: &Value) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("strata")).unwrap();
    std::fs::write(
        home.path().join("strata/registries.json"),
        serde_json::to_vec_pretty(json).unwrap(),
    )
    .unwrap();
    home
}

#[test]
fn pulls_try_the_mirrors_first_then_the_origin() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let (Some(origin), Some(mirror)) = (TestRegistry::start(None), TestRegistry::start(None))
    else {
        return;
    };
    let (origin_host, mirror_host) = (origin.host(), mirror.host());
    // The same name on both, with different content; a second image on the origin only.
    import_image(
        &local,
        &format!("{origin_host}/strata/app:v1"),
        "CMD [\"origin\"]",
    )
    .unwrap();
    local.ok(&["push", &format!("{origin_host}/strata/app:v1")]);
    import_image(
        &local,
        &format!("{mirror_host}/strata/app:v1"),
        "CMD [\"mirror\"]",
    )
    .unwrap();
    local.ok(&["push", &format!("{mirror_host}/strata/app:v1")]);
    import_image(
        &local,
        &format!("{origin_host}/strata/only:v1"),
        "CMD [\"only\"]",
    )
    .unwrap();
    local.ok(&["push", &format!("{origin_host}/strata/only:v1")]);

    // A dead mirror is passed over, the live one serves, the origin is the fallback.
    let dead = format!("127.0.0.1:{}", free_port());
    let config = registries_config(&json!({
        "version": 1,
        "registries": { origin_host.clone(): { "mirrors": [dead, mirror_host] } }
    }));
    let puller = Strata::new();
    let pull = |reference: &str| {
        let output = puller
            .command()
            .env("XDG_CONFIG_HOME", config.path())
            .args(["pull", reference])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let cmd = |reference: &str| {
        puller
            .ok(&["inspect", "--format", "{{json .Config.Cmd}}", reference])
            .trim()
            .to_string()
    };
    let app = format!("{origin_host}/strata/app:v1");
    pull(&app);
    assert_eq!(cmd(&app), r#"["mirror"]"#, "served by the mirror");
    let only = format!("{origin_host}/strata/only:v1");
    pull(&only);
    assert_eq!(
        cmd(&only),
        r#"["only"]"#,
        "the origin when the mirror lacks it"
    );
    puller.assert_blobs_verified();
    // Without the settings, the origin's own image.
    let plain = Strata::new();
    plain.ok(&["pull", &app]);
    assert_eq!(
        plain
            .ok(&["inspect", "--format", "{{json .Config.Cmd}}", &app])
            .trim(),
        r#"["origin"]"#
    );
    // A settings file of another version is refused, naming it.
    let future = registries_config(&json!({ "version": 9 }));
    let output = puller
        .command()
        .env("XDG_CONFIG_HOME", future.path())
        .args(["pull", &app])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("registries.json: version 9"),
        "{stderr}"
    );
}

#[test]
fn docker_pulls_and_runs_a_pushed_image() {
    let local = Strata::new();
    if !client_commands(&local) || !have("docker", &["info"]) {
        return;
    }
    let Some(registry) = TestRegistry::start(None) else {
        return;
    };
    let reference = format!(
        "{}/strata/docker-run:{}",
        registry.host(),
        std::process::id()
    );
    if import_image(&local, &reference, "CMD [\"sh\"]").is_none() {
        return;
    }
    local.ok(&["push", &reference]);
    run_tool("docker", &["pull", &reference]);
    let output = run_tool(
        "docker",
        &["run", "--rm", &reference, "cat", "/etc/os-release"],
    );
    let _ = Command::new("docker")
        .args(["rmi", "-f", &reference])
        .output();
    assert!(output.contains("strata client test"), "{output}");
}

/// `user:bcrypt(password)` from htpasswd (apache2-utils), or None to skip.
fn htpasswd_line(user: &str, password: &str) -> Option<String> {
    if !have("htpasswd", &["-nbB", "probe", "probe"]) {
        return None;
    }
    Some(run_tool("htpasswd", &["-nbB", user, password]))
}

#[test]
fn basic_auth_login_push_pull_logout() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let Some(line) = htpasswd_line("tester", "s3cret") else {
        return;
    };
    let Some(registry) = TestRegistry::start(Some(&line)) else {
        return;
    };
    let host = registry.host();
    let docker_config = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let with_config = |args: &[&str]| {
        let mut command = local.command();
        command
            .env("DOCKER_CONFIG", docker_config.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env("XDG_RUNTIME_DIR", empty.path())
            .args(args);
        command.output().unwrap()
    };
    let reference = format!("{host}/strata/private:v1");
    if import_image(&local, &reference, "CMD [\"sh\"]").is_none() {
        return;
    }
    let denied = with_config(&["push", &reference]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("unauthorized") && stderr.contains(&host),
        "{stderr}"
    );

    let wrong = with_config(&["login", "-u", "tester", "-p", "wrong", &host]);
    assert!(!wrong.status.success(), "a wrong password is refused");
    assert!(!docker_config.path().join("config.json").exists());
    let login = with_config(&["login", "-u", "tester", "-p", "s3cret", &host]);
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(docker_config.path().join("config.json")).unwrap())
            .unwrap();
    assert!(config["auths"][&host]["auth"].is_string(), "{config}");

    let pushed = with_config(&["push", &reference]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    // containers-auth.json (REGISTRY_AUTH_FILE) is read too.
    let auth_file = empty.path().join("auth.json");
    std::fs::write(
        &auth_file,
        json!({"auths": {&host: {"auth": "dGVzdGVyOnMzY3JldA=="}}}).to_string(),
    )
    .unwrap();
    let puller = Strata::new();
    let pulled = puller
        .command()
        .env("DOCKER_CONFIG", empty.path())
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .args(["pull", &reference])
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );

    // A credential helper named by credHelpers answers for the registry.
    let helpers = tempfile::tempdir().unwrap();
    let helper = helpers.path().join("docker-credential-strata-test");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"tester\",\"Secret\":\"s3cret\"}' \"$server\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helper_config = tempfile::tempdir().unwrap();
    std::fs::write(
        helper_config.path().join("config.json"),
        json!({"credHelpers": {&host: "strata-test"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let via_helper = Strata::new()
        .command()
        .env("PATH", path)
        .env("DOCKER_CONFIG", helper_config.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .env("XDG_RUNTIME_DIR", empty.path())
        .args(["pull", &reference])
        .output()
        .unwrap();
    assert!(
        via_helper.status.success(),
        "{}",
        String::from_utf8_lossy(&via_helper.stderr)
    );

    let logout = with_config(&["logout", &host]);
    assert!(logout.status.success());
    let after = with_config(&["pull", &reference]);
    assert!(!after.status.success());
    let stderr = String::from_utf8_lossy(&after.stderr);
    assert!(
        stderr.contains("unauthorized") && stderr.contains("repository:strata/private:pull"),
        "{stderr}"
    );
}

#[test]
fn pull_retries_while_the_registry_restarts() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let Some(mut registry) = TestRegistry::start(None) else {
        return;
    };
    let reference = format!("{}/strata/restart:v1", registry.host());
    if import_image(&local, &reference, "CMD [\"sh\"]").is_none() {
        return;
    }
    local.ok(&["push", &reference]);
    registry.stop();
    let puller = Strata::new();
    let child = puller
        .command()
        .args(["pull", &reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    registry.spawn();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    puller.assert_blobs_verified();
    assert_eq!(
        puller.ok(&["inspect", "--format", "{{.Id}}", &reference]),
        local.ok(&["inspect", "--format", "{{.Id}}", &reference])
    );
}

// ---- A hand-written registry for faults -------------------------------------------------------

/// One small image: (manifest bytes, config bytes, layer bytes).
fn tiny_image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    let data = b"hello from a fake registry\n".repeat(4000);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", &data[..])
        .unwrap();
    let layer = builder.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    (manifest, config, layer)
}

/// An index listing `manifest` for linux/amd64 and linux/arm64, and a missing one for s390x.
fn multi_platform_index(manifest: &[u8]) -> Vec<u8> {
    let missing = sha256(b"not served");
    let entry = |digest: &str, size: usize, arch: &str| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
               "size": size, "platform": {"os": "linux", "architecture": arch}})
    };
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(&missing, 10, "s390x"),
            entry(&sha256(manifest), manifest.len(), "amd64"),
            entry(&sha256(manifest), manifest.len(), "arm64"),
        ],
    }))
    .unwrap()
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A reply: status, headers, body, and how many body bytes to send before cutting the
/// connection (all of them unless set).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    cut_after: Option<usize>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body,
        cut_after: None,
    }
}

/// Serves `handler` on a free port; returns the host and the log of requests served.
fn fake_registry(
    handler: impl Fn(&Request, &[String]) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let served = log.clone();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (handler, served) = (handler.clone(), served.clone());
            std::thread::spawn(move || {
                let _ = serve_connection(stream, &*handler, &served);
            });
        }
    });
    (host, log)
}

fn serve_connection(
    stream: TcpStream,
    handler: &(dyn Fn(&Request, &[String]) -> Reply + Send + Sync),
    served: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first)? == 1 && first[0] == 0x16 {
        // A TLS ClientHello: answer in plain HTTP, as an HTTP-only server does.
        let mut stream = stream;
        stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let mut request = Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                request
                    .headers
                    .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        if let Some(length) = request
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
        {
            (&mut reader).take(length).read_to_end(&mut request.body)?;
        } else if request.header("transfer-encoding") == Some("chunked") {
            // A streamed body: `<hex size>\r\n<data>\r\n` ... `0\r\n\r\n`.
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim(), 16)
                    .map_err(|e| std::io::Error::other(format!("chunk size: {e}")))?;
                let mut data = vec![0u8; size + 2];
                reader.read_exact(&mut data)?;
                if size == 0 {
                    break;
                }
                request.body.extend_from_slice(&data[..size]);
            }
        }
        let history = served.lock().unwrap().clone();
        let answer = handler(&request, &history);
        served.lock().unwrap().push(format!(
            "{} {}{}",
            request.method,
            request.path,
            request
                .header("range")
                .map(|r| format!(" range={r}"))
                .unwrap_or_default()
        ));
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            answer.status,
            answer.body.len()
        );
        for (name, value) in &answer.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        if request.method != "HEAD" {
            let end = answer.cut_after.unwrap_or(answer.body.len());
            writer.write_all(&answer.body[..end])?;
        }
        writer.flush()?;
        if answer.cut_after.is_some() {
            return writer.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The standard answers for the tiny image; `layer_reply` decides the layer's.
fn image_handler(
    layer_reply: impl Fn(&Request, &[u8], &[String]) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Request, &[String]) -> Reply + Send + Sync + 'static {
    let (manifest, config, layer) = tiny_image();
    move |request, history| {
        let path = request.path.as_str();
        if path == "/v2/" {
            return reply(200, &[], b"{}".to_vec());
        }
        if path.ends_with("/manifests/t")
            || path.ends_with(&format!("/manifests/{}", sha256(&manifest)))
        {
            return reply(
                200,
                &[
                    ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                    ("Docker-Content-Digest", &sha256(&manifest)),
                ],
                manifest.clone(),
            );
        }
        if path.ends_with("/manifests/multi") {
            // An index whose other platform is absent: only the chosen one may be fetched.
            let index = multi_platform_index(&manifest);
            return reply(
                200,
                &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
                index,
            );
        }
        if path.ends_with(&format!("/blobs/{}", sha256(&config))) {
            return reply(200, &[], config.clone());
        }
        if path.ends_with(&format!("/blobs/{}", sha256(&layer))) {
            return layer_reply(request, &layer, history);
        }
        reply(
            404,
            &[],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
        )
    }
}

#[test]
fn corrupt_blob_is_refused_and_nothing_is_stored() {
    let strata = Strata::new();
    let (host, _log) = fake_registry(image_handler(|_, layer, _| {
        let mut corrupt = layer.to_vec();
        corrupt[600] ^= 0xff;
        reply(200, &[], corrupt)
    }));
    let stderr = strata.fails(&["pull", &format!("{host}/fake/corrupt:t")]);
    assert!(stderr.contains("digest"), "{stderr}");
    assert!(
        strata.blob_names().is_empty(),
        "nothing stored: {:?}",
        strata.blob_names()
    );
    let ingest: Vec<_> = std::fs::read_dir(strata.root().join("ingest"))
        .unwrap()
        .collect();
    assert!(ingest.is_empty(), "no partial files left");
    assert_eq!(strata.ok(&["images", "-q"]).trim(), "");
    // Straight into an OCI layout (no store on the way): refused too, nothing left in blobs/.
    let layout = tempfile::tempdir().unwrap();
    let dir = layout.path().join("oci");
    let stderr = strata.fails(&[
        "copy",
        &format!("docker://{host}/fake/corrupt:t"),
        &format!("oci:{}:t", dir.display()),
    ]);
    assert!(stderr.contains("digest"), "{stderr}");
    let (_, _, layer) = tiny_image();
    let layer_hex = sha256(&layer)[7..].to_string();
    let mut left: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    left.retain(|name| name == &layer_hex || name.starts_with(".ingest-"));
    assert!(left.is_empty(), "no corrupt or partial blob: {left:?}");
    assert!(!dir.join("index.json").exists(), "no image in the layout");
}

#[test]
fn rate_limited_request_waits_for_retry_after() {
    let strata = Strata::new();
    let handler = image_handler(|_, layer, _| reply(200, &[], layer.to_vec()));
    let (host, log) = fake_registry(move |request, history| {
        let limited = history.iter().filter(|h| h.contains("/manifests/")).count() == 0;
        if request.path.contains("/manifests/") && limited {
            return reply(
                429,
                &[("Retry-After", "2")],
                br#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#.to_vec(),
            );
        }
        handler(request, history)
    });
    let started = Instant::now();
    strata.ok(&["pull", &format!("{host}/fake/limited:t")]);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    let manifest_requests = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 2);
    strata.assert_blobs_verified();
}

#[test]
fn interrupted_blob_download_resumes_with_range() {
    let strata = Strata::new();
    let (host, log) = fake_registry(image_handler(|request, layer, _| {
        match request
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
        {
            Some(range) => {
                let start: usize = range.trim_end_matches('-').parse().unwrap();
                let content_range = format!("bytes {start}-{}/{}", layer.len() - 1, layer.len());
                reply(
                    206,
                    &[("Content-Range", &content_range)],
                    layer[start..].to_vec(),
                )
            }
            None => Reply {
                cut_after: Some(layer.len() / 2),
                ..reply(200, &[], layer.to_vec())
            },
        }
    }));
    strata.ok(&["pull", &format!("{host}/fake/resume:t")]);
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("range=bytes=")),
        "resumed with Range: {log:?}"
    );
    strata.assert_blobs_verified();
    assert_eq!(strata.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn registry_errors_name_what_failed() {
    let strata = Strata::new();
    let (host, _log) = fake_registry(image_handler(|_, layer, _| reply(200, &[], layer.to_vec())));
    let stderr = strata.fails(&["pull", &format!("{host}/fake/img:missing")]);
    assert!(
        stderr.contains("manifest unknown") && stderr.contains(":missing"),
        "{stderr}"
    );

    let (host, _log) = fake_registry(|request, _| {
        if request.header("authorization").is_some() {
            return reply(500, &[], Vec::new());
        }
        reply(
            401,
            &[("WWW-Authenticate", "Basic realm=\"fake\"")],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        )
    });
    let empty = tempfile::tempdir().unwrap();
    let output = strata
        .command()
        .env("DOCKER_CONFIG", empty.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .env("XDG_RUNTIME_DIR", empty.path())
        .args(["pull", &format!("{host}/fake/private:t")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unauthorized")
            && stderr.contains(&host)
            && stderr.contains("repository:fake/private:pull"),
        "{stderr}"
    );
}

#[test]
fn bearer_token_flow() {
    let strata = Strata::new();
    let images = image_handler(|_, layer, _| reply(200, &[], layer.to_vec()));
    let (host, log) = fake_registry(move |request, history| {
        let challenge = |scope: &str| {
            let host = request.header("host").unwrap_or_default();
            format!("Bearer realm=\"http://{host}/token\",service=\"fake\"{scope}")
        };
        if request.path.starts_with("/token?") {
            assert!(request.path.contains("service=fake"), "{}", request.path);
            return reply(200, &[], br#"{"token":"T-1"}"#.to_vec());
        }
        if request.header("authorization") != Some("Bearer T-1") {
            let scope = if request.path == "/v2/" {
                String::new()
            } else {
                ",scope=\"repository:fake/tok:pull\"".to_string()
            };
            return reply(401, &[("WWW-Authenticate", &challenge(&scope))], Vec::new());
        }
        images(request, history)
    });
    strata.ok(&["pull", &format!("{host}/fake/tok:t")]);
    let log = log.lock().unwrap().clone();
    let token_requests: Vec<_> = log.iter().filter(|l| l.contains("/token?")).collect();
    assert!(
        token_requests
            .iter()
            .any(|l| l.contains("scope=repository%3Afake%2Ftok%3Apull")),
        "a token was requested for the repository scope: {log:?}"
    );
    // One token per scope, cached: not one token request per blob.
    assert!(token_requests.len() <= 2, "{log:?}");
    strata.assert_blobs_verified();
}

#[test]
fn chunked_upload_when_the_registry_demands_it() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let uploads: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>> = Arc::default();
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let (uploads_seen, stored_seen) = (uploads.clone(), stored.clone());
    let (host, log) = fake_registry(move |request, _| {
        let path = request.path.as_str();
        match request.method.as_str() {
            "GET" if path == "/v2/" => reply(200, &[], b"{}".to_vec()),
            "HEAD" => reply(404, &[], Vec::new()),
            "POST" => {
                let mut uploads = uploads_seen.lock().unwrap();
                let location = format!("/upload/{}", uploads.len());
                uploads.insert(location.clone(), Vec::new());
                reply(
                    202,
                    &[("Location", &location), ("OCI-Chunk-Min-Length", "1024")],
                    Vec::new(),
                )
            }
            "PATCH" => {
                uploads_seen
                    .lock()
                    .unwrap()
                    .get_mut(path)
                    .unwrap()
                    .extend_from_slice(&request.body);
                reply(202, &[("Location", path)], Vec::new())
            }
            "PUT" if path.starts_with("/upload/") => {
                let (location, query) = path.split_once('?').unwrap();
                let digest = query.strip_prefix("digest=").unwrap().replace("%3A", ":");
                let data = uploads_seen.lock().unwrap().remove(location).unwrap();
                if sha256(&data) != digest || !request.body.is_empty() {
                    return reply(
                        400,
                        &[],
                        br#"{"errors":[{"code":"DIGEST_INVALID"}]}"#.to_vec(),
                    );
                }
                stored_seen.lock().unwrap().push(digest);
                reply(201, &[], Vec::new())
            }
            "PUT" => reply(
                201,
                &[("Docker-Content-Digest", &sha256(&request.body))],
                Vec::new(),
            ),
            _ => reply(404, &[], Vec::new()),
        }
    });
    let reference = format!("{host}/fake/chunked:v1");
    let Some(id) = import_image(&local, &reference, "CMD [\"sh\"]") else {
        return;
    };
    let pushed = local.ok(&["push", "--compress=false", &reference]);
    let digest = digest_line(&pushed, "v1: digest: ");
    assert_eq!(stored_target(&local, &reference), digest);
    let stored = stored.lock().unwrap().clone();
    assert!(
        stored.contains(&id),
        "the config was uploaded in chunks: {stored:?}"
    );
    assert_eq!(stored.len(), 2, "config and layer: {stored:?}");
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("PATCH /upload/"))
    );
}

#[test]
fn a_compressed_layer_upload_that_fails_starts_over() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    // A registry whose first streamed PATCH fails with 503: the layer is compressed and sent
    // again in a new session, and what is stored must match the digest the client names.
    let uploads: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>> = Arc::default();
    let stored: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>> = Arc::default();
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (uploads_seen, stored_seen) = (uploads.clone(), stored.clone());
    let (host, log) = fake_registry(move |request, _| {
        let path = request.path.as_str();
        match request.method.as_str() {
            "GET" if path == "/v2/" => reply(200, &[], b"{}".to_vec()),
            "HEAD" => reply(404, &[], Vec::new()),
            "POST" => {
                let mut uploads = uploads_seen.lock().unwrap();
                let location = format!("/upload/{}", uploads.len());
                uploads.insert(location.clone(), Vec::new());
                reply(202, &[("Location", &location)], Vec::new())
            }
            "PATCH" => {
                if !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return reply(503, &[], Vec::new());
                }
                let mut uploads = uploads_seen.lock().unwrap();
                let data = uploads.get_mut(path).unwrap();
                data.extend_from_slice(&request.body);
                let range = format!("0-{}", data.len() - 1);
                reply(202, &[("Location", path), ("Range", &range)], Vec::new())
            }
            "PUT" if path.starts_with("/upload/") => {
                let (location, query) = path.split_once('?').unwrap();
                let digest = query.strip_prefix("digest=").unwrap().replace("%3A", ":");
                let data = uploads_seen.lock().unwrap().remove(location).unwrap();
                let data = if data.is_empty() {
                    request.body.clone()
                } else {
                    data
                };
                if sha256(&data) != digest {
                    return reply(
                        400,
                        &[],
                        br#"{"errors":[{"code":"DIGEST_INVALID"}]}"#.to_vec(),
                    );
                }
                stored_seen.lock().unwrap().insert(digest, data);
                reply(201, &[], Vec::new())
            }
            "PUT" => reply(
                201,
                &[("Docker-Content-Digest", &sha256(&request.body))],
                Vec::new(),
            ),
            _ => reply(404, &[], Vec::new()),
        }
    });
    let reference = format!("{host}/fake/streamed:v1");
    if import_image(&local, &reference, "CMD [\"sh\"]").is_none() {
        return;
    }
    let pushed = local.ok(&["push", &reference]);
    assert!(pushed.contains(": Pushed"), "{pushed}");
    let log = log.lock().unwrap().clone();
    let patches = log.iter().filter(|l| l.starts_with("PATCH ")).count();
    assert_eq!(
        patches, 2,
        "the failed PATCH was followed by one more: {log:?}"
    );
    // The stored layer, found by its diffID in the config, uncompresses to exactly it.
    let stored = stored.lock().unwrap();
    let config: Value = stored
        .values()
        .find_map(|b| serde_json::from_slice::<Value>(b).ok())
        .expect("the config was uploaded");
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap();
    let layer = stored
        .values()
        .find(|b| b.starts_with(&[0x1f, 0x8b]))
        .expect("a gzip layer was uploaded");
    let mut tar = Vec::new();
    strata_layer::decompress(strata_layer::Compression::Gzip, &layer[..])
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(sha256(&tar), diff_id);
}

#[test]
fn index_pull_chooses_the_platform() {
    let strata = Strata::new();
    let (host, log) = fake_registry(image_handler(|_, layer, _| reply(200, &[], layer.to_vec())));
    let reference = format!("{host}/fake/multi:multi");
    let stderr = strata.fails(&["pull", "--platform", "linux/ppc64le", &reference]);
    assert!(
        stderr.contains("no manifest for platform linux/ppc64le"),
        "{stderr}"
    );
    let pulled = strata.ok(&["pull", "--platform", "linux/arm64", &reference]);
    let (manifest, _, _) = tiny_image();
    let index_digest = sha256(&multi_platform_index(&manifest));
    assert_eq!(digest_line(&pulled, "Digest: "), index_digest);
    assert_eq!(stored_target(&strata, &reference), index_digest);
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&sha256(b"not served")))
    );
    let repo_digests = strata.ok(&["inspect", "--format", "{{json .RepoDigests}}", &reference]);
    assert!(
        repo_digests.contains(&format!("{host}/fake/multi@{index_digest}")),
        "{repo_digests}"
    );
    // By digest: no tag is recorded, the image is found by its digest.
    let by_digest = format!("{host}/fake/multi@{}", sha256(&manifest));
    let output = strata.ok(&["pull", &by_digest]);
    assert!(
        output.contains("Status: Downloaded newer image"),
        "{output}"
    );
    strata.ok(&["inspect", &by_digest]);
    strata.assert_blobs_verified();
}

/// A name other than `localhost` that resolves to 127.0.0.1 (strata then requires TLS, as Docker
/// does for names it does not know are loopback).
fn loopback_alias() -> Option<&'static str> {
    use std::net::ToSocketAddrs;
    ["vm", "runsc"].into_iter().find(|name| {
        (*name, 80)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.all(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST))
    })
}

#[test]
fn tls_failure_suggests_disabling_verification() {
    let Some(alias) = loopback_alias() else {
        eprintln!("skipping: no non-localhost name for 127.0.0.1 in /etc/hosts");
        return;
    };
    let strata = Strata::new();
    let (host, _log) = fake_registry(image_handler(|_, layer, _| reply(200, &[], layer.to_vec())));
    let port = host.rsplit_once(':').unwrap().1;
    let reference = format!("{alias}:{port}/fake/tls:t");
    let started = Instant::now();
    let stderr = strata.fails(&["pull", &reference]);
    assert!(
        stderr.contains("TLS handshake with registry") && stderr.contains("--tls-verify=false"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "TLS failures are not retried"
    );
    // --tls-verify=false falls back to plain HTTP.
    strata.ok(&["pull", "--tls-verify=false", &reference]);
    strata.assert_blobs_verified();
    // So does `insecure` in registries.json.
    let config = registries_config(&json!({
        "version": 1,
        "registries": { format!("{alias}:{port}"): { "insecure": true } }
    }));
    let fresh = Strata::new();
    let output = fresh
        .command()
        .env("XDG_CONFIG_HOME", config.path())
        .args(["pull", &reference])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    fresh.assert_blobs_verified();
}

#[test]
fn an_index_is_copied_and_pushed_as_an_index() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let Some(registry) = TestRegistry::start(None) else {
        return;
    };
    // An OCI layout holding an index with one (complete) platform manifest.
    let (manifest, config, layer) = tiny_image();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha256(&manifest), "size": manifest.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    let layout = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(layout.path().join("blobs/sha256")).unwrap();
    for blob in [&manifest, &config, &layer, &index] {
        let hex = sha256(blob).trim_start_matches("sha256:").to_string();
        std::fs::write(layout.path().join("blobs/sha256").join(hex), blob).unwrap();
    }
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.path().join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha256(&index), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}}]})
        .to_string(),
    )
    .unwrap();
    let reference = format!("{}/strata/index:multi", registry.host());
    let copied = local.ok(&[
        "copy",
        "--platform",
        "linux/amd64",
        &format!("oci:{}:multi", layout.path().display()),
        &format!("docker://{reference}"),
    ]);
    assert!(copied.trim_end().ends_with(&sha256(&index)), "{copied}");
    let raw = local
        .command()
        .args(["inspect", "--raw", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert_eq!(
        raw.stdout, index,
        "the registry serves the index byte for byte"
    );
    let puller = Strata::new();
    let pulled = puller.ok(&["pull", "--platform", "linux/amd64", &reference]);
    assert_eq!(digest_line(&pulled, "Digest: "), sha256(&index));
    assert_eq!(stored_target(&puller, &reference), sha256(&index));
}

/// nginx terminating TLS in front of a registry, as registries are often deployed: one port
/// offers HTTP/2 by ALPN (`listen ... ssl http2`), the other HTTP/1.1 only. Each request is
/// logged with the protocol it came in over.
struct TlsProxy {
    dir: tempfile::TempDir,
    child: Child,
    h2_port: u16,
    http1_port: u16,
}

impl TlsProxy {
    fn start(upstream: &str, server_name: &str) -> Option<TlsProxy> {
        if !have("nginx", &["-v"]) || !have("openssl", &["version"]) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("strata-nginx-")
            .tempdir()
            .unwrap();
        let path = dir.path();
        run_tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={server_name}"),
                "-keyout",
                path.join("key.pem").to_str().unwrap(),
                "-out",
                path.join("cert.pem").to_str().unwrap(),
            ],
        );
        let (h2_port, http1_port) = (free_port(), free_port());
        let server = |port: u16, http2: &str, log: &str| {
            format!(
                "server {{ listen 127.0.0.1:{port} ssl{http2}; server_name {server_name};
  ssl_certificate cert.pem; ssl_certificate_key key.pem;
  access_log {log}.log protocols; client_max_body_size 0; proxy_request_buffering off;
  location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1;
    proxy_set_header Host $host:$server_port; proxy_set_header X-Forwarded-Proto https; }} }}\n"
            )
        };
        let config = format!(
            "daemon off; user root; worker_processes 1; pid nginx.pid; error_log error.log;
events {{ worker_connections 64; }}
http {{ log_format protocols '$server_protocol $request_method $uri $status';
  client_body_temp_path body; proxy_temp_path proxy;
  {}  {}}}\n",
            server(h2_port, " http2", "h2"),
            server(http1_port, "", "http1"),
        );
        std::fs::write(path.join("nginx.conf"), config).unwrap();
        let prefix = format!("{}/", path.display());
        let child = Command::new("nginx")
            .args(["-p", &prefix, "-c", "nginx.conf"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", h2_port)).is_err()
            || TcpStream::connect(("127.0.0.1", http1_port)).is_err()
        {
            let log = std::fs::read_to_string(path.join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx did not start: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(TlsProxy {
            dir,
            child,
            h2_port,
            http1_port,
        })
    }

    /// The protocols of the requests logged for the `h2` or `http1` server.
    fn protocols(&self, server: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(format!("{server}.log")))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn http2_is_negotiated_by_alpn_and_http1_is_the_fallback() {
    let local = Strata::new();
    if !client_commands(&local) {
        return;
    }
    let Some(alias) = loopback_alias() else {
        eprintln!("skipping: no non-localhost name for 127.0.0.1 in /etc/hosts");
        return;
    };
    let Some(registry) = TestRegistry::start(None) else {
        return;
    };
    let Some(proxy) = TlsProxy::start(&registry.host(), alias) else {
        return;
    };
    let source = format!("{}/strata/proto:v1", registry.host());
    let Some(id) = import_image(&local, &source, "CMD [\"sh\"]") else {
        return;
    };
    for (port, server, protocol) in [
        (proxy.h2_port, "h2", "HTTP/2.0"),
        (proxy.http1_port, "http1", "HTTP/1.1"),
    ] {
        // A self-signed certificate: verification off, which still speaks TLS first.
        let reference = format!("{alias}:{port}/strata/{server}:v1");
        local.ok(&["tag", &source, &reference]);
        let pushed = local.ok(&["push", "--tls-verify=false", &reference]);
        assert!(pushed.contains(": Pushed"), "{pushed}");
        let puller = Strata::new();
        puller.ok(&["pull", "--tls-verify=false", &reference]);
        assert_eq!(
            puller
                .ok(&["inspect", "--format", "{{.Id}}", &reference])
                .trim(),
            id
        );
        puller.assert_blobs_verified();
        let protocols = proxy.protocols(server);
        // /v2/, blob HEADs and the upload session (POST, streamed PATCH, PUT), manifests, GETs.
        assert!(protocols.len() >= 8, "{server}: {protocols:?}");
        assert!(
            protocols.iter().all(|p| p == protocol),
            "every request over {protocol}: {protocols:?}"
        );
    }
}
