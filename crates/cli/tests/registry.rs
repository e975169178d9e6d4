//! `strata registry serve` as a process on a free loopback port, exercised over real HTTP:
//! every distribution endpoint, the storage guarantees (no unverified blob, one copy under
//! concurrent pushes, restart-safe uploads), and interop with skopeo and docker. Peer tests
//! skip when the tool is missing, unless STRATA_REQUIRE_PEERS=1.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, have, moto_port, peers_required, run_tool, sha256, spawn_registry};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A `strata registry serve` process; killed on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// On the filesystem under `root`, or, inside [`with_s3`], in the thread's S3 bucket
    /// (uploads in progress still staged under `root`).
    fn start(root: &Path) -> Server {
        Server::start_with(root, &[])
    }

    /// [`Server::start`] with more `serve` flags.
    fn start_with(root: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let root_arg = root.to_str().unwrap();
        if let Some(storage) = s3_storage_config() {
            let config = root.with_extension(format!("{port}.json"));
            let text = json!({"addr": addr, "root": root, "storage": storage}).to_string();
            std::fs::write(&config, text).unwrap();
            let args = [&["--config", config.to_str().unwrap()][..], extra].concat();
            return Server::launch(root, port, &args);
        }
        let args = [&["--addr", &addr, "--root", root_arg][..], extra].concat();
        Server::launch(root, port, &args)
    }

    /// Runs `strata registry serve ARGS` (which must listen on `port`) and waits until it answers.
    fn launch(root: &Path, port: u16, args: &[&str]) -> Server {
        Server::launch_env(root, port, args, &[])
    }

    fn launch_env(root: &Path, port: u16, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let log = root.with_extension(format!("{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .args(["registry", "serve"])
            .args(args)
            .envs(envs.iter().copied())
            .env("STRATA_ROOT", root.with_extension("store"));
        Server {
            child: Some(spawn_registry(command, &log)),
            port,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then waits: a graceful stop exits 0.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        run_tool("kill", &["-TERM", &child.id().to_string()]);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "server exited with {status}: {}",
            self.log_text()
        );
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut request = ureq::request(method, &self.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some(body) => request.send_bytes(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("{method} {path}: {error}"),
        };
        Reply::from(response)
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], None)
    }

    /// Monolithic upload (POST then PUT) into `repo`; asserts 201.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let start = self.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], None);
        assert_eq!(start.status, 202, "{}", start.text());
        let location = start.header("location");
        let done = self.call(
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            Some(data),
        );
        assert_eq!(done.status, 201, "{}", done.text());
        digest
    }

    fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Reply {
        self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            Some(manifest),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl From<ureq::Response> for Reply {
    fn from(response: ureq::Response) -> Reply {
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .map(|name| {
                let value = response.header(&name).unwrap_or_default().to_owned();
                (name.to_lowercase(), value)
            })
            .collect();
        let mut body = Vec::new();
        response.into_reader().read_to_end(&mut body).unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }
}

impl Reply {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    /// The first error code of a spec error body.
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image manifest over blobs already pushed.
fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    extra: Value,
) -> Vec<u8> {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": layers.iter().map(|(digest, size)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size
        })).collect::<Vec<_>>(),
    });
    if let (Some(manifest), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
        manifest.extend(extra.clone());
    }
    serde_json::to_vec(&manifest).unwrap()
}

/// Sends a hand-written request (ignoring a server that stops reading early) and returns the
/// response head and whatever body arrived.
fn raw_request(port: u16, head: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut response = vec![0; 4096];
    let mut filled = 0;
    while let Ok(read) = stream.read(&mut response[filled..]) {
        if read == 0 || filled + read == response.len() {
            filled += read;
            break;
        }
        filled += read;
        if response[..filled].windows(4).any(|w| w == b"\r\n\r\n")
            && response[..filled].ends_with(b"}")
        {
            break;
        }
    }
    String::from_utf8_lossy(&response[..filled]).into_owned()
}

fn blob_files(root: &Path) -> Vec<String> {
    if let Some(names) = s3_blob_names() {
        return names;
    }
    let dir = root.join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    (dir, root)
}

#[test]
fn registry_ping_health_and_metrics() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let ping = server.get("/v2/");
    assert_eq!(ping.status, 200);
    assert_eq!(
        ping.header("docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/v2/x/unknown-endpoint").status, 404);
    // A streamed (chunked) request body is counted as it passes.
    let location = server
        .call("POST", "/v2/m/blobs/uploads/", &[], None)
        .header("location");
    let streamed =
        ureq::patch(&server.url(&location)).send(std::io::Cursor::new(vec![7u8; 100_000]));
    assert_eq!(streamed.unwrap().status(), 202);
    let metrics = server.get("/metrics").text();
    let received: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("strata_registry_http_request_bytes_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(received >= 100_000, "{metrics}");
    assert!(
        metrics.contains("strata_registry_http_requests_total{method=\"GET\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_registry_http_response_bytes_total"),
        "{metrics}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("format")).unwrap().trim(),
        "strata-registry-storage 1"
    );
    server.stop();
}

#[test]
fn registry_serve_reads_a_config_file_and_logs_requests() {
    let (dir, root) = temp_root();
    let port = free_port();
    let config = dir.path().join("registry.json");
    let settings = json!({"addr": format!("127.0.0.1:{port}"), "root": root});
    std::fs::write(&config, settings.to_string()).unwrap();
    let server = Server::launch(&root, port, &["--config", config.to_str().unwrap()]);
    assert!(root.join("format").is_file());
    // STRATA_ROOT (the image store) never becomes the registry root.
    assert!(!root.with_extension("store").join("format").exists());
    assert_eq!(
        server.get("/v2/_catalog").json(),
        json!({"repositories": []})
    );
    let log = server.log_text();
    assert!(log.contains("registry listening"), "{log}");
    assert!(log.contains("/v2/_catalog"), "{log}");
    server.stop();
}

/// A Distribution-style YAML config: the storage section of the thread's backend (the
/// filesystem under `root`, or the S3 bucket with uploads staged under `root`).
fn yaml_config(port: u16, root: &Path, extra: &str) -> String {
    let storage = match s3_storage_config() {
        Some(s3) => {
            let s3 = &s3["s3"];
            format!(
                "  s3:\n    bucket: {}\n    regionendpoint: {}\n    region: us-east-1\n    \
                 accesskey: testing\n    secretkey: testing\n    rootdirectory: /{}\n    \
                 uploaddirectory: {}\n",
                s3["bucket"].as_str().unwrap(),
                s3["endpoint"].as_str().unwrap(),
                s3["prefix"].as_str().unwrap(),
                root.display()
            )
        }
        None => format!("  filesystem:\n    rootdirectory: {}\n", root.display()),
    };
    format!(
        "version: 0.1\nlog:\n  level: info\n  fields:\n    service: registry\nstorage:\n\
         {storage}{extra}http:\n  addr: 127.0.0.1:{port}\n  headers:\n    \
         X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\n"
    )
}

/// Pushes a one-layer image as `repo:tag`; returns the manifest and its digest.
fn push_small_image(server: &Server, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
    let config_digest = server.push_blob(repo, b"{}");
    let layer_digest = server.push_blob(repo, layer);
    let manifest = image_manifest(
        &config_digest,
        2,
        &[(&layer_digest, layer.len())],
        json!({}),
    );
    let reply = server.push_manifest(repo, tag, OCI_MANIFEST, &manifest);
    assert_eq!(reply.status, 201, "{}", reply.text());
    (manifest, reply.header("docker-content-digest"))
}

#[test]
fn registry_yaml_config_in_distribution_format() {
    let (dir, root) = temp_root();
    // As Distribution reads it: delete enabled, settings strata ignores are warned about.
    let port = free_port();
    let config = dir.path().join("config.yml");
    let extra = "  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n";
    std::fs::write(&config, yaml_config(port, &root, extra)).unwrap();
    let server = Server::launch(&root, port, &["--config", config.to_str().unwrap()]);
    let log = server.log_text();
    for ignored in ["health", "log.fields", "storage.cache", "http.headers"] {
        assert!(
            log.contains(&format!("config: {ignored}: a Distribution setting")),
            "{log}"
        );
    }
    let (manifest, digest) = push_small_image(&server, "yaml/app", "v1", b"layer");
    assert_eq!(server.get("/v2/yaml/app/manifests/v1").body, manifest);
    let deleted = server.call(
        "DELETE",
        &format!("/v2/yaml/app/manifests/{digest}"),
        &[],
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    server.stop();

    // Without `storage.delete`, Distribution refuses deletes: so does strata.
    let port = free_port();
    std::fs::write(&config, yaml_config(port, &root, "")).unwrap();
    let server = Server::launch(&root, port, &["--config", config.to_str().unwrap()]);
    let (_, digest) = push_small_image(&server, "yaml/app", "v2", b"layer two");
    let layer = sha256(b"layer two");
    for path in [
        format!("/v2/yaml/app/manifests/{digest}"),
        "/v2/yaml/app/manifests/v2".to_owned(),
        format!("/v2/yaml/app/blobs/{layer}"),
    ] {
        let refused = server.call("DELETE", &path, &[], None);
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (405, "UNSUPPORTED"),
            "{path}"
        );
    }
    assert_eq!(server.get("/v2/yaml/app/manifests/v2").status, 200);
    // An upload can still be cancelled.
    let location = server
        .call("POST", "/v2/yaml/app/blobs/uploads/", &[], None)
        .header("location");
    assert_eq!(server.call("DELETE", &location, &[], None).status, 204);
    server.stop();

    // A misspelt key is an error naming it, before anything listens.
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        yaml_config(free_port(), &root, "").replace("rootdirectory", "rootdir"),
    )
    .unwrap();
    let std::process::Output { status, stderr, .. } = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["registry", "serve", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(!status.success());
    assert!(
        stderr.contains("bad.yml") && stderr.contains("unknown field `rootdir`"),
        "{stderr}"
    );
}

#[test]
fn registry_read_only_mode_serves_pulls_and_refuses_writes() {
    let (dir, root) = temp_root();
    let server = Server::start(&root);
    let (manifest, digest) = push_small_image(&server, "ro/app", "v1", b"read-only layer");
    let pending = server
        .call("POST", "/v2/ro/app/blobs/uploads/", &[], None)
        .header("location");
    server.stop();

    // The flag, then Distribution's maintenance setting in a YAML config.
    let port = free_port();
    let config = dir.path().join("ro.yml");
    let extra =
        "  delete:\n    enabled: true\n  maintenance:\n    readonly:\n      enabled: true\n";
    std::fs::write(&config, yaml_config(port, &root, extra)).unwrap();
    let servers = [
        Server::start_with(&root, &["--read-only"]),
        Server::launch(&root, port, &["--config", config.to_str().unwrap()]),
    ];
    for server in servers {
        assert_eq!(server.get("/v2/ro/app/manifests/v1").body, manifest);
        let layer = sha256(b"read-only layer");
        assert_eq!(
            server.get(&format!("/v2/ro/app/blobs/{layer}")).body,
            b"read-only layer"
        );
        assert_eq!(server.get("/v2/ro/app/tags/list").status, 200);
        assert_eq!(server.get(&pending).status, 204);
        let blob = sha256(b"new");
        let refused: [(&str, String, Option<&[u8]>); 8] = [
            ("POST", "/v2/ro/app/blobs/uploads/".to_owned(), None),
            (
                "POST",
                format!("/v2/ro/app/blobs/uploads/?digest={blob}"),
                Some(b"new"),
            ),
            (
                "POST",
                format!("/v2/ro/other/blobs/uploads/?mount={layer}&from=ro/app"),
                None,
            ),
            ("PATCH", pending.clone(), Some(b"more")),
            ("PUT", format!("{pending}?digest={blob}"), Some(b"new")),
            ("DELETE", pending.clone(), None),
            ("PUT", "/v2/ro/app/manifests/v2".to_owned(), Some(&manifest)),
            ("DELETE", format!("/v2/ro/app/manifests/{digest}"), None),
        ];
        for (method, path, body) in refused {
            let reply = server.call(method, &path, &[("Content-Type", OCI_MANIFEST)], body);
            assert_eq!(
                (reply.status, reply.error_code().as_str()),
                (405, "UNSUPPORTED"),
                "{method} {path}"
            );
            assert_eq!(reply.header("allow"), "GET, HEAD");
        }
        assert_eq!(server.get("/v2/ro/other/tags/list").status, 404);
        assert!(
            server.get("/v2/ro/app/tags/list").json()["tags"]
                .as_array()
                .unwrap()
                .len()
                == 1
        );
        server.stop();
    }
    // Writable again: the pending upload was kept.
    let server = Server::start(&root);
    assert_eq!(server.call("DELETE", &pending, &[], None).status, 204);
    server.stop();
}

