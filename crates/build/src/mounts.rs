//! `RUN --mount`: the builder prepares every mount of a step ([`prepare`]: sources resolved,
//! cache directories locked, secrets read) into [`SandboxMount`]s; the sandbox, as PID 1 of the
//! step's private mount namespace, mounts them over the root filesystem ([`apply`]) before it
//! chroots. Every mount belongs to that namespace and disappears with it, whatever happens to
//! the command; the mount points the sandbox had to create are removed from the layer.
//!
//! Cache mounts persist under `<store>/build-cache/mounts/<sha256 of id>/` (see docs/build.md):
//! `<n>/` is one instance of the cache, `<n>.lock` its `flock`, `id` the cache id as text.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::mount::MountFlags;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use strata_dockerfile::{CacheMount, CacheSharing, Mount, PlannedStep, Run};

use crate::state::StageState;
use crate::{Engine, Result, SecretSource, io_err, pattern, step_error};

/// BuildKit's limit on a secret's size.
pub const MAX_SECRET_SIZE: usize = 500 * 1024;

/// How many instances a `sharing=private` cache may grow to (one per concurrent user).
const MAX_PRIVATE_INSTANCES: usize = 64;

/// One mount of a RUN step, as the sandbox makes it. Targets are absolute paths inside the
/// step's root filesystem; symlinks on the way are resolved inside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SandboxMount {
    /// A bind mount of the host path `source` (a build-context path, a stage's or image's
    /// read-only root filesystem, or a cache directory).
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A writable view of the directory `lower` whose writes land in the throw-away `upper`
    /// (a `type=bind,rw` mount: writes are discarded when the step ends).
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: String,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// Secret number `index` of the payload the sandbox reads on its stdin, as a file on a
    /// tmpfs bound at `target`.
    Secret {
        index: usize,
        target: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl SandboxMount {
    fn target(&self) -> &str {
        match self {
            SandboxMount::Bind { target, .. }
            | SandboxMount::Overlay { target, .. }
            | SandboxMount::Tmpfs { target, .. }
            | SandboxMount::Secret { target, .. } => target,
        }
    }
}

/// What the builder prepared for one RUN step's mounts.
pub(crate) struct Prepared {
    pub mounts: Vec<SandboxMount>,
    /// `(variable, payload index)`: secrets given to the command as environment variables.
    pub secret_env: Vec<(String, usize)>,
    /// Secret contents, written to the sandbox's stdin (never to disk, the spec or a log).
    pub payload: Vec<Vec<u8>>,
    /// The `flock`s of the cache directories in use; released when the step ends.
    _locks: Vec<File>,
}

/// Prepares the mounts of `run` (a step of a stage in `state`), using `dir` (the step's scratch
/// directory) for throw-away files.
pub(crate) fn prepare(
    engine: &Engine<'_>,
    step: &PlannedStep,
    run: &Run,
    state: &StageState,
    dir: &Path,
) -> Result<Prepared> {
    let mut prepared = Prepared {
        mounts: Vec::new(),
        secret_env: Vec::new(),
        payload: Vec::new(),
        _locks: Vec::new(),
    };
    let workdir = state.workdir();
    let absolute = |target: &str| -> String {
        let joined = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("{}/{target}", workdir.trim_end_matches('/'))
        };
        pattern::clean_absolute(&joined)
    };
    // Cache directories are locked first, in the order of their ids, so two steps that lock
    // the same caches cannot each wait for the other; a cache named twice is locked once.
    let mut caches: Vec<(String, &CacheMount)> = run
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Cache(c) => Some((
                c.id.clone()
                    .unwrap_or_else(|| pattern::clean_absolute(&c.target)),
                c,
            )),
            _ => None,
        })
        .collect();
    caches.sort_by(|a, b| a.0.cmp(&b.0));
    let mut instances: std::collections::HashMap<String, PathBuf> = Default::default();
    for (id, cache) in caches {
        if instances.contains_key(&id) {
            continue;
        }
        let (instance, lock) = cache_instance(engine, step, cache, &id)?;
        prepared._locks.push(lock);
        instances.insert(id, instance);
    }
    for (n, mount) in run.mounts.iter().enumerate() {
        match mount {
            Mount::Bind(bind) => {
                let target = absolute(&bind.target);
                let source = bind.source.as_deref().unwrap_or(".");
                let (root, ignore) = match bind.from.as_deref() {
                    Some(from) => (engine.source_fs(step, from)?, None),
                    None => (
                        engine
                            .options
                            .context
                            .canonicalize()
                            .map_err(|e| io_err(engine.options.context.display(), e))?,
                        Some(&engine.context_ignore),
                    ),
                };
                let origin = bind
                    .from
                    .as_deref()
                    .map_or_else(|| "the build context".to_string(), |f| format!("{f:?}"));
                let rel = resolve_in_root(&root, source)
                    .map_err(|e| step_error(step, format!("--mount source {source:?}: {e}")))?;
                let mut host = root.join(&rel);
                let meta = std::fs::metadata(&host).map_err(|e| {
                    step_error(
                        step,
                        format!("--mount source {source:?} not found in {origin}: {e}"),
                    )
                })?;
                // A bind of the context shows what COPY would see: .dockerignore applies
                // (and the cache key digests exactly that tree).
                if let Some(ignore) = ignore
                    && !rel.is_empty()
                    && ignore.is_excluded(&rel)
                    && !(meta.is_dir() && ignore.may_include_below(&rel))
                {
                    return Err(step_error(
                        step,
                        format!(
                            "--mount source {source:?} not found in the build context (.dockerignore excludes it)"
                        ),
                    ));
                }
                if let Some(ignore) = ignore
                    && !ignore.is_empty()
                    && meta.is_dir()
                    && any_excluded(&host, &rel, ignore).map_err(|e| io_err(host.display(), e))?
                {
                    // Files are hard links when the context shares the store's filesystem: the
                    // step reads them through a read-only bind, or an overlay that copies a
                    // file up before changing it, so the context's files never change.
                    let filtered = dir.join(format!("bind-{n}-context"));
                    let tree = TreeCopy {
                        excluded: &|p| ignore.is_excluded(p),
                        ignore,
                        link_files: true,
                    };
                    tree.copy(&host, &filtered, &rel)
                        .map_err(|e| io_err(host.display(), e))?;
                    host = filtered;
                }
                if !bind.readwrite {
                    prepared.mounts.push(SandboxMount::Bind {
                        source: host,
                        target,
                        readonly: true,
                    });
                } else if meta.is_dir() {
                    let upper = dir.join(format!("bind-{n}-upper"));
                    let work = dir.join(format!("bind-{n}-work"));
                    for d in [&upper, &work] {
                        std::fs::create_dir_all(d).map_err(|e| io_err(d.display(), e))?;
                    }
                    prepared.mounts.push(SandboxMount::Overlay {
                        lower: host,
                        upper,
                        work,
                        target,
                    });
                } else {
                    // A writable file: a throw-away copy.
                    let copy = dir.join(format!("bind-{n}-file"));
                    std::fs::copy(&host, &copy).map_err(|e| io_err(host.display(), e))?;
                    prepared.mounts.push(SandboxMount::Bind {
                        source: copy,
                        target,
                        readonly: false,
                    });
                }
            }
            Mount::Cache(cache) => {
                let target = absolute(&cache.target);
                let id = cache
                    .id
                    .clone()
                    .unwrap_or_else(|| pattern::clean_absolute(&cache.target));
                let instance = instances
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| step_error(step, format!("cache {id:?} was not prepared")))?;
                prepared.mounts.push(SandboxMount::Bind {
                    source: instance,
                    target,
                    readonly: cache.readonly,
                });
            }
            Mount::Tmpfs(tmpfs) => prepared.mounts.push(SandboxMount::Tmpfs {
                target: absolute(&tmpfs.target),
                size: tmpfs.size,
            }),
            Mount::Secret(secret) => {
                let id = match (&secret.id, &secret.target) {
                    (Some(id), _) => id.clone(),
                    (None, Some(target)) => target
                        .rsplit('/')
                        .find(|p| !p.is_empty())
                        .unwrap_or("")
                        .to_string(),
                    (None, None) => String::new(),
                };
                if id.is_empty() {
                    return Err(step_error(step, "--mount=type=secret needs an id"));
                }
                let Some(content) = read_secret(engine, step, &id)? else {
                    if secret.required {
                        return Err(step_error(
                            step,
                            format!(
                                "secret {id:?} is required but was not provided (pass --secret id={id},src=FILE or --secret id={id},env=VARIABLE)"
                            ),
                        ));
                    }
                    continue;
                };
                let index = prepared.payload.len();
                prepared.payload.push(content);
                let target = match (&secret.target, &secret.env) {
                    (Some(t), _) => Some(absolute(t)),
                    (None, Some(_)) => None,
                    (None, None) => Some(format!("/run/secrets/{id}")),
                };
                if let Some(var) = &secret.env {
                    if var.is_empty() || var.contains('=') {
                        return Err(step_error(
                            step,
                            format!("secret {id:?}: invalid env name {var:?}"),
                        ));
                    }
                    prepared.secret_env.push((var.clone(), index));
                }
                if let Some(target) = target {
                    prepared.mounts.push(SandboxMount::Secret {
                        index,
                        target,
                        mode: secret.mode.unwrap_or(0o400),
                        uid: secret.uid.unwrap_or(0),
                        gid: secret.gid.unwrap_or(0),
                    });
                }
            }
            Mount::Ssh(ssh) => {
                // No SSH agent is ever forwarded (strata build has no --ssh flag): an optional
                // mount is left out, a required one fails.
                if ssh.required {
                    let id = ssh.id.as_deref().unwrap_or("default");
                    return Err(step_error(
                        step,
                        format!(
                            "--mount=type=ssh,id={id} is required, but no SSH agent is forwarded to the build (strata build has no --ssh flag yet)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(prepared)
}

/// The content of secret `id`, `None` when the build was not given it.
fn read_secret(engine: &Engine<'_>, step: &PlannedStep, id: &str) -> Result<Option<Vec<u8>>> {
    let Some(source) = engine.options.secrets.get(id) else {
        return Ok(None);
    };
    let content = match source {
        SecretSource::File(path) => {
            let file = File::open(path).map_err(|e| {
                step_error(
                    step,
                    format!("secret {id:?}: reading {}: {e}", path.display()),
                )
            })?;
            let mut content = Vec::new();
            file.take(MAX_SECRET_SIZE as u64 + 1)
                .read_to_end(&mut content)
                .map_err(|e| {
                    step_error(
                        step,
                        format!("secret {id:?}: reading {}: {e}", path.display()),
                    )
                })?;
            content
        }
        SecretSource::Env(var) => match std::env::var_os(var) {
            Some(v) => v.into_encoded_bytes(),
            None => return Ok(None),
        },
    };
    if content.len() > MAX_SECRET_SIZE {
        return Err(step_error(
            step,
            format!("secret {id:?} is larger than {MAX_SECRET_SIZE} bytes"),
        ));
    }
    Ok(Some(content))
}

/// Locks (per `sharing`) and returns the directory instance of cache `id`, creating it when
/// new: owned by `uid:gid` with `mode`, seeded from `from`/`source` when given.
fn cache_instance(
    engine: &Engine<'_>,
    step: &PlannedStep,
    cache: &CacheMount,
    id: &str,
) -> Result<(PathBuf, File)> {
    let base = cache_dir(engine.store.root(), id);
    std::fs::create_dir_all(&base).map_err(|e| io_err(base.display(), e))?;
    let id_file = base.join("id");
    if !id_file.exists() {
        // Several builders may write it at once: each its own temporary, renamed into place.
        let tmp = base.join(format!(
            ".id-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let written = std::fs::write(&tmp, id).and_then(|()| std::fs::rename(&tmp, &id_file));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            if !id_file.exists() {
                return Err(io_err(id_file.display(), e));
            }
        }
    }
    remove_stale_temporaries(&base);
    let open_lock = |n: usize| -> Result<File> {
        let path = base.join(format!("{n}.lock"));
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(path.display(), e))
    };
    let lock_err = |e: rustix::io::Errno| step_error(step, format!("locking cache {id:?}: {e}"));
    let (n, lock) = match cache.sharing {
        CacheSharing::Shared => {
            let lock = open_lock(0)?;
            if !base.join("0").is_dir() {
                flock(&lock, FlockOperation::LockExclusive).map_err(lock_err)?;
            }
            (0, lock)
        }
        CacheSharing::Locked => {
            let lock = open_lock(0)?;
            flock(&lock, FlockOperation::LockExclusive).map_err(lock_err)?;
            (0, lock)
        }
        CacheSharing::Private => {
            let mut found = None;
            for n in 0..MAX_PRIVATE_INSTANCES {
                let lock = open_lock(n)?;
                match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => {
                        found = Some((n, lock));
                        break;
                    }
                    Err(rustix::io::Errno::WOULDBLOCK) => continue,
                    Err(e) => return Err(lock_err(e)),
                }
            }
            found.ok_or_else(|| {
                step_error(
                    step,
                    format!(
                        "cache {id:?}: all {MAX_PRIVATE_INSTANCES} private instances are in use"
                    ),
                )
            })?
        }
    };
    let instance = base.join(n.to_string());
    if !instance.is_dir() {
        create_instance(engine, step, cache, &base, &instance)?;
    }
    if cache.sharing == CacheSharing::Shared {
        // Created (under the exclusive lock) or already there: share it.
        flock(&lock, FlockOperation::LockShared).map_err(lock_err)?;
    }
    Ok((instance, lock))
}

/// `<store>/build-cache/mounts/<sha256 hex of id>`.
pub fn cache_dir(store_root: &Path, id: &str) -> PathBuf {
    store_root
        .join("build-cache/mounts")
        .join(hex::encode(Sha256::digest(id.as_bytes())))
}

/// Makes a new cache instance in a temporary directory, then renames it into place, so an
/// instance directory is always complete.
fn create_instance(
    engine: &Engine<'_>,
    step: &PlannedStep,
    cache: &CacheMount,
    base: &Path,
    instance: &Path,
) -> Result<()> {
    let tmp = base.join(format!(
        "tmp-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let made = (|| -> Result<()> {
        match &cache.from {
            Some(from) => {
                let root = engine.source_fs(step, from)?;
                let source = cache.source.as_deref().unwrap_or("/");
                let rel = resolve_in_root(&root, source)
                    .map_err(|e| step_error(step, format!("--mount source {source:?}: {e}")))?;
                let host = root.join(&rel);
                if !std::fs::metadata(&host).is_ok_and(|m| m.is_dir()) {
                    return Err(step_error(
                        step,
                        format!("--mount source {source:?} is not a directory in {from:?}"),
                    ));
                }
                let keep = pattern::IgnoreRules::default();
                // Copies: the cache is written to, its seed must not change.
                let tree = TreeCopy {
                    excluded: &|_| false,
                    ignore: &keep,
                    link_files: false,
                };
                tree.copy(&host, &tmp, "")
                    .map_err(|e| io_err(host.display(), e))?;
            }
            None => std::fs::create_dir(&tmp).map_err(|e| io_err(tmp.display(), e))?,
        }
        std::os::unix::fs::lchown(
            &tmp,
            Some(cache.uid.unwrap_or(0)),
            Some(cache.gid.unwrap_or(0)),
        )
        .map_err(|e| io_err(tmp.display(), e))?;
        std::fs::set_permissions(
            &tmp,
            std::fs::Permissions::from_mode(cache.mode.unwrap_or(0o755)),
        )
        .map_err(|e| io_err(tmp.display(), e))?;
        std::fs::rename(&tmp, instance).map_err(|e| io_err(instance.display(), e))
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    made
}

/// Removes `tmp-<pid>-*` directories of cache instances whose creating process is gone.
fn remove_stale_temporaries(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("tmp-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Resolves `path` inside the tree at `root` as if `root` were `/`: symlinks (up to 40) are
/// followed and never lead outside it, `..` stops at the root. Returns the path relative to
/// `root` (empty for the root itself); components that do not exist are kept as written.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<String, String> {
    let mut pending: Vec<String> = path.split('/').rev().map(String::from).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!("too many levels of symbolic links in {path:?}"));
                }
                let link = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
                let link = link
                    .to_str()
                    .ok_or_else(|| format!("symlink {} is not UTF-8", candidate.display()))?;
                if link.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(link.split('/').rev().map(String::from));
            }
            _ => resolved.push(part),
        }
    }
    Ok(resolved.join("/"))
}

/// Whether the ignore rules exclude anything under `dir` (at `rel` in the context).
fn any_excluded(dir: &Path, rel: &str, ignore: &pattern::IgnoreRules) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let child_rel = join_rel(rel, &name.to_string_lossy());
        if ignore.is_excluded(&child_rel) {
            return Ok(true);
        }
        if entry.file_type()?.is_dir() && any_excluded(&entry.path(), &child_rel, ignore)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// A tree copy with modes, owners and symlinks, leaving out what `excluded` says (paths
/// relative to the context) unless `ignore` has an exception below an excluded directory.
/// Device nodes, FIFOs and sockets are left out.
struct TreeCopy<'a> {
    excluded: &'a dyn Fn(&str) -> bool,
    ignore: &'a pattern::IgnoreRules,
    /// Hard-link regular files instead of copying them (when on the same filesystem).
    link_files: bool,
}

