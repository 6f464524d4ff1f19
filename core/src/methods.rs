//! Requests after `hello-ok`: authorization, then the methods clawgate implements.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::close::{CloseReason, Invalidation};
use crate::conn::ConnId;
use crate::frame::{ErrorCode, ErrorShape, FrameError, OutFrame, parse_request, unexpected_key};
use crate::gateway::Gateway;
use crate::log::Level;
use crate::pairing::{self, PendingKind};
use crate::scopes;

/// Methods clawgate implements, as advertised in `hello-ok.features.methods`.
pub const METHODS: &[&str] = &[
    "health",
    "status",
    "system-presence",
    "last-heartbeat",
    "config.get",
    "logs.tail",
    "node.list",
    "node.describe",
    "node.rename",
    "node.invoke",
    "node.invoke.result",
    "node.invoke.progress",
    "node.event",
    "node.pair.list",
    "node.pair.approve",
    "node.pair.reject",
    "node.pair.remove",
    "device.pair.list",
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.token.rotate",
    "device.token.revoke",
];

/// Events clawgate may send, as advertised in `hello-ok.features.events`.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "shutdown",
    "presence",
    "node.invoke.request",
    "node.invoke.cancel",
    "node.invoke.progress",
    "node.pair.requested",
    "node.pair.resolved",
    "device.pair.requested",
    "device.pair.resolved",
];

