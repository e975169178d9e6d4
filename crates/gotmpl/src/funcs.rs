//! Template functions: Go's builtins plus the ones Docker's CLI adds.
//!
//! `and` and `or` are listed here so the parser accepts them, but they are
//! evaluated in `exec` because they short-circuit over unevaluated arguments.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::Value;

use crate::format::{self, as_float, as_integer, type_name};

/// Go's text/template builtins.
const GO_BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt",
    "le", "gt", "ge", "html", "js", "urlquery",
];

/// Functions Docker's CLI adds for `--format`.
const DOCKER_FUNCTIONS: &[&str] = &[
    "json", "join", "split", "lower", "upper", "title", "truncate", "pad",
];

pub(crate) fn is_defined(name: &str) -> bool {
    GO_BUILTINS.contains(&name) || DOCKER_FUNCTIONS.contains(&name)
}

/// Go's notion of truth: false, 0, nil and empty strings/arrays/maps are false.
pub(crate) fn truth(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => as_float(n) != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Calls function `name` with evaluated arguments. Errors are complete
/// messages in Go's wording (the caller adds the position).
///
/// `header` selects Docker's table-header variants, which return their
/// string argument untouched so `{{.Names | upper}}` keeps the header text.
pub(crate) fn call(name: &str, args: &[&Value], header: bool) -> Result<Value, String> {
    let header_value = if header {
        call_header(name, args)?
    } else {
        None
    };
    if let Some(value) = header_value {
        return Ok(value);
    }
    let calling = |message: String| format!("error calling {name}: {message}");
    Ok(match name {
        "not" => {
            want(name, args, 1)?;
            Value::Bool(!truth(args[0]))
        }
        "len" => {
            want(name, args, 1)?;
            Value::from(length(args[0]).map_err(calling)?)
        }
        "index" => {
            want_at_least(name, args, 1)?;
            index(args[0], &args[1..]).map_err(calling)?
        }
        "slice" => {
            want_at_least(name, args, 1)?;
            slice(args[0], &args[1..]).map_err(calling)?
        }
        "print" => Value::String(format::sprint(args)),
        "println" => Value::String(format::sprintln(args)),
        "printf" => {
            want_at_least(name, args, 1)?;
            Value::String(format::sprintf(string_arg(args[0])?, &args[1..]))
        }
        "eq" => {
            want_at_least(name, args, 1)?;
            if args.len() < 2 {
                return Err(calling("missing argument for comparison".into()));
            }
            let mut any = false;
            for other in &args[1..] {
                if equal(args[0], other).map_err(calling)? {
                    any = true;
                    break;
                }
            }
            Value::Bool(any)
        }
        "ne" => {
            want(name, args, 2)?;
            Value::Bool(!equal(args[0], args[1]).map_err(calling)?)
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            let ordering = compare(args[0], args[1]).map_err(calling)?;
            Value::Bool(match name {
                "lt" => ordering == Ordering::Less,
                "le" => ordering != Ordering::Greater,
                "gt" => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            })
        }
        "html" => Value::String(html_escape(&text_of(args))),
        "js" => Value::String(js_escape(&text_of(args))),
        "urlquery" => Value::String(query_escape(&text_of(args))),
        "json" => {
            want(name, args, 1)?;
            let mut out = String::new();
            format::write_json(&mut out, args[0]);
            Value::String(out)
        }
        "split" => {
            want(name, args, 2)?;
            let (s, sep) = (string_arg(args[0])?, string_arg(args[1])?);
            let parts: Vec<Value> = if sep.is_empty() {
                // Go splits into UTF-8 sequences when the separator is empty.
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep)
                    .map(|part| Value::String(part.to_owned()))
                    .collect()
            };
            Value::Array(parts)
        }
        "join" => {
            want(name, args, 2)?;
            let sep = string_arg(args[1])?;
            let parts: Vec<String> = match args[0] {
                // Go's join takes []string; a nil slice joins to "".
                Value::Null => Vec::new(),
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => s.clone(),
                        other => format::value_to_string(other),
                    })
                    .collect(),
                other => return Err(wrong_type("[]string", other)),
            };
            Value::String(parts.join(sep))
        }
        "lower" => {
            want(name, args, 1)?;
            Value::String(string_arg(args[0])?.to_lowercase())
        }
        "upper" => {
            want(name, args, 1)?;
            Value::String(string_arg(args[0])?.to_uppercase())
        }
        "title" => {
            want(name, args, 1)?;
            Value::String(title(string_arg(args[0])?))
        }
        "truncate" => {
            want(name, args, 2)?;
            let (s, length) = (string_arg(args[0])?, int_arg(args[1])?);
            let length = usize::try_from(length)
                .map_err(|_| calling(format!("negative length {length}")))?;
            // Docker cuts bytes; cutting characters avoids emitting broken UTF-8.
            Value::String(s.chars().take(length).collect())
        }
        "pad" => {
            want(name, args, 3)?;
            let (s, prefix, suffix) = (string_arg(args[0])?, int_arg(args[1])?, int_arg(args[2])?);
            let count =
                |n: i64| usize::try_from(n).map_err(|_| calling("negative Repeat count".into()));
            let (prefix, suffix) = (count(prefix)?, count(suffix)?);
            if s.is_empty() {
                Value::String(String::new())
            } else {
                Value::String(format!("{}{s}{}", " ".repeat(prefix), " ".repeat(suffix)))
            }
        }
        _ => return Err(format!("function {name:?} not defined")),
    })
}

