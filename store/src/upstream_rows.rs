//! Upstream's rows in clawgate's terms: `device_pairing_paired` (devices and nodes, their
//! tokens from `tokens_json`, approved node commands from `node_surface_json`, a pending
//! node approval from `pending_node_surface_json`), `device_pairing_pending`,
//! `channel_pairing_allow_entries` and the `primary` row of `device_identities`. Column
//! names and JSON shapes are those openclaw 2026.9.6's `dist/device-pairing-identity-*.mjs`
//! and `dist/pairing-store-sqlite-*.mjs` write.

use std::collections::BTreeMap;

use clawgate_core::channels::pairing::Approval;
use clawgate_core::device::{DeviceKey, b64url, decode_private_key_pem, decode_public_key};
use clawgate_core::pairing::{
    DeviceMeta, DeviceToken, NodeApproval, PairedDevice, PairingStore, PendingKind, PendingRequest,
    STORE_VERSION,
};
use rusqlite::{OptionalExtension, Row, Transaction};
use serde_json::Value;

use crate::identity::StoredIdentity;

/// Upstream's pending-request lifetime (`DEVICE_PAIRING_PENDING_TTL_MS`): an imported request
/// expires when it would have upstream.
const PENDING_TTL_MS: u64 = 300_000;

/// A row that is not what upstream writes: which and why.
pub(crate) type BadRow = String;

/// The `schema_meta` version of the `primary` row (`PRAGMA user_version` without one).
pub(crate) fn schema_version(tx: &Transaction<'_>) -> rusqlite::Result<u32> {
    let meta: Option<i64> = tx
        .query_row(
            "SELECT schema_version FROM schema_meta WHERE meta_key = 'primary'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match meta {
        Some(v) => Ok(u32::try_from(v).unwrap_or(u32::MAX)),
        None => tx.pragma_query_value(None, "user_version", |r| r.get(0)),
    }
}

/// Paired devices and pending requests.
pub(crate) fn pairing(tx: &Transaction<'_>) -> rusqlite::Result<Result<PairingStore, BadRow>> {
    let mut store = PairingStore {
        version: STORE_VERSION,
        ..PairingStore::default()
    };
    let mut stmt = tx.prepare(
        "SELECT device_id, public_key, display_name, platform, device_family, client_id,
                client_mode, role, roles_json, scopes_json, approved_scopes_json, tokens_json,
                node_surface_json, pending_node_surface_json, created_at_ms, approved_at_ms,
                remote_ip
         FROM device_pairing_paired ORDER BY device_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (device, pending) = match paired(r)? {
            Ok(found) => found,
            Err(why) => return Ok(Err(why)),
        };
        if let Some(p) = pending {
            store.pending.insert(p.request_id.clone(), p);
        }
        store.devices.insert(device.device_id.clone(), device);
    }
    let mut stmt = tx.prepare(
        "SELECT request_id, device_id, public_key, display_name, platform, device_family,
                client_id, client_mode, role, roles_json, scopes_json, remote_ip, silent, ts,
                refreshed_at_ms
         FROM device_pairing_pending ORDER BY request_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let p = match pending_device(r)? {
            Ok(p) => p,
            Err(why) => return Ok(Err(why)),
        };
        store.pending.insert(p.request_id.clone(), p);
    }
    Ok(Ok(store))
}

/// Approved channel DM senders, by channel, account and sender.
pub(crate) fn approvals(tx: &Transaction<'_>) -> rusqlite::Result<Vec<Approval>> {
    let mut stmt = tx.prepare(
        "SELECT channel_key, account_id, entry, updated_at FROM channel_pairing_allow_entries
         ORDER BY channel_key, account_id, sort_order, entry",
    )?;
    let found = stmt.query_map([], |r| {
        let channel: String = r.get(0)?;
        let account: String = r.get(1)?;
        let entry: String = r.get(2)?;
        Ok(Approval {
            sender_id: sender_id(&channel, &entry),
            account_id: if account.trim().is_empty() {
                "default".into()
            } else {
                account
            },
            channel,
            approved_at: ms(r.get(3)?),
        })
    })?;
    found.collect()
}

