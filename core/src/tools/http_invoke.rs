//! `POST /tools/invoke` on the gateway's port, as upstream's: one tool run for an operator
//! (the bearer check happens on the request head, in `http_auth`), its body `{tool | name,
//! action?, args?, sessionKey?, agentId?, idempotencyKey?, dryRun?}`, upstream's HTTP deny
//! list (with `gateway.tools.allow` taking names off it and `gateway.tools.deny` adding
//! some), and its answers: `200 {ok:true, result}`, `400` for a body that is not JSON or names
//! no tool, `404` for a tool that is unknown, not ready or denied, `500` when the tool fails.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::agent::AGENT_ID;
use crate::conn::ConnId;
use crate::gateway::Gateway;
use crate::http_post::JSON;
use crate::log::Level;

use super::provider::CallContext;
use super::router::CallOwner;
use super::settle::Waiter;
use super::{ToolCall, ToolContent, ToolEntry, ToolOutcome};

/// The route's path.
pub(crate) const PATH: &str = "/tools/invoke";

/// Tools upstream never runs over HTTP unless `gateway.tools.allow` names them
/// (`DEFAULT_GATEWAY_HTTP_TOOL_DENY`): command execution, file mutation, session and
/// control-plane tools, and `nodes` (it reaches `system.run` on paired hosts).
pub(crate) const DEFAULT_DENY: &[&str] = &[
    "exec",
    "spawn",
    "shell",
    "fs_write",
    "fs_delete",
    "fs_move",
    "apply_patch",
    "terminal",
    "portal",
    "sessions_spawn",
    "sessions_send",
    "conversations_list",
    "conversations_send",
    "conversations_turn",
    "automations",
    "cron",
    "gateway",
    "plugins",
    "nodes",
    "computer",
    "mobile_ui",
    "openclaw",
];

/// A request refused: its status and JSON body.
struct Refused {
    status: u16,
    body: Value,
}

impl Refused {
    /// Upstream's `{ok:false, error:{type, message}}`.
    fn new(status: u16, kind: &str, message: impl Into<String>) -> Self {
        let error = json!({"type": kind, "message": message.into()});
        Self {
            status,
            body: json!({"ok": false, "error": error}),
        }
    }

    /// A body that is not JSON: upstream's 400 `{error:{message, type}}`.
    fn invalid_json(message: String) -> Self {
        Self {
            status: 400,
            body: json!({"error": {"message": message, "type": "invalid_request_error"}}),
        }
    }
}

