//! Variable substitution with the semantics of BuildKit's Dockerfile shell
//! lexer (`frontend/dockerfile/shell`): `$v`, `${v}`, `${v:-w}`, `${v-w}`,
//! `${v:+w}`, `${v+w}`, `${v:?m}`, `${v?m}`, `${v#p}`, `${v##p}`, `${v%p}`,
//! `${v%%p}`, `${v/p/r}` and `${v//p/r}` (glob patterns with `*` and `?`),
//! single quotes (literal), double quotes, and the Dockerfile escape
//! character (`\` or `` ` ``).
//!
//! [`expand`] produces one word (whitespace kept, as BuildKit's
//! `ProcessWord`); [`split_words`] additionally splits unquoted text and
//! unquoted expansion results on whitespace (BuildKit's `ProcessWords`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A source of variable values.
pub trait Vars {
    /// The value of `name`, or `None` when unset.
    fn var(&self, name: &str) -> Option<&str>;
}

impl Vars for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Vars for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Ordered `(name, value)` pairs; the last definition of a name wins.
impl Vars for [(String, String)] {
    fn var(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn var(&self, name: &str) -> Option<&str> {
        self.as_slice().var(name)
    }
}

impl Vars for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<const N: usize> Vars for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<&str> {
        self.as_slice().var(name)
    }
}

/// A substitution error, e.g. an unterminated quote or `${v:?msg}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(pub String);

/// Lexer switches (BuildKit's `RawQuotes`, `RawEscapes`, `SkipUnsetEnv`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpandOptions {
    /// Keep quote characters in the output (used for heredoc bodies).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (used for heredoc bodies).
    pub raw_escapes: bool,
    /// Leave references to unset variables (`$x`, `${x}`) untouched.
    pub skip_unset: bool,
}

/// The full result of one substitution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with all substitutions done (as [`expand`]).
    pub value: String,
    /// The word split on unquoted whitespace (as [`split_words`]).
    pub words: Vec<String>,
    /// Names that were looked up and were set.
    pub matched: BTreeSet<String>,
    /// Names that were looked up, were unset and had no default/alternative
    /// or error operator guarding them (what `UndefinedVar` reports).
    pub unmatched: BTreeSet<String>,
}

/// Expands `word` into a single string (BuildKit `ProcessWord`).
pub fn expand<V: Vars + ?Sized>(word: &str, env: &V, escape: char) -> Result<String, ShellError> {
    Ok(expand_with(word, env, escape, ExpandOptions::default())?.value)
}

/// Expands `word` and splits it into words (BuildKit `ProcessWords`).
pub fn split_words<V: Vars + ?Sized>(
    word: &str,
    env: &V,
    escape: char,
) -> Result<Vec<String>, ShellError> {
    Ok(expand_with(word, env, escape, ExpandOptions::default())?.words)
}

/// Expands `word` with explicit options, reporting which variables were used.
pub fn expand_with<V: Vars + ?Sized>(
    word: &str,
    env: &V,
    escape: char,
    opts: ExpandOptions,
) -> Result<Expansion, ShellError> {
    let mut p = Proc {
        s: word.chars().collect(),
        i: 0,
        esc: escape,
        env: &|n: &str| env.var(n).map(str::to_owned),
        opts,
        matched: BTreeSet::new(),
        unmatched: BTreeSet::new(),
        depth: 0,
    };
    let (value, words) = p
        .top()
        .map_err(|e| ShellError(format!("failed to process {word:?}: {}", e.0)))?;
    Ok(Expansion {
        value,
        words,
        matched: p.matched,
        unmatched: p.unmatched,
    })
}

/// Names of all variables referenced in `word` (in order, deduplicated),
/// without evaluating anything. Invalid syntax yields the names found so far.
pub fn referenced_vars(word: &str, escape: char) -> Vec<String> {
    let e: Vec<(String, String)> = Vec::new();
    let mut p = Proc {
        s: word.chars().collect(),
        i: 0,
        esc: escape,
        env: &|n: &str| e.var(n).map(str::to_owned),
        opts: ExpandOptions::default(),
        matched: BTreeSet::new(),
        unmatched: BTreeSet::new(),
        depth: 0,
    };
    let _ = p.top();
    p.unmatched.into_iter().chain(p.matched).collect()
}

struct Words {
    split: bool,
    words: Vec<String>,
    cur: String,
    in_word: bool,
    whole: String,
}

impl Words {
    fn literal(&mut self, c: char) {
        self.whole.push(c);
        if self.split && c.is_whitespace() {
            self.end();
        } else {
            self.cur.push(c);
            self.in_word = true;
        }
    }
    fn quoted(&mut self, s: &str) {
        self.whole.push_str(s);
        self.cur.push_str(s);
        self.in_word = true;
    }
    fn unquoted(&mut self, s: &str) {
        for c in s.chars() {
            self.literal(c);
        }
    }
    fn end(&mut self) {
        // Like BuildKit, empty words (e.g. from `""`) are dropped.
        if self.in_word && !self.cur.is_empty() {
            self.words.push(std::mem::take(&mut self.cur));
        }
        self.in_word = false;
    }
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Proc<'a> {
    s: Vec<char>,
    i: usize,
    esc: char,
    env: Lookup<'a>,
    opts: ExpandOptions,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    depth: usize,
}

