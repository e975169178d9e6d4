//! A small streaming tar codec (ustar + GNU long names + PAX).
//!
//! The `tar` crate is not used for layers because its reader buffers GNU
//! long names and PAX headers of any declared size (a 4 GiB "long name" is
//! read into memory) and its writer decides the header layout itself. Here
//! every size is checked against explicit limits *before* anything is read,
//! and the writer produces one canonical, deterministic encoding.

use std::io::{self, Read, Write};

use crate::error::{LayerError, display_path};

pub(crate) const BLOCK: usize = 512;
const READ_BUFFER: usize = 1 << 20;

/// What a tar entry creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Regular,
    Directory,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

/// A decoded entry header with all extensions (long names, PAX) folded in.
///
/// Reused across entries by the reader so that its buffers are allocated once.
#[derive(Clone, Debug)]
pub(crate) struct EntryHeader {
    /// Path bytes exactly as the archive gives them (not normalised).
    pub path: Vec<u8>,
    /// Symlink target or hardlink target, verbatim.
    pub link_target: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Modification time in whole seconds since the epoch.
    pub mtime: i64,
    /// Content size in bytes (0 for everything but regular files).
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes as (name, value), from `SCHILY.xattr.*` records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Default for EntryHeader {
    fn default() -> Self {
        EntryHeader {
            path: Vec::new(),
            link_target: Vec::new(),
            kind: EntryKind::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Bounds enforced while reading an archive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadLimits {
    /// Maximum bytes consumed from the (uncompressed) stream.
    pub max_total_bytes: u64,
    /// Maximum number of real entries (extension headers not counted).
    pub max_entries: u64,
    /// Maximum size of one GNU long name/link or PAX extended header.
    pub max_header_size: u64,
}

/// Streaming tar reader with bounded memory.
pub(crate) struct TarReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Bytes consumed by the caller so far (the archive offset).
    offset: u64,
    /// Bytes pulled from `inner` so far.
    pulled: u64,
    limits: ReadLimits,
    entries: u64,
    /// Unread content bytes of the current entry.
    content_left: u64,
    /// Padding after the current entry's content.
    padding_left: u64,
    at_end: bool,
    /// Path of the most recent header, for error messages.
    last_path: Vec<u8>,
}

/// Extension data collected from GNU/PAX headers for the next real entry.
#[derive(Default)]
struct PendingExtensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, limits: ReadLimits) -> Self {
        TarReader {
            inner,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            offset: 0,
            pulled: 0,
            limits,
            entries: 0,
            content_left: 0,
            padding_left: 0,
            at_end: false,
            last_path: Vec::new(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> LayerError {
        LayerError::MalformedTar {
            path: self.current_path_display(),
            offset: self.offset,
            reason: reason.into(),
        }
    }

    fn current_path_display(&self) -> String {
        if self.last_path.is_empty() {
            "<archive start>".to_owned()
        } else {
            display_path(&self.last_path)
        }
    }

    fn limit(&self, limit: &'static str, max: u64) -> LayerError {
        LayerError::LimitExceeded {
            path: self.current_path_display(),
            limit,
            max,
        }
    }

    /// Makes buffered data available; returns the buffered slice (empty at EOF).
    fn fill(&mut self) -> Result<&[u8], LayerError> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
            let n = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(LayerError::Io {
                            path: self.current_path_display(),
                            op: "reading layer stream",
                            error: e,
                        });
                    }
                }
            };
            self.pulled += n as u64;
            if self.pulled > self.limits.max_total_bytes {
                return Err(self.limit("uncompressed layer size", self.limits.max_total_bytes));
            }
            self.len = n;
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.len);
        self.pos += n;
        self.offset += n as u64;
    }

    /// Reads exactly `out.len()` bytes; `Ok(false)` on clean EOF before any byte.
    fn read_exact_or_eof(&mut self, out: &mut [u8]) -> Result<bool, LayerError> {
        let mut done = 0;
        while done < out.len() {
            let avail = self.fill()?;
            if avail.is_empty() {
                if done == 0 {
                    return Ok(false);
                }
                return Err(self.malformed("archive truncated inside a header block"));
            }
            let n = avail.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&avail[..n]);
            self.consume(n);
            done += n;
        }
        Ok(true)
    }

    fn skip_bytes(&mut self, mut n: u64) -> Result<(), LayerError> {
        while n > 0 {
            let avail = self.fill()?.len();
            if avail == 0 {
                return Err(self.malformed("archive truncated inside entry data"));
            }
            let step = (avail as u64).min(n) as usize;
            self.consume(step);
            n -= step as u64;
        }
        Ok(())
    }

    /// Skips whatever is left of the current entry's content and padding.
    pub fn skip_content(&mut self) -> Result<(), LayerError> {
        let n = self.content_left + self.padding_left;
        self.content_left = 0;
        self.padding_left = 0;
        self.skip_bytes(n)
    }

    /// Returns the next chunk of the current entry's content (empty when all
    /// content has been consumed). Call [`Self::consume_content`] afterwards.
    pub fn content_chunk(&mut self) -> Result<&[u8], LayerError> {
        if self.content_left == 0 {
            return Ok(&[]);
        }
        let left = self.content_left;
        if self.pos == self.len {
            let avail = self.fill()?.len();
            if avail == 0 {
                return Err(self.malformed("archive truncated inside entry data"));
            }
        }
        let n = ((self.len - self.pos) as u64).min(left) as usize;
        Ok(&self.buf[self.pos..self.pos + n])
    }

    pub fn consume_content(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.content_left);
        self.consume(n);
        self.content_left -= n as u64;
    }

    /// Reads a whole extension body (its size already checked against the
    /// limit). The buffer grows with the data actually present, so a header
    /// that merely *claims* a large size cannot force a large allocation.
    fn read_extension_body(&mut self, size: u64) -> Result<Vec<u8>, LayerError> {
        let mut body = Vec::with_capacity(size.min(64 << 10) as usize);
        let mut left = size;
        while left > 0 {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(self.malformed("archive truncated inside an extension header"));
            }
            let n = (avail.len() as u64).min(left) as usize;
            body.extend_from_slice(&avail[..n]);
            self.consume(n);
            left -= n as u64;
        }
        self.skip_bytes(padding(size))?;
        Ok(body)
    }

    /// Advances to the next real entry, filling `hdr`. Returns `false` at the
    /// end-of-archive marker or at a clean end of stream.
    pub fn next_entry(&mut self, hdr: &mut EntryHeader) -> Result<bool, LayerError> {
        self.skip_content()?;
        if self.at_end {
            return Ok(false);
        }
        let mut ext = PendingExtensions::default();
        let mut block = [0u8; BLOCK];
        loop {
            if !self.read_exact_or_eof(&mut block)? {
                if ext.long_name.is_some() || ext.long_link.is_some() || ext.pax.is_some() {
                    return Err(self.malformed("archive ends after an extension header"));
                }
                self.at_end = true;
                return Ok(false);
            }
            if block.iter().all(|&b| b == 0) {
                // End-of-archive marker. A single zero block is accepted, as
                // GNU tar does; the caller drains the rest of the stream.
                self.at_end = true;
                return Ok(false);
            }
            self.verify_checksum(&block)?;
            let typeflag = block[156];
            match typeflag {
                b'L' | b'K' | b'x' | b'g' => {
                    let size = self.numeric(&block[124..136], "size")?;
                    if size > self.limits.max_header_size {
                        self.last_path = header_name(&block);
                        return Err(
                            self.limit("extension header size", self.limits.max_header_size)
                        );
                    }
                    let body = self.read_extension_body(size)?;
                    match typeflag {
                        b'L' => ext.long_name = Some(trim_nul(body)),
                        b'K' => ext.long_link = Some(trim_nul(body)),
                        b'x' => ext.pax = Some(body),
                        // Global PAX headers only carry archive-wide defaults
                        // (comments, charsets); layer tools never rely on them.
                        _ => {}
                    }
                }
                _ => {
                    self.decode_entry(&block, ext, hdr)?;
                    return Ok(true);
                }
            }
        }
    }

    fn verify_checksum(&self, block: &[u8; BLOCK]) -> Result<(), LayerError> {
        let stored = parse_octal(&block[148..156])
            .ok_or_else(|| self.malformed("unparsable header checksum"))?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        // Some historic writers summed signed chars; accept both like GNU tar.
        if stored == unsigned || stored as i64 == signed {
            Ok(())
        } else {
            Err(self.malformed("header checksum mismatch"))
        }
    }

    fn numeric(&self, field: &[u8], what: &str) -> Result<u64, LayerError> {
        parse_numeric(field)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| self.malformed(format!("invalid {what} field")))
    }

    fn decode_entry(
        &mut self,
        block: &[u8; BLOCK],
        ext: PendingExtensions,
        hdr: &mut EntryHeader,
    ) -> Result<(), LayerError> {
        let is_ustar = &block[257..263] == b"ustar\0";
        hdr.path.clear();
        match ext.long_name {
            Some(name) => hdr.path = name,
            None => {
                let prefix = if is_ustar {
                    field_bytes(&block[345..500])
                } else {
                    &[]
                };
                if !prefix.is_empty() {
                    hdr.path.extend_from_slice(prefix);
                    hdr.path.push(b'/');
                }
                hdr.path.extend_from_slice(field_bytes(&block[0..100]));
            }
        }
        hdr.link_target.clear();
        match ext.long_link {
            Some(link) => hdr.link_target = link,
            None => hdr
                .link_target
                .extend_from_slice(field_bytes(&block[157..257])),
        }
        self.last_path.clear();
        self.last_path.extend_from_slice(&hdr.path);

        hdr.mode = (self.numeric(&block[100..108], "mode")? & 0o7777) as u32;
        hdr.uid = self.numeric(&block[108..116], "uid")?;
        hdr.gid = self.numeric(&block[116..124], "gid")?;
        let mut size = self.numeric(&block[124..136], "size")?;
        hdr.mtime = parse_numeric(&block[136..148])
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| self.malformed("invalid mtime field"))?;
        hdr.xattrs.clear();
        let typeflag = block[156];
        hdr.kind = match typeflag {
            b'0' | b'\0' | b'7' => EntryKind::Regular,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            b'S' => {
                return Err(LayerError::Unsupported {
                    path: display_path(&hdr.path),
                    reason: "GNU sparse file entries".to_owned(),
                });
            }
            other => {
                return Err(LayerError::Unsupported {
                    path: display_path(&hdr.path),
                    reason: format!("tar entry type {:?}", char::from(other)),
                });
            }
        };
        let (major, minor) = if matches!(hdr.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            (
                self.numeric(&block[329..337], "devmajor")?,
                self.numeric(&block[337..345], "devminor")?,
            )
        } else {
            (0, 0)
        };
        hdr.dev_major =
            u32::try_from(major).map_err(|_| self.malformed("device major out of range"))?;
        hdr.dev_minor =
            u32::try_from(minor).map_err(|_| self.malformed("device minor out of range"))?;

        if let Some(pax) = ext.pax {
            self.apply_pax(&pax, hdr, &mut size)?;
        }
        // Pre-POSIX archives mark directories only by a trailing slash.
        if hdr.kind == EntryKind::Regular && typeflag != b'7' && hdr.path.ends_with(b"/") {
            hdr.kind = EntryKind::Directory;
        }
        self.last_path.clear();
        self.last_path.extend_from_slice(&hdr.path);

        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.limit("entry count", self.limits.max_entries));
        }
        // Refuse impossible sizes before reading a single content byte, so a
        // bomb is reported as such instead of after writing gigabytes.
        let end = self
            .offset
            .checked_add(size)
            .and_then(|e| e.checked_add(padding(size)));
        if end.is_none_or(|e| e > self.limits.max_total_bytes) {
            return Err(self.limit("uncompressed layer size", self.limits.max_total_bytes));
        }
        // Only regular files carry content; anything else's data (e.g. a
        // hardlink with a size, GNU dumpdir listings) is skipped.
        self.content_left = size;
        self.padding_left = padding(size);
        hdr.size = if hdr.kind == EntryKind::Regular {
            size
        } else {
            0
        };
        if hdr.kind != EntryKind::Regular {
            self.skip_content()?;
        }
        Ok(())
    }

    fn apply_pax(
        &self,
        pax: &[u8],
        hdr: &mut EntryHeader,
        size: &mut u64,
    ) -> Result<(), LayerError> {
        for record in PaxRecords::new(pax) {
            let (key, value) = record.map_err(|reason| self.malformed(reason))?;
            match key {
                b"path" => {
                    hdr.path.clear();
                    hdr.path.extend_from_slice(value);
                }
                b"linkpath" => {
                    hdr.link_target.clear();
                    hdr.link_target.extend_from_slice(value);
                }
                b"size" => *size = self.pax_decimal(value, "size")?,
                b"uid" => hdr.uid = self.pax_decimal(value, "uid")?,
                b"gid" => hdr.gid = self.pax_decimal(value, "gid")?,
                b"mtime" => hdr.mtime = self.pax_time(value)?,
                _ if key.starts_with(b"SCHILY.xattr.") => {
                    let name = &key[b"SCHILY.xattr.".len()..];
                    hdr.xattrs.retain(|(n, _)| n != name);
                    hdr.xattrs.push((name.to_vec(), value.to_vec()));
                }
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err(LayerError::Unsupported {
                        path: display_path(&hdr.path),
                        reason: "GNU sparse file entries".to_owned(),
                    });
                }
                // atime, ctime, uname, gname, comment, hdrcharset, ...
                _ => {}
            }
        }
        Ok(())
    }

    fn pax_decimal(&self, value: &[u8], what: &str) -> Result<u64, LayerError> {
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| self.malformed(format!("invalid PAX {what} value")))
    }

    fn pax_time(&self, value: &[u8]) -> Result<i64, LayerError> {
        let text = std::str::from_utf8(value).ok();
        let whole = text.map(|s| s.split('.').next().unwrap_or(s));
        whole
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| self.malformed("invalid PAX mtime value"))
    }

    /// Consumes the rest of the stream after the end-of-archive marker, so a
    /// caller hashing the stream sees every byte (bounded by the size limit).
    pub fn drain(&mut self) -> Result<u64, LayerError> {
        self.skip_content()?;
        loop {
            let n = self.fill()?.len();
            if n == 0 {
                return Ok(self.offset);
            }
            self.consume(n);
        }
    }
}

