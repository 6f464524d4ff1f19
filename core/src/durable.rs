//! Acknowledged durability: the store batches in flight to the host's writer, and the replies
//! that wait for them. A reply given while a batch is in flight is held until every batch
//! issued before it is acknowledged, so "ok" never runs ahead of the disk, and replies leave
//! in the order they were given.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::Value;

use crate::admission::Admitted;
use crate::close::CloseReason;
use crate::conn::ConnId;
use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::{Gateway, Output};
use crate::handshake::ConnectParams;
use crate::log::Level;
use crate::pairing::PairingStore;
use crate::persist::{StoreChange, diff};
use crate::work::{Work, WorkId, WorkResult};

/// What the gateway holds until the store has what it answers about.
pub(crate) enum Deferred {
    /// A method's answer.
    Response {
        conn: ConnId,
        req_id: String,
        result: Result<Value, ErrorShape>,
        /// What a failure reports beside its error (upstream's final `agent` answer).
        error_payload: Option<Value>,
    },
    /// A method's successful answer, its whole frame already written (a cached snapshot, a
    /// large read assembled from pieces serialised once): it leaves in its turn.
    Frame {
        conn: ConnId,
        req_id: String,
        text: String,
    },
    /// An admitted `connect` whose device or token the store must keep: `hello-ok` (with the
    /// device token) is sent only once it is durable; frames meanwhile are ignored.
    Hello {
        conn: ConnId,
        req_id: String,
        params: Box<ConnectParams>,
        hello: Box<Admitted>,
    },
    /// An agent run whose `chat.send` answer is held: it starts once that answer leaves.
    StartRun(u64),
    /// A channel step that waits for its rows (confirming an offset, sending a reply).
    Channel(crate::channels::Step),
    /// A run waiting in its lane whose call's answer is held: it leaves the lane if its
    /// pending input could not be stored.
    KeepQueued(u64),
    /// A command allowed always: it runs once its grant is durable.
    RunExec(crate::tools::CallId),
}

/// The error a held answer gets when the store could not write what it answers about.
fn not_saved() -> ErrorShape {
    ErrorShape::new(
        ErrorCode::Unavailable,
        "the change could not be saved to the gateway's store; see the gateway log",
    )
}

impl Gateway {
    /// The outcome of [`Work`] the gateway asked for with [`Output::Work`]. A store batch that
    /// is durable releases the answers that waited for it; one that failed answers them with
    /// an error, and on its next tick the gateway rewrites the pairing rows and replays the
    /// session changes no batch got onto the disk.
    pub fn handle_work_result(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        // Whatever a worker reports (a channel's poll, a tool provider) may change `health`.
        self.health_cache.invalidate();
        if self.is_history_read(id) {
            // Whatever a host answers a read with (one without a store acknowledges it).
            self.on_history(now, id, result);
            return;
        }
        if self.is_window_read(id) {
            self.on_window_read(now, id, result);
            return;
        }
        if self.tools.owns(id) {
            self.on_tool_work(now, id, result);
            return;
        }
        match result {
            WorkResult::Stored(outcome) => {
                if let Err(e) = &outcome {
                    self.log(
                        now,
                        Level::Error,
                        None,
                        format!("store write failed, will rewrite it: {e}"),
                    );
                }
                for (item, durable) in self.durable.settle(id, outcome.is_ok()) {
                    self.release(now, item, durable);
                }
            }
            WorkResult::HttpHead { .. } | WorkResult::HttpBody(_) | WorkResult::HttpEnd(_)
                if self.channels.owns(id) =>
            {
                self.on_channel_http(now, id, result);
            }
            WorkResult::HttpHead { .. }
            | WorkResult::HttpBody(_)
            | WorkResult::HttpEnd(_)
            | WorkResult::History(_) => {
                self.on_model_response(now, id, result);
            }
            WorkResult::File(read) => self.on_file_read(now, id, read),
            WorkResult::WsOpened | WorkResult::WsText(_) | WorkResult::WsClosed { .. } => {
                self.on_channel_ws(now, id, result);
            }
            // Only a command's work answers with this, and the router owns it.
            WorkResult::Exec(_) => {}
            WorkResult::Machine(info) => self.on_machine(now, id, info),
            WorkResult::ConfigEdited(r) if self.is_logout(id) => self.logout_edited(now, id, r),
            WorkResult::ConfigEdited(_) => {}
            // A process that is no MCP server's any more (stopped): nothing to do.
            WorkResult::ProcessLine(_) | WorkResult::ProcessExited(_) => {}
        }
    }

