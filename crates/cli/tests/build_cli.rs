//! The `strata build` command surface on the real binary: base images pulled from real
//! registries (strata's own `registry serve` and CNCF Distribution, on loopback) when missing
//! or with `--pull`,
//! `--output` of every type (checked with the OCI schemas and `docker load`), `--check` as
//! `docker build --check` prints it, `--progress` plain/tty (on a pseudo-terminal made by
//! util-linux `script`)/rawjson, the smaller flags, and Ctrl-C in the middle of a RUN.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::build::*;
use common::{Strata, fixtures, free_port, have, peers_required, run_tool, spawn_registry};
use serde_json::Value;

/// Whether the sandbox can run (root); skips otherwise unless STRATA_REQUIRE_PEERS=1.
fn can_build() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = root && Path::new("/bin/busybox").is_file() && have("unshare", &["--version"]);
    if !tools {
        assert!(
            !peers_required(),
            "building needs root, /bin/busybox and unshare (STRATA_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: building needs root, /bin/busybox and unshare");
    }
    tools
}

/// A store with `bb:latest`: busybox with every applet and an /etc/passwd.
fn store_with_busybox() -> Strata {
    let strata = Strata::new();
    let rootfs = tempfile::tempdir().unwrap();
    let dir = rootfs.path();
    busybox_tree(dir);
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    strata.ok(&["import", dir.to_str().unwrap(), "bb:latest"]);
    strata
}

