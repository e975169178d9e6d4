//! Build progress as events, rendered by whoever runs the build. Stages run in parallel, so
//! every event names its vertex (one step of one stage, numbered as BuildKit numbers them:
//! `#N`) and a renderer may interleave them.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// One thing that happened during a build.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A vertex began: `name` is BuildKit's `[stage 2/5] RUN ...` header.
    Started { vertex: usize, name: &'a str },
    /// The vertex's result came from the build cache; no `Done` follows.
    Cached { vertex: usize },
    /// A line of output (or a sub-step such as `exporting layers`) of a running vertex.
    Log {
        vertex: usize,
        elapsed: Duration,
        line: &'a str,
    },
    /// The vertex finished.
    Done { vertex: usize, elapsed: Duration },
    /// The vertex failed; the build stops.
    Error { vertex: usize, message: &'a str },
    /// A warning about the whole build (unused build args, checks).
    Warning { message: &'a str },
}

/// Receives build events; called from several threads at once.
pub trait Progress: Sync {
    fn event(&self, event: &Event<'_>);
}

/// BuildKit's `--progress=plain` format: one line per event, `#N` first.
pub struct PlainProgress<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> PlainProgress<W> {
    pub fn new(out: W) -> PlainProgress<W> {
        PlainProgress {
            out: Mutex::new(out),
        }
    }

    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<W: Write + Send> Progress for PlainProgress<W> {
    fn event(&self, event: &Event<'_>) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match event {
            Event::Started { vertex, name } => writeln!(out, "#{vertex} {name}"),
            Event::Cached { vertex } => writeln!(out, "#{vertex} CACHED"),
            Event::Log {
                vertex,
                elapsed,
                line,
            } => writeln!(out, "#{vertex} {:.3} {line}", elapsed.as_secs_f64()),
            Event::Done { vertex, elapsed } => {
                writeln!(out, "#{vertex} DONE {:.1}s", elapsed.as_secs_f64())
            }
            Event::Error { vertex, message } => writeln!(out, "#{vertex} ERROR: {message}"),
            Event::Warning { message } => writeln!(out, "[Warning] {message}"),
        };
        let _ = out.flush();
    }
}

/// Discards every event (`--quiet`).
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: &Event<'_>) {}
}
