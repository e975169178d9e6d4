//! Shared helpers for the integration tests: a raw tar builder that writes
//! header bytes directly (so hostile names like `../x` can be produced) and
//! a filesystem snapshot for "nothing else changed" assertions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// One raw ustar header; every field is written verbatim.
#[derive(Clone)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub prefix: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Declared size; defaults to `data.len()`.
    pub size: Option<u64>,
    /// Raw bytes for the size field (overrides `size`), e.g. base-256.
    pub size_field: Option<[u8; 12]>,
    pub data: Vec<u8>,
    /// Add this to the computed checksum (to corrupt it).
    pub checksum_delta: u64,
}

impl Hdr {
    pub fn new(name: &[u8], typeflag: u8) -> Self {
        Hdr {
            name: name.to_vec(),
            prefix: Vec::new(),
            typeflag,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            size: None,
            size_field: None,
            data: Vec::new(),
            checksum_delta: 0,
        }
    }
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    assert!(s.len() < field.len(), "value {value} does not fit");
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

#[derive(Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        RawTar::default()
    }

    pub fn header(&mut self, h: Hdr) -> &mut Self {
        assert!(h.name.len() <= 100 && h.link.len() <= 100 && h.prefix.len() <= 155);
        let mut b = [0u8; 512];
        b[..h.name.len()].copy_from_slice(&h.name);
        octal(&mut b[100..108], u64::from(h.mode));
        octal(&mut b[108..116], h.uid);
        octal(&mut b[116..124], h.gid);
        match h.size_field {
            Some(raw) => b[124..136].copy_from_slice(&raw),
            None => octal(&mut b[124..136], h.size.unwrap_or(h.data.len() as u64)),
        }
        octal(&mut b[136..148], h.mtime);
        b[156] = h.typeflag;
        b[157..157 + h.link.len()].copy_from_slice(&h.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], u64::from(h.dev_major));
        octal(&mut b[337..345], u64::from(h.dev_minor));
        b[345..345 + h.prefix.len()].copy_from_slice(&h.prefix);
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum::<u64>() + h.checksum_delta;
        octal(&mut b[148..155], sum);
        b[155] = b' ';
        self.buf.extend_from_slice(&b);
        self.buf.extend_from_slice(&h.data);
        let pad = (512 - h.data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut h = Hdr::new(name, b'0');
        h.data = data.to_vec();
        self.header(h)
    }

    pub fn dir(&mut self, name: &[u8]) -> &mut Self {
        self.dir_mode(name, 0o755)
    }

    pub fn dir_mode(&mut self, name: &[u8], mode: u32) -> &mut Self {
        let mut h = Hdr::new(name, b'5');
        h.mode = mode;
        self.header(h)
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Hdr::new(name, b'2');
        h.mode = 0o777;
        h.link = target.to_vec();
        self.header(h)
    }

    pub fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Hdr::new(name, b'1');
        h.link = target.to_vec();
        self.header(h)
    }

    pub fn device(&mut self, name: &[u8], typeflag: u8, major: u32, minor: u32) -> &mut Self {
        let mut h = Hdr::new(name, typeflag);
        h.dev_major = major;
        h.dev_minor = minor;
        self.header(h)
    }

    fn extension(&mut self, typeflag: u8, body: Vec<u8>) -> &mut Self {
        let mut h = Hdr::new(b"././@Ext", typeflag);
        h.data = body;
        self.header(h)
    }

    /// A PAX extended header for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            let base = key.len() + value.len() + 3;
            let mut len = base + 1;
            while base + len.to_string().len() != len {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.extension(b'x', body)
    }

    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut body = name.to_vec();
        body.push(0);
        self.extension(b'L', body)
    }

    pub fn gnu_long_link(&mut self, name: &[u8]) -> &mut Self {
        let mut body = name.to_vec();
        body.push(0);
        self.extension(b'K', body)
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    /// The archive without an end marker (e.g. for truncation tests).
    pub fn unfinished(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Everything observable about a tree, as comparable text per path.
pub type Snapshot = BTreeMap<PathBuf, String>;

pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            value.truncate(len);
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    out
}

fn describe(path: &Path, dir_times: bool) -> String {
    let md = fs::symlink_metadata(path).unwrap();
    let ft = md.file_type();
    let content = if ft.is_file() {
        format!("{:?}", fs::read(path).unwrap())
    } else if ft.is_symlink() {
        format!("-> {:?}", fs::read_link(path).unwrap())
    } else if ft.is_char_device() || ft.is_block_device() {
        format!("dev {}", md.rdev())
    } else {
        String::new()
    };
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "chr"
    } else if ft.is_block_device() {
        "blk"
    } else {
        "other"
    };
    let times = if dir_times || !ft.is_dir() {
        format!(" mtime={}.{}", md.mtime(), md.mtime_nsec())
    } else {
        String::new()
    };
    format!(
        "{kind} mode={:o} nlink={} uid={} gid={} size={}{times} {content} xattrs={:?}",
        md.mode() & 0o7777,
        md.nlink(),
        md.uid(),
        md.gid(),
        if ft.is_dir() { 0 } else { md.size() },
        xattrs(path),
    )
}

