//! Tokenizer for Go's text/template syntax.
//!
//! The whole source is tokenized up front: templates are short command-line
//! strings, and a flat token list keeps the parser's look-ahead trivial.
//! Trim markers (`{{- ` / ` -}}`) and comments are resolved here, so the
//! parser never sees them.

use serde_json::Value;

use crate::Failure;

/// A token and the byte range of the source it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// Literal text outside actions, with trim markers already applied.
    Text(String),
    LeftDelim,
    RightDelim,
    /// Whitespace inside an action; it separates command arguments.
    Space,
    Pipe,
    /// `:=`
    Declare,
    /// `=`
    Assign,
    Comma,
    LeftParen,
    RightParen,
    /// A lone `.`
    Dot,
    /// `.Name`, without the dot.
    Field(String),
    /// `$` or `$name`, including the dollar.
    Variable(String),
    Identifier(String),
    Keyword(Keyword),
    Nil,
    /// A string, number, bool or character constant, already decoded.
    Literal(Value),
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    If,
    Else,
    End,
    Range,
    With,
    Break,
    Continue,
    Define,
    Template,
    Block,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        Some(match word {
            "if" => Keyword::If,
            "else" => Keyword::Else,
            "end" => Keyword::End,
            "range" => Keyword::Range,
            "with" => Keyword::With,
            "break" => Keyword::Break,
            "continue" => Keyword::Continue,
            "define" => Keyword::Define,
            "template" => Keyword::Template,
            "block" => Keyword::Block,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Keyword::If => "if",
            Keyword::Else => "else",
            Keyword::End => "end",
            Keyword::Range => "range",
            Keyword::With => "with",
            Keyword::Break => "break",
            Keyword::Continue => "continue",
            Keyword::Define => "define",
            Keyword::Template => "template",
            Keyword::Block => "block",
        }
    }
}

const LEFT_DELIM: &str = "{{";
const RIGHT_DELIM: &str = "}}";

/// Whitespace as Go's template lexer defines it (trim markers and argument
/// separators); notably not Unicode whitespace.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `{{- ` trims the text before the action; the space is mandatory so that
/// `{{-3}}` still means the number -3.
fn has_left_trim(rest: &str) -> bool {
    let mut chars = rest.chars();
    chars.next() == Some('-') && chars.next().is_some_and(is_space)
}

/// If `rest` starts with a closing delimiter, returns whether it carries a
/// trim marker (` -}}`) and its length.
fn right_delim_at(rest: &str) -> Option<(bool, usize)> {
    if rest.starts_with(RIGHT_DELIM) {
        return Some((false, RIGHT_DELIM.len()));
    }
    let mut chars = rest.chars();
    let space = chars.next()?;
    if is_space(space) && chars.next() == Some('-') && chars.as_str().starts_with(RIGHT_DELIM) {
        return Some((true, space.len_utf8() + 1 + RIGHT_DELIM.len()));
    }
    None
}

