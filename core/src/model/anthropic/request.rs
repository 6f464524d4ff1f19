//! The request: the transcript as Anthropic's Messages API body, streamed.

use std::borrow::Borrow;

use serde_json::{Map, Value};

use crate::frame::push_json_str;
use crate::model::HttpRequest;
use crate::model::json_text::{push_array, push_json_value};
use crate::model::openai::{Message, ToolSpec};

/// Room for the JSON around one message's texts, in a body's first allocation.
const MESSAGE_ROOM: usize = 64;
/// Room for one tool (its schema), in a body's first allocation.
const TOOL_ROOM: usize = 1024;
/// Room for the body's other members, in its first allocation.
const BODY_ROOM: usize = 256;

/// The `anthropic-version` header upstream sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A streamed Messages request for one model turn: its messages owned, or borrowed (`M` =
/// `&Message`: a turn's window is written from where it is held, not copied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagesRequest<M = Message> {
    /// The model id, e.g. `claude-sonnet-4-5`.
    pub model: String,
    /// `max_tokens` (required by the API).
    pub max_tokens: u32,
    /// The transcript, oldest first; its [`Message::System`] entries become `system`.
    pub messages: Vec<M>,
    /// The tools the model may call (none: no `tools` member).
    pub tools: Vec<ToolSpec>,
}

/// The role a message goes out in; `None` for a system message (those become `system`).
fn role(message: &Message) -> Option<&'static str> {
    match message {
        Message::System(_) => None,
        Message::User(_) | Message::ToolResult { .. } => Some("user"),
        Message::Assistant { .. } => Some("assistant"),
    }
}

/// Whether a message has a content block (the API refuses empty text blocks).
fn has_blocks(message: &Message) -> bool {
    match message {
        Message::System(_) => false,
        Message::User(text) => !text.is_empty(),
        Message::Assistant { text, tool_calls } => !text.is_empty() || !tool_calls.is_empty(),
        Message::ToolResult { .. } => true,
    }
}

