//! The pairing store: paired devices (operators and nodes alike), their per-role tokens and
//! approved node commands, and pending requests with stable ids. Pure data: it enters as a
//! snapshot (database rows, or a legacy JSON file) and leaves as row changes (`persist`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Version of the persisted format.
pub const STORE_VERSION: u32 = 1;

/// A token issued to a paired device for one role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceToken {
    /// The token (32 random bytes, base64url).
    pub token: String,
    /// Scopes the token grants.
    pub scopes: Vec<String>,
    /// When it was issued.
    pub issued_at_ms: u64,
}

/// Approved node capabilities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeApproval {
    /// Approved caps.
    pub caps: Vec<String>,
    /// Approved commands.
    pub commands: Vec<String>,
    /// When they were approved.
    pub approved_at_ms: u64,
}

/// Who a device said it was when it paired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMeta {
    /// `client.displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(default)]
    pub platform: String,
    /// `client.deviceFamily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.id`.
    #[serde(default)]
    pub client_id: String,
    /// `client.mode`.
    #[serde(default)]
    pub client_mode: String,
    /// `client.version`.
    #[serde(default)]
    pub version: String,
}

/// A paired device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    /// Device id.
    pub device_id: String,
    /// base64url raw public key.
    pub public_key: String,
    /// Client metadata.
    #[serde(default)]
    pub meta: DeviceMeta,
    /// Approved roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Approved operator scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Tokens by role.
    #[serde(default)]
    pub tokens: BTreeMap<String, DeviceToken>,
    /// Node approval, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeApproval>,
    /// First pairing time.
    pub created_at_ms: u64,
    /// Last approval time.
    pub approved_at_ms: u64,
}

/// What a pending request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingKind {
    /// Device pairing (roles and scopes).
    Device,
    /// Node command approval.
    Node,
}

/// A pending pairing or node-approval request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    /// Stable request id.
    pub request_id: String,
    /// Kind of request.
    pub kind: PendingKind,
    /// Device id.
    pub device_id: String,
    /// base64url raw public key.
    pub public_key: String,
    /// Client metadata.
    #[serde(default)]
    pub meta: DeviceMeta,
    /// Requested roles, merged.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Requested scopes, merged.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Declared node caps.
    #[serde(default)]
    pub caps: Vec<String>,
    /// Declared node commands.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Remote address of the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Created on a local connection.
    #[serde(default)]
    pub silent: bool,
    /// Creation (or last merge) time.
    pub ts: u64,
    /// Expiry time.
    pub expires_at_ms: u64,
}

/// The whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingStore {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// Paired devices by id.
    #[serde(default)]
    pub devices: BTreeMap<String, PairedDevice>,
    /// Pending requests by id.
    #[serde(default)]
    pub pending: BTreeMap<String, PendingRequest>,
}

/// Why a store snapshot cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not valid JSON of the store's shape.
    #[error("pairing store is not valid: {0}")]
    Invalid(String),
    /// Written by a newer clawgate.
    #[error("pairing store version {0} is newer than this clawgate understands ({STORE_VERSION})")]
    TooNew(u32),
}

fn merge(into: &mut Vec<String>, more: &[String]) {
    for m in more {
        if !into.contains(m) {
            into.push(m.clone());
        }
    }
}

