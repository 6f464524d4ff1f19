//! The `agent` and `agent.wait` methods. `agent` starts the same run as `chat.send` and answers
//! twice on its request id: `accepted` at once, then the run's result when it ends (upstream's
//! `--expect-final`). `agent.wait` answers when a run ends, from a bounded record of recent
//! outcomes when it already has, or `timeout` after its `timeoutMs` (the run goes on).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::conn::ConnId;
use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::{Gateway, Timer};
use crate::methods::params::{self, FromParams, Kind, NonEmpty, optional, required};
use crate::methods::{Call, Reply};

use super::AGENT_ID;
use super::run::Run;
use super::session::canonical_key;

/// `agent` params (upstream's `AgentParams`). The optional fields are accepted; the agent acts
/// on `sessionKey` and `agentId` only.
pub(crate) struct AgentParams {
    message: String,
    idempotency_key: NonEmpty,
    session_key: Option<NonEmpty>,
    agent_id: Option<NonEmpty>,
}

impl FromParams for AgentParams {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("message", Kind::Str),
            required("idempotencyKey", Kind::NonEmpty),
            optional("sessionKey", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("provider", Kind::Ignored),
            optional("model", Kind::Ignored),
            optional("to", Kind::Ignored),
            optional("replyTo", Kind::Ignored),
            optional("sessionId", Kind::Ignored),
            optional("expectedExistingSessionId", Kind::Ignored),
            optional("thinking", Kind::Ignored),
            optional("deliver", Kind::Ignored),
            optional("attachments", Kind::Ignored),
            optional("channel", Kind::Ignored),
            optional("replyChannel", Kind::Ignored),
            optional("accountId", Kind::Ignored),
            optional("replyAccountId", Kind::Ignored),
            optional("threadId", Kind::Ignored),
            optional("groupId", Kind::Ignored),
            optional("groupChannel", Kind::Ignored),
            optional("groupSpace", Kind::Ignored),
            optional("timeout", Kind::Ignored),
            optional("bestEffortDeliver", Kind::Ignored),
            optional("lane", Kind::Ignored),
            optional("cwd", Kind::Ignored),
            optional("cleanupBundleMcpOnRunEnd", Kind::Ignored),
            optional("modelRun", Kind::Ignored),
            optional("promptMode", Kind::Ignored),
            optional("extraSystemPrompt", Kind::Ignored),
            optional("bootstrapContextMode", Kind::Ignored),
            optional("bootstrapContextRunKind", Kind::Ignored),
            optional("acpTurnSource", Kind::Ignored),
            optional("internalRuntimeHandoffId", Kind::Ignored),
            optional("internalExecutionIdentityRetry", Kind::Ignored),
            optional("internalExecutionIdentityRecoveryAttempt", Kind::Ignored),
            optional("execApprovalFollowupExpectedSessionId", Kind::Ignored),
            optional("internalEvents", Kind::Ignored),
            optional("inputProvenance", Kind::Ignored),
            optional("suppressPromptPersistence", Kind::Ignored),
            optional("sessionEffects", Kind::Ignored),
            optional("sourceReplyDeliveryMode", Kind::Ignored),
            optional("disableMessageTool", Kind::Ignored),
            optional("swarmCollector", Kind::Ignored),
            optional("swarmOutputSchema", Kind::Ignored),
            optional("forceRestartSafeTools", Kind::Ignored),
            optional("forceCodeModeTools", Kind::Ignored),
            optional("voiceWakeTrigger", Kind::Ignored),
            optional("label", Kind::Ignored),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            message: p.text("message"),
            idempotency_key: p.required_non_empty("idempotencyKey"),
            session_key: p.non_empty("sessionKey"),
            agent_id: p.non_empty("agentId"),
        })
    }
}

/// `agent.wait` params (upstream's `AgentWaitParams`).
pub(crate) struct AgentWait {
    run_id: NonEmpty,
    timeout_ms: Option<u64>,
}

impl FromParams for AgentWait {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("runId", Kind::NonEmpty),
            optional("timeoutMs", Kind::U64),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            run_id: p.required_non_empty("runId"),
            timeout_ms: p.u64("timeoutMs"),
        })
    }
}

/// How long `agent.wait` waits when the caller gives no `timeoutMs` (upstream's 30 s).
const DEFAULT_WAIT: Duration = Duration::from_millis(30_000);

/// The request an `agent` call answers a second time when its run ends.
#[derive(Debug)]
pub(crate) struct FinalAnswer {
    conn: ConnId,
    req_id: String,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// The model answered (or the run was aborted: `aborted`).
    Ok {
        /// Why the model stopped (`stop`, `length`, `rpc` for an abort).
        stop_reason: String,
        /// Whether `chat.abort` ended it.
        aborted: bool,
        /// Token usage, when the provider reported it.
        usage: Option<Value>,
    },
    /// The run failed with this message.
    Error(String),
}

