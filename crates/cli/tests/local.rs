//! The local image commands end to end, on the real binary, without peer tools.

mod common;

use common::{Strata, fixtures, sample_tree};
use serde_json::Value;

fn inspect(strata: &Strata, image: &str) -> Value {
    let out = strata.ok(&["inspect", image]);
    let mut array: Vec<Value> = serde_json::from_str(&out).expect("inspect prints a JSON array");
    assert_eq!(array.len(), 1);
    array.remove(0)
}

fn import_sample(strata: &Strata, reference: &str, extra: &[&str]) -> String {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let mut args = vec!["import"];
    args.extend_from_slice(extra);
    args.push(tree.path().to_str().unwrap());
    args.push(reference);
    strata.ok(&args).trim().to_string()
}

#[test]
fn import_inspect_history_and_images() {
    let strata = Strata::new();
    let id = import_sample(
        &strata,
        "example/app:1.0",
        &[
            "--change",
            r#"CMD ["sh"]"#,
            "-c",
            "ENV A=1",
            "-m",
            "from test",
        ],
    );
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import prints the image ID: {id}"
    );

    let image = inspect(&strata, "example/app:1.0");
    assert_eq!(image["Id"], id);
    assert_eq!(image["RepoTags"], serde_json::json!(["example/app:1.0"]));
    assert_eq!(image["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(image["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(image["Os"], "linux");
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(image["Size"].as_u64().unwrap() > 300_000);

    assert_eq!(
        strata.ok(&[
            "inspect",
            "--format",
            "{{.Config.Cmd}} {{json .RepoTags}}",
            "example/app:1.0"
        ]),
        "[sh] [\"example/app:1.0\"]\n"
    );

    let history = strata.ok(&["history", "example/app:1.0"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("IMAGE"), "{history}");
    assert!(lines[1].starts_with(&id[7..19]), "{history}");
    assert!(history.contains("from test"), "{history}");

    let images = strata.ok(&["images"]);
    let header = images.lines().next().unwrap();
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(column), "{images}");
    }
    assert!(
        images.contains("example/app") && images.contains(&id[7..19]),
        "{images}"
    );
    assert_eq!(strata.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));
    assert_eq!(
        strata.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "example/app:1.0\n"
    );
    // As typed in a shell with double quotes: a backslash and a `t`, not a tab.
    let table = strata.ok(&["images", "--format", "table {{.Repository}}\\t{{.Size}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY    ") && lines[0].trim_end().ends_with("SIZE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("example/app   ") && lines[1].ends_with("kB"),
        "{table}"
    );
    let json_line = strata.ok(&["images", "--format", "{{json .}}"]);
    let row: Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(row["Tag"], "1.0");
}

#[test]
fn tag_rmi_follow_docker_rules() {
    let strata = Strata::new();
    let id = import_sample(&strata, "one:latest", &[]);
    strata.ok(&["tag", "one", "localhost:5000/two:v2"]);
    assert_eq!(inspect(&strata, "localhost:5000/two:v2")["Id"], id);

    // By ID with two tags: refused without --force.
    let err = strata.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("must be forced"), "{err}");
    // By tag: only untags while another tag remains.
    assert_eq!(strata.ok(&["rmi", "one"]), "Untagged: one:latest\n");
    assert!(strata.ok(&["images", "-q"]).contains(&id[7..19]));
    // The last tag goes with the image, and its blobs with it.
    let out = strata.ok(&["rmi", "localhost:5000/two:v2"]);
    assert_eq!(
        out,
        format!("Untagged: localhost:5000/two:v2\nDeleted: {id}\n")
    );
    assert_eq!(strata.ok(&["images", "-q"]), "");
    assert!(
        strata.blob_names().is_empty(),
        "rmi leaves no blobs: {:?}",
        strata.blob_names()
    );
    assert!(!strata.root().join("repositories/localhost_5000").exists());

    let err = strata.fails(&["rmi", "nothing:here"]);
    assert!(err.contains("No such image: nothing:here"), "{err}");
    import_sample(&strata, "one:latest", &[]);
    let err = strata.fails(&["tag", "nothing", "x"]);
    assert!(err.contains("No such image"), "{err}");
    let err = strata.fails(&["tag", "one", "a//b"]);
    assert!(err.contains("invalid reference"), "{err}");
}

