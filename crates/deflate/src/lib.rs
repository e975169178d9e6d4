//! A fast deflate (RFC 1951) and gzip (RFC 1952) encoder, in the class of ISA-L's igzip at its
//! level 1: what `strata push` uses to gzip layers stored uncompressed.
//!
//! - LZ77, greedy: one hash table of 7-byte sequences with one position per entry, a match
//!   taken when the 7 bytes there agree, extended 8 bytes at a time and back over the pending
//!   literals. After a run of misses the search steps further at each probe (as LZ4 and snappy
//!   do), so incompressible data (gzip files inside a tar) costs little.
//! - Blocks of up to [`BLOCK`] input bytes, each written the smallest of three ways: dynamic
//!   Huffman codes built from the block's own symbol counts (15-bit limit), the fixed codes, or
//!   stored.
//!
//! The output depends only on the input.

mod bits;
mod huffman;
mod lz;
mod tables;

use bits::BitWriter;
use tables::{DIST_EXTRA, LENGTH_BASE, LENGTH_CODE, LENGTH_EXTRA};

/// Input per deflate block, at most: large enough that the block header (~60–90 bytes) is
/// noise, small enough that a block's codes follow the data (tar members differ).
pub const BLOCK: usize = 64 * 1024;

/// Appends one complete gzip member of `input` to `out`: a 10-byte header (no name, time 0,
/// "fastest" flag, OS unknown), the deflate stream and the CRC-32 and length trailer. Uses an
/// [`Encoder`] kept per thread.
pub fn gzip_member(input: &[u8], out: &mut Vec<u8>) {
    ENCODER.with(|encoder| encoder.borrow_mut().gzip_member(input, out));
}

/// Appends the raw deflate stream (no header or trailer) of `input` to `out`, with an
/// [`Encoder`] kept per thread.
pub fn deflate(input: &[u8], out: &mut Vec<u8>) {
    ENCODER.with(|encoder| encoder.borrow_mut().deflate(input, out));
}

/// The most [`gzip_member`] appends for `input_len` bytes (with the room it uses while
/// writing): a capacity that never needs to grow. Incompressible input is stored, at 5 bytes
/// per 64 KiB block.
pub fn max_gzip_len(input_len: usize) -> usize {
    input_len + input_len / 4096 + 128
}

thread_local! {
    static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::new());
}

/// The encoder's working memory (~200 KiB: hash table and a block's symbols), reused from one
/// input to the next: allocating it afresh costs page faults that show at this speed. Each
/// input is compressed on its own; the output never depends on what came before.
pub struct Encoder {
    matcher: lz::Matcher,
    block: lz::Block,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            matcher: lz::Matcher::new(),
            block: lz::Block::default(),
        }
    }

    /// See [`gzip_member`].
    pub fn gzip_member(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        self.deflate(input, out);
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    }

    /// See [`deflate`].
    pub fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.matcher.reset();
        let mut writer = BitWriter::new(out);
        let mut start = 0;
        loop {
            let end = self.matcher.block(input, start, &mut self.block);
            let last = end == input.len();
            write_block(&mut writer, &input[start..end], &mut self.block, last);
            if last {
                break;
            }
            start = end;
        }
        writer.finish();
    }
}