#[test]
fn registry_serves_tls_to_curl_and_skopeo() {
    if !have("openssl", &["version"]) || !have("curl", &["--version"]) {
        return;
    }
    let (dir, root) = temp_root();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    run_tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::launch(
        &root,
        port,
        &[
            "--addr",
            &addr,
            "--root",
            root.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{addr}/v2/");
    // HTTP/2 is negotiated by ALPN when the client offers it; HTTP/1.1 otherwise.
    for (flag, expected) in [("--http2", "200 2"), ("--http1.1", "200 1.1")] {
        let answer = run_tool(
            "curl",
            &[
                "-sS",
                flag,
                "--cacert",
                cert.to_str().unwrap(),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                &url,
            ],
        );
        assert_eq!(answer, expected, "curl {flag}");
    }
    // Plain HTTP to the TLS port gets no registry answer.
    assert!(ureq::get(&server.url("/v2/")).call().is_err());

    if have("skopeo", &["--version"]) {
        let certs = dir.path().join("certs.d");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
        let source = dir.path().join("source");
        let manifest_digest = write_oci_layout(&source, "v1");
        run_tool(
            "skopeo",
            &[
                "copy",
                "--dest-cert-dir",
                certs.to_str().unwrap(),
                "--preserve-digests",
                &format!("oci:{}:v1", source.display()),
                &format!("docker://{addr}/tls/image:v1"),
            ],
        );
        let inspected = run_tool(
            "skopeo",
            &[
                "inspect",
                "--cert-dir",
                certs.to_str().unwrap(),
                &format!("docker://{addr}/tls/image:v1"),
            ],
        );
        assert!(inspected.contains(&manifest_digest), "{inspected}");
    }
    server.stop();
}

#[test]
fn registry_basic_auth_with_htpasswd_and_docker_login() {
    let (dir, root) = temp_root();
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["registry", "passwd", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        passwd.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    }
    let output = passwd.wait_with_output().unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    assert!(line.starts_with("alice:$2"), "{line}");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, &line).unwrap();

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::launch(
        &root,
        port,
        &[
            "--addr",
            &addr,
            "--root",
            root.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
        ],
    );
    let refused = server.get("/v2/");
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(
        refused.header("www-authenticate"),
        "Basic realm=\"strata-registry\""
    );
    // "alice:s3cret" and "alice:wrong" in base64.
    let good = [("Authorization", "Basic YWxpY2U6czNjcmV0")];
    let bad = [("Authorization", "Basic YWxpY2U6d3Jvbmc=")];
    assert_eq!(server.call("GET", "/v2/", &bad, None).status, 401);
    assert_eq!(server.call("GET", "/v2/", &good, None).status, 200);
    assert_eq!(server.call("GET", "/v2/_catalog", &good, None).status, 200);
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/v2/_catalog").status, 401);

    if have("docker", &["info"]) {
        let config = dir.path().join("docker-config");
        let config = config.to_str().unwrap();
        let mut login = Command::new("docker")
            .args([
                "--config",
                config,
                "login",
                "-u",
                "alice",
                "--password-stdin",
                &addr,
            ])
            .stdin(Stdio::piped())
            .output_with_stdin(b"s3cret");
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
        login = Command::new("docker")
            .args([
                "--config",
                config,
                "login",
                "-u",
                "alice",
                "--password-stdin",
                &addr,
            ])
            .stdin(Stdio::piped())
            .output_with_stdin(b"wrong");
        assert!(!login.status.success());
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "auth", &b"auth"[..])
            .unwrap();
        let tarball = dir.path().join("auth.tar");
        std::fs::write(&tarball, builder.into_inner().unwrap()).unwrap();
        let image = format!("{addr}/auth/image:v1");
        run_tool("docker", &["import", tarball.to_str().unwrap(), &image]);
        run_tool("docker", &["--config", config, "push", &image]);
        run_tool("docker", &["rmi", &image]);
        let tags = server.call("GET", "/v2/auth/image/tags/list", &good, None);
        assert_eq!(tags.json()["tags"], json!(["v1"]));
    }
    server.stop();
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

#[test]
fn registry_pull_through_cache_fills_from_an_authenticated_upstream() {
    let (dir, upstream_root) = temp_root();
    let htpasswd = dir.path().join("htpasswd");
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["registry", "passwd", "mirror"])
        .stdin(Stdio::piped())
        .output_with_stdin(b"s3cret");
    assert!(passwd.status.success());
    std::fs::write(&htpasswd, std::mem::take(&mut passwd.stdout)).unwrap();
    let upstream_port = free_port();
    let upstream_addr = format!("127.0.0.1:{upstream_port}");
    let upstream = Server::launch(
        &upstream_root,
        upstream_port,
        &[
            "--addr",
            &upstream_addr,
            "--root",
            upstream_root.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
        ],
    );
    let auth = [("Authorization", "Basic bWlycm9yOnMzY3JldA==")]; // mirror:s3cret
    let layer = b"layer served through the cache".to_vec();
    let mut digests = Vec::new();
    for blob in [&b"{}"[..], &layer] {
        let digest = sha256(blob);
        let path = format!("/v2/library/app/blobs/uploads/?digest={digest}");
        assert_eq!(upstream.call("POST", &path, &auth, Some(blob)).status, 201);
        digests.push(digest);
    }
    let manifest = image_manifest(&digests[0], 2, &[(&digests[1], layer.len())], json!({}));
    let manifest_digest = sha256(&manifest);
    let put = upstream.call(
        "PUT",
        "/v2/library/app/manifests/v1",
        &[auth[0], ("Content-Type", OCI_MANIFEST)],
        Some(&manifest),
    );
    assert_eq!(put.status, 201);

    let cache_root = dir.path().join("cache");
    let cache_port = free_port();
    let cache_addr = format!("127.0.0.1:{cache_port}");
    let upstream_url = format!("http://{upstream_addr}");
    let cache = Server::launch_env(
        &cache_root,
        cache_port,
        &[
            "--addr",
            &cache_addr,
            "--root",
            cache_root.to_str().unwrap(),
            "--proxy-remote",
            &upstream_url,
            "--proxy-username",
            "mirror",
        ],
        &[("STRATA_PROXY_PASSWORD", "s3cret")],
    );
    let got = cache.get("/v2/library/app/manifests/v1");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, manifest);
    assert_eq!(got.header("docker-content-digest"), manifest_digest);
    assert_eq!(got.header("content-type"), OCI_MANIFEST);
    assert_eq!(
        cache
            .get(&format!("/v2/library/app/blobs/{}", digests[1]))
            .body,
        layer
    );
    let head = cache.call(
        "HEAD",
        &format!("/v2/library/app/blobs/{}", digests[0]),
        &[],
        None,
    );
    assert_eq!(head.status, 200);
    assert_eq!(cache.get("/v2/library/app/manifests/missing").status, 404);
    assert_eq!(
        cache
            .get(&format!("/v2/library/app/blobs/{}", sha256(b"none")))
            .status,
        404
    );

    // Upstream gone: the cache still serves what it fetched.
    upstream.stop();
    assert_eq!(cache.get("/v2/library/app/manifests/v1").body, manifest);
    assert_eq!(
        cache
            .get(&format!("/v2/library/app/manifests/{manifest_digest}"))
            .body,
        manifest
    );
    assert_eq!(
        cache
            .get(&format!("/v2/library/app/blobs/{}", digests[1]))
            .body,
        layer
    );
    assert_eq!(blob_files(&cache_root).len(), 3);
    cache.stop();
}

/// strata's `proxy.upstreams`: one cache in front of two registries, each under a namespace
/// (`one/<name>` is `<name>` on the first, `mirrors/two/<name>` on the second); other
/// repositories are local only.
/// A pull-through cache serves a blob larger than one download chunk (512 KiB) through the
/// filesystem's download path: whole and ranged (offsets off chunk and page edges), with the
/// same length and digest headers as the upstream, and still after the upstream is gone.
#[test]
fn registry_pull_through_cache_serves_large_blobs_and_ranges() {
    let (dir, upstream_root) = temp_root();
    let upstream = Server::start(&upstream_root);
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&data);
    let path = format!("/v2/lib/big/blobs/uploads/?digest={digest}");
    assert_eq!(upstream.call("POST", &path, &[], Some(&data)).status, 201);

    let cache_root = dir.path().join("cache");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let upstream_url = upstream.url("");
    let cache = Server::launch(
        &cache_root,
        port,
        &[
            "--addr",
            &addr,
            "--root",
            cache_root.to_str().unwrap(),
            "--proxy-remote",
            &upstream_url,
        ],
    );
    let blob = format!("/v2/lib/big/blobs/{digest}");
    let whole = cache.get(&blob);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert!(whole.body == data);
    assert_eq!(whole.header("docker-content-digest"), digest);
    assert_eq!(whole.header("content-length"), data.len().to_string());
    upstream.stop();
    for (first, last) in [
        (1001, 1_200_000),
        (524_287, 524_288),
        (0, 4095),
        (1_499_999, 1_499_999),
    ] {
        let range = format!("bytes={first}-{last}");
        let part = cache.call("GET", &blob, &[("Range", &range)], None);
        assert_eq!(part.status, 206, "{range}");
        assert!(part.body == data[first..=last], "{range}");
        assert_eq!(
            part.header("content-range"),
            format!("bytes {first}-{last}/{}", data.len())
        );
        assert_eq!(part.header("docker-content-digest"), digest);
    }
    assert!(cache.get(&blob).body == data);
    cache.stop();
}

#[test]
fn registry_pull_through_cache_by_namespace_from_two_upstreams() {
    let (dir, cache_root) = temp_root();
    let one = Server::start(&dir.path().join("one"));
    let two = Server::start(&dir.path().join("two"));
    let (manifest_one, _) = push_small_image(&one, "lib/app", "v1", b"layer from one");
    let (manifest_two, _) = push_small_image(&two, "lib/app", "v1", b"layer from two");
    let port = free_port();
    let config = dir.path().join("cache.yml");
    let yaml = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: \
         127.0.0.1:{port}\nproxy:\n  upstreams:\n    - namespace: one\n      remoteurl: {}\n    \
         - namespace: mirrors/two\n      remoteurl: {}\n",
        cache_root.display(),
        one.url(""),
        two.url("")
    );
    std::fs::write(&config, yaml).unwrap();
    let cache = Server::launch(&cache_root, port, &["--config", config.to_str().unwrap()]);
    assert_eq!(cache.get("/v2/one/lib/app/manifests/v1").body, manifest_one);
    assert_eq!(
        cache.get("/v2/mirrors/two/lib/app/manifests/v1").body,
        manifest_two
    );
    let (layer_one, layer_two) = (sha256(b"layer from one"), sha256(b"layer from two"));
    assert_eq!(
        cache
            .get(&format!("/v2/one/lib/app/blobs/{layer_one}"))
            .body,
        b"layer from one"
    );
    assert_eq!(
        cache
            .get(&format!("/v2/mirrors/two/lib/app/blobs/{layer_two}"))
            .body,
        b"layer from two"
    );
    // Each namespace reaches only its own upstream; other names reach none.
    assert_eq!(
        cache
            .get(&format!("/v2/one/lib/app/blobs/{layer_two}"))
            .status,
        404
    );
    assert_eq!(cache.get("/v2/lib/app/manifests/v1").status, 404);
    assert_eq!(cache.get("/v2/mirrors/lib/app/manifests/v1").status, 404);
    let (local, _) = push_small_image(&cache, "local/app", "v1", b"local layer");
    assert_eq!(cache.get("/v2/local/app/manifests/v1").body, local);
    // The cached copy outlives its upstream.
    one.stop();
    assert_eq!(cache.get("/v2/one/lib/app/manifests/v1").body, manifest_one);
    assert_eq!(
        cache
            .get(&format!("/v2/one/lib/app/blobs/{layer_one}"))
            .body,
        b"layer from one"
    );
    cache.stop();
    two.stop();
}

/// CNCF Distribution (Debian's `docker-registry`) as a pull-through cache's upstream, with its
/// access log kept so a test can count the requests the cache sent; killed on drop.
struct Distribution {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    syncs: std::cell::Cell<u32>,
}

const DISTRIBUTION: &str = "/usr/bin/docker-registry";

