//! Slack's Socket Mode frames and Events API bodies.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawgate_core::fuzzing::slack_envelope::run(data);
});
