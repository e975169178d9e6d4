//! Pure build planning: resolves ARG/ENV substitution per stage, stage
//! bases and `--from` dependencies, the stages the target needs, and the
//! order (with parallel levels) to build them in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::ast::*;
use crate::error::PlanError;
use crate::instructions::Mount;
use crate::shell::{self, ExpandOptions};

/// An OS/architecture/variant triple such as `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            arch: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Inputs of [`plan`] and [`crate::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target` stage name (default: the last stage).
    pub target: Option<String>,
    pub build_platform: Platform,
    pub target_platform: Platform,
    /// Known config `Env` of base images, keyed by the (substituted) image
    /// reference as written in `FROM`. Unknown images start with an empty env.
    pub image_env: BTreeMap<String, Vec<(String, String)>>,
}

/// Names of the automatic platform ARGs.
pub const PLATFORM_ARGS: [&str; 8] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// Predefined proxy ARGs: usable as `--build-arg` without an `ARG` line and
/// passed to `RUN` only.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl PlanOptions {
    /// The automatic platform ARG values.
    pub fn platform_args(&self) -> Vec<(String, String)> {
        let b = &self.build_platform;
        let t = &self.target_platform;
        vec![
            ("BUILDPLATFORM".into(), b.to_string()),
            ("BUILDOS".into(), b.os.clone()),
            ("BUILDARCH".into(), b.arch.clone()),
            ("BUILDVARIANT".into(), b.variant.clone().unwrap_or_default()),
            ("TARGETPLATFORM".into(), t.to_string()),
            ("TARGETOS".into(), t.os.clone()),
            ("TARGETARCH".into(), t.arch.clone()),
            (
                "TARGETVARIANT".into(),
                t.variant.clone().unwrap_or_default(),
            ),
        ]
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image reference (after substitution).
    Image(String),
    /// Another stage, by index.
    Stage(usize),
}

/// One instruction of a planned stage, with variables substituted where
/// BuildKit substitutes them (RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/ONBUILD
/// are left as written; RUN mounts are substituted and re-parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub span: Span,
    pub instruction: Instruction,
    /// Build args in scope (declared with a value, plus predefined proxy
    /// args given as build args): the extra environment of a RUN.
    pub build_args: Vec<(String, String)>,
    /// Stage ENV in effect after this step (as far as known).
    pub env: Vec<(String, String)>,
}

/// A stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    /// Stage name as written.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform` after substitution.
    pub platform: Option<String>,
    /// Stages this one needs (base, `COPY --from`, `RUN --mount from=`).
    pub depends_on: Vec<usize>,
    /// Images referenced by `COPY --from` / mount `from=` (not stages).
    pub image_refs: Vec<String>,
    pub steps: Vec<PlannedStep>,
    /// Final ENV of the stage (base-image env only if given in options).
    pub env: Vec<(String, String)>,
    /// 0 for stages without dependencies; otherwise 1 + max level of deps.
    /// Stages of the same level can be built in parallel.
    pub level: usize,
}

/// The resolved build graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// Needed stages, in a valid build order (by level, then index).
    pub stages: Vec<PlannedStage>,
    /// Index of the target stage.
    pub target: usize,
    /// Stage indices grouped by level; each group can run in parallel.
    pub levels: Vec<Vec<usize>>,
    /// Stages not needed for the target.
    pub skipped: Vec<usize>,
    /// Global (pre-FROM) ARGs and their resolved values.
    pub global_args: Vec<(String, Option<String>)>,
    /// Build args that no ARG consumed (BuildKit warns about these).
    pub unused_build_args: Vec<String>,
}

impl BuildPlan {
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// A variable use recorded for checks.
#[derive(Debug, Clone)]
pub(crate) struct VarUse {
    pub name: String,
    pub span: Span,
    pub in_from: bool,
    /// Names defined at that point (for suggestions).
    pub known: Vec<String>,
}

pub(crate) struct Walker<'a> {
    df: &'a Dockerfile,
    opts: &'a PlanOptions,
    pub global: Vec<(String, String)>,
    pub global_decl: Vec<(String, Option<String>)>,
    consumed: BTreeSet<String>,
    pub uses: Vec<VarUse>,
    names: Vec<Option<String>>,
    pub bases: Vec<Result<Base, PlanError>>,
    pub results: Vec<Option<Result<PlannedStage, PlanError>>>,
    pub platforms: Vec<Option<String>>,
    declared: Vec<String>,
}

