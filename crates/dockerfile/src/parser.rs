//! Line lexer and instruction parser (BuildKit `frontend/dockerfile/parser`
//! and `instructions` semantics).

use crate::ast::*;
use crate::error::ParseError;
use crate::instructions::{parse_duration, parse_json_array};
use crate::shell::{self, ExpandOptions};

/// Parses a Dockerfile. Never touches the outside world.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let src = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = src
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut p = Parser {
        lines: &lines,
        escape: '\\',
        empty_cont: Vec::new(),
    };
    let directives = p.directives()?;
    if let Some(d) = &directives.escape {
        p.escape = match d.value.as_str() {
            "\\" => '\\',
            "`" => '`',
            v => {
                return Err(p.err(
                    d.line,
                    1,
                    format!("invalid escape token '{v}' does not match ` or \\"),
                ));
            }
        };
    }
    let check = directives
        .check
        .as_ref()
        .map(|d| parse_check_directive(&d.value))
        .unwrap_or_default();
    let nodes = p.nodes()?;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in nodes {
        match &node.instruction {
            Instruction::From(f) => stages.push(Stage {
                index: stages.len(),
                name: f.name.clone(),
                from: node,
                instructions: Vec::new(),
            }),
            Instruction::Arg(_) if stages.is_empty() => global_args.push(node),
            _ => match stages.last_mut() {
                Some(s) => s.instructions.push(node),
                None => {
                    return Err(p.err(
                        node.span.line,
                        node.span.column,
                        "no build stage in current context".into(),
                    ));
                }
            },
        }
    }
    if stages.is_empty() {
        let msg = if global_args.is_empty() {
            "file with no instructions"
        } else {
            "no build stage in current context"
        };
        let line = global_args.first().map_or(1, |n| n.span.line);
        return Err(p.err(line, 1, msg.into()));
    }
    Ok(Dockerfile {
        directives,
        escape: p.escape,
        check,
        global_args,
        stages,
        empty_continuation_lines: p.empty_cont,
        lines: lines.iter().map(|s| s.to_string()).collect(),
    })
}

/// Parses the value of a `# check=` directive (`skip=A,B;error=true`).
pub fn parse_check_directive(v: &str) -> CheckDirective {
    let mut c = CheckDirective::default();
    for part in v.split(';') {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "skip" => {
                c.skip = val
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "error" => c.error = val.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    c
}

struct Parser<'a> {
    lines: &'a [&'a str],
    escape: char,
    empty_cont: Vec<usize>,
}

/// Where the instruction being parsed starts.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    line: usize,
    col: usize,
    text: &'a str,
}

