//! `strata build --progress=MODE`: renders the builder's events (`strata_build::Progress`) as
//! BuildKit does.
//!
//! - `plain`: one line per event, `#N` first (`strata_build::PlainProgress`).
//! - `tty`: a live view redrawn in place on a terminal: a `[+] Building 3.2s (4/7)` header, one
//!   line per step with its timer (`CACHED`/`ERROR` marked), the last lines of output under each
//!   running step, and a final frame ending in `FINISHED` (or `ERROR`/`CANCELED`).
//! - `rawjson`: one JSON object per event on stderr, shaped like BuildKit's `SolveStatus`
//!   (`vertexes`, `logs`, `warnings`); vertex ids are `#N`, not LLB digests.
//! - `quiet`: nothing.
//!
//! `auto` is `tty` when stderr is a terminal (and `TERM` is not `dumb`), `plain` otherwise.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use strata_build::{Event, PlainProgress, Progress};

/// How build progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    RawJson,
    Quiet,
}

impl Mode {
    /// `--progress` as given (`quiet` also when `-q`).
    pub fn parse(text: &str, quiet: bool) -> Result<Mode> {
        let mode = match text {
            "auto" => {
                let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
                if std::io::stderr().is_terminal() && !dumb {
                    Mode::Tty
                } else {
                    Mode::Plain
                }
            }
            "plain" => Mode::Plain,
            // A live view needs a terminal to redraw on; elsewhere it would show nothing.
            "tty" if !std::io::stderr().is_terminal() => Mode::Plain,
            "tty" => Mode::Tty,
            "rawjson" => Mode::RawJson,
            "quiet" => Mode::Quiet,
            other => {
                bail!("invalid --progress {other:?}: expected auto, plain, tty, rawjson or quiet")
            }
        };
        Ok(if quiet { Mode::Quiet } else { mode })
    }
}

/// How a build ended, for the last frame of the `tty` view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    Failed,
    Canceled,
}

/// The renderer for one build; also numbers the CLI's own steps (exporting outputs) after the
/// builder's.
pub struct BuildProgress {
    last_vertex: AtomicUsize,
    renderer: Renderer,
}

enum Renderer {
    Plain(PlainProgress<std::io::Stderr>),
    Tty(Arc<TtyView>),
    RawJson(Mutex<RawJson>),
    Quiet,
}

impl BuildProgress {
    pub fn new(mode: Mode) -> BuildProgress {
        let renderer = match mode {
            Mode::Plain => Renderer::Plain(PlainProgress::new(std::io::stderr())),
            Mode::Tty => Renderer::Tty(TtyView::start()),
            Mode::RawJson => Renderer::RawJson(Mutex::new(RawJson::default())),
            Mode::Quiet => Renderer::Quiet,
        };
        BuildProgress {
            last_vertex: AtomicUsize::new(0),
            renderer,
        }
    }