/// Maximum nesting of `${...}` substitutions.
const MAX_DEPTH: usize = 100;

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

#[derive(Clone, Copy)]
enum PatTok {
    Lit(char),
    Star,
    One,
}

impl Proc<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    fn top(&mut self) -> Result<(String, Vec<String>), ShellError> {
        let mut w = Words {
            split: true,
            words: Vec::new(),
            cur: String::new(),
            in_word: false,
            whole: String::new(),
        };
        while let Some(c) = self.next() {
            if c == self.esc {
                match self.next() {
                    None => {
                        if self.opts.raw_escapes {
                            w.quoted(&c.to_string());
                        }
                    }
                    Some(n) => {
                        let mut s = String::new();
                        if self.opts.raw_escapes {
                            s.push(c);
                        }
                        s.push(n);
                        w.quoted(&s);
                    }
                }
            } else if c == '\'' {
                let body = self.single_quote()?;
                w.quoted(&self.requote('\'', &body));
            } else if c == '"' {
                let body = self.double_quote()?;
                w.quoted(&self.requote('"', &body));
            } else if c == '$' {
                let v = self.dollar()?;
                w.unquoted(&v);
            } else {
                w.literal(c);
            }
        }
        w.end();
        Ok((w.whole, w.words))
    }

    fn requote(&self, q: char, body: &str) -> String {
        if self.opts.raw_quotes {
            format!("{q}{body}{q}")
        } else {
            body.to_owned()
        }
    }

    fn single_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ShellError(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ));
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ShellError(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.esc => match self.peek() {
                    None => {}
                    Some(n) if n == '"' || n == '$' || n == self.esc => {
                        self.i += 1;
                        if self.opts.raw_escapes {
                            out.push(c);
                        }
                        out.push(n);
                    }
                    Some(_) => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Processes a nested word up to one of `stops` (consumed and returned).
    fn word_until(&mut self, stops: &[char], raw_esc: bool) -> Result<(String, char), ShellError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ShellError("syntax error: missing '}'".into())),
                Some(c) if stops.contains(&c) => return Ok((out, c)),
                Some('\'') => {
                    let b = self.single_quote()?;
                    out.push_str(&self.requote('\'', &b));
                }
                Some('"') => {
                    let b = self.double_quote()?;
                    out.push_str(&self.requote('"', &b));
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.esc => match self.next() {
                    None => return Err(ShellError("syntax error: missing '}'".into())),
                    Some(n) => {
                        if raw_esc || self.opts.raw_escapes {
                            out.push(c);
                        }
                        out.push(n);
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Processes a glob pattern up to `stop`: quotes are removed, variables
    /// expanded and escapes kept, then the text is compiled with BuildKit's
    /// pattern rules (see [`compile_pattern`]).
    fn pattern_until(&mut self, stop: char, missing: &str) -> Result<Vec<PatTok>, ShellError> {
        let mut text = String::new();
        loop {
            match self.next() {
                None => return Err(ShellError(missing.into())),
                Some(c) if c == stop => return compile_pattern(&text),
                Some('\'') => text.push_str(&self.single_quote()?),
                Some('"') => text.push_str(&self.double_quote()?),
                Some('$') => text.push_str(&self.dollar()?),
                Some(c) if c == self.esc => match self.next() {
                    None => return Err(ShellError(missing.into())),
                    Some(n) => {
                        text.push(c);
                        text.push(n);
                    }
                },
                Some(c) => text.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.i += 1;
                }
                return name;
            }
            if is_special_param(c) {
                self.i += 1;
                return c.to_string();
            }
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.i += 1;
        }
        name
    }

    fn lookup(&mut self, name: &str, guarded: bool) -> Option<String> {
        let v = (self.env)(name);
        if v.is_some() {
            self.matched.insert(name.to_owned());
        } else if !guarded {
            self.unmatched.insert(name.to_owned());
        }
        v
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        let start = self.i - 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name, false) {
                Some(v) => v,
                None if self.opts.skip_unset => self.s[start..self.i].iter().collect(),
                None => String::new(),
            });
        }
        self.i += 1;
        if self.depth >= MAX_DEPTH {
            return Err(ShellError("substitution nested too deeply".into()));
        }
        self.depth += 1;
        let r = self.braced(start);
        self.depth -= 1;
        r
    }

    fn braced(&mut self, start: usize) -> Result<String, ShellError> {
        let name = self.name();
        if name.is_empty() {
            return Err(ShellError("syntax error: bad substitution".into()));
        }
        let Some(op) = self.next() else {
            return Err(ShellError("syntax error: missing '}'".into()));
        };
        match op {
            '}' => Ok(match self.lookup(&name, false) {
                Some(v) => v,
                None if self.opts.skip_unset => self.s[start..self.i].iter().collect(),
                None => String::new(),
            }),
            ':' | '-' | '+' | '?' => {
                let (colon, op) = if op == ':' {
                    match self.next() {
                        Some(c @ ('-' | '+' | '?')) => (true, c),
                        Some(c @ ('#' | '%')) => return self.trim_op(&name, c),
                        Some(c) => {
                            return Err(ShellError(format!(
                                "unsupported modifier ({c}) in substitution"
                            )));
                        }
                        None => return Err(ShellError("syntax error: missing '}'".into())),
                    }
                } else {
                    (false, op)
                };
                let (word, _) = self.word_until(&['}'], false)?;
                let v = self.lookup(&name, true);
                let present = match &v {
                    Some(s) => !colon || !s.is_empty(),
                    None => false,
                };
                match op {
                    '-' => Ok(if present { v.unwrap_or_default() } else { word }),
                    '+' => Ok(if present { word } else { String::new() }),
                    _ => {
                        if present {
                            Ok(v.unwrap_or_default())
                        } else if word.is_empty() {
                            Err(ShellError(format!(
                                "{name}: is not allowed to be {}",
                                if v.is_some() { "empty" } else { "unset" }
                            )))
                        } else {
                            Err(ShellError(format!("{name}: {word}")))
                        }
                    }
                }
            }
            '#' | '%' => self.trim_op(&name, op),
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.i += 1;
                }
                let pat = self.pattern_until('/', "syntax error: missing '/' in ${}")?;
                let (repl, _) = self.word_until(&['}'], true)?;
                let v = self.lookup(&name, false).unwrap_or_default();
                Ok(replace_pattern(&v, &pat, &repl, all))
            }
            c => Err(ShellError(format!(
                "unsupported modifier ({c}) in substitution"
            ))),
        }
    }
}

