//! A turn started ahead of its commit. A channel message's turn sends its model request in
//! the step that queues the batch storing the message, so the request and the commit run at
//! once; until that batch is acknowledged the turn is gated: nothing of it shows or acts.
//! Its events, the pieces of the model's response and a failure wait here in order, and
//! play out when the gate opens (the batch durable, or failed: a failed batch is rewritten,
//! and the turn runs anyway as it always did). A kill before that leaves nothing anyone saw:
//! the message is not confirmed to its transport, comes again, and is answered once.

use std::time::Instant;

use crate::gateway::Gateway;
use crate::work::{WorkId, WorkResult};

use super::Failure;
use super::run::Event;

/// What a gated run holds back, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    held: Vec<Held>,
}

/// One thing a gated run holds back.
#[derive(Debug)]
enum Held {
    /// Events for its audience.
    Events(Vec<Event>),
    /// A piece of its model response.
    Response(WorkId, WorkResult),
    /// Its failure.
    Failure(Failure),
}

impl Gate {
    /// Hold `events`.
    pub(super) fn events(&mut self, events: Vec<Event>) {
        if !events.is_empty() {
            self.held.push(Held::Events(events));
        }
    }

    /// Hold a piece of the model response to request `id`.
    pub(super) fn response(&mut self, id: WorkId, result: WorkResult) {
        self.held.push(Held::Response(id, result));
    }

    /// Hold the run's failure.
    pub(super) fn failure(&mut self, failure: Failure) {
        self.held.push(Held::Failure(failure));
    }
}

impl Gateway {
    /// Start run `serial` gated: its model request leaves now, the rest waits for
    /// [`Gateway::open_gate`].
    pub(crate) fn start_run_gated(&mut self, now: Instant, serial: u64) {
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        run.gate = Some(Gate::default());
        self.start_run(now, serial);
    }

    /// The gate of run `serial` opens (the batch it waited for is settled): what it held
    /// plays out in order, and the run goes on ungated.
    pub(crate) fn open_gate(&mut self, now: Instant, serial: u64) {
        let Some(gate) = self.agent.runs.get_mut(&serial).and_then(|r| r.gate.take()) else {
            return;
        };
        for held in gate.held {
            match held {
                Held::Events(events) => {
                    if let Some(audience) = self.agent.runs.get(&serial).map(|r| r.audience()) {
                        self.emit(now, audience, events);
                    }
                }
                Held::Response(id, result) => self.on_model_response(now, id, result),
                Held::Failure(failure) => self.fail_run(now, serial, failure),
            }
        }
    }

    /// The gate of run `serial`, if it is gated.
    pub(super) fn gate_of(&mut self, serial: u64) -> Option<&mut Gate> {
        self.agent.runs.get_mut(&serial)?.gate.as_mut()
    }
}
