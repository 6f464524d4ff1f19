//! The request: a small typed transcript serialised as OpenAI's chat completions body.

use serde_json::{Value, json};

use crate::model::HttpRequest;

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
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "function",
            "function": { "name": self.name, "arguments": self.arguments },
        })
    }
}

impl Message {
    /// The message as one element of the request's `messages` array.
    pub fn to_json(&self) -> Value {
        match self {
            Message::System(text) => json!({ "role": "system", "content": text }),
            Message::User(text) => json!({ "role": "user", "content": text }),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({ "role": "assistant", "content": text })
            }
            Message::Assistant { text, tool_calls } => json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text) },
                "tool_calls": tool_calls.iter().map(ToolCall::to_json).collect::<Vec<_>>(),
            }),
            Message::ToolResult { call_id, content } => {
                json!({ "role": "tool", "tool_call_id": call_id, "content": content })
            }
        }
    }
}

/// A tool the model may call: its name, what it does, and its arguments' JSON schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its arguments as a JSON schema object.
    pub parameters: Value,
}

impl ToolSpec {
    /// The tool as an OpenAI `tools[]` element.
    fn to_openai(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }

    /// The tool as an Anthropic `tools[]` element.
    pub fn to_anthropic(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "input_schema": self.parameters,
        })
    }
}

/// A streamed chat completion request for one model turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatRequest {
    /// The provider's model id (`models[].id`, e.g. `"fake-1"` for `fake/fake-1`).
    pub model: String,
    /// The transcript, oldest first.
    pub messages: Vec<Message>,
    /// The tools the model may call (none: no `tools` member).
    pub tools: Vec<ToolSpec>,
}

impl ChatRequest {
    /// The JSON body: `model`, `messages`, `stream: true`,
    /// `stream_options: {include_usage: true}` (so the last chunk carries the token counts),
    /// and `tools` when there are any.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": self.messages.iter().map(Message::to_json).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if !self.tools.is_empty() {
            body["tools"] = self.tools.iter().map(ToolSpec::to_openai).collect();
        }
        body
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
            body: self.body().to_string().into_bytes(),
            idempotent: false,
            dialing: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
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
            parameters: json!({"type": "object"}),
        }];
        assert_eq!(
            with_tools.body()["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "The weather.", "parameters": {"type": "object"}}}])
        );
        let keyless = transcript().to_http("http://h/v1", None);
        assert_eq!(keyless.url, "http://h/v1/chat/completions");
        assert_eq!(keyless.header("authorization"), None);
    }
}
