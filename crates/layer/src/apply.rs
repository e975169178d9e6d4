//! Applying a layer changeset onto a directory, safely.
//!
//! Safety model: the root is held as an `O_PATH` directory fd. Every parent
//! directory is resolved from it with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so `..` and symlinks (absolute or relative, from
//! this layer or already on disk) are resolved as if the root were `/` and
//! can never leave it. The final component is then created, replaced or
//! removed with `*at` calls relative to that parent fd and is never followed
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without
//! `AT_SYMLINK_FOLLOW`, unlink-then-create). Entry names are normalised
//! lexically first and rejected if `..` would climb above the root.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use crate::error::{LayerError, display_path};
use crate::fs_util::{self, file_type};
use crate::paths::{EntryName, LayerPaths, classify_name, join_into, normalize_into, split_parent};
use crate::tar_format::{EntryHeader, EntryKind, ReadLimits, TarReader};

const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// Bounds and privileges for [`apply_layer`].
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Maximum size of the uncompressed tar stream (decompression bombs).
    pub max_total_bytes: u64,
    /// Maximum number of entries in the layer.
    pub max_entries: u64,
    /// Maximum size of one PAX extended header or GNU long name/link.
    pub max_header_size: u64,
    /// Create character and block devices. When false they are skipped and
    /// counted in [`ApplyStats::devices_skipped`], like rootless tools do.
    /// FIFOs are always created (no privilege needed).
    pub allow_device_nodes: bool,
    /// Apply the uid/gid recorded in the layer (needs `CAP_CHOWN`).
    pub preserve_ownership: bool,
    /// Write whiteouts the way overlayfs reads them instead of deleting: `.wh.<name>` becomes a
    /// 0/0 character device `<name>` and `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on
    /// its directory. For unpacking one layer into an empty directory that serves as an overlay
    /// lower layer (needs root).
    pub overlay_whiteouts: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        let privileged = rustix::process::geteuid().is_root();
        ApplyOptions {
            max_total_bytes: 64 << 30,
            max_entries: 10_000_000,
            max_header_size: 1 << 20,
            allow_device_nodes: privileged,
            preserve_ownership: privileged,
            overlay_whiteouts: false,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (including whiteouts and skipped ones).
    pub entries: u64,
    /// Size of the uncompressed tar stream consumed.
    pub bytes: u64,
    /// Device nodes not created (not allowed, or `EPERM` in a user namespace).
    pub devices_skipped: u64,
    /// Extended attributes not set: unsupported by the filesystem, not
    /// permitted (e.g. `security.*`/`trusted.*` without privilege, `user.*`
    /// on symlinks), or overlayfs-internal (`*.overlay.*`, never honoured
    /// from a layer because they would steer overlayfs when the extracted
    /// directory is later used as an overlay layer).
    pub xattrs_skipped: u64,
}

/// Applies an uncompressed layer tar onto `root` with OCI changeset
/// semantics (whiteouts, opaque directories, replace-on-conflict).
///
/// Nothing outside `root` is ever created, modified or removed, whatever
/// the archive contains. Directory modes, owners and mtimes are applied at
/// the end (deepest first) so read-only directories can still be filled.
/// Nothing is fsync'ed; durability is the caller's decision.
///
/// `root` itself may be given metadata by a `./` entry, as Docker does.
///
/// On error the root is left partially modified; callers should discard it.
/// Device nodes are skipped (and counted) unless
/// [`ApplyOptions::allow_device_nodes`], as rootless tools do, rather than
/// failing the whole image.
pub fn apply_layer<R: Read>(
    root: &Path,
    tar_stream: R,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let root_fd = fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Io {
        path: root.display().to_string(),
        op: "opening the layer root directory",
        error: e.into(),
    })?;
    let limits = ReadLimits {
        max_total_bytes: opts.max_total_bytes,
        max_entries: opts.max_entries,
        max_header_size: opts.max_header_size,
    };
    let mut reader = TarReader::new(tar_stream, limits);
    let mut applier = Applier::new(root_fd, opts);
    let mut hdr = EntryHeader::default();
    while reader.next_entry(&mut hdr)? {
        applier.stats.entries += 1;
        applier.apply_entry(&hdr, &mut reader)?;
    }
    applier.stats.bytes = reader.drain()?;
    applier.fix_up_directories()?;
    Ok(applier.stats)
}