/// A string member, trimmed, if it is a non-empty string.
fn text<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A policy name as upstream compares them (trimmed, lowercase).
fn policy_name(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// Whether `name` is denied over HTTP: on the default list and not taken off it by
/// `allow`, or on `deny`.
pub(crate) fn http_denied(name: &str, allow: &[String], deny: &[String]) -> bool {
    let name = policy_name(name);
    let allowed = |n: &str| allow.iter().any(|a| policy_name(a) == n);
    DEFAULT_DENY.iter().any(|d| *d == name && !allowed(d))
        || deny.iter().any(|d| policy_name(d) == name)
}

/// `args` with `action` merged in when the tool's schema has an `action` property and the
/// arguments set none (upstream's `mergeActionIntoArgsIfSupported`).
fn merge_action(mut args: Map<String, Value>, action: Option<&str>, schema: &Value) -> Value {
    if let Some(action) = action
        && !args.contains_key("action")
        && schema["properties"].get("action").is_some()
    {
        args.insert("action".into(), json!(action));
    }
    Value::Object(args)
}

/// The answer to an invocation that ran: `200 {ok:true, result}`, or `500` with the
/// tool's error.
pub(crate) fn http_answer(outcome: &ToolOutcome) -> (u16, Value) {
    if outcome.is_error {
        let error = json!({"type": "tool_error", "message": outcome.as_text()});
        return (500, json!({"ok": false, "error": error}));
    }
    let result = match &outcome.content {
        ToolContent::Text(t) => json!(t),
        ToolContent::Json(v) => v.clone(),
    };
    (200, json!({"ok": true, "result": result}))
}

impl Gateway {
    /// A whole `POST /tools/invoke` body from an authorised caller: start the call (answered
    /// when it ends) or refuse it now.
    pub(crate) fn tools_invoke_http(&mut self, now: Instant, id: ConnId, body: &[u8]) {
        // The tools are needed: servers that start lazily start now.
        self.warm_up_tools(now);
        let started = parse_body(body)
            .map_err(Refused::invalid_json)
            .and_then(|body| self.start_http_invoke(now, id, body, true));
        self.refuse_http_invoke(now, id, started);
    }

    /// A `POST /tools/invoke` that waited for starting providers: look its tool up again.
    pub(crate) fn resume_http_invoke(
        &mut self,
        now: Instant,
        id: ConnId,
        body: Map<String, Value>,
    ) {
        let started = self.start_http_invoke(now, id, body, false);
        self.refuse_http_invoke(now, id, started);
    }

    fn refuse_http_invoke(&mut self, now: Instant, id: ConnId, started: Result<(), Refused>) {
        if let Err(r) = started {
            let line = format!("POST {PATH} refused {}: {}", r.status, r.body);
            self.log(now, Level::Info, Some(id), line);
            self.answer_post(now, id, r.status, Some(JSON), r.body.to_string().as_bytes());
        }
    }

    /// Start the call `body` asks for; a tool not known yet while providers are starting
    /// waits for them when `may_wait`.
    fn start_http_invoke(
        &mut self,
        now: Instant,
        id: ConnId,
        body: Map<String, Value>,
        may_wait: bool,
    ) -> Result<(), Refused> {
        let body = &body;
        // `name` wins over `tool` when both are sent.
        let name = match body.get("name") {
            Some(_) => text(body, "name"),
            None => text(body, "tool"),
        }
        .ok_or_else(|| Refused::new(400, "invalid_request", "tools.invoke requires name"))?
        .to_string();
        if let Some(agent) = text(body, "agentId")
            && agent != AGENT_ID
        {
            let message =
                format!("agent id \"{agent}\" does not match session agent \"{AGENT_ID}\"");
            return Err(Refused::new(400, "invalid_request", message));
        }
        let tools = &self.config.tools;
        if http_denied(&name, &tools.http_allow, &tools.http_deny) {
            return Err(Refused::new(
                404,
                "not_found",
                format!("Tool not available: {name}"),
            ));
        }
        let Some(entry) = self.catalog_entry(&name).filter(ToolEntry::is_ready) else {
            if may_wait && self.tools_starting() {
                let waiter = Waiter::Http {
                    conn: id,
                    body: body.clone(),
                };
                self.wait_for_tools(now, waiter);
                return Ok(());
            }
            return Err(Refused::new(
                404,
                "not_found",
                format!("Tool not available: {name}"),
            ));
        };
        let args = match body.get("args") {
            Some(Value::Object(args)) => args.clone(),
            _ => Map::new(),
        };
        let call_id = match text(body, "idempotencyKey") {
            Some(key) => format!("http-direct-operator-{key}"),
            None => format!("http-direct-operator-{}", self.unix_ms(now)),
        };
        let call = ToolCall {
            id: call_id,
            arguments: merge_action(args, text(body, "action"), &entry.parameters),
            name,
        };
        self.log(
            now,
            Level::Info,
            Some(id),
            format!("POST {PATH}: {}", call.name),
        );
        let ctx = CallContext {
            session_key: text(body, "sessionKey").map(str::to_string),
            owner: true,
            chat: None,
        };
        self.start_tool_call(now, call, ctx, CallOwner::Http { conn: id });
        Ok(())
    }

    /// Call of `conn`'s `POST /tools/invoke` ended: answer it (unless the caller left).
    pub(crate) fn answer_http_invoke(&mut self, now: Instant, conn: ConnId, outcome: &ToolOutcome) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let (status, body) = http_answer(outcome);
        self.answer_post(now, conn, status, Some(JSON), body.to_string().as_bytes());
    }

    /// `conn` went away: stop the calls its `POST /tools/invoke` waits for.
    pub(crate) fn http_invoke_gone(&mut self, now: Instant, conn: ConnId) {
        for call in self.tools.calls_of(&CallOwner::Http { conn }) {
            self.stop_tool_call(now, call);
            self.tools.calls.remove(&call);
        }
    }
}

/// The body as a JSON object: empty is `{}`, anything that is not an object (`null`, an
/// array) names no tool; text that is not JSON is refused with the parser's message.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?.trim();
    if text.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deny_list_and_its_overrides() {
        let none: &[String] = &[];
        assert!(http_denied("exec", none, none));
        assert!(http_denied(" Nodes ", none, none));
        assert!(!http_denied("local__echo", none, none));
        assert!(!http_denied("nodes", &["nodes".into()], none));
        assert!(http_denied("read_skill", none, &["READ_SKILL".into()]));
        assert!(http_denied("nodes", &["nodes".into()], &["nodes".into()]));
    }

    #[test]
    fn action_is_merged_only_where_the_schema_has_one() {
        let with = json!({"properties": {"action": {"type": "string"}}});
        let without = json!({"properties": {"text": {"type": "string"}}});
        assert_eq!(
            merge_action(Map::new(), Some("status"), &with),
            json!({"action": "status"})
        );
        assert_eq!(
            merge_action(Map::new(), Some("status"), &without),
            json!({})
        );
        let set = json!({"action": "which"}).as_object().cloned().unwrap();
        assert_eq!(
            merge_action(set, Some("status"), &with),
            json!({"action": "which"})
        );
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(b"").unwrap(), Map::new());
        assert_eq!(parse_body(b" null ").unwrap(), Map::new());
        assert_eq!(parse_body(b"[1]").unwrap(), Map::new());
        assert!(parse_body(b"{nope").is_err());
        assert!(parse_body(&[0xff, 0xfe]).is_err());
        assert_eq!(parse_body(br#"{"tool":"x"}"#).unwrap()["tool"], "x");
    }

    #[test]
    fn answers() {
        assert_eq!(
            http_answer(&ToolOutcome::text("hi")),
            (200, json!({"ok": true, "result": "hi"}))
        );
        let (status, body) = http_answer(&ToolOutcome::error("boom"));
        assert_eq!(status, 500);
        assert_eq!(
            body["error"],
            json!({"type": "tool_error", "message": "boom"})
        );
    }
}
