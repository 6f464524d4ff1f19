//! Requests after `hello-ok`: the one registry of the methods clawgate implements, from which
//! `hello-ok.features.methods`, authorization and dispatch all derive.
//!
//! Adding a method is one [`REGISTRY`] line: its name (the advertised order is the table's
//! order), what it requires, and its handler, whose last argument is its typed params (read by
//! [`params::FromParams`] against a table of their properties, failures phrased as upstream's
//! validator phrases them).

mod absent;
mod pairing;
pub(crate) mod params;
mod system_info;
mod ui;
mod views;

use std::time::Instant;

use serde_json::{Value, json};

use crate::close::CloseReason;
use crate::conn::ConnId;
use crate::frame::{ErrorShape, FrameError, OutFrame, parse_request};
use crate::gateway::Gateway;
use crate::log::Level;
use crate::scopes::{self, Requirement};

pub(crate) use system_info::MachineCalls;

/// What a handler answers to its request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Answer now with this result.
    Now(Result<Value, ErrorShape>),
    /// Answer now with this whole frame, written by the handler (a cached snapshot, or a large
    /// read's answer assembled from pieces serialised once).
    Frame(String),
    /// The handler kept the request id and answers later (`node.invoke` waits for its node).
    Later,
}

/// The request being handled: who asked, with which id, holding which scopes.
pub(crate) struct Call<'a> {
    /// The caller's connection.
    pub(crate) conn: ConnId,
    /// The request id to answer to.
    pub(crate) req_id: &'a str,
    /// The caller's granted scopes.
    pub(crate) granted: &'a [String],
}

