//! The `chat.send` and `chat.abort` methods: `chat.send` starts a run, `chat.abort` stops
//! runs (`chat.history` is in `history`). Params are upstream's closed schemas.

use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::QueueMode;
use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::Gateway;
use crate::methods::params::{self, FromParams, Kind, NonEmpty, optional, required};
use crate::methods::{Call, Reply};

use super::rpc::Replay;
use super::session::canonical_key;

/// `chat.send` params (upstream's `ChatSendParams`). Of the optional fields the agent acts
/// on `queueMode`; the others are accepted.
pub(crate) struct ChatSend {
    session_key: NonEmpty,
    message: String,
    idempotency_key: NonEmpty,
    queue_mode: Option<QueueMode>,
}

impl FromParams for ChatSend {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("sessionKey", Kind::NonEmpty),
            required("message", Kind::Str),
            required("idempotencyKey", Kind::NonEmpty),
            optional("agentId", Kind::Ignored),
            optional("sessionId", Kind::Ignored),
            optional("mentions", Kind::Ignored),
            optional("workContext", Kind::Ignored),
            optional("intent", Kind::Ignored),
            optional("thinking", Kind::Ignored),
            optional("fastMode", Kind::Ignored),
            optional("fastAutoOnSeconds", Kind::Ignored),
            optional(
                "queueMode",
                Kind::OneOf(&["steer", "followup", "collect", "interrupt"]),
            ),
            optional("deliver", Kind::Ignored),
            optional("originatingChannel", Kind::Ignored),
            optional("originatingTo", Kind::Ignored),
            optional("originatingAccountId", Kind::Ignored),
            optional("originatingThreadId", Kind::Ignored),
            optional("replyToId", Kind::Ignored),
            optional("attachments", Kind::Ignored),
            optional("toolBindings", Kind::Ignored),
            optional("timeoutMs", Kind::Ignored),
            optional("systemInputProvenance", Kind::Ignored),
            optional("systemProvenanceReceipt", Kind::Ignored),
            optional("suppressCommandInterpretation", Kind::Ignored),
            optional("expectedLeafEntryId", Kind::Ignored),
            optional("expectedSessionRoutingContract", Kind::Ignored),
            optional("expectedPermissionMode", Kind::Ignored),
            optional("expectedToolOverrides", Kind::Ignored),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            session_key: p.required_non_empty("sessionKey"),
            message: p.text("message"),
            idempotency_key: p.required_non_empty("idempotencyKey"),
            queue_mode: p
                .take("queueMode")
                .and_then(|v| QueueMode::deserialize(v).ok()),
        })
    }
}

/// `chat.abort` params.
pub(crate) struct ChatAbort {
    session_key: NonEmpty,
    run_id: Option<NonEmpty>,
}

impl FromParams for ChatAbort {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("sessionKey", Kind::NonEmpty),
            optional("runId", Kind::NonEmpty),
            optional("agentId", Kind::Ignored),
            optional("preserveSideRuns", Kind::Ignored),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            session_key: p.required_non_empty("sessionKey"),
            run_id: p.non_empty("runId"),
        })
    }
}

impl Gateway {
    /// `chat.send`: append the message, answer `started` once it is durable, then run; on a
    /// busy session, as its `queueMode` says.
    pub(crate) fn chat_send(&mut self, now: Instant, call: &Call<'_>, p: ChatSend) -> Reply {
        let key = canonical_key(&p.session_key.0);
        let mode = p.queue_mode.unwrap_or(self.config.queue_mode);
        self.start_turn(now, call, (&key, &p.message), p.idempotency_key.0, mode)
    }

    /// Start a turn on session `key` with `message` as `chat.send` does (`sessions.send`
    /// too): answer `started` once the user's message is durable, then run (or queue, as
    /// `mode` says).
    pub(crate) fn start_turn(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        (key, message): (&str, &str),
        run_id: String,
        mode: QueueMode,
    ) -> Reply {
        let msg = (key, run_id.as_str(), message);
        let (serial, holds) = match self.begin_run(now, call, msg, Replay::ChatSend, mode) {
            Ok(admitted) => admitted,
            Err(reply) => return reply,
        };
        let answer = json!({"runId": run_id, "status": "started"});
        self.answer(now, call.conn, call.req_id, Ok(answer));
        self.proceed_when_durable(now, serial, holds);
        Reply::Later
    }

    /// Make run `run_id` for `message` on session `key` (created if new) and give it the
    /// session's lane (`mode` says what to do when it is held): its serial and whether it holds
    /// the lane now. Holding it, the message is appended (a queued run's waits until it
    /// starts, kept meanwhile as pending input). The answer instead when the key was used
    /// already (its run live, or ended: `method` says how to replay it), or the message would
    /// wait and too many runs wait already.
    pub(crate) fn begin_run(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        (key, run_id, message): (&str, &str, &str),
        method: Replay,
        mode: QueueMode,
    ) -> Result<(u64, bool), Reply> {
        if let Some(reply) = self.replay_ended(now, call, run_id, method) {
            return Err(reply);
        }
        if self.agent.by_run_id.contains_key(run_id) {
            return Err(Reply::Now(Ok(
                json!({"runId": run_id, "status": "in_flight"}),
            )));
        }
        if self.waiting_is_full(key, mode) {
            let max = self.config.limits.max_waiting_runs;
            let cap = self.config.limits.max_concurrent_runs;
            return Err(Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!(
                    "too many agent runs waiting (at most {max} beyond the {cap} of agents.defaults.maxConcurrent); try again shortly"
                ),
            ))));
        }
        if !self.lane_has_room(key, mode) {
            let cap = self.config.limits.max_queued_runs;
            return Err(Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!(
                    "this session already has {cap} messages queued (messages.queue.cap); wait for its runs or abort them"
                ),
            ))));
        }
        let ts = self.unix_ms(now);
        self.ensure_session(key, ts);
        let (serial, holds) = self.admit_run(now, (key, run_id, message), Some(call.conn), mode);
        if holds {
            self.append_user(key, message, run_id, ts);
        }
        // The message, or its pending input, is durable before the call is answered.
        self.persist();
        Ok((serial, holds))
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