fn set(v: &mut Vec<(String, String)>, k: &str, val: String) {
    v.retain(|(n, _)| n != k);
    v.push((k.to_string(), val));
}

impl<'a> Walker<'a> {
    pub(crate) fn new(df: &'a Dockerfile, opts: &'a PlanOptions) -> Self {
        Walker {
            df,
            opts,
            global: Vec::new(),
            global_decl: Vec::new(),
            consumed: BTreeSet::new(),
            uses: Vec::new(),
            names: df
                .stages
                .iter()
                .map(|s| s.name.as_ref().map(|n| n.to_ascii_lowercase()))
                .collect(),
            bases: Vec::new(),
            results: Vec::new(),
            platforms: Vec::new(),
            declared: Vec::new(),
        }
    }

    fn err(&self, span: Span, msg: impl Into<String>) -> PlanError {
        PlanError {
            location: Some((span.line, span.column)),
            message: msg.into(),
            source_line: self.df.line(span.line).to_string(),
        }
    }

    fn ex_opts(
        &mut self,
        word: &str,
        vars: &[(String, String)],
        span: Span,
        in_from: bool,
        opts: ExpandOptions,
    ) -> Result<shell::Expansion, PlanError> {
        let e = shell::expand_with(word, vars, self.df.escape, opts)
            .map_err(|e| self.err(span, e.0))?;
        for n in &e.unmatched {
            let known = vars
                .iter()
                .map(|(k, _)| k.clone())
                .chain(self.declared.iter().cloned())
                .collect();
            self.uses.push(VarUse {
                name: n.clone(),
                span,
                in_from,
                known,
            });
        }
        Ok(e)
    }

    fn ex(
        &mut self,
        word: &str,
        vars: &[(String, String)],
        span: Span,
    ) -> Result<String, PlanError> {
        Ok(self
            .ex_opts(word, vars, span, false, ExpandOptions::default())?
            .value)
    }

    pub(crate) fn run(&mut self) {
        // Global ARGs.
        let mut global = self.opts.platform_args();
        for node in &self.df.global_args {
            let Instruction::Arg(a) = &node.instruction else {
                continue;
            };
            for d in &a.args {
                let value = if let Some(v) = self.opts.build_args.get(&d.name) {
                    self.consumed.insert(d.name.clone());
                    Some(v.clone())
                } else if let Some(def) = &d.default {
                    self.ex(def, &global, node.span).ok()
                } else {
                    // e.g. `ARG TARGETARCH` before FROM keeps the automatic value.
                    global
                        .iter()
                        .find(|(n, _)| n == &d.name)
                        .map(|(_, v)| v.clone())
                };
                if let Some(v) = &value {
                    set(&mut global, &d.name, v.clone());
                }
                self.declared.push(d.name.clone());
                self.global_decl.retain(|(n, _)| n != &d.name);
                self.global_decl.push((d.name.clone(), value));
            }
        }
        self.global = global;
        // Bases.
        for st in &self.df.stages {
            let f = st.from_instruction();
            let g = self.global.clone();
            let span = st.from.span;
            let r = self
                .ex_opts(&f.image, &g[..], span, true, ExpandOptions::default())
                .map(|e| e.value);
            let pl = f.platform.as_ref().and_then(|p| {
                self.ex_opts(p, &g[..], span, true, ExpandOptions::default())
                    .ok()
                    .map(|e| e.value)
            });
            self.platforms.push(pl);
            let base = r.and_then(|image| {
                if image.is_empty() {
                    return Err(
                        self.err(span, format!("base name ({}) should not be blank", f.image))
                    );
                }
                if image.eq_ignore_ascii_case("scratch") {
                    return Ok(Base::Scratch);
                }
                let lower = image.to_ascii_lowercase();
                match self.names.iter().position(|n| n.as_deref() == Some(&lower)) {
                    Some(j) if j == st.index => Err(self.err(
                        span,
                        format!("circular dependency detected on stage: {image}"),
                    )),
                    Some(j) => Ok(Base::Stage(j)),
                    None => Ok(Base::Image(image)),
                }
            });
            self.bases.push(base);
        }
        // Walk stages, parents first.
        self.walk_all();
    }

