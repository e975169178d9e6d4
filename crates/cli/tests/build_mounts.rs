//! `RUN --mount` (cache, secret, bind, tmpfs, ssh), `RUN --network` and `--security` on the real
//! binary, building over a busybox image in a throw-away store (needs root for the sandbox).
//! Layers are checked as tar listings, configs as JSON, and the store's files byte by byte.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::build::*;
use common::{Strata, have};
use serde_json::Value;

/// A store with `bb:latest` (busybox with every applet, an `app` user 1000:1000), also tagged
/// as the corpus Dockerfiles' default base.
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
    strata.ok(&["import", dir.to_str().unwrap(), "bb:latest"]);
    strata.ok(&[
        "tag",
        "bb:latest",
        "localhost:5000/strata-test/busybox:latest",
    ]);
    strata
}

fn build(strata: &Strata, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    strata.run(&args)
}

/// The entries (path, content) of every layer the build added on top of the base image (the
/// builder writes them as uncompressed tars named by their diff ID).
fn built_layers(strata: &Strata, image: &str) -> Vec<Vec<(String, Vec<u8>)>> {
    let config = config_of(strata, image);
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    diff_ids[1..]
        .iter()
        .map(|d| {
            let hex = d.as_str().unwrap().trim_start_matches("sha256:");
            let file = std::fs::File::open(strata.root().join("blobs/sha256").join(hex)).unwrap();
            let mut archive = tar::Archive::new(file);
            archive
                .entries()
                .unwrap()
                .map(|e| {
                    let mut e = e.unwrap();
                    let path = e.path().unwrap().to_string_lossy().into_owned();
                    let mut content = Vec::new();
                    e.read_to_end(&mut content).unwrap();
                    (path, content)
                })
                .collect()
        })
        .collect()
}

