//! Frames from an operator and a node after `hello-ok`.
#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawgate_core::fuzzing::frames_after_hello(Instant::now(), data);
});
