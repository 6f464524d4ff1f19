//! One SSE `data` payload of a streamed chat completion, decoded: a `chat.completion.chunk`,
//! the `[DONE]` sentinel, or an in-stream error. Unknown fields are ignored; only choice 0 is
//! read (the gateway never asks for `n > 1`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::Value;

use super::failure::{ProviderError, from_stream_error};

/// Why a payload could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Not JSON, or a known field of the wrong type.
    #[error("malformed chat completion chunk: {0}")]
    Malformed(String),
}

/// Why the model stopped (`finish_reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end or a stop sequence (`stop`).
    Stop,
    /// `max_tokens` or the context ran out (`length`).
    Length,
    /// The model wants tool results (`tool_calls`, or the legacy `function_call`).
    ToolCalls,
    /// Output withheld by a filter (`content_filter`).
    ContentFilter,
    /// Any other value, as sent.
    Other(String),
}

impl FinishReason {
    fn parse(s: &str) -> Self {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// Anthropic's `stop_reason` in the same words: `end_turn` and `stop_sequence` are
    /// [`Stop`](FinishReason::Stop), `max_tokens` is `Length`, `tool_use` is `ToolCalls`,
    /// `refusal` is `ContentFilter`.
    pub fn from_anthropic(s: &str) -> Self {
        match s {
            "end_turn" | "stop_sequence" => FinishReason::Stop,
            "max_tokens" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// The wire name (upstream's `stopReason` uses the same words).
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

/// Token counts (`usage`, sent in the last chunk when `stream_options.include_usage` is set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (0 when absent).
    pub prompt_tokens: u64,
    /// `completion_tokens` (0 when absent).
    pub completion_tokens: u64,
}

/// A fragment of one tool call (`choices[0].delta.tool_calls[]`). The first fragment of a call
/// usually carries `id` and `name`; `arguments` arrives in pieces to be concatenated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Which call this belongs to (`index`; its position in the array when absent).
    pub index: u32,
    /// `id`, when this fragment has one.
    pub id: Option<String>,
    /// `function.name`, when this fragment has one.
    pub name: Option<String>,
    /// `function.arguments`: the next piece of the JSON text ("" when absent).
    pub arguments: String,
}

/// What one `chat.completion.chunk` says; the model's name borrowed from the payload when it
/// has no escapes (only a stream's first is kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// `model`: the model that answered, as the provider names it.
    pub model: Option<Cow<'a, str>>,
    /// `choices[0].delta.content`, when present and not empty.
    pub content: Option<String>,
    /// `choices[0].delta.tool_calls`, in order.
    pub tool_calls: Vec<ToolCallDelta>,
    /// `choices[0].finish_reason`, when set.
    pub finish_reason: Option<FinishReason>,
    /// `usage`, when set.
    pub usage: Option<Usage>,
}

/// One decoded `data` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// `[DONE]`: the stream is complete.
    Done,
    /// A completion chunk.
    Chunk(Chunk<'a>),
    /// `{"error":{…}}` inside the stream.
    Error(ProviderError),
}

/// A chunk as sent; its strings borrowed from the payload where they have no escapes.
#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(borrow)]
    model: Option<Text<'a>>,
    #[serde(borrow)]
    choices: Option<FirstChoice<'a>>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

/// A string, borrowed from the payload unless it has escapes (serde reads an
/// `Option<Cow<str>>` as an owned copy whatever `#[serde(borrow)]` says).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Str<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Str(PhantomData))
    }
}

/// `choices`: the first choice whose `index` is 0 (or absent), each choice read (a malformed
/// one refuses the chunk) but not kept.
#[derive(Default)]
struct FirstChoice<'a>(Option<WireChoice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Choices<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Choices<'a> {
            type Value = FirstChoice<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut first = None;
                while let Some(choice) = seq.next_element::<WireChoice<'a>>()? {
                    if first.is_none() && choice.index.unwrap_or(0) == 0 {
                        first = Some(choice);
                    }
                }
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_seq(Choices(PhantomData))
    }
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    index: Option<u32>,
    delta: Option<WireDelta>,
    #[serde(borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireDelta {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    index: Option<u32>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Decode one SSE `data` payload.