    /// Walks every stage, a stage's `FROM <stage>` parent first (iteratively,
    /// so long stage chains cannot exhaust the stack).
    fn walk_all(&mut self) {
        let n = self.df.stages.len();
        self.results = vec![None; n];
        let mut mark = vec![usize::MAX; n];
        for start in 0..n {
            let mut chain = Vec::new();
            let mut cur = start;
            loop {
                if self.results[cur].is_some() {
                    break;
                }
                if mark[cur] == start {
                    let st = &self.df.stages[cur];
                    let name = st.name.clone().unwrap_or_else(|| cur.to_string());
                    let e = self.err(
                        st.from.span,
                        format!("circular dependency detected on stage: {name}"),
                    );
                    self.results[cur] = Some(Err(e));
                    break;
                }
                mark[cur] = start;
                chain.push(cur);
                match &self.bases[cur] {
                    Ok(Base::Stage(j)) => cur = *j,
                    _ => break,
                }
            }
            for &i in chain.iter().rev() {
                if self.results[i].is_none() {
                    let r = self.stage(i);
                    self.results[i] = Some(r);
                }
            }
        }
    }

    fn resolve_from(
        &self,
        idx: usize,
        value: &str,
        span: Span,
        deps: &mut Vec<usize>,
        images: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        if let Ok(n) = value.parse::<usize>() {
            if n >= idx {
                return Err(self.err(
                    span,
                    format!("invalid from flag value {value}: refers to current or later stage"),
                ));
            }
            if !deps.contains(&n) {
                deps.push(n);
            }
            return Ok(());
        }
        let lower = value.to_ascii_lowercase();
        match self.names.iter().position(|n| n.as_deref() == Some(&lower)) {
            Some(j) if j == idx => Err(self.err(
                span,
                format!("circular dependency detected on stage: {value}"),
            )),
            Some(j) => {
                if !deps.contains(&j) {
                    deps.push(j);
                }
                Ok(())
            }
            None => {
                if !images.contains(&value.to_string()) {
                    images.push(value.to_string());
                }
                Ok(())
            }
        }
    }