impl TreeCopy<'_> {
    /// Copies the directory `from` (at `rel` in the context) to `to`, which must not exist.
    fn copy(&self, from: &Path, to: &Path, rel: &str) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(from)?;
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            let child_rel = join_rel(rel, &name.to_string_lossy());
            let source = entry.path();
            let target = to.join(&name);
            let child = std::fs::symlink_metadata(&source)?;
            let ft = child.file_type();
            if (self.excluded)(&child_rel)
                && !(ft.is_dir() && self.ignore.may_include_below(&child_rel))
            {
                continue;
            }
            if ft.is_dir() {
                self.copy(&source, &target, &child_rel)?;
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
                std::os::unix::fs::lchown(&target, Some(child.uid()), Some(child.gid()))?;
            } else if ft.is_file() {
                if self.link_files && std::fs::hard_link(&source, &target).is_ok() {
                    continue;
                }
                std::fs::copy(&source, &target)?;
                std::os::unix::fs::lchown(&target, Some(child.uid()), Some(child.gid()))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(child.mode()))?;
            }
        }
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        Ok(())
    }
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Reads the secrets the builder writes to the sandbox's stdin: each a 4-byte little-endian
/// length and that many bytes, at most `MAX_SECRET_SIZE` each.
pub fn read_payload(input: &mut dyn Read) -> Result<Vec<Vec<u8>>, String> {
    let mut secrets = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(secrets),
            Err(e) => return Err(err("reading secrets", e)),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_SECRET_SIZE || secrets.len() >= 1024 {
            return Err("secret payload too large".into());
        }
        let mut content = vec![0u8; len];
        input
            .read_exact(&mut content)
            .map_err(|e| err("reading secrets", e))?;
        secrets.push(content);
    }
}

