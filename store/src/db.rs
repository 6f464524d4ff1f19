//! Opening the database and the row operations: load the pairing rows and the chat sessions,
//! commit a batch.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use clawgate_core::PairingStore;
use clawgate_core::pairing::StoreError;
use clawgate_core::persist::{
    ChannelRowKind, HistoryPage, HistoryQuery, HistoryRange, HistoryRow, RowKind, StoreChange,
    StoredChannelRow, StoredPendingInput, StoredSession,
};
use rusqlite::wal::CheckpointMode;
use rusqlite::{CachedStatement, Connection, DEFAULT_NAME, FileControl, OpenFlags, params};

use crate::fresh;
use crate::identity::StoredIdentity;
use crate::keyed;
use crate::schema::{self, Found};

/// How long a statement waits for a lock held by another process (a `doctor` reading).
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// SQLite's page cache, KiB (its default is about 2 MiB): what the store keeps in memory of
/// the transcripts it reads and writes, whatever their length.
pub(crate) const PAGE_CACHE_KIB: i64 = 256;
/// The WAL file's header, bytes.
const WAL_HEADER: u64 = 32;
/// A WAL frame's header (before its page), bytes.
const WAL_FRAME_HEADER: u64 = 24;
/// The zeros written at once when the WAL file is made longer, bytes.
const ZEROS_AT_ONCE: usize = 64 * 1024;