/// Docker's `HeaderFunctions`: identity versions of the string helpers.
fn call_header(name: &str, args: &[&Value]) -> Result<Option<Value>, String> {
    let arity = match name {
        "json" | "title" | "lower" | "upper" => 1,
        "split" | "join" => 2,
        "truncate" => {
            want(name, args, 2)?;
            int_arg(args[1])?;
            2
        }
        _ => return Ok(None),
    };
    want(name, args, arity)?;
    if name == "split" || name == "join" {
        string_arg(args[1])?;
    }
    Ok(Some(Value::String(string_arg(args[0])?.to_owned())))
}

fn want(name: &str, args: &[&Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn want_at_least(name: &str, args: &[&Value], n: usize) -> Result<(), String> {
    if args.len() >= n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want at least {n} got {}",
            args.len()
        ))
    }
}

fn wrong_type(expected: &str, got: &Value) -> String {
    if got.is_null() {
        format!("invalid value; expected {expected}")
    } else {
        format!(
            "wrong type for value; expected {expected}; got {}",
            type_name(got)
        )
    }
}

fn string_arg(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| wrong_type("string", value))
}

fn int_arg(value: &Value) -> Result<i64, String> {
    integer_of(value).ok_or_else(|| wrong_type("int", value))
}

/// An integer, accepting integral floats since JSON does not distinguish them.
fn integer_of(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else { return None };
    n.as_i64().or_else(|| {
        let f = as_float(n);
        // The range check keeps the cast exact.
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

fn length(value: &Value) -> Result<usize, String> {
    match value {
        Value::String(s) => Ok(s.len()),
        Value::Array(items) => Ok(items.len()),
        Value::Object(map) => Ok(map.len()),
        // A null stands for Docker's nil slices and maps, whose length is 0.
        Value::Null => Ok(0),
        other => Err(format!("len of type {}", type_name(other))),
    }
}

/// Go's bounds check for index/slice arguments: 0 <= x <= cap.
fn position(index: &Value, cap: usize) -> Result<usize, String> {
    let x = match index {
        Value::Null => return Err("cannot index slice/array with nil".into()),
        other => integer_of(other)
            .ok_or_else(|| format!("cannot index slice/array with type {}", type_name(other)))?,
    };
    usize::try_from(x)
        .ok()
        .filter(|&x| x <= cap)
        .ok_or_else(|| format!("index out of range: {x}"))
}

fn index(item: &Value, indexes: &[&Value]) -> Result<Value, String> {
    let mut item = item;
    for key in indexes {
        item = match item {
            // Missing keys and nil containers yield Go's zero value, which prints "<no value>".
            Value::Null => return Ok(Value::Null),
            Value::Object(map) => match key {
                Value::String(k) => match map.get(k) {
                    Some(found) => found,
                    None => return Ok(Value::Null),
                },
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        type_name(other)
                    ));
                }
            },
            Value::Array(items) => {
                let at = position(key, items.len())?;
                items
                    .get(at)
                    .ok_or_else(|| format!("index out of range: {at}"))?
            }
            Value::String(s) => {
                let at = position(key, s.len())?;
                let byte = s
                    .as_bytes()
                    .get(at)
                    .ok_or_else(|| format!("index out of range: {at}"))?;
                return if indexes.len() == 1 {
                    Ok(Value::from(*byte))
                } else {
                    Err("can't index item of type uint8".into())
                };
            }
            other => return Err(format!("can't index item of type {}", type_name(other))),
        };
    }
    Ok(item.clone())
}

