//! The WAL kept from one run to the next (SQLite's persistent WAL): a start finds the file at
//! the length the last run made and writes no zeros again; a clean stop leaves it holding
//! one frame; whatever it holds is never read as content: every start, after a clean stop
//! or a kill -9 (a child process of this test), has exactly the acknowledged rows, and a
//! new database built where one was removed reads nothing of a WAL left beside it.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clawgate_core::WorkId;
use clawgate_core::persist::{HistoryQuery, HistoryRange};
use clawgate_store::{Checkpoints, Db, StoreChange, StoreDone, Writer, db_path};
use clawgate_tests::tempdir::TempDir;

/// A WAL file's header, bytes.
const WAL_HEADER: usize = 32;
/// A WAL frame: its 24-byte header, then a 4 KiB page.
const FRAME: usize = 24 + 4096;
/// Where a child process of a test keeps its store (set only in the child).
const CHILD_DIR: &str = "CLAWGATE_STORE_TEST_CHILD_DIR";
/// How long a test waits for any one report.
const WAIT: Duration = Duration::from_secs(20);

/// Checkpoints of a small WAL: at 40 frames (about eight rows) at a pause of 20 ms, in a
/// file of 200 frames.
const SMALL: Checkpoints = Checkpoints {
    at_pause: 40,
    bound: 4000,
    pause: Duration::from_millis(20),
    file_frames: 200,
};

