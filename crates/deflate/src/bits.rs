//! A bit writer, least significant bit first (RFC 1951, 3.1.1), over a `Vec<u8>` that is
//! grown ahead ([`BitWriter::reserve`]) so that writes are plain stores of 8 bytes.

pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Bytes written: `out[..pos]`; `out` is longer, by what was reserved.
    pos: usize,
    bits: u64,
    /// Bits in `bits`: at most 7 after [`BitWriter::flush`]; [`BitWriter::put`] may add up to
    /// 56 before the next flush.
    count: u32,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        let pos = out.len();
        BitWriter {
            out,
            pos,
            bits: 0,
            count: 0,
        }
    }

    /// Room for `bytes` more bytes (plus the 8 a flush stores).
    pub(crate) fn reserve(&mut self, bytes: usize) {
        let need = self.pos + bytes + 8;
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
    }

    #[inline(always)]
    pub(crate) fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(self.count + bits <= 63 && (bits == 64 || value >> bits == 0));
        self.bits |= value << self.count;
        self.count += bits;
    }

    /// Stores the whole bytes of the pending bits.
    #[inline(always)]
    pub(crate) fn flush(&mut self) {
        self.out[self.pos..self.pos + 8].copy_from_slice(&self.bits.to_le_bytes());
        let bytes = self.count >> 3;
        self.pos += bytes as usize;
        self.bits >>= bytes * 8;
        self.count &= 7;
    }

    /// The output, position and pending bits, for a loop that keeps them in registers and
    /// gives them back with [`BitWriter::set_parts`]. The output is as long as reserved.
    pub(crate) fn parts(&mut self) -> (&mut [u8], usize, u64, u32) {
        (&mut self.out[..], self.pos, self.bits, self.count)
    }

    pub(crate) fn set_parts(&mut self, pos: usize, bits: u64, count: u32) {
        (self.pos, self.bits, self.count) = (pos, bits, count);
    }

    /// Bits pending (after a flush, those of a partial byte).
    pub(crate) fn pending_bits(&self) -> u32 {
        self.count
    }

    /// Pads with zero bits to a byte boundary.
    pub(crate) fn align(&mut self) {
        self.flush();
        if self.count > 0 {
            self.pos += 1;
        }
        self.bits = 0;
        self.count = 0;
    }

    /// Copies bytes; the writer must be aligned.
    pub(crate) fn put_aligned(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.count, 0);
        self.out[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    /// Pads the last byte and drops what was reserved beyond it.
    pub(crate) fn finish(mut self) {
        self.reserve(0);
        self.align();
        self.out.truncate(self.pos);
    }
}