/// The gateway's own identity, checked against its stored public key and device id.
pub(crate) fn identity(
    tx: &Transaction<'_>,
) -> rusqlite::Result<Result<Option<StoredIdentity>, BadRow>> {
    let row: Option<(String, String, String, i64)> = tx
        .query_row(
            "SELECT device_id, public_key_pem, private_key_pem, created_at_ms
             FROM device_identities WHERE identity_key = 'primary'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((device_id, public_pem, private_pem, created)) = row else {
        return Ok(Ok(None));
    };
    let bad = |why: &str| Err(format!("device identity \"primary\": {why}"));
    let Some(seed) = decode_private_key_pem(&private_pem) else {
        return Ok(bad("private key is not an Ed25519 PKCS#8 PEM"));
    };
    let key = DeviceKey::from_seed(seed);
    if decode_public_key(&public_pem) != Some(key.public_raw()) {
        return Ok(bad("public key does not match the private key"));
    }
    if key.id() != device_id {
        return Ok(bad("device id is not the public key's"));
    }
    Ok(Ok(Some(StoredIdentity {
        seed,
        created_at_ms: ms(created),
    })))
}

/// A sender id as clawgate keys it: Telegram entries may carry upstream's `telegram:`/`tg:`.
fn sender_id(channel: &str, entry: &str) -> String {
    let entry = entry.trim();
    if channel == "telegram" {
        for prefix in ["telegram:", "tg:"] {
            if entry
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            {
                return entry[prefix.len()..].to_string();
            }
        }
    }
    entry.to_string()
}

/// Milliseconds as SQLite gave them (a negative one is 0).
fn ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A JSON column: `None` when NULL, an error naming the column when not JSON.
fn json_col(r: &Row<'_>, i: usize, what: &str) -> rusqlite::Result<Result<Option<Value>, BadRow>> {
    let text: Option<String> = r.get(i)?;
    Ok(match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{what} is not JSON: {e}")),
    })
}

