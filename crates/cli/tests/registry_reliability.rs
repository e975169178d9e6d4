//! Reliability of `strata registry serve` as a process: `kill -9` in the middle of concurrent
//! large pushes (monolithic and chunked) never leaves a blob served with wrong content, keeps
//! everything committed before the kill, and lets clients retry; online garbage collection
//! running back to back (grace 0) while images are pushed never loses a blob that a tagged
//! manifest references. On the filesystem backend and, when moto_server is installed, on S3.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, moto_port, sha256};
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Where the registry keeps its data: a filesystem root, or an S3 bucket on moto_server (with
/// uploads staged under the root).
#[derive(Clone)]
struct Backend {
    root: PathBuf,
    s3: Option<(u16, String)>,
}

impl Backend {
    /// The `storage` section of a Distribution-style config.
    fn storage_yaml(&self) -> String {
        match &self.s3 {
            Some((port, bucket)) => format!(
                "  s3:\n    bucket: {bucket}\n    regionendpoint: http://127.0.0.1:{port}\n    \
                 region: us-east-1\n    accesskey: testing\n    secretkey: testing\n    \
                 rootdirectory: /strata\n    uploaddirectory: {}\n",
                self.root.display()
            ),
            None => format!(
                "  filesystem:\n    rootdirectory: {}\n",
                self.root.display()
            ),
        }
    }

    /// The name of every stored blob, and its bytes when they can be read straight from the
    /// storage (the filesystem), so that a torn or wrongly named blob cannot hide behind a
    /// missing link. (moto refuses unsigned object reads; S3 blobs are read through the
    /// registry.)
    fn stored_blobs(&self) -> Vec<(String, Option<Vec<u8>>)> {
        match &self.s3 {
            None => {
                let dir = self.root.join("blobs/sha256");
                let mut blobs = Vec::new();
                for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                    let entry = entry.unwrap();
                    let name = entry.file_name().into_string().unwrap();
                    blobs.push((name, Some(std::fs::read(entry.path()).unwrap())));
                }
                blobs
            }
            Some((port, bucket)) => {
                let prefix = "strata/blobs/sha256/";
                let mut blobs = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let mut request = ureq::get(&format!("http://127.0.0.1:{port}/{bucket}"))
                        .query("list-type", "2")
                        .query("prefix", prefix);
                    if let Some(token) = &token {
                        request = request.query("continuation-token", token);
                    }
                    let xml = request.call().unwrap().into_string().unwrap();
                    for piece in xml.split("<Key>").skip(1) {
                        let key = piece.split("</Key>").next().unwrap();
                        blobs.push((key.strip_prefix(prefix).unwrap().to_owned(), None));
                    }
                    token = xml
                        .split("<NextContinuationToken>")
                        .nth(1)
                        .map(|rest| rest.split('<').next().unwrap().to_owned());
                    if token.is_none() {
                        break;
                    }
                }
                blobs
            }
        }
    }
}

/// A `strata registry serve` process started from a YAML config.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(backend: &Backend, port: u16, extra_yaml: &str) -> Server {
        let config = backend.root.with_extension(format!("{port}.yml"));
        let yaml = format!(
            "version: 0.1\nstorage:\n{}  delete:\n    enabled: true\nhttp:\n  addr: \
             127.0.0.1:{port}\n{extra_yaml}",
            backend.storage_yaml()
        );
        std::fs::write(&config, yaml).unwrap();
        let log = backend.root.with_extension(format!("{port}.log"));
        // Appended to: a restarted server's log follows the killed one's.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["registry", "serve", "--config", config.to_str().unwrap()])
            .env("STRATA_ROOT", backend.root.with_extension("store"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut server = Server {
            child: Some(child),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&server.url("/v2/")).call().is_err() {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}: {}", server.log_text());
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful anything.
    fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
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

/// Deterministic incompressible bytes.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// A body that trickles out in small pieces, so a push is still in flight when it is killed.
struct Trickle<'a> {
    data: &'a [u8],
    sent: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let piece = buffer.len().min(32 << 10).min(self.data.len() - self.sent);
        buffer[..piece].copy_from_slice(&self.data[self.sent..self.sent + piece]);
        self.sent += piece;
        std::thread::sleep(Duration::from_millis(1));
        Ok(piece)
    }
}

