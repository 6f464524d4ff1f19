//! A new database, built aside and moved into place whole. Created where it stands, a new
//! database cost a first start eight fsyncs before the gateway listened: switching the empty
//! file to WAL goes through a rollback journal (the journal twice, its directory, the file),
//! then creating the WAL (its header, the directory), the migrations' commit and the
//! identity's. Here the schema and the identity are written in one transaction to
//! `clawgate.sqlite.new` with nothing synced and no journal (a crash leaves only that file,
//! which the next start throws away and builds again), the file is switched to WAL, synced
//! once, linked to its final name and the directory synced: two fsyncs, and the final name
//! only ever names a complete database at the current schema version.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::db::{Db, DbError, create_error, private_file, sqlite};
use crate::identity::{self, StoredIdentity};
use crate::schema;

/// What is appended to the database's name for the file a new database is built in.
const BUILDING: &str = ".new";
/// The files SQLite keeps beside a database (journal, WAL, shared memory).
const SIDE_FILES: [&str; 3] = ["-journal", "-wal", "-shm"];

impl Db {
    /// [`Db::open`]; a new database is built with `identity` as the gateway's identity, in
    /// the transaction that creates its schema.
    pub fn open_seeded(state_dir: &Path, identity: &StoredIdentity) -> Result<Db, DbError> {
        Self::open_with(state_dir, Some(identity))
    }
}

/// Whether `path` holds no database yet: it is absent, or empty (created by a start that
/// stopped before SQLite wrote to it).
pub(crate) fn is_new(path: &Path) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(meta) => Ok(meta.len() == 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// `path` with `suffix` appended to its name (byte for byte: a name need not be UTF-8).
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Remove `path` if it is there.
fn remove(path: &Path) -> Result<(), DbError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(create_error(path, e)),
        _ => Ok(()),
    }
}

/// Sync the directory holding `path`, so a name just given or taken in it lasts.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Build the database of `path` (which [`is_new`]): the current schema and, when given,
/// `identity`, in one transaction (see the module doc).
pub(crate) fn create(path: &Path, identity: Option<&StoredIdentity>) -> Result<(), DbError> {
    let building = beside(path, BUILDING);
    // What an earlier build left, and an empty file with the side files of a database that
    // never was complete (SQLite would replay a journal or a WAL found beside the new one).
    for stale in [path, &building] {
        remove(stale)?;
        for side in SIDE_FILES {
            remove(&beside(stale, side))?;
        }
    }
    private_file(&building)?;
    build(&building, identity).map_err(|e| sqlite(&building, e))?;
    fs::File::open(&building)
        .and_then(|f| f.sync_all())
        .map_err(|e| create_error(&building, e))?;
    match fs::hard_link(&building, path) {
        // Another process built it meanwhile: its database stands.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => remove(&building)?,
        // A file system without hard links: the name is free (checked above), so a rename
        // does not replace anything.
        Err(_) => fs::rename(&building, path).map_err(|e| create_error(path, e))?,
        Ok(()) => remove(&building)?,
    }
    sync_dir(path).map_err(|e| create_error(path, e))
}

/// Write the schema and `identity` into the empty file `path` in one unsynced transaction,
/// then switch it to WAL.
fn build(path: &Path, identity: Option<&StoredIdentity>) -> rusqlite::Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    conn.pragma_update_and_check(None, "journal_mode", "OFF", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction()?;
    schema::migrate(&tx, 0)?;
    if let Some(id) = identity {
        identity::put(&tx, id)?;
    }
    tx.commit()?;
    // The migrations' dropped tables left free pages, and a commit that takes one writes the
    // free list's page and the header besides its own: the first commits of a new gateway's
    // messages did (7 of 52 in a run of 50 messages). Copied without them here, unsynced and
    // with no journal, an empty database costs nothing to copy.
    conn.execute_batch("VACUUM")?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.close().map_err(|(_, e)| e)
}