    /// Ask the host to write the changes since the last batch (pairing rows, sessions and
    /// messages), if any; after a failed write, every pairing row and the session changes
    /// not yet on disk.
    pub(crate) fn persist(&mut self) {
        self.persist_batch(false);
    }

    /// [`Gateway::persist`] for a batch whose follow-up comes at once (a gated channel turn's
    /// message, its model request out): the host may hold it briefly to commit the two in one
    /// transaction (see [`Work::Store`]'s `linger`).
    pub(crate) fn persist_lingering(&mut self) {
        self.persist_batch(true);
    }

    fn persist_batch(&mut self, linger: bool) {
        let id = self.next_work_id();
        let mut sessions = self.agent.store_changes();
        sessions.extend(self.channels.store_changes());
        sessions.extend(self.tools.exec.grants.store_changes());
        if let Some(changes) = self.durable.batch(id, &self.store, sessions) {
            self.out.push_back(Output::Work {
                id,
                work: Work::Store { changes, linger },
            });
            if let Some(step) = self.channels.step_after_batch() {
                // Held behind the batch just issued: in flight, so never handed back.
                let _ = self.durable.hold(Deferred::Channel(step));
            }
        }
    }

    /// A failed write left the disk behind and nothing is in flight: catch it up (on the tick,
    /// so a failing disk is retried at that pace, not spun on).
    pub(crate) fn retry_failed_store(&mut self) {
        if self.durable.wants_rewrite() {
            self.persist();
        }
    }

    /// Answer a request now, or once every store batch issued so far is durable.
    pub(crate) fn answer(
        &mut self,
        now: Instant,
        conn: ConnId,
        req_id: &str,
        result: Result<Value, ErrorShape>,
    ) {
        self.answer_with(now, conn, req_id, result, None);
    }

    /// [`Gateway::answer`], with a payload that a failure carries beside its error.
    pub(crate) fn answer_with(
        &mut self,
        now: Instant,
        conn: ConnId,
        req_id: &str,
        result: Result<Value, ErrorShape>,
        error_payload: Option<Value>,
    ) {
        let item = Deferred::Response {
            conn,
            req_id: req_id.to_string(),
            result,
            error_payload,
        };
        if let Err(item) = self.durable.hold(item) {
            self.release(now, item, true);
        }
    }

    /// [`Gateway::answer`] with a successful answer whose frame is written already.
    pub(crate) fn answer_frame(&mut self, now: Instant, conn: ConnId, req_id: &str, text: String) {
        if self.durable.is_settled() {
            // What `release` does with it: no copy of the id to hold it by.
            self.send_text(now, conn, text);
            return;
        }
        let req_id = req_id.to_string();
        if let Err(item) = self.durable.hold(Deferred::Frame { conn, req_id, text }) {
            self.release(now, item, true);
        }
    }

    /// Start agent run `serial` once every answer held before it has left (its `chat.send`
    /// answer among them), so its events follow that answer.
    pub(crate) fn start_run_when_durable(&mut self, now: Instant, serial: u64) {
        if let Err(item) = self.durable.hold(Deferred::StartRun(serial)) {
            self.release(now, item, true);
        }
    }

    /// Run a channel step once every batch issued so far is durable (at once when none is in
    /// flight).
    pub(crate) fn hold_channel_step(&mut self, now: Instant, step: crate::channels::Step) {
        if let Err(item) = self.durable.hold(Deferred::Channel(step)) {
            self.release(now, item, true);
        }
    }