/// A JSON array of strings (anything else in it is skipped).
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn opt_ms(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

/// The base64url raw key clawgate compares, from whatever encoding upstream kept.
fn public_key(stored: &str) -> String {
    decode_public_key(stored).map_or_else(|| stored.to_string(), |raw| b64url(&raw))
}

/// The client metadata columns 2..=6 of both tables, with `version` from a node surface.
fn meta(r: &Row<'_>, first: usize, version: String) -> rusqlite::Result<DeviceMeta> {
    Ok(DeviceMeta {
        display_name: r.get(first)?,
        platform: r.get::<_, Option<String>>(first + 1)?.unwrap_or_default(),
        device_family: r.get(first + 2)?,
        client_id: r.get::<_, Option<String>>(first + 3)?.unwrap_or_default(),
        client_mode: r.get::<_, Option<String>>(first + 4)?.unwrap_or_default(),
        version,
    })
}

/// Roles from `roles_json`, else the single `role`.
fn roles(role: Option<String>, roles_json: Option<&Value>) -> Vec<String> {
    let listed = strings(roles_json);
    if listed.is_empty() {
        role.into_iter().collect()
    } else {
        listed
    }
}

/// One `device_pairing_paired` row: the device, and its pending node approval if any.
fn paired(r: &Row<'_>) -> rusqlite::Result<Result<(PairedDevice, Option<PendingRequest>), BadRow>> {
    let device_id: String = r.get(0)?;
    let mut cols = BTreeMap::new();
    for (i, name) in [
        (8, "roles_json"),
        (9, "scopes_json"),
        (10, "approved_scopes_json"),
        (11, "tokens_json"),
        (12, "node_surface_json"),
        (13, "pending_node_surface_json"),
    ] {
        match json_col(r, i, name)? {
            Ok(v) => cols.insert(name, v),
            Err(why) => return Ok(Err(format!("paired device {device_id}: {why}"))),
        };
    }
    let col = |name: &str| cols.get(name).and_then(Option::as_ref);
    let surface = col("node_surface_json");
    let pending_surface = col("pending_node_surface_json");
    let version = surface
        .or(pending_surface)
        .and_then(|s| s.get("version"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let meta = meta(r, 2, version)?;
    let public_key = public_key(&r.get::<_, String>(1)?);
    let created_at_ms = ms(r.get(14)?);
    let approved_at_ms = ms(r.get(15)?);
    let scopes = match col("approved_scopes_json") {
        Some(v) => strings(Some(v)),
        None => strings(col("scopes_json")),
    };
    let mut tokens = BTreeMap::new();
    if let Some(map) = col("tokens_json").and_then(Value::as_object) {
        for (role, t) in map {
            let revoked = t.get("revokedAtMs").is_some_and(|v| !v.is_null());
            let Some(token) = t.get("token").and_then(Value::as_str).filter(|_| !revoked) else {
                continue;
            };
            tokens.insert(
                role.clone(),
                DeviceToken {
                    token: token.to_string(),
                    scopes: strings(t.get("scopes")),
                    issued_at_ms: opt_ms(t.get("createdAtMs")).unwrap_or(created_at_ms),
                },
            );
        }
    }
    let node = surface.map(|s| NodeApproval {
        caps: strings(s.get("caps")),
        commands: strings(s.get("commands")),
        approved_at_ms: opt_ms(s.get("approvedAtMs")).unwrap_or(approved_at_ms),
    });
    let pending = pending_surface.and_then(|s| {
        let ts = opt_ms(s.get("ts")).unwrap_or(approved_at_ms);
        Some(PendingRequest {
            request_id: s.get("requestId")?.as_str()?.to_string(),
            kind: PendingKind::Node,
            device_id: device_id.clone(),
            public_key: public_key.clone(),
            meta: meta.clone(),
            roles: vec!["node".into()],
            scopes: Vec::new(),
            caps: strings(s.get("caps")),
            commands: strings(s.get("commands")),
            remote_ip: r.get(16).ok().flatten(),
            silent: s.get("silent").and_then(Value::as_bool).unwrap_or(false),
            ts,
            expires_at_ms: ts.saturating_add(PENDING_TTL_MS),
        })
    });
    let mut device = PairedDevice {
        device_id,
        public_key,
        meta,
        roles: roles(r.get(7)?, col("roles_json")),
        scopes,
        tokens,
        node,
        created_at_ms,
        approved_at_ms,
    };
    // A device with a token for a role holds that role (as `PairingStore::load` repairs).
    for role in device.tokens.keys() {
        if !device.roles.contains(role) {
            device.roles.push(role.clone());
        }
    }
    Ok(Ok((device, pending)))
}

/// One `device_pairing_pending` row.
fn pending_device(r: &Row<'_>) -> rusqlite::Result<Result<PendingRequest, BadRow>> {
    let request_id: String = r.get(0)?;
    let mut json = Vec::new();
    for (i, name) in [(9, "roles_json"), (10, "scopes_json")] {
        match json_col(r, i, name)? {
            Ok(v) => json.push(v),
            Err(why) => return Ok(Err(format!("pending request {request_id}: {why}"))),
        }
    }
    let ts = ms(r.get(13)?);
    let refreshed = r.get::<_, Option<i64>>(14)?.map(ms).unwrap_or(ts);
    Ok(Ok(PendingRequest {
        request_id,
        kind: PendingKind::Device,
        device_id: r.get(1)?,
        public_key: public_key(&r.get::<_, String>(2)?),
        meta: meta(r, 3, String::new())?,
        roles: roles(r.get(8)?, json.first().and_then(Option::as_ref)),
        scopes: strings(json.get(1).and_then(Option::as_ref)),
        caps: Vec::new(),
        commands: Vec::new(),
        remote_ip: r.get(11)?,
        silent: r.get::<_, Option<i64>>(12)?.is_some_and(|s| s != 0),
        ts,
        expires_at_ms: refreshed.saturating_add(PENDING_TTL_MS),
    }))
}
