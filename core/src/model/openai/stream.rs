//! A whole streamed response body: bytes in (any chunking), [`ChatEvent`]s out, tool calls
//! accumulated by index, and a [`Completion`] when the body ends.

use std::collections::BTreeMap;

use super::chunk::{ChunkError, FinishReason, Payload, ToolCallDelta, Usage, decode_payload};
use super::failure::{ProviderError, from_stream_error};
use super::request::ToolCall;
use crate::model::sse::{SseDecoder, SseError, SseEvent, SseLimits};

/// The default of [`StreamLimits::max_tool_calls`].
pub const DEFAULT_MAX_TOOL_CALLS: usize = 64;
/// The default of [`StreamLimits::max_tool_call_bytes`]: 1 MiB.
pub const DEFAULT_MAX_TOOL_CALL_BYTES: usize = 1024 * 1024;

/// How much one response may make the decoder hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// The SSE layer's line and event limits.
    pub sse: SseLimits,
    /// The most distinct tool calls (indexes) in one response.
    pub max_tool_calls: usize,
    /// The most bytes of tool call ids, names and arguments together in one response.
    pub max_tool_call_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            sse: SseLimits::default(),
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            max_tool_call_bytes: DEFAULT_MAX_TOOL_CALL_BYTES,
        }
    }
}

impl StreamLimits {
    /// The most bytes a [`ChatStream`] with these limits ever holds: the SSE buffers, the
    /// accumulated tool calls, and the response's model name (one line at most).
    pub fn max_buffered_bytes(&self) -> usize {
        self.sse
            .max_buffered_bytes()
            .saturating_add(self.max_tool_call_bytes)
            .saturating_add(self.sse.max_line_bytes)
    }
}

/// Why a response could not be read to its end. The stream stays stopped: every later call
/// returns the same error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The SSE framing broke a limit.
    #[error(transparent)]
    Sse(#[from] SseError),
    /// A `data` payload was not a chat completion chunk.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// More tool calls than [`StreamLimits::max_tool_calls`].
    #[error("more than {limit} tool calls in one response")]
    TooManyToolCalls {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Tool calls larger than [`StreamLimits::max_tool_call_bytes`].
    #[error("tool calls larger than {limit} bytes in one response")]
    ToolCallsTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The provider reported an error inside the stream.
    #[error(transparent)]
    Provider(ProviderError),
    /// The body ended before `[DONE]` or a `finish_reason`.
    #[error("the model's response ended early")]
    Truncated,
}

/// What the response said, in order. Deltas are passed on as they arrive; the stream keeps
/// only what the [`Completion`] needs (tool calls, finish reason, usage, model name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatEvent {
    /// More assistant text (`choices[0].delta.content`), never empty.
    TextDelta(String),
    /// A fragment of a tool call; [`ChatStream::tool_calls`] has them accumulated.
    ToolCallDelta(ToolCallDelta),
    /// `finish_reason` was set.
    Finish(FinishReason),
    /// The token counts.
    Usage(Usage),
    /// `[DONE]`: nothing follows. Anything the body still holds is ignored.
    Done,
}

/// The outcome of a response that ended well, from [`ChatStream::finish`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The last `finish_reason` (`None` when only `[DONE]` ended the stream).
    pub finish_reason: Option<FinishReason>,
    /// The last usage chunk.
    pub usage: Option<Usage>,
    /// The tool calls, by index, fragments joined.
    pub tool_calls: Vec<ToolCall>,
    /// The `model` of the first chunk that named one (upstream's `responseModel`).
    pub response_model: Option<String>,
}

/// The decoder of one response body.
#[derive(Clone, Debug)]
pub struct ChatStream {
    limits: StreamLimits,
    sse: SseDecoder,
    sse_events: Vec<SseEvent>,
    tool_calls: BTreeMap<u32, ToolCall>,
    tool_call_bytes: usize,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    response_model: Option<String>,
    done: bool,
    failed: Option<StreamError>,
}

impl ChatStream {
    /// A decoder at the start of a 2xx `text/event-stream` body.
    pub fn new(limits: StreamLimits) -> Self {
        ChatStream {
            limits,
            sse: SseDecoder::new(limits.sse),
            sse_events: Vec::new(),
            tool_calls: BTreeMap::new(),
            tool_call_bytes: 0,
            finish_reason: None,
            usage: None,
            response_model: None,
            done: false,
            failed: None,
        }
    }

