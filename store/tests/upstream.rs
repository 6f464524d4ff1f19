//! Importing upstream OpenClaw's state database: a synthetic one with upstream's tables (rows
//! still in its WAL), then a newer schema, a corrupt file and a locked one, each reported
//! with its path; upstream's files are never written.

use std::fs;
use std::time::{Duration, Instant};

use clawgate_core::device::DeviceKey;
use clawgate_core::pairing::PendingKind;
use clawgate_core::persist::ChannelRowKind;
use clawgate_store::{Db, UPSTREAM_SCHEMA, UpstreamError, read_upstream};
use clawgate_tests::tempdir::TempDir;
use clawgate_tests::upstream_db::{self, *};

/// The bytes of upstream's database and its WAL.
fn files(dir: &TempDir) -> Vec<Vec<u8>> {
    let db = upstream_db::path(dir.path());
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    [db, wal.into()]
        .iter()
        .map(|p| fs::read(p).unwrap_or_default())
        .collect()
}

#[test]
fn devices_nodes_tokens_requests_approvals_and_identity_come_over() {
    let dir = TempDir::new("upstream-import");
    let writer = upstream_db::create(dir.path(), UPSTREAM_SCHEMA);
    let before = files(&dir);
    assert!(!before[1].is_empty(), "the rows are in the WAL");

    let up = read_upstream(dir.path()).unwrap().expect("found");
    assert_eq!(up.schema_version, UPSTREAM_SCHEMA);
    let op = &up.pairing.devices[OPERATOR_ID];
    assert_eq!(op.roles, ["operator"]);
    assert_eq!(
        op.scopes,
        ["operator.read", "operator.write"],
        "approved scopes"
    );
    assert_eq!(op.tokens["operator"].token, OPERATOR_TOKEN);
    assert_eq!(op.tokens["operator"].issued_at_ms, 1_700_000_000_100);
    assert!(
        !op.tokens.contains_key("node"),
        "a revoked token stays behind"
    );
    assert_eq!(
        (op.created_at_ms, op.approved_at_ms),
        (1_700_000_000_010, 1_700_000_000_020)
    );
    assert_eq!(op.meta.display_name.as_deref(), Some("laptop"));
    let node = &up.pairing.devices[NODE_ID];
    assert_eq!(node.tokens["node"].token, NODE_TOKEN);
    let approved = node.node.as_ref().expect("node approval");
    assert_eq!(approved.commands, ["system.which", "system.run"]);
    assert_eq!(approved.approved_at_ms, 1_700_000_000_500);
    assert_eq!(node.meta.version, "2026.9.6");
    let asked = &up.pairing.pending[NODE_REQUEST];
    assert_eq!(asked.kind, PendingKind::Node);
    assert_eq!(
        asked.commands,
        ["system.which", "system.run", "browser.proxy"]
    );
    assert_eq!(asked.expires_at_ms, 1_700_000_000_600 + 300_000);
    let request = &up.pairing.pending[DEVICE_REQUEST];
    assert_eq!(request.kind, PendingKind::Device);
    assert_eq!(request.scopes, ["operator.read"]);
    assert_eq!(request.remote_ip.as_deref(), Some("10.0.0.9"));
    assert_eq!(up.approvals.len(), 1);
    assert_eq!(
        up.approvals[0].sender_id, "4242",
        "upstream's tg: prefix is dropped"
    );
    let identity = up.identity.clone().expect("identity");
    assert_eq!(identity.seed, IDENTITY_SEED);
    assert_eq!(identity.created_at_ms, 1_700_000_000_000);

    let mut db = Db::open(dir.path()).unwrap();
    assert!(!db.upstream_imported().unwrap());
    db.import_upstream(&up).unwrap();
    assert!(db.upstream_imported().unwrap());
    let pairing = db.load_pairing().unwrap();
    assert_eq!(pairing.devices, up.pairing.devices);
    assert_eq!(pairing.pending, up.pairing.pending);
    let approvals: Vec<_> = db
        .load_channel_rows()
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == ChannelRowKind::PairingApproval)
        .collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].key, "telegram:default:4242");
    let stored = db.gateway_identity().unwrap().expect("stored");
    assert_eq!(stored.key().id(), DeviceKey::from_seed(IDENTITY_SEED).id());
    // An identity is created only when there is none.
    assert_eq!(db.gateway_identity_or_create([9; 32], 5).unwrap(), stored);

    assert_eq!(files(&dir), before, "upstream's files are only read");
    drop(writer);
}

#[test]
fn a_newer_schema_is_refused_with_its_path() {
    let dir = TempDir::new("upstream-newer");
    let _writer = upstream_db::create(dir.path(), UPSTREAM_SCHEMA + 1);
    let err = read_upstream(dir.path()).unwrap_err();
    assert!(
        matches!(err, UpstreamError::TooNew { found, .. } if found == UPSTREAM_SCHEMA + 1),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&upstream_db::path(dir.path()).display().to_string())
    );
}

#[test]
fn a_corrupt_file_is_reported_with_its_path() {
    let dir = TempDir::new("upstream-corrupt");
    let path = upstream_db::path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        &path,
        b"this is not a database, not even close to one.........".repeat(100),
    )
    .unwrap();
    let err = read_upstream(dir.path()).unwrap_err();
    assert!(matches!(err, UpstreamError::Sqlite { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(
        read_upstream(&dir.path().join("elsewhere"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_locked_database_is_reported_after_a_short_wait() {
    let dir = TempDir::new("upstream-locked");
    drop(upstream_db::create(dir.path(), UPSTREAM_SCHEMA));
    // Rollback-journal mode, where a writer's exclusive lock keeps readers out.
    let holder = rusqlite::Connection::open(upstream_db::path(dir.path())).unwrap();
    holder
        .pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))
        .unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let err = read_upstream(dir.path()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(
        err.to_string()
            .contains(&upstream_db::path(dir.path()).display().to_string())
    );
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(read_upstream(dir.path()).unwrap().is_some());
}
