//! The run engine's queue: how a run gets its session's lane. A `chat.send` or `agent` on a
//! free session starts at once; on a busy one it follows its `queueMode` (the call's, else
//! `messages.queue.mode`): `steer`, `followup` and `collect` wait in the lane (a queued run's
//! message reaches the transcript, and its events the clients, when it starts; `collect` runs
//! queued together start as one turn), `interrupt` aborts the run in progress and everything
//! queued, then starts. A run that ends in any way (answer, error, timeout, abort) frees the
//! lane, and the oldest queued run starts once the debounce since the last message queued is
//! over. A queued run that is aborted never reaches the model.

use std::time::Instant;

use serde_json::{Value, json};

use crate::config::QueueMode;
use crate::gateway::{Gateway, Timer};
use crate::persist::StoreChange;

use super::Event;
use super::lane::Next;
use super::pending;
use super::rpc::Outcome;
use super::run::Run;

/// The title of a collected turn (upstream's).
const COLLECT_TITLE: &str = "[Queued messages while agent was busy]";

/// The one user message of a turn that collects `messages` (upstream's layout).
fn collected(messages: &[String]) -> String {
    let mut blocks = vec![COLLECT_TITLE.to_string()];
    blocks.extend(
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| format!("---\nQueued #{}\n{m}", i + 1)),
    );
    blocks.join("\n\n")
}

/// An abort's outcome.
fn aborted() -> Outcome {
    Outcome::Ok {
        stop_reason: "rpc".into(),
        aborted: true,
        usage: None,
    }
}

impl Gateway {
    /// Whether session `key` can take one more queued run (a message beyond
    /// `messages.queue.cap` waiting is refused).
    pub(crate) fn lane_has_room(&self, key: &str, mode: QueueMode) -> bool {
        mode == QueueMode::Interrupt
            || self.agent.lanes.active(key).is_none()
            || self.agent.lanes.queued(key) < self.config.limits.max_queued_runs
    }

    /// Whether a message for session `key` would wait (its lane is held, or every global
    /// slot is taken) when `maxWaitingRuns` runs wait already.
    pub(crate) fn waiting_is_full(&self, key: &str, mode: QueueMode) -> bool {
        let limits = &self.config.limits;
        let lane_held = mode != QueueMode::Interrupt && self.agent.lanes.active(key).is_some();
        let would_wait = lane_held || self.agent.admission.running() >= limits.max_concurrent_runs;
        let waiting = self
            .agent
            .runs
            .len()
            .saturating_sub(self.agent.admission.running());
        would_wait && waiting >= limits.max_waiting_runs
    }

    /// Make run `run_id` for `message` on session `key` (which exists) and give it the lane:
    /// its serial and whether it holds the lane now (else it waits in it). `interrupt` first
    /// aborts the session's runs.
    pub(crate) fn admit_run(
        &mut self,
        now: Instant,
        (key, run_id, message): (&str, &str, &str),
        origin: Option<crate::ConnId>,
        mode: QueueMode,
    ) -> (u64, bool) {
        if mode == QueueMode::Interrupt && self.agent.lanes.active(key).is_some() {
            self.abort_runs(now, key, None);
        }
        let ts = self.unix_ms(now);
        let serial = self.new_run(run_id, key, origin, ts);
        let holds = self.agent.lanes.occupy(key, serial);
        if let Some(run) = self.agent.runs.get_mut(&serial) {
            run.message = message.to_string();
            run.mode = mode;
            run.queued = !holds;
        }
        if !holds {
            self.agent.lanes.enqueue(key, serial, now);
            // A channel message waits durably in its channel's ingress queue already.
            if origin.is_some() {
                self.keep_pending(serial);
            }
        }
        (serial, holds)
    }

    /// Run `serial` of session `key` ended or was dropped: free its global slot and its
    /// lane, and start what waits (for a slot first: they waited longer).
    pub(crate) fn lane_free(&mut self, now: Instant, key: &str, serial: u64) {
        self.agent.admission.release(serial);
        self.start_admitted(now);
        self.agent.lanes.release(key, serial);
        self.agent
            .evict_windows(self.config.limits.max_loaded_windows);
        self.drain_lane(now, key);
    }

    /// The lanes' debounce timer fired: start what may start.
    pub(crate) fn drain_lanes(&mut self, now: Instant) {
        for key in self.agent.lanes.waiting() {
            self.drain_lane(now, &key);
        }
    }

    fn drain_lane(&mut self, now: Instant, key: &str) {
        let debounce = self.config.limits.queue_debounce;
        let agent = &mut self.agent;
        let runs = &agent.runs;
        let collect = |s: u64| runs.get(&s).is_some_and(|r| r.mode == QueueMode::Collect);
        match agent.lanes.next(key, now, debounce, collect) {
            Next::Start(batch) => self.start_queued(now, batch),
            Next::At(at) => self.schedule(at, Timer::Lanes),
            Next::Idle => {}
        }
    }