impl Proc<'_> {
    /// `${name#pat}`, `${name##pat}`, `${name%pat}`, `${name%%pat}` after the operator.
    fn trim_op(&mut self, name: &str, op: char) -> Result<String, ShellError> {
        let longest = self.peek() == Some(op);
        if longest {
            self.i += 1;
        }
        let pat = self.pattern_until('}', "syntax error: missing '}'")?;
        let v = self.lookup(name, false).unwrap_or_default();
        Ok(trim_pattern(&v, &pat, op == '#', longest))
    }
}

/// Compiles a pattern given as text in BuildKit's syntax: `*` and `?` are
/// wildcards; `\` makes `*`, `?` or `\` literal and is dropped before `}`
/// and `/`; any other escape is an error; everything else is literal.
fn compile_pattern(p: &str) -> Result<Vec<PatTok>, ShellError> {
    let mut out = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(n @ ('*' | '?' | '\\' | '}' | '/')) => out.push(PatTok::Lit(n)),
                Some(n) => {
                    return Err(ShellError(format!(
                        "invalid pattern ({p}) in substitution: invalid escape '\\{n}'"
                    )));
                }
                None => {
                    return Err(ShellError(format!(
                        "invalid pattern ({p}) in substitution: trailing escape"
                    )));
                }
            },
            '*' => out.push(PatTok::Star),
            '?' => out.push(PatTok::One),
            c => out.push(PatTok::Lit(c)),
        }
    }
    Ok(out)
}

fn glob_match(p: &[PatTok], s: &[char]) -> bool {
    // Iterative wildcard matching with single-star backtracking.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(PatTok::One) => {
                pi += 1;
                si += 1;
            }
            Some(PatTok::Lit(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            Some(PatTok::Star) => {
                star = Some((pi, si));
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| matches!(t, PatTok::Star))
}

fn trim_pattern(v: &str, pat: &[PatTok], prefix: bool, longest: bool) -> String {
    let s: Vec<char> = v.chars().collect();
    let n = s.len();
    let cut: Box<dyn Iterator<Item = usize>> = match (prefix, longest) {
        (true, false) => Box::new(0..=n),
        (true, true) => Box::new((0..=n).rev()),
        (false, false) => Box::new((0..=n).rev()),
        (false, true) => Box::new(0..=n),
    };
    for i in cut {
        if prefix && glob_match(pat, &s[..i]) {
            return s[i..].iter().collect();
        }
        if !prefix && glob_match(pat, &s[i..]) {
            return s[..i].iter().collect();
        }
    }
    v.to_owned()
}

fn replace_pattern(v: &str, pat: &[PatTok], repl: &str, all: bool) -> String {
    // Leftmost-longest matches, like BuildKit's greedy, unanchored regexp;
    // with `all`, empty matches right after a match are skipped (Go semantics).
    let s: Vec<char> = v.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    let mut last_end: Option<usize> = None;
    while i <= s.len() {
        let m = if !replaced || all {
            (i..=s.len())
                .rev()
                .find(|&j| glob_match(pat, &s[i..j]))
                .filter(|&j| !(j == i && last_end == Some(i)))
        } else {
            None
        };
        if let Some(j) = m {
            out.push_str(repl);
            replaced = true;
            last_end = Some(j);
            if j > i {
                i = j;
                continue;
            }
        }
        if let Some(c) = s.get(i) {
            out.push(*c);
        }
        i += 1;
    }
    out
}
