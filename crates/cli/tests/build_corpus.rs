//! The Dockerfile corpus (tests/dockerfiles/NN-name/), data-driven: every directory is built
//! by the real `strata build` against images this test makes itself (busybox-static imported
//! into a fresh store as `bb`, a debootstrap Debian rootfs as `deb` where a Dockerfile needs
//! it), and checked against the directory's `expect.json` (format in tests/dockerfiles/README.md).
//! A directory whose feature is not implemented yet expects its exact error message
//! (`unsupported`): when the feature lands, the build succeeds and this test fails until the
//! expectation is updated to what the image must hold.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::build::*;
use common::{Strata, debian_rootfs, have, peers_required, run_tool};
use serde::Deserialize;
use serde_json::Value;

/// The expectations for one corpus directory (`expect.json`). Unknown keys are an error, so a
/// typo cannot silently turn a check off.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// What the directory exercises (documentation only).
    #[serde(default)]
    about: String,
    /// The image `BASE` names: "busybox" (default), "debian", or "none" (no BASE build arg).
    #[serde(default)]
    base: Option<String>,
    /// Build on the image another corpus directory produced (it sorts earlier): BASE is that
    /// image's tag.
    #[serde(default)]
    base_image: Option<String>,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    /// More `strata build` flags. `{dir}` is the corpus directory, `{tmp}` a scratch
    /// directory, `{server}` the URL of the test HTTP server (see `serve`).
    #[serde(default)]
    flags: Vec<String>,
    /// Serve this subdirectory of the corpus directory over HTTP on a free loopback port.
    #[serde(default)]
    serve: Option<String>,
    /// Not implemented yet: the build must fail and print this message.
    #[serde(default)]
    unsupported: Option<String>,
    /// Must fail by design (a negative case): the build must fail and print this message.
    #[serde(default)]
    error: Option<String>,
    /// Text the build output (stderr, plain progress) must contain.
    #[serde(default)]
    log: Vec<String>,
    /// Whole lines that a step printed (plain progress `#N 0.123 LINE`: the LINE part).
    #[serde(default)]
    output: Vec<String>,
    /// Text the build's standard output must contain (`--check` reports there).
    #[serde(default)]
    stdout: Vec<String>,
    /// The exit status of a build that is not an `error` case (default 0; `--check` with
    /// warnings exits with 1).
    #[serde(default)]
    exit_code: Option<i32>,
    /// Bare git repositories served (as a dumb HTTP git remote) by the server of `serve`:
    /// `{"repo.git": "subdir"}` commits the files of the corpus subdirectory on branch `main`.
    #[serde(default)]
    git_repos: BTreeMap<String, String>,
    /// Where strata knowingly differs from BuildKit: the `buildkit` checks must fail and the
    /// `strata` checks hold, until strata is fixed (then the test asks to move them).
    #[serde(default)]
    known_differences: Vec<KnownDifference>,
    /// Files in the image and their exact content.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Paths that must not exist in the image.
    #[serde(default)]
    absent: Vec<String>,
    /// Type, mode, owner or symlink target of paths in the image.
    #[serde(default)]
    meta: BTreeMap<String, Meta>,
    /// Image config: a plain key is a field of `.config` (`Cmd`, `Env`...); a key starting with
    /// `/` is a JSON pointer into the whole config (`/author`). `null` means absent.
    #[serde(default)]
    config: BTreeMap<String, Value>,
    /// The last entries of the image history, in order.
    #[serde(default)]
    history: Vec<HistoryEntry>,
    /// More names that must refer to the built image (from extra `-t` flags).
    #[serde(default)]
    images: Vec<String>,
    /// Files under `{tmp}` after the build (`--iidfile`, `--output`); `{image_id}` is replaced.
    #[serde(default)]
    tmp_files: BTreeMap<String, String>,
    /// The build makes no image (`--check`, `--output`): the tag must not exist.
    #[serde(default)]
    no_image: bool,
}

