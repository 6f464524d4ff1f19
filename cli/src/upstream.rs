//! `clawgate gateway import-upstream [--dry-run]`: carry upstream OpenClaw's pairing over from
//! its state database in the same state directory (paired devices and nodes with their device
//! tokens, pending requests, channel DM approvals, the gateway identity), on demand. The
//! gateway does the same at its first start; this is for a later switch, or to look first.
//! Upstream's file is only read.

use std::ffi::OsString;
use std::path::Path;

use clawgate_store::{Db, Upstream, read_upstream, upstream_db_path};

use super::args::{self, Opt};
use super::{Failure, Outcome};

const USAGE: &str = "clawgate gateway import-upstream [--dry-run]";

/// `gateway import-upstream`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, &[Opt::switch("dry-run")], &[])?;
    p.expect_positionals(0, USAGE)?;
    let state_dir = clawgate_host::paths::state_dir(&clawgate_host::paths::env_map());
    let up = read(&state_dir)?;
    print_details(&up);
    if p.switch("dry-run") {
        say!(
            "Would import from {}: {} (dry run: nothing written)",
            up.path.display(),
            up.summary()
        );
        return Ok(());
    }
    // The running gateway holds the pairing in memory and would not see the rows.
    let lock_path = clawgate_host::paths::lock_file(&state_dir);
    let _lock = clawgate_host::lock::acquire(&lock_path, "clawgate gateway import-upstream")
        .map_err(|e| Failure::failed(format!("{e}; stop it first, then import")))?;
    let mut db = Db::open(&state_dir).map_err(|e| Failure::failed(e.to_string()))?;
    db.import_upstream(&up)
        .map_err(|e| Failure::failed(e.to_string()))?;
    say!(
        "Imported from {} into {}: {}",
        up.path.display(),
        db.path().display(),
        up.summary()
    );
    Ok(())
}

/// Upstream's database in `state_dir`, or why there is nothing to import.
pub fn read(state_dir: &Path) -> Result<Upstream, Failure> {
    match read_upstream(state_dir) {
        Ok(Some(up)) => Ok(up),
        Ok(None) => Err(Failure::failed(format!(
            "no upstream state database at {}",
            upstream_db_path(state_dir).display()
        ))),
        Err(e) => Err(Failure::failed(format!(
            "upstream state database not imported: {e}"
        ))),
    }
}

/// One line per device, request and approval.
pub fn print_details(up: &Upstream) {
    for d in up.pairing.devices.values() {
        let node = d
            .node
            .as_ref()
            .map(|n| format!(", node with {} approved command(s)", n.commands.len()))
            .unwrap_or_default();
        say!(
            "  device {} {:?} roles [{}] scopes [{}] tokens [{}]{node}",
            d.device_id,
            d.meta.display_name.as_deref().unwrap_or(&d.meta.client_id),
            d.roles.join(", "),
            d.scopes.join(", "),
            d.tokens.keys().cloned().collect::<Vec<_>>().join(", "),
        );
    }
    for p in up.pairing.pending.values() {
        say!(
            "  pending {:?} request {} from device {}",
            p.kind,
            p.request_id,
            p.device_id
        );
    }
    for a in &up.approvals {
        say!(
            "  channel approval {} account {} sender {}",
            a.channel,
            a.account_id,
            a.sender_id
        );
    }
}

/// What `doctor` says about switching from upstream: what an import would bring (or why
/// upstream's database cannot be read), and every key of the config file clawgate ignores.
pub fn doctor_notes(env: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut notes = Vec::new();
    let state_dir = clawgate_host::paths::state_dir(env);
    let db = upstream_db_path(&state_dir);
    match read_upstream(&state_dir) {
        Ok(None) => {}
        Ok(Some(up)) => notes.push(format!(
            "upstream state database {} (schema {}) holds {}; the gateway imports it when it starts with no pairing of its own, or run `clawgate gateway import-upstream`",
            db.display(),
            up.schema_version,
            up.summary()
        )),
        Err(e) => notes.push(format!(
            "upstream state database cannot be imported ({e}); the gateway starts without it"
        )),
    }
    let config_path = clawgate_host::paths::config_path(env);
    let file = clawgate_host::settings::read_config_text(&config_path)
        .ok()
        .flatten()
        .and_then(|text| clawgate_core::config::parse_file(&text).ok());
    let ignored = file
        .as_ref()
        .map(clawgate_core::config::known::ignored_keys)
        .unwrap_or_default();
    if !ignored.is_empty() {
        notes.push(format!(
            "{} has keys clawgate ignores (what they set up will not run): {}",
            config_path.display(),
            ignored.join(", ")
        ));
    }
    notes
}