/// Symbols of the code-length alphabet in the order their lengths are sent.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// One deflate block of `data` (the input `block` was made from).
fn write_block(writer: &mut BitWriter, data: &[u8], block: &mut lz::Block, last: bool) {
    block.litlen[256] = 1; // end of block
    let extra_bits: u64 = (0..29)
        .map(|c| u64::from(block.litlen[257 + c]) * u64::from(LENGTH_EXTRA[c]))
        .sum::<u64>()
        + (0..30)
            .map(|c| u64::from(block.dist[c]) * u64::from(DIST_EXTRA[c]))
            .sum::<u64>();

    // Dynamic codes. At least two symbols in each code, so every code is complete.
    let mut litlen_freq = block.litlen;
    if litlen_freq.iter().filter(|&&f| f > 0).count() < 2 {
        litlen_freq[0] = litlen_freq[0].max(1);
    }
    let mut dist_freq = block.dist;
    match dist_freq.iter().filter(|&&f| f > 0).count() {
        0 => {
            dist_freq[0] = 1;
            dist_freq[1] = 1;
        }
        1 => {
            let unused = if dist_freq[0] == 0 { 0 } else { 1 };
            dist_freq[unused] = 1;
        }
        _ => {}
    }
    let mut litlen_len = [0u8; 286];
    let mut dist_len = [0u8; 30];
    huffman::code_lengths(&litlen_freq, 15, &mut litlen_len);
    huffman::code_lengths(&dist_freq, 15, &mut dist_len);
    let header = DynamicHeader::new(&litlen_len, &dist_len);
    let dynamic_bits = 3
        + header.bits
        + symbol_bits(&block.litlen, &litlen_len)
        + symbol_bits(&block.dist, &dist_len)
        + extra_bits;

    let fixed_bits = 3
        + symbol_bits(&block.litlen, &FIXED_LITLEN_LENGTHS)
        + 5 * block.dist.iter().map(|&f| u64::from(f)).sum::<u64>()
        + extra_bits;

    let chunks = data.len().div_ceil(STORED_MAX).max(1) as u64;
    let pad = u64::from((8 - (writer.pending_bits() + 3) % 8) % 8);
    let stored_bits = 3 + pad + 32 + (chunks - 1) * 40 + 8 * data.len() as u64;

    let final_bit = u64::from(last);
    if stored_bits <= dynamic_bits.min(fixed_bits) {
        writer.reserve((stored_bits / 8) as usize + 16);
        let mut rest = data;
        loop {
            let take = rest.len().min(STORED_MAX);
            let final_chunk = take == rest.len();
            writer.put(u64::from(final_chunk) & final_bit, 3);
            writer.align();
            let len = take as u16;
            writer.put_aligned(&[len as u8, (len >> 8) as u8, !len as u8, (!len >> 8) as u8]);
            writer.put_aligned(&rest[..take]);
            rest = &rest[take..];
            if final_chunk {
                break;
            }
        }
    } else if dynamic_bits < fixed_bits {
        writer.reserve((dynamic_bits / 8) as usize + 16);
        writer.put(final_bit | 2 << 1, 3);
        header.write(writer);
        let codes = Codes::new(&litlen_len, &dist_len);
        write_symbols(writer, data, block, &codes);
    } else {
        writer.reserve((fixed_bits / 8) as usize + 16);
        writer.put(final_bit | 1 << 1, 3);
        let codes = Codes::new(&FIXED_LITLEN_LENGTHS, &[5; 30]);
        write_symbols(writer, data, block, &codes);
    }
}

/// Stored blocks hold up to 65535 bytes each.
const STORED_MAX: usize = 65535;

/// The fixed literal/length code: all 288 symbols count for the canonical codes, though 286
/// and 287 never occur.
static FIXED_LITLEN_LENGTHS: [u8; 288] = {
    let mut l = [0u8; 288];
    let mut i = 0;
    while i < 288 {
        l[i] = if i < 144 {
            8
        } else if i < 256 {
            9
        } else if i < 280 {
            7
        } else {
            8
        };
        i += 1;
    }
    l
};

fn symbol_bits(freqs: &[u32], lengths: &[u8]) -> u64 {
    freqs
        .iter()
        .zip(lengths)
        .map(|(&f, &l)| u64::from(f) * u64::from(l))
        .sum()
}

/// The header of a dynamic block: the code lengths of both codes, run-length coded with the
/// code-length code (RFC 1951, 3.2.7). The two lists are coded separately (no run crosses from
/// one to the other), which every decoder accepts.
struct DynamicHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    /// (symbol, extra bits value) of the code-length alphabet.
    items: Vec<(u8, u8)>,
    cl_len: [u8; 19],
    /// Size of everything after the block type, in bits.
    bits: u64,
}