    /// A number for a step of the CLI's own, after every vertex seen so far.
    pub fn next_vertex(&self) -> usize {
        self.last_vertex.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Ends the live view with its final frame (a no-op for the line-based modes).
    pub fn finish(&self, outcome: Outcome) {
        if let Renderer::Tty(view) = &self.renderer {
            view.finish(outcome);
        }
    }
}

impl Progress for BuildProgress {
    fn event(&self, event: &Event<'_>) {
        let vertex = match event {
            Event::Started { vertex, .. }
            | Event::Cached { vertex }
            | Event::Log { vertex, .. }
            | Event::Done { vertex, .. }
            | Event::Error { vertex, .. } => Some(*vertex),
            Event::Warning { .. } => None,
        };
        if let Some(vertex) = vertex {
            self.last_vertex.fetch_max(vertex, Ordering::SeqCst);
        }
        match &self.renderer {
            Renderer::Plain(plain) => plain.event(event),
            Renderer::Tty(view) => view.event(event),
            Renderer::RawJson(raw) => raw.lock().unwrap_or_else(|e| e.into_inner()).event(event),
            Renderer::Quiet => {}
        }
    }
}

/// Lines of output kept under a running step, as BuildKit's view keeps them.
const LOG_LINES: usize = 6;

/// One step in the live view.
struct VertexLine {
    bar: ProgressBar,
    name: String,
    started: Instant,
    /// Set once the step ended: its final time.
    ended: Option<Duration>,
    logs: VecDeque<ProgressBar>,
    /// Taken out of the live view to make room (it is in the final frame).
    hidden: bool,
}

struct TtyState {
    vertices: Vec<usize>,
    lines: HashMap<usize, VertexLine>,
    warnings: Vec<String>,
    /// Messages of failed steps (with their output), printed below the last frame.
    errors: Vec<String>,
    completed: usize,
}

/// The `tty` renderer: indicatif bars, one per step, redrawn in place; a ticker thread
/// advances the timers.
struct TtyView {
    multi: MultiProgress,
    /// The terminal's size (rows, columns) when the build started.
    size: (usize, usize),
    header: ProgressBar,
    started: Instant,
    state: Mutex<TtyState>,
    stopped: AtomicBool,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn step_style() -> ProgressStyle {
    ProgressStyle::with_template(" => {wide_msg} {prefix:>7}").expect("a valid template")
}

fn log_style() -> ProgressStyle {
    ProgressStyle::with_template(" => => # {wide_msg}").expect("a valid template")
}

/// ` => NAME ... TIME`, the time right-aligned at `columns`, the name cut to fit.
fn step_line(name: &str, time: &str, columns: usize) -> String {
    let room = columns.saturating_sub(4 + 1 + 7).max(10);
    let name: String = name.chars().take(room).collect();
    format!(" => {name:<room$} {time:>7}")
}

/// The size (rows, columns) of the terminal on stderr, from util-linux/coreutils `stty`.
fn terminal_size() -> Option<(usize, usize)> {
    let terminal = std::fs::read_link("/proc/self/fd/2").ok()?;
    let output = std::process::Command::new("stty")
        .arg("-F")
        .arg(terminal)
        .arg("size")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut parts = text.split_whitespace().map(|n| n.parse::<usize>().ok());
    match (parts.next()??, parts.next()??) {
        (rows, columns) if rows > 0 && columns > 0 => Some((rows, columns)),
        _ => None,
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl TtyView {
    fn start() -> Arc<TtyView> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let header = multi.add(
            ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template")),
        );
        let view = Arc::new(TtyView {
            multi,
            size: terminal_size().unwrap_or((24, 80)),
            header,
            started: Instant::now(),
            state: Mutex::new(TtyState {
                vertices: Vec::new(),
                lines: HashMap::new(),
                warnings: Vec::new(),
                errors: Vec::new(),
                completed: 0,
            }),
            stopped: AtomicBool::new(false),
            ticker: Mutex::new(None),
        });
        view.tick();
        // The ticker holds only a weak reference, so a view that is dropped unfinished
        // does not keep it alive.
        let weak = Arc::downgrade(&view);
        let handle = std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let Some(view) = weak.upgrade() else { return };
                if view.stopped.load(Ordering::SeqCst) {
                    return;
                }
                view.tick();
            }
        });
        *view.ticker.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        view
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TtyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Advances the header's and the running steps' timers.
    fn tick(&self) {
        let state = self.state();
        self.header.set_message(format!(
            "[+] Building {:.1}s ({}/{})",
            self.started.elapsed().as_secs_f64(),
            state.completed,
            state.vertices.len()
        ));
        for line in state.lines.values().filter(|l| l.ended.is_none()) {
            line.bar.set_prefix(seconds(line.started.elapsed()));
        }
    }

