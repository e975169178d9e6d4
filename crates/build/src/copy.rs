//! COPY and ADD: the sources are staged under their destination path in a directory that then
//! becomes the layer.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_dockerfile::{Heredoc, Instruction, PlannedStep};

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
}

impl<'a> CopyRequest<'a> {
    /// The request of a COPY or ADD step; flags this version cannot honour are errors that
    /// name the flag and line.
    pub fn from_instruction(step: &'a PlannedStep) -> Result<CopyRequest<'a>, BuildError> {
        match &step.instruction {
            Instruction::Copy(c) => {
                if c.link {
                    return Err(step_error(step, "--link is not supported yet"));
                }
                if c.parents {
                    return Err(step_error(step, "--parents is not supported yet"));
                }
                if !c.exclude.is_empty() {
                    return Err(step_error(step, "--exclude is not supported yet"));
                }
                Ok(CopyRequest {
                    sources: &c.sources,
                    heredocs: &c.heredocs,
                    dest: &c.dest,
                    from: c.from.as_deref(),
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    is_add: false,
                })
            }
            Instruction::Add(a) => {
                if a.link {
                    return Err(step_error(step, "--link is not supported yet"));
                }
                if a.checksum.is_some() {
                    return Err(step_error(step, "--checksum is not supported yet"));
                }
                if a.keep_git_dir.is_some() {
                    return Err(step_error(step, "--keep-git-dir is not supported yet"));
                }
                if !a.exclude.is_empty() {
                    return Err(step_error(step, "--exclude is not supported yet"));
                }
                Ok(CopyRequest {
                    sources: &a.sources,
                    heredocs: &a.heredocs,
                    dest: &a.dest,
                    from: None,
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    is_add: true,
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
    mode: Option<u32>,
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

fn set_mtime(path: &Path, meta: &std::fs::Metadata) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

/// Stages the request into `staging`; returns the history `created_by`.
pub fn stage_copy(
    req: &CopyRequest<'_>,
    root: &SourceRoot,
    heredoc_dir: &Path,
    staging: &Path,
    state: &StageState,
    step: &PlannedStep,
) -> Result<String, BuildError> {
    let name = if req.is_add { "ADD" } else { "COPY" };
    let owner = match req.chown {
        Some(spec) => {
            let (uid, gid) = resolve_user(state, spec, true)
                .map_err(|m| step_error(step, format!("--chown={spec}: {m}")))?;
            (uid, gid)
        }
        None => (0, 0),
    };
    let mode = match req.chmod {
        Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
            step_error(
                step,
                format!("--chmod={m} is not supported yet: only octal modes are"),
            )
        })?),
        None => None,
    };
    if mode.is_some_and(|m| m > 0o7777) {
        return Err(step_error(step, "--chmod: invalid mode"));
    }
    let own = Ownership {
        uid: owner.0,
        gid: owner.1,
        mode,
    };
    let workdir = state.workdir();
    let dest_abs = if req.dest.starts_with('/') {
        req.dest.to_string()
    } else {
        format!("{workdir}/{}", req.dest)
    };
    // Symlinked directories on the way (e.g. /bin -> usr/bin) are followed inside the image,
    // never replaced; so is the destination itself when it links to a directory.
    let dest_clean = state.resolve_path(&clean_absolute(&dest_abs), false);
    let is_dir_in_rootfs = |p: &str| {
        state
            .rootfs_path(p)
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_dir())
    };
    let dest_clean = match state.resolve_path(&dest_clean, true) {
        followed if followed != dest_clean && is_dir_in_rootfs(&followed) => followed,
        _ => dest_clean,
    };
    let mut dest_is_dir = req.dest.ends_with('/')
        || req.dest == "."
        || req.dest.ends_with("/.")
        || is_dir_in_rootfs(&dest_clean);

    // (host path, name in the destination) of each source.
    let mut sources: Vec<(PathBuf, String)> = Vec::new();
    for h in req.heredocs {
        let path = heredoc_dir.join(&h.name);
        std::fs::write(&path, &h.content).map_err(|e| io(step, &h.name, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io(step, &h.name, e))?;
        sources.push((path, h.name.clone()));
    }
    for src in req.sources {
        if src.starts_with("http://") || src.starts_with("https://") || src.starts_with("git@") {
            return Err(step_error(
                step,
                format!("{name} of URLs and git repositories is not supported yet: {src}"),
            ));
        }
        let rel = clean_relative(src).ok_or_else(|| {
            step_error(
                step,
                format!("{src}: source path escapes the build context"),
            )
        })?;
        if has_glob(&rel) {
            let mut found = Vec::new();
            walk_matches(&root.dir, "", &rel, &root.ignore, &mut found)
                .map_err(|e| io(step, src, e))?;
            if found.is_empty() {
                return Err(step_error(
                    step,
                    format!("lstat {src}: no source files were specified"),
                ));
            }
            for r in found {
                let base = r.rsplit('/').next().unwrap_or(&r).to_string();
                let path = inside_root(&root.dir, &root.dir.join(&r), src, step)?;
                sources.push((path, base));
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
        let base = rel.rsplit('/').next().unwrap_or("").to_string();
        sources.push((canonical, base));
    }
    if sources.len() > 1 && !dest_is_dir {
        return Err(step_error(
            step,
            format!(
                "When using {name} with more than one source file, the destination must be a directory and end with a /"
            ),
        ));
    }
    if sources.len() > 1 {
        dest_is_dir = true;
    }

    let dest_rel = dest_clean.trim_start_matches('/').to_string();
    // The working directory is created by the first RUN/COPY after WORKDIR.
    let workdir_resolved = state.resolve_path(&workdir, true);
    if workdir_resolved != "/" && state.rootfs_path(&workdir_resolved).is_none() {
        ensure_dirs(
            staging,
            workdir_resolved.trim_start_matches('/'),
            state,
            &own,
            step,
        )?;
    }
    for (path, base) in &sources {
        let meta = std::fs::metadata(path).map_err(|e| io(step, path.display(), e))?;
        let context_rel = path
            .strip_prefix(&root.dir)
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        if meta.is_dir() {
            ensure_dirs(staging, &dest_rel, state, &own, step)?;
            let target = staging.join(&dest_rel);
            copy_tree(path, &target, context_rel.as_deref(), root, &own, step)?;
        } else if req.is_add && is_archive(path) {
            ensure_dirs(staging, &dest_rel, state, &own, step)?;
            let target = staging.join(&dest_rel);
            extract_archive(path, &target, step)?;
        } else {
            let target_rel = if dest_is_dir {
                ensure_dirs(staging, &dest_rel, state, &own, step)?;
                if dest_rel.is_empty() {
                    base.clone()
                } else {
                    format!("{dest_rel}/{base}")
                }
            } else {
                if let Some((parent, _)) = dest_rel.rsplit_once('/') {
                    ensure_dirs(staging, parent, state, &own, step)?;
                }
                dest_rel.clone()
            };
            if target_rel.is_empty() {
                return Err(step_error(step, "cannot copy a file onto /"));
            }
            copy_entry(path, &staging.join(&target_rel), &own, step)?;
        }
    }
    let mut msg = String::from(name);
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
    Ok(msg)
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
    ensure_dirs(staging, resolved.trim_start_matches('/'), state, &own, step)
}

/// Creates `rel`'s directories in `staging`, with the metadata they have in the stage's root
/// filesystem when they exist there (so the layer does not change them), otherwise 0755 owned
/// by the copy's owner.
fn ensure_dirs(
    staging: &Path,
    rel: &str,
    state: &StageState,
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
        let existing = state
            .rootfs_path(&current)
            .and_then(|p| std::fs::symlink_metadata(p).ok());
        match existing {
            Some(m) if m.is_dir() => {
                let _ = std::os::unix::fs::lchown(&target, Some(m.uid()), Some(m.gid()));
                let _ = std::fs::set_permissions(
                    &target,
                    std::fs::Permissions::from_mode(m.mode() & 0o7777),
                );
                set_mtime(&target, &m);
            }
            _ => {
                let _ = std::os::unix::fs::lchown(&target, Some(own.uid), Some(own.gid));
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
    Ok(())
}

/// Copies one non-directory entry (file, symlink) to `target`.
fn copy_entry(
    source: &Path,
    target: &Path,
    own: &Ownership,
    step: &PlannedStep,
) -> Result<(), BuildError> {
    let meta = std::fs::symlink_metadata(source).map_err(|e| io(step, source.display(), e))?;
    if let Ok(existing) = std::fs::symlink_metadata(target) {
        if existing.is_dir() {
            std::fs::remove_dir_all(target).map_err(|e| io(step, target.display(), e))?;
        } else {
            std::fs::remove_file(target).map_err(|e| io(step, target.display(), e))?;
        }
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let link = std::fs::read_link(source).map_err(|e| io(step, source.display(), e))?;
        std::os::unix::fs::symlink(&link, target).map_err(|e| io(step, target.display(), e))?;
    } else if ft.is_file() {
        std::fs::copy(source, target).map_err(|e| io(step, source.display(), e))?;
        let mode = own.mode.unwrap_or(meta.mode() & 0o7777);
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(step, target.display(), e))?;
    } else {
        // Sockets, FIFOs and devices are not copied.
        return Ok(());
    }
    std::os::unix::fs::lchown(target, Some(own.uid), Some(own.gid))
        .map_err(|e| io(step, target.display(), e))?;
    if !ft.is_symlink() {
        // chown clears set-id bits; put the mode back.
        let mode = own.mode.unwrap_or(meta.mode() & 0o7777);
        let _ = std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode));
    }
    set_mtime(target, &meta);
    Ok(())
}

/// Copies the contents of directory `source` into `target` (which exists), skipping what the
/// ignore rules exclude (`rel` is `source` relative to the context).
fn copy_tree(
    source: &Path,
    target: &Path,
    rel: Option<&str>,
    root: &SourceRoot,
    own: &Ownership,
    step: &PlannedStep,
) -> Result<(), BuildError> {
    let mut entries: Vec<_> = std::fs::read_dir(source)
        .map_err(|e| io(step, source.display(), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(step, source.display(), e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        let child_rel = rel.map(|r| {
            if r.is_empty() {
                name_text.to_string()
            } else {
                format!("{r}/{name_text}")
            }
        });
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(step, path.display(), e))?;
        let excluded = child_rel
            .as_deref()
            .is_some_and(|r| root.ignore.is_excluded(r));
        if excluded
            && !(meta.is_dir()
                && root
                    .ignore
                    .may_include_below(child_rel.as_deref().unwrap_or("")))
        {
            continue;
        }
        let dest = target.join(&name);
        if meta.is_dir() {
            if !std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_file(&dest);
                std::fs::create_dir(&dest).map_err(|e| io(step, dest.display(), e))?;
            }
            copy_tree(&path, &dest, child_rel.as_deref(), root, own, step)?;
            if excluded && std::fs::read_dir(&dest).is_ok_and(|mut d| d.next().is_none()) {
                let _ = std::fs::remove_dir(&dest);
                continue;
            }
            std::os::unix::fs::lchown(&dest, Some(own.uid), Some(own.gid))
                .map_err(|e| io(step, dest.display(), e))?;
            let mode = own.mode.unwrap_or(meta.mode() & 0o7777);
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io(step, dest.display(), e))?;
            set_mtime(&dest, &meta);
        } else {
            copy_entry(&path, &dest, own, step)?;
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
        if ignore.is_excluded(&child) {
            continue;
        }
        if glob_match(pattern, &child) {
            out.push(child.clone());
            continue;
        }
        let child_depth = child.matches('/').count();
        if (child_depth < depth || pattern.contains("**")) && entry.file_type()?.is_dir() {
            walk_matches(base, &child, pattern, ignore, out)?;
        }
    }
    Ok(())
}

fn is_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    head.truncate(n);
    if strata_layer::Compression::sniff(&head) != strata_layer::Compression::None {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

fn extract_archive(path: &Path, target: &Path, step: &PlannedStep) -> Result<(), BuildError> {
    use std::io::{BufRead, BufReader};
    let file = std::fs::File::open(path).map_err(|e| io(step, path.display(), e))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| io(step, path.display(), e))?;
    let compression = strata_layer::Compression::sniff(head);
    let mut tar = strata_layer::decompress(compression, reader)?;
    strata_layer::apply_layer(target, &mut tar, &strata_layer::ApplyOptions::default())
        .map_err(|e| step_error(step, format!("extracting {}: {e}", path.display())))?;
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
