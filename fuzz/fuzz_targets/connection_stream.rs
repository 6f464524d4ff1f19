//! Whole connections: upgrade, bytes chunked as the input says, time passing.
#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawgate_core::fuzzing::connection_stream(Instant::now(), data);
});
