//! A Bot API `getUpdates` answer (status selector byte, then the body): decoded, normalised,
//! and its texts rendered and cut as replies would be.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _count = clawgate_core::fuzzing::telegram_updates::run(data);
});
