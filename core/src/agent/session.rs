//! Chat sessions: a key, an id, the newest message of a transcript as `chat.history` shows
//! them, and the [`Recent`] messages a turn sends the model (at most `maxModelMessages`
//! messages and `maxWindowBytes` bytes). The whole transcript lives in the store; the windows
//! of recently used sessions stay in memory (`windows`), so memory does not grow with the
//! transcript.

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::Limits;
use crate::model::json_text::{Object, push_json_object};
use crate::model::openai::Message;
use crate::persist::RowText;

/// How much of its transcript a session keeps in memory: the newest message always, then
/// older ones while both bounds hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Messages at most.
    pub(crate) messages: usize,
    /// Bytes of their JSON encodings at most.
    pub(crate) bytes: usize,
}

impl Window {
    /// The window `limits` set.
    pub(crate) fn of(limits: &Limits) -> Self {
        Self {
            messages: limits.max_model_messages,
            bytes: limits.max_window_bytes,
        }
    }
}

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
    /// Messages in the whole transcript: the `seq` of the last one.
    pub(crate) total: u64,
    /// The newest message, JSON-encoded (what lists preview and `chat.history` reports the
    /// last run of): a few hundred bytes per session where the JSON tree takes thousands,
    /// the same text as the transcript row its batch stores.
    last: Option<RowText>,
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
            total: 0,
            last: None,
            overrides: Map::new(),
        }
    }

    /// The session as the store gave it back: its row, its newest message (`last`, if it
    /// has one) and its last position `total`.
    pub(crate) fn from_row(
        row: Value,
        last: Option<Value>,
        total: u64,
    ) -> Result<Self, serde_json::Error> {
        let row: SessionRow = serde_json::from_value(row)?;
        Ok(Self {
            id: row.session_id,
            created_via: row.created_via.unwrap_or_else(|| "operator".into()),
            created_at: row.created_at,
            updated_at: row.updated_at,
            total: total.max(u64::from(last.is_some())),
            last: last.map(|m| RowText::of_value(&m)),
            overrides: row.overrides,
        })
    }

    /// Append a message, as its JSON text (only the newest stays here); its `seq`.
    pub(crate) fn push(&mut self, encoded: RowText) -> u64 {
        self.last = Some(encoded);
        self.total += 1;
        self.total
    }

    /// The session's row as `chat.history` reports it.
    pub(crate) fn row_value(&self, key: &str) -> Value {
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

    /// The row [`StoreChange::PutSession`] stores: [`ChatSession::row_value`]'s text,
    /// written as serde_json writes that `Value` (members in sorted order; a test compares
    /// the two). A session's row is put on every message, and building a map of it only to
    /// encode it cost more than writing it.
    pub(crate) fn row(&self, key: &str) -> RowText {
        let mut out = String::with_capacity(160 + key.len() + self.id.len());
        let mut row = Object::new(&mut out);
        row.str("agentId", "main")
            .str("classification", "direct")
            .u64("createdAt", self.created_at)
            .str("createdVia", &self.created_via)
            .str("key", key);
        push_json_object(row.key("overrides"), &self.overrides);
        row.str("sessionId", &self.id)
            .u64("updatedAt", self.updated_at)
            .end();
        RowText::from_encoded(&out)
    }

    /// The newest message, if the session has one.
    pub(crate) fn last(&self) -> Option<Value> {
        // It was encoded from a `Value`, so it decodes.
        self.last
            .as_ref()
            .and_then(|m| serde_json::from_str(m.as_str()).ok())
    }
}

/// The recent end of a transcript, oldest first: the window a turn sends the model. Each
/// row is held in the form the model reads it (`None` for a row the model does not see,
/// such as a failed turn's note) with the size of its JSON encoding, which the window's byte
/// bound counts: the transcript's JSON trees stay in the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Recent {
    messages: VecDeque<(Option<Message>, usize)>,
    /// The sum of those sizes.
    bytes: usize,
}

