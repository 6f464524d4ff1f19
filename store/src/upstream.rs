//! Upstream OpenClaw's state database (`$OPENCLAW_STATE_DIR/state/openclaw.sqlite`), read
//! once, read-only, to carry its pairing over: paired devices and nodes with their tokens,
//! pending requests, channel DM approvals and the gateway's own Ed25519 identity.
//!
//! The file is never written: it is opened `SQLITE_OPEN_READ_ONLY` (which still reads the
//! `-wal` file upstream leaves beside it after a clean stop) and read in one transaction, so
//! the rows are one consistent snapshot. A schema newer than [`UPSTREAM_SCHEMA`] is refused
//! rather than guessed at. Importing commits the rows and a marker in one transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clawgate_core::PairingStore;
use clawgate_core::channels::pairing::Approval;
use clawgate_core::persist::{ChannelRowKind, StoreChange, diff};
use rusqlite::{Connection, OpenFlags};

use crate::db::{Db, DbError, sqlite};
use crate::identity::StoredIdentity;
use crate::keyed;
use crate::upstream_rows;

/// The newest `schema_meta` version of upstream's state database this build imports
/// (openclaw 2026.9.6 writes 18).
pub const UPSTREAM_SCHEMA: u32 = 18;

/// How long a read waits for a lock upstream holds before the import reports it locked.
const UPSTREAM_BUSY_TIMEOUT: Duration = Duration::from_millis(1_000);

/// The `meta` key recording an import (its value: the file imported from).
const MARKER: &str = "upstream_imported_from";

/// Upstream's state database inside a state directory.
pub fn upstream_db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state").join("openclaw.sqlite")
}

/// Why upstream's database was not read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// SQLite refused it: not a database, corrupt, locked, or without the expected tables.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// Written by an upstream newer than this build knows.
    #[error(
        "{}: upstream schema version {found} is newer than clawgate imports ({known})",
        path.display()
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// The version found in `schema_meta`.
        found: u32,
        /// [`UPSTREAM_SCHEMA`].
        known: u32,
    },
    /// A row does not have the shape upstream writes.
    #[error("{}: {what}", path.display())]
    Row {
        /// The database.
        path: PathBuf,
        /// Which row and why.
        what: String,
    },
}

/// What upstream's database holds, in clawgate's terms.
#[derive(Debug)]
pub struct Upstream {
    /// The file read.
    pub path: PathBuf,
    /// Its `schema_meta` version.
    pub schema_version: u32,
    /// Paired devices (nodes included) and pending requests.
    pub pairing: PairingStore,
    /// Approved channel DM senders.
    pub approvals: Vec<Approval>,
    /// The gateway's own identity (the `primary` row of `device_identities`).
    pub identity: Option<StoredIdentity>,
}

impl Upstream {
    /// One line saying what there is: "2 paired devices (1 node, 3 device tokens), ...".
    pub fn summary(&self) -> String {
        let devices = self.pairing.devices.values();
        let nodes = devices.clone().filter(|d| d.node.is_some()).count();
        let tokens: usize = devices.map(|d| d.tokens.len()).sum();
        let identity = match &self.identity {
            Some(id) => format!("the gateway identity {}", id.key().id()),
            None => "no gateway identity".into(),
        };
        format!(
            "{} paired device(s) ({nodes} node(s), {tokens} device token(s)), {} pending request(s), {} channel approval(s), {identity}",
            self.pairing.devices.len(),
            self.pairing.pending.len(),
            self.approvals.len(),
        )
    }
}

/// Read upstream's database in `state_dir`; `Ok(None)` when there is none.
pub fn read_upstream(state_dir: &Path) -> Result<Option<Upstream>, UpstreamError> {
    let path = upstream_db_path(state_dir);
    if !path.is_file() {
        return Ok(None);
    }
    let e = |source| UpstreamError::Sqlite {
        path: path.clone(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&path, flags).map_err(e)?;
    conn.busy_timeout(UPSTREAM_BUSY_TIMEOUT).map_err(e)?;
    // One read transaction: every table as of the same commit.
    let tx = conn.transaction().map_err(e)?;
    let schema_version = upstream_rows::schema_version(&tx).map_err(e)?;
    if schema_version > UPSTREAM_SCHEMA {
        return Err(UpstreamError::TooNew {
            path,
            found: schema_version,
            known: UPSTREAM_SCHEMA,
        });
    }
    let row = |what: String| UpstreamError::Row {
        path: path.clone(),
        what,
    };
    let pairing = upstream_rows::pairing(&tx).map_err(e)?.map_err(row)?;
    let approvals = upstream_rows::approvals(&tx).map_err(e)?;
    let identity = upstream_rows::identity(&tx).map_err(e)?.map_err(row)?;
    tx.finish().map_err(e)?;
    Ok(Some(Upstream {
        path,
        schema_version,
        pairing,
        approvals,
        identity,
    }))
}

impl Db {
    /// Whether an upstream import was committed before (by the start-up or on demand).
    pub fn upstream_imported(&self) -> Result<bool, DbError> {
        self.has_meta(MARKER)
    }

    /// Commit what `up` holds, with the marker, in one transaction. Devices, requests and
    /// approvals clawgate already has win over upstream's; upstream's identity replaces
    /// clawgate's, since it is the one the clients know.
    pub fn import_upstream(&mut self, up: &Upstream) -> Result<(), DbError> {
        let mut merged = up.pairing.clone();
        let mut current = self.load_pairing()?;
        merged.devices.append(&mut current.devices);
        merged.pending.append(&mut current.pending);
        let mut changes = diff(&PairingStore::default(), &merged, false);
        let known = self.approval_keys()?;
        changes.extend(up.approvals.iter().map(Approval::stored).filter(
            |c| !matches!(c, StoreChange::PutChannelRow { key, .. } if known.contains(key)),
        ));
        let from = up.path.display().to_string();
        let identity = up.identity.as_ref();
        self.commit(&changes, |tx| {
            if let Some(id) = identity {
                crate::identity::put(tx, id)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [MARKER, from.as_str()],
            )
            .map(|_| ())
        })
    }

    fn approval_keys(&self) -> Result<Vec<String>, DbError> {
        let e = |e| sqlite(&self.path, e);
        let mut stmt = self.conn.prepare(keyed::LOAD).map_err(e)?;
        let kind = keyed::channel(ChannelRowKind::PairingApproval);
        let keys = stmt.query_map([kind], |r| r.get(0)).map_err(e)?;
        keys.collect::<rusqlite::Result<_>>().map_err(e)
    }
}
