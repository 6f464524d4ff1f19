//! The agent: chat sessions and the runs that answer them. A `chat.send` appends the user's
//! message to its session and starts a run; the run asks the host for one streamed model
//! request ([`Work::Http`]), turns the response into `agent` and `chat` events (text paced to
//! one `chat` delta per `liveTextPacing` per run) and appends the answer to the transcript.
//! Every transcript change leaves as a store batch with the next [`Gateway::persist`]. An
//! `agent` call starts the same run and is answered again when it ends (`rpc`). Runs of one
//! session take turns in its lane (`lane`, `queue`: the queue modes); the core keeps only the
//! recent window of each transcript (`session`), and only for the sessions used most recently
//! (`windows`: the others are read back from the store when a turn needs them), and
//! `chat.history` reads pages from the store (`history`). A run holding its lane starts its turn once one of the global slots
//! (`agents.defaults.maxConcurrent`) is free (`admission`); a message waiting in a lane is
//! kept in the store as pending input until its run starts (`pending`).

mod admission;
mod attempt;
mod catalog;
mod chat;
mod gate;
mod history;
mod lane;
mod pending;
mod prompt;
mod queue;
mod rpc;
mod run;
mod session;
mod session_edit;
mod session_patch;
mod sessions;
mod subscribers;
mod tool_round;
mod windows;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::{Value, json};

use crate::gateway::{Gateway, Timer};
use crate::log::Level;
use crate::model::openai::{ChatEvent, Message, ProviderError, StreamError, classify_http_error};
use crate::persist::{RowText, StoreChange, StoredSession};
use crate::work::{HttpErrorKind, WorkId, WorkResult};

use rpc::Outcome;
use run::{Audience, Event, Events, Response, Run};
use session::{ChatSession, Speaker, TextRow, Window, failed_before_reply, model_message};
use windows::Windows;

/// The only agent clawgate runs.
pub(crate) const AGENT_ID: &str = "main";

/// Sessions, runs, and the transcript changes not yet in a store batch.
#[derive(Debug, Default)]
pub(crate) struct Agent {
    sessions: BTreeMap<String, ChatSession>,
    /// Runs by serial (the serial names their timers).
    runs: BTreeMap<u64, Run>,
    /// Live runs by `runId`.
    by_run_id: HashMap<String, u64>,
    /// Live model requests.
    by_work: HashMap<WorkId, u64>,
    next_run: u64,
    unsaved: Vec<StoreChange>,
    /// Recent run outcomes and `agent.wait` callers.
    waits: rpc::Waits,
    /// `chat.history` calls waiting for the store.
    reads: history::Reads,
    /// Which run holds each session and which wait behind it.
    lanes: lane::Lanes,
    /// Which runs hold one of the global slots and which wait for one.
    admission: admission::Admission,
    /// Who receives session events.
    subscribers: subscribers::Subscribers,
    /// The model windows in memory, most recently used sessions only.
    windows: Windows,
    /// Runs started ahead of their message's commit: what they hold back until it settles.
    gates: gate::Gates,
}

impl Agent {
    /// A connection closed: forget what waits to answer it (its `agent.wait` calls and
    /// `chat.history` reads).
    pub(crate) fn conn_gone(&mut self, conn: crate::ConnId) {
        self.waits.conn_gone(conn);
        self.reads.conn_gone(conn);
        self.subscribers.conn_gone(conn);
    }

    /// The session changes since the last store batch.
    pub(crate) fn store_changes(&mut self) -> Vec<StoreChange> {
        std::mem::take(&mut self.unsaved)
    }

    /// Append a message, its row `encoded` and `model` as the model reads it, to the session
    /// `key` (which must exist; only `window` stays in memory, if the session's window is)
    /// and record the changes; the message's position (from 1).
    fn append(
        &mut self,
        key: &str,
        encoded: RowText,
        model: Option<Message>,
        ts: u64,
        window: Window,
    ) -> Option<u64> {
        let s = self.sessions.get_mut(key)?;
        if s.total == 0 {
            // The whole transcript is what is appended from now: no read needed.
            self.windows.start_empty(key);
        }
        // Its text's length bounds the window; the text is the session's newest.
        self.windows
            .append(key, model, encoded.as_str().len(), window);
        let seq = s.push(encoded.clone());
        s.updated_at = ts;
        self.unsaved.push(StoreChange::PutSession {
            key: key.to_string(),
            row: s.row(key),
        });
        self.unsaved.push(StoreChange::AppendMessage {
            session_key: key.to_string(),
            seq,
            message: encoded,
        });
        Some(seq)
    }

