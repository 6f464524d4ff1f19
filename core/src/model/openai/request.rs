//! The request: a small typed transcript serialised as OpenAI's chat completions body,
//! written straight from the transcript ([`ChatRequest::to_http`]): no JSON tree is built and
//! dropped per turn (callgrind, a 50-turn Telegram chat: 545,000 instructions per request
//! with the tree, 153,000 through serde without it, fewer again with the messages written by
//! hand into a buffer sized up front).
//! Object members go out in the order a [`Value`] object keeps them (sorted), and strings are
//! escaped as serde_json escapes them, so the bytes are those of the old tree's text.

use std::borrow::Borrow;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::frame::push_json_str;
use crate::model::HttpRequest;
use crate::model::json_text::push_array;

/// Room for the JSON around one message's text (`{"content":…,"role":"assistant"}`).
const MESSAGE_ROOM: usize = 40;
/// Room for the JSON around one tool call's texts.
const CALL_ROOM: usize = 64;
/// Room for one tool's JSON besides its name and description (its schema).
const TOOL_SCHEMA_ROOM: usize = 1024;
/// Room for the body's members besides the messages and tools.
const BODY_ROOM: usize = 128;

/// One message of the transcript sent to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Instructions: `{"role":"system","content":…}`.
    System(String),
    /// What the user said: `{"role":"user","content":…}`.
    User(String),
    /// What the model answered earlier: its text and the tools it called.
    Assistant {
        /// The text; may be empty when the turn only called tools.
        text: String,
        /// The tool calls the model made in that turn, in order.
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's result: `{"role":"tool","tool_call_id":…,"content":…}`.
    ToolResult {
        /// The [`ToolCall::id`] this answers.
        call_id: String,
        /// The result text.
        content: String,
    },
}

/// A complete tool call, as the model made it (accumulated from the stream) or replayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// The provider's call id, e.g. `call_abc123` ("" when the provider sent none).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments, a JSON text as the model wrote it (not validated here).
    pub arguments: String,
}

