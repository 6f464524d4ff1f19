//! MCP JSON-RPC messages from a server, one per line: parsed, and fed to a client session.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _parsed = clawgate_core::fuzzing::mcp_message::run(std::time::Instant::now(), data);
});
