//! `strata build` end to end on the real binary: a busybox base image imported into a
//! throw-away store, Dockerfiles built with RUN in the sandbox (needs root), the results checked
//! by unpacking them, reading their config and (when dockerd is there) running them in Docker.

mod common;

use std::path::{Path, PathBuf};

use common::build::*;
use common::{Strata, have, run_tool};
use serde_json::json;

/// A store with `bb:latest`: busybox with every applet, /etc/passwd and /etc/group with an
/// `app` user, and /etc/victim (deleted by a test).
fn store_with_busybox() -> Strata {
    let strata = Strata::new();
    let rootfs = tempfile::tempdir().unwrap();
    let dir = rootfs.path();
    busybox_tree(dir);
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    std::fs::write(dir.join("etc/victim"), "delete me\n").unwrap();
    strata.ok(&["import", dir.to_str().unwrap(), "bb:latest"]);
    strata
}

#[test]
fn run_env_workdir_copy_cmd_and_docker_runs_it() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         ENV GREETING=hello\n\
         WORKDIR /app\n\
         RUN echo \"$GREETING from run\" > /app/run.txt && echo visible-output\n\
         COPY file.txt /data/\n\
         COPY dir ./copied/\n\
         COPY *.log /logs/\n\
         COPY file.txt renamed.txt\n\
         CMD [\"sh\", \"-c\", \"cat /app/run.txt /data/file.txt /app/copied/a.txt /app/copied/nested/b.txt /logs/one.log /logs/two.log /app/renamed.txt; echo $GREETING; pwd\"]\n",
        &[
            ("file.txt", "file content\n"),
            ("dir/a.txt", "a\n"),
            ("dir/nested/b.txt", "b\n"),
            ("one.log", "one\n"),
            ("two.log", "two\n"),
        ],
    );
    let iid = ctx.path().join("iid");
    let progress = build_ok(
        &strata,
        ctx.path(),
        &[
            "-t",
            "built:1",
            "--iidfile",
            iid.to_str().unwrap(),
            "--progress",
            "plain",
        ],
    );
    assert!(progress.contains(" visible-output"), "{progress}");
    assert!(progress.contains("writing image sha256:"), "{progress}");
    assert!(
        progress.contains("naming to docker.io/library/built:1"),
        "{progress}"
    );
    let id = std::fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"));
    assert_eq!(
        strata
            .ok(&["inspect", "--format", "{{.Id}}", "built:1"])
            .trim(),
        id
    );
    let fs = unpack(&strata, "built:1");
    assert_eq!(read(&fs, "app/run.txt"), "hello from run\n");
    assert_eq!(read(&fs, "data/file.txt"), "file content\n");
    assert_eq!(read(&fs, "app/copied/a.txt"), "a\n");
    assert_eq!(read(&fs, "app/copied/nested/b.txt"), "b\n");
    assert_eq!(read(&fs, "logs/one.log"), "one\n");
    assert_eq!(read(&fs, "logs/two.log"), "two\n");
    assert_eq!(read(&fs, "app/renamed.txt"), "file content\n");
    // The sandbox's mount points stay out of the image.
    assert!(!fs.path().join("rootfs/proc").exists());
    assert!(!fs.path().join("rootfs/dev").exists());
    assert!(!fs.path().join("rootfs/etc/hosts").exists());
    assert!(leftover_build_dirs(&strata).is_empty());

    if !have("docker", &["info"]) {
        return;
    }
    let name = format!("strata-build-test-{}:latest", std::process::id());
    strata.ok(&["tag", "built:1", &name]);
    let archive = ctx.path().join("image.tar");
    strata.ok(&["save", "-o", archive.to_str().unwrap(), &name]);
    run_tool("docker", &["load", "-i", archive.to_str().unwrap()]);
    let out = run_tool("docker", &["run", "--rm", &name]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &name])
        .output();
    assert_eq!(
        out,
        "hello from run\nfile content\na\nb\none\ntwo\nfile content\nhello\n/app\n"
    );
}

