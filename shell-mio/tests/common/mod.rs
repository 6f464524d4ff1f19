//! What the black-box tests of `clawgate` share: private directories and free ports.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Patience for anything the gateway does on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A private HOME and state directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory with a `home/` inside.
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("clawgate-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("home")).unwrap();
        Self(path)
    }

    /// The state directory (`OPENCLAW_STATE_DIR`).
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
