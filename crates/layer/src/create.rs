//! Creating a deterministic layer tar from a directory.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::LayerError;
use crate::fs_util::{self, file_type};
use crate::paths::{OPAQUE_MARKER, WHITEOUT_PREFIX, join_into};
use crate::tar_format::{EntryHeader, EntryKind, TarWriter};

/// Options for [`write_layer`].
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Clamp every mtime to at most this value (reproducible builds).
    pub source_date_epoch: Option<i64>,
    /// `dir` is an overlayfs upper directory: translate its whiteouts
    /// (0/0 character devices, `*.overlay.whiteout` files) and opaque
    /// directories (`*.overlay.opaque=y`) into OCI whiteout entries.
    pub overlay_upper: bool,
}

/// What [`write_layer`] produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries written (PAX extension headers not counted).
    pub entries: u64,
    /// Size of the uncompressed tar stream written.
    pub bytes: u64,
}

/// Writes an uncompressed tar of `dir`'s contents to `out`.
///
/// The output is a pure function of the tree: entries appear depth-first
/// with each directory's children in bytewise name order (in overlay mode a
/// directory's opaque marker and whiteouts come first, as the OCI spec
/// recommends); paths are relative without `./`, directories end in `/`;
/// only numeric uid/gid are stored; mtimes are whole seconds, clamped to
/// `source_date_epoch`; atime/ctime are never stored. Hardlinked files
/// (same device and inode) become link entries to the first path seen.
/// Sockets are skipped. Symlinks are archived, never followed, and the walk
/// never leaves `dir` (every step is an `O_NOFOLLOW` `*at` call).
///
/// Extended attributes are stored as `SCHILY.xattr.*` PAX records, except
/// `trusted.overlay.*`/`user.overlay.*` (overlayfs internals) and
/// `security.selinux` (a label of this host's policy, not of the image).
pub fn write_layer<W: Write>(
    dir: &Path,
    opts: &CreateOptions,
    out: W,
) -> Result<(W, LayerStats), LayerError> {
    let root = fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Io {
        path: dir.display().to_string(),
        op: "opening the source directory",
        error: e.into(),
    })?;
    let mut archiver = Archiver {
        opts,
        writer: TarWriter::new(out),
        hardlinks: HashMap::new(),
        hdr: EntryHeader::default(),
        xattr_names: Vec::new(),
        proc_path: Vec::new(),
        copy_buf: vec![0; 1 << 20],
        entries: 0,
    };
    archiver.walk(root)?;
    let bytes_before_trailer = archiver.writer.bytes_written();
    let out = archiver
        .writer
        .finish()
        .map_err(|e| LayerError::io(b"<end of archive>", "writing the archive", e))?;
    let stats = LayerStats {
        entries: archiver.entries,
        bytes: bytes_before_trailer + 2 * crate::tar_format::BLOCK as u64,
    };
    Ok((out, stats))
}

/// One child of a directory being archived.
struct Child {
    name: CString,
    st: fs::Stat,
    /// An overlayfs whiteout, to be emitted as `.wh.<name>`.
    whiteout: bool,
}

/// A directory whose children are being emitted.
struct Frame {
    fd: OwnedFd,
    /// Relative path of the directory ("" for the root).
    path: Vec<u8>,
    children: Vec<Child>,
    next: usize,
}

struct Archiver<'o, W: Write> {
    opts: &'o CreateOptions,
    writer: TarWriter<W>,
    /// (dev, ino) of multiply-linked non-directories -> first path written.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    hdr: EntryHeader,
    xattr_names: Vec<u8>,
    proc_path: Vec<u8>,
    copy_buf: Vec<u8>,
    entries: u64,
}

/// How to reach an inode's extended attributes without following it.
#[derive(Clone, Copy)]
enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    /// A `/proc/self/fd/<dir>/<name>` path, used with `l*xattr`.
    PathNoFollow,
}

fn excluded_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux"
}

