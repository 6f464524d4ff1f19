//! Roles, operator scopes, the method table and the authorization of methods and events
//! (upstream `authorizeGatewayMethod` and `EVENT_SCOPE_GUARDS`).

mod events;
mod table;

pub use events::{EVENTS, event_scope, may_receive};

use serde_json::{Value, json};

use crate::frame::{ErrorCode, ErrorShape};

/// `operator.admin`: satisfies every scope.
pub const ADMIN: &str = "operator.admin";
/// `operator.read`.
pub const READ: &str = "operator.read";
/// `operator.write`: implies read, talk and the sessions scopes.
pub const WRITE: &str = "operator.write";
/// `operator.pairing`.
pub const PAIRING: &str = "operator.pairing";
/// `operator.approvals`.
pub const APPROVALS: &str = "operator.approvals";
/// `operator.questions`.
pub const QUESTIONS: &str = "operator.questions";
/// `operator.talk`.
pub const TALK: &str = "operator.talk";

/// The closed set of operator scopes.
pub const ALL_SCOPES: &[&str] = &[
    ADMIN,
    READ,
    WRITE,
    "operator.sessions.read",
    "operator.sessions.write",
    APPROVALS,
    QUESTIONS,
    PAIRING,
    TALK,
    "operator.talk.secrets",
];

/// A connection's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A person's client: CLI, UI, apps.
    Operator,
    /// A worker machine.
    Node,
}

impl Role {
    /// Parse upstream's role names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Role::Operator),
            "node" => Some(Role::Node),
            _ => None,
        }
    }

    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

/// What a method requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `operator.read`.
    Read,
    /// `operator.write`.
    Write,
    /// `operator.admin`.
    Admin,
    /// `operator.approvals`.
    Approvals,
    /// `operator.questions`.
    Questions,
    /// `operator.pairing`.
    Pairing,
    /// `operator.talk`.
    Talk,
    /// `operator.sessions.write`.
    SessionsWrite,
    /// Depends on the params; `operator.write` at the least.
    Dynamic,
    /// Only the node role may call it.
    NodeRole,
}

/// What a method of upstream's table requires: from the method registry for the methods
/// clawgate implements, from the table of the others.
pub fn requirement(method: &str) -> Option<Requirement> {
    crate::methods::requirement(method).or_else(|| {
        table::METHODS
            .binary_search_by(|(m, _)| (*m).cmp(method))
            .ok()
            .and_then(|i| table::METHODS.get(i))
            .map(|(_, r)| *r)
    })
}

/// Whether `granted` satisfies `required`, with upstream's implications.
pub fn satisfied(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == ADMIN
            || g == required
            || (g == WRITE
                && matches!(
                    required,
                    READ | TALK | "operator.sessions.read" | "operator.sessions.write"
                ))
            || (g == "operator.sessions.write" && required == "operator.sessions.read")
            || (g == READ && required == "operator.sessions.read")
    })
}

/// Node commands whose invocation needs `operator.admin` rather than write.
const ADMIN_NODE_COMMANDS: &[&str] = &[
    "browser.proxy",
    "browser.proxy.upload.v1",
    "fs.listDir",
    "terminal.upload",
];

/// Whether an `agent` message is `/new` or `/reset` (optionally followed by whitespace and
/// more), case-insensitively: upstream's `AGENT_SESSION_RESET_COMMAND_RE`, which makes the call
/// need `operator.admin`.
fn is_session_reset_command(message: &str) -> bool {
    let Some(rest) = message.strip_prefix('/') else {
        return false;
    };
    ["new", "reset"].iter().any(|cmd| {
        rest.get(..cmd.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(cmd))
            && rest
                .get(cmd.len()..)
                .is_some_and(|tail| tail.chars().next().is_none_or(char::is_whitespace))
    })
}

/// The scopes a method call needs beyond the role check, in upstream's order.
fn required_scope(method: &str, params: &Value) -> &'static str {
    match requirement(method) {
        Some(Requirement::Read) => READ,
        Some(Requirement::Write) => WRITE,
        Some(Requirement::Approvals) => APPROVALS,
        Some(Requirement::Questions) => QUESTIONS,
        Some(Requirement::Pairing) => PAIRING,
        Some(Requirement::Talk) => TALK,
        Some(Requirement::SessionsWrite) => "operator.sessions.write",
        Some(Requirement::Dynamic) if method == "node.invoke" => {
            match params.get("command").and_then(Value::as_str) {
                Some(c) if ADMIN_NODE_COMMANDS.contains(&c) => ADMIN,
                _ => WRITE,
            }
        }
        Some(Requirement::Dynamic) if method == "agent" => {
            match params.get("message").and_then(Value::as_str) {
                Some(m) if is_session_reset_command(m) => ADMIN,
                _ => WRITE,
            }
        }
        Some(Requirement::Dynamic) if method == "channels.pairing.approve" => {
            match params.get("bootstrapCommandOwner") {
                Some(Value::Bool(true)) => ADMIN,
                _ => PAIRING,
            }
        }
        Some(Requirement::Dynamic) if method == "sessions.patch" => sessions_patch_scope(params),
        Some(Requirement::Dynamic) if method == "sessions.delete" => sessions_delete_scope(params),
        Some(Requirement::Dynamic) => WRITE,
        Some(Requirement::Admin) | Some(Requirement::NodeRole) | None => ADMIN,
    }
}