#[test]
fn force_removes_multiply_tagged_image() {
    let strata = Strata::new();
    let id = import_sample(&strata, "a:1", &[]);
    strata.ok(&["tag", "a:1", "b:2"]);
    let out = strata.ok(&["rmi", "-f", &id]);
    assert!(
        out.contains("Untagged: a:1")
            && out.contains("Untagged: b:2")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
}

#[test]
fn save_load_round_trip_keeps_ids() {
    let source = Strata::new();
    let id = import_sample(&source, "round/trip:1", &[]);
    let manifest_digest = {
        let index: Value =
            serde_json::from_slice(&std::fs::read(source.root().join("index.json")).unwrap())
                .unwrap();
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    for format in ["docker", "oci"] {
        let archive = dir.path().join(format!("{format}.tar"));
        source.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "round/trip:1",
        ]);
        let target = Strata::new();
        let out = target.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: round/trip:1\n", "{format}");
        let image = inspect(&target, "round/trip:1");
        assert_eq!(image["Id"], id, "{format}");
        let index: Value =
            serde_json::from_slice(&std::fs::read(target.root().join("index.json")).unwrap())
                .unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            manifest_digest.as_str(),
            "{format}: manifest digest preserved"
        );
        target.assert_blobs_verified();
    }
    // Saving twice gives the same bytes.
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar");
    source.ok(&["save", "-o", a.to_str().unwrap(), "round/trip:1"]);
    source.ok(&["save", "-o", b.to_str().unwrap(), "round/trip:1"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn export_gives_the_filesystem() {
    let strata = Strata::new();
    import_sample(&strata, "fs:1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fs.tar");
    strata.ok(&["export", "-o", out.to_str().unwrap(), "fs:1"]);
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&out).unwrap())
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    names.sort();
    for expected in [
        "bin",
        "etc/os-release",
        "etc/os-release.hard",
        "usr/bin/tool",
        "usr/bin/blob",
        "var/empty",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn reproducible_import_with_source_date_epoch() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let strata = Strata::new();
            let out = strata
                .command()
                .args(["import", tree.path().to_str().unwrap(), "repro:1"])
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert_eq!(
        ids[0], ids[1],
        "same input and SOURCE_DATE_EPOCH give the same image ID"
    );
}

#[test]
fn import_tarball_from_stdin_and_rejects_garbage() {
    let strata = Strata::new();
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", tree.path()).unwrap();
    let tarball = builder.into_inner().unwrap();
    let mut child = strata
        .command()
        .args(["import", "-", "stdin/image"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tarball).unwrap();
    drop(child.stdin.take());
    assert!(child.wait_with_output().unwrap().status.success());
    assert!(strata.ok(&["images"]).contains("stdin/image"));

    let garbage = tree.path().join("garbage.tar");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let before = strata.blob_names();
    let err = strata.fails(&["import", garbage.to_str().unwrap(), "bad/image"]);
    assert!(
        err.contains("not a valid tar") || err.contains("not a tar"),
        "{err}"
    );
    assert_eq!(
        strata.blob_names(),
        before,
        "a failed import leaves nothing behind"
    );
    let err = strata.fails(&["import", "/nonexistent/path", "x"]);
    assert!(err.contains("/nonexistent/path"), "{err}");
    let err = strata.fails(&[
        "import",
        "--change",
        "RUN make",
        tree.path().to_str().unwrap(),
        "x",
    ]);
    assert!(err.contains("cannot be changed on import"), "{err}");
}

#[test]
fn ggcr_tarballs_load_and_broken_ones_leave_nothing() {
    let dir = fixtures().join("ggcr/tarball");
    let good: &[(&str, &[&str])] = &[
        ("test_image_1.tar", &["bazel/v1/tarball:test_image_1"]),
        ("test_image_2.tar", &["bazel/v1/tarball:test_image_2"]),
        ("test_bundle.tar", &["test_image_2", "test_image_1"]),
        (
            "test_link.tar",
            &[
                "bazel/v1/tarball:test_image_1",
                "bazel/v1/tarball:test_image_3",
            ],
        ),
        ("test_load_manifest.tar", &["bazel/v1/tarball:test_image_1"]),
        ("hello-world-v25.tar", &[]),
    ];
    for (name, tags) in good {
        let strata = Strata::new();
        let out = strata.ok(&["load", "-i", dir.join(name).to_str().unwrap()]);
        assert!(out.starts_with("Loaded image"), "{name}: {out}");
        for tag in *tags {
            assert!(
                out.contains(&format!("Loaded image: {tag}")),
                "{name}: {out}"
            );
            let image = inspect(&strata, tag);
            let id = image["Id"].as_str().unwrap();
            // Docker's image ID is the config digest: the config file must be stored verbatim.
            let config = std::fs::read(strata.root().join("blobs/sha256").join(&id[7..])).unwrap();
            use sha2::Digest as _;
            assert_eq!(
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(&config))),
                id
            );
        }
        strata.assert_blobs_verified();
    }
    for (name, expected) in [
        ("no_manifest.tar", "neither manifest.json nor index.json"),
        ("null_manifest.tar", "manifest.json: is null"),
        ("content.tar", "neither manifest.json nor index.json"),
    ] {
        let strata = Strata::new();
        let err = strata.fails(&["load", "-i", dir.join(name).to_str().unwrap()]);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            strata.blob_names().is_empty(),
            "{name}: left blobs {:?}",
            strata.blob_names()
        );
        assert_eq!(strata.ok(&["images", "-q"]), "", "{name}");
        let ingest: Vec<_> = std::fs::read_dir(strata.root().join("ingest"))
            .unwrap()
            .collect();
        assert!(ingest.is_empty(), "{name}: left partial files");
    }
}

