//! Methods that change the pairing store: approve, reject and remove pairing requests,
//! devices and nodes; rename nodes; rotate and revoke device tokens.

use std::time::Instant;

use serde_json::{Value, json};

use super::params::{self, FromParams, Kind, NonEmpty, optional, required};
use super::{Call, NoParams, Reply};
use crate::close::{CloseReason, Invalidation};
use crate::conn::ConnId;
use crate::frame::{ErrorCode, ErrorShape, OutFrame};
use crate::gateway::Gateway;
use crate::pairing::{self, PendingKind};
use crate::scopes;

/// Params naming a pending pairing request (`*.pair.approve`, `*.pair.reject`).
pub(crate) struct RequestId {
    request_id: NonEmpty,
}

impl FromParams for RequestId {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[required("requestId", Kind::NonEmpty)];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            request_id: p.required_non_empty("requestId"),
        })
    }
}

/// `node.pair.remove` params.
pub(crate) struct NodeId {
    node_id: NonEmpty,
}

impl FromParams for NodeId {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[required("nodeId", Kind::NonEmpty)];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            node_id: p.required_non_empty("nodeId"),
        })
    }
}

/// `device.pair.remove` params.
pub(crate) struct DeviceId {
    device_id: NonEmpty,
}

impl FromParams for DeviceId {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[required("deviceId", Kind::NonEmpty)];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            device_id: p.required_non_empty("deviceId"),
        })
    }
}

/// `node.rename` params.
pub(crate) struct NodeRename {
    node_id: NonEmpty,
    display_name: NonEmpty,
}

impl FromParams for NodeRename {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("nodeId", Kind::NonEmpty),
            required("displayName", Kind::NonEmpty),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            node_id: p.required_non_empty("nodeId"),
            display_name: p.required_non_empty("displayName"),
        })
    }
}

/// `device.token.rotate` params. `scopes` is validated; the new token carries the scopes the
/// device was approved for.
pub(crate) struct TokenRotate {
    device_id: NonEmpty,
    role: NonEmpty,
}

impl FromParams for TokenRotate {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("deviceId", Kind::NonEmpty),
            required("role", Kind::NonEmpty),
            optional("scopes", Kind::NonEmptyList),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            device_id: p.required_non_empty("deviceId"),
            role: p.required_non_empty("role"),
        })
    }
}

/// `device.token.revoke` params.
pub(crate) struct TokenRevoke {
    device_id: NonEmpty,
    role: NonEmpty,
}

impl FromParams for TokenRevoke {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("deviceId", Kind::NonEmpty),
            required("role", Kind::NonEmpty),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            device_id: p.required_non_empty("deviceId"),
            role: p.required_non_empty("role"),
        })
    }
}

impl Gateway {
    pub(super) fn node_pair_list(&mut self, now: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        self.pair_list(now, PendingKind::Node)
    }

    pub(super) fn device_pair_list(&mut self, now: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        self.pair_list(now, PendingKind::Device)
    }

    fn pair_list(&mut self, now: Instant, kind: PendingKind) -> Reply {
        self.store.expire(self.unix_ms(now));
        Reply::Now(Ok(self.store.list(kind)))
    }

    pub(super) fn node_rename(&mut self, _: Instant, _: &Call<'_>, p: NodeRename) -> Reply {
        let (nid, name) = (p.node_id.0, p.display_name.0);
        let Some(d) = self.store.devices.get_mut(&nid) else {
            return Reply::Now(Err(ErrorShape::invalid(format!("unknown nodeId: {nid}"))));
        };
        d.meta.display_name = Some(name.clone());
        self.persist();
        Reply::Now(Ok(json!({"nodeId": nid, "displayName": name})))
    }

    /// The pending request of `kind` named `rid` (expired ones are gone first).
    fn pending_request(
        &mut self,
        now: Instant,
        rid: String,
        kind: PendingKind,
    ) -> Result<(String, pairing::PendingRequest, u64), ErrorShape> {
        let now_ms = self.unix_ms(now);
        self.store.expire(now_ms);
        match self.store.pending.get(&rid) {
            Some(r) if r.kind == kind => {
                let r = r.clone();
                Ok((rid, r, now_ms))
            }
            _ => Err(unknown_request(&rid)),
        }
    }

    pub(super) fn device_pair_approve(
        &mut self,
        now: Instant,
        _: &Call<'_>,
        p: RequestId,
    ) -> Reply {
        Reply::Now(self.approve_device_request(now, p.request_id.0))
    }

