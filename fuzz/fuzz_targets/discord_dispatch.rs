//! A Discord Gateway message (and the same bytes as a REST answer): parsed, a
//! `MESSAGE_CREATE` normalised, its text cut as a reply would be.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _parsed = clawgate_core::fuzzing::discord_dispatch::run(data);
});
