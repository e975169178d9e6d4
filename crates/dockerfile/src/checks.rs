//! BuildKit-style build checks (`docker build --check`): rule names,
//! descriptions and messages follow BuildKit's linter rule set.

use std::collections::BTreeMap;

use crate::ast::*;
use crate::plan::{Base, PLATFORM_ARGS, PROXY_ARGS, PlanOptions, Walker};

/// One check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Rule name, e.g. `FromAsCasing`.
    pub rule: &'static str,
    /// The rule's short description.
    pub description: &'static str,
    /// Documentation URL of the rule.
    pub url: String,
    /// The specific message.
    pub message: String,
    /// 1-based line (0 when not tied to a line).
    pub line: usize,
    /// Whether this fails the build (`DuplicateStageName`, or `# check=error=true`).
    pub error: bool,
}

const RULES: &[(&str, &str, &str)] = &[
    (
        "StageNameCasing",
        "Stage names should be lowercase",
        "stage-name-casing",
    ),
    (
        "FromAsCasing",
        "The 'as' keyword should match the case of the 'from' keyword",
        "from-as-casing",
    ),
    (
        "NoEmptyContinuation",
        "Empty continuation lines will become errors in a future release",
        "no-empty-continuation",
    ),
    (
        "ConsistentInstructionCasing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
        "consistent-instruction-casing",
    ),
    (
        "DuplicateStageName",
        "Stage names should be unique",
        "duplicate-stage-name",
    ),
    (
        "ReservedStageName",
        "Reserved words should not be used as stage names",
        "reserved-stage-name",
    ),
    (
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
        "json-args-recommended",
    ),
    (
        "MaintainerDeprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        "maintainer-deprecated",
    ),
    (
        "UndefinedArgInFrom",
        "FROM command must use declared ARGs",
        "undefined-arg-in-from",
    ),
    (
        "WorkdirRelativePath",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
        "workdir-relative-path",
    ),
    (
        "UndefinedVar",
        "Variables should be defined before their use",
        "undefined-var",
    ),
    (
        "MultipleInstructionsDisallowed",
        "Multiple instructions of the same type should not be used in the same stage",
        "multiple-instructions-disallowed",
    ),
    (
        "LegacyKeyValueFormat",
        "Legacy key/value format with whitespace separator should not be used",
        "legacy-key-value-format",
    ),
    (
        "RedundantTargetPlatform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        "redundant-target-platform",
    ),
    (
        "SecretsUsedInArgOrEnv",
        "Sensitive data should not be used in the ARG or ENV commands",
        "secrets-used-in-arg-or-env",
    ),
    (
        "InvalidDefaultArgInFrom",
        "Default value for global ARG results in an empty or invalid base image name",
        "invalid-default-arg-in-from",
    ),
    (
        "FromPlatformFlagConstDisallowed",
        "FROM --platform flag should not use a constant value",
        "from-platform-flag-const-disallowed",
    ),
    (
        "ExposeProtoCasing",
        "Protocol in EXPOSE instruction should be lowercase",
        "expose-proto-casing",
    ),
];

struct Out {
    list: Vec<Warning>,
}

impl Out {
    fn add(&mut self, rule: &'static str, line: usize, message: String) {
        let (name, description, slug) = RULES
            .iter()
            .find(|(n, _, _)| *n == rule)
            .copied()
            .unwrap_or((rule, "", ""));
        self.list.push(Warning {
            rule: name,
            description,
            url: format!("https://docs.docker.com/go/dockerfile/rule/{slug}/"),
            message,
            line,
            error: rule == "DuplicateStageName",
        });
    }
}

