//! One mDNS packet (a flags byte, bit 0 a legacy query, then the packet): read by the codec, a
//! claimed responder and a browser.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _found = clawgate_core::fuzzing::mdns::packet(data, std::time::Instant::now());
});