    /// Queued runs left their lane's queue, the first holding the lane: store the message
    /// (the collected one when several), then start the first once that is durable.
    fn start_queued(&mut self, now: Instant, batch: Vec<u64>) {
        let Some((&first, rest)) = batch.split_first() else {
            return;
        };
        // Folded runs leave the table (their ids stay known, so a repeated key is in flight).
        let folded: Vec<Run> = rest
            .iter()
            .filter_map(|s| self.agent.runs.remove(s))
            .collect();
        // Their pending input leaves the store with the transcript append, in one batch.
        let gone: Vec<StoreChange> = folded
            .iter()
            .chain(self.agent.runs.get(&first))
            .filter_map(pending::gone)
            .collect();
        self.agent.unsaved.extend(gone);
        let ts = self.unix_ms(now);
        let Some(run) = self.agent.runs.get_mut(&first) else {
            return;
        };
        run.queued = false;
        run.was_queued = true;
        run.started_at = ts;
        let text = if folded.is_empty() {
            std::mem::take(&mut run.message)
        } else {
            let mut all = vec![std::mem::take(&mut run.message)];
            all.extend(folded.iter().map(|f| f.message.clone()));
            collected(&all)
        };
        run.folded = folded;
        let (key, run_id) = (run.session_key.clone(), run.run_id.clone());
        self.append_user(&key, &text, &run_id, ts);
        self.persist();
        self.start_run_when_durable(now, first);
    }

    /// Run `run` ended with `outcome` (its events are out, its transcript change issued): the
    /// runs folded into it end alike (a terminal `chat` event each), the waiters are
    /// answered, and the lane goes to the next run.
    pub(crate) fn finish_run(&mut self, now: Instant, mut run: Run, outcome: Outcome) {
        let (key, serial) = (run.session_key.clone(), run.serial);
        let folded = std::mem::take(&mut run.folded);
        let text = run.text.clone();
        self.run_ended(now, run, outcome.clone());
        for mut f in folded {
            // Its answer is the turn's.
            f.text.clone_from(&text);
            self.agent.by_run_id.remove(&f.run_id);
            let event = match &outcome {
                Outcome::Ok {
                    aborted: true,
                    stop_reason,
                    ..
                } => f.chat("aborted", json!({"stopReason": stop_reason})),
                Outcome::Ok { stop_reason, .. } => {
                    f.chat("final", json!({"stopReason": stop_reason}))
                }
                Outcome::Error(e) => f.chat("error", json!({"errorMessage": e})),
            };
            self.show(now, serial, f.audience(), vec![event]);
            self.run_ended(now, f, outcome.clone());
        }
        self.lane_free(now, &key, serial);
    }

    /// Abort the runs of `session_key` (only `run_id` when given): queued ones first (they
    /// leave the queue without reaching the model), then the one in progress (its request is
    /// cancelled). Each ends `aborted`. Returns their run ids.
    pub(crate) fn abort_runs(
        &mut self,
        now: Instant,
        session_key: &str,
        run_id: Option<&str>,
    ) -> Vec<String> {
        let matching =
            |r: &Run| r.session_key == session_key && run_id.is_none_or(|id| r.run_id == id);
        let mut queued: Vec<u64> = match run_id {
            None => self.agent.lanes.take_queued(session_key),
            Some(_) => {
                let found: Vec<u64> = self
                    .agent
                    .runs
                    .values()
                    .filter(|r| r.queued && matching(r))
                    .map(|r| r.serial)
                    .collect();
                for s in &found {
                    self.agent.lanes.dequeue(session_key, *s);
                }
                found
            }
        };
        // A run waiting for a global slot has not started either.
        let admission = &self.agent.admission;
        queued.extend(
            self.agent
                .runs
                .values()
                .filter(|r| matching(r) && admission.is_waiting(r.serial))
                .map(|r| r.serial),
        );
        let mut ids = Vec::new();
        for serial in queued {
            if let Some(run) = self.agent.remove(serial) {
                self.agent.unsaved.extend(pending::gone(&run));
                let event = run.chat("aborted", json!({"stopReason": "rpc"}));
                self.emit(now, run.audience(), [event]);
                if run.origin.is_none() {
                    self.channel_turn_ended(now, &run.run_id, None);
                }
                ids.push(run.run_id.clone());
                self.finish_run(now, run, aborted());
            }
        }
        let active: Vec<u64> = self
            .agent
            .runs
            .values()
            .filter(|r| !r.queued && matching(r))
            .map(|r| r.serial)
            .collect();
        let ts = self.unix_ms(now);
        let mut ended = Vec::new();
        for serial in active {
            let Some(mut run) = self.agent.remove(serial) else {
                continue;
            };
            self.cancel_request(&run);
            let mut ev: Vec<Event> = run.flush_agent_text(ts).into_iter().collect();
            let end = json!({"stopReason": "rpc", "aborted": true, "startedAt": run.started_at, "endedAt": ts});
            ev.push(run.lifecycle(ts, "end", end));
            let mut fields = json!({"stopReason": "rpc"});
            if !run.text.is_empty()
                && let Value::Object(f) = &mut fields
            {
                f.insert("message".into(), run.message(ts));
            }
            ev.push(run.chat("aborted", fields));
            self.show(now, serial, run.audience(), ev);
            if !run.text.is_empty() {
                self.append(&run.session_key, run.message(ts), ts, Some(&run.run_id));
            }
            if run.origin.is_none() {
                let partial = (!run.text.is_empty()).then(|| run.text.clone());
                self.channel_turn_ended(now, &run.run_id, partial);
            }
            ids.push(run.run_id.clone());
            ended.push(run);
        }
        self.persist();
        for run in ended {
            self.finish_run(now, run, aborted());
        }
        ids
    }

    /// Whether run `run_id` waits in its lane or for a global slot.
    pub(crate) fn is_queued(&self, run_id: &str) -> bool {
        self.agent
            .by_run_id
            .get(run_id)
            .and_then(|s| self.agent.runs.get(s))
            .is_some_and(|r| r.queued || self.agent.admission.is_waiting(r.serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collected_turn_is_laid_out_as_upstreams() {
        assert_eq!(
            collected(&["one".into(), "two".into()]),
            "[Queued messages while agent was busy]\n\n---\nQueued #1\none\n\n---\nQueued #2\ntwo"
        );
    }
}