impl Distribution {
    /// Serves storage under `dir`; `None` (skip) when the binary is missing.
    fn start(dir: &Path) -> Option<Distribution> {
        if !Path::new(DISTRIBUTION).exists() {
            assert!(
                !peers_required(),
                "{DISTRIBUTION} is required (STRATA_REQUIRE_PEERS=1): apt-get install docker-registry"
            );
            eprintln!("skipping: {DISTRIBUTION} not installed");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: \
                 {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        // The access log (one line per request) goes to stdout, the rest to stderr.
        let log = dir.join("distribution.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(DISTRIBUTION)
            .args(["serve", config.to_str().unwrap()])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let registry = Distribution {
            child: Some(child),
            port,
            log,
            syncs: std::cell::Cell::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&registry.url("/v2/")).call().is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Monolithic upload: POST, then PUT to the (absolute, already query-carrying) location.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let start = ureq::post(&self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .call()
            .unwrap();
        assert_eq!(start.status(), 202);
        let location = start.header("location").unwrap().to_owned();
        let done = ureq::put(&format!("{location}&digest={digest}"))
            .send_bytes(data)
            .unwrap();
        assert_eq!(done.status(), 201);
        digest
    }

    /// Pushes a one-layer image as `repo:tag`; returns the manifest and its digest.
    fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
        let config = self.push_blob(repo, b"{}");
        let layer_digest = self.push_blob(repo, layer);
        let manifest = image_manifest(&config, 2, &[(&layer_digest, layer.len())], json!({}));
        let put = ureq::put(&self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .set("Content-Type", OCI_MANIFEST)
            .send_bytes(&manifest)
            .unwrap();
        assert_eq!(put.status(), 201);
        let digest = sha256(&manifest);
        (manifest, digest)
    }

    /// How many `METHOD PATH` requests the access log shows, once it holds every request
    /// answered so far (a marker request of our own is in it).
    fn requests(&self, method: &str, path: &str) -> usize {
        self.syncs.set(self.syncs.get() + 1);
        let marker = format!("/v2/?sync={}", self.syncs.get());
        ureq::get(&self.url(&marker)).call().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(&format!("\"GET {marker} HTTP/1.1\"")) {
                let line = format!("\"{method} {path} HTTP/1.1\"");
                return log.matches(&line).count();
            }
            assert!(
                Instant::now() < deadline,
                "no access log line for {marker}: {}",
                log.lines()
                    .filter(|l| !l.starts_with("time="))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tag is served from the cache without asking upstream within its TTL (`proxy.tagttl`, or a
/// namespace's own `tagttl`), checked with a HEAD after it (a GET only when it changed upstream),
/// and served from the cache when upstream no longer has it or is down. Distribution's access
/// log counts what the cache asked.
#[test]
fn registry_pull_through_cache_rechecks_tags_with_head_after_the_ttl() {
    let (dir, cache_root) = temp_root();
    let Some(upstream) = Distribution::start(&dir.path().join("upstream")) else {
        return;
    };
    let (first, first_digest) = upstream.push_image("library/app", "v1", b"first layer");
    let port = free_port();
    let config = dir.path().join("cache.yml");
    let proxy = format!(
        "proxy:\n  tagttl: 1h\n  upstreams:\n    - {{namespace: long, remoteurl: \"{url}\"}}\n    \
         - {{namespace: short, remoteurl: \"{url}\", tagttl: 1s}}\n",
        url = upstream.url("")
    );
    std::fs::write(&config, yaml_config(port, &cache_root, &proxy)).unwrap();
    let cache = Server::launch(&cache_root, port, &["--config", config.to_str().unwrap()]);
    assert!(
        !cache.log_text().contains("config: proxy"),
        "{}",
        cache.log_text()
    );
    let tag = "/v2/library/app/manifests/v1";
    let pull = |namespace: &str| {
        let reply = cache.get(&format!("/v2/{namespace}/library/app/manifests/v1"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        (reply.body.clone(), reply.header("docker-content-digest"))
    };
    let past_ttl = || std::thread::sleep(Duration::from_millis(1200));

    // (a) Within the TTL: one GET upstream, then nothing, for GETs and HEADs alike.
    assert_eq!(pull("long"), (first.clone(), first_digest.clone()));
    assert_eq!(pull("long").0, first);
    let head = cache.call("HEAD", "/v2/long/library/app/manifests/v1", &[], None);
    assert_eq!(head.header("docker-content-digest"), first_digest);
    assert_eq!(upstream.requests("GET", tag), 1);
    assert_eq!(upstream.requests("HEAD", tag), 0);

    // (b) After the TTL an unchanged tag costs a HEAD, no GET.
    assert_eq!(pull("short").0, first);
    assert_eq!(upstream.requests("GET", tag), 2);
    past_ttl();
    assert_eq!(pull("short").0, first);
    assert_eq!(upstream.requests("HEAD", tag), 1);
    assert_eq!(upstream.requests("GET", tag), 2);

    // (c) Pushed again upstream: after the TTL the HEAD sees the new digest and it is fetched;
    // the long-TTL namespace keeps serving what it checked, without asking.
    let (second, second_digest) = upstream.push_image("library/app", "v1", b"second layer");
    assert_ne!(second_digest, first_digest);
    past_ttl();
    assert_eq!(pull("short"), (second.clone(), second_digest.clone()));
    assert_eq!(upstream.requests("HEAD", tag), 2);
    assert_eq!(upstream.requests("GET", tag), 3);
    assert_eq!(pull("long").0, first);
    assert_eq!(upstream.requests("HEAD", tag), 2);
    assert_eq!(upstream.requests("GET", tag), 3);
    let layer = cache.get(&format!(
        "/v2/short/library/app/blobs/{}",
        sha256(b"second layer")
    ));
    assert_eq!(layer.body, b"second layer");

    // A tag gone upstream (its manifest deleted there): the cached copy is still served.
    let delete = ureq::delete(&upstream.url(&format!("/v2/library/app/manifests/{second_digest}")))
        .call()
        .unwrap();
    assert_eq!(delete.status(), 202);
    past_ttl();
    assert_eq!(pull("short"), (second.clone(), second_digest.clone()));
    assert_eq!(upstream.requests("HEAD", tag), 3);
    assert_eq!(upstream.requests("GET", tag), 3);
    assert!(cache.log_text().contains("tag no longer upstream"));

    // (d) Upstream down: both namespaces serve their cached tags.
    upstream.stop();
    past_ttl();
    assert_eq!(pull("short"), (second, second_digest));
    assert_eq!(pull("long"), (first, first_digest));
    assert!(cache.log_text().contains("upstream tag check: "));
    cache.stop();
}

/// Deterministic bytes that do not compress or repeat.
fn noise(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size + 32);
    let mut block = Sha256::digest([seed]).to_vec();
    while bytes.len() < size {
        block = Sha256::digest(&block).to_vec();
        bytes.extend_from_slice(&block);
    }
    bytes.truncate(size);
    bytes
}

/// A large blob is fetched once upstream however many clients ask at the same time, streamed
/// to one of them while it is cached, and served from the cache once upstream is gone; ranges
/// and HEADs on blobs not cached yet are answered too.
#[test]
fn registry_pull_through_cache_streams_large_blobs_once() {
    let (dir, cache_root) = temp_root();
    let Some(upstream) = Distribution::start(&dir.path().join("upstream")) else {
        return;
    };
    let large = noise(12 << 20, 1);
    let ranged = noise(3 << 20, 2);
    let headed = noise(2 << 20, 3);
    let large_digest = upstream.push_blob("lib/app", &large);
    let ranged_digest = upstream.push_blob("lib/app", &ranged);
    let headed_digest = upstream.push_blob("lib/app", &headed);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cache = Server::launch(
        &cache_root,
        port,
        &[
            "--addr",
            &addr,
            "--root",
            cache_root.to_str().unwrap(),
            "--proxy-remote",
            &upstream.url(""),
            "--proxy-tag-ttl",
            "10m",
        ],
    );
    assert!(
        cache.log_text().contains("tag ttl 600s"),
        "{}",
        cache.log_text()
    );

    let blob_path = format!("/v2/lib/app/blobs/{large_digest}");
    let url = cache.url(&blob_path);
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let response = ureq::get(&url).call().unwrap();
                let mut body = Vec::new();
                response.into_reader().read_to_end(&mut body).unwrap();
                sha256(&body)
            })
        })
        .collect();
    for pull in pulls {
        assert_eq!(pull.join().unwrap(), large_digest);
    }
    assert_eq!(upstream.requests("GET", &blob_path), 1);
    assert!(
        cache
            .log_text()
            .contains("streaming blob from upstream while caching it"),
        "{}",
        cache.log_text()
    );

    let range = cache.call(
        "GET",
        &format!("/v2/lib/app/blobs/{ranged_digest}"),
        &[("Range", "bytes=1048576-1048675")],
        None,
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.body, &ranged[1 << 20..(1 << 20) + 100]);
    let head = cache.call(
        "HEAD",
        &format!("/v2/lib/app/blobs/{headed_digest}"),
        &[],
        None,
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), (2 << 20).to_string());
    // What the HEAD started is fetched once, whether the next GET streams it or waits for it.
    assert_eq!(
        sha256(
            &cache
                .get(&format!("/v2/lib/app/blobs/{headed_digest}"))
                .body
        ),
        headed_digest
    );
    assert_eq!(
        upstream.requests("GET", &format!("/v2/lib/app/blobs/{headed_digest}")),
        1
    );

    upstream.stop();
    assert_eq!(sha256(&cache.get(&blob_path).body), large_digest);
    assert_eq!(
        sha256(
            &cache
                .get(&format!("/v2/lib/app/blobs/{ranged_digest}"))
                .body
        ),
        ranged_digest
    );
    let cached = blob_files(&cache_root);
    for digest in [&large_digest, &ranged_digest, &headed_digest] {
        assert!(
            cached.contains(&digest[7..].to_owned()),
            "{digest} in {cached:?}"
        );
    }
    cache.stop();
}

/// A hand-written upstream for what Distribution does not do on demand: it serves `blobs`
/// (path -> bytes, which need not match the digest in the path), and holds the body of
/// `paused` after its first half until [`ScriptedUpstream::release`]. Logs `METHOD PATH`.
struct ScriptedUpstream {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    release: std::sync::mpsc::Sender<()>,
    /// Whether the paused body was sent on because nobody released it in time.
    gave_up: Arc<std::sync::atomic::AtomicBool>,
}

impl ScriptedUpstream {
    fn start(blobs: HashMap<String, Vec<u8>>, paused: &str) -> ScriptedUpstream {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let gave_up: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let (blobs, paused) = (Arc::new(blobs), paused.to_owned());
        let (served, waited) = (log.clone(), gave_up.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (blobs, paused, served, waited, released) = (
                    blobs.clone(),
                    paused.clone(),
                    served.clone(),
                    waited.clone(),
                    released.clone(),
                );
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    reader.read_line(&mut request).unwrap();
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let mut parts = request.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let path = parts.next().unwrap_or_default().to_owned();
                    served.lock().unwrap().push(format!("{method} {path}"));
                    let Some(body) = blobs.get(&path) else {
                        let _ = stream.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: \
                         application/octet-stream\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    if method != "GET" {
                        return;
                    }
                    if path == paused {
                        let half = body.len() / 2;
                        stream.write_all(&body[..half]).unwrap();
                        stream.flush().unwrap();
                        let wait = released
                            .lock()
                            .unwrap()
                            .recv_timeout(Duration::from_secs(60));
                        if wait.is_err() {
                            waited.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        let _ = stream.write_all(&body[half..]);
                    } else {
                        let _ = stream.write_all(body);
                    }
                });
            }
        });
        ScriptedUpstream {
            port,
            log,
            release,
            gave_up,
        }
    }

    fn requests(&self, line: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }
}

/// The first pull of a large blob gets its first bytes while upstream has not sent the rest
/// yet (upstream waits for the client to have them; no timing involved), and the cache keeps
/// the blob. A blob whose bytes do not match its digest is not cached, and the client's body
/// ends in an error instead of completing.
#[test]
fn registry_pull_through_cache_streams_before_upstream_finishes_and_refuses_bad_bytes() {
    let (_dir, cache_root) = temp_root();
    let good = noise(4 << 20, 4);
    let good_digest = sha256(&good);
    let bad_large_digest = sha256(&noise(3 << 20, 5));
    let mut bad_large = noise(3 << 20, 5);
    bad_large[2 << 20] ^= 0xff;
    let bad_small_digest = sha256(b"small blob");
    let path = |digest: &str| format!("/v2/lib/app/blobs/{digest}");
    let upstream = ScriptedUpstream::start(
        HashMap::from([
            (path(&good_digest), good.clone()),
            (path(&bad_large_digest), bad_large),
            (path(&bad_small_digest), b"small blub".to_vec()),
        ]),
        &path(&good_digest),
    );
    let cache = Server::start_with(
        &cache_root,
        &[
            "--proxy-remote",
            &format!("http://127.0.0.1:{}", upstream.port),
        ],
    );

    let response = ureq::get(&cache.url(&path(&good_digest))).call().unwrap();
    assert_eq!(response.header("content-length"), Some("4194304"));
    let mut reader = response.into_reader();
    let mut body = vec![0; 256 << 10];
    reader.read_exact(&mut body).unwrap();
    upstream.release.send(()).unwrap();
    reader.read_to_end(&mut body).unwrap();
    assert!(
        !upstream.gave_up.load(std::sync::atomic::Ordering::SeqCst),
        "the client got no bytes before upstream sent the whole blob"
    );
    assert_eq!(sha256(&body), good_digest);
    assert_eq!(sha256(&cache.get(&path(&good_digest)).body), good_digest);
    assert_eq!(upstream.requests(&format!("GET {}", path(&good_digest))), 1);
    assert!(blob_files(&cache_root).contains(&good_digest[7..].to_owned()));

    // Wrong bytes, streamed: the body is cut short of its length; nothing is kept.
    for attempt in 1..=2 {
        let response = ureq::get(&cache.url(&path(&bad_large_digest)))
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = Vec::new();
        let read = response.into_reader().read_to_end(&mut body);
        assert!(
            read.is_err(),
            "a complete body of wrong bytes ({} bytes)",
            body.len()
        );
        assert!(body.len() < 3 << 20);
        assert_eq!(
            upstream.requests(&format!("GET {}", path(&bad_large_digest))),
            attempt
        );
    }
    // Wrong bytes, small (fetched whole before answering): unknown.
    let small = cache.get(&path(&bad_small_digest));
    assert_eq!(small.status, 404);
    assert_eq!(small.error_code(), "BLOB_UNKNOWN");
    let cached = blob_files(&cache_root);
    assert!(!cached.contains(&bad_large_digest[7..].to_owned()));
    assert!(!cached.contains(&bad_small_digest[7..].to_owned()));
    assert!(cache.log_text().contains("upstream blob not cached"));
    cache.stop();
}

#[test]
fn registry_blob_uploads_monolithic_chunked_and_ranged_reads() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);