/// (status, headers we need, body) of a request; `None` when the connection failed.
type Answer = Option<(u16, BTreeMap<String, String>, Vec<u8>)>;

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match body {
        Some(body) => request
            .set("Content-Length", &body.len().to_string())
            .send(Trickle {
                data: body,
                sent: 0,
            }),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(_)) => return None,
    };
    let status = response.status();
    let headers = ["location", "range", "docker-content-digest"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), response.header(name)?.to_owned())))
        .collect();
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).ok()?;
    Some((status, headers, bytes))
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body["errors"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

const CHUNK: usize = 4 << 20;

/// How far a push got before the kill.
#[derive(Default)]
struct PushState {
    /// The upload session, once the POST was answered.
    location: Option<String>,
    /// 201 received: the blob is committed.
    committed: bool,
}

/// Pushes `data` into `repo` on `base`: monolithic (POST, PUT with the body) or chunked (POST,
/// PATCHes of [`CHUNK`], PUT), recording progress in `state`; stops at the first failure.
fn push(base: &str, repo: &str, data: &[u8], chunked: bool, state: &Mutex<PushState>) {
    let digest = sha256(data);
    let Some((202, headers, _)) = request(
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        &[],
        None,
    ) else {
        return;
    };
    let location = headers["location"].clone();
    state.lock().unwrap().location = Some(location.clone());
    let put_body = if chunked {
        for (index, chunk) in data.chunks(CHUNK).enumerate() {
            let first = index * CHUNK;
            let range = format!("{first}-{}", first + chunk.len() - 1);
            let answer = request(
                "PATCH",
                &format!("{base}{location}"),
                &[("Content-Range", &range)],
                Some(chunk),
            );
            if !matches!(answer, Some((202, ..))) {
                return;
            }
        }
        None
    } else {
        Some(data)
    };
    let answer = request(
        "PUT",
        &format!("{base}{location}?digest={digest}"),
        &[],
        put_body,
    );
    if let Some((status, _, body)) = answer {
        assert!(
            status == 201,
            "push to {repo} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        state.lock().unwrap().committed = true;
    }
}

/// What a client does after a failed push: resume the session from the offset the registry
/// reports, or start again when the session is gone (or reports an ambiguous `0-0`).
fn retry(base: &str, repo: &str, data: &[u8], location: Option<&str>) {
    let digest = sha256(data);
    if let Some(location) = location
        && let Some((204, headers, _)) = request("GET", &format!("{base}{location}"), &[], None)
        && headers["range"] != "0-0"
    {
        let last: usize = headers["range"].split_once('-').unwrap().1.parse().unwrap();
        let offset = last + 1;
        assert!(offset <= data.len(), "upload longer than the blob");
        let range = format!("{offset}-{}", data.len() - 1);
        if offset < data.len() {
            let answer = request(
                "PATCH",
                &format!("{base}{location}"),
                &[("Content-Range", &range)],
                Some(&data[offset..]),
            );
            assert!(matches!(answer, Some((202, ..))), "resuming {location}");
        }
        let done = request(
            "PUT",
            &format!("{base}{location}?digest={digest}"),
            &[],
            None,
        );
        let (status, _, body) = done.expect("completing a resumed upload");
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        return;
    }
    let state = Mutex::new(PushState::default());
    push(base, repo, data, false, &state);
    assert!(state.lock().unwrap().committed, "retry of a push to {repo}");
}

/// Every blob in storage has the content its name says (read directly, and as served from
/// every repository that serves it); every `expected` blob is served with the right bytes.
fn verify_blobs(server: &Server, backend: &Backend, expected: &[(String, &[u8])]) {
    let repositories: BTreeSet<&String> = expected.iter().map(|(repo, _)| repo).collect();
    for (name, bytes) in backend.stored_blobs() {
        let digest = format!("sha256:{name}");
        if let Some(bytes) = bytes {
            assert_eq!(
                sha256(&bytes),
                digest,
                "stored blob {name} does not match its name"
            );
        }
        for repo in &repositories {
            let url = server.url(&format!("/v2/{repo}/blobs/{digest}"));
            let (status, _, body) = request("GET", &url, &[], None).expect("registry down");
            if status == 200 {
                assert!(
                    sha256(&body) == digest,
                    "{repo} serves {digest} with other bytes"
                );
            }
        }
    }
    for (repo, data) in expected {
        let digest = sha256(data);
        let answer = request(
            "GET",
            &server.url(&format!("/v2/{repo}/blobs/{digest}")),
            &[],
            None,
        );
        let (status, _, body) = answer.expect("registry down");
        assert_eq!(status, 200, "{repo}@{digest} lost");
        assert!(
            sha256(&body) == digest,
            "{repo}@{digest} served wrong content"
        );
    }
}

fn kill_during_pushes(backend: Backend) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server::start(&backend, port, "");
    // Committed before any kill.
    let early: Vec<(String, Vec<u8>)> = (0..3)
        .map(|index| {
            (
                format!("early/{index}"),
                pseudo_random(100 + index, 3 << 20),
            )
        })
        .collect();
    for (repo, data) in &early {
        let state = Mutex::new(PushState::default());
        push(&base, repo, data, index_is_odd(repo), &state);
        assert!(state.lock().unwrap().committed);
    }
    let mut committed: Vec<(String, Vec<u8>)> = early.clone();
    // Two kill cycles: early in every push, then just after the first push has committed.
    for cycle in 0..2u64 {
        let pushes: Vec<(String, Vec<u8>, bool)> = (0..4)
            .map(|index| {
                let seed = 1000 * (cycle + 1) + index;
                let len = ((8 << 20) * (index as usize + 1)) + 4099;
                (
                    format!("big/c{cycle}-{index}"),
                    pseudo_random(seed, len),
                    index % 2 == 1,
                )
            })
            .collect();
        let states: Vec<Arc<Mutex<PushState>>> = pushes.iter().map(|_| Arc::default()).collect();
        let threads: Vec<_> = pushes
            .iter()
            .zip(&states)
            .map(|((repo, data, chunked), state)| {
                let (base, repo, data, chunked, state) = (
                    base.clone(),
                    repo.clone(),
                    data.clone(),
                    *chunked,
                    state.clone(),
                );
                std::thread::spawn(move || push(&base, &repo, &data, chunked, &state))
            })
            .collect();
        if cycle == 0 {
            std::thread::sleep(Duration::from_millis(400));
        } else {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !states.iter().any(|state| state.lock().unwrap().committed) {
                assert!(Instant::now() < deadline, "no push finished");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        server.kill_9();
        for thread in threads {
            thread.join().unwrap();
        }
        server = Server::start(&backend, port, "");
        let mut interrupted = 0;
        for ((repo, data, _), state) in pushes.iter().zip(&states) {
            let state = state.lock().unwrap();
            if state.committed {
                committed.push((repo.clone(), data.clone()));
            } else {
                interrupted += 1;
            }
        }
        assert!(interrupted > 0, "the kill came after every push finished");
        // Nothing torn is served, and everything committed (before or during) survived.
        let expected: Vec<(String, &[u8])> = committed
            .iter()
            .map(|(repo, data)| (repo.clone(), data.as_slice()))
            .collect();
        verify_blobs(&server, &backend, &expected);
        // A client retry of every interrupted push succeeds.
        for ((repo, data, _), state) in pushes.iter().zip(&states) {
            let state = state.lock().unwrap();
            if !state.committed {
                retry(&base, repo, data, state.location.as_deref());
                committed.push((repo.clone(), data.clone()));
            }
        }
        let expected: Vec<(String, &[u8])> = committed
            .iter()
            .map(|(repo, data)| (repo.clone(), data.as_slice()))
            .collect();
        verify_blobs(&server, &backend, &expected);
    }
    // And the retried blobs make an image.
    let config = b"{}";
    let config_state = Mutex::new(PushState::default());
    push(&base, "big/c1-0", config, false, &config_state);
    let layer = &committed
        .iter()
        .find(|(repo, _)| repo == "big/c1-0")
        .unwrap()
        .1;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": layer.len()}],
    }))
    .unwrap();
    let put = request(
        "PUT",
        &format!("{base}/v2/big/c1-0/manifests/latest"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&manifest),
    );
    assert!(matches!(put, Some((201, ..))), "{put:?}");
}

