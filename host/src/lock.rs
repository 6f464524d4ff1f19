//! The single-instance lock: an advisory lock on a file in the state directory, released by
//! the kernel when the process dies, so a crash never leaves it stuck.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its recorded description, if readable.
    Held(String),
    /// The file could not be opened or locked.
    Io(io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(who) => write!(f, "another clawgate gateway is running ({who})"),
            LockError::Io(e) => write!(f, "cannot take the instance lock: {e}"),
        }
    }
}

/// Take the lock at `path`, writing `who` (pid, port) into it for the next one to read.
pub fn acquire(path: &Path, who: &str) -> Result<InstanceLock, LockError> {
    if let Some(dir) = path.parent() {
        crate::store::ensure_private_dir(dir).map_err(LockError::Io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(LockError::Held(s.trim().to_string()));
        }
        Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    file.set_len(0).map_err(LockError::Io)?;
    file.rewind().map_err(LockError::Io)?;
    file.write_all(who.as_bytes()).map_err(LockError::Io)?;
    Ok(InstanceLock { _file: file })
}
