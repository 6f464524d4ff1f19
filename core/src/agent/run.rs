//! One agent run: the turn a `chat.send` or `agent` started, from its model request to its final event.
//! A run builds its own `chat` and `agent` event payloads (with its per-run `seq`); the
//! gateway broadcasts them.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::config::QueueMode;
use crate::conn::ConnId;
use crate::model::backend::TurnStream;
use crate::work::WorkId;

use super::rpc::FinalAnswer;
use super::session::text_message;

/// A broadcast event: its name and payload.
pub(crate) type Event = (&'static str, Value);

/// Where the model's response is.
#[derive(Debug)]
pub(crate) enum Response {
    /// No head yet.
    Awaiting,
    /// A 2xx head: the body is the SSE stream.
    Streaming,
    /// A non-2xx head: the body (bounded) is the provider's error.
    Failed {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header's value.
        retry_after: Option<String>,
        /// The body so far, at most `maxErrorBodyBytes`.
        body: Vec<u8>,
    },
}

/// Who receives a run's `chat` and `agent` events.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every operator (a run an operator asked for).
    Operators,
    /// The connections watching this session's messages (a channel message's run).
    Watchers(String),
}

/// A run waiting in its session's lane or in progress.
#[derive(Debug)]
pub(crate) struct Run {
    /// Its serial (the key of the gateway's runs).
    pub(crate) serial: u64,
    /// `runId`: the `chat.send` idempotency key.
    pub(crate) run_id: String,
    /// The session it answers.
    pub(crate) session_key: String,
    /// That session's id.
    pub(crate) session_id: String,
    /// The connection that asked for it (the run outlives it); `None` for a channel
    /// message's turn.
    pub(crate) origin: Option<ConnId>,
    /// The model request, once sent.
    pub(crate) work: Option<WorkId>,
    /// The response's state.
    pub(crate) response: Response,
    /// The decoder of a 2xx body.
    pub(crate) stream: TurnStream,
    /// Retries and the live request's deadline.
    pub(crate) attempts: super::attempt::Attempts,
    /// The assistant text so far.
    pub(crate) text: String,
    /// Bytes of `text` already sent in `agent` assistant events.
    agent_sent: usize,
    /// Bytes of `text` already sent in `chat` deltas.
    chat_sent: usize,
    /// The last `seq` of this run's events.
    seq: u64,
    /// When live text was last flushed.
    pub(crate) last_flush: Option<Instant>,
    /// A live-text flush timer is pending.
    pub(crate) flush_due: bool,
    /// Unix milliseconds the run started at.
    pub(crate) started_at: u64,
    /// The `agent` call to answer again when the run ends (none for `chat.send`).
    pub(crate) final_answer: Option<FinalAnswer>,
    /// The user's message, appended to the transcript when the run leaves the queue.
    pub(crate) message: String,
    /// What it does when its lane is held.
    pub(crate) mode: QueueMode,
    /// It waits in its lane (its message is not in the transcript yet).
    pub(crate) queued: bool,
    /// It waited in its lane: its call was answered before its message was stored.
    pub(crate) was_queued: bool,
    /// Collect runs folded into this one's turn; they end with it.
    pub(crate) folded: Vec<Run>,
    /// Model requests answered with tool calls so far (`tools.maxRounds` bounds them).
    pub(crate) round: u32,
    /// The calls of the tool round in progress.
    pub(crate) calls: Vec<super::tool_round::RoundCall>,
    /// Outcomes of calls that ended before the round listed them.
    pub(crate) early: std::collections::HashMap<crate::tools::CallId, crate::tools::ToolOutcome>,
    /// Assistant messages of this turn before the current one (for `itemId`s).
    message_index: u32,
}

impl Run {
    /// A run not started yet.
    pub(crate) fn new(
        serial: u64,
        run_id: String,
        session_key: String,
        session_id: String,
        origin: Option<ConnId>,
        started_at: u64,
    ) -> Self {
        Self {
            serial,
            run_id,
            session_key,
            session_id,
            origin,
            work: None,
            response: Response::Awaiting,
            stream: TurnStream::default(),
            attempts: Default::default(),
            text: String::new(),
            agent_sent: 0,
            chat_sent: 0,
            seq: 0,
            last_flush: None,
            flush_due: false,
            started_at,
            final_answer: None,
            message: String::new(),
            mode: QueueMode::Steer,
            queued: false,
            was_queued: false,
            folded: Vec::new(),
            round: 0,
            calls: Vec::new(),
            early: Default::default(),
            message_index: 1,
        }
    }

    /// Who receives its events.
    pub(crate) fn audience(&self) -> Audience {
        match self.origin {
            Some(_) => Audience::Operators,
            None => Audience::Watchers(self.session_key.clone()),
        }
    }

