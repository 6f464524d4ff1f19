//! The schema, as an ordered list of migrations; `PRAGMA user_version` is the number applied.
//! A new table is a new entry at the end; an entry is never edited once released.

use rusqlite::{Connection, Transaction};

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: pairing (rows are the core's JSON encodings) and the store's own bookkeeping.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE paired_devices (device_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE pending_requests (request_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;",
    // 2: chat sessions (the core's JSON encoding) and their transcripts, one row a message.
    "CREATE TABLE sessions (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE transcript (
         session_key TEXT NOT NULL,
         seq INTEGER NOT NULL,
         message TEXT NOT NULL,
         PRIMARY KEY (session_key, seq)
     ) STRICT;",
    // 3: channels: DM pairing, the durable inbound queue, the outbox, poll offsets (the
    // core's JSON encodings, keyed as the core keys them).
    "CREATE TABLE channel_pairing_requests (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE channel_pairing_approvals (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE channel_ingress (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE channel_outbox (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;
     CREATE TABLE channel_offsets (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;",
    // 4: messages waiting in a session's lane (pending input), oldest first by rowid.
    "CREATE TABLE pending_input (run_id TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;",
    // 5: exec allow-always grants (upstream's generated allowlist entries, as the core
    // encodes them), keyed by the command and directory each is bound to.
    "CREATE TABLE exec_allow_always (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT;",
    // 6: the keyed row tables without a rowid: the key is the table's one b-tree, so putting or
    // deleting a row writes one page, not two (the row's and its key index's). A message's
    // commits touch four or five of them; the transcript (large rows) and the pending input
    // (ordered by rowid) keep theirs.
    "CREATE TABLE sessions_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO sessions_v6 (key, row) SELECT key, row FROM sessions;
     DROP TABLE sessions;
     ALTER TABLE sessions_v6 RENAME TO sessions;
     CREATE TABLE channel_pairing_requests_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO channel_pairing_requests_v6 (key, row) SELECT key, row FROM channel_pairing_requests;
     DROP TABLE channel_pairing_requests;
     ALTER TABLE channel_pairing_requests_v6 RENAME TO channel_pairing_requests;
     CREATE TABLE channel_pairing_approvals_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO channel_pairing_approvals_v6 (key, row) SELECT key, row FROM channel_pairing_approvals;
     DROP TABLE channel_pairing_approvals;
     ALTER TABLE channel_pairing_approvals_v6 RENAME TO channel_pairing_approvals;
     CREATE TABLE channel_ingress_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO channel_ingress_v6 (key, row) SELECT key, row FROM channel_ingress;
     DROP TABLE channel_ingress;
     ALTER TABLE channel_ingress_v6 RENAME TO channel_ingress;
     CREATE TABLE channel_outbox_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO channel_outbox_v6 (key, row) SELECT key, row FROM channel_outbox;
     DROP TABLE channel_outbox;
     ALTER TABLE channel_outbox_v6 RENAME TO channel_outbox;
     CREATE TABLE channel_offsets_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO channel_offsets_v6 (key, row) SELECT key, row FROM channel_offsets;
     DROP TABLE channel_offsets;
     ALTER TABLE channel_offsets_v6 RENAME TO channel_offsets;
     CREATE TABLE exec_allow_always_v6 (key TEXT PRIMARY KEY, row TEXT NOT NULL) STRICT, WITHOUT ROWID;
     INSERT INTO exec_allow_always_v6 (key, row) SELECT key, row FROM exec_allow_always;
     DROP TABLE exec_allow_always;
     ALTER TABLE exec_allow_always_v6 RENAME TO exec_allow_always;",
    // 7: the keyed rows in one table (`crate::keyed`): a channel turn's session, inbound,
    // outbox and offset rows share a page of the WAL instead of writing one a table. The
    // kind numbers are `keyed::channel`'s and `keyed::SESSION`; rows keep their bytes.
    "CREATE TABLE keyed (
         kind INTEGER NOT NULL,
         key TEXT NOT NULL,
         row TEXT NOT NULL,
         PRIMARY KEY (kind, key)
     ) STRICT, WITHOUT ROWID;
     INSERT INTO keyed (kind, key, row) SELECT 1, key, row FROM channel_pairing_requests;
     INSERT INTO keyed (kind, key, row) SELECT 2, key, row FROM channel_pairing_approvals;
     INSERT INTO keyed (kind, key, row) SELECT 3, key, row FROM exec_allow_always;
     INSERT INTO keyed (kind, key, row) SELECT 4, key, row FROM channel_ingress;
     INSERT INTO keyed (kind, key, row) SELECT 5, key, row FROM channel_outbox;
     INSERT INTO keyed (kind, key, row) SELECT 6, key, row FROM channel_offsets;
     INSERT INTO keyed (kind, key, row) SELECT 7, key, row FROM sessions;
     DROP TABLE channel_pairing_requests;
     DROP TABLE channel_pairing_approvals;
     DROP TABLE exec_allow_always;
     DROP TABLE channel_ingress;
     DROP TABLE channel_outbox;
     DROP TABLE channel_offsets;
     DROP TABLE sessions;",
];

/// The schema version this build writes.
pub(crate) const VERSION: u32 = MIGRATIONS.len() as u32;

/// What the database holds before migrating.
pub(crate) enum Found {
    /// At or below [`VERSION`]: migrated in place.
    Known(u32),
    /// Written by a newer clawgate.
    Newer(u32),
}

/// The schema version stored in the database.
pub(crate) fn found(conn: &Connection) -> rusqlite::Result<Found> {
    let v: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(if v > VERSION {
        Found::Newer(v)
    } else {
        Found::Known(v)
    })
}

/// Apply the migrations after `from`, in the caller's transaction.
pub(crate) fn migrate(tx: &Transaction<'_>, from: u32) -> rusqlite::Result<()> {
    for sql in MIGRATIONS.iter().skip(from as usize) {
        tx.execute_batch(sql)?;
    }
    if from < VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    Ok(())
}