    // Single-POST monolithic upload.
    let small = b"hello registry".to_vec();
    let digest = sha256(&small);
    let created = server.call(
        "POST",
        &format!("/v2/a/b/blobs/uploads/?digest={digest}"),
        &[],
        Some(&small),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        created.header("location"),
        format!("/v2/a/b/blobs/{digest}")
    );
    assert_eq!(created.header("docker-content-digest"), digest);

    let got = server.get(&format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body, small);
    assert_eq!(got.header("docker-content-digest"), digest);
    let head = server.call("HEAD", &format!("/v2/a/b/blobs/{digest}"), &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), small.len().to_string());
    assert!(head.body.is_empty());

    // Ranges.
    let partial = server.call(
        "GET",
        &format!("/v2/a/b/blobs/{digest}"),
        &[("Range", "bytes=6-13")],
        None,
    );
    assert_eq!(partial.status, 206);
    assert_eq!(partial.body, b"registry");
    assert_eq!(
        partial.header("content-range"),
        format!("bytes 6-13/{}", small.len())
    );
    let beyond = server.call(
        "GET",
        &format!("/v2/a/b/blobs/{digest}"),
        &[("Range", "bytes=100-")],
        None,
    );
    assert_eq!(beyond.status, 416);

    // Chunked upload with status queries in between.
    let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let big_digest = sha256(&data);
    let start = server.call("POST", "/v2/a/b/blobs/uploads/", &[], None);
    assert_eq!(start.status, 202);
    assert_eq!(start.header("range"), "0-0");
    let id = start.header("docker-upload-uuid");
    let location = start.header("location");
    assert_eq!(location, format!("/v2/a/b/blobs/uploads/{id}"));
    let mut offset = 0;
    for chunk in data.chunks(400_000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let patched = server.call(
            "PATCH",
            &location,
            &[("Content-Range", &range)],
            Some(chunk),
        );
        assert_eq!(patched.status, 202, "{}", patched.text());
        offset += chunk.len();
        assert_eq!(patched.header("range"), format!("0-{}", offset - 1));
        let status = server.get(&location);
        assert_eq!(status.status, 204);
        assert_eq!(status.header("range"), format!("0-{}", offset - 1));
    }
    let done = server.call(
        "PUT",
        &format!("{location}?digest={big_digest}"),
        &[],
        Some(b""),
    );
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(
        server.get(&format!("/v2/a/b/blobs/{big_digest}")).body,
        data
    );
    // A finished upload is gone.
    assert_eq!(server.get(&location).error_code(), "BLOB_UPLOAD_UNKNOWN");

    // Cancel.
    let start = server.call("POST", "/v2/a/b/blobs/uploads/", &[], None);
    let location = start.header("location");
    assert_eq!(server.call("DELETE", &location, &[], None).status, 204);
    assert_eq!(server.get(&location).status, 404);

    // Blob delete unlinks from the repository.
    assert_eq!(
        server
            .call("DELETE", &format!("/v2/a/b/blobs/{digest}"), &[], None)
            .status,
        202
    );
    let gone = server.get(&format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(
        (gone.status, gone.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
    assert!(
        std::fs::read_dir(root.join("uploads"))
            .unwrap()
            .next()
            .is_none()
    );
    server.stop();
}

#[test]
fn registry_out_of_order_chunk_is_416() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let start = server.call("POST", "/v2/chunks/blobs/uploads/", &[], None);
    let location = start.header("location");
    let first = server.call(
        "PATCH",
        &location,
        &[("Content-Range", "0-3")],
        Some(b"abcd"),
    );
    assert_eq!(first.status, 202);
    let skipped = server.call(
        "PATCH",
        &location,
        &[("Content-Range", "10-13")],
        Some(b"efgh"),
    );
    assert_eq!(skipped.status, 416, "{}", skipped.text());
    assert_eq!(skipped.header("range"), "0-3");
    let repeated = server.call(
        "PATCH",
        &location,
        &[("Content-Range", "0-3")],
        Some(b"abcd"),
    );
    assert_eq!(repeated.status, 416);
    let next = server.call(
        "PATCH",
        &location,
        &[("Content-Range", "4-7")],
        Some(b"efgh"),
    );
    assert_eq!(next.status, 202);
    // The last chunk may ride on the PUT, placed by its Content-Range like a PATCH.
    let digest = sha256(b"abcdefghij");
    let finish = format!("{location}?digest={digest}");
    let misplaced = server.call("PUT", &finish, &[("Content-Range", "9-10")], Some(b"ij"));
    assert_eq!(misplaced.status, 416);
    let done = server.call("PUT", &finish, &[("Content-Range", "8-9")], Some(b"ij"));
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(
        server.get(&format!("/v2/chunks/blobs/{digest}")).body,
        b"abcdefghij"
    );
    server.stop();
}

#[test]
fn registry_upload_cut_mid_chunk_keeps_what_arrived_and_resumes() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let location = server
        .call("POST", "/v2/cut/blobs/uploads/", &[], None)
        .header("location");
    {
        // Announce 1 MiB, send 300 000 bytes, hang up.
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let head =
            format!("PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&vec![b'a'; 300_000]).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    // The server notices the cut; whatever reached the file counts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let offset = loop {
        let status = server.get(&location);
        assert_eq!(status.status, 204);
        let range = status.header("range");
        let end: u64 = range.trim_start_matches("0-").parse().unwrap();
        if end + 1 >= 300_000 || Instant::now() > deadline {
            break end + 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(offset, 300_000);
    let rest = vec![b'b'; 5_000];
    let range = format!("{offset}-{}", offset + 4_999);
    assert_eq!(
        server
            .call(
                "PATCH",
                &location,
                &[("Content-Range", &range)],
                Some(&rest)
            )
            .status,
        202
    );
    let mut whole = vec![b'a'; 300_000];
    whole.extend_from_slice(&rest);
    let digest = sha256(&whole);
    let done = server.call("PUT", &format!("{location}?digest={digest}"), &[], None);
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(server.get(&format!("/v2/cut/blobs/{digest}")).body, whole);
    server.stop();
}

#[test]
fn registry_digest_mismatch_stores_nothing() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let claimed = sha256(b"something else");
    let monolithic = server.call(
        "POST",
        &format!("/v2/m/blobs/uploads/?digest={claimed}"),
        &[],
        Some(b"actual bytes"),
    );
    assert_eq!(
        (monolithic.status, monolithic.error_code().as_str()),
        (400, "DIGEST_INVALID")
    );
    let start = server.call("POST", "/v2/m/blobs/uploads/", &[], None);
    let location = start.header("location");
    server.call("PATCH", &location, &[], Some(b"actual "));
    let finished = server.call(
        "PUT",
        &format!("{location}?digest={claimed}"),
        &[],
        Some(b"bytes"),
    );
    assert_eq!(
        (finished.status, finished.error_code().as_str()),
        (400, "DIGEST_INVALID")
    );
    assert!(blob_files(&root).is_empty(), "{:?}", blob_files(&root));
    assert_eq!(server.get(&format!("/v2/m/blobs/{claimed}")).status, 404);
    assert_eq!(
        server
            .get(&format!("/v2/m/blobs/{}", sha256(b"actual bytes")))
            .status,
        404
    );
    assert!(
        std::fs::read_dir(root.join("uploads"))
            .unwrap()
            .next()
            .is_none()
    );
    let malformed = server.call("PUT", &format!("{location}?digest=sha256:xyz"), &[], None);
    assert_eq!(malformed.error_code(), "DIGEST_INVALID");
    server.stop();
}

#[test]
fn registry_cross_repository_mount() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let digest = server.push_blob("source", b"shared layer");
    // Not visible in another repository until mounted.
    assert_eq!(
        server.get(&format!("/v2/target/blobs/{digest}")).status,
        404
    );
    let mounted = server.call(
        "POST",
        &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
        &[],
        None,
    );
    assert_eq!(mounted.status, 201, "{}", mounted.text());
    assert_eq!(
        mounted.header("location"),
        format!("/v2/target/blobs/{digest}")
    );
    assert_eq!(
        server.get(&format!("/v2/target/blobs/{digest}")).body,
        b"shared layer"
    );
    // Unknown in `from`: falls back to a new upload session.
    let fallback = server.call(
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={digest}&from=nowhere"),
        &[],
        None,
    );
    assert_eq!(fallback.status, 202);
    assert!(
        fallback
            .header("location")
            .starts_with("/v2/third/blobs/uploads/")
    );
    assert_eq!(blob_files(&root).len(), 1);
    server.stop();
}

#[test]
fn registry_manifests_put_get_delete_and_validation() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = server.push_blob("img", config);
    let layer_digest = server.push_blob("img", b"layer bytes");
    let manifest = image_manifest(
        &config_digest,
        config.len(),
        &[(&layer_digest, 11)],
        json!({}),
    );
    let digest = sha256(&manifest);

    let put = server.push_manifest("img", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.header("docker-content-digest"), digest);
    assert_eq!(
        put.header("location"),
        format!("/v2/img/manifests/{digest}")
    );

    for reference in ["v1", digest.as_str()] {
        let got = server.get(&format!("/v2/img/manifests/{reference}"));
        assert_eq!(got.status, 200);
        assert_eq!(got.body, manifest);
        assert_eq!(got.header("content-type"), OCI_MANIFEST);
        assert_eq!(got.header("docker-content-digest"), digest);
        let head = server.call("HEAD", &format!("/v2/img/manifests/{reference}"), &[], None);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), manifest.len().to_string());
    }

    // An index over it, pushed by digest.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len()}],
    }))
    .unwrap();
    let index_digest = sha256(&index);
    let put = server.push_manifest("img", &index_digest, OCI_INDEX, &index);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(
        server
            .get(&format!("/v2/img/manifests/{index_digest}"))
            .header("content-type"),
        OCI_INDEX
    );

    // Digest-addressed PUT is verified.
    let wrong = server.push_manifest("img", &sha256(b"other"), OCI_MANIFEST, &manifest);
    assert_eq!(
        (wrong.status, wrong.error_code().as_str()),
        (400, "DIGEST_INVALID")
    );
    // Every referenced blob must be in the repository.
    let missing = image_manifest(
        &config_digest,
        config.len(),
        &[(&sha256(b"absent"), 6)],
        json!({}),
    );
    let refused = server.push_manifest("img", "v2", OCI_MANIFEST, &missing);
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    let elsewhere = server.push_manifest("other", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(elsewhere.error_code(), "MANIFEST_BLOB_UNKNOWN");
    let dangling_index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}],
    }))
    .unwrap();
    assert_eq!(
        server
            .push_manifest("img", "idx", OCI_INDEX, &dangling_index)
            .error_code(),
        "MANIFEST_BLOB_UNKNOWN"
    );
    assert_eq!(
        server
            .push_manifest("img", "bad", OCI_MANIFEST, b"not json")
            .error_code(),
        "MANIFEST_INVALID"
    );

    // Oversize manifests: refused on the declared length before any body byte is read, and a
    // chunked body is cut off at the limit.
    let declared = raw_request(
        server.port,
        "PUT /v2/img/manifests/big HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n\r\n",
        &[],
    );
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(declared.contains("MANIFEST_INVALID"), "{declared}");
    let mut chunked_body = Vec::new();
    for _ in 0..65 {
        chunked_body.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked_body.extend(std::iter::repeat_n(b' ', 65536));
        chunked_body.extend_from_slice(b"\r\n");
    }
    chunked_body.extend_from_slice(b"0\r\n\r\n");
    let chunked = raw_request(
        server.port,
        "PUT /v2/img/manifests/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked_body,
    );
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert_eq!(server.get("/v2/img/manifests/big").status, 404);

    let unknown = server.get("/v2/img/manifests/nope");
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );

    // Delete the tag, then the revision.
    assert_eq!(
        server
            .call("DELETE", "/v2/img/manifests/v1", &[], None)
            .status,
        202
    );
    assert_eq!(server.get("/v2/img/manifests/v1").status, 404);
    assert_eq!(
        server.get(&format!("/v2/img/manifests/{digest}")).status,
        200
    );
    assert_eq!(
        server
            .call("DELETE", &format!("/v2/img/manifests/{digest}"), &[], None)
            .status,
        202
    );
    assert_eq!(
        server.get(&format!("/v2/img/manifests/{digest}")).status,
        404
    );
    assert_eq!(
        server
            .call("DELETE", &format!("/v2/img/manifests/{digest}"), &[], None)
            .status,
        404
    );
    server.stop();
}

