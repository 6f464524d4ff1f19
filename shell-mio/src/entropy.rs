//! The operating system's randomness, for the core.

use clawgate_core::Entropy;

/// Randomness from the OS (`getrandom`).
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        // Without OS randomness there are no safe nonces or tokens: stop rather than go on.
        if let Err(e) = getrandom::fill(dest) {
            eprintln!("clawgate: no OS randomness: {e}");
            std::process::abort();
        }
    }
}

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsEntropy.fill(&mut b);
    b
}
