//! COPY and ADD in `strata build`, end to end on the real binary: `--parents`, `--exclude`,
//! `--link`, `--chown`/`--chmod` forms, hard links and symlinks, ADD of URLs from a loopback
//! HTTP server started here (with `--checksum` and the cache), ADD of local archives, ONBUILD
//! triggers, and the repository's COPY/ADD Dockerfiles. Where dockerd runs, the same ADD/COPY
//! file metadata is compared with what `docker build` makes.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::build::*;
use common::{Strata, have, peers_required, run_tool};
use serde_json::json;

/// A busybox root filesystem with /etc/passwd and /etc/group (users root, app; groups root,
/// app, staff).
fn busybox_rootfs() -> tempfile::TempDir {
    let rootfs = tempfile::tempdir().unwrap();
    let dir = rootfs.path();
    busybox_tree(dir);
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:\n",
    )
    .unwrap();
    rootfs
}

/// A store with `bb:latest` (see [`busybox_rootfs`]).
fn store_with_busybox() -> Strata {
    let strata = Strata::new();
    let rootfs = busybox_rootfs();
    strata.ok(&["import", rootfs.path().to_str().unwrap(), "bb:latest"]);
    strata
}

fn build_err(strata: &Strata, ctx: &Path, extra: &[&str]) -> String {
    let out = build(strata, ctx, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "build should fail");
    stderr
}

