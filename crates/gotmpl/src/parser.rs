//! Template syntax tree and the recursive-descent parser that builds it.
//!
//! The grammar and the error wording follow Go's text/template/parse so that
//! messages look familiar to people used to `docker --format`.

use serde_json::Value;

use crate::Failure;
use crate::funcs;
use crate::lexer::{Keyword, Token, TokenKind};

/// Byte range of a construct in the template source, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    /// `{{pipeline}}`: printed unless the pipeline declares variables.
    Action(Pipeline),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

/// The shared shape of `if`, `with` and `range`.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub pipe: Pipeline,
    pub list: Vec<Node>,
    pub else_list: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub span: Span,
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub args: Vec<Operand>,
}

#[derive(Debug, Clone)]
pub(crate) struct Operand {
    pub span: Span,
    pub term: Term,
}

#[derive(Debug, Clone)]
pub(crate) enum Term {
    Dot,
    Nil,
    Literal(Value),
    /// `.A.B.C`
    Field(Vec<String>),
    /// `$x.A.B`: the variable name (with `$`) and any field chain.
    Variable(String, Vec<String>),
    Function(String),
    /// A parenthesized pipeline.
    Pipeline(Box<Pipeline>),
    /// `(pipeline).A.B`: fields looked up on the result of another term.
    Chain(Box<Operand>, Vec<String>),
}

/// How deeply blocks and parentheses may nest. Parsing and execution recurse
/// per level, so this bound is what keeps hostile input from overflowing the
/// stack.
const MAX_DEPTH: usize = 100;

pub(crate) fn parse(tokens: Vec<Token>) -> Result<Vec<Node>, Failure> {
    let mut parser = Parser {
        tokens,
        pos: 0,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        depth: 0,
    };
    let (nodes, end) = parser.list()?;
    match end {
        ListEnd::Eof => Ok(nodes),
        ListEnd::End(offset) => Err(Failure {
            offset,
            message: "unexpected {{end}}".into(),
        }),
        ListEnd::Else(offset) => Err(Failure {
            offset,
            message: "unexpected {{else}}".into(),
        }),
    }
}