/// The payload [`read_payload`] reads.
pub(crate) fn encode_payload(secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in secrets {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// Inside the sandbox (before the overlay becomes the root): makes `mounts` over the root filesystem at `root`,
/// parents before children. Mount points that had to be created are added to `created`
/// (relative to `root`). `secrets_dir` is an empty host directory that gets a private tmpfs
/// for the secret files.
pub fn apply(
    root: &Path,
    mounts: &[SandboxMount],
    secrets: &[Vec<u8>],
    secrets_dir: &Path,
    created: &mut Vec<String>,
) -> Result<(), String> {
    // Resolve every target first (in the image as it is), then mount shallowest first so a
    // mount at /a/b lands on top of one at /a, as BuildKit orders them.
    let mut ordered: Vec<(String, &SandboxMount)> = Vec::new();
    for mount in mounts {
        let rel = resolve_in_root(root, mount.target())
            .map_err(|e| err(format!("--mount target {}", mount.target()), e))?;
        if rel.is_empty() {
            return Err(format!(
                "--mount target {}: cannot mount over /",
                mount.target()
            ));
        }
        ordered.push((rel, mount));
    }
    ordered.sort_by_key(|(rel, _)| rel.matches('/').count());
    if mounts
        .iter()
        .any(|m| matches!(m, SandboxMount::Secret { .. }))
    {
        rustix::mount::mount(
            "tmpfs",
            secrets_dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"mode=700",
        )
        .map_err(|e| err("mounting the secrets tmpfs", e))?;
    }
    for (rel, mount) in ordered {
        let target = mount.target();
        match mount {
            SandboxMount::Bind {
                source, readonly, ..
            } => {
                let is_file = !std::fs::metadata(source)
                    .map_err(|e| err(source.display(), e))?
                    .is_dir();
                let point = mount_point(root, &rel, is_file, created)?;
                rustix::mount::mount_bind(source, &point)
                    .map_err(|e| err(format!("bind-mounting {target}"), e))?;
                // nodev, nosuid: a cache or a source tree may hold device nodes or set-user-ID
                // files a step made; they do not work through the mount.
                let mut flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV;
                if *readonly {
                    flags |= MountFlags::RDONLY;
                }
                rustix::mount::mount_remount(&point, flags, c"")
                    .map_err(|e| err(format!("setting the flags of {target}"), e))?;
            }
            SandboxMount::Overlay {
                lower, upper, work, ..
            } => {
                for p in [lower, upper, work] {
                    if p.display().to_string().contains([':', ',']) {
                        return Err(format!(
                            "--mount target {target}: {} contains ':' or ',', which overlayfs cannot take",
                            p.display()
                        ));
                    }
                }
                let point = mount_point(root, &rel, false, created)?;
                let data = format!(
                    "lowerdir={},upperdir={},workdir={}{}",
                    lower.display(),
                    upper.display(),
                    work.display(),
                    crate::sandbox::overlay_xattr_option()
                );
                let data = std::ffi::CString::new(data).map_err(|e| err("overlay options", e))?;
                rustix::mount::mount(
                    "overlay",
                    &point,
                    "overlay",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    data.as_c_str(),
                )
                .map_err(|e| err(format!("mounting a writable view at {target}"), e))?;
            }
            SandboxMount::Tmpfs { size, .. } => {
                let point = mount_point(root, &rel, false, created)?;
                let data = match size {
                    Some(size) => format!("size={size}"),
                    None => String::new(),
                };
                let data = std::ffi::CString::new(data).map_err(|e| err("tmpfs options", e))?;
                rustix::mount::mount(
                    "tmpfs",
                    &point,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    data.as_c_str(),
                )
                .map_err(|e| err(format!("mounting a tmpfs at {target}"), e))?;
            }
            SandboxMount::Secret {
                index,
                mode,
                uid,
                gid,
                ..
            } => {
                let content = secrets
                    .get(*index)
                    .ok_or_else(|| format!("secret for {target} missing from the payload"))?;
                let file = secrets_dir.join(format!("secret-{index}"));
                std::fs::write(&file, content).map_err(|e| err(file.display(), e))?;
                std::os::unix::fs::lchown(&file, Some(*uid), Some(*gid))
                    .map_err(|e| err(file.display(), e))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| err(file.display(), e))?;
                let point = mount_point(root, &rel, true, created)?;
                rustix::mount::mount_bind(&file, &point)
                    .map_err(|e| err(format!("mounting the secret at {target}"), e))?;
                rustix::mount::mount_remount(
                    &point,
                    MountFlags::BIND
                        | MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    c"",
                )
                .map_err(|e| err(format!("making the secret at {target} read-only"), e))?;
            }
        }
    }
    Ok(())
}

/// The host path of mount point `rel` (resolved) in `root`: missing directories on the way,
/// and the point itself (a directory, or an empty file for a file mount), are created and
/// recorded in `created`.
fn mount_point(
    root: &Path,
    rel: &str,
    is_file: bool,
    created: &mut Vec<String>,
) -> Result<PathBuf, String> {
    // Resolve again: an earlier mount may now cover part of the path.
    let rel = resolve_in_root(root, rel)?;
    let parts: Vec<&str> = rel.split('/').collect();
    let mut current = String::new();
    for (i, part) in parts.iter().enumerate() {
        if !current.is_empty() {
            current.push('/');
        }
        current.push_str(part);
        let path = root.join(&current);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                let is_dir = meta.is_dir();
                if meta.file_type().is_symlink() || (!last && !is_dir) {
                    return Err(format!("/{current} in the image is not a directory"));
                }
                if last && is_dir == is_file {
                    return Err(format!(
                        "cannot mount a {} on /{current}, which is a {}",
                        if is_file { "file" } else { "directory" },
                        if is_dir { "directory" } else { "file" }
                    ));
                }
            }
            Err(_) => {
                if last && is_file {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| err(path.display(), e))?;
                } else {
                    std::fs::create_dir(&path).map_err(|e| err(path.display(), e))?;
                }
                created.push(current.clone());
            }
        }
    }
    Ok(root.join(rel))
}