/// `sessions.patch` fields a writer may set; any other field needs admin (upstream's
/// `resolveSessionsPatchRequiredScope`).
const SESSIONS_PATCH_WRITE_FIELDS: &[&str] = &[
    "key",
    "agentId",
    "expectedSessionId",
    "expectedLifecycleRevision",
    "expectedPermissionMode",
    "expectedMarkedUnreadAt",
    "label",
    "autoLabel",
    "icon",
    "color",
    "category",
    "boardFace",
    "boardPresentation",
    "pinned",
    "archived",
    "unread",
    "model",
    "agentRuntime",
    "thinkingLevel",
    "fastMode",
    "permissionMode",
];

fn sessions_patch_scope(params: &Value) -> &'static str {
    let Some(p) = params.as_object() else {
        return WRITE;
    };
    if p.get("permissionMode").and_then(Value::as_str) == Some("full")
        || p.contains_key("sandboxMode")
        || !p
            .keys()
            .all(|k| SESSIONS_PATCH_WRITE_FIELDS.contains(&k.as_str()))
    {
        ADMIN
    } else {
        WRITE
    }
}

/// `sessions.delete` needs admin unless it deletes an archived session only, with these
/// fields (upstream's `resolveSessionsDeleteRequiredScope`).
fn sessions_delete_scope(params: &Value) -> &'static str {
    const WRITE_FIELDS: &[&str] = &[
        "key",
        "agentId",
        "deleteTranscript",
        "expectedSessionId",
        "archivedOnly",
    ];
    match params.as_object() {
        Some(p)
            if p.get("archivedOnly") == Some(&Value::Bool(true))
                && p.keys().all(|k| WRITE_FIELDS.contains(&k.as_str())) =>
        {
            WRITE
        }
        _ => ADMIN,
    }
}

/// Why a method call is refused by [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The method is not for this role (`unauthorized role: …`); repeated, it closes the socket.
    Role(Role),
    /// The role may call it, but a scope is missing.
    MissingScope(&'static str),
}

impl Denied {
    /// The error answered to the call.
    pub fn to_error(self) -> ErrorShape {
        match self {
            Denied::Role(role) => {
                ErrorShape::invalid(format!("unauthorized role: {}", role.as_str()))
            }
            Denied::MissingScope(scope) => missing_scope(scope),
        }
    }
}

/// Authorize a method call for a role and granted scopes, as upstream does: `health` always;
/// node-only methods for nodes only; everything else for operators with the scope the table names.
pub fn authorize(
    role: Role,
    granted: &[String],
    method: &str,
    params: &Value,
) -> Result<(), Denied> {
    if method == "health" {
        return Ok(());
    }
    let node_only = requirement(method) == Some(Requirement::NodeRole);
    match (role, node_only) {
        (Role::Node, true) => return Ok(()),
        (Role::Node, false) | (Role::Operator, true) => return Err(Denied::Role(role)),
        (Role::Operator, false) => {}
    }
    if matches!(
        method,
        "device.scopes.requestUpgrade" | "device.scopes.waitUpgrade"
    ) || granted.iter().any(|s| s == ADMIN)
    {
        return Ok(());
    }
    let need = required_scope(method, params);
    if satisfied(granted, need) {
        Ok(())
    } else {
        Err(Denied::MissingScope(need))
    }
}