/// A run that ended, as `agent.wait` reports it.
#[derive(Debug)]
pub(crate) struct Ended {
    run_id: String,
    session_id: String,
    started_at: u64,
    ended_at: u64,
    outcome: Outcome,
    text: String,
}

/// Which method repeats an ended run's idempotency key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Replay {
    /// `chat.send`.
    ChatSend,
    /// `agent`.
    Agent,
}

impl Ended {
    /// What a repeated `chat.send` answers (upstream replays its dedupe entry): `ok`, the abort
    /// (`status: "timeout"`, `summary: "aborted"`), or the error with its payload.
    fn chat_send_replay(&self) -> (Result<Value, ErrorShape>, Option<Value>) {
        match &self.outcome {
            Outcome::Ok {
                aborted: true,
                stop_reason,
                ..
            } => (
                Ok(json!({
                    "runId": self.run_id,
                    "status": "timeout",
                    "summary": "aborted",
                    "stopReason": stop_reason,
                    "endedAt": self.ended_at,
                })),
                None,
            ),
            Outcome::Ok { .. } => (Ok(json!({"runId": self.run_id, "status": "ok"})), None),
            Outcome::Error(message) => (
                Err(ErrorShape::new(ErrorCode::Unavailable, message.clone())),
                Some(json!({"runId": self.run_id, "status": "error", "summary": message})),
            ),
        }
    }

    /// The `agent.wait` answer for this run.
    fn wait_payload(&self) -> Value {
        match &self.outcome {
            Outcome::Ok {
                stop_reason,
                aborted,
                ..
            } => json!({
                "runId": self.run_id,
                "status": "ok",
                "startedAt": self.started_at,
                "endedAt": self.ended_at,
                "stopReason": stop_reason,
                "aborted": aborted,
                "terminalReply": {"disposition": "visible", "text": self.text},
            }),
            Outcome::Error(message) => json!({
                "runId": self.run_id,
                "status": "error",
                "startedAt": self.started_at,
                "endedAt": self.ended_at,
                "error": message,
            }),
        }
    }
}

/// An `agent.wait` call waiting for its run.
#[derive(Debug)]
pub(crate) struct Wait {
    conn: ConnId,
    req_id: String,
    run_id: String,
}

/// What `agent` and `agent.wait` keep: recent outcomes (at most `maxEndedRuns`) and waiters.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    ended: VecDeque<Ended>,
    waiting: std::collections::BTreeMap<u64, Wait>,
    next: u64,
}

impl Waits {
    /// The record of run `run_id`, if it ended recently.
    fn ended(&self, run_id: &str) -> Option<&Ended> {
        self.ended.iter().find(|e| e.run_id == run_id)
    }

    /// A connection closed: its `agent.wait` calls have nobody to answer (their slots free).
    pub(crate) fn conn_gone(&mut self, conn: ConnId) {
        self.waiting.retain(|_, w| w.conn != conn);
    }
}