/// A difference from BuildKit: each side holds only output and image checks (`log`,
/// `output`, `files`, `absent`, `meta`, `config`, `history`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownDifference {
    about: String,
    buildkit: Expect,
    strata: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// "file", "dir" or "symlink".
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Permission bits in octal, e.g. "0755".
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryEntry {
    created_by: String,
    #[serde(default)]
    empty_layer: bool,
}

/// A busybox-static rootfs: every applet, /etc/passwd and /etc/group with an `app` user (1000)
/// and a `nobody` user (65534).
fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = run_tool("/bin/busybox", &["--list"]);
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:\nnogroup:x:65534:\n",
    )
    .unwrap();
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles")
}

/// A minimal static-file HTTP server (GET only) on a free loopback port, for ADD <url> and
/// dumb-HTTP git remotes: a path is looked up in each root in turn; the query string is
/// ignored, so git's smart-protocol probe gets the plain `info/refs` and falls back to dumb.
fn serve(roots: Vec<PathBuf>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(n) if n > 2 => {}
                    _ => break,
                }
            }
            let target = request.split_whitespace().nth(1).unwrap_or("/");
            let path = target.split('?').next().unwrap_or("/");
            let mut out = &stream;
            let within = !path.contains("..");
            let body = roots
                .iter()
                .map(|root| root.join(path.trim_start_matches('/')))
                .find(|file| within && file.is_file())
                .and_then(|file| std::fs::read(file).ok());
            match body {
                Some(body) => {
                    let _ = write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = out.write_all(&body);
                }
                None => {
                    let _ = out.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    format!("http://{addr}")
}

/// Runs git without the user's or system configuration, with a fixed identity and dates (the
/// same files give the same commit).
fn git(args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=strata-test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bare repository `served/<name>` holding one commit (branch `main`) of the files in
/// `work`, ready for a dumb-HTTP server (`git update-server-info`).
fn make_git_repo(served: &Path, name: &str, work: &Path) {
    let bare = served.join(name);
    let bare = bare.to_str().unwrap();
    let work = work.to_str().unwrap();
    git(&["init", "-q", "--bare", "-b", "main", bare]);
    let with_tree = |args: &[&str]| {
        git(&[&["--git-dir", bare, "--work-tree", work][..], args].concat());
    };
    with_tree(&["add", "-A"]);
    with_tree(&["commit", "-q", "-m", "corpus repository"]);
    git(&["--git-dir", bare, "update-server-info"]);
}

struct Corpus {
    strata: Strata,
    have_debian: bool,
    debian_imported: bool,
}

impl Corpus {
    /// BASE for this directory, or None when the directory cannot run here (no Debian rootfs).
    fn base(&mut self, expect: &Expect) -> Option<Option<String>> {
        if let Some(other) = &expect.base_image {
            return Some(Some(image_tag(other)));
        }
        match expect.base.as_deref().unwrap_or("busybox") {
            "busybox" => Some(Some("bb".into())),
            "none" => Some(None),
            "debian" => {
                if !self.have_debian {
                    return None;
                }
                if !self.debian_imported {
                    let rootfs = debian_rootfs().unwrap();
                    self.strata
                        .ok(&["import", rootfs.to_str().unwrap(), "deb:latest"]);
                    self.debian_imported = true;
                }
                Some(Some("deb".into()))
            }
            other => panic!("unknown base {other:?} (busybox, debian or none)"),
        }
    }
}

fn image_tag(dir_name: &str) -> String {
    format!("corpus/{dir_name}:latest")
}

/// The image IDs in the store (to see that a build made none).
fn image_ids(strata: &Strata) -> Vec<String> {
    let mut ids: Vec<String> = strata
        .ok(&["images", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The lines steps printed: the text after `#N <seconds> ` in plain progress.
fn step_output(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|line| {
            let (id, rest) = line.split_once(' ')?;
            if id.len() < 2 || !id[1..].bytes().all(|b| b.is_ascii_digit()) || !id.starts_with('#')
            {
                return None;
            }
            let (time, text) = rest.split_once(' ').unwrap_or((rest, ""));
            time.parse::<f64>().ok().map(|_| text)
        })
        .collect()
}

/// The `log`, `output` and `stdout` checks.
fn output_problems(checks: &Expect, stderr: &str, stdout: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for text in &checks.log {
        if !stderr.contains(text.as_str()) {
            problems.push(format!(
                "the build output lacks {text:?}:\n{}",
                tail(stderr)
            ));
        }
    }
    let lines = step_output(stderr);
    for want in &checks.output {
        if !lines.contains(&want.as_str()) {
            problems.push(format!(
                "no step printed the line {want:?}; they printed {lines:?}"
            ));
        }
    }
    for text in &checks.stdout {
        if !stdout.contains(text.as_str()) {
            problems.push(format!("standard output lacks {text:?}:\n{}", tail(stdout)));
        }
    }
    problems
}

/// Checks one directory; returns the problems found.
fn check_dir(corpus: &mut Corpus, dir: &Path, name: &str, expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(base) = corpus.base(expect) else {
        eprintln!("{name}: skipped (no Debian rootfs)");
        return problems;
    };
    if !expect.git_repos.is_empty() && !have("git", &["--version"]) {
        assert!(
            !peers_required(),
            "{name} needs git (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("{name}: skipped (no git)");
        return problems;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut roots: Vec<PathBuf> = expect.serve.iter().map(|sub| dir.join(sub)).collect();
    if !expect.git_repos.is_empty() {
        let served = tmp.path().join("git");
        std::fs::create_dir(&served).unwrap();
        for (repo, sub) in &expect.git_repos {
            make_git_repo(&served, repo, &dir.join(sub));
        }
        roots.push(served);
    }
    let server = (!roots.is_empty()).then(|| serve(roots));
    let subst = |s: &str| {
        let mut s = s
            .replace("{dir}", dir.to_str().unwrap())
            .replace("{tmp}", tmp.path().to_str().unwrap());
        if let Some(url) = &server {
            s = s.replace("{server}", url);
        }
        s
    };
    let tag = image_tag(name);
    let mut args: Vec<String> = vec!["build".into(), "--progress".into(), "plain".into()];
    // A build that must leave no image gets no tag: with `-t`, strata keeps the image even
    // for `--output` (see Known differences in tests/dockerfiles/README.md).
    let images_before = expect.no_image.then(|| image_ids(&corpus.strata));
    if !expect.no_image {
        args.extend(["-t".into(), tag.clone()]);
    }
    if let Some(base) = base {
        args.extend(["--build-arg".into(), format!("BASE={base}")]);
    }
    for (k, v) in &expect.build_args {
        args.extend(["--build-arg".into(), format!("{k}={}", subst(v))]);
    }
    args.extend(expect.flags.iter().map(|f| subst(f)));
    args.push(dir.to_str().unwrap().into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = corpus.strata.run(&argv);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stderr.contains("panicked") {
        problems.push(format!("strata panicked:\n{stderr}"));
    }
    problems.extend(output_problems(expect, &stderr, &stdout));
    let must_fail = expect.unsupported.as_ref().or(expect.error.as_ref());
    if let Some(message) = must_fail {
        if out.status.success() {
            problems.push(format!(
                "expected the build to fail with {message:?}, but it succeeded{}",
                if expect.unsupported.is_some() {
                    " (the feature is implemented now: replace `unsupported` in expect.json with what the image must hold)"
                } else {
                    ""
                }
            ));
        } else if !stderr.contains(message.as_str()) {
            problems.push(format!(
                "expected the error {message:?}; the build said:\n{}",
                tail(&stderr)
            ));
        }
        if !out.status.success()
            && corpus
                .strata
                .run(&["inspect", "--format", "{{.Id}}", &tag])
                .status
                .success()
        {
            problems.push("a failed build tagged an image".into());
        }
        return problems;
    }
    let want_code = expect.exit_code.unwrap_or(0);
    if out.status.code() != Some(want_code) {
        problems.push(format!(
            "the build exited with {}, expected {want_code}:\n{}",
            out.status,
            tail(&stderr)
        ));
        if want_code == 0 {
            return problems;
        }
    }
    if let Some(before) = images_before {
        let after = image_ids(&corpus.strata);
        if after != before {
            problems.push(format!(
                "expected no image, but the store went from {before:?} to {after:?}"
            ));
        }
        check_tmp_files(expect, tmp.path(), "", &mut problems);
        return problems;
    }
    let id_out = corpus.strata.run(&["inspect", "--format", "{{.Id}}", &tag]);
    if !id_out.status.success() {
        problems.push(format!("the build succeeded but {tag} does not exist"));
        return problems;
    }
    let image_id = String::from_utf8_lossy(&id_out.stdout).trim().to_string();
    check_tmp_files(expect, tmp.path(), &image_id, &mut problems);
    for other in &expect.images {
        let out = corpus
            .strata
            .run(&["inspect", "--format", "{{.Id}}", other]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || id != image_id {
            problems.push(format!("{other} does not name the built image {image_id}"));
        }
    }
    let hex = image_id.trim_start_matches("sha256:");
    let bytes = std::fs::read(corpus.strata.root().join("blobs/sha256").join(hex)).unwrap();
    let config: Value = serde_json::from_slice(&bytes).unwrap();
    let rootfs = tmp.path().join("rootfs");
    corpus
        .strata
        .ok(&["unpack", &tag, rootfs.to_str().unwrap()]);
    problems.extend(image_problems(expect, &config, &rootfs));
    for difference in &expect.known_differences {
        let about = &difference.about;
        let strata_side = [
            output_problems(&difference.strata, &stderr, &stdout),
            image_problems(&difference.strata, &config, &rootfs),
        ]
        .concat();
        for p in strata_side {
            problems.push(format!(
                "known difference {about:?}: strata's documented result no longer holds: {p}"
            ));
        }
        let buildkit_side = [
            output_problems(&difference.buildkit, &stderr, &stdout),
            image_problems(&difference.buildkit, &config, &rootfs),
        ]
        .concat();
        if buildkit_side.is_empty() {
            problems.push(format!(
                "known difference {about:?} is fixed: strata now gives BuildKit's result; move the `buildkit` checks into expect.json and drop the difference (and its line in tests/dockerfiles/README.md)"
            ));
        }
    }
    problems
}

fn check_tmp_files(expect: &Expect, tmp: &Path, image_id: &str, problems: &mut Vec<String>) {
    for (path, content) in &expect.tmp_files {
        let content = content.replace("{image_id}", image_id);
        match std::fs::read_to_string(tmp.join(path)) {
            Ok(actual) if actual == content => {}
            Ok(actual) => problems.push(format!(
                "{{tmp}}/{path}: expected {content:?}, found {actual:?}"
            )),
            Err(e) => problems.push(format!("{{tmp}}/{path}: {e}")),
        }
    }
}

/// The `files`, `absent`, `meta`, `config` and `history` checks against the image's config
/// and unpacked root filesystem.
fn image_problems(checks: &Expect, config: &Value, rootfs: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    check_config(config, checks, &mut problems);
    for (path, content) in &checks.files {
        match std::fs::read(rootfs.join(path.trim_start_matches('/'))) {
            Ok(actual) if actual == content.as_bytes() => {}
            Ok(actual) => problems.push(format!(
                "{path}: expected {content:?}, found {:?}",
                String::from_utf8_lossy(&actual)
            )),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    for path in &checks.absent {
        if rootfs
            .join(path.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
        {
            problems.push(format!("{path} must not be in the image"));
        }
    }
    for (path, meta) in &checks.meta {
        let full = rootfs.join(path.trim_start_matches('/'));
        let Ok(md) = full.symlink_metadata() else {
            problems.push(format!("{path}: missing"));
            continue;
        };
        let kind = if md.file_type().is_symlink() {
            "symlink"
        } else if md.is_dir() {
            "dir"
        } else if md.is_file() {
            "file"
        } else {
            "other"
        };
        if let Some(want) = &meta.kind
            && want != kind
        {
            problems.push(format!("{path}: expected a {want}, found a {kind}"));
        }
        if let Some(mode) = &meta.mode {
            let want = u32::from_str_radix(mode, 8).unwrap_or_else(|_| panic!("mode {mode:?}"));
            let have = md.mode() & 0o7777;
            if have != want {
                problems.push(format!(
                    "{path}: expected mode {want:04o}, found {have:04o}"
                ));
            }
        }
        if let Some(uid) = meta.uid
            && md.uid() != uid
        {
            problems.push(format!("{path}: expected uid {uid}, found {}", md.uid()));
        }
        if let Some(gid) = meta.gid
            && md.gid() != gid
        {
            problems.push(format!("{path}: expected gid {gid}, found {}", md.gid()));
        }
        if let Some(target) = &meta.target {
            match std::fs::read_link(&full) {
                Ok(t) if t == Path::new(target) => {}
                Ok(t) => problems.push(format!(
                    "{path}: expected a link to {target:?}, found {}",
                    t.display()
                )),
                Err(e) => problems.push(format!("{path}: not a symlink: {e}")),
            }
        }
    }
    problems
}

fn check_config(config: &Value, expect: &Expect, problems: &mut Vec<String>) {
    for (key, want) in &expect.config {
        let have = if key.starts_with('/') {
            config.pointer(key)
        } else {
            config.get("config").and_then(|c| c.get(key))
        };
        let have = have.unwrap_or(&Value::Null);
        if have != want {
            problems.push(format!("config {key}: expected {want}, found {have}"));
        }
    }
    if expect.history.is_empty() {
        return;
    }
    let history = config["history"].as_array().cloned().unwrap_or_default();
    if history.len() < expect.history.len() {
        problems.push(format!(
            "history has {} entries, expected at least {}",
            history.len(),
            expect.history.len()
        ));
        return;
    }
    let tail = &history[history.len() - expect.history.len()..];
    for (want, have) in expect.history.iter().zip(tail) {
        let created_by = have["created_by"].as_str().unwrap_or("");
        let empty = have["empty_layer"].as_bool().unwrap_or(false);
        if created_by != want.created_by || empty != want.empty_layer {
            problems.push(format!(
                "history: expected {:?} (empty_layer {}), found {created_by:?} (empty_layer {empty})",
                want.created_by, want.empty_layer
            ));
        }
    }
}

/// The last lines of a build log, enough to see the error.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn load_expect(dir: &Path) -> Result<Expect, String> {
    let path = dir.join("expect.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn corpus_entries() -> Vec<(String, PathBuf)> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    entries.sort();
    entries
}

/// Every corpus directory has a Dockerfile and a valid expect.json, and the corpus meets the
/// acceptance bar: at least 40 directories that build today.
#[test]
fn corpus_is_complete() {
    let mut problems = Vec::new();
    let mut building = 0;
    for (name, dir) in corpus_entries() {
        if !dir.join("Dockerfile").is_file() && !has_custom_dockerfile(&dir) {
            problems.push(format!("{name}: no Dockerfile"));
        }
        match load_expect(&dir) {
            Ok(expect) => {
                if expect.about.is_empty() {
                    problems.push(format!("{name}: expect.json has no `about`"));
                }
                if expect.unsupported.is_none()
                    && expect.error.is_none()
                    && expect.exit_code.unwrap_or(0) == 0
                {
                    building += 1;
                }
                for difference in &expect.known_differences {
                    if difference.about.is_empty() {
                        problems.push(format!("{name}: a known difference has no `about`"));
                    }
                    for side in [&difference.buildkit, &difference.strata] {
                        if !only_checks(side) {
                            problems.push(format!(
                                "{name}: known difference {:?}: only log, output, stdout, files, absent, meta, config and history checks belong there",
                                difference.about
                            ));
                        }
                    }
                }
                if let Some(other) = &expect.base_image
                    && other.as_str() >= name.as_str()
                {
                    problems.push(format!("{name}: base_image {other} must sort earlier"));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        building >= 40,
        "only {building} corpus directories are expected to build (acceptance: >= 40)"
    );
}

/// Whether an expectation holds nothing but output and image checks (one side of a known
/// difference).
fn only_checks(e: &Expect) -> bool {
    e.about.is_empty()
        && e.base.is_none()
        && e.base_image.is_none()
        && e.build_args.is_empty()
        && e.flags.is_empty()
        && e.serve.is_none()
        && e.unsupported.is_none()
        && e.error.is_none()
        && e.exit_code.is_none()
        && e.git_repos.is_empty()
        && e.known_differences.is_empty()
        && e.images.is_empty()
        && e.tmp_files.is_empty()
        && !e.no_image
}

fn has_custom_dockerfile(dir: &Path) -> bool {
    load_expect(dir).is_ok_and(|e| e.flags.iter().any(|f| f == "-f" || f == "--file"))
}

#[test]
fn corpus_builds_as_expected() {
    if !can_build() {
        return;
    }
    let strata = Strata::new();
    let rootfs = tempfile::tempdir().unwrap();
    busybox_rootfs(rootfs.path());
    strata.ok(&["import", rootfs.path().to_str().unwrap(), "bb:latest"]);
    // Some Dockerfiles name the busybox image by the reference a test registry would serve it
    // under (COPY --from=<image>, RUN --mount=from=<image>): the local store has it.
    strata.ok(&[
        "tag",
        "bb:latest",
        "localhost:5000/strata-test/busybox:latest",
    ]);
    let mut corpus = Corpus {
        strata,
        have_debian: false,
        debian_imported: false,
    };
    let only = std::env::var("STRATA_CORPUS_ONLY").ok();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, dir) in corpus_entries() {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let expect = match load_expect(&dir) {
            Ok(e) => e,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if expect.base.as_deref() == Some("debian") && !corpus.have_debian {
            corpus.have_debian = debian_rootfs().is_some();
        }
        let problems = check_dir(&mut corpus, &dir, &name, &expect);
        checked += 1;
        for p in problems {
            failures.push(format!("{name}: {p}"));
        }
    }
    eprintln!("checked {checked} corpus directories");
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// `strata builder prune` forgets the build cache (a rebuild runs every step again, with the
/// same result) and keeps the images and what they need.
#[test]
fn builder_prune_empties_the_build_cache() {
    if !can_build() {
        return;
    }
    let strata = Strata::new();
    let rootfs = tempfile::tempdir().unwrap();
    busybox_rootfs(rootfs.path());
    strata.ok(&["import", rootfs.path().to_str().unwrap(), "bb:latest"]);
    let dir = corpus_dir().join("01-minimal");
    let build = |tag: &str| {
        let out = strata.run(&[
            "build",
            "--progress",
            "plain",
            "--build-arg",
            "BASE=bb",
            "-t",
            tag,
            dir.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build failed: {stderr}");
        stderr
    };
    let first = build("pruned:1");
    assert!(!first.contains("CACHED"), "{first}");
    let again = build("pruned:2");
    assert!(
        again.contains("CACHED"),
        "a rebuild should hit the cache: {again}"
    );
    let report = strata.ok(&["builder", "prune"]);
    assert!(
        report.contains("Deleted build cache records: 1,"),
        "{report}"
    );
    assert!(!strata.root().join("build-cache/checksums").exists());
    let after = build("pruned:3");
    assert!(
        !after.contains("CACHED"),
        "the cache should be empty: {after}"
    );
    // The images survive, with their content.
    for tag in ["pruned:1", "bb:latest"] {
        strata.ok(&["inspect", tag]);
    }
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("rootfs");
    strata.ok(&["unpack", "pruned:1", target.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(target.join("hello.txt")).unwrap(),
        "hello\n"
    );
    let second = strata.ok(&["builder", "prune"]);
    assert!(
        second.contains("Deleted build cache records: 1,"),
        "{second}"
    );
}
