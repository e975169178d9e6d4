//! Go's `fmt` and `encoding/json` text conventions for JSON values.
//!
//! Values are treated like Go's `interface{}` produced by decoding JSON,
//! except that JSON integers stay integers (Docker's own data has typed
//! integer fields, and `{{.Size}}` printing `1.23e+06` would surprise users).

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// Go's name for the dynamic type of a decoded JSON value; used in messages
/// such as `%!d(string=abc)` and "can't evaluate field X in type string".
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if as_integer(n).is_some() => "int",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

pub(crate) fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

pub(crate) fn as_float(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

/// Object entries sorted by key, the order Go prints and ranges over maps in.
pub(crate) fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Appends `value` formatted like Go's `%v`.
pub(crate) fn write_value(out: &mut String, value: &Value) {
    format_arg(out, value, 'v', &Spec::default());
}

pub(crate) fn value_to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Go's `fmt.Sprint`: operands are separated by a space unless either
/// neighbour is a string.
pub(crate) fn sprint(args: &[&Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = arg.is_string();
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        write_value(&mut out, arg);
        prev_string = is_string;
    }
    out
}

/// Go's `fmt.Sprintln`: operands always separated by spaces, newline-terminated.
pub(crate) fn sprintln(args: &[&Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(&mut out, arg);
    }
    out.push('\n');
    out
}

/// Flags, width and precision of one `%` directive.
#[derive(Debug, Default, Clone)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Go's `fmt.Sprintf`, including its in-band error notation
/// (`%!d(string=x)`, `%!s(MISSING)`, `%!(EXTRA ...)`) instead of failing.
pub(crate) fn sprintf(format: &str, args: &[&Value]) -> String {
    let mut printer = Printer {
        chars: format.chars().collect(),
        pos: 0,
        args,
        arg_num: 0,
        reordered: false,
        out: String::new(),
    };
    printer.run();
    printer.out
}

struct Printer<'a> {
    chars: Vec<char>,
    pos: usize,
    args: &'a [&'a Value],
    /// Index of the next argument to consume.
    arg_num: usize,
    /// Whether `%[n]` was used; Go then stops reporting unused arguments.
    reordered: bool,
    out: String,
}

impl Printer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '%' {
                if !self.directive() {
                    break;
                }
            } else {
                self.out.push(c);
            }
        }
        if !self.reordered && self.arg_num < self.args.len() {
            self.out.push_str("%!(EXTRA ");
            for (n, arg) in self.args[self.arg_num..].iter().enumerate() {
                if n > 0 {
                    self.out.push_str(", ");
                }
                if !arg.is_null() {
                    self.out.push_str(type_name(arg));
                    self.out.push('=');
                }
                write_value(&mut self.out, arg);
            }
            self.out.push(')');
        }
    }

    /// Handles one directive after its `%`; returns false at end of input.
    fn directive(&mut self) -> bool {
        let mut spec = Spec::default();
        while let Some(c) = self.peek() {
            match c {
                '#' => spec.sharp = true,
                '0' => spec.zero = !spec.minus,
                '+' => spec.plus = true,
                '-' => {
                    spec.minus = true;
                    spec.zero = false;
                }
                ' ' => spec.space = true,
                _ => break,
            }
            self.pos += 1;
        }

        self.arg_index();
        if self.peek() == Some('*') {
            self.pos += 1;
            match self
                .int_arg()
                .filter(|w| w.unsigned_abs() <= MAX_WIDTH as u64)
            {
                Some(w) => {
                    if w < 0 {
                        spec.minus = true;
                        spec.zero = false;
                    }
                    spec.width = usize::try_from(w.unsigned_abs()).ok();
                }
                None => self.out.push_str("%!(BADWIDTH)"),
            }
        } else {
            spec.width = self.digits();
        }
        if self.peek() == Some('.') {
            self.pos += 1;
            self.arg_index();
            if self.peek() == Some('*') {
                self.pos += 1;
                match self
                    .int_arg()
                    .and_then(|p| usize::try_from(p).ok())
                    .filter(|&p| p <= MAX_WIDTH)
                {
                    Some(p) => spec.precision = Some(p),
                    None => self.out.push_str("%!(BADPREC)"),
                }
            } else {
                spec.precision = Some(self.digits().unwrap_or(0));
            }
        }
        self.arg_index();

        let Some(verb) = self.peek() else {
            self.out.push_str("%!(NOVERB)");
            return false;
        };
        self.pos += 1;
        if verb == '%' {
            self.out.push('%');
            return true;
        }
        match self.args.get(self.arg_num) {
            None => {
                let _ = write!(self.out, "%!{verb}(MISSING)");
            }
            Some(arg) => {
                format_arg(&mut self.out, arg, verb, &spec);
                self.arg_num += 1;
            }
        }
        true
    }

    /// Consumes an integer argument for `*` width or precision.
    fn int_arg(&mut self) -> Option<i64> {
        let arg = self.args.get(self.arg_num);
        self.arg_num += 1;
        match arg {
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        }
    }

    /// Parses an explicit argument index such as the `[2]` in `%[2]d`.
    fn arg_index(&mut self) {
        if self.peek() != Some('[') {
            return;
        }
        self.reordered = true;
        let Some(len) = self.chars[self.pos..].iter().position(|&c| c == ']') else {
            self.out.push_str("%!(BADINDEX)");
            self.arg_num = self.args.len();
            return;
        };
        let index: Option<usize> = self.chars[self.pos + 1..self.pos + len]
            .iter()
            .collect::<String>()
            .parse()
            .ok();
        self.pos += len + 1;
        match index {
            Some(n) if n >= 1 && n <= self.args.len() => self.arg_num = n - 1,
            _ => {
                self.out.push_str("%!(BADINDEX)");
                self.arg_num = self.args.len();
            }
        }
    }

    fn digits(&mut self) -> Option<usize> {
        parse_digits(&self.chars, &mut self.pos)
    }
}

