//! Where the Control UI's files are when `gateway.controlUi.root` is not set: the
//! `dist/control-ui` folder of an `openclaw` package installed globally with npm, found the
//! way `npm root -g` would (the npm prefix from `NPM_CONFIG_PREFIX`, the `node` on `PATH`,
//! `~/.npm-global`, the system prefixes), by looking at folders: npm is never run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clawgate_core::config::UiRoot;

/// The package-relative folder of the built Control UI.
const CONTROL_UI_DIR: &str = "openclaw/dist/control-ui";

/// The global `node_modules` folders to look in, in order.
pub fn global_node_modules(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty());
    for key in ["NPM_CONFIG_PREFIX", "npm_config_prefix"] {
        if let Some(prefix) = var(key) {
            out.push(Path::new(prefix).join("lib/node_modules"));
        }
    }
    if let Some(path) = var("PATH") {
        for dir in std::env::split_paths(path) {
            if dir.join("node").is_file()
                && let Some(prefix) = dir.parent()
            {
                out.push(prefix.join("lib/node_modules"));
            }
        }
    }
    if let Some(home) = var("HOME") {
        out.push(Path::new(home).join(".npm-global/lib/node_modules"));
    }
    for system in [
        "/usr/local/lib/node_modules",
        "/usr/lib/node_modules",
        "/opt/homebrew/lib/node_modules",
    ] {
        out.push(PathBuf::from(system));
    }
    out.dedup();
    out
}

/// Fill in [`UiRoot::Installed`] when no root is configured and an installed package has
/// an `index.html`.
pub fn resolve(root: &mut UiRoot, env: &BTreeMap<String, String>) {
    if *root != UiRoot::Missing {
        return;
    }
    if let Some(found) = global_node_modules(env)
        .into_iter()
        .map(|m| m.join(CONTROL_UI_DIR))
        .find(|dir| dir.join("index.html").is_file())
    {
        *root = UiRoot::Installed(found.display().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_package_under_the_npm_prefix_and_keeps_a_configured_root() {
        let prefix = std::env::temp_dir().join(format!("clawgate-npm-{}", std::process::id()));
        let ui = prefix.join("lib/node_modules").join(CONTROL_UI_DIR);
        std::fs::create_dir_all(&ui).unwrap();
        let env: BTreeMap<String, String> = [(
            "NPM_CONFIG_PREFIX".to_string(),
            prefix.display().to_string(),
        )]
        .into();
        let mut root = UiRoot::Missing;
        resolve(&mut root, &env);
        assert_eq!(root, UiRoot::Missing, "no index.html yet");
        std::fs::write(ui.join("index.html"), "<html>").unwrap();
        resolve(&mut root, &env);
        assert_eq!(root, UiRoot::Installed(ui.display().to_string()));
        let mut configured = UiRoot::Configured("/x".into());
        resolve(&mut configured, &env);
        assert_eq!(configured, UiRoot::Configured("/x".into()));
        std::fs::remove_dir_all(&prefix).unwrap();
    }
}
