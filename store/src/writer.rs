//! The one thread that owns the database. Batches arrive in order with an id; the thread
//! commits whatever has queued up in one transaction (one fsync for a burst) and reports
//! each id, in order, once its transaction is durable or has failed: a transaction's ids in
//! one report, so the loop is woken once per commit, not once per batch. After a failure it fails
//! every batch until one that starts with [`StoreChange::ClearPairing`] (the core's rewrite),
//! so the disk always holds a prefix of what was asked for, never a gap. History reads queue
//! with the batches and run in their turn, so a read sees every batch submitted before it.
//! A batch submitted to linger ([`Writer::submit_lingering`]: its follow-up is due at once)
//! is held by the handle, on the submitting thread, until the next job or a short bound
//! ([`LINGER`]; the owner asks when with [`Writer::due`] and sends it then with
//! [`Writer::flush_due`]), then handed over with that job, so the two share one transaction
//! and the thread is woken once for both; every other batch commits as soon as the thread
//! takes it.
//! Once no job has come for [`IDLE_RELEASE`], the thread hands back SQLite's page cache (a
//! burst fills it to its cap, and an idle gateway reads none of it) and calls its idle hook.
//!
//! Checkpoints (the WAL copied into the database file, which is synced) run here, after a
//! transaction's report, never inside its commit: at the first pause once the WAL holds
//! [`Checkpoints::at_pause`] frames, or at once, pause or not, at [`Checkpoints::bound`].
//! At its first pause (at start, or after start-up's commits) the thread makes the WAL file
//! [`Checkpoints::file_frames`] long, so that the commits up to the first checkpoint (and
//! every one after it, the WAL starting over in the same file) sync data only, not the file's
//! growth ([`Db::extend_wal`]).
//!
//! The thread parks as soon as its queue is empty, and the loop blocks in its poll while a
//! commit is in flight: each hand-off (job to the thread, report to the loop) is one wake-up,
//! about 10 µs p50 with both threads on one CPU and 40-55 µs when the scheduler puts them on
//! two (an idle vCPU of the bench's VM halts at once). Measured on Telegram hops and not kept:
//! the loop spinning in its poll for up to 400 µs while a commit is in flight (a writer woken
//! onto the loop's CPU waits the spin out, 350-410 µs; hop p50 and CPU per message worse), the
//! thread polling its queue after a commit (the next job comes 400 µs or more later in 90 % of
//! cases), and a pipe's "sync" wake-up in place of the channel's futex (the thread still lands
//! on the other, idle CPU as often).

use std::cell::RefCell;
use std::sync::mpsc::{RecvTimeoutError, SendError};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawgate_core::WorkId;
use clawgate_core::persist::{HistoryPage, HistoryQuery, StoreChange};

use crate::db::{Db, DbError};

/// A batch's outcome, reported by the writer thread.
#[derive(Debug)]
pub struct WriteDone {
    /// The id it was submitted with.
    pub id: WorkId,
    /// `Ok` once it is on disk; the error when nothing of it was written.
    pub result: Result<(), Arc<DbError>>,
}

/// What the writer thread reports: a batch written (or not), or a history read.
#[derive(Debug)]
pub enum StoreDone {
    /// A batch's outcome.
    Written(WriteDone),
    /// A read's outcome, with the id it was submitted with.
    Read(WorkId, Result<HistoryPage, DbError>),
}

/// A transaction takes no more queued jobs once it holds this many batches.
const MAX_GROUP: usize = 256;

/// How long a batch submitted to linger is held for the next job before it goes alone
/// ([`Writer::submit_lingering`]). The core flags the message of a gated channel turn started
/// alone (no other message ready behind it: a poll that brought one, a Slack or Discord event),
/// its model request already out: a model that answers at once has the answer's batch (the
/// transcript row, the reply's outbox row) queued within this bound, and the two commit in one
/// transaction, one sync where there were two in series before the reply could leave.
///
/// 2 ms: about twice what that takes with a local model that answers at once (the
/// bench's hop: the request reaches the model 0.34/0.38 ms p50/p99 after the poll's answer,
/// which answers in 0.18/0.52 ms; its answer is then read and processed), and a few times a
/// sync on this machine's disk (a 4 KiB append + fdatasync 0.24/0.45 ms p50/p99). What it
/// costs: a message whose model does not answer within it is durable up to 2 ms later, so
/// its receipt (the next `getUpdates` offset confirm, Slack's ack) and its turn's first
/// events move by that much; such an answer's own batch commits as before, behind at most
/// the message's sync.
pub const LINGER: Duration = Duration::from_millis(2);