    /// Whether `[DONE]` has arrived (the caller may close the connection).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The tool calls accumulated so far, by index.
    pub fn tool_calls(&self) -> impl Iterator<Item = (u32, &ToolCall)> {
        self.tool_calls.iter().map(|(i, c)| (*i, c))
    }

    /// The bytes held; at most [`StreamLimits::max_buffered_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.sse.buffered_bytes()
            + self.tool_call_bytes
            + self.response_model.as_ref().map_or(0, String::len)
    }

    /// Decode `bytes`, appending the events they complete to `out`. On an error the events
    /// before it are in `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.done {
            return Ok(());
        }
        let mut sse_events = core::mem::take(&mut self.sse_events);
        let framed = self.sse.feed(bytes, &mut sse_events);
        let mut result = Ok(());
        for ev in sse_events.drain(..) {
            if self.done {
                break;
            }
            result = self.on_event(&ev, out);
            if result.is_err() {
                break;
            }
        }
        self.sse_events = sse_events;
        // An SSE error stops the stream after the events that came before it.
        let result = result.and(if self.done {
            Ok(())
        } else {
            framed.map_err(Into::into)
        });
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The end of the body: the [`Completion`] if the response was complete (`[DONE]` or a
    /// `finish_reason` seen), else [`StreamError::Truncated`] or the error that stopped it.
    pub fn finish(&mut self) -> Result<Completion, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.done && self.finish_reason.is_none() {
            return Err(StreamError::Truncated);
        }
        Ok(Completion {
            finish_reason: self.finish_reason.clone(),
            usage: self.usage,
            tool_calls: self.tool_calls.values().cloned().collect(),
            response_model: self.response_model.clone(),
        })
    }

    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<ChatEvent>) -> Result<(), StreamError> {
        let payload = match decode_payload(&ev.data) {
            // Some providers name the event `error` and put a bare message in it.
            Err(_) if ev.event == "error" => Payload::Error(from_stream_error(
                &serde_json::Value::String(ev.data.clone()),
            )),
            other => other?,
        };
        let chunk = match payload {
            Payload::Done => {
                self.done = true;
                out.push(ChatEvent::Done);
                return Ok(());
            }
            Payload::Error(e) => return Err(StreamError::Provider(e)),
            Payload::Chunk(chunk) => chunk,
        };
        if self.response_model.is_none() {
            self.response_model = chunk.model;
        }
        if let Some(text) = chunk.content {
            out.push(ChatEvent::TextDelta(text));
        }
        for delta in chunk.tool_calls {
            self.accumulate(&delta)?;
            out.push(ChatEvent::ToolCallDelta(delta));
        }
        if let Some(reason) = chunk.finish_reason {
            self.finish_reason = Some(reason.clone());
            out.push(ChatEvent::Finish(reason));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            out.push(ChatEvent::Usage(usage));
        }
        Ok(())
    }

    /// Join a fragment into its call: `id` and `name` are set when sent, `arguments` appended.
    fn accumulate(&mut self, delta: &ToolCallDelta) -> Result<(), StreamError> {
        let empty = ToolCall::default();
        let call = match self.tool_calls.get(&delta.index) {
            Some(call) => call,
            None if self.tool_calls.len() >= self.limits.max_tool_calls => {
                return Err(StreamError::TooManyToolCalls {
                    limit: self.limits.max_tool_calls,
                });
            }
            None => &empty,
        };
        let before = call.id.len() + call.name.len() + call.arguments.len();
        let after = delta.id.as_ref().unwrap_or(&call.id).len()
            + delta.name.as_ref().unwrap_or(&call.name).len()
            + call.arguments.len()
            + delta.arguments.len();
        let total = self
            .tool_call_bytes
            .saturating_sub(before)
            .saturating_add(after);
        if total > self.limits.max_tool_call_bytes {
            return Err(StreamError::ToolCallsTooLarge {
                limit: self.limits.max_tool_call_bytes,
            });
        }
        self.tool_call_bytes = total;
        let call = self.tool_calls.entry(delta.index).or_default();
        if let Some(id) = &delta.id {
            call.id.clone_from(id);
        }
        if let Some(name) = &delta.name {
            call.name.clone_from(name);
        }
        call.arguments.push_str(&delta.arguments);
        Ok(())
    }
}

impl Default for ChatStream {
    fn default() -> Self {
        ChatStream::new(StreamLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::model_stream::{Outcome, feed as run, split};
    use crate::model::openai::ErrorKind;
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