/// Why the database could not be opened, read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Creating the directory or the file failed.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// SQLite refused an operation (corrupt file, full disk, locked...).
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// The schema is newer than this build knows.
    #[error(
        "{}: schema version {found} is newer than this clawgate understands ({known})",
        path.display()
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// A stored row does not decode.
    #[error("{}: {source}", path.display())]
    Row {
        /// The database or legacy file.
        path: PathBuf,
        /// The error.
        source: StoreError,
    },
    /// Moving the legacy pairing file aside failed.
    #[error("cannot rename {}: {source}", path.display())]
    Rename {
        /// The legacy file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Making the WAL file longer failed.
    #[error("cannot extend {}: {source}", path.display())]
    Extend {
        /// The WAL file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The database path inside a state directory.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state").join("clawgate.sqlite")
}

/// The open database. One owner at a time: the start-up code, then the [`crate::Writer`].
pub struct Db {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    /// The WAL's frames after the last commit, as SQLite's WAL hook reports them.
    wal_frames: Arc<AtomicU32>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// How a commit reaches the disk (`PRAGMA synchronous`, the database being in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `FULL`, the default: every commit is fsynced before it is acknowledged, so what the
    /// gateway said "ok" to survives a kill -9 and a power loss.
    #[default]
    Full,
    /// `NORMAL`: the WAL is fsynced at checkpoints only. A kill -9 loses nothing (the written
    /// WAL is in the kernel's page cache); a power loss or kernel crash may lose the last
    /// commits, which the gateway had acknowledged.
    Normal,
}

impl Synchronous {
    /// `full` or `normal` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Some(Synchronous::Full),
            "normal" => Some(Synchronous::Normal),
            _ => None,
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl Db {
    /// Set how commits reach the disk (FULL unless this is called).
    pub fn set_synchronous(&mut self, mode: Synchronous) -> Result<(), DbError> {
        let path = self.path.clone();
        self.conn
            .pragma_update(None, "synchronous", mode.pragma())
            .map_err(|e| sqlite(&path, e))
    }

    /// The `PRAGMA synchronous` in force (2 = FULL, 1 = NORMAL).
    pub fn synchronous(&self) -> Result<i64, DbError> {
        self.conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Open (creating if needed) the database of a state directory and bring its schema up to
    /// date. The directory is created 0700 and the file 0600 before SQLite opens it, so the
    /// WAL and shared-memory files SQLite creates beside it inherit 0600. A new database is
    /// built aside and moved into place whole ([`crate::fresh`]).
    pub fn open(state_dir: &Path) -> Result<Db, DbError> {
        Self::open_with(state_dir, None)
    }

    /// [`Db::open`], a new database built with `identity` stored.
    pub(crate) fn open_with(
        state_dir: &Path,
        identity: Option<&StoredIdentity>,
    ) -> Result<Db, DbError> {
        let path = db_path(state_dir);
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| create_error(dir, e))?;
        }
        if fresh::is_new(&path).map_err(|e| create_error(&path, e))? {
            fresh::create(&path, identity)?;
        }
        private_file(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| sqlite(&path, e))?;
        let mut db = Db {
            conn,
            path,
            wal_frames: Arc::default(),
        };
        db.configure()?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hand back the memory SQLite holds for pages it read (its page cache, up to
    /// [`PAGE_CACHE_KIB`]) and the statements kept prepared: start-up's migrations and loads
    /// fill the cache with pages an idle gateway does not read again, and the next
    /// transaction reads and prepares what it needs anew.
    pub fn release_cache(&mut self) -> Result<(), DbError> {
        self.conn.flush_prepared_statement_cache();
        self.conn
            .release_memory()
            .map_err(|e| sqlite(&self.path, e))
    }

    fn configure(&mut self) -> Result<(), DbError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        self.conn
            .busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(e)?;
        // WAL keeps readers off the writer's back; FULL makes every commit durable before
        // it returns, which is what an acknowledgement promises.
        self.conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(e)?;
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(e)?;
        // The WAL file stays when the last connection closes (SQLite's persistent WAL; its
        // length too, `journal_size_limit` being unset), so a start finds it at the length
        // [`Db::extend_wal`] made and writes it no more. What the file holds is never taken
        // for content: SQLite checkpoints it all at that close, and reads a WAL only up to
        // the first frame whose salt or checksum is not its header's.
        let mut persist = 1;
        self.conn
            .file_control(DEFAULT_NAME, FileControl::PersistWal(&mut persist))
            .map_err(e)?;
        // The hook replaces SQLite's automatic checkpoint, which ran inside the commit that
        // took the WAL past 1000 pages (copying it into the database file and syncing that
        // before the commit returned): the writer checkpoints by this count instead, after
        // reporting, when it pauses ([`Db::checkpoint`]).
        let frames = Arc::clone(&self.wal_frames);
        self.conn
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n: i32| {
                frames.store(u32::try_from(n).unwrap_or(0), Ordering::Relaxed);
                Ok(())
            }))
            .map_err(e)?;
        // A negative size is in KiB.
        self.conn
            .pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
            .map_err(e)?;
        let from = match schema::found(&self.conn).map_err(e)? {
            Found::Known(v) => v,
            Found::Newer(found) => {
                return Err(DbError::TooNew {
                    path: path.clone(),
                    found,
                    known: schema::VERSION,
                });
            }
        };
        if from < schema::VERSION {
            let tx = self.conn.transaction().map_err(e)?;
            schema::migrate(&tx, from).map_err(e)?;
            tx.commit().map_err(e)?;
        }
        Ok(())
    }

    /// The pairing store as its rows say.
    pub fn load_pairing(&mut self) -> Result<PairingStore, DbError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let mut rows: Vec<(RowKind, Vec<u8>)> = Vec::new();
        for (kind, sql) in [
            (RowKind::Device, "SELECT row FROM paired_devices"),
            (RowKind::Pending, "SELECT row FROM pending_requests"),
        ] {
            let mut stmt = self.conn.prepare(sql).map_err(e)?;
            let found = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(e)?;
            for row in found {
                rows.push((kind, row.map_err(e)?.into_bytes()));
            }
        }
        PairingStore::from_rows(rows.iter().map(|(k, b)| (*k, b.as_slice()))).map_err(|source| {
            DbError::Row {
                path: path.clone(),
                source,
            }
        })
    }

    /// Every chat session with the recent end of its transcript (at most `window` messages,
    /// in `seq` order) and its last position, sessions by key. Whole transcripts stay on disk.
    pub fn load_sessions(&mut self, window: usize) -> Result<Vec<StoredSession>, DbError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let json = |what: &str, key: &str, text: &str| {
            serde_json::from_str(text).map_err(|err| DbError::Row {
                path: path.clone(),
                source: StoreError::Invalid(format!("{what} of session {key:?}: {err}")),
            })
        };
        let mut sessions = Vec::new();
        let mut stmt = self.conn.prepare(keyed::LOAD).map_err(e)?;
        let rows = stmt
            .query_map([keyed::SESSION], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(e)?;
        for found in rows {
            let (key, row) = found.map_err(e)?;
            let row = json("row", &key, &row)?;
            sessions.push(StoredSession {
                key,
                row,
                messages: Vec::new(),
                total: 0,
            });
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT message FROM transcript WHERE session_key = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(e)?;
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        for session in &mut sessions {
            session.total = last_seq(&self.conn, &session.key).map_err(e)?;
            let found = stmt
                .query_map(params![session.key, window], |r| r.get::<_, String>(0))
                .map_err(e)?;
            for message in found {
                let message = message.map_err(e)?;
                session
                    .messages
                    .push(json("message", &session.key, &message)?);
            }
            session.messages.reverse();
        }
        Ok(sessions)
    }

    /// Every channel row (pairing, ingress, outbox, offsets) and exec allow-always grant, by
    /// table then key.
    pub fn load_channel_rows(&mut self) -> Result<Vec<StoredChannelRow>, DbError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let mut out = Vec::new();
        let mut stmt = self.conn.prepare(keyed::LOAD).map_err(e)?;
        for kind in ChannelRowKind::ALL {
            let rows = stmt
                .query_map([keyed::channel(kind)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(e)?;
            for found in rows {
                let (key, row) = found.map_err(e)?;
                let row = serde_json::from_str(&row).map_err(|err| DbError::Row {
                    path: path.clone(),
                    source: StoreError::Invalid(format!("{} row {key:?}: {err}", kind.table())),
                })?;
                out.push(StoredChannelRow { kind, key, row });
            }
        }
        Ok(out)
    }

    /// The messages waiting in their sessions' lanes when the gateway stopped, oldest first.
    pub fn load_pending_input(&mut self) -> Result<Vec<StoredPendingInput>, DbError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let mut stmt = self
            .conn
            .prepare("SELECT run_id, row FROM pending_input ORDER BY rowid")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(e)?;
        let mut found = Vec::new();
        for row in rows {
            let (run_id, row) = row.map_err(e)?;
            let row = serde_json::from_str(&row).map_err(|err| DbError::Row {
                path: path.clone(),
                source: StoreError::Invalid(format!("pending input {run_id:?}: {err}")),
            })?;
            found.push(StoredPendingInput { run_id, row });
        }
        Ok(found)
    }

    /// Read part of a transcript ([`HistoryQuery`]): rows oldest first, bounded by the
    /// query's count and bytes, with messages over its per-message bound left out.
    pub fn read_history(&self, q: &HistoryQuery) -> Result<HistoryPage, DbError> {
        let e = |e| sqlite(&self.path, e);
        let total = last_seq(&self.conn, &q.session_key).map_err(e)?;
        // An oversized message is not even loaded.
        let cols = "SELECT seq, length(CAST(message AS BLOB)) > ?4, \
                    CASE WHEN length(CAST(message AS BLOB)) > ?4 THEN NULL ELSE message END \
                    FROM transcript WHERE session_key = ?1";
        let (sql, limit, at, newest_first) = match q.range {
            HistoryRange::Tail { offset, limit } => (
                format!("{cols} ORDER BY seq DESC LIMIT ?2 OFFSET ?3"),
                limit,
                offset,
                true,
            ),
            HistoryRange::After { seq, limit } => (
                format!("{cols} AND seq > ?3 ORDER BY seq ASC LIMIT ?2"),
                limit,
                seq,
                false,
            ),
        };
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let max_message = int(q.max_message_bytes as u64);
        let mut stmt = self.conn.prepare(&sql).map_err(e)?;
        let mut found = stmt
            .query(params![q.session_key, int(limit), int(at), max_message])
            .map_err(e)?;
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = found.next().map_err(e)? {
            let seq: i64 = r.get(0).map_err(e)?;
            let oversized: bool = r.get(1).map_err(e)?;
            let text: Option<String> = r.get(2).map_err(e)?;
            // An oversized message costs what its placeholder will.
            let cost = text.as_ref().map_or(PLACEHOLDER_BYTES, String::len);
            if !rows.is_empty() && bytes.saturating_add(cost) > q.max_bytes {
                break;
            }
            bytes = bytes.saturating_add(cost);
            let message = match text {
                Some(t) => serde_json::from_str(&t).map_err(|err| DbError::Row {
                    path: self.path.clone(),
                    source: StoreError::Invalid(format!(
                        "message {seq} of session {:?}: {err}",
                        q.session_key
                    )),
                })?,
                None => serde_json::Value::Null,
            };
            rows.push(HistoryRow {
                seq: seq as u64,
                message,
                oversized,
            });
        }
        if newest_first {
            rows.reverse();
        }
        Ok(HistoryPage { rows, total })
    }

    /// Commit a batch in one transaction: all of it is on disk when this returns `Ok`, none
    /// of it when it returns an error.
    pub fn apply(&mut self, changes: &[StoreChange]) -> Result<(), DbError> {
        self.commit(changes, |_| Ok(()))
    }

    /// Commit `changes`, then whatever `also` writes, in one transaction. A change whose row
    /// a later one sets again is not run ([`overwritten`]); `BEGIN` and `COMMIT` are kept
    /// prepared like the rows' statements (rusqlite's `Transaction` parses them each time).
    pub(crate) fn commit(
        &mut self,
        changes: &[StoreChange],
        also: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<(), DbError> {
        let conn = &self.conn;
        let mut tx = Statements::new(conn);
        let written = tx.run("BEGIN", []).and_then(|_| {
            for (change, overwritten) in changes.iter().zip(overwritten(changes)) {
                if !overwritten {
                    apply_one(&mut tx, change)?;
                }
            }
            also(conn)?;
            tx.run("COMMIT", []).map(|_| ())
        });
        drop(tx);
        if written.is_err() && !conn.is_autocommit() {
            // None of it stays. The error reported is the one that stopped the commit; a
            // failed rollback is not (as rusqlite's `Transaction` does when dropped).
            let _ = conn.execute_batch("ROLLBACK");
        }
        written.map_err(|e| sqlite(&self.path, e))
    }

    /// The frames in the WAL after the last commit (0 before any): what a checkpoint would
    /// copy into the database file, at most.
    pub fn wal_frames(&self) -> u32 {
        self.wal_frames.load(Ordering::Relaxed)
    }

    /// Copy the WAL into the database file (a passive checkpoint: it waits for no reader)
    /// and, when all of it was copied, start the WAL over with a write of one page (the
    /// schema version, unchanged). Starting over writes and syncs the WAL's header, one
    /// more sync: done here, it does not fall on the next commit, which a message waits for.
    pub fn checkpoint(&mut self) -> Result<(), DbError> {
        let e = |e| sqlite(&self.path, e);
        let (log, copied) = self
            .conn
            .wal_checkpoint_v2(DEFAULT_NAME, CheckpointMode::PASSIVE)
            .map_err(e)?;
        if log > 0 && copied == log {
            self.conn
                .pragma_update(None, "user_version", schema::VERSION)
                .map_err(e)?;
        }
        Ok(())
    }

    /// Make the WAL file at least `frames` frames long, zeros past its end, and sync it (a
    /// file that long already, as a start finds the one the last run kept, is left alone). A
    /// commit that stays within the file overwrites blocks it has, so its `fdatasync` writes
    /// the frames alone; one that makes the file longer also commits the file's new size
    /// and blocks to the file system's journal (on ext4 one more write and flush per commit,
    /// waited for by the message). SQLite never reads past the last valid frame (every
    /// frame carries the WAL's salt and a checksum) and keeps the file's length when it
    /// starts the WAL over after a checkpoint: the zeros written here, past the file's end,
    /// change nothing it reads.
    pub fn extend_wal(&self, frames: u32) -> Result<(), DbError> {
        let path = fresh::beside(&self.path, "-wal");
        let e = |source| DbError::Extend {
            path: path.clone(),
            source,
        };
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|e| sqlite(&self.path, e))?;
        let frame = WAL_FRAME_HEADER + u64::try_from(page).unwrap_or(0);
        let want = WAL_HEADER + u64::from(frames) * frame;
        // The database in WAL mode has its WAL open from `Db::open` on.
        let file = OpenOptions::new().write(true).open(&path).map_err(e)?;
        let mut at = file.metadata().map_err(e)?.len();
        if at >= want {
            return Ok(());
        }
        let zeros = vec![0u8; ZEROS_AT_ONCE];
        while at < want {
            let n = usize::try_from(want - at).map_or(ZEROS_AT_ONCE, |n| n.min(ZEROS_AT_ONCE));
            file.write_all_at(&zeros[..n], at).map_err(e)?;
            at += n as u64;
        }
        file.sync_data().map_err(e)
    }

    /// Whether the store's bookkeeping has a row `key` (a one-time step's marker).
    pub(crate) fn has_meta(&self, key: &str) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM meta WHERE key = ?1)",
                [key],
                |r| r.get(0),
            )
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Whether any pairing row exists.
    pub fn has_pairing(&self) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM paired_devices)
                     OR EXISTS (SELECT 1 FROM pending_requests)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite(&self.path, e))
    }
}

