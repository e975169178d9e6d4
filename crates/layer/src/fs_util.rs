//! Directory-fd based filesystem helpers that never follow a final symlink.

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Opens a directory (given as `dir` + `name`, `name` not followed if it is
/// a symlink) for reading its entries.
pub(crate) fn open_dir_nofollow<N: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: N,
) -> rustix::io::Result<OwnedFd> {
    fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Lists a directory's entry names (without `.` and `..`).
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<CString>> {
    // `dir` may be an O_PATH descriptor; reopen it readable.
    let readable = open_dir_nofollow(dir, c".")?;
    let mut names = Vec::new();
    let mut entries = fs::Dir::new(readable)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

pub(crate) fn file_type(st: &fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it.
/// Symlinks are removed, never followed. A missing `name` is not an error.
///
/// Iterative (explicit stack) so hostile deep trees cannot overflow the
/// thread stack.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    match fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    struct Frame {
        fd: OwnedFd,
        name: CString,
        pending: Vec<CString>,
        made_writable: bool,
    }
    let open = |parent: BorrowedFd<'_>, name: CString| -> rustix::io::Result<Frame> {
        let fd = open_dir_nofollow(parent, &name).or_else(|e| {
            // An unreadable directory we own (e.g. mode 0): make it usable.
            if e == Errno::ACCESS {
                chmod_nofollow(parent, &name, 0o700)?;
                open_dir_nofollow(parent, &name)
            } else {
                Err(e)
            }
        })?;
        let pending = list_dir(fd.as_fd())?;
        Ok(Frame {
            fd,
            name,
            pending,
            made_writable: false,
        })
    };
    let top = CString::new(name).map_err(|_| Errno::INVAL)?;
    let mut stack = vec![open(dir, top)?];
    while let Some(frame) = stack.last_mut() {
        match frame.pending.pop() {
            Some(child) => match fs::unlinkat(&frame.fd, &child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    let next = open(frame.fd.as_fd(), child)?;
                    stack.push(next);
                }
                Err(Errno::ACCESS) if !frame.made_writable => {
                    // A read-only directory we own: allow removing its entries.
                    fs::fchmod(&frame.fd, Mode::from_raw_mode(0o700))?;
                    frame.made_writable = true;
                    frame.pending.push(child);
                }
                Err(e) => return Err(e),
            },
            None => {
                let done = stack.pop().expect("stack is non-empty");
                let parent = stack.last().map_or(dir, |f| f.fd.as_fd());
                match fs::unlinkat(parent, &done.name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Formats `/proc/self/fd/<fd>` (optionally `/<name>`) into `out`.
///
/// Used for the few operations Linux offers no fd- or `*at`-based
/// no-follow variant for (chmod of a device node, xattrs of a symlink).
/// The fd magic link refers to exactly the inode we hold, so nothing is
/// resolved by name above it.
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>, name: Option<&[u8]>, out: &mut Vec<u8>) {
    use std::os::fd::AsRawFd;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "/proc/self/fd/{}", fd.as_raw_fd());
    if let Some(name) = name {
        out.push(b'/');
        out.extend_from_slice(name);
    }
}

/// chmod of `dir`/`name` without following `name` if it is a symlink
/// (symlink modes are meaningless on Linux; they are left alone).
pub(crate) fn chmod_nofollow<N: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: N,
    mode: u32,
) -> rustix::io::Result<()> {
    let handle = fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if file_type(&fs::fstat(&handle)?) == FileType::Symlink {
        return Ok(());
    }
    let mut path = Vec::with_capacity(32);
    proc_fd_path(handle.as_fd(), None, &mut path);
    fs::chmod(path.as_slice(), Mode::from_raw_mode(mode))
}
