//! A synthetic upstream OpenClaw state database (`state/openclaw.sqlite`) with the tables the
//! import reads, as openclaw 2026.9.6 creates them (`OPENCLAW_STATE_SCHEMA_SQL` in its
//! `dist/openclaw-state-db-read-connection-*.mjs`), in WAL mode, holding one operator device
//! (its operator token live, a revoked node token), one node with approved and pending
//! commands, one pending device request, a Telegram approval and the `primary` identity.

use std::path::{Path, PathBuf};

use clawgate_core::device::{DeviceKey, b64url};
use rusqlite::{Connection, params};

/// The operator device's id.
pub const OPERATOR_ID: &str = "op-device";
/// Its live operator token.
pub const OPERATOR_TOKEN: &str = "operator-token-live";
/// The node's id.
pub const NODE_ID: &str = "node-device";
/// The node's token.
pub const NODE_TOKEN: &str = "node-token-live";
/// The pending node approval's request id.
pub const NODE_REQUEST: &str = "node-request-1";
/// The pending device request's id.
pub const DEVICE_REQUEST: &str = "device-request-1";
/// The gateway identity's seed.
pub const IDENTITY_SEED: [u8; 32] = [7; 32];

/// Upstream's DDL of the tables the import reads.
const DDL: &str = "
CREATE TABLE IF NOT EXISTS schema_meta (meta_key TEXT NOT NULL PRIMARY KEY, role TEXT NOT NULL,
  schema_version INTEGER NOT NULL, agent_id TEXT, app_version TEXT, created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS device_pairing_pending (request_id TEXT NOT NULL PRIMARY KEY,
  device_id TEXT NOT NULL, public_key TEXT NOT NULL, display_name TEXT, platform TEXT,
  device_family TEXT, client_id TEXT, client_mode TEXT, browser_origin TEXT, role TEXT,
  roles_json TEXT, scopes_json TEXT, remote_ip TEXT, silent INTEGER, is_repair INTEGER,
  ts INTEGER NOT NULL, refreshed_at_ms INTEGER) STRICT;
CREATE TABLE IF NOT EXISTS device_pairing_paired (device_id TEXT NOT NULL PRIMARY KEY,
  public_key TEXT NOT NULL, display_name TEXT, operator_label TEXT, platform TEXT,
  device_family TEXT, client_id TEXT, client_mode TEXT, browser_origin TEXT, role TEXT,
  roles_json TEXT, scopes_json TEXT, approved_scopes_json TEXT, remote_ip TEXT, tokens_json TEXT,
  approved_via TEXT, node_surface_json TEXT, pending_node_surface_json TEXT,
  created_at_ms INTEGER NOT NULL, approved_at_ms INTEGER NOT NULL, last_seen_at_ms INTEGER,
  last_seen_reason TEXT) STRICT;
CREATE TABLE IF NOT EXISTS device_identities (identity_key TEXT NOT NULL PRIMARY KEY,
  device_id TEXT NOT NULL, public_key_pem TEXT NOT NULL, private_key_pem TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS channel_pairing_allow_entries (channel_key TEXT NOT NULL,
  account_id TEXT NOT NULL, entry TEXT NOT NULL, sort_order INTEGER NOT NULL,
  updated_at INTEGER NOT NULL, PRIMARY KEY (channel_key, account_id, entry)) STRICT;
";

/// The database's path inside a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("state").join("openclaw.sqlite")
}

/// PEM of DER `prefix ++ key` with `label`.
fn pem(label: &str, prefix: &[u8], key: &[u8]) -> String {
    let mut der = prefix.to_vec();
    der.extend_from_slice(key);
    let body = data_encoding::BASE64.encode(&der);
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
}

/// Create the database in `state_dir` with `schema_version` in `schema_meta` and the rows
/// above. The connection is returned open: the rows stay in the `-wal` file until it closes,
/// as upstream's do after a clean stop.
pub fn create(state_dir: &Path, schema_version: u32) -> Connection {
    let path = path(state_dir);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("state/");
    let conn = Connection::open(&path).expect("open");
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("WAL");
    conn.execute_batch(DDL).expect("schema");
    let key = DeviceKey::from_seed(IDENTITY_SEED);
    let private = pem(
        "PRIVATE KEY",
        &[
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ],
        &IDENTITY_SEED,
    );
    let public = pem(
        "PUBLIC KEY",
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ],
        &key.public_raw(),
    );
    conn.execute(
        "INSERT INTO schema_meta VALUES ('primary', 'global', ?1, NULL, '2026.9.6', 1, 1)",
        [schema_version],
    )
    .expect("schema_meta");
    conn.execute(
        "INSERT INTO device_identities VALUES ('primary', ?1, ?2, ?3, 1700000000000, 1700000000001)",
        params![key.id(), public, private],
    )
    .expect("identity");
    let operator_tokens = r#"{"operator":{"token":"operator-token-live","role":"operator","scopes":["operator.read","operator.write"],"createdAtMs":1700000000100,"lastUsedAtMs":1700000000200},"node":{"token":"revoked","role":"node","scopes":[],"createdAtMs":1,"revokedAtMs":2}}"#;
    conn.execute(
        "INSERT INTO device_pairing_paired (device_id, public_key, display_name, platform,
           device_family, client_id, client_mode, role, roles_json, scopes_json,
           approved_scopes_json, tokens_json, approved_via, created_at_ms, approved_at_ms)
         VALUES (?1, ?2, 'laptop', 'linux', 'Linux', 'cli', 'cli', 'operator', '[\"operator\"]',
           '[\"operator.read\",\"operator.write\",\"operator.admin\"]',
           '[\"operator.read\",\"operator.write\"]', ?3, 'operator', 1700000000010, 1700000000020)",
        params![OPERATOR_ID, b64url(&[1; 32]), operator_tokens],
    )
    .expect("operator");
    let node_tokens = r#"{"node":{"token":"node-token-live","role":"node","scopes":[],"createdAtMs":1700000000300}}"#;
    let surface = r#"{"displayName":"vm","version":"2026.9.6","caps":["system"],"commands":["system.which","system.run"],"createdAtMs":1700000000400,"approvedAtMs":1700000000500}"#;
    let pending_surface = r#"{"requestId":"node-request-1","caps":["system","browser"],"commands":["system.which","system.run","browser.proxy"],"ts":1700000000600,"silent":false}"#;
    conn.execute(
        "INSERT INTO device_pairing_paired (device_id, public_key, display_name, platform,
           device_family, client_id, client_mode, role, roles_json, scopes_json, tokens_json,
           approved_via, node_surface_json, pending_node_surface_json, created_at_ms,
           approved_at_ms)
         VALUES (?1, ?2, 'vm', 'linux', 'Linux', 'node-host', 'node', 'node', '[\"node\"]', '[]',
           ?3, 'silent', ?4, ?5, 1700000000030, 1700000000040)",
        params![
            NODE_ID,
            b64url(&[2; 32]),
            node_tokens,
            surface,
            pending_surface
        ],
    )
    .expect("node");
    conn.execute(
        "INSERT INTO device_pairing_pending (request_id, device_id, public_key, display_name,
           platform, client_id, client_mode, role, roles_json, scopes_json, remote_ip, silent, ts)
         VALUES (?1, 'new-device', ?2, 'phone', 'ios', 'openclaw-ios', 'ui', 'operator',
           '[\"operator\"]', '[\"operator.read\"]', '10.0.0.9', 0, 1700000000700)",
        params![DEVICE_REQUEST, b64url(&[3; 32])],
    )
    .expect("pending");
    conn.execute(
        "INSERT INTO channel_pairing_allow_entries VALUES ('telegram', 'default', 'tg:4242', 0, 1700000000800)",
        [],
    )
    .expect("allow entry");
    conn
}
