//! The operating system's randomness, for the core.

use clawgate_core::Entropy;

/// Bytes drawn from the OS at a time: one `getrandom(2)` serves a few dozen handshakes.
const BATCH: usize = 512;

/// Randomness from the OS (`getrandom`), drawn in batches so a handshake does not cost a
/// system call per nonce; every byte handed out is used once.
#[derive(Debug)]
pub struct OsEntropy {
    buf: [u8; BATCH],
    used: usize,
}

impl Default for OsEntropy {
    fn default() -> Self {
        Self {
            buf: [0; BATCH],
            used: BATCH,
        }
    }
}

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        if dest.len() > BATCH {
            return os_fill(dest);
        }
        if BATCH - self.used < dest.len() {
            os_fill(&mut self.buf);
            self.used = 0;
        }
        let end = self.used + dest.len();
        dest.copy_from_slice(&self.buf[self.used..end]);
        // Forget what was handed out.
        self.buf[self.used..end].fill(0);
        self.used = end;
    }
}

fn os_fill(dest: &mut [u8]) {
    // Without OS randomness there are no safe nonces or tokens: stop rather than go on.
    if let Err(e) = getrandom::fill(dest) {
        eprintln!("clawgate: no OS randomness: {e}");
        std::process::abort();
    }
}

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    os_fill(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_repeat_bytes() {
        let mut e = OsEntropy::default();
        let mut seen = Vec::new();
        for _ in 0..100 {
            let mut b = [0u8; 16];
            e.fill(&mut b);
            assert!(!seen.contains(&b), "the same 16 bytes twice");
            seen.push(b);
        }
        let mut big = [0u8; 2 * BATCH];
        e.fill(&mut big);
        assert!(big.iter().any(|b| *b != 0));
    }
}