impl ToolCall {
    /// Append the call as a `tool_calls[]` element:
    /// `{"function":{"arguments":…,"name":…},"id":…,"type":"function"}`.
    fn push_openai(&self, out: &mut String) {
        out.push_str(r#"{"function":{"arguments":"#);
        push_json_str(out, &self.arguments);
        out.push_str(r#","name":"#);
        push_json_str(out, &self.name);
        out.push_str(r#"},"id":"#);
        push_json_str(out, &self.id);
        out.push_str(r#","type":"function"}"#);
    }
}

impl Message {
    /// The bytes of its texts (ids, names and arguments of its tool calls included): what
    /// a request body's buffer is sized by.
    pub(crate) fn text_len(&self) -> usize {
        match self {
            Message::System(t) | Message::User(t) => t.len(),
            Message::Assistant { text, tool_calls } => {
                let calls: usize = tool_calls
                    .iter()
                    .map(|c| c.id.len() + c.name.len() + c.arguments.len() + CALL_ROOM)
                    .sum();
                text.len() + calls
            }
            Message::ToolResult { call_id, content } => call_id.len() + content.len(),
        }
    }
}

/// Append `m` as one element of an OpenAI request's `messages` array: members in sorted
/// order, strings escaped as serde_json escapes them.
fn push_message(out: &mut String, m: &Message) {
    let (content, role) = match m {
        Message::System(text) => (text, "system"),
        Message::User(text) => (text, "user"),
        Message::Assistant { text, tool_calls } if tool_calls.is_empty() => (text, "assistant"),
        Message::Assistant { text, tool_calls } => {
            out.push_str(r#"{"content":"#);
            if text.is_empty() {
                out.push_str("null");
            } else {
                push_json_str(out, text);
            }
            out.push_str(r#","role":"assistant","tool_calls":"#);
            push_array(out, tool_calls, ToolCall::push_openai);
            out.push('}');
            return;
        }
        Message::ToolResult { call_id, content } => {
            out.push_str(r#"{"content":"#);
            push_json_str(out, content);
            out.push_str(r#","role":"tool","tool_call_id":"#);
            push_json_str(out, call_id);
            out.push('}');
            return;
        }
    };
    out.push_str(r#"{"content":"#);
    push_json_str(out, content);
    out.push_str(r#","role":""#);
    out.push_str(role);
    out.push_str(r#""}"#);
}

/// A tool's arguments as a JSON schema object, shared (a copy is a reference count) and
/// encoded once: the text a request writes is made the first time one needs it and kept, so
/// a tool offered turn after turn (the built-in ones) is encoded once, not once a turn.
#[derive(Clone, Debug)]
pub struct Schema(Arc<SchemaText>);

#[derive(Debug)]
struct SchemaText {
    value: Value,
    text: OnceLock<Box<str>>,
}

impl Schema {
    /// Its JSON text: what `value.to_string()` gives.
    pub fn text(&self) -> &str {
        let s = &self.0;
        s.text
            .get_or_init(|| crate::model::json_text::to_text(&s.value).into())
    }
}

impl From<Value> for Schema {
    fn from(value: Value) -> Self {
        Schema(Arc::new(SchemaText {
            value,
            text: OnceLock::new(),
        }))
    }
}

impl std::ops::Deref for Schema {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0.value
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

impl Eq for Schema {}

/// A tool the model may call: its name, what it does, and its arguments' JSON schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its arguments as a JSON schema object (shared with the tool catalog).
    pub parameters: Schema,
}

impl ToolSpec {
    /// Append the tool as an OpenAI `tools[]` element:
    /// `{"function":{"description":…,"name":…,"parameters":…},"type":"function"}`.
    fn push_openai(&self, out: &mut String) {
        out.push_str(r#"{"function":{"description":"#);
        push_json_str(out, &self.description);
        out.push_str(r#","name":"#);
        push_json_str(out, &self.name);
        out.push_str(r#","parameters":"#);
        out.push_str(self.parameters.text());
        out.push_str(r#"},"type":"function"}"#);
    }
}

/// A streamed chat completion request for one model turn: its messages owned, or borrowed
/// (`M` = `&Message`: a turn's window is written from where it is held, not copied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatRequest<M = Message> {
    /// The provider's model id (`models[].id`, e.g. `"fake-1"` for `fake/fake-1`).
    pub model: String,
    /// The transcript, oldest first.
    pub messages: Vec<M>,
    /// The tools the model may call (none: no `tools` member).
    pub tools: Vec<ToolSpec>,
}

impl<M: Borrow<Message>> ChatRequest<M> {
    /// The JSON body: `messages`, `model`, `stream: true`,
    /// `stream_options: {include_usage: true}` (so the last chunk carries the token counts),
    /// and `tools` when there are any, in that (sorted) order.
    pub fn body(&self) -> Value {
        serde_json::from_str(&self.body_text()).unwrap_or(Value::Null)
    }

    /// The body as JSON text, written straight from the transcript into a buffer sized for
    /// it up front (no JSON tree, no regrowth).
    fn body_text(&self) -> String {
        let mut out = String::with_capacity(self.size_hint());
        out.push_str(r#"{"messages":["#);
        for (i, m) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_message(&mut out, m.borrow());
        }
        out.push_str(r#"],"model":"#);
        push_json_str(&mut out, &self.model);
        out.push_str(r#","stream":true,"stream_options":{"include_usage":true}"#);
        if !self.tools.is_empty() {
            out.push_str(r#","tools":"#);
            push_array(&mut out, &self.tools, ToolSpec::push_openai);
        }
        out.push('}');
        out
    }

    /// About the body's length: its texts plus room for the JSON around them (escapes and
    /// the tools' schemas may take more; the buffer then grows as usual).
    fn size_hint(&self) -> usize {
        let texts: usize = self.messages.iter().map(|m| m.borrow().text_len()).sum();
        let tools: usize = self
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + TOOL_SCHEMA_ROOM)
            .sum();
        texts + MESSAGE_ROOM * self.messages.len() + self.model.len() + tools + BODY_ROOM
    }

    /// The HTTP request to `POST {base_url}/chat/completions` (one trailing `/` of the base is
    /// ignored), with `Authorization: Bearer {api_key}` when there is a key.
    pub fn to_http(&self, base_url: &str, api_key: Option<&str>) -> HttpRequest {
        let mut headers = vec![
            ("Content-Type".into(), "application/json".to_owned()),
            ("Accept".into(), "text/event-stream".to_owned()),
        ];
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            headers.push(("Authorization".into(), format!("Bearer {key}")));
        }
        HttpRequest {
            method: "POST",
            url: format!(
                "{}/chat/completions",
                base_url.strip_suffix('/').unwrap_or(base_url)
            ),
            headers,
            body: self.body_text().into_bytes(),
            idempotent: false,
            dialing: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn transcript() -> ChatRequest {
        ChatRequest {
            model: "fake-1".into(),
            messages: vec![
                Message::System("You are terse.".into()),
                Message::User("What is the weather in Paris?".into()),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    }],
                },
                Message::ToolResult {
                    call_id: "call_1".into(),
                    content: "18°C, clear".into(),
                },
                Message::Assistant {
                    text: "18°C and clear.".into(),
                    tool_calls: vec![],
                },
                Message::User("Thanks".into()),
            ],
            tools: vec![],
        }
    }

    #[test]
    fn body_is_openai_chat_completions_streaming() {
        assert_eq!(
            transcript().body(),
            json!({
                "model": "fake-1",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "What is the weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18°C, clear"},
                    {"role": "assistant", "content": "18°C and clear."},
                    {"role": "user", "content": "Thanks"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn http_request_joins_the_base_url_and_sends_the_key() {
        let r = transcript().to_http("http://127.0.0.1:9/v1/", Some("sk-test"));
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("accept"), Some("text/event-stream"));
        let body: Value = serde_json::from_slice(&r.body).expect("json body");
        assert_eq!(body, transcript().body());
        let mut with_tools = transcript();
        with_tools.tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: "The weather.".into(),
            parameters: json!({"type": "object"}).into(),
        }];
        assert_eq!(
            with_tools.body()["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "The weather.", "parameters": {"type": "object"}}}])
        );
        let keyless = transcript().to_http("http://h/v1", None);
        assert_eq!(keyless.url, "http://h/v1/chat/completions");
        assert_eq!(keyless.header("authorization"), None);
    }

    /// The body as the JSON tree built it before the body was written straight from the
    /// transcript: members sorted, strings escaped alike.
    fn as_tree(r: &ChatRequest) -> Value {
        let message = |m: &Message| match m {
            Message::System(text) => json!({ "role": "system", "content": text }),
            Message::User(text) => json!({ "role": "user", "content": text }),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({ "role": "assistant", "content": text })
            }
            Message::Assistant { text, tool_calls } => json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text) },
                "tool_calls": tool_calls.iter().map(|c| json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })).collect::<Vec<_>>(),
            }),
            Message::ToolResult { call_id, content } => {
                json!({ "role": "tool", "tool_call_id": call_id, "content": content })
            }
        };
        let mut body = json!({
            "model": r.model,
            "messages": r.messages.iter().map(message).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if !r.tools.is_empty() {
            body["tools"] = r
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": *t.parameters}})
                })
                .collect();
        }
        body
    }

    #[test]
    fn the_wire_body_is_byte_for_byte_the_json_tree_s() {
        let mut r = transcript();
        r.messages.push(Message::User(
            "quotes \" back\\slash \u{1} tab\t é 😀 </script>".into(),
        ));
        r.messages.push(Message::Assistant {
            text: "calling".into(),
            tool_calls: vec![ToolCall::default()],
        });
        // Every ASCII character (controls, quote, backslash, DEL) in each kind of message.
        let ascii: String = (0u8..0x80).map(char::from).collect();
        r.messages.push(Message::System(ascii.clone()));
        r.messages.push(Message::Assistant {
            text: ascii.clone(),
            tool_calls: vec![ToolCall {
                id: ascii.clone(),
                name: "n\"".into(),
                arguments: ascii.clone(),
            }],
        });
        r.messages.push(Message::Assistant {
            text: ascii.clone(),
            tool_calls: vec![],
        });
        r.messages.push(Message::ToolResult {
            call_id: ascii.clone(),
            content: ascii.clone(),
        });
        r.model = ascii;
        let wire = r.to_http("http://h/v1", None).body;
        assert_eq!(
            String::from_utf8(wire.clone()).unwrap(),
            as_tree(&r).to_string()
        );
        r.tools = vec![ToolSpec {
            name: "exec".into(),
            description: "Run \"it\".".into(),
            parameters: json!({"type": "object", "properties": {"z": {}, "a": {"type": "string"}}})
                .into(),
        }];
        let wire = r.to_http("http://h/v1", None).body;
        assert_eq!(String::from_utf8(wire).unwrap(), as_tree(&r).to_string());
        r.tools.push(ToolSpec {
            name: "\u{0}\"".into(),
            description: String::new(),
            parameters: crate::model::json_text::tests::schema().into(),
        });
        let wire = r.to_http("http://h/v1", None).body;
        assert_eq!(String::from_utf8(wire).unwrap(), as_tree(&r).to_string());
    }
}