/// The statements one transaction runs, prepared once and kept in the connection's cache (a
/// message's commit runs the same few statements: parsing them each time was a fifth of the
/// writer's instructions per commit), and each taken from it once a transaction: a lookup
/// hashes the statement's text, and so does putting it back (1.9 k instructions a statement
/// run; a channel turn's commit runs its keyed-row put four times).
struct Statements<'c> {
    conn: &'c Connection,
    taken: Vec<(&'static str, CachedStatement<'c>)>,
}

impl<'c> Statements<'c> {
    /// Statements of `conn`, none taken yet.
    fn new(conn: &'c Connection) -> Self {
        Statements {
            conn,
            taken: Vec::new(),
        }
    }

    /// Run `sql` with `params`.
    fn run(&mut self, sql: &'static str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        let at = match self.taken.iter().position(|(s, _)| *s == sql) {
            Some(at) => at,
            None => {
                self.taken.push((sql, self.conn.prepare_cached(sql)?));
                self.taken.len() - 1
            }
        };
        self.taken[at].1.execute(params)
    }
}

/// A row that one change sets whole: puts or deletes.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum RowId<'a> {
    /// A keyed row: its kind ([`keyed`]) and key.
    Keyed(i64, &'a str),
    /// A pending input, by its run's id.
    PendingInput(&'a str),
}

/// The row `change` sets whole, if it is one row.
fn row_of(change: &StoreChange) -> Option<RowId<'_>> {
    Some(match change {
        // It also deletes the session's transcript.
        StoreChange::PutSession { key, .. } | StoreChange::DeleteSession { key } => {
            RowId::Keyed(keyed::SESSION, key)
        }
        StoreChange::PutChannelRow { kind, key, .. }
        | StoreChange::DeleteChannelRow { kind, key } => RowId::Keyed(keyed::channel(*kind), key),
        StoreChange::PutPendingInput { run_id, .. } | StoreChange::DeletePendingInput(run_id) => {
            RowId::PendingInput(run_id)
        }
        _ => return None,
    })
}