#[test]
fn registry_tags_and_catalog_paginate_with_link() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let config = b"{}";
    for repo in ["r/one", "r/two", "zed", "alpha"] {
        let config_digest = server.push_blob(repo, config);
        let manifest = image_manifest(&config_digest, 2, &[], json!({}));
        for tag in ["c", "a", "b", "d"] {
            assert_eq!(
                server
                    .push_manifest(repo, tag, OCI_MANIFEST, &manifest)
                    .status,
                201
            );
        }
    }
    let all = server.get("/v2/r/one/tags/list").json();
    assert_eq!(all, json!({"name": "r/one", "tags": ["a", "b", "c", "d"]}));
    let first = server.get("/v2/r/one/tags/list?n=2");
    assert_eq!(first.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        first.header("link"),
        "</v2/r/one/tags/list?n=2&last=b>; rel=\"next\""
    );
    let second = server.get("/v2/r/one/tags/list?n=2&last=b");
    assert_eq!(second.json()["tags"], json!(["c", "d"]));
    assert!(!second.headers.contains_key("link"));
    let unknown = server.get("/v2/nothing/tags/list");
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "NAME_UNKNOWN")
    );

    let catalog = server.get("/v2/_catalog").json();
    assert_eq!(
        catalog,
        json!({"repositories": ["alpha", "r/one", "r/two", "zed"]})
    );
    let page = server.get("/v2/_catalog?n=3");
    assert_eq!(
        page.json()["repositories"],
        json!(["alpha", "r/one", "r/two"])
    );
    assert_eq!(
        page.header("link"),
        "</v2/_catalog?n=3&last=r/two>; rel=\"next\""
    );
    assert_eq!(
        server.get("/v2/_catalog?n=3&last=r/two").json()["repositories"],
        json!(["zed"])
    );
    server.stop();
}

#[test]
fn registry_referrers_list_subjects_and_filter_by_artifact_type() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let config_digest = server.push_blob("ref", b"{}");
    let subject = image_manifest(&config_digest, 2, &[], json!({}));
    let subject_digest = sha256(&subject);
    assert_eq!(
        server
            .push_manifest("ref", "v1", OCI_MANIFEST, &subject)
            .status,
        201
    );

    let empty_digest = server.push_blob("ref", b"{}");
    let mut referrer_digests = Vec::new();
    for (artifact_type, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let referrer = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len()},
            "annotations": {"note": note},
        }))
        .unwrap();
        let digest = sha256(&referrer);
        let put = server.push_manifest("ref", &digest, OCI_MANIFEST, &referrer);
        assert_eq!(put.status, 201, "{}", put.text());
        assert_eq!(put.header("oci-subject"), subject_digest);
        referrer_digests.push(digest);
    }
    let listed = server.get(&format!("/v2/ref/referrers/{subject_digest}"));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("content-type"), OCI_INDEX);
    let index = listed.json();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    digests.sort();
    let mut expected: Vec<&str> = referrer_digests.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(digests, expected);

    let filtered = server.get(&format!(
        "/v2/ref/referrers/{subject_digest}?artifactType=application/vnd.example.sig"
    ));
    assert_eq!(filtered.header("oci-filters-applied"), "artifactType");
    let manifests = filtered.json()["manifests"].clone();
    assert_eq!(manifests.as_array().unwrap().len(), 1);
    assert_eq!(manifests[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(manifests[0]["annotations"]["note"], "sig");

    // A deleted referrer is no longer listed; an unknown subject lists nothing (200).
    server.call(
        "DELETE",
        &format!("/v2/ref/manifests/{}", referrer_digests[0]),
        &[],
        None,
    );
    assert_eq!(
        server
            .get(&format!("/v2/ref/referrers/{subject_digest}"))
            .json()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let none = server.get(&format!("/v2/ref/referrers/{}", sha256(b"x")));
    assert_eq!(
        (none.status, none.json()["manifests"].clone()),
        (200, json!([]))
    );
    server.stop();
}

#[test]
fn registry_refuses_invalid_names() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    for name in ["Upper/case", "a/..b", "a..b", "-lead", "a//b", "trail-"] {
        let reply = server.get(&format!("/v2/{name}/tags/list"));
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (400, "NAME_INVALID"),
            "{name}"
        );
        let upload = server.call("POST", &format!("/v2/{name}/blobs/uploads/"), &[], None);
        assert_eq!(upload.error_code(), "NAME_INVALID", "{name}");
    }
    assert!(!root.join("repositories").read_dir().unwrap().any(|_| true));
    server.stop();
}

#[test]
fn registry_restart_keeps_data_and_resumes_uploads() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let config_digest = server.push_blob("keep", b"{}");
    let manifest = image_manifest(&config_digest, 2, &[], json!({}));
    assert_eq!(
        server
            .push_manifest("keep", "v1", OCI_MANIFEST, &manifest)
            .status,
        201
    );
    let location = server
        .call("POST", "/v2/keep/blobs/uploads/", &[], None)
        .header("location");
    assert_eq!(
        server
            .call(
                "PATCH",
                &location,
                &[("Content-Range", "0-4")],
                Some(b"first")
            )
            .status,
        202
    );
    server.stop();

    let server = Server::start(&root);
    assert_eq!(server.get("/v2/keep/manifests/v1").body, manifest);
    let status = server.get(&location);
    assert_eq!(
        (status.status, status.header("range")),
        (204, "0-4".to_owned())
    );
    assert_eq!(
        server
            .call(
                "PATCH",
                &location,
                &[("Content-Range", "5-10")],
                Some(b" second")
            )
            .status,
        202
    );
    let digest = sha256(b"first second");
    let done = server.call("PUT", &format!("{location}?digest={digest}"), &[], None);
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(
        server.get(&format!("/v2/keep/blobs/{digest}")).body,
        b"first second"
    );
    server.stop();
}

#[test]
fn registry_concurrent_identical_pushes_leave_one_copy() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let data: Vec<u8> = (0..(1u32 << 18))
        .flat_map(|i| (i * 7).to_le_bytes())
        .collect();
    let digest = sha256(&data);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (server, data, digest) = (&server, &data, &digest);
                scope.spawn(move || {
                    let repo = format!("con/r{}", i % 4);
                    let start =
                        server.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], None);
                    assert_eq!(start.status, 202);
                    let location = start.header("location");
                    for (index, chunk) in data.chunks(300_000).enumerate() {
                        let first = index * 300_000;
                        let range = format!("{first}-{}", first + chunk.len() - 1);
                        let patched = server.call(
                            "PATCH",
                            &location,
                            &[("Content-Range", &range)],
                            Some(chunk),
                        );
                        assert_eq!(patched.status, 202);
                    }
                    let done =
                        server.call("PUT", &format!("{location}?digest={digest}"), &[], None);
                    assert_eq!(done.status, 201, "{}", done.text());
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    assert_eq!(
        blob_files(&root),
        [digest.trim_start_matches("sha256:").to_owned()]
    );
    for repo in ["con/r0", "con/r3"] {
        assert_eq!(server.get(&format!("/v2/{repo}/blobs/{digest}")).body, data);
    }
    assert!(
        std::fs::read_dir(root.join("uploads"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        std::fs::read_dir(root.join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    server.stop();
}

#[test]
fn registry_gc_sweeps_unreferenced_blobs() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let config_digest = server.push_blob("gc/a", b"{}");
    let kept_layer = server.push_blob("gc/a", b"kept layer");
    let kept = image_manifest(&config_digest, 2, &[(&kept_layer, 10)], json!({}));
    assert_eq!(
        server
            .push_manifest("gc/a", "v1", OCI_MANIFEST, &kept)
            .status,
        201
    );
    let dropped_layer = server.push_blob("gc/b", b"dropped layer");
    let config_b = server.push_blob("gc/b", b"{}");
    let dropped = image_manifest(&config_b, 2, &[(&dropped_layer, 13)], json!({}));
    let dropped_digest = sha256(&dropped);
    assert_eq!(
        server
            .push_manifest("gc/b", "v1", OCI_MANIFEST, &dropped)
            .status,
        201
    );
    let untagged_layer = server.push_blob("gc/a", b"untagged layer");
    let untagged = image_manifest(&config_digest, 2, &[(&untagged_layer, 14)], json!({}));
    let untagged_digest = sha256(&untagged);
    assert_eq!(
        server
            .push_manifest("gc/a", &untagged_digest, OCI_MANIFEST, &untagged)
            .status,
        201
    );
    let orphan = server.push_blob("gc/a", b"never referenced");
    let fresh_upload = server
        .call("POST", "/v2/gc/a/blobs/uploads/", &[], None)
        .header("docker-upload-uuid");
    let old_upload = server
        .call("POST", "/v2/gc/a/blobs/uploads/", &[], None)
        .header("docker-upload-uuid");
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/v2/gc/b/manifests/{dropped_digest}"),
                &[],
                None
            )
            .status,
        202
    );
    server.stop();

    let strata = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["registry", "gc", "--root"])
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let old_data = root.join("uploads").join(&old_upload).join("data");
    run_tool("touch", &["-d", "10 days ago", old_data.to_str().unwrap()]);
    let before = blob_files(&root);
    let dry = strata(&["--dry-run"]);
    assert!(
        dry.contains(&format!("would delete abandoned upload {old_upload}")),
        "{dry}"
    );
    assert!(!dry.contains(&fresh_upload), "{dry}");
    assert!(
        dry.contains(&format!("would delete blob {dropped_layer}")),
        "{dry}"
    );
    assert!(
        dry.contains(&format!("would delete blob {orphan}")),
        "{dry}"
    );
    assert!(!dry.contains(&kept_layer), "{dry}");
    assert!(!dry.contains(&untagged_layer), "{dry}");
    assert_eq!(blob_files(&root), before);

    strata(&[]);
    assert!(!root.join("uploads").join(&old_upload).exists());
    assert!(root.join("uploads").join(&fresh_upload).exists());
    let hex = |digest: &str| digest.trim_start_matches("sha256:").to_owned();
    let after = blob_files(&root);
    for gone in [&dropped_layer, &orphan, &dropped_digest] {
        assert!(!after.contains(&hex(gone)), "{gone} survived");
    }
    for present in [
        &kept_layer,
        &config_digest,
        &untagged_layer,
        &untagged_digest,
    ] {
        assert!(after.contains(&hex(present)), "{present} was deleted");
    }
    let untagged_run = strata(&["--delete-untagged"]);
    assert!(
        untagged_run.contains(&format!("deleted manifest gc/a@{untagged_digest}")),
        "{untagged_run}"
    );
    assert!(!blob_files(&root).contains(&hex(&untagged_layer)));

    let server = Server::start(&root);
    assert_eq!(server.get("/v2/gc/a/manifests/v1").body, kept);
    assert_eq!(
        server.get(&format!("/v2/gc/a/blobs/{kept_layer}")).body,
        b"kept layer"
    );
    assert_eq!(server.get(&format!("/v2/gc/a/blobs/{orphan}")).status, 404);
    assert_eq!(
        server
            .get(&format!("/v2/gc/a/manifests/{untagged_digest}"))
            .status,
        404
    );
    server.stop();
}

