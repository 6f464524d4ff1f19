//! Replays every checked-in fuzz input (seeds and past crashes, `fuzz/corpus/<target>/`)
//! through the same entry points the fuzzers use, so a fixed crash can never come back.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Instant;

use clawgate_core::fuzzing;

/// The inputs of one target, sorted by name; fails when there are none.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("directory entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                bytes,
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

/// Run `entry` on every input of `target`; report every input that panics.
/// The seed `name` of `target`'s corpus.
fn seed(target: &str, name: &str) -> Vec<u8> {
    corpus(target)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, bytes)| bytes)
        .unwrap_or_else(|| panic!("{target}: no seed {name}"))
}

fn replay(target: &str, entry: impl Fn(&[u8])) {
    let failed: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| entry(bytes))).is_err())
        .map(|(name, _)| name)
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: these inputs panic: {failed:?}"
    );
}

#[test]
fn http_head_corpus() {
    replay("http_head", fuzzing::http_head);
}

#[test]
fn connect_params_corpus() {
    replay("connect_params", |d| {
        fuzzing::connect_params(Instant::now(), d)
    });
}

#[test]
fn request_envelope_corpus() {
    replay(
        "request_envelope",
        fuzzing::request_envelope::request_envelope,
    );
}

#[test]
fn ws_read_corpus() {
    replay("ws_read", fuzzing::ws_read::ws_read);
}

#[test]
fn frames_after_hello_corpus() {
    replay("frames_after_hello", |d| {
        fuzzing::frames_after_hello(Instant::now(), d);
    });
}

#[test]
fn connection_stream_corpus() {
    replay("connection_stream", |d| {
        fuzzing::connection_stream(Instant::now(), d);
    });
}

#[test]
fn pairing_store_corpus() {
    replay("pairing_store", |d| {
        fuzzing::pairing_store(Instant::now(), d)
    });
}

/// The hello'd seeds still reach what they were written for: the approval and the
/// `node.invoke` round trip use ids the fixed-seed generator produces, so a change in how the
/// core draws randomness must come with new seeds.
#[test]
fn frame_seeds_complete_the_invoke_round_trip() {
    let t = fuzzing::frames_after_hello(
        Instant::now(),
        &seed("frames_after_hello", "invoke-roundtrip"),
    );
    let all: String = t
        .sent
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    for needle in [
        r#""id":"a1","ok":true"#,
        r#""id":"i1","ok":true"#,
        r#""id":"n2","ok":true,"payload":{"ok":true}"#,
    ] {
        assert!(all.contains(needle), "{needle} not in the transcript");
    }
}