/// What stopped a list of nodes.
enum ListEnd {
    Eof,
    /// `{{end}}`, fully consumed.
    End(usize),
    /// `{{else`, with the rest of the action still pending.
    Else(usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    If,
    With,
    Range,
}

impl BlockKind {
    fn name(self) -> &'static str {
        match self {
            BlockKind::If => "if",
            BlockKind::With => "with",
            BlockKind::Range => "range",
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
}

fn describe(token: &Token) -> String {
    match &token.kind {
        TokenKind::Eof => "EOF".into(),
        TokenKind::RightDelim => "\"}}\"".into(),
        TokenKind::LeftDelim => "\"{{\"".into(),
        TokenKind::Space => "space".into(),
        TokenKind::Pipe => "\"|\"".into(),
        TokenKind::Declare => "\":=\"".into(),
        TokenKind::Assign => "\"=\"".into(),
        TokenKind::Comma => "\",\"".into(),
        TokenKind::LeftParen => "\"(\"".into(),
        TokenKind::RightParen => "\")\"".into(),
        TokenKind::Dot => "\".\"".into(),
        TokenKind::Nil => "nil".into(),
        TokenKind::Field(name) => format!("field \".{name}\""),
        TokenKind::Variable(name) => format!("variable {name:?}"),
        TokenKind::Identifier(name) => format!("identifier {name:?}"),
        TokenKind::Keyword(keyword) => format!("<{}>", keyword.as_str()),
        TokenKind::Literal(value) => format!("literal {value}"),
        TokenKind::Text(text) => format!("text {text:?}"),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the stream with Eof, and nothing moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn skip_space(&mut self) {
        while self.peek().kind == TokenKind::Space {
            self.pos += 1;
        }
    }

    fn peek_non_space(&mut self) -> &Token {
        self.skip_space();
        self.peek()
    }

    fn next_non_space(&mut self) -> Token {
        self.skip_space();
        self.next()
    }

    fn fail(offset: usize, message: impl Into<String>) -> Failure {
        Failure {
            offset,
            message: message.into(),
        }
    }

    fn unexpected(token: &Token, context: &str) -> Failure {
        Self::fail(
            token.start,
            format!("unexpected {} in {context}", describe(token)),
        )
    }

    fn enter(&mut self, offset: usize) -> Result<(), Failure> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Self::fail(
                offset,
                format!("template nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<(), Failure> {
        let token = self.next_non_space();
        if token.kind == TokenKind::RightDelim {
            Ok(())
        } else {
            Err(Self::unexpected(&token, context))
        }
    }

    /// Parses nodes until EOF, `{{end}}` or `{{else`.
    fn list(&mut self) -> Result<(Vec<Node>, ListEnd), Failure> {
        let mut nodes = Vec::new();
        loop {
            let token = self.next();
            match token.kind {
                TokenKind::Eof => return Ok((nodes, ListEnd::Eof)),
                TokenKind::Text(text) => nodes.push(Node::Text(text)),
                TokenKind::LeftDelim => {
                    let keyword = self.peek_non_space().clone();
                    let TokenKind::Keyword(kw) = keyword.kind else {
                        nodes.push(Node::Action(self.pipeline("command", false)?));
                        continue;
                    };
                    self.next_non_space();
                    match kw {
                        Keyword::End => {
                            self.expect_right_delim("end")?;
                            return Ok((nodes, ListEnd::End(keyword.start)));
                        }
                        Keyword::Else => return Ok((nodes, ListEnd::Else(keyword.start))),
                        Keyword::If => {
                            nodes.push(Node::If(self.block(BlockKind::If, keyword.start)?))
                        }
                        Keyword::With => {
                            nodes.push(Node::With(self.block(BlockKind::With, keyword.start)?))
                        }
                        Keyword::Range => {
                            nodes.push(Node::Range(self.block(BlockKind::Range, keyword.start)?))
                        }
                        Keyword::Break | Keyword::Continue => {
                            let name = kw.as_str();
                            if self.range_depth == 0 {
                                return Err(Self::fail(
                                    keyword.start,
                                    format!("{{{{{name}}}}} outside {{{{range}}}}"),
                                ));
                            }
                            self.expect_right_delim(name)?;
                            nodes.push(if kw == Keyword::Break {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        Keyword::Define | Keyword::Template | Keyword::Block => {
                            return Err(Self::fail(
                                keyword.start,
                                format!("{{{{{}}}}} is not supported", kw.as_str()),
                            ));
                        }
                    }
                }
                _ => return Err(Self::unexpected(&token, "input")),
            }
        }
    }

    /// Parses the rest of an `if`/`with`/`range` after its keyword, through
    /// the matching `{{end}}`.
    fn block(&mut self, kind: BlockKind, offset: usize) -> Result<Branch, Failure> {
        self.enter(offset)?;
        // Variables declared in the pipeline or the body go out of scope at {{end}}.
        let outer_vars = self.vars.len();
        let pipe = self.pipeline(kind.name(), false)?;
        let block_vars = self.vars.len();

        if kind == BlockKind::Range {
            self.range_depth += 1;
        }
        let body = self.list();
        if kind == BlockKind::Range {
            self.range_depth -= 1;
        }
        let (list, end) = body?;
        self.vars.truncate(block_vars);

        let else_list = match end {
            ListEnd::Eof => return Err(Self::fail(offset, "unexpected EOF")),
            ListEnd::End(_) => Vec::new(),
            ListEnd::Else(else_offset) => {
                // `{{else if ...}}` / `{{else with ...}}` is shorthand for a nested
                // block in the else branch that shares this block's {{end}}.
                let chained = match (kind, &self.peek_non_space().kind) {
                    (BlockKind::If, TokenKind::Keyword(Keyword::If)) => Some(BlockKind::If),
                    (BlockKind::With, TokenKind::Keyword(Keyword::With)) => Some(BlockKind::With),
                    _ => None,
                };
                if let Some(chained) = chained {
                    let start = self.next_non_space().start;
                    let branch = self.block(chained, start)?;
                    vec![if chained == BlockKind::If {
                        Node::If(branch)
                    } else {
                        Node::With(branch)
                    }]
                } else {
                    self.expect_right_delim("else")?;
                    match self.list()? {
                        (list, ListEnd::End(_)) => list,
                        (_, ListEnd::Else(offset)) => {
                            return Err(Self::fail(offset, "expected end; found {{else}}"));
                        }
                        (_, ListEnd::Eof) => return Err(Self::fail(else_offset, "unexpected EOF")),
                    }
                }
            }
        };
        self.vars.truncate(outer_vars);
        self.depth -= 1;
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    fn declare(&mut self, name: &str, token: &Token, is_assign: bool) -> Result<(), Failure> {
        if is_assign {
            if !self.vars.iter().any(|v| v == name) {
                return Err(Self::fail(
                    token.start,
                    format!("undefined variable {name:?}"),
                ));
            }
        } else {
            self.vars.push(name.to_owned());
        }
        Ok(())
    }

    /// Parses an optional declaration and `|`-separated commands, ending at
    /// `}}` or, for a parenthesized pipeline, `)`.
    fn pipeline(&mut self, context: &str, in_parens: bool) -> Result<Pipeline, Failure> {
        let start = self.peek_non_space().start;
        let mut decl = Vec::new();
        let mut is_assign = false;

        if let TokenKind::Variable(first) = &self.peek_non_space().kind {
            let first = first.clone();
            let checkpoint = self.pos;
            let first_token = self.next_non_space();
            let after = self.next_non_space();
            match after.kind {
                TokenKind::Declare | TokenKind::Assign => {
                    is_assign = after.kind == TokenKind::Assign;
                    self.declare(&first, &first_token, is_assign)?;
                    decl.push(first);
                }
                TokenKind::Comma if context == "range" => {
                    let second_token = self.next_non_space();
                    let TokenKind::Variable(second) = second_token.kind.clone() else {
                        return Err(Self::fail(
                            second_token.start,
                            "range can only initialize variables",
                        ));
                    };
                    let op = self.next_non_space();
                    if !matches!(op.kind, TokenKind::Declare | TokenKind::Assign) {
                        return Err(Self::unexpected(&op, "range"));
                    }
                    is_assign = op.kind == TokenKind::Assign;
                    self.declare(&first, &first_token, is_assign)?;
                    self.declare(&second, &second_token, is_assign)?;
                    decl.push(first);
                    decl.push(second);
                }
                TokenKind::Comma => {
                    return Err(Self::fail(
                        after.start,
                        format!("too many declarations in {context}"),
                    ));
                }
                // Not a declaration: the variable is an ordinary operand.
                _ => self.pos = checkpoint,
            }
        }

        let mut cmds = Vec::new();
        let mut after_pipe = false;
        let end = loop {
            let token = self.peek_non_space().clone();
            match token.kind {
                TokenKind::RightDelim if !in_parens => break self.next(),
                TokenKind::RightParen if in_parens => break self.next(),
                TokenKind::Literal(_)
                | TokenKind::Dot
                | TokenKind::Nil
                | TokenKind::Field(_)
                | TokenKind::Variable(_)
                | TokenKind::Identifier(_)
                | TokenKind::LeftParen => {
                    let (cmd, piped) = self.command()?;
                    cmds.push(cmd);
                    after_pipe = piped;
                }
                _ => return Err(Self::unexpected(&token, context)),
            }
        };
        if cmds.is_empty() {
            return Err(Self::fail(start, format!("missing value for {context}")));
        }
        if after_pipe {
            return Err(Self::fail(end.start, "missing command after \"|\""));
        }
        // Only the first stage may be a plain value: later stages receive the
        // previous result as an argument, which a constant cannot take.
        for (i, cmd) in cmds.iter().enumerate().skip(1) {
            let first = &cmd.args[0];
            if matches!(first.term, Term::Dot | Term::Nil | Term::Literal(_)) {
                return Err(Self::fail(
                    first.span.start,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        // The span covers the pipeline text only, not the closing `}}` or `)`.
        Ok(Pipeline {
            span: Span {
                start,
                end: end.start.max(start),
            },
            decl,
            is_assign,
            cmds,
        })
    }

    /// Parses space-separated operands; returns whether a `|` followed.
    fn command(&mut self) -> Result<(Command, bool), Failure> {
        let mut args = Vec::new();
        loop {
            self.skip_space();
            if let Some(operand) = self.operand()? {
                args.push(operand);
            }
            let token = self.peek().clone();
            match token.kind {
                TokenKind::Space => self.pos += 1,
                TokenKind::RightDelim | TokenKind::RightParen => break,
                TokenKind::Pipe => {
                    self.pos += 1;
                    if args.is_empty() {
                        return Err(Self::fail(token.start, "missing command before \"|\""));
                    }
                    return Ok((Command { args }, true));
                }
                _ => return Err(Self::unexpected(&token, "operand")),
            }
        }
        if args.is_empty() {
            return Err(Self::fail(self.peek().start, "empty command"));
        }
        Ok((Command { args }, false))
    }

    /// A term followed by any directly attached `.Field` chain.
    fn operand(&mut self) -> Result<Option<Operand>, Failure> {
        let Some(mut operand) = self.term()? else {
            return Ok(None);
        };
        let mut fields = Vec::new();
        while let TokenKind::Field(name) = &self.peek().kind {
            fields.push(name.clone());
            operand.span.end = self.next().end;
        }
        if fields.is_empty() {
            return Ok(Some(operand));
        }
        operand.term = match operand.term {
            Term::Field(mut chain) => {
                chain.extend(fields);
                Term::Field(chain)
            }
            Term::Variable(name, mut chain) => {
                chain.extend(fields);
                Term::Variable(name, chain)
            }
            Term::Dot | Term::Nil | Term::Literal(_) => {
                return Err(Self::fail(operand.span.start, "unexpected . after term"));
            }
            term @ (Term::Function(_) | Term::Pipeline(_) | Term::Chain(..)) => {
                let inner = Operand {
                    span: operand.span,
                    term,
                };
                Term::Chain(Box::new(inner), fields)
            }
        };
        Ok(Some(operand))
    }

    fn term(&mut self) -> Result<Option<Operand>, Failure> {
        let token = self.peek().clone();
        let term = match token.kind {
            TokenKind::Identifier(name) => {
                if !funcs::is_defined(&name) {
                    return Err(Self::fail(
                        token.start,
                        format!("function {name:?} not defined"),
                    ));
                }
                Term::Function(name)
            }
            TokenKind::Dot => Term::Dot,
            TokenKind::Nil => Term::Nil,
            TokenKind::Literal(value) => Term::Literal(value),
            TokenKind::Field(name) => Term::Field(vec![name]),
            TokenKind::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err(Self::fail(
                        token.start,
                        format!("undefined variable {name:?}"),
                    ));
                }
                Term::Variable(name, Vec::new())
            }
            TokenKind::LeftParen => {
                self.pos += 1;
                self.enter(token.start)?;
                let pipe = self.pipeline("parenthesized pipeline", true)?;
                self.depth -= 1;
                // The pipeline consumed the closing paren, the previous token.
                let span = Span {
                    start: token.start,
                    end: self.tokens[self.pos - 1].end,
                };
                return Ok(Some(Operand {
                    span,
                    term: Term::Pipeline(Box::new(pipe)),
                }));
            }
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(Operand {
            span: Span {
                start: token.start,
                end: token.end,
            },
            term,
        }))
    }
}