impl Recent {
    /// Hold `message` as the newest, dropping the oldest past `window`'s bounds (the newest
    /// always stays).
    pub(crate) fn keep(&mut self, message: &Value, window: Window) {
        self.keep_model(model_message(message), message.to_string().len(), window);
    }

    /// [`Recent::keep`] for a message already in the form the model reads it (`None`: a row
    /// it does not see) whose JSON encoding is `size` bytes long.
    pub(crate) fn keep_model(&mut self, model: Option<Message>, size: usize, window: Window) {
        self.messages.push_back((model, size));
        self.bytes = self.bytes.saturating_add(size);
        while self.messages.len() > 1
            && (self.messages.len() > window.messages || self.bytes > window.bytes)
        {
            if let Some((_, size)) = self.messages.pop_front() {
                self.bytes = self.bytes.saturating_sub(size);
            }
        }
    }

    /// Messages held, and the bytes of their encodings.
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.messages.len(), self.bytes)
    }

    /// The last `max` messages as the model reads them: user and assistant turns with the
    /// tools the assistant called and their results. A call without its result (a turn that
    /// ended mid-round) and a result without its call (cut off by the window) are left
    /// out, as every provider refuses them. Borrowed where held as they go out (copying a
    /// 100-message window cost ~40,000 instructions a turn).
    pub(crate) fn to_model(&self, max: usize) -> Vec<Cow<'_, Message>> {
        let skip = self.messages.len().saturating_sub(max);
        let messages: Vec<&Message> = self
            .messages
            .iter()
            .skip(skip)
            .filter_map(|(m, _)| m.as_ref())
            .collect();
        paired(&messages)
    }
}

/// A transcript row as the model reads it: a user or assistant turn (with the tools it
/// called) or a tool's result; `None` for any other row.
pub(crate) fn model_message(m: &Value) -> Option<Message> {
    let text = text_of(m);
    match m.get("role").and_then(Value::as_str) {
        Some("user") => Some(Message::User(text)),
        Some("assistant") => Some(Message::Assistant {
            text,
            tool_calls: tool_calls_of(m),
        }),
        Some("toolResult") => Some(Message::ToolResult {
            call_id: m.get("toolCallId")?.as_str()?.to_string(),
            content: text,
        }),
        _ => None,
    }
}

/// `messages` with every tool call answered by a result right after its assistant turn,
/// and every result answering such a call.
fn paired<'m>(messages: &[&'m Message]) -> Vec<Cow<'m, Message>> {
    let answered = |at: usize, id: &str| {
        messages
            .get(at + 1..)
            .unwrap_or_default()
            .iter()
            .take_while(|m| matches!(m, Message::ToolResult { .. }))
            .any(|m| matches!(m, Message::ToolResult { call_id, .. } if call_id == id))
    };
    let mut out: Vec<Cow<'m, Message>> = Vec::with_capacity(messages.len());
    let mut open: Vec<String> = Vec::new();
    for (i, &m) in messages.iter().enumerate() {
        match m {
            Message::Assistant { text, tool_calls } => {
                let kept: Vec<_> = tool_calls
                    .iter()
                    .filter(|c| answered(i, &c.id))
                    .cloned()
                    .collect();
                open = kept.iter().map(|c| c.id.clone()).collect();
                if kept.len() == tool_calls.len() {
                    out.push(Cow::Borrowed(m));
                } else if !text.is_empty() || !kept.is_empty() {
                    out.push(Cow::Owned(Message::Assistant {
                        text: text.clone(),
                        tool_calls: kept,
                    }));
                }
            }
            Message::ToolResult { call_id, .. } => {
                if let Some(at) = open.iter().position(|id| id == call_id) {
                    open.swap_remove(at);
                    out.push(Cow::Borrowed(m));
                }
            }
            _ => {
                open.clear();
                out.push(Cow::Borrowed(m));
            }
        }
    }
    out
}