    fn stage(&mut self, idx: usize) -> Result<PlannedStage, PlanError> {
        let df = self.df;
        let opts = self.opts;
        let st = &df.stages[idx];
        let base = self.bases[idx].clone()?;
        let mut deps = Vec::new();
        let mut images = Vec::new();
        let mut env: Vec<(String, String)> = match &base {
            Base::Stage(j) => {
                deps.push(*j);
                match &self.results[*j] {
                    Some(Ok(p)) => p.env.clone(),
                    _ => Vec::new(),
                }
            }
            Base::Image(r) => opts.image_env.get(r).cloned().unwrap_or_default(),
            Base::Scratch => Vec::new(),
        };
        let platform_args = opts.platform_args();
        let mut args: Vec<(String, String)> = Vec::new();
        let mut steps = Vec::new();
        self.declared.clear();
        for node in &st.instructions {
            let span = node.span;
            let vars: Vec<(String, String)> = args.iter().chain(env.iter()).cloned().collect();
            let ins = match &node.instruction {
                Instruction::Arg(a) => {
                    for d in &a.args {
                        self.declared.push(d.name.clone());
                        let vars: Vec<(String, String)> =
                            args.iter().chain(env.iter()).cloned().collect();
                        let value = if let Some(v) = opts.build_args.get(&d.name) {
                            self.consumed.insert(d.name.clone());
                            Some(v.clone())
                        } else if let Some(def) = &d.default {
                            Some(self.ex(def, &vars, span)?)
                        } else if let Some((_, v)) =
                            self.global_decl.iter().find(|(n, _)| n == &d.name)
                        {
                            v.clone()
                        } else {
                            platform_args
                                .iter()
                                .find(|(n, _)| n == &d.name)
                                .map(|(_, v)| v.clone())
                        };
                        match value {
                            Some(v) => set(&mut args, &d.name, v),
                            None => args.retain(|(n, _)| n != &d.name),
                        }
                    }
                    node.instruction.clone()
                }
                Instruction::Env(e) => {
                    // All pairs see the environment from before the instruction
                    // (`ENV abc=bye def=$abc` uses the previous `abc`).
                    let mut out = Vec::new();
                    for kv in &e.vars {
                        let k = self.ex(&kv.key, &vars, span)?;
                        let v = self.ex(&kv.value, &vars, span)?;
                        set(&mut env, &k, v.clone());
                        out.push(KeyValue { key: k, value: v });
                    }
                    Instruction::Env(Env {
                        vars: out,
                        legacy: e.legacy,
                    })
                }
                Instruction::Label(l) => {
                    let mut out = Vec::new();
                    for kv in &l.labels {
                        out.push(KeyValue {
                            key: self.ex(&kv.key, &vars, span)?,
                            value: self.ex(&kv.value, &vars, span)?,
                        });
                    }
                    Instruction::Label(Label {
                        labels: out,
                        legacy: l.legacy,
                    })
                }
                Instruction::Copy(c) => {
                    let mut c = c.clone();
                    self.expand_list(&mut c.sources, &vars, span, &c.heredocs)?;
                    c.dest = self.ex(&c.dest, &vars, span)?;
                    c.from = self.ex_opt(&c.from, &vars, span)?;
                    c.chown = self.ex_opt(&c.chown, &vars, span)?;
                    c.chmod = self.ex_opt(&c.chmod, &vars, span)?;
                    self.expand_list(&mut c.exclude, &vars, span, &[])?;
                    self.expand_heredocs(&mut c.heredocs, &vars, span)?;
                    if let Some(f) = &c.from {
                        if f.is_empty() {
                            return Err(self.err(span, "COPY --from requires a value"));
                        }
                        self.resolve_from(idx, f, span, &mut deps, &mut images)?;
                    }
                    Instruction::Copy(c)
                }
                Instruction::Add(a) => {
                    let mut a = a.clone();
                    self.expand_list(&mut a.sources, &vars, span, &a.heredocs)?;
                    a.dest = self.ex(&a.dest, &vars, span)?;
                    a.chown = self.ex_opt(&a.chown, &vars, span)?;
                    a.chmod = self.ex_opt(&a.chmod, &vars, span)?;
                    a.checksum = self.ex_opt(&a.checksum, &vars, span)?;
                    self.expand_list(&mut a.exclude, &vars, span, &[])?;
                    self.expand_heredocs(&mut a.heredocs, &vars, span)?;
                    Instruction::Add(a)
                }
                Instruction::Expose(e) => {
                    let mut ports = Vec::new();
                    for p in &e.ports {
                        let x = self.ex_opts(p, &vars, span, false, ExpandOptions::default())?;
                        ports.extend(x.words);
                    }
                    Instruction::Expose(Expose { ports })
                }
                Instruction::Volume(v) => {
                    let mut v = v.clone();
                    self.expand_list(&mut v.paths, &vars, span, &[])?;
                    Instruction::Volume(v)
                }
                Instruction::User(u) => Instruction::User(User {
                    user: self.ex(&u.user, &vars, span)?,
                }),
                Instruction::Workdir(w) => Instruction::Workdir(Workdir {
                    path: self.ex(&w.path, &vars, span)?,
                }),
                Instruction::Stopsignal(s) => Instruction::Stopsignal(Stopsignal {
                    signal: self.ex(&s.signal, &vars, span)?,
                }),
                Instruction::Run(r) => {
                    let mut r = r.clone();
                    r.mounts.clear();
                    for m in &r.mount_flags {
                        let x = self.ex(m, &vars, span)?;
                        let mount = Mount::parse(&x, false)
                            .map_err(|e| self.err(span, format!("invalid --mount: {e}")))?;
                        if let Some(f) = mount.from() {
                            self.resolve_from(idx, f, span, &mut deps, &mut images)?;
                        }
                        r.mounts.push(mount);
                    }
                    Instruction::Run(r)
                }
                other => other.clone(),
            };
            let mut build_args = args.clone();
            for p in PROXY_ARGS {
                if let Some(v) = opts.build_args.get(p) {
                    self.consumed.insert(p.to_string());
                    if !build_args.iter().any(|(n, _)| n == p) {
                        build_args.push((p.to_string(), v.clone()));
                    }
                }
            }
            steps.push(PlannedStep {
                span,
                instruction: ins,
                build_args,
                env: env.clone(),
            });
        }
        Ok(PlannedStage {
            index: idx,
            name: st.name.clone(),
            base,
            platform: self.platforms[idx].clone(),
            depends_on: deps,
            image_refs: images,
            steps,
            env,
            level: 0,
        })
    }