/// Check a params object: only `allowed` keys, all `required` ones present and non-empty strings
/// where they are strings. `null` params count as `{}`.
pub(crate) fn check_params(
    params: &Value,
    allowed: &[&str],
    required: &[&str],
) -> Result<(), ErrorShape> {
    let empty = Map::new();
    let obj = match params {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => {
            return Err(ErrorShape::invalid(
                "invalid params: at root: must be object",
            ));
        }
    };
    if let Some(k) = unexpected_key(obj, allowed) {
        return Err(ErrorShape::invalid(format!(
            "invalid params: at root: unexpected property '{k}'"
        )));
    }
    for r in required {
        match obj.get(*r) {
            None => {
                return Err(ErrorShape::invalid(format!(
                    "invalid params: at root: must have required property '{r}'"
                )));
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(ErrorShape::invalid(format!(
                    "invalid params: at /{r}: must NOT have fewer than 1 characters"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn str_param(params: &Value, key: &str) -> String {
    params
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl Gateway {
    /// A text frame from an authenticated connection.
    pub(crate) fn on_request_text(&mut self, now: Instant, id: ConnId, text: &str) {
        let req = match parse_request(text) {
            Ok(r) => r,
            Err(FrameError::NotJson) => {
                self.log(now, Level::Debug, Some(id), "ignored non-JSON frame".into());
                return;
            }
            Err(FrameError::Invalid { id: rid, problem }) => {
                self.send(
                    now,
                    id,
                    &OutFrame::err(
                        rid,
                        ErrorShape::invalid(format!("invalid request frame: {problem}")),
                    ),
                );
                return;
            }
        };
        let Some(s) = self.conns.get(&id).and_then(|c| c.session()) else {
            return;
        };
        let (role, scopes) = (s.role, s.scopes.clone());
        if req.method == "connect" {
            self.send(
                now,
                id,
                &OutFrame::err(
                    req.id,
                    ErrorShape::invalid("connect is only valid as the first request"),
                ),
            );
            return;
        }
        if let Err(denied) = scopes::authorize(role, &scopes, &req.method, &req.params) {
            self.send(now, id, &OutFrame::err(&req.id, denied.to_error()));
            if matches!(denied, scopes::Denied::Role(_)) {
                let max = self.config.limits.max_unauthorized_calls;
                let count = self
                    .conns
                    .get_mut(&id)
                    .and_then(|c| c.session_mut())
                    .map(|s| {
                        s.unauthorized_calls += 1;
                        s.unauthorized_calls
                    });
                if count.is_some_and(|n| n > max) {
                    self.close_ws(now, id, CloseReason::RepeatedUnauthorized);
                }
            }
            return;
        }
        if let Some(s) = self.conns.get_mut(&id).and_then(|c| c.session_mut()) {
            s.unauthorized_calls = 0;
        }
        self.dispatch(now, id, &scopes, &req.id, &req.method, &req.params);
    }

    fn dispatch(
        &mut self,
        now: Instant,
        id: ConnId,
        granted: &[String],
        rid: &str,
        method: &str,
        params: &Value,
    ) {
        let result: Result<Value, ErrorShape> = match method {
            "health" => Ok(self.health_payload(now)),
            "status" => Ok(self.status_payload(now)),
            "system-presence" => Ok(Value::Array(self.presence_list(now))),
            "last-heartbeat" => Ok(Value::Null),
            "config.get" => Ok(self.config_get()),
            "logs.tail" => self.logs_tail(params),
            "node.list" => Ok(self.node_list(now)),
            "node.describe" => check_params(params, &["nodeId"], &["nodeId"]).and_then(|_| {
                let nid = str_param(params, "nodeId");
                self.node_entry(&nid)
                    .ok_or_else(|| ErrorShape::invalid(format!("unknown nodeId: {nid}")))
            }),
            "node.rename" => self.node_rename(params),
            "node.invoke" => return self.node_invoke(now, id, rid, params),
            "node.invoke.result" => return self.node_invoke_result(now, id, rid, params),
            "node.invoke.progress" => return self.node_invoke_progress(now, id, rid, params),
            "node.event" => check_params(params, &["event", "payload", "payloadJSON"], &["event"])
                .map(|_| json!({"ok": true})),
            "node.pair.list" | "device.pair.list" => {
                let kind = if method == "node.pair.list" {
                    PendingKind::Node
                } else {
                    PendingKind::Device
                };
                self.store.expire(self.unix_ms(now));
                Ok(self.store.list(kind))
            }
            "device.pair.approve" => self.device_pair_approve(now, params),
            "node.pair.approve" => self.node_pair_approve(now, granted, params),
            "device.pair.reject" | "node.pair.reject" => self.pair_reject(now, method, params),
            "device.pair.remove" | "node.pair.remove" => self.pair_remove(now, method, params),
            "device.token.rotate" | "device.token.revoke" => {
                non_operator_tokens_need_admin(granted, params).and_then(|_| {
                    if method == "device.token.rotate" {
                        self.token_rotate(now, params)
                    } else {
                        self.token_revoke(now, params)
                    }
                })
            }
            other => Err(ErrorShape::invalid(format!("unknown method: {other}"))),
        };
        let frame = match result {
            Ok(v) => OutFrame::ok(rid, v),
            Err(e) => OutFrame::err(rid, e),
        };
        self.send(now, id, &frame);
    }

    /// The health summary (`health` result and `snapshot.health`).
    pub(crate) fn health_payload(&self, now: Instant) -> Value {
        json!({
            "ok": true,
            "ts": self.unix_ms(now),
            "durationMs": 0,
            "plugins": {"loaded": [], "errors": []},
            "configReload": {"hotReloadStatus": "active"},
            "channels": {},
            "channelOrder": [],
            "channelLabels": {},
            "heartbeatSeconds": 1800,
            "defaultAgentId": "main",
            "agents": [],
            "sessions": {"path": format!("{}/agents/main/sessions/sessions.json", self.config.state_dir), "count": 0, "recent": []},
        })
    }

    fn status_payload(&self, now: Instant) -> Value {
        let counts = self.counts();
        json!({
            "ok": true,
            "ts": self.unix_ms(now),
            "version": self.config.version,
            "uptimeMs": self.uptime_ms(now),
            "authMode": self.config.auth_mode.as_str(),
            "bind": self.config.bind_label,
            "port": self.config.port,
            "connections": {"open": counts.connections, "authenticated": counts.authenticated},
            "nodes": {"connected": counts.nodes, "paired": self.store.devices.values().filter(|d| d.node.is_some()).count()},
            "devices": {"paired": self.store.devices.len(), "pending": self.store.pending.len()},
            "heartbeatSeconds": 1800,
            "sessions": {"count": 0, "recent": []},
        })
    }

    fn config_get(&self) -> Value {
        json!({
            "path": self.config.config_path,
            "exists": !self.config.file.is_null(),
            "valid": true,
            "config": crate::mask::redact(&self.config.file),
            "issues": [],
        })
    }

    fn logs_tail(&self, params: &Value) -> Result<Value, ErrorShape> {
        check_params(params, &["cursor", "limit", "maxBytes"], &[])?;
        let num = |k: &str, lo: u64, hi: u64, default: u64| match params.get(k) {
            None => Ok(default),
            Some(v) => v.as_u64().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| {
                ErrorShape::invalid(format!(
                    "invalid params: at /{k}: must be an integer from {lo} to {hi}"
                ))
            }),
        };
        let limit = num("limit", 1, 5000, 200)? as usize;
        let max_bytes = num("maxBytes", 1, 1_000_000, 250_000)? as usize;
        let cursor = params
            .get("cursor")
            .map(|_| num("cursor", 0, u64::MAX, 0))
            .transpose()?;
        let t = self.logs.tail(cursor, limit, max_bytes);
        Ok(json!({
            "file": "memory:clawgate", "cursor": t.cursor, "size": t.cursor, "lines": t.lines,
            "truncated": t.truncated, "reset": t.reset,
        }))
    }

    fn node_rename(&mut self, params: &Value) -> Result<Value, ErrorShape> {
        check_params(
            params,
            &["nodeId", "displayName"],
            &["nodeId", "displayName"],
        )?;
        let (nid, name) = (
            str_param(params, "nodeId"),
            str_param(params, "displayName"),
        );
        let d = self
            .store
            .devices
            .get_mut(&nid)
            .ok_or_else(|| ErrorShape::invalid(format!("unknown nodeId: {nid}")))?;
        d.meta.display_name = Some(name.clone());
        self.persist();
        Ok(json!({"nodeId": nid, "displayName": name}))
    }

    /// The pending request of `kind` named by `params.requestId` (expired ones are gone first).
    fn pending_request(
        &mut self,
        now: Instant,
        params: &Value,
        kind: PendingKind,
    ) -> Result<(String, pairing::PendingRequest, u64), ErrorShape> {
        check_params(params, &["requestId"], &["requestId"])?;
        let rid = str_param(params, "requestId");
        let now_ms = self.unix_ms(now);
        self.store.expire(now_ms);
        match self.store.pending.get(&rid) {
            Some(r) if r.kind == kind => Ok((rid, r.clone(), now_ms)),
            _ => Err(unknown_request(&rid)),
        }
    }

    fn device_pair_approve(&mut self, now: Instant, params: &Value) -> Result<Value, ErrorShape> {
        let (rid, req, now_ms) = self.pending_request(now, params, PendingKind::Device)?;
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

    fn node_pair_approve(
        &mut self,
        now: Instant,
        granted: &[String],
        params: &Value,
    ) -> Result<Value, ErrorShape> {
        let (rid, req, now_ms) = self.pending_request(now, params, PendingKind::Node)?;
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
        method: &str,
        params: &Value,
    ) -> Result<Value, ErrorShape> {
        let kind = if method.starts_with("node.") {
            PendingKind::Node
        } else {
            PendingKind::Device
        };
        let (rid, req, now_ms) = self.pending_request(now, params, kind)?;
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

    fn pair_remove(
        &mut self,
        now: Instant,
        method: &str,
        params: &Value,
    ) -> Result<Value, ErrorShape> {
        let key = if method.starts_with("node.") {
            "nodeId"
        } else {
            "deviceId"
        };
        check_params(params, &[key], &[key])?;
        let did = str_param(params, key);
        let removed = if key == "nodeId" {
            self.store
                .devices
                .get_mut(&did)
                .and_then(|d| d.node.take())
                .is_some()
        } else {
            self.store.devices.remove(&did).is_some()
        };
        if !removed {
            return Err(ErrorShape::invalid(format!("unknown {key}: {did}")));
        }
        self.persist();
        let why = if key == "nodeId" {
            Invalidation::NodeRemoved
        } else {
            Invalidation::DeviceRemoved
        };
        self.close_device_conns(now, &did, None, why);
        Ok(json!({ key: did }))
    }

    fn token_rotate(&mut self, now: Instant, params: &Value) -> Result<Value, ErrorShape> {
        check_params(
            params,
            &["deviceId", "role", "scopes"],
            &["deviceId", "role"],
        )?;
        let (did, role) = (str_param(params, "deviceId"), str_param(params, "role"));
        let now_ms = self.unix_ms(now);
        let old = self
            .store
            .devices
            .get(&did)
            .and_then(|d| d.tokens.get(&role))
            .map(|t| t.token.clone());
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

    fn token_revoke(&mut self, now: Instant, params: &Value) -> Result<Value, ErrorShape> {
        check_params(params, &["deviceId", "role"], &["deviceId", "role"])?;
        let (did, role) = (str_param(params, "deviceId"), str_param(params, "role"));
        let old = self
            .store
            .devices
            .get(&did)
            .and_then(|d| d.tokens.get(&role))
            .map(|t| t.token.clone());
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
fn non_operator_tokens_need_admin(granted: &[String], params: &Value) -> Result<(), ErrorShape> {
    let role = params
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("operator");
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