/// Largest width or precision honoured; Go rejects larger ones as well, and
/// without a cap a format string could demand gigabytes of padding.
const MAX_WIDTH: usize = 1_000_000;

fn parse_digits(chars: &[char], i: &mut usize) -> Option<usize> {
    let start = *i;
    let mut n: usize = 0;
    while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
        n = (n * 10 + d as usize).min(MAX_WIDTH);
        *i += 1;
    }
    (*i > start).then_some(n)
}

fn bad_verb(out: &mut String, value: &Value, verb: char) {
    let _ = write!(out, "%!{verb}(");
    if value.is_null() {
        out.push_str("<nil>");
    } else {
        out.push_str(type_name(value));
        out.push('=');
        write_value(out, value);
    }
    out.push(')');
}

fn format_arg(out: &mut String, value: &Value, verb: char, spec: &Spec) {
    if verb == 'T' {
        pad(out, type_name(value), spec);
        return;
    }
    match value {
        Value::Null => match verb {
            'v' => pad(out, "<nil>", spec),
            _ => bad_verb(out, value, verb),
        },
        Value::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, spec),
            _ => bad_verb(out, value, verb),
        },
        Value::Number(n) => match as_integer(n) {
            Some(int) => format_integer(out, value, int, verb, spec),
            None => format_float(out, value, as_float(n), verb, spec),
        },
        Value::String(s) => format_string(out, value, s, verb, spec),
        // Go formats slice and map elements one by one with the same verb.
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_arg(out, item, verb, spec);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            for (i, (key, item)) in sorted_entries(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_arg(out, &Value::String(key.clone()), verb, spec);
                out.push(':');
                format_arg(out, item, verb, spec);
            }
            out.push(']');
        }
    }
}

/// Pads to the spec's width, counting characters as Go counts runes.
fn pad(out: &mut String, text: &str, spec: &Spec) {
    let len = text.chars().count();
    let fill = spec.width.map_or(0, |w| w.saturating_sub(len));
    if spec.minus {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(text);
    }
}

/// Pads a number; with the `0` flag the zeros go between sign and digits.
fn pad_number(out: &mut String, sign: &str, digits: &str, spec: &Spec) {
    if let Some(width) = spec.width.filter(|_| spec.zero && !spec.minus) {
        let len = sign.len() + digits.chars().count();
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', width.saturating_sub(len)));
        out.push_str(digits);
        return;
    }
    pad(out, &format!("{sign}{digits}"), spec);
}