    /// Run `serial` was admitted and its call answered (held): once every answer held before
    /// it has left, start it if it `holds` its lane; else it stays queued, or leaves the lane
    /// if a batch it waits for (its pending input's) failed.
    pub(crate) fn proceed_when_durable(&mut self, now: Instant, serial: u64, holds: bool) {
        if holds {
            self.start_run_when_durable(now, serial);
        } else {
            // Nothing in flight: its pending input is on disk already.
            let _ = self.durable.hold(Deferred::KeepQueued(serial));
        }
    }

    /// Run command call `call` (allowed always) once every batch issued so far is durable.
    pub(crate) fn run_exec_when_durable(&mut self, now: Instant, call: crate::tools::CallId) {
        if let Err(item) = self.durable.hold(Deferred::RunExec(call)) {
            self.release(now, item, true);
        }
    }

    /// Admit a connection now, or once the store has its device and token.
    pub(crate) fn admit_when_durable(
        &mut self,
        now: Instant,
        conn: ConnId,
        req_id: &str,
        params: ConnectParams,
        hello: Admitted,
    ) {
        let item = Deferred::Hello {
            conn,
            req_id: req_id.to_string(),
            params: Box::new(params),
            hello: Box::new(hello),
        };
        match self.durable.hold(item) {
            Ok(()) => self.hold_admission(conn),
            Err(item) => self.release(now, item, true),
        }
    }

    fn release(&mut self, now: Instant, item: Deferred, durable: bool) {
        match item {
            Deferred::Response {
                conn,
                req_id,
                result,
                error_payload,
            } => {
                if durable {
                    self.respond(now, conn, &req_id, result, error_payload);
                } else {
                    self.respond(now, conn, &req_id, Err(not_saved()), None);
                }
            }
            Deferred::Frame { conn, req_id, text } => {
                if durable {
                    self.send_text(now, conn, text);
                } else {
                    self.respond(now, conn, &req_id, Err(not_saved()), None);
                }
            }
            Deferred::Hello {
                conn,
                req_id,
                params,
                hello,
            } => {
                self.admission_released(conn);
                if durable {
                    self.finish_hello(now, conn, &req_id, *params, *hello);
                } else {
                    let err = not_saved();
                    let close = CloseReason::StoreUnavailable;
                    self.reject(now, conn, &req_id, err, Some(close));
                }
            }
            // A channel message's turn runs even when its batch failed (the rewrite that
            // follows replays it): dropping it would leave its chat's lane stuck.
            Deferred::StartRun(serial) if durable || self.is_channel_run(serial) => {
                self.start_run(now, serial)
            }
            Deferred::StartRun(serial) => self.drop_run(now, serial),
            Deferred::Channel(step) => self.channel_step(now, step, durable),
            Deferred::KeepQueued(_) if durable => {}
            Deferred::KeepQueued(serial) => self.drop_queued(serial),
            Deferred::RunExec(call) => self.granted_exec(now, call, durable),
        }
    }
}

/// The batches and held replies of one gateway. `H` is what the gateway holds (a response,
/// an admission).
///
/// After a failed write the disk holds a prefix of the batches (the host fails every batch
/// after a failure until the rewrite). The rewrite brings it back: the pairing store whole
/// (it is small and in memory anyway) and the session changes of every batch not
/// acknowledged, replayed in order (each is an idempotent put), so no transcript has to be in
/// memory to recover.
pub(crate) struct Durability<H> {
    /// The pairing store as the batches issued so far leave it.
    written: PairingStore,
    /// Issued and not yet acknowledged, oldest first.
    in_flight: VecDeque<WorkId>,
    /// The session changes of batches not acknowledged yet, oldest first.
    unacked: VecDeque<(WorkId, Vec<StoreChange>)>,
    /// Held replies: the last batch they wait for, whether a batch they wait for failed.
    held: VecDeque<(WorkId, bool, H)>,
    /// A batch failed: the next one rewrites the pairing rows and replays `unacked`.
    rewrite: bool,
}

