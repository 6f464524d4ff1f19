//! The one thread that writes the database. Batches arrive in order with an id; the thread
//! commits whatever has queued up in one transaction (one fsync for a burst) and reports
//! each id, in order, once its transaction is durable or has failed.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use clawgate_core::persist::StoreChange;

use crate::db::{Db, DbError};

/// A batch's outcome, reported by the writer thread.
#[derive(Debug)]
pub struct WriteDone {
    /// The id it was submitted with.
    pub id: u64,
    /// `Ok` once it is on disk; the error when nothing of it was written.
    pub result: Result<(), Arc<DbError>>,
}

/// Batches at most this many submissions in one transaction.
const MAX_GROUP: usize = 256;

/// The writer thread's handle. Dropping it (or [`Writer::close`]) waits until every batch
/// submitted so far is written and reported.
#[derive(Debug)]
pub struct Writer {
    jobs: Option<mpsc::Sender<(u64, Vec<StoreChange>)>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start the thread; `on_done` runs on it for every batch, in submission order (it must
    /// not block: hand the outcome to the event loop and return).
    pub fn spawn(db: Db, on_done: impl FnMut(WriteDone) + Send + 'static) -> Writer {
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("clawgate-store".into())
            .spawn(move || run(db, rx, on_done))
            .ok();
        Writer {
            jobs: thread.is_some().then_some(jobs),
            thread,
        }
    }

    /// Queue a batch. `false` when the thread is gone (it could not start): nothing will be
    /// written or reported for it.
    pub fn submit(&self, id: u64, changes: Vec<StoreChange>) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|j| j.send((id, changes)).is_ok())
    }

    /// Wait until everything submitted is written and reported, then stop the thread.
    pub fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(
    mut db: Db,
    rx: mpsc::Receiver<(u64, Vec<StoreChange>)>,
    mut on_done: impl FnMut(WriteDone),
) {
    while let Ok(first) = rx.recv() {
        let mut ids = vec![first.0];
        let mut changes = first.1;
        while ids.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok((id, more)) => {
                    ids.push(id);
                    changes.extend(more);
                }
                Err(_) => break,
            }
        }
        // A failure is shared by every batch of the transaction: none of them was written.
        let result = db.apply(&changes).map_err(Arc::new);
        for id in ids {
            on_done(WriteDone {
                id,
                result: result.clone(),
            });
        }
    }
}
