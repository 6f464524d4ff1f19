//! A client's bytes after the upgrade, read by the core's WebSocket read and by tungstenite
//! alone: the same messages, errors and bytes to send.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clawgate_core::fuzzing::ws_read::ws_read(data));