impl<H> Durability<H> {
    /// Start from the store as it was loaded from disk.
    pub(crate) fn new(loaded: &PairingStore) -> Self {
        Durability {
            written: loaded.clone(),
            in_flight: VecDeque::new(),
            unacked: VecDeque::new(),
            held: VecDeque::new(),
            rewrite: false,
        }
    }

    /// The changes that bring the disk to `current`, then `more` (the sessions' changes), as
    /// batch `id`; `None` when there are none (the id is then unused). After a failure the
    /// batch starts with the pairing rewrite and replays the session changes not acknowledged.
    pub(crate) fn batch(
        &mut self,
        id: WorkId,
        current: &PairingStore,
        more: Vec<StoreChange>,
    ) -> Option<Vec<StoreChange>> {
        let mut changes = diff(&self.written, current, self.rewrite);
        if !changes.is_empty() {
            // Only when pairing changed: a batch of chat messages copies nothing.
            self.written = current.clone();
        }
        let mut sessions: Vec<StoreChange> = if self.rewrite {
            self.unacked.drain(..).flat_map(|(_, c)| c).collect()
        } else {
            Vec::new()
        };
        sessions.extend(more);
        changes.extend(sessions.iter().cloned());
        if changes.is_empty() {
            return None;
        }
        self.rewrite = false;
        self.in_flight.push_back(id);
        if !sessions.is_empty() {
            self.unacked.push_back((id, sessions));
        }
        Some(changes)
    }

    /// Session changes kept until their batch is acknowledged (for the replay).
    pub(crate) fn unacked_changes(&self) -> usize {
        self.unacked.iter().map(|(_, c)| c.len()).sum()
    }

    /// Whether no batch is in flight: what would be held leaves at once.
    pub(crate) fn is_settled(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Hold `item` until every batch issued so far is acknowledged; it comes back at once
    /// when none is in flight.
    pub(crate) fn hold(&mut self, item: H) -> Result<(), H> {
        match self.in_flight.back() {
            Some(last) => {
                self.held.push_back((*last, false, item));
                Ok(())
            }
            None => Err(item),
        }
    }

    /// Batch `id` is durable (`ok`) or failed. Returns the replies it releases, in the order
    /// they were held, each with whether everything it waited for is durable. An id that is
    /// not in flight releases nothing.
    pub(crate) fn settle(&mut self, id: WorkId, ok: bool) -> Vec<(H, bool)> {
        let Some(pos) = self.in_flight.iter().position(|b| *b == id) else {
            return Vec::new();
        };
        // Acknowledgements come in order; one that skips ahead settles the earlier ones too.
        self.in_flight.drain(..=pos);
        if ok {
            while self.unacked.front().is_some_and(|(b, _)| *b <= id) {
                self.unacked.pop_front();
            }
        } else {
            self.rewrite = true;
            for (_, failed, _) in &mut self.held {
                *failed = true;
            }
        }
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(waits, _, _)| *waits <= id) {
            if let Some((_, failed, item)) = self.held.pop_front() {
                released.push((item, !failed));
            }
        }
        released
    }

