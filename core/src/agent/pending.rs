//! Pending input: a message waiting in its session's lane is kept in the store until its run
//! starts, so a `started` answer is never given for a message a crash could lose. The row is
//! written with the call's answer held until it is durable, deleted in the batch that appends
//! the message to the transcript (or when the run is aborted), and read back at start into the
//! lanes, in the order the messages were queued.

use serde::Deserialize;
use serde_json::json;

use crate::config::QueueMode;
use crate::gateway::Gateway;
use crate::log::Level;
use crate::persist::{RowText, StoreChange, StoredPendingInput};

use super::run::Run;

/// The connection a restored run names as its origin: none is (its caller went with the
/// process that answered it).
const NO_CONN: crate::ConnId = crate::ConnId(0);

/// `run` leaves its lane's queue (it starts, or is aborted): the deletion of its pending
/// input, for the next batch. A run that never waited in its lane has none.
pub(crate) fn gone(run: &Run) -> Option<StoreChange> {
    run.queued
        .then(|| StoreChange::DeletePendingInput(run.run_id.clone()))
}

/// A pending input's row.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    session_key: String,
    message: String,
    queue_mode: QueueMode,
    queued_at: u64,
}

impl Gateway {
    /// Run `serial` waits in its lane: keep its message as pending input with the next batch.
    pub(crate) fn keep_pending(&mut self, serial: u64) {
        let Some(run) = self.agent.runs.get(&serial) else {
            return;
        };
        let row = RowText::of_value(&json!({
            "sessionKey": run.session_key,
            "message": run.message,
            "queueMode": run.mode.as_str(),
            "queuedAt": run.started_at,
        }));
        let run_id = run.run_id.clone();
        self.agent
            .unsaved
            .push(StoreChange::PutPendingInput { run_id, row });
    }

    /// The pending input of run `serial` could not be stored (its call got the error): it
    /// leaves its lane, and its row the store (after the rewrite that may replay it).
    pub(crate) fn drop_queued(&mut self, serial: u64) {
        let Some(key) = self
            .agent
            .runs
            .get(&serial)
            .filter(|r| r.queued)
            .map(|r| r.session_key.clone())
        else {
            return;
        };
        self.agent.lanes.dequeue(&key, serial);
        if let Some(run) = self.agent.remove(serial) {
            self.agent.unsaved.extend(gone(&run));
        }
    }

    /// Put the pending input the store kept back into the lanes (at start, after the
    /// sessions, before any connection), oldest first; they start as queued runs do. A row
    /// that does not decode is logged and left in the store.
    pub fn restore_pending_input(&mut self, rows: Vec<StoredPendingInput>) {
        let now = self.last_wake();
        for StoredPendingInput { run_id, row } in rows {
            let r = match Row::deserialize(&row) {
                Ok(r) if !self.agent.by_run_id.contains_key(&run_id) => r,
                Ok(_) => continue,
                Err(e) => {
                    let what = format!("pending input {run_id} does not decode, left: {e}");
                    self.log(now, Level::Warn, None, what);
                    continue;
                }
            };
            self.ensure_session(&r.session_key, r.queued_at);
            let serial = self.new_run(&run_id, &r.session_key, Some(NO_CONN), r.queued_at);
            if let Some(run) = self.agent.runs.get_mut(&serial) {
                run.message = r.message;
                run.mode = r.queue_mode;
                run.queued = true;
            }
            self.agent.lanes.enqueue(&r.session_key, serial, now);
        }
        self.drain_lanes(now);
    }
}
