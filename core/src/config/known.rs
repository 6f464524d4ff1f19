//! The keys of `openclaw.json` clawgate reads, so `clawgate doctor` can name every other key
//! in a user's file: upstream reads them, clawgate ignores them, and what they set up will not
//! run. A reader of a new key adds it here.

use serde_json::Value;

/// Dotted paths clawgate reads, each with everything below it.
pub const UNDERSTOOD: &[&str] = &[
    "gateway.port",
    "gateway.bind",
    "gateway.customBindHost",
    "gateway.mode",
    "gateway.auth.mode",
    "gateway.auth.token",
    "gateway.auth.password",
    "gateway.auth.rateLimit",
    "gateway.remote",
    "gateway.controlUi.enabled",
    "gateway.controlUi.root",
    "gateway.controlUi.basePath",
    "gateway.controlUi.allowedOrigins",
    "gateway.controlUi.allowInsecureAuth",
    "gateway.nodes.commands.allow",
    "gateway.nodes.commands.deny",
    "gateway.nodes.pairing.autoApproveLocal",
    "gateway.tools.allow",
    "gateway.tools.deny",
    "gateway.trustedProxies",
    "gateway.allowRealIpFallback",
    "gateway.tickIntervalMs",
    "gateway.maxPayloadBytes",
    "gateway.maxBufferedBytes",
    "gateway.maxBufferedBytesTotal",
    "gateway.maxConnections",
    "discovery.mdns.mode",
    "models.providers",
    "agents.defaults.model",
    "agents.defaults.maxConcurrent",
    "agents.defaults.workspace",
    "agents.list",
    "agents.entries",
    "channels.telegram",
    "channels.discord",
    "channels.slack",
    "commands.ownerAllowFrom",
    "session.dmScope",
    "session.groupScope",
    "bindings",
    "messages.queue",
    "mcp.servers",
    "skills.load.extraDirs",
    "tools.toolSearch",
    "tools.maxRounds",
    "tools.timeoutSeconds",
    "tools.maxResultBytes",
    "tools.exec.mode",
    "tools.exec.safeBins",
    "tools.exec.timeoutSeconds",
    "tools.exec.approvalTimeoutSeconds",
    "tools.exec.maxOutputBytes",
];

/// Every key of `file` that clawgate ignores, as dotted paths in key order: the highest
/// ignored key of each subtree (`logging`, not each of its members).
pub fn ignored_keys(file: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(file, "", &mut out);
    out
}

fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
    let Value::Object(members) = v else {
        return;
    };
    for (key, child) in members {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let below = format!("{path}.");
        if UNDERSTOOD
            .iter()
            .any(|u| *u == path || path.starts_with(&format!("{u}.")))
        {
            continue;
        }
        if UNDERSTOOD.iter().any(|u| u.starts_with(&below)) {
            walk(child, &path, out);
        } else {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_highest_ignored_key_of_each_subtree() {
        let file = json!({
            "gateway": {"port": 1, "auth": {"token": "t", "allowTailscale": true}, "tls": {"enabled": true}},
            "channels": {"telegram": {"botToken": "x", "anything": 1}, "whatsapp": {"enabled": true}},
            "models": {"providers": {"a": {}}, "catalogRefresh": {"enabled": false}},
            "logging": {"file": "/x"},
            "agents": {"defaults": {"model": "a/b", "sandbox": {"mode": "all"}}},
        });
        assert_eq!(
            ignored_keys(&file),
            [
                "agents.defaults.sandbox",
                "channels.whatsapp",
                "gateway.auth.allowTailscale",
                "gateway.tls",
                "logging",
                "models.catalogRefresh",
            ]
        );
        assert!(ignored_keys(&json!({"gateway": {"port": 1}})).is_empty());
        assert!(ignored_keys(&json!([1, 2])).is_empty());
    }
}