fn layer_paths(layer: &[(String, Vec<u8>)]) -> Vec<&str> {
    layer.iter().map(|(p, _)| p.as_str()).collect()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file()
                && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

fn cache_dir(strata: &Strata, id: &str) -> PathBuf {
    let hex = common::sha256(id.as_bytes());
    strata
        .root()
        .join("build-cache/mounts")
        .join(hex.trim_start_matches("sha256:"))
}

/// Counts the `CACHED` step lines of a plain progress log.
fn cached_steps(progress: &str) -> usize {
    progress.lines().filter(|l| l.ends_with(" CACHED")).count()
}

const SECRET_DOCKERFILE: &str = "FROM bb\n\
RUN --mount=type=secret,id=token,mode=0440,uid=1000,gid=1000 \\\n\
    stat -c '%a %u %g' /run/secrets/token > /token-meta && sha256sum /run/secrets/token | cut -c1-64 > /token-sum\n\
RUN --mount=type=secret,id=token,target=/opt/deep/dir/tok sha256sum /opt/deep/dir/tok | cut -c1-64 > /deep-sum\n\
RUN --mount=type=secret,id=token,target=/etc/tok cat /etc/tok > /dev/null && echo etc-ok > /etc-ok\n\
RUN --mount=type=secret,id=envtok,env=TOKEN sh -c 'printf %s \"$TOKEN\" | sha256sum | cut -c1-64 > /env-sum; test ! -e /run/secrets/envtok'\n\
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo skipped > /absent\n";

#[test]
fn secrets_reach_the_run_but_no_layer_history_or_cache_record() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(SECRET_DOCKERFILE, &[]);
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    let file_secret = format!("file-secret-{}-value", std::process::id());
    let env_secret = format!("env-secret-{}-value", std::process::id());
    std::fs::write(secret_file.path(), &file_secret).unwrap();
    let src = format!("id=token,src={}", secret_file.path().display());
    let build_with_secrets = |tag: &str| {
        let out = strata
            .command()
            .env("STRATA_TEST_TOKEN", &env_secret)
            .args(["build", "--progress", "plain", "-t", tag, "--secret", &src])
            .args(["--secret", "id=envtok,env=STRATA_TEST_TOKEN"])
            .arg(ctx.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    build_with_secrets("sec:1");

    // The RUNs saw the secrets, with the requested mode and owner.
    let fs = unpack(&strata, "sec:1");
    assert_eq!(read(&fs, "token-meta"), "440 1000 1000\n");
    assert_eq!(
        read(&fs, "token-sum").trim(),
        sha256_hex(file_secret.as_bytes())
    );
    assert_eq!(
        read(&fs, "deep-sum").trim(),
        sha256_hex(file_secret.as_bytes())
    );
    assert_eq!(
        read(&fs, "env-sum").trim(),
        sha256_hex(env_secret.as_bytes())
    );
    assert_eq!(read(&fs, "absent"), "skipped\n");
    assert_eq!(read(&fs, "etc-ok"), "etc-ok\n");

    // No layer carries a mount point or the secret: each RUN's layer holds only its output.
    let layers = built_layers(&strata, "sec:1");
    let expected: [&[&str]; 5] = [
        &["token-meta", "token-sum"],
        &["deep-sum"],
        &["etc-ok"],
        &["env-sum"],
        &["absent"],
    ];
    assert_eq!(layers.len(), expected.len());
    for (layer, want) in layers.iter().zip(expected) {
        let mut paths = layer_paths(layer);
        paths.sort();
        assert_eq!(paths, want);
        for (path, content) in layer {
            for secret in [&file_secret, &env_secret] {
                assert!(
                    !content
                        .windows(secret.len())
                        .any(|w| w == secret.as_bytes()),
                    "{path} carries a secret"
                );
            }
        }
    }
    assert!(!fs.path().join("rootfs/run").exists());
    assert!(!fs.path().join("rootfs/opt").exists());
    assert!(!fs.path().join("rootfs/etc/tok").exists());

    // Nothing in the store holds a secret: blobs (layers, config with its history), the
    // metadata database with the build cache records, snapshots, build scratch.
    for secret in [&file_secret, &env_secret] {
        assert_eq!(
            files_containing(strata.root(), secret.as_bytes()),
            Vec::<PathBuf>::new()
        );
    }
    let config = config_of(&strata, "sec:1");
    let history = serde_json::to_string(&config["history"]).unwrap();
    assert!(!history.contains(&file_secret) && !history.contains(&env_secret));
    assert!(
        history.contains("RUN /bin/sh -c stat -c '%a %u %g' /run/secrets/token"),
        "{history}"
    );
    let meta = std::fs::read(strata.root().join("meta.redb")).unwrap();
    assert!(
        meta.windows(b"/run/secrets/token".len())
            .any(|w| w == b"/run/secrets/token"),
        "the build cache records are in meta.redb as text"
    );

    // New secret contents do not change any cache key.
    std::fs::write(secret_file.path(), "another value").unwrap();
    let progress = build_with_secrets("sec:2");
    assert_eq!(cached_steps(&progress), 5, "{progress}");
    assert_eq!(
        config_of(&strata, "sec:2")["rootfs"],
        config_of(&strata, "sec:1")["rootfs"]
    );

    // A required secret that was not given fails the RUN, naming it.
    let ctx = context(
        "FROM bb\nRUN --mount=type=secret,id=needed,required=true true\n",
        &[],
    );
    let stderr = build_fails(&strata, ctx.path(), &[]);
    assert!(
        stderr.contains("Dockerfile:2: RUN: secret \"needed\" is required but was not provided"),
        "{stderr}"
    );
    let stderr = build_fails(
        &strata,
        ctx.path(),
        &["--secret", "id=needed,src=/nonexistent/x"],
    );
    assert!(stderr.contains("/nonexistent/x not found"), "{stderr}");
}

#[test]
fn cache_mounts_persist_across_builds_with_owner_and_mode() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS seed\n\
         RUN mkdir -p /seed/sub && echo seeded > /seed/sub/file\n\
         FROM bb\n\
         RUN --mount=type=cache,target=/cache,id=counter sh -c 'echo run >> /cache/log; wc -l < /cache/log > /count'\n\
         RUN --mount=type=cache,target=/seeded,from=seed,source=/seed sh -c 'cat /seeded/sub/file > /seed-saw; echo more >> /seeded/sub/file'\n\
         RUN --mount=type=cache,target=/var/cache/owned,uid=1000,gid=1000,mode=0750 stat -c '%a %u %g' /var/cache/owned > /owned-meta\n\
         RUN --mount=type=cache,target=/ro,id=counter,ro sh -c '! touch /ro/x && cat /ro/log > /ro-saw'\n",
        &[],
    );
    build_ok(&strata, ctx.path(), &["-t", "c:1"]);
    let fs = unpack(&strata, "c:1");
    assert_eq!(read(&fs, "count").trim(), "1");
    assert_eq!(read(&fs, "owned-meta"), "750 1000 1000\n");
    assert_eq!(read(&fs, "ro-saw"), "run\n");
    assert_eq!(read(&fs, "seed-saw"), "seeded\n");
    assert!(!fs.path().join("rootfs/cache").exists());
    assert!(!fs.path().join("rootfs/var").exists());
    assert!(!fs.path().join("rootfs/ro").exists());
    // The cache lives in the store, under the hash of its id (the target when no id).
    let counter = cache_dir(&strata, "counter");
    assert_eq!(
        std::fs::read_to_string(counter.join("id")).unwrap(),
        "counter"
    );
    assert_eq!(
        std::fs::read_to_string(counter.join("0/log")).unwrap(),
        "run\n"
    );
    assert!(cache_dir(&strata, "/var/cache/owned").join("0").is_dir());

    // A second build (steps forced to run) sees what the first one left.
    build_ok(&strata, ctx.path(), &["-t", "c:2", "--no-cache"]);
    let fs = unpack(&strata, "c:2");
    assert_eq!(read(&fs, "count").trim(), "2");
    assert_eq!(read(&fs, "ro-saw"), "run\nrun\n");
    // `from` seeds a new cache only; afterwards it keeps what the steps wrote.
    assert_eq!(read(&fs, "seed-saw"), "seeded\nmore\n");
    assert_eq!(mounts_mentioning(strata.root()), Vec::<String>::new());
}