fn index_is_odd(repo: &str) -> bool {
    repo.ends_with(['1', '3', '5', '7', '9'])
}

/// A one-layer image pushed the way docker does: skip blobs the registry says it has, upload
/// the others, put the manifest; when the manifest names a blob the registry no longer has
/// (a collection pass took it between the upload and the manifest), upload again and retry.
fn push_image(base: &str, repo: &str, tag: &str, blobs: &[&[u8]]) -> String {
    let digests: Vec<String> = blobs.iter().map(|blob| sha256(blob)).collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0], "size": blobs[0].len()},
        "layers": digests[1..].iter().zip(&blobs[1..]).map(|(digest, blob)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": blob.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    for _attempt in 0..50 {
        for (blob, digest) in blobs.iter().zip(&digests) {
            let head = request(
                "HEAD",
                &format!("{base}/v2/{repo}/blobs/{digest}"),
                &[],
                None,
            );
            if matches!(head, Some((200, ..))) {
                continue;
            }
            let state = Mutex::new(PushState::default());
            push(base, repo, blob, false, &state);
            assert!(state.lock().unwrap().committed, "blob push to {repo}");
        }
        let put = request(
            "PUT",
            &format!("{base}/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", OCI_MANIFEST)],
            Some(&manifest),
        );
        let (status, headers, body) = put.expect("registry down");
        if status == 201 {
            return headers["docker-content-digest"].clone();
        }
        assert_eq!(
            error_code(&body),
            "MANIFEST_BLOB_UNKNOWN",
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    panic!("{repo}:{tag}: the manifest push never succeeded");
}