fn meta(dir: &tempfile::TempDir, path: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(dir.path().join("rootfs").join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn exists(dir: &tempfile::TempDir, path: &str) -> bool {
    std::fs::symlink_metadata(dir.path().join("rootfs").join(path)).is_ok()
}

/// (uid, gid, permission bits) of `path` in the unpacked image.
fn owner_mode(dir: &tempfile::TempDir, path: &str) -> (u32, u32, u32) {
    let m = meta(dir, path);
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// A loopback HTTP/1.1 server for ADD: serves `files` (path -> body), `Last-Modified` on each,
/// 404 otherwise, and counts the requests per path.
struct FileServer {
    port: u16,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

const LAST_MODIFIED: &str = "Thu, 02 Jan 2020 03:04:05 GMT";
const LAST_MODIFIED_EPOCH: i64 = 1_577_934_245;

impl FileServer {
    fn start(files: &[(&str, &[u8])]) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::new(Mutex::new(
            files
                .iter()
                .map(|(p, b)| (p.to_string(), b.to_vec()))
                .collect(),
        ));
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let total = Arc::new(AtomicUsize::new(0));
        let (f, h, t) = (files.clone(), hits.clone(), total.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let target = request.split(' ').nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/").to_string();
                t.fetch_add(1, Ordering::SeqCst);
                *h.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let body = f.lock().unwrap().get(&path).cloned();
                let response = match body {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&response);
            }
        });
        FileServer {
            port,
            files,
            hits,
            total,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn set(&self, path: &str, body: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), body.to_vec());
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/dockerfiles")
        .join(name)
}

#[test]
fn repository_copy_and_add_dockerfiles_build() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let served = std::fs::read(corpus("31-add-checksum/file.txt")).unwrap();
    let server = FileServer::start(&[("/file.txt", &served)]);
    let server_arg = format!("SERVER=http://127.0.0.1:{}", server.port);
    for name in [
        "23-onbuild",
        "30-add-local",
        "31-add-checksum",
        "33-copy-parents-exclude",
        "34-copy-chown-chmod-link",
        "45-copy-json-form",
    ] {
        let out = build(
            &strata,
            &corpus(name),
            &[
                "--build-arg",
                "BASE=bb",
                "--build-arg",
                &server_arg,
                "-t",
                name,
            ],
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let fs = unpack(&strata, "30-add-local");
    assert_eq!(owner_mode(&fs, "etc/app/config.txt"), (1000, 1000, 0o644));
    assert_eq!(read(&fs, "srv/assets/logo.txt"), read(&fs, "logo.txt"));
    assert!(!exists(&fs, "srv/assets/junk.tmp"), "--exclude=*.tmp");

    let fs = unpack(&strata, "31-add-checksum");
    assert_eq!(read(&fs, "downloaded.txt").as_bytes(), served.as_slice());
    assert_eq!(
        read(&fs, "downloads/file.txt").as_bytes(),
        served.as_slice()
    );
    let downloaded = meta(&fs, "downloaded.txt");
    assert_eq!(downloaded.mode() & 0o7777, 0o600, "Docker's mode for URLs");
    assert_eq!(downloaded.mtime(), LAST_MODIFIED_EPOCH);

    let fs = unpack(&strata, "33-copy-parents-exclude");
    assert_eq!(
        read(&fs, "dst/src/one/main.txt"),
        read(&fs, "all/one/main.txt")
    );
    assert!(exists(&fs, "dst/src/two/main.txt"));
    assert!(!exists(&fs, "dst/src/debug.log") && !exists(&fs, "dst/one"));
    assert!(exists(&fs, "all/two/main.txt"));
    assert!(!exists(&fs, "all/debug.log"), "--exclude=*.log");
    assert!(!exists(&fs, "all/tmp"), "--exclude=tmp/");

    let fs = unpack(&strata, "34-copy-chown-chmod-link");
    assert_eq!(owner_mode(&fs, "usr/local/bin/app.sh"), (1000, 1000, 0o644));
    assert_eq!(owner_mode(&fs, "usr/local/bin/app2.sh"), (0, 0, 0o755));
    assert_eq!(owner_mode(&fs, "usr/local/bin/app3.sh"), (0, 0, 0o755));

    let config = config_of(&strata, "23-onbuild");
    assert_eq!(
        config["config"]["OnBuild"],
        json!([
            "RUN echo triggered > /onbuild",
            "COPY . /app/src",
            "ENV ONBUILD_SET=1"
        ])
    );
    // A child of that image runs its triggers first and does not keep them.
    let ctx = context(
        "FROM 23-onbuild\nRUN test -f /app/src/marker && echo \"set=$ONBUILD_SET\" > /child\n",
        &[("marker", "m\n")],
    );
    build_ok(&strata, ctx.path(), &["-t", "onbuild-child"]);
    let fs = unpack(&strata, "onbuild-child");
    assert_eq!(read(&fs, "onbuild"), "triggered\n");
    assert_eq!(read(&fs, "child"), "set=1\n");
    let config = config_of(&strata, "onbuild-child");
    assert!(config["config"].get("OnBuild").is_none(), "{config}");
    let history = config["history"].as_array().unwrap();
    let created_by: Vec<&str> = history
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        created_by,
        [
            "RUN /bin/sh -c echo triggered > /onbuild # buildkit",
            "COPY . /app/src # buildkit",
            "ENV ONBUILD_SET=1",
            "RUN /bin/sh -c test -f /app/src/marker && echo \"set=$ONBUILD_SET\" > /child # buildkit",
        ]
    );
}

#[test]
fn onbuild_triggers_of_a_base_stage_run_in_the_child() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS base\n\
         ENV WHO=base\n\
         ONBUILD RUN echo \"trigger saw $WHO\" > /trigger\n\
         ONBUILD ARG LATE=default\n\
         ONBUILD RUN echo \"late=$LATE\" > /late\n\
         RUN test ! -e /trigger\n\
         FROM base AS child\n\
         RUN cat /trigger /late > /seen\n",
        &[],
    );
    let progress = build_ok(
        &strata,
        ctx.path(),
        &[
            "-t",
            "stage-child",
            "--build-arg",
            "LATE=given",
            "--progress",
            "plain",
        ],
    );
    let fs = unpack(&strata, "stage-child");
    assert_eq!(read(&fs, "seen"), "trigger saw base\nlate=given\n");
    assert!(
        progress.contains("RUN echo \"trigger saw $WHO\" > /trigger"),
        "{progress}"
    );
    let config = config_of(&strata, "stage-child");
    assert!(config["config"].get("OnBuild").is_none());
    // Built as the target itself, the base stage keeps its triggers for its children.
    build_ok(
        &strata,
        ctx.path(),
        &["-t", "stage-base", "--target", "base"],
    );
    let config = config_of(&strata, "stage-base");
    assert_eq!(config["config"]["OnBuild"].as_array().unwrap().len(), 3);
}