/// How long the writer waits for a job before it hands back SQLite's page cache and calls
/// its idle hook. Back-to-back messages keep the cache; the first transaction after a pause
/// reads its few pages from the file again.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// When the writer checkpoints: by the WAL's length in frames (one a page written, about
/// 4 KiB each), counted after each commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    /// From this many frames, checkpoint once no job has come for [`Checkpoints::pause`]:
    /// between messages, not before the next one's commit.
    pub at_pause: u32,
    /// From this many frames, checkpoint right after the transaction's report, pause or not:
    /// the WAL's bound when jobs never pause (it may exceed it by one transaction's frames).
    pub bound: u32,
    /// How long without a job counts as a pause.
    pub pause: Duration,
    /// The WAL file's length, in frames, made at the first pause (zeros past what SQLite
    /// wrote): at least [`Checkpoints::at_pause`], so a WAL that is checkpointed at a pause
    /// never makes its file longer. 0 leaves the file as SQLite grows it.
    pub file_frames: u32,
}

impl Default for Checkpoints {
    /// 1000 frames (SQLite's own automatic checkpoint's threshold, about 4 MiB), a pause of
    /// 50 ms, a bound of 4000 frames (about 16 MiB), a WAL file of 1024 frames (4.03 MiB,
    /// what a gateway's WAL reaches anyway before its first checkpoint).
    fn default() -> Self {
        Checkpoints {
            at_pause: 1000,
            bound: 4000,
            pause: Duration::from_millis(50),
            file_frames: 1024,
        }
    }
}

/// The writer thread's handle. Dropping it (or [`Writer::close`]) waits until every batch
/// submitted so far is written and reported.
#[derive(Debug)]
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    held: RefCell<Held>,
}

/// The batches submitted to linger, not yet handed to the thread.
#[derive(Debug, Default)]
struct Held {
    batches: Vec<Batch>,
    /// When they go without a follow-up: the first's submission plus its bound.
    until: Option<Instant>,
    /// The ids of held batches the thread was gone for when they were handed over: never
    /// written nor reported ([`Writer::flush_due`] hands them back).
    lost: Vec<WorkId>,
}

impl Writer {
    /// Start the thread; `on_done` runs on it with the outcomes of every batch and read, in
    /// submission order: those of one transaction together, a read alone (it must not
    /// block: hand the outcomes to the event loop and return).
    pub fn spawn(
        db: Db,
        on_done: impl FnMut(Vec<StoreDone>) + Send + 'static,
    ) -> std::io::Result<Writer> {
        Self::spawn_with_idle(db, on_done, IDLE_RELEASE, || {})
    }