    /// Keep at most `cap` windows in memory, and every one a run in progress uses.
    fn evict_windows(&mut self, cap: usize) {
        let lanes = &self.lanes;
        self.windows.evict(cap, |key| lanes.active(key).is_some());
    }

    /// Forget a run; returns it.
    fn remove(&mut self, serial: u64) -> Option<Run> {
        let run = self.runs.remove(&serial)?;
        self.by_run_id.remove(&run.run_id);
        if let Some(w) = run.work {
            self.by_work.remove(&w);
        }
        Some(run)
    }
}

/// What the agent holds in memory ([`Gateway::held_messages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldMessages {
    /// Chat sessions known.
    pub sessions: usize,
    /// Sessions whose model window is in memory (at most `maxLoadedWindows`, plus those
    /// with a run in progress).
    pub windows: usize,
    /// Transcript messages held in those windows.
    pub messages: usize,
    /// The bytes of their JSON encodings.
    pub bytes: usize,
    /// Store changes kept until their batch is acknowledged.
    pub unacked_changes: usize,
}

/// Why a run failed, as the `chat` error event reports it.
#[derive(Debug)]
struct Failure {
    message: String,
    kind: &'static str,
    detail: Option<Value>,
}

impl Failure {
    fn provider(e: &ProviderError, gw: &Gateway) -> Self {
        let route = gw.config.model.as_ref();
        Failure {
            message: route.map_or_else(|| e.to_string(), |r| r.describe_refusal(e)),
            kind: e.kind.chat_error_kind(),
            detail: Some(json!({
                "provider": route.map(|m| m.provider.as_str()),
                "model": route.map(|m| m.model.as_str()),
                "failoverReason": e.kind.as_str(),
                "providerErrorType": e.error_type,
                "httpStatus": e.status,
                "providerErrorMessagePreview": e.message_preview,
            })),
        }
    }

    fn plain(message: String, kind: &'static str) -> Self {
        Failure {
            message,
            kind,
            detail: None,
        }
    }
}

/// Why a run that left the queue failed when its message could not be stored.
const NOT_SAVED: &str =
    "the message could not be saved to the gateway's store; see the gateway log";

/// The message of a turn with no model configured.
const OFFLINE: &str = "No model is configured: set agents.defaults.model.primary to \"<provider>/<model>\" and define that provider under models.providers in openclaw.json.";

impl Gateway {
    /// Load the sessions the store kept (at start, before any connection): each row with
    /// the newest message of its transcript (the last of `messages`; the others are not
    /// kept: a turn reads its window from the store). A row that does not decode is logged
    /// and skipped.
    pub fn restore_sessions(&mut self, sessions: Vec<StoredSession>) {
        let now = self.last_wake();
        for mut s in sessions {
            match ChatSession::from_row(s.row, s.messages.pop(), s.total) {
                Ok(session) => {
                    self.agent.sessions.insert(s.key, session);
                }
                Err(e) => self.log(
                    now,
                    Level::Warn,
                    None,
                    format!("stored session {} does not decode, skipped: {e}", s.key),
                ),
            }
        }
    }

    /// Send a run's events to its [`Audience`]: an operator's run to every operator; a
    /// channel's run only to the connections watching its session with
    /// `sessions.messages.subscribe` (upstream's `sessionMessageSubscribers`).
    fn emit(&mut self, now: Instant, audience: Audience, events: impl IntoIterator<Item = Event>) {
        match audience {
            Audience::Operators => {
                for (event, payload) in events {
                    self.broadcast(now, event, &payload, None);
                }
            }
            Audience::Watchers(key) => {
                let watchers = self.agent.subscribers.watchers(&key);
                if watchers.is_empty() {
                    return;
                }
                for (event, payload) in events {
                    self.broadcast_to(now, event, &payload, &watchers);
                }
            }
        }
    }