/// Which of one transaction's `changes` are overwritten: a later change puts or deletes the
/// same row, so what they write is gone by the commit and they need not run (a channel turn's
/// commit puts its inbound row three times and its session's twice). A session's delete, which
/// also takes its transcript, always runs. The rows left, and their order of insertion, are
/// those of running every change. Found by sorting (row, position), not hashing: with a
/// `HashSet` this cost a channel turn's commit 7.4 k instructions, sorted 2.9 k.
fn overwritten(changes: &[StoreChange]) -> Vec<bool> {
    let mut rows: Vec<(RowId<'_>, usize)> = changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((row_of(c)?, i)))
        .collect();
    rows.sort_unstable();
    let mut out = vec![false; changes.len()];
    for pair in rows.windows(2) {
        let ((row, i), (next, _)) = (&pair[0], &pair[1]);
        out[*i] = row == next && !matches!(changes[*i], StoreChange::DeleteSession { .. });
    }
    out
}

/// One change, inside the caller's transaction. Its rows come encoded by the core
/// ([`clawgate_core::persist::RowText`]): bound as they are.
fn apply_one(tx: &mut Statements<'_>, change: &StoreChange) -> rusqlite::Result<()> {
    match change {
        StoreChange::DeleteDevice(id) => {
            tx.run("DELETE FROM paired_devices WHERE device_id = ?1", [id])?;
        }
        StoreChange::DeletePending(id) => {
            tx.run("DELETE FROM pending_requests WHERE request_id = ?1", [id])?;
        }
        StoreChange::ClearPairing => {
            tx.run("DELETE FROM paired_devices", [])?;
            tx.run("DELETE FROM pending_requests", [])?;
        }
        StoreChange::PutSession { key, row } => {
            tx.run(keyed::PUT, params![keyed::SESSION, key, row.as_str()])?;
        }
        StoreChange::AppendMessage {
            session_key,
            seq,
            message,
        } => {
            // SQLite integers are signed: a seq beyond i64 is refused, not wrapped.
            let seq = i64::try_from(*seq)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tx.run(
                "INSERT OR REPLACE INTO transcript (session_key, seq, message) VALUES (?1, ?2, ?3)",
                params![session_key, seq, message.as_str()],
            )?;
        }
        StoreChange::PutChannelRow { kind, key, row } => {
            tx.run(
                keyed::PUT,
                params![keyed::channel(*kind), key, row.as_str()],
            )?;
        }
        StoreChange::DeleteChannelRow { kind, key } => {
            tx.run(keyed::DELETE, params![keyed::channel(*kind), key])?;
        }
        StoreChange::PutPendingInput { run_id, row } => {
            tx.run(
                "INSERT OR REPLACE INTO pending_input (run_id, row) VALUES (?1, ?2)",
                params![run_id, row.as_str()],
            )?;
        }
        StoreChange::DeletePendingInput(run_id) => {
            tx.run("DELETE FROM pending_input WHERE run_id = ?1", [run_id])?;
        }
        StoreChange::DeleteSession { key } => {
            tx.run("DELETE FROM transcript WHERE session_key = ?1", [key])?;
            tx.run(keyed::DELETE, params![keyed::SESSION, key])?;
        }
        put @ (StoreChange::PutDevice(_) | StoreChange::PutPending(_)) => {
            // The core's encoding, so `PairingStore::from_rows` reads back what it wrote.
            if let Some((kind, key, row)) = put.encoded() {
                let sql = match kind {
                    RowKind::Device => {
                        "INSERT OR REPLACE INTO paired_devices (device_id, row) VALUES (?1, ?2)"
                    }
                    RowKind::Pending => {
                        "INSERT OR REPLACE INTO pending_requests (request_id, row) VALUES (?1, ?2)"
                    }
                };
                tx.run(sql, params![key, row])?;
            }
        }
    }
    Ok(())
}

/// What an oversized message of a history read counts for against its byte bound.
const PLACEHOLDER_BYTES: usize = 128;

/// The position of a session's last message (0 when it has none).
fn last_seq(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM transcript WHERE session_key = ?1",
        [key],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// Create `path` 0600 if it is not there, and make it 0600 if it is.
pub(crate) fn private_file(path: &Path) -> Result<(), DbError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| create_error(path, e))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| create_error(path, e))
}

