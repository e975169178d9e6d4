//! Dockerfile frontend for strata: a parser producing a typed AST with
//! source spans, BuildKit-compatible variable substitution ([`shell`]), a
//! pure stage planner ([`plan()`]) and BuildKit-style build checks
//! ([`check()`]).
//!
//! Everything here is pure: inputs are strings and maps, outputs are values
//! or errors; nothing reads files, the network or the environment.
//!
//! - [`parse`] turns source text into a [`Dockerfile`]: parser directives
//!   (`syntax`, `escape`, `check`), stages with typed [`Instruction`]s and
//!   [`Span`]s, heredocs, exec/shell forms and every flag. Values that
//!   BuildKit substitutes are kept as written.
//! - [`shell`] is BuildKit's substitution language ([`shell::expand`],
//!   [`shell::split_words`]).
//! - [`plan()`] resolves global/stage ARGs (build args, automatic platform
//!   args, proxy args), ENV, stage bases and `--from` dependencies, the stages
//!   the target needs and parallel build levels.
//! - [`check()`] reports BuildKit build-check rules (`docker build --check`).
//!
//! Not supported: `# syntax=` frontends are recorded but never fetched;
//! Windows-specific behaviour (case-insensitive env names, path rules);
//! `ADD --unpack`, `RUN --device` and other labs-only flags (they are
//! rejected as unknown flags); ONBUILD triggers are parsed but not expanded
//! (they run in the child build); base-image ENV is only known when given in
//! [`PlanOptions::image_env`]; EXPOSE port syntax is not validated; the
//! `CopyIgnoredFile` and `InvalidDefinitionDescription` experimental checks.
//!
//! ```
//! let df = strata_dockerfile::parse("FROM scratch AS out\nCOPY a /a\n").unwrap();
//! let plan = strata_dockerfile::plan(&df, &Default::default()).unwrap();
//! assert_eq!(plan.stages.len(), 1);
//! ```

pub mod ast;
pub mod checks;
pub mod error;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod shell;

pub use ast::*;
pub use checks::{Warning, check, is_secret_name};
pub use error::{ParseError, PlanError};
pub use parser::parse;
pub use plan::{Base, BuildPlan, PlanOptions, PlannedStage, PlannedStep, Platform, plan};
