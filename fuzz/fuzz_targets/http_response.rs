//! A model provider's raw HTTP response, split where the input says: the cut response must
//! give the head, body and outcome of the whole, within the parser's limits; the same bytes
//! are tried as a request URL.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _outcome = clawgate_core::fuzzing::http_response::run(data);
});
