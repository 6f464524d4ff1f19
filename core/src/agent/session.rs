//! Chat sessions: a key, an id, and a transcript of messages as `chat.history` shows them.
//! The transcript is the one copy; the model's messages and the store rows derive from it.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::model::openai::Message;
use crate::persist::StoreChange;

/// One chat session.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChatSession {
    /// A v4 UUID, fixed at creation.
    pub(crate) id: String,
    /// How it came to be (`operator` for one `chat.send` created).
    pub(crate) created_via: String,
    /// Unix milliseconds at creation.
    pub(crate) created_at: u64,
    /// Unix milliseconds of the last message.
    pub(crate) updated_at: u64,
    /// The transcript, oldest first.
    pub(crate) messages: Vec<Value>,
    /// The fields `sessions.patch` set (`label`, `thinkingLevel`, `model`, …), by wire name.
    pub(crate) overrides: Map<String, Value>,
}

/// The stored row of a session (the transcript is stored message by message).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionRow {
    session_id: String,
    #[serde(default)]
    created_via: Option<String>,
    #[serde(default)]
    created_at: u64,
    #[serde(default)]
    updated_at: u64,
    #[serde(default)]
    overrides: Map<String, Value>,
}

impl ChatSession {
    /// A new, empty session made by an operator's `chat.send`.
    pub(crate) fn new(id: String, now_ms: u64) -> Self {
        Self {
            id,
            created_via: "operator".into(),
            created_at: now_ms,
            updated_at: now_ms,
            messages: Vec::new(),
            overrides: Map::new(),
        }
    }

    /// The session as its stored row and its transcript came back from the store.
    pub(crate) fn from_row(row: Value, messages: Vec<Value>) -> Result<Self, serde_json::Error> {
        let row: SessionRow = serde_json::from_value(row)?;
        Ok(Self {
            id: row.session_id,
            created_via: row.created_via.unwrap_or_else(|| "operator".into()),
            created_at: row.created_at,
            updated_at: row.updated_at,
            messages,
            overrides: row.overrides,
        })
    }

    /// The row [`StoreChange::PutSession`] stores.
    pub(crate) fn row(&self, key: &str) -> Value {
        json!({
            "key": key,
            "sessionId": self.id,
            "agentId": "main",
            "createdVia": self.created_via,
            "classification": "direct",
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "overrides": self.overrides,
        })
    }

    /// The changes that store this session whole: its row and every message.
    pub(crate) fn rows(&self, key: &str) -> impl Iterator<Item = StoreChange> + '_ {
        let put = StoreChange::PutSession {
            key: key.to_string(),
            row: self.row(key),
        };
        let key = key.to_string();
        std::iter::once(put).chain(self.messages.iter().zip(1u64..).map(move |(m, seq)| {
            StoreChange::AppendMessage {
                session_key: key.clone(),
                seq,
                message: m.clone(),
            }
        }))
    }

    /// The last `max` messages as the model reads them: user and assistant text only.
    pub(crate) fn to_model(&self, max: usize) -> Vec<Message> {
        let skip = self.messages.len().saturating_sub(max);
        self.messages
            .iter()
            .skip(skip)
            .filter_map(|m| {
                let text = text_of(m);
                match m.get("role").and_then(Value::as_str) {
                    Some("user") => Some(Message::User(text)),
                    Some("assistant") => Some(Message::Assistant {
                        text,
                        tool_calls: Vec::new(),
                    }),
                    _ => None,
                }
            })
            .collect()
    }
}

/// The text of a message: its `content` string, or its `text` parts joined.
pub(crate) fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A text message of `role` as the transcript and the `chat` events carry it.
pub(crate) fn text_message(role: &str, text: &str, ts: u64) -> Value {
    json!({"role": role, "content": [{"type": "text", "text": text}], "timestamp": ts})
}

/// The row upstream leaves in the transcript when a turn fails before any reply.
pub(crate) fn failed_before_reply(error: &str, ts: u64) -> Value {
    json!({
        "role": "custom",
        "customType": "run-failed-before-reply",
        "content": format!("This turn ended before a reply: {error}"),
        "display": true,
        "timestamp": ts,
    })
}

/// A session key as upstream canonicalises it: keys without the `agent:` prefix belong to the
/// `main` agent (`main` is `agent:main:main`).
pub(crate) fn canonical_key(key: &str) -> String {
    if key.starts_with("agent:") {
        key.to_string()
    } else {
        format!("agent:main:{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN_SESSION_KEY: &str = "agent:main:main";

    #[test]
    fn rows_round_trip_and_the_model_sees_text_turns_only() {
        let mut s = ChatSession::new("id-1".into(), 5);
        s.messages.push(text_message("user", "hi", 6));
        s.messages.push(failed_before_reply("boom", 7));
        s.messages.push(text_message("assistant", "hello", 8));
        s.overrides.insert("label".into(), json!("work"));
        let rows: Vec<StoreChange> = s.rows(MAIN_SESSION_KEY).collect();
        assert_eq!(rows.len(), 4);
        let back = ChatSession::from_row(s.row(MAIN_SESSION_KEY), s.messages.clone()).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            s.to_model(10),
            vec![
                Message::User("hi".into()),
                Message::Assistant {
                    text: "hello".into(),
                    tool_calls: vec![]
                }
            ]
        );
        assert_eq!(s.to_model(1).len(), 1);
        assert_eq!(canonical_key("main"), MAIN_SESSION_KEY);
        assert_eq!(canonical_key("agent:main:x"), "agent:main:x");
    }
}
