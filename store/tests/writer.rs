//! The writer thread's grouping: batches queued behind a transaction go in the next one.
//! Its linger: a batch submitted to linger is held by the handle until the next job (or its
//! bound) and commits with it in one transaction; every other batch commits at once.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use clawgate_core::WorkId;
use clawgate_core::pairing::PendingKind;
use clawgate_core::pairing::PendingRequest;
use clawgate_core::persist::{HistoryQuery, HistoryRange};
use clawgate_store::{Db, StoreChange, StoreDone, Writer};
use clawgate_tests::tempdir::TempDir;

/// Long enough that a test never sees it run out unless it waits for that.
const LONG: Duration = Duration::from_secs(600);
/// How long a test waits for a report it expects.
const WAIT: Duration = Duration::from_secs(20);
/// How long a test lets pass before the next job, to show what came without waiting.
const GAP: Duration = Duration::from_millis(200);

/// A batch that puts one pending pairing request.
fn batch(i: u64) -> Vec<StoreChange> {
    vec![StoreChange::PutPending(PendingRequest {
        request_id: format!("r{i}"),
        kind: PendingKind::Device,
        device_id: format!("d{i}"),
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
    })]
}

/// A writer whose reports arrive, one `Vec` of ids per report, with when they came.
fn writer(dir: &TempDir) -> (Writer, mpsc::Receiver<(Vec<u64>, Instant)>) {
    let (tx, rx) = mpsc::channel();
    let writer = Writer::spawn(Db::open(dir.path()).unwrap(), move |group| {
        let ids = group
            .into_iter()
            .map(|d| match d {
                StoreDone::Written(w) => {
                    assert!(w.result.is_ok(), "{:?}", w.result);
                    w.id.0
                }
                StoreDone::Read(id, _) => id.0,
            })
            .collect();
        tx.send((ids, Instant::now())).unwrap();
    })
    .unwrap();
    (writer, rx)
}

/// A flagged batch and the batch that comes within its bound commit in one transaction:
/// one report for both.
#[test]
fn a_lingering_batch_and_the_next_commit_together() {
    let dir = TempDir::new("writer-linger");
    let (w, reports) = writer(&dir);
    assert!(w.submit_lingering(WorkId(1), batch(1), LONG));
    std::thread::sleep(GAP);
    assert!(w.submit(WorkId(2), batch(2)));
    let (ids, _) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(ids, [1, 2], "one transaction, one report");
    w.close();
    let pending = Db::open(dir.path())
        .unwrap()
        .load_pairing()
        .unwrap()
        .pending;
    assert_eq!(pending.len(), 2);
}

/// A batch submitted without the flag never waits: it commits alone though the next comes
/// soon after; a group that holds one does not wait either.
#[test]
fn an_unflagged_batch_does_not_wait() {
    let dir = TempDir::new("writer-no-linger");
    let (w, reports) = writer(&dir);
    assert!(w.submit(WorkId(1), batch(1)));
    let (ids, _) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(ids, [1], "committed alone, at once");
    std::thread::sleep(GAP);
    assert!(w.submit(WorkId(2), batch(2)));
    let (ids, _) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(ids, [2]);
    w.close();
}

/// A flagged batch followed by another flagged one keeps waiting (with the first's bound)
/// until an unflagged batch comes: the three in one transaction.
#[test]
fn flagged_batches_wait_together_for_the_next_unflagged_one() {
    let dir = TempDir::new("writer-linger-two");
    let (w, reports) = writer(&dir);
    assert!(w.submit_lingering(WorkId(1), batch(1), LONG));
    std::thread::sleep(GAP);
    assert!(w.submit_lingering(WorkId(2), batch(2), LONG));
    std::thread::sleep(GAP);
    assert!(w.submit(WorkId(3), batch(3)));
    let (ids, _) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(ids, [1, 2, 3]);
    w.close();
}

/// The bound ends the wait: with no next job the flagged batch is due at its bound, not
/// before, and handed over alone then.
#[test]
fn a_lingering_batch_commits_alone_at_its_bound() {
    let dir = TempDir::new("writer-linger-bound");
    let (w, reports) = writer(&dir);
    let bound = Duration::from_millis(300);
    let sent = Instant::now();
    assert!(w.submit_lingering(WorkId(1), batch(1), bound));
    let due = w.due().expect("held until its bound");
    assert!(due >= sent + bound && due <= Instant::now() + bound);
    assert_eq!(w.flush_due(sent), [], "nothing lost");
    assert!(reports.recv_timeout(GAP).is_err(), "not before its bound");
    assert_eq!(w.flush_due(due), []);
    assert_eq!(w.due(), None);
    let (ids, _) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(ids, [1]);
    w.close();
}