/// Snapshot of `top` (itself included), skipping the subtree at `exclude`.
pub fn snapshot(top: &Path, exclude: Option<&Path>) -> Snapshot {
    snapshot_with(top, exclude, true)
}

/// Like [`snapshot`]; `dir_times: false` leaves out directory mtimes (which
/// legitimately differ when the same tree is built in different steps).
pub fn snapshot_with(top: &Path, exclude: Option<&Path>, dir_times: bool) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(path) = stack.pop() {
        if Some(path.as_path()) == exclude {
            continue;
        }
        let rel = path.strip_prefix(top).unwrap().to_path_buf();
        out.insert(rel, describe(&path, dir_times));
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out
}

/// Sets a path's mtime (and atime) without following symlinks.
pub fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Sets whole-second mtimes on every path under `top` (deepest last-set
/// last, so directory mtimes stick), derived from `base`.
pub fn set_all_mtimes(top: &Path, base: i64) {
    let mut paths: Vec<PathBuf> = snapshot(top, None).keys().map(|p| top.join(p)).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in paths.iter().enumerate() {
        set_mtime(path, base + i as i64);
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub const LONG_NAME: &str = "this-file-name-is-deliberately-longer-than-the-one-hundred-bytes-a-ustar-name-field-holds-0123456789";

/// A tree exercising every entry type. Mtimes are whole seconds.
pub fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc/conf.d")).unwrap();
    fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(dir.join("etc/conf.d/a.conf"), "a").unwrap();
    fs::create_dir(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/tool"), vec![0x7f; 70_000]).unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(dir.join("bin/tool"), dir.join("bin/tool-alias")).unwrap();
    symlink("tool", dir.join("bin/link")).unwrap();
    symlink("x".repeat(150), dir.join("bin/long-target")).unwrap();
    fs::create_dir(dir.join("deep")).unwrap();
    fs::write(dir.join("deep").join(LONG_NAME), "long").unwrap();
    fs::write(dir.join("a-b"), "sorts before a/ bytewise").unwrap();
    fs::create_dir(dir.join("a")).unwrap();
    fs::write(dir.join("a/z"), "z").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("socket")).unwrap();
    fs::create_dir(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(dir.join("empty"), "").unwrap();
    // Unreadable files can only be archived (and compared) by root.
    let empty_mode = if is_root() { 0o000 } else { 0o444 };
    fs::set_permissions(dir.join("empty"), fs::Permissions::from_mode(empty_mode)).unwrap();
    rustix::fs::setxattr(
        dir.join("etc/hosts").as_path(),
        "user.comment",
        b"hello\0binary",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::create_dir(dir.join("ro")).unwrap();
    fs::write(dir.join("ro/f"), "inside read-only").unwrap();
    fs::set_permissions(dir.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    if is_root() {
        rustix::fs::chownat(
            rustix::fs::CWD,
            dir.join("etc/hosts"),
            Some(rustix::process::Uid::from_raw(1234)),
            Some(rustix::process::Gid::from_raw(5678)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
    }
    set_all_mtimes(dir, 1_650_000_000);
}