    pub(super) fn node_pair_approve(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: RequestId,
    ) -> Reply {
        Reply::Now(self.approve_node_request(now, call.granted, p.request_id.0))
    }

    pub(super) fn device_pair_reject(&mut self, now: Instant, _: &Call<'_>, p: RequestId) -> Reply {
        Reply::Now(self.pair_reject(now, PendingKind::Device, p.request_id.0))
    }

    pub(super) fn node_pair_reject(&mut self, now: Instant, _: &Call<'_>, p: RequestId) -> Reply {
        Reply::Now(self.pair_reject(now, PendingKind::Node, p.request_id.0))
    }

    pub(super) fn node_pair_remove(&mut self, now: Instant, _: &Call<'_>, p: NodeId) -> Reply {
        let nid = p.node_id.0;
        let removed = self
            .store
            .devices
            .get_mut(&nid)
            .and_then(|d| d.node.take())
            .is_some();
        Reply::Now(self.removed(now, removed, "nodeId", nid, Invalidation::NodeRemoved))
    }

    pub(super) fn device_pair_remove(&mut self, now: Instant, _: &Call<'_>, p: DeviceId) -> Reply {
        let did = p.device_id.0;
        let removed = self.store.devices.remove(&did).is_some();
        Reply::Now(self.removed(now, removed, "deviceId", did, Invalidation::DeviceRemoved))
    }

    /// After a removal: persist and close the device's connections, or say what was unknown.
    fn removed(
        &mut self,
        now: Instant,
        removed: bool,
        key: &str,
        id: String,
        why: Invalidation,
    ) -> Result<Value, ErrorShape> {
        if !removed {
            return Err(ErrorShape::invalid(format!("unknown {key}: {id}")));
        }
        self.persist();
        self.close_device_conns(now, &id, None, why);
        Ok(json!({ key: id }))
    }

    pub(super) fn token_rotate(&mut self, now: Instant, call: &Call<'_>, p: TokenRotate) -> Reply {
        let result = non_operator_tokens_need_admin(call.granted, &p.role.0)
            .and_then(|()| self.rotate_token(now, p.device_id.0, p.role.0));
        Reply::Now(result)
    }

    pub(super) fn token_revoke(&mut self, now: Instant, call: &Call<'_>, p: TokenRevoke) -> Reply {
        let result = non_operator_tokens_need_admin(call.granted, &p.role.0)
            .and_then(|()| self.revoke_token(now, p.device_id.0, p.role.0));
        Reply::Now(result)
    }

    fn approve_device_request(&mut self, now: Instant, rid: String) -> Result<Value, ErrorShape> {
        let (rid, req, now_ms) = self.pending_request(now, rid, PendingKind::Device)?;
        self.store.pending.remove(&rid);
        self.store.approve_device(&req, now_ms);
        for role in &req.roles {
            let token = self.new_token();
            self.store.issue_token(&req.device_id, role, token, now_ms);
        }
        self.persist();
        let resolved = json!({"requestId": rid, "deviceId": req.device_id, "decision": "approved", "ts": now_ms});
        self.broadcast(now, "device.pair.resolved", &resolved, None);
        let device = self
            .store
            .devices
            .get(&req.device_id)
            .map(pairing::device_json)
            .unwrap_or(Value::Null);
        Ok(json!({"requestId": rid, "device": device}))
    }

    fn approve_node_request(
        &mut self,
        now: Instant,
        granted: &[String],
        rid: String,
    ) -> Result<Value, ErrorShape> {
        let (rid, req, now_ms) = self.pending_request(now, rid, PendingKind::Node)?;
        for need in pairing::required_approve_scopes(&req.commands) {
            if !scopes::satisfied(granted, need) {
                return Err(scopes::missing_scope(need));
            }
        }
        self.store.pending.remove(&rid);
        if !self.store.devices.contains_key(&req.device_id) {
            let mut dev_req = req.clone();
            dev_req.roles = vec!["node".into()];
            self.store.approve_device(&dev_req, now_ms);
        }
        if let Some(d) = self.store.devices.get_mut(&req.device_id) {
            let mut approval = d.node.clone().unwrap_or_default();
            for c in &req.caps {
                if !approval.caps.contains(c) {
                    approval.caps.push(c.clone());
                }
            }
            for c in &req.commands {
                if !approval.commands.contains(c) {
                    approval.commands.push(c.clone());
                }
            }
            approval.approved_at_ms = now_ms;
            d.node = Some(approval);
        }
        self.persist();
        let resolved = json!({"requestId": rid, "nodeId": req.device_id, "decision": "approved", "ts": now_ms});
        self.broadcast(now, "node.pair.resolved", &resolved, None);
        if let Some(c) = self.router.nodes.get(&req.device_id).copied() {
            self.send(now, c, &OutFrame::direct("node.pair.resolved", resolved));
        }
        let mut node = self
            .store
            .devices
            .get(&req.device_id)
            .map(pairing::node_json)
            .unwrap_or(Value::Null);
        node["lastSeenAtMs"] = json!(now_ms);
        node["lastSeenReason"] = json!("approve");
        Ok(json!({"requestId": rid, "node": node}))
    }

