//! COPY and ADD: the sources are staged under their destination path in a directory that then
//! becomes the layer.
//!
//! Docker's rules, as BuildKit applies them: a directory source copies its contents; globs
//! (Go `filepath.Match`) may match several entries, and the destination must then be a
//! directory; symlinks inside a copied tree stay symlinks, files hard-linked together stay
//! hard-linked; `--exclude` patterns (`.dockerignore` syntax) filter paths relative to each
//! source; `--parents` keeps the source's path below the context root (or below a `/./`
//! pivot); `--link` stages the files without looking at the stage's filesystem (BuildKit
//! copies onto an empty layer and merges it); ADD also downloads URLs ([`crate::add`]) and
//! extracts local tar archives.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_dockerfile::{Heredoc, Instruction, PlannedStep};

use crate::add;
use crate::git;
use crate::mode::ModeSpec;
use crate::pattern::{IgnoreRules, clean_absolute, clean_relative, glob_match, has_glob};
use crate::state::StageState;
use crate::{BuildError, step_error};

pub struct CopyRequest<'a> {
    pub sources: &'a [String],
    pub heredocs: &'a [Heredoc],
    pub dest: &'a str,
    pub from: Option<&'a str>,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    pub is_add: bool,
    /// `--link` as BuildKit honours it: not together with `--chmod` (it then copies as usual).
    pub link: bool,
    pub parents: bool,
    pub exclude: &'a [String],
    /// `ADD --checksum` of the one URL or git source.
    pub checksum: Option<&'a str>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
}

impl<'a> CopyRequest<'a> {
    /// The request of a COPY or ADD step; flag combinations BuildKit rejects, and what this
    /// version cannot do (git sources), are errors naming the instruction and line.
    pub fn from_instruction(step: &'a PlannedStep) -> Result<CopyRequest<'a>, BuildError> {
        match &step.instruction {
            Instruction::Copy(c) => {
                for src in &c.sources {
                    if add::is_git(src) {
                        return Err(step_error(step, "source can't be a git ref for COPY"));
                    }
                    if add::is_url(src) {
                        return Err(step_error(step, "source can't be a URL for COPY"));
                    }
                }
                Ok(CopyRequest {
                    sources: &c.sources,
                    heredocs: &c.heredocs,
                    dest: &c.dest,
                    from: c.from.as_deref(),
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    is_add: false,
                    link: c.link && c.chmod.is_none(),
                    parents: c.parents,
                    exclude: &c.exclude,
                    checksum: None,
                    keep_git_dir: false,
                })
            }
            Instruction::Add(a) => {
                if let Some(checksum) = &a.checksum {
                    if a.sources.len() + a.heredocs.len() != 1 {
                        return Err(step_error(
                            step,
                            "checksum can't be specified for multiple sources",
                        ));
                    }
                    match a.sources.first() {
                        Some(s) if add::is_url(s) => {
                            add::parse_checksum(checksum).map_err(|e| {
                                step_error(step, format!("--checksum={checksum}: {e}"))
                            })?;
                        }
                        Some(s) if add::is_git(s) => {}
                        _ => {
                            return Err(step_error(
                                step,
                                "checksum requires HTTP(S) or Git sources",
                            ));
                        }
                    }
                }
                Ok(CopyRequest {
                    sources: &a.sources,
                    heredocs: &a.heredocs,
                    dest: &a.dest,
                    from: None,
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    is_add: true,
                    link: a.link && a.chmod.is_none(),
                    parents: false,
                    exclude: &a.exclude,
                    checksum: a.checksum.as_deref(),
                    keep_git_dir: a.keep_git_dir.unwrap_or(false),
                })
            }
            other => Err(step_error(
                step,
                format!("{} is not COPY or ADD", other.name()),
            )),
        }
    }
}

/// Where sources are read from: the context (with its ignore rules) or a stage/image root.
pub struct SourceRoot {
    pub dir: PathBuf,
    pub ignore: IgnoreRules,
}

struct Ownership {
    uid: u32,
    gid: u32,
    mode: Option<ModeSpec>,
}

impl Ownership {
    /// The mode a copied entry gets from its source `mode`.
    fn mode_for(&self, mode: u32, is_dir: bool) -> u32 {
        self.mode
            .as_ref()
            .map_or(mode & 0o7777, |m| m.apply(mode, is_dir))
    }
}

/// The stage's filesystem as a copy sees it: none at all for `--link`, whose layer must not
/// depend on what is below it.
#[derive(Clone, Copy)]
pub(crate) struct BaseFs<'a>(Option<&'a StageState>);

