//! Docker-compatible `--format` handling: Go's text/template language
//! evaluated over [`serde_json::Value`], plus Docker's `table` and `json`
//! list conventions, so format strings written for `docker images` or
//! `docker inspect` work unchanged.
//!
//! ```
//! use serde_json::json;
//! use strata_gotmpl::Template;
//!
//! let tmpl = Template::parse("{{.Repository}}:{{.Tag}}").unwrap();
//! let out = tmpl.execute(&json!({"Repository": "alpine", "Tag": "3.20"})).unwrap();
//! assert_eq!(out, "alpine:3.20");
//! ```
//!
//! Data is treated like Go's `interface{}` from decoding JSON: objects are
//! maps (printed and ranged over in sorted key order), a missing key prints
//! `<no value>`. Deliberate differences from plain Go, chosen to match what
//! Docker prints for its typed structs:
//! - JSON integers stay integers (`{{.Size}}` prints `1200000`, not `1.2e+06`),
//!   and numeric comparisons accept int and float operands together.
//! - Fields, `index`, `len` and `range` treat `null` as an empty map/slice
//!   instead of failing with "nil pointer evaluating".
//! - `json` keeps object keys in the value's own order (like Go marshalling a
//!   struct) and does not HTML-escape, exactly as Docker's `json` function.
//!
//! Not supported: `define`/`template`/`block`, `call`, custom delimiters,
//! complex numbers, and missing-key options other than the default.

mod exec;
mod format;
mod funcs;
mod lexer;
mod parser;
mod table;

use serde_json::{Map, Value};

/// A parse or execution failure, worded like Go's text/template errors.
///
/// `offset` is the byte offset into the template source; `line` is 1-based
/// and `column` counts bytes from the start of that line starting at 0,
/// as Go's messages do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed, e.g. `function "foo" not defined`.
    #[error("template: :{line}:{column}: {message}")]
    Parse {
        offset: usize,
        line: usize,
        column: usize,
        message: String,
    },
    /// Evaluation failed; `context` is the template text being evaluated.
    #[error("template: :{line}:{column}: executing \"\" at <{context}>: {message}")]
    Exec {
        offset: usize,
        line: usize,
        column: usize,
        context: String,
        message: String,
    },
}

impl TemplateError {
    /// Byte offset into the template source where the problem was found.
    pub fn offset(&self) -> usize {
        match self {
            TemplateError::Parse { offset, .. } | TemplateError::Exec { offset, .. } => *offset,
        }
    }

    /// The reason alone, without the location prefix.
    pub fn message(&self) -> &str {
        match self {
            TemplateError::Parse { message, .. } | TemplateError::Exec { message, .. } => message,
        }
    }
}

/// A problem found at a byte offset, before line/column are worked out.
#[derive(Debug)]
pub(crate) struct Failure {
    pub offset: usize,
    pub message: String,
}

/// 1-based line and Go-style 0-based byte column of `offset` in `src`.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = 1 + before.matches('\n').count();
    let column = before
        .rfind('\n')
        .map_or(before.len(), |newline| before.len() - newline - 1);
    (line, column)
}

/// A parsed template. Parsing does no I/O; a template can be executed any
/// number of times, from several threads.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<parser::Node>,
}

impl Template {
    /// Parses Go template text.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let parsed = lexer::tokenize(src).and_then(parser::parse);
        match parsed {
            Ok(nodes) => Ok(Template {
                source: src.to_owned(),
                nodes,
            }),
            Err(Failure { offset, message }) => {
                let (line, column) = line_column(src, offset);
                Err(TemplateError::Parse {
                    offset,
                    line,
                    column,
                    message,
                })
            }
        }
    }

    /// Renders the template with `data` as dot (and `$`).
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        exec::execute(&self.source, &self.nodes, data, false)
    }

    /// The template text this was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a table header: Docker swaps the string helpers (`upper`,
    /// `json`, `truncate`, ...) for identity functions so headers stay intact.
    fn execute_header(&self, headers: &Value) -> Result<String, TemplateError> {
        exec::execute(&self.source, &self.nodes, headers, true)
    }
}

const TABLE_PREFIX: &str = "table";
const JSON_FORMAT: &str = "json";

/// Docker's tabwriter settings: minimum cell width 10, padding 3.
const TABLE_MIN_WIDTH: usize = 10;
const TABLE_PADDING: usize = 3;

/// Docker CLI list formatting. `format` is e.g. "table {{.Repository}}\t{{.Tag}}", "{{.ID}}", "json", or "table".
/// `headers` maps field names to column headers (e.g. {"Repository":"REPOSITORY","ID":"IMAGE ID","CreatedSince":"CREATED"}).
/// `default_table` is used for "table" alone. Table mode: header row rendered by executing the template on the headers
/// object, then one line per row, and columns aligned like Go's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0) (minwidth 10,
/// tabwidth 1, padding 3, pad with spaces; cells are separated by '\t' in the rendered text; the last cell is not padded).
/// Non-table: each row rendered, newline-terminated, tabs kept literally. "json": each row as compact JSON on its own line.
///
/// As in Docker, an empty `format` means "table", the literal two-character
/// sequences `\t` and `\n` in `format` become a tab and a newline (shells
/// pass them through unexpanded), and the header row is printed even when
/// there are no rows. Row object keys are sorted before rendering because
/// Docker's list rows are Go maps, so `json` output matches Docker's.
pub fn render_list(
    format: &str,
    default_table: &str,
    rows: &[Value],
    headers: &Value,
) -> Result<String, TemplateError> {
    let format = if format.is_empty() {
        TABLE_PREFIX
    } else {
        format
    };
    let (is_table, body) = match format.strip_prefix(TABLE_PREFIX) {
        Some(rest) if rest.trim_matches(' ').is_empty() => (
            true,
            default_table
                .strip_prefix(TABLE_PREFIX)
                .unwrap_or(default_table),
        ),
        Some(rest) => (true, rest),
        None if format == JSON_FORMAT => (false, "{{json .}}"),
        None => (false, format),
    };
    let body = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let template = Template::parse(&body)?;

    let mut out = String::new();
    if is_table {
        out.push_str(&template.execute_header(headers)?);
        out.push('\n');
    }
    for row in rows {
        out.push_str(&template.execute(&sorted_keys(row))?);
        out.push('\n');
    }
    Ok(if is_table {
        table::align(&out, TABLE_MIN_WIDTH, TABLE_PADDING)
    } else {
        out
    })
}

/// A copy of `value` with every object's keys in sorted order, the order Go
/// marshals maps in.
fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_keys(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}