#[test]
fn multi_stage_copy_from_and_skipped_stage() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS unused\n\
         RUN echo unused-stage-ran && exit 7\n\
         FROM bb AS build\n\
         RUN mkdir -p /out && echo built > /out/artifact\n\
         FROM scratch\n\
         COPY --from=build /out/artifact /artifact\n\
         COPY --from=bb /bin/busybox /bin/busybox\n",
        &[],
    );
    let progress = build_ok(&strata, ctx.path(), &["-t", "multi"]);
    assert!(!progress.contains("unused-stage-ran"), "{progress}");
    let fs = unpack(&strata, "multi");
    assert_eq!(read(&fs, "artifact"), "built\n");
    assert!(fs.path().join("rootfs/bin/busybox").is_file());
    let config = config_of(&strata, "multi");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    // --target builds the unused stage, which fails.
    let out = build(&strata, ctx.path(), &["--target", "unused"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unused-stage-ran"));
}

#[test]
fn failing_run_tags_nothing_and_leaves_no_mounts() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let before = mounts_mentioning(strata.root());
    let ctx = context(
        "FROM bb\nRUN echo first\nRUN echo about-to-fail && exit 3\nRUN echo never\n",
        &[],
    );
    let out = build(&strata, ctx.path(), &["-t", "broken"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("about-to-fail"), "{stderr}");
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(!stderr.contains("never"), "{stderr}");
    strata.fails(&["inspect", "broken"]);
    assert_eq!(mounts_mentioning(strata.root()), before);
    assert!(before.is_empty());
    assert!(leftover_build_dirs(&strata).is_empty());
    // Only the base image remains.
    let images = strata.ok(&["images", "-q"]);
    assert_eq!(images.lines().count(), 1, "{images}");
}

#[test]
fn run_deletions_become_whiteouts() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context("FROM bb\nRUN rm /etc/victim && echo new > /etc/new\n", &[]);
    build_ok(&strata, ctx.path(), &["-t", "deleted"]);
    let fs = unpack(&strata, "deleted");
    assert!(!fs.path().join("rootfs/etc/victim").exists());
    assert_eq!(read(&fs, "etc/new"), "new\n");
    assert!(fs.path().join("rootfs/etc/passwd").is_file());
}

#[test]
fn run_cannot_read_host_files() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let secret = tempfile::Builder::new()
        .prefix("strata-host-secret-")
        .tempfile_in("/tmp")
        .unwrap();
    std::fs::write(secret.path(), "host secret\n").unwrap();
    let path = secret.path().to_str().unwrap();
    let ctx = context(&format!("FROM bb\nRUN cat {path}\n"), &[]);
    let out = build(&strata, ctx.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("host secret"), "{stderr}");
    // The host's processes are not visible either: the RUN is PID 1 of its own namespace.
    let ctx = context(
        "FROM bb\nRUN test \"$(ls /proc | grep -c '^[0-9]')\" -le 10\n",
        &[],
    );
    build_ok(&strata, ctx.path(), &[]);
}

