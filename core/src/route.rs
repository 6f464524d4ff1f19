//! Routing: connected nodes, `node.invoke` in flight with their deadlines, idempotency keys,
//! and presence.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use core::time::Duration;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::conn::ConnId;
use crate::frame::{ErrorCode, ErrorShape, OutFrame};
use crate::gateway::{Gateway, Timer};
use crate::log::Level;
use crate::methods::params::{self, FromParams, Kind, NonEmpty, optional, required};
use crate::methods::{Call, Reply};
use crate::scopes::Role;

/// Largest `node.invoke.progress` chunk, in bytes (upstream's `MAX_PROGRESS_CHUNK_BYTES`).
pub(crate) const MAX_PROGRESS_CHUNK_BYTES: usize = 16 * 1024;

/// `node.invoke` params.
pub(crate) struct NodeInvoke {
    node_id: NonEmpty,
    command: NonEmpty,
    /// The command's params, forwarded as `paramsJSON` when present (even `null`).
    params: Option<Value>,
    timeout_ms: Option<u64>,
    idempotency_key: NonEmpty,
    _session_key: Option<NonEmpty>,
    _turn_source_channel: Option<String>,
    _turn_source_to: Option<String>,
    _turn_source_account_id: Option<String>,
}

impl FromParams for NodeInvoke {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("nodeId", Kind::NonEmpty),
            required("command", Kind::NonEmpty),
            optional("params", Kind::AnyOrNull),
            optional("timeoutMs", Kind::U64),
            required("idempotencyKey", Kind::NonEmpty),
            optional("sessionKey", Kind::NonEmpty),
            optional("turnSourceChannel", Kind::Str),
            optional("turnSourceTo", Kind::Str),
            optional("turnSourceAccountId", Kind::Str),
            optional("turnSourceThreadId", Kind::Ignored),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            node_id: p.required_non_empty("nodeId"),
            command: p.required_non_empty("command"),
            params: p.take("params"),
            timeout_ms: p.u64("timeoutMs"),
            idempotency_key: p.required_non_empty("idempotencyKey"),
            _session_key: p.non_empty("sessionKey"),
            _turn_source_channel: p.string("turnSourceChannel"),
            _turn_source_to: p.string("turnSourceTo"),
            _turn_source_account_id: p.string("turnSourceAccountId"),
        })
    }
}

/// A node invocation to send, from `node.invoke` or the `nodes` tool.
pub(crate) struct InvokeRequest {
    /// The node.
    pub(crate) node_id: String,
    /// The command.
    pub(crate) command: String,
    /// The command's params (sent as `paramsJSON` when present).
    pub(crate) params: Option<Value>,
    /// The node's time for it (the default when `None`).
    pub(crate) timeout_ms: Option<u64>,
    /// Its idempotency key.
    pub(crate) idempotency_key: String,
}

/// `node.invoke.progress` params.
pub(crate) struct NodeInvokeProgress {
    invoke_id: NonEmpty,
    node_id: NonEmpty,
    seq: u64,
    chunk: String,
}

impl FromParams for NodeInvokeProgress {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("invokeId", Kind::NonEmpty),
            required("nodeId", Kind::NonEmpty),
            required("seq", Kind::U64),
            required("chunk", Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            invoke_id: p.required_non_empty("invokeId"),
            node_id: p.required_non_empty("nodeId"),
            seq: p.u64("seq").unwrap_or_default(),
            chunk: p.text("chunk"),
        })
    }
}

/// `node.invoke.result` params.
pub(crate) struct NodeInvokeResult {
    id: NonEmpty,
    node_id: NonEmpty,
    ok: bool,
    payload: Option<Value>,
    payload_json: Option<String>,
    error: Option<NodeError>,
}

/// The properties of a `node.invoke.result`'s `error`.
const NODE_ERROR: &[params::Field] = &[
    optional("code", Kind::NonEmpty),
    optional("message", Kind::NonEmpty),
];

