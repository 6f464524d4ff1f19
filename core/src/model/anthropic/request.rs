//! The request: the transcript as Anthropic's Messages API body, streamed.

use serde_json::{Map, Value, json};

use crate::model::HttpRequest;
use crate::model::openai::{Message, ToolSpec};

/// The `anthropic-version` header upstream sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A streamed Messages request for one model turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagesRequest {
    /// The model id, e.g. `claude-sonnet-4-5`.
    pub model: String,
    /// `max_tokens` (required by the API).
    pub max_tokens: u32,
    /// The transcript, oldest first; its [`Message::System`] entries become `system`.
    pub messages: Vec<Message>,
    /// The tools the model may call (none: no `tools` member).
    pub tools: Vec<ToolSpec>,
}

/// A `{"type":"text"}` content block, `None` for empty text (the API refuses empty blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// A message's role and content blocks; `None` for a system message.
fn blocks(message: &Message) -> Option<(&'static str, Vec<Value>)> {
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
            vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": content})],
        )),
    }
}

impl MessagesRequest {
    /// The JSON body: `model`, `max_tokens`, `stream: true`, the system messages joined as
    /// `system` text blocks, and `messages` with consecutive same-role turns merged, empty
    /// ones dropped and leading assistant turns dropped (the API starts with the user).
    pub fn body(&self) -> Value {
        let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
        for (role, content) in self.messages.iter().filter_map(blocks) {
            if content.is_empty() || (messages.is_empty() && role == "assistant") {
                continue;
            }
            match messages.last_mut() {
                Some((last, blocks)) if *last == role => blocks.extend(content),
                _ => messages.push((role, content)),
            }
        }
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "stream": true,
            "messages": messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect::<Vec<_>>(),
        });
        let system: Vec<Value> = self
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
        if !self.tools.is_empty() {
            body["tools"] = self.tools.iter().map(ToolSpec::to_anthropic).collect();
        }
        body
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
            body: self.body().to_string().into_bytes(),
            idempotent: false,
            dialing: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::openai::ToolCall;

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
                parameters: json!({"type": "object"}),
            }],
            ..request()
        };
        assert_eq!(
            with_tools.body()["tools"],
            json!([{"name": "get_weather", "description": "The weather.", "input_schema": {"type": "object"}}])
        );
    }
}