pub fn decode_payload(data: &str) -> Result<Payload<'_>, ChunkError> {
    if data.trim() == "[DONE]" {
        return Ok(Payload::Done);
    }
    let wire: WireChunk =
        serde_json::from_str(data).map_err(|e| ChunkError::Malformed(e.to_string()))?;
    if let Some(error) = wire.error.as_ref().filter(|e| !e.is_null()) {
        return Ok(Payload::Error(from_stream_error(error)));
    }
    let (delta, finish_reason) = match wire.choices.unwrap_or_default().0 {
        Some(c) => (c.delta, c.finish_reason.map(|t| t.0)),
        None => (None, None),
    };
    let (content, tool_calls) = match delta {
        Some(d) => (d.content, d.tool_calls.unwrap_or_default()),
        None => (None, Vec::new()),
    };
    Ok(Payload::Chunk(Chunk {
        model: wire.model.map(|t| t.0),
        content: content.filter(|c| !c.is_empty()),
        tool_calls: tool_calls
            .into_iter()
            .zip(0u32..)
            .map(|(t, position)| {
                let (name, arguments) = match t.function {
                    Some(f) => (f.name, f.arguments.unwrap_or_default()),
                    None => (None, String::new()),
                };
                ToolCallDelta {
                    index: t.index.unwrap_or(position),
                    id: t.id,
                    name,
                    arguments,
                }
            })
            .collect(),
        finish_reason: finish_reason.as_deref().map(FinishReason::parse),
        usage: wire.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens.unwrap_or(0),
            completion_tokens: u.completion_tokens.unwrap_or(0),
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::openai::ErrorKind;
    use proptest::prelude::{BoxedStrategy, Just, Strategy, prop_assert_eq, prop_oneof};
    use serde_json::json;

    fn chunk(data: &str) -> Chunk<'_> {
        match decode_payload(data) {
            Ok(Payload::Chunk(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn role_chunk_then_content_then_finish() {
        let first = chunk(
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        );
        assert_eq!(first.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(first.content, None);
        let text = chunk(
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#,
        );
        assert_eq!(text.content.as_deref(), Some("Hello"));
        let last = chunk(
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
        );
        assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    }

    #[test]
    fn usage_chunk_has_no_choices() {
        let u = chunk(
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        );
        assert_eq!(
            u.usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 12
            })
        );
        assert_eq!(u.finish_reason, None);
    }

    #[test]
    fn tool_call_fragments() {
        let c = chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
        );
        assert_eq!(
            c.tool_calls,
            vec![ToolCallDelta {
                index: 0,
                id: Some("call_DdmO9pD3xa9XTPNJ32zg2hcA".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
            }]
        );
        let c = chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"lo"}}]},"finish_reason":null}]}"#,
        );
        assert_eq!(
            c.tool_calls
                .first()
                .map(|t| (t.index, t.arguments.as_str())),
            Some((1, "{\"lo"))
        );
        let c = chunk(
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"a"}},{"function":{"name":"b"}}]}}]}"#,
        );
        let indexes: Vec<u32> = c.tool_calls.iter().map(|t| t.index).collect();
        assert_eq!(indexes, vec![0, 1]);
    }

    #[test]
    fn done_error_and_other_choices() {
        assert_eq!(decode_payload("[DONE]"), Ok(Payload::Done));
        assert_eq!(decode_payload(" [DONE] "), Ok(Payload::Done));
        match decode_payload(
            r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
        ) {
            Ok(Payload::Error(e)) => {
                assert_eq!(e.status, None);
                assert_eq!(e.kind, ErrorKind::Unknown);
                assert_eq!(e.error_type.as_deref(), Some("server_error"));
            }
            other => panic!("{other:?}"),
        }
        let c = chunk(r#"{"choices":[{"index":1,"delta":{"content":"other"}}],"error":null}"#);
        assert_eq!(c.content, None);
        assert_eq!(
            chunk(r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"function_call"}]}"#).finish_reason,
            Some(FinishReason::ToolCalls)
        );
        assert_eq!(
            chunk(r#"{"choices":[{"index":0,"finish_reason":"eos"}]}"#)
                .finish_reason
                .map(|f| f.as_str().to_owned()),
            Some("eos".into())
        );
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        for bad in [
            "",
            "{",
            "[1]",
            r#"{"choices":[{"delta":{"content":5}}]}"#,
            r#"{"choices":{}}"#,
        ] {
            assert!(
                matches!(decode_payload(bad), Err(ChunkError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_model_name_without_escapes_is_borrowed() {
        let plain = chunk(r#"{"model":"gpt-4o","choices":[]}"#);
        assert!(matches!(plain.model, Some(Cow::Borrowed("gpt-4o"))));
        let escaped = chunk(r#"{"model":"gpt\u002d4o","choices":[]}"#);
        assert!(matches!(escaped.model, Some(Cow::Owned(m)) if m == "gpt-4o"));
    }

    /// The decoder before it borrowed: `choices` read into a `Vec` of owned choices. The
    /// reference of `payloads_decode_as_before`.
    fn owned(data: &str) -> Result<Payload<'static>, ChunkError> {
        #[derive(Deserialize)]
        struct Wire {
            model: Option<String>,
            choices: Option<Vec<Choice>>,
            usage: Option<WireUsage>,
            error: Option<Value>,
        }
        #[derive(Deserialize)]
        struct Choice {
            index: Option<u32>,
            delta: Option<WireDelta>,
            finish_reason: Option<String>,
        }
        if data.trim() == "[DONE]" {
            return Ok(Payload::Done);
        }
        let wire: Wire =
            serde_json::from_str(data).map_err(|e| ChunkError::Malformed(e.to_string()))?;
        if let Some(error) = wire.error.as_ref().filter(|e| !e.is_null()) {
            return Ok(Payload::Error(from_stream_error(error)));
        }
        let first = wire
            .choices
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.index.unwrap_or(0) == 0);
        let (delta, finish_reason) = match first {
            Some(c) => (c.delta, c.finish_reason),
            None => (None, None),
        };
        let (content, tool_calls) = match delta {
            Some(d) => (d.content, d.tool_calls.unwrap_or_default()),
            None => (None, Vec::new()),
        };
        Ok(Payload::Chunk(Chunk {
            model: wire.model.map(Cow::Owned),
            content: content.filter(|c| !c.is_empty()),
            tool_calls: tool_calls
                .into_iter()
                .zip(0u32..)
                .map(|(t, position)| {
                    let (name, arguments) = match t.function {
                        Some(f) => (f.name, f.arguments.unwrap_or_default()),
                        None => (None, String::new()),
                    };
                    ToolCallDelta {
                        index: t.index.unwrap_or(position),
                        id: t.id,
                        name,
                        arguments,
                    }
                })
                .collect(),
            finish_reason: finish_reason.as_deref().map(FinishReason::parse),
            usage: wire.usage.map(|u| Usage {
                prompt_tokens: u.prompt_tokens.unwrap_or(0),
                completion_tokens: u.completion_tokens.unwrap_or(0),
            }),
        }))
    }

    /// A value for a key: mostly what OpenAI sends there (`usual`), else of another type.
    fn value(usual: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
        let odd = proptest::sample::select(vec![
            json!(null),
            json!(5),
            json!(-1),
            json!("s"),
            json!([]),
            json!({}),
        ]);
        prop_oneof![6 => usual.prop_map(Some), 1 => Just(None), 1 => odd.prop_map(Some)].boxed()
    }

    /// A string OpenAI might send, escapes included.
    fn string() -> BoxedStrategy<Value> {
        prop_oneof!["[a-z_ ]{0,8}", "[\"\\\\\u{0}-\u{1f}é😀]{0,4}"]
            .prop_map(Value::from)
            .boxed()
    }

    /// An object of the keys whose value is `Some`.
    fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
        Value::Object(
            fields
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
        )
    }

    /// A `chat.completion.chunk`, well formed or not.
    fn payload() -> impl Strategy<Value = String> {
        let index = || value((0u32..3).prop_map(Value::from).boxed());
        let call = (index(), value(string()), value(string()), value(string())).prop_map(
            |(index, id, name, arguments)| {
                let function = object(vec![("name", name), ("arguments", arguments)]);
                object(vec![
                    ("index", index),
                    ("id", id),
                    ("function", Some(function)),
                ])
            },
        );
        let delta = (
            value(string()),
            value(
                proptest::collection::vec(call, 0..3)
                    .prop_map(Value::from)
                    .boxed(),
            ),
        )
            .prop_map(|(content, calls)| object(vec![("content", content), ("tool_calls", calls)]));
        let reason = proptest::sample::select(vec!["stop", "length", "tool_calls", "eos"])
            .prop_map(Value::from)
            .boxed();
        let choice = (index(), value(delta.boxed()), value(reason)).prop_map(
            |(index, delta, finish_reason)| {
                object(vec![
                    ("index", index),
                    ("delta", delta),
                    ("finish_reason", finish_reason),
                    ("logprobs", Some(json!(null))),
                ])
            },
        );
        let usage = (0u64..100, 0u64..100)
            .prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c}))
            .boxed();
        let error = proptest::sample::select(vec![
            json!(null),
            json!({"message": "m", "type": "server_error"}),
        ])
        .boxed();
        (
            value(string()),
            value(
                proptest::collection::vec(choice, 0..3)
                    .prop_map(Value::from)
                    .boxed(),
            ),
            value(usage),
            proptest::option::of(error),
        )
            .prop_map(|(model, choices, usage, error)| {
                object(vec![
                    ("id", Some(json!("chatcmpl-1"))),
                    ("model", model),
                    ("choices", choices),
                    ("usage", usage),
                    ("error", error),
                ])
                .to_string()
            })
    }

    proptest::proptest! {
        /// Every payload decodes as it did when each was read into owned values, errors with
        /// the same text; cut short too.
        #[test]
        fn payloads_decode_as_before(data in payload(), cut in proptest::prelude::any::<usize>()) {
            prop_assert_eq!(decode_payload(&data), owned(&data));
            let mut end = cut % (data.len() + 1);
            while !data.is_char_boundary(end) {
                end -= 1;
            }
            let short = data.get(..end).unwrap_or_default();
            prop_assert_eq!(decode_payload(short), owned(short));
        }
    }
}