fn is_upper(s: &str) -> bool {
    s == s.to_ascii_uppercase()
}
fn is_lower(s: &str) -> bool {
    s == s.to_ascii_lowercase()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .filter(|k| k.as_str() != name)
        .map(|k| (levenshtein(name, k), k))
        .filter(|(d, k)| {
            *d <= 2.min(name.len().max(k.len()) / 3).max(1) || k.eq_ignore_ascii_case(name)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Whether an ARG/ENV name looks like it holds a secret (BuildKit's token list).
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.contains("public") {
        return false;
    }
    const TOKENS: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|part| TOKENS.contains(&part))
}

/// Runs the build checks. Honors `# check=skip=...` and `# check=error=true`.
pub fn check(df: &Dockerfile, opts: &PlanOptions) -> Vec<Warning> {
    let mut out = Out { list: Vec::new() };

    // Casing of instruction keywords.
    let nodes: Vec<&Node> = df.instructions().collect();
    let (upper, lower) = nodes.iter().fold((0, 0), |(u, l), n| {
        (
            u + usize::from(is_upper(&n.keyword)),
            l + usize::from(is_lower(&n.keyword) && !is_upper(&n.keyword)),
        )
    });
    let majority_lower = lower > upper;
    for n in &nodes {
        let ok = if majority_lower {
            is_lower(&n.keyword)
        } else {
            is_upper(&n.keyword)
        };
        if !ok {
            let casing = if majority_lower {
                "lowercase"
            } else {
                "uppercase"
            };
            out.add(
                "ConsistentInstructionCasing",
                n.span.line,
                format!(
                    "Command '{}' should match the case of the command majority ({casing})",
                    n.keyword
                ),
            );
        }
    }

    for &l in &df.empty_continuation_lines {
        out.add("NoEmptyContinuation", l, "Empty continuation line".into());
    }

    // Global ARG secrets.
    for n in &df.global_args {
        if let Instruction::Arg(a) = &n.instruction {
            for d in &a.args {
                if is_secret_name(&d.name) {
                    out.add(
                        "SecretsUsedInArgOrEnv",
                        n.span.line,
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data (ARG {:?})",
                            d.name
                        ),
                    );
                }
            }
        }
    }

    let mut walker = Walker::new(df, opts);
    walker.run();

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut abs_workdir: Vec<bool> = vec![false; df.stages.len()];
    for st in &df.stages {
        let f = st.from_instruction();
        let line = st.from.span.line;
        if let Some(name) = &f.name {
            if !is_lower(name) {
                out.add(
                    "StageNameCasing",
                    line,
                    format!("Stage name '{name}' should be lowercase"),
                );
            }
            let lname = name.to_ascii_lowercase();
            if seen.insert(lname.clone(), st.index).is_some() {
                out.add(
                    "DuplicateStageName",
                    line,
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                );
            }
            if lname == "scratch" || lname == "context" {
                out.add(
                    "ReservedStageName",
                    line,
                    format!("Stage name should not use the same name as reserved stage {lname:?}"),
                );
            }
        }
        if let Some(as_kw) = &f.as_keyword {
            let from_kw = &st.from.keyword;
            let bad =
                (is_upper(from_kw) && !is_upper(as_kw)) || (is_lower(from_kw) && !is_lower(as_kw));
            if bad {
                out.add(
                    "FromAsCasing",
                    line,
                    format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
                );
            }
        }
        if let Some(p) = &f.platform {
            if !p.contains('$') {
                out.add(
                    "FromPlatformFlagConstDisallowed",
                    line,
                    format!("FROM --platform flag should not use constant value {p:?}"),
                );
            } else if p == "$TARGETPLATFORM" || p == "${TARGETPLATFORM}" {
                out.add(
                    "RedundantTargetPlatform",
                    line,
                    format!(
                        "Setting platform to predefined {p} in FROM is redundant as this is the default behavior"
                    ),
                );
            }
        }
        // InvalidDefaultArgInFrom: FROM built from global ARG defaults only.
        if f.image.contains('$') {
            let mut defaults = opts.platform_args();
            for n in &df.global_args {
                if let Instruction::Arg(a) = &n.instruction {
                    for d in &a.args {
                        if let Some(def) = &d.default
                            && let Ok(v) = crate::shell::expand(def, &defaults, df.escape)
                        {
                            defaults.push((d.name.clone(), v));
                        }
                    }
                }
            }
            let uses_declared = crate::shell::referenced_vars(&f.image, df.escape)
                .iter()
                .all(|v| {
                    defaults.iter().any(|(n, _)| n == v)
                        || walker.global_decl.iter().any(|(n, _)| n == v)
                });
            if uses_declared
                && let Ok(v) = crate::shell::expand(&f.image, &defaults, df.escape)
                && (v.is_empty() || v.ends_with(':') || v.ends_with('@') || v.starts_with(':'))
            {
                out.add(
                    "InvalidDefaultArgInFrom",
                    line,
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        f.image
                    ),
                );
            }
        }

        if let Some(Ok(Base::Stage(j))) = walker.bases.get(st.index)
            && *j < st.index
        {
            abs_workdir[st.index] = abs_workdir[*j];
        }
        let mut counts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for n in &st.instructions {
            let line = n.span.line;
            match &n.instruction {
                Instruction::Cmd(Cmd { command: c })
                | Instruction::Entrypoint(Entrypoint { command: c }) => {
                    let name = n.instruction.name();
                    counts.entry(name).or_default().push(line);
                    if !c.is_exec() {
                        out.add(
                            "JSONArgsRecommended",
                            line,
                            format!(
                                "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                            ),
                        );
                    }
                }
                Instruction::Healthcheck(_) => counts.entry("HEALTHCHECK").or_default().push(line),
                Instruction::Maintainer(_) => out.add(
                    "MaintainerDeprecated",
                    line,
                    "Maintainer instruction is deprecated in favor of using label".into(),
                ),
                Instruction::Workdir(w) => {
                    if w.path.starts_with('/') || w.path.starts_with('$') {
                        abs_workdir[st.index] = true;
                    } else if !abs_workdir[st.index] {
                        out.add(
                            "WorkdirRelativePath",
                            line,
                            format!(
                                "Relative workdir {:?} can have unexpected results if the base image changes",
                                w.path
                            ),
                        );
                    }
                }
                Instruction::Env(e) => {
                    if e.legacy {
                        out.add(
                            "LegacyKeyValueFormat",
                            line,
                            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format".into(),
                        );
                    }
                    for kv in &e.vars {
                        if is_secret_name(&kv.key) {
                            out.add(
                                "SecretsUsedInArgOrEnv",
                                line,
                                format!(
                                    "Do not use ARG or ENV instructions for sensitive data (ENV {:?})",
                                    kv.key
                                ),
                            );
                        }
                    }
                }
                Instruction::Label(l) if l.legacy => out.add(
                    "LegacyKeyValueFormat",
                    line,
                    "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format"
                        .into(),
                ),
                Instruction::Arg(a) => {
                    for d in &a.args {
                        if is_secret_name(&d.name) {
                            out.add(
                                "SecretsUsedInArgOrEnv",
                                line,
                                format!(
                                    "Do not use ARG or ENV instructions for sensitive data (ARG {:?})",
                                    d.name
                                ),
                            );
                        }
                    }
                }
                Instruction::Expose(e) => {
                    for p in &e.ports {
                        if let Some((_, proto)) = p.split_once('/')
                            && !is_lower(proto) {
                                out.add(
                                    "ExposeProtoCasing",
                                    line,
                                    format!(
                                        "Defined protocol '{p}' in EXPOSE instruction should be lowercase"
                                    ),
                                );
                            }
                    }
                }
                _ => {}
            }
        }
        for (name, lines) in counts {
            for &l in &lines[..lines.len() - 1] {
                out.add(
                    "MultipleInstructionsDisallowed",
                    l,
                    format!(
                        "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                    ),
                );
            }
        }
    }

    // Undefined variables (from the substitution walk).
    let mut reported = std::collections::BTreeSet::new();
    for u in &walker.uses {
        if u.known.contains(&u.name)
            || PROXY_ARGS.contains(&u.name.as_str())
            || !reported.insert((u.name.clone(), u.span.line))
        {
            continue;
        }
        if u.in_from {
            let mut known: Vec<String> =
                walker.global_decl.iter().map(|(n, _)| n.clone()).collect();
            known.extend(PLATFORM_ARGS.iter().map(|s| s.to_string()));
            let msg = match suggest(&u.name, &known) {
                Some(s) => format!(
                    "FROM argument '{}' is not declared (did you mean {s}?)",
                    u.name
                ),
                None => format!("FROM argument '{}' is not declared", u.name),
            };
            out.add("UndefinedArgInFrom", u.span.line, msg);
        } else {
            // The base image env is unknown unless given; PATH is always set.
            if u.name == "PATH" {
                continue;
            }
            let msg = match suggest(&u.name, &u.known) {
                Some(s) => format!(
                    "Usage of undefined variable '${}' (did you mean ${s}?)",
                    u.name
                ),
                None => format!("Usage of undefined variable '${}'", u.name),
            };
            out.add("UndefinedVar", u.span.line, msg);
        }
    }

    // Directive handling.
    let skip = &df.check.skip;
    let skip_all = skip.iter().any(|s| s.eq_ignore_ascii_case("all"));
    let mut list: Vec<Warning> = out
        .list
        .into_iter()
        .filter(|w| {
            w.rule == "DuplicateStageName" || !(skip_all || skip.iter().any(|s| s == w.rule))
        })
        .map(|mut w| {
            w.error |= df.check.error;
            w
        })
        .collect();
    list.sort_by_key(|w| w.line);
    list
}
