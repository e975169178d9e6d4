//! The build cache: content-addressed step keys, and content checksums of the files a step
//! reads.
//!
//! A step's key is a SHA-256 over its parent's key, the instruction as planned (arguments
//! substituted, source position excluded) and the content it reads (see [`KeyBuilder`]); the
//! first key of a stage covers its base (an image ID, another stage's final key, or scratch),
//! the target platform and `SOURCE_DATE_EPOCH`. So a key names the state after the step, and
//! the store's `build_cache` table maps it to the layer that step produced.
//!
//! Checksums of context files are kept per context directory in
//! `<store>/build-cache/checksums/<sha256 of the context path>` (format [`CHECKSUM_FORMAT`]): a file
//! whose size, mtime and inode are unchanged keeps its recorded checksum, so a large
//! unchanged context costs one `lstat` per file.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use strata_oci::{Algorithm, Digest};

use crate::pattern::{IgnoreRules, clean_relative, has_glob};

/// Version of the key derivation; part of every key, so a change invalidates old entries.
const KEY_VERSION: &str = "strata-build-cache-v1";

/// First line of a checksum file.
pub const CHECKSUM_FORMAT: &str = "strata-build-checksums v1";

/// Accumulates one key's inputs, each length-prefixed so no two input lists collide.
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    pub fn new(kind: &str) -> KeyBuilder {
        let mut k = KeyBuilder(Sha256::new());
        k.add(KEY_VERSION);
        k.add(kind);
        k
    }

    pub fn add(&mut self, part: impl AsRef<[u8]>) -> &mut KeyBuilder {
        let part = part.as_ref();
        self.0.update((part.len() as u64).to_le_bytes());
        self.0.update(part);
        self
    }

    pub fn finish(self) -> Digest {
        Digest::new(Algorithm::Sha256, &hex::encode(self.0.finalize()))
            .expect("a SHA-256 output is 64 hex digits")
    }
}

#[derive(Debug, Clone)]
struct FileStamp {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    ino: u64,
}

impl FileStamp {
    /// Whether a file with this stamp still has the checksum recorded with `known`. The
    /// change time is not compared: staging a COPY by hard link changes it (link count)
    /// without changing the content; size, mtime (ns) and inode are, as git's index does
    /// with `core.trustctime=false`.
    fn same_file(&self, known: &FileStamp) -> bool {
        self.size == known.size
            && self.mtime == known.mtime
            && self.mtime_nsec == known.mtime_nsec
            && self.ino == known.ino
    }

    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }
}

/// Remembered content checksums of one directory tree (the build context), by relative path.
pub struct ChecksumCache {
    file: Option<PathBuf>,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    known: HashMap<String, (FileStamp, [u8; 32])>,
    changed: bool,
}

impl ChecksumCache {
    /// Loads the checksums recorded for `root` under `cache_dir` (none when missing or
    /// unreadable: they are only a cache).
    pub fn load(cache_dir: &Path, root: &Path) -> ChecksumCache {
        let name = Digest::sha256_of(root.to_string_lossy().as_bytes());
        let file = cache_dir.join(name.hex());
        let known = read_checksums(&file).unwrap_or_default();
        ChecksumCache {
            file: Some(file),
            entries: Mutex::new(Entries {
                known,
                changed: false,
            }),
        }
    }

