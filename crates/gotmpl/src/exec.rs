//! Evaluates a parsed template against a JSON value.
//!
//! Values are `Cow`s so that walking the caller's data borrows it; only
//! function results (and data reached through them) are owned.
//!
//! A JSON `null` plays the part of both Go's nil interface and the "invalid"
//! value a missing map key yields: Go turns a nil interface into the invalid
//! value at the end of every pipeline anyway, so both print "<no value>"
//! and both reach functions as nil. Looking a field up on null yields null
//! instead of Go's "nil pointer evaluating" error, matching what Docker users
//! see for nil maps such as an image's absent `.Config.Labels`.

use std::borrow::Cow;

use serde_json::Value;

use crate::TemplateError;
use crate::format::{self, type_name};
use crate::funcs::{self, truth};
use crate::parser::{Branch, Command, Node, Operand, Pipeline, Span, Term};

static NULL: Value = Value::Null;

type Result<T> = std::result::Result<T, TemplateError>;

/// How a list of nodes finished: normally, or via `{{break}}`/`{{continue}}`
/// that the enclosing range must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) fn execute(src: &str, nodes: &[Node], data: &Value, header: bool) -> Result<String> {
    let mut state = State {
        src,
        header,
        vars: vec![("$", Cow::Borrowed(data))],
        out: String::new(),
    };
    state.walk(&Cow::Borrowed(data), nodes)?;
    Ok(state.out)
}

struct State<'t, 'd> {
    src: &'t str,
    header: bool,
    /// Variable stack, innermost last; blocks truncate it on exit.
    vars: Vec<(&'t str, Cow<'d, Value>)>,
    out: String,
}

// Dot is passed as `&Cow` rather than `&Value` so that re-using it keeps
// borrowing the caller's data instead of cloning it.
#[expect(
    clippy::ptr_arg,
    reason = "a Cow's borrowed lifetime must be preserved"
)]
impl<'t, 'd> State<'t, 'd> {
    fn error(&self, span: Span, message: impl Into<String>) -> TemplateError {
        let (line, column) = crate::line_column(self.src, span.start);
        TemplateError::Exec {
            offset: span.start,
            line,
            column,
            context: self
                .src
                .get(span.start..span.end)
                .unwrap_or_default()
                .trim_end()
                .to_owned(),
            message: message.into(),
        }
    }