/// The `FORBIDDEN missing scope` error.
pub(crate) fn missing_scope(scope: &str) -> ErrorShape {
    ErrorShape::new(ErrorCode::Forbidden, format!("missing scope: {scope}")).with_details(
        json!({"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]}),
    )
}

/// Normalise requested scopes: keep known ones, in order, without duplicates.
pub fn normalize(requested: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in requested {
        if ALL_SCOPES.contains(&s.as_str()) && !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Cap admitted scopes to an upgrade's `x-openclaw-scopes` header (comma-separated), as
/// upstream's `applyConnectionScopeCap`: no header keeps them all, a header naming none
/// leaves none, otherwise only the scopes it names are kept.
pub fn cap(scopes: Vec<String>, header: Option<&str>) -> Vec<String> {
    let Some(header) = header else {
        return scopes;
    };
    let declared: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    scopes
        .into_iter()
        .filter(|s| declared.contains(&s.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert_eq!(table::METHODS.len() + crate::METHODS.len(), 482);
        assert!(table::METHODS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            crate::METHODS
                .iter()
                .all(|m| table::METHODS.binary_search_by(|(t, _)| t.cmp(m)).is_err()),
            "a method is in the registry and in the table"
        );
        assert_eq!(requirement("status"), Some(Requirement::Read));
        assert_eq!(
            requirement("node.invoke.result"),
            Some(Requirement::NodeRole)
        );
        assert_eq!(requirement("config.apply"), Some(Requirement::Admin));
        assert_eq!(
            requirement("device.token.rotate"),
            Some(Requirement::Pairing)
        );
    }

    #[test]
    fn agent_needs_admin_for_new_and_reset_only() {
        let w = s(&[WRITE]);
        let call = |m: &str| authorize(Role::Operator, &w, "agent", &json!({"message": m}));
        for reset in ["/new", "/reset", "/NEW", "/reset  keep this", "/new\nnext"] {
            let e = call(reset).unwrap_err().to_error();
            assert_eq!(e.message, "missing scope: operator.admin", "{reset:?}");
        }
        for plain in ["hello", "/newer", "/resets", "new", " /new", "/"] {
            assert!(call(plain).is_ok(), "{plain:?}");
        }
        assert!(authorize(Role::Operator, &w, "agent.wait", &json!({})).is_ok());
    }

    #[test]
    fn session_patch_and_delete_scopes_follow_their_params() {
        let w = s(&[WRITE]);
        let call = |m: &str, p: Value| authorize(Role::Operator, &w, m, &p);
        assert!(call("sessions.patch", json!({"key": "k", "label": "x"})).is_ok());
        for admin in [
            json!({"key": "k", "execHost": "gateway"}),
            json!({"key": "k", "permissionMode": "full"}),
            json!({"key": "k", "sandboxMode": "x"}),
        ] {
            let e = call("sessions.patch", admin).unwrap_err().to_error();
            assert_eq!(e.message, "missing scope: operator.admin");
        }
        assert!(call("sessions.delete", json!({"key": "k"})).is_err());
        assert!(call("sessions.delete", json!({"key": "k", "archivedOnly": true})).is_ok());
        let extra = json!({"key": "k", "archivedOnly": true, "emitLifecycleHooks": true});
        assert!(call("sessions.delete", extra).is_err());
    }

    #[test]
    fn health_is_always_allowed() {
        assert!(authorize(Role::Operator, &[], "health", &Value::Null).is_ok());
        assert!(authorize(Role::Node, &[], "health", &Value::Null).is_ok());
    }

    #[test]
    fn empty_scopes_cannot_read_status() {
        let e = authorize(Role::Operator, &[], "status", &Value::Null)
            .unwrap_err()
            .to_error();
        assert_eq!(e.message, "missing scope: operator.read");
        assert_eq!(e.details.unwrap()["code"], "MISSING_SCOPE");
    }

    #[test]
    fn implications() {
        assert!(authorize(Role::Operator, &s(&[WRITE]), "status", &Value::Null).is_ok());
        assert!(authorize(Role::Operator, &s(&[READ]), "send", &Value::Null).is_err());
        assert!(
            authorize(
                Role::Operator,
                &s(&[ADMIN]),
                "anything.unknown",
                &Value::Null
            )
            .is_ok()
        );
        let e = authorize(Role::Operator, &s(&[READ]), "nosuch.method", &Value::Null)
            .unwrap_err()
            .to_error();
        assert_eq!(e.message, "missing scope: operator.admin");
    }

    #[test]
    fn roles_are_separated() {
        assert_eq!(
            authorize(
                Role::Operator,
                &s(&[ADMIN]),
                "node.invoke.result",
                &Value::Null
            )
            .unwrap_err()
            .to_error()
            .message,
            "unauthorized role: operator"
        );
        assert_eq!(
            authorize(Role::Node, &[], "status", &Value::Null)
                .unwrap_err()
                .to_error()
                .message,
            "unauthorized role: node"
        );
        assert!(authorize(Role::Node, &[], "node.event", &Value::Null).is_ok());
    }

    #[test]
    fn node_invoke_is_dynamic() {
        let p = serde_json::json!({"command": "fs.listDir"});
        assert_eq!(
            authorize(Role::Operator, &s(&[WRITE]), "node.invoke", &p)
                .unwrap_err()
                .to_error()
                .message,
            "missing scope: operator.admin"
        );
        let p = serde_json::json!({"command": "system.which"});
        assert!(authorize(Role::Operator, &s(&[WRITE]), "node.invoke", &p).is_ok());
    }

    #[test]
    fn header_caps_scopes() {
        let granted = s(&["operator.read", "operator.write", "operator.admin"]);
        assert_eq!(cap(granted.clone(), None), granted);
        assert_eq!(
            cap(granted.clone(), Some(" operator.read ,operator.pairing")),
            s(&["operator.read"])
        );
        assert!(cap(granted.clone(), Some("")).is_empty());
        assert!(cap(granted, Some(" , ")).is_empty());
    }
}