/// Append a `{"text":…,"type":"text"}` block.
fn push_text_block(out: &mut String, text: &str) {
    out.push_str(r#"{"text":"#);
    push_json_str(out, text);
    out.push_str(r#","type":"text"}"#);
}

/// Append the content blocks of `message` (which [`has_blocks`]), each after a comma but
/// the first of its message (`first`).
fn push_blocks(out: &mut String, message: &Message, first: &mut bool) {
    let mut sep = |out: &mut String| {
        if !std::mem::take(first) {
            out.push(',');
        }
    };
    match message {
        Message::System(_) => {}
        Message::User(text) => {
            sep(out);
            push_text_block(out, text);
        }
        Message::Assistant { text, tool_calls } => {
            if !text.is_empty() {
                sep(out);
                push_text_block(out, text);
            }
            for c in tool_calls {
                // The arguments as the model wrote them, when they are an object.
                let input = serde_json::from_str::<Value>(&c.arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::Object(Map::new()));
                sep(out);
                out.push_str(r#"{"id":"#);
                push_json_str(out, &c.id);
                out.push_str(r#","input":"#);
                push_json_value(out, &input);
                out.push_str(r#","name":"#);
                push_json_str(out, &c.name);
                out.push_str(r#","type":"tool_use"}"#);
            }
        }
        Message::ToolResult { call_id, content } => {
            sep(out);
            out.push_str(r#"{"content":"#);
            push_json_str(out, content);
            out.push_str(r#","tool_use_id":"#);
            push_json_str(out, call_id);
            out.push_str(r#","type":"tool_result"}"#);
        }
    }
}

/// Append the tool as an Anthropic `tools[]` element.
fn push_tool(tool: &ToolSpec, out: &mut String) {
    out.push_str(r#"{"description":"#);
    push_json_str(out, &tool.description);
    out.push_str(r#","input_schema":"#);
    out.push_str(tool.parameters.text());
    out.push_str(r#","name":"#);
    push_json_str(out, &tool.name);
    out.push('}');
}

/// Close a message's content and write its role: `],"role":"…"}`.
fn push_role_end(out: &mut String, role: &str) {
    out.push_str(r#"],"role":""#);
    out.push_str(role);
    out.push_str(r#""}"#);
}

impl<M: Borrow<Message>> MessagesRequest<M> {
    /// The JSON body: `model`, `max_tokens`, `stream: true`, the system messages joined as
    /// `system` text blocks, and `messages` with consecutive same-role turns merged, empty
    /// ones dropped and leading assistant turns dropped (the API starts with the user).
    pub fn body(&self) -> Value {
        serde_json::from_str(&self.body_text()).unwrap_or(Value::Null)
    }

    /// The body as JSON text, written straight from the transcript (no JSON tree), its
    /// members in a `Value` object's (sorted) order.
    fn body_text(&self) -> String {
        let texts: usize = self.messages.iter().map(|m| m.borrow().text_len()).sum();
        let room = MESSAGE_ROOM * self.messages.len() + TOOL_ROOM * self.tools.len();
        let mut out = String::with_capacity(texts + room + BODY_ROOM);
        out.push_str(r#"{"max_tokens":"#);
        out.push_str(&self.max_tokens.to_string());
        out.push_str(r#","messages":["#);
        // The role of the message being written, whose content is still open.
        let mut open: Option<&str> = None;
        let mut first = true;
        for m in self
            .messages
            .iter()
            .map(Borrow::borrow)
            .filter(|m| has_blocks(m))
        {
            let Some(role) = role(m) else { continue };
            match open {
                None if role == "assistant" => continue,
                Some(r) if r == role => {}
                _ => {
                    if let Some(r) = open {
                        push_role_end(&mut out, r);
                        out.push(',');
                    }
                    out.push_str(r#"{"content":["#);
                    first = true;
                    open = Some(role);
                }
            }
            push_blocks(&mut out, m, &mut first);
        }
        if let Some(r) = open {
            push_role_end(&mut out, r);
        }
        out.push_str(r#"],"model":"#);
        push_json_str(&mut out, &self.model);
        out.push_str(r#","stream":true"#);
        let mut system = self.messages.iter().filter_map(|m| match m.borrow() {
            Message::System(s) if !s.is_empty() => Some(s),
            _ => None,
        });
        if let Some(s) = system.next() {
            out.push_str(r#","system":["#);
            push_text_block(&mut out, s);
            for s in system {
                out.push(',');
                push_text_block(&mut out, s);
            }
            out.push(']');
        }
        if !self.tools.is_empty() {
            out.push_str(r#","tools":"#);
            push_array(&mut out, &self.tools, push_tool);
        }
        out.push('}');
        out
    }

    /// The HTTP request to `POST {base_url}/v1/messages` (`{base_url}/messages` when the base
    /// already ends in `/v1`, as upstream joins it), with `x-api-key` when there is a key.
    pub fn to_http(&self, base_url: &str, api_key: Option<&str>) -> HttpRequest {
        let base = base_url.trim_end_matches('/');
        let url = if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        let mut headers = vec![
            ("Content-Type".into(), "application/json".to_owned()),
            ("Accept".into(), "text/event-stream".to_owned()),
            ("anthropic-version".into(), ANTHROPIC_VERSION.to_owned()),
        ];
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            headers.push(("x-api-key".into(), key.to_owned()));
        }
        HttpRequest {
            method: "POST",
            url,
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
    use crate::model::openai::ToolCall;

    /// The body as the JSON tree built it before it was written straight from the
    /// transcript.
    fn as_tree(r: &MessagesRequest) -> Value {
        let text_block =
            |text: &str| (!text.is_empty()).then(|| json!({"type": "text", "text": text}));
        let blocks = |message: &Message| -> Option<(&'static str, Vec<Value>)> {
            match message {
                Message::System(_) => None,
                Message::User(text) => Some(("user", text_block(text).into_iter().collect())),
                Message::Assistant { text, tool_calls } => {
                    let mut content: Vec<Value> = text_block(text).into_iter().collect();
                    content.extend(tool_calls.iter().map(|c| {
                        let input = serde_json::from_str::<Value>(&c.arguments)
                            .ok()
                            .filter(Value::is_object)
                            .unwrap_or_else(|| Value::Object(Map::new()));
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
                    }));
                    Some(("assistant", content))
                }
                Message::ToolResult { call_id, content } => Some((
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": call_id, "content": content}),
                    ],
                )),
            }
        };
        let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
        for (role, content) in r.messages.iter().filter_map(blocks) {
            if content.is_empty() || (messages.is_empty() && role == "assistant") {
                continue;
            }
            match messages.last_mut() {
                Some((last, blocks)) if *last == role => blocks.extend(content),
                _ => messages.push((role, content)),
            }
        }
        let mut body = json!({
            "model": r.model,
            "max_tokens": r.max_tokens,
            "stream": true,
            "messages": messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect::<Vec<_>>(),
        });
        let system: Vec<Value> = r
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::System(s) => text_block(s),
                _ => None,
            })
            .collect();
        if let (false, Value::Object(b)) = (system.is_empty(), &mut body) {
            b.insert("system".into(), Value::Array(system));
        }
        if !r.tools.is_empty() {
            body["tools"] = r
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": *t.parameters}))
                .collect();
        }
        body
    }

    #[test]
    fn the_wire_body_is_byte_for_byte_the_json_tree_s() {
        let ascii: String = (0u8..0x80).map(char::from).collect();
        let call = |arguments: &str| ToolCall {
            id: ascii.clone(),
            name: "n\"é".into(),
            arguments: arguments.into(),
        };
        let mut r = request();
        let wire = |r: &MessagesRequest| String::from_utf8(r.to_http("http://h", None).body);
        assert_eq!(wire(&r).unwrap(), as_tree(&r).to_string());
        r.messages.extend([
            Message::System(String::new()),
            Message::System(ascii.clone()),
            Message::Assistant {
                text: ascii.clone(),
                tool_calls: vec![
                    call(r#"{"z":[1,2.5,null],"a":{"b":"\u0001"}}"#),
                    call("[1]"),
                ],
            },
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![call("not json")],
            },
            Message::User(String::new()),
            Message::ToolResult {
                call_id: ascii.clone(),
                content: ascii.clone(),
            },
            Message::User(ascii.clone()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![],
            },
            Message::Assistant {
                text: "😀".into(),
                tool_calls: vec![],
            },
        ]);
        r.model = ascii.clone();
        r.max_tokens = u32::MAX;
        assert_eq!(wire(&r).unwrap(), as_tree(&r).to_string());
        r.tools = vec![
            ToolSpec {
                name: "exec".into(),
                description: ascii.clone(),
                parameters: json!({"type": "object"}).into(),
            },
            ToolSpec {
                name: ascii.clone(),
                description: String::new(),
                parameters: crate::model::json_text::tests::schema().into(),
            },
        ];
        assert_eq!(wire(&r).unwrap(), as_tree(&r).to_string());
        // Nothing but system messages and an assistant's: no message at all.
        r.messages = vec![
            Message::Assistant {
                text: "first".into(),
                tool_calls: vec![],
            },
            Message::System("s".into()),
        ];
        assert_eq!(wire(&r).unwrap(), as_tree(&r).to_string());
    }

    fn request() -> MessagesRequest {
        MessagesRequest {
            model: "claude-x".into(),
            max_tokens: 4096,
            messages: vec![
                Message::Assistant {
                    text: "a stray greeting".into(),
                    tool_calls: vec![],
                },
                Message::System("You are terse.".into()),
                Message::User("Weather in Paris?".into()),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "toolu_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    }],
                },
                Message::ToolResult {
                    call_id: "toolu_1".into(),
                    content: "18°C".into(),
                },
                Message::User("Thanks".into()),
                Message::User(String::new()),
            ],
            tools: vec![],
        }
    }

    #[test]
    fn body_is_anthropic_messages_streaming() {
        assert_eq!(
            request().body(),
            json!({
                "model": "claude-x",
                "max_tokens": 4096,
                "stream": true,
                "system": [{"type": "text", "text": "You are terse."}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
                        {"type": "text", "text": "Thanks"}
                    ]},
                ],
            })
        );
    }

    #[test]
    fn http_request_joins_the_base_url_as_upstream_and_sends_the_key() {
        let r = request().to_http("https://api.anthropic.com/", Some("sk-ant"));
        assert_eq!(r.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-ant"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("authorization"), None);
        assert!(!format!("{r:?}").contains("sk-ant"));
        let proxied = request().to_http("http://127.0.0.1:9/v1", None);
        assert_eq!(proxied.url, "http://127.0.0.1:9/v1/messages");
        assert_eq!(proxied.header("x-api-key"), None);
        let no_system = MessagesRequest {
            messages: vec![Message::User("hi".into())],
            ..request()
        };
        assert!(no_system.body().get("system").is_none());
        let with_tools = MessagesRequest {
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "The weather.".into(),
                parameters: json!({"type": "object"}).into(),
            }],
            ..request()
        };
        assert_eq!(
            with_tools.body()["tools"],
            json!([{"name": "get_weather", "description": "The weather.", "input_schema": {"type": "object"}}])
        );
    }
}
