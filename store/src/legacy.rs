//! The move from the JSON pairing file of earlier clawgate versions
//! (`devices/clawgate-pairing.json`) into the database, once: rows and a marker are committed
//! together, then the file is renamed to `.migrated`. A crash between the two finishes the
//! rename on the next start; a crash before the commit leaves the file to migrate again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clawgate_core::PairingStore;
use clawgate_core::persist::{StoreChange, diff};

use crate::db::{Db, DbError};

const MARKER: &str = "pairing_json_migrated";

/// The JSON pairing file of earlier versions, inside a state directory.
pub fn legacy_pairing_path(state_dir: &Path) -> PathBuf {
    state_dir.join("devices").join("clawgate-pairing.json")
}

/// What a migration moved into the database.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The file it came from (now renamed with `.migrated` appended).
    pub from: PathBuf,
    /// Paired devices imported.
    pub devices: usize,
    /// Pending requests imported.
    pub pending: usize,
}

impl Db {
    /// Migrate the legacy JSON pairing file of `state_dir`, if there is one to migrate.
    /// Rows already in the database win over the file's.
    pub fn migrate_legacy_pairing(
        &mut self,
        state_dir: &Path,
    ) -> Result<Option<Migrated>, DbError> {
        let from = legacy_pairing_path(state_dir);
        let done = self.marker()?;
        let bytes = match fs::read(&from) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DbError::Create { path: from, source });
            }
        };
        if !done {
            let legacy = PairingStore::load(&bytes).map_err(|source| DbError::Row {
                path: from.clone(),
                source,
            })?;
            let mut current = self.load_pairing()?;
            let mut merged = legacy.clone();
            merged.devices.append(&mut current.devices);
            merged.pending.append(&mut current.pending);
            let changes = diff(&PairingStore::default(), &merged, false);
            self.commit_with_marker(&changes)?;
            rename_aside(&from)?;
            return Ok(Some(Migrated {
                from,
                devices: legacy.devices.len(),
                pending: legacy.pending.len(),
            }));
        }
        rename_aside(&from)?;
        Ok(None)
    }

    fn marker(&self) -> Result<bool, DbError> {
        self.has_meta(MARKER)
    }

    fn commit_with_marker(&mut self, changes: &[StoreChange]) -> Result<(), DbError> {
        self.commit(changes, |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, 'yes')",
                [MARKER],
            )
            .map(|_| ())
        })
    }
}

/// Rename `path` to `path.migrated` and make the rename durable.
fn rename_aside(path: &Path) -> Result<(), DbError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".migrated");
    let err = |source| DbError::Rename {
        path: path.to_path_buf(),
        source,
    };
    fs::rename(path, PathBuf::from(aside)).map_err(err)?;
    crate::fresh::sync_dir(path).map_err(err)
}
