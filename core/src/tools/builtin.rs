//! The tools built into the gateway: `nodes` (paired nodes' commands), `exec` (commands on
//! the gateway host), and the tool-search trio (`tool_search`, `tool_describe`,
//! `tool_call`) that stands in for every MCP and skill tool while `tools.toolSearch` is on.

use serde_json::{Value, json};

use super::{ToolCall, ToolEntry, ToolOutcome, ToolSource};

/// The `nodes` tool.
pub(crate) const NODES: &str = "nodes";
/// The `exec` tool.
pub(crate) const EXEC: &str = "exec";
/// Find tools by words.
pub(crate) const TOOL_SEARCH: &str = "tool_search";
/// One tool's schema.
pub(crate) const TOOL_DESCRIBE: &str = "tool_describe";
/// Call a tool found by search.
pub(crate) const TOOL_CALL: &str = "tool_call";

/// Results `tool_search` returns without a `limit`.
const SEARCH_DEFAULT_LIMIT: usize = 8;
/// The most it returns.
const SEARCH_MAX_LIMIT: usize = 50;

/// The built-in tools' entries, made once (they never change, whatever the config, the
/// nodes or the other providers): a turn's catalog copies them, sharing their schemas.
#[derive(Debug)]
pub(crate) struct BuiltIn {
    /// `nodes` and `exec`, first in every catalog.
    pub(crate) always: [ToolEntry; 2],
    /// The search trio, offered while `tools.toolSearch` puts tools behind search.
    pub(crate) search: [ToolEntry; 3],
}

impl Default for BuiltIn {
    fn default() -> Self {
        Self {
            always: [nodes_entry(), exec_entry()],
            search: search_entries(),
        }
    }
}

/// The `nodes` entry.
fn nodes_entry() -> ToolEntry {
    ToolEntry::new(
        NODES,
        "Reach paired nodes (devices running `openclaw node run`): action=status lists them, describe shows one, which resolves executables on one (bins), invoke runs one of its allowed commands (invokeCommand, invokeParamsJson, invokeTimeoutMs).",
        json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["status", "describe", "which", "invoke"]},
                "node": {"type": "string", "description": "Node ID or name. Required for describe, which and invoke; use status to discover nodes."},
                "bins": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 64, "description": "which: executable names to resolve on the selected node."},
                "invokeCommand": {"type": "string"},
                "invokeParamsJson": {"type": "string"},
                "invokeTimeoutMs": {"type": "integer", "minimum": 1},
            },
            "required": ["action"],
        }),
        ToolSource::Node,
    )
}

/// The `exec` entry.
fn exec_entry() -> ToolEntry {
    ToolEntry::new(
        EXEC,
        "Run a shell command on the gateway host (subject to tools.exec.mode and operator approval). Returns its exit code and output.",
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "Shell command to run."},
                "workdir": {"type": "string", "description": "Working directory (defaults to the gateway's)."},
                "timeoutSeconds": {"type": "integer", "minimum": 1, "description": "Kill it after this long (at most tools.exec.timeoutSeconds)."},
            },
            "required": ["command"],
        }),
        ToolSource::Builtin,
    )
}

/// The tool-search trio's entries.
fn search_entries() -> [ToolEntry; 3] {
    [
        ToolEntry::new(
            TOOL_SEARCH,
            "Search the tool catalog (MCP servers, skills) by words in English; pass an exact result id to tool_call, and use tool_describe only when you need its input schema.",
            json!({"type": "object", "properties": {
                "query": {"type": "string", "description": "What capability you need, in English."},
                "limit": {"type": "integer", "minimum": 1},
            }, "required": ["query"]}),
            ToolSource::Builtin,
        ),
        ToolEntry::new(
            TOOL_DESCRIBE,
            "Load the full schema and metadata for one search result when its input is not already clear.",
            json!({"type": "object", "properties": {
                "id": {"type": "string", "description": "Tool search result id or tool name."},
            }, "required": ["id"]}),
            ToolSource::Builtin,
        ),
        ToolEntry::new(
            TOOL_CALL,
            "Call an exact Tool Search result id or name.",
            json!({"type": "object", "properties": {
                "id": {"type": "string", "description": "Tool search result id or tool name."},
                "args": {"type": "object", "description": "Tool input."},
            }, "required": ["id"]}),
            ToolSource::Builtin,
        ),
    ]
}

