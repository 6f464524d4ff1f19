//! A request frame (or its params, id or members, as the first byte says) read by the
//! envelope's scan and by serde alone: the same request or the same error.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawgate_core::fuzzing::request_envelope::request_envelope(data)
});
