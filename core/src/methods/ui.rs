//! Methods only the Control UI calls, answered as upstream does where clawgate has the
//! state: `chat.startup` (the chat view's first read) and `exec.approvals.get` (clawgate
//! runs no exec host: the snapshot of an approvals file that does not exist, denying).

use std::time::Instant;

use serde_json::{Value, json};

use sha2::{Digest, Sha256};

use super::{Call, NoParams, Reply, typed};
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

    /// `exec.approvals.get`: clawgate has no exec host, so no approvals file: upstream's
    /// snapshot of a missing one (`exists: false`, its `missing:` hash), with defaults that
    /// deny, as nothing here would run a command.
    pub(crate) fn exec_approvals_get(&mut self, _: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        let defaults = json!({"security": "deny", "ask": "off", "askFallback": "deny", "autoAllowSkills": false});
        let empty = data_encoding::HEXLOWER.encode(&Sha256::digest(b""));
        Reply::Now(Ok(json!({
            "path": format!("{}/exec-approvals.json", self.config.state_dir),
            "exists": false,
            "hash": format!("missing:{empty}"),
            "file": {"version": 1, "defaults": defaults, "agents": {}},
            "resolvedDefaults": defaults,
        })))
    }
}
