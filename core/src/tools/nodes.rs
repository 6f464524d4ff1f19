//! The `nodes` tool: the agent's way to paired nodes, over the same `node.invoke` routing
//! operators use (its allow/deny lists, timeouts and cancellation). A node that disconnects
//! mid-call ends the call with an error.

use std::time::Instant;

use serde_json::{Value, json};

use crate::frame::ErrorShape;
use crate::gateway::Gateway;
use crate::route::{Caller, InvokeRequest};

use super::{CallId, ToolCall, ToolOutcome};

/// Commands the generic `invoke` action refuses (upstream's: they run shell commands).
const BLOCKED_INVOKE_COMMANDS: [&str; 2] = ["system.run", "system.run.prepare"];

impl Gateway {
    /// The node `wanted` names (its id or display name, any case).
    fn resolve_node(&self, now: Instant, wanted: &str) -> Option<String> {
        let list = self.node_list(now);
        let nodes = list.get("nodes")?.as_array()?;
        let matches = |n: &&Value, key: &str| {
            n.get(key)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(wanted))
        };
        nodes
            .iter()
            .find(|n| matches(n, "nodeId"))
            .or_else(|| nodes.iter().find(|n| matches(n, "displayName")))
            .and_then(|n| n.get("nodeId")?.as_str().map(str::to_string))
    }

    /// Start a `nodes` call: `status` and `describe` answer at once, `which` and `invoke`
    /// when the node does.
    pub(crate) fn start_nodes_call(&mut self, now: Instant, id: CallId, call: &ToolCall) {
        let outcome = match call.str_arg("action").unwrap_or_default() {
            "status" => Some(ToolOutcome::json(self.node_list(now))),
            "describe" => Some(self.describe_for_tool(now, call)),
            "which" | "invoke" => self.invoke_for_tool(now, id, call).err(),
            other => Some(ToolOutcome::error(format!(
                "Unknown action: {other:?} (status, describe, which, invoke)"
            ))),
        };
        if let Some(o) = outcome {
            self.finish_tool_call(now, id, o);
        }
    }

    fn describe_for_tool(&self, now: Instant, call: &ToolCall) -> ToolOutcome {
        let wanted = call.str_arg("node").unwrap_or_default();
        match self
            .resolve_node(now, wanted)
            .and_then(|n| self.node_entry(&n))
        {
            Some(e) => ToolOutcome::json(e),
            None => ToolOutcome::error(format!("unknown node: {wanted:?}")),
        }
    }

    /// Send a `which` or `invoke` call's command to its node.
    fn invoke_for_tool(
        &mut self,
        now: Instant,
        id: CallId,
        call: &ToolCall,
    ) -> Result<(), ToolOutcome> {
        let wanted = call
            .str_arg("node")
            .ok_or_else(|| ToolOutcome::error("node required"))?;
        let node_id = self
            .resolve_node(now, wanted)
            .ok_or_else(|| ToolOutcome::error(format!("unknown node: {wanted:?}")))?;
        let (command, params, timeout_ms) = if call.str_arg("action") == Some("which") {
            let bins = call
                .arguments
                .get("bins")
                .filter(|b| b.as_array().is_some_and(|a| !a.is_empty()))
                .ok_or_else(|| ToolOutcome::error("bins required"))?;
            ("system.which".to_string(), json!({"bins": bins}), None)
        } else {
            let command = call
                .str_arg("invokeCommand")
                .ok_or_else(|| ToolOutcome::error("invokeCommand required"))?;
            if BLOCKED_INVOKE_COMMANDS.contains(&command.to_ascii_lowercase().as_str()) {
                return Err(ToolOutcome::error(format!(
                    "invokeCommand \"{command}\" is reserved for shell execution"
                )));
            }
            let params = match call.str_arg("invokeParamsJson").map(str::trim) {
                None | Some("") => json!({}),
                Some(text) => serde_json::from_str(text).map_err(|e| {
                    ToolOutcome::error(format!("invokeParamsJson is not JSON: {e}"))
                })?,
            };
            let timeout = call
                .arguments
                .get("invokeTimeoutMs")
                .and_then(Value::as_u64);
            (command.to_string(), params, timeout)
        };
        let request = InvokeRequest {
            node_id,
            command,
            params: Some(params),
            timeout_ms,
            idempotency_key: self.uuid(),
        };
        self.dispatch_invoke(now, request, Caller::Tool(id))
            .map_err(|e| ToolOutcome::error(e.message))
    }

    /// The node answered (or failed, timed out, disconnected) the invocation of call `id`.
    pub(crate) fn node_tool_done(
        &mut self,
        now: Instant,
        id: CallId,
        result: Result<Value, ErrorShape>,
    ) {
        let outcome = match result {
            Ok(v) => ToolOutcome::json(v.get("payload").cloned().unwrap_or(Value::Null)),
            Err(e) => ToolOutcome::error(e.message),
        };
        self.finish_tool_call(now, id, outcome);
    }
}
