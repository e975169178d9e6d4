//! The parsed Dockerfile. Values are kept as written (unexpanded, quotes
//! intact where the instruction expands variables); [`crate::plan()`] expands
//! them.

use std::time::Duration;

pub use crate::instructions::{
    BindMount, CacheMount, CacheSharing, Mount, NetworkMode, SecretMount, SecurityMode, SshMount,
    TmpfsMount,
};

/// A location in the source: 1-based line and column of the instruction
/// keyword, and the last physical line the instruction (with continuations
/// and heredoc bodies) occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
}

/// A parser directive (`# syntax=...`, `# escape=...`, `# check=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercased name.
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// The parsed `# check=` directive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckDirective {
    /// Rule names to skip (`skip=A,B`); `["all"]` skips every rule.
    pub skip: Vec<String>,
    /// `error=true`: warnings fail the build.
    pub error: bool,
}

/// All parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directives {
    pub syntax: Option<Directive>,
    pub escape: Option<Directive>,
    pub check: Option<Directive>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// Parsed `# check=` directive (default when absent).
    pub check: CheckDirective,
    /// `ARG` instructions before the first `FROM`.
    pub global_args: Vec<Node>,
    pub stages: Vec<Stage>,
    /// Lines skipped as empty continuation lines (for `NoEmptyContinuation`).
    pub empty_continuation_lines: Vec<usize>,
    /// The source lines (for error rendering).
    pub lines: Vec<String>,
}

impl Dockerfile {
    /// Every instruction in source order (global ARGs, then each stage's
    /// FROM and body).
    pub fn instructions(&self) -> impl Iterator<Item = &Node> {
        self.global_args.iter().chain(
            self.stages
                .iter()
                .flat_map(|s| std::iter::once(&s.from).chain(&s.instructions)),
        )
    }

    /// The stage named `name` (case-insensitive), if any.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The 1-based source line `n`, or `""`.
    pub fn line(&self, n: usize) -> &str {
        n.checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// A build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 0-based position among stages.
    pub index: usize,
    /// The stage name as written (`AS name`); compare case-insensitively.
    pub name: Option<String>,
    /// The `FROM` node (its instruction is [`Instruction::From`]).
    pub from: Node,
    pub instructions: Vec<Node>,
}

impl Stage {
    /// The `FROM` instruction of this stage.
    pub fn from_instruction(&self) -> &From {
        match &self.from.instruction {
            Instruction::From(f) => f,
            _ => unreachable!("stage without FROM"),
        }
    }
}

/// One instruction with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub span: Span,
    /// The instruction keyword as written (e.g. `run`, `RUN`).
    pub keyword: String,
    /// The logical line after joining continuations (heredoc bodies excluded).
    pub original: String,
    pub instruction: Instruction,
}

/// Shell form (`RUN echo hi`) or exec/JSON form (`RUN ["echo", "hi"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl Command {
    pub fn is_exec(&self) -> bool {
        matches!(self, Command::Exec(_))
    }
}

/// A heredoc (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`). In COPY/ADD each
/// heredoc is an inline source file named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// Delimiter word, unquoted.
    pub name: String,
    /// Body; every line ends with `\n`. Leading tabs already removed for `<<-`.
    pub content: String,
    /// `false` when the delimiter was quoted (no variable expansion).
    pub expand: bool,
    /// `<<-` (leading tabs stripped).
    pub chomp: bool,
    /// `3<<EOF`: the file descriptor the body is fed to (stdin when `None`).
    pub file_descriptor: Option<u32>,
}

/// A `key=value` pair (LABEL, ENV) with the value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// Every Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(Cmd),
    Label(Label),
    Expose(Expose),
    Env(Env),
    Add(Add),
    Copy(Copy),
    Entrypoint(Entrypoint),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Arg(Arg),
    Onbuild(Onbuild),
    Stopsignal(Stopsignal),
    Healthcheck(Healthcheck),
    Shell(Shell),
    Maintainer(Maintainer),
}

impl Instruction {
    /// The canonical upper-case instruction name.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }

    /// Whether BuildKit substitutes variables in this instruction's arguments.
    pub fn expands_variables(&self) -> bool {
        matches!(
            self,
            Instruction::Add(_)
                | Instruction::Copy(_)
                | Instruction::Env(_)
                | Instruction::Expose(_)
                | Instruction::From(_)
                | Instruction::Label(_)
                | Instruction::Stopsignal(_)
                | Instruction::User(_)
                | Instruction::Volume(_)
                | Instruction::Workdir(_)
                | Instruction::Arg(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    /// Stage name as written.
    pub name: Option<String>,
    /// The `AS` keyword as written (for `FromAsCasing`).
    pub as_keyword: Option<String>,
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    /// The `--mount` values as written (the planner re-parses them after
    /// variable substitution).
    pub mount_flags: Vec<String>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

/// What a RUN executes, following BuildKit's heredoc handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Exec form: run these arguments directly.
    Exec(Vec<String>),
    /// Pass this script to the stage's shell (`SHELL`, default `/bin/sh -c`).
    Shell(String),
    /// The command is a single heredoc starting with `#!`: write the body to
    /// a file and execute that file.
    Shebang(String),
}

impl Run {
    /// The script to execute. A command that is only a heredoc (`RUN <<EOF`)
    /// runs the heredoc body; otherwise heredoc bodies are appended to the
    /// command line so the shell reads them itself.
    pub fn script(&self) -> RunScript {
        let cmd = match &self.command {
            Command::Exec(v) => return RunScript::Exec(v.clone()),
            Command::Shell(c) => c,
        };
        if self.heredocs.is_empty() {
            return RunScript::Shell(cmd.clone());
        }
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let marker = |w: &str| {
            w.trim_start_matches(|c: char| c.is_ascii_digit())
                .strip_prefix("<<")
                .is_some_and(|r| !r.starts_with('<'))
        };
        let only_heredoc = self.heredocs.len() == 1
            && match words.as_slice() {
                [w] => marker(w),
                [w, _] => matches!(*w, "<<" | "<<-"),
                _ => false,
            };
        if only_heredoc {
            let body = &self.heredocs[0].content;
            if body.starts_with("#!") {
                return RunScript::Shebang(body.clone());
            }
            return RunScript::Shell(body.clone());
        }
        let mut script = cmd.clone();
        for h in &self.heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
        RunScript::Shell(script)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub labels: Vec<KeyValue>,
    /// Written as legacy `LABEL key value`.
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub vars: Vec<KeyValue>,
    /// Written as legacy `ENV key value`.
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expose {
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// Source paths/URLs (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    pub exclude: Vec<String>,
    /// Written in JSON form.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Source paths/URLs (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// Written in JSON form.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub paths: Vec<String>,
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workdir {
    pub path: String,
}

/// One `name[=default]` of an ARG line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub args: Vec<ArgDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as written (e.g. `RUN echo hi`).
    pub expression: String,
    pub trigger: Box<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopsignal {
    pub signal: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Cmd {
        command: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    pub shell: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    pub name: String,
}