/// A flagged batch is held by the handle, not handed to the thread, until the next job: the
/// thread, given nothing meanwhile, goes idle (its idle hook runs) instead of being woken
/// to wait for the follow-up, and takes both at once.
#[test]
fn a_flagged_batch_goes_to_the_thread_with_the_next_job() {
    let dir = TempDir::new("writer-linger-held");
    let (tx, reports) = mpsc::channel();
    let (idle_tx, idles) = mpsc::channel();
    let w = Writer::spawn_with_idle(
        Db::open(dir.path()).unwrap(),
        move |group| {
            let ids: Vec<u64> = group
                .into_iter()
                .map(|d| match d {
                    StoreDone::Written(w) => w.id.0,
                    StoreDone::Read(id, _) => id.0,
                })
                .collect();
            tx.send(ids).unwrap();
        },
        Duration::from_millis(100),
        move || {
            let _ = idle_tx.send(());
        },
    )
    .unwrap();
    assert!(w.submit(WorkId(0), batch(0)));
    assert_eq!(reports.recv_timeout(WAIT).unwrap(), [0]);
    assert!(w.submit_lingering(WorkId(1), batch(1), LONG));
    idles
        .recv_timeout(WAIT)
        .expect("the thread went idle: it has no job");
    assert!(w.due().is_some());
    assert!(w.submit(WorkId(2), batch(2)));
    assert_eq!(w.due(), None);
    assert_eq!(reports.recv_timeout(WAIT).unwrap(), [1, 2]);
    w.close();
}

/// Closing hands the held batches over: they are written and reported.
#[test]
fn closing_writes_the_held_batches() {
    let dir = TempDir::new("writer-linger-close");
    let (w, reports) = writer(&dir);
    assert!(w.submit_lingering(WorkId(1), batch(1), LONG));
    w.close();
    assert_eq!(reports.recv_timeout(WAIT).unwrap().0, [1]);
    let pending = Db::open(dir.path())
        .unwrap()
        .load_pairing()
        .unwrap()
        .pending;
    assert_eq!(pending.len(), 1);
}

/// A read ends the wait: the flagged batch commits (alone) and the read follows it.
#[test]
fn a_read_ends_the_wait() {
    let dir = TempDir::new("writer-linger-read");
    let (w, reports) = writer(&dir);
    assert!(w.submit_lingering(WorkId(1), batch(1), LONG));
    std::thread::sleep(GAP);
    let query = HistoryQuery {
        session_key: "agent:main:main".into(),
        range: HistoryRange::Tail {
            offset: 0,
            limit: 10,
        },
        max_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
    };
    assert!(w.read(WorkId(2), query));
    assert_eq!(reports.recv_timeout(WAIT).unwrap().0, [1]);
    assert_eq!(reports.recv_timeout(WAIT).unwrap().0, [2]);
    w.close();
}

/// A writer whose reports arrive one `Vec` of ids per report, and which, once it has reported
/// the batch with id 0, waits in that report until the test sends on the returned sender (so
/// the test can queue batches behind a transaction in progress).
fn held_after_first(dir: &TempDir) -> (Writer, mpsc::Receiver<Vec<u64>>, mpsc::Sender<()>) {
    let (tx, reports) = mpsc::channel();
    let (hold, held) = mpsc::channel::<()>();
    let w = Writer::spawn(Db::open(dir.path()).unwrap(), move |group| {
        let ids: Vec<u64> = group
            .into_iter()
            .map(|d| match d {
                StoreDone::Written(w) => w.id.0,
                StoreDone::Read(id, _) => id.0,
            })
            .collect();
        let first = ids == [0];
        tx.send(ids).unwrap();
        if first {
            // The writer waits here until the test has queued the next batches.
            held.recv().unwrap();
        }
    })
    .unwrap();
    (w, reports, hold)
}

/// Batches queued while a transaction is written go in the next one, and their outcomes
/// come in one report (the loop is woken once for them).
#[test]
fn a_transaction_reports_its_batches_together() {
    let dir = TempDir::new("store-group");
    let (w, reports, hold) = held_after_first(&dir);
    assert!(w.submit(WorkId(0), batch(0)));
    assert_eq!(reports.recv_timeout(WAIT).unwrap(), [0]);
    for i in 1..=5 {
        assert!(w.submit(WorkId(i), batch(i)));
    }
    hold.send(()).unwrap();
    assert_eq!(reports.recv_timeout(WAIT).unwrap(), [1, 2, 3, 4, 5]);
    w.close();
}

/// An unflagged batch never waits, though a flagged one was submitted right behind it: it
/// commits at once, and the flagged one waits for its own follow-up.
#[test]
fn an_unflagged_batch_before_a_flagged_one_does_not_wait() {
    let dir = TempDir::new("writer-linger-mixed");
    let (w, reports, hold) = held_after_first(&dir);
    assert!(w.submit(WorkId(0), batch(0)));
    assert_eq!(reports.recv_timeout(WAIT).unwrap(), [0]);
    assert!(w.submit(WorkId(1), batch(1)));
    assert!(w.submit_lingering(WorkId(2), batch(2), LONG));
    hold.send(()).unwrap();
    assert_eq!(
        reports.recv_timeout(WAIT).unwrap(),
        [1],
        "committed at once"
    );
    assert!(w.submit(WorkId(3), batch(3)));
    assert_eq!(reports.recv_timeout(WAIT).unwrap(), [2, 3]);
    w.close();
}
