//! Garbage collection of a filesystem registry root: mark every blob reachable from a kept
//! manifest of any repository, sweep the rest.
//!
//! Offline (`strata registry gc`, no server on the root) it deletes every unmarked blob, purges
//! abandoned uploads and empties `tmp/`. Online (a server's periodic pass, holding the storage's
//! collection lock exclusively) it spares blobs whose bytes or any repository link are younger
//! than a grace period: a push in progress has blobs that no manifest references yet, and a
//! client that was just told a blob exists may reference it next. Online passes never delete
//! manifests, uploads or temporary files.

use std::collections::{BTreeSet, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use strata_oci::Digest;

use crate::manifest;
use crate::storage::{FsStorage, StorageError, StorageResult};

#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Report only; change nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (directly, through a tagged index, or as a
    /// referrer of a kept manifest).
    pub delete_untagged: bool,
    /// Online pass: spare blobs with bytes or links younger than this (see the module doc).
    pub grace: Option<Duration>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// `(repository, digest)` of deleted manifest revisions.
    pub manifests_deleted: Vec<(String, Digest)>,
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    /// Upload sessions abandoned for longer than [`UPLOAD_MAX_AGE`].
    pub uploads_deleted: Vec<String>,
}

/// Uploads untouched for this long are abandoned (Distribution's default purge age).
pub const UPLOAD_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

fn list(path: &Path) -> StorageResult<Vec<String>> {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io_error(path))?;
                names.extend(entry.file_name().to_str().map(str::to_owned));
            }
            names.sort();
            Ok(names)
        }
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Digests stored as `<dir>/<alg>/<hex>` files.
fn digests_under(dir: &Path) -> StorageResult<Vec<Digest>> {
    let mut digests = Vec::new();
    for algorithm in list(dir)? {
        for hex in list(&dir.join(&algorithm))? {
            if let Ok(digest) = format!("{algorithm}:{hex}").parse() {
                digests.push(digest);
            }
        }
    }
    Ok(digests)
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

fn remove(path: &Path) -> StorageResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Runs an offline collection over the registry root `root` (no server may use it).
pub fn collect(root: &Path, options: GcOptions) -> StorageResult<GcReport> {
    // Opening checks the format version before anything is deleted.
    FsStorage::open(root)?;
    collect_in(root, options)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The collection itself; online callers hold the storage's collection lock exclusively.
pub(crate) fn collect_in(root: &Path, options: GcOptions) -> StorageResult<GcReport> {
    let online = options.grace.is_some();
    let options = GcOptions {
        delete_untagged: options.delete_untagged && !online,
        ..options
    };
    let repositories = crate::storage::list_repositories(root)?;
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    // Blobs an online pass must spare: bytes or a link younger than the grace period.
    let mut recent: HashSet<Digest> = HashSet::new();
    let cutoff = options.grace.map(|grace| {
        SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    let is_recent =
        |path: &Path| cutoff.is_some_and(|cutoff| modified(path).is_none_or(|time| time > cutoff));
    if cutoff.is_some() {
        for repository in &repositories {
            let layers_dir = root.join("repositories").join(repository).join("_layers");
            for digest in digests_under(&layers_dir)? {
                let link = layers_dir
                    .join(digest.algorithm().as_str())
                    .join(digest.hex());
                if is_recent(&link) {
                    recent.insert(digest);
                }
            }
        }
    }

    for repository in &repositories {
        let repo_dir = root.join("repositories").join(repository);
        let revisions_dir = repo_dir.join("_manifests/revisions");
        let revisions = digests_under(&revisions_dir)?;
        let parsed: Vec<(Digest, Option<manifest::ParsedManifest>)> = revisions
            .iter()
            .map(|digest| {
                let bytes = std::fs::read(blob_path(root, digest)).ok();
                let parsed = bytes.and_then(|bytes| manifest::parse(&bytes).ok());
                (digest.clone(), parsed)
            })
            .collect();

        // Which revisions stay.
        let mut kept: BTreeSet<Digest> = BTreeSet::new();
        if options.delete_untagged {
            let tags_dir = repo_dir.join("_manifests/tags");
            for tag in list(&tags_dir)? {
                let text = std::fs::read_to_string(tags_dir.join(&tag)).unwrap_or_default();
                if let Ok(digest) = text.trim().parse() {
                    kept.insert(digest);
                }
            }
            // Close over index children and referrers of kept manifests.
            loop {
                let before = kept.len();
                for (digest, manifest) in &parsed {
                    let Some(manifest) = manifest else { continue };
                    if kept.contains(digest) {
                        kept.extend(manifest.references.manifests.iter().cloned());
                    } else if manifest
                        .subject
                        .as_ref()
                        .is_some_and(|subject| kept.contains(subject))
                    {
                        kept.insert(digest.clone());
                    }
                }
                if kept.len() == before {
                    break;
                }
            }
        } else {
            kept.extend(revisions.iter().cloned());
        }

        for (digest, manifest) in &parsed {
            if kept.contains(digest) {
                marked.insert(digest.clone());
                if let Some(manifest) = manifest {
                    marked.extend(manifest.references.blobs.iter().cloned());
                }
                continue;
            }
            report
                .manifests_deleted
                .push((repository.clone(), digest.clone()));
            if !options.dry_run {
                remove(
                    &revisions_dir
                        .join(digest.algorithm().as_str())
                        .join(digest.hex()),
                )?;
                if let Some(subject) = manifest
                    .as_ref()
                    .and_then(|manifest| manifest.subject.as_ref())
                {
                    let link = repo_dir
                        .join("_referrers")
                        .join(subject.algorithm().as_str())
                        .join(subject.hex())
                        .join(format!("{}-{}", digest.algorithm(), digest.hex()));
                    remove(&link)?;
                }
            }
        }
    }

    for digest in digests_under(&root.join("blobs"))? {
        let path = blob_path(root, &digest);
        if marked.contains(&digest) || recent.contains(&digest) || is_recent(&path) {
            continue;
        }
        report.bytes_freed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if !options.dry_run {
            remove(&path)?;
        }
        report.blobs_deleted.push(digest);
    }

    // Layer links to swept blobs would otherwise make HEAD say "exists" after a re-push check.
    if !options.dry_run {
        for repository in &repositories {
            let layers_dir = root.join("repositories").join(repository).join("_layers");
            for digest in digests_under(&layers_dir)? {
                if !blob_path(root, &digest).exists() {
                    remove(
                        &layers_dir
                            .join(digest.algorithm().as_str())
                            .join(digest.hex()),
                    )?;
                }
            }
        }
    }
    if online {
        return Ok(report);
    }
    // Abandoned uploads (judged by the data file's mtime, which every chunk updates) and
    // temporary files of writes that never reached their rename.
    let now = SystemTime::now();
    for id in list(&root.join("uploads"))? {
        let dir = root.join("uploads").join(&id);
        let modified = std::fs::metadata(dir.join("data"))
            .or_else(|_| std::fs::metadata(&dir))
            .and_then(|metadata| metadata.modified());
        let abandoned = modified
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_none_or(|age| age > UPLOAD_MAX_AGE);
        if abandoned {
            if !options.dry_run {
                std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
            }
            report.uploads_deleted.push(id);
        }
    }
    if !options.dry_run {
        for name in list(&root.join("tmp"))? {
            let path = root.join("tmp").join(name);
            remove(&path)?;
        }
    }

    Ok(report)
}