    /// A failed batch left the disk behind and no batch is in flight: the gateway should
    /// issue a rewrite now (it does on its tick, so a failing disk is retried, not spun on).
    pub(crate) fn wants_rewrite(&self) -> bool {
        self.rewrite && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::PendingRequest;

    fn with_pending(ids: &[&str]) -> PairingStore {
        let mut s = PairingStore::default();
        for id in ids {
            s.pending.insert(
                (*id).to_string(),
                PendingRequest {
                    request_id: (*id).to_string(),
                    kind: crate::pairing::PendingKind::Device,
                    device_id: format!("d-{id}"),
                    public_key: String::new(),
                    meta: Default::default(),
                    roles: vec![],
                    scopes: vec![],
                    caps: vec![],
                    commands: vec![],
                    remote_ip: None,
                    silent: false,
                    ts: 0,
                    expires_at_ms: 1,
                },
            );
        }
        s
    }

    #[test]
    fn replies_wait_for_every_batch_before_them_and_leave_in_order() {
        let mut d: Durability<&str> = Durability::new(&PairingStore::default());
        assert_eq!(d.hold("idle"), Err("idle"), "nothing in flight: answer now");
        assert!(
            d.batch(WorkId(1), &with_pending(&["a"]), Vec::new())
                .is_some()
        );
        d.hold("after 1").unwrap();
        assert!(
            d.batch(WorkId(2), &with_pending(&["a", "b"]), Vec::new())
                .is_some()
        );
        d.hold("after 2").unwrap();
        assert_eq!(d.settle(WorkId(1), true), vec![("after 1", true)]);
        assert_eq!(d.settle(WorkId(2), true), vec![("after 2", true)]);
        assert_eq!(d.hold("idle again"), Err("idle again"));
        assert!(
            d.settle(WorkId(9), true).is_empty(),
            "unknown ids release nothing"
        );
    }

    #[test]
    fn an_unchanged_store_issues_no_batch() {
        let mut d: Durability<()> = Durability::new(&with_pending(&["a"]));
        assert_eq!(d.batch(WorkId(1), &with_pending(&["a"]), Vec::new()), None);
        assert_eq!(d.hold(()), Err(()));
    }

    fn message(seq: u64) -> StoreChange {
        StoreChange::AppendMessage {
            session_key: "agent:main:main".into(),
            seq,
            message: crate::persist::RowText::of_value(
                &serde_json::json!({"role": "user", "content": "x"}),
            ),
        }
    }

    #[test]
    fn the_rewrite_replays_the_session_changes_not_acknowledged_in_order() {
        let mut d: Durability<()> = Durability::new(&PairingStore::default());
        let none = PairingStore::default();
        d.batch(WorkId(1), &none, vec![message(1)]).unwrap();
        d.batch(WorkId(2), &none, vec![message(2)]).unwrap();
        d.batch(WorkId(3), &none, vec![message(3)]).unwrap();
        assert!(d.settle(WorkId(1), true).is_empty());
        assert_eq!(d.unacked_changes(), 2, "batch 1 is on disk: not kept");
        d.settle(WorkId(2), false);
        d.settle(WorkId(3), false);
        assert!(d.wants_rewrite());
        let rewrite = d.batch(WorkId(4), &none, vec![message(4)]).unwrap();
        assert_eq!(
            rewrite,
            vec![
                StoreChange::ClearPairing,
                message(2),
                message(3),
                message(4)
            ]
        );
        assert_eq!(d.unacked_changes(), 3);
        d.settle(WorkId(4), true);
        assert_eq!(d.unacked_changes(), 0, "nothing is kept once it is on disk");
        assert_eq!(d.batch(WorkId(5), &none, Vec::new()), None);
    }

    #[test]
    fn a_failure_fails_what_waits_and_the_next_batch_rewrites_everything() {
        let mut d: Durability<&str> = Durability::new(&PairingStore::default());
        d.batch(WorkId(1), &with_pending(&["a"]), Vec::new())
            .unwrap();
        d.hold("waits on 1").unwrap();
        d.batch(WorkId(2), &with_pending(&["a", "b"]), Vec::new())
            .unwrap();
        d.hold("waits on 2").unwrap();
        assert_eq!(d.settle(WorkId(1), false), vec![("waits on 1", false)]);
        assert!(!d.wants_rewrite(), "batch 2 is still in flight");
        // The host fails batch 2 too (it follows a failure); it would have anyway.
        assert_eq!(d.settle(WorkId(2), true), vec![("waits on 2", false)]);
        assert!(d.wants_rewrite());
        let rewrite = d
            .batch(WorkId(3), &with_pending(&["a", "b"]), Vec::new())
            .unwrap();
        assert_eq!(rewrite.first(), Some(&StoreChange::ClearPairing));
        assert_eq!(rewrite.len(), 3);
        assert!(!d.wants_rewrite());
        d.hold("waits on 3").unwrap();
        assert_eq!(d.settle(WorkId(3), true), vec![("waits on 3", true)]);
    }
}
