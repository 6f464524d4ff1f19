//! An Anthropic Messages streamed answer: SSE framing and Messages events, split where the
//! input says; the chunked body must give what the whole body gives, within the buffering
//! limits.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _outcome = clawgate_core::fuzzing::model_stream::run_anthropic(data);
});