/// Takes `flock` `operation` on the lock file of instance `n` of cache `id` (creating it).
fn hold_cache_lock(strata: &Strata, id: &str, n: usize, exclusive: bool) -> std::fs::File {
    let dir = cache_dir(strata, id);
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{n}.lock")))
        .unwrap();
    let op = if exclusive {
        rustix::fs::FlockOperation::NonBlockingLockExclusive
    } else {
        rustix::fs::FlockOperation::NonBlockingLockShared
    };
    rustix::fs::flock(&file, op).unwrap();
    file
}

#[test]
fn cache_sharing_modes_lock_as_documented() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let dockerfile = |sharing: &str| {
        format!(
            "FROM bb\nRUN --mount=type=cache,id={sharing}-cache,sharing={sharing},target=/c sh -c 'date +%s%N > /c/ran-$(cat /proc/sys/kernel/random/uuid)'\n"
        )
    };
    // First builds create each cache's instance 0.
    for sharing in ["locked", "shared", "private"] {
        let ctx = context(&dockerfile(sharing), &[]);
        build_ok(&strata, ctx.path(), &[]);
        let instance = cache_dir(&strata, &format!("{sharing}-cache")).join("0");
        assert_eq!(
            std::fs::read_dir(&instance).unwrap().count(),
            1,
            "{sharing}"
        );
    }

    // Parallel stages locking the same two caches in opposite orders, one naming a cache
    // twice, do not deadlock.
    let ctx = context(
        "FROM bb AS one\n\
         RUN --mount=type=cache,id=a,sharing=locked,target=/a --mount=type=cache,id=b,sharing=locked,target=/b sh -c 'sleep 1; touch /a/one /b/one'\n\
         FROM bb AS two\n\
         RUN --mount=type=cache,id=b,sharing=locked,target=/b --mount=type=cache,id=a,sharing=locked,target=/a --mount=type=cache,id=a,sharing=locked,target=/a2 sh -c 'sleep 1; touch /a/two /b/two; test -e /a2/two'\n\
         FROM bb\n\
         COPY --from=one /etc/passwd /one\n\
         COPY --from=two /etc/passwd /two\n",
        &[],
    );
    build_ok(&strata, ctx.path(), &[]);
    assert_eq!(
        std::fs::read_dir(cache_dir(&strata, "a").join("0"))
            .unwrap()
            .count(),
        2
    );

    // locked: while someone else holds the cache, the step waits.
    let ctx = context(&dockerfile("locked"), &[]);
    let lock = hold_cache_lock(&strata, "locked-cache", 0, true);
    let mut child = strata
        .command()
        .args(["build", "-q", "--no-cache"])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let instance = cache_dir(&strata, "locked-cache").join("0");
    assert_eq!(std::fs::read_dir(&instance).unwrap().count(), 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the locked step did not wait"
    );
    drop(lock);
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read_dir(&instance).unwrap().count(), 2);

    // shared: another user of the cache does not hold the step back.
    let lock = hold_cache_lock(&strata, "shared-cache", 0, false);
    let ctx = context(&dockerfile("shared"), &[]);
    build_ok(&strata, ctx.path(), &["--no-cache"]);
    let instance = cache_dir(&strata, "shared-cache").join("0");
    assert_eq!(std::fs::read_dir(&instance).unwrap().count(), 2);
    drop(lock);

    // private: with instance 0 busy, the step gets a fresh instance of its own.
    let lock = hold_cache_lock(&strata, "private-cache", 0, true);
    let ctx = context(&dockerfile("private"), &[]);
    build_ok(&strata, ctx.path(), &["--no-cache"]);
    let base = cache_dir(&strata, "private-cache");
    assert_eq!(std::fs::read_dir(base.join("0")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(base.join("1")).unwrap().count(), 1);
    drop(lock);
    // Free again: instance 0 is used.
    build_ok(&strata, ctx.path(), &["--no-cache"]);
    assert_eq!(std::fs::read_dir(base.join("0")).unwrap().count(), 2);
}