#[test]
fn add_urls_with_checksums_names_and_cache() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let body = b"remote content\n".to_vec();
    let server = FileServer::start(&[("/dir/data.bin", &body), ("/", b"index\n")]);
    let good = format!("sha256:{}", sha256_hex(&body));
    let dockerfile = format!(
        "FROM bb\n\
         ADD {url} /into/\n\
         ADD {url} /renamed.bin\n\
         ADD --chmod=644 --chown=app {root} /root-url/\n\
         ADD --checksum={good} {url} /pinned\n",
        url = server.url("/dir/data.bin"),
        root = server.url("/"),
    );
    let ctx = context(&dockerfile, &[]);
    build_ok(&strata, ctx.path(), &["-t", "urls"]);
    let fs = unpack(&strata, "urls");
    assert_eq!(read(&fs, "into/data.bin"), "remote content\n");
    assert_eq!(read(&fs, "renamed.bin"), "remote content\n");
    assert_eq!(read(&fs, "pinned"), "remote content\n");
    assert_eq!(owner_mode(&fs, "renamed.bin"), (0, 0, 0o600));
    assert_eq!(meta(&fs, "renamed.bin").mtime(), LAST_MODIFIED_EPOCH);
    // A URL without a path element gets BuildKit's name.
    assert_eq!(read(&fs, "root-url/__unnamed__"), "index\n");
    assert_eq!(owner_mode(&fs, "root-url/__unnamed__"), (1000, 1000, 0o644));
    // Downloaded once per build although three steps name it.
    assert_eq!(server.hits("/dir/data.bin"), 1);

    // Unchanged content: every step is cached (the unpinned URLs are fetched to compare).
    let progress = build_ok(&strata, ctx.path(), &["-t", "urls2", "--progress", "plain"]);
    assert_eq!(progress.matches("CACHED").count(), 4, "{progress}");
    // The pinned step's key needs no download: one fetch for the two unpinned steps.
    assert_eq!(server.hits("/dir/data.bin"), 2);
    // Changed content: the unpinned steps rerun; the pinned one now fails verification.
    server.set("/dir/data.bin", b"changed\n");
    let err = build_err(&strata, ctx.path(), &["--no-cache"]);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(&good), "{err}");
    assert!(err.contains("Dockerfile:5"), "{err}");
    let unpinned = context(
        &format!("FROM bb\nADD {} /into/\n", server.url("/dir/data.bin")),
        &[],
    );
    build_ok(&strata, unpinned.path(), &["-t", "changed"]);
    assert_eq!(
        read(&unpack(&strata, "changed"), "into/data.bin"),
        "changed\n"
    );

    for (dockerfile, expected) in [
        (
            format!("FROM bb\nADD {} /x\n", server.url("/missing")),
            "404".to_string(),
        ),
        (
            format!("FROM bb\nADD --checksum={good} a /x\n"),
            "checksum requires HTTP(S) or Git sources".to_string(),
        ),
        (
            format!(
                "FROM bb\nADD --checksum=sha256:abc {} /x\n",
                server.url("/")
            ),
            "invalid checksum digest format".to_string(),
        ),
        (
            format!("FROM bb\nCOPY {} /x\n", server.url("/")),
            "source can't be a URL for COPY".to_string(),
        ),
    ] {
        let ctx = context(&dockerfile, &[("a", "a")]);
        let err = build_err(&strata, ctx.path(), &[]);
        assert!(err.contains(&expected), "{dockerfile}: {err}");
    }
    let total = server.total.load(Ordering::SeqCst);
    assert!(total >= 4, "requests: {total}");
}

