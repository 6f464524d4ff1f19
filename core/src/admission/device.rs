//! The admission of a signed device: pairing (silent on local connections, a stable pending
//! request otherwise), scope upgrades, device tokens and node approval requests.

use core::net::IpAddr;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Admitted, Refusal};
use crate::close::{CloseReason, PAIRING_REQUIRED};
use crate::conn::AuthMethod;
use crate::device::DeviceProof;
use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::Gateway;
use crate::handshake::ConnectParams;
use crate::log::Level;
use crate::pairing::{DeviceMeta, PendingKind, PendingRequest};
use crate::scopes::{self, Role};

fn meta(p: &ConnectParams) -> DeviceMeta {
    DeviceMeta {
        display_name: p.client.display_name.clone(),
        platform: p.client.platform.clone(),
        device_family: p.client.device_family.clone(),
        client_id: p.client.id.clone(),
        client_mode: p.client.mode.clone(),
        version: p.client.version.clone(),
    }
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn admit_device(
        &mut self,
        now: Instant,
        p: &ConnectParams,
        dev: &DeviceProof,
        client_ip: IpAddr,
        local: bool,
        method: AuthMethod,
        used_device_token: Option<String>,
    ) -> Result<Admitted, Refusal> {
        let now_ms = self.unix_ms(now);
        let role = p.role.as_str().to_string();
        let requested = if p.role == Role::Operator {
            scopes::normalize(&p.scopes)
        } else {
            Vec::new()
        };
        self.store.expire(now_ms);
        let paired = self.store.devices.get(&dev.id);
        let reason = match paired {
            None => Some("not-paired"),
            Some(d) if !d.roles.contains(&role) => Some("role-upgrade"),
            Some(d) if !requested.iter().all(|s| scopes::satisfied(&d.scopes, s)) => {
                Some("scope-upgrade")
            }
            Some(_) => None,
        };
        let mut events: Vec<(&'static str, Value)> = Vec::new();
        if let Some(reason) = reason {
            let request_id = self.uuid();
            let ttl = self.config.limits.pairing_request_ttl.as_millis() as u64;
            let req = PendingRequest {
                request_id,
                kind: PendingKind::Device,
                device_id: dev.id.clone(),
                public_key: dev.public_key.clone(),
                meta: meta(p),
                roles: vec![role.clone()],
                scopes: requested.clone(),
                caps: Vec::new(),
                commands: Vec::new(),
                remote_ip: Some(client_ip.to_string()),
                silent: local,
                ts: now_ms,
                expires_at_ms: now_ms + ttl,
            };
            let (req, is_new) = self.store.request(req);
            if local && self.config.auto_approve_local {
                self.store.pending.remove(&req.request_id);
                self.store.approve_device(&req, now_ms);
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!("device {} approved silently (local)", short(&dev.id)),
                );
                events.push((
                    "device.pair.resolved",
                    json!({"requestId": req.request_id, "deviceId": dev.id, "decision": "approved", "ts": now_ms}),
                ));
                // A role or scope upgrade replaces the role's token so it carries the new scopes.
                if let Some(d) = self.store.devices.get_mut(&dev.id) {
                    d.tokens.remove(&role);
                }
            } else {
                self.persist();
                if is_new {
                    let mut ev = json!({
                        "requestId": req.request_id, "deviceId": dev.id, "publicKey": dev.public_key,
                        "clientId": p.client.id, "clientMode": p.client.mode, "platform": p.client.platform,
                        "role": role, "roles": req.roles, "scopes": req.scopes, "remoteIp": client_ip.to_string(),
                        "silent": false, "ts": now_ms,
                    });
                    if let Some(n) = &p.client.display_name {
                        ev["displayName"] = json!(n);
                    }
                    self.broadcast(now, "device.pair.requested", &ev, None);
                }
                let approved = self.store.devices.get(&dev.id);
                let mut details = json!({
                    "code": "PAIRING_REQUIRED", "reason": reason, "requestId": req.request_id, "deviceId": dev.id,
                    "requestedRole": role, "requestedScopes": requested,
                });
                if let Some(d) = approved {
                    details["approvedRoles"] = json!(d.roles);
                    details["approvedScopes"] = json!(d.scopes);
                }
                return Err(Refusal {
                    error: ErrorShape::new(ErrorCode::NotPaired, PAIRING_REQUIRED)
                        .with_details(details),
                    close: Some(CloseReason::PairingRequired {
                        request_id: req.request_id.into(),
                    }),
                    delay: None,
                });
            }
        }
        // Paired: reuse the role's token or issue one.
        let token = match self
            .store
            .devices
            .get(&dev.id)
            .and_then(|d| d.tokens.get(&role))
        {
            Some(t) => (t.token.clone(), t.issued_at_ms),
            None => {
                let t = self.new_token();
                self.store.issue_token(&dev.id, &role, t.clone(), now_ms);
                (t, now_ms)
            }
        };
        if p.role == Role::Node {
            self.request_node_approval(now, p, dev, local, &mut events);
        }
        self.persist();
        Ok(Admitted {
            method,
            scopes: requested,
            device_id: Some(dev.id.clone()),
            device_token: Some(token),
            used_device_token,
            events,
        })
    }

    /// A node whose declared commands are not all approved gets a pending node request.
    fn request_node_approval(
        &mut self,
        now: Instant,
        p: &ConnectParams,
        dev: &DeviceProof,
        local: bool,
        events: &mut Vec<(&'static str, Value)>,
    ) {
        let now_ms = self.unix_ms(now);
        let approval = self.store.devices.get(&dev.id).and_then(|d| d.node.clone());
        let covered = approval.as_ref().is_some_and(|a| {
            p.commands.iter().all(|c| a.commands.contains(c))
                && p.caps.iter().all(|c| a.caps.contains(c))
        });
        if covered {
            return;
        }
        let request_id = self.uuid();
        let ttl = self.config.limits.pairing_request_ttl.as_millis() as u64;
        let (req, is_new) = self.store.request(PendingRequest {
            request_id,
            kind: PendingKind::Node,
            device_id: dev.id.clone(),
            public_key: dev.public_key.clone(),
            meta: meta(p),
            roles: vec!["node".into()],
            scopes: Vec::new(),
            caps: p.caps.clone(),
            commands: p.commands.clone(),
            remote_ip: None,
            silent: local,
            ts: now_ms,
            expires_at_ms: now_ms + ttl,
        });
        if is_new {
            let mut ev = json!({
                "requestId": req.request_id, "nodeId": dev.id, "clientId": p.client.id, "clientMode": p.client.mode,
                "platform": p.client.platform, "version": p.client.version, "caps": req.caps, "commands": req.commands,
                "silent": local, "ts": now_ms,
            });
            if let Some(n) = &p.client.display_name {
                ev["displayName"] = json!(n);
            }
            events.push(("node.pair.requested", ev));
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