    fn ex_opt(
        &mut self,
        v: &Option<String>,
        vars: &[(String, String)],
        span: Span,
    ) -> Result<Option<String>, PlanError> {
        v.as_ref().map(|s| self.ex(s, vars, span)).transpose()
    }

    fn expand_list(
        &mut self,
        list: &mut [String],
        vars: &[(String, String)],
        span: Span,
        heredocs: &[Heredoc],
    ) -> Result<(), PlanError> {
        for s in list.iter_mut() {
            if heredocs.iter().any(|h| &h.name == s) {
                continue;
            }
            *s = self.ex(s, vars, span)?;
        }
        Ok(())
    }

    fn expand_heredocs(
        &mut self,
        hs: &mut [Heredoc],
        vars: &[(String, String)],
        span: Span,
    ) -> Result<(), PlanError> {
        let raw = ExpandOptions {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset: false,
        };
        for h in hs.iter_mut().filter(|h| h.expand) {
            h.content = self.ex_opts(&h.content, vars, span, false, raw)?.value;
        }
        Ok(())
    }

    pub(crate) fn unused_build_args(&self) -> Vec<String> {
        self.opts
            .build_args
            .keys()
            .filter(|k| {
                !self.consumed.contains(*k)
                    && !PROXY_ARGS.contains(&k.as_str())
                    && !PLATFORM_ARGS.contains(&k.as_str())
            })
            .cloned()
            .collect()
    }
}

/// Resolves the stage graph for `opts.target` (default: the last stage).
pub fn plan(df: &Dockerfile, opts: &PlanOptions) -> Result<BuildPlan, PlanError> {
    let mut w = Walker::new(df, opts);
    w.run();
    let n = df.stages.len();
    let target = match &opts.target {
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| {
                    s.name.as_ref().map(|n| n.to_ascii_lowercase()) == Some(lower.clone())
                })
                .ok_or_else(|| {
                    PlanError::general(format!("target stage {t:?} could not be found"))
                })?
        }
        None => n - 1,
    };
    // Duplicate stage names are an error (as in BuildKit).
    let mut seen = BTreeSet::new();
    for s in &df.stages {
        if let Some(name) = &s.name
            && !seen.insert(name.to_ascii_lowercase())
        {
            return Err(w.err(
                s.from.span,
                format!("duplicate stage name {name:?}, stage names should be unique"),
            ));
        }
    }
    // Levels over the needed sub-graph (iterative DFS from the target).
    let mut level: Vec<Option<usize>> = vec![None; n];
    let mut active = vec![false; n];
    let stage_of = |i: usize| -> Result<&PlannedStage, PlanError> {
        match &w.results[i] {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Err(PlanError::general("internal: stage not walked")),
        }
    };
    stage_of(target)?;
    active[target] = true;
    let mut stack: Vec<(usize, usize)> = vec![(target, 0)];
    while let Some(top) = stack.last_mut() {
        let (i, k) = *top;
        let deps = &stage_of(i)?.depends_on;
        if k < deps.len() {
            top.1 += 1;
            let d = deps[k];
            if level[d].is_some() {
                continue;
            }
            let sd = stage_of(d)?;
            if active[d] {
                let name = sd.name.clone().unwrap_or_else(|| d.to_string());
                return Err(PlanError::general(format!(
                    "circular dependency detected on stage: {name}"
                )));
            }
            active[d] = true;
            stack.push((d, 0));
        } else {
            let l = deps
                .iter()
                .filter_map(|d| level[*d])
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            level[i] = Some(l);
            active[i] = false;
            stack.pop();
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|i| level[*i].is_some()).collect();
    order.sort_by_key(|i| (level[*i], *i));
    let max = order.iter().filter_map(|i| level[*i]).max().unwrap_or(0);
    let mut levels = vec![Vec::new(); max + 1];
    let mut stages = Vec::new();
    for &i in &order {
        let l = level[i].unwrap_or(0);
        levels[l].push(i);
        if let Some(Ok(s)) = &w.results[i] {
            let mut s = s.clone();
            s.level = l;
            stages.push(s);
        }
    }
    Ok(BuildPlan {
        stages,
        target,
        levels,
        skipped: (0..n).filter(|i| level[*i].is_none()).collect(),
        global_args: w.global_decl.clone(),
        unused_build_args: w.unused_build_args(),
    })
}