#[test]
fn parents_exclude_link_chmod_hardlinks_symlinks_and_archives() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         RUN mkdir -p /usr/local/lib /usr/share && ln -s usr/local/lib /lnk\n\
         RUN echo old > /usr/share/real && ln -s /usr/share/real /etc/linkfile\n\
         COPY f.txt /etc/linkfile\n\
         COPY --parents a/./b/*.txt x/y/z.txt /p/\n\
         COPY --parents missing*/q /empty/\n\
         COPY --exclude=*.log --exclude=!keep.log --exclude=skip tree/ /ex/\n\
         COPY --exclude=*.txt ho* /globbed/\n\
         COPY --link f.txt /lnk/\n\
         COPY --chmod=a+rX,go-w tree /modes/\n\
         COPY --chmod=u=rwX,go=rX tree /modes-eq/\n\
         COPY --chown=app:staff --chmod=g=u tree/keep.log /named.log\n\
         COPY links /links/\n\
         ADD t.tar.gz t.tar.zst t.tar notar.gz /arch/\n\
         ADD t.tar.bz2 /bz2/\n\
         ADD t.tar.xz /xz/\n\
         ADD --chown=1234:5678 t.tar /owned-arch/\n\
         COPY f.txt nomatch* /mixed/\n\
         COPY nomatch* /nothing/\n",
        &[
            ("a/b/one.txt", "1\n"),
            ("a/b/two.txt", "2\n"),
            ("a/b/no.md", "no\n"),
            ("x/y/z.txt", "z\n"),
            ("tree/keep.log", "keep\n"),
            ("tree/drop.log", "drop\n"),
            ("tree/skip/inner", "i\n"),
            ("tree/sub/run.sh", "#!/bin/sh\n"),
            ("tree/sub/data", "d\n"),
            ("home.txt", "h\n"),
            ("house.bin", "b\n"),
            ("f.txt", "f\n"),
            ("links/file", "target\n"),
            ("arch/in/archived.txt", "from the archive\n"),
            ("notar", "plain\n"),
        ],
    );
    let c = ctx.path();
    std::fs::set_permissions(
        c.join("tree/sub/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    for (path, mode) in [("tree/sub", 0o700), ("tree/sub/data", 0o600)] {
        std::fs::set_permissions(
            c.join(path),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
    }
    std::fs::hard_link(c.join("links/file"), c.join("links/hard")).unwrap();
    std::os::unix::fs::symlink("file", c.join("links/soft")).unwrap();
    let sh = |cmd: &str| {
        let status = std::process::Command::new("sh")
            .args(["-c", cmd])
            .current_dir(c)
            .status()
            .unwrap();
        assert!(status.success(), "{cmd}");
    };
    sh("tar -cf t.tar -C arch in && gzip -kc t.tar > t.tar.gz && gzip -c notar > notar.gz");
    sh("bzip2 -kc t.tar > t.tar.bz2 && xz -kc t.tar > t.tar.xz");
    assert!(
        have("zstd", &["--version"]) || !peers_required(),
        "zstd is required (scripts/setup.sh)"
    );
    if have("zstd", &["--version"]) {
        sh("zstd -q -c t.tar > t.tar.zst");
    } else {
        eprintln!("no zstd: the zstd archive case is a gzip one");
        sh("cp t.tar.gz t.tar.zst");
    }
    build_ok(&strata, c, &["-t", "semantics"]);
    let fs = unpack(&strata, "semantics");

    // --parents: below the /./ pivot, and the full path without one.
    assert_eq!(read(&fs, "p/b/one.txt"), "1\n");
    assert!(exists(&fs, "p/b/two.txt") && !exists(&fs, "p/b/no.md"));
    assert!(!exists(&fs, "p/a"));
    assert_eq!(read(&fs, "p/x/y/z.txt"), "z\n");
    assert!(meta(&fs, "empty").is_dir(), "a glob may match nothing");
    // --exclude, several, with an exception; relative to the source.
    assert!(exists(&fs, "ex/keep.log"));
    assert!(!exists(&fs, "ex/drop.log") && !exists(&fs, "ex/skip"));
    assert!(exists(&fs, "ex/sub/data"));
    assert!(exists(&fs, "globbed/house.bin") && !exists(&fs, "globbed/home.txt"));
    // A file copied onto a symlink replaces the link's target (inside the image).
    assert!(meta(&fs, "etc/linkfile").is_symlink());
    assert_eq!(read(&fs, "usr/share/real"), "f\n");
    // --link does not follow the image's symlink: the layer has a directory there.
    assert!(
        meta(&fs, "lnk").is_dir(),
        "--link staged /lnk as a directory"
    );
    assert_eq!(read(&fs, "lnk/f.txt"), "f\n");
    // Symbolic chmod: +X makes directories and executables searchable, not other files.
    assert_eq!(owner_mode(&fs, "modes/sub").2, 0o755);
    assert_eq!(owner_mode(&fs, "modes/sub/run.sh").2, 0o755);
    assert_eq!(owner_mode(&fs, "modes/sub/data").2, 0o644);
    for (path, mode) in [("sub", 0o755), ("sub/run.sh", 0o755), ("sub/data", 0o644)] {
        assert_eq!(
            owner_mode(&fs, &format!("modes-eq/{path}")).2,
            mode,
            "{path}"
        );
    }
    assert_eq!(owner_mode(&fs, "named.log"), (1000, 50, 0o664));
    // Hard links stay hard links, symlinks stay symlinks.
    let (file, hard) = (meta(&fs, "links/file"), meta(&fs, "links/hard"));
    assert_eq!(file.ino(), hard.ino(), "hard link kept");
    assert!(meta(&fs, "links/soft").is_symlink());
    assert_eq!(
        std::fs::read_link(fs.path().join("rootfs/links/soft")).unwrap(),
        Path::new("file")
    );
    // Archives: gzip, zstd, bzip2, xz and plain tar are extracted; a gzip file without a tar
    // is not.
    assert_eq!(read(&fs, "arch/in/archived.txt"), "from the archive\n");
    assert_eq!(read(&fs, "bz2/in/archived.txt"), "from the archive\n");
    assert_eq!(read(&fs, "xz/in/archived.txt"), "from the archive\n");
    assert!(exists(&fs, "arch/notar.gz") && !exists(&fs, "arch/notar"));
    assert!(!exists(&fs, "arch/t.tar.gz") && !exists(&fs, "arch/t.tar"));
    assert_eq!(owner_mode(&fs, "owned-arch/in/archived.txt").0, 1234);
    assert_eq!(owner_mode(&fs, "owned-arch/in").1, 5678);
    assert!(exists(&fs, "mixed/f.txt"));
    // BuildKit allows a glob to match nothing: nothing is copied, no directory made.
    assert!(!exists(&fs, "nothing"));

    for (dockerfile, expected) in [
        (
            "FROM bb\nCOPY nodir/*.txt /x/\n",
            "\"nodir/*.txt\": not found",
        ),
        (
            "FROM bb\nCOPY --parents nothere/f /x/\n",
            "\"/nothere/f\": not found",
        ),
        ("FROM bb\nCOPY --chmod=u+q f /x\n", "invalid mode: u+q"),
        (
            "FROM bb\nCOPY --chmod=999 f /x\n",
            "it should be octal string and between 0 and 07777",
        ),
        (
            "FROM bb\nCOPY --parents ../f /x/\n",
            "escapes the build context",
        ),
    ] {
        let ctx = context(dockerfile, &[("f", "f")]);
        let err = build_err(&strata, ctx.path(), &[]);
        assert!(err.contains(expected), "{dockerfile}: {err}");
    }
}

#[test]
fn exclude_and_parents_change_the_cache_key() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let files = [("src/a.txt", "a\n"), ("src/b.log", "b\n")];
    let ctx = context("FROM bb\nCOPY --exclude=*.log src/ /s/\n", &files);
    build_ok(&strata, ctx.path(), &["-t", "k1"]);
    let progress = build_ok(&strata, ctx.path(), &["-t", "k1", "--progress", "plain"]);
    assert!(progress.contains("CACHED"), "{progress}");
    // Another flag value is another step.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM bb\nCOPY --exclude=*.txt src/ /s/\n",
    )
    .unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "k2", "--progress", "plain"]);
    assert!(!progress.contains("CACHED"), "{progress}");
    let fs = unpack(&strata, "k2");
    assert!(exists(&fs, "s/b.log") && !exists(&fs, "s/a.txt"));
    // A changed file the step copies reruns it; a changed excluded file does not.
    std::fs::write(ctx.path().join("src/b.log"), "changed\n").unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "k3", "--progress", "plain"]);
    assert!(!progress.contains("CACHED"), "{progress}");
    assert_eq!(read(&unpack(&strata, "k3"), "s/b.log"), "changed\n");
    std::fs::write(ctx.path().join("src/a.txt"), "excluded change\n").unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "k4", "--progress", "plain"]);
    assert!(progress.contains("CACHED"), "{progress}");
    // The same for --parents below its pivot.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM bb\nCOPY --parents --exclude=*.txt ./src/./ /p/\n",
    )
    .unwrap();
    build_ok(&strata, ctx.path(), &["-t", "k5"]);
    let fs = unpack(&strata, "k5");
    assert!(exists(&fs, "p/b.log") && !exists(&fs, "p/a.txt"));
    std::fs::write(ctx.path().join("src/a.txt"), "again\n").unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "k5", "--progress", "plain"]);
    assert!(progress.contains("CACHED"), "{progress}");
    std::fs::write(ctx.path().join("src/b.log"), "again\n").unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "k6", "--progress", "plain"]);
    assert!(!progress.contains("CACHED"), "{progress}");
    assert_eq!(read(&unpack(&strata, "k6"), "p/b.log"), "again\n");
}