impl<W: Write> Archiver<'_, W> {
    fn walk(&mut self, root: OwnedFd) -> Result<(), LayerError> {
        let children = self.read_children(root.as_fd(), b"")?;
        let mut stack = vec![Frame {
            fd: root,
            path: Vec::new(),
            children,
            next: 0,
        }];
        let mut path = Vec::new();
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.children.get(frame.next) else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            join_into(&frame.path, child.name.as_bytes(), &mut path);
            if let Some(next) = self.emit_child(frame.fd.as_fd(), &frame.path, child, &path)? {
                stack.push(next);
            }
        }
        Ok(())
    }

    /// Lists, stats and orders the children of `dir`.
    fn read_children(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &[u8],
    ) -> Result<Vec<Child>, LayerError> {
        let names =
            fs_util::list_dir(dir).map_err(|e| LayerError::io(path, "listing the directory", e))?;
        let mut children = Vec::with_capacity(names.len());
        let mut child_path = Vec::new();
        for name in names {
            let st = fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                join_into(path, name.as_bytes(), &mut child_path);
                LayerError::io(&child_path, "inspecting the file", e)
            })?;
            let kind = file_type(&st);
            if kind == FileType::Socket {
                continue;
            }
            let whiteout = self.opts.overlay_upper
                && match kind {
                    FileType::CharacterDevice => st.st_rdev == 0,
                    FileType::RegularFile if st.st_size == 0 => self.has_whiteout_xattr(dir, &name),
                    _ => false,
                };
            children.push(Child { name, st, whiteout });
        }
        // Whiteouts first (OCI: "whiteout files SHOULD appear before sibling
        // entries"), then bytewise by name.
        children.sort_by(|a, b| (!a.whiteout, &a.name).cmp(&(!b.whiteout, &b.name)));
        Ok(children)
    }

    /// Newer overlayfs can also mark whiteouts with an xattr on an empty file.
    fn has_whiteout_xattr(&mut self, dir: BorrowedFd<'_>, name: &CString) -> bool {
        fs_util::proc_fd_path(dir, Some(name.as_bytes()), &mut self.proc_path);
        [c"trusted.overlay.whiteout", c"user.overlay.whiteout"]
            .iter()
            .any(|attr| fs::lgetxattr(self.proc_path.as_slice(), *attr, &mut [0u8; 0][..]).is_ok())
    }

    fn clamp_mtime(&self, mtime: i64) -> i64 {
        match self.opts.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }

    /// Fills `self.hdr` with the metadata common to every entry type.
    fn set_common(&mut self, path: &[u8], st: &fs::Stat, kind: EntryKind) {
        let mtime = self.clamp_mtime(st.st_mtime);
        let hdr = &mut self.hdr;
        hdr.path.clear();
        hdr.path.extend_from_slice(path);
        hdr.link_target.clear();
        hdr.kind = kind;
        hdr.mode = st.st_mode & 0o7777;
        hdr.uid = u64::from(st.st_uid);
        hdr.gid = u64::from(st.st_gid);
        hdr.mtime = mtime;
        hdr.size = 0;
        hdr.dev_major = 0;
        hdr.dev_minor = 0;
        hdr.xattrs.clear();
    }

    fn write_header(&mut self) -> Result<(), LayerError> {
        self.entries += 1;
        self.writer
            .write_header(&self.hdr)
            .map_err(|e| LayerError::io(&self.hdr.path, "writing the archive", e))
    }

    /// Writes a header-only entry (no content).
    fn write_empty_entry(&mut self) -> Result<(), LayerError> {
        self.write_header()?;
        self.writer
            .end_content()
            .map_err(|e| LayerError::io(&self.hdr.path, "writing the archive", e))
    }

    /// Emits one child; returns a frame to descend into for directories.
    fn emit_child(
        &mut self,
        dir: BorrowedFd<'_>,
        dir_path: &[u8],
        child: &Child,
        path: &[u8],
    ) -> Result<Option<Frame>, LayerError> {
        let st = &child.st;
        if child.whiteout {
            let mut name = WHITEOUT_PREFIX.to_vec();
            name.extend_from_slice(child.name.as_bytes());
            let mut wh_path = Vec::new();
            join_into(dir_path, &name, &mut wh_path);
            self.write_marker(&wh_path, st)?;
            return Ok(None);
        }
        let kind = file_type(st);
        if kind != FileType::Directory && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.hardlinks.get(&key) {
                let first = first.clone();
                self.set_common(path, st, EntryKind::Hardlink);
                self.hdr.link_target = first;
                self.write_empty_entry()?;
                return Ok(None);
            }
            self.hardlinks.insert(key, path.to_vec());
        }
        let name = child.name.as_c_str();
        match kind {
            FileType::Directory => return self.emit_dir(dir, name, path, st).map(Some),
            FileType::RegularFile => self.emit_file(dir, name, path, st)?,
            FileType::Symlink => {
                self.set_common(path, st, EntryKind::Symlink);
                let target = fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| LayerError::io(path, "reading the symlink", e))?;
                self.hdr.link_target = target.into_bytes();
                self.read_xattrs(XattrSource::PathNoFollow, dir, name, path)?;
                self.write_empty_entry()?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let entry_kind = match kind {
                    FileType::CharacterDevice => EntryKind::CharDevice,
                    FileType::BlockDevice => EntryKind::BlockDevice,
                    _ => EntryKind::Fifo,
                };
                self.set_common(path, st, entry_kind);
                if entry_kind != EntryKind::Fifo {
                    self.hdr.dev_major = fs::major(st.st_rdev as _);
                    self.hdr.dev_minor = fs::minor(st.st_rdev as _);
                }
                self.read_xattrs(XattrSource::PathNoFollow, dir, name, path)?;
                self.write_empty_entry()?;
            }
            _ => {}
        }
        Ok(None)
    }

    /// An empty mode-0 regular file: whiteout or opaque marker.
    fn write_marker(&mut self, path: &[u8], st: &fs::Stat) -> Result<(), LayerError> {
        self.set_common(path, st, EntryKind::Regular);
        self.hdr.mode = 0;
        self.hdr.uid = 0;
        self.hdr.gid = 0;
        self.write_empty_entry()
    }

    fn open_checked(
        &self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        path: &[u8],
        st: &fs::Stat,
        flags: OFlags,
    ) -> Result<OwnedFd, LayerError> {
        let fd = fs::openat(
            dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| LayerError::io(path, "opening the file", e))?;
        let now = fs::fstat(&fd).map_err(|e| LayerError::io(path, "inspecting the file", e))?;
        if now.st_dev != st.st_dev || now.st_ino != st.st_ino {
            return Err(LayerError::io(
                path,
                "opening the file",
                std::io::Error::other("file was replaced while the layer was being written"),
            ));
        }
        Ok(fd)
    }

    fn emit_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        path: &[u8],
        st: &fs::Stat,
    ) -> Result<Frame, LayerError> {
        let fd = self.open_checked(dir, name, path, st, OFlags::RDONLY | OFlags::DIRECTORY)?;
        self.set_common(path, st, EntryKind::Directory);
        let opaque = self.read_xattrs(XattrSource::Fd(fd.as_fd()), dir, name, path)?;
        self.write_empty_entry()?;
        if opaque {
            let mut marker = Vec::new();
            join_into(path, OPAQUE_MARKER, &mut marker);
            self.write_marker(&marker, st)?;
        }
        let children = self.read_children(fd.as_fd(), path)?;
        Ok(Frame {
            fd,
            path: path.to_vec(),
            children,
            next: 0,
        })
    }

    fn emit_file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        path: &[u8],
        st: &fs::Stat,
    ) -> Result<(), LayerError> {
        let fd = self.open_checked(dir, name, path, st, OFlags::RDONLY)?;
        self.set_common(path, st, EntryKind::Regular);
        self.hdr.size = st.st_size as u64;
        self.read_xattrs(XattrSource::Fd(fd.as_fd()), dir, name, path)?;
        self.write_header()?;
        let mut file = std::fs::File::from(fd);
        let mut left = self.hdr.size;
        while left > 0 {
            let want = self
                .copy_buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.copy_buf[..want]) {
                Ok(0) => {
                    return Err(LayerError::io(
                        path,
                        "reading the file",
                        std::io::Error::other("file shrank while the layer was being written"),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::io(path, "reading the file", e)),
            };
            self.writer
                .write_content(&self.copy_buf[..n])
                .map_err(|e| LayerError::io(path, "writing the archive", e))?;
            left -= n as u64;
        }
        self.writer
            .end_content()
            .map_err(|e| LayerError::io(path, "writing the archive", e))
    }

    /// Reads xattrs into `self.hdr.xattrs`. Returns whether the directory is
    /// an overlayfs opaque directory (only in overlay mode).
    fn read_xattrs(
        &mut self,
        source: XattrSource<'_>,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        path: &[u8],
    ) -> Result<bool, LayerError> {
        if let XattrSource::PathNoFollow = source {
            fs_util::proc_fd_path(dir, Some(name.to_bytes()), &mut self.proc_path);
        }
        let proc_path = self.proc_path.as_slice();
        let list = |buf: &mut [u8]| match source {
            XattrSource::Fd(fd) => fs::flistxattr(fd, buf),
            XattrSource::PathNoFollow => fs::llistxattr(proc_path, buf),
        };
        let get = |attr: &[u8], buf: &mut [u8]| match source {
            XattrSource::Fd(fd) => fs::fgetxattr(fd, attr, buf),
            XattrSource::PathNoFollow => fs::lgetxattr(proc_path, attr, buf),
        };
        let err = |e: Errno| LayerError::io(path, "reading extended attributes", e);

        let mut names = std::mem::take(&mut self.xattr_names);
        let listed = read_sized(&mut names, list);
        let count = match listed {
            Ok(n) => n,
            // No xattr support here (or /proc unavailable): nothing to store.
            Err(Errno::NOTSUP | Errno::NOENT) => 0,
            Err(e) => {
                self.xattr_names = names;
                return Err(err(e));
            }
        };
        let mut opaque = false;
        let mut result = Ok(());
        for attr in names[..count].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let mut value = Vec::new();
            match read_sized(&mut value, |buf| get(attr, buf)) {
                Ok(n) => value.truncate(n),
                // Removed between list and get.
                Err(Errno::NODATA) => continue,
                Err(e) => {
                    result = Err(err(e));
                    break;
                }
            }
            if self.opts.overlay_upper {
                if attr == b"trusted.overlay.opaque" || attr == b"user.overlay.opaque" {
                    opaque |= value == b"y";
                }
                if attr.ends_with(b".overlay.redirect") || attr.ends_with(b".overlay.metacopy") {
                    result = Err(LayerError::Unsupported {
                        path: crate::error::display_path(path),
                        reason: "overlayfs redirect/metacopy upper entries (mount without \
                                 redirect_dir/metacopy)"
                            .to_owned(),
                    });
                    break;
                }
            }
            if !excluded_xattr(attr) {
                self.hdr.xattrs.push((attr.to_vec(), value));
            }
        }
        self.xattr_names = names;
        result.map(|()| opaque)
    }
}

/// Calls a `*listxattr`/`*getxattr`-style function, growing `buf` on ERANGE.
fn read_sized(
    buf: &mut Vec<u8>,
    mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<usize> {
    if buf.len() < 256 {
        buf.resize(256, 0);
    }
    loop {
        match call(buf) {
            Err(Errno::RANGE) => {
                // Ask for the exact size, then retry (it may grow again).
                let needed = call(&mut [])?;
                buf.resize(needed.max(buf.len() * 2), 0);
            }
            result => return result,
        }
    }
}
