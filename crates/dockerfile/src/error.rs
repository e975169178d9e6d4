//! Errors with a source location, rendered with the offending line and a caret.

use std::fmt;

/// Renders `message` located at `line`:`column` (both 1-based) of `source_line`:
///
/// ```text
/// Dockerfile:3:5: unknown instruction: RUNN
///   3 | RUNN echo hi
///     |     ^
/// ```
pub fn render(line: usize, column: usize, source_line: &str, message: &str) -> String {
    let num = line.to_string();
    let pad = " ".repeat(num.len());
    let caret_pad: String = source_line
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!(
        "Dockerfile:{line}:{column}: {message}\n  {num} | {source_line}\n  {pad} | {caret_pad}^"
    )
}

/// A syntax error in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// What is wrong, without location.
    pub message: String,
    /// The full source line at `line` (for rendering).
    pub source_line: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(
            self.line,
            self.column,
            &self.source_line,
            &self.message,
        ))
    }
}

/// An error while planning a parsed Dockerfile (bad substitution, unknown
/// target, dependency cycle, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    /// Where the problem is, if it is tied to one instruction.
    pub location: Option<(usize, usize)>,
    /// What is wrong, without location.
    pub message: String,
    /// The source line at the location, if any.
    pub source_line: String,
}

impl PlanError {
    pub(crate) fn general(message: impl Into<String>) -> Self {
        PlanError {
            location: None,
            message: message.into(),
            source_line: String::new(),
        }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((l, c)) => f.write_str(&render(l, c, &self.source_line, &self.message)),
            None => f.write_str(&self.message),
        }
    }
}