    /// A cache that is never written (for trees other than the context).
    pub fn ephemeral() -> ChecksumCache {
        ChecksumCache {
            file: None,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Writes the checksums back when something changed (temp file and rename).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.changed {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = file.with_extension(format!("tmp-{}", std::process::id()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        writeln!(out, "{CHECKSUM_FORMAT}")?;
        for (path, (s, sum)) in &entries.known {
            if path.contains('\n') {
                continue;
            }
            writeln!(
                out,
                "{} {} {} {} {} {} {} {path}",
                hex::encode(sum),
                s.size,
                s.mtime,
                s.mtime_nsec,
                s.ctime,
                s.ctime_nsec,
                s.ino
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, file)
    }

    fn file_sum(
        &self,
        rel: &str,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> std::io::Result<[u8; 32]> {
        let stamp = FileStamp::of(meta);
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((known, sum)) = entries.known.get(rel)
                && stamp.same_file(known)
            {
                return Ok(*sum);
            }
        }
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sum: [u8; 32] = hasher.finalize().into();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.known.insert(rel.to_string(), (stamp, sum));
        entries.changed = true;
        Ok(sum)
    }

    /// A digest of everything under `root/prefix` that the ignore rules keep: paths, types,
    /// permission bits, symlink targets and file contents (not times or owners, which COPY
    /// replaces). A `prefix` that is missing digests as missing.
    pub fn tree_digest(
        &self,
        root: &Path,
        prefix: &str,
        ignore: &IgnoreRules,
    ) -> std::io::Result<Digest> {
        let mut key = KeyBuilder::new("tree");
        key.add(prefix);
        let start = if prefix.is_empty() {
            root.to_path_buf()
        } else {
            root.join(prefix)
        };
        match std::fs::symlink_metadata(&start) {
            Ok(meta) => self.walk(root, prefix, &start, &meta, ignore, &mut key)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                key.add("missing");
            }
            Err(e) => return Err(e),
        }
        Ok(key.finish())
    }

    fn walk(
        &self,
        root: &Path,
        rel: &str,
        path: &Path,
        meta: &std::fs::Metadata,
        ignore: &IgnoreRules,
        key: &mut KeyBuilder,
    ) -> std::io::Result<()> {
        let excluded = !rel.is_empty() && ignore.is_excluded(rel);
        let ft = meta.file_type();
        if excluded && !(ft.is_dir() && ignore.may_include_below(rel)) {
            return Ok(());
        }
        let mode = format!("{:o}", meta.mode() & 0o7777);
        if ft.is_dir() {
            if !excluded {
                key.add("d").add(rel).add(&mode);
            }
            // Entries' metadata comes from fstatat on the open directory: no path walks.
            let mut entries: Vec<(std::ffi::OsString, std::fs::Metadata)> =
                std::fs::read_dir(path)?
                    .map(|e| e.and_then(|e| Ok((e.file_name(), e.metadata()?))))
                    .collect::<std::io::Result<_>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, child_meta) in entries {
                let name_str = name.to_string_lossy();
                let child_rel = if rel.is_empty() {
                    name_str.into_owned()
                } else {
                    format!("{rel}/{name_str}")
                };
                let child = path.join(&name);
                self.walk(root, &child_rel, &child, &child_meta, ignore, key)?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path)?;
            key.add("l")
                .add(rel)
                .add(target.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            let sum = self.file_sum(rel, path, meta)?;
            key.add("f").add(rel).add(&mode).add(sum);
        } else {
            key.add("o")
                .add(rel)
                .add(&mode)
                .add(meta.rdev().to_le_bytes());
        }
        let _ = root;
        Ok(())
    }
}

/// The part of a COPY source that names a fixed location: the components before the first
/// one with a glob, cleaned; `None` when the source leaves the root (the caller digests the
/// whole tree instead).
pub fn source_prefix(source: &str) -> Option<String> {
    let cleaned = clean_relative(source.trim_start_matches('/'))?;
    let mut parts = Vec::new();
    for part in cleaned.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if has_glob(part) {
            break;
        }
        parts.push(part);
    }
    Some(parts.join("/"))
}

/// Whether a directory on the way to `prefix` (or `prefix` itself) is a symlink, which COPY
/// may follow anywhere in the tree.
pub fn prefix_has_symlink(root: &Path, prefix: &str) -> bool {
    let mut path = root.to_path_buf();
    for part in prefix.split('/').filter(|p| !p.is_empty()) {
        path.push(part);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
            return true;
        }
    }
    false
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn read_checksums(file: &Path) -> Option<HashMap<String, (FileStamp, [u8; 32])>> {
    let reader = std::io::BufReader::new(std::fs::File::open(file).ok()?);
    let mut lines = reader.lines();
    if lines.next()?.ok()? != CHECKSUM_FORMAT {
        return None;
    }
    let mut known = HashMap::new();
    for line in lines {
        let line = line.ok()?;
        let mut fields = line.splitn(8, ' ');
        let sum = unhex(fields.next()?)?;
        let mut num = || fields.next()?.parse::<i64>().ok();
        let (size, mtime, mtime_nsec, ctime, ctime_nsec, ino) =
            (num()?, num()?, num()?, num()?, num()?, num()?);
        let path = fields.next()?.to_string();
        known.insert(
            path,
            (
                FileStamp {
                    size: size as u64,
                    mtime,
                    mtime_nsec,
                    ctime,
                    ctime_nsec,
                    ino: ino as u64,
                },
                sum,
            ),
        );
    }
    Some(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_prefix(source: &str, expected: Option<&str>) {
        assert_eq!(source_prefix(source).as_deref(), expected, "{source}");
    }

    #[test]
    fn source_prefixes() {
        check_prefix(".", Some(""));
        check_prefix("src/*.txt", Some("src"));
        check_prefix("/a/b/c", Some("a/b/c"));
        check_prefix("a/*/c", Some("a"));
        check_prefix("*", Some(""));
        check_prefix("../x", None);
    }

    #[test]
    fn tree_digest_follows_content_and_ignores_excluded_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.txt"), "one").unwrap();
        std::fs::write(dir.path().join("junk.log"), "x").unwrap();
        let rules = IgnoreRules::parse("*.log\n");
        let cache = ChecksumCache::load(cache_dir.path(), dir.path());
        let first = cache.tree_digest(dir.path(), "", &rules).unwrap();
        std::fs::write(dir.path().join("junk.log"), "changed").unwrap();
        assert_eq!(cache.tree_digest(dir.path(), "", &rules).unwrap(), first);
        std::fs::write(dir.path().join("src/a.txt"), "two").unwrap();
        let second = cache.tree_digest(dir.path(), "", &rules).unwrap();
        assert_ne!(second, first);
        cache.save().unwrap();
        // A reloaded cache gives the same digest and does not need to re-read unchanged files.
        let reloaded = ChecksumCache::load(cache_dir.path(), dir.path());
        assert_eq!(
            reloaded.tree_digest(dir.path(), "", &rules).unwrap(),
            second
        );
        assert!(!reloaded.entries.lock().unwrap().changed);
        assert_ne!(
            cache.tree_digest(dir.path(), "src", &rules).unwrap(),
            second,
            "a prefix digests a different tree"
        );
    }
}