/// Docker's legacy builder (this dockerd has no buildx for BuildKit) and strata agree on the
/// metadata of ADD'ed URLs, archives, hard links and `--chown`: the semantics BuildKit shares
/// with it.
#[test]
fn file_metadata_matches_docker_build() {
    if !can_build() {
        return;
    }
    if !have("docker", &["info"]) {
        assert!(
            !peers_required(),
            "docker is required (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: no dockerd");
        return;
    }
    let strata = store_with_busybox();
    let rootfs = busybox_rootfs();
    let tag = format!("strata-copy-test-bb:{}", std::process::id());
    let image = format!("strata-copy-test:{}", std::process::id());
    let _cleanup = DockerImages(vec![image.clone(), tag.clone()]);
    let tar = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "tar -C {} -c . | docker import - {tag}",
                rootfs.path().display()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let server = FileServer::start(&[("/pkg/file.bin", b"payload\n")]);
    let body = |base: &str| {
        format!(
            "FROM {base}\n\
             ADD {url} /dl/\n\
             ADD {url} /dl-file\n\
             COPY d /hl/\n\
             ADD t.tar.gz /tgz/\n\
             ADD t.tar.bz2 /tbz/\n\
             ADD t.tar.xz /txz/\n\
             ADD notar.gz /gz/\n\
             COPY --chown=app:staff d/a /owned\n\
             COPY d/a d/b /two/\n",
            url = server.url("/pkg/file.bin")
        )
    };
    let files = [("d/a", "hl\n"), ("t/x", "in tar\n"), ("notar", "plain\n")];
    let strata_ctx = context(&body("bb"), &files);
    let docker_ctx = context(&body(&tag), &files);
    for c in [strata_ctx.path(), docker_ctx.path()] {
        std::fs::hard_link(c.join("d/a"), c.join("d/b")).unwrap();
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                "tar -cf t.tar -C t x && gzip -kc t.tar > t.tar.gz && bzip2 -kc t.tar > t.tar.bz2 \
                 && xz -kc t.tar > t.tar.xz && gzip -c notar > notar.gz",
            ])
            .current_dir(c)
            .status()
            .unwrap();
        assert!(status.success());
    }
    build_ok(&strata, strata_ctx.path(), &["-t", "compare"]);
    let out = std::process::Command::new("docker")
        .args([
            "build",
            "-q",
            "-t",
            &image,
            docker_ctx.path().to_str().unwrap(),
        ])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Paths, type, mode, owner, link count; mtimes for the downloads (context files get
    // their copy times in Docker's layer tars, as in ours).
    let paths =
        "/dl/file.bin /dl-file /hl/a /hl/b /tgz/x /tbz/x /txz/x /gz/notar.gz /owned /two/a /two/b";
    let docker_stat = run_tool(
        "docker",
        &[
            "run",
            "--rm",
            &image,
            "sh",
            "-c",
            &format!("stat -c '%n %F %a %u:%g %h' {paths}; stat -c '%n %Y' /dl/file.bin /dl-file"),
        ],
    );
    let fs = unpack(&strata, "compare");
    let mut ours = String::new();
    for p in paths.split(' ') {
        let m = meta(&fs, p.trim_start_matches('/'));
        let kind = if m.is_dir() {
            "directory"
        } else if m.len() == 0 {
            "regular empty file"
        } else {
            "regular file"
        };
        ours.push_str(&format!(
            "{p} {kind} {:o} {}:{} {}\n",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.nlink()
        ));
    }
    for p in ["/dl/file.bin", "/dl-file"] {
        ours.push_str(&format!(
            "{p} {}\n",
            meta(&fs, p.trim_start_matches('/')).mtime()
        ));
    }
    assert_eq!(ours, docker_stat);
}