fn wal_path(dir: &Path) -> PathBuf {
    let mut name = db_path(dir).into_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

/// The message at `seq`: about 16 KB, so about five frames a row.
fn text(seq: u64) -> String {
    format!("{seq}:{}", "x".repeat(16_000))
}

fn message(seq: u64) -> StoreChange {
    StoreChange::AppendMessage {
        session_key: "agent:main:main".into(),
        seq,
        message: clawgate_core::persist::RowText::of_value(
            &serde_json::json!({"role": "user", "content": text(seq)}),
        ),
    }
}

/// The transcript's positions as a start reads them (through [`Db::open`], as the gateway
/// and the CLI open it), each checked to hold its own message.
fn stored(dir: &Path) -> Vec<u64> {
    let db = Db::open(dir).unwrap();
    let page = db
        .read_history(&HistoryQuery {
            session_key: "agent:main:main".into(),
            range: HistoryRange::After {
                seq: 0,
                limit: u64::MAX,
            },
            max_bytes: usize::MAX,
            max_message_bytes: usize::MAX,
        })
        .unwrap();
    for row in &page.rows {
        assert_eq!(row.message["content"], text(row.seq), "row {}", row.seq);
    }
    page.rows.iter().map(|r| r.seq).collect()
}

/// What the database file holds without its WAL (a copy of it alone, opened elsewhere).
fn stored_in_the_file_alone(dir: &Path) -> Vec<u64> {
    let copy = TempDir::new("store-restart-copy");
    let to = db_path(copy.path());
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(db_path(dir), &to).unwrap();
    stored(copy.path())
}

/// The WAL file's length in frames.
fn file_frames(dir: &Path) -> usize {
    let len = fs::metadata(wal_path(dir))
        .expect("the WAL file is there")
        .len();
    (len as usize).saturating_sub(WAL_HEADER) / FRAME
}

/// The frames SQLite would read from the WAL: from the first on, those that carry the
/// header's salts (a frame of an earlier generation, or zeros, carries others; SQLite also
/// checks the checksums, which the salts suffice to tell apart here).
fn valid_frames(dir: &Path) -> usize {
    let wal = fs::read(wal_path(dir)).unwrap();
    let Some(salts) = wal.get(16..24) else {
        return 0;
    };
    wal[WAL_HEADER..]
        .chunks_exact(FRAME)
        .take_while(|frame| &frame[8..16] == salts)
        .count()
}

/// Whether the frame after the valid ones is one of an earlier generation of the WAL (not
/// zeros).
fn stale_frame_follows(dir: &Path) -> bool {
    let wal = fs::read(wal_path(dir)).unwrap();
    let at = WAL_HEADER + valid_frames(dir) * FRAME;
    wal.get(at..at + 4).is_some_and(|pgno| pgno != [0; 4])
}

/// A writer on `dir`'s store, its acknowledgements on the receiver; its idle hook (after
/// 300 ms without a job) sends the bytes its thread wrote so far.
fn writer(
    dir: &Path,
    checkpoints: Checkpoints,
) -> (Writer, mpsc::Receiver<StoreDone>, mpsc::Receiver<u64>) {
    let (acks, acked) = mpsc::channel();
    let (idle, idled) = mpsc::channel();
    let on_done =
        move |group: Vec<StoreDone>| group.into_iter().for_each(|d| acks.send(d).unwrap());
    let on_idle = move || {
        let _ = idle.send(thread_bytes_written());
    };
    let db = Db::open(dir).unwrap();
    let w = Writer::spawn_with(
        db,
        on_done,
        checkpoints,
        Duration::from_millis(300),
        on_idle,
    );
    (w.unwrap(), acked, idled)
}

/// The bytes the calling thread handed to `write` and its kind so far (`wchar`).
fn thread_bytes_written() -> u64 {
    let io = fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Write `seqs` one transaction each, each waited for; `pause_every` rows, a pause long
/// enough for a checkpoint.
fn write(
    w: &Writer,
    acked: &mpsc::Receiver<StoreDone>,
    seqs: std::ops::RangeInclusive<u64>,
    mut on_ack: impl FnMut(u64),
) {
    for seq in seqs {
        assert!(w.submit(WorkId(seq), vec![message(seq)]));
        let StoreDone::Written(done) = acked.recv_timeout(WAIT).unwrap() else {
            panic!("no read was asked for");
        };
        assert_eq!(done.id, WorkId(seq));
        assert!(done.result.is_ok(), "{:?}", done.result);
        on_ack(seq);
        if seq % 10 == 0 {
            std::thread::sleep(SMALL.pause * 4);
        }
    }
}

#[test]
fn a_second_start_finds_the_wal_file_long_and_writes_no_zeros() {
    let dir = TempDir::new("store-restart-zeros");
    let checkpoints = Checkpoints::default();
    let wanted = checkpoints.file_frames as usize;
    let mut written = Vec::new();
    for seq in 1..=2 {
        let (w, acked, idled) = writer(dir.path(), checkpoints);
        write(&w, &acked, seq..=seq, |_| {});
        written.push(idled.recv_timeout(WAIT).unwrap());
        assert!(file_frames(dir.path()) >= wanted);
        w.close();
        assert!(
            file_frames(dir.path()) >= wanted,
            "the WAL file kept its length"
        );
    }
    let extension = (wanted * FRAME) as u64;
    assert!(
        written[0] > extension * 9 / 10,
        "the first run wrote the extension: {written:?} bytes"
    );
    assert!(
        written[1] < 64 * 1024,
        "the second wrote its row alone: {written:?} bytes"
    );
    assert_eq!(stored(dir.path()), [1, 2]);
}

#[test]
fn a_clean_stop_checkpoints_everything_and_keeps_a_wal_of_one_frame() {
    let dir = TempDir::new("store-restart-clean");
    for (run, seqs) in [(1, 1..=45), (2, 46..=52), (3, 53..=53)] {
        let (w, acked, _) = writer(dir.path(), SMALL);
        write(&w, &acked, seqs.clone(), |_| {});
        w.close();
        let every: Vec<u64> = (1..=*seqs.end()).collect();
        assert!(file_frames(dir.path()) >= 200, "run {run}: the file kept");
        assert_eq!(valid_frames(dir.path()), 1, "run {run}: started over");
        assert_eq!(stored_in_the_file_alone(dir.path()), every, "run {run}");
        assert_eq!(stored(dir.path()), every, "run {run}");
    }
}

/// The child's part (see [`a_run_killed_mid_way_keeps_exactly_its_acknowledged_rows`]):
/// rows written and checkpointed, a WAL started over several times, then a few rows in the
/// WAL alone; "acked N" printed for each, "ready" after the last, then it waits for its end.
fn killed_child(dir: &Path) {
    let (w, acked, _) = writer(dir, SMALL);
    write(&w, &acked, 1..=40, |seq| println!("acked {seq}"));
    // Below the checkpoint's 40 frames: these stay in the WAL.
    write(&w, &acked, 41..=44, |seq| println!("acked {seq}"));
    println!("ready");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_run_killed_mid_way_keeps_exactly_its_acknowledged_rows() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        return killed_child(Path::new(&dir));
    }
    let dir = TempDir::new("store-restart-killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_run_killed_mid_way_keeps_exactly_its_acknowledged_rows",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        if let Some(n) = line.strip_prefix("acked ") {
            last = n.parse().unwrap();
        }
    }
    assert_eq!(last, 44, "the child wrote its rows");
    child.kill().unwrap();
    child.wait().unwrap();
    // The last rows are in the WAL alone, stale frames of earlier runs of it past them.
    assert!(stale_frame_follows(dir.path()));
    let in_file = stored_in_the_file_alone(dir.path());
    assert!(in_file.len() < 44, "{in_file:?}");
    let every: Vec<u64> = (1..=44).collect();
    assert_eq!(stored(dir.path()), every);
    // The next run goes on from there, in the same file.
    let (w, acked, _) = writer(dir.path(), SMALL);
    write(&w, &acked, 45..=50, |_| {});
    w.close();
    assert!(file_frames(dir.path()) >= 200);
    let every: Vec<u64> = (1..=50).collect();
    assert_eq!(stored(dir.path()), every);
}

/// A kept WAL is the rule after every stop: one whose database was removed (by hand, to
/// start afresh) is not read into the database built in its place.
#[test]
fn a_new_database_reads_nothing_of_a_wal_left_beside_a_removed_one() {
    let dir = TempDir::new("store-restart-removed");
    let (w, acked, _) = writer(dir.path(), SMALL);
    // Below the checkpoint's 40 frames: in the WAL alone.
    write(&w, &acked, 1..=5, |_| {});
    // The WAL as a kill -9 leaves it.
    let wal = fs::read(wal_path(dir.path())).unwrap();
    w.close();
    fs::remove_file(db_path(dir.path())).unwrap();
    fs::write(wal_path(dir.path()), wal).unwrap();
    assert!(valid_frames(dir.path()) > 5, "frames SQLite would read");
    assert_eq!(stored(dir.path()), Vec::<u64>::new());
    let (w, acked, _) = writer(dir.path(), SMALL);
    write(&w, &acked, 1..=3, |_| {});
    w.close();
    assert_eq!(stored(dir.path()), [1, 2, 3]);
}