/// Creating `path` failed with `source`.
pub(crate) fn create_error(path: &Path, source: io::Error) -> DbError {
    DbError::Create {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> DbError {
    DbError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_cache_is_bounded() {
        let dir = clawgate_tests::tempdir::TempDir::new("store-cache");
        let db = Db::open(dir.path()).unwrap();
        let size: i64 = db
            .conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap();
        assert_eq!(size, -PAGE_CACHE_KIB);
    }

    #[test]
    fn a_row_set_again_later_in_the_transaction_is_written_once() {
        let dir = clawgate_tests::tempdir::TempDir::new("store-overwritten");
        let mut db = Db::open(dir.path()).unwrap();
        let inbound = |n: u64| StoreChange::PutChannelRow {
            kind: ChannelRowKind::Ingress,
            key: "k".into(),
            row: clawgate_core::persist::RowText::of_value(&serde_json::json!({"n": n})),
        };
        let session = |n: u64| StoreChange::PutSession {
            key: "s".into(),
            row: clawgate_core::persist::RowText::of_value(&serde_json::json!({"n": n})),
        };
        let before = db.conn.total_changes();
        db.apply(&[inbound(1), session(1), inbound(2), inbound(3), session(2)])
            .unwrap();
        assert_eq!(db.conn.total_changes() - before, 2);
        let rows = db.load_channel_rows().unwrap();
        assert_eq!(
            (rows.len(), &rows[0].row),
            (1, &serde_json::json!({"n": 3}))
        );
        let sessions = db.load_sessions(1).unwrap();
        assert_eq!(sessions[0].row, serde_json::json!({"n": 2}));
    }

    #[test]
    fn a_commit_that_fails_midway_leaves_nothing_and_the_next_one_commits() {
        let dir = clawgate_tests::tempdir::TempDir::new("store-rollback");
        let mut db = Db::open(dir.path()).unwrap();
        let session = StoreChange::PutSession {
            key: "s".into(),
            row: clawgate_core::persist::RowText::of_value(&serde_json::json!({})),
        };
        // A position SQLite cannot hold fails the second change, after the first ran.
        let beyond = StoreChange::AppendMessage {
            session_key: "s".into(),
            seq: u64::MAX,
            message: clawgate_core::persist::RowText::of_value(&serde_json::json!({})),
        };
        assert!(db.apply(&[session.clone(), beyond]).is_err());
        assert!(db.conn.is_autocommit());
        assert!(db.load_sessions(1).unwrap().is_empty());
        db.apply(&[session]).unwrap();
        assert_eq!(db.load_sessions(1).unwrap().len(), 1);
    }

    #[test]
    fn a_change_is_overwritten_only_by_a_later_one_of_the_same_row() {
        let channel = |kind, key: &str| StoreChange::DeleteChannelRow {
            kind,
            key: key.into(),
        };
        let session = |key: &str| StoreChange::PutSession {
            key: key.into(),
            row: clawgate_core::persist::RowText::of_value(&serde_json::Value::Null),
        };
        let pending = |id: &str| StoreChange::DeletePendingInput(id.into());
        let changes = [
            session("a"),
            StoreChange::DeleteSession { key: "a".into() },
            session("a"),
            session("b"),
            channel(ChannelRowKind::Ingress, "b"),
            channel(ChannelRowKind::Outbox, "k"),
            channel(ChannelRowKind::Ingress, "k"),
            pending("k"),
            channel(ChannelRowKind::Outbox, "k"),
            pending("k"),
            StoreChange::AppendMessage {
                session_key: "a".into(),
                seq: 1,
                message: clawgate_core::persist::RowText::of_value(&serde_json::Value::Null),
            },
        ];
        // The first put of session `a` is overwritten by the delete; the delete, which also
        // takes the transcript, is never; a row of another kind or key is not the same row.
        let want = [
            true, false, false, false, false, true, false, true, false, false, false,
        ];
        assert_eq!(overwritten(&changes), want);
    }
}