/// Formats a character the way Go's `%#U` does in lexer errors.
fn describe_char(c: char) -> String {
    format!("U+{:04X} {c:?}", u32::from(c))
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, Failure> {
    let mut lexer = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
        paren_depth: 0,
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.pos,
        });
    }

    fn fail(&self, offset: usize, message: impl Into<String>) -> Failure {
        Failure {
            offset,
            message: message.into(),
        }
    }

    fn run(&mut self) -> Result<(), Failure> {
        let mut trim_leading = false;
        loop {
            let open = self.rest().find(LEFT_DELIM).map(|i| self.pos + i);
            let text_end = open.unwrap_or(self.src.len());
            let after_open = text_end + LEFT_DELIM.len();
            let left_trim = open.is_some() && has_left_trim(&self.src[after_open..]);

            let mut text_start = self.pos;
            let mut text = &self.src[text_start..text_end];
            if trim_leading {
                let trimmed = text.trim_start_matches(is_space);
                text_start += text.len() - trimmed.len();
                text = trimmed;
            }
            if left_trim {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                self.tokens.push(Token {
                    kind: TokenKind::Text(text.to_owned()),
                    start: text_start,
                    end: text_start + text.len(),
                });
            }
            let Some(open) = open else { break };

            // Skip "{{" plus "- " when trimming; the trim marker is two bytes.
            self.pos = after_open + if left_trim { 2 } else { 0 };
            trim_leading = if self.rest().starts_with("/*") {
                self.comment(open)?
            } else {
                self.pos = after_open;
                self.push(TokenKind::LeftDelim, open);
                if left_trim {
                    self.pos += 2;
                }
                self.inside_action(open)?
            };
        }
        self.pos = self.src.len();
        self.push(TokenKind::Eof, self.src.len());
        Ok(())
    }

    /// Skips a `{{/* ... */}}` comment; returns whether it ended with a trim marker.
    fn comment(&mut self, open: usize) -> Result<bool, Failure> {
        let body = self.pos + 2;
        let Some(close) = self.src[body..].find("*/") else {
            return Err(self.fail(open, "unclosed comment"));
        };
        self.pos = body + close + 2;
        match right_delim_at(self.rest()) {
            Some((trim, len)) => {
                self.pos += len;
                Ok(trim)
            }
            None => Err(self.fail(self.pos, "comment ends before closing delimiter")),
        }
    }

    /// Lexes tokens up to and including the closing delimiter; returns
    /// whether that delimiter trims the following text.
    fn inside_action(&mut self, open: usize) -> Result<bool, Failure> {
        loop {
            if let Some((trim, len)) = right_delim_at(self.rest()) {
                if self.paren_depth > 0 {
                    return Err(self.fail(self.pos, "unclosed left paren"));
                }
                let start = self.pos;
                self.pos += len;
                self.push(TokenKind::RightDelim, start);
                return Ok(trim);
            }
            let start = self.pos;
            let Some(c) = self.peek() else {
                return Err(self.fail(open, "unclosed action"));
            };
            match c {
                c if is_space(c) => self.space(),
                '|' => self.single(TokenKind::Pipe, c),
                ',' => self.single(TokenKind::Comma, c),
                '=' => self.single(TokenKind::Assign, c),
                ':' => {
                    if !self.rest().starts_with(":=") {
                        return Err(self.fail(start, "expected :="));
                    }
                    self.pos += 2;
                    self.push(TokenKind::Declare, start);
                }
                '(' => {
                    self.paren_depth += 1;
                    self.single(TokenKind::LeftParen, c);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        return Err(self.fail(start, "unexpected right paren"));
                    }
                    self.paren_depth -= 1;
                    self.single(TokenKind::RightParen, c);
                }
                '"' => self.quoted_string()?,
                '`' => self.raw_string()?,
                '\'' => self.char_constant()?,
                '$' => {
                    self.pos += 1;
                    let name = self.word()?;
                    self.push(TokenKind::Variable(format!("${name}")), start);
                }
                '.' => {
                    // ".5" is a number; anything else starting with a dot is a field or dot.
                    if self.rest()[1..].starts_with(|d: char| d.is_ascii_digit()) {
                        self.number()?;
                    } else {
                        self.pos += 1;
                        let name = self.word()?;
                        let kind = if name.is_empty() {
                            TokenKind::Dot
                        } else {
                            TokenKind::Field(name)
                        };
                        self.push(kind, start);
                    }
                }
                '+' | '-' | '0'..='9' => self.number()?,
                c if is_alphanumeric(c) => {
                    let word = self.word()?;
                    let kind = match word.as_str() {
                        "true" => TokenKind::Literal(Value::Bool(true)),
                        "false" => TokenKind::Literal(Value::Bool(false)),
                        "nil" => TokenKind::Nil,
                        _ => match Keyword::from_word(&word) {
                            Some(keyword) => TokenKind::Keyword(keyword),
                            None => TokenKind::Identifier(word),
                        },
                    };
                    self.push(kind, start);
                }
                c => {
                    return Err(self.fail(
                        start,
                        format!("unrecognized character in action: {}", describe_char(c)),
                    ));
                }
            }
        }
    }

    fn single(&mut self, kind: TokenKind, c: char) {
        let start = self.pos;
        self.pos += c.len_utf8();
        self.push(kind, start);
    }

    fn space(&mut self) {
        let start = self.pos;
        let run = self.rest().len() - self.rest().trim_start_matches(is_space).len();
        self.pos += run;
        // The last space may belong to a " -}}" delimiter; leave it for that.
        let last = self.pos - 1;
        if right_delim_at(&self.src[last..]).is_some_and(|(trim, _)| trim) {
            self.pos = last;
        }
        if self.pos > start {
            self.push(TokenKind::Space, start);
        }
    }

    /// Scans an identifier-like run and checks that something sensible follows.
    fn word(&mut self) -> Result<String, Failure> {
        let len = self.rest().len() - self.rest().trim_start_matches(is_alphanumeric).len();
        let word = self.rest()[..len].to_owned();
        self.pos += len;
        self.expect_terminator()?;
        Ok(word)
    }

    fn expect_terminator(&self) -> Result<(), Failure> {
        match self.peek() {
            None => Ok(()),
            Some(c) if is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(') => Ok(()),
            Some(_) if self.rest().starts_with(RIGHT_DELIM) => Ok(()),
            Some(c) => Err(self.fail(self.pos, format!("bad character {}", describe_char(c)))),
        }
    }

    fn number(&mut self) -> Result<(), Failure> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = self.pos;
        let accept = |i: &mut usize, set: &[u8]| -> bool {
            if *i < bytes.len() && set.contains(&bytes[*i]) {
                *i += 1;
                true
            } else {
                false
            }
        };
        let run = |i: &mut usize, set: &[u8]| {
            while *i < bytes.len() && set.contains(&bytes[*i]) {
                *i += 1;
            }
        };
        const DECIMAL: &[u8] = b"0123456789_";
        accept(&mut i, b"+-");
        let mut digits = DECIMAL;
        if accept(&mut i, b"0") {
            if accept(&mut i, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
            } else if accept(&mut i, b"oO") {
                digits = b"01234567_";
            } else if accept(&mut i, b"bB") {
                digits = b"01_";
            }
        }
        run(&mut i, digits);
        let decimal = digits == DECIMAL;
        if decimal && accept(&mut i, b".") {
            run(&mut i, digits);
        }
        if decimal && accept(&mut i, b"eE") {
            accept(&mut i, b"+-");
            run(&mut i, DECIMAL);
        }
        self.pos = i;
        let text = &self.src[start..i];
        if self.peek().is_some_and(is_alphanumeric) || self.peek() == Some('.') {
            let end = self.pos + self.peek().map_or(0, char::len_utf8);
            return Err(self.fail(
                start,
                format!("bad number syntax: {:?}", &self.src[start..end]),
            ));
        }
        let value = parse_number(text)
            .ok_or_else(|| self.fail(start, format!("bad number syntax: {text:?}")))?;
        self.push(TokenKind::Literal(value), start);
        Ok(())
    }

    fn quoted_string(&mut self) -> Result<(), Failure> {
        let start = self.pos;
        let mut chars = self.rest().char_indices().skip(1);
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break start + i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\n')) | None => {
                        return Err(self.fail(start, "unterminated quoted string"));
                    }
                    Some(_) => {}
                },
                Some((_, '\n')) | None => {
                    return Err(self.fail(start, "unterminated quoted string"));
                }
                Some(_) => {}
            }
        };
        let body = &self.src[start + 1..end - 1];
        let value = unquote(body, '"').map_err(|message| self.fail(start, message))?;
        self.pos = end;
        self.push(TokenKind::Literal(Value::String(value)), start);
        Ok(())
    }

    fn raw_string(&mut self) -> Result<(), Failure> {
        let start = self.pos;
        let Some(len) = self.rest()[1..].find('`') else {
            return Err(self.fail(start, "unterminated raw quoted string"));
        };
        // Go drops carriage returns from raw strings so CRLF sources behave.
        let value: String = self.rest()[1..1 + len]
            .chars()
            .filter(|&c| c != '\r')
            .collect();
        self.pos += len + 2;
        self.push(TokenKind::Literal(Value::String(value)), start);
        Ok(())
    }

    fn char_constant(&mut self) -> Result<(), Failure> {
        let start = self.pos;
        let mut chars = self.rest().char_indices().skip(1);
        let end = loop {
            match chars.next() {
                Some((i, '\'')) => break start + i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\n')) | None => {
                        return Err(self.fail(start, "unterminated character constant"));
                    }
                    Some(_) => {}
                },
                Some((_, '\n')) | None => {
                    return Err(self.fail(start, "unterminated character constant"));
                }
                Some(_) => {}
            }
        };
        let body = &self.src[start + 1..end - 1];
        let decoded = unquote(body, '\'').map_err(|message| self.fail(start, message))?;
        let mut decoded_chars = decoded.chars();
        let (Some(c), None) = (decoded_chars.next(), decoded_chars.next()) else {
            return Err(self.fail(start, format!("malformed character constant: '{body}'")));
        };
        self.pos = end;
        // Go character constants are integers (runes).
        self.push(TokenKind::Literal(Value::from(u32::from(c))), start);
        Ok(())
    }
}

