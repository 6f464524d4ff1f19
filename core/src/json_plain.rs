//! Where a JSON string's plain run ends: the bytes a JSON string holds as they are (not `"`,
//! not `\`, not a control character), found eight at a time. The request envelope's scan and
//! the writer of a response's `id` both look for that end. And where a line ends (the first
//! `\n` or `\r`), for the SSE decoder, found the same way.

/// One in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The length of the longest prefix of `bytes` whose bytes a JSON string holds unescaped:
/// the index of the first `"`, `\` or control character (below 0x20), or `bytes.len()`.
pub(crate) fn plain_len(bytes: &[u8]) -> usize {
    let mut words = bytes.chunks_exact(8);
    let mut done = 0;
    for word in &mut words {
        if let Some(at) = first_special(word) {
            return done + at;
        }
        done += 8;
    }
    if words.remainder().is_empty() {
        return done;
    }
    // The last bytes: the word that ends the text, whose bytes before `done` are known plain
    // (a byte at a time, they cost as much as the words before them in a short text).
    let len = bytes.len();
    match len.checked_sub(8).and_then(|start| bytes.get(start..)) {
        Some(last) => first_special(last).map_or(len, |at| len - 8 + at),
        None => bytes.iter().position(|&b| !is_plain(b)).unwrap_or(len),
    }
}

/// The index of the first byte of `word` (eight bytes) that a JSON string escapes, if any.
#[inline(always)]
fn first_special(word: &[u8]) -> Option<usize> {
    let x = u64::from_le_bytes(<[u8; 8]>::try_from(word).ok()?);
    // A byte's high bit is set where it is below 0x20, or equal to `"` or `\` (the exact
    // zero-byte test: no false positives, so a word without one is skipped whole).
    let found = below(x, 0x20) | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * 0x5c));
    if found == 0 {
        None
    } else {
        Some((found.trailing_zeros() / 8) as usize)
    }
}

/// The index of the first `\n` or `\r` in `bytes`: where a line ends, if it does.
pub(crate) fn line_end(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let mut done = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w);
        let found = zero(x ^ (ONES * u64::from(b'\n'))) | zero(x ^ (ONES * u64::from(b'\r')));
        if found != 0 {
            return Some(done + (found.trailing_zeros() / 8) as usize);
        }
        done += 8;
    }
    let rest = words.remainder();
    rest.iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|at| done + at)
}

/// Whether a JSON string holds byte `b` unescaped.
fn is_plain(b: u8) -> bool {
    b >= 0x20 && b != b'"' && b != b'\\'
}

/// The high bit of each byte of `x` that is zero, and of no other byte.
fn zero(x: u64) -> u64 {
    !(((x & !HIGHS).wrapping_add(!HIGHS)) | x | !HIGHS)
}

/// The high bit of each byte of `x` below `n` (`n` at most 0x80), and of no other byte.
fn below(x: u64, n: u8) -> u64 {
    // Per byte, without carries between bytes: (b | 0x80) - n keeps its high bit exactly when
    // the low seven bits are at least n; a byte with its own high bit set is not below n.
    !((x | HIGHS).wrapping_sub(ONES * u64::from(n)) | x) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(bytes: &[u8]) -> usize {
        bytes
            .iter()
            .position(|&b| !is_plain(b))
            .unwrap_or(bytes.len())
    }

    #[test]
    fn finds_the_first_byte_a_string_escapes_at_every_offset() {
        for special in (0u8..=0xff).filter(|&b| !is_plain(b)) {
            for len in 0..20 {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    if let Some(b) = bytes.get_mut(at) {
                        *b = special;
                    }
                    assert_eq!(
                        plain_len(&bytes),
                        reference(&bytes),
                        "{special:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn finds_the_first_line_end_at_every_offset() {
        let reference = |bytes: &[u8]| bytes.iter().position(|&b| b == b'\n' || b == b'\r');
        for end in [b'\n', b'\r'] {
            for len in 0..20 {
                for at in 0..=len {
                    for other in [b'a', 0x0b, 0x0c, 0x8a, 0x8d, 0xff] {
                        let mut bytes = vec![other; len];
                        if let Some(b) = bytes.get_mut(at) {
                            *b = end;
                        }
                        assert_eq!(
                            line_end(&bytes),
                            reference(&bytes),
                            "{end} at {at} of {len}"
                        );
                    }
                }
            }
        }
        for a in 0u8..=0xff {
            let bytes = [b'x', a, a.wrapping_add(1), b'y', 0xff, 0x80, 0x7f, a, b'q'];
            assert_eq!(line_end(&bytes), reference(&bytes), "{a:#x}");
        }
    }

    #[test]
    fn every_byte_value_beside_every_other() {
        // Pairs of bytes in a word: a carry or borrow from one byte must not mark its neighbour.
        for a in 0u8..=0xff {
            for b in 0u8..=0xff {
                let bytes = [b'x', a, b, b'y', b'z', 0xff, 0x80, 0x7f, a, b, b'q'];
                assert_eq!(plain_len(&bytes), reference(&bytes), "{a:#x} {b:#x}");
            }
        }
    }
}