#[test]
fn config_and_history_match_buildkit() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         ARG VERSION=1.0\n\
         ENV A=b C=\"d e\"\n\
         LABEL org.example.version=$VERSION\n\
         WORKDIR /srv\n\
         WORKDIR app\n\
         RUN echo hi\n\
         COPY file.txt /data/\n\
         USER app\n\
         EXPOSE 80 53/udp\n\
         VOLUME /cache\n\
         STOPSIGNAL SIGINT\n\
         ENTRYPOINT [\"sh\"]\n\
         CMD echo hello\n\
         ONBUILD RUN echo child\n\
         HEALTHCHECK --interval=30s --retries=3 CMD true\n\
         WORKDIR /srv\n",
        &[("file.txt", "x\n")],
    );
    build_ok(&strata, ctx.path(), &["-t", "cfg", "--label", "extra=yes"]);
    let config = config_of(&strata, "cfg");
    let c = &config["config"];
    // The base has no PATH: BuildKit gives the stage its default one first.
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=b",
            "C=d e"
        ])
    );
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hello"]));
    assert_eq!(c["Entrypoint"], json!(["sh"]));
    assert_eq!(c["WorkingDir"], json!("/srv"));
    assert_eq!(c["ArgsEscaped"], json!(true));
    assert_eq!(c["OnBuild"], json!(["RUN echo child"]));
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000u64, "Retries": 3})
    );
    assert_eq!(c["User"], json!("app"));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Volumes"], json!({"/cache": {}}));
    assert_eq!(c["StopSignal"], json!("SIGINT"));
    assert_eq!(
        c["Labels"],
        json!({"org.example.version": "1.0", "extra": "yes"})
    );
    assert_eq!(config["os"], json!("linux"));
    let history: Vec<(String, bool)> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // the import
        .map(|h| {
            assert_eq!(h["comment"], json!("buildkit.dockerfile.v0"));
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("ARG VERSION=1.0", true),
        ("ENV A=b C=d e", true),
        ("LABEL org.example.version=1.0", true),
        ("WORKDIR /srv", false),
        ("WORKDIR /srv/app", false),
        ("RUN |1 VERSION=1.0 /bin/sh -c echo hi # buildkit", false),
        ("COPY file.txt /data/ # buildkit", false),
        ("USER app", true),
        ("EXPOSE [80/tcp 53/udp]", true),
        ("VOLUME [/cache]", true),
        ("STOPSIGNAL SIGINT", true),
        ("ENTRYPOINT [\"sh\"]", true),
        ("CMD [\"/bin/sh\" \"-c\" \"echo hello\"]", true),
        (
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}",
            true,
        ),
        ("WORKDIR /srv", true),
    ]
    .iter()
    .map(|(s, e)| (s.to_string(), *e))
    .collect();
    assert_eq!(history, expected);
    // One layer per RUN/COPY and per WORKDIR that made a directory, on top of the base.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 5);
    let fs = unpack(&strata, "cfg");
    assert!(fs.path().join("rootfs/srv/app").is_dir());
}

#[test]
fn source_date_epoch_makes_copy_only_builds_reproducible() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\nENV X=1\nCOPY a.txt /a/\nCOPY dir /d/\nCMD [\"cat\", \"/a/a.txt\"]\n",
        &[("a.txt", "a\n"), ("dir/b.txt", "b\n")],
    );
    let id = |tag: &str| {
        let iid = ctx.path().join(format!("{tag}.iid"));
        let out = strata
            .command()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", "-t", tag, "--iidfile", iid.to_str().unwrap()])
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(iid).unwrap()
    };
    let first = id("repro:1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = id("repro:2");
    assert_eq!(first, second);
    let config = config_of(&strata, "repro:1");
    assert_eq!(config["created"], json!("2023-11-14T22:13:20Z"));
}

#[test]
fn unsupported_features_fail_clearly() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    for (dockerfile, expected) in [
        (
            "FROM bb\nRUN --security=insecure true\n",
            "Dockerfile:2: RUN: --security=insecure needs the security.insecure entitlement",
        ),
        (
            // Missing locally, so it is pulled: from a loopback port nothing listens on.
            "FROM 127.0.0.1:1/missing-image:1\n",
            "Dockerfile:1: FROM: failed to resolve source metadata for 127.0.0.1:1/missing-image:1",
        ),
        ("FROM bb\nCOPY ../escape /x\n", "escapes the build context"),
        (
            "FROM bb\nCOPY a b /x\n",
            "must be a directory and end with a /",
        ),
    ] {
        let ctx = context(dockerfile, &[("a", "a"), ("b", "b")]);
        let out = build(&strata, ctx.path(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dockerfile}");
        assert!(stderr.contains(expected), "{dockerfile}: {stderr}");
    }
}