/// Directory metadata applied after all entries are written.
#[derive(Clone, Copy)]
struct DirFixup {
    mode: u32,
    owner: Option<(Uid, Gid)>,
    mtime: i64,
}

struct Applier<'o> {
    root: OwnedFd,
    opts: &'o ApplyOptions,
    /// Whether we may bypass permission checks (root): if not, directories
    /// must stay writable for us until the end.
    privileged: bool,
    /// Cached parent directory of the previous entry. Entries of one tar are
    /// grouped by directory, so this saves an `openat2` for most entries.
    cached_dir_path: Vec<u8>,
    cached_dir: Option<OwnedFd>,
    /// Set when a directory or symlink was removed, which may change what a
    /// path resolves to; the cached parent fd must not be reused then.
    cache_stale: bool,
    layer_paths: LayerPaths,
    dir_fixups: HashMap<Vec<u8>, DirFixup>,
    stats: ApplyStats,
    /// Scratch buffers reused across entries.
    path: Vec<u8>,
    link_target: Vec<u8>,
    scratch: Vec<u8>,
}

/// Converts a failed system call on an entry into a [`LayerError`].
fn entry_err<'h>(hdr: &'h EntryHeader, op: &'static str) -> impl FnOnce(Errno) -> LayerError + 'h {
    move |e| LayerError::io(&hdr.path, op, e)
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as _,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

impl<'o> Applier<'o> {
    fn new(root: OwnedFd, opts: &'o ApplyOptions) -> Self {
        Applier {
            root,
            opts,
            privileged: rustix::process::geteuid().is_root(),
            cached_dir_path: Vec::new(),
            cached_dir: None,
            cache_stale: false,
            layer_paths: LayerPaths::default(),
            dir_fixups: HashMap::new(),
            stats: ApplyStats::default(),
            path: Vec::new(),
            link_target: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn apply_entry<R: Read>(
        &mut self,
        hdr: &EntryHeader,
        reader: &mut TarReader<R>,
    ) -> Result<(), LayerError> {
        let mut path = std::mem::take(&mut self.path);
        let result = self.apply_normalized(hdr, &mut path, reader);
        self.path = path;
        result
    }

    fn apply_normalized<R: Read>(
        &mut self,
        hdr: &EntryHeader,
        path: &mut Vec<u8>,
        reader: &mut TarReader<R>,
    ) -> Result<(), LayerError> {
        normalize_into(&hdr.path, path).map_err(|r| LayerError::invalid_path(&hdr.path, r))?;
        if path.is_empty() {
            if hdr.kind != EntryKind::Directory {
                return Err(LayerError::invalid_path(
                    &hdr.path,
                    "non-directory entry refers to the layer root itself",
                ));
            }
            // `./`: metadata for the root directory itself.
            let fixup = self.dir_fixup(hdr)?;
            self.dir_fixups.insert(Vec::new(), fixup);
            return Ok(());
        }
        let (parent, name) = split_parent(path);
        match classify_name(name).map_err(|r| LayerError::invalid_path(&hdr.path, r))? {
            EntryName::Plain => {}
            EntryName::OpaqueMarker => return self.apply_opaque(hdr, parent),
            EntryName::Whiteout(victim) => return self.apply_whiteout(hdr, parent, victim),
            EntryName::Reserved => return Ok(()),
        }
        self.layer_paths.insert_with_ancestors(path);

        let dir = self
            .take_parent(parent, true)
            .map_err(entry_err(hdr, "resolving the parent directory"))?;
        let result = match hdr.kind {
            EntryKind::Directory => self.make_dir(hdr, dir.as_fd(), name, path),
            EntryKind::Regular => self.make_file(hdr, dir.as_fd(), name, reader),
            EntryKind::Symlink => self.make_symlink(hdr, dir.as_fd(), name),
            EntryKind::Hardlink => self.make_hardlink(hdr, dir.as_fd(), name),
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                self.make_node(hdr, dir.as_fd(), name)
            }
        };
        self.release_parent(parent, dir);
        result
    }

    /// Resolves a directory strictly inside the root (symlinks followed as
    /// if the root were `/`; `/proc` magic links refused).
    fn resolve_dir(&self, path: &[u8]) -> rustix::io::Result<OwnedFd> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        let mut attempts = 0;
        loop {
            match fs::openat2(
                &self.root,
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // EAGAIN: the kernel saw a concurrent rename and refused to
                // risk an escape; retrying is the documented remedy.
                Err(Errno::AGAIN | Errno::INTR) if attempts < 64 => attempts += 1,
                result => return result,
            }
        }
    }

    /// The parent directory for an entry: from the cache, resolved, or (when
    /// `create`) created with mode 0755 like `mkdir -p`, as tar does for
    /// archives that omit directory entries.
    fn take_parent(&mut self, parent: &[u8], create: bool) -> rustix::io::Result<OwnedFd> {
        match self.cached_dir.take() {
            Some(fd) if self.cached_dir_path == parent => return Ok(fd),
            _ => {}
        }
        match self.resolve_dir(parent) {
            Err(Errno::NOENT) if create => self.create_dirs(parent),
            result => result,
        }
    }

    fn release_parent(&mut self, parent: &[u8], fd: OwnedFd) {
        if !self.cache_stale {
            self.cached_dir_path.clear();
            self.cached_dir_path.extend_from_slice(parent);
            self.cached_dir = Some(fd);
        }
        self.cache_stale = false;
    }

    fn create_dirs(&mut self, path: &[u8]) -> rustix::io::Result<OwnedFd> {
        let mut current = self.resolve_dir(b"")?;
        let mut start = 0;
        while start < path.len() {
            let end = path[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| start + i);
            let prefix = &path[..end];
            current = match self.resolve_dir(prefix) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match fs::mkdirat(&current, &path[start..end], Mode::from_raw_mode(0o755)) {
                        // EEXIST: a dangling symlink is in the way; the
                        // resolve below reports it as missing.
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    self.resolve_dir(prefix)?
                }
                Err(e) => return Err(e),
            };
            start = end + 1;
        }
        Ok(current)
    }

    /// Removes whatever is at `dir`/`name` (recursively for directories),
    /// without following it.
    fn remove_existing(&mut self, dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
        let st = match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        match file_type(&st) {
            FileType::Directory => {
                self.cache_stale = true;
                fs_util::remove_tree(dir, name)
            }
            kind => {
                if kind == FileType::Symlink {
                    self.cache_stale = true;
                }
                fs::unlinkat(dir, name, AtFlags::empty())
            }
        }
    }

    fn owner(&self, hdr: &EntryHeader) -> Result<Option<(Uid, Gid)>, LayerError> {
        if !self.opts.preserve_ownership {
            return Ok(None);
        }
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| LayerError::Unsupported {
                    path: display_path(&hdr.path),
                    reason: format!("{what} {v} is out of range"),
                })
        };
        Ok(Some((
            Uid::from_raw(id(hdr.uid, "uid")?),
            Gid::from_raw(id(hdr.gid, "gid")?),
        )))
    }

    fn dir_fixup(&self, hdr: &EntryHeader) -> Result<DirFixup, LayerError> {
        Ok(DirFixup {
            mode: hdr.mode & 0o7777,
            owner: self.owner(hdr)?,
            mtime: hdr.mtime,
        })
    }

    fn make_dir(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
    ) -> Result<(), LayerError> {
        // Created owner-writable; the real mode is applied at the end.
        let initial = Mode::from_raw_mode(0o700);
        match fs::mkdirat(dir, name, initial) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(entry_err(hdr, "inspecting the existing path"))?;
                if file_type(&st) == FileType::Directory {
                    // Directory over directory: merge. Without privilege a
                    // read-only lower directory must become writable for us.
                    if !self.privileged && st.st_mode & 0o700 != 0o700 {
                        fs_util::chmod_nofollow(dir, name, (st.st_mode & 0o7777) | 0o700)
                            .map_err(entry_err(hdr, "making the directory writable"))?;
                    }
                } else {
                    self.remove_existing(dir, name)
                        .map_err(entry_err(hdr, "removing the existing path"))?;
                    fs::mkdirat(dir, name, initial)
                        .map_err(entry_err(hdr, "creating the directory"))?;
                }
            }
            Err(e) => return Err(LayerError::io(&hdr.path, "creating the directory", e)),
        }
        if !hdr.xattrs.is_empty() {
            let fd = fs_util::open_dir_nofollow(dir, name)
                .map_err(entry_err(hdr, "opening the directory"))?;
            self.set_xattrs(hdr, XattrTarget::Fd(fd.as_fd()))?;
        }
        let fixup = self.dir_fixup(hdr)?;
        self.dir_fixups.insert(path.to_vec(), fixup);
        Ok(())
    }

    fn make_file<R: Read>(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
        reader: &mut TarReader<R>,
    ) -> Result<(), LayerError> {
        // O_EXCL|O_NOFOLLOW: never write through whatever is already there
        // (in particular a symlink pointing outside); replace it instead.
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o600);
        let fd = match fs::openat(dir, name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.remove_existing(dir, name)
                    .map_err(entry_err(hdr, "removing the existing path"))?;
                fs::openat(dir, name, flags, mode).map_err(entry_err(hdr, "creating the file"))?
            }
            Err(e) => return Err(LayerError::io(&hdr.path, "creating the file", e)),
        };
        let mut file = File::from(fd);
        loop {
            let chunk = reader.content_chunk()?;
            if chunk.is_empty() {
                break;
            }
            file.write_all(chunk)
                .map_err(|e| LayerError::io(&hdr.path, "writing file content", e))?;
            let n = chunk.len();
            reader.consume_content(n);
        }
        // Order matters: chown clears setuid/setgid bits and file
        // capabilities, so mode and xattrs come after it, mtime last.
        if let Some((uid, gid)) = self.owner(hdr)? {
            fs::fchown(&file, Some(uid), Some(gid)).map_err(entry_err(hdr, "setting the owner"))?;
        }
        fs::fchmod(&file, Mode::from_raw_mode(hdr.mode & 0o7777))
            .map_err(entry_err(hdr, "setting the mode"))?;
        self.set_xattrs(hdr, XattrTarget::Fd(file.as_fd()))?;
        fs::futimens(&file, &timestamps(hdr.mtime))
            .map_err(entry_err(hdr, "setting the modification time"))?;
        Ok(())
    }

    fn make_symlink(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        if hdr.link_target.is_empty() || hdr.link_target.contains(&0) {
            return Err(LayerError::invalid_path(
                &hdr.path,
                "symlink target is empty or contains a NUL byte",
            ));
        }
        // The target is stored verbatim; it is only ever resolved later via
        // RESOLVE_IN_ROOT, so an "outside" target cannot be used to escape.
        let target = hdr.link_target.as_slice();
        match fs::symlinkat(target, dir, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.remove_existing(dir, name)
                    .map_err(entry_err(hdr, "removing the existing path"))?;
                fs::symlinkat(target, dir, name).map_err(entry_err(hdr, "creating the symlink"))?;
            }
            Err(e) => return Err(LayerError::io(&hdr.path, "creating the symlink", e)),
        }
        self.finish_special(hdr, dir, name)
    }

    /// Owner, xattrs and mtime for entries that cannot be opened safely
    /// (symlinks, devices, FIFOs): all by name with no-follow semantics.
    fn finish_special(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        self.chown_special(hdr, dir, name)?;
        self.finish_special_xattrs_mtime(hdr, dir, name)
    }

    fn chown_special(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        if let Some((uid, gid)) = self.owner(hdr)? {
            fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(entry_err(hdr, "setting the owner"))?;
        }
        Ok(())
    }

    fn finish_special_xattrs_mtime(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        if !hdr.xattrs.is_empty() {
            let mut path = std::mem::take(&mut self.scratch);
            fs_util::proc_fd_path(dir, Some(name), &mut path);
            let result = self.set_xattrs(hdr, XattrTarget::PathNoFollow(&path));
            self.scratch = path;
            result?;
        }
        fs::utimensat(dir, name, &timestamps(hdr.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(entry_err(hdr, "setting the modification time"))
    }

    fn make_hardlink(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        let bad_target = |reason: &'static str| LayerError::InvalidHardlink {
            path: display_path(&hdr.path),
            target: display_path(&hdr.link_target),
            reason,
        };
        let mut target = std::mem::take(&mut self.link_target);
        normalize_into(&hdr.link_target, &mut target).map_err(bad_target)?;
        if target.is_empty() {
            self.link_target = target;
            return Err(bad_target("is the layer root"));
        }
        let (target_parent, target_name) = split_parent(&target);
        let result = (|| {
            // Resolved inside the root like any other path: `/etc/passwd`
            // means `<root>/etc/passwd`, and symlinks cannot lead outside.
            let target_dir = self
                .resolve_dir(target_parent)
                .map_err(|_| bad_target("does not exist inside the layer root"))?;
            let target_st = fs::statat(&target_dir, target_name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|_| bad_target("does not exist inside the layer root"))?;
            if file_type(&target_st) == FileType::Directory {
                return Err(bad_target("is a directory"));
            }
            // No AT_SYMLINK_FOLLOW: a symlink target is linked itself.
            let link = || fs::linkat(&target_dir, target_name, dir, name, AtFlags::empty());
            match link() {
                Ok(()) => Ok(()),
                Err(Errno::EXIST) => {
                    let existing = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(entry_err(hdr, "inspecting the existing path"))?;
                    if existing.st_dev == target_st.st_dev && existing.st_ino == target_st.st_ino {
                        return Ok(());
                    }
                    self.remove_existing(dir, name)
                        .map_err(entry_err(hdr, "removing the existing path"))?;
                    link().map_err(entry_err(hdr, "creating the hardlink"))
                }
                Err(e) => Err(LayerError::io(&hdr.path, "creating the hardlink", e)),
            }
        })();
        self.link_target = target;
        result
    }

    fn make_node(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        let file_type = match hdr.kind {
            EntryKind::CharDevice => FileType::CharacterDevice,
            EntryKind::BlockDevice => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let is_device = file_type != FileType::Fifo;
        if is_device && !self.opts.allow_device_nodes {
            return self.skip_device(hdr, dir, name);
        }
        let dev = fs::makedev(hdr.dev_major, hdr.dev_minor);
        let perm = Mode::from_raw_mode(hdr.mode & 0o777);
        let create = || fs::mknodat(dir, name, file_type, perm, dev);
        let created = match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(dir, name)
                    .map_err(entry_err(hdr, "removing the existing path"))?;
                create()
            }
            other => other,
        };
        match created {
            Ok(()) => {}
            // In a user namespace even "root" may not create devices.
            Err(Errno::PERM) if is_device => return self.skip_device(hdr, dir, name),
            Err(e) => return Err(LayerError::io(&hdr.path, "creating the special file", e)),
        }
        self.chown_special(hdr, dir, name)?;
        // mknod honours the umask; set the exact mode (after chown).
        fs_util::chmod_nofollow(dir, name, hdr.mode & 0o7777)
            .map_err(entry_err(hdr, "setting the mode"))?;
        self.finish_special_xattrs_mtime(hdr, dir, name)
    }

    /// A device we may not create still replaces what lower layers had.
    fn skip_device(
        &mut self,
        hdr: &EntryHeader,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), LayerError> {
        self.remove_existing(dir, name)
            .map_err(entry_err(hdr, "removing the existing path"))?;
        self.stats.devices_skipped += 1;
        Ok(())
    }

    fn set_xattrs(&mut self, hdr: &EntryHeader, target: XattrTarget<'_>) -> Result<(), LayerError> {
        for (name, value) in &hdr.xattrs {
            if is_overlay_xattr(name) {
                self.stats.xattrs_skipped += 1;
                continue;
            }
            let name = name.as_slice();
            let result = match target {
                XattrTarget::Fd(fd) => fs::fsetxattr(fd, name, value, XattrFlags::empty()),
                XattrTarget::PathNoFollow(path) => {
                    fs::lsetxattr(path, name, value, XattrFlags::empty())
                }
            };
            match result {
                Ok(()) => {}
                Err(Errno::PERM | Errno::ACCESS | Errno::NOTSUP) => self.stats.xattrs_skipped += 1,
                Err(e) => {
                    return Err(LayerError::io(
                        &hdr.path,
                        "setting an extended attribute",
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: remove everything lower layers put there,
    /// keeping what this layer provides (whatever the entry order).
    fn apply_opaque(&mut self, hdr: &EntryHeader, dir_path: &[u8]) -> Result<(), LayerError> {
        self.layer_paths.insert_with_ancestors(dir_path);
        let dir = self
            .take_parent(dir_path, true)
            .map_err(entry_err(hdr, "resolving the opaque directory"))?;
        self.cache_stale = true;
        let result = if self.opts.overlay_whiteouts {
            fs::fsetxattr(&dir, OVERLAY_OPAQUE, b"y", XattrFlags::empty())
                .map_err(entry_err(hdr, "marking the directory opaque for overlayfs"))
        } else {
            self.remove_lower_children(dir.as_fd(), dir_path)
                .map_err(entry_err(hdr, "emptying the opaque directory"))
        };
        self.release_parent(dir_path, dir);
        result
    }

    /// `.wh.<victim>` in `dir`: delete `victim` if a lower layer has it.
    fn apply_whiteout(
        &mut self,
        hdr: &EntryHeader,
        dir_path: &[u8],
        victim: &[u8],
    ) -> Result<(), LayerError> {
        self.layer_paths.insert_with_ancestors(dir_path);
        if self.opts.overlay_whiteouts {
            return self.make_overlay_whiteout(hdr, dir_path, victim);
        }
        let dir = match self.take_parent(dir_path, false) {
            Ok(fd) => fd,
            // Nothing there, nothing to delete.
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => {
                return Err(LayerError::io(
                    &hdr.path,
                    "resolving the whiteout directory",
                    e,
                ));
            }
        };
        let mut victim_path = std::mem::take(&mut self.scratch);
        join_into(dir_path, victim, &mut victim_path);
        let result = if self.layer_paths.contains(&victim_path) {
            // This layer provides the path itself: only lower content below
            // it (if it is a directory) is hidden.
            match fs::statat(&dir, victim, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if file_type(&st) == FileType::Directory => {
                    self.cache_stale = true;
                    fs_util::open_dir_nofollow(dir.as_fd(), victim)
                        .and_then(|fd| self.remove_lower_children(fd.as_fd(), &victim_path))
                }
                _ => Ok(()),
            }
        } else {
            self.remove_existing(dir.as_fd(), victim)
        };
        self.scratch = victim_path;
        self.release_parent(dir_path, dir);
        result.map_err(entry_err(hdr, "removing the whited-out path"))
    }

    /// Overlay form of `.wh.<victim>`: a 0/0 character device, unless this layer provides the
    /// path itself (then the entry that provides it wins, whatever the order).
    fn make_overlay_whiteout(
        &mut self,
        hdr: &EntryHeader,
        dir_path: &[u8],
        victim: &[u8],
    ) -> Result<(), LayerError> {
        let mut victim_path = std::mem::take(&mut self.scratch);
        join_into(dir_path, victim, &mut victim_path);
        let provided = self.layer_paths.contains(&victim_path);
        self.scratch = victim_path;
        if provided {
            return Ok(());
        }
        let dir = self
            .take_parent(dir_path, true)
            .map_err(entry_err(hdr, "resolving the whiteout directory"))?;
        let result = fs::mknodat(
            &dir,
            victim,
            FileType::CharacterDevice,
            Mode::empty(),
            fs::makedev(0, 0),
        )
        .map_err(entry_err(hdr, "creating the overlay whiteout"));
        self.release_parent(dir_path, dir);
        result
    }

    /// Removes every descendant of `dir` (whose normalised path is
    /// `dir_path`) that this layer did not provide, descending into the
    /// directories it did provide.
    fn remove_lower_children(
        &self,
        dir: BorrowedFd<'_>,
        dir_path: &[u8],
    ) -> rustix::io::Result<()> {
        struct Frame {
            fd: OwnedFd,
            path: Vec<u8>,
            pending: Vec<std::ffi::CString>,
        }
        let top = fs_util::open_dir_nofollow(dir, c".")?;
        let pending = fs_util::list_dir(top.as_fd())?;
        let mut stack = vec![Frame {
            fd: top,
            path: dir_path.to_vec(),
            pending,
        }];
        let mut child_path = Vec::new();
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.pending.pop() else {
                stack.pop();
                continue;
            };
            join_into(&frame.path, child.as_bytes(), &mut child_path);
            if !self.layer_paths.contains(&child_path) {
                fs_util::remove_tree(frame.fd.as_fd(), child.as_bytes())?;
                continue;
            }
            let st = fs::statat(&frame.fd, &child, AtFlags::SYMLINK_NOFOLLOW)?;
            if file_type(&st) == FileType::Directory {
                let fd = fs_util::open_dir_nofollow(frame.fd.as_fd(), &child)?;
                let pending = fs_util::list_dir(fd.as_fd())?;
                stack.push(Frame {
                    fd,
                    path: child_path.clone(),
                    pending,
                });
            }
        }
        Ok(())
    }

    /// Applies deferred directory metadata, deepest first so that a parent
    /// made read-only does not block fixing its children.
    fn fix_up_directories(&mut self) -> Result<(), LayerError> {
        let mut dirs: Vec<(Vec<u8>, DirFixup)> = self.dir_fixups.drain().collect();
        let depth = |p: &[u8]| {
            if p.is_empty() {
                0
            } else {
                1 + p.iter().filter(|&&b| b == b'/').count()
            }
        };
        dirs.sort_by(|(a, _), (b, _)| depth(b).cmp(&depth(a)).then_with(|| a.cmp(b)));
        self.cached_dir = None;
        for (path, fixup) in dirs {
            let opened = if path.is_empty() {
                fs_util::open_dir_nofollow(self.root.as_fd(), c".")
            } else {
                let (parent, name) = split_parent(&path);
                self.resolve_dir(parent)
                    .and_then(|p| fs_util::open_dir_nofollow(p.as_fd(), name))
            };
            let fd = match opened {
                Ok(fd) => fd,
                // Replaced later in the layer (by a file or a symlink, which
                // is deliberately not followed): nothing to fix.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(LayerError::io(&path, "opening the directory", e)),
            };
            if let Some((uid, gid)) = fixup.owner {
                fs::fchown(&fd, Some(uid), Some(gid))
                    .map_err(|e| LayerError::io(&path, "setting the owner", e))?;
            }
            fs::fchmod(&fd, Mode::from_raw_mode(fixup.mode))
                .map_err(|e| LayerError::io(&path, "setting the mode", e))?;
            fs::futimens(&fd, &timestamps(fixup.mtime))
                .map_err(|e| LayerError::io(&path, "setting the modification time", e))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// A `/proc/self/fd/<dir>/<name>` path, used with `lsetxattr`.
    PathNoFollow(&'a [u8]),
}
