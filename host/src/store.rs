//! Durable files: atomic writes (temp file, fsync, rename, fsync of the directory) with
//! 0600 permissions in 0700 directories, and opening the store at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clawgate_core::PairingStore;
use clawgate_store::{
    Db, DbError, Migrated, StoredIdentity, Upstream, UpstreamError, read_upstream,
};

use crate::entropy::random_bytes;
use crate::logging::unix_ms;

/// Create `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Write `bytes` to `path` atomically with mode 0600: a crash leaves either the old file or
/// the new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A bare file name's parent is the empty path: the current directory.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The state directory's database as start-up leaves it.
pub struct Opened {
    /// The database, for the writer thread.
    pub db: Db,
    /// The pairing rows (imported ones included).
    pub pairing: PairingStore,
    /// The gateway's own identity.
    pub identity: StoredIdentity,
    /// A legacy JSON pairing file moved in.
    pub migrated: Option<Migrated>,
    /// Upstream's database imported (`Ok`) or reported and skipped (`Err`).
    pub upstream: Option<Result<Upstream, UpstreamError>>,
}

/// Open the state directory's database, move a legacy JSON pairing file into it (once),
/// import upstream OpenClaw's state database when clawgate has no pairing yet and never
/// imported one (an unreadable upstream file is reported in [`Opened::upstream`] and
/// skipped), make sure the gateway has its identity, and load the pairing rows. Every
/// error names the file it is about.
pub fn open_store(state_dir: &Path) -> Result<Opened, DbError> {
    let new_identity = StoredIdentity {
        seed: random_bytes(),
        created_at_ms: unix_ms(),
    };
    let mut db = Db::open_seeded(state_dir, &new_identity)?;
    let migrated = db.migrate_legacy_pairing(state_dir)?;
    let upstream = if db.has_pairing()? || db.upstream_imported()? {
        None
    } else {
        match read_upstream(state_dir) {
            Ok(Some(up)) => {
                db.import_upstream(&up)?;
                Some(Ok(up))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    };
    let identity = db.gateway_identity_or_create(new_identity.seed, new_identity.created_at_ms)?;
    let pairing = db.load_pairing()?;
    Ok(Opened {
        db,
        pairing,
        identity,
        migrated,
        upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let dir = std::env::temp_dir().join(format!("clawgate-store-test-{}", std::process::id()));
        let path = dir.join("sub").join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let _ = fs::remove_dir_all(dir);
    }
}
