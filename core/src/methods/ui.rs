//! Methods only the Control UI calls, answered as upstream does where clawgate has the
//! state: `chat.startup` (the chat view's first read) and `exec.approvals.get` (the exec
//! `allow-always` grants as upstream's approvals document) and
//! `environments.list` (the Systems page: the gateway and each known node) and
//! `chat.metadata` (no prepared model snapshot).

use std::time::Instant;

use serde_json::{Value, json};

use super::{AnyParams, Call, NoParams, Reply, typed};
use crate::digest::sha256_hex;
use crate::gateway::Gateway;

impl Gateway {
    /// `chat.startup`: with a `sessionKey`, `chat.history` of it (upstream answers the same
    /// payload); with a short session id, the resolution clawgate can give: no such session
    /// (its sessions have no short ids).
    pub(crate) fn chat_startup(&mut self, now: Instant, call: &Call<'_>, params: Value) -> Reply {
        if params.get("shortId").is_some() {
            return Reply::Now(Ok(json!({"resolution": {"ok": false}})));
        }
        typed(self, now, call, params, Gateway::chat_history)
    }

    /// `chat.metadata`: upstream answers it from its prepared model-runtime snapshot, and
    /// with no payload while none is prepared; clawgate prepares none (the chat view takes
    /// its models from `models.list`), so it always answers so.
    pub(crate) fn chat_metadata(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(Value::Null))
    }

    /// `exec.approvals.get`: upstream's approvals document, whose only entries clawgate keeps
    /// are the `allow-always` grants (its store's row, as upstream's path names its SQLite row;
    /// `agents.main.allowlist`); with none, the
    /// snapshot of a missing document (`exists: false`, its `missing:` hash). The defaults
    /// deny: `tools.exec.mode` is the policy.
    pub(crate) fn exec_approvals_get(&mut self, _: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        let defaults = json!({"security": "deny", "ask": "off", "askFallback": "deny", "autoAllowSkills": false});
        let grants = self.tools.exec.grants.allowlist();
        let exists = !grants.is_empty();
        let agents = if exists {
            json!({crate::agent::AGENT_ID: {"allowlist": grants}})
        } else {
            json!({})
        };
        let file = json!({"version": 1, "defaults": defaults, "agents": agents});
        let hash = if exists {
            sha256_hex(file.to_string().as_bytes())
        } else {
            format!("missing:{}", sha256_hex(b""))
        };
        Reply::Now(Ok(json!({
            "path": format!("{}/state/clawgate.sqlite#exec_approvals_config", self.config.state_dir),
            "exists": exists,
            "hash": hash,
            "file": file,
            "resolvedDefaults": defaults,
        })))
    }

    /// `environments.list`: the gateway itself, then every paired or connected node as
    /// upstream summarizes it (`node:<id>`, available while connected, its caps and commands
    /// as capabilities). clawgate has no cloud workers, so no worker environments or profiles.
    pub(crate) fn environments_list(&mut self, now: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        let gateway = json!({
            "id": "gateway",
            "type": "local",
            "label": "Gateway local",
            "status": "available",
            "platform": std::env::consts::OS,
            "sessionHost": true,
            "trust": "persistent",
            "capabilities": ["agent.run", "sessions"],
        });
        let mut environments = vec![gateway];
        let nodes = self.node_list(now);
        for node in nodes["nodes"].as_array().into_iter().flatten() {
            let Some(id) = node["nodeId"].as_str() else {
                continue;
            };
            let mut capabilities: Vec<&str> = ["caps", "commands"]
                .iter()
                .flat_map(|k| node[*k].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            capabilities.sort_unstable();
            capabilities.dedup();
            let mut env = json!({
                "id": format!("node:{id}"),
                "type": "node",
                "label": node["displayName"].as_str().filter(|l| !l.is_empty()).unwrap_or(id),
                "status": if node["connected"] == true { "available" } else { "unavailable" },
                "sessionHost": false,
                "trust": "persistent",
            });
            if let Some(platform) = node["platform"].as_str().filter(|p| !p.is_empty()) {
                env["platform"] = json!(platform);
            }
            if !capabilities.is_empty() {
                env["capabilities"] = json!(capabilities);
            }
            environments.push(env);
        }
        Reply::Now(Ok(json!({"environments": environments})))
    }
}