fn sign_for(negative: bool, spec: &Spec) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn format_string(out: &mut String, value: &Value, s: &str, verb: char, spec: &Spec) {
    match verb {
        'v' | 's' => {
            let text: String = match spec.precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_owned(),
            };
            pad(out, &text, spec);
        }
        'q' => {
            let quoted = if spec.sharp && can_backquote(s) {
                format!("`{s}`")
            } else {
                quote(s, spec.plus)
            };
            pad(out, &quoted, spec);
        }
        'x' | 'X' => {
            let bytes = s.as_bytes();
            let bytes = &bytes[..spec.precision.unwrap_or(bytes.len()).min(bytes.len())];
            let mut hex = String::new();
            for (i, b) in bytes.iter().enumerate() {
                if spec.space && i > 0 {
                    hex.push(' ');
                }
                if spec.sharp && (spec.space || i == 0) {
                    hex.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                let _ = if verb == 'x' {
                    write!(hex, "{b:02x}")
                } else {
                    write!(hex, "{b:02X}")
                };
            }
            pad(out, &hex, spec);
        }
        _ => bad_verb(out, value, verb),
    }
}

fn format_integer(out: &mut String, value: &Value, int: i128, verb: char, spec: &Spec) {
    let negative = int < 0;
    let magnitude = int.unsigned_abs();
    let (radix_digits, prefix) = match verb {
        'v' | 'd' => (magnitude.to_string(), ""),
        'b' => (format!("{magnitude:b}"), if spec.sharp { "0b" } else { "" }),
        'o' => (format!("{magnitude:o}"), if spec.sharp { "0" } else { "" }),
        'O' => (format!("{magnitude:o}"), "0o"),
        'x' => (format!("{magnitude:x}"), if spec.sharp { "0x" } else { "" }),
        'X' => (format!("{magnitude:X}"), if spec.sharp { "0X" } else { "" }),
        'c' | 'q' | 'U' => {
            let c = u32::try_from(int)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let text = match verb {
                'c' => c.to_string(),
                'q' => quote_rune(c, spec.plus),
                _ if spec.sharp => format!("U+{:04X} '{c}'", u32::from(c)),
                _ => format!("U+{:04X}", int.max(0)),
            };
            pad(out, &text, spec);
            return;
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            // Decoded JSON numbers are float64 in Go, so float verbs apply.
            format_float(out, value, int as f64, verb, spec);
            return;
        }
        _ => {
            bad_verb(out, value, verb);
            return;
        }
    };
    let mut digits = radix_digits;
    if let Some(p) = spec.precision {
        // Go: precision is the minimum digit count, and %.0d of 0 prints nothing.
        if p == 0 && magnitude == 0 {
            digits.clear();
        } else if digits.len() < p {
            digits = format!("{}{digits}", "0".repeat(p - digits.len()));
        }
    } else if let Some(width) = spec.width.filter(|_| spec.zero && !spec.minus) {
        let reserved = usize::from(negative || spec.plus || spec.space);
        let target = width.saturating_sub(reserved);
        if digits.len() < target {
            digits = format!("{}{digits}", "0".repeat(target - digits.len()));
        }
    }
    if prefix == "0" && digits.starts_with('0') {
        pad(out, &format!("{}{digits}", sign_for(negative, spec)), spec);
    } else {
        pad(
            out,
            &format!("{}{prefix}{digits}", sign_for(negative, spec)),
            spec,
        );
    }
}

fn format_float(out: &mut String, value: &Value, f: f64, verb: char, spec: &Spec) {
    let body = match verb {
        'v' | 'g' | 'G' => {
            let exp = if verb == 'G' { 'E' } else { 'e' };
            format_g(f.abs(), spec.precision, exp)
        }
        'e' | 'E' => format_e(f.abs(), spec.precision.unwrap_or(6), verb),
        'f' | 'F' => format!("{:.*}", spec.precision.unwrap_or(6), f.abs()),
        // Go would print %!d(float64=3); integral values are far more likely to
        // be ints that merely arrived as floats, so print them as ints.
        'd' if f.fract() == 0.0 && f.abs() < 1e18 => {
            format_integer(out, value, f as i128, verb, spec);
            return;
        }
        _ => {
            bad_verb(out, value, verb);
            return;
        }
    };
    if f.is_nan() {
        pad(out, "NaN", spec);
    } else if f.is_infinite() {
        pad(out, if f < 0.0 { "-Inf" } else { "+Inf" }, spec);
    } else {
        pad_number(out, sign_for(f.is_sign_negative(), spec), &body, spec);
    }
}