/// Iterator over `"<len> <key>=<value>\n"` PAX records.
struct PaxRecords<'a> {
    rest: &'a [u8],
}

impl<'a> PaxRecords<'a> {
    fn new(data: &'a [u8]) -> Self {
        PaxRecords { rest: data }
    }
}

/// (key, value, rest of the data) of one parsed record.
type PaxSplit<'a> = (&'a [u8], &'a [u8], &'a [u8]);

impl<'a> Iterator for PaxRecords<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        // Trailing NUL padding is tolerated (some writers pad the block).
        if self.rest.iter().all(|&b| b == 0) {
            return None;
        }
        let parse = || -> Result<PaxSplit<'a>, &'static str> {
            let space = self
                .rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or("PAX record without length")?;
            let len: usize = std::str::from_utf8(&self.rest[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("PAX record with invalid length")?;
            if len <= space + 1 || len > self.rest.len() || self.rest[len - 1] != b'\n' {
                return Err("PAX record length does not match its content");
            }
            let record = &self.rest[space + 1..len - 1];
            let eq = record
                .iter()
                .position(|&b| b == b'=')
                .ok_or("PAX record without '='")?;
            Ok((&record[..eq], &record[eq + 1..], &self.rest[len..]))
        };
        match parse() {
            Ok((key, value, rest)) => {
                self.rest = rest;
                Some(Ok((key, value)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(end) = v.iter().position(|&b| b == 0) {
        v.truncate(end);
    }
    v
}

/// A NUL-terminated (or full-width) string field.
fn field_bytes(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn header_name(block: &[u8; BLOCK]) -> Vec<u8> {
    field_bytes(&block[0..100]).to_vec()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let digits = field_bytes(field);
    let trimmed: &[u8] = {
        let start = digits
            .iter()
            .position(|&b| b != b' ')
            .unwrap_or(digits.len());
        let digits = &digits[start..];
        let end = digits
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(digits.len());
        &digits[..end]
    };
    if trimmed.is_empty() {
        return Some(0);
    }
    let mut value: u64 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// Octal, or GNU base-256 (high bit of the first byte set; two's complement).
fn parse_numeric(field: &[u8]) -> Option<i128> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => {
            let negative = first & 0x40 != 0;
            let mut value: i128 = i128::from(first & 0x3f);
            if negative {
                value -= 0x40;
            }
            for &b in &field[1..] {
                value = value.checked_mul(256)?.checked_add(i128::from(b))?;
            }
            Some(value)
        }
        _ => parse_octal(field).map(i128::from),
    }
}

/// Deterministic tar writer: ustar headers, PAX records only when a value
/// does not fit (long path/link, large ids/size/mtime) or for xattrs.
pub(crate) struct TarWriter<W: Write> {
    out: W,
    written: u64,
    content_left: u64,
    content_padding: u64,
    pax_buf: Vec<u8>,
    name_buf: Vec<u8>,
}

const MAX_OCTAL_7: u64 = 0o7_777_777;
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            written: 0,
            content_left: 0,
            content_padding: 0,
            pax_buf: Vec::new(),
            name_buf: Vec::new(),
        }
    }

    /// Total bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn emit(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Writes the header(s) for `hdr`. For regular files the caller must then
    /// write exactly `hdr.size` bytes with [`Self::write_content`] and call
    /// [`Self::end_content`].
    pub fn write_header(&mut self, hdr: &EntryHeader) -> io::Result<()> {
        if self.content_left != 0 {
            return Err(io::Error::other("previous entry content incomplete"));
        }
        let mut name = std::mem::take(&mut self.name_buf);
        name.clear();
        name.extend_from_slice(&hdr.path);
        if hdr.kind == EntryKind::Directory && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let size = if hdr.kind == EntryKind::Regular {
            hdr.size
        } else {
            0
        };

        let mut pax = std::mem::take(&mut self.pax_buf);
        pax.clear();
        if name.len() > 100 {
            push_pax_record(&mut pax, b"path", &name);
        }
        if hdr.link_target.len() > 100 {
            push_pax_record(&mut pax, b"linkpath", &hdr.link_target);
        }
        if size > MAX_OCTAL_11 {
            push_pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if hdr.uid > MAX_OCTAL_7 {
            push_pax_record(&mut pax, b"uid", hdr.uid.to_string().as_bytes());
        }
        if hdr.gid > MAX_OCTAL_7 {
            push_pax_record(&mut pax, b"gid", hdr.gid.to_string().as_bytes());
        }
        let mtime_fits = (0..=MAX_OCTAL_11 as i64).contains(&hdr.mtime);
        if !mtime_fits {
            push_pax_record(&mut pax, b"mtime", hdr.mtime.to_string().as_bytes());
        }
        let mut xattrs: Vec<&(Vec<u8>, Vec<u8>)> = hdr.xattrs.iter().collect();
        xattrs.sort();
        for (key, value) in xattrs {
            let mut full = b"SCHILY.xattr.".to_vec();
            full.extend_from_slice(key);
            push_pax_record(&mut pax, &full, value);
        }
        let header_mtime = if mtime_fits { hdr.mtime as u64 } else { 0 };
        if !pax.is_empty() {
            let mut block = [0u8; BLOCK];
            set_bytes(&mut block[0..100], b"././@PaxHeader");
            set_octal(&mut block[100..108], 0o644);
            set_octal(&mut block[108..116], 0);
            set_octal(&mut block[116..124], 0);
            set_octal(&mut block[124..136], pax.len() as u64);
            set_octal(&mut block[136..148], header_mtime);
            block[156] = b'x';
            finish_ustar(&mut block);
            self.emit(&block)?;
            self.emit(&pax)?;
            let pad = padding(pax.len() as u64) as usize;
            self.emit(&[0u8; BLOCK][..pad])?;
        }
        self.pax_buf = pax;

        let mut block = [0u8; BLOCK];
        set_bytes(&mut block[0..100], &name[..name.len().min(100)]);
        set_octal(&mut block[100..108], u64::from(hdr.mode & 0o7777));
        // Values that do not fit were stored in the PAX header above.
        set_octal(
            &mut block[108..116],
            if hdr.uid > MAX_OCTAL_7 { 0 } else { hdr.uid },
        );
        set_octal(
            &mut block[116..124],
            if hdr.gid > MAX_OCTAL_7 { 0 } else { hdr.gid },
        );
        set_octal(
            &mut block[124..136],
            if size > MAX_OCTAL_11 { 0 } else { size },
        );
        set_octal(&mut block[136..148], header_mtime);
        block[156] = match hdr.kind {
            EntryKind::Regular => b'0',
            EntryKind::Hardlink => b'1',
            EntryKind::Symlink => b'2',
            EntryKind::CharDevice => b'3',
            EntryKind::BlockDevice => b'4',
            EntryKind::Directory => b'5',
            EntryKind::Fifo => b'6',
        };
        set_bytes(
            &mut block[157..257],
            &hdr.link_target[..hdr.link_target.len().min(100)],
        );
        set_octal(
            &mut block[329..337],
            u64::from(hdr.dev_major).min(MAX_OCTAL_7),
        );
        set_octal(
            &mut block[337..345],
            u64::from(hdr.dev_minor).min(MAX_OCTAL_7),
        );
        finish_ustar(&mut block);
        self.name_buf = name;
        self.emit(&block)?;
        self.content_left = size;
        self.content_padding = padding(size);
        Ok(())
    }

    /// Writes content of the current regular-file entry.
    pub fn write_content(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.content_left {
            return Err(io::Error::other(
                "entry content longer than its header size",
            ));
        }
        self.content_left -= data.len() as u64;
        self.emit(data)
    }

    /// Pads the current entry to a block boundary.
    pub fn end_content(&mut self) -> io::Result<()> {
        if self.content_left != 0 {
            return Err(io::Error::other(
                "entry content shorter than its header size",
            ));
        }
        let pad = std::mem::take(&mut self.content_padding) as usize;
        self.emit(&[0u8; BLOCK][..pad])
    }

    /// Writes the end-of-archive marker and returns the writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn set_bytes(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// Zero-padded octal with a trailing NUL, filling the field.
fn set_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let mut v = value;
    for i in (0..digits).rev() {
        field[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
}

fn finish_ustar(block: &mut [u8; BLOCK]) {
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    // Six octal digits, NUL, space: the traditional checksum layout.
    let mut field = [0u8; 7];
    set_octal(&mut field, sum);
    block[148..155].copy_from_slice(&field);
    block[155] = b' ';
}

fn push_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // The length prefix counts itself, so iterate until it is stable.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let candidate = body + len.to_string().len();
        if candidate == len {
            break;
        }
        len = candidate;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReadLimits {
        ReadLimits {
            max_total_bytes: 1 << 30,
            max_entries: 1000,
            max_header_size: 1 << 20,
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        push_pax_record(&mut out, b"path", &[b'a'; 93]);
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), out.len());
    }

    #[test]
    fn base256_numbers() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x05;
        assert_eq!(parse_numeric(&field), Some(5));
        let neg = [0xffu8; 8];
        assert_eq!(parse_numeric(&neg), Some(-1));
    }

    #[test]
    fn writer_output_reads_back() {
        let mut w = TarWriter::new(Vec::new());
        let long = "d/".repeat(80) + "file";
        let hdr = EntryHeader {
            path: long.clone().into_bytes(),
            mode: 0o4755,
            uid: 5_000_000,
            gid: 7,
            mtime: 1_700_000_000,
            size: 3,
            xattrs: vec![(b"user.k".to_vec(), b"v\0\nbin".to_vec())],
            ..EntryHeader::default()
        };
        w.write_header(&hdr).unwrap();
        w.write_content(b"abc").unwrap();
        w.end_content().unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);

        let mut r = TarReader::new(&bytes[..], limits());
        let mut got = EntryHeader::default();
        assert!(r.next_entry(&mut got).unwrap());
        assert_eq!(got.path, long.as_bytes());
        assert_eq!(got.mode, 0o4755);
        assert_eq!(got.uid, 5_000_000);
        assert_eq!(got.size, 3);
        assert_eq!(got.xattrs, hdr.xattrs);
        assert_eq!(r.content_chunk().unwrap(), b"abc");
        r.consume_content(3);
        assert!(!r.next_entry(&mut got).unwrap());
        assert_eq!(r.drain().unwrap(), bytes.len() as u64);
    }
}