/// After the step: creating a mount point deep in the tree copies every directory above it up
/// into the layer. Each such directory that is empty there, not opaque, and has the mode and
/// owner it has below, was touched by nothing else and is removed (deepest first).
pub(crate) fn prune_mount_point_ancestors(upper: &Path, created_list: &Path, state: &StageState) {
    let Ok(bytes) = std::fs::read(created_list) else {
        return;
    };
    let Ok(created) = serde_json::from_slice::<Vec<String>>(&bytes) else {
        return;
    };
    let mut ancestors: Vec<String> = Vec::new();
    for path in &created {
        let mut p = path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            ancestors.push(parent.to_string());
            p = parent;
        }
    }
    ancestors.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    ancestors.dedup();
    for parent in ancestors {
        let path = upper.join(&parent);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || std::fs::read_dir(&path).map_or(true, |mut d| d.next().is_some()) {
            continue;
        }
        let mut buf = [0u8; 8];
        if ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|name| rustix::fs::lgetxattr(&path, *name, &mut buf[..]).is_ok())
        {
            continue;
        }
        let Some(below) = state
            .rootfs_path(&parent)
            .and_then(|p| std::fs::symlink_metadata(p).ok())
        else {
            continue;
        };
        if below.mode() == meta.mode() && below.uid() == meta.uid() && below.gid() == meta.gid() {
            let _ = std::fs::remove_dir(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        for (path, want) in [
            ("/", ""),
            ("/real/sub", "real/sub"),
            ("/abs/sub", "real/sub"),
            ("/real/up/etc/passwd", "etc/passwd"),
            ("/../../real", "real"),
            ("/missing/x", "missing/x"),
            ("relative/./a/../b", "relative/b"),
        ] {
            assert_eq!(resolve_in_root(root, path).unwrap(), want, "{path}");
        }
        assert!(resolve_in_root(root, "/loop").is_err());
    }

    #[test]
    fn payload_round_trips_and_is_bounded() {
        let secrets = vec![b"one".to_vec(), Vec::new(), vec![0u8; 1000]];
        let bytes = encode_payload(&secrets);
        assert_eq!(read_payload(&mut &bytes[..]).unwrap(), secrets);
        let huge = ((MAX_SECRET_SIZE + 1) as u32).to_le_bytes();
        assert!(read_payload(&mut &huge[..]).is_err());
        assert!(read_payload(&mut &b"\x05\0\0\0ab"[..]).is_err());
    }
}