    fn event(&self, event: &Event<'_>) {
        let mut state = self.state();
        match *event {
            Event::Started { vertex, name } => {
                let bar = self
                    .multi
                    .add(ProgressBar::new_spinner().with_style(step_style()));
                bar.set_message(name.to_string());
                bar.set_prefix("0.0s");
                state.vertices.push(vertex);
                state.lines.insert(
                    vertex,
                    VertexLine {
                        bar,
                        name: name.to_string(),
                        started: Instant::now(),
                        ended: None,
                        logs: VecDeque::new(),
                        hidden: false,
                    },
                );
                self.fit(&mut state);
            }
            Event::Cached { vertex } => {
                if let Some(line) = state.lines.get_mut(&vertex) {
                    line.bar.set_message(format!("CACHED {}", line.name));
                    self.end(line, Duration::ZERO, false);
                }
                state.completed += 1;
            }
            Event::Done { vertex, elapsed } => {
                if let Some(line) = state.lines.get_mut(&vertex) {
                    self.end(line, elapsed, false);
                }
                state.completed += 1;
            }
            Event::Error { vertex, message } => {
                if let Some(line) = state.lines.get_mut(&vertex) {
                    line.bar.set_message(format!("ERROR {}", line.name));
                    let elapsed = line.started.elapsed();
                    self.end(line, elapsed, true);
                    let header = format!("ERROR: {}", line.name);
                    state.errors.push(format!("{header}\n{message}"));
                }
            }
            Event::Log { vertex, line, .. } => {
                if let Some(vertex_line) = state.lines.get_mut(&vertex)
                    && vertex_line.ended.is_none()
                {
                    for part in line.lines() {
                        self.add_log(vertex_line, part);
                    }
                    self.fit(&mut state);
                }
            }
            Event::Warning { message } => state.warnings.push(message.to_string()),
        }
    }

    /// Keeps the live view within the terminal's height (indicatif would cut off its end,
    /// where the running steps are): the oldest finished steps leave it first.
    fn fit(&self, state: &mut TtyState) {
        let room = self.size.0.saturating_sub(2).max(3);
        let used = |state: &TtyState| {
            1 + state
                .lines
                .values()
                .filter(|l| !l.hidden)
                .map(|l| 1 + l.logs.len())
                .sum::<usize>()
        };
        let mut order = state.vertices.clone().into_iter();
        while used(state) > room {
            let Some(vertex) = order.next() else { break };
            if let Some(line) = state.lines.get_mut(&vertex)
                && line.ended.is_some()
                && !line.hidden
            {
                line.hidden = true;
                line.bar.finish_and_clear();
                self.multi.remove(&line.bar);
                for log in line.logs.drain(..) {
                    log.finish_and_clear();
                    self.multi.remove(&log);
                }
            }
        }
    }

    /// Shows `text` as the newest output line under `line`, keeping the last [`LOG_LINES`].
    fn add_log(&self, line: &mut VertexLine, text: &str) {
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        if line.logs.len() < LOG_LINES {
            let after = line.logs.back().unwrap_or(&line.bar).clone();
            let bar = self
                .multi
                .insert_after(&after, ProgressBar::new_spinner().with_style(log_style()));
            bar.set_message(text);
            line.logs.push_back(bar);
            return;
        }
        // Scroll: every line takes the text of the one below it.
        for i in 0..line.logs.len() - 1 {
            let below = line.logs[i + 1].message();
            line.logs[i].set_message(below);
        }
        if let Some(last) = line.logs.back() {
            last.set_message(text);
        }
    }

    /// Freezes `line` at `elapsed`; its output stays on screen only when it failed.
    fn end(&self, line: &mut VertexLine, elapsed: Duration, keep_logs: bool) {
        line.ended = Some(elapsed);
        line.bar.set_prefix(seconds(elapsed));
        line.bar.finish();
        for log in line.logs.drain(..) {
            if keep_logs {
                log.finish();
            } else {
                log.finish_and_clear();
                self.multi.remove(&log);
            }
        }
    }