/// Removes the Docker images a test made, also when it fails.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        let mut args = vec!["rmi".to_string(), "-f".to_string()];
        args.extend(self.0.iter().cloned());
        let _ = std::process::Command::new("docker").args(&args).output();
    }
}

/// A tar whose entries try to leave the destination: `..`, absolute paths, a symlink to a
/// host directory written through, a hard link to a host file.
fn hostile_tar(host_dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut entry = |name: &str, kind: tar::EntryType, link: Option<&str>, body: &[u8]| {
        let mut header = tar::Header::new_gnu();
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            let field = &mut header.as_old_mut().linkname;
            field.fill(0);
            field[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(body.len() as u64);
        header.set_cksum();
        builder.append(&header, body).unwrap();
    };
    let host = host_dir.to_str().unwrap();
    entry("../escape.txt", tar::EntryType::Regular, None, b"escape\n");
    entry("/abs.txt", tar::EntryType::Regular, None, b"abs\n");
    entry("lnk", tar::EntryType::Symlink, Some(host), b"");
    entry("lnk/pwn.txt", tar::EntryType::Regular, None, b"pwned\n");
    entry("hl", tar::EntryType::Link, Some("/etc/hostname"), b"");
    builder.into_inner().unwrap()
}

#[test]
fn hostile_archives_stay_inside_the_layer() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let host_dir = tempfile::tempdir().unwrap();
    let hostname_before = std::fs::read("/etc/hostname").ok();
    let ctx = context("FROM bb\nADD evil.tar /arch/\n", &[]);
    std::fs::write(ctx.path().join("evil.tar"), hostile_tar(host_dir.path())).unwrap();
    let out = build(&strata, ctx.path(), &["-t", "evil-archive"]);
    // Whatever the outcome, nothing was written outside the layer.
    assert_eq!(
        std::fs::read_dir(host_dir.path()).unwrap().count(),
        0,
        "an archive wrote to the host"
    );
    assert_eq!(std::fs::read("/etc/hostname").ok(), hostname_before);
    let escaped = std::process::Command::new("find")
        .args([strata.root().to_str().unwrap(), "-name", "escape.txt"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let fs = unpack(&strata, "evil-archive");
        let root = fs.path().join("rootfs");
        assert!(
            !root.join("escape.txt").exists(),
            "`..` left the destination"
        );
        assert!(
            !root.join("abs.txt").exists(),
            "an absolute path left the destination"
        );
    } else {
        assert!(stderr.contains("Dockerfile:2: ADD"), "{stderr}");
        assert!(
            String::from_utf8_lossy(&escaped.stdout).trim().is_empty(),
            "escape.txt written in the store"
        );
    }
}

/// Runs git with a fixed identity in `dir`.
fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=strata-test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare repository `repo.git` (branch `main`) made from the work tree in `work`, as the
/// files a dumb-HTTP git server serves: `/repo.git/<path>` -> content.
fn publish_repo(work: &Path, bare: &Path, server: &FileServer) {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "change"]);
    git(work, &["push", "-q", "-f", bare.to_str().unwrap(), "main"]);
    git(bare, &["update-server-info"]);
    let mut stack = vec![bare.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(bare).unwrap().to_str().unwrap();
                server.set(&format!("/repo.git/{rel}"), &std::fs::read(&path).unwrap());
            }
        }
    }
}

