//! The HTTP upgrade head parser.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clawgate_core::fuzzing::http_head(data));