impl Gateway {
    /// `agent`: start a run on the resolved session, answer `accepted` now and the run's
    /// result when it ends.
    pub(crate) fn agent_method(&mut self, now: Instant, call: &Call<'_>, p: AgentParams) -> Reply {
        let agent_id = p.agent_id.map_or_else(|| AGENT_ID.to_string(), |a| a.0);
        if agent_id != AGENT_ID {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "unknown agent id \"{agent_id}\""
            ))));
        }
        let key = p
            .session_key
            .map_or_else(|| format!("agent:{AGENT_ID}:main"), |k| canonical_key(&k.0));
        let run_id = p.idempotency_key.0;
        let mode = self.config.queue_mode;
        let msg = (key.as_str(), run_id.as_str(), p.message.as_str());
        let (serial, holds) = match self.begin_run(now, call, msg, Replay::Agent, mode) {
            Ok(admitted) => admitted,
            Err(reply) => return reply,
        };
        if let Some(run) = self.agent.runs.get_mut(&serial) {
            run.final_answer = Some(FinalAnswer {
                conn: call.conn,
                req_id: call.req_id.to_string(),
            });
        }
        let accepted = json!({
            "runId": run_id,
            "sessionKey": key,
            "agentId": AGENT_ID,
            "status": "accepted",
            "acceptedAt": self.unix_ms(now),
        });
        self.answer(now, call.conn, call.req_id, Ok(accepted));
        self.proceed_when_durable(now, serial, holds);
        Reply::Later
    }

    /// A `chat.send` or `agent` whose idempotency key names a run that ended is answered from
    /// its record, as upstream replays its dedupe entry: no second run, no second model call.
    pub(crate) fn replay_ended(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        run_id: &str,
        method: Replay,
    ) -> Option<Reply> {
        let ended = self.agent.waits.ended(run_id)?;
        let (result, payload) = match method {
            Replay::ChatSend => ended.chat_send_replay(),
            Replay::Agent => self.final_answer(ended),
        };
        self.answer_with(now, call.conn, call.req_id, result, payload);
        Some(Reply::Later)
    }

    /// `agent.wait`: answer when run `runId` ends, at once if it has, `timeout` after
    /// `timeoutMs`.
    pub(crate) fn agent_wait(&mut self, now: Instant, call: &Call<'_>, p: AgentWait) -> Reply {
        let run_id = p.run_id.0;
        if let Some(e) = self.agent.waits.ended(&run_id) {
            return Reply::Now(Ok(e.wait_payload()));
        }
        let max = self.config.limits.max_agent_waits;
        if self.agent.waits.waiting.len() >= max {
            return Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("too many agent.wait calls pending (at most {max}); try again shortly"),
            )));
        }
        let wait = p.timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis);
        // A deadline past what the clock can hold never comes: the wait lasts until the run ends.
        let deadline = now.checked_add(wait);
        let waits = &mut self.agent.waits;
        waits.next += 1;
        let serial = waits.next;
        waits.waiting.insert(
            serial,
            Wait {
                conn: call.conn,
                req_id: call.req_id.to_string(),
                run_id,
            },
        );
        if let Some(at) = deadline {
            self.schedule(at, Timer::AgentWait(serial));
        }
        Reply::Later
    }

    /// The timer of `agent.wait` call `serial` fired: answer `timeout` if it still waits
    /// (`pending` in phase `queue` while its run waits in its lane, as upstream).
    pub(crate) fn agent_wait_expired(&mut self, now: Instant, serial: u64) {
        if let Some(w) = self.agent.waits.waiting.remove(&serial) {
            let timeout = if self.is_queued(&w.run_id) {
                json!({"runId": w.run_id, "status": "pending", "timeoutPhase": "queue"})
            } else {
                json!({"runId": w.run_id, "status": "timeout"})
            };
            self.answer(now, w.conn, &w.req_id, Ok(timeout));
        }
    }

    /// Run `run` ended (its events are out, its transcript change issued): record the outcome,
    /// answer its `agent.wait` callers and its `agent` call's final answer.
    pub(crate) fn run_ended(&mut self, now: Instant, run: Run, outcome: Outcome) {
        let ended = Ended {
            run_id: run.run_id,
            session_id: run.session_id,
            started_at: run.started_at,
            ended_at: self.unix_ms(now),
            outcome,
            text: run.text,
        };
        let waiting: Vec<u64> = self
            .agent
            .waits
            .waiting
            .iter()
            .filter(|(_, w)| w.run_id == ended.run_id)
            .map(|(s, _)| *s)
            .collect();
        for serial in waiting {
            if let Some(w) = self.agent.waits.waiting.remove(&serial) {
                self.answer(now, w.conn, &w.req_id, Ok(ended.wait_payload()));
            }
        }
        if let Some(fa) = run.final_answer {
            let (result, payload) = self.final_answer(&ended);
            self.answer_with(now, fa.conn, &fa.req_id, result, payload);
        }
        let waits = &mut self.agent.waits;
        waits.ended.push_back(ended);
        while waits.ended.len() > self.config.limits.max_ended_runs {
            waits.ended.pop_front();
        }
    }

    /// The second answer of an `agent` call: the result, or the error with its payload.
    fn final_answer(&self, ended: &Ended) -> (Result<Value, ErrorShape>, Option<Value>) {
        match &ended.outcome {
            Outcome::Ok { aborted, usage, .. } => {
                let route = self.config.model.as_ref();
                let mut agent_meta = json!({
                    "sessionId": ended.session_id,
                    "provider": route.map(|m| m.provider.as_str()),
                    "model": route.map(|m| m.model.as_str()),
                });
                if let (Some(u), Value::Object(m)) = (usage, &mut agent_meta) {
                    m.insert("usage".into(), u.clone());
                }
                let payloads = if ended.text.is_empty() {
                    json!([])
                } else {
                    json!([{"text": ended.text, "mediaUrl": null}])
                };
                let result = json!({
                    "runId": ended.run_id,
                    "status": "ok",
                    "summary": "completed",
                    "result": {
                        "payloads": payloads,
                        "meta": {
                            "durationMs": ended.ended_at.saturating_sub(ended.started_at),
                            "agentMeta": agent_meta,
                            "aborted": aborted,
                        },
                    },
                });
                (Ok(result), None)
            }
            Outcome::Error(message) => {
                let payload = json!({"runId": ended.run_id, "status": "error", "summary": message});
                let error = ErrorShape::new(ErrorCode::Unavailable, message.clone());
                (Err(error), Some(payload))
            }
        }
    }
}
