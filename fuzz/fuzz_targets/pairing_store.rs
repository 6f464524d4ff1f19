//! The pairing-store loader, and a gateway started with what it loads.
#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

libfuzzer_sys::fuzz_target!(|data: &[u8]| clawgate_core::fuzzing::pairing_store(
    Instant::now(),
    data
));