#[test]
fn registry_online_gc_sweeps_while_serving_and_spares_recent_blobs() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    let config_digest = server.push_blob("live", b"{}");
    let layer = server.push_blob("live", b"live layer");
    let kept = image_manifest(&config_digest, 2, &[(&layer, 10)], json!({}));
    assert_eq!(
        server
            .push_manifest("live", "v1", OCI_MANIFEST, &kept)
            .status,
        201
    );
    let dropped_layer = server.push_blob("live", b"dropped live layer");
    let dropped = image_manifest(&config_digest, 2, &[(&dropped_layer, 18)], json!({}));
    let dropped_digest = sha256(&dropped);
    assert_eq!(
        server
            .push_manifest("live", "v2", OCI_MANIFEST, &dropped)
            .status,
        201
    );
    let path = format!("/v2/live/manifests/{dropped_digest}");
    assert_eq!(server.call("DELETE", &path, &[], None).status, 202);
    let orphan = server.push_blob("live", b"orphan");
    server.stop();

    // Grace 0: everything unreferenced goes on the first pass.
    let args = ["--gc-interval", "1"];
    let server = Server::start_with(&root, &[&args[..], &["--gc-grace", "0"]].concat());
    let hex = |digest: &str| digest.trim_start_matches("sha256:").to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while blob_files(&root).contains(&hex(&orphan)) {
        assert!(
            Instant::now() < deadline,
            "no online pass: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let files = blob_files(&root);
    for gone in [&orphan, &dropped_layer, &dropped_digest] {
        assert!(!files.contains(&hex(gone)), "{gone} survived");
    }
    assert_eq!(server.get("/v2/live/manifests/v1").body, kept);
    assert_eq!(
        server.get(&format!("/v2/live/blobs/{layer}")).body,
        b"live layer"
    );
    assert_eq!(server.get(&format!("/v2/live/blobs/{orphan}")).status, 404);
    // A re-push of a swept blob works again.
    assert_eq!(server.push_blob("live", b"orphan"), orphan);
    server.stop();

    // Default grace: a freshly pushed, not yet referenced blob survives passes.
    let server = Server::start_with(&root, &args);
    let pending = server.push_blob("live", b"pending layer");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(server.log_text().contains("online garbage collection"));
    assert!(blob_files(&root).contains(&hex(&pending)));
    let manifest = image_manifest(&config_digest, 2, &[(&pending, 13)], json!({}));
    assert_eq!(
        server
            .push_manifest("live", "v3", OCI_MANIFEST, &manifest)
            .status,
        201
    );
    server.stop();
}

/// Writes a one-layer OCI image layout at `dir` tagged `tag`; returns the manifest digest.
fn write_oci_layout(dir: &Path, tag: &str) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    let content = b"hello from strata registry interop\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", &content[..])
        .unwrap();
    let layer = builder.into_inner().unwrap();
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for bytes in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(&sha256(bytes)[7..]), bytes).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    manifest_digest
}

#[test]
fn registry_interop_skopeo_copy_round_trip() {
    if !have("skopeo", &["--version"]) {
        return;
    }
    let (dir, root) = temp_root();
    let server = Server::start(&root);
    let source = dir.path().join("source");
    let manifest_digest = write_oci_layout(&source, "v1");
    let remote = format!("docker://{}/interop/skopeo:v1", server.host());
    run_tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("oci:{}:v1", source.display()),
            &remote,
        ],
    );
    let pushed = server.get("/v2/interop/skopeo/manifests/v1");
    assert_eq!(pushed.header("docker-content-digest"), manifest_digest);
    let tags = run_tool(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &remote.replace(":v1", ""),
        ],
    );
    assert!(tags.contains("\"v1\""), "{tags}");

    let back = dir.path().join("back");
    run_tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            &remote,
            &format!("oci:{}:v1", back.display()),
        ],
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], manifest_digest);
    for entry in std::fs::read_dir(source.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let copied = std::fs::read(back.join("blobs/sha256").join(entry.file_name())).unwrap();
        assert_eq!(copied, std::fs::read(entry.path()).unwrap());
    }

    // A multi-platform index (one child) with --all: the child is pushed first, the index
    // after it, and both keep their digests.
    let manifest_path = source.join("blobs/sha256").join(&manifest_digest[7..]);
    let manifest_size = std::fs::metadata(&manifest_path).unwrap().len();
    let image_index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let index_digest = sha256(&image_index);
    std::fs::write(
        source.join("blobs/sha256").join(&index_digest[7..]),
        &image_index,
    )
    .unwrap();
    let layout_index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_INDEX, "digest": index_digest, "size": image_index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(source.join("index.json"), layout_index.to_string()).unwrap();
    let multi = format!("docker://{}/interop/multi:v1", server.host());
    run_tool(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("oci:{}:multi", source.display()),
            &multi,
        ],
    );
    let pushed = server.get("/v2/interop/multi/manifests/v1");
    assert_eq!(pushed.header("docker-content-digest"), index_digest);
    assert_eq!(pushed.header("content-type"), OCI_INDEX);
    assert_eq!(
        server
            .get(&format!("/v2/interop/multi/manifests/{manifest_digest}"))
            .status,
        200
    );
    server.stop();
}

#[test]
fn registry_interop_docker_push_pull() {
    if !have("docker", &["info"]) {
        return;
    }
    let (dir, root) = temp_root();
    let server = Server::start(&root);
    // A tiny filesystem image: `docker import` of a tar of one directory.
    let mut builder = tar::Builder::new(Vec::new());
    let content = b"strata registry docker interop\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "etc/strata-test", &content[..])
        .unwrap();
    let tarball = dir.path().join("rootfs.tar");
    std::fs::write(&tarball, builder.into_inner().unwrap()).unwrap();
    let image = format!("{}/interop/docker:v1", server.host());
    run_tool("docker", &["import", tarball.to_str().unwrap(), &image]);
    let image_id = run_tool("docker", &["image", "inspect", "-f", "{{.Id}}", &image]);
    let push = run_tool("docker", &["push", &image]);
    assert!(push.contains("digest: sha256:"), "{push}");
    run_tool("docker", &["rmi", &image]);
    run_tool("docker", &["pull", &image]);
    let pulled_id = run_tool("docker", &["image", "inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(pulled_id, image_id);
    let pushed_digest = push
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let manifest = server.get("/v2/interop/docker/manifests/v1");
    assert_eq!(manifest.header("docker-content-digest"), pushed_digest);
    run_tool("docker", &["rmi", &image]);
    server.stop();
}

/// podman (rootful, its own storage under the test's directory, vfs driver) builds a one-file
/// image, pushes it, removes it and pulls it back: the digest podman recorded for the push is
/// the registry's and the pulled image's, and the image ID survives the round trip.
#[test]
fn registry_interop_podman_push_pull() {
    if !have("podman", &["--version"]) {
        return;
    }
    let (dir, root) = temp_root();
    let server = Server::start(&root);
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("hello.txt"),
        b"strata registry podman interop\n",
    )
    .unwrap();
    std::fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY hello.txt /\n",
    )
    .unwrap();
    let storage = dir.path().join("podman-storage");
    let run = dir.path().join("podman-run");
    let podman = |args: &[&str]| {
        let base = [
            "--root",
            storage.to_str().unwrap(),
            "--runroot",
            run.to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ];
        run_tool("podman", &[&base[..], args].concat())
    };
    let image = format!("{}/interop/podman:v1", server.host());
    podman(&["build", "-q", "-t", &image, context.to_str().unwrap()]);
    let image_id = podman(&["image", "inspect", "--format", "{{.Id}}", &image]);
    let digest_file = dir.path().join("pushed-digest");
    podman(&[
        "push",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &image,
    ]);
    let pushed = std::fs::read_to_string(&digest_file).unwrap();
    let manifest = server.get("/v2/interop/podman/manifests/v1");
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.header("docker-content-digest"), pushed.trim());
    assert_eq!(sha256(&manifest.body), pushed.trim());
    podman(&["rmi", &image]);
    podman(&["pull", "-q", "--tls-verify=false", &image]);
    assert_eq!(
        podman(&["image", "inspect", "--format", "{{.Id}}", &image]),
        image_id
    );
    assert_eq!(
        podman(&["image", "inspect", "--format", "{{.Digest}}", &image]).trim(),
        pushed.trim()
    );
    server.stop();
}

/// An htpasswd line from `strata registry passwd`.
fn htpasswd_entry(user: &str, password: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["registry", "passwd", user])
        .stdin(Stdio::piped())
        .output_with_stdin(format!("{password}\n").as_bytes());
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// An HS256 JWT over `claims`, signed with `key` (HMAC-SHA256 written out, RFC 2104).
fn hs256_token(key: &[u8], claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(input.as_bytes())
        .finalize();
    let mac = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!("{input}.{}", b64(&mac))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A registry with `auth: token`: alice may do everything (and list the catalog), bob may
/// only pull, anonymous clients may pull `public/*`.
fn token_server(dir: &Path, root: &Path, key: &[u8]) -> Server {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        htpasswd_entry("alice", "s3cret") + &htpasswd_entry("bob", "bobpw"),
    )
    .unwrap();
    let key_file = dir.join("token.key");
    std::fs::write(&key_file, key).unwrap();
    let port = free_port();
    let config = dir.join("config.json");
    let mut settings = json!({
            "addr": format!("127.0.0.1:{port}"),
            "root": root,
            "auth": "token",
            "htpasswd": htpasswd,
            "token": {
                "key_file": key_file,
                "expiration": 120,
                "grants": [
                    {"user": "alice", "repository": "*", "actions": ["*"]},
                    {"user": "alice", "type": "registry", "name": "catalog", "actions": ["*"]},
                    {"user": "bob", "repository": "*", "actions": ["pull"]},
                    {"user": "anonymous", "repository": "public/*", "actions": ["pull"]},
                ],
            },
    });
    if let Some(storage) = s3_storage_config() {
        settings["storage"] = storage;
    }
    std::fs::write(&config, settings.to_string()).unwrap();
    Server::launch(root, port, &["--config", config.to_str().unwrap()])
}

impl Server {
    /// A token from the built-in token server; `None` credentials: anonymous.
    fn token(&self, credentials: Option<(&str, &str)>, scopes: &[&str]) -> Reply {
        let mut path = "/token?service=strata-registry".to_owned();
        for scope in scopes {
            path.push_str("&scope=");
            path.push_str(&scope.replace(':', "%3A").replace(',', "%2C"));
        }
        let header = credentials.map(|(user, password)| basic_header(user, password));
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        self.call("GET", &path, &headers, None)
    }

    fn bearer(&self, credentials: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let reply = self.token(credentials, scopes);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        assert_eq!(body["token"], body["access_token"]);
        assert!(body["expires_in"].as_u64().unwrap() >= 60);
        format!("Bearer {}", body["token"].as_str().unwrap())
    }
}