/// Builds with plain progress; asserts success; returns stderr (the progress).
fn build_ok(strata: &Strata, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--progress=plain"];
    args.extend_from_slice(extra);
    let out = build(strata, ctx, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed: {stderr}");
    stderr
}

fn unpack(strata: &Strata, image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    strata.ok(&["unpack", image, dir.path().join("rootfs").to_str().unwrap()]);
    dir
}

fn image_ids(strata: &Strata) -> Vec<String> {
    let mut ids: Vec<String> = strata
        .ok(&["images", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// A registry on a free loopback port: `strata registry serve`, or CNCF Distribution
/// (Debian's `docker-registry`); killed on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

const DISTRIBUTION: &str = "/usr/bin/docker-registry";

impl Registry {
    /// Distribution, or None (skip) when it is not installed.
    fn distribution() -> Option<Registry> {
        if !Path::new(DISTRIBUTION).exists() {
            assert!(!peers_required(), "{DISTRIBUTION} is required");
            eprintln!("skipping: {DISTRIBUTION} not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new(DISTRIBUTION)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            host,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    fn strata() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .args(["registry", "serve", "--addr", &host, "--root"])
            .arg(dir.path().join("data"))
            .env("STRATA_ROOT", dir.path().join("store"));
        let child = spawn_registry(command, &dir.path().join("log"));
        Registry {
            child,
            host,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn base_images_are_pulled_from_strata_registry_when_missing_and_rechecked_with_pull() {
    if !can_build() {
        return;
    }
    pull_on_build_from(&Registry::strata());
}

#[test]
fn base_images_are_pulled_from_distribution_when_missing_and_rechecked_with_pull() {
    if !can_build() {
        return;
    }
    if let Some(registry) = Registry::distribution() {
        pull_on_build_from(&registry);
    }
}

fn pull_on_build_from(registry: &Registry) {
    let base = format!("{}/bb:latest", registry.host);
    let tool = format!("{}/tool:1", registry.host);
    // A publisher store pushes the base, and a second image used only by COPY --from.
    let publisher = store_with_busybox();
    publisher.ok(&["tag", "bb", &base]);
    publisher.ok(&["push", "-q", &base]);
    let tool_ctx = context("FROM bb\nRUN echo tool-v1 > /tool.txt\n", &[]);
    build_ok(&publisher, tool_ctx.path(), &["-t", &tool]);
    publisher.ok(&["push", "-q", &tool]);

    // A fresh store has neither: the build pulls both, as load-metadata steps.
    let builder = Strata::new();
    let ctx = context(
        &format!(
            "FROM {}/bb\nCOPY --from={tool} /tool.txt /copied.txt\nRUN cat /copied.txt > /seen.txt; cat /version.txt >> /seen.txt 2>/dev/null; true\n",
            registry.host
        ),
        &[],
    );
    let progress = build_ok(&builder, ctx.path(), &["-t", "app:1"]);
    assert!(
        progress.contains(&format!("[internal] load metadata for {base}")),
        "{progress}"
    );
    assert!(
        progress.contains(&format!("[internal] load metadata for {tool}")),
        "{progress}"
    );
    let images = builder.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains(&base), "{images}");
    assert!(images.contains(&tool), "{images}");
    let rootfs = unpack(&builder, "app:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("rootfs/seen.txt")).unwrap(),
        "tool-v1\n"
    );

    // The publisher moves the tag to a newer base.
    let v2 = context("FROM bb\nRUN echo base-v2 > /version.txt\n", &[]);
    build_ok(&publisher, v2.path(), &["-t", &base]);
    publisher.ok(&["push", "-q", &base]);

    // Without --pull the stored base is used and the registry is not asked.
    let progress = build_ok(&builder, ctx.path(), &["-t", "app:2"]);
    assert!(!progress.contains("load metadata"), "{progress}");
    let rootfs = unpack(&builder, "app:2");
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("rootfs/seen.txt")).unwrap(),
        "tool-v1\n"
    );

    // --pull finds the newer digest, and the build sees the new base.
    let progress = build_ok(&builder, ctx.path(), &["--pull", "-t", "app:3"]);
    assert!(
        progress.contains(&format!("[internal] load metadata for {base}")),
        "{progress}"
    );
    assert!(progress.contains("downloaded newer image"), "{progress}");
    let rootfs = unpack(&builder, "app:3");
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("rootfs/seen.txt")).unwrap(),
        "tool-v1\nbase-v2\n"
    );

    // A base that no registry has: the error names the image and the FROM line.
    let missing = context(
        &format!("FROM {}/nothing-here:1\nRUN true\n", registry.host),
        &[],
    );
    let error = build_fails(&builder, missing.path(), &["--progress=plain"]);
    assert!(
        error.contains("Dockerfile:1") && error.contains("nothing-here"),
        "{error}"
    );
    builder.assert_blobs_verified();
}

/// Every member name of a tar file.
fn tar_names(path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn validate_oci(kind: &str, files: &[PathBuf]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-oci-json.py");
    let schemas = fixtures().join("image-spec-schema");
    if !schemas.is_dir() {
        assert!(!peers_required(), "missing {}", schemas.display());
        eprintln!("skipping the schema check: no {}", schemas.display());
        return;
    }
    let mut args = vec![schemas.display().to_string(), kind.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let output = Command::new(&script).args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{kind} documents fail the OCI schema:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn outputs_of_every_type_and_output_only_builds_leave_no_image() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\nRUN mkdir -p /out && echo built > /out/result.txt\nCMD [\"cat\", \"/out/result.txt\"]\n",
        &[],
    );
    let before = image_ids(&strata);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let short = dir.path().join("short");
    let rootfs_tar = dir.path().join("rootfs.tar");
    let oci_tar = dir.path().join("image-oci.tar");
    let docker_tar = dir.path().join("image-docker.tar");

    // type=local, and the -o DIR shorthand, into an existing directory: merged in.
    std::fs::create_dir_all(&short).unwrap();
    std::fs::write(short.join("keep.txt"), "mine\n").unwrap();
    let progress = build_ok(
        &strata,
        ctx.path(),
        &[
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            short.to_str().unwrap(),
        ],
    );
    assert!(
        progress.contains("exporting to client directory"),
        "{progress}"
    );
    for root in [&local, &short] {
        assert_eq!(
            std::fs::read_to_string(root.join("out/result.txt")).unwrap(),
            "built\n"
        );
        assert!(root.join("bin/busybox").is_file());
    }
    assert_eq!(
        std::fs::read_to_string(short.join("keep.txt")).unwrap(),
        "mine\n"
    );
    // Output-only: the image did not stay in the store.
    assert_eq!(image_ids(&strata), before);

    // type=tar: the root filesystem as one tar.
    build_ok(
        &strata,
        ctx.path(),
        &["-o", &format!("type=tar,dest={}", rootfs_tar.display())],
    );
    let names = tar_names(&rootfs_tar);
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "out/result.txt"),
        "{names:?}"
    );
    // `-o -`: the same tar on stdout.
    let out = build(&strata, ctx.path(), &["--progress=quiet", "-o", "-"]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout.len() % 512,
        0,
        "stdout carries more than the tar"
    );
    let streamed = dir.path().join("streamed.tar");
    std::fs::write(&streamed, &out.stdout).unwrap();
    assert_eq!(tar_names(&streamed), names);

    // type=oci: an OCI image layout archive whose documents validate against the schemas.
    build_ok(
        &strata,
        ctx.path(),
        &["-o", &format!("type=oci,dest={}", oci_tar.display())],
    );
    let extracted = dir.path().join("oci");
    std::fs::create_dir(&extracted).unwrap();
    tar::Archive::new(std::fs::File::open(&oci_tar).unwrap())
        .unpack(&extracted)
        .unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(extracted.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |digest: &str| extracted.join("blobs/sha256").join(&digest[7..]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    if have("python3", &["-c", "import jsonschema, referencing"]) {
        validate_oci("index", &[extracted.join("index.json")]);
        validate_oci("layout", &[extracted.join("oci-layout")]);
        validate_oci("manifest", &[blob(&manifest_digest)]);
        validate_oci("config", &[blob(&config_digest)]);
    }
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        assert_eq!(
            common::sha256(&std::fs::read(blob(digest)).unwrap()),
            digest
        );
    }
    assert_eq!(image_ids(&strata), before);

    // type=docker with a name: `docker load` takes it and runs it.
    build_ok(
        &strata,
        ctx.path(),
        &[
            "-o",
            &format!(
                "type=docker,dest={},name=strata-build-cli-out:1",
                docker_tar.display()
            ),
        ],
    );
    let names = tar_names(&docker_tar);
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    // The name is a tag in the store too, so that image stays.
    let images = strata.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("strata-build-cli-out:1"), "{images}");
    if have("docker", &["info"]) {
        let loaded = run_tool("docker", &["load", "-i", docker_tar.to_str().unwrap()]);
        assert!(loaded.contains("strata-build-cli-out:1"), "{loaded}");
        let ran = run_tool("docker", &["run", "--rm", "strata-build-cli-out:1"]);
        assert_eq!(ran, "built\n");
        let _ = Command::new("docker")
            .args(["rmi", "strata-build-cli-out:1"])
            .output();
    }

    // With -t the image stays, as well as the output being written.
    let with_tag = dir.path().join("with-tag");
    build_ok(
        &strata,
        ctx.path(),
        &["-t", "kept:1", "-o", with_tag.to_str().unwrap()],
    );
    assert!(with_tag.join("out/result.txt").is_file());
    let images = strata.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("kept:1"), "{images}");

    // Bad outputs are refused before anything runs.
    for (spec, expected) in [
        ("type=bogus,dest=x", "unknown type \"bogus\""),
        ("type=local", "dest=DIR is required"),
        ("type=oci", "dest=FILE is required"),
        ("dest=x", "type is required"),
        (
            "type=tar,dest=x,compression=zstd",
            "unsupported attribute \"compression\"",
        ),
        ("type=local,dest=x,name=a:1", "name= applies to"),
    ] {
        let error = build_fails(&strata, ctx.path(), &["-o", spec]);
        assert!(error.contains(expected), "{spec}: {error}");
    }
    let not_dir = dir.path().join("a-file");
    std::fs::write(&not_dir, "x").unwrap();
    let error = build_fails(
        &strata,
        ctx.path(),
        &["-o", &format!("type=local,dest={}", not_dir.display())],
    );
    assert!(error.contains("is not a directory"), "{error}");
    assert_eq!(std::fs::read_to_string(&not_dir).unwrap(), "x");
    strata.assert_blobs_verified();
}

#[test]
fn check_reports_problems_as_docker_does_and_runs_nothing() {
    let strata = Strata::new();
    struct Case {
        dockerfile: &'static str,
        args: &'static [&'static str],
        success: bool,
        stdout_has: &'static [&'static str],
        stdout_lacks: &'static [&'static str],
    }
    let cases = [
        Case {
            dockerfile: "FROM busybox\nRUN touch /ran\ncmd echo hi\n",
            args: &[],
            success: false,
            stdout_has: &[
                "Check complete, 2 warnings have been found!\n",
                "\nWARNING: ConsistentInstructionCasing - https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/\n",
                "\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\nJSON arguments recommended for CMD to prevent unintended behavior related to OS signals\nDockerfile:3\n--------------------\n   1 |     FROM busybox\n   2 |     RUN touch /ran\n   3 | >>> cmd echo hi\n   4 |     \n--------------------\n",
            ],
            stdout_lacks: &[],
        },
        Case {
            dockerfile: "FROM busybox\nCMD [\"echo\", \"hi\"]\n",
            args: &[],
            success: true,
            stdout_has: &["Check complete, no warnings found.\n"],
            stdout_lacks: &["WARNING"],
        },
        Case {
            dockerfile: "# check=skip=JSONArgsRecommended\nFROM busybox\nCMD echo hi\n",
            args: &[],
            success: true,
            stdout_has: &["Check complete, no warnings found.\n"],
            stdout_lacks: &["WARNING"],
        },
        Case {
            dockerfile: "FROM busybox AS Build\nCMD echo hi\n",
            args: &[
                "--build-arg",
                "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended",
            ],
            success: false,
            stdout_has: &[
                "Check complete, 1 warning has been found!\n",
                "WARNING: StageNameCasing",
            ],
            stdout_lacks: &["JSONArgsRecommended"],
        },
        Case {
            dockerfile: "ARG BASE\nFROM ${BASE}\nFROM busybox AS x\nFROM busybox AS x\n",
            args: &["--build-arg", "BASE=busybox"],
            success: false,
            stdout_has: &["WARNING: DuplicateStageName", "Dockerfile:4\n"],
            stdout_lacks: &[],
        },
    ];
    for case in &cases {
        let ctx = context(case.dockerfile, &[]);
        let mut args = vec!["build", "--check"];
        args.extend_from_slice(case.args);
        args.push(ctx.path().to_str().unwrap());
        let out = strata.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            case.success,
            "{}: {stdout}{stderr}",
            case.dockerfile
        );
        if !case.success {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
        }
        for needle in case.stdout_has {
            assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
        }
        for needle in case.stdout_lacks {
            assert!(!stdout.contains(needle), "{needle:?} in:\n{stdout}");
        }
    }
    // Nothing ran and nothing was pulled (busybox is not in this store, nor fetched).
    assert!(image_ids(&strata).is_empty());
    assert!(leftover_build_dirs(&strata).is_empty());

    // Stages and arguments are resolved: an unknown target is an error, not a warning.
    let ctx = context("FROM busybox AS base\n", &[]);
    let error = strata.fails(&[
        "build",
        "--check",
        "--target",
        "nope",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(error.contains("nope"), "{error}");
    // A syntax error names its line.
    let ctx = context("FROM busybox\nRUN --mount=type=nope true\n", &[]);
    let error = strata.fails(&["build", "--check", ctx.path().to_str().unwrap()]);
    assert!(error.contains("Dockerfile:2"), "{error}");
    // The Dockerfile may come from stdin.
    let mut child = strata
        .command()
        .args(["build", "--check", "-f", "-"])
        .arg(ctx.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM busybox\nMAINTAINER me\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("WARNING: MaintainerDeprecated"), "{stdout}");
}

#[test]
fn check_error_directive_fails_the_build_before_it_runs() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "# check=error=true\nFROM bb\nRUN echo ran > /ran\nCMD echo hi\n",
        &[],
    );
    let before = image_ids(&strata);
    let error = build_fails(&strata, ctx.path(), &["--progress=plain", "-t", "x:1"]);
    assert!(
        error.contains("lint violation found for rules: JSONArgsRecommended"),
        "{error}"
    );
    assert!(!error.contains("#1 "), "a step ran: {error}");
    assert_eq!(image_ids(&strata), before);
    // Without the directive, the build runs and lists the warning at the end.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM bb\nRUN echo ran > /ran\nCMD echo hi\n",
    )
    .unwrap();
    let progress = build_ok(&strata, ctx.path(), &["-t", "x:1"]);
    assert!(
        progress.contains(" - JSONArgsRecommended: JSON arguments recommended for CMD"),
        "{progress}"
    );
    // BUILDKIT_DOCKERFILE_CHECK skips it, and is a check setting, not an unused build arg.
    let progress = build_ok(
        &strata,
        ctx.path(),
        &[
            "-t",
            "x:1",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended",
        ],
    );
    assert!(!progress.contains("JSONArgsRecommended"), "{progress}");
    assert!(!progress.contains("not consumed"), "{progress}");
}

