//! Greedy LZ77 over a piece of input: one probe of a hash table per position tried.

use crate::tables::{DIST_BASE, LENGTH_CODE, dist_code};

/// Deflate's window and longest match.
const WINDOW: usize = 32 * 1024;
const MAX_MATCH: usize = 258;
/// The shortest match taken (and the bytes hashed). Each match costs a mispredicted branch or
/// two and a sequence to write, and short ones save little: on the bench's Debian layers
/// (single thread, 8K-entry table) 4 gave ratio 0.490 at ~440 MB/s, 6 0.498 at ~560, 7 0.506
/// at ~610, 8 0.516 at ~650.
const MIN_MATCH: usize = 7;
/// 4K entries: the table (16 KiB) stays in L1. On the bench layers 13 bits gave ratio 0.506
/// at ~600 MB/s, 12 bits 0.511 at ~640; larger tables gain little ratio for much speed.
const HASH_BITS: u32 = 12;
/// After 2^SKIP_SHIFT misses in a row the search steps 2 bytes, then 3, ... (3 is ~3% faster
/// at +0.008 of ratio).
const SKIP_SHIFT: u32 = 4;
/// Matches start at least this far before the end, so 8-byte reads stay inside the input.
const TAIL: usize = 8;

/// Literals, then (if `matched` has [`MATCH`]) a match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sequence {
    pub(crate) literals: u32,
    /// [`MATCH`] | length - 3 | distance code << 8 | distance extra bits << 16.
    pub(crate) matched: u32,
}

pub(crate) const MATCH: u32 = 1 << 31;

/// A block's sequences and symbol counts (literal/length and distance alphabets).
pub(crate) struct Block {
    pub(crate) sequences: Vec<Sequence>,
    pub(crate) litlen: [u32; 286],
    pub(crate) dist: [u32; 30],
}

impl Default for Block {
    fn default() -> Self {
        Block {
            sequences: Vec::with_capacity(crate::BLOCK / MIN_MATCH + 1),
            litlen: [0; 286],
            dist: [0; 30],
        }
    }
}

pub(crate) struct Matcher {
    /// The last position seen with each hash of [`MIN_MATCH`] bytes (0 at first: any entry is
    /// checked against the input before it is used).
    table: Box<[u32; 1 << HASH_BITS]>,
}

#[inline(always)]
fn read_u64(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// The bytes (of 8 read) a hash covers and a match needs.
const KEY_MASK: u64 = u64::MAX >> (64 - 8 * MIN_MATCH);

#[inline(always)]
fn hash(eight: u64) -> usize {
    ((eight & KEY_MASK).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - HASH_BITS)) as usize
}

/// How many bytes agree at `a` and `b` (`a < b`), at most `max`; `b + max <= data.len()`.
#[inline(always)]
fn common_length(data: &[u8], a: usize, b: usize, max: usize) -> usize {
    let mut len = 0;
    while len + 8 <= max {
        let x = read_u64(data, a + len) ^ read_u64(data, b + len);
        if x != 0 {
            return len + (x.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    while len < max && data[a + len] == data[b + len] {
        len += 1;
    }
    len
}

impl Matcher {
    pub(crate) fn new() -> Self {
        Matcher {
            table: vec![0; 1 << HASH_BITS]
                .into_boxed_slice()
                .try_into()
                .expect("table size"),
        }
    }

    /// Forgets earlier input: entries must point into the input being compressed.
    pub(crate) fn reset(&mut self) {
        self.table.fill(0);
    }

    /// Parses `data[start..]` into `block` up to about [`crate::BLOCK`] bytes (a block ends
    /// after a match that crosses the limit); returns where it ended: `data.len()` for the
    /// last block. Positions are kept as `u32`: past 4 GiB of input an entry either is a
    /// real position or fails the window check, so a larger input compresses without matches
    /// beyond that point, still correctly.
    pub(crate) fn block(&mut self, data: &[u8], start: usize, block: &mut Block) -> usize {
        block.sequences.clear();
        block.litlen = [0; 286];
        block.dist = [0; 30];
        let mut limit = start + crate::BLOCK;
        if limit + TAIL >= data.len() {
            limit = data.len();
        }
        let search_end = limit.min(data.len().saturating_sub(TAIL));
        let table = &mut *self.table;
        let mut anchor = start;
        let mut i = start;
        'search: while i < search_end {
            // Probe until a match: the next position's hash is computed while this one's
            // candidate is checked.
            let mut misses = 0u32;
            let mut here = read_u64(data, i);
            let mut h = hash(here);
            let (candidate, diff) = loop {
                let candidate = table[h] as usize;
                table[h] = i as u32;
                misses += 1;
                let next = i + 1 + (misses >> SKIP_SHIFT) as usize;
                let diff = here ^ read_u64(data, candidate);
                let found =
                    diff & KEY_MASK == 0 && i.wrapping_sub(candidate).wrapping_sub(1) < WINDOW;
                if next >= search_end {
                    if found {
                        break (candidate, diff);
                    }
                    i = next;
                    break 'search;
                }
                let next_here = read_u64(data, next);
                let next_h = hash(next_here);
                if found {
                    break (candidate, diff);
                }
                i = next;
                here = next_here;
                h = next_h;
            };
            let distance = i - candidate;
            let mut length = if diff != 0 {
                (diff.trailing_zeros() / 8) as usize
            } else {
                let max = (data.len() - i).min(MAX_MATCH);
                8 + common_length(data, candidate + 8, i + 8, max - 8)
            };
            // Back over pending literals that also agree.
            let (mut at, mut from) = (i, candidate);
            while at > anchor && from > 0 && length < MAX_MATCH && data[at - 1] == data[from - 1] {
                at -= 1;
                from -= 1;
                length += 1;
            }
            for &b in &data[anchor..at] {
                block.litlen[b as usize] += 1;
            }
            block.litlen[257 + LENGTH_CODE[length - 3] as usize] += 1;
            let code = dist_code(distance);
            block.dist[code] += 1;
            let extra = distance - DIST_BASE[code] as usize;
            block.sequences.push(Sequence {
                literals: (at - anchor) as u32,
                matched: MATCH | (length - 3) as u32 | (code as u32) << 8 | (extra as u32) << 16,
            });
            i = at + length;
            anchor = i;
            // Two positions near the end of the match, for the next match to find.
            if i + TAIL <= data.len() {
                for p in [i - 2, i - 1] {
                    table[hash(read_u64(data, p))] = p as u32;
                }
            }
        }
        let end = if limit == data.len() {
            data.len()
        } else {
            i.max(anchor).min(data.len())
        };
        for &b in &data[anchor..end] {
            block.litlen[b as usize] += 1;
        }
        block.sequences.push(Sequence {
            literals: (end - anchor) as u32,
            matched: 0,
        });
        end
    }
}