impl Ctx<'_> {
    /// Column of `needle` in the first line of the instruction, or the keyword column.
    fn col_of(&self, needle: &str) -> usize {
        if needle.is_empty() {
            return self.col;
        }
        match self.text.find(needle) {
            Some(b) => self.text[..b].chars().count() + 1,
            None => self.col,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    Str,
    Multi,
}

struct Flags {
    values: Vec<(String, Option<String>)>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }
    fn multi(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
    fn boolean(&self, name: &str) -> Option<bool> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref() != Some("false"))
    }
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl<'a> Parser<'a> {
    fn err(&self, line: usize, column: usize, message: String) -> ParseError {
        ParseError {
            line,
            column,
            message,
            source_line: line
                .checked_sub(1)
                .and_then(|i| self.lines.get(i))
                .unwrap_or(&"")
                .to_string(),
        }
    }

    fn cerr(&self, ctx: Ctx, needle: &str, message: String) -> ParseError {
        self.err(ctx.line, ctx.col_of(needle), message)
    }

    fn directives(&self) -> Result<Directives, ParseError> {
        let mut d = Directives::default();
        for (i, line) in self.lines.iter().enumerate() {
            let Some((name, value)) = directive_line(line) else {
                break;
            };
            let slot = match name.as_str() {
                "syntax" => &mut d.syntax,
                "escape" => &mut d.escape,
                "check" => &mut d.check,
                _ => break,
            };
            if slot.is_some() {
                return Err(self.err(
                    i + 1,
                    1,
                    format!("only one {name} parser directive can be used"),
                ));
            }
            *slot = Some(Directive {
                name,
                value,
                line: i + 1,
            });
        }
        Ok(d)
    }

    fn trim_cont<'s>(&self, s: &'s str) -> (&'s str, bool) {
        let t = s.trim_end_matches(is_ws);
        match t.strip_suffix(self.escape) {
            Some(r) => (r, true),
            None => (t, false),
        }
    }

    fn nodes(&mut self) -> Result<Vec<Node>, ParseError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lines.len() {
            let raw = self.lines[i];
            let t = raw.trim_start_matches(is_ws);
            if t.is_empty() || t.starts_with('#') {
                i += 1;
                continue;
            }
            let start = i + 1;
            let col = raw.len() - t.len() + 1;
            let (first, mut cont) = self.trim_cont(t);
            let mut logical = first.to_string();
            i += 1;
            while cont && i < self.lines.len() {
                let l = self.lines[i];
                let lt = l.trim_start_matches(is_ws);
                i += 1;
                if lt.starts_with('#') {
                    continue;
                }
                if lt.trim().is_empty() {
                    self.empty_cont.push(i);
                    continue;
                }
                let (part, c) = self.trim_cont(l);
                logical.push_str(part);
                cont = c;
            }
            let kw_end = logical.find(char::is_whitespace).unwrap_or(logical.len());
            let keyword = logical[..kw_end].to_string();
            let rest = logical[kw_end..].trim().to_string();
            let ctx = Ctx {
                line: start,
                col,
                text: raw,
            };
            let instruction = self.instruction(&keyword, &rest, ctx, &mut i)?;
            out.push(Node {
                span: Span {
                    line: start,
                    column: col,
                    end_line: i.max(start),
                },
                keyword,
                original: logical,
                instruction,
            });
        }
        Ok(out)
    }

    fn flags<'r>(
        &self,
        ctx: Ctx,
        rest: &'r str,
        spec: &[(&str, FlagKind)],
    ) -> Result<(Flags, &'r str), ParseError> {
        let mut values: Vec<(String, Option<String>)> = Vec::new();
        let mut s = rest.trim_start();
        while s.starts_with("--") {
            let mut quote: Option<char> = None;
            let mut end = s.len();
            for (b, c) in s.char_indices() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == '"' || c == '\'' => quote = Some(c),
                    None if c.is_whitespace() => {
                        end = b;
                        break;
                    }
                    None => {}
                }
            }
            let word = &s[..end];
            s = s[end..].trim_start();
            if word == "--" {
                break;
            }
            let body = &word[2..];
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.replace(['"', '\''], ""))),
                None => (body, None),
            };
            let Some((_, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(self.cerr(ctx, word, format!("unknown flag: --{name}")));
            };
            if *kind != FlagKind::Multi && values.iter().any(|(n, _)| n == name) {
                return Err(self.cerr(ctx, word, format!("duplicate flag specified: --{name}")));
            }
            match (kind, &value) {
                (FlagKind::Bool, Some(v)) if v != "true" && v != "false" => {
                    return Err(self.cerr(
                        ctx,
                        word,
                        format!("expecting boolean value for flag --{name}, not: {v}"),
                    ));
                }
                (FlagKind::Str | FlagKind::Multi, None) => {
                    return Err(self.cerr(ctx, word, format!("missing a value on flag: --{name}")));
                }
                _ => {}
            }
            values.push((name.to_string(), value));
        }
        Ok((Flags { values }, s))
    }

    /// Finds heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`,
    /// `<< EOF`) among `words`.
    fn heredoc_markers(&self, ctx: Ctx, words: &[String]) -> Result<Vec<Marker>, ParseError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            let digits = w.bytes().take_while(u8::is_ascii_digit).count();
            let Some(r) = w[digits..].strip_prefix("<<") else {
                i += 1;
                continue;
            };
            if r.starts_with('<') {
                i += 1;
                continue;
            }
            let (chomp, r) = match r.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, r),
            };
            let (raw, len) = if r.is_empty() {
                match words.get(i + 1) {
                    Some(n) => (n.as_str(), 2),
                    None => {
                        i += 1;
                        continue;
                    }
                }
            } else {
                (r, 1)
            };
            if raw.contains('<') {
                i += 1;
                continue;
            }
            let none: [(&str, &str); 0] = [];
            let plain = ExpandOptions {
                skip_unset: true,
                ..Default::default()
            };
            let quoted = ExpandOptions {
                raw_quotes: true,
                ..plain
            };
            let bad = |_| self.cerr(ctx, w, format!("invalid heredoc name {raw}"));
            let name = shell::expand_with(raw, &none, self.escape, plain)
                .map_err(bad)?
                .value;
            let with_quotes = shell::expand_with(raw, &none, self.escape, quoted)
                .map_err(bad)?
                .value;
            if !name.is_empty() {
                out.push(Marker {
                    start: i,
                    len,
                    word: w.clone(),
                    heredoc: Heredoc {
                        expand: name == with_quotes,
                        name,
                        content: String::new(),
                        chomp,
                        file_descriptor: w[..digits].parse().ok(),
                    },
                });
            }
            i += len;
        }
        Ok(out)
    }

    /// Reads the bodies of `markers` from the lines after `*i`.
    fn heredoc_bodies(
        &self,
        ctx: Ctx,
        markers: &[Marker],
        i: &mut usize,
    ) -> Result<Vec<Heredoc>, ParseError> {
        let mut out = Vec::new();
        for m in markers {
            let mut h = m.heredoc.clone();
            loop {
                let Some(line) = self.lines.get(*i) else {
                    return Err(self.cerr(
                        ctx,
                        &m.word,
                        format!("unterminated heredoc {}", h.name),
                    ));
                };
                *i += 1;
                let l = if h.chomp {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if l.trim_end() == h.name {
                    break;
                }
                h.content.push_str(l);
                h.content.push('\n');
            }
            out.push(h);
        }
        Ok(out)
    }

    fn heredocs(&self, ctx: Ctx, args: &str, i: &mut usize) -> Result<Vec<Heredoc>, ParseError> {
        let words = raw_words(args, self.escape);
        let markers = self.heredoc_markers(ctx, &words)?;
        self.heredoc_bodies(ctx, &markers, i)
    }

    fn instruction(
        &self,
        keyword: &str,
        rest: &str,
        ctx: Ctx,
        i: &mut usize,
    ) -> Result<Instruction, ParseError> {
        use FlagKind::*;
        let kw = keyword.to_ascii_uppercase();
        let none: &[(&str, FlagKind)] = &[];
        let spec: &[(&str, FlagKind)] = match kw.as_str() {
            "FROM" => &[("platform", Str)],
            "RUN" => &[("mount", Multi), ("network", Str), ("security", Str)],
            "ADD" => &[
                ("chown", Str),
                ("chmod", Str),
                ("link", Bool),
                ("checksum", Str),
                ("keep-git-dir", Bool),
                ("exclude", Multi),
            ],
            "COPY" => &[
                ("from", Str),
                ("chown", Str),
                ("chmod", Str),
                ("link", Bool),
                ("parents", Bool),
                ("exclude", Multi),
            ],
            "HEALTHCHECK" => &[
                ("interval", Str),
                ("timeout", Str),
                ("start-period", Str),
                ("start-interval", Str),
                ("retries", Str),
            ],
            "CMD" | "LABEL" | "EXPOSE" | "ENV" | "ENTRYPOINT" | "VOLUME" | "USER" | "WORKDIR"
            | "ARG" | "ONBUILD" | "STOPSIGNAL" | "SHELL" | "MAINTAINER" => none,
            _ => {
                return Err(self.err(ctx.line, ctx.col, format!("unknown instruction: {keyword}")));
            }
        };
        // ONBUILD's trigger carries its own flags; JSON forms never start with "--".
        let (flags, args) = if kw == "ONBUILD" {
            (Flags { values: Vec::new() }, rest)
        } else {
            self.flags(ctx, rest, spec)?
        };
        let esc = self.escape;
        let need = |cond: bool, msg: &str| -> Result<(), ParseError> {
            if cond {
                Ok(())
            } else {
                Err(self.err(ctx.line, ctx.col, msg.to_string()))
            }
        };
        Ok(match kw.as_str() {
            "FROM" => {
                let words: Vec<&str> = args.split_whitespace().collect();
                let ok =
                    words.len() == 1 || (words.len() == 3 && words[1].eq_ignore_ascii_case("as"));
                need(ok, "FROM requires either one or three arguments")?;
                let name = words.get(2).map(|s| s.to_string());
                if let Some(n) = &name {
                    let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                    if !valid {
                        return Err(self.cerr(
                            ctx,
                            n,
                            format!(
                                "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                            ),
                        ));
                    }
                }
                Instruction::From(From {
                    image: words[0].to_string(),
                    name,
                    as_keyword: words.get(1).map(|s| s.to_string()),
                    platform: flags.string("platform"),
                })
            }
            "RUN" => {
                need(!args.is_empty(), "RUN requires at least one argument")?;
                let mount_flags = flags.multi("mount");
                let mut mounts = Vec::new();
                for m in &mount_flags {
                    mounts.push(
                        Mount::parse(m, true)
                            .map_err(|e| self.cerr(ctx, m, format!("invalid --mount: {e}")))?,
                    );
                }
                let network = flags
                    .string("network")
                    .map(|n| NetworkMode::parse(&n).map_err(|e| self.cerr(ctx, "--network", e)))
                    .transpose()?;
                let security = flags
                    .string("security")
                    .map(|n| SecurityMode::parse(&n).map_err(|e| self.cerr(ctx, "--security", e)))
                    .transpose()?;
                let (command, heredocs) = match parse_json_array(args) {
                    Some(v) => (Command::Exec(v), Vec::new()),
                    None => (
                        Command::Shell(args.to_string()),
                        self.heredocs(ctx, args, i)?,
                    ),
                };
                Instruction::Run(Run {
                    command,
                    heredocs,
                    mounts,
                    mount_flags,
                    network,
                    security,
                })
            }
            "CMD" => Instruction::Cmd(Cmd {
                command: maybe_json(args),
            }),
            "ENTRYPOINT" => Instruction::Entrypoint(Entrypoint {
                command: maybe_json(args),
            }),
            "LABEL" => {
                let (labels, legacy) = self.name_val(ctx, "LABEL", args)?;
                Instruction::Label(Label { labels, legacy })
            }
            "ENV" => {
                let (vars, legacy) = self.name_val(ctx, "ENV", args)?;
                Instruction::Env(Env { vars, legacy })
            }
            "EXPOSE" => {
                let ports: Vec<String> = args.split_whitespace().map(str::to_string).collect();
                need(!ports.is_empty(), "EXPOSE requires at least one argument")?;
                Instruction::Expose(Expose { ports })
            }
            "ADD" | "COPY" => {
                let (mut sources, json, heredocs, total) = match parse_json_array(args) {
                    Some(v) => {
                        let n = v.len();
                        (v, true, Vec::new(), n)
                    }
                    None => {
                        let words = raw_words(args, esc);
                        let markers = self.heredoc_markers(ctx, &words)?;
                        if let Some(m) = markers.last().filter(|m| m.start + m.len == words.len()) {
                            return Err(self.cerr(
                                ctx,
                                &m.word,
                                format!("{kw} cannot accept a heredoc as a destination"),
                            ));
                        }
                        let mut plain = Vec::new();
                        let mut j = 0;
                        while j < words.len() {
                            match markers.iter().find(|m| m.start == j) {
                                Some(m) => j += m.len,
                                None => {
                                    plain.push(words[j].clone());
                                    j += 1;
                                }
                            }
                        }
                        let heredocs = self.heredoc_bodies(ctx, &markers, i)?;
                        let n = plain.len() + heredocs.len();
                        (plain, false, heredocs, n)
                    }
                };
                if total < 2 || sources.is_empty() {
                    let msg = if total == 1 {
                        format!(
                            "{kw} requires at least two arguments, but only one was provided. Destination could not be determined"
                        )
                    } else {
                        format!("{kw} requires at least two arguments")
                    };
                    return Err(self.err(ctx.line, ctx.col, msg));
                }
                let dest = sources.pop().unwrap_or_default();
                if kw == "ADD" {
                    Instruction::Add(Add {
                        sources,
                        dest,
                        heredocs,
                        chown: flags.string("chown"),
                        chmod: flags.string("chmod"),
                        link: flags.boolean("link").unwrap_or(false),
                        checksum: flags.string("checksum"),
                        keep_git_dir: flags.boolean("keep-git-dir"),
                        exclude: flags.multi("exclude"),
                        json,
                    })
                } else {
                    Instruction::Copy(Copy {
                        sources,
                        dest,
                        heredocs,
                        from: flags.string("from"),
                        chown: flags.string("chown"),
                        chmod: flags.string("chmod"),
                        link: flags.boolean("link").unwrap_or(false),
                        parents: flags.boolean("parents").unwrap_or(false),
                        exclude: flags.multi("exclude"),
                        json,
                    })
                }
            }
            "VOLUME" => {
                let (paths, json) = match parse_json_array(args) {
                    Some(v) => (v, true),
                    None => (args.split_whitespace().map(str::to_string).collect(), false),
                };
                need(!paths.is_empty(), "VOLUME requires at least one argument")?;
                need(
                    paths.iter().all(|p| !p.trim().is_empty()),
                    "VOLUME specified can not be an empty string",
                )?;
                Instruction::Volume(Volume { paths, json })
            }
            "USER" => {
                need(!args.is_empty(), "USER requires exactly one argument")?;
                Instruction::User(User {
                    user: args.to_string(),
                })
            }
            "WORKDIR" => {
                need(!args.is_empty(), "WORKDIR requires exactly one argument")?;
                Instruction::Workdir(Workdir {
                    path: args.to_string(),
                })
            }
            "STOPSIGNAL" => {
                need(
                    args.split_whitespace().count() == 1,
                    "STOPSIGNAL requires exactly one argument",
                )?;
                Instruction::Stopsignal(Stopsignal {
                    signal: args.to_string(),
                })
            }
            "MAINTAINER" => {
                need(!args.is_empty(), "MAINTAINER requires exactly one argument")?;
                Instruction::Maintainer(Maintainer {
                    name: args.to_string(),
                })
            }
            "ARG" => {
                let words = raw_words(args, esc);
                need(!words.is_empty(), "ARG requires at least one argument")?;
                let mut decls = Vec::new();
                for w in words {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(self.cerr(ctx, &w, "ARG names can not be blank".into()));
                    }
                    decls.push(ArgDecl { name, default });
                }
                Instruction::Arg(Arg { args: decls })
            }
            "ONBUILD" => {
                need(!args.is_empty(), "ONBUILD requires at least one argument")?;
                let end = args.find(char::is_whitespace).unwrap_or(args.len());
                let sub = &args[..end];
                let sub_rest = args[end..].trim();
                let up = sub.to_ascii_uppercase();
                if up == "ONBUILD" {
                    return Err(self.cerr(
                        ctx,
                        sub,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ));
                }
                if up == "FROM" || up == "MAINTAINER" {
                    return Err(self.cerr(
                        ctx,
                        sub,
                        format!("{up} isn't allowed as an ONBUILD trigger"),
                    ));
                }
                let sub_ctx = Ctx {
                    col: ctx.col_of(sub),
                    ..ctx
                };
                let trigger = self.instruction(sub, sub_rest, sub_ctx, i)?;
                Instruction::Onbuild(Onbuild {
                    expression: args.to_string(),
                    trigger: Box::new(trigger),
                })
            }
            "HEALTHCHECK" => {
                let end = args.find(char::is_whitespace).unwrap_or(args.len());
                let typ = args[..end].to_ascii_uppercase();
                let cmd = args[end..].trim();
                match typ.as_str() {
                    "NONE" => {
                        need(
                            cmd.is_empty() && flags.values.is_empty(),
                            "HEALTHCHECK NONE takes no arguments",
                        )?;
                        Instruction::Healthcheck(Healthcheck::None)
                    }
                    "CMD" => {
                        need(!cmd.is_empty(), "Missing command after HEALTHCHECK CMD")?;
                        let dur = |name: &str| -> Result<Option<std::time::Duration>, ParseError> {
                            let Some(v) = flags.string(name) else {
                                return Ok(None);
                            };
                            let d = parse_duration(&v)
                                .map_err(|e| self.cerr(ctx, &format!("--{name}"), e))?;
                            if !d.is_zero() && d < std::time::Duration::from_millis(1) {
                                return Err(self.cerr(
                                    ctx,
                                    &format!("--{name}"),
                                    format!("--{name} cannot be less than 1ms"),
                                ));
                            }
                            Ok(Some(d))
                        };
                        let retries = flags
                            .string("retries")
                            .map(|r| {
                                r.parse::<u32>().map_err(|_| {
                                    self.cerr(
                                        ctx,
                                        "--retries",
                                        format!("invalid --retries value {r:?} (must be a non-negative integer)"),
                                    )
                                })
                            })
                            .transpose()?;
                        Instruction::Healthcheck(Healthcheck::Cmd {
                            command: maybe_json(cmd),
                            interval: dur("interval")?,
                            timeout: dur("timeout")?,
                            start_period: dur("start-period")?,
                            start_interval: dur("start-interval")?,
                            retries,
                        })
                    }
                    _ => {
                        return Err(self.cerr(
                            ctx,
                            &args[..end],
                            format!("Unknown type \"{}\" in HEALTHCHECK (try CMD)", &args[..end]),
                        ));
                    }
                }
            }
            "SHELL" => {
                let Some(shell) = parse_json_array(args) else {
                    return Err(self.err(
                        ctx.line,
                        ctx.col,
                        "SHELL requires the arguments to be in JSON form".into(),
                    ));
                };
                need(!shell.is_empty(), "SHELL requires at least one argument")?;
                Instruction::Shell(Shell { shell })
            }
            _ => unreachable!("checked above"),
        })
    }

    fn name_val(
        &self,
        ctx: Ctx,
        kw: &str,
        args: &str,
    ) -> Result<(Vec<KeyValue>, bool), ParseError> {
        let words = raw_words(args, self.escape);
        if words.is_empty() {
            return Err(self.err(
                ctx.line,
                ctx.col,
                format!("{kw} requires at least one argument"),
            ));
        }
        if !words[0].contains('=') {
            let key = words[0].clone();
            let value = args[args.find(char::is_whitespace).unwrap_or(args.len())..]
                .trim()
                .to_string();
            if value.is_empty() {
                return Err(self.err(ctx.line, ctx.col, format!("{kw} must have two arguments")));
            }
            return Ok((vec![KeyValue { key, value }], true));
        }
        let mut out = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.cerr(
                    ctx,
                    &w,
                    format!(
                        "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                    ),
                ));
            };
            if k.is_empty() {
                return Err(self.cerr(ctx, &w, format!("{kw} names can not be blank")));
            }
            out.push(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            });
        }
        Ok((out, false))
    }
}

/// A heredoc marker found among an instruction's words.
struct Marker {
    /// Index of the first word of the marker.
    start: usize,
    /// 1, or 2 for `<< EOF`.
    len: usize,
    word: String,
    heredoc: Heredoc,
}

fn maybe_json(args: &str) -> Command {
    match parse_json_array(args) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(args.to_string()),
    }
}

/// `# name = value` → `(lowercased name, value)`.
fn directive_line(line: &str) -> Option<(String, String)> {
    let r = line.strip_prefix('#')?.trim_start();
    let name_end = r
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(r.len());
    let name = &r[..name_end];
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let r = r[name_end..].trim_start().strip_prefix('=')?.trim();
    if r.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), r.to_string()))
}

/// Splits on whitespace outside quotes, keeping quotes and escapes in words
/// (BuildKit's `parseWords`).
pub(crate) fn raw_words(s: &str, esc: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == esc && quote != Some('\'') {
            cur.push(c);
            if let Some(n) = it.next() {
                cur.push(n);
            }
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