#[test]
fn add_git_repositories_over_http() {
    if !can_build() {
        return;
    }
    if !have("git", &["--version"]) {
        assert!(
            !peers_required(),
            "git is required (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: no git");
        return;
    }
    let strata = store_with_busybox();
    let server = FileServer::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let bare = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    git(bare.path(), &["init", "-q", "--bare", "-b", "main"]);
    std::fs::create_dir_all(work.path().join("sub")).unwrap();
    std::fs::write(work.path().join("README"), "version one\n").unwrap();
    std::fs::write(work.path().join("sub/x"), "x\n").unwrap();
    publish_repo(work.path(), bare.path(), &server);

    let server_arg = format!("SERVER=http://127.0.0.1:{}", server.port);
    let args = [
        "--build-arg",
        "BASE=bb",
        "--build-arg",
        &server_arg,
        "-t",
        "git1",
    ];
    let dir = corpus("32-add-git-keep-dir");
    build_ok(&strata, &dir, &args);
    let fs = unpack(&strata, "git1");
    assert_eq!(read(&fs, "src/repo/README"), "version one\n");
    assert_eq!(read(&fs, "src/nogit/sub/x"), "x\n");
    assert!(meta(&fs, "src/repo/.git").is_dir(), "--keep-git-dir=true");
    assert!(!exists(&fs, "src/nogit/.git"), "--keep-git-dir=false");

    // Same commit: cached. A new commit on main: both steps run again.
    let progress = build_ok(
        &strata,
        &dir,
        &[&args[..], &["--progress", "plain"]].concat(),
    );
    assert_eq!(progress.matches("CACHED").count(), 2, "{progress}");
    std::fs::write(work.path().join("README"), "version two\n").unwrap();
    publish_repo(work.path(), bare.path(), &server);
    let progress = build_ok(
        &strata,
        &dir,
        &[&args[..], &["--progress", "plain"]].concat(),
    );
    assert!(!progress.contains("CACHED"), "{progress}");
    assert_eq!(
        read(&unpack(&strata, "git1"), "src/nogit/README"),
        "version two\n"
    );

    // A subdirectory fragment, a pinned commit, and a wrong pin.
    let head = run_tool(
        "git",
        &["-C", bare.path().to_str().unwrap(), "rev-parse", "main"],
    );
    let head = head.trim();
    let url = server.url("/repo.git");
    let ctx = context(
        &format!(
            "FROM bb\nADD {url}#main:sub /only-sub/\nADD --checksum={head} {url}#main /pinned/\n"
        ),
        &[],
    );
    build_ok(&strata, ctx.path(), &["-t", "git2"]);
    let fs = unpack(&strata, "git2");
    assert_eq!(read(&fs, "only-sub/x"), "x\n");
    assert!(!exists(&fs, "only-sub/README"));
    assert_eq!(read(&fs, "pinned/README"), "version two\n");
    let ctx = context(
        &format!("FROM bb\nADD --checksum=0000000000 {url}#main /pinned/\n"),
        &[],
    );
    let err = build_err(&strata, ctx.path(), &[]);
    assert!(err.contains("checksum mismatch"), "{err}");
    let ctx = context(&format!("FROM bb\nADD {url}#nosuchbranch /x/\n"), &[]);
    let err = build_err(&strata, ctx.path(), &[]);
    assert!(err.contains("no ref nosuchbranch"), "{err}");
}