impl BaseFs<'_> {
    fn resolve(&self, path: &str, follow_last: bool) -> String {
        match self.0 {
            Some(state) => state.resolve_path(path, follow_last),
            None => clean_absolute(path),
        }
    }

    fn rootfs_path(&self, rel: &str) -> Option<PathBuf> {
        self.0?.rootfs_path(rel)
    }

    fn is_dir(&self, path: &str) -> bool {
        self.rootfs_path(path)
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_dir())
    }
}

/// The text of a small file of the image (`/etc/passwd`), its symlinks resolved inside the
/// image.
fn read_image_file(state: &StageState, file: &str) -> Option<String> {
    let resolved = state.resolve_path(&format!("/{file}"), true);
    let path = state.rootfs_path(&resolved)?;
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

fn lookup(state: &StageState, file: &str, name: &str) -> Option<(u32, u32)> {
    let text = read_image_file(state, file)?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) || fields.len() < 3 {
            return None;
        }
        let id = fields[2].parse().ok()?;
        let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
        Some((id, gid))
    })
}

/// Resolves `user[:group]` (names via the stage's /etc/passwd and /etc/group). For `--chown`
/// (`chown_rules`) a lone numeric user also gives the group; for USER the group defaults to
/// the user's passwd entry, or 0.
pub fn resolve_user(
    state: &StageState,
    spec: &str,
    chown_rules: bool,
) -> Result<(u32, u32), String> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, passwd_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, lookup_uid_gid(state, uid)),
        Err(_) => {
            let (uid, gid) = lookup(state, "etc/passwd", user).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?;
            (uid, Some(gid))
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(state, "etc/group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
        None => match passwd_gid {
            Some(gid) => gid,
            None if chown_rules => uid,
            None => 0,
        },
    };
    Ok((uid, gid))
}

fn lookup_uid_gid(state: &StageState, uid: u32) -> Option<u32> {
    let text = read_image_file(state, "etc/passwd")?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[2].parse::<u32>().ok() == Some(uid) {
            fields[3].parse().ok()
        } else {
            None
        }
    })
}