#[test]
fn repository_dockerfiles_build() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles");
    for name in [
        "03-multistage-basic",
        "08-heredoc-copy",
        "10-env-forms",
        "21-expose-user-workdir",
        "26-shell",
        "35-dockerignore",
        "36-target-stages",
        "38-stage-chain",
        "45-copy-json-form",
    ] {
        let ctx = dir.join(name);
        let out = build(&strata, &ctx, &["--build-arg", "BASE=bb", "-t", name]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fs = unpack(&strata, "08-heredoc-copy");
    assert_eq!(read(&fs, "etc/greeting"), "hello world\n");
    assert_eq!(read(&fs, "files/one.txt"), "first\n");
    assert_eq!(read(&fs, "etc/raw"), "keep $NAME literal\n");
    let fs = unpack(&strata, "36-target-stages");
    assert_eq!(read(&fs, "test-result"), "test\n");
    assert_eq!(read(&fs, "release"), "release\n");
    let config = config_of(&strata, "21-expose-user-workdir");
    assert_eq!(
        config["config"]["ExposedPorts"],
        json!({"80/tcp": {}, "443/tcp": {}, "53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(config["config"]["WorkingDir"], json!("/home/app"));
}

#[test]
fn copy_and_add_rules() {
    use std::os::unix::fs::MetadataExt;
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         COPY --chown=app:app --chmod=0600 secret.txt /owned/\n\
         COPY --chown=1234 file.txt /numeric.txt\n\
         COPY dir /into-dir\n\
         COPY file.txt /etc\n\
         COPY . /ctx/\n\
         ADD archive.tar.gz /unpacked/\n\
         ADD file.txt /added.txt\n\
         COPY link.txt /resolved.txt\n",
        &[
            ("secret.txt", "s\n"),
            ("file.txt", "f\n"),
            ("dir/sub/x.txt", "x\n"),
            ("keep.log", "k\n"),
            ("drop.log", "d\n"),
            ("build/out.txt", "o\n"),
            ("arch/in-archive.txt", "from the archive\n"),
            ("etc/passwd", "not the host's\n"),
            (".dockerignore", "*.log\n!keep.log\nbuild\narch\n"),
        ],
    );
    let status = std::process::Command::new("tar")
        .args(["-czf", "archive.tar.gz", "-C", "arch", "in-archive.txt"])
        .current_dir(ctx.path())
        .status()
        .unwrap();
    assert!(status.success());
    // An absolute symlink in the context resolves inside the context, never on the host.
    std::os::unix::fs::symlink("/etc/passwd", ctx.path().join("link.txt")).unwrap();
    build_ok(&strata, ctx.path(), &["-t", "copies"]);
    let fs = unpack(&strata, "copies");
    let root = fs.path().join("rootfs");
    let owned = std::fs::symlink_metadata(root.join("owned/secret.txt")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 1000, 0o600)
    );
    let numeric = std::fs::symlink_metadata(root.join("numeric.txt")).unwrap();
    assert_eq!((numeric.uid(), numeric.gid()), (1234, 1234));
    assert_eq!(read(&fs, "into-dir/sub/x.txt"), "x\n");
    // /etc exists as a directory: the file goes inside it.
    assert_eq!(read(&fs, "etc/file.txt"), "f\n");
    assert!(root.join("ctx/keep.log").is_file());
    assert!(!root.join("ctx/drop.log").exists());
    assert!(!root.join("ctx/build").exists());
    assert!(root.join("ctx/Dockerfile").is_file());
    assert_eq!(read(&fs, "unpacked/in-archive.txt"), "from the archive\n");
    assert_eq!(read(&fs, "added.txt"), "f\n");
    assert_eq!(read(&fs, "resolved.txt"), "not the host's\n");
}

#[test]
fn symlinks_in_the_image_resolve_inside_it() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         RUN mkdir -p /usr/local/lib && ln -s usr/local/lib /lnk\n\
         COPY f.txt /lnk/\n\
         WORKDIR /lnk/sub\n\
         RUN pwd > /where\n",
        &[("f.txt", "f\n")],
    );
    build_ok(&strata, ctx.path(), &["-t", "links"]);
    let fs = unpack(&strata, "links");
    let root = fs.path().join("rootfs");
    assert!(
        std::fs::symlink_metadata(root.join("lnk"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(read(&fs, "usr/local/lib/f.txt"), "f\n");
    assert!(root.join("usr/local/lib/sub").is_dir());

    // An image whose /etc links to a host path: the sandbox must not create files there.
    let host_target = std::env::temp_dir().join(format!("strata-evil-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host_target);
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(rootfs.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.path().join("bin/sh")).unwrap();
    std::os::unix::fs::symlink(&host_target, rootfs.path().join("etc")).unwrap();
    strata.ok(&["import", rootfs.path().to_str().unwrap(), "evil:latest"]);
    let ctx = context(
        "FROM evil\nRUN true\nCOPY f.txt /etc/\n",
        &[("f.txt", "f\n")],
    );
    let out = build(&strata, ctx.path(), &[]);
    assert!(!host_target.exists(), "the build wrote to the host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `#N` vertices of a plain progress log whose header contains `needle`, and the index of
/// the first line of each kind (`started`, `done`) for it.
fn vertex_lines(log: &str, needle: &str) -> (usize, usize) {
    let lines: Vec<&str> = log.lines().collect();
    let (start, id) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            l.contains(needle)
                .then(|| (i, l.split_whitespace().next().unwrap().to_string()))
        })
        .unwrap_or_else(|| panic!("no vertex {needle:?} in:\n{log}"));
    let done = lines
        .iter()
        .position(|l| {
            l.starts_with(&format!("{id} DONE")) || l.starts_with(&format!("{id} CACHED"))
        })
        .unwrap_or_else(|| panic!("vertex {needle:?} never finished:\n{log}"));
    (start, done)
}

fn cached_headers(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    lines
        .iter()
        .filter(|l| l.ends_with(" CACHED"))
        .filter_map(|l| {
            let id = l.split_whitespace().next()?;
            lines
                .iter()
                .find(|h| h.starts_with(&format!("{id} [")))
                .map(|h| h[id.len() + 1..].to_string())
        })
        .collect()
}

#[test]
fn independent_stages_run_at_the_same_time() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS a\nRUN sleep 1 && echo a > /a\nFROM bb AS b\nRUN sleep 1 && echo b > /b\n\
         FROM bb\nCOPY --from=a /a /\nCOPY --from=b /b /\n",
        &[],
    );
    let log = build_ok(&strata, ctx.path(), &["--progress=plain", "-t", "par"]);
    let (a_start, a_done) = vertex_lines(&log, "[a 2/2] RUN");
    let (b_start, b_done) = vertex_lines(&log, "[b 2/2] RUN");
    // Run one after the other, one RUN would finish before the other starts.
    assert!(
        a_start < b_done && b_start < a_done,
        "the two RUN steps did not overlap:\n{log}"
    );
    let (copy_start, _) = vertex_lines(&log, "COPY --from=a");
    assert!(copy_start > a_done && copy_start > b_done.min(a_done));
    let fs = unpack(&strata, "par");
    assert_eq!(read(&fs, "a"), "a\n");
    assert_eq!(read(&fs, "b"), "b\n");
}

#[test]
fn the_cache_reuses_unchanged_steps_and_reruns_what_changed() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\nRUN echo one > /one\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /both\nENV X=1\n",
        &[("a.txt", "a\n"), ("b.txt", "b\n")],
    );
    let first = build_ok(&strata, ctx.path(), &["--progress=plain", "-t", "c:1"]);
    assert!(cached_headers(&first).is_empty(), "{first}");
    let id1 = strata.ok(&["inspect", "--format", "{{.Id}}", "c:1"]);

    // Nothing changed: every step is cached and the image ID is the same.
    let second = build_ok(&strata, ctx.path(), &["--progress=plain", "-t", "c:2"]);
    assert_eq!(cached_headers(&second).len(), 4, "{second}");
    assert_eq!(strata.ok(&["inspect", "--format", "{{.Id}}", "c:2"]), id1);

    // Touching a file without changing it keeps the cache (content, not times).
    let b = ctx.path().join("b.txt");
    std::fs::write(&b, "b\n").unwrap();
    let touched = build_ok(&strata, ctx.path(), &["--progress=plain"]);
    assert_eq!(cached_headers(&touched).len(), 4, "{touched}");

    // b.txt changes: the steps before its COPY are cached, that COPY and what follows run.
    std::fs::write(&b, "B\n").unwrap();
    let third = build_ok(&strata, ctx.path(), &["--progress=plain", "-t", "c:3"]);
    assert_eq!(
        cached_headers(&third),
        vec!["[2/6] RUN echo one > /one", "[3/6] COPY a.txt /a.txt"],
        "{third}"
    );
    let fs = unpack(&strata, "c:3");
    assert_eq!(read(&fs, "both"), "a\nB\n");

    // --no-cache runs everything again.
    let fourth = build_ok(&strata, ctx.path(), &["--progress=plain", "--no-cache"]);
    assert!(cached_headers(&fourth).is_empty(), "{fourth}");

    // The cache survives `system prune` of every unused image and blob: it keeps its layers.
    strata.ok(&["rmi", "c:1", "c:2", "c:3"]);
    strata.ok(&["system", "prune", "--all", "-f"]);
    let fifth = build_ok(&strata, ctx.path(), &["--progress=plain"]);
    assert_eq!(cached_headers(&fifth).len(), 4, "{fifth}");
}

/// Files a COPY stages may be hard links to the context (no data copied), but no snapshot
/// the store keeps may share an inode with a context file: editing the context later must not
/// change a cached layer's file system. A RUN after such a COPY sees the layer's content.
#[test]
fn snapshots_never_share_inodes_with_the_context() {
    use std::os::unix::fs::MetadataExt;
    if !can_build() {
        return;
    }
    fn inodes(dir: &Path, into: &mut Vec<(u64, u64, PathBuf)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                inodes(&entry.path(), into);
            } else {
                into.push((meta.dev(), meta.ino(), entry.path()));
            }
        }
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\nCOPY a.txt /a.txt\nRUN cat /a.txt > /seen\nCOPY b.txt /b.txt\n",
        &[("a.txt", "one\n"), ("b.txt", "two\n")],
    );
    build_ok(&strata, ctx.path(), &["-t", "links"]);
    let mut kept = Vec::new();
    inodes(&strata.root().join("snapshots"), &mut kept);
    for name in ["a.txt", "b.txt"] {
        let meta = std::fs::metadata(ctx.path().join(name)).unwrap();
        assert_eq!(meta.nlink(), 1, "{name}: the build left a link to it");
        assert!(
            !kept
                .iter()
                .any(|(dev, ino, _)| (*dev, *ino) == (meta.dev(), meta.ino())),
            "a snapshot shares {name}'s inode"
        );
    }
    // Editing the context in place changes neither the image nor what a cached RUN saw.
    std::fs::write(ctx.path().join("a.txt"), "edited\n").unwrap();
    let fs = unpack(&strata, "links");
    assert_eq!(read(&fs, "a.txt"), "one\n");
    assert_eq!(read(&fs, "seen"), "one\n");
    assert_eq!(read(&fs, "b.txt"), "two\n");
}