impl FromParams for NodeInvokeResult {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("id", Kind::NonEmpty),
            required("nodeId", Kind::NonEmpty),
            required("ok", Kind::Bool),
            optional("payload", Kind::AnyOrNull),
            optional("payloadJSON", Kind::Str),
            optional("error", Kind::Table(NODE_ERROR)),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            id: p.required_non_empty("id"),
            node_id: p.required_non_empty("nodeId"),
            ok: p.bool("ok").unwrap_or_default(),
            payload: p.take("payload"),
            payload_json: p.string("payloadJSON"),
            error: p.table("error").map(|mut e| NodeError {
                code: e.non_empty("code"),
                message: e.non_empty("message"),
            }),
        })
    }
}

/// The `error` of a failed `node.invoke.result`.
#[derive(Default)]
pub(crate) struct NodeError {
    code: Option<NonEmpty>,
    message: Option<NonEmpty>,
}

/// `node.event` params: accepted and acknowledged.
pub(crate) struct NodeEvent {
    _event: NonEmpty,
    _payload_json: Option<String>,
}

impl FromParams for NodeEvent {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("event", Kind::NonEmpty),
            optional("payload", Kind::Ignored),
            optional("payloadJSON", Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            _event: p.required_non_empty("event"),
            _payload_json: p.string("payloadJSON"),
        })
    }
}

/// Who waits for an invocation's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// An operator's `node.invoke` request (connection, request id).
    Request(ConnId, String),
    /// The agent's `nodes` tool call.
    Tool(crate::tools::CallId),
}

/// An invocation waiting for its node.
#[derive(Debug)]
pub(crate) struct Invoke {
    pub(crate) caller: Caller,
    pub(crate) node_conn: ConnId,
    pub(crate) node_id: String,
    pub(crate) command: String,
    pub(crate) uuid: String,
    pub(crate) deadline: Instant,
    pub(crate) idempotency_key: String,
    /// Callers that sent the same idempotency key while this was in flight.
    pub(crate) waiters: Vec<(ConnId, String)>,
}

/// Routing tables.
#[derive(Debug, Default)]
pub struct Router {
    /// Connected node connections by node (device) id.
    pub(crate) nodes: HashMap<String, ConnId>,
    pub(crate) invokes: HashMap<u64, Invoke>,
    pub(crate) invoke_by_uuid: HashMap<String, u64>,
    next_invoke: u64,
    /// Finished results by idempotency key (the newest for each key).
    dedupe: HashMap<String, Finished>,
    /// The finished results' keys, oldest first, with their entry's number: the order they
    /// expire and are evicted in (a key answered again has a newer entry, which the older
    /// one's eviction leaves alone).
    dedupe_order: VecDeque<(Instant, u64, String)>,
    /// The number of the next finished result.
    next_finished: u64,
    /// In-flight invokes by idempotency key.
    in_flight: HashMap<String, u64>,
    /// Authenticated connections shown in presence (not CLI, probe or backend ones), in order.
    pub(crate) presence: BTreeSet<ConnId>,
}

/// A finished result kept for its idempotency key.
#[derive(Debug)]
struct Finished {
    at: Instant,
    /// Its number in [`Router::dedupe_order`].
    n: u64,
    result: Result<Value, ErrorShape>,
}

impl Router {
    /// Number of connected nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn conn_gone(&mut self, id: ConnId) {
        self.presence.remove(&id);
        self.nodes.retain(|_, c| *c != id);
    }

    pub(crate) fn prune_dedupe(&mut self, now: Instant, ttl: Duration) {
        while self
            .dedupe_order
            .front()
            .is_some_and(|(t, _, _)| now.saturating_duration_since(*t) > ttl)
        {
            self.evict_oldest();
        }
    }

    /// Drop the oldest finished result (unless its key has a newer one).
    fn evict_oldest(&mut self) {
        if let Some((_, n, key)) = self.dedupe_order.pop_front()
            && self.dedupe.get(&key).is_some_and(|f| f.n == n)
        {
            self.dedupe.remove(&key);
        }
    }

    pub(crate) fn remember(
        &mut self,
        now: Instant,
        key: String,
        result: Result<Value, ErrorShape>,
        max: usize,
    ) {
        if max == 0 {
            return;
        }
        while self.dedupe_order.len() >= max {
            self.evict_oldest();
        }
        let n = self.next_finished;
        self.next_finished += 1;
        self.dedupe_order.push_back((now, n, key.clone()));
        self.dedupe.insert(key, Finished { at: now, n, result });
    }

    pub(crate) fn cached(
        &self,
        now: Instant,
        key: &str,
        ttl: Duration,
    ) -> Option<Result<Value, ErrorShape>> {
        self.dedupe
            .get(key)
            .filter(|f| now.saturating_duration_since(f.at) <= ttl)
            .map(|f| f.result.clone())
    }
}