impl PairingStore {
    /// Load a snapshot; an empty input is an empty store.
    pub fn load(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self {
                version: STORE_VERSION,
                ..Default::default()
            });
        }
        let mut store: Self =
            serde_json::from_slice(bytes).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if store.version > STORE_VERSION {
            return Err(StoreError::TooNew(store.version));
        }
        store.version = STORE_VERSION;
        store.repair();
        Ok(store)
    }

    /// Repair legacy entries: every entry is keyed by its own id (a hand-edited file may say
    /// otherwise; the rows are keyed by it), and a device with tokens but no roles gets the
    /// roles of its tokens.
    pub(crate) fn repair(&mut self) {
        self.devices = crate::sorting::map_of(
            std::mem::take(&mut self.devices)
                .into_values()
                .map(|d| (d.device_id.clone(), d)),
        );
        self.pending = crate::sorting::map_of(
            std::mem::take(&mut self.pending)
                .into_values()
                .map(|p| (p.request_id.clone(), p)),
        );
        for d in self.devices.values_mut() {
            for role in d.tokens.keys() {
                if !d.roles.contains(role) {
                    d.roles.push(role.clone());
                }
            }
        }
    }

    /// The snapshot to persist.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Drop expired pending requests; returns the removed ones.
    pub fn expire(&mut self, now_ms: u64) -> Vec<PendingRequest> {
        let expired: Vec<String> = self
            .pending
            .values()
            .filter(|p| p.expires_at_ms <= now_ms)
            .map(|p| p.request_id.clone())
            .collect();
        expired
            .iter()
            .filter_map(|id| self.pending.remove(id))
            .collect()
    }

    /// The pending request of a device and kind, if any.
    pub fn pending_for(&self, device_id: &str, kind: PendingKind) -> Option<&PendingRequest> {
        self.pending
            .values()
            .find(|p| p.device_id == device_id && p.kind == kind)
    }

    /// Create or merge the pending request of a device: the same device keeps the same id
    /// until the request is resolved or expires. Returns the request and whether it is new.
    pub fn request(&mut self, new: PendingRequest) -> (PendingRequest, bool) {
        let existing = self
            .pending_for(&new.device_id, new.kind)
            .map(|p| p.request_id.clone());
        match existing.and_then(|id| self.pending.get_mut(&id)) {
            Some(p) => {
                merge(&mut p.roles, &new.roles);
                merge(&mut p.scopes, &new.scopes);
                merge(&mut p.caps, &new.caps);
                merge(&mut p.commands, &new.commands);
                p.meta = new.meta;
                p.ts = new.ts;
                p.expires_at_ms = new.expires_at_ms;
                (p.clone(), false)
            }
            None => {
                self.pending.insert(new.request_id.clone(), new.clone());
                (new, true)
            }
        }
    }

    /// Approve a device request: merge roles and scopes into the paired device. Tokens for
    /// new roles are issued by the caller with [`PairingStore::issue_token`].
    pub fn approve_device(&mut self, req: &PendingRequest, now_ms: u64) -> &mut PairedDevice {
        let d = self
            .devices
            .entry(req.device_id.clone())
            .or_insert_with(|| PairedDevice {
                device_id: req.device_id.clone(),
                public_key: req.public_key.clone(),
                meta: req.meta.clone(),
                roles: Vec::new(),
                scopes: Vec::new(),
                tokens: BTreeMap::new(),
                node: None,
                created_at_ms: now_ms,
                approved_at_ms: now_ms,
            });
        merge(&mut d.roles, &req.roles);
        merge(&mut d.scopes, &req.scopes);
        d.meta = req.meta.clone();
        d.approved_at_ms = now_ms;
        d
    }

    /// Issue (or replace) the token of a device for a role.
    pub fn issue_token(
        &mut self,
        device_id: &str,
        role: &str,
        token: String,
        now_ms: u64,
    ) -> Option<DeviceToken> {
        let d = self.devices.get_mut(device_id)?;
        let scopes = if role == "operator" {
            d.scopes.clone()
        } else {
            Vec::new()
        };
        let t = DeviceToken {
            token,
            scopes,
            issued_at_ms: now_ms,
        };
        d.tokens.insert(role.to_string(), t.clone());
        Some(t)
    }

    /// The device whose token for `role` equals `token` (constant-time per comparison).
    pub fn token_matches(&self, device_id: &str, role: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.devices
            .get(device_id)
            .and_then(|d| d.tokens.get(role))
            .is_some_and(|t| {
                t.token.len() == token.len()
                    && bool::from(t.token.as_bytes().ct_eq(token.as_bytes()))
            })
    }

    /// Whether `token` is any paired device's token for `role` (an HTTP request names no
    /// device).
    pub fn any_token_matches(&self, role: &str, token: &str) -> bool {
        self.devices
            .keys()
            .any(|id| self.token_matches(id, role, token))
    }

    /// A device's token for a role, if it has one.
    pub fn token_of(&self, device_id: &str, role: &str) -> Option<String> {
        self.devices
            .get(device_id)
            .and_then(|d| d.tokens.get(role))
            .map(|t| t.token.clone())
    }

    /// Revoke a device's token for a role; returns whether one existed.
    pub fn revoke_token(&mut self, device_id: &str, role: &str) -> bool {
        self.devices
            .get_mut(device_id)
            .is_some_and(|d| d.tokens.remove(role).is_some())
    }

    /// `device.pair.list` / `node.pair.list` payload for one kind.
    pub fn list(&self, kind: PendingKind) -> Value {
        let pending: Vec<Value> = self
            .pending
            .values()
            .filter(|p| p.kind == kind)
            .map(|p| pending_json(p, kind))
            .collect();
        let paired: Vec<Value> = self
            .devices
            .values()
            .filter(|d| match kind {
                PendingKind::Device => true,
                PendingKind::Node => d.node.is_some(),
            })
            .map(|d| match kind {
                PendingKind::Device => device_json(d),
                PendingKind::Node => node_json(d),
            })
            .collect();
        json!({"pending": pending, "paired": paired})
    }
}