    fn pair_reject(
        &mut self,
        now: Instant,
        kind: PendingKind,
        rid: String,
    ) -> Result<Value, ErrorShape> {
        let (rid, req, now_ms) = self.pending_request(now, rid, kind)?;
        self.store.pending.remove(&rid);
        self.persist();
        let (event, id_key) = match kind {
            PendingKind::Node => ("node.pair.resolved", "nodeId"),
            PendingKind::Device => ("device.pair.resolved", "deviceId"),
        };
        let mut resolved = json!({"requestId": rid, "decision": "rejected", "ts": now_ms});
        resolved[id_key] = json!(req.device_id);
        self.broadcast(now, event, &resolved, None);
        let mut out = json!({"requestId": rid});
        out[id_key] = json!(req.device_id);
        Ok(out)
    }

    fn rotate_token(
        &mut self,
        now: Instant,
        did: String,
        role: String,
    ) -> Result<Value, ErrorShape> {
        let now_ms = self.unix_ms(now);
        let old = self.store.token_of(&did, &role);
        let has_role = self
            .store
            .devices
            .get(&did)
            .is_some_and(|d| d.roles.contains(&role));
        if !has_role {
            return Err(ErrorShape::invalid(format!(
                "unknown device or role: {did} {role}"
            )));
        }
        let token = self.new_token();
        let issued = self.store.issue_token(&did, &role, token.clone(), now_ms);
        self.persist();
        if let Some(old) = old {
            self.close_device_conns(now, &did, Some(&old), Invalidation::TokenRotated);
        }
        let scopes = issued.map(|t| t.scopes).unwrap_or_default();
        Ok(
            json!({"deviceId": did, "role": role, "token": token, "scopes": scopes, "rotatedAtMs": now_ms, "tokenDelivery": "in-band"}),
        )
    }

    fn revoke_token(
        &mut self,
        now: Instant,
        did: String,
        role: String,
    ) -> Result<Value, ErrorShape> {
        let old = self.store.token_of(&did, &role);
        let Some(old) = old.filter(|_| self.store.revoke_token(&did, &role)) else {
            return Err(ErrorShape::invalid(format!(
                "no token for device {did} role {role}"
            )));
        };
        self.persist();
        self.close_device_conns(now, &did, Some(&old), Invalidation::TokenRevoked);
        Ok(json!({"deviceId": did, "role": role, "revokedAtMs": self.unix_ms(now)}))
    }

    /// Close live connections of a device (only those that used `token`, when given) with 4001.
    fn close_device_conns(
        &mut self,
        now: Instant,
        device_id: &str,
        token: Option<&str>,
        why: Invalidation,
    ) {
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.session().is_some_and(|s| {
                    s.device_id.as_deref() == Some(device_id)
                        && token.is_none_or(|t| s.device_token.as_deref() == Some(t))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for v in victims {
            self.close_ws(now, v, CloseReason::Invalidated(why));
        }
    }
}

/// Tokens of roles other than `operator` are rotated or revoked with `operator.admin` only.
fn non_operator_tokens_need_admin(granted: &[String], role: &str) -> Result<(), ErrorShape> {
    if role != "operator" && !scopes::satisfied(granted, scopes::ADMIN) {
        return Err(scopes::missing_scope(scopes::ADMIN));
    }
    Ok(())
}

fn unknown_request(rid: &str) -> ErrorShape {
    ErrorShape::new(
        ErrorCode::InvalidRequest,
        format!("unknown requestId: {rid}"),
    )
    .with_details(json!({"code": "UNKNOWN_REQUEST", "requestId": rid}))
}