impl Gateway {
    /// Whether node `node_id` may be asked to run `command` (when it declares it): approved
    /// for it or allowed by `gateway.nodes.commands`, and not denied.
    fn command_allowed(&self, node_id: &str, command: &String) -> bool {
        let approved = self
            .store
            .devices
            .get(node_id)
            .and_then(|d| d.node.as_ref())
            .is_some_and(|n| n.commands.contains(command));
        (approved || self.config.node_commands_allow.contains(command))
            && !self.config.node_commands_deny.contains(command)
    }

    /// The effective commands of a node: declared ∩ approved ∩ allow/deny.
    pub(crate) fn effective_commands(&self, node_id: &str, declared: &[String]) -> Vec<String> {
        let mut out: Vec<String> = declared
            .iter()
            .filter(|c| self.command_allowed(node_id, c))
            .cloned()
            .collect();
        crate::sorting::sort(&mut out);
        out.dedup();
        out
    }

    pub(crate) fn node_connected(&mut self, now: Instant, id: ConnId, node_id: &str) {
        if let Some(old) = self.router.nodes.insert(node_id.to_string(), id)
            && old != id
        {
            self.log(
                now,
                Level::Info,
                Some(old),
                "node reconnected elsewhere".into(),
            );
        }
        self.presence_changed(now);
    }