fn opt(v: &Option<String>) -> Value {
    v.clone().map(Value::String).unwrap_or(Value::Null)
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// A pending request as the list methods show it.
pub fn pending_json(p: &PendingRequest, kind: PendingKind) -> Value {
    let common = json!({
        "requestId": p.request_id,
        "displayName": opt(&p.meta.display_name),
        "platform": p.meta.platform,
        "deviceFamily": opt(&p.meta.device_family),
        "clientId": p.meta.client_id,
        "clientMode": p.meta.client_mode,
        "silent": p.silent,
        "ts": p.ts,
    });
    let mut v = strip_nulls(common);
    if let Value::Object(m) = &mut v {
        match kind {
            PendingKind::Device => {
                m.insert("deviceId".into(), json!(p.device_id));
                m.insert("publicKey".into(), json!(p.public_key));
                m.insert("roles".into(), json!(p.roles));
                m.insert("scopes".into(), json!(p.scopes));
                if let Some(ip) = &p.remote_ip {
                    m.insert("remoteIp".into(), json!(ip));
                }
            }
            PendingKind::Node => {
                m.insert("nodeId".into(), json!(p.device_id));
                m.insert("version".into(), json!(p.meta.version));
                m.insert("caps".into(), json!(p.caps));
                m.insert("commands".into(), json!(p.commands));
                m.insert(
                    "requiredApproveScopes".into(),
                    json!(required_approve_scopes(&p.commands)),
                );
            }
        }
    }
    v
}

/// Scopes needed to approve a node with these commands (upstream §4.2).
pub fn required_approve_scopes(commands: &[String]) -> Vec<&'static str> {
    const ADMIN_COMMANDS: &[&str] = &[
        "system.run",
        "system.run.prepare",
        "system.which",
        "fs.listDir",
    ];
    if commands.is_empty() {
        return vec!["operator.pairing"];
    }
    let admin = commands.iter().any(|c| {
        ADMIN_COMMANDS.contains(&c.as_str())
            || c.starts_with("browser.proxy")
            || c.starts_with("system.execApprovals.")
    });
    if admin {
        vec!["operator.pairing", "operator.admin"]
    } else {
        vec!["operator.pairing", "operator.write"]
    }
}

/// A paired device as `device.pair.list` shows it (tokens are never shown).
pub fn device_json(d: &PairedDevice) -> Value {
    let tokens: Vec<Value> = d
        .tokens
        .iter()
        .map(|(role, t)| json!({"role": role, "scopes": t.scopes, "createdAtMs": t.issued_at_ms}))
        .collect();
    strip_nulls(json!({
        "deviceId": d.device_id,
        "publicKey": d.public_key,
        "displayName": opt(&d.meta.display_name),
        "platform": d.meta.platform,
        "clientId": d.meta.client_id,
        "clientMode": d.meta.client_mode,
        "roles": d.roles,
        "scopes": d.scopes,
        "tokens": tokens,
        "createdAtMs": d.created_at_ms,
        "approvedAtMs": d.approved_at_ms,
    }))
}

/// A paired node as `node.pair.list` and `node.pair.approve` show it.
pub fn node_json(d: &PairedDevice) -> Value {
    let node = d.node.clone().unwrap_or_default();
    strip_nulls(json!({
        "nodeId": d.device_id,
        "clientId": d.meta.client_id,
        "clientMode": d.meta.client_mode,
        "displayName": opt(&d.meta.display_name),
        "platform": d.meta.platform,
        "version": d.meta.version,
        "deviceFamily": opt(&d.meta.device_family),
        "caps": node.caps,
        "commands": node.commands,
        "createdAtMs": d.created_at_ms,
        "approvedAtMs": node.approved_at_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, dev: &str, scopes: &[&str]) -> PendingRequest {
        PendingRequest {
            request_id: id.into(),
            kind: PendingKind::Device,
            device_id: dev.into(),
            public_key: "pk".into(),
            meta: DeviceMeta::default(),
            roles: vec!["operator".into()],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            caps: vec![],
            commands: vec![],
            remote_ip: None,
            silent: false,
            ts: 1,
            expires_at_ms: 100,
        }
    }

    #[test]
    fn same_device_keeps_its_request_id_and_merges() {
        let mut s = PairingStore::default();
        let (a, new_a) = s.request(req("r1", "d1", &["operator.read"]));
        let (b, new_b) = s.request(req("r2", "d1", &["operator.admin"]));
        assert!(new_a && !new_b);
        assert_eq!(a.request_id, b.request_id);
        assert_eq!(b.scopes, vec!["operator.read", "operator.admin"]);
        assert_eq!(s.pending.len(), 1);
        assert_eq!(s.expire(100).len(), 1);
        assert!(s.pending.is_empty());
    }

    #[test]
    fn round_trip_and_tokens() {
        let mut s = PairingStore::load(b"").unwrap();
        let r = req("r1", "d1", &["operator.read"]);
        s.approve_device(&r, 5);
        s.issue_token("d1", "operator", "tok".into(), 5).unwrap();
        assert!(s.token_matches("d1", "operator", "tok"));
        assert!(!s.token_matches("d1", "operator", "tok2"));
        let back = PairingStore::load(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert!(s.revoke_token("d1", "operator"));
        assert!(!s.token_matches("d1", "operator", "tok"));
    }

    #[test]
    fn garbage_and_future_versions_are_refused() {
        assert!(matches!(
            PairingStore::load(b"{"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            PairingStore::load(br#"{"version":99}"#),
            Err(StoreError::TooNew(99))
        ));
    }
}