/// A handler with its params still JSON; made by [`method!`] from a typed one.
type Handler = fn(&mut Gateway, Instant, &Call<'_>, Value) -> Reply;

/// One method of the registry.
pub(crate) struct MethodSpec {
    /// The wire name.
    name: &'static str,
    /// What the caller must hold (upstream's class of the method).
    requirement: Requirement,
    handler: Handler,
}

/// Read the params as `P`, then run the typed handler; invalid params are answered at once.
fn typed<P: params::FromParams>(
    gw: &mut Gateway,
    now: Instant,
    call: &Call<'_>,
    params: Value,
    handler: fn(&mut Gateway, Instant, &Call<'_>, P) -> Reply,
) -> Reply {
    match P::from_params(params) {
        Ok(p) => handler(gw, now, call, p),
        Err(e) => Reply::Now(Err(e)),
    }
}

/// A registry entry: name, requirement, typed handler.
macro_rules! method {
    ($name:literal, $req:ident, $handler:path) => {
        MethodSpec {
            name: $name,
            requirement: Requirement::$req,
            handler: |gw, now, call, params| typed(gw, now, call, params, $handler),
        }
    };
}

/// Every method clawgate implements, in the order `hello-ok.features.methods` advertises.
const REGISTRY: &[MethodSpec] = &[
    method!("health", Read, Gateway::health),
    method!("status", Read, Gateway::status),
    method!("system-presence", Read, Gateway::system_presence),
    method!("last-heartbeat", Read, Gateway::last_heartbeat),
    method!("config.get", Read, Gateway::config_get),
    method!("logs.tail", Read, Gateway::logs_tail),
    method!("node.list", Read, Gateway::node_list_method),
    method!("node.describe", Read, Gateway::node_describe),
    method!("node.rename", Pairing, Gateway::node_rename),
    method!("node.invoke", Dynamic, Gateway::node_invoke),
    method!("node.invoke.result", NodeRole, Gateway::node_invoke_result),
    method!(
        "node.invoke.progress",
        NodeRole,
        Gateway::node_invoke_progress
    ),
    method!("node.event", NodeRole, Gateway::node_event),
    method!("node.pair.list", Pairing, Gateway::node_pair_list),
    method!("node.pair.approve", Pairing, Gateway::node_pair_approve),
    method!("node.pair.reject", Pairing, Gateway::node_pair_reject),
    method!("node.pair.remove", Pairing, Gateway::node_pair_remove),
    method!("device.pair.list", Pairing, Gateway::device_pair_list),
    method!("device.pair.approve", Pairing, Gateway::device_pair_approve),
    method!("device.pair.reject", Pairing, Gateway::device_pair_reject),
    method!("device.pair.remove", Pairing, Gateway::device_pair_remove),
    method!("device.token.rotate", Pairing, Gateway::token_rotate),
    method!("device.token.revoke", Pairing, Gateway::token_revoke),
    method!("chat.history", Read, Gateway::chat_history),
    method!("chat.send", Write, Gateway::chat_send),
    method!("chat.abort", Write, Gateway::chat_abort),
    method!("agent", Dynamic, Gateway::agent_method),
    method!("agent.wait", Write, Gateway::agent_wait),
    method!("chat.inject", Admin, Gateway::chat_inject),
    method!("sessions.list", Read, Gateway::sessions_list),
    method!("sessions.describe", Read, Gateway::sessions_describe),
    method!("sessions.subscribe", Read, Gateway::sessions_subscribe),
    method!(
        "sessions.messages.subscribe",
        Read,
        Gateway::sessions_messages_subscribe
    ),
    method!(
        "sessions.messages.unsubscribe",
        Read,
        Gateway::sessions_messages_unsubscribe
    ),
    method!("sessions.send", Write, Gateway::sessions_send),
    method!("sessions.abort", Write, Gateway::sessions_abort),
    method!("sessions.patch", Dynamic, Gateway::sessions_patch),
    method!("sessions.reset", Admin, Gateway::sessions_reset),
    method!("sessions.delete", Dynamic, Gateway::sessions_delete),
    method!("models.list", Read, Gateway::models_list),
    method!("agents.list", Read, Gateway::agents_list),
    method!("agent.identity.get", Read, Gateway::agent_identity_get),
    method!("chat.startup", Read, Gateway::chat_startup),
    method!("exec.approvals.get", Admin, Gateway::exec_approvals_get),
    method!("environments.list", Read, Gateway::environments_list),
    method!("system.info", Read, Gateway::system_info),
    method!("channels.status", Read, Gateway::channels_status),
    method!("channels.start", Admin, Gateway::channels_start),
    method!("channels.stop", Admin, Gateway::channels_stop),
    method!("channels.logout", Admin, Gateway::channels_logout),
    method!(
        "channels.pairing.list",
        Pairing,
        Gateway::channels_pairing_list
    ),
    method!(
        "channels.pairing.approve",
        Dynamic,
        Gateway::channels_pairing_approve
    ),
    method!(
        "channels.pairing.dismiss",
        Pairing,
        Gateway::channels_pairing_dismiss
    ),
    method!("send", Write, Gateway::send_method),
    method!("tools.catalog", Read, Gateway::tools_catalog),
    method!("tools.effective", Read, Gateway::tools_effective),
    method!("tools.invoke", Write, Gateway::tools_invoke),
    method!(
        "exec.approval.resolve",
        Approvals,
        Gateway::exec_approval_resolve
    ),
    method!("gateway.identity.get", Read, Gateway::gateway_identity_get),
    method!("exec.approval.list", Approvals, Gateway::exec_approval_list),
    method!("models.authStatus", Read, Gateway::models_auth_status),
    method!("chat.metadata", Read, Gateway::chat_metadata),
    method!("update.status", Admin, Gateway::update_status),
    method!("plugin.approval.list", Approvals, Gateway::no_approvals),
    method!("openclaw.approval.list", Approvals, Gateway::no_approvals),
    method!("question.list", Questions, Gateway::question_list),
    method!(
        "sessions.observer.visibility",
        Read,
        Gateway::observer_visibility
    ),
    method!("talk.catalog", Read, Gateway::talk_catalog),
    method!("cron.list", Read, Gateway::cron_list),
    method!("cron.status", Read, Gateway::cron_status),
    method!("progressCard.get", Read, Gateway::progress_card_get),
    method!(
        "sessions.branches.list",
        Read,
        Gateway::sessions_branches_list
    ),
    method!(
        "sessions.companion.state",
        Read,
        Gateway::sessions_companion_state
    ),
    method!("tasks.list", Read, Gateway::tasks_list),
    method!("plugins.list", Read, Gateway::plugins_list),
];

const fn names<const N: usize>(specs: &[MethodSpec]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = specs[i].name;
        i += 1;
    }
    out
}

/// Methods clawgate implements, as advertised in `hello-ok.features.methods`.
pub const METHODS: &[&str] = &names::<{ REGISTRY.len() }>(REGISTRY);

/// What an implemented method requires, if clawgate implements it.
pub(crate) fn requirement(method: &str) -> Option<Requirement> {
    REGISTRY
        .iter()
        .find(|m| m.name == method)
        .map(|m| m.requirement)
}

/// Params of methods whose upstream schema has none: anything is accepted and ignored.
pub(crate) struct AnyParams;

impl params::FromParams for AnyParams {
    fn from_params(_: Value) -> Result<Self, ErrorShape> {
        Ok(AnyParams)
    }
}

/// Params of methods that take none: `{}` (or no params) only.
pub(crate) struct NoParams {}

impl params::FromParams for NoParams {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        params::read(params, &[]).map(|_| NoParams {})
    }
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
            self.send(now, id, &OutFrame::err(&*req.id, denied.to_error()));
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
        let call = Call {
            conn: id,
            req_id: &req.id,
            granted: &scopes,
        };
        let reply = match REGISTRY.iter().find(|m| m.name == req.method) {
            Some(spec) => {
                let reply = (spec.handler)(self, now, &call, req.params);
                if spec.requirement != Requirement::Read {
                    // A method that may change state: `health` is taken anew.
                    self.health_cache.invalidate();
                }
                reply
            }
            None => Reply::Now(Err(ErrorShape::invalid(format!(
                "unknown method: {}",
                req.method
            )))),
        };
        // Not before the store has every change made so far: "ok" never runs ahead of it.
        match reply {
            Reply::Now(result) => self.answer(now, id, &req.id, result),
            Reply::Frame(text) => self.answer_frame(now, id, &req.id, text),
            Reply::Later => {}
        }
    }

    /// Answer request `req_id` of `conn` with `result`; a failure carries `error_payload` too
    /// when given.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        conn: ConnId,
        req_id: &str,
        result: Result<Value, ErrorShape>,
        error_payload: Option<Value>,
    ) {
        let frame = match result {
            Ok(v) => OutFrame::ok(req_id, v),
            Err(e) => OutFrame::failed(req_id, e, error_payload),
        };
        self.send(now, conn, &frame);
    }

    fn node_event(&mut self, _: Instant, _: &Call<'_>, _: crate::route::NodeEvent) -> Reply {
        Reply::Now(Ok(json!({"ok": true})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_order_is_the_registry_order() {
        // hello-ok.features.methods, byte for byte as clients have seen it.
        let advertised = [
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
            "chat.history",
            "chat.send",
            "chat.abort",
            "agent",
            "agent.wait",
            "chat.inject",
            "sessions.list",
            "sessions.describe",
            "sessions.subscribe",
            "sessions.messages.subscribe",
            "sessions.messages.unsubscribe",
            "sessions.send",
            "sessions.abort",
            "sessions.patch",
            "sessions.reset",
            "sessions.delete",
            "models.list",
            "agents.list",
            "agent.identity.get",
            "chat.startup",
            "exec.approvals.get",
            "environments.list",
            "system.info",
            "channels.status",
            "channels.start",
            "channels.stop",
            "channels.logout",
            "channels.pairing.list",
            "channels.pairing.approve",
            "channels.pairing.dismiss",
            "send",
            "tools.catalog",
            "tools.effective",
            "tools.invoke",
            "exec.approval.resolve",
            "gateway.identity.get",
            "exec.approval.list",
            "models.authStatus",
            "chat.metadata",
            "update.status",
            "plugin.approval.list",
            "openclaw.approval.list",
            "question.list",
            "sessions.observer.visibility",
            "talk.catalog",
            "cron.list",
            "cron.status",
            "progressCard.get",
            "sessions.branches.list",
            "sessions.companion.state",
            "tasks.list",
            "plugins.list",
        ];
        assert_eq!(METHODS, advertised);
        assert!(REGISTRY.iter().map(|m| m.name).eq(advertised));
        assert_eq!(requirement("node.invoke"), Some(Requirement::Dynamic));
        assert_eq!(requirement("no.such"), None);
    }
}