fn gc_during_pushes(backend: Backend) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Passes back to back, sparing nothing for age (an S3 pass lists the bucket and takes
    // longer: spaced so that pushes also get through between passes).
    let interval = if backend.s3.is_some() {
        "300ms"
    } else {
        "50ms"
    };
    let server = Server::start(
        &backend,
        port,
        &format!("gc:\n  interval: {interval}\n  grace: 0\n"),
    );
    let shared_base = pseudo_random(7, 300 << 10);
    let threads: Vec<_> = (0..4u64)
        .map(|worker| {
            let base = base.clone();
            let shared_base = shared_base.clone();
            std::thread::spawn(move || {
                let repo = format!("gc/w{worker}");
                let config = format!("{{\"worker\":{worker}}}").into_bytes();
                let mut orphans = Vec::new();
                let mut deleted_layers = Vec::new();
                let mut previous: Option<(String, Vec<u8>)> = None;
                for image in 0..8u64 {
                    let layer = pseudo_random(worker * 100 + image, (64 << 10) + image as usize);
                    let blobs: [&[u8]; 3] = [&config, &shared_base, &layer];
                    let digest = push_image(&base, &repo, &format!("v{image}"), &blobs);
                    // Garbage for the collector: an untagged, deleted revision's own layer and a
                    // blob no manifest ever names.
                    if let Some((old_digest, old_layer)) = previous.take() {
                        let url = format!("{base}/v2/{repo}/manifests/{old_digest}");
                        let deleted = request("DELETE", &url, &[], None);
                        assert!(matches!(deleted, Some((202, ..))), "{deleted:?}");
                        deleted_layers.push(old_layer);
                    } else {
                        previous = Some((digest, layer));
                    }
                    let orphan = pseudo_random(worker * 100 + image + 50, 4096);
                    let state = Mutex::new(PushState::default());
                    push(&base, &repo, &orphan, false, &state);
                    orphans.push(orphan);
                }
                (repo, orphans, deleted_layers)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // A few more passes, then: every tagged manifest's blobs are all there and intact.
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, catalog) = request("GET", &server.url("/v2/_catalog"), &[], None).unwrap();
    let catalog: Value = serde_json::from_slice(&catalog).unwrap();
    let mut checked = 0;
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let (_, _, tags) = request(
            "GET",
            &server.url(&format!("/v2/{repo}/tags/list")),
            &[],
            None,
        )
        .unwrap();
        let tags: Value = serde_json::from_slice(&tags).unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let url = server.url(&format!("/v2/{repo}/manifests/{}", tag.as_str().unwrap()));
            let (status, _, manifest) = request("GET", &url, &[], None).unwrap();
            assert_eq!(status, 200);
            let manifest: Value = serde_json::from_slice(&manifest).unwrap();
            let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
            for layer in manifest["layers"].as_array().unwrap() {
                digests.push(layer["digest"].as_str().unwrap().to_owned());
            }
            for digest in digests {
                let url = server.url(&format!("/v2/{repo}/blobs/{digest}"));
                let (status, _, body) = request("GET", &url, &[], None).unwrap();
                assert_eq!(status, 200, "{repo}:{tag} lost {digest}");
                assert_eq!(sha256(&body), digest, "{repo}:{tag}: {digest} corrupt");
                checked += 1;
            }
        }
    }
    // Per worker, v1, v3, v5 and v7 stay tagged (v0, v2, ... were deleted): 3 blobs each.
    assert_eq!(checked, 4 * 4 * 3, "blobs of tagged manifests checked");
    // The collector did run during the pushes: the garbage is gone.
    let stored: BTreeSet<String> = backend
        .stored_blobs()
        .into_iter()
        .map(|(name, _)| format!("sha256:{name}"))
        .collect();
    for (repo, orphans, deleted_layers) in &results {
        for garbage in orphans.iter().chain(deleted_layers) {
            assert!(
                !stored.contains(&sha256(garbage)),
                "{repo}: unreferenced blob {} was never collected",
                sha256(garbage)
            );
        }
    }
    let log = server.log_text();
    assert!(log.contains("online garbage collection"), "{log}");
    for (name, bytes) in backend.stored_blobs() {
        if let Some(bytes) = bytes {
            assert_eq!(sha256(&bytes), format!("sha256:{name}"));
        }
    }
}

fn fs_backend(dir: &Path) -> Backend {
    Backend {
        root: dir.join("registry"),
        s3: None,
    }
}

fn s3_backend(dir: &Path, name: &str) -> Option<Backend> {
    let port = moto_port()?;
    let bucket = format!("strata-{}-{name}", std::process::id());
    let created = ureq::put(&format!("http://127.0.0.1:{port}/{bucket}")).call();
    assert!(created.is_ok(), "creating bucket {bucket}: {created:?}");
    Some(Backend {
        root: dir.join("staging"),
        s3: Some((port, bucket)),
    })
}

#[test]
fn registry_kill_9_during_pushes_keeps_committed_blobs_and_serves_nothing_torn() {
    let dir = tempfile::tempdir().unwrap();
    kill_during_pushes(fs_backend(dir.path()));
}

#[test]
fn registry_s3_kill_9_during_pushes_keeps_committed_blobs_and_serves_nothing_torn() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(backend) = s3_backend(dir.path(), "kill") {
        kill_during_pushes(backend);
    }
}

#[test]
fn registry_online_gc_during_pushes_never_loses_a_referenced_blob() {
    let dir = tempfile::tempdir().unwrap();
    gc_during_pushes(fs_backend(dir.path()));
}

#[test]
fn registry_s3_online_gc_during_pushes_never_loses_a_referenced_blob() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(backend) = s3_backend(dir.path(), "gc") {
        gc_during_pushes(backend);
    }
}
