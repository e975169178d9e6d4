//! strata-sys: the one crate of the workspace where `unsafe` is allowed, kept small so that every
//! unsafe block can be checked by reading this file. It offers safe APIs over system calls that
//! std does not wrap; each unsafe block carries its safety argument.
//!
//! - [`map_file_readonly`]: a read-only memory mapping of part of a file, as a byte slice that
//!   can be sent to a socket without first copying it into a buffer (the registry serves blobs
//!   from it, see docs/registry-storage.md).

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::ptr::NonNull;

use rustix::mm::{Advice, MapFlags, ProtFlags};

/// `len` bytes of a file from `offset`, mapped read-only into memory; unmapped on drop.
///
/// It implements `AsRef<[u8]>` and is `Send + Sync + 'static`, so it can own the memory of a
/// `bytes::Bytes` (`Bytes::from_owner`).
#[derive(Debug)]
pub struct MappedBlob {
    /// The mapping, `None` for zero bytes (mmap refuses an empty mapping).
    mapping: Option<Mapping>,
    /// Bytes from the page-aligned start of the mapping to the requested offset.
    skip: usize,
    len: usize,
}

#[derive(Debug)]
struct Mapping {
    start: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only memory that this value alone unmaps (in `Drop`); nothing
// writes through it, so handing it to another thread or reading it from several threads at once
// is no different from doing so with a `Box<[u8]>`.
#[allow(unsafe_code)]
unsafe impl Send for MappedBlob {}
// SAFETY: as for `Send`: `&MappedBlob` only gives out `&[u8]` into memory nobody writes.
#[allow(unsafe_code)]
unsafe impl Sync for MappedBlob {}

impl MappedBlob {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for MappedBlob {
    fn as_ref(&self) -> &[u8] {
        let Some(mapping) = &self.mapping else {
            return &[];
        };
        let data = mapping.start.as_ptr().cast::<u8>().wrapping_add(self.skip);
        // SAFETY: `map_file_readonly` mapped `mapping.len = skip + len` bytes readable (checked
        // not to extend past the end of the file, so no page of it is beyond EOF), and they stay
        // mapped until `self` is dropped, which the returned borrow cannot outlive. The file is
        // never modified or truncated (the contract of `map_file_readonly`), so the bytes do
        // not change while borrowed. `len <= isize::MAX` was checked when mapping.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(data, self.len)
        }
    }
}

impl Drop for MappedBlob {
    fn drop(&mut self) {
        if let Some(mapping) = self.mapping.take() {
            // SAFETY: `start`/`len` are exactly what mmap returned and was asked for, unmapped
            // only here, once; no borrow of the bytes can outlive `self`.
            #[allow(unsafe_code)]
            let result = unsafe { rustix::mm::munmap(mapping.start.as_ptr(), mapping.len) };
            // munmap fails only for arguments that mmap did not return; nothing to recover.
            debug_assert!(result.is_ok(), "munmap: {result:?}");
        }
    }
}

/// Maps `len` bytes of `file` from `offset` read-only, and reads them into memory before
/// returning (it blocks on disk reads: call it where blocking is allowed), so that using the
/// bytes later costs no page faults and an I/O error shows up here as an `Err` rather than as a
/// `SIGBUS` when the bytes are touched.
///
/// `offset` needs no alignment: the mapping starts at the page boundary below it and the
/// returned bytes start at `offset`. `len == 0` maps nothing. The range must lie within the
/// file (`InvalidInput` otherwise).
///
/// Contract: the file's bytes in the range must not change, and the file must not be truncated,
/// while the returned value lives — a memory mapping shows such changes (or faults with
/// `SIGBUS` past a new end of file). strata's blob files satisfy this: they are content-addressed,
/// written under a temporary name and renamed into place complete, and never opened for writing
/// again; garbage collection unlinks them, which leaves an existing mapping valid (the inode lives
/// until the last mapping goes). Do not use it on files that can be rewritten in place.
pub fn map_file_readonly(file: &File, offset: u64, len: usize) -> io::Result<MappedBlob> {
    if len == 0 {
        return Ok(MappedBlob {
            mapping: None,
            skip: 0,
            len: 0,
        });
    }
    let file_len = file.metadata()?.len();
    let end = offset.checked_add(len as u64);
    if isize::try_from(len).is_err() || end.is_none_or(|end| end > file_len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mapping {len} bytes at offset {offset}: beyond the file's {file_len} bytes"),
        ));
    }
    let page = rustix::param::page_size() as u64;
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    let map_len = skip
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping length overflows"))?;
    // SAFETY: a new mapping chosen by the kernel (null hint), so no existing memory is replaced;
    // PROT_READ and MAP_SHARED of a file we have open for reading; `aligned` is a multiple of
    // the page size as mmap requires. The pointer is only used through `MappedBlob`.
    #[allow(unsafe_code)]
    let start = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            map_len,
            ProtFlags::READ,
            MapFlags::SHARED,
            file,
            aligned,
        )
    }?;
    let start = NonNull::new(start).ok_or_else(|| io::Error::other("mmap returned null"))?;
    let blob = MappedBlob {
        mapping: Some(Mapping {
            start,
            len: map_len,
        }),
        skip,
        len,
    };
    // Start reading the whole range from disk at once (one large readahead instead of a fault
    // at a time), then wait for it and map every page.
    // A failed hint changes nothing: the populate below reads what is missing.
    // SAFETY: MADV_WILLNEED on our own mapping only starts reading the file into the page
    // cache; it changes no memory contents.
    #[allow(unsafe_code)]
    let _ = unsafe { rustix::mm::madvise(start.as_ptr(), map_len, Advice::WillNeed) };
    // SAFETY: MADV_POPULATE_READ on our own read-only mapping only maps its pages (reading
    // them from the file as a read access would); it changes no memory contents.
    #[allow(unsafe_code)]
    let populated =
        unsafe { rustix::mm::madvise(start.as_ptr(), map_len, Advice::LinuxPopulateRead) };
    match populated {
        Ok(()) => Ok(blob),
        // Before Linux 5.14 there is no MADV_POPULATE_READ: the pages fault in when read.
        Err(rustix::io::Errno::INVAL) => Ok(blob),
        // EFAULT: reading a page failed (an I/O error, which would be a SIGBUS on access).
        Err(errno) => Err(io::Error::new(
            io::Error::from(errno).kind(),
            format!("reading {len} bytes at offset {offset} into memory: {errno}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        // Not periodic in the page size, so a wrong offset shows as wrong bytes.
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        (file, bytes)
    }

    #[test]
    fn maps_ranges_at_unaligned_offsets() {
        let page = rustix::param::page_size();
        let size = 5 * page + 123;
        let (file, bytes) = file_of(size);
        let cases = [
            (0, size),
            (0, 1),
            (1, page),
            (page - 1, 2),
            (page, page),
            (page + 7, 3 * page),
            (size - 1, 1),
            (size - page - 5, page + 5),
            (3, 0),
            (size, 0),
        ];
        for (offset, len) in cases {
            let blob = map_file_readonly(file.as_file(), offset as u64, len).unwrap();
            assert_eq!(blob.len(), len, "offset {offset} len {len}");
            assert_eq!(
                blob.as_ref(),
                &bytes[offset..offset + len],
                "offset {offset} len {len}"
            );
        }
    }

    #[test]
    fn refuses_ranges_past_the_end() {
        let (file, _) = file_of(1000);
        for (offset, len) in [(0, 1001), (999, 2), (1000, 1), (u64::MAX, 1)] {
            let error = map_file_readonly(file.as_file(), offset, len).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidInput,
                "offset {offset} len {len}"
            );
            assert!(error.to_string().contains("beyond the file"), "{error}");
        }
    }

    #[test]
    fn outlives_the_file_handle_and_its_name() {
        let (file, bytes) = file_of(70_000);
        let blob = map_file_readonly(file.as_file(), 10, 60_000).unwrap();
        drop(file); // closes and unlinks the file
        let shared = std::sync::Arc::new(blob);
        let reader = {
            let shared = shared.clone();
            std::thread::spawn(move || AsRef::<[u8]>::as_ref(&*shared).to_vec())
        };
        assert_eq!(reader.join().unwrap(), &bytes[10..60_010]);
        assert_eq!(AsRef::<[u8]>::as_ref(&*shared), &bytes[10..60_010]);
    }
}