#[test]
fn load_rejects_tampered_archives() {
    let source = Strata::new();
    import_sample(&source, "tamper:1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar");
    source.ok(&["save", "-o", archive.to_str().unwrap(), "tamper:1"]);

    // Flip a byte inside the layer blob: its digest no longer matches its name.
    let mut bytes = std::fs::read(&archive).unwrap();
    let position = bytes
        .windows(17)
        .position(|w| w == b"NAME=strata-test\n")
        .expect("layer content in archive");
    bytes[position] = b'X';
    let tampered = dir.path().join("tampered.tar");
    std::fs::write(&tampered, &bytes).unwrap();
    let target = Strata::new();
    let err = target.fails(&["load", "-i", tampered.to_str().unwrap()]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(
        target.blob_names().is_empty(),
        "left {:?}",
        target.blob_names()
    );

    // A truncated archive.
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &std::fs::read(&archive).unwrap()[..3000]).unwrap();
    let err = target.fails(&["load", "-i", truncated.to_str().unwrap()]);
    assert!(
        err.to_lowercase().contains("archive") || err.contains("tar"),
        "{err}"
    );
    assert!(target.blob_names().is_empty());
    assert_eq!(target.ok(&["images", "-q"]), "");
}

#[test]
fn prune_and_df() {
    let strata = Strata::new();
    let first = import_sample(&strata, "prune/me:1", &[]);
    // Re-importing under the same tag with a different config leaves the first image dangling.
    import_sample(&strata, "prune/me:1", &["--change", "ENV X=1"]);
    let dangling = strata.ok(&["images", "--filter", "dangling=true", "-q"]);
    assert_eq!(dangling, format!("{}\n", &first[7..19]));
    let df = strata.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE") && df.contains("Images"), "{df}");

    // An unreferenced blob, e.g. left by an interrupted command.
    std::fs::write(
        strata.root().join("blobs/sha256").join("a".repeat(64)),
        b"orphan",
    )
    .unwrap();
    std::fs::write(strata.root().join("ingest/123-0-0.partial"), b"partial").unwrap();
    let dry = strata.ok(&["system", "prune", "--dry-run", "-a"]);
    assert!(
        dry.contains(&format!("Would delete image: {first}")),
        "{dry}"
    );
    assert!(dry.contains(&"a".repeat(64)), "{dry}");
    assert!(
        strata
            .root()
            .join("blobs/sha256")
            .join("a".repeat(64))
            .exists(),
        "dry run removes nothing"
    );

    let out = strata.ok(&["system", "prune", "-f"]);
    assert!(
        out.contains(&"a".repeat(64)) && !out.contains("image:"),
        "{out}"
    );
    assert!(!strata.root().join("ingest/123-0-0.partial").exists());
    assert_eq!(
        strata.ok(&["images", "-q"]).lines().count(),
        2,
        "without -a untagged images stay"
    );
    strata.ok(&["system", "prune", "-f", "-a"]);
    assert_eq!(strata.ok(&["images", "-q"]).lines().count(), 1);
    strata.assert_blobs_verified();
    // Everything still listed is intact.
    inspect(&strata, "prune/me:1");
}

#[test]
fn bad_flags_and_names_are_clear_errors() {
    let strata = Strata::new();
    let err = strata.fails(&["inspect", "missing"]);
    assert!(err.contains("No such image: missing"), "{err}");
    let err = strata.fails(&["save", "-o", "/tmp/x.tar", "missing"]);
    assert!(err.contains("No such image: missing"), "{err}");
    assert!(
        !std::path::Path::new("/tmp/x.tar").exists(),
        "no half-written output"
    );
    let err = strata.fails(&["load", "-i", "/nonexistent.tar"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
    let err = strata.fails(&["images", "--filter", "bogus=1"]);
    assert!(err.contains("unknown filter"), "{err}");
    let err = strata.fails(&["images", "--format", "{{.Nope"]);
    assert!(err.contains("template"), "{err}");
}

#[test]
fn unpack_applies_the_layers() {
    use std::os::unix::fs::MetadataExt;
    let strata = Strata::new();
    import_sample(&strata, "unpack:1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    strata.ok(&["unpack", "unpack:1", rootfs.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(),
        "NAME=strata-test\n"
    );
    let a = std::fs::metadata(rootfs.join("etc/os-release")).unwrap();
    let b = std::fs::metadata(rootfs.join("etc/os-release.hard")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlinks stay hardlinks");
    assert_eq!(
        std::fs::read_link(rootfs.join("bin")).unwrap(),
        std::path::Path::new("usr/bin")
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("usr/bin/tool"))
            .unwrap()
            .mode()
            & 0o777,
        0o755
    );
    assert!(rootfs.join("var/empty").is_dir());
}
