//! Least privilege: the operator scopes a command asks for, as upstream's CLI does — the
//! scope the method needs, and the CLI's full default set for a method it does not know.

use clawgate_core::scopes::{self, Requirement};

/// Upstream's `CLI_DEFAULT_OPERATOR_SCOPES`, for methods the table does not know.
pub const CLI_DEFAULT: &[&str] = &[
    scopes::ADMIN,
    scopes::READ,
    scopes::WRITE,
    scopes::APPROVALS,
    scopes::QUESTIONS,
    scopes::PAIRING,
    "operator.talk.secrets",
];

/// The scopes to request for calling `method`.
pub fn for_method(method: &str) -> Vec<String> {
    let one = |s: &str| vec![s.to_string()];
    match (method, scopes::requirement(method)) {
        ("health", _) => one(scopes::READ),
        // Approving a node's commands may need admin (system.run and friends): ask for both.
        ("node.pair.approve", _) => vec![scopes::PAIRING.into(), scopes::ADMIN.into()],
        (_, Some(Requirement::Read)) => one(scopes::READ),
        (_, Some(Requirement::Write | Requirement::Dynamic)) => one(scopes::WRITE),
        (_, Some(Requirement::Admin)) => one(scopes::ADMIN),
        (_, Some(Requirement::Approvals)) => one(scopes::APPROVALS),
        (_, Some(Requirement::Questions)) => one(scopes::QUESTIONS),
        (_, Some(Requirement::Pairing)) => one(scopes::PAIRING),
        (_, Some(Requirement::Talk)) => one(scopes::TALK),
        (_, Some(Requirement::SessionsWrite)) => one("operator.sessions.write"),
        (_, Some(Requirement::NodeRole) | None) => {
            CLI_DEFAULT.iter().map(|s| s.to_string()).collect()
        }
    }
}

/// The scopes to request for calling `method` with `params`: [`for_method`], plus
/// `operator.admin` where the params make the call an admin one (`node.invoke` of
/// `browser.proxy`, for example), as the gateway's own authorization decides.
pub fn for_call(method: &str, params: &serde_json::Value) -> Vec<String> {
    let mut s = for_method(method);
    if scopes::authorize(scopes::Role::Operator, &s, method, params).is_err()
        && !s.iter().any(|g| g == scopes::ADMIN)
    {
        s.push(scopes::ADMIN.into());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_per_method() {
        for m in [
            "health",
            "status",
            "system-presence",
            "config.get",
            "logs.tail",
            "node.list",
            "node.describe",
        ] {
            assert_eq!(for_method(m), ["operator.read"], "{m}");
        }
        for m in [
            "node.pair.list",
            "device.pair.list",
            "device.pair.approve",
            "device.pair.reject",
            "device.token.rotate",
            "device.token.revoke",
        ] {
            assert_eq!(for_method(m), ["operator.pairing"], "{m}");
        }
        assert_eq!(
            for_method("node.pair.approve"),
            ["operator.pairing", "operator.admin"]
        );
        assert_eq!(for_method("node.invoke"), ["operator.write"]);
        assert_eq!(for_method("config.set"), ["operator.admin"]);
        assert_eq!(for_method("no.such.method").len(), 7);
        assert_eq!(for_method("no.such.method")[0], "operator.admin");
        let params = serde_json::json!({"nodeId": "n", "command": "system.which"});
        assert_eq!(for_call("node.invoke", &params), ["operator.write"]);
        let params = serde_json::json!({"nodeId": "n", "command": "browser.proxy"});
        assert_eq!(
            for_call("node.invoke", &params),
            ["operator.write", "operator.admin"]
        );
        assert_eq!(
            for_call("status", &serde_json::json!({})),
            ["operator.read"]
        );
    }
}
