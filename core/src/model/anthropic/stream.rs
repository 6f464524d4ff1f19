//! A whole streamed Messages response: bytes in (any chunking), the same [`ChatEvent`]s the
//! OpenAI decoder gives out, and a [`Completion`] at the end.
//!
//! The events, by their JSON `type` (the SSE `event:` line repeats it and is not needed):
//! `message_start` (the model and the input token count), `content_block_start` (a `text`
//! block, or a `tool_use` block with its id and name), `content_block_delta` (`text_delta`,
//! or `input_json_delta` with a piece of the tool's JSON input), `content_block_stop`,
//! `message_delta` (`stop_reason` and the output token count), `message_stop` (the end),
//! `ping`, and `error`. Thinking blocks and event types added later are skipped, as
//! Anthropic's versioning policy asks.

use serde::Deserialize;
use serde_json::Value;

use crate::model::openai::failure::from_stream_error;
use crate::model::openai::{FinishReason, ToolCallDelta};
use crate::model::sse::SseEvent;
use crate::model::stream::{ChatEvent, Dialect, EventStream, Partial, StreamError};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: Option<WireStop>,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// The Anthropic Messages dialect.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnthropicEvents;

/// The decoder of one Messages response body.
pub type MessagesStream = EventStream<AnthropicEvents>;

impl Dialect for AnthropicEvents {
    fn on_event(
        partial: &mut Partial,
        ev: &SseEvent,
        out: &mut Vec<ChatEvent>,
    ) -> Result<(), StreamError> {
        let wire = match serde_json::from_str::<Wire>(&ev.data) {
            Ok(w) => w,
            // A proxy's bare `event: error` line with a plain-text message.
            Err(_) if ev.event == "error" => Wire::Error {
                error: Value::String(ev.data.clone()),
            },
            Err(e) => return Err(StreamError::Event(e.to_string())),
        };
        match wire {
            Wire::MessageStart { message } => {
                if partial.response_model.is_none() {
                    partial.response_model = message.model;
                }
                if let Some(u) = message.usage {
                    add_usage(partial, &u, out);
                }
            }
            Wire::ContentBlockStart {
                index,
                content_block: WireBlock::ToolUse { id, name },
            } => {
                let delta = ToolCallDelta {
                    index,
                    id: Some(id),
                    name: Some(name),
                    arguments: String::new(),
                };
                partial.tool_call(delta, out)?;
            }
            Wire::ContentBlockDelta {
                delta: WireDelta::TextDelta { text },
                ..
            } if !text.is_empty() => out.push(ChatEvent::TextDelta(text)),
            Wire::ContentBlockDelta {
                index,
                delta: WireDelta::InputJsonDelta { partial_json },
            } => {
                let delta = ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments: partial_json,
                };
                partial.tool_call(delta, out)?;
            }
            Wire::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.and_then(|d| d.stop_reason) {
                    partial.finish(FinishReason::from_anthropic(&reason), out);
                }
                if let Some(u) = usage {
                    add_usage(partial, &u, out);
                }
            }
            Wire::MessageStop => partial.done(out),
            Wire::Error { error } => return Err(StreamError::Provider(from_stream_error(&error))),
            Wire::ContentBlockStart { .. } | Wire::ContentBlockDelta { .. } | Wire::Other => {}
        }
        Ok(())
    }
}

/// Counts in `u` replace those seen before (Anthropic's are cumulative); the input is the
/// whole prompt, cached parts included.
fn add_usage(partial: &mut Partial, u: &WireUsage, out: &mut Vec<ChatEvent>) {
    let mut usage = partial.usage.unwrap_or_default();
    let cached = u
        .cache_creation_input_tokens
        .unwrap_or(0)
        .saturating_add(u.cache_read_input_tokens.unwrap_or(0));
    if let Some(input) = u.input_tokens {
        usage.prompt_tokens = input.saturating_add(cached);
    }
    if let Some(output) = u.output_tokens {
        usage.completion_tokens = output;
    }
    partial.usage(usage, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::model_stream::text;
    use crate::model::openai::{Completion, ErrorKind, Usage};

    /// A text answer as Anthropic documents it (`event:` lines, a `ping`, CRLF here and there).
    pub(crate) const TEXT: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\r\n\r\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" wörld 🦀"}}"#,
        "\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        "\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn run(body: &str) -> (Vec<ChatEvent>, Result<Completion, StreamError>) {
        let mut s = MessagesStream::default();
        let mut out = Vec::new();
        if let Err(e) = s.feed(body.as_bytes(), &mut out) {
            return (out, Err(e));
        }
        let end = s.finish();
        (out, end)
    }

    #[test]
    fn a_text_answer() {
        let (events, end) = run(TEXT);
        assert_eq!(text(&events), "Hello wörld 🦀");
        let done = end.unwrap();
        assert_eq!(done.finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            done.usage,
            Some(Usage {
                prompt_tokens: 30,
                completion_tokens: 15
            })
        );
        assert_eq!(
            done.response_model.as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        assert_eq!(events.last(), Some(&ChatEvent::Done));
        // Byte by byte gives the same.
        let mut s = MessagesStream::default();
        let mut out = Vec::new();
        for b in TEXT.as_bytes() {
            s.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, events);
    }

    #[test]
    fn tool_use_blocks_accumulate() {
        let body = concat!(
            r#"data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":3}}}"#,
            "\n\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            "\n\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            "\n\n",
            r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            "\n\n",
            r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#,
            "\n\n",
            r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
            "\n\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
            "\n\n",
            r#"data: {"type":"message_stop"}"#,
            "\n\n",
        );
        let (events, end) = run(body);
        assert_eq!(text(&events), "");
        let done = end.unwrap();
        assert_eq!(done.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(done.tool_calls.len(), 1);
        assert_eq!(done.tool_calls[0].id, "toolu_1");
        assert_eq!(done.tool_calls[0].name, "get_weather");
        assert_eq!(done.tool_calls[0].arguments, r#"{"city": "Paris"}"#);
    }

    #[test]
    fn errors_truncation_and_garbage() {
        let overloaded = concat!(
            r#"data: {"type":"message_start","message":{"model":"m"}}"#,
            "\n\nevent: error\n",
            r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            "\n\n",
        );
        let (_, end) = run(overloaded);
        let Err(StreamError::Provider(e)) = end else {
            panic!("{end:?}")
        };
        assert_eq!(e.kind, ErrorKind::RateLimit);
        assert_eq!(e.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(e.message_preview, "Overloaded");
        let cut = &TEXT[..TEXT.find("event: message_delta").unwrap()];
        assert_eq!(run(cut).1, Err(StreamError::Truncated));
        assert!(matches!(
            run("data: {\"type\":\"content_block_delta\",\"index\":\"x\"}\n\n").1,
            Err(StreamError::Event(_))
        ));
        assert!(matches!(
            run("event: error\ndata: upstream timed out\n\n").1,
            Err(StreamError::Provider(_))
        ));
        let (events, end) = run("data: {\"type\":\"brand_new_event\"}\n\n");
        assert!(events.is_empty());
        assert_eq!(end, Err(StreamError::Truncated));
    }
}
