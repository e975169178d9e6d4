//! Seeded-random robustness test: mutated corpus files and random words must
//! never make the parser, planner, checks or shell lexer panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use strata_dockerfile::{PlanOptions, check, parse, plan, shell};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&str] = &[
    "\\",
    "\n",
    "\\\n",
    "`",
    "\"",
    "'",
    "$",
    "${",
    "}",
    "{",
    "[",
    "]",
    ",",
    "=",
    "#",
    "\t",
    "\r",
    " ",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF\n",
    "\tEOF\n",
    "--mount=",
    "type=cache",
    "type=secret",
    "target=",
    "--from=",
    "--platform=",
    "AS ",
    "FROM ",
    "RUN ",
    "ONBUILD ",
    "COPY ",
    "ARG ",
    "ENV ",
    "HEALTHCHECK ",
    "CMD ",
    "NONE",
    "--interval=",
    "é",
    "한",
    "🚀",
    "\u{feff}",
    ":-",
    ":?",
    "#",
    "%%",
    "//",
    "/",
    "*",
    "?",
    "0",
    "99999999999999999999",
    "-1",
    "\\u",
    "[\"",
    "\"]",
    "# escape=`\n",
    "# syntax=x\n",
    "# check=skip=all;error=true\n",
];

fn corpus() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("Dockerfile")).ok())
        .collect();
    v.sort();
    v
}

fn mutate(rng: &mut Rng, src: &str) -> String {
    let mut s: Vec<char> = src.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(s.len() + 1);
        match rng.below(5) {
            0 => {
                let end = (at + rng.below(20)).min(s.len());
                s.drain(at..end);
            }
            1 | 2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, t.chars());
            }
            3 => {
                let end = (at + rng.below(40)).min(s.len());
                let dup: Vec<char> = s[at..end].to_vec();
                let to = rng.below(s.len() + 1);
                s.splice(to..to, dup);
            }
            _ => s.truncate(at),
        }
    }
    s.into_iter().collect()
}

fn exercise(src: &str) {
    if let Ok(df) = parse(src) {
        let mut opts = PlanOptions::default();
        opts.build_args.insert("BASE".into(), "x".into());
        let _ = plan(&df, &opts);
        let _ = check(&df, &opts);
        for s in &df.stages {
            if let Some(n) = &s.name {
                opts.target = Some(n.clone());
                let _ = plan(&df, &opts);
            }
        }
        let _ = df.instructions().count();
    } else if let Err(e) = parse(src) {
        let _ = e.to_string();
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let files = corpus();
    assert!(!files.is_empty());
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..40 {
        for (i, f) in files.iter().enumerate() {
            let m = mutate(&mut rng, f);
            let r = catch_unwind(AssertUnwindSafe(|| exercise(&m)));
            assert!(
                r.is_ok(),
                "panic (round {round}, file {i}) on input:\n{m:?}"
            );
        }
    }
}

#[test]
fn random_words_never_panic() {
    let mut rng = Rng(0xfeed_beef_0000_0042);
    let env = [("A", "a b"), ("PAT", "*x?"), ("E", "")];
    for _ in 0..20000 {
        let mut w = String::new();
        for _ in 0..rng.below(8) {
            w.push_str(TOKENS[rng.below(TOKENS.len())]);
            if rng.below(3) == 0 {
                w.push_str(["A", "PAT", "E", "Z", "x"][rng.below(5)]);
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = shell::expand(&w, &env, '\\');
            let _ = shell::split_words(&w, &env, '`');
            let _ = shell::referenced_vars(&w, '\\');
        }));
        assert!(r.is_ok(), "panic on word {w:?}");
        let r = catch_unwind(AssertUnwindSafe(|| exercise(&format!("FROM a\n{w}\n"))));
        assert!(r.is_ok(), "panic on Dockerfile line {w:?}");
    }
}

#[test]
fn pathological_sizes() {
    // A long chain of stages, each built FROM the previous one.
    let mut src = String::from("FROM scratch AS s0\n");
    for i in 1..1500 {
        src.push_str(&format!("FROM s{} AS s{i}\nENV V{i}=$V{}\n", i - 1, i - 1));
    }
    let df = parse(&src).unwrap();
    let p = plan(&df, &PlanOptions::default()).unwrap();
    assert_eq!(p.stages.len(), 1500);
    assert_eq!(p.levels.len(), 1500);
    // Deeply nested substitutions fail cleanly instead of overflowing the stack.
    let deep = format!("{}x{}", "${A:-".repeat(50_000), "}".repeat(50_000));
    assert!(shell::expand(&deep, &[("B", "")], '\\').is_err());
    let ok = format!("{}x{}", "${A:-".repeat(50), "}".repeat(50));
    assert_eq!(shell::expand(&ok, &[("B", "")], '\\').unwrap(), "x");
    // Very long continuation and heredoc.
    let long = format!("FROM a\nRUN echo {}done\n", "x \\\n".repeat(20_000));
    assert!(parse(&long).is_ok());
    let heredoc = format!("FROM a\nRUN <<EOF\n{}EOF\n", "line\n".repeat(50_000));
    assert!(parse(&heredoc).is_ok());
}