    pub(crate) fn node_disconnected(&mut self, now: Instant, id: ConnId, node_id: &str) {
        if self.router.nodes.get(node_id) == Some(&id) {
            self.router.nodes.remove(node_id);
        }
        let dead: Vec<u64> = self
            .router
            .invokes
            .iter()
            .filter(|(_, inv)| inv.node_conn == id)
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            let err = ErrorShape::new(ErrorCode::Unavailable, "node disconnected during invoke")
                .with_details(json!({"code": "NODE_DISCONNECTED", "nodeCommandDispatched": true}));
            self.finish_invoke(now, k, Err(err));
        }
        self.presence_changed(now);
    }

    pub(crate) fn presence_changed(&mut self, now: Instant) {
        self.presence_version += 1;
        let sv = self.state_version();
        let list = self.presence_list(now);
        self.broadcast(now, "presence", &json!({"presence": list}), Some(&sv));
    }

    /// `stateVersion`, as `presence` and `health` events carry it.
    pub(crate) fn state_version(&self) -> Value {
        json!({"presence": self.presence_version, "health": self.health_cache.version()})
    }

    /// The presence list: the gateway itself, then every authenticated connection.
    pub(crate) fn presence_list(&self, now: Instant) -> Vec<Value> {
        let mut out = Vec::with_capacity(1 + self.router.presence.len());
        // Serialising strings and numbers cannot fail.
        out.push(serde_json::to_value(self.self_presence(now)).unwrap_or_default());
        out.extend(self.session_presence());
        out
    }

    /// The gateway's own presence entry at `now`.
    fn self_presence(&self, now: Instant) -> SelfPresence<'_> {
        SelfPresence::new(&self.config, &self.boot_id, self.unix_ms(now))
    }

    /// The presence entries of the authenticated connections that show in it.
    pub(crate) fn session_presence(&self) -> impl Iterator<Item = Value> + '_ {
        let sessions = self
            .router
            .presence
            .iter()
            .filter_map(|id| self.conns.get(id).and_then(|c| c.session()));
        sessions.map(|s| {
            let name = s
                .client
                .display_name
                .clone()
                .unwrap_or_else(|| s.client.id.clone());
            let mut e = json!({
                "host": name, "version": s.client.version, "platform": s.client.platform, "mode": s.client.mode,
                "roles": [s.role.as_str()], "scopes": &s.scopes[..], "reason": "connect", "ts": s.connected_at_ms,
                "instanceId": s.client.instance_id.clone().unwrap_or_else(|| s.conn_uuid.clone()),
                "text": format!("{}: {name} · mode {}", if s.role == Role::Node { "Node" } else { "Client" }, s.client.mode),
            });
            if let Some(d) = &s.device_id {
                e["deviceId"] = json!(d);
            }
            if let Some(f) = &s.client.device_family {
                e["deviceFamily"] = json!(f);
            }
            e
        })
    }

    /// One node as `node.list` and `node.describe` show it.
    pub(crate) fn node_entry(&self, node_id: &str) -> Option<Value> {
        let live = self
            .router
            .nodes
            .get(node_id)
            .and_then(|c| self.conns.get(c))
            .and_then(|c| c.session());
        let paired = self.store.devices.get(node_id);
        let approval = paired.and_then(|d| d.node.as_ref());
        if live.is_none() && approval.is_none() {
            return None;
        }
        let meta = paired.map(|d| d.meta.clone()).unwrap_or_default();
        let pending = self
            .store
            .pending_for(node_id, crate::pairing::PendingKind::Node);
        let (display, platform, version, client_id, client_mode, family, declared, caps_declared) =
            match live {
                Some(s) => (
                    s.client.display_name.clone(),
                    s.client.platform.clone(),
                    s.client.version.clone(),
                    s.client.id.clone(),
                    s.client.mode.clone(),
                    s.client.device_family.clone(),
                    s.commands.clone(),
                    s.caps.clone(),
                ),
                None => (
                    meta.display_name.clone(),
                    meta.platform.clone(),
                    meta.version.clone(),
                    meta.client_id.clone(),
                    meta.client_mode.clone(),
                    meta.device_family.clone(),
                    approval.map(|a| a.commands.clone()).unwrap_or_default(),
                    approval.map(|a| a.caps.clone()).unwrap_or_default(),
                ),
            };
        let commands = if approval.is_some() {
            self.effective_commands(node_id, &declared)
        } else {
            Vec::new()
        };
        let caps: Vec<String> = match approval {
            Some(a) => caps_declared
                .into_iter()
                .filter(|c| a.caps.contains(c))
                .collect(),
            None => Vec::new(),
        };
        let mut e = json!({
            "nodeId": node_id,
            "displayName": display.unwrap_or_else(|| node_id.chars().take(12).collect()),
            "platform": platform, "version": version, "clientId": client_id, "clientMode": client_mode,
            "caps": caps, "commands": commands, "sessionHost": false, "nodePluginTools": [],
            "approvalState": approval_state(pending.is_some(), approval.is_some()),
            "paired": approval.is_some(), "connected": live.is_some(),
        });
        if let Some(f) = family {
            e["deviceFamily"] = json!(f);
        }
        if let Some(s) = live {
            e["connectedAtMs"] = json!(s.connected_at_ms);
            e["lastConnectedAtMs"] = json!(s.connected_at_ms);
            e["lastSeenAtMs"] = json!(s.connected_at_ms);
            e["lastSeenReason"] = json!("connect");
        }
        if let Some(a) = approval {
            e["approvedAtMs"] = json!(a.approved_at_ms);
        }
        if let Some(p) = pending {
            e["pendingRequestId"] = json!(p.request_id);
            e["pendingDeclaredCaps"] = json!(p.caps);
            e["pendingDeclaredCommands"] = json!(p.commands);
        }
        Some(e)
    }

    /// `node.list`.
    pub(crate) fn node_list(&self, now: Instant) -> Value {
        let mut ids: Vec<String> = self.router.nodes.keys().cloned().collect();
        for (id, d) in &self.store.devices {
            if d.node.is_some() && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        crate::sorting::sort(&mut ids);
        let nodes: Vec<Value> = ids.iter().filter_map(|id| self.node_entry(id)).collect();
        json!({"ts": self.unix_ms(now), "nodes": nodes})
    }

    /// `node.invoke` from an operator: answered now from the idempotency cache or with an
    /// error, else later, when the node answers or the deadline passes.
    pub(crate) fn node_invoke(&mut self, now: Instant, call: &Call<'_>, p: NodeInvoke) -> Reply {
        let (caller, req_id) = (call.conn, call.req_id);
        let key = p.idempotency_key.0;
        let ttl = self.config.limits.dedupe_ttl;
        if let Some(result) = self.router.cached(now, &key, ttl) {
            return Reply::Now(result);
        }
        if let Some(inv) = self
            .router
            .in_flight
            .get(&key)
            .and_then(|k| self.router.invokes.get_mut(k))
        {
            inv.waiters.push((caller, req_id.to_string()));
            return Reply::Later;
        }
        let request = InvokeRequest {
            node_id: p.node_id.0,
            command: p.command.0,
            params: p.params,
            timeout_ms: p.timeout_ms,
            idempotency_key: key,
        };
        match self.dispatch_invoke(now, request, Caller::Request(caller, req_id.to_string())) {
            Ok(()) => Reply::Later,
            Err(e) => Reply::Now(Err(e)),
        }
    }

    /// Send `r` to its node for `caller`, or say why it cannot go: the node is not
    /// connected, or the command is not allowed (declared, approved, `gateway.nodes.commands`).
    pub(crate) fn dispatch_invoke(
        &mut self,
        now: Instant,
        r: InvokeRequest,
        caller: Caller,
    ) -> Result<(), ErrorShape> {
        let InvokeRequest {
            node_id,
            command,
            params,
            timeout_ms,
            idempotency_key: key,
        } = r;
        let Some(node_conn) = self.router.nodes.get(&node_id).copied() else {
            return Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("node not connected: {node_id}"),
            )
            .with_details(json!({"code": "NODE_NOT_CONNECTED", "nodeId": node_id})));
        };
        let session = self.conns.get(&node_conn).and_then(|c| c.session());
        let declared = session.is_some_and(|s| s.commands.contains(&command));
        if !(declared && self.command_allowed(&node_id, &command)) {
            let platform = session.map_or("", |s| s.client.platform.as_str());
            return Err(ErrorShape::invalid(format!("node command not allowed: \"{command}\" is not in the allowlist for platform \"{platform}\""))
                .with_details(json!({"reason": "command not allowlisted", "command": command})));
        }
        let timeout_ms =
            timeout_ms.unwrap_or(self.config.limits.node_invoke_default_timeout.as_millis() as u64);
        let uuid = self.uuid();
        let mut payload = json!({"id": uuid, "nodeId": node_id, "command": command, "timeoutMs": timeout_ms, "idempotencyKey": key});
        if let Some(params) = params {
            payload["paramsJSON"] = json!(params.to_string());
        }
        let deadline = now + Duration::from_millis(timeout_ms);
        self.router.next_invoke += 1;
        let k = self.router.next_invoke;
        let by = match &caller {
            Caller::Request(conn, _) => Some(*conn),
            Caller::Tool(_) => None,
        };
        self.router.invokes.insert(
            k,
            Invoke {
                caller,
                node_conn,
                node_id: node_id.clone(),
                command: command.clone(),
                uuid: uuid.clone(),
                deadline,
                idempotency_key: key.clone(),
                waiters: Vec::new(),
            },
        );
        self.router.invoke_by_uuid.insert(uuid, k);
        self.router.in_flight.insert(key, k);
        self.schedule(deadline, Timer::Invoke(k));
        self.log_with(now, Level::Debug, by, || {
            format!("node.invoke {command} on {node_id}")
        });
        self.send(
            now,
            node_conn,
            &OutFrame::direct("node.invoke.request", payload),
        );
        Ok(())
    }

    /// Stop the invocation a tool call waits for (its time ran out or its turn ended): the
    /// node is told to cancel, nobody is answered.
    pub(crate) fn cancel_tool_invoke(&mut self, now: Instant, call: crate::tools::CallId) {
        let Some(k) = self
            .router
            .invokes
            .iter()
            .find(|(_, inv)| inv.caller == Caller::Tool(call))
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(inv) = self.router.invokes.remove(&k) {
            self.router.invoke_by_uuid.remove(&inv.uuid);
            self.router.in_flight.remove(&inv.idempotency_key);
            let cancel = json!({"invokeId": inv.uuid, "nodeId": inv.node_id});
            self.send(
                now,
                inv.node_conn,
                &OutFrame::direct("node.invoke.cancel", cancel),
            );
        }
    }

    /// `node.invoke.progress` from a node: a bounded output chunk, forwarded to the caller as a
    /// direct `node.invoke.progress` event. Chunks of invocations no longer in flight are ignored.
    pub(crate) fn node_invoke_progress(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: NodeInvokeProgress,
    ) -> Reply {
        if let Err(e) = self.own_node_id(call.conn, &p.node_id.0) {
            return Reply::Now(Err(e));
        }
        if p.chunk.len() > MAX_PROGRESS_CHUNK_BYTES {
            return Reply::Now(Err(ErrorShape::invalid("progress chunk too large")));
        }
        let caller = self
            .router
            .invoke_by_uuid
            .get(&p.invoke_id.0)
            .and_then(|k| self.router.invokes.get(k))
            .filter(|inv| inv.node_conn == call.conn)
            .and_then(|inv| match &inv.caller {
                Caller::Request(conn, _) => Some(*conn),
                Caller::Tool(_) => None,
            });
        if let Some(caller) = caller {
            let event = json!({"invokeId": p.invoke_id.0, "nodeId": p.node_id.0, "seq": p.seq, "chunk": p.chunk});
            self.send(
                now,
                caller,
                &OutFrame::direct("node.invoke.progress", event),
            );
        }
        Reply::Now(Ok(json!({"ok": true, "ignored": caller.is_none()})))
    }

    /// A node may only speak for itself: the `nodeId` of its reports must be its own.
    fn own_node_id(&self, node_conn: ConnId, node_id: &str) -> Result<(), ErrorShape> {
        let own = self
            .conns
            .get(&node_conn)
            .and_then(|c| c.session())
            .and_then(|s| s.device_id.as_deref());
        if own == Some(node_id) {
            Ok(())
        } else {
            Err(ErrorShape::invalid("nodeId mismatch"))
        }
    }

    /// `node.invoke.result` from a node: acknowledged, and the invocation's callers answered.
    pub(crate) fn node_invoke_result(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: NodeInvokeResult,
    ) -> Reply {
        let node_conn = call.conn;
        if let Err(e) = self.own_node_id(node_conn, &p.node_id.0) {
            return Reply::Now(Err(e));
        }
        let k = self.router.invoke_by_uuid.get(&p.id.0).copied();
        let inv = k.and_then(|k| {
            self.router
                .invokes
                .get(&k)
                .filter(|inv| inv.node_conn == node_conn)
                .map(|inv| (k, inv))
        });
        let Some((k, inv)) = inv else {
            return Reply::Now(Ok(json!({"ok": true, "ignored": true})));
        };
        let result = if p.ok {
            let payload = match (&p.payload_json, p.payload) {
                (_, Some(payload)) => payload,
                (Some(j), None) => serde_json::from_str(j).unwrap_or(Value::Null),
                (None, None) => Value::Null,
            };
            let mut v = json!({"ok": true, "nodeId": inv.node_id, "command": inv.command, "payload": payload});
            if let Some(j) = p.payload_json {
                v["payloadJSON"] = json!(j);
            }
            Ok(v)
        } else {
            let err = p.error.unwrap_or_default();
            let code = err.code.map_or_else(|| "NODE_ERROR".to_string(), |c| c.0);
            let message = err
                .message
                .map_or_else(|| "node command failed".to_string(), |m| m.0);
            Err(ErrorShape::new(ErrorCode::Unavailable, format!("{code}: {message}"))
                .with_details(json!({"nodeError": {"code": code, "message": message}, "nodeCommandDispatched": true})))
        };
        self.finish_invoke(now, k, result);
        Reply::Now(Ok(json!({"ok": true})))
    }

    pub(crate) fn invoke_expired(&mut self, now: Instant, k: u64) {
        let Some(inv) = self.router.invokes.get(&k) else {
            return;
        };
        if inv.deadline > now {
            return;
        }
        let (node_conn, cancel) = (
            inv.node_conn,
            json!({"invokeId": inv.uuid, "nodeId": inv.node_id}),
        );
        self.send(
            now,
            node_conn,
            &OutFrame::direct("node.invoke.cancel", cancel),
        );
        let err = ErrorShape::new(ErrorCode::Unavailable, "TIMEOUT: node invoke timed out")
            .with_details(json!({
                "nodeError": {"code": "TIMEOUT", "message": "node invoke timed out"},
                "nodeCommandDispatched": true,
            }));
        self.finish_invoke(now, k, Err(err));
    }

    fn finish_invoke(&mut self, now: Instant, k: u64, result: Result<Value, ErrorShape>) {
        let Some(inv) = self.router.invokes.remove(&k) else {
            return;
        };
        self.router.invoke_by_uuid.remove(&inv.uuid);
        self.router.in_flight.remove(&inv.idempotency_key);
        match inv.caller {
            Caller::Request(conn, req) => self.respond(now, conn, &req, result.clone(), None),
            Caller::Tool(call) => self.node_tool_done(now, call, result.clone()),
        }
        for (c, r) in inv.waiters {
            self.respond(now, c, &r, result.clone(), None);
        }
        let max = self.config.limits.dedupe_max;
        self.router.remember(now, inv.idempotency_key, result, max);
    }
}

