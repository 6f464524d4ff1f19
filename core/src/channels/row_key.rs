//! How the channel tables' rows are keyed: by seq, zero-padded to twenty digits so keys sort
//! as seqs do.

/// The key of row `seq`: `format!("{seq:020}")`, without the formatting machinery (~1.8k
/// instructions a key; a channel turn writes several).
pub(crate) fn row_key(seq: u64) -> String {
    let mut digits = [b'0'; 20];
    let mut rest = seq;
    for d in digits.iter_mut().rev() {
        // `rest % 10` is a digit: the cast keeps it.
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    std::str::from_utf8(&digits)
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_seq_zero_padded_to_twenty_digits() {
        for seq in [0, 1, 9, 10, 123_456_789, u64::MAX / 3, u64::MAX] {
            assert_eq!(row_key(seq), format!("{seq:020}"));
        }
    }
}