    /// An `agent` event on `stream`, with the next `seq`.
    pub(crate) fn agent(&mut self, ts: u64, stream: &str, data: Value) -> Event {
        self.seq += 1;
        self.agent_event(ts, stream, data)
    }

    /// The `agent` event on `stream` with the current `seq`.
    fn agent_event(&self, ts: u64, stream: &str, data: Value) -> Event {
        (
            "agent",
            json!({
                "runId": self.run_id,
                "agentId": "main",
                "sessionId": self.session_id,
                "sessionKey": self.session_key,
                "lane": "main",
                "stream": stream,
                "data": data,
                "seq": self.seq,
                "ts": ts,
                "isHeartbeat": false,
            }),
        )
    }

    /// A `chat` event in `state` with `fields`, carrying the `seq` of the latest `agent` event.
    pub(crate) fn chat(&self, state: &str, fields: Value) -> Event {
        let mut p = Map::new();
        p.insert("runId".into(), json!(self.run_id));
        p.insert("sessionKey".into(), json!(self.session_key));
        p.insert("agentId".into(), json!("main"));
        p.insert("seq".into(), json!(self.seq));
        p.insert("state".into(), json!(state));
        if let Value::Object(f) = fields {
            p.extend(f);
        }
        ("chat", Value::Object(p))
    }

    /// An `agent` lifecycle event in `phase` with `fields`.
    pub(crate) fn lifecycle(&mut self, ts: u64, phase: &str, fields: Value) -> Event {
        self.agent(ts, "lifecycle", lifecycle_data(phase, fields))
    }

    /// The `agent` assistant event for text not sent on that stream yet.
    pub(crate) fn flush_agent_text(&mut self, ts: u64) -> Option<Event> {
        let from = self.take_unsent_agent_text()?;
        let data = self.assistant_data(from);
        Some(self.agent(ts, "assistant", data))
    }

    /// The `chat` delta for text not sent on that stream yet.
    pub(crate) fn flush_chat_text(&mut self, ts: u64) -> Option<Event> {
        let from = self.take_unsent_chat_text()?;
        Some(self.chat("delta", self.delta_fields(from, ts)))
    }

    /// Where the text not sent on the `agent` stream starts, if there is any; it counts as
    /// sent from now.
    fn take_unsent_agent_text(&mut self) -> Option<usize> {
        let from = self.agent_sent;
        self.unsent(from).then(|| {
            self.agent_sent = self.text.len();
            from
        })
    }

    /// Where the text not sent on the `chat` stream starts, if there is any; it counts as
    /// sent from now.
    fn take_unsent_chat_text(&mut self) -> Option<usize> {
        let from = self.chat_sent;
        self.unsent(from).then(|| {
            self.chat_sent = self.text.len();
            from
        })
    }

    /// The data of the `agent` assistant event for the text from `from` on.
    fn assistant_data(&self, from: usize) -> Value {
        json!({
            "text": self.text,
            "delta": self.text.get(from..).unwrap_or_default(),
            "itemId": format!("{}:{}", self.run_id, self.message_index),
        })
    }

    /// The fields of the `chat` delta for the text from `from` on.
    fn delta_fields(&self, from: usize, ts: u64) -> Value {
        json!({"deltaText": self.text.get(from..).unwrap_or_default(), "message": self.message(ts)})
    }

    /// The current assistant message ended (it called tools): the next text starts a new
    /// one, sent from its start on both streams.
    pub(crate) fn next_message(&mut self) {
        self.text.clear();
        self.agent_sent = 0;
        self.chat_sent = 0;
        self.message_index += 1;
    }

    /// The assistant message so far.
    pub(crate) fn message(&self, ts: u64) -> Value {
        text_message("assistant", &self.text, ts)
    }

    /// Whether `text` holds text from `sent` on not sent yet.
    fn unsent(&self, sent: usize) -> bool {
        self.text.get(sent..).is_some_and(|d| !d.is_empty())
    }
}

/// A run's events as it makes them, at time `ts`: built when someone hears the run, else
/// only counted. An event no one hears moves the run as if it were sent (`seq`, each text
/// stream's position), so the events built once someone listens (upstream's live stream:
/// a watcher gets what happens after it subscribed) carry the `seq` and text they would have
/// carried had every event been built.
pub(crate) struct Events<'r> {
    /// The run.
    pub(crate) run: &'r mut Run,
    ts: u64,
    /// The events built; `None` when no one hears them.
    built: Option<Vec<Event>>,
}

impl<'r> Events<'r> {
    /// The events `run` makes at `ts`, built if `heard`.
    pub(crate) fn new(run: &'r mut Run, ts: u64, heard: bool) -> Self {
        Self {
            run,
            ts,
            built: heard.then(Vec::new),
        }
    }

