//! A new database built aside and moved into place whole (`store/src/fresh.rs`): the schema
//! and the identity reach the file without a commit through the WAL, and a build that
//! stopped half-way (or an empty file an older start left) is started over.

use std::fs;
use std::path::{Path, PathBuf};

use clawgate_store::{Db, StoredIdentity, db_path};
use clawgate_tests::tempdir::TempDir;

/// The schema version this build writes (`store/src/schema.rs`).
const VERSION: u32 = 7;

fn identity(n: u8) -> StoredIdentity {
    StoredIdentity {
        seed: [n; 32],
        created_at_ms: u64::from(n) * 1000,
    }
}

/// A rollback journal as SQLite leaves it once it synced the header of the first write to
/// an empty database (the switch to WAL), before writing the database: played back, it
/// truncates the database to its size before, 0 pages.
fn hot_journal() -> Vec<u8> {
    let mut header = vec![0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
    for field in [0u32, 0x1234_5678, 0, 512, 4096] {
        // Records, checksum nonce, pages before, sector size, page size.
        header.extend_from_slice(&field.to_be_bytes());
    }
    header.resize(512, 0);
    header
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// `user_version` and `journal_mode` as another connection reads them.
fn version_and_mode(path: &Path) -> (u32, String) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let version = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let mode = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    (version, mode)
}

/// The tables the migrations dropped leave no free page behind in a new database.
#[test]
fn a_new_database_has_no_free_page() {
    let dir = TempDir::new("store-first-free");
    drop(Db::open_seeded(dir.path(), &identity(7)).unwrap());
    let free: u32 = rusqlite::Connection::open(db_path(dir.path()))
        .unwrap()
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0);
}

#[test]
fn a_new_database_has_its_schema_and_identity_without_a_commit_through_the_wal() {
    let dir = TempDir::new("store-first-start");
    let mut db = Db::open_seeded(dir.path(), &identity(7)).unwrap();
    // The WAL hook counts the frames of every commit on this connection: created in place,
    // the migrations' commit and the identity's went through it.
    assert_eq!(db.wal_frames(), 0, "no commit through the WAL");
    assert_eq!(
        db.gateway_identity_or_create([9; 32], 5).unwrap(),
        identity(7)
    );
    assert_eq!(db.wal_frames(), 0, "the identity was there already");
    let path = db_path(dir.path());
    let wal = fs::metadata(beside(&path, "-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "nothing written to the WAL");
    assert!(!beside(&path, ".new").exists());
    assert_eq!(version_and_mode(&path), (VERSION, "wal".into()));
    drop(db);
    // It opens again as it was, the identity kept whatever the seed offered.
    let db = Db::open_seeded(dir.path(), &identity(8)).unwrap();
    assert_eq!(db.gateway_identity().unwrap(), Some(identity(7)));
}

#[test]
fn a_build_that_stopped_before_its_move_is_started_over() {
    let dir = TempDir::new("store-first-start-crash");
    let path = db_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A build stopped half-way: the file holds the first migration and no identity, and a
    // journal beside it.
    let building = beside(&path, ".new");
    let conn = rusqlite::Connection::open(&building).unwrap();
    conn.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    fs::write(beside(&building, "-journal"), hot_journal()).unwrap();
    assert!(!path.exists());

    let db = Db::open_seeded(dir.path(), &identity(3)).unwrap();
    assert_eq!(db.gateway_identity().unwrap(), Some(identity(3)));
    assert_eq!(version_and_mode(&path), (VERSION, "wal".into()));
    assert!(!building.exists());
    assert!(!beside(&building, "-journal").exists());
}

#[test]
fn an_empty_file_with_a_stale_journal_is_a_new_database() {
    let dir = TempDir::new("store-first-start-empty");
    let path = db_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    // What an older build could leave when it stopped while switching the empty file to WAL:
    // the empty file, and a journal SQLite would play back into the new database.
    fs::write(&path, b"").unwrap();
    fs::write(beside(&path, "-journal"), hot_journal()).unwrap();

    let mut db = Db::open_seeded(dir.path(), &identity(4)).unwrap();
    assert_eq!(db.gateway_identity().unwrap(), Some(identity(4)));
    assert!(db.load_sessions(10).unwrap().is_empty());
    assert_eq!(version_and_mode(&path), (VERSION, "wal".into()));
    assert!(!beside(&path, "-journal").exists());
}