#[test]
fn bind_and_tmpfs_mounts() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS src\n\
         RUN mkdir /src && echo from-stage > /src/file && ln -s /etc/hostname /src/escape\n\
         FROM bb\n\
         RUN --mount=type=bind,source=data,target=/mnt/data sh -c 'cat /mnt/data/input > /ctx-saw && test ! -e /mnt/data/ignored.txt && ! touch /mnt/data/new'\n\
         RUN --mount=type=bind,source=data,target=/mnt/data,rw sh -c 'chmod 600 /mnt/data/input && echo changed > /mnt/data/input && cat /mnt/data/input > /rw-saw'\n\
         RUN --mount=type=bind,from=src,source=/src,target=/mnt/src cat /mnt/src/file > /stage-saw\n\
         RUN --mount=type=bind,from=bb,source=/etc/passwd,target=/mnt/passwd grep -c : /mnt/passwd > /image-saw\n\
         RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c 'echo hi > /scratch/x && df -k /scratch | tail -1 | awk \"{print \\$2}\" > /tmpfs-size'\n\
         RUN --mount=target=/ctx cat /ctx/data/input > /whole-ctx\n",
        &[
            ("data/input", "input\n"),
            ("data/ignored.txt", "ignored\n"),
            (".dockerignore", "data/ignored.txt\n"),
        ],
    );
    build_ok(&strata, ctx.path(), &["-t", "b:1"]);
    let fs = unpack(&strata, "b:1");
    assert_eq!(read(&fs, "ctx-saw"), "input\n");
    assert_eq!(read(&fs, "rw-saw"), "changed\n");
    assert_eq!(read(&fs, "stage-saw"), "from-stage\n");
    assert_eq!(read(&fs, "image-saw"), "2\n");
    assert_eq!(read(&fs, "tmpfs-size"), "1024\n");
    assert_eq!(read(&fs, "whole-ctx"), "input\n");
    // rw writes were discarded; the context is untouched (its files may be hard-linked into
    // the mount's lower directory).
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("data/input")).unwrap(),
        "input\n"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(ctx.path().join("data/input")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o644);
        assert_eq!(meta.nlink(), 1);
    }
    for layer in built_layers(&strata, "b:1").iter().skip(1) {
        let paths = layer_paths(layer);
        assert_eq!(paths.len(), 1, "{paths:?}");
    }
    assert!(!fs.path().join("rootfs/mnt").exists());
    assert!(!fs.path().join("rootfs/scratch").exists());

    // The cache key digests what a bind mount reads: a change to a mounted file reruns the
    // step, a change to an ignored one does not.
    std::fs::write(ctx.path().join("data/ignored.txt"), "still ignored\n").unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "b:2"]);
    assert_eq!(cached_steps(&progress), 7, "{progress}");
    std::fs::write(ctx.path().join("data/input"), "new input\n").unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "b:3"]);
    // Only the other stage's RUN: the first bind RUN and all after it ran again.
    assert_eq!(cached_steps(&progress), 1, "{progress}");
    assert_eq!(read(&unpack(&strata, "b:3"), "ctx-saw"), "new input\n");

    // Symlinks resolve inside the source and inside the step's root: never on the host.
    let ctx = context(
        "FROM bb AS src\n\
         RUN mkdir /src && ln -s /etc/hostname /src/escape\n\
         FROM bb\n\
         RUN --mount=type=bind,from=src,source=/src/escape,target=/x cat /x\n",
        &[],
    );
    assert!(Path::new("/etc/hostname").exists());
    let stderr = build_fails(&strata, ctx.path(), &[]);
    assert!(
        stderr.contains("--mount source \"/src/escape\" not found in \"src\""),
        "{stderr}"
    );
    // What .dockerignore leaves out cannot be bound either.
    let ignored = context(
        "FROM bb\nRUN --mount=type=bind,source=secret.txt,target=/s cat /s\n",
        &[("secret.txt", "no\n"), (".dockerignore", "secret.txt\n")],
    );
    let stderr = build_fails(&strata, ignored.path(), &[]);
    assert!(
        stderr.contains(
            "--mount source \"secret.txt\" not found in the build context (.dockerignore excludes it)"
        ),
        "{stderr}"
    );
    let host_side = tempfile::tempdir().unwrap();
    let outside = host_side.path().join("outside");
    let ctx = context(
        &format!(
            "FROM bb\nRUN ln -s {} /link\nRUN --mount=type=tmpfs,target=/link/x touch /link/x/f && ls -d /{} > /where\n",
            outside.display(),
            outside.display().to_string().trim_start_matches('/')
        ),
        &[],
    );
    build_ok(&strata, ctx.path(), &["-t", "link"]);
    assert!(
        !outside.exists(),
        "a mount target followed a symlink to the host"
    );
    assert_eq!(mounts_mentioning(host_side.path()), Vec::<String>::new());
}