/// The tool calls of an assistant row (its `toolCall` content blocks).
fn tool_calls_of(message: &Value) -> Vec<crate::model::openai::ToolCall> {
    let Some(Value::Array(parts)) = message.get("content") else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("toolCall"))
        .map(|p| crate::model::openai::ToolCall {
            id: p
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments: p
                .get("arguments")
                .map_or_else(|| "{}".into(), Value::to_string),
        })
        .collect()
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

/// Who said a text message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Speaker {
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// A text message as it enters a transcript: who said it, the text, when, its message id,
/// its run (an answer names it), and the idempotency key it was sent with (a user's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextRow<'a> {
    pub(crate) speaker: Speaker,
    pub(crate) text: &'a str,
    pub(crate) ts: u64,
    pub(crate) id: &'a str,
    pub(crate) run_id: Option<&'a str>,
    pub(crate) idempotency_key: Option<&'a str>,
}

/// Room for a text row's JSON besides its texts.
const TEXT_ROW_ROOM: usize = 144;

impl TextRow<'_> {
    /// The stored row: [`text_message`] with `idempotencyKey` (when it has one) and the
    /// `__openclaw` meta (`id`, and `runId` for an answer) `Gateway::append` adds, as that
    /// `Value`'s text, written out (a test holds the two equal). Built as a `Value`, encoded
    /// and dropped, a turn's two rows cost ~30,000 instructions.
    pub(crate) fn encode(&self) -> RowText {
        let (role, run_id) = match self.speaker {
            Speaker::User => ("user", None),
            Speaker::Assistant => ("assistant", self.run_id),
        };
        let texts = [Some(self.text), Some(self.id), run_id, self.idempotency_key];
        let len: usize = texts.iter().flatten().map(|t| t.len()).sum();
        let mut out = String::with_capacity(TEXT_ROW_ROOM + len);
        let mut row = Object::new(&mut out);
        Object::new(row.key("__openclaw"))
            .str("id", self.id)
            .opt_str("runId", run_id)
            .end();
        let content = row.key("content");
        content.push('[');
        Object::new(content)
            .str("text", self.text)
            .str("type", "text")
            .end();
        content.push(']');
        row.opt_str("idempotencyKey", self.idempotency_key)
            .str("role", role)
            .u64("timestamp", self.ts)
            .end();
        RowText::from_encoded(&out)
    }

    /// The message as the model reads it ([`model_message`] of the row).
    pub(crate) fn model(&self) -> Message {
        let text = self.text.to_string();
        match self.speaker {
            Speaker::User => Message::User(text),
            Speaker::Assistant => Message::Assistant {
                text,
                tool_calls: Vec::new(),
            },
        }
    }
}

/// An assistant row that called tools: its text (if any) then one `toolCall` block per call.
pub(crate) fn tool_call_message(text: &str, calls: &[crate::tools::ToolCall], ts: u64) -> Value {
    let mut content: Vec<Value> = Vec::new();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    content.extend(calls.iter().map(
        |c| json!({"type": "toolCall", "id": c.id, "name": c.name, "arguments": c.arguments}),
    ));
    json!({"role": "assistant", "content": content, "stopReason": "toolUse", "timestamp": ts})
}

