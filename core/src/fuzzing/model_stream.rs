//! The model stream targets: a response body split at chosen points, fed through the SSE
//! decoder and one API's event decoder: OpenAI's chunks ([`run`], target `model_stream`) or
//! Anthropic's Messages events ([`run_anthropic`], target `anthropic_stream`). Every byte
//! string is a valid input:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | bit 0: small limits (128-byte lines, 256-byte events, 2 tool calls of 64 bytes in all); bits 1–7: the status (400 + n) the body is classified with as an error answer |
//! | 1 | how many cut points follow (`% 16`) |
//! | 2.. | the cut points, u16 LE each, taken modulo the body length + 1 |
//! | rest | the response body |
//!
//! Checked: the chunked body gives exactly the events and the outcome of the whole body; the
//! decoder never holds more than its limits allow; the body read as an error answer gives a
//! bounded preview.

use crate::model::anthropic::AnthropicEvents;
use crate::model::openai::stream::OpenAiChunks;
use crate::model::openai::{
    ChatEvent, Completion, PREVIEW_CHARS, StreamError, StreamLimits, classify_http_error,
};
use crate::model::sse::SseLimits;
use crate::model::stream::{Dialect, EventStream};

/// Most cut points one input names.
pub const MAX_CUTS: usize = 16;

/// The limits the target runs with: the defaults, or small ones that the input can reach.
pub fn limits(small: bool) -> StreamLimits {
    if small {
        StreamLimits {
            sse: SseLimits {
                max_line_bytes: 128,
                max_event_bytes: 256,
            },
            max_tool_calls: 2,
            max_tool_call_bytes: 64,
        }
    } else {
        StreamLimits::default()
    }
}

/// An input that feeds `body` split at `cuts` (at most [`MAX_CUTS`]), with small limits or not.
pub fn encode(small: bool, cuts: &[u16], body: &[u8]) -> Vec<u8> {
    let cuts = cuts.get(..MAX_CUTS - 1).unwrap_or(cuts);
    let mut out = vec![u8::from(small), cuts.len() as u8];
    out.extend(cuts.iter().flat_map(|c| c.to_le_bytes()));
    out.extend_from_slice(body);
    out
}

/// The assistant text `events` carry, joined.
pub fn text(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// What a body gave: the events, and the completion or the error that stopped it.
pub type Outcome = (Vec<ChatEvent>, Result<Completion, StreamError>);

/// Feed `parts` in order to an OpenAI decoder, checking the buffering bound after each.
pub fn feed(limits: StreamLimits, parts: &[&[u8]]) -> Outcome {
    feed_dialect::<OpenAiChunks>(limits, parts)
}

/// Feed `parts` in order to a decoder of dialect `D`, checking the buffering bound after each.
pub fn feed_dialect<D: Dialect>(limits: StreamLimits, parts: &[&[u8]]) -> Outcome {
    let mut stream = EventStream::<D>::new(limits);
    let mut events = Vec::new();
    for part in parts {
        let fed = stream.feed(part, &mut events);
        assert!(
            stream.buffered_bytes() <= limits.max_buffered_bytes(),
            "{} bytes held, limit {}",
            stream.buffered_bytes(),
            limits.max_buffered_bytes()
        );
        if let Err(e) = fed {
            return (events, Err(e));
        }
    }
    let end = stream.finish();
    (events, end)
}

/// `body` cut at each of `cuts` (taken modulo its length + 1, in any order): the pieces, in
/// order, some perhaps empty.
pub fn split<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for cut in cuts.into_iter().chain([body.len()]) {
        parts.push(body.get(at..cut).unwrap_or_default());
        at = cut;
    }
    parts
}

/// Split an input laid out as the module doc says: the flags byte, the cut points, the body.
/// Other targets that cut a byte stream share this layout.
pub fn decode(data: &[u8]) -> (u8, Vec<usize>, &[u8]) {
    let (&flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&n, mut rest) = rest.split_first().unwrap_or((&0, &[]));
    let mut cuts = Vec::new();
    for _ in 0..usize::from(n) % MAX_CUTS {
        let Some((c, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        cuts.push(usize::from(u16::from_le_bytes(*c)));
        rest = tail;
    }
    (flags, cuts, rest)
}

/// Run one input (see the module doc) through the OpenAI decoder. Returns what the whole
/// body gave.
pub fn run(data: &[u8]) -> Outcome {
    run_dialect::<OpenAiChunks>(data)
}

/// Run one input (see the module doc) through the Anthropic decoder. Returns what the whole
/// body gave.
pub fn run_anthropic(data: &[u8]) -> Outcome {
    run_dialect::<AnthropicEvents>(data)
}

fn run_dialect<D: Dialect>(data: &[u8]) -> Outcome {
    let (flags, cuts, body) = decode(data);
    let limits = limits(flags & 1 == 1);
    let parts = split(body, &cuts);
    let whole = feed_dialect::<D>(limits, &[body]);
    let chunked = feed_dialect::<D>(limits, &parts);
    assert_eq!(chunked, whole, "chunking changed the outcome");
    for e in &whole.0 {
        assert!(
            !matches!(e, ChatEvent::TextDelta(t) if t.is_empty()),
            "an empty text delta"
        );
    }
    let status = 400 + u16::from(flags >> 1);
    let refused = classify_http_error(status, None, body);
    assert!(refused.message_preview.chars().count() <= PREVIEW_CHARS);
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fuzz target's checks hold on arbitrary inputs (a cheap stand-in for the fuzzer
        /// in `cargo test`): bodies built from SSE and JSON pieces, cut anywhere.
        #[test]
        fn target_holds_on_arbitrary_bodies(
            small in any::<bool>(),
            cuts in proptest::collection::vec(any::<u16>(), 0..MAX_CUTS),
            pieces in proptest::collection::vec(prop_oneof![
                Just("data: ".to_owned()),
                Just("\n\n".to_owned()),
                Just("\r\n".to_owned()),
                Just("[DONE]".to_owned()),
                Just(r#"{"choices":[{"index":0,"delta":{"content":"hé"}}]}"#.to_owned()),
                Just(r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"id":"c","function":{"name":"f","arguments":"{"}}]},"finish_reason":"tool_calls"}]}"#.to_owned()),
                Just(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#.to_owned()),
                Just(r#"{"error":{"message":"quota","code":429}}"#.to_owned()),
                "[ -~]{0,12}",
            ], 0..24),
        ) {
            let _outcome = run(&encode(small, &cuts, pieces.concat().as_bytes()));
        }

        /// The same for Anthropic's events.
        #[test]
        fn anthropic_target_holds_on_arbitrary_bodies(
            small in any::<bool>(),
            cuts in proptest::collection::vec(any::<u16>(), 0..MAX_CUTS),
            pieces in proptest::collection::vec(prop_oneof![
                Just("event: message_start\n".to_owned()),
                Just("data: ".to_owned()),
                Just("\n\n".to_owned()),
                Just("\r\n".to_owned()),
                Just(r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":3}}}"#.to_owned()),
                Just(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hé"}}"#.to_owned()),
                Just(r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#.to_owned()),
                Just(r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"a""}}"#.to_owned()),
                Just(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#.to_owned()),
                Just(r#"{"type":"message_stop"}"#.to_owned()),
                Just(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_owned()),
                "[ -~]{0,12}",
            ], 0..24),
        ) {
            let _outcome = run_anthropic(&encode(small, &cuts, pieces.concat().as_bytes()));
        }
    }
}
