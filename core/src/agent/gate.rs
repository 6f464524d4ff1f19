//! A turn started ahead of its commit. A channel message's turn sends its model request in
//! the step that queues the batch storing the message, so the request and the commit run at
//! once; until that batch is settled the turn is gated. A gated turn runs: its model response
//! is processed as it comes, and its answer (or failure), the message served and the reply's
//! outbox row go in the next batch, queued behind the first (the host may commit the two in
//! one transaction). But nothing of it shows or acts outside the gateway: its `chat` and
//! `agent` events, the `session.message` events of its session's appends and a tool round's
//! start wait here in order, and play out when the gate opens (the batch durable, or failed:
//! a failed batch is rewritten, and the turn goes on as it always did). The reply's send
//! waits for its own batch, which is behind the first. A gate outlives its run: a turn that
//! ended while gated leaves what it held here until its batch settles. A kill before that
//! leaves nothing anyone saw: the message is not confirmed to its transport, comes again,
//! and is answered once.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use crate::gateway::Gateway;
use crate::model::openai::Completion;

use super::run::{Audience, Event};

/// The closed gates, by the serial of the run they gate.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    gates: BTreeMap<u64, Gate>,
}

/// What a gated run holds back, oldest first.
#[derive(Debug)]
struct Gate {
    /// The run's session (whose `session.message` events wait here too).
    session_key: String,
    held: Vec<Held>,
}

/// One thing a gated run holds back.
#[derive(Debug)]
enum Held {
    /// Events for an audience.
    Events(Audience, Vec<Event>),
    /// A `session.message` payload for the session's message audience.
    Message(Value),
    /// A model answer that calls tools: its round starts when the gate opens.
    ToolRound(Completion),
}

impl Gates {
    /// Hold `events` for `audience` if run `serial` is gated; else give them back.
    fn hold_events(
        &mut self,
        serial: u64,
        audience: Audience,
        events: Vec<Event>,
    ) -> Option<(Audience, Vec<Event>)> {
        match self.gates.get_mut(&serial) {
            Some(gate) => {
                if !events.is_empty() {
                    gate.held.push(Held::Events(audience, events));
                }
                None
            }
            None => Some((audience, events)),
        }
    }

    /// Hold a `session.message` payload of session `key` in the newest closed gate of a run
    /// of that session, if any; else give it back.
    pub(super) fn hold_message(&mut self, key: &str, payload: Value) -> Option<Value> {
        match self.gates.values_mut().rev().find(|g| g.session_key == key) {
            Some(gate) => {
                gate.held.push(Held::Message(payload));
                None
            }
            None => Some(payload),
        }
    }

    /// Hold the tool-calling answer `done` of run `serial` if it is gated; else give it back.
    pub(super) fn hold_tool_round(&mut self, serial: u64, done: Completion) -> Option<Completion> {
        match self.gates.get_mut(&serial) {
            Some(gate) => {
                gate.held.push(Held::ToolRound(done));
                None
            }
            None => Some(done),
        }
    }
}

impl Gateway {
    /// Start run `serial` gated: its model request leaves now, what it shows or starts
    /// waits for [`Gateway::open_gate`].
    pub(crate) fn start_run_gated(&mut self, now: Instant, serial: u64) {
        let Some(run) = self.agent.runs.get(&serial) else {
            return;
        };
        let gate = Gate {
            session_key: run.session_key.clone(),
            held: Vec::new(),
        };
        self.agent.gates.gates.insert(serial, gate);
        self.start_run(now, serial);
    }

    /// Whether run `serial` is live with its model request out.
    pub(crate) fn awaits_model(&self, serial: u64) -> bool {
        self.agent
            .runs
            .get(&serial)
            .is_some_and(|r| r.work.is_some())
    }

    /// The gate of run `serial` opens (the batch it waited for is settled): what it held
    /// plays out in order, whether the run is still going or ended meanwhile.
    pub(crate) fn open_gate(&mut self, now: Instant, serial: u64) {
        let Some(gate) = self.agent.gates.gates.remove(&serial) else {
            return;
        };
        for held in gate.held {
            match held {
                Held::Events(audience, events) => self.emit(now, audience, events),
                Held::Message(payload) => {
                    let audience = self.agent.subscribers.message_audience(&gate.session_key);
                    self.broadcast_to(now, "session.message", &payload, &audience);
                }
                Held::ToolRound(done) => self.complete_run(now, serial, done),
            }
        }
    }

    /// Show run `serial`'s `events` to `audience`: now, or when its gate opens.
    pub(super) fn show(
        &mut self,
        now: Instant,
        serial: u64,
        audience: Audience,
        events: Vec<Event>,
    ) {
        if let Some((audience, events)) = self.agent.gates.hold_events(serial, audience, events) {
            self.emit(now, audience, events);
        }
    }
}
