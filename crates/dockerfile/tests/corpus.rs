//! Every Dockerfile of the repository corpus (`tests/dockerfiles/*/Dockerfile`)
//! must parse, plan (for every stage as target) and check without errors.

use std::path::PathBuf;

use strata_dockerfile::{Instruction, PlanOptions, check, parse, plan};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Dockerfile").is_file())
        // Negative cases by design (expect.json `error`, e.g. a syntax error) are checked end
        // to end by crates/cli/tests/build_corpus.rs.
        .filter(|e| {
            !std::fs::read_to_string(e.path().join("expect.json"))
                .is_ok_and(|t| t.contains("\"error\":"))
        })
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let src = std::fs::read_to_string(e.path().join("Dockerfile")).unwrap();
            (name, src)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn corpus_parses_plans_and_checks() {
    let files = corpus();
    assert!(
        files.len() >= 40,
        "corpus has only {} Dockerfiles",
        files.len()
    );
    for (name, src) in &files {
        // A short README comment (after any parser directives) says what it exercises.
        assert!(
            src.lines().any(|l| l.starts_with("# ") && l.len() > 20),
            "{name}: missing README comment"
        );
        let df = parse(src).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The build passes BASE (some Dockerfiles, like 56, have no default for it).
        let opts = PlanOptions {
            build_args: [("BASE".to_string(), "busybox".to_string())].into(),
            ..PlanOptions::default()
        };
        let p = plan(&df, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.target, df.stages.len() - 1, "{name}");
        for s in &df.stages {
            if let Some(stage) = &s.name {
                let o = PlanOptions {
                    target: Some(stage.clone()),
                    ..opts.clone()
                };
                let p = plan(&df, &o).unwrap_or_else(|e| panic!("{name} --target {stage}: {e}"));
                assert_eq!(p.target, s.index);
            }
        }
        let errors: Vec<_> = check(&df, &opts).into_iter().filter(|w| w.error).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn corpus_covers_every_instruction() {
    let mut seen = std::collections::BTreeSet::new();
    for (name, src) in corpus() {
        let df = parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        for n in df.instructions() {
            seen.insert(n.instruction.name());
            if let Instruction::Onbuild(o) = &n.instruction {
                seen.insert(o.trigger.name());
            }
        }
    }
    for want in [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "MAINTAINER",
    ] {
        assert!(seen.contains(want), "no corpus file uses {want}");
    }
}

#[test]
fn corpus_target_skips_unrelated_stages() {
    let src = corpus()
        .into_iter()
        .find(|(n, _)| n == "36-target-stages")
        .map(|(_, s)| s)
        .expect("36-target-stages");
    let df = parse(&src).unwrap();
    let o = PlanOptions {
        target: Some("test".into()),
        ..Default::default()
    };
    let p = plan(&df, &o).unwrap();
    assert_eq!(p.levels, vec![vec![0], vec![1]]);
    assert_eq!(p.skipped, vec![2, 3]);
    let p = plan(&df, &PlanOptions::default()).unwrap();
    assert_eq!(p.levels, vec![vec![0], vec![1, 2], vec![3]]);
}
