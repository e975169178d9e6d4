//! The fixed tables of RFC 1951, section 3.2.5: length and distance codes.

/// First length of each length code 257..=285.
pub(crate) const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
/// Extra bits of each length code 257..=285.
pub(crate) const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// First distance of each distance code 0..=29.
pub(crate) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
/// Extra bits of each distance code 0..=29.
pub(crate) const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Length code (0-based: 0 is symbol 257) of each match length 3..=258, at `length - 3`.
pub(crate) static LENGTH_CODE: [u8; 256] = length_codes();
/// Distance code of `distance - 1` for distances up to 256 (at `distance - 1`), and of the rest
/// at `256 + ((distance - 1) >> 7)`: codes above 256 cover multiples of 128.
pub(crate) static DIST_CODE: [u8; 512] = dist_codes();

const fn length_codes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 29 {
        let first = LENGTH_BASE[code] as usize - 3;
        let last = if code == 28 {
            255
        } else {
            first + (1 << LENGTH_EXTRA[code]) - 1
        };
        let mut i = first;
        while i <= last {
            table[i] = code as u8;
            i += 1;
        }
        code += 1;
    }
    // 258 has its own code (285), not the end of code 284's range.
    table[255] = 28;
    table
}

const fn dist_codes() -> [u8; 512] {
    let mut table = [0u8; 512];
    let mut code = 0;
    while code < 30 {
        let first = DIST_BASE[code] as usize - 1;
        let last = first + (1 << DIST_EXTRA[code]) - 1;
        let mut d = first;
        while d <= last {
            if d < 256 {
                table[d] = code as u8;
            } else {
                table[256 + (d >> 7)] = code as u8;
            }
            d += 1;
        }
        code += 1;
    }
    table
}

/// The distance code of `distance` (1..=32768).
#[inline(always)]
pub(crate) fn dist_code(distance: usize) -> usize {
    let d = distance - 1;
    if d < 256 {
        DIST_CODE[d] as usize
    } else {
        DIST_CODE[256 + ((d >> 7) & 255)] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_and_distance_falls_in_its_code() {
        for length in 3..=258usize {
            let code = LENGTH_CODE[length - 3] as usize;
            let base = LENGTH_BASE[code] as usize;
            assert!(length >= base, "{length}");
            let extra = length - base;
            assert!(extra < (1 << LENGTH_EXTRA[code]) || (code == 28 && extra == 0));
            if length == 258 {
                assert_eq!(code, 28);
            }
        }
        for distance in 1..=32768usize {
            let code = dist_code(distance);
            let base = DIST_BASE[code] as usize;
            assert!(distance >= base, "{distance}");
            assert!(distance - base < (1 << DIST_EXTRA[code]), "{distance}");
        }
    }
}