#[test]
fn ssh_network_and_security_flags() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    // A service on the host's loopback: reachable with the default (host) network, not with
    // --network=none, whose own loopback is up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n");
        }
    });
    let ctx = context(
        &format!(
            "FROM bb\n\
             RUN wget -q -O /default-net http://127.0.0.1:{port}/\n\
             RUN --network=host wget -q -O /host-net http://127.0.0.1:{port}/\n\
             RUN --network=none sh -c '! wget -q -T 2 -O - http://127.0.0.1:{port}/ && ip link show lo | grep -q UP && echo isolated > /none-net'\n\
             RUN --mount=type=ssh sh -c 'test -z \"$SSH_AUTH_SOCK\" && echo no-agent > /ssh'\n"
        ),
        &[],
    );
    build_ok(&strata, ctx.path(), &["-t", "net"]);
    let fs = unpack(&strata, "net");
    assert_eq!(read(&fs, "default-net"), "hello\n");
    assert_eq!(read(&fs, "host-net"), "hello\n");
    assert_eq!(read(&fs, "none-net"), "isolated\n");
    assert_eq!(read(&fs, "ssh"), "no-agent\n");

    for (dockerfile, expected) in [
        (
            "FROM bb\nRUN --mount=type=ssh,required=true true\n",
            "Dockerfile:2: RUN: --mount=type=ssh,id=default is required, but no SSH agent is forwarded",
        ),
        (
            "FROM bb\nRUN --security=insecure true\n",
            "Dockerfile:2: RUN: --security=insecure needs the security.insecure entitlement",
        ),
    ] {
        let ctx = context(dockerfile, &[]);
        let stderr = build_fails(&strata, ctx.path(), &[]);
        assert!(stderr.contains(expected), "{dockerfile}: {stderr}");
    }
}