    /// Make events of a live run and show them. Only events someone hears now are built
    /// (a channel's run nobody watches builds none): as upstream's live stream, a watcher
    /// hears what a run does after it subscribed, gated or not.
    fn with_run(&mut self, now: Instant, serial: u64, f: impl FnOnce(&mut Events<'_>)) {
        let ts = self.unix_ms(now);
        let agent = &mut self.agent;
        let Some(run) = agent.runs.get_mut(&serial) else {
            return;
        };
        let heard = agent.subscribers.hear(run);
        let mut events = Events::new(run, ts, heard);
        f(&mut events);
        let events = events.into_built();
        if events.is_empty() {
            return;
        }
        let audience = run.audience();
        self.show(now, serial, audience, events);
    }

    /// Start run `serial` (its `chat.send` was answered) once one of the global slots is
    /// free; until then it waits for one, after the runs already waiting.
    pub(crate) fn start_run(&mut self, now: Instant, serial: u64) {
        if !self.agent.runs.contains_key(&serial) {
            return;
        }
        let cap = self.config.limits.max_concurrent_runs;
        if self.agent.admission.try_start(serial, cap) {
            self.run_turn(now, serial);
        } else {
            self.start_admitted(now);
        }
    }

    /// Start the runs waiting for a global slot while slots are free, oldest first.
    pub(crate) fn start_admitted(&mut self, now: Instant) {
        let cap = self.config.limits.max_concurrent_runs;
        while let Some(serial) = self.agent.admission.next(cap) {
            self.run_turn(now, serial);
        }
    }

    /// The turn of run `serial`, which holds a global slot: its status events, then the model
    /// request, or the offline failure.
    fn run_turn(&mut self, now: Instant, serial: u64) {
        if !self.agent.runs.contains_key(&serial) {
            return;
        }
        self.with_run(now, serial, |ev| {
            ev.status("preparing_workspace");
            ev.status("preparing_context");
        });
        let Some(route) = self.config.model.clone() else {
            self.with_run(now, serial, |ev| {
                ev.lifecycle("model", |_| json!({"provider": null, "model": null}));
            });
            self.fail_run(now, serial, Failure::plain(OFFLINE.into(), "unknown"));
            return;
        };
        self.with_run(now, serial, |ev| {
            ev.lifecycle("start", |run| json!({"startedAt": run.started_at}));
            ev.chat("status", |_| json!({"phase": "starting_model"}));
            ev.lifecycle(
                "model",
                |_| json!({"provider": route.provider, "model": route.model}),
            );
        });
        self.send_model_request(now, serial, &route);
    }

    /// The message of run `serial` could not be stored. A run whose call waited for that is
    /// dropped (its caller got the error); one that left the queue (its call was answered
    /// already) fails, so its callers hear of it.
    pub(crate) fn drop_run(&mut self, now: Instant, serial: u64) {
        if self.agent.runs.get(&serial).is_some_and(|r| r.was_queued) {
            let failure = Failure::plain(NOT_SAVED.into(), "unknown");
            self.fail_run(now, serial, failure);
        } else if let Some(run) = self.agent.remove(serial) {
            self.lane_free(now, &run.session_key, serial);
        }
    }

    /// A piece of a model response, for the run that asked for it.
    pub(crate) fn on_model_response(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let Some(&serial) = self.agent.by_work.get(&id) else {
            return;
        };
        self.model_progress(now, serial);
        let max_body = self.config.limits.max_error_body_bytes;
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        match result {
            WorkResult::HttpHead { status, headers } => {
                run.response = if (200..300).contains(&status) {
                    Response::Streaming
                } else {
                    let retry_after = headers
                        .into_iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
                        .map(|(_, v)| v);
                    Response::Failed {
                        status,
                        retry_after,
                        body: Vec::new(),
                    }
                };
            }
            WorkResult::HttpBody(bytes) => match &mut run.response {
                Response::Failed { body, .. } => {
                    let room = max_body.saturating_sub(body.len());
                    body.extend(bytes.iter().take(room));
                }
                Response::Awaiting | Response::Streaming => {
                    let mut events = Vec::new();
                    let fed = run.stream.feed(&bytes, &mut events);
                    for e in events {
                        if let ChatEvent::TextDelta(t) = e
                            && let Some(run) = self.agent.runs.get_mut(&serial)
                        {
                            run.text.push_str(&t);
                            self.pace(now, serial);
                        }
                    }
                    if let Err(e) = fed {
                        self.stream_failed(now, serial, e);
                    }
                }
            },
            WorkResult::HttpEnd(Ok(())) => match &run.response {
                Response::Failed {
                    status,
                    retry_after,
                    body,
                } => {
                    let e = classify_http_error(*status, retry_after.as_deref(), body);
                    if !self.retry_model_request(now, serial, &e) {
                        let failure = Failure::provider(&e, self);
                        self.fail_run(now, serial, failure);
                    }
                }
                Response::Awaiting | Response::Streaming => match run.stream.finish() {
                    Ok(done) => self.complete_run(now, serial, done),
                    Err(e) => self.stream_failed(now, serial, e),
                },
            },
            WorkResult::HttpEnd(Err(e)) => {
                let kind = if matches!(e.kind, HttpErrorKind::TimedOut | HttpErrorKind::IdleTimeout)
                {
                    "timeout"
                } else {
                    "unknown"
                };
                let message = match (&run.response, self.config.model.as_ref()) {
                    (Response::Awaiting, Some(route)) => route.describe_unreachable(&e.message),
                    _ => format!("the model's response broke off: {e}"),
                };
                self.fail_run(now, serial, Failure::plain(message, kind));
            }
            _ => {}
        }
    }

    fn stream_failed(&mut self, now: Instant, serial: u64, e: StreamError) {
        if let StreamError::Provider(p) = &e
            && self.retry_model_request(now, serial, p)
        {
            return;
        }
        let failure = match &e {
            StreamError::Provider(p) => Failure::provider(p, self),
            other => Failure::plain(format!("model response unreadable: {other}"), "unknown"),
        };
        self.fail_run(now, serial, failure);
    }

    /// New text arrived: flush it now, or once the pacing interval since the last flush ends.
    fn pace(&mut self, now: Instant, serial: u64) {
        let pacing = self.config.limits.live_text_pacing;
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        match run.last_flush.map(|at| at + pacing) {
            Some(due) if now < due => {
                if !run.flush_due {
                    run.flush_due = true;
                    self.schedule(due, Timer::LiveText(serial));
                }
            }
            _ => self.flush_live_text(now, serial),
        }
    }

    /// The pacing timer of run `serial` fired.
    pub(crate) fn live_text_due(&mut self, now: Instant, serial: u64) {
        if self.agent.runs.get(&serial).is_some_and(|r| r.flush_due) {
            self.flush_live_text(now, serial);
        }
    }

    fn flush_live_text(&mut self, now: Instant, serial: u64) {
        self.with_run(now, serial, |ev| {
            ev.run.last_flush = Some(now);
            ev.run.flush_due = false;
            ev.flush_agent_text();
            ev.flush_chat_text();
        });
    }

    fn complete_run(&mut self, now: Instant, serial: u64, done: crate::model::openai::Completion) {
        // A gated run's tool calls start once its gate opens: they act outside the gateway.
        let done = if done.tool_calls.is_empty() {
            done
        } else {
            match self.agent.gates.hold_tool_round(serial, done) {
                Some(done) => done,
                None => return,
            }
        };
        if self.start_tool_round(now, serial, &done) {
            return;
        }
        let ts = self.unix_ms(now);
        let Some(mut run) = self.agent.remove(serial) else {
            return;
        };
        let stop = done
            .finish_reason
            .as_ref()
            .map_or("stop", |f| f.as_str())
            .to_string();
        // The run ends here: events no one would hear (a channel's run nobody watches) are
        // not built.
        if self.agent.subscribers.hear(&run) {
            let message = run.message(ts);
            let mut ev: Vec<Event> = run.flush_agent_text(ts).into_iter().collect();
            if let Some(u) = &done.usage {
                let usage =
                    json!({"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens});
                ev.push(run.agent(ts, "usage", usage));
            }
            let finishing = json!({"stopReason": stop, "aborted": false, "livenessState": "working", "endedAt": ts});
            ev.push(run.lifecycle(ts, "finishing", finishing));
            let end = json!({
                "stopReason": stop,
                "aborted": false,
                "startedAt": run.started_at,
                "endedAt": ts,
                "terminalReply": {"disposition": "visible", "text": run.text},
                "executionSettled": true,
            });
            ev.push(run.lifecycle(ts, "end", end));
            ev.extend(run.flush_chat_text(ts));
            ev.push(run.chat("final", json!({"stopReason": stop, "message": message})));
            self.show(now, serial, run.audience(), ev);
        }
        let usage = done.usage.map(|u| {
            json!({"input": u.prompt_tokens, "output": u.completion_tokens, "total": u.prompt_tokens.saturating_add(u.completion_tokens)})
        });
        let (key, text) = (&run.session_key, &run.text);
        self.append_text(key, Speaker::Assistant, text, ts, Some(&run.run_id));
        if run.origin.is_none() {
            self.channel_turn_ended(now, &run.run_id, Some(run.text.clone()));
        }
        self.persist();
        let outcome = Outcome::Ok {
            stop_reason: stop,
            aborted: false,
            usage,
        };
        self.finish_run(now, run, outcome);
    }

    fn fail_run(&mut self, now: Instant, serial: u64, failure: Failure) {
        self.stop_run_tools(now, serial);
        let ts = self.unix_ms(now);
        let Some(mut run) = self.agent.remove(serial) else {
            return;
        };
        self.log(
            now,
            Level::Warn,
            run.origin,
            format!("agent run {} failed: {}", run.run_id, failure.message),
        );
        let mut ev: Vec<Event> = run.flush_agent_text(ts).into_iter().collect();
        let error = json!({
            "startedAt": run.started_at,
            "endedAt": ts,
            "error": failure.message,
            "executionSettled": true,
        });
        ev.push(run.lifecycle(ts, "error", error));
        ev.extend(run.flush_chat_text(ts));
        let mut fields = json!({"errorMessage": failure.message, "errorKind": failure.kind});
        if let (Some(d), Value::Object(f)) = (failure.detail, &mut fields) {
            f.insert("errorDetail".into(), d);
        }
        ev.push(run.chat("error", fields));
        let row = if run.text.is_empty() {
            // The user-facing notice (no agentId, seq 1), as upstream sends it.
            ev.push((
                "chat",
                json!({
                    "runId": run.run_id,
                    "sessionKey": run.session_key,
                    "seq": 1,
                    "state": "error",
                    "errorMessage": format!("⚠️ Agent failed before reply: {}\nTo view logs, run `clawgate logs --follow` in a terminal.", failure.message),
                }),
            ));
            failed_before_reply(&failure.message, ts)
        } else {
            run.message(ts)
        };
        self.show(now, serial, run.audience(), ev);
        self.append(&run.session_key, row, ts, Some(&run.run_id));
        if run.origin.is_none() {
            let notice = format!("⚠️ Agent failed before reply: {}", failure.message);
            self.channel_turn_ended(now, &run.run_id, Some(notice));
        }
        self.persist();
        self.finish_run(now, run, Outcome::Error(failure.message));
    }

    fn cancel_request(&mut self, run: &Run) {
        if let Some(w) = run.work {
            self.cancel_model_request(w);
        }
        let now = self.last_wake();
        self.stop_run_tools(now, run.serial);
    }

    /// The gateway is stopping: cancel every model request and forget the runs.
    pub(crate) fn cancel_runs(&mut self) {
        let serials: Vec<u64> = self.agent.runs.keys().copied().collect();
        for serial in serials {
            if let Some(run) = self.agent.remove(serial) {
                self.cancel_request(&run);
            }
        }
        self.agent.lanes.clear();
        self.agent.admission.clear();
    }

    /// What the agent holds in memory: transcript messages (at most `maxModelMessages` and
    /// `maxWindowBytes` per window, at most `maxLoadedWindows` windows besides those of runs
    /// in progress) and store changes kept until the disk has them (for the replay after a
    /// failed write). Neither grows with the length of a transcript.
    pub fn held_messages(&self) -> HeldMessages {
        let (windows, messages, bytes) = self.agent.windows.held();
        HeldMessages {
            sessions: self.agent.sessions.len(),
            windows,
            messages,
            bytes,
            unacked_changes: self.durable.unacked_changes(),
        }
    }

    /// Whether run `serial` answers a channel message (no connection asked for it).
    pub(crate) fn is_channel_run(&self, serial: u64) -> bool {
        self.agent
            .runs
            .get(&serial)
            .is_some_and(|r| r.origin.is_none())
    }

    /// A new run for `run_id` on `key` with the user's `message` (the session exists); its
    /// serial. `origin` is the connection that asked, `None` for a channel message's turn.
    fn new_run(&mut self, run_id: &str, key: &str, origin: Option<crate::ConnId>, ts: u64) -> u64 {
        let session_id = self
            .agent
            .sessions
            .get(key)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        self.agent.next_run += 1;
        let serial = self.agent.next_run;
        let run = Run::new(serial, run_id.into(), key.into(), session_id, origin, ts);
        self.agent.runs.insert(serial, run);
        self.agent.by_run_id.insert(run_id.into(), serial);
        serial
    }

    /// Create session `key` if it does not exist (and announce it).
    pub(crate) fn ensure_session(&mut self, key: &str, ts: u64) {
        if !self.agent.sessions.contains_key(key) {
            let id = self.uuid();
            self.agent
                .sessions
                .insert(key.to_string(), ChatSession::new(id, ts));
            let now = self.last_wake();
            self.session_changed(now, key, subscribers::Change::Create);
        }
    }

    /// The value session `key` holds for the `sessions.patch` field `name`, as text.
    pub(crate) fn session_override(&self, key: &str, name: &str) -> Option<String> {
        let s = self.agent.sessions.get(key)?;
        s.overrides.get(name)?.as_str().map(str::to_string)
    }

    /// The session key of live run `run_id`.
    pub(crate) fn run_session(&self, run_id: &str) -> Option<String> {
        let serial = self.agent.by_run_id.get(run_id)?;
        self.agent.runs.get(serial).map(|r| r.session_key.clone())
    }

    /// Append the user's message to session `key` (which exists).
    pub(crate) fn append_user(&mut self, key: &str, text: &str, idempotency_key: &str, ts: u64) {
        self.append_text(key, Speaker::User, text, ts, Some(idempotency_key));
    }

    /// Append a text message to session `key` ([`Gateway::append`] of its
    /// [`session::text_message`], with `run_id` as a user's message's `idempotencyKey`),
    /// its row written out rather than built as a `Value`.
    pub(crate) fn append_text(
        &mut self,
        key: &str,
        speaker: Speaker,
        text: &str,
        ts: u64,
        run_id: Option<&str>,
    ) {
        let id = self.uuid();
        let row = TextRow {
            speaker,
            text,
            ts,
            id: &id,
            run_id,
            idempotency_key: run_id.filter(|_| speaker == Speaker::User),
        };
        let encoded = row.encode();
        // The message as a `Value` only when someone hears it.
        let heard = self
            .agent
            .subscribers
            .hears_messages(key)
            .then(|| encoded.to_value());
        self.record_message(key, encoded, Some(row.model()), heard, ts, run_id);
    }

    /// Append `message` to session `key` with a new message id (its `__openclaw.id`), record
    /// the changes for the next batch, and tell who watches the session (`run_id`: the run it
    /// belongs to, if any). Any code that appends to a transcript (operator or channel turns)
    /// goes through here or [`Gateway::append_text`].
    pub(crate) fn append(&mut self, key: &str, mut message: Value, ts: u64, run_id: Option<&str>) {
        let id = self.uuid();
        if let Value::Object(m) = &mut message {
            let mut meta = json!({"id": id});
            // An answer names its run, as upstream's transcript does: clients match it with
            // the run's live stream by it (and `chat.history` reports the session's last run).
            if let (Some(run_id), Some("assistant"), Value::Object(meta)) =
                (run_id, m.get("role").and_then(Value::as_str), &mut meta)
            {
                meta.insert("runId".into(), json!(run_id));
            }
            m.insert("__openclaw".into(), meta);
        }
        let encoded = RowText::of_value(&message);
        let model = model_message(&message);
        // Kept for the `session.message` event only when someone hears it (a channel's turn
        // usually has no one): the message itself goes to the store.
        let heard = self
            .agent
            .subscribers
            .hears_messages(key)
            .then_some(message);
        self.record_message(key, encoded, model, heard, ts, run_id);
    }

    /// Append the message `encoded` (`model`: as the model reads it; `heard`: as the
    /// `session.message` event shows it, when someone hears it) to session `key`.
    fn record_message(
        &mut self,
        key: &str,
        encoded: RowText,
        model: Option<Message>,
        heard: Option<Value>,
        ts: u64,
        run_id: Option<&str>,
    ) {
        let window = Window::of(&self.config.limits);
        let seq = self.agent.append(key, encoded, model, ts, window);
        self.agent
            .evict_windows(self.config.limits.max_loaded_windows);
        if let (Some(seq), Some(message)) = (seq, heard) {
            let now = self.last_wake();
            self.message_appended(now, key, &message, seq, run_id);
        }
    }
}
