//! OpenAI's streamed chat completion chunks as a [`Dialect`]: a `data` payload is a
//! `chat.completion.chunk`, an `{"error":…}` or `[DONE]`.

use std::borrow::Cow;

use super::chunk::{Payload, decode_payload};
use super::failure::from_stream_error;
use crate::model::sse::SseEvent;
pub use crate::model::stream::{
    ChatEvent, Completion, DEFAULT_MAX_TOOL_CALL_BYTES, DEFAULT_MAX_TOOL_CALLS, Dialect,
    EventStream, Partial, StreamError, StreamLimits,
};

/// The OpenAI chat completions dialect.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAiChunks;

/// The decoder of one chat completions response body.
pub type ChatStream = EventStream<OpenAiChunks>;

impl Dialect for OpenAiChunks {
    fn on_event(
        partial: &mut Partial,
        ev: &SseEvent,
        out: &mut Vec<ChatEvent>,
    ) -> Result<(), StreamError> {
        let payload = match decode_payload(&ev.data) {
            // Some providers name the event `error` and put a bare message in it.
            Err(_) if ev.event == "error" => Payload::Error(from_stream_error(
                &serde_json::Value::String(ev.data.clone()),
            )),
            other => other?,
        };
        let chunk = match payload {
            Payload::Done => {
                partial.done(out);
                return Ok(());
            }
            Payload::Error(e) => return Err(StreamError::Provider(e)),
            Payload::Chunk(chunk) => chunk,
        };
        if partial.response_model.is_none() {
            partial.response_model = chunk.model.map(Cow::into_owned);
        }
        if let Some(text) = chunk.content {
            out.push(ChatEvent::TextDelta(text));
        }
        for delta in chunk.tool_calls {
            partial.tool_call(delta, out)?;
        }
        if let Some(reason) = chunk.finish_reason {
            partial.finish(reason, out);
        }
        if let Some(usage) = chunk.usage {
            partial.usage(usage, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::model_stream::{Outcome, feed as run, split};
    use crate::model::openai::ErrorKind;
    use crate::model::openai::{ChunkError, FinishReason, ToolCall, Usage};
    use crate::model::sse::{SseError, SseLimits};
    use proptest::prelude::*;

    /// A text answer as OpenAI streams it with `include_usage`, CRLF line ends and a keep-alive.
    const TEXT: &str = concat!(
        ": keep-alive\r\n\r\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\r\n\r\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Echo from"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\r\n\r\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" fake LLM: héllo 🦀"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\r\n\r\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        "\r\n\r\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":5,"total_tokens":24}}"#,
        "\r\n\r\n",
        "data: [DONE]\r\n\r\n",
    );

    /// Two parallel tool calls, arguments in fragments (OpenAI's documented shape).
    const TOOLS: &str = concat!(
        r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    fn whole(body: &str) -> Outcome {
        run(StreamLimits::default(), &[body.as_bytes()])
    }

    #[test]
    fn text_answer() {
        let (events, end) = whole(TEXT);
        let usage = Usage {
            prompt_tokens: 19,
            completion_tokens: 5,
        };
        assert_eq!(
            events,
            vec![
                ChatEvent::TextDelta("Echo from".into()),
                ChatEvent::TextDelta(" fake LLM: héllo 🦀".into()),
                ChatEvent::Finish(FinishReason::Stop),
                ChatEvent::Usage(usage),
                ChatEvent::Done,
            ]
        );
        assert_eq!(
            end,
            Ok(Completion {
                finish_reason: Some(FinishReason::Stop),
                usage: Some(usage),
                tool_calls: vec![],
                response_model: Some("gpt-4o-mini-2024-07-18".into()),
            })
        );
    }

    #[test]
    fn tool_calls_accumulate_by_index() {
        let (events, end) = whole(TOOLS);
        let deltas = events
            .iter()
            .filter(|e| matches!(e, ChatEvent::ToolCallDelta(_)))
            .count();
        assert_eq!(deltas, 4);
        let done = end.expect("complete");
        assert_eq!(done.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            done.tool_calls,
            vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city": "Paris"}"#.into(),
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "get_time".into(),
                    arguments: "{}".into(),
                },
            ]
        );
    }

    #[test]
    fn byte_by_byte_is_the_same() {
        for body in [TEXT, TOOLS] {
            let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
            assert_eq!(run(StreamLimits::default(), &bytes), whole(body));
        }
    }

    #[test]
    fn in_stream_error_stops_the_stream() {
        let body = concat!(
            r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            "\n\n",
            r#"data: {"error":{"message":"Rate limit exceeded","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#,
            "\n\n",
        );
        let (events, end) = whole(body);
        assert_eq!(events, vec![ChatEvent::TextDelta("Hi".into())]);
        match end {
            Err(StreamError::Provider(e)) => {
                assert_eq!(e.kind, ErrorKind::RateLimit);
                assert_eq!(e.status, None);
            }
            other => panic!("{other:?}"),
        }
        let (_, end) = whole("event: error\ndata: upstream overloaded\n\n");
        assert!(matches!(end, Err(StreamError::Provider(e)) if e.kind == ErrorKind::RateLimit));
    }

    #[test]
    fn truncated_and_malformed_bodies() {
        let (_, end) =
            whole("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        assert_eq!(end, Err(StreamError::Truncated));
        let (_, end) =
            whole("data: {\"choices\":[{\"index\":0,\"finish_reason\":\"length\"}]}\n\n");
        assert_eq!(end.map(|c| c.finish_reason), Ok(Some(FinishReason::Length)));
        let (_, end) = whole("data: {not json\n\n");
        assert!(matches!(
            end,
            Err(StreamError::Chunk(ChunkError::Malformed(_)))
        ));
    }

    #[test]
    fn after_done_everything_is_ignored() {
        let mut s = ChatStream::default();
        let mut out = Vec::new();
        s.feed(b"data: [DONE]\n\ndata: {bad\n\n", &mut out)
            .expect("done");
        s.feed(b"data: {bad\n\n", &mut out).expect("still done");
        assert!(s.is_done());
        assert_eq!(out, vec![ChatEvent::Done]);
        assert_eq!(s.finish(), Ok(Completion::default()));
    }

    #[test]
    fn tool_call_limits() {
        let limits = StreamLimits {
            max_tool_calls: 1,
            ..StreamLimits::default()
        };
        let (_, end) = run(limits, &[TOOLS.as_bytes()]);
        assert_eq!(end, Err(StreamError::TooManyToolCalls { limit: 1 }));
        let limits = StreamLimits {
            max_tool_call_bytes: 20,
            ..StreamLimits::default()
        };
        let (events, end) = run(limits, &[TOOLS.as_bytes()]);
        assert_eq!(end, Err(StreamError::ToolCallsTooLarge { limit: 20 }));
        assert_eq!(events.len(), 1, "{events:?}");
    }

    #[test]
    fn sse_limits_stop_the_stream() {
        let limits = StreamLimits {
            sse: SseLimits {
                max_line_bytes: 64,
                max_event_bytes: 64,
            },
            ..StreamLimits::default()
        };
        let (_, end) = run(limits, &[TEXT.as_bytes()]);
        assert_eq!(
            end,
            Err(StreamError::Sse(SseError::LineTooLong { limit: 64 }))
        );
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(
            pick in 0usize..2,
            cuts in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            let body = if pick == 0 { TEXT } else { TOOLS }.as_bytes();
            let parts = split(body, &cuts);
            prop_assert_eq!(run(StreamLimits::default(), &parts), run(StreamLimits::default(), &[body]));
        }
    }
}
