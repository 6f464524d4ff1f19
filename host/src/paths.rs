//! Where clawgate keeps its files: upstream's state directory and config file rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The environment as a map (what the core's config resolution reads).
pub fn env_map() -> BTreeMap<String, String> {
    clawgate_core::sorting::map_of(std::env::vars())
}

fn home(env: &BTreeMap<String, String>) -> PathBuf {
    env.get("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `OPENCLAW_STATE_DIR`, else `~/.openclaw`.
pub fn state_dir(env: &BTreeMap<String, String>) -> PathBuf {
    match env.get("OPENCLAW_STATE_DIR").filter(|s| !s.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => home(env).join(".openclaw"),
    }
}

/// `OPENCLAW_CONFIG_PATH`, else `$OPENCLAW_STATE_DIR/openclaw.json`, else `~/.openclaw/openclaw.json`.
pub fn config_path(env: &BTreeMap<String, String>) -> PathBuf {
    match env.get("OPENCLAW_CONFIG_PATH").filter(|s| !s.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => state_dir(env).join("openclaw.json"),
    }
}

/// The single-instance lock file inside the state directory.
pub fn lock_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("clawgate-gateway.lock")
}

/// The gateway log file inside the state directory.
pub fn log_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("logs").join("clawgate-gateway.log")
}