impl DynamicHeader {
    fn new(litlen_len: &[u8; 286], dist_len: &[u8; 30]) -> Self {
        let hlit = 257
            + litlen_len[257..]
                .iter()
                .rposition(|&l| l != 0)
                .map_or(0, |p| p + 1);
        let hdist = 1 + dist_len[1..]
            .iter()
            .rposition(|&l| l != 0)
            .map_or(0, |p| p + 1);
        let mut items = Vec::with_capacity(hlit + hdist);
        run_length_code(&litlen_len[..hlit], &mut items);
        run_length_code(&dist_len[..hdist], &mut items);
        let mut cl_freq = [0u32; 19];
        for &(sym, _) in &items {
            cl_freq[sym as usize] += 1;
        }
        if cl_freq.iter().filter(|&&f| f > 0).count() < 2 {
            let unused = if cl_freq[0] == 0 { 0 } else { 1 };
            cl_freq[unused] = 1;
        }
        let mut cl_len = [0u8; 19];
        huffman::code_lengths(&cl_freq, 7, &mut cl_len);
        let hclen = 4.max(
            CODE_LENGTH_ORDER
                .iter()
                .rposition(|&s| cl_len[s] != 0)
                .map_or(0, |p| p + 1),
        );
        let bits = 14
            + 3 * hclen as u64
            + items
                .iter()
                .map(|&(sym, _)| u64::from(cl_len[sym as usize]) + CL_EXTRA[sym as usize])
                .sum::<u64>();
        DynamicHeader {
            hlit,
            hdist,
            hclen,
            items,
            cl_len,
            bits,
        }
    }

    fn write(&self, writer: &mut BitWriter) {
        writer.put((self.hlit - 257) as u64, 5);
        writer.put((self.hdist - 1) as u64, 5);
        writer.put((self.hclen - 4) as u64, 4);
        writer.flush();
        for &s in &CODE_LENGTH_ORDER[..self.hclen] {
            writer.put(u64::from(self.cl_len[s]), 3);
            writer.flush();
        }
        let mut cl_code = [0u16; 19];
        huffman::canonical_codes(&self.cl_len, &mut cl_code);
        for &(sym, extra) in &self.items {
            let s = sym as usize;
            writer.put(u64::from(cl_code[s]), u32::from(self.cl_len[s]));
            writer.put(u64::from(extra), CL_EXTRA[s] as u32);
            writer.flush();
        }
    }
}

/// Extra bits after code-length symbols 16, 17 and 18.
const CL_EXTRA: [u64; 19] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];

/// Appends the code-length symbols for `lengths`: 16 repeats the previous length 3–6 times,
/// 17 and 18 give 3–10 and 11–138 zeros.
fn run_length_code(lengths: &[u8], items: &mut Vec<(u8, u8)>) {
    let mut i = 0;
    while i < lengths.len() {
        let len = lengths[i];
        let mut run = lengths[i..].iter().take_while(|&&l| l == len).count();
        i += run;
        if len == 0 {
            while run >= 11 {
                let r = run.min(138);
                items.push((18, (r - 11) as u8));
                run -= r;
            }
            if run >= 3 {
                items.push((17, (run - 3) as u8));
                run = 0;
            }
        } else {
            items.push((len, 0));
            run -= 1;
            while run >= 3 {
                let r = run.min(6);
                items.push((16, (r - 3) as u8));
                run -= r;
            }
        }
        for _ in 0..run {
            items.push((len, 0));
        }
    }
}

/// A block's codes ready to write, each entry `bits | count << 24`: literals (and end of
/// block at 256), match lengths (at `length - 3`, with the extra bits), distance codes (the
/// code, and at bits 16..24 its length, where the extra bits go).
struct Codes {
    literal: [u32; 257],
    length: [u32; 256],
    dist: [u32; 30],
    /// The longest literal code: 4 literals fit between flushes if it is at most 14.
    longest_literal: u8,
}