/// A node's `approvalState` in `node.list`: `approved` once paired, else `pending-approval`
/// while its pairing request waits, else (rejected, say) `unapproved`, as upstream names them.
/// A paired node's request for more commands leaves it `approved` (upstream's
/// `pending-reapproval` is not reported).
fn approval_state(pending: bool, paired: bool) -> &'static str {
    match (paired, pending) {
        (true, _) => "approved",
        (false, true) => "pending-approval",
        (false, false) => "unapproved",
    }
}

/// Whether a client mode is an ephemeral control-plane connection (`cli`, `backend`, `probe`),
/// which upstream leaves out of presence: thousands of them must not grow every `hello-ok`.
pub(crate) fn is_ephemeral_mode(mode: &str) -> bool {
    matches!(mode, "cli" | "backend" | "probe")
}

/// The gateway's own presence entry, its keys in the order of the `Value` object
/// [`Gateway::presence_list`] makes of it (sorted); `hello-ok`'s template writes them in the
/// same order ([`crate::hello::HelloTemplate`]).
#[derive(Serialize)]
pub(crate) struct SelfPresence<'a> {
    /// The host name.
    pub(crate) host: &'a str,
    /// The boot id.
    #[serde(rename = "instanceId")]
    pub(crate) instance_id: &'a str,
    /// `gateway`.
    pub(crate) mode: &'static str,
    /// The OS.
    pub(crate) platform: &'static str,
    /// `self`.
    pub(crate) reason: &'static str,
    /// The line upstream shows for it.
    pub(crate) text: String,
    /// Unix ms.
    pub(crate) ts: u64,
    /// The gateway's version.
    pub(crate) version: &'a str,
}

impl<'a> SelfPresence<'a> {
    /// The entry of the gateway configured by `config` and started as `boot_id`, at `ts`
    /// (Unix ms).
    pub(crate) fn new(config: &'a Config, boot_id: &'a str, ts: u64) -> Self {
        let host = &config.host_name;
        let version = &config.version;
        SelfPresence {
            host,
            instance_id: boot_id,
            mode: "gateway",
            platform: std::env::consts::OS,
            reason: "self",
            text: format!("Gateway: {host} · app {version} · mode gateway · reason self"),
            ts,
            version,
        }
    }
}