    fn walk(&mut self, dot: &Cow<'d, Value>, nodes: &'t [Node]) -> Result<Flow> {
        for node in nodes {
            let flow = match node {
                Node::Text(text) => {
                    self.out.push_str(text);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let value = self.pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.print(&value);
                    }
                    Flow::Normal
                }
                Node::If(branch) => self.if_or_with(dot, branch, false)?,
                Node::With(branch) => self.if_or_with(dot, branch, true)?,
                Node::Range(branch) => self.range(dot, branch)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// Prints a pipeline result the way text/template does.
    fn print(&mut self, value: &Value) {
        if value.is_null() {
            self.out.push_str("<no value>");
        } else {
            format::write_value(&mut self.out, value);
        }
    }

    fn if_or_with(
        &mut self,
        dot: &Cow<'d, Value>,
        branch: &'t Branch,
        is_with: bool,
    ) -> Result<Flow> {
        let mark = self.vars.len();
        let value = self.pipeline(dot, &branch.pipe)?;
        let flow = if !truth(&value) {
            self.walk(dot, &branch.else_list)?
        } else if is_with {
            self.walk(&value, &branch.list)?
        } else {
            self.walk(dot, &branch.list)?
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, dot: &Cow<'d, Value>, branch: &'t Branch) -> Result<Flow> {
        let mark = self.vars.len();
        let value = self.pipeline(dot, &branch.pipe)?;
        let pipe = &branch.pipe;
        let mut ran = false;
        match value {
            Cow::Borrowed(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    ran = true;
                    if self.iteration(branch, Cow::Owned(Value::from(i)), Cow::Borrowed(item))?
                        == Flow::Break
                    {
                        break;
                    }
                }
            }
            Cow::Owned(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    ran = true;
                    if self.iteration(branch, Cow::Owned(Value::from(i)), Cow::Owned(item))?
                        == Flow::Break
                    {
                        break;
                    }
                }
            }
            // Go visits maps in sorted key order.
            Cow::Borrowed(Value::Object(map)) => {
                for (key, item) in format::sorted_entries(map) {
                    ran = true;
                    let key = Cow::Owned(Value::String(key.clone()));
                    if self.iteration(branch, key, Cow::Borrowed(item))? == Flow::Break {
                        break;
                    }
                }
            }
            Cow::Owned(Value::Object(map)) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                for (key, item) in entries {
                    ran = true;
                    if self.iteration(branch, Cow::Owned(Value::String(key)), Cow::Owned(item))?
                        == Flow::Break
                    {
                        break;
                    }
                }
            }
            // Go 1.22 ranges over integers: 0..n.
            count if count.as_i64().is_some() => {
                let count = count.as_i64().unwrap_or(0);
                if pipe.decl.len() > 1 {
                    let message =
                        format!("can't use {count} to iterate over more than one variable");
                    return Err(self.error(pipe.span, message));
                }
                for i in 0..count {
                    ran = true;
                    let i = Value::from(i);
                    if self.iteration(branch, Cow::Owned(i.clone()), Cow::Owned(i))? == Flow::Break
                    {
                        break;
                    }
                }
            }
            // A nil collection is simply empty.
            Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null) => {}
            other => {
                let shown = format::value_to_string(&other);
                return Err(self.error(pipe.span, format!("range can't iterate over {shown}")));
            }
        }
        if !ran {
            self.walk(dot, &branch.else_list)?;
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Runs one range iteration: binds the loop variables, walks the body and
    /// drops anything the body declared.
    fn iteration(
        &mut self,
        branch: &'t Branch,
        key: Cow<'d, Value>,
        item: Cow<'d, Value>,
    ) -> Result<Flow> {
        let pipe = &branch.pipe;
        let body_mark = self.vars.len();
        // With one variable it gets the element; with two, key then element.
        let bindings: Vec<(&'t str, Cow<'d, Value>)> = match pipe.decl.as_slice() {
            [] => Vec::new(),
            [only] => vec![(only.as_str(), item.clone())],
            [first, second, ..] => vec![(first.as_str(), key), (second.as_str(), item.clone())],
        };
        for (name, value) in bindings {
            if pipe.is_assign {
                self.assign(name, value, pipe.span)?;
            } else {
                // Declared variables were pushed by the pipeline; rebind them in place.
                self.set_declared(name, value, body_mark);
            }
        }
        let flow = self.walk(&item, &branch.list)?;
        self.vars.truncate(body_mark);
        Ok(flow)
    }

    fn set_declared(&mut self, name: &str, value: Cow<'d, Value>, below: usize) {
        if let Some(slot) = self.vars[..below]
            .iter_mut()
            .rev()
            .find(|(n, _)| *n == name)
        {
            slot.1 = value;
        }
    }

    fn assign(&mut self, name: &str, value: Cow<'d, Value>, span: Span) -> Result<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = value;
                Ok(())
            }
            None => Err(self.error(span, format!("undefined variable: {name}"))),
        }
    }

    fn variable(&self, name: &str, span: Span) -> Result<Cow<'d, Value>> {
        match self.vars.iter().rev().find(|(n, _)| *n == name) {
            Some((_, value)) => Ok(value.clone()),
            None => Err(self.error(span, format!("undefined variable: {name}"))),
        }
    }

    fn pipeline(&mut self, dot: &Cow<'d, Value>, pipe: &'t Pipeline) -> Result<Cow<'d, Value>> {
        let mut value: Option<Cow<'d, Value>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Cow::Borrowed(&NULL));
        for name in &pipe.decl {
            if pipe.is_assign {
                self.assign(name, value.clone(), pipe.span)?;
            } else {
                self.vars.push((name.as_str(), value.clone()));
            }
        }
        Ok(value)
    }

    /// Evaluates one pipeline stage; `previous` is the prior stage's result,
    /// passed as the final argument.
    fn command(
        &mut self,
        dot: &Cow<'d, Value>,
        cmd: &'t Command,
        previous: Option<Cow<'d, Value>>,
    ) -> Result<Cow<'d, Value>> {
        let first = &cmd.args[0];
        if let Term::Function(name) = &first.term {
            return self.call(dot, name, first.span, &cmd.args[1..], previous);
        }
        if cmd.args.len() > 1 || previous.is_some() {
            let text = self
                .src
                .get(first.span.start..first.span.end)
                .unwrap_or_default();
            return Err(self.error(
                first.span,
                format!("can't give argument to non-function {text}"),
            ));
        }
        if let Term::Nil = first.term {
            return Err(self.error(first.span, "nil is not a command"));
        }
        self.argument(dot, first)
    }

    fn argument(&mut self, dot: &Cow<'d, Value>, operand: &'t Operand) -> Result<Cow<'d, Value>> {
        match &operand.term {
            Term::Dot => Ok(dot.clone()),
            Term::Nil => Ok(Cow::Borrowed(&NULL)),
            Term::Literal(value) => Ok(Cow::Owned(value.clone())),
            Term::Field(fields) => self.fields(dot, fields, operand.span),
            Term::Variable(name, fields) => {
                let value = self.variable(name, operand.span)?;
                self.fields(&value, fields, operand.span)
            }
            Term::Function(name) => self.call(dot, name, operand.span, &[], None),
            Term::Pipeline(pipe) => self.pipeline(dot, pipe),
            Term::Chain(inner, fields) => {
                let value = self.argument(dot, inner)?;
                self.fields(&value, fields, operand.span)
            }
        }
    }

    /// Follows a `.A.B` chain, borrowing from the data where possible.
    fn fields(
        &self,
        base: &Cow<'d, Value>,
        fields: &[String],
        span: Span,
    ) -> Result<Cow<'d, Value>> {
        if fields.is_empty() {
            return Ok(base.clone());
        }
        let found = match base {
            Cow::Borrowed(value) => lookup(value, fields).map(Cow::Borrowed),
            Cow::Owned(value) => lookup(value, fields).map(|v| Cow::Owned(v.clone())),
        };
        found.map_err(|message| self.error(span, message))
    }

    fn call(
        &mut self,
        dot: &Cow<'d, Value>,
        name: &str,
        span: Span,
        args: &'t [Operand],
        previous: Option<Cow<'d, Value>>,
    ) -> Result<Cow<'d, Value>> {
        if name == "and" || name == "or" {
            return self.and_or(dot, name, span, args, previous);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for arg in args {
            values.push(self.argument(dot, arg)?);
        }
        values.extend(previous);
        let refs: Vec<&Value> = values.iter().map(|v| v.as_ref()).collect();
        funcs::call(name, &refs, self.header)
            .map(Cow::Owned)
            .map_err(|message| self.error(span, message))
    }

    /// `and`/`or` return the first falsy/truthy argument (else the last one),
    /// evaluating arguments only as far as needed, like Go since 1.18.
    fn and_or(
        &mut self,
        dot: &Cow<'d, Value>,
        name: &str,
        span: Span,
        args: &'t [Operand],
        previous: Option<Cow<'d, Value>>,
    ) -> Result<Cow<'d, Value>> {
        let count = args.len() + usize::from(previous.is_some());
        if count == 0 {
            return Err(self.error(
                span,
                format!("wrong number of args for {name}: want at least 1 got 0"),
            ));
        }
        let stop_on = name == "or";
        let mut last = Cow::Borrowed(&NULL);
        for arg in args {
            last = self.argument(dot, arg)?;
            if truth(&last) == stop_on {
                return Ok(last);
            }
        }
        Ok(previous.unwrap_or(last))
    }
}

/// Looks up a field chain. Missing keys (and fields of null) give null,
/// which prints as "<no value>" like Go's missing map keys.
fn lookup<'v>(mut value: &'v Value, fields: &[String]) -> std::result::Result<&'v Value, String> {
    for field in fields {
        value = match value {
            Value::Object(map) => map.get(field).unwrap_or(&NULL),
            Value::Null => &NULL,
            other => {
                return Err(format!(
                    "can't evaluate field {field} in type {}",
                    type_name(other)
                ));
            }
        };
    }
    Ok(value)
}