#[test]
fn failed_run_with_mounts_leaves_no_mounts_and_tags_nothing() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS src\nRUN mkdir /src\nFROM bb\n\
         RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --mount=type=secret,id=s \
         --mount=type=bind,from=src,source=/src,target=/b --mount=type=bind,source=.,target=/ctx,rw \
         sh -c 'touch /c/partial /t/x; echo about-to-fail; exit 4'\n",
        &[("a", "a")],
    );
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s").unwrap();
    let src = format!("id=s,src={}", secret.path().display());
    let stderr = build_fails(&strata, ctx.path(), &["-t", "broken", "--secret", &src]);
    assert!(
        stderr.contains("about-to-fail") && stderr.contains("exit code: 4"),
        "{stderr}"
    );
    strata.fails(&["inspect", "broken"]);
    assert_eq!(mounts_mentioning(strata.root()), Vec::<String>::new());
    assert_eq!(mounts_mentioning(ctx.path()), Vec::<String>::new());
    let build_dirs: Vec<_> = std::fs::read_dir(strata.root().join("build"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(build_dirs, Vec::<PathBuf>::new());
    // The cache is a complete directory (what the step wrote stays, as in BuildKit), with no
    // temporary left beside it.
    let names: Vec<String> = std::fs::read_dir(cache_dir(&strata, "/c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("tmp-")), "{names:?}");
}

#[test]
fn corpus_mount_dockerfiles_build() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles");
    for name in [
        "14-run-mount-bind",
        "15-run-mount-cache",
        "16-run-mount-tmpfs",
        "18-run-mount-ssh",
        "19-run-network-security",
        "47-run-mount-multiple",
    ] {
        let out = build(
            &strata,
            &dir.join(name),
            &["--build-arg", "BASE=bb", "-t", name],
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!built_layers(&strata, name).is_empty(), "{name}");
    }
    // Mount points never reach a layer.
    for name in [
        "14-run-mount-bind",
        "15-run-mount-cache",
        "16-run-mount-tmpfs",
        "47-run-mount-multiple",
    ] {
        for layer in built_layers(&strata, name) {
            for path in layer_paths(&layer) {
                for point in [
                    "mnt/",
                    "cache/",
                    "var/",
                    "scratch/",
                    "small/",
                    "ctx/",
                    "tools/",
                    "other-bin/",
                    "locked/",
                ] {
                    assert!(!path.starts_with(point), "{name}: {path}");
                }
            }
        }
    }
    // 17 with its secrets given (its RUNs compare them with the values of the files beside it
    // and print only "...-ok"); the environment variable secret comes from the environment.
    let secrets = dir.join("17-run-mount-secret");
    let token = format!("id=token,src={}", secrets.join("token.txt").display());
    let apikey = format!("id=apikey,src={}", secrets.join("apikey.txt").display());
    let out = strata
        .command()
        .env("CORPUS_SECRET", "env-s3cret")
        .args([
            "build",
            "--progress",
            "plain",
            "--build-arg",
            "BASE=bb",
            "-t",
            "17-given",
            "--no-cache",
        ])
        .args([
            "--secret",
            &token,
            "--secret",
            &apikey,
            "--secret",
            "id=envsecret,env=CORPUS_SECRET",
        ])
        .arg(dir.join("17-run-mount-secret"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for ok in ["token-ok", "apikey-ok", "env-ok", "missing-skipped"] {
        assert!(
            stderr.lines().any(|l| l.ends_with(&format!(" {ok}"))),
            "{ok}: {stderr}"
        );
    }
}

#[test]
fn sandbox_keeps_only_container_capabilities_and_no_device_nodes() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         RUN grep CapBnd /proc/self/status > /capbnd\n\
         RUN sh -c 'mount -t tmpfs none /etc 2>&1; umount /etc/hosts 2>&1; true' > /mount-denied\n\
         RUN --mount=type=cache,target=/c sh -c 'mknod /z c 1 5 && ! head -c 1 /z && rm /z && mknod /c/z c 1 5 && ! head -c 1 /c/z && rm /c/z && echo nodev > /nodev'\n\
         RUN sh -c 'echo x > /dev/null && head -c 4 /dev/zero | wc -c' > /devices\n",
        &[],
    );
    build_ok(&strata, ctx.path(), &["-t", "caps"]);
    let fs = unpack(&strata, "caps");
    // Docker's default container capability set.
    assert_eq!(read(&fs, "capbnd"), "CapBnd:\t00000000a80425fb\n");
    let denied = read(&fs, "mount-denied");
    assert_eq!(
        denied.matches("ermission denied").count()
            + denied.matches("Operation not permitted").count(),
        2,
        "{denied}"
    );
    assert_eq!(read(&fs, "nodev"), "nodev\n");
    assert_eq!(read(&fs, "devices").trim(), "4");
}

/// Runs strata as the unprivileged user 65534 inside a user namespace where it is root (the
/// way a rootless build runs: util-linux `setpriv` + `unshare --user --map-root-user`).
fn rootless_strata(root: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn rootless_build_in_a_user_namespace_uses_userxattr_overlays() {
    use std::os::unix::fs::PermissionsExt;
    if !can_build() || !have("setpriv", &["--version"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = work.path().join("store");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "mkdir", "id", "rm", "test"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/victim"), "x\n").unwrap();
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    std::fs::write(rootfs.join("data/old"), "old\n").unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\n\
         RUN mkdir /x && echo rootless > /x/f && id -u > /x/id && rm /etc/victim && rm -r /data && mkdir /data\n\
         RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --mount=type=bind,target=/ctx,rw \
         sh -c 'echo cached > /c/f && echo gone > /ctx/Dockerfile && cat /c/f > /x/cache'\n",
    )
    .unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(work.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = rootless_strata(&store, &["import", rootfs.to_str().unwrap(), "bb:latest"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rootless_strata(
        &store,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "rl",
            ctx.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        std::fs::read_to_string(ctx.join("Dockerfile"))
            .unwrap()
            .starts_with("FROM bb")
    );
    // The layers say root, whose files the unprivileged user owns on disk.
    let layers = {
        let config: Value = {
            let id = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
                .arg("--root")
                .arg(&store)
                .args(["inspect", "--format", "{{.Id}}", "rl"])
                .output()
                .unwrap();
            let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
            let bytes = std::fs::read(
                store
                    .join("blobs/sha256")
                    .join(id.trim_start_matches("sha256:")),
            )
            .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let diff_id = config["rootfs"]["diff_ids"][1]
            .as_str()
            .unwrap()
            .to_string();
        let file = std::fs::File::open(
            store
                .join("blobs/sha256")
                .join(diff_id.trim_start_matches("sha256:")),
        )
        .unwrap();
        let mut archive = tar::Archive::new(file);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let header = e.header().clone();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut content = String::new();
                e.read_to_string(&mut content).unwrap();
                (path, header.uid().unwrap(), content)
            })
            .collect::<Vec<_>>()
    };
    let find = |p: &str| layers.iter().find(|(path, _, _)| path == p).cloned();
    assert_eq!(
        find("x/f").map(|(_, uid, c)| (uid, c)),
        Some((0, "rootless\n".into()))
    );
    assert_eq!(find("x/id").map(|(_, _, c)| c), Some("0\n".into()));
    // The deletion became a whiteout and the recreated directory an opaque one: overlayfs
    // keeps that in `user.overlay.*` xattrs (userxattr) in a user namespace.
    assert!(find("etc/.wh.victim").is_some(), "{layers:?}");
    assert!(find("data/.wh..wh..opq").is_some(), "{layers:?}");
}

#[test]
fn secret_flag_forms_follow_docker() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\n\
         RUN --mount=type=secret,id=STRATA_IMPLICIT cat /run/secrets/STRATA_IMPLICIT > /implicit\n\
         RUN --mount=type=secret,id=typed cat /run/secrets/typed > /typed\n\
         RUN --mount=type=secret,id=file cat /run/secrets/file > /file\n",
        &[],
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "from-file").unwrap();
    let out = strata
        .command()
        .env("STRATA_IMPLICIT", "implicit-env")
        .env("STRATA_TYPED", "typed-env")
        .args(["build", "-t", "forms", "--secret", "id=STRATA_IMPLICIT"])
        .args(["--secret", "type=env,id=typed,src=STRATA_TYPED"])
        .args([
            "--secret",
            &format!("type=file,id=file,source={}", file.path().display()),
        ])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fs = unpack(&strata, "forms");
    assert_eq!(read(&fs, "implicit"), "implicit-env");
    assert_eq!(read(&fs, "typed"), "typed-env");
    assert_eq!(read(&fs, "file"), "from-file");
    for (flag, expected) in [
        (
            "id=x,colour=blue",
            "--secret \"id=x,colour=blue\": unexpected key \"colour\"",
        ),
        ("type=ssh,id=x", "unsupported type \"ssh\""),
        (
            "src=/nonexistent/secret",
            "secret file /nonexistent/secret not found",
        ),
        ("id=x,src=/etc/passwd,env=HOME", "give either src= or env="),
    ] {
        let stderr = build_fails(&strata, ctx.path(), &["--secret", flag]);
        assert!(stderr.contains(expected), "{flag}: {stderr}");
    }
}

#[test]
fn interrupted_run_with_mounts_leaves_no_mounts() {
    use std::os::unix::process::CommandExt;
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb AS src\nRUN mkdir /src\nFROM bb\n\
         RUN --mount=type=cache,target=/c,sharing=locked --mount=type=tmpfs,target=/t --mount=type=secret,id=s \
         --mount=type=bind,from=src,source=/src,target=/b --mount=type=bind,target=/ctx,rw \
         sh -c 'touch /c/started; sleep 617'\n",
        &[("a", "a")],
    );
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s").unwrap();
    let src = format!("id=s,src={}", secret.path().display());
    let mut child = strata
        .command()
        .args(["build", "-q", "-t", "interrupted", "--secret", &src])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until the step runs (it marks the cache), then Ctrl-C the whole process group as a
    // terminal does.
    let started = cache_dir(&strata, "/c").join("0/started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(!status.success());
    // The sandbox went with it: no process of the build or the step is left (so no namespace
    // holds its mounts), no mount of the store or the context shows here, nothing is tagged,
    // and the cache's lock is free again.
    let store = strata.root().to_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&store) || c.trim() == "sleep 617")
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(mounts_mentioning(strata.root()), Vec::<String>::new());
    assert_eq!(mounts_mentioning(ctx.path()), Vec::<String>::new());
    strata.fails(&["inspect", "interrupted"]);
    drop(hold_cache_lock(&strata, "/c", 0, true));
}

#[test]
fn killed_builder_takes_its_sandbox_along() {
    use std::os::unix::process::CommandExt;
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\nRUN --mount=type=cache,target=/k sh -c 'touch /k/started; sleep 619'\n",
        &[],
    );
    let mut child = strata
        .command()
        .args(["build", "-q"])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = cache_dir(&strata, "/k").join("0/started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SIGKILL the builder processes only (`strata ... build`), not the sandbox's.
    let store = strata.root().to_str().unwrap().to_string();
    let processes = || -> Vec<(u32, String)> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
            })
            .filter(|(_, c)| c.contains(&store) || c.trim() == "sleep 619")
            .collect()
    };
    for (pid, cmdline) in processes() {
        if cmdline.contains(" build -q ") {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    let _ = child.wait();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
