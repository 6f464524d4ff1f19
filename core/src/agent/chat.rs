//! The `chat.*` methods: `chat.send` starts a run, `chat.history` reads a transcript,
//! `chat.abort` stops runs. Params are upstream's closed schemas.

use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::Gateway;
use crate::methods::params::NonEmpty;
use crate::methods::{Call, Reply};

use super::rpc::Replay;
use super::session::canonical_key;

/// `chat.send` params (upstream's `ChatSendParams`). The optional fields are accepted; the
/// agent does not act on them yet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ChatSend {
    session_key: NonEmpty,
    message: String,
    idempotency_key: NonEmpty,
    #[serde(default, rename = "agentId")]
    _agent_id: Option<Value>,
    #[serde(default, rename = "sessionId")]
    _session_id: Option<Value>,
    #[serde(default, rename = "mentions")]
    _mentions: Option<Value>,
    #[serde(default, rename = "workContext")]
    _work_context: Option<Value>,
    #[serde(default, rename = "intent")]
    _intent: Option<Value>,
    #[serde(default, rename = "thinking")]
    _thinking: Option<Value>,
    #[serde(default, rename = "fastMode")]
    _fast_mode: Option<Value>,
    #[serde(default, rename = "fastAutoOnSeconds")]
    _fast_auto_on_seconds: Option<Value>,
    #[serde(default, rename = "queueMode")]
    _queue_mode: Option<Value>,
    #[serde(default, rename = "deliver")]
    _deliver: Option<Value>,
    #[serde(default, rename = "originatingChannel")]
    _originating_channel: Option<Value>,
    #[serde(default, rename = "originatingTo")]
    _originating_to: Option<Value>,
    #[serde(default, rename = "originatingAccountId")]
    _originating_account_id: Option<Value>,
    #[serde(default, rename = "originatingThreadId")]
    _originating_thread_id: Option<Value>,
    #[serde(default, rename = "replyToId")]
    _reply_to_id: Option<Value>,
    #[serde(default, rename = "attachments")]
    _attachments: Option<Value>,
    #[serde(default, rename = "toolBindings")]
    _tool_bindings: Option<Value>,
    #[serde(default, rename = "timeoutMs")]
    _timeout_ms: Option<Value>,
    #[serde(default, rename = "systemInputProvenance")]
    _system_input_provenance: Option<Value>,
    #[serde(default, rename = "systemProvenanceReceipt")]
    _system_provenance_receipt: Option<Value>,
    #[serde(default, rename = "suppressCommandInterpretation")]
    _suppress_command_interpretation: Option<Value>,
    #[serde(default, rename = "expectedLeafEntryId")]
    _expected_leaf_entry_id: Option<Value>,
    #[serde(default, rename = "expectedSessionRoutingContract")]
    _expected_session_routing_contract: Option<Value>,
    #[serde(default, rename = "expectedPermissionMode")]
    _expected_permission_mode: Option<Value>,
    #[serde(default, rename = "expectedToolOverrides")]
    _expected_tool_overrides: Option<Value>,
}

/// `chat.history` params.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ChatHistory {
    session_key: NonEmpty,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default, rename = "agentId")]
    _agent_id: Option<Value>,
    #[serde(default, rename = "cursor")]
    _cursor: Option<Value>,
    #[serde(default, rename = "maxBytes")]
    _max_bytes: Option<Value>,
    #[serde(default, rename = "offset")]
    _offset: Option<Value>,
    #[serde(default, rename = "pendingBefore")]
    _pending_before: Option<Value>,
    #[serde(default, rename = "inputRunIds")]
    _input_run_ids: Option<Value>,
    #[serde(default, rename = "messageId")]
    _message_id: Option<Value>,
    #[serde(default, rename = "sessionId")]
    _session_id: Option<Value>,
    #[serde(default, rename = "maxChars")]
    _max_chars: Option<Value>,
}

/// `chat.abort` params.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ChatAbort {
    session_key: NonEmpty,
    #[serde(default)]
    run_id: Option<NonEmpty>,
    #[serde(default, rename = "agentId")]
    _agent_id: Option<Value>,
    #[serde(default, rename = "preserveSideRuns")]
    _preserve_side_runs: Option<Value>,
}

/// Messages `chat.history` returns when no `limit` is given.
const DEFAULT_HISTORY_LIMIT: u64 = 200;

impl Gateway {
    /// `chat.send`: append the message, answer `started` once it is durable, then run.
    pub(crate) fn chat_send(&mut self, now: Instant, call: &Call<'_>, p: ChatSend) -> Reply {
        let key = canonical_key(&p.session_key.0);
        let run_id = p.idempotency_key.0;
        let serial = match self.begin_run(now, call, &key, &p.message, &run_id, Replay::ChatSend) {
            Ok(serial) => serial,
            Err(reply) => return reply,
        };
        let answer = json!({"runId": run_id, "status": "started"});
        self.answer(now, call.conn, call.req_id, Ok(answer));
        self.start_run_when_durable(now, serial);
        Reply::Later
    }

    /// Append `message` to session `key` and make run `run_id` for it (not started yet): its
    /// serial, or the answer when the key was used already (its run live, or ended: `method`
    /// says how to replay it) or too many runs are live.
    pub(crate) fn begin_run(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        key: &str,
        message: &str,
        run_id: &str,
        method: Replay,
    ) -> Result<u64, Reply> {
        if let Some(reply) = self.replay_ended(now, call, run_id, method) {
            return Err(reply);
        }
        if self.agent.by_run_id.contains_key(run_id) {
            return Err(Reply::Now(Ok(
                json!({"runId": run_id, "status": "in_flight"}),
            )));
        }
        let max = self.config.limits.max_agent_runs;
        if self.agent.runs.len() >= max {
            return Err(Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("too many agent runs in progress (at most {max}); try again shortly"),
            ))));
        }
        let ts = self.unix_ms(now);
        self.append_user(key, message, run_id, ts);
        self.persist();
        Ok(self.new_run(run_id, key, Some(call.conn), ts))
    }

    /// `chat.history`: the last `limit` messages of a session.
    pub(crate) fn chat_history(&mut self, _: Instant, _: &Call<'_>, p: ChatHistory) -> Reply {
        let key = canonical_key(&p.session_key.0);
        let limit = p.limit.unwrap_or(DEFAULT_HISTORY_LIMIT).max(1);
        let (id, messages) = match self.session(&key) {
            Some(s) => (Some(s.id.clone()), s.messages.as_slice()),
            None => (None, &[][..]),
        };
        let total = messages.len();
        let skip = total.saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
        let route = self.config.model.as_ref();
        let mut out = json!({
            "sessionKey": key,
            "messages": messages.get(skip..).unwrap_or_default(),
            "hasMore": skip > 0,
            "totalMessages": total,
            "defaults": {
                "modelProvider": route.map(|m| m.provider.as_str()),
                "model": route.map(|m| m.model.as_str()),
            },
        });
        if let (Some(id), Value::Object(o)) = (id, &mut out) {
            o.insert("sessionId".into(), json!(id));
        }
        Reply::Now(Ok(out))
    }

    /// `chat.abort`: stop the session's runs (or the one named).
    pub(crate) fn chat_abort(&mut self, now: Instant, _: &Call<'_>, p: ChatAbort) -> Reply {
        let key = canonical_key(&p.session_key.0);
        let ids = self.abort_runs(now, &key, p.run_id.as_ref().map(|r| r.0.as_str()));
        Reply::Now(Ok(
            json!({"ok": true, "aborted": !ids.is_empty(), "runIds": ids}),
        ))
    }
}