fn slice(item: &Value, indexes: &[&Value]) -> Result<Value, String> {
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match item {
        Value::Null => return Err("slice of untyped nil".into()),
        Value::String(_) if indexes.len() == 3 => {
            return Err("cannot 3-index slice a string".into());
        }
        Value::String(s) => s.len(),
        Value::Array(items) => items.len(),
        other => return Err(format!("can't slice item of type {}", type_name(other))),
    };
    let mut bounds = [0, len, len];
    for (slot, index) in bounds.iter_mut().zip(indexes) {
        *slot = position(index, len)?;
    }
    if bounds[0] > bounds[1] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        ));
    }
    if indexes.len() == 3 && bounds[1] > bounds[2] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[1], bounds[2]
        ));
    }
    Ok(match item {
        Value::String(s) => {
            Value::String(String::from_utf8_lossy(&s.as_bytes()[bounds[0]..bounds[1]]).into_owned())
        }
        Value::Array(items) => Value::Array(items[bounds[0]..bounds[1]].to_vec()),
        _ => Value::Null,
    })
}

/// Go's "basic kinds": the only values `eq`/`lt` compare by value.
enum Basic<'a> {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

fn basic(value: &Value) -> Option<Basic<'_>> {
    match value {
        Value::Bool(b) => Some(Basic::Bool(*b)),
        Value::Number(n) => {
            Some(as_integer(n).map_or_else(|| Basic::Float(as_float(n)), Basic::Int))
        }
        Value::String(s) => Some(Basic::Str(s)),
        _ => None,
    }
}

const INCOMPATIBLE: &str = "incompatible types for comparison";

/// Numbers compare across int/float: JSON does not preserve Go's distinction,
/// so `eq .Count 1` must not depend on how the producer encoded the number.
fn compare_numbers(a: &Basic<'_>, b: &Basic<'_>) -> Option<Ordering> {
    match (a, b) {
        (Basic::Int(x), Basic::Int(y)) => Some(x.cmp(y)),
        (Basic::Int(x), Basic::Float(y)) => (*x as f64).partial_cmp(y),
        (Basic::Float(x), Basic::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Basic::Float(x), Basic::Float(y)) => x.partial_cmp(y),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    if a.is_null() || b.is_null() {
        return Ok(a.is_null() && b.is_null());
    }
    match (basic(a), basic(b)) {
        (Some(Basic::Bool(x)), Some(Basic::Bool(y))) => Ok(x == y),
        (Some(Basic::Str(x)), Some(Basic::Str(y))) => Ok(x == y),
        (Some(x), Some(y)) => compare_numbers(&x, &y)
            .map(|o| o == Ordering::Equal)
            .ok_or_else(|| INCOMPATIBLE.into()),
        (None, None) => Err(format!("non-comparable type {}", type_name(a))),
        _ => Err(INCOMPATIBLE.into()),
    }
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    let invalid = || "invalid type for comparison".to_owned();
    let (x, y) = (basic(a).ok_or_else(invalid)?, basic(b).ok_or_else(invalid)?);
    match (&x, &y) {
        (Basic::Bool(_), _) | (_, Basic::Bool(_)) => Err(invalid()),
        (Basic::Str(s), Basic::Str(t)) => Ok(s.cmp(t)),
        _ => compare_numbers(&x, &y).ok_or_else(|| INCOMPATIBLE.into()),
    }
}

/// The text `html`, `js` and `urlquery` escape: a lone string as is,
/// otherwise the arguments printed like `print` (nil shows as "<no value>").
fn text_of(args: &[&Value]) -> String {
    if let [Value::String(s)] = args {
        return s.clone();
    }
    let no_value = Value::String("<no value>".into());
    let printable: Vec<&Value> = args
        .iter()
        .map(|&arg| if arg.is_null() { &no_value } else { arg })
        .collect();
    format::sprint(&printable)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '`' => out.push_str("\\u0060"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c if c.is_ascii() || !(c.is_control() || c.is_whitespace()) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's (deprecated but Docker-used) `strings.Title`: upper-case the first
/// letter of every word, words being split at non-alphanumerics.
fn title(s: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_follows_go() {
        assert_eq!(
            title("hello wide-world foo_bar"),
            "Hello Wide-World Foo_bar"
        );
    }

    #[test]
    fn escapers() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            js_escape("a'b\"c<d>=\n"),
            "a\\'b\\\"c\\u003Cd\\u003E\\u003D\\u000A"
        );
        assert_eq!(query_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
