//! `tools.catalog`, `tools.effective` and `tools.invoke` over the WebSocket.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::agent::AGENT_ID;
use crate::gateway::Gateway;
use crate::methods::{Call, Reply};

use super::dispatch::invoke_result;
use super::provider::CallContext;
use super::router::CallOwner;
use super::{ToolCall, ToolEntry, ToolOutcome};
use crate::frame::ErrorShape;
use crate::methods::params::{self, FromParams, Kind, optional, required};

/// `tools.catalog` params.
pub(crate) struct CatalogParams {
    _agent_id: Option<String>,
    _include_plugins: Option<bool>,
}

impl FromParams for CatalogParams {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("agentId", Kind::Str),
            optional("includePlugins", Kind::Bool),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            _agent_id: p.string("agentId"),
            _include_plugins: p.bool("includePlugins"),
        })
    }
}

/// `tools.effective` params.
pub(crate) struct EffectiveParams {
    _session_key: String,
    _agent_id: Option<String>,
}

impl FromParams for EffectiveParams {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("sessionKey", Kind::Str),
            optional("agentId", Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            _session_key: p.text("sessionKey"),
            _agent_id: p.string("agentId"),
        })
    }
}

/// `tools.invoke` params.
pub(crate) struct InvokeParams {
    name: String,
    args: Option<Map<String, Value>>,
    session_key: Option<String>,
    _agent_id: Option<String>,
    _confirm: Option<bool>,
    _idempotency_key: Option<String>,
    _conversation_read_origin: Option<String>,
}

impl FromParams for InvokeParams {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("name", Kind::Str),
            optional("args", Kind::Object),
            optional("sessionKey", Kind::Str),
            optional("agentId", Kind::Str),
            optional("confirm", Kind::Bool),
            optional("idempotencyKey", Kind::Str),
            optional("conversationReadOrigin", Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            name: p.text("name"),
            args: p.object("args"),
            session_key: p.string("sessionKey"),
            _agent_id: p.string("agentId"),
            _confirm: p.bool("confirm"),
            _idempotency_key: p.string("idempotencyKey"),
            _conversation_read_origin: p.string("conversationReadOrigin"),
        })
    }
}

/// Tools grouped by `key`, in first-seen order, as `(group id, tools)`.
fn grouped(
    tools: &[ToolEntry],
    key: impl Fn(&ToolEntry) -> String,
) -> Vec<(String, Vec<&ToolEntry>)> {
    let mut groups: Vec<(String, Vec<&ToolEntry>)> = Vec::new();
    for t in tools {
        let k = key(t);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, list)) => list.push(t),
            None => groups.push((k, vec![t])),
        }
    }
    groups
}

impl Gateway {
    /// `tools.catalog`: every tool, built-in ones in group `core`, the others by provider
    /// (an unavailable tool is listed with its reason and the tag `unavailable`).
    pub(crate) fn tools_catalog(&mut self, now: Instant, _: &Call<'_>, _: CatalogParams) -> Reply {
        self.warm_up_tools(now);
        let tools = self.tool_catalog();
        let groups: Vec<Value> = grouped(&tools, |t| {
            t.to_catalog()["pluginId"]
                .as_str()
                .unwrap_or("core")
                .to_string()
        })
        .into_iter()
        .map(|(id, list)| {
            let mut g = json!({
                "id": id,
                "label": id,
                "source": if id == "core" { "core" } else { "plugin" },
                "tools": list.iter().map(|t| t.to_catalog()).collect::<Vec<_>>(),
            });
            if id != "core" {
                g["pluginId"] = json!(id);
            }
            g
        })
        .collect();
        Reply::Now(Ok(json!({
            "agentId": AGENT_ID,
            "profiles": [{"id": "full", "label": "Full"}],
            "groups": groups,
        })))
    }

    /// `tools.effective`: the tools a turn of the session can call now.
    pub(crate) fn tools_effective(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        _: EffectiveParams,
    ) -> Reply {
        let tools: Vec<ToolEntry> = self
            .tool_catalog()
            .into_iter()
            .filter(ToolEntry::is_ready)
            .collect();
        let groups: Vec<Value> = grouped(&tools, |t| t.effective_source().to_string())
            .into_iter()
            .map(|(id, list)| {
                json!({
                    "id": id,
                    "label": id,
                    "source": id,
                    "tools": list.iter().map(|t| t.to_effective()).collect::<Vec<_>>(),
                })
            })
            .collect();
        Reply::Now(Ok(
            json!({"agentId": AGENT_ID, "profile": "full", "groups": groups}),
        ))
    }

    /// `tools.invoke`: run one tool now, for the operator (an unknown tool is an ok response
    /// with `{ok:false, error:{code:"not_found"}}`, as upstream).
    pub(crate) fn tools_invoke(&mut self, now: Instant, call: &Call<'_>, p: InvokeParams) -> Reply {
        let Some(entry) = self.catalog_entry(&p.name) else {
            return Reply::Now(Ok(json!({
                "ok": false,
                "toolName": p.name,
                "error": {"code": "not_found", "message": format!("Tool not available: {}", p.name)},
            })));
        };
        if !entry.is_ready() {
            let o = ToolOutcome::error(entry.to_catalog()["description"].to_string());
            return Reply::Now(Ok(invoke_result(&p.name, &o)));
        }
        let tool_call = ToolCall {
            id: format!("invoke-{}", call.req_id),
            name: p.name,
            arguments: Value::Object(p.args.unwrap_or_default()),
        };
        let ctx = CallContext {
            session_key: p.session_key,
            owner: true,
            chat: None,
        };
        let owner = CallOwner::Invoke {
            conn: call.conn,
            req: call.req_id.to_string(),
        };
        self.start_tool_call(now, tool_call, ctx, owner);
        Reply::Later
    }
}