/// Whether a tool stays in front of the model while tool search is on (built-in tools and
/// the node tool do; MCP and skill tools go behind search).
pub(crate) fn is_direct(t: &ToolEntry) -> bool {
    matches!(t.source, ToolSource::Builtin | ToolSource::Node)
}

/// `tool_search` over `deferred` (the tools behind search): tools whose name or
/// description holds any of the query's words, best first.
pub(crate) fn search(call: &ToolCall, deferred: &[ToolEntry]) -> ToolOutcome {
    let query = call.str_arg("query").unwrap_or_default().to_lowercase();
    let words: Vec<&str> = query.split_whitespace().collect();
    let limit = call
        .arguments
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(SEARCH_DEFAULT_LIMIT, |l| {
            (l as usize).clamp(1, SEARCH_MAX_LIMIT)
        });
    let mut hits: Vec<(usize, &ToolEntry)> = deferred
        .iter()
        .map(|t| {
            let hay = format!("{} {}", t.name, t.description).to_lowercase();
            (words.iter().filter(|w| hay.contains(**w)).count(), t)
        })
        .filter(|(score, _)| *score > 0 || words.is_empty())
        .collect();
    crate::sorting::sort_by(&mut hits, |a, b| {
        b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name))
    });
    let results: Vec<Value> = hits
        .into_iter()
        .take(limit)
        .map(|(_, t)| json!({"id": t.name, "name": t.name, "description": t.description, "source": t.source.as_str()}))
        .collect();
    ToolOutcome::json(json!({"query": query, "results": results}))
}

/// `tool_describe` of one tool behind search.
pub(crate) fn describe(call: &ToolCall, deferred: &[ToolEntry]) -> ToolOutcome {
    let id = call.str_arg("id").unwrap_or_default();
    match deferred.iter().find(|t| t.name == id) {
        Some(t) => ToolOutcome::json(json!({
            "id": t.name,
            "name": t.name,
            "description": t.description,
            "parameters": *t.parameters,
            "source": t.source.as_str(),
        })),
        None => ToolOutcome::error(format!(
            "Unknown tool id: {id}; use tool_search to find one"
        )),
    }
}

/// The call `tool_call` stands for (same call id), or why there is none.
pub(crate) fn unwrap_call(call: &ToolCall) -> Result<ToolCall, ToolOutcome> {
    let Some(id) = call.str_arg("id").filter(|i| !i.is_empty()) else {
        return Err(ToolOutcome::error(
            "tool_call needs the id of a tool_search result",
        ));
    };
    if [TOOL_SEARCH, TOOL_DESCRIBE, TOOL_CALL].contains(&id) {
        return Err(ToolOutcome::error("tool_call cannot call the search tools"));
    }
    let args = match call.arguments.get("args") {
        None | Some(Value::Null) => json!({}),
        Some(a) => a.clone(),
    };
    Ok(ToolCall {
        id: call.id.clone(),
        name: id.to_string(),
        arguments: args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, description: &str) -> ToolEntry {
        ToolEntry::new(
            name,
            description,
            json!({"type": "object"}),
            ToolSource::Mcp,
        )
    }

    #[test]
    fn search_describe_and_call() {
        let deferred = [
            tool("files__read", "Read a file from disk"),
            tool("weather__now", "The weather in a city"),
        ];
        let call = |name: &str, args: Value| ToolCall {
            id: "c1".into(),
            name: name.into(),
            arguments: args,
        };
        let found = search(
            &call(TOOL_SEARCH, json!({"query": "weather city"})),
            &deferred,
        );
        let v = match found.content {
            super::super::ToolContent::Json(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(v["results"][0]["id"], "weather__now");
        assert_eq!(v["results"].as_array().unwrap().len(), 1);
        let d = describe(
            &call(TOOL_DESCRIBE, json!({"id": "files__read"})),
            &deferred,
        );
        assert!(!d.is_error && d.as_text().contains("\"parameters\""));
        assert!(describe(&call(TOOL_DESCRIBE, json!({"id": "nope"})), &deferred).is_error);
        let inner = unwrap_call(&call(
            TOOL_CALL,
            json!({"id": "files__read", "args": {"path": "/x"}}),
        ))
        .unwrap();
        assert_eq!(
            (inner.name.as_str(), inner.id.as_str()),
            ("files__read", "c1")
        );
        assert_eq!(inner.arguments, json!({"path": "/x"}));
        assert!(unwrap_call(&call(TOOL_CALL, json!({}))).is_err());
    }
}