    /// Stops the ticker and draws the final frame.
    fn finish(&self, outcome: Outcome) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(handle) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        let mut state = self.state();
        let ending = match outcome {
            Outcome::Finished => " FINISHED",
            Outcome::Failed => " ERROR",
            Outcome::Canceled => " CANCELED",
        };
        let open: Vec<usize> = state
            .vertices
            .iter()
            .copied()
            .filter(|v| state.lines.get(v).is_some_and(|l| l.ended.is_none()))
            .collect();
        for vertex in open {
            if let Some(line) = state.lines.get_mut(&vertex) {
                let elapsed = line.started.elapsed();
                if outcome == Outcome::Canceled {
                    line.bar.set_message(format!("CANCELED {}", line.name));
                }
                self.end(line, elapsed, false);
            }
        }
        // The live view goes; the final frame is printed in full as plain lines (it may be
        // taller than the terminal: then it scrolls, as BuildKit's does).
        let header = format!(
            "[+] Building {:.1}s ({}/{}){ending}",
            self.started.elapsed().as_secs_f64(),
            state.completed,
            state.vertices.len(),
        );
        self.header.finish_and_clear();
        for line in state.lines.values() {
            line.bar.finish_and_clear();
            for log in &line.logs {
                log.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
        let mut frame = format!("{header}\n");
        for vertex in &state.vertices {
            if let Some(line) = state.lines.get(vertex) {
                frame.push_str(&step_line(
                    &line.bar.message(),
                    &seconds(line.ended.unwrap_or_default()),
                    self.size.1,
                ));
                frame.push('\n');
            }
        }
        let warnings = std::mem::take(&mut state.warnings);
        let errors = std::mem::take(&mut state.errors);
        drop(state);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(frame.as_bytes());
        for error in &errors {
            let _ = writeln!(err, "{error}");
        }
        if !warnings.is_empty() {
            let _ = writeln!(
                err,
                "\n {} warning{} found:",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            );
            for warning in &warnings {
                let _ = writeln!(err, " - {warning}");
            }
        }
        let _ = err.flush();
    }
}

impl Drop for TtyView {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// The `rawjson` renderer: BuildKit's `SolveStatus` shape, one object per event.
#[derive(Default)]
struct RawJson {
    started: HashMap<usize, (String, String)>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl RawJson {
    fn event(&mut self, event: &Event<'_>) {
        let value = match *event {
            Event::Started { vertex, name } => {
                let started = now();
                self.started
                    .insert(vertex, (name.to_string(), started.clone()));
                json!({"vertexes": [{"digest": format!("#{vertex}"), "name": name, "started": started}]})
            }
            Event::Cached { vertex } | Event::Done { vertex, .. } => {
                let (name, started) = self.started.get(&vertex).cloned().unwrap_or_default();
                let cached = matches!(event, Event::Cached { .. });
                json!({"vertexes": [{
                    "digest": format!("#{vertex}"), "name": name, "started": started,
                    "completed": now(), "cached": cached,
                }]})
            }
            Event::Error { vertex, message } => {
                let (name, started) = self.started.get(&vertex).cloned().unwrap_or_default();
                json!({"vertexes": [{
                    "digest": format!("#{vertex}"), "name": name, "started": started,
                    "completed": now(), "error": message,
                }]})
            }
            Event::Log { vertex, line, .. } => {
                let mut data = line.as_bytes().to_vec();
                data.push(b'\n');
                json!({"logs": [{
                    "vertex": format!("#{vertex}"), "stream": 1,
                    "data": base64(&data), "timestamp": now(),
                }]})
            }
            Event::Warning { message } => {
                json!({"warnings": [{"level": 1, "short": base64(message.as_bytes())}]})
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
        let _ = err.flush();
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn progress_modes_parse_and_reject_unknown_names() {
        assert_eq!(Mode::parse("plain", false).unwrap(), Mode::Plain);
        assert_eq!(Mode::parse("rawjson", false).unwrap(), Mode::RawJson);
        assert_eq!(Mode::parse("tty", true).unwrap(), Mode::Quiet);
        let error = Mode::parse("fancy", false).unwrap_err().to_string();
        assert!(error.contains("\"fancy\""), "{error}");
    }
}