#[test]
fn registry_token_auth_grants_scopes_and_refuses_forgeries() {
    let (dir, root) = temp_root();
    let key = b"strata-test-token-signing-key-32";
    let server = token_server(dir.path(), &root, key);
    let realm = format!(
        "Bearer realm=\"{}\",service=\"strata-registry\"",
        server.url("/token")
    );

    // Without a token: 401 with the challenge naming the scope the request needs.
    let refused = server.get("/v2/");
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(refused.header("www-authenticate"), realm);
    let refused = server.call("POST", "/v2/tok/app/blobs/uploads/", &[], None);
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(
        refused.header("www-authenticate"),
        format!("{realm},scope=\"repository:tok/app:pull,push\"")
    );
    let refused = server.get("/v2/_catalog");
    assert!(
        refused
            .header("www-authenticate")
            .ends_with("scope=\"registry:catalog:*\""),
        "{:?}",
        refused.headers
    );
    assert_eq!(server.get("/healthz").status, 200);

    // Wrong password or service: no token.
    let wrong = server.token(Some(("alice", "wrong")), &["repository:tok/app:pull"]);
    assert_eq!(
        (wrong.status, wrong.error_code().as_str()),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(
        server
            .get("/token?service=elsewhere&scope=repository:a:pull")
            .status,
        400
    );

    // alice pushes.
    let alice = server.bearer(
        Some(("alice", "s3cret")),
        &["repository:tok/app:pull,push,delete"],
    );
    let auth = [("Authorization", alice.as_str())];
    assert_eq!(server.call("GET", "/v2/", &auth, None).status, 200);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"token layer";
    let mut digests = Vec::new();
    for data in [&config[..], &layer[..]] {
        let start = server.call("POST", "/v2/tok/app/blobs/uploads/", &auth, None);
        assert_eq!(start.status, 202, "{}", start.text());
        let digest = sha256(data);
        let location = format!("{}?digest={digest}", start.header("location"));
        let done = server.call("PUT", &location, &auth, Some(data));
        assert_eq!(done.status, 201, "{}", done.text());
        digests.push(digest);
    }
    let manifest = image_manifest(
        &digests[0],
        config.len(),
        &[(&digests[1], layer.len())],
        json!({}),
    );
    let put = server.call(
        "PUT",
        "/v2/tok/app/manifests/v1",
        &[
            ("Authorization", alice.as_str()),
            ("Content-Type", OCI_MANIFEST),
        ],
        Some(&manifest),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    // alice's token for tok/app says nothing about other repositories or the catalog.
    let other = server.call("GET", "/v2/other/tags/list", &auth, None);
    assert_eq!((other.status, other.error_code().as_str()), (401, "DENIED"));
    assert!(
        other
            .header("www-authenticate")
            .contains("error=\"insufficient_scope\"")
    );
    let catalog = server.bearer(Some(("alice", "s3cret")), &["registry:catalog:*"]);
    let listed = server.call("GET", "/v2/_catalog", &[("Authorization", &catalog)], None);
    assert_eq!(listed.json()["repositories"], json!(["tok/app"]));

    // bob asks for pull and push but gets pull only: reads work, writes and deletes are denied.
    let bob = server.bearer(
        Some(("bob", "bobpw")),
        &["repository:tok/app:pull,push,delete", "registry:catalog:*"],
    );
    let bob_auth = [("Authorization", bob.as_str())];
    let got = server.call("GET", "/v2/tok/app/manifests/v1", &bob_auth, None);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, manifest);
    for (method, path) in [
        ("POST", "/v2/tok/app/blobs/uploads/"),
        ("PUT", "/v2/tok/app/manifests/v2"),
        ("DELETE", "/v2/tok/app/manifests/v1"),
        ("DELETE", &format!("/v2/tok/app/blobs/{}", digests[1])),
    ] {
        let denied = server.call(method, path, &bob_auth, Some(b"{}"));
        assert_eq!(
            (denied.status, denied.error_code().as_str()),
            (401, "DENIED"),
            "{method} {path}"
        );
    }
    assert_eq!(
        server.call("GET", "/v2/_catalog", &bob_auth, None).status,
        401
    );
    // A mount from a repository bob cannot read would be a plain upload, and he cannot push
    // anyway; alice mounting into another repository she can push works.
    let mount = format!(
        "/v2/tok/copy/blobs/uploads/?mount={}&from=tok/app",
        digests[1]
    );
    let alice_copy = server.bearer(
        Some(("alice", "s3cret")),
        &["repository:tok/copy:pull,push", "repository:tok/app:pull"],
    );
    let mounted = server.call("POST", &mount, &[("Authorization", &alice_copy)], None);
    assert_eq!(mounted.status, 201, "{}", mounted.text());
    // Without pull on the source the mount is not attempted: a new upload starts instead.
    let copy_only = server.bearer(
        Some(("alice", "s3cret")),
        &["repository:tok/copy2:pull,push"],
    );
    let mount = mount.replace("tok/copy/", "tok/copy2/");
    let unmounted = server.call("POST", &mount, &[("Authorization", &copy_only)], None);
    assert_eq!(unmounted.status, 202, "{}", unmounted.text());
    // However the parameter is spelled.
    let encoded = mount.replace("&from=", "&fro%6D=");
    let unmounted = server.call("POST", &encoded, &[("Authorization", &copy_only)], None);
    assert_eq!(unmounted.status, 202, "{}", unmounted.text());
    let blob = format!("/v2/tok/copy2/blobs/{}", digests[1]);
    let absent = server.call("HEAD", &blob, &[("Authorization", &copy_only)], None);
    assert_eq!(absent.status, 404);

    // Anonymous: a token, but only for public/*.
    let anonymous = server.bearer(
        None,
        &["repository:tok/app:pull", "repository:public/x:pull"],
    );
    let anonymous = [("Authorization", anonymous.as_str())];
    assert_eq!(server.call("GET", "/v2/", &anonymous, None).status, 200);
    let unknown = server.call("GET", "/v2/public/x/tags/list", &anonymous, None);
    assert_eq!(unknown.error_code(), "NAME_UNKNOWN");
    let denied = server.call("GET", "/v2/tok/app/manifests/v1", &anonymous, None);
    assert_eq!(
        (denied.status, denied.error_code().as_str()),
        (401, "DENIED")
    );

    // Forged (another key), expired, foreign audience, unsigned: refused.
    let claims = |exp: u64, aud: &str| {
        json!({
            "iss": "strata-registry", "sub": "alice", "aud": aud,
            "exp": exp, "nbf": unix_now() - 10, "iat": unix_now() - 10, "jti": "x",
            "access": [{"type": "repository", "name": "tok/app", "actions": ["pull", "push"]}],
        })
    };
    let valid = hs256_token(key, &claims(unix_now() + 60, "strata-registry"));
    let path = "/v2/tok/app/manifests/v1";
    let call = |token: &str| {
        let header = format!("Bearer {token}");
        server.call("GET", path, &[("Authorization", &header)], None)
    };
    assert_eq!(
        call(&valid).status,
        200,
        "a correctly signed token is accepted"
    );
    let forged = hs256_token(
        b"not-the-registry-key",
        &claims(unix_now() + 60, "strata-registry"),
    );
    let expired = hs256_token(key, &claims(unix_now() - 60, "strata-registry"));
    let foreign = hs256_token(key, &claims(unix_now() + 60, "elsewhere"));
    let payload = valid.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIn0.{payload}.");
    for (what, token) in [
        ("forged", forged.as_str()),
        ("expired", &expired),
        ("foreign", &foreign),
        ("unsigned", &unsigned),
    ] {
        let refused = call(token);
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (401, "UNAUTHORIZED"),
            "{what}"
        );
        assert!(
            refused
                .header("www-authenticate")
                .contains("error=\"invalid_token\""),
            "{what}"
        );
    }
    server.stop();
}

/// A one-file rootfs tarball for `docker import` / `strata import`.
/// `POST /token` with a form, as Docker's OAuth2 token spec.
fn oauth_token(server: &Server, form: &[(&str, &str)]) -> Reply {
    let body: String = form_encode(form);
    server.call(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
}

fn form_encode(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(key, value)| {
            let value: String = value
                .bytes()
                .map(|byte| match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (byte as char).to_string()
                    }
                    _ => format!("%{byte:02X}"),
                })
                .collect();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn registry_token_endpoint_accepts_oauth2_password_and_refresh_grants() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let server = token_server(dir.path(), &root, b"0123456789abcdef0123456789abcdef");
    let base = [("service", "strata-registry"), ("client_id", "strata-test")];
    // Password grant with offline access: an access token and a refresh token.
    let password = [
        &base[..],
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "s3cret"),
            ("access_type", "offline"),
            ("scope", "repository:oauth/app:pull,push"),
        ],
    ]
    .concat();
    let reply = oauth_token(&server, &password);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["scope"], "repository:oauth/app:pull,push");
    assert!(answer["expires_in"].as_u64().unwrap() >= 60);
    let access = format!("Bearer {}", answer["access_token"].as_str().unwrap());
    let refresh = answer["refresh_token"].as_str().unwrap().to_owned();
    let start = server.call(
        "POST",
        "/v2/oauth/app/blobs/uploads/",
        &[("Authorization", &access)],
        None,
    );
    assert_eq!(start.status, 202, "{}", start.text());
    // A refresh token is no access token.
    let refused = server.call(
        "GET",
        "/v2/oauth/app/tags/list",
        &[("Authorization", &format!("Bearer {refresh}"))],
        None,
    );
    assert_eq!(refused.status, 401);
    // The refresh grant buys a token for another scope, and gives the refresh token back.
    let refreshed = oauth_token(
        &server,
        &[
            &base[..],
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("access_type", "offline"),
                ("scope", "registry:catalog:*"),
            ],
        ]
        .concat(),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let answer = refreshed.json();
    assert_eq!(answer["refresh_token"].as_str(), Some(refresh.as_str()));
    let catalog = server.call(
        "GET",
        "/v2/_catalog",
        &[(
            "Authorization",
            &format!("Bearer {}", answer["access_token"].as_str().unwrap()),
        )],
        None,
    );
    assert_eq!(catalog.status, 200, "{}", catalog.text());
    // Grants still apply: bob may only pull, whatever he asks for.
    let bob = oauth_token(
        &server,
        &[
            &base[..],
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bobpw"),
                ("scope", "repository:oauth/app:pull,push,delete"),
            ],
        ]
        .concat(),
    );
    assert_eq!(bob.json()["scope"], "repository:oauth/app:pull");
    assert!(bob.json().get("refresh_token").is_none());
    // Refusals, in OAuth2's error format.
    let forged = refresh.replace('.', ".x");
    for (form, status, error) in [
        (
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wrong"),
            ],
            401,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", forged.as_str()),
            ],
            401,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", access.trim_start_matches("Bearer ")),
            ],
            401,
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials")],
            400,
            "unsupported_grant_type",
        ),
        (vec![("grant_type", "password")], 400, "invalid_request"),
    ] {
        let reply = oauth_token(&server, &[&base[..], &form].concat());
        assert_eq!(reply.status, status, "{form:?}: {}", reply.text());
        assert_eq!(reply.json()["error"], error, "{form:?}");
    }
    let other_service = oauth_token(
        &server,
        &[
            ("service", "elsewhere"),
            ("client_id", "x"),
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "s3cret"),
        ],
    );
    assert_eq!(other_service.status, 400);
    let no_client = oauth_token(
        &server,
        &[
            ("service", "strata-registry"),
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "s3cret"),
        ],
    );
    assert_eq!(no_client.status, 400);
    server.stop();
}

fn tiny_rootfs(dir: &Path, content: &[u8]) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "etc/strata-token", content)
        .unwrap();
    let tarball = dir.join("rootfs.tar");
    std::fs::write(&tarball, builder.into_inner().unwrap()).unwrap();
    tarball
}

fn docker_login(config: &str, user: &str, password: &str, host: &str) -> std::process::Output {
    Command::new("docker")
        .args([
            "--config",
            config,
            "login",
            "-u",
            user,
            "--password-stdin",
            host,
        ])
        .stdin(Stdio::piped())
        .output_with_stdin(password.as_bytes())
}

#[test]
fn registry_token_auth_docker_login_push_pull() {
    if !have("docker", &["info"]) {
        return;
    }
    let (dir, root) = temp_root();
    let server = token_server(dir.path(), &root, b"docker-token-test-signing-key-00");
    let host = server.host();
    let config_dir = dir.path().join("docker-config");
    let config = config_dir.to_str().unwrap();
    let login = docker_login(config, "alice", "s3cret", &host);
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert!(
        !docker_login(config, "alice", "wrong", &host)
            .status
            .success()
    );

    let tarball = tiny_rootfs(dir.path(), b"pushed through token auth\n");
    let image = format!("{host}/tok/docker:v1");
    run_tool("docker", &["import", tarball.to_str().unwrap(), &image]);
    let image_id = run_tool("docker", &["image", "inspect", "-f", "{{.Id}}", &image]);
    let push = run_tool("docker", &["--config", config, "push", &image]);
    assert!(push.contains("digest: sha256:"), "{push}");
    run_tool("docker", &["rmi", &image]);
    run_tool("docker", &["--config", config, "pull", &image]);
    let pulled = run_tool("docker", &["image", "inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(pulled, image_id);

    // bob may log in and pull, but not push.
    let bob_dir = dir.path().join("docker-config-bob");
    let bob = bob_dir.to_str().unwrap();
    assert!(docker_login(bob, "bob", "bobpw", &host).status.success());
    let other = format!("{host}/tok/bob:v1");
    run_tool("docker", &["tag", &image, &other]);
    let refused = Command::new("docker")
        .args(["--config", bob, "push", &other])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "bob's push must be refused");
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(
        stderr.contains("denied") || stderr.contains("unauthorized"),
        "{stderr}"
    );
    // Without credentials docker cannot push either.
    let anonymous_dir = dir.path().join("docker-config-anonymous");
    let refused = Command::new("docker")
        .args(["--config", anonymous_dir.to_str().unwrap(), "push", &other])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "an anonymous push must be refused"
    );
    run_tool("docker", &["rmi", &image, &other]);
    assert!(
        server.log_text().contains("/token"),
        "docker asked the token server"
    );
    server.stop();
}

