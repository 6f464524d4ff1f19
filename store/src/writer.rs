//! The one thread that writes the database. Batches arrive in order with an id; the thread
//! commits whatever has queued up in one transaction (one fsync for a burst) and reports
//! each id, in order, once its transaction is durable or has failed. After a failure it fails
//! every batch until one that starts with [`StoreChange::ClearPairing`] (the core's rewrite),
//! so the disk always holds a prefix of what was asked for, never a gap.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use clawgate_core::WorkId;
use clawgate_core::persist::StoreChange;

use crate::db::{Db, DbError};

/// A batch's outcome, reported by the writer thread.
#[derive(Debug)]
pub struct WriteDone {
    /// The id it was submitted with.
    pub id: WorkId,
    /// `Ok` once it is on disk; the error when nothing of it was written.
    pub result: Result<(), Arc<DbError>>,
}

/// Batches at most this many submissions in one transaction.
const MAX_GROUP: usize = 256;

/// The writer thread's handle. Dropping it (or [`Writer::close`]) waits until every batch
/// submitted so far is written and reported.
#[derive(Debug)]
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start the thread; `on_done` runs on it for every batch, in submission order (it must
    /// not block: hand the outcome to the event loop and return).
    pub fn spawn(
        db: Db,
        on_done: impl FnMut(WriteDone) + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("clawgate-store".into())
            .spawn(move || run(db, rx, on_done))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queue a batch. `false` when the thread is gone (it panicked): nothing will be written
    /// or reported for it.
    pub fn submit(&self, id: WorkId, changes: Vec<StoreChange>) -> bool {
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

/// A submitted batch.
type Job = (WorkId, Vec<StoreChange>);

fn run(db: Db, rx: mpsc::Receiver<Job>, on_done: impl FnMut(WriteDone)) {
    let mut thread = Thread {
        db,
        on_done,
        poisoned: None,
    };
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        thread.write(group);
    }
}

/// The writer thread's state.
struct Thread<F> {
    db: Db,
    on_done: F,
    /// The failure that stopped writing, until a rewrite batch arrives.
    poisoned: Option<Arc<DbError>>,
}

impl<F: FnMut(WriteDone)> Thread<F> {
    /// Write a group of batches: refused while poisoned up to the first rewrite, the rest in
    /// one transaction (a failure is shared by every batch in it: none of them was written).
    fn write(&mut self, mut group: Vec<Job>) {
        if let Some(e) = &self.poisoned {
            let rewrite = group
                .iter()
                .position(|(_, c)| c.first() == Some(&StoreChange::ClearPairing))
                .unwrap_or(group.len());
            let e = Arc::clone(e);
            for (id, _) in group.drain(..rewrite) {
                (self.on_done)(WriteDone {
                    id,
                    result: Err(Arc::clone(&e)),
                });
            }
            if group.is_empty() {
                return;
            }
            self.poisoned = None;
        }
        let changes: Vec<StoreChange> = group.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        let result = self.db.apply(&changes).map_err(Arc::new);
        if let Err(e) = &result {
            self.poisoned = Some(Arc::clone(e));
        }
        for (id, _) in group {
            (self.on_done)(WriteDone {
                id,
                result: result.clone(),
            });
        }
    }
}