    /// The events built (none when no one hears them).
    pub(crate) fn into_built(self) -> Vec<Event> {
        self.built.unwrap_or_default()
    }

    /// An `agent` event on `stream` with the `data` made from the run, with the next `seq`.
    pub(crate) fn agent(&mut self, stream: &str, data: impl FnOnce(&Run) -> Value) {
        self.run.seq += 1;
        if let Some(built) = &mut self.built {
            built.push(self.run.agent_event(self.ts, stream, data(self.run)));
        }
    }

    /// A `chat` event in `state` with `fields` made from the run ([`Run::chat`]).
    pub(crate) fn chat(&mut self, state: &str, fields: impl FnOnce(&Run) -> Value) {
        if let Some(built) = &mut self.built {
            built.push(self.run.chat(state, fields(self.run)));
        }
    }

    /// A `chat` status in `phase` and its `agent` `run_status`, under one new `seq`.
    pub(crate) fn status(&mut self, phase: &str) {
        self.run_status(phase, |_| json!({ "phase": phase }));
    }

    /// A `chat` status in `phase` and an `agent` `run_status` with `data` made from the run,
    /// under one new `seq`.
    pub(crate) fn run_status(&mut self, phase: &str, data: impl FnOnce(&Run) -> Value) {
        self.run.seq += 1;
        if let Some(built) = &mut self.built {
            let agent = self.run.agent_event(self.ts, "run_status", data(self.run));
            built.push(self.run.chat("status", json!({ "phase": phase })));
            built.push(agent);
        }
    }

    /// An `agent` lifecycle event in `phase` with `fields` made from the run
    /// ([`Run::lifecycle`]).
    pub(crate) fn lifecycle(&mut self, phase: &str, fields: impl FnOnce(&Run) -> Value) {
        self.agent("lifecycle", |run| lifecycle_data(phase, fields(run)));
    }

    /// The `agent` assistant event for the text not sent on that stream yet, if any.
    pub(crate) fn flush_agent_text(&mut self) {
        if let Some(from) = self.run.take_unsent_agent_text() {
            self.agent("assistant", |run| run.assistant_data(from));
        }
    }

    /// The `chat` delta for the text not sent on that stream yet, if any.
    pub(crate) fn flush_chat_text(&mut self) {
        if let Some(from) = self.run.take_unsent_chat_text() {
            let ts = self.ts;
            self.chat("delta", |run| run.delta_fields(from, ts));
        }
    }
}

/// An `agent` lifecycle event's data: `phase`, then `fields`' members.
fn lifecycle_data(phase: &str, fields: Value) -> Value {
    let mut data = Map::new();
    data.insert("phase".into(), json!(phase));
    if let Value::Object(f) = fields {
        data.extend(f);
    }
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        Run::new(1, "r".into(), "k".into(), "s".into(), None, 0)
    }

    /// The streams' positions and `seq` of a run.
    fn marks(r: &Run) -> (usize, usize, u64) {
        (r.agent_sent, r.chat_sent, r.seq)
    }

    #[test]
    fn events_no_one_hears_move_the_run_as_the_built_ones_would() {
        // Each step: text, the `agent` stream alone flushed (the chat stream left behind)
        // or not, more text; then both streams flushed and a status and a lifecycle event
        // made, by one run whose events are built and one whose are not.
        let steps = [
            ("", false, ""),
            ("Hel", false, "lo"),
            ("", true, ""),
            (" wörld", true, ""),
            ("", true, "!"),
            ("", false, ""),
        ];
        let (mut heard, mut unheard) = (run(), run());
        let mut built = 0;
        for (first, agent_only, more) in steps {
            for (r, hears) in [(&mut heard, true), (&mut unheard, false)] {
                r.text.push_str(first);
                let mut ev = Events::new(r, 0, hears);
                if agent_only {
                    ev.flush_agent_text();
                }
                ev.run.text.push_str(more);
                ev.flush_agent_text();
                ev.flush_chat_text();
                ev.status("preparing_context");
                ev.lifecycle("model", |r| json!({"seq": r.seq}));
                ev.agent("usage", |_| json!({}));
                ev.chat("status", |_| json!({}));
                let out = ev.into_built();
                if hears {
                    built += out.len();
                } else {
                    assert!(out.is_empty(), "nothing built for no one");
                }
            }
            assert_eq!(marks(&unheard), marks(&heard), "after {first:?} {more:?}");
        }
        assert_eq!(marks(&unheard), (13, 13, 21));
        assert_eq!(built, 3 * 2 + 6 * 5, "three text flushes on both streams");
    }
}