/// The stream seeds are meaningful: the token session reaches `hello-ok` and answers
/// `health`, and the byte-by-byte seed gets the very same bytes back.
#[test]
fn stream_seeds_reach_hello() {
    let by_name = |name: &str| seed("connection_stream", name);
    let whole = fuzzing::connection_stream(Instant::now(), &by_name("token-session"));
    let sent =
        String::from_utf8_lossy(whole.sent.values().next().expect("bytes sent")).into_owned();
    assert!(sent.contains(r#""type":"hello-ok""#), "{sent}");
    assert!(sent.contains(r#""id":"2:h","ok":true"#), "{sent}");
    let bytewise = fuzzing::connection_stream(Instant::now(), &by_name("byte-by-byte"));
    let sent_bytewise =
        String::from_utf8_lossy(bytewise.sent.values().next().expect("bytes sent")).into_owned();
    assert!(
        sent.starts_with(&sent_bytewise[..sent_bytewise.find("2:h").expect("health answered")])
    );
}

#[test]
fn model_stream_corpus() {
    replay("model_stream", |d| {
        let _outcome = fuzzing::model_stream::run(d);
    });
}

/// The model stream seeds reach what they are named for.
#[test]
fn model_stream_seeds_reach_their_outcomes() {
    use clawgate_core::model::openai::StreamError;
    let outcome = |name: &str| fuzzing::model_stream::run(&seed("model_stream", name));
    for name in ["text-answer", "text-answer-crlf-bom", "text-answer-cr"] {
        let (events, end) = outcome(name);
        let text = fuzzing::model_stream::text(&events);
        assert_eq!(text, "Echo from fake LLM: héllo 🦀", "{name}");
        assert!(end.is_ok(), "{name}: {end:?}");
    }
    let tools = outcome("tool-calls").1.expect("tool calls complete");
    assert_eq!(tools.tool_calls.len(), 2);
    assert!(matches!(
        outcome("tool-calls-small-limits").1,
        Err(StreamError::TooManyToolCalls { limit: 2 })
    ));
    assert!(matches!(
        outcome("in-stream-error").1,
        Err(StreamError::Provider(_))
    ));
    assert_eq!(outcome("truncated").1, Err(StreamError::Truncated));
    assert!(matches!(
        outcome("long-line-small-limits").1,
        Err(StreamError::Sse(_))
    ));
    assert!(outcome("fields-and-comments").1.is_ok());
}

#[test]
fn anthropic_stream_corpus() {
    replay("anthropic_stream", |d| {
        let _outcome = fuzzing::model_stream::run_anthropic(d);
    });
}

/// The Anthropic stream seeds reach what they are named for.
#[test]
fn anthropic_stream_seeds_reach_their_outcomes() {
    use clawgate_core::model::openai::{FinishReason, StreamError};
    let outcome =
        |name: &str| fuzzing::model_stream::run_anthropic(&seed("anthropic_stream", name));
    for name in ["text-answer", "text-answer-cut", "text-answer-crlf"] {
        let (events, end) = outcome(name);
        let text = fuzzing::model_stream::text(&events);
        assert_eq!(text, "Echo from fake LLM: héllo 🦀", "{name}");
        assert_eq!(
            end.map(|c| c.finish_reason),
            Ok(Some(FinishReason::Stop)),
            "{name}"
        );
    }
    let tools = outcome("tool-use").1.expect("tool calls complete");
    assert_eq!(tools.tool_calls.len(), 2);
    assert_eq!(tools.tool_calls[0].arguments, r#"{"city": "Paris"}"#);
    assert!(matches!(
        outcome("tool-use-small-limits").1,
        Err(StreamError::TooManyToolCalls { limit: 2 })
    ));
    assert!(matches!(
        outcome("overloaded-error").1,
        Err(StreamError::Provider(_))
    ));
    assert_eq!(outcome("truncated").1, Err(StreamError::Truncated));
}

#[test]
fn http_response_corpus() {
    replay("http_response", |d| {
        let _outcome = fuzzing::http_response::run(d);
    });
}

/// The HTTP response seeds reach what they are named for.
#[test]
fn http_response_seeds_reach_their_outcomes() {
    use clawgate_core::model::http1::{ResponseError, ResponseEvent};
    let outcome = |name: &str| fuzzing::http_response::run(&seed("http_response", name));
    let body = |events: &[ResponseEvent]| -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                ResponseEvent::Body(b) => Some(b.clone()),
                ResponseEvent::Head { .. } => None,
            })
            .flatten()
            .collect()
    };
    let (events, end) = outcome("chunked-sse");
    assert_eq!(end, Ok(()));
    assert!(body(&events).ends_with(b"[DONE]\n"));
    let (events, end) = outcome("content-length-429");
    assert!(matches!(events[0], ResponseEvent::Head { status: 429, .. }));
    assert_eq!((body(&events).len(), end), (44, Ok(())));
    assert!(outcome("until-close").1.is_ok());
    let (events, end) = outcome("interim-then-final");
    assert!(matches!(
        events[..],
        [ResponseEvent::Head { status: 200, .. }]
    ));
    assert_eq!(end, Ok(()));
    assert_eq!(
        outcome("small-limits-long-chunk-line").1,
        Err(ResponseError::ChunkLineTooLong { limit: 8 })
    );
    assert_eq!(outcome("truncated-chunk").1, Err(ResponseError::Truncated));
}

#[test]
fn telegram_updates_corpus() {
    replay("telegram_updates", |d| {
        let _count = fuzzing::telegram_updates::run(d);
    });
    assert_eq!(
        fuzzing::telegram_updates::run(&seed("telegram_updates", "dm-and-group")),
        3
    );
}

#[test]
fn slack_envelope_corpus() {
    replay("slack_envelope", |d| {
        let _found = fuzzing::slack_envelope::run(d);
    });
    assert!(fuzzing::slack_envelope::run(&seed(
        "slack_envelope",
        "dm_envelope.json"
    )));
    assert!(!fuzzing::slack_envelope::run(&seed(
        "slack_envelope",
        "disconnect.json"
    )));
    assert!(fuzzing::slack_envelope::run(&seed(
        "slack_envelope",
        "users_info.json"
    )));
}

#[test]
fn discord_dispatch_corpus() {
    replay("discord_dispatch", |d| {
        let _parsed = fuzzing::discord_dispatch::run(d);
    });
    assert!(fuzzing::discord_dispatch::run(&seed(
        "discord_dispatch",
        "dm"
    )));
    assert!(!fuzzing::discord_dispatch::run(&seed(
        "discord_dispatch",
        "rest-429-huge-retry"
    )));
}

#[test]
fn mcp_message_corpus() {
    replay("mcp_message", |d| {
        let _parsed = fuzzing::mcp_message::run(Instant::now(), d);
    });
    assert_eq!(
        fuzzing::mcp_message::run(Instant::now(), &seed("mcp_message", "lifecycle")),
        6,
        "every message of the seed parses"
    );
}

#[test]
fn mdns_packet_corpus() {
    let t0 = Instant::now();
    replay("mdns_packet", |d| {
        let _found = fuzzing::mdns::packet(d, t0);
    });
    assert_eq!(
        fuzzing::mdns::packet(&seed("mdns_packet", "response"), t0),
        1
    );
}

#[test]
fn netlink_dump_corpus() {
    replay("netlink_dump", |d| {
        let _chosen = fuzzing::mdns::netlink(d);
    });
    assert_eq!(
        fuzzing::mdns::netlink(&seed("netlink_dump", "links_then_addresses")),
        2
    );
}