/// Parses a Go number literal. Integers stay integers; anything with a
/// fraction or exponent is a float, as in Go's untyped constants.
fn parse_number(text: &str) -> Option<Value> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, unsigned) = match clean.as_bytes().first()? {
        b'-' => (true, &clean[1..]),
        b'+' => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(bin) = lower.strip_prefix("0b") {
        (2, bin)
    } else if let Some(oct) = lower.strip_prefix("0o") {
        (8, oct)
    } else if lower.contains(['.', 'e']) {
        let value: f64 = clean.parse().ok()?;
        return value
            .is_finite()
            .then(|| serde_json::Number::from_f64(value).map(Value::Number))?;
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok().map(Value::from)
}

/// Decodes Go string/char escapes. Byte escapes (`\xff`, `\377`) are collected
/// as bytes so multi-byte UTF-8 spelled that way decodes correctly.
fn unquote(body: &str, quote: char) -> Result<String, String> {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let invalid = || format!("invalid syntax in quoted string: {quote}{body}{quote}");
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escape = chars.next().ok_or_else(invalid)?;
        let simple = match escape {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' if quote == '"' => Some(b'"'),
            '\'' if quote == '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        let mut take = |n: usize, radix: u32| -> Result<u32, String> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n {
                return Err(invalid());
            }
            u32::from_str_radix(&digits, radix).map_err(|_| invalid())
        };
        match escape {
            'x' => out.push(u8::try_from(take(2, 16)?).map_err(|_| invalid())?),
            'u' | 'U' => {
                let code = take(if escape == 'u' { 4 } else { 8 }, 16)?;
                let c = char::from_u32(code).ok_or_else(invalid)?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest = take(2, 8)?;
                let code = escape.to_digit(8).unwrap_or(0) * 64 + rest;
                out.push(u8::try_from(code).map_err(|_| invalid())?);
            }
            _ => return Err(invalid()),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn trims_whitespace_around_markers() {
        assert_eq!(
            kinds("a \n{{- .X -}}\n b"),
            vec![
                TokenKind::Text("a".into()),
                TokenKind::LeftDelim,
                TokenKind::Field("X".into()),
                TokenKind::RightDelim,
                TokenKind::Text("b".into()),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn negative_number_is_not_a_trim_marker() {
        assert_eq!(
            kinds("{{-3}}"),
            vec![
                TokenKind::LeftDelim,
                TokenKind::Literal(Value::from(-3)),
                TokenKind::RightDelim,
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x1F"), Some(Value::from(31)));
        assert_eq!(parse_number("1_000"), Some(Value::from(1000)));
        assert_eq!(parse_number("017"), Some(Value::from(15)));
        assert_eq!(parse_number("1e3"), Some(Value::from(1000.0)));
        assert_eq!(parse_number("-2.5"), Some(Value::from(-2.5)));
        assert_eq!(parse_number("99999999999999999999"), None);
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            unquote(r"a\tb\x41\u00e9\101\xc3\xa9", '"').unwrap(),
            "a\tbAéAé"
        );
        assert!(unquote(r"\q", '"').is_err());
    }
}
