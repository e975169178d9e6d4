//! Length-limited Huffman codes, canonical as deflate needs them (RFC 1951, 3.2.2).

/// Code lengths for `freqs` into `lengths` (same size), none above `limit`: 0 for a symbol of
/// frequency 0. The caller gives at least two symbols a frequency, so the code is complete
/// (every decoder accepts it, whatever it thinks of one-symbol codes).
pub(crate) fn code_lengths(freqs: &[u32], limit: u32, lengths: &mut [u8]) {
    debug_assert_eq!(freqs.len(), lengths.len());
    lengths.fill(0);
    // Leaves by increasing frequency (then symbol: the result depends on the input only).
    // Fixed-size arrays: this runs for every block, allocation would show.
    const MAX: usize = 288;
    debug_assert!(freqs.len() <= MAX);
    let mut leaves = [(0u32, 0u16); MAX];
    let mut n = 0;
    for (s, &f) in freqs.iter().enumerate() {
        if f > 0 {
            leaves[n] = (f, s as u16);
            n += 1;
        }
    }
    let leaves = &mut leaves[..n];
    debug_assert!(n >= 2, "at least two symbols");
    if n < 2 {
        if let Some(&(_, s)) = leaves.first() {
            lengths[s as usize] = 1;
        }
        return;
    }
    leaves.sort_unstable();

    // The two-queue construction: leaves in order, then internal nodes in the order they are
    // made (which is also increasing weight). Node k < n is leaf k, node n + j internal node j.
    let mut weight = [0u64; 2 * MAX];
    for (w, &(f, _)) in weight.iter_mut().zip(leaves.iter()) {
        *w = u64::from(f);
    }
    let mut parent = [0u16; 2 * MAX];
    let (mut next_leaf, mut next_internal) = (0, n);
    for made in n..2 * n - 1 {
        let mut take = || {
            let use_leaf = next_leaf < n
                && (next_internal >= made || weight[next_leaf] <= weight[next_internal]);
            if use_leaf {
                next_leaf += 1;
                next_leaf - 1
            } else {
                next_internal += 1;
                next_internal - 1
            }
        };
        let (a, b) = (take(), take());
        weight[made] = weight[a] + weight[b];
        parent[a] = made as u16;
        parent[b] = made as u16;
    }
    // Depths: the root is the last node; every parent comes after its children.
    let mut depth = [0u32; 2 * MAX];
    for k in (0..2 * n - 2).rev() {
        depth[k] = depth[parent[k] as usize] + 1;
    }

    // How many leaves at each length, with the ones too deep moved up to `limit`; then
    // restore Kraft's equality: each step drops one leaf from the deepest level (removing
    // 2^-limit) and moves a shallower leaf one level down, turning it into two (no change),
    // which keeps the count of leaves.
    let limit = limit as usize;
    let mut count = [0u32; 16 + 1];
    let mut overflow = false;
    for &d in &depth[..n] {
        let d = d as usize;
        if d > limit {
            overflow = true;
            count[limit] += 1;
        } else {
            count[d] += 1;
        }
    }
    if overflow {
        let kraft = |count: &[u32; 17]| -> u64 {
            (1..=limit)
                .map(|l| u64::from(count[l]) << (limit - l))
                .sum()
        };
        let mut total = kraft(&count);
        while total > 1u64 << limit {
            count[limit] -= 1;
            for l in (1..limit).rev() {
                if count[l] != 0 {
                    count[l] -= 1;
                    count[l + 1] += 2;
                    break;
                }
            }
            total -= 1;
        }
        debug_assert_eq!(kraft(&count), 1u64 << limit);
    }
    // Shortest codes to the most frequent symbols (the last leaves).
    let mut leaf = n;
    for (len, &c) in count.iter().enumerate().take(limit + 1).skip(1) {
        for _ in 0..c {
            leaf -= 1;
            lengths[leaves[leaf].1 as usize] = len as u8;
        }
    }
    debug_assert_eq!(leaf, 0);
}

/// Canonical codes for `lengths`, bit-reversed so that they can be written least significant
/// bit first.
pub(crate) fn canonical_codes(lengths: &[u8], codes: &mut [u16]) {
    let mut count = [0u16; 16];
    for &l in lengths {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for len in 1..16 {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    for (sym, &len) in lengths.iter().enumerate() {
        if len != 0 {
            let c = next[len as usize];
            next[len as usize] += 1;
            codes[sym] = c.reverse_bits() >> (16 - len);
        } else {
            codes[sym] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft(lengths: &[u8], limit: u32) -> u64 {
        lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (limit - u32::from(l)))
            .sum()
    }

    #[test]
    fn codes_are_complete_limited_and_prefer_frequent_symbols() {
        let mut cases: Vec<(Vec<u32>, u32)> = vec![
            (vec![1, 1], 15),
            (vec![5, 0, 0, 1], 7),
            (vec![1; 286], 15),
            (vec![1; 19], 7),
            // Fibonacci frequencies: an unlimited code would be 30 deep.
            (
                (0..30)
                    .scan((1u32, 1u32), |s, _| {
                        let f = s.0;
                        *s = (s.1, s.0 + s.1);
                        Some(f)
                    })
                    .collect(),
                15,
            ),
            (
                (0..19)
                    .scan((1u32, 1u32), |s, _| {
                        let f = s.0;
                        *s = (s.1, s.0 + s.1);
                        Some(f)
                    })
                    .collect(),
                7,
            ),
        ];
        let mut state = 12345u32;
        for _ in 0..200 {
            let n = 2 + (state % 285) as usize;
            let freqs = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    if state & 3 == 0 { 0 } else { 1 << (state % 24) }
                })
                .collect::<Vec<u32>>();
            if freqs.iter().filter(|&&f| f > 0).count() >= 2 {
                cases.push((freqs, 15));
            }
        }
        for (freqs, limit) in cases {
            let mut lengths = vec![0u8; freqs.len()];
            code_lengths(&freqs, limit, &mut lengths);
            assert!(lengths.iter().all(|&l| u32::from(l) <= limit), "{freqs:?}");
            assert_eq!(kraft(&lengths, limit), 1 << limit, "complete: {freqs:?}");
            for (s, &f) in freqs.iter().enumerate() {
                assert_eq!(f == 0, lengths[s] == 0, "{freqs:?}");
                for (t, &g) in freqs.iter().enumerate() {
                    if f > g && g > 0 {
                        assert!(lengths[s] <= lengths[t], "{freqs:?}");
                    }
                }
            }
            let mut codes = vec![0u16; freqs.len()];
            canonical_codes(&lengths, &mut codes);
            // Prefix-free: no code is a prefix of another (compared in written order).
            for (s, &ls) in lengths.iter().enumerate() {
                for (t, &lt) in lengths.iter().enumerate() {
                    if s != t && ls > 0 && lt > 0 && ls <= lt {
                        let mask = (1u16 << ls) - 1;
                        assert_ne!(codes[s] & mask, codes[t] & mask, "{s} prefix of {t}");
                    }
                }
            }
        }
    }
}
