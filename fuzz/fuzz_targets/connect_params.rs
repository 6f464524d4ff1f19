//! `connect` params, alone and as the first frame of a connection.
#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

libfuzzer_sys::fuzz_target!(|data: &[u8]| clawgate_core::fuzzing::connect_params(
    Instant::now(),
    data
));
