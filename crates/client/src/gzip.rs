//! Gzip of layers on push: strata-deflate (greedy LZ77 and per-block Huffman codes, in the
//! speed class of ISA-L's igzip at level 1), on every core.
//!
//! Pushing a layer stored uncompressed is bound by its compression, so pieces of the layer
//! are compressed in parallel, pigz-style.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Input per independently compressed piece.
pub(crate) const PIECE: usize = 4 << 20;

/// Gzip of everything `input` holds, compressed on `threads` threads the way pigz splits work:
/// the input is cut into fixed 4 MiB pieces, each compressed on its own as a complete gzip
/// member (header, deflate stream, CRC and length), and `emit` receives the members in order
/// with the number of input bytes each holds. A series of members is one gzip file (RFC 1952,
/// section 2.2): Go's `compress/gzip` (Docker, containerd, skopeo), pigz, GNU gzip and
/// strata's own reader decompress it whole, as they do eStargz layers, which are built the same
/// way. The output depends only on the input. An empty input gives one empty member.
pub(crate) fn parallel_gzip(
    input: impl Read + Send,
    threads: usize,
    mut emit: impl FnMut(Vec<u8>, usize) -> io::Result<()>,
) -> io::Result<()> {
    /// (index, (gzip member, input bytes it holds)).
    type Member = (usize, (Vec<u8>, usize));
    let threads = threads.max(1);
    // reader -> (index, piece) -> workers -> (index, member) -> this thread, which emits the
    // members in order. Bounded queues keep at most a few pieces in memory.
    let (piece_tx, piece_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads);
    // Shared by the workers, and dropped with the last of them, so the reader stops too.
    let piece_rx = Arc::new(Mutex::new(piece_rx));
    let (member_tx, member_rx) = mpsc::sync_channel::<Member>(threads * 2);
    std::thread::scope(|scope| -> io::Result<()> {
        let reader = scope.spawn(move || -> io::Result<()> {
            let mut input = input;
            for index in 0.. {
                let piece = read_piece(&mut input)?;
                let end = piece.len() < PIECE;
                if (index > 0 && piece.is_empty()) || piece_tx.send((index, piece)).is_err() {
                    return Ok(());
                }
                if end {
                    return Ok(());
                }
            }
            Ok(())
        });
        for _ in 0..threads {
            let (piece_rx, member_tx) = (piece_rx.clone(), member_tx.clone());
            scope.spawn(move || {
                loop {
                    let received = piece_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((index, piece)) = received else {
                        return;
                    };
                    let member = (gzip_member(&piece), piece.len());
                    if member_tx.send((index, member)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((member_tx, piece_rx));
        let mut waiting: BTreeMap<usize, (Vec<u8>, usize)> = BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        'members: for (index, member) in member_rx.iter() {
            waiting.insert(index, member);
            while let Some((member, input_len)) = waiting.remove(&next) {
                if let Err(e) = emit(member, input_len) {
                    result = Err(e);
                    break 'members;
                }
                next += 1;
            }
        }
        // On an error, dropping the receiver stops the workers, which stops the reader.
        drop(member_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread failed")));
        result.and(read)
    })
}

/// Up to [`PIECE`] bytes; shorter only at the end of the input.
fn read_piece(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut piece = Vec::with_capacity(PIECE);
    input.take(PIECE as u64).read_to_end(&mut piece)?;
    Ok(piece)
}

/// One complete gzip member of `piece` (no name or time in the header, so the output depends
/// on the input alone).
fn gzip_member(piece: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(strata_deflate::max_gzip_len(piece.len()));
    strata_deflate::gzip_member(piece, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip_all(data: &[u8], threads: usize) -> (Vec<u8>, usize) {
        let mut gz = Vec::new();
        let mut input = 0;
        parallel_gzip(data, threads, |member, len| {
            gz.extend_from_slice(&member);
            input += len;
            Ok(())
        })
        .unwrap();
        (gz, input)
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn members_decompress_to_the_input_deterministically() {
        // Compressible and incompressible parts, several pieces, a short last piece.
        let mut data = Vec::new();
        let mut state = 0x9e37_79b9_u32;
        for i in 0..(PIECE * 5 / 2) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            data.push(if i < PIECE {
                state as u8
            } else if i % 3 == 0 {
                (i % 251) as u8
            } else {
                b'a'
            });
        }
        for threads in [1, 2, 3] {
            let (gz, input) = gzip_all(&data, threads);
            assert_eq!(input, data.len());
            assert!(gunzip(&gz) == data, "{threads} threads");
            assert_eq!(gz, gzip_all(&data, threads).0, "deterministic");
            assert_eq!(gz, gzip_all(&data, 1).0, "independent of the thread count");
        }
        // Exactly one piece: no empty member after it.
        let (gz, _) = gzip_all(&data[..PIECE], 2);
        assert!(gunzip(&gz) == data[..PIECE]);
        let (empty, _) = gzip_all(b"", 2);
        assert_eq!(&empty[..2], &[0x1f, 0x8b]);
        assert!(gunzip(&empty).is_empty());
    }

    #[test]
    fn an_emit_error_stops_the_compression() {
        let data = vec![7u8; PIECE * 3];
        let mut calls = 0;
        let result = parallel_gzip(&data[..], 2, |_, _| {
            calls += 1;
            Err(io::Error::other("upload failed"))
        });
        assert_eq!(result.unwrap_err().to_string(), "upload failed");
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_read_error_is_reported() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let result = parallel_gzip(Failing(PIECE + 10), 2, |_, _| Ok(()));
        assert_eq!(result.unwrap_err().to_string(), "disk gone");
    }
}
