//! Changing sessions: `sessions.send` (a turn, as `chat.send`), `sessions.abort`,
//! `sessions.reset` (a new session id and an empty transcript), `sessions.delete` and
//! `chat.inject` (an assistant note in the transcript). Every change is in a store batch
//! before the answer, which waits for it.

use std::time::Instant;

use serde_json::{Value, json};

use crate::frame::ErrorShape;
use crate::gateway::Gateway;
use crate::methods::params::{self, FromParams, Kind, NonEmpty, optional, required};
use crate::methods::{Call, Reply};
use crate::persist::StoreChange;

use super::session::{ChatSession, canonical_key};
use super::sessions::check_agent;
use super::subscribers::Change;
use super::{AGENT_ID, Agent};

/// `sessions.send` params. `thinking`, `attachments` and `timeoutMs` are accepted; the turn
/// does not act on them yet.
pub(crate) struct SessionsSend {
    key: NonEmpty,
    message: String,
    agent_id: Option<NonEmpty>,
    idempotency_key: Option<NonEmpty>,
    _thinking: Option<String>,
    _attachments: Option<Vec<Value>>,
    _timeout_ms: Option<u64>,
}

impl FromParams for SessionsSend {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("key", Kind::NonEmpty),
            required("message", Kind::Str),
            optional("agentId", Kind::NonEmpty),
            optional("idempotencyKey", Kind::NonEmpty),
            optional("thinking", Kind::Str),
            optional("attachments", Kind::Array),
            optional("timeoutMs", Kind::U64),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.required_non_empty("key"),
            message: p.text("message"),
            agent_id: p.non_empty("agentId"),
            idempotency_key: p.non_empty("idempotencyKey"),
            _thinking: p.string("thinking"),
            _attachments: p.array("attachments"),
            _timeout_ms: p.u64("timeoutMs"),
        })
    }
}

/// `sessions.abort` params.
pub(crate) struct SessionsAbort {
    key: Option<NonEmpty>,
    run_id: Option<NonEmpty>,
    agent_id: Option<NonEmpty>,
    _clear_queued: Option<bool>,
}

impl FromParams for SessionsAbort {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("key", Kind::NonEmpty),
            optional("runId", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("clearQueued", Kind::Bool),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.non_empty("key"),
            run_id: p.non_empty("runId"),
            agent_id: p.non_empty("agentId"),
            _clear_queued: p.bool("clearQueued"),
        })
    }
}

/// `sessions.reset` params.
pub(crate) struct SessionsReset {
    key: NonEmpty,
    agent_id: Option<NonEmpty>,
    reason: Option<Value>,
}

impl FromParams for SessionsReset {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("key", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("reason", Kind::Any),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.required_non_empty("key"),
            agent_id: p.non_empty("agentId"),
            reason: p.take("reason"),
        })
    }
}

/// `sessions.delete` params.
pub(crate) struct SessionsDelete {
    key: NonEmpty,
    agent_id: Option<NonEmpty>,
    expected_session_id: Option<NonEmpty>,
    archived_only: Option<bool>,
    _delete_transcript: Option<bool>,
    _expected_lifecycle_revision: Option<NonEmpty>,
    _expected_session_updated_at: Option<u64>,
    _emit_lifecycle_hooks: Option<bool>,
}

impl FromParams for SessionsDelete {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("key", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("expectedSessionId", Kind::NonEmpty),
            optional("archivedOnly", Kind::Bool),
            optional("deleteTranscript", Kind::Bool),
            optional("expectedLifecycleRevision", Kind::NonEmpty),
            optional("expectedSessionUpdatedAt", Kind::U64),
            optional("emitLifecycleHooks", Kind::Bool),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.required_non_empty("key"),
            agent_id: p.non_empty("agentId"),
            expected_session_id: p.non_empty("expectedSessionId"),
            archived_only: p.bool("archivedOnly"),
            _delete_transcript: p.bool("deleteTranscript"),
            _expected_lifecycle_revision: p.non_empty("expectedLifecycleRevision"),
            _expected_session_updated_at: p.u64("expectedSessionUpdatedAt"),
            _emit_lifecycle_hooks: p.bool("emitLifecycleHooks"),
        })
    }
}

