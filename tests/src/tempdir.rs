//! The one scratch directory of every test in the workspace (unit tests of the CLI and the
//! host, the black-box suites): private, unique, and laid out as a gateway expects.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir with an empty `home/` inside, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create one whose name contains `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("clawgate-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("home")).expect("create temp dir");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A private `HOME` (`home/`, created).
    pub fn home(&self) -> PathBuf {
        self.0.join("home")
    }

    /// The state directory (`OPENCLAW_STATE_DIR`, `state/`, not created).
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }

    /// The config file in the state directory.
    pub fn config(&self) -> PathBuf {
        self.state().join("openclaw.json")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