impl Codes {
    fn new(litlen_len: &[u8], dist_len: &[u8; 30]) -> Self {
        let mut litlen_code = [0u16; 288];
        huffman::canonical_codes(litlen_len, &mut litlen_code[..litlen_len.len()]);
        let mut dist_code = [0u16; 30];
        huffman::canonical_codes(dist_len, &mut dist_code);
        let mut literal = [0u32; 257];
        for (s, entry) in literal.iter_mut().enumerate() {
            *entry = u32::from(litlen_code[s]) | u32::from(litlen_len[s]) << 24;
        }
        let mut length = [0u32; 256];
        for (i, entry) in length.iter_mut().enumerate() {
            let c = LENGTH_CODE[i] as usize;
            let (code, bits) = (
                u32::from(litlen_code[257 + c]),
                u32::from(litlen_len[257 + c]),
            );
            let extra = (i + 3 - LENGTH_BASE[c] as usize) as u32;
            *entry = (code | extra << bits) | (bits + u32::from(LENGTH_EXTRA[c])) << 24;
        }
        let mut dist = [0u32; 30];
        for (d, entry) in dist.iter_mut().enumerate() {
            let bits = u32::from(dist_len[d]);
            *entry = u32::from(dist_code[d]) | bits << 16 | (bits + u32::from(DIST_EXTRA[d])) << 24;
        }
        let longest_literal = litlen_len[..256].iter().copied().max().unwrap_or(0);
        Codes {
            literal,
            length,
            dist,
            longest_literal,
        }
    }
}

fn write_symbols(writer: &mut BitWriter, data: &[u8], block: &lz::Block, codes: &Codes) {
    if codes.longest_literal <= 14 {
        write_symbols_by::<4>(writer, data, block, codes);
    } else {
        write_symbols_by::<3>(writer, data, block, codes);
    }
}

/// Writes the block's symbols, flushing after every `N` literals: `N` codes must fit in the
/// 56 bits free after a flush.
fn write_symbols_by<const N: usize>(
    writer: &mut BitWriter,
    data: &[u8],
    block: &lz::Block,
    codes: &Codes,
) {
    let (out, mut pos, mut bits, mut count) = writer.parts();
    macro_rules! put {
        ($entry:expr) => {{
            let e = $entry;
            bits |= u64::from(e & 0xff_ffff) << count;
            count += e >> 24;
        }};
    }
    macro_rules! flush {
        () => {{
            out[pos..pos + 8].copy_from_slice(&bits.to_le_bytes());
            pos += (count >> 3) as usize;
            bits >>= count & !7;
            count &= 7;
        }};
    }
    let mut at = 0;
    for seq in &block.sequences {
        let literals = &data[at..at + seq.literals as usize];
        at += seq.literals as usize;
        let mut groups = literals.chunks_exact(N);
        for group in &mut groups {
            for &b in group {
                put!(codes.literal[b as usize]);
            }
            flush!();
        }
        for &b in groups.remainder() {
            put!(codes.literal[b as usize]);
        }
        let m = seq.matched;
        if m & lz::MATCH != 0 {
            // Up to 20 + 28 bits, after up to 7 + 2 * 15 pending: flush between.
            flush!();
            put!(codes.length[(m & 0xff) as usize]);
            let d = codes.dist[((m >> 8) & 31) as usize];
            let extra = (m >> 16) & 0x1fff;
            bits |= u64::from((d & 0xffff) | extra << ((d >> 16) & 0xff)) << count;
            count += d >> 24;
            flush!();
            at += (m & 0xff) as usize + 3;
        }
    }
    debug_assert_eq!(at, data.len());
    flush!();
    put!(codes.literal[256]);
    flush!();
    writer.set_parts(pos, bits, count);
}