/// Decimal digits of a finite non-negative `f` (no trailing zeros) and the
/// decimal point position: `f = 0.DIGITS × 10^point`. Zero has no digits.
/// `significant` rounds to that many digits; `None` gives the shortest
/// digits that round-trip, which is what Go's `-1` precision means.
fn decimal_digits(f: f64, significant: Option<usize>) -> (Vec<u8>, i32) {
    if f == 0.0 || !f.is_finite() {
        return (Vec::new(), 0);
    }
    let text = match significant {
        None => format!("{f:e}"),
        Some(n) => format!("{:.*e}", n.max(1) - 1, f),
    };
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exponent + 1)
}

/// `d.ddde±dd` with `precision` fraction digits, Go style (two-digit exponent minimum).
fn layout_e(digits: &[u8], point: i32, precision: usize, exp_char: char) -> String {
    let mut s = String::new();
    s.push(digits.first().map_or('0', |&d| char::from(d)));
    if precision > 0 {
        s.push('.');
        for i in 1..=precision {
            s.push(digits.get(i).map_or('0', |&d| char::from(d)));
        }
    }
    s.push(exp_char);
    let exp = if digits.is_empty() { 0 } else { point - 1 };
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.unsigned_abs());
    s
}

/// `ddd.ddd` with `precision` fraction digits.
fn layout_f(digits: &[u8], point: i32, precision: usize) -> String {
    let mut s = String::new();
    // Digit at decimal position `i` (0 = first significant digit); zeros outside.
    let digit = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .map_or('0', |&d| char::from(d))
    };
    if point > 0 {
        (0..i64::from(point)).for_each(|i| s.push(digit(i)));
    } else {
        s.push('0');
    }
    if precision > 0 {
        s.push('.');
        let first = i64::from(point);
        // Precision is capped at MAX_WIDTH, so the cast is exact.
        (0..precision).for_each(|i| s.push(digit(first + i as i64)));
    }
    s
}

fn format_e(f: f64, precision: usize, exp_char: char) -> String {
    let (digits, point) = decimal_digits(f, Some(precision + 1));
    layout_e(&digits, point, precision, exp_char)
}

/// Go's `%g` (and `%v` for floats). With shortest precision the exponent form
/// starts at 1e+06, which is why Go prints a float million as "1e+06"
/// (encoding/json uses a different cut-off, see `json_float`).
fn format_g(f: f64, precision: Option<usize>, exp_char: char) -> String {
    let shortest = precision.is_none();
    let precision = precision.map(|p| p.max(1));
    let (digits, point) = decimal_digits(f, precision);
    let nd = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let mut prec = precision.map_or(nd, |p| i32::try_from(p).unwrap_or(i32::MAX));
    let mut eprec = prec;
    if eprec > nd && nd >= point {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = point - 1;
    if exp < -4 || exp >= eprec {
        prec = prec.min(nd);
        layout_e(
            &digits,
            point,
            usize::try_from(prec - 1).unwrap_or(0),
            exp_char,
        )
    } else {
        if prec > point {
            prec = nd;
        }
        layout_f(&digits, point, usize::try_from(prec - point).unwrap_or(0))
    }
}

/// Go's `strconv.Quote` (or `QuoteToASCII` when `ascii_only`).
pub(crate) fn quote(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        quote_char(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

fn quote_rune(c: char, ascii_only: bool) -> String {
    let mut out = String::from("'");
    quote_char(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}

/// Approximates Go's `unicode.IsPrint`: graphic characters plus ASCII space.
fn is_printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{feff}'))
}

fn quote_char(out: &mut String, c: char, quote: char, ascii_only: bool) {
    match c {
        _ if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        _ if is_printable(c) && (c.is_ascii() || !ascii_only) => out.push(c),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if u32::from(c) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if u32::from(c) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\U{:08x}", u32::from(c));
        }
    }
}

fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c == '\t' || (c != '`' && c != '\u{feff}' && !c.is_control()))
}

