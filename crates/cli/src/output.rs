//! Where archives go: a file written atomically, or standard output when it is not a terminal.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A file that appears under its name only once fully written and synced.
pub struct AtomicFile {
    temp: PathBuf,
    target: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file name", target.display()))?;
        let temp = dir.join(format!(
            ".{}.{}.partial",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        Ok(AtomicFile {
            temp,
            target: target.to_path_buf(),
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("committed once");
        let file = file
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.temp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.temp.display()))?;
        std::fs::rename(&self.temp, &self.target)
            .with_context(|| format!("renaming to {}", self.target.display()))?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Runs `write` into `-o FILE` (atomically) or into standard output, refusing a terminal as
/// Docker does.
pub fn write_output(
    path: Option<&Path>,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match path {
        Some(p) if p != Path::new("-") => {
            let mut file = AtomicFile::create(p)?;
            write(&mut file)?;
            file.commit()
        }
        _ => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!(
                    "cowardly refusing to write {what} to a terminal. Use the -o flag or redirect"
                );
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            write(&mut out)?;
            out.flush().context("writing to standard output")
        }
    }
}
