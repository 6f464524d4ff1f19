//! The database over real files: permissions, round trips, schema versions, the legacy JSON
//! migration, the writer thread's acknowledgements.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clawgate_core::pairing::{DeviceToken, PairedDevice, PendingKind, PendingRequest};
use clawgate_core::persist::{HistoryQuery, HistoryRange, diff};
use clawgate_core::{PairingStore, WorkId};
use clawgate_store::{
    Checkpoints, Db, DbError, StoreChange, StoreDone, Synchronous, Writer, db_path,
    legacy_pairing_path,
};
use clawgate_tests::tempdir::TempDir;

fn device(id: &str, token: &str) -> PairedDevice {
    let mut d = PairedDevice {
        device_id: id.into(),
        public_key: format!("pk-{id}"),
        meta: Default::default(),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        tokens: Default::default(),
        node: None,
        created_at_ms: 1,
        approved_at_ms: 2,
    };
    d.tokens.insert(
        "operator".into(),
        DeviceToken {
            token: token.into(),
            scopes: vec!["operator.read".into()],
            issued_at_ms: 3,
        },
    );
    d
}

fn pending(id: &str) -> PendingRequest {
    PendingRequest {
        request_id: id.into(),
        kind: PendingKind::Device,
        device_id: format!("dev-{id}"),
        public_key: "pk".into(),
        meta: Default::default(),
        roles: vec!["operator".into()],
        scopes: vec![],
        caps: vec![],
        commands: vec![],
        remote_ip: None,
        silent: false,
        ts: 5,
        expires_at_ms: 500,
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_database_is_private_and_in_wal_mode() {
    let dir = TempDir::new("store-private");
    let mut db = Db::open(dir.path()).unwrap();
    db.apply(&[StoreChange::PutDevice(device("a", "t"))])
        .unwrap();
    let path = db_path(dir.path());
    assert_eq!(db.path(), path);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert_eq!(mode(&wal), 0o600, "the WAL inherits the database's mode");
}

#[test]
fn commits_are_fsynced_unless_normal_is_chosen() {
    let dir = TempDir::new("store-sync");
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(db.synchronous().unwrap(), 2, "FULL by default");
    db.set_synchronous(Synchronous::Normal).unwrap();
    assert_eq!(db.synchronous().unwrap(), 1);
    assert_eq!(Synchronous::parse(" Normal"), Some(Synchronous::Normal));
    assert_eq!(Synchronous::parse("full"), Some(Synchronous::Full));
    assert_eq!(Synchronous::parse("off"), None);
}

#[test]
fn batches_reload_to_the_state_they_describe() {
    let dir = TempDir::new("store-roundtrip");
    let mut mirror = PairingStore::default();
    let batches = vec![
        vec![
            StoreChange::PutDevice(device("a", "t1")),
            StoreChange::PutPending(pending("p1")),
            StoreChange::PutPending(pending("p2")),
        ],
        vec![
            StoreChange::PutDevice(device("a", "t2")),
            StoreChange::DeletePending("p1".into()),
        ],
        vec![StoreChange::PutDevice(device("b", "t3"))],
        vec![StoreChange::DeleteDevice("b".into())],
    ];
    {
        let mut db = Db::open(dir.path()).unwrap();
        for b in &batches {
            db.apply(b).unwrap();
            mirror.apply(b);
        }
    }
    let loaded = Db::open(dir.path()).unwrap().load_pairing().unwrap();
    assert_eq!(loaded.devices, mirror.devices);
    assert_eq!(loaded.pending, mirror.pending);
    assert_eq!(loaded.devices["a"].tokens["operator"].token, "t2");
    assert!(!loaded.pending.contains_key("p1"));

    // A full rewrite (after a failed write) leaves exactly the new state.
    let mut only_c = PairingStore::default();
    only_c.devices.insert("c".into(), device("c", "t4"));
    let full = diff(&loaded, &only_c, true);
    assert_eq!(full.first(), Some(&StoreChange::ClearPairing));
    let mut db = Db::open(dir.path()).unwrap();
    db.apply(&full).unwrap();
    let loaded = db.load_pairing().unwrap();
    assert_eq!(loaded.devices, only_c.devices);
    assert!(loaded.pending.is_empty());
}

#[test]
fn after_its_cache_is_released_the_database_reads_and_writes_as_before() {
    let dir = TempDir::new("store-release-cache");
    let mut db = Db::open(dir.path()).unwrap();
    db.apply(&[StoreChange::PutDevice(device("a", "t1"))])
        .unwrap();
    assert_eq!(db.load_pairing().unwrap().devices.len(), 1);
    db.release_cache().unwrap();
    // The pages come back from the file: the same rows, and a write on top of them.
    assert_eq!(
        db.load_pairing().unwrap().devices["a"].tokens["operator"].token,
        "t1"
    );
    db.apply(&[StoreChange::PutDevice(device("b", "t2"))])
        .unwrap();
    db.release_cache().unwrap();
    let loaded = Db::open(dir.path()).unwrap().load_pairing().unwrap();
    assert_eq!(loaded.devices.len(), 2);
    assert_eq!(loaded.devices["b"].tokens["operator"].token, "t2");
}

#[test]
fn diff_then_apply_gives_the_new_state() {
    let mut old = PairingStore::default();
    old.devices.insert("a".into(), device("a", "1"));
    old.devices.insert("b".into(), device("b", "1"));
    old.pending.insert("p".into(), pending("p"));
    let mut new = old.clone();
    new.devices.remove("b");
    new.devices.insert("a".into(), device("a", "2"));
    new.pending.insert("q".into(), pending("q"));
    let changes = diff(&old, &new, false);
    assert_eq!(
        changes,
        vec![
            StoreChange::DeleteDevice("b".into()),
            StoreChange::PutDevice(device("a", "2")),
            StoreChange::PutPending(pending("q")),
        ]
    );
    let mut applied = old.clone();
    applied.apply(&changes);
    assert_eq!(applied, new);
    assert!(diff(&new, &new, false).is_empty());
}

#[test]
fn a_newer_schema_is_refused_with_the_path() {
    let dir = TempDir::new("store-newer");
    drop(Db::open(dir.path()).unwrap());
    let path = db_path(dir.path());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Db::open(dir.path()).unwrap_err();
    assert!(matches!(err, DbError::TooNew { found: 99, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("schema version 99"), "{text}");
}

#[test]
fn a_corrupt_database_is_an_error_naming_it() {
    let dir = TempDir::new("store-corrupt");
    let path = db_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = Db::open(dir.path()).unwrap_err();
    assert!(matches!(err, DbError::Sqlite { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn the_legacy_json_file_is_migrated_once_and_kept_aside() {
    let dir = TempDir::new("store-legacy");
    let mut legacy = PairingStore::load(b"").unwrap();
    legacy
        .devices
        .insert("old".into(), device("old", "legacy-token"));
    legacy.pending.insert("p".into(), pending("p"));
    let json = legacy_pairing_path(dir.path());
    fs::create_dir_all(json.parent().unwrap()).unwrap();
    fs::write(&json, legacy.to_bytes()).unwrap();

    let mut db = Db::open(dir.path()).unwrap();
    let migrated = db.migrate_legacy_pairing(dir.path()).unwrap().unwrap();
    assert_eq!((migrated.devices, migrated.pending), (1, 1));
    assert_eq!(migrated.from, json);
    assert!(!json.exists());
    let aside = PathBuf::from(format!("{}.migrated", json.display()));
    assert!(aside.exists());
    let loaded = db.load_pairing().unwrap();
    assert_eq!(
        loaded.devices["old"].tokens["operator"].token,
        "legacy-token"
    );
    assert_eq!(loaded.pending.len(), 1);

    // A later change, then the file reappearing (a crash between commit and rename leaves
    // it in place): it is set aside again, not imported over newer rows.
    db.apply(&[StoreChange::PutDevice(device("old", "rotated"))])
        .unwrap();
    fs::copy(&aside, &json).unwrap();
    assert_eq!(db.migrate_legacy_pairing(dir.path()).unwrap(), None);
    assert!(!json.exists());
    assert_eq!(
        db.load_pairing().unwrap().devices["old"].tokens["operator"].token,
        "rotated"
    );
}

#[test]
fn an_invalid_legacy_file_is_an_error_and_stays_in_place() {
    let dir = TempDir::new("store-legacy-bad");
    let json = legacy_pairing_path(dir.path());
    fs::create_dir_all(json.parent().unwrap()).unwrap();
    fs::write(&json, b"{ not json").unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    let err = db.migrate_legacy_pairing(dir.path()).unwrap_err();
    assert!(err.to_string().contains("clawgate-pairing.json"), "{err}");
    assert!(json.exists());
    assert!(!db.has_pairing().unwrap());
}

#[test]
fn the_writer_acknowledges_every_batch_in_order_and_close_waits_for_them() {
    let dir = TempDir::new("store-writer");
    let (tx, rx) = mpsc::channel();
    let writer = Writer::spawn(Db::open(dir.path()).unwrap(), move |group| {
        for done in group {
            let StoreDone::Written(done) = done else {
                panic!("no read was asked for");
            };
            tx.send((done.id.0, done.result.is_ok())).unwrap();
        }
    })
    .unwrap();
    for i in 0..200u64 {
        let d = device(&format!("d{}", i % 7), &format!("t{i}"));
        assert!(writer.submit(WorkId(i), vec![StoreChange::PutDevice(d)]));
    }
    writer.close();
    let acks: Vec<(u64, bool)> = rx.try_iter().collect();
    assert_eq!(acks, (0..200).map(|i| (i, true)).collect::<Vec<_>>());
    let loaded = Db::open(dir.path()).unwrap().load_pairing().unwrap();
    assert_eq!(loaded.devices.len(), 7);
    assert_eq!(loaded.devices["d3"].tokens["operator"].token, "t199");
}

/// Once no job has come for its idle time, the writer hands back its cache and calls the
/// idle hook, once per pause: not while jobs keep coming, not again while the pause lasts.
#[test]
fn an_idle_writer_calls_its_hook_once_per_pause() {
    let dir = TempDir::new("store-idle");
    let idle = Duration::from_millis(500);
    let (acked, acks) = mpsc::channel();
    let (paused, pauses) = mpsc::channel();
    let on_done = move |group: Vec<StoreDone>| {
        for done in group {
            acked.send(done).unwrap();
        }
    };
    let writer = Writer::spawn_with_idle(Db::open(dir.path()).unwrap(), on_done, idle, move || {
        paused.send(Instant::now()).unwrap();
    })
    .unwrap();
    let wait = Duration::from_secs(10);
    assert!(
        pauses.recv_timeout(idle * 2).is_err(),
        "no pause before the first job"
    );
    for round in 0..2u64 {
        // Jobs closer together than the idle time: no pause among them.
        let mut sent = Instant::now();
        for i in 0..3 {
            let d = device(&format!("d{i}"), &format!("t{round}"));
            sent = Instant::now();
            assert!(writer.submit(WorkId(round * 3 + i), vec![StoreChange::PutDevice(d)]));
            acks.recv_timeout(wait).unwrap();
            std::thread::sleep(idle / 10);
        }
        let at = pauses.recv_timeout(wait).expect("a pause after the jobs");
        assert!(at >= sent + idle, "the hook waited for the idle time");
        assert!(pauses.recv_timeout(idle * 2).is_err(), "once per pause");
    }
    writer.close();
    let loaded = Db::open(dir.path()).unwrap().load_pairing().unwrap();
    assert_eq!(loaded.devices["d2"].tokens["operator"].token, "t1");
}

#[test]
fn after_a_failed_write_only_a_rewrite_is_written() {
    let dir = TempDir::new("store-poison");
    let (tx, rx) = mpsc::channel();
    let writer = Writer::spawn(Db::open(dir.path()).unwrap(), move |group| {
        for done in group {
            let StoreDone::Written(done) = done else {
                panic!("no read was asked for");
            };
            tx.send((done.id.0, done.result.map_err(|e| e.to_string())))
                .unwrap();
        }
    })
    .unwrap();
    let wait = |id: u64| {
        let (got, result) = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(got, id);
        result
    };
    let other = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    let table =
        "CREATE TABLE paired_devices (device_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT";

    writer.submit(WorkId(1), vec![StoreChange::PutDevice(device("a", "1"))]);
    assert_eq!(wait(1), Ok(()));
    other.execute_batch("DROP TABLE paired_devices").unwrap();
    writer.submit(WorkId(2), vec![StoreChange::PutDevice(device("b", "1"))]);
    let failed = wait(2).unwrap_err();
    assert!(failed.contains("paired_devices"), "{failed}");
    other.execute_batch(table).unwrap();

    // The table is back, but batch 3 follows a failure: writing it would leave a gap.
    writer.submit(WorkId(3), vec![StoreChange::PutDevice(device("c", "1"))]);
    assert_eq!(wait(3), Err(failed));
    let mut all = PairingStore::default();
    for id in ["a", "b", "c"] {
        all.devices.insert(id.into(), device(id, "1"));
    }
    writer.submit(WorkId(4), diff(&PairingStore::default(), &all, true));
    assert_eq!(wait(4), Ok(()));
    writer.close();
    let loaded = Db::open(dir.path()).unwrap().load_pairing().unwrap();
    assert_eq!(loaded.devices, all.devices);
}

/// A database written by a build that knew only schema 1 (pairing) is brought to the current
/// schema in place: its pairing rows stay, and it has no sessions, no channel rows and no
/// pending input.
#[test]
fn a_version_1_database_migrates_and_keeps_its_pairing_rows() {
    let dir = TempDir::new("store-v1");
    let path = db_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
         CREATE TABLE paired_devices (device_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
         CREATE TABLE pending_requests (request_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO paired_devices (device_id, row) VALUES ('a', ?1)",
        [serde_json::to_string(&device("a", "t1")).unwrap()],
    )
    .unwrap();
    drop(conn);

    let mut db = Db::open(dir.path()).unwrap();
    let loaded = db.load_pairing().unwrap();
    assert_eq!(loaded.devices["a"], device("a", "t1"));
    assert!(db.load_sessions(10).unwrap().is_empty());
    assert!(db.load_channel_rows().unwrap().is_empty());
    assert!(db.load_pending_input().unwrap().is_empty());
    assert_eq!(db_version(&path), SCHEMA_VERSION);
}

#[test]
fn channel_rows_are_put_deleted_and_loaded_by_table() {
    use clawgate_core::persist::ChannelRowKind;
    let dir = TempDir::new("store-channels");
    let mut db = Db::open(dir.path()).unwrap();
    let put = |kind, key: &str, n: u64| StoreChange::PutChannelRow {
        kind,
        key: key.into(),
        row: clawgate_core::persist::RowText::of_value(&serde_json::json!({"n": n})),
    };
    db.apply(&[
        put(ChannelRowKind::Ingress, "00000000000000000002", 2),
        put(ChannelRowKind::Ingress, "00000000000000000001", 1),
        put(ChannelRowKind::Outbox, "00000000000000000001", 3),
        put(ChannelRowKind::Offset, "telegram:default", 4),
        put(ChannelRowKind::Offset, "telegram:default", 5),
        StoreChange::DeleteChannelRow {
            kind: ChannelRowKind::Outbox,
            key: "00000000000000000001".into(),
        },
    ])
    .unwrap();
    let rows: Vec<(ChannelRowKind, String, u64)> = db
        .load_channel_rows()
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.key, r.row["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            (ChannelRowKind::Ingress, "00000000000000000001".into(), 1),
            (ChannelRowKind::Ingress, "00000000000000000002".into(), 2),
            (ChannelRowKind::Offset, "telegram:default".into(), 5),
        ]
    );
}

/// The schema version this build writes.
const SCHEMA_VERSION: u32 = 7;

fn db_version(path: &Path) -> u32 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn message(seq: u64, text: &str) -> StoreChange {
    StoreChange::AppendMessage {
        session_key: "agent:main:main".into(),
        seq,
        message: clawgate_core::persist::RowText::of_value(
            &serde_json::json!({"role": "user", "content": text}),
        ),
    }
}

#[test]
fn sessions_and_transcripts_round_trip_in_seq_order() {
    let dir = TempDir::new("store-sessions");
    {
        let mut db = Db::open(dir.path()).unwrap();
        db.apply(&[
            StoreChange::PutSession {
                key: "agent:main:main".into(),
                row: clawgate_core::persist::RowText::of_value(
                    &serde_json::json!({"sessionId": "s1", "label": "é"}),
                ),
            },
            StoreChange::PutSession {
                key: "agent:main:other".into(),
                row: clawgate_core::persist::RowText::of_value(
                    &serde_json::json!({"sessionId": "s2"}),
                ),
            },
            message(2, "second"),
            message(1, "first"),
        ])
        .unwrap();
        // A rewrite of the same position replaces it: appends are idempotent.
        db.apply(&[message(2, "second, again"), message(10, "tenth")])
            .unwrap();
    }
    let sessions = Db::open(dir.path()).unwrap().load_sessions(10).unwrap();
    assert_eq!(sessions.len(), 2);
    let main = &sessions[0];
    assert_eq!(main.key, "agent:main:main");
    assert_eq!(main.row["label"], "é");
    let texts: Vec<&str> = main
        .messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["first", "second, again", "tenth"]);
    assert_eq!(main.total, 10, "the last position");
    assert_eq!(sessions[1].key, "agent:main:other");
    assert!(sessions[1].messages.is_empty());
    assert_eq!(sessions[1].total, 0);
    // Start-up loads only the recent end of a transcript.
    let tail = Db::open(dir.path()).unwrap().load_sessions(2).unwrap();
    let texts: Vec<&str> = tail[0]
        .messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["second, again", "tenth"]);
    assert_eq!(tail[0].total, 10);
}

fn query(range: HistoryRange) -> HistoryQuery {
    HistoryQuery {
        session_key: "agent:main:main".into(),
        range,
        max_bytes: 1 << 20,
        max_message_bytes: 1 << 10,
    }
}

fn seqs(page: &clawgate_core::persist::HistoryPage) -> Vec<u64> {
    page.rows.iter().map(|r| r.seq).collect()
}

#[test]
fn history_reads_page_back_from_the_newest_within_their_bounds() {
    let dir = TempDir::new("store-history");
    let mut db = Db::open(dir.path()).unwrap();
    let changes: Vec<StoreChange> = (1..=250).map(|i| message(i, &format!("m{i}"))).collect();
    db.apply(&changes).unwrap();
    let tail = db
        .read_history(&query(HistoryRange::Tail {
            offset: 0,
            limit: 100,
        }))
        .unwrap();
    assert_eq!(tail.total, 250);
    assert_eq!(seqs(&tail), (151..=250).collect::<Vec<_>>(), "oldest first");
    assert_eq!(tail.rows[0].message["content"], "m151");
    let back = db
        .read_history(&query(HistoryRange::Tail {
            offset: 200,
            limit: 100,
        }))
        .unwrap();
    assert_eq!(seqs(&back), (1..=50).collect::<Vec<_>>());
    let after = db
        .read_history(&query(HistoryRange::After { seq: 245, limit: 3 }))
        .unwrap();
    assert_eq!(seqs(&after), [246, 247, 248]);
    // The byte bound keeps the newest that fit (at least one); an oversized message comes
    // back without its body.
    let small = HistoryQuery {
        max_bytes: 100,
        ..query(HistoryRange::Tail {
            offset: 0,
            limit: 100,
        })
    };
    let page = db.read_history(&small).unwrap();
    assert_eq!(seqs(&page), [248, 249, 250]);
    db.apply(&[StoreChange::AppendMessage {
        session_key: "agent:main:main".into(),
        seq: 251,
        message: clawgate_core::persist::RowText::of_value(
            &serde_json::json!({"role": "assistant", "content": "x".repeat(5000), "timestamp": 7}),
        ),
    }])
    .unwrap();
    let page = db
        .read_history(&query(HistoryRange::Tail {
            offset: 0,
            limit: 2,
        }))
        .unwrap();
    assert_eq!(seqs(&page), [250, 251]);
    assert!(!page.rows[0].oversized);
    assert!(page.rows[1].oversized);
    assert_eq!(page.rows[1].message, serde_json::Value::Null, "not loaded");
    let none = HistoryQuery {
        session_key: "agent:main:none".into(),
        ..small
    };
    assert_eq!(db.read_history(&none).unwrap(), Default::default());
}

#[test]
fn a_read_sees_every_batch_submitted_before_it() {
    let dir = TempDir::new("store-read-order");
    let (tx, rx) = mpsc::channel();
    let writer = Writer::spawn(Db::open(dir.path()).unwrap(), move |group| {
        for done in group {
            tx.send(match done {
                StoreDone::Written(w) => (w.id.0, None),
                StoreDone::Read(id, page) => (id.0, Some(seqs(&page.unwrap()))),
            })
            .unwrap();
        }
    })
    .unwrap();
    for i in 1..=5u64 {
        writer.submit(WorkId(i * 2), vec![message(i, "m")]);
        writer.read(
            WorkId(i * 2 + 1),
            query(HistoryRange::Tail {
                offset: 0,
                limit: 100,
            }),
        );
    }
    writer.close();
    let got: Vec<(u64, Option<Vec<u64>>)> = rx.try_iter().collect();
    let want: Vec<(u64, Option<Vec<u64>>)> = (1..=5u64)
        .flat_map(|i| [(i * 2, None), (i * 2 + 1, Some((1..=i).collect()))])
        .collect();
    assert_eq!(got, want);
}

#[test]
fn pending_input_round_trips_oldest_first_and_leaves_when_deleted() {
    let dir = TempDir::new("store-pending-input");
    let put = |run: &str| StoreChange::PutPendingInput {
        run_id: run.into(),
        row: clawgate_core::persist::RowText::of_value(
            &serde_json::json!({"sessionKey": "agent:main:main", "message": run}),
        ),
    };
    {
        let mut db = Db::open(dir.path()).unwrap();
        db.apply(&[put("k2"), put("k1"), put("k3")]).unwrap();
        db.apply(&[StoreChange::DeletePendingInput("k1".into())])
            .unwrap();
    }
    let found = Db::open(dir.path()).unwrap().load_pending_input().unwrap();
    let runs: Vec<&str> = found.iter().map(|p| p.run_id.as_str()).collect();
    assert_eq!(runs, ["k2", "k3"], "in the order they were queued");
    assert_eq!(found[0].row["message"], "k2");
}

#[test]
fn delete_session_removes_one_session_and_its_transcript() {
    let dir = TempDir::new("store-delete-session");
    let mut db = Db::open(dir.path()).unwrap();
    let put = |key: &str| StoreChange::PutSession {
        key: key.into(),
        row: clawgate_core::persist::RowText::of_value(&serde_json::json!({"k": key})),
    };
    db.apply(&[
        put("agent:main:main"),
        message(1, "hi"),
        put("agent:main:other"),
    ])
    .unwrap();
    db.apply(&[
        StoreChange::DeleteSession {
            key: "agent:main:main".into(),
        },
        put("agent:main:main"),
        message(1, "fresh"),
    ])
    .unwrap();
    let sessions = db.load_sessions(10).unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].key, "agent:main:main");
    assert_eq!(sessions[0].messages.len(), 1, "the old transcript is gone");
    assert_eq!(sessions[0].total, 1);
    assert_eq!(sessions[0].messages[0]["content"], "fresh");
    db.apply(&[StoreChange::DeleteSession {
        key: "agent:main:other".into(),
    }])
    .unwrap();
    let keys: Vec<String> = db
        .load_sessions(10)
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["agent:main:main"]);
}

#[test]
fn a_session_row_that_is_not_json_is_an_error_naming_the_file() {
    let dir = TempDir::new("store-bad-session");
    drop(Db::open(dir.path()).unwrap());
    let path = db_path(dir.path());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO keyed (kind, key, row) VALUES (7, 'k', '{nope')",
            [],
        )
        .unwrap();
    let err = Db::open(dir.path()).unwrap().load_sessions(10).unwrap_err();
    assert!(matches!(err, DbError::Row { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

/// WAL frames a file of `bytes` holds (its 32-byte header, then 24 bytes and a page a frame).
fn frames(bytes: u64) -> u64 {
    bytes.saturating_sub(32) / (24 + 4096)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// `n` transactions one after another, each waiting for its acknowledgement, each about
/// five pages long (a 16 KB message); the WAL's largest length in frames seen meanwhile.
fn write_one_by_one(writer: &Writer, acks: &mpsc::Receiver<StoreDone>, wal: &Path, n: u64) -> u64 {
    let text = "x".repeat(16_000);
    let mut longest = 0;
    for seq in 1..=n {
        assert!(writer.submit(WorkId(seq), vec![message(seq, &text)]));
        let StoreDone::Written(done) = acks.recv_timeout(Duration::from_secs(10)).unwrap() else {
            panic!("no read was asked for");
        };
        assert!(done.result.is_ok());
        longest = longest.max(frames(file_len(wal)));
    }
    longest
}

fn transcript_rows(dir: &Path) -> i64 {
    rusqlite::Connection::open(db_path(dir))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM transcript", [], |r| r.get(0))
        .unwrap()
}

fn acked_writer(dir: &Path, checkpoints: Checkpoints) -> (Writer, mpsc::Receiver<StoreDone>) {
    let (tx, rx) = mpsc::channel();
    let on_done = move |group: Vec<StoreDone>| group.into_iter().for_each(|d| tx.send(d).unwrap());
    let idle = Duration::from_secs(600);
    let writer =
        Writer::spawn_with(Db::open(dir).unwrap(), on_done, checkpoints, idle, || {}).unwrap();
    (writer, rx)
}

/// Transactions back to back leave the database file alone however long the WAL grows past
/// the checkpoint threshold (SQLite's own checkpoint ran inside the commit that crossed
/// 1000 frames, a message waiting on it); the first pause checkpoints.
#[test]
fn a_long_wal_is_checkpointed_at_a_pause_not_inside_a_commit() {
    let dir = TempDir::new("store-checkpoint-pause");
    let pause = Duration::from_secs(2);
    let checkpoints = Checkpoints {
        at_pause: 1000,
        bound: 100_000,
        pause,
        // The WAL's length is read as its frames here.
        file_frames: 0,
    };
    let (writer, acks) = acked_writer(dir.path(), checkpoints);
    let main = db_path(dir.path());
    let wal = main.with_extension("sqlite-wal");
    let before = file_len(&main);
    let longest = write_one_by_one(&writer, &acks, &wal, 300);
    assert!(
        longest > 1200,
        "the WAL grew past the threshold: {longest} frames"
    );
    assert_eq!(file_len(&main), before, "no checkpoint while jobs came");
    let end = Instant::now() + pause + Duration::from_secs(10);
    while file_len(&main) == before {
        assert!(Instant::now() < end, "a checkpoint at the pause");
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.close();
    assert_eq!(transcript_rows(dir.path()), 300);
}

/// When jobs never pause, the WAL still stops growing at the bound (give or take one
/// transaction): it is checkpointed and started over right after the commit that reached it.
#[test]
fn the_wal_is_bounded_when_jobs_never_pause() {
    let dir = TempDir::new("store-checkpoint-bound");
    let checkpoints = Checkpoints {
        at_pause: 100_000,
        bound: 200,
        pause: Duration::from_secs(600),
        file_frames: 0,
    };
    let (writer, acks) = acked_writer(dir.path(), checkpoints);
    let wal = db_path(dir.path()).with_extension("sqlite-wal");
    let longest = write_one_by_one(&writer, &acks, &wal, 300);
    assert!(
        longest >= 200,
        "the WAL reached the bound: {longest} frames"
    );
    assert!(
        longest < 200 + 20,
        "the WAL stayed within it: {longest} frames"
    );
    writer.close();
    assert_eq!(transcript_rows(dir.path()), 300);
}

/// The writer makes the WAL file its whole length at its first pause (not before a job that
/// waits), so a commit never makes it longer (its fdatasync then syncs the frames alone, not
/// the file's new size and blocks); the zeros past the last frame are not read as frames: a
/// copy of the files as a kill leaves them (WAL, no shared memory) opens with every
/// acknowledged row.
#[test]
fn the_wal_file_is_made_long_at_the_first_pause_and_keeps_its_length() {
    let dir = TempDir::new("store-wal-length");
    let checkpoints = Checkpoints {
        file_frames: 200,
        pause: Duration::from_secs(1),
        ..Checkpoints::default()
    };
    let (writer, acks) = acked_writer(dir.path(), checkpoints);
    let main = db_path(dir.path());
    let wal = main.with_extension("sqlite-wal");
    let first = write_one_by_one(&writer, &acks, &wal, 1);
    assert!(first < 200, "the job came first: {first} frames");
    let end = Instant::now() + Duration::from_secs(10);
    while frames(file_len(&wal)) < 200 {
        assert!(Instant::now() < end, "the WAL file made long at the pause");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Ten transactions of about ten frames each: within 200.
    assert_eq!(write_one_by_one(&writer, &acks, &wal, 10), 200);
    let copy = TempDir::new("store-wal-length-copy");
    let to = db_path(copy.path());
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(&main, &to).unwrap();
    fs::copy(&wal, to.with_extension("sqlite-wal")).unwrap();
    assert_eq!(transcript_rows(copy.path()), 10);
    writer.close();
    assert_eq!(transcript_rows(dir.path()), 10);
}

/// The tables of schemas 2 to 6 that do not hold keyed rows, as migrations 1, 2 and 4 made
/// them.
const UNKEYED_TABLES: &str = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE paired_devices (device_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE pending_requests (request_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE transcript (session_key TEXT NOT NULL, seq INTEGER NOT NULL,
         message TEXT NOT NULL, PRIMARY KEY (session_key, seq)) STRICT;
     CREATE TABLE pending_input (run_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;";

/// The names of schemas 3 to 6's keyed-row tables (a table per kind).
fn keyed_tables() -> impl Iterator<Item = &'static str> {
    ["sessions"].into_iter().chain(
        clawgate_core::persist::ChannelRowKind::ALL
            .iter()
            .map(|k| k.table()),
    )
}

/// A state directory named `name` with an empty database file, open, for a test to build an
/// older schema in.
fn old_database(name: &str) -> (TempDir, std::path::PathBuf, rusqlite::Connection) {
    let dir = TempDir::new(name);
    let path = db_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    (dir, path, conn)
}

/// A database of schema 5 (every keyed table with a rowid and a key index) is brought to the
/// current schema in place, its sessions, channel rows and grants kept.
#[test]
fn a_version_5_database_migrates_and_keeps_its_keyed_rows() {
    use clawgate_core::persist::ChannelRowKind;
    let (dir, path, conn) = old_database("store-v5");
    let mut sql = String::from(UNKEYED_TABLES);
    let keyed = keyed_tables();
    for table in keyed {
        sql.push_str(&format!(
            "CREATE TABLE {table} (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
             INSERT INTO {table} (key, row) VALUES ('k-{table}', '{{\"in\":\"{table}\"}}');"
        ));
    }
    sql.push_str("PRAGMA user_version = 5;");
    conn.execute_batch(&sql).unwrap();
    drop(conn);

    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(db_version(&path), SCHEMA_VERSION);
    let sessions = db.load_sessions(10).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].key, "k-sessions");
    assert_eq!(sessions[0].row["in"], "sessions");
    let rows = db.load_channel_rows().unwrap();
    assert_eq!(rows.len(), ChannelRowKind::ALL.len());
    for r in &rows {
        assert_eq!(r.key, format!("k-{}", r.kind.table()));
        assert_eq!(r.row["in"], r.kind.table());
    }
}

/// What a channel turn's commit puts (its session, the poll offset, its inbound row, its
/// reply's outbox row, the previous reply's deleted) writes one page of the WAL: the keyed
/// rows are one b-tree, where those rows sort side by side (a table each, that was four).
#[test]
fn a_turns_session_and_channel_rows_share_one_page() {
    use clawgate_core::persist::ChannelRowKind;
    let dir = TempDir::new("store-pages");
    let mut db = Db::open(dir.path()).unwrap();
    let wal = db_path(dir.path()).with_extension("sqlite-wal");
    let key = |n: u64| format!("{n:020}");
    let turn = |n: u64| {
        let put = |kind, key: String, row: serde_json::Value| StoreChange::PutChannelRow {
            kind,
            key,
            row: clawgate_core::persist::RowText::of_value(&row),
        };
        vec![
            StoreChange::PutSession {
                key: "agent:main:main".into(),
                row: clawgate_core::persist::RowText::of_value(
                    &serde_json::json!({"updatedAt": n}),
                ),
            },
            put(
                ChannelRowKind::Offset,
                "telegram:default".into(),
                serde_json::json!({"offset": n}),
            ),
            put(
                ChannelRowKind::Ingress,
                key(n),
                serde_json::json!({"seq": n, "state": "done"}),
            ),
            StoreChange::DeleteChannelRow {
                kind: ChannelRowKind::Outbox,
                key: key(n - 1),
            },
            put(
                ChannelRowKind::Outbox,
                key(n),
                serde_json::json!({"seq": n}),
            ),
        ]
    };
    db.apply(&turn(1)).unwrap();
    let before = frames(file_len(&wal));
    db.apply(&turn(2)).unwrap();
    assert_eq!(frames(file_len(&wal)) - before, 1);
}

/// A database at schema 6 (a table per kind of keyed row) is brought to 7 (one table of them)
/// in place: every row comes back with its kind, key and bytes, and the old tables are gone.
#[test]
fn a_version_6_database_migrates_and_reads_back_equal() {
    use clawgate_core::persist::ChannelRowKind;
    let (dir, path, conn) = old_database("store-v6");
    let mut sql = String::from(UNKEYED_TABLES);
    let keyed = keyed_tables();
    let mut want = Vec::new();
    for table in keyed {
        sql.push_str(&format!(
            "CREATE TABLE {table} (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;"
        ));
        // Two rows a table, put in the opposite of key order.
        for n in [2, 1] {
            let row = serde_json::json!({"in": table, "n": n, "awkward": awkward_json(n)});
            sql.push_str(&format!(
                "INSERT INTO {table} (key, row) VALUES ('k{n}', '{}');",
                row.to_string().replace('\'', "''")
            ));
            want.push((table, format!("k{n}"), row));
        }
    }
    for seq in 1..=3 {
        sql.push_str(&format!(
            "INSERT INTO transcript VALUES ('k1', {seq}, '{{\"seq\":{seq}}}');"
        ));
    }
    sql.push_str("PRAGMA user_version = 6;");
    conn.execute_batch(&sql).unwrap();
    drop(conn);

    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(db_version(&path), SCHEMA_VERSION);
    let mut found: Vec<(&str, String, serde_json::Value)> = Vec::new();
    for s in db.load_sessions(10).unwrap() {
        if s.key == "k1" {
            let seqs: Vec<u64> = s
                .messages
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect();
            assert_eq!((seqs, s.total), (vec![1, 2, 3], 3));
        }
        found.push(("sessions", s.key, s.row));
    }
    let channel = db.load_channel_rows().unwrap();
    let kinds: Vec<_> = channel.iter().map(|r| r.kind).collect();
    let by_load_order: Vec<_> = ChannelRowKind::ALL.iter().flat_map(|k| [*k, *k]).collect();
    assert_eq!(kinds, by_load_order);
    found.extend(channel.into_iter().map(|r| (r.kind.table(), r.key, r.row)));
    want.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    assert_eq!(found, want);
    let tables: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "keyed",
            "meta",
            "paired_devices",
            "pending_input",
            "pending_requests",
            "transcript"
        ]
    );
}

/// A JSON value with every kind of token the encoder writes: strings needing each escape,
/// non-ASCII text, integers at the edges, floats, nested arrays and objects, empty ones.
fn awkward_json(n: u64) -> serde_json::Value {
    serde_json::json!({
        "text": format!("é \"q\" \\ / \n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} 𝄞 </script> {n}"),
        "n": n,
        "max": u64::MAX,
        "min": i64::MIN,
        "floats": [1.5, -0.0, 1e300, 0.1, 2.5e-8],
        "nested": [null, true, false, {"z": 1, "a": [[]], "": ""}],
        "empty": {},
    })
}

#[test]
fn every_put_stores_its_row_as_the_compact_json_text_of_its_value() {
    use clawgate_core::persist::ChannelRowKind;
    let dir = TempDir::new("store-row-text");
    let mut db = Db::open(dir.path()).unwrap();
    let mut changes = vec![
        StoreChange::PutSession {
            key: "agent:main:main".into(),
            row: clawgate_core::persist::RowText::of_value(&awkward_json(1)),
        },
        StoreChange::AppendMessage {
            session_key: "agent:main:main".into(),
            seq: 1,
            message: clawgate_core::persist::RowText::of_value(&awkward_json(2)),
        },
        StoreChange::PutPendingInput {
            run_id: "run-1".into(),
            row: clawgate_core::persist::RowText::of_value(&awkward_json(3)),
        },
        StoreChange::PutDevice(device("a", "t")),
        StoreChange::PutPending(pending("p")),
    ];
    for (n, kind) in (10..).zip(ChannelRowKind::ALL) {
        changes.push(StoreChange::PutChannelRow {
            kind,
            key: format!("k{n}"),
            row: clawgate_core::persist::RowText::of_value(&awkward_json(n)),
        });
    }
    db.apply(&changes).unwrap();
    drop(db);
    // The text each row had when rows were formatted with `Value::to_string` (and the
    // pairing rows with `serde_json::to_string` of the record), stored as TEXT: each row's
    // column, where it is, and its text.
    let mut expected: Vec<(&str, String, String)> = vec![
        (
            "row",
            "keyed WHERE key = 'agent:main:main'".into(),
            awkward_json(1).to_string(),
        ),
        ("message", "transcript".into(), awkward_json(2).to_string()),
        ("row", "pending_input".into(), awkward_json(3).to_string()),
        (
            "row",
            "paired_devices".into(),
            serde_json::to_string(&device("a", "t")).unwrap(),
        ),
        (
            "row",
            "pending_requests".into(),
            serde_json::to_string(&pending("p")).unwrap(),
        ),
    ];
    for n in (10..).take(ChannelRowKind::ALL.len()) {
        expected.push((
            "row",
            format!("keyed WHERE key = 'k{n}'"),
            awkward_json(n).to_string(),
        ));
    }
    let conn = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    for (column, from, text) in expected {
        let (kind, bytes): (String, Vec<u8>) = conn
            .query_row(
                &format!("SELECT typeof({column}), CAST({column} AS BLOB) FROM {from}"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind, "text", "{from}");
        assert_eq!(String::from_utf8(bytes).unwrap(), text, "{from}");
    }
}