/// `chat.inject` params.
pub(crate) struct ChatInject {
    session_key: NonEmpty,
    message: NonEmpty,
    agent_id: Option<NonEmpty>,
    label: Option<String>,
}

impl FromParams for ChatInject {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("sessionKey", Kind::NonEmpty),
            required("message", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("label", Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            session_key: p.required_non_empty("sessionKey"),
            message: p.required_non_empty("message"),
            agent_id: p.non_empty("agentId"),
            label: p.string("label"),
        })
    }
}

/// Characters of a `chat.inject` label (upstream's `maxLength`).
const MAX_INJECT_LABEL: usize = 100;

/// The main session, which `sessions.delete` refuses to delete.
fn main_key() -> String {
    format!("agent:{AGENT_ID}:main")
}

impl Agent {
    /// Record session `key`'s row for the next store batch.
    pub(super) fn save_row(&mut self, key: &str) {
        if let Some(s) = self.sessions.get(key) {
            self.unsaved.push(StoreChange::PutSession {
                key: key.to_string(),
                row: s.row(key),
            });
        }
    }
}

impl Gateway {
    /// `sessions.send`: a turn on session `key`, answered as `chat.send` is.
    pub(crate) fn sessions_send(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: SessionsSend,
    ) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        let key = canonical_key(&p.key.0);
        let run_id = p.idempotency_key.map_or_else(|| self.uuid(), |k| k.0);
        let mode = self.config.queue_mode;
        self.start_turn(now, call, (&key, &p.message), run_id, mode)
    }

    /// `sessions.abort`: stop the runs of `key` (or the run `runId`).
    pub(crate) fn sessions_abort(&mut self, now: Instant, _: &Call<'_>, p: SessionsAbort) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        let run_id = p.run_id.as_ref().map(|r| r.0.as_str());
        let key = match (&p.key, run_id) {
            (Some(k), _) => canonical_key(&k.0),
            (None, Some(id)) => match self.run_session(id) {
                Some(key) => key,
                None => {
                    return Reply::Now(Ok(
                        json!({"ok": true, "abortedRunId": null, "status": "no-active-run"}),
                    ));
                }
            },
            (None, None) => return Reply::Now(Err(ErrorShape::invalid("key required"))),
        };
        let ids = self.abort_runs(now, &key, run_id);
        let Some(first) = ids.first() else {
            return Reply::Now(Ok(
                json!({"ok": true, "abortedRunId": null, "status": "no-active-run"}),
            ));
        };
        let answer = json!({"ok": true, "abortedRunId": first, "status": "aborted"});
        self.session_changed(now, &key, Change::Abort);
        Reply::Now(Ok(answer))
    }

    /// `{ok, key, entry, resolved}`: the answer of `sessions.patch` and `sessions.reset`.
    pub(super) fn entry_answer(&self, key: &str) -> Value {
        let entry = self.session_row(key).unwrap_or(Value::Null);
        json!({
            "ok": true,
            "key": key,
            "entry": entry,
            "resolved": {"modelProvider": entry.get("modelProvider"), "model": entry.get("model")},
        })
    }

    /// `sessions.reset`: stop its runs, give it a new session id and an empty transcript (its
    /// patched fields stay).
    pub(crate) fn sessions_reset(&mut self, now: Instant, _: &Call<'_>, p: SessionsReset) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        let reason = match p.reason.as_ref().map(Value::as_str) {
            None | Some(Some("reset")) => "reset",
            Some(Some("new")) => "new",
            Some(_) => {
                return Reply::Now(Err(ErrorShape::invalid(
                    "invalid params: at /reason: must be one of \"new\", \"reset\"",
                )));
            }
        };
        let key = canonical_key(&p.key.0);
        self.abort_runs(now, &key, None);
        let id = self.uuid();
        let ts = self.unix_ms(now);
        let mut fresh = ChatSession::new(id, ts);
        self.agent.windows.remove(&key);
        if let Some(old) = self.agent.sessions.remove(&key) {
            fresh.overrides = old.overrides;
            fresh.created_via = old.created_via;
            self.agent
                .unsaved
                .push(StoreChange::DeleteSession { key: key.clone() });
        }
        self.agent.sessions.insert(key.clone(), fresh);
        self.agent.save_row(&key);
        self.persist();
        self.session_changed(now, &key, Change::Reset(reason));
        Reply::Now(Ok(self.entry_answer(&key)))
    }

    /// `sessions.delete`: stop its runs and remove it with its transcript. The main session
    /// is never deleted.
    pub(crate) fn sessions_delete(
        &mut self,
        now: Instant,
        _: &Call<'_>,
        p: SessionsDelete,
    ) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        let key = canonical_key(&p.key.0);
        if key == main_key() {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "Cannot delete the main session ({key})."
            ))));
        }
        let session = self.agent.sessions.get(&key);
        let archived = session.is_some_and(|s| s.overrides.get("archived") == Some(&json!(true)));
        if p.archived_only == Some(true) && !archived {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "Session {key} is not archived. Archive it first, then delete it."
            ))));
        }
        if let Some(expected) = &p.expected_session_id
            && session.is_none_or(|s| s.id != expected.0)
        {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "Session {key} changed before deletion. Retry."
            ))));
        }
        self.abort_runs(now, &key, None);
        self.agent.windows.remove(&key);
        let deleted = self.agent.sessions.remove(&key).is_some();
        if deleted {
            self.agent
                .unsaved
                .push(StoreChange::DeleteSession { key: key.clone() });
            self.persist();
            self.session_changed(now, &key, Change::Delete);
        }
        Reply::Now(Ok(
            json!({"ok": true, "key": key, "deleted": deleted, "archived": []}),
        ))
    }

    /// `chat.inject`: append an assistant note (with its `[label]`) to an existing session
    /// and show it as a `final` chat event.
    pub(crate) fn chat_inject(&mut self, now: Instant, _: &Call<'_>, p: ChatInject) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        if let Some(label) = &p.label
            && label.chars().count() > MAX_INJECT_LABEL
        {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "invalid params: at /label: must NOT have more than {MAX_INJECT_LABEL} characters"
            ))));
        }
        let key = canonical_key(&p.session_key.0);
        if !self.agent.sessions.contains_key(&key) {
            return Reply::Now(Err(ErrorShape::invalid("session not found")));
        }
        let text = match p.label.as_deref().filter(|l| !l.is_empty()) {
            Some(label) => format!("[{label}]\n\n{}", p.message.0),
            None => p.message.0,
        };
        let ts = self.unix_ms(now);
        let message = json!({
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "timestamp": ts,
            "stopReason": "stop",
            "usage": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0},
            "api": "openai-responses",
            "provider": "openclaw",
            "model": "gateway-injected",
        });
        self.append(&key, message, ts, None);
        self.persist();
        let Some(message) = self.agent.sessions.get(&key).and_then(|s| s.last()) else {
            return Reply::Now(Err(ErrorShape::invalid("session not found")));
        };
        let message_id = message
            .pointer("/__openclaw/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let chat = json!({
            "runId": format!("inject-{message_id}"),
            "sessionKey": key,
            "agentId": AGENT_ID,
            "seq": 0,
            "state": "final",
            "message": message,
        });
        self.broadcast(now, "chat", &chat, None);
        Reply::Now(Ok(json!({"ok": true, "messageId": message_id})))
    }
}