fn io(step: &PlannedStep, what: impl std::fmt::Display, e: std::io::Error) -> BuildError {
    step_error(step, format!("{what}: {e}"))
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let time = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let ts = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

fn set_mtime_of(path: &Path, meta: &std::fs::Metadata) {
    set_mtime(path, meta.mtime(), meta.mtime_nsec());
}

/// One thing to copy, found from a source argument.
enum Item {
    /// A file or directory of the source root (`name`: its name in a destination directory;
    /// `context_rel`: its path below the root, for the ignore rules).
    Local {
        path: PathBuf,
        name: String,
        context_rel: Option<String>,
    },
    /// A heredoc written to a file.
    Heredoc { path: PathBuf, name: String },
    /// A downloaded URL.
    Url {
        download: add::Download,
        name: String,
    },
    /// `--parents`: `paths` (relative to `base`, which is `base_rel` below the root) are
    /// copied with the directories leading to them.
    Parents {
        base: PathBuf,
        base_rel: String,
        paths: Vec<String>,
    },
}

/// Stages the request into `staging`; returns the history `created_by`. URLs are downloaded
/// into (or taken from) `downloads`.
#[allow(clippy::too_many_arguments)]
pub fn stage_copy(
    req: &CopyRequest<'_>,
    root: &SourceRoot,
    heredoc_dir: &Path,
    downloads: &Path,
    staging: &Path,
    state: &StageState,
    step: &PlannedStep,
) -> Result<Staged, BuildError> {
    let name = if req.is_add { "ADD" } else { "COPY" };
    let (uid, gid) = match req.chown {
        Some(spec) => resolve_user(state, spec, true)
            .map_err(|m| step_error(step, format!("--chown={spec}: {m}")))?,
        None => (0, 0),
    };
    let mode = req
        .chmod
        .map(ModeSpec::parse)
        .transpose()
        .map_err(|m| step_error(step, m))?;
    let own = Ownership { uid, gid, mode };
    let exclude = IgnoreRules::parse(&req.exclude.join("\n"));
    let base = BaseFs(if req.link { None } else { Some(state) });
    let workdir = state.workdir();
    let dest_abs = if req.dest.starts_with('/') {
        req.dest.to_string()
    } else {
        format!("{workdir}/{}", req.dest)
    };
    // Symlinks on the way (e.g. /bin -> usr/bin) are followed inside the image, never
    // replaced; so is the destination itself (BuildKit resolves the whole destination path:
    // a file copied onto a symlink replaces the link's target, the link stays).
    let dest_clean = base.resolve(&clean_absolute(&dest_abs), true);
    let mut dest_is_dir = req.dest.ends_with('/')
        || req.dest == "."
        || req.dest.ends_with("/.")
        || base.is_dir(&dest_clean)
        || req.parents;

    let items = collect_items(req, root, heredoc_dir, downloads, &exclude, step)?;
    let count: usize = items
        .iter()
        .map(|i| match i {
            Item::Parents { paths, .. } => paths.len(),
            _ => 1,
        })
        .sum();
    if count > 1 && !dest_is_dir {
        return Err(step_error(
            step,
            format!(
                "When using {name} with more than one source file, the destination must be a directory and end with a /"
            ),
        ));
    }
    if count > 1 {
        dest_is_dir = true;
    }

    let dest_rel = dest_clean.trim_start_matches('/').to_string();
    // The working directory is created by the first RUN/COPY after WORKDIR.
    let workdir_resolved = base.resolve(&workdir, true);
    if !req.link && workdir_resolved != "/" && base.rootfs_path(&workdir_resolved).is_none() {
        ensure_dirs(
            staging,
            workdir_resolved.trim_start_matches('/'),
            base,
            &own,
            step,
        )?;
    }
    let copier = Copier {
        root,
        exclude: &exclude,
        own: &own,
        step,
        hardlinks: std::sync::Mutex::new(HashMap::new()),
        threaded: std::sync::atomic::AtomicBool::new(false),
        linked: std::sync::atomic::AtomicBool::new(false),
    };
    for item in &items {
        // BuildKit copies each source on its own: hard links are kept within one source.
        copier
            .hardlinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        match item {
            Item::Local {
                path,
                name,
                context_rel,
            } => {
                let meta = std::fs::metadata(path).map_err(|e| io(step, path.display(), e))?;
                if meta.is_dir() {
                    ensure_dirs(staging, &dest_rel, base, &own, step)?;
                    let target = staging.join(&dest_rel);
                    copier.copy_tree(path, &target, context_rel.as_deref(), "")?;
                    continue;
                }
                if req.is_add {
                    let kind = add::archive_kind(path).map_err(|e| step_error(step, e))?;
                    if let Some(kind) = kind {
                        ensure_dirs(staging, &dest_rel, base, &own, step)?;
                        let target = staging.join(&dest_rel);
                        copier.extract(path, kind, &target, heredoc_dir, req.chown.is_some())?;
                        continue;
                    }
                }
                let target = file_target(staging, &dest_rel, dest_is_dir, name, base, &own, step)?;
                copier.copy_entry(path, &target)?;
            }
            Item::Heredoc { path, name } => {
                let target = file_target(staging, &dest_rel, dest_is_dir, name, base, &own, step)?;
                copier.copy_entry(path, &target)?;
            }
            Item::Url { download, name } => {
                let target = file_target(staging, &dest_rel, dest_is_dir, name, base, &own, step)?;
                copier.copy_download(download, &target)?;
            }
            Item::Parents {
                base: parents_base,
                base_rel,
                paths,
            } => {
                ensure_dirs(staging, &dest_rel, base, &own, step)?;
                let target = staging.join(&dest_rel);
                copier.copy_parents(parents_base, base_rel, paths, &target)?;
            }
        }
    }
    let mut msg = String::from(name);
    if req.parents {
        msg.push_str(" --parents");
    }
    if let Some(chown) = req.chown {
        msg.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = req.chmod {
        msg.push_str(&format!(" --chmod={chmod}"));
    }
    for s in req.sources {
        msg.push(' ');
        msg.push_str(s);
    }
    for h in req.heredocs {
        msg.push_str(&format!(" <<{}", h.name));
    }
    msg.push(' ');
    msg.push_str(req.dest);
    msg.push_str(" # buildkit");
    Ok(Staged {
        created_by: msg,
        linked: copier.linked.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// What [`stage_copy`] staged.
pub struct Staged {
    /// The history `created_by`.
    pub created_by: String,
    /// Some staged files are hard links to their sources (whose metadata already was what
    /// the copy gives): the staging directory may be read into the layer but must not outlive
    /// the build, since its files change whenever their sources do.
    pub linked: bool,
}

/// Where a non-directory source lands: `dest/name` in a destination directory, else `dest`
/// itself; the directories leading there are created.
fn file_target(
    staging: &Path,
    dest_rel: &str,
    dest_is_dir: bool,
    name: &str,
    base: BaseFs<'_>,
    own: &Ownership,
    step: &PlannedStep,
) -> Result<PathBuf, BuildError> {
    let target_rel = if dest_is_dir {
        ensure_dirs(staging, dest_rel, base, own, step)?;
        if dest_rel.is_empty() {
            name.to_string()
        } else {
            format!("{dest_rel}/{name}")
        }
    } else {
        if let Some((parent, _)) = dest_rel.rsplit_once('/') {
            ensure_dirs(staging, parent, base, own, step)?;
        }
        dest_rel.to_string()
    };
    if target_rel.is_empty() {
        return Err(step_error(step, "cannot copy a file onto /"));
    }
    Ok(staging.join(target_rel))
}

/// The items the request's sources name, in BuildKit's order: the sources, then heredocs.
fn collect_items(
    req: &CopyRequest<'_>,
    root: &SourceRoot,
    heredoc_dir: &Path,
    downloads: &Path,
    exclude: &IgnoreRules,
    step: &PlannedStep,
) -> Result<Vec<Item>, BuildError> {
    let mut items = Vec::new();
    for src in req.sources {
        if req.is_add && add::is_git(src) {
            let path = git_checkout(src, req, downloads).map_err(|e| step_error(step, e))?;
            items.push(Item::Local {
                path,
                name: String::new(),
                context_rel: None,
            });
            continue;
        }
        if req.is_add && add::is_url(src) {
            let download =
                add::fetch(downloads, src, req.checksum).map_err(|e| step_error(step, e))?;
            items.push(Item::Url {
                download,
                name: add::url_file_name(src),
            });
            continue;
        }
        if req.parents {
            items.push(parents_item(src, root, exclude, step)?);
            continue;
        }
        let rel = clean_relative(src).ok_or_else(|| {
            step_error(
                step,
                format!("{src}: source path escapes the build context"),
            )
        })?;
        if has_glob(&rel) {
            // A glob may match nothing (BuildKit allows empty wildcards), but the directory
            // before its first glob must exist.
            let fixed = fixed_prefix(&rel);
            if !fixed.is_empty() {
                inside_root(&root.dir, &root.dir.join(&fixed), src, step)?;
            }
            let mut found = Vec::new();
            walk_matches(&root.dir, "", &rel, &root.ignore, &mut found)
                .map_err(|e| io(step, src, e))?;
            // `--exclude` filters the matches too, relative to the glob's fixed directory.
            found.retain(|r| {
                let below = r
                    .strip_prefix(&fixed)
                    .map_or(r.as_str(), |s| s.trim_start_matches('/'));
                !exclude.is_excluded(below)
            });
            for r in found {
                let name = r.rsplit('/').next().unwrap_or(&r).to_string();
                let path = inside_root(&root.dir, &root.dir.join(&r), src, step)?;
                items.push(Item::Local {
                    context_rel: context_rel(root, &path),
                    path,
                    name,
                });
            }
            continue;
        }
        if !rel.is_empty() && root.ignore.is_excluded(&rel) {
            return Err(step_error(step, format!("\"/{rel}\": not found")));
        }
        let path = if rel.is_empty() {
            root.dir.clone()
        } else {
            root.dir.join(&rel)
        };
        // The source itself may be a symlink: follow it, but never out of the root.
        let canonical = inside_root(&root.dir, &path, src, step)?;
        items.push(Item::Local {
            context_rel: context_rel(root, &canonical),
            path: canonical,
            name: rel.rsplit('/').next().unwrap_or("").to_string(),
        });
    }
    for h in req.heredocs {
        let path = heredoc_dir.join(&h.name);
        std::fs::write(&path, &h.content).map_err(|e| io(step, &h.name, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io(step, &h.name, e))?;
        items.push(Item::Heredoc {
            path,
            name: h.name.clone(),
        });
    }
    Ok(items)
}

/// Checks a git source out (see [`crate::git`]); `--checksum` must name its commit.
fn git_checkout(src: &str, req: &CopyRequest<'_>, downloads: &Path) -> Result<PathBuf, String> {
    let source = git::GitRef::parse(src)?;
    let commit = git::resolve(&source)?;
    if let Some(checksum) = req.checksum
        && (checksum.len() < 7 || !commit.starts_with(&checksum.to_ascii_lowercase()))
    {
        return Err(format!(
            "checksum mismatch for {src}: expected {checksum}, got commit {commit}"
        ));
    }
    git::checkout(downloads, &source, &commit, req.keep_git_dir)
}

fn context_rel(root: &SourceRoot, path: &Path) -> Option<String> {
    path.strip_prefix(&root.dir)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The components of a cleaned relative path before the first one with a glob.
fn fixed_prefix(rel: &str) -> String {
    rel.split('/')
        .take_while(|p| !has_glob(p))
        .collect::<Vec<_>>()
        .join("/")
}

/// `COPY --parents src`: the source splits at a `/./` pivot into the directory copied from
/// and the path pattern kept below it (without a pivot, from the root). A pattern without
/// globs must exist; globs may match nothing (BuildKit's rules).
fn parents_item(
    src: &str,
    root: &SourceRoot,
    exclude: &IgnoreRules,
    step: &PlannedStep,
) -> Result<Item, BuildError> {
    let (parent, pattern) = match src.split_once("/./") {
        Some((parent, pattern)) => (parent, pattern),
        None => ("", src),
    };
    let escapes = || {
        step_error(
            step,
            format!("{src}: source path escapes the build context"),
        )
    };
    let base_rel = clean_relative(parent).ok_or_else(escapes)?;
    let pattern = clean_relative(pattern).ok_or_else(escapes)?;
    let base = inside_root(&root.dir, &root.dir.join(&base_rel), src, step)?;
    let base_rel = context_rel(root, &base).unwrap_or_default();
    let mut paths = Vec::new();
    if pattern.is_empty() {
        paths.push(String::new());
    } else if !has_glob(&pattern) {
        let full = if base_rel.is_empty() {
            pattern.clone()
        } else {
            format!("{base_rel}/{pattern}")
        };
        if root.ignore.is_excluded(&full) || std::fs::symlink_metadata(base.join(&pattern)).is_err()
        {
            return Err(step_error(step, format!("\"/{full}\": not found")));
        }
        if !exclude.is_excluded(&pattern) {
            paths.push(pattern);
        }
    } else {
        let mut found = Vec::new();
        let ignore = root.ignore.clone();
        walk_matches_filtered(&base, "", &pattern, &mut found, &|rel: &str| {
            let full = if base_rel.is_empty() {
                rel.to_string()
            } else {
                format!("{base_rel}/{rel}")
            };
            ignore.is_excluded(&full) || exclude.is_excluded(rel)
        })
        .map_err(|e| io(step, src, e))?;
        paths = found;
    }
    Ok(Item::Parents {
        base,
        base_rel,
        paths,
    })
}

/// Threads copying the subdirectories of a large directory.
const COPY_THREADS: usize = 3;

/// A subdirectory to copy: where from and to, and what the rules said about it.
struct DirJob {
    path: PathBuf,
    dest: PathBuf,
    meta: std::fs::Metadata,
    child_ctx: Option<String>,
    child_src: String,
    /// Ignored or excluded itself, but something below may be included.
    filtered: bool,
    created: bool,
}

/// Copies file trees with one owner and mode rule, keeping hard links between the files it
/// copies.
struct Copier<'a> {
    root: &'a SourceRoot,
    exclude: &'a IgnoreRules,
    own: &'a Ownership,
    step: &'a PlannedStep,
    /// Source (device, inode) of files with several links -> where the first one was staged.
    hardlinks: std::sync::Mutex<HashMap<(u64, u64), PathBuf>>,
    /// Set while subdirectories are being copied on threads: nested directories stay on
    /// their thread.
    threaded: std::sync::atomic::AtomicBool,
    /// Whether a file was staged as a hard link to its source.
    linked: std::sync::atomic::AtomicBool,
}

impl Copier<'_> {
    fn io(&self, what: impl std::fmt::Display, e: std::io::Error) -> BuildError {
        io(self.step, what, e)
    }

    /// Copies one non-directory entry (file, symlink) to `target`.
    fn copy_entry(&self, source: &Path, target: &Path) -> Result<(), BuildError> {
        let meta = std::fs::symlink_metadata(source).map_err(|e| self.io(source.display(), e))?;
        self.copy_entry_with(source, &meta, target, false)
    }

    /// [`Copier::copy_entry`] with the source's metadata known; `fresh` when `target`'s
    /// directory was just created, so nothing is there to replace.
    fn copy_entry_with(
        &self,
        source: &Path,
        meta: &std::fs::Metadata,
        target: &Path,
        fresh: bool,
    ) -> Result<(), BuildError> {
        if !fresh {
            remove_existing(target).map_err(|e| self.io(target.display(), e))?;
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link = std::fs::read_link(source).map_err(|e| self.io(source.display(), e))?;
            std::os::unix::fs::symlink(&link, target).map_err(|e| self.io(target.display(), e))?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                // Held across the copy, so a link found by another thread is complete.
                let mut links = self.hardlinks.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    return std::fs::hard_link(first, target)
                        .map_err(|e| self.io(target.display(), e));
                }
                links.insert((meta.dev(), meta.ino()), target.to_path_buf());
                return self.copy_file(source, meta, target);
            }
            return self.copy_file(source, meta, target);
        } else {
            // Sockets, FIFOs and devices are not copied.
            return Ok(());
        }
        self.finish(target, meta)
    }

    /// A regular file: content (in-kernel copy), owner, mode and mtime set on the open
    /// descriptor, so each file costs two opens and no further path lookups.
    fn copy_file(
        &self,
        source: &Path,
        meta: &std::fs::Metadata,
        target: &Path,
    ) -> Result<(), BuildError> {
        use std::os::unix::fs::OpenOptionsExt;
        // A source that already has the owner, mode and mtime the copy would give is staged as
        // a hard link (no data copied); the staging dir is then never kept (see `Staged`).
        // Sources with several links are copied, so the layer's own hard links stay exact.
        let mode = self.own.mode_for(meta.mode(), false);
        if meta.uid() == self.own.uid
            && meta.gid() == self.own.gid
            && meta.mode() & 0o7777 == mode
            && meta.nlink() == 1
            && std::fs::hard_link(source, target).is_ok()
        {
            self.linked
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let mut from = std::fs::File::open(source).map_err(|e| self.io(source.display(), e))?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(|e| self.io(target.display(), e))?;
        std::io::copy(&mut from, &mut to).map_err(|e| self.io(source.display(), e))?;
        rustix::fs::fchown(
            &to,
            Some(rustix::fs::Uid::from_raw(self.own.uid)),
            Some(rustix::fs::Gid::from_raw(self.own.gid)),
        )
        .map_err(|e| self.io(target.display(), e.into()))?;
        // After chown, which clears set-id bits.
        let mode = self.own.mode_for(meta.mode(), false);
        rustix::fs::fchmod(&to, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| self.io(target.display(), e.into()))?;
        let time = rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        };
        rustix::fs::futimens(
            &to,
            &rustix::fs::Timestamps {
                last_access: time,
                last_modification: time,
            },
        )
        .map_err(|e| self.io(target.display(), e.into()))?;
        Ok(())
    }

    /// Owner, mode and mtime of a staged entry from its source metadata.
    fn finish(&self, target: &Path, meta: &std::fs::Metadata) -> Result<(), BuildError> {
        std::os::unix::fs::lchown(target, Some(self.own.uid), Some(self.own.gid))
            .map_err(|e| self.io(target.display(), e))?;
        if !meta.file_type().is_symlink() {
            // Set after chown, which clears set-id bits.
            let mode = self.own.mode_for(meta.mode(), meta.is_dir());
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| self.io(target.display(), e))?;
        }
        set_mtime_of(target, meta);
        Ok(())
    }

    /// A downloaded file: mode 0600 unless `--chmod`, its `Last-Modified` time.
    fn copy_download(&self, download: &add::Download, target: &Path) -> Result<(), BuildError> {
        remove_existing(target).map_err(|e| self.io(target.display(), e))?;
        std::fs::copy(&download.path, target).map_err(|e| self.io(download.path.display(), e))?;
        std::os::unix::fs::lchown(target, Some(self.own.uid), Some(self.own.gid))
            .map_err(|e| self.io(target.display(), e))?;
        let mode = self.own.mode_for(0o600, false);
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.io(target.display(), e))?;
        set_mtime(target, download.mtime, 0);
        Ok(())
    }

    /// Copies the contents of directory `source` into `target` (which exists), skipping what
    /// the ignore rules exclude (`ctx_rel`: `source` relative to the source root) and what
    /// `--exclude` excludes (`src_rel`: relative to the copied source).
    fn copy_tree(
        &self,
        source: &Path,
        target: &Path,
        ctx_rel: Option<&str>,
        src_rel: &str,
    ) -> Result<(), BuildError> {
        self.copy_tree_into(source, target, ctx_rel, src_rel, false)
    }

    /// [`Copier::copy_tree`]; `fresh` when `target` was just created (empty).
    fn copy_tree_into(
        &self,
        source: &Path,
        target: &Path,
        ctx_rel: Option<&str>,
        src_rel: &str,
        fresh: bool,
    ) -> Result<(), BuildError> {
        let mut entries: Vec<_> = std::fs::read_dir(source)
            .map_err(|e| self.io(source.display(), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.io(source.display(), e))?;
        entries.sort_by_key(|e| e.file_name());
        let mut dirs: Vec<DirJob> = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            let name_text = name.to_string_lossy();
            let join = |r: &str| {
                if r.is_empty() {
                    name_text.to_string()
                } else {
                    format!("{r}/{name_text}")
                }
            };
            let child_ctx = ctx_rel.map(join);
            let child_src = join(src_rel);
            let path = entry.path();
            // fstatat on the open directory, not a walk of the whole path.
            let meta = entry.metadata().map_err(|e| self.io(path.display(), e))?;
            let ignored = child_ctx
                .as_deref()
                .is_some_and(|r| self.root.ignore.is_excluded(r));
            let excluded = self.exclude.is_excluded(&child_src);
            let may_include = meta.is_dir()
                && (!ignored
                    || self
                        .root
                        .ignore
                        .may_include_below(child_ctx.as_deref().unwrap_or("")))
                && (!excluded || self.exclude.may_include_below(&child_src));
            if (ignored || excluded) && !may_include {
                continue;
            }
            let dest = target.join(&name);
            if meta.is_dir() {
                let mut created = false;
                if fresh || !std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    if !fresh {
                        let _ = std::fs::remove_file(&dest);
                    }
                    std::fs::create_dir(&dest).map_err(|e| self.io(dest.display(), e))?;
                    created = true;
                }
                dirs.push(DirJob {
                    path,
                    dest,
                    meta,
                    child_ctx,
                    child_src,
                    filtered: ignored || excluded,
                    created,
                });
            } else {
                self.copy_entry_with(&path, &meta, &dest, fresh)?;
            }
        }
        // Many subdirectories: copy them on a few threads (file copies are kernel work that
        // a second core speeds up); a directory's own metadata is set when its contents are done.
        let threads = if dirs.len() >= 8
            && !self
                .threaded
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            COPY_THREADS
        } else {
            1
        };
        if threads == 1 {
            for job in &dirs {
                self.copy_dir_job(job)?;
            }
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<(), BuildError> {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= dirs.len() || failed.load(std::sync::atomic::Ordering::Relaxed)
                            {
                                return Ok(());
                            }
                            if let Err(e) = self.copy_dir_job(&dirs[i]) {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    })
                })
                .collect();
            let mut result = Ok(());
            for worker in workers {
                match worker.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                    Err(_) => {
                        result = Err(step_error(self.step, "a copy thread panicked"));
                    }
                }
            }
            self.threaded
                .store(false, std::sync::atomic::Ordering::SeqCst);
            result
        })
    }

    fn copy_dir_job(&self, job: &DirJob) -> Result<(), BuildError> {
        self.copy_tree_into(
            &job.path,
            &job.dest,
            job.child_ctx.as_deref(),
            &job.child_src,
            job.created,
        )?;
        if job.filtered && std::fs::read_dir(&job.dest).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(&job.dest);
            return Ok(());
        }
        self.finish(&job.dest, &job.meta)
    }

    /// `--parents`: each of `paths` (relative to `base`) lands at `target/<path>`, the
    /// directories leading to it copied with their metadata.
    fn copy_parents(
        &self,
        base: &Path,
        base_rel: &str,
        paths: &[String],
        target: &Path,
    ) -> Result<(), BuildError> {
        let mut parents: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
        for rel in paths {
            let mut current = String::new();
            let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
            for part in parts.iter().take(parts.len().saturating_sub(1)) {
                if !current.is_empty() {
                    current.push('/');
                }
                current.push_str(part);
                let dest = target.join(&current);
                if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                let _ = std::fs::remove_file(&dest);
                let meta = std::fs::metadata(base.join(&current))
                    .map_err(|e| self.io(base.join(&current).display(), e))?;
                std::fs::create_dir(&dest).map_err(|e| self.io(dest.display(), e))?;
                parents.push((dest, meta));
            }
            let source = if rel.is_empty() {
                base.to_path_buf()
            } else {
                base.join(rel)
            };
            let dest = if rel.is_empty() {
                target.to_path_buf()
            } else {
                target.join(rel)
            };
            let ctx_rel = match (base_rel.is_empty(), rel.is_empty()) {
                (true, _) => rel.clone(),
                (false, true) => base_rel.to_string(),
                (false, false) => format!("{base_rel}/{rel}"),
            };
            let meta =
                std::fs::symlink_metadata(&source).map_err(|e| self.io(source.display(), e))?;
            if meta.is_dir() {
                if !std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    let _ = std::fs::remove_file(&dest);
                    std::fs::create_dir(&dest).map_err(|e| self.io(dest.display(), e))?;
                }
                self.copy_tree(&source, &dest, Some(&ctx_rel), rel)?;
                if !rel.is_empty() {
                    parents.push((dest, meta));
                }
            } else {
                self.copy_entry(&source, &dest)?;
            }
        }
        // Deepest first, so setting a directory's time is the last change inside it.
        for (dest, meta) in parents.iter().rev() {
            self.finish(dest, meta)?;
        }
        Ok(())
    }

    /// Extracts a local archive into `target`. With `--chown` the extracted entries get that
    /// owner, as BuildKit (0.23 and later) applies it to unpacked files; their modes and times
    /// stay the archive's. Extraction then goes to a scratch directory first so the owner
    /// applies only to what the archive holds.
    fn extract(
        &self,
        archive: &Path,
        kind: add::ArchiveKind,
        target: &Path,
        scratch_parent: &Path,
        chown: bool,
    ) -> Result<(), BuildError> {
        if !chown {
            return add::extract_archive(archive, kind, target)
                .map_err(|e| step_error(self.step, e));
        }
        let scratch = scratch_parent.join(format!(
            "extract-{}",
            archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(|e| self.io(scratch.display(), e))?;
        add::extract_archive(archive, kind, &scratch).map_err(|e| step_error(self.step, e))?;
        self.restamp(&scratch)?;
        merge_into(&scratch, target).map_err(|e| self.io(target.display(), e))?;
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(())
    }

    fn restamp(&self, dir: &Path) -> Result<(), BuildError> {
        for entry in std::fs::read_dir(dir).map_err(|e| self.io(dir.display(), e))? {
            let entry = entry.map_err(|e| self.io(dir.display(), e))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| self.io(path.display(), e))?;
            if meta.is_dir() {
                self.restamp(&path)?;
            }
            std::os::unix::fs::lchown(&path, Some(self.own.uid), Some(self.own.gid))
                .map_err(|e| self.io(path.display(), e))?;
            if !meta.file_type().is_symlink() {
                // chown clears set-id bits: the archive's mode stays.
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                )
                .map_err(|e| self.io(path.display(), e))?;
            }
            set_mtime_of(&path, &meta);
        }
        Ok(())
    }
}