#[test]
fn registry_token_auth_with_the_strata_client() {
    let (dir, root) = temp_root();
    let server = token_server(dir.path(), &root, b"client-token-test-signing-key-00");
    let host = server.host();
    let docker_config = dir.path().join("strata-docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let strata = |store: &str, args: &[&str], stdin: &[u8]| {
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(dir.path().join(store))
            .args(args)
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("REGISTRY_AUTH_FILE")
            .stdin(Stdio::piped())
            .output_with_stdin(stdin);
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let tarball = tiny_rootfs(dir.path(), b"strata client through token auth\n");
    let image = format!("{host}/tok/client:v1");
    let (ok, out) = strata("local", &["import", tarball.to_str().unwrap(), &image], b"");
    assert!(ok, "{out}");
    // Anonymous: refused.
    let (ok, out) = strata("local", &["push", &image], b"");
    assert!(!ok, "an anonymous push must fail: {out}");
    // bob: logged in, still refused.
    let (ok, out) = strata(
        "local",
        &["login", "-u", "bob", "--password-stdin", &host],
        b"bobpw\n",
    );
    assert!(ok, "{out}");
    let (ok, out) = strata("local", &["push", &image], b"");
    assert!(!ok, "bob's push must fail: {out}");
    // alice: push, then pull into another store.
    let (ok, out) = strata(
        "local",
        &["login", "-u", "alice", "--password-stdin", &host],
        b"s3cret\n",
    );
    assert!(ok && out.contains("Login Succeeded"), "{out}");
    let (ok, out) = strata("local", &["push", &image], b"");
    assert!(ok, "{out}");
    let (ok, out) = strata("other", &["pull", &image], b"");
    assert!(ok, "{out}");
    let tags = server.call(
        "GET",
        "/v2/tok/client/tags/list",
        &[(
            "Authorization",
            &server.bearer(Some(("bob", "bobpw")), &["repository:tok/client:pull"]),
        )],
        None,
    );
    assert_eq!(tags.json()["tags"], json!(["v1"]));
    server.stop();
}

#[test]
fn registry_large_blob_round_trip() {
    let (_dir, root) = temp_root();
    let server = Server::start(&root);
    // Above the S3 backend's multipart threshold (16 MiB), pushed in two chunks.
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&data);
    let start = server.call("POST", "/v2/large/blob/blobs/uploads/", &[], None);
    let location = start.header("location");
    let half = data.len() / 2;
    let range = format!("0-{}", half - 1);
    let patched = server.call(
        "PATCH",
        &location,
        &[("Content-Range", &range)],
        Some(&data[..half]),
    );
    assert_eq!(patched.status, 202, "{}", patched.text());
    let done = server.call(
        "PUT",
        &format!("{}?digest={digest}", patched.header("location")),
        &[],
        Some(&data[half..]),
    );
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(blob_files(&root), [digest.strip_prefix("sha256:").unwrap()]);
    let whole = server.get(&format!("/v2/large/blob/blobs/{digest}"));
    assert_eq!(whole.body.len(), data.len());
    assert!(whole.body == data);
    let tail = server.call(
        "GET",
        &format!("/v2/large/blob/blobs/{digest}"),
        &[("Range", "bytes=20000000-")],
        None,
    );
    assert_eq!(tail.status, 206);
    assert!(tail.body == data[20_000_000..]);
    // A bounded range over several download chunks, starting and ending off their edges.
    let middle = server.call(
        "GET",
        &format!("/v2/large/blob/blobs/{digest}"),
        &[("Range", "bytes=1001-3000000")],
        None,
    );
    assert_eq!(middle.status, 206);
    assert!(middle.body == data[1001..=3_000_000]);
    server.stop();
}

/// oras (the Python SDK, `pip install oras`) pushes an artifact whose subject is an image of
/// ours; the referrers API lists it and oras pulls it back.
const ORAS_SCRIPT: &str = r#"
import sys, oras.client, oras.oci
host, digest, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = oras.client.OrasClient(hostname=host, insecure=True)
subject = oras.oci.Subject(
    mediaType="application/vnd.oci.image.manifest.v1+json", digest=digest, size=size
)
target = f"{host}/oras/app:signature"
client.push(
    target=target,
    files=["sig.txt:application/vnd.strata.test.signature"],
    manifest_config="config.json:application/vnd.strata.test.sig",
    subject=subject,
    quiet=True,
)
for path in client.pull(target=target, outdir="pulled"):
    print(path)
"#;

#[test]
fn registry_interop_oras_push_with_subject_and_referrers() {
    if !have("python3", &["-c", "import oras.client"]) {
        return;
    }
    let (dir, root) = temp_root();
    let server = Server::start(&root);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"subject layer";
    let config_digest = server.push_blob("oras/app", config);
    let layer_digest = server.push_blob("oras/app", layer);
    let manifest = image_manifest(
        &config_digest,
        config.len(),
        &[(&layer_digest, layer.len())],
        json!({}),
    );
    let subject = sha256(&manifest);
    let put = server.push_manifest("oras/app", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(put.status, 201, "{}", put.text());

    let work = dir.path().join("oras");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("sig.txt"), b"signed by strata\n").unwrap();
    std::fs::write(work.join("config.json"), b"{}").unwrap();
    let output = Command::new("python3")
        .args([
            "-c",
            ORAS_SCRIPT,
            &server.host(),
            &subject,
            &manifest.len().to_string(),
        ])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oras: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(work.join("pulled/sig.txt")).unwrap(),
        b"signed by strata\n"
    );

    let signature = server.get("/v2/oras/app/manifests/signature");
    assert_eq!(signature.status, 200);
    let signature_digest = signature.header("docker-content-digest");
    assert_eq!(signature.json()["subject"]["digest"], subject);
    let referrers = server.get(&format!("/v2/oras/app/referrers/{subject}"));
    assert_eq!(referrers.status, 200);
    let index = referrers.json();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    assert_eq!(index["manifests"][0]["digest"], signature_digest);
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.strata.test.sig"
    );
    let filtered = server.get(&format!(
        "/v2/oras/app/referrers/{subject}?artifactType=application/vnd.strata.test.sig"
    ));
    assert_eq!(filtered.header("oci-filters-applied"), "artifactType");
    assert_eq!(filtered.json()["manifests"].as_array().unwrap().len(), 1);
    let other = server.get(&format!(
        "/v2/oras/app/referrers/{subject}?artifactType=application/other"
    ));
    assert_eq!(other.json()["manifests"], json!([]));
    server.stop();
}

#[test]
fn registry_pull_through_cache_from_a_token_authenticated_upstream() {
    let (dir, upstream_root) = temp_root();
    let upstream = token_server(
        dir.path(),
        &upstream_root,
        b"upstream-token-signing-key-00000",
    );
    let alice = upstream.bearer(
        Some(("alice", "s3cret")),
        &["repository:library/app:pull,push"],
    );
    let auth = [("Authorization", alice.as_str())];
    let layer = b"layer served through a token-authenticated upstream".to_vec();
    let mut digests = Vec::new();
    for blob in [&b"{}"[..], &layer] {
        let digest = sha256(blob);
        let path = format!("/v2/library/app/blobs/uploads/?digest={digest}");
        assert_eq!(upstream.call("POST", &path, &auth, Some(blob)).status, 201);
        digests.push(digest);
    }
    let manifest = image_manifest(&digests[0], 2, &[(&digests[1], layer.len())], json!({}));
    let put = upstream.call(
        "PUT",
        "/v2/library/app/manifests/v1",
        &[auth[0], ("Content-Type", OCI_MANIFEST)],
        Some(&manifest),
    );
    assert_eq!(put.status, 201, "{}", put.text());

    // bob (pull only) is the mirror's upstream account.
    let cache_root = dir.path().join("cache");
    let cache_port = free_port();
    let cache_addr = format!("127.0.0.1:{cache_port}");
    let cache = Server::launch_env(
        &cache_root,
        cache_port,
        &[
            "--addr",
            &cache_addr,
            "--root",
            cache_root.to_str().unwrap(),
            "--proxy-remote",
            &upstream.url(""),
            "--proxy-username",
            "bob",
        ],
        &[("STRATA_PROXY_PASSWORD", "bobpw")],
    );
    let got = cache.get("/v2/library/app/manifests/v1");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, manifest);
    let blob = cache.get(&format!("/v2/library/app/blobs/{}", digests[1]));
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, layer);
    assert!(upstream.log_text().contains("/token"));
    upstream.stop();
    assert_eq!(cache.get("/v2/library/app/manifests/v1").body, manifest);
    cache.stop();
}

// S3: the same endpoint tests against a moto_server (one per test process, on loopback), each
// test in a bucket of its own. Skipped when moto_server is missing unless STRATA_REQUIRE_PEERS=1.

struct S3Bucket {
    port: u16,
    bucket: String,
}

thread_local! {
    static S3_BUCKET: std::cell::RefCell<Option<S3Bucket>> = const { std::cell::RefCell::new(None) };
}

const S3_PREFIX: &str = "strata/registry";

/// Runs `test` with the thread's registries in a fresh S3 bucket.
fn with_s3(test: fn()) {
    static BUCKETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Some(port) = moto_port() else {
        return;
    };
    let number = BUCKETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let bucket = format!("strata-{}-{number}", std::process::id());
    let created = ureq::put(&format!("http://127.0.0.1:{port}/{bucket}")).call();
    assert!(created.is_ok(), "creating bucket {bucket}: {created:?}");
    S3_BUCKET.with(|cell| *cell.borrow_mut() = Some(S3Bucket { port, bucket }));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            S3_BUCKET.with(|cell| cell.borrow_mut().take());
        }
    }
    let _reset = Reset;
    test();
}

/// The `storage` configuration of the thread's bucket, if any.
fn s3_storage_config() -> Option<Value> {
    S3_BUCKET.with(|cell| {
        cell.borrow().as_ref().map(|s3| {
            json!({"s3": {
                "bucket": s3.bucket,
                "endpoint": format!("http://127.0.0.1:{}", s3.port),
                "region": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "prefix": S3_PREFIX,
            }})
        })
    })
}

/// The sha256 blob names in the thread's bucket (ListObjectsV2), if any.
fn s3_blob_names() -> Option<Vec<String>> {
    S3_BUCKET.with(|cell| {
        cell.borrow().as_ref().map(|s3| {
            let prefix = format!("{S3_PREFIX}/blobs/sha256/");
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut request = ureq::get(&format!("http://127.0.0.1:{}/{}", s3.port, s3.bucket))
                    .query("list-type", "2")
                    .query("prefix", &prefix);
                if let Some(token) = &token {
                    request = request.query("continuation-token", token);
                }
                let xml = request.call().unwrap().into_string().unwrap();
                for piece in xml.split("<Key>").skip(1) {
                    let key = piece.split("</Key>").next().unwrap();
                    names.push(key.strip_prefix(&prefix).unwrap().to_owned());
                }
                token = xml
                    .split("<NextContinuationToken>")
                    .nth(1)
                    .map(|rest| rest.split('<').next().unwrap().to_owned());
                if token.is_none() {
                    break;
                }
            }
            names.sort();
            names
        })
    })
}

macro_rules! on_s3 {
    ($($test:ident => $s3:ident),* $(,)?) => {$(
        #[test]
        fn $s3() {
            with_s3($test);
        }
    )*};
}

on_s3! {
    registry_ping_health_and_metrics => registry_s3_ping_health_and_metrics,
    registry_yaml_config_in_distribution_format => registry_s3_yaml_config_in_distribution_format,
    registry_read_only_mode_serves_pulls_and_refuses_writes
        => registry_s3_read_only_mode_serves_pulls_and_refuses_writes,
    registry_large_blob_round_trip => registry_s3_large_blob_round_trip,
    registry_online_gc_sweeps_while_serving_and_spares_recent_blobs
        => registry_s3_online_gc_sweeps_while_serving_and_spares_recent_blobs,
    registry_blob_uploads_monolithic_chunked_and_ranged_reads
        => registry_s3_blob_uploads_monolithic_chunked_and_ranged_reads,
    registry_out_of_order_chunk_is_416 => registry_s3_out_of_order_chunk_is_416,
    registry_upload_cut_mid_chunk_keeps_what_arrived_and_resumes
        => registry_s3_upload_cut_mid_chunk_keeps_what_arrived_and_resumes,
    registry_digest_mismatch_stores_nothing => registry_s3_digest_mismatch_stores_nothing,
    registry_cross_repository_mount => registry_s3_cross_repository_mount,
    registry_manifests_put_get_delete_and_validation
        => registry_s3_manifests_put_get_delete_and_validation,
    registry_tags_and_catalog_paginate_with_link => registry_s3_tags_and_catalog_paginate_with_link,
    registry_referrers_list_subjects_and_filter_by_artifact_type
        => registry_s3_referrers_list_subjects_and_filter_by_artifact_type,
    registry_refuses_invalid_names => registry_s3_refuses_invalid_names,
    registry_restart_keeps_data_and_resumes_uploads
        => registry_s3_restart_keeps_data_and_resumes_uploads,
    registry_concurrent_identical_pushes_leave_one_copy
        => registry_s3_concurrent_identical_pushes_leave_one_copy,
    registry_interop_skopeo_copy_round_trip => registry_s3_interop_skopeo_copy_round_trip,
    registry_interop_docker_push_pull => registry_s3_interop_docker_push_pull,
    registry_interop_podman_push_pull => registry_s3_interop_podman_push_pull,
    registry_interop_oras_push_with_subject_and_referrers
        => registry_s3_interop_oras_push_with_subject_and_referrers,
    registry_token_auth_grants_scopes_and_refuses_forgeries
        => registry_s3_token_auth_grants_scopes_and_refuses_forgeries,
    registry_token_auth_docker_login_push_pull => registry_s3_token_auth_docker_login_push_pull,
    registry_token_auth_with_the_strata_client => registry_s3_token_auth_with_the_strata_client,
}