/// Appends `value` as compact JSON the way Docker's `json` template function
/// does: Go's encoder with HTML escaping disabled. Object keys keep the order
/// they have in the value, mirroring Go's struct-field order for inspect data.
pub(crate) fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match as_integer(n) {
            Some(int) => {
                let _ = write!(out, "{int}");
            }
            None => out.push_str(&json_float(as_float(n))),
        },
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            // Go always escapes these two: they end lines in JavaScript.
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// encoding/json's float form: plain decimal except below 1e-6 or from 1e21
/// up, where it switches to an exponent without zero padding (`1e-7`, `1e+21`).
fn json_float(f: f64) -> String {
    let abs = f.abs();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let (digits, point) = decimal_digits(abs, None);
    let nd = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let mut s = layout_e(&digits, point, usize::try_from(nd - 1).unwrap_or(0), 'e');
        if let Some(pos) = s.find("e-0") {
            s.remove(pos + 2);
        }
        format!("{sign}{s}")
    } else {
        format!(
            "{sign}{}",
            layout_f(&digits, point, usize::try_from(nd - point).unwrap_or(0))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(value: Value) -> String {
        value_to_string(&value)
    }

    #[test]
    fn floats_like_go_percent_v() {
        assert_eq!(v(json!(1.5)), "1.5");
        assert_eq!(v(json!(1e6)), "1e+06");
        assert_eq!(v(json!(123456.0)), "123456");
        assert_eq!(v(json!(1234567.0)), "1.234567e+06");
        assert_eq!(v(json!(0.0001)), "0.0001");
        assert_eq!(v(json!(0.00001)), "1e-05");
        assert_eq!(v(json!(-2.0)), "-2");
        assert_eq!(v(json!(0.0)), "0");
        assert_eq!(v(json!(1e100)), "1e+100");
    }

    #[test]
    fn floats_like_encoding_json() {
        assert_eq!(json_float(1e6), "1000000");
        assert_eq!(json_float(1e21), "1e+21");
        assert_eq!(json_float(1.5e-7), "1.5e-7");
        assert_eq!(json_float(0.1), "0.1");
        assert_eq!(json_float(-0.5), "-0.5");
    }

    #[test]
    fn printf_verbs() {
        let s = json!("hi");
        let n = json!(42);
        let f = json!(3.14259);
        assert_eq!(sprintf("%5s|%-5s|%.1s", &[&s, &s, &s]), "   hi|hi   |h");
        assert_eq!(
            sprintf("%d %05d %x %X %o %b %+d", &[&n, &n, &n, &n, &n, &n, &n]),
            "42 00042 2a 2A 52 101010 +42"
        );
        assert_eq!(
            sprintf("%.2f %e %g %8.3f", &[&f, &f, &f, &f]),
            "3.14 3.142590e+00 3.14259    3.143"
        );
        assert_eq!(
            sprintf("%q %v %t", &[&s, &json!([1, "a"]), &json!(true)]),
            "\"hi\" [1 a] true"
        );
        assert_eq!(sprintf("%d", &[&s]), "%!d(string=hi)");
        assert_eq!(sprintf("%s %s", &[&s]), "hi %!s(MISSING)");
        assert_eq!(sprintf("%s", &[&s, &n]), "hi%!(EXTRA int=42)");
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%[2]s-%[1]s", &[&json!("a"), &json!("b")]), "b-a");
        assert_eq!(
            sprintf("%*d|%-*d|", &[&json!(4), &n, &json!(4), &n]),
            "  42|42  |"
        );
        assert_eq!(sprintf("%x", &[&s]), "6869");
        assert_eq!(sprintf("%v", &[&Value::Null]), "<nil>");
        assert_eq!(
            sprintf(
                "%.3g|%g|%G",
                &[&json!(1234.5678), &json!(1e-7), &json!(2.5e20)]
            ),
            "1.23e+03|1e-07|2.5E+20"
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(quote("a\"b\\c\n\x01é", false), r#""a\"b\\c\n\x01é""#);
        assert_eq!(quote("é", true), r#""\u00e9""#);
    }

    #[test]
    fn json_encoding_matches_docker() {
        let mut out = String::new();
        write_json(
            &mut out,
            &json!({"b": "<&>", "a": [1, 2.5, null, true], "c": "\u{2028}\u{1}"}),
        );
        assert_eq!(
            out,
            r#"{"b":"<&>","a":[1,2.5,null,true],"c":"\u2028\u0001"}"#
        );
    }
}