/// Moves the entries of `from` into `to`, merging directories.
fn merge_into(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() && is_dir => merge_into(&entry.path(), &dest)?,
            Ok(_) => {
                remove_existing(&dest)?;
                std::fs::rename(entry.path(), &dest)?;
            }
            Err(_) => std::fs::rename(entry.path(), &dest)?,
        }
    }
    Ok(())
}

fn remove_existing(target: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(target),
        Ok(_) => std::fs::remove_file(target),
        Err(_) => Ok(()),
    }
}

/// Stages the directories of WORKDIR `workdir` (absolute) for a layer.
pub fn stage_workdir(
    staging: &Path,
    workdir: &str,
    state: &StageState,
    uid: u32,
    gid: u32,
    step: &PlannedStep,
) -> Result<(), BuildError> {
    let own = Ownership {
        uid,
        gid,
        mode: None,
    };
    let resolved = state.resolve_path(workdir, true);
    ensure_dirs(
        staging,
        resolved.trim_start_matches('/'),
        BaseFs(Some(state)),
        &own,
        step,
    )
}

/// Creates `rel`'s directories in `staging`, with the metadata they have in the stage's root
/// filesystem when they exist there (so the layer does not change them), otherwise 0755 owned
/// by the copy's owner.
fn ensure_dirs(
    staging: &Path,
    rel: &str,
    base: BaseFs<'_>,
    own: &Ownership,
    step: &PlannedStep,
) -> Result<(), BuildError> {
    let mut current = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if !current.is_empty() {
            current.push('/');
        }
        current.push_str(part);
        let target = staging.join(&current);
        if std::fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        std::fs::create_dir(&target).map_err(|e| io(step, target.display(), e))?;
        let existing = base
            .rootfs_path(&current)
            .and_then(|p| std::fs::symlink_metadata(p).ok());
        match existing {
            Some(m) if m.is_dir() => {
                let _ = std::os::unix::fs::lchown(&target, Some(m.uid()), Some(m.gid()));
                let _ = std::fs::set_permissions(
                    &target,
                    std::fs::Permissions::from_mode(m.mode() & 0o7777),
                );
                set_mtime_of(&target, &m);
            }
            _ => {
                let _ = std::os::unix::fs::lchown(&target, Some(own.uid), Some(own.gid));
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
    Ok(())
}

/// Collects paths under `dir` (relative, `/`-separated) that match `pattern`.
fn walk_matches(
    base: &Path,
    rel: &str,
    pattern: &str,
    ignore: &IgnoreRules,
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    walk_matches_filtered(base, rel, pattern, out, &|r: &str| ignore.is_excluded(r))
}

/// Collects paths under `base/rel` that match `pattern`, skipping what `skip` says.
fn walk_matches_filtered(
    base: &Path,
    rel: &str,
    pattern: &str,
    out: &mut Vec<String>,
    skip: &dyn Fn(&str) -> bool,
) -> std::io::Result<()> {
    let dir = if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    };
    let depth = pattern.matches('/').count();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if skip(&child) {
            continue;
        }
        if glob_match(pattern, &child) {
            out.push(child.clone());
            continue;
        }
        let child_depth = child.matches('/').count();
        if (child_depth < depth || pattern.contains("**")) && entry.file_type()?.is_dir() {
            walk_matches_filtered(base, &child, pattern, out, skip)?;
        }
    }
    Ok(())
}

/// `path` (beneath `root`, which is canonical) with its symlinks resolved the way a chroot
/// would: absolute targets start at `root` and `..` stops there, so the result never leaves it.
fn inside_root(
    root: &Path,
    path: &Path,
    src: &str,
    step: &PlannedStep,
) -> Result<PathBuf, BuildError> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut pending: Vec<String> = rel
        .to_string_lossy()
        .split('/')
        .rev()
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        let meta = std::fs::symlink_metadata(&candidate)
            .map_err(|_| step_error(step, format!("\"{src}\": not found")))?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 255 {
                return Err(step_error(
                    step,
                    format!("{src}: too many levels of symbolic links"),
                ));
            }
            let target = std::fs::read_link(&candidate).map_err(|e| io(step, src, e))?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                resolved.clear();
            }
            pending.extend(
                target
                    .split('/')
                    .rev()
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            );
        } else {
            resolved.push(part);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}