    /// As [`Writer::spawn`]; and once `idle` passes without a job after one, the thread
    /// hands back SQLite's page cache, then calls `on_idle` (where the host returns the freed
    /// memory to the system, off its event loop), once per pause.
    pub fn spawn_with_idle(
        db: Db,
        on_done: impl FnMut(Vec<StoreDone>) + Send + 'static,
        idle: Duration,
        on_idle: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Writer> {
        Self::spawn_with(db, on_done, Checkpoints::default(), idle, on_idle)
    }

    /// As [`Writer::spawn_with_idle`], checkpointing as `checkpoints` says.
    pub fn spawn_with(
        db: Db,
        on_done: impl FnMut(Vec<StoreDone>) + Send + 'static,
        checkpoints: Checkpoints,
        idle: Duration,
        on_idle: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("clawgate-store".into())
            .spawn(move || run(db, rx, on_done, checkpoints, (idle, on_idle)))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            held: RefCell::default(),
        })
    }

    /// Queue a batch (behind the held ones, in one hand-over). `false` when the thread is
    /// gone (it panicked): nothing will be written or reported for it.
    pub fn submit(&self, id: WorkId, changes: Vec<StoreChange>) -> bool {
        let mut batches = self.take_held();
        let held = batches.len();
        batches.push((id, changes));
        self.send_write(batches, held)
    }

    /// Queue a batch whose follow-up is due at once: it is held here (the thread is not
    /// woken for it) until the next [`Writer::submit`] or [`Writer::read`], which hands it
    /// over with its own job, so the two commit in one transaction, or until `bound`
    /// ([`LINGER`] in the gateway) has passed, when [`Writer::flush_due`] hands it over
    /// alone. Batches submitted this way while one is held wait with it, until the first's
    /// bound. `false` when the thread is gone.
    pub fn submit_lingering(&self, id: WorkId, changes: Vec<StoreChange>, bound: Duration) -> bool {
        if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
            return false;
        }
        let mut held = self.held.borrow_mut();
        held.until.get_or_insert_with(|| Instant::now() + bound);
        held.batches.push((id, changes));
        true
    }

    /// Queue a history read, answered after every batch submitted before it (the held ones
    /// handed over first). `false` when the thread is gone.
    pub fn read(&self, id: WorkId, query: HistoryQuery) -> bool {
        self.hand_over_held();
        self.jobs
            .as_ref()
            .is_some_and(|j| j.send(Job::Read(id, query)).is_ok())
    }

    /// When the held batches are to be handed over without a follow-up
    /// ([`Writer::flush_due`]), if any are held.
    pub fn due(&self) -> Option<Instant> {
        self.held.borrow().until
    }

    /// Hand the held batches over if their bound has passed at `now`. The ids of held
    /// batches the thread was gone for (here or at an earlier hand-over): nothing will be
    /// written or reported for them.
    pub fn flush_due(&self, now: Instant) -> Vec<WorkId> {
        if self.due().is_some_and(|at| at <= now) {
            self.hand_over_held();
        }
        std::mem::take(&mut self.held.borrow_mut().lost)
    }

    /// Hand the held batches, if any, over alone.
    fn hand_over_held(&self) {
        let held = self.take_held();
        if !held.is_empty() {
            let n = held.len();
            self.send_write(held, n);
        }
    }

    fn take_held(&self) -> Vec<Batch> {
        let mut held = self.held.borrow_mut();
        held.until = None;
        std::mem::take(&mut held.batches)
    }

    /// Hand `batches` over as one job; when the thread is gone, the ids of the first `held`
    /// of them (held here: no caller is told) are kept for [`Writer::flush_due`].
    fn send_write(&self, batches: Vec<Batch>, held: usize) -> bool {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(Job::Write(batches)),
            None => Err(SendError(Job::Write(batches))),
        };
        match sent {
            Ok(()) => true,
            Err(SendError(job)) => {
                if let Job::Write(batches) = job {
                    let lost = batches.iter().take(held).map(|(id, _)| *id);
                    self.held.borrow_mut().lost.extend(lost);
                }
                false
            }
        }
    }

    /// Wait until everything submitted (the held batches included) is written and reported,
    /// then stop the thread.
    pub fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.hand_over_held();
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

/// Batches handed over together (held ones and their follow-up), or a read.
enum Job {
    Write(Vec<Batch>),
    Read(WorkId, HistoryQuery),
}

/// A submitted batch.
type Batch = (WorkId, Vec<StoreChange>);

fn run(
    db: Db,
    rx: mpsc::Receiver<Job>,
    on_done: impl FnMut(Vec<StoreDone>),
    checkpoints: Checkpoints,
    (idle, mut on_idle): (Duration, impl FnMut()),
) {
    let mut thread = Thread {
        db,
        on_done,
        poisoned: None,
        checkpoints,
        short_wal: checkpoints.file_frames > 0,
    };
    let mut pending = match thread.at_pause(&rx, Duration::MAX) {
        Ok(None) => rx.recv().ok(),
        Ok(job) => job,
        Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => None,
    };
    while let Some(job) = pending.take() {
        match job {
            Job::Read(id, query) => {
                let result = thread.db.read_history(&query);
                (thread.on_done)(vec![StoreDone::Read(id, result)]);
            }
            Job::Write(mut group) => {
                // The batches queued behind it, up to a read, go in the same transaction.
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Job::Write(more)) => group.extend(more),
                        Ok(read) => {
                            pending = Some(read);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                thread.write(group);
                if thread.db.wal_frames() >= checkpoints.bound {
                    thread.checkpoint();
                }
            }
        }
        if pending.is_none() {
            pending = thread.wait(&rx, idle, &mut on_idle);
        }
    }
    // A clean stop starts the WAL over: the file kept for the next start holds one frame,
    // which that start reads back, not the frames of this run (copied again at its first
    // checkpoint).
    thread.checkpoint();
}

