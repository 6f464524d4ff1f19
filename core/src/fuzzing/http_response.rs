//! The HTTP response target: a model provider's raw response (head and framed body) split at
//! chosen points and fed to [`ResponseParser`]; the bytes are also tried as a request URL.
//! The layout is [`model_stream`](super::model_stream)'s: a flags byte (bit 0: small limits,
//! 64-byte head and 8-byte chunk lines; bit 1: the answer to a `HEAD` request), the cut
//! points, then the bytes.
//!
//! Checked: the cut bytes give the head, the body and the outcome of the whole; the head comes
//! once, first; the body is never longer than the input; the parser never holds more than its
//! limits; a stopped parser keeps its error; the cuts do not change whether the connection is
//! reusable, and only a complete response leaves it reusable. A URL that parses gives a request
//! that parses back with that URL's path, `Host` and `Connection: keep-alive`.

use crate::model::HttpRequest;
use crate::model::http1::{
    ResponseError, ResponseEvent, ResponseLimits, ResponseParser, Target, encode_request,
};

use super::model_stream::{decode, split};

/// What a response gave: its events (body pieces joined) and how it ended.
pub type Outcome = (Vec<ResponseEvent>, Result<(), ResponseError>);

/// The limits the target runs with: the defaults, or small ones the input can reach.
pub fn limits(small: bool) -> ResponseLimits {
    if small {
        ResponseLimits {
            max_head_bytes: 64,
            max_chunk_line_bytes: 8,
        }
    } else {
        ResponseLimits::default()
    }
}

/// Feed `parts` in order and then the end of the connection, checking the bounds as it goes;
/// also whether the connection was reusable before it ended.
pub fn feed(limits: ResponseLimits, method: &str, parts: &[&[u8]]) -> (Outcome, bool) {
    let mut parser = ResponseParser::new(limits, method);
    let mut events: Vec<ResponseEvent> = Vec::new();
    let mut end = Ok(());
    for part in parts {
        let mut fresh = Vec::new();
        end = parser.feed(part, &mut fresh);
        assert!(
            parser.buffered_bytes() <= limits.max_head_bytes.max(limits.max_chunk_line_bytes),
            "{} bytes held",
            parser.buffered_bytes()
        );
        for e in fresh {
            match (events.last_mut(), e) {
                (_, ResponseEvent::Body(b)) if b.is_empty() => panic!("an empty body event"),
                (Some(ResponseEvent::Body(a)), ResponseEvent::Body(b)) => a.extend(b),
                (_, e) => events.push(e),
            }
        }
        if end.is_err() {
            break;
        }
    }
    let reusable = parser.reusable();
    assert!(!reusable || parser.is_complete(), "reusable before the end");
    if end.is_ok() {
        end = parser.finish();
    }
    if let Err(e) = end {
        assert_eq!(
            parser.feed(b"more", &mut Vec::new()),
            Err(e),
            "the error did not stay"
        );
    }
    ((events, end), reusable)
}

/// Run one input (see the module doc). Returns what the whole response gave.
pub fn run(data: &[u8]) -> Outcome {
    let (flags, cuts, bytes) = decode(data);
    let limits = limits(flags & 1 == 1);
    let method = if flags & 2 == 2 { "HEAD" } else { "POST" };
    let (whole, reusable) = feed(limits, method, &[bytes]);
    let cut = feed(limits, method, &split(bytes, &cuts));
    assert_eq!(
        cut,
        (whole.clone(), reusable),
        "chunking changed the outcome"
    );
    let mut body = 0;
    for (i, e) in whole.0.iter().enumerate() {
        match e {
            ResponseEvent::Head { .. } => assert_eq!(i, 0, "a head after other events"),
            ResponseEvent::Body(b) => body += b.len(),
        }
    }
    assert!(body <= bytes.len(), "more body than input");
    if let Ok(url) = core::str::from_utf8(bytes) {
        request_round_trip(url);
    }
    whole
}

/// A URL that parses gives a request head that parses back to it.
fn request_round_trip(url: &str) {
    let Ok(target) = Target::parse(url) else {
        return;
    };
    let req = HttpRequest {
        method: "POST",
        url: url.to_owned(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: b"{}".to_vec(),
        idempotent: false,
        dialing: Default::default(),
    };
    let Ok(wire) = encode_request(&req, &target) else {
        return;
    };
    let mut slots = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Request::new(&mut slots);
    let len = match parsed.parse(&wire) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!("the request for {url:?} does not parse: {other:?}"),
    };
    assert_eq!(parsed.path, Some(target.path_and_query.as_str()));
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    assert_eq!(header("host"), Some(target.authority.as_bytes()));
    assert_eq!(header("connection"), Some(&b"keep-alive"[..]));
    assert_eq!(wire.get(len..), Some(&b"{}"[..]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::model_stream::encode;
    use proptest::prelude::*;

    proptest! {
        /// The target's checks hold on responses built from HTTP pieces, cut anywhere.
        #[test]
        fn target_holds_on_arbitrary_responses(
            flags in 0u8..4,
            cuts in proptest::collection::vec(any::<u16>(), 0..15),
            pieces in proptest::collection::vec(prop_oneof![
                Just("HTTP/1.1 200 OK\r\n".to_owned()),
                Just("HTTP/1.1 100 Continue\r\n\r\n".to_owned()),
                Just("Transfer-Encoding: chunked\r\n".to_owned()),
                Just("Content-Length: 5\r\n".to_owned()),
                Just("\r\n".to_owned()),
                Just("5;x=y\r\nhello\r\n".to_owned()),
                Just("0\r\nT: 1\r\n\r\n".to_owned()),
                "[ -~]{0,12}",
            ], 0..16),
        ) {
            let mut input = encode(false, &cuts, pieces.concat().as_bytes());
            input[0] = flags;
            let _outcome = run(&input);
        }
    }
}
