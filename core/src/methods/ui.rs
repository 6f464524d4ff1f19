//! Methods only the Control UI calls, answered as upstream does where clawgate has the
//! state: `chat.startup` (the chat view's first read).

use std::time::Instant;

use serde_json::{Value, json};

use super::{Call, Reply, typed};
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
}