/// The row of one tool's result, as upstream writes it.
pub(crate) fn tool_result_message(
    call: &crate::tools::ToolCall,
    outcome: &crate::tools::ToolOutcome,
    ts: u64,
) -> Value {
    json!({
        "role": "toolResult",
        "toolCallId": call.id,
        "toolName": call.name,
        "content": [{"type": "text", "text": outcome.as_text()}],
        "isError": outcome.is_error,
        "timestamp": ts,
    })
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

    fn window(messages: usize, bytes: usize) -> Window {
        Window { messages, bytes }
    }

    #[test]
    fn the_stored_row_is_the_text_of_the_row_value() {
        let mut s = ChatSession::new("id \"1\"\n".into(), 5);
        s.created_via = "telegram\u{7}é".into();
        s.updated_at = u64::MAX;
        for key in ["agent:main:main", "agent:main:telegram:dm:42\\\"</"] {
            assert_eq!(
                s.row(key).as_str(),
                RowText::of_value(&s.row_value(key)).as_str()
            );
            s.overrides.insert("thinkingLevel".into(), json!("high"));
            s.overrides
                .insert("a\"b".into(), json!({"z": [1.5, null, true], "a": -3}));
        }
    }

    proptest::proptest! {
        /// A text row written out is byte for byte the text of the `Value` `append` made of
        /// it, and its model message the one read from that `Value`.
        #[test]
        fn a_text_row_is_the_text_of_the_message_as_a_value(
            user in proptest::bool::ANY,
            text in crate::model::json_text::tests::text(),
            ts in proptest::num::u64::ANY,
            id in crate::model::json_text::tests::text(),
            run_id in proptest::option::of(crate::model::json_text::tests::text()),
            idempotency_key in proptest::option::of(crate::model::json_text::tests::text()),
        ) {
            let speaker = if user { Speaker::User } else { Speaker::Assistant };
            let row = TextRow { speaker, text: &text, ts, id: &id, run_id: run_id.as_deref(), idempotency_key: idempotency_key.as_deref() };
            let role = if user { "user" } else { "assistant" };
            let mut message = text_message(role, &text, ts);
            let mut meta = json!({"id": id});
            if let (Some(r), false) = (&run_id, user) {
                meta["runId"] = json!(r);
            }
            message["__openclaw"] = meta;
            if let Some(k) = &idempotency_key {
                message["idempotencyKey"] = json!(k);
            }
            let encoded = row.encode();
            proptest::prop_assert_eq!(encoded.as_str(), message.to_string());
            proptest::prop_assert_eq!(Some(row.model()), model_message(&message));
        }
    }

    #[test]
    fn the_window_is_bounded_and_the_model_sees_text_turns_only() {
        let mut s = ChatSession::new("id-1".into(), 5);
        let mut recent = Recent::default();
        let w = window(3, 1 << 20);
        for m in [
            text_message("user", "hi", 6),
            failed_before_reply("boom", 7),
            text_message("assistant", "hello", 8),
        ] {
            s.push(RowText::of_value(&m));
            recent.keep(&m, w);
        }
        assert_eq!(
            recent
                .to_model(10)
                .into_iter()
                .map(Cow::into_owned)
                .collect::<Vec<_>>(),
            vec![
                Message::User("hi".into()),
                Message::Assistant {
                    text: "hello".into(),
                    tool_calls: vec![]
                }
            ]
        );
        assert_eq!(recent.to_model(1).len(), 1);
        let again = text_message("user", "again", 9);
        assert_eq!(s.push(RowText::of_value(&again)), 4);
        recent.keep(&again, w);
        assert_eq!(
            (recent.held().0, s.total),
            (3, 4),
            "the oldest left the window"
        );
        let row = s.row(MAIN_SESSION_KEY).to_value();
        let back = ChatSession::from_row(row, Some(again.clone()), 4).unwrap();
        assert_eq!(
            (back.id.as_str(), back.last(), back.total),
            ("id-1", Some(again.clone()), 4)
        );
        // The byte bound cuts too, but the newest message always stays.
        let mut recent = Recent::default();
        let small = window(100, 150);
        for i in 0..10 {
            recent.keep(&text_message("user", &format!("message {i}"), 6), small);
        }
        let (n, bytes) = recent.held();
        assert!(n < 10 && bytes <= 150, "{n} messages, {bytes} bytes");
        recent.keep(&text_message("user", &"x".repeat(1000), 7), small);
        assert_eq!(recent.held().0, 1, "a message over the bound alone");
        assert_eq!(canonical_key("main"), MAIN_SESSION_KEY);
        assert_eq!(canonical_key("agent:main:x"), "agent:main:x");
    }
}