#[test]
fn progress_plain_tty_and_rawjson() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context(
        "FROM bb\nRUN echo first-output\nRUN for i in 1 2 3; do echo tick-$i; sleep 0.3; done\n",
        &[],
    );
    // plain: ordered `#N` lines; the second build marks the steps CACHED.
    let first = build_ok(&strata, ctx.path(), &["-t", "p:1"]);
    for needle in [
        "#1 [1/3] FROM bb\n",
        "#2 [2/3] RUN echo first-output\n",
        "#2 0.",
        " first-output\n",
        "#3 [3/3] RUN for i in 1 2 3",
        " tick-3\n",
        "#4 exporting to image\n",
        "#4 DONE ",
    ] {
        assert!(first.contains(needle), "{needle:?} not in:\n{first}");
    }
    let second = build_ok(&strata, ctx.path(), &["-t", "p:1"]);
    assert!(second.contains("#2 CACHED\n"), "{second}");
    assert!(second.contains("#3 CACHED\n"), "{second}");
    assert!(!second.contains(" tick-1\n"), "{second}");

    // tty on a pseudo-terminal: drawn with ANSI cursor movement, timers, a final frame.
    if have("script", &["--version"]) {
        let command = format!(
            "{} --root {} build --progress=tty --no-cache -t p:2 {}; echo EXIT=$?",
            env!("CARGO_BIN_EXE_strata"),
            strata.root().display(),
            ctx.path().display()
        );
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("EXIT=0"), "{screen}");
        assert!(screen.contains("\x1b["), "no ANSI redraw: {screen}");
        assert!(screen.contains("[+] Building "), "{screen}");
        assert!(
            screen.contains(" => => # tick-"),
            "no live output: {screen}"
        );
        // The last frame: the header finished, every step with its time, then a newline
        // before anything else is printed.
        let last = screen.rfind("[+] Building ").unwrap();
        let frame = &screen[last..];
        let end = frame.find("EXIT=0").unwrap();
        let frame = &frame[..end];
        assert!(frame.contains(") FINISHED"), "{frame}");
        assert!(frame.contains("[3/3] RUN for i in 1 2 3"), "{frame}");
        assert!(frame.contains("exporting to image"), "{frame}");
        assert!(frame.trim_end_matches(' ').ends_with('\n'), "{frame:?}");
        // Cached steps are marked on the terminal too.
        let command = command.replace(" --no-cache", "");
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("EXIT=0"), "{screen}");
        assert!(
            screen.contains("CACHED [2/3] RUN echo first-output"),
            "{screen}"
        );
        // More steps than the terminal has rows: the live view keeps the running step in
        // sight (the oldest finished ones leave it), and the final frame lists them all.
        let many: String = std::iter::once("FROM bb\n".to_string())
            .chain((1..=12).map(|i| format!("RUN echo many-{i}\n")))
            .collect();
        let tall = context(&many, &[]);
        let command = format!(
            "stty rows 8 cols 70; {} --root {} build --progress=tty {}; echo EXIT=$?",
            env!("CARGO_BIN_EXE_strata"),
            strata.root().display(),
            tall.path().display()
        );
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("EXIT=0"), "{screen}");
        let last = screen.rfind("[+] Building ").unwrap();
        assert!(
            screen[..last].contains("[13/13] RUN echo many-12"),
            "the last step never showed live: {screen}"
        );
        let frame = &screen[last..];
        for i in 1..=12 {
            assert!(frame.contains(&format!("RUN echo many-{i} ")), "{frame}");
        }
        // A failing step: marked ERROR in the frame, its output printed below it.
        let failing = context("FROM bb\nRUN echo failing-output; exit 3\n", &[]);
        let command = format!(
            "{} --root {} build --progress=tty {}; echo EXIT=$?",
            env!("CARGO_BIN_EXE_strata"),
            strata.root().display(),
            failing.path().display()
        );
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("EXIT=1"), "{screen}");
        let last = &screen[screen.rfind("[+] Building ").unwrap()..];
        assert!(last.contains(") ERROR"), "{last}");
        assert!(
            last.contains("ERROR [2/2] RUN echo failing-output"),
            "{last}"
        );
        assert!(last.contains("\nfailing-output\r\n"), "{last:?}");
    }

    // rawjson: one JSON object per line, BuildKit's SolveStatus shape.
    let json_ctx = context(
        "FROM bb\nRUN echo first-output\nCMD echo not-json-form\n",
        &[],
    );
    let out = build(
        &strata,
        json_ctx.path(),
        &["--progress=rawjson", "--no-cache"],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut names = Vec::new();
    let mut logs = 0;
    let mut warnings = 0;
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        if let Some(vertexes) = value["vertexes"].as_array() {
            names.extend(
                vertexes
                    .iter()
                    .map(|v| v["name"].as_str().unwrap().to_string()),
            );
        }
        logs += value["logs"].as_array().map_or(0, Vec::len);
        warnings += value["warnings"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(warnings, 1, "{stderr}");
    assert!(
        names.iter().any(|n| n == "[2/3] RUN echo first-output"),
        "{names:?}"
    );
    assert!(logs >= 2, "{stderr}");
    // auto on a pipe is plain, and so is tty (there is no terminal to redraw).
    for mode in ["--progress=auto", "--progress=tty"] {
        let out = build(&strata, ctx.path(), &[mode]);
        let shown = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{shown}");
        assert!(shown.contains("#2 CACHED\n"), "{mode}: {shown}");
    }

    let error = build_fails(&strata, ctx.path(), &["--progress=fancy"]);
    assert!(error.contains("invalid --progress \"fancy\""), "{error}");
    // quiet: only the image ID, on stdout.
    let out = build(&strata, ctx.path(), &["-q"]);
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn build_contexts_stdin_dockerfile_iidfile_labels_network_platform() {
    if !can_build() {
        return;
    }
    let strata = store_with_busybox();
    let ctx = context("unused\n", &[("local.txt", "from the context\n")]);
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join("extra.txt"), "from a named context\n").unwrap();
    let iid = extra.path().join("iid");
    let dockerfile = "FROM bb\nCOPY local.txt /local.txt\nCOPY --from=extra extra.txt /extra.txt\n";
    let mut child = strata
        .command()
        .args(["build", "--progress=plain", "-f", "-", "-t", "ctx:1"])
        .args([
            "--build-context",
            &format!("extra={}", extra.path().display()),
        ])
        .args(["--iidfile", iid.to_str().unwrap()])
        .args(["--label", "org.example.a=1", "--label", "b=two"])
        .args(["--network", "default"])
        .args(["--platform", &host_platform()])
        .arg(ctx.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = unpack(&strata, "ctx:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("rootfs/local.txt")).unwrap(),
        "from the context\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("rootfs/extra.txt")).unwrap(),
        "from a named context\n"
    );
    let id = strata.ok(&["inspect", "--format", "{{.Id}}", "ctx:1"]);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id.trim());
    let labels = strata.ok(&["inspect", "--format", "{{json .Config.Labels}}", "ctx:1"]);
    let labels: Value = serde_json::from_str(labels.trim()).unwrap();
    assert_eq!(labels["org.example.a"], "1");
    assert_eq!(labels["b"], "two");
    // The Dockerfile written for the build is gone.
    assert!(leftover_build_dirs(&strata).is_empty());

    // `strata build -`: the Dockerfile on stdin, an empty context.
    let mut child = strata
        .command()
        .args(["build", "-q", "-t", "stdin:1", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM bb\nRUN ls -A /ctx-check 2>/dev/null; echo from-stdin > /s\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = unpack(&strata, "stdin:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("rootfs/s")).unwrap(),
        "from-stdin\n"
    );
    let error = strata.fails(&["build", "-f", "Dockerfile", "-"]);
    assert!(
        error.contains("tar) on standard input is not supported"),
        "{error}"
    );
    assert!(leftover_build_dirs(&strata).is_empty());

    // docker-image:// contexts stand in for a base and a COPY --from source.
    let aliased = context(
        "FROM alias-base\nCOPY --from=alias-src /etc/passwd /copied-passwd\nRUN test -x /bin/busybox\n",
        &[],
    );
    build_ok(
        &strata,
        aliased.path(),
        &[
            "-t",
            "aliased:1",
            "--build-context",
            "alias-base=docker-image://bb",
            "--build-context",
            "alias-src=docker-image://bb:latest",
        ],
    );
    let rootfs = unpack(&strata, "aliased:1");
    assert!(
        std::fs::read_to_string(rootfs.path().join("rootfs/copied-passwd"))
            .unwrap()
            .starts_with("root:x:0:0:")
    );
    let images = strata.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("alias-"), "{images}");

    for (args, expected) in [
        (
            vec!["--platform", "linux/s390x"],
            "building for another platform is not supported yet",
        ),
        (
            vec!["--network", "none"],
            "--network=none is not supported yet",
        ),
        (
            vec!["--build-context", "x=oci-layout://./layout"],
            "oci-layout:// contexts are not supported yet",
        ),
        (vec!["--build-context", "novalue"], "expected NAME=PATH"),
        (vec!["--build-context", "x=/no/such/dir"], "not a directory"),
    ] {
        if args[1] == "linux/s390x" && host_platform() == "linux/s390x" {
            continue;
        }
        let error = build_fails(&strata, ctx.path(), &args);
        assert!(error.contains(expected), "{args:?}: {error}");
    }
}

fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// Processes whose command line mentions `marker`.
fn processes_mentioning(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Starts a build whose RUN runs for minutes, waits until the RUN has started, sends SIGINT
/// (to the build's process group, as a terminal's Ctrl-C does, or to its PID alone), and
/// checks that it stops promptly and leaves nothing behind.
fn interrupt_a_running_build(to_group: bool) {
    let strata = store_with_busybox();
    // Unique per test process and variant (both variants run at once in this binary).
    let marker = format!(
        "sleep 3{}{}",
        std::process::id() % 100 + 100,
        u8::from(to_group)
    );
    let ctx = context(
        &format!("FROM bb\nRUN echo long-step-started && {marker} && echo finished-$((1+1))\n"),
        &[],
    );
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut command = strata.command();
        command
            .args(["build", "--progress=plain", "-t", "interrupted:1"])
            .arg(ctx.path())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .process_group(0);
        command.spawn().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        if text.lines().any(|l| l.ends_with(" long-step-started")) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended early: {text}"
        );
        assert!(Instant::now() < deadline, "the RUN did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!processes_mentioning(&marker).is_empty());
    let target = if to_group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    run_tool("kill", &["-INT", "--", &target]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the build did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(!text.contains("finished-2"), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // Nothing tagged, no mounts left, no sandbox still running.
    let images = strata.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("interrupted"), "{images}");
    assert!(
        mounts_mentioning(strata.root()).is_empty(),
        "{:?}",
        mounts_mentioning(strata.root())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "sandbox still running: {:?}",
            processes_mentioning(&marker)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The store is consistent, and the next build works and leaves no build dirs.
    strata.assert_blobs_verified();
    let next = context("FROM bb\nRUN echo after > /after\n", &[]);
    build_ok(&strata, next.path(), &["-t", "after:1"]);
    assert!(
        leftover_build_dirs(&strata).is_empty(),
        "{:?}",
        leftover_build_dirs(&strata)
    );
    strata.assert_blobs_verified();
}

#[test]
fn ctrl_c_on_the_process_group_stops_the_build_cleanly() {
    if !can_build() {
        return;
    }
    interrupt_a_running_build(true);
}

#[test]
fn sigint_to_the_build_alone_stops_its_sandboxes_too() {
    if !can_build() {
        return;
    }
    interrupt_a_running_build(false);
}
