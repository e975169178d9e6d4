//! Progress for long transfers: a bar on a terminal, nothing extra otherwise (the commands print
//! their plain result lines either way).

use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(label: &str, total: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("a valid template"),
        ),
    };
    bar.set_message(label.to_string());
    bar
}

pub struct ProgressReader<R> {
    pub inner: R,
    pub bar: ProgressBar,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

pub struct ProgressWriter<W> {
    pub inner: W,
    pub bar: ProgressBar,
}

impl<W: Write> Write for ProgressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One bar per concurrent transfer (layers of a pull or push) on a terminal; `None` otherwise,
/// so callers keep their plain lines unchanged when stderr is not a terminal.
pub struct TransferBars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<String, ProgressBar>>,
    verb: &'static str,
}

impl TransferBars {
    pub fn on_terminal(verb: &'static str) -> Option<TransferBars> {
        io::stderr().is_terminal().then(|| TransferBars {
            multi: indicatif::MultiProgress::new(),
            bars: Default::default(),
            verb,
        })
    }

    fn bars(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ProgressBar>> {
        self.bars.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A bar for `key` (e.g. a short digest) of `total` bytes.
    pub fn start(&self, key: &str, total: u64) {
        let bar = self.multi.add(
            ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            ),
        );
        bar.set_message(format!("{key}: {}", self.verb));
        if let Some(old) = self.bars().insert(key.to_string(), bar) {
            old.finish_and_clear();
        }
    }

    pub fn advance(&self, key: &str, bytes: u64) {
        if let Some(bar) = self.bars().get(key) {
            bar.inc(bytes);
        }
    }

    pub fn reset(&self, key: &str) {
        if let Some(bar) = self.bars().get(key) {
            bar.set_position(0);
        }
    }

    pub fn finish(&self, key: &str) {
        if let Some(bar) = self.bars().remove(key) {
            bar.finish_and_clear();
        }
    }

    /// Prints a line to stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        self.multi.suspend(|| {
            let _ = writeln!(io::stdout().lock(), "{line}");
        });
    }

    pub fn clear(&self) {
        for (_, bar) in self.bars().drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