/// A directory with many subdirectories is copied on several threads: every file arrives with
/// its content, mode and mtime, ignore rules still apply, and a hard-linked pair in two
/// different subdirectories stays one inode.
#[test]
fn wide_trees_copy_completely_on_threads() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let mut files: Vec<(String, String)> = Vec::new();
    for d in 0..24 {
        for f in 0..15 {
            files.push((format!("tree/d{d:02}/f{f:02}.txt"), format!("{d}-{f}\n")));
        }
        files.push((format!("tree/d{d:02}/skip.log"), "ignored\n".into()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let ctx = context("FROM bb\nCOPY tree /tree\n", &refs);
    std::fs::write(ctx.path().join(".dockerignore"), "tree/*/skip.log\n").unwrap();
    let tree = ctx.path().join("tree");
    std::fs::set_permissions(
        tree.join("d03/f01.txt"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    std::fs::hard_link(tree.join("d01/f00.txt"), tree.join("d20/linked.txt")).unwrap();
    build_ok(&strata, ctx.path(), &["-t", "wide"]);
    let fs = unpack(&strata, "wide");
    for (path, content) in &files {
        let inside = path.trim_start_matches("tree/");
        if path.ends_with("skip.log") {
            assert!(!exists(&fs, &format!("tree/{inside}")), "{path} is ignored");
        } else {
            assert_eq!(&read(&fs, &format!("tree/{inside}")), content, "{path}");
            let source = std::fs::metadata(ctx.path().join(path)).unwrap();
            assert_eq!(
                meta(&fs, &format!("tree/{inside}")).mtime(),
                source.mtime(),
                "{path} keeps its mtime"
            );
        }
    }
    assert_eq!(meta(&fs, "tree/d03/f01.txt").mode() & 0o7777, 0o751);
    let (a, b) = (
        meta(&fs, "tree/d01/f00.txt"),
        meta(&fs, "tree/d20/linked.txt"),
    );
    assert_eq!(
        a.ino(),
        b.ino(),
        "a hard link across subdirectories stays a link"
    );
}