/// The writer thread's state.
struct Thread<F> {
    db: Db,
    on_done: F,
    /// The failure that stopped writing, until a rewrite batch arrives.
    poisoned: Option<Arc<DbError>>,
    checkpoints: Checkpoints,
    /// The WAL file is still to be made [`Checkpoints::file_frames`] long.
    short_wal: bool,
}

impl<F: FnMut(Vec<StoreDone>)> Thread<F> {
    /// The next job, or `None` once the handle is gone. A pause long enough does the pause's
    /// work ([`Thread::at_pause`]); `idle` without a job releases the page cache and calls
    /// `on_idle`, once.
    fn wait(
        &mut self,
        rx: &mpsc::Receiver<Job>,
        idle: Duration,
        on_idle: &mut impl FnMut(),
    ) -> Option<Job> {
        let since = Instant::now();
        match self.at_pause(rx, idle) {
            Ok(Some(job)) => return Some(job),
            Ok(None) => {}
            Err(_) => return None,
        }
        match rx.recv_timeout(idle.saturating_sub(since.elapsed())) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => {
                // A failed release leaves the cache as it was: nothing to report.
                let _ = self.db.release_cache();
                on_idle();
                rx.recv().ok()
            }
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// When there is work for a pause (the WAL file to make long, once; a long WAL to
    /// checkpoint), wait up to [`Checkpoints::pause`] (at most `limit`) for a job, and do the
    /// work if none came: never before a job that is waiting, so a start-up's burst of commits
    /// is not held behind it. The job that came, if any; an error once the handle is gone.
    fn at_pause(
        &mut self,
        rx: &mpsc::Receiver<Job>,
        limit: Duration,
    ) -> Result<Option<Job>, RecvTimeoutError> {
        if !self.short_wal && self.db.wal_frames() < self.checkpoints.at_pause {
            return Ok(None);
        }
        match rx.recv_timeout(self.checkpoints.pause.min(limit)) {
            Ok(job) => return Ok(Some(job)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(e) => return Err(e),
        }
        if std::mem::take(&mut self.short_wal) {
            // A failure leaves the file as it was: SQLite grows it as it needs.
            let _ = self.db.extend_wal(self.checkpoints.file_frames);
        }
        if self.db.wal_frames() >= self.checkpoints.at_pause {
            self.checkpoint();
        }
        Ok(None)
    }

    /// Checkpoint. A failure leaves the WAL as it was (every commit in it is durable): the
    /// next pause or commit past the bound tries again.
    fn checkpoint(&mut self) {
        let _ = self.db.checkpoint();
    }

    /// Write a group of batches: refused while poisoned up to the first rewrite, the rest in
    /// one transaction (a failure is shared by every batch in it: none of them was written).
    /// Every outcome of the group goes in one report.
    fn write(&mut self, mut group: Vec<Batch>) {
        let mut done = Vec::with_capacity(group.len());
        if let Some(e) = &self.poisoned {
            let rewrite = group
                .iter()
                .position(|(_, c)| c.first() == Some(&StoreChange::ClearPairing))
                .unwrap_or(group.len());
            let e = Arc::clone(e);
            done.extend(group.drain(..rewrite).map(|(id, _)| {
                StoreDone::Written(WriteDone {
                    id,
                    result: Err(Arc::clone(&e)),
                })
            }));
            if !group.is_empty() {
                self.poisoned = None;
            }
        }
        if !group.is_empty() {
            let ids: Vec<WorkId> = group.iter().map(|(id, _)| *id).collect();
            let changes: Vec<StoreChange> = group.into_iter().flat_map(|(_, c)| c).collect();
            let result = self.db.apply(&changes).map_err(Arc::new);
            if let Err(e) = &result {
                self.poisoned = Some(Arc::clone(e));
            }
            done.extend(ids.into_iter().map(|id| {
                StoreDone::Written(WriteDone {
                    id,
                    result: result.clone(),
                })
            }));
        }
        (self.on_done)(done);
    }
}
