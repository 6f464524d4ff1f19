//! `mcp.servers.<name>` as upstream spells it: `{command, args, env, cwd}` (stdio) or
//! `{url, transport: "streamable-http", headers}`, with `enabled`, `connectionTimeoutMs`,
//! `requestTimeoutMs` and `toolFilter: {include, exclude}` (exact names or `*` globs,
//! include first, then exclude). Every limit of the client is a field of [`McpLimits`].

use std::time::Duration;

use serde_json::Value;

use crate::config::ConfigError;
use crate::work::ProcessSpec;

/// The default of `connectionTimeoutMs`: how long start-up (spawn, initialize, the first
/// tools/list) may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of `requestTimeoutMs`: how long one tools/call may take (upstream's 120 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How a server is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking newline-delimited JSON on stdin/stdout.
    Stdio(ProcessSpec),
    /// Streamable HTTP: every message is a POST to `url`.
    Http {
        /// The endpoint.
        url: String,
        /// Extra request headers (credentials included; never logged).
        headers: Vec<(String, String)>,
    },
}

/// Which of a server's tools the agent sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolFilter {
    /// When non-empty, only tools matching one of these.
    pub include: Vec<String>,
    /// Tools matching one of these are hidden.
    pub exclude: Vec<String>,
}

impl ToolFilter {
    /// Whether the tool named `name` passes (include first, then exclude), as upstream.
    pub fn allows(&self, name: &str) -> bool {
        let hit = |p: &String| glob_matches(p, name);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

/// Upstream's tool-filter glob: exact text, or `*` for any run of characters.
fn glob_matches(pattern: &str, value: &str) -> bool {
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return false;
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    if !pattern.contains('*') {
        return pattern == value;
    }
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let (last, middle) = middle.split_last().map_or(("", &[][..]), |(l, m)| (*l, m));
    for part in middle.iter().filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// One configured server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Its name (`mcp.servers.<name>`), the prefix of its tools' names.
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// Which tools the agent sees.
    pub tool_filter: ToolFilter,
    /// How long start-up may take.
    pub connection_timeout: Duration,
    /// How long one tool call may take.
    pub request_timeout: Duration,
}

/// Bounds of the MCP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McpLimits {
    /// Largest message read from a server.
    pub max_message_bytes: usize,
    /// Most tools/list pages one listing follows.
    pub max_list_pages: usize,
    /// Most tools kept from one server.
    pub max_tools: usize,
    /// The first wait before restarting a server that died or failed to start.
    pub restart_initial: Duration,
    /// The longest such wait (it doubles up to this).
    pub restart_max: Duration,
}

impl Default for McpLimits {
    fn default() -> Self {
        McpLimits {
            max_message_bytes: super::jsonrpc::MAX_MESSAGE_BYTES,
            max_list_pages: 128,
            max_tools: 1024,
            restart_initial: Duration::from_millis(250),
            restart_max: Duration::from_secs(60),
        }
    }
}

/// The `mcp` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McpConfig {
    /// The enabled servers, by name.
    pub servers: Vec<ServerConfig>,
    /// The client's bounds.
    pub limits: McpLimits,
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid {
        key: "mcp.servers",
        message,
    }
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{what} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(invalid(format!("{what} must be a list of strings"))),
    }
}

fn string_map(v: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(invalid(format!("{what}.{k} must be a string"))),
            })
            .collect(),
        Some(_) => Err(invalid(format!("{what} must be an object of strings"))),
    }
}

fn millis(v: Option<&Value>, what: &str, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| invalid(format!("{what} must be a positive number of milliseconds"))),
    }
}

/// Read `mcp.servers` from the config file. Disabled servers are left out; a server with
/// neither a command nor a URL, or with a value of the wrong type, refuses the config.
pub fn resolve(file: &Value) -> Result<McpConfig, ConfigError> {
    let mut config = McpConfig::default();
    let Some(servers) = crate::config::at(file, &["mcp", "servers"]) else {
        return Ok(config);
    };
    let Value::Object(servers) = servers else {
        return Err(invalid("must be an object of servers by name".into()));
    };
    for (name, server) in servers {
        let at = |k: &str| server.get(k);
        let what = |k: &str| format!("mcp.servers.{name}.{k}");
        if name == "__proto__" || name.is_empty() || name.contains("__") {
            return Err(invalid(format!(
                "{name:?} is not a usable server name (reserved, empty, or contains \"__\")"
            )));
        }
        if !server.is_object() {
            return Err(invalid(format!("mcp.servers.{name} must be an object")));
        }
        if at("enabled") == Some(&Value::Bool(false)) {
            continue;
        }
        let kind = at("transport").and_then(Value::as_str);
        let command = at("command")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        let url = at("url").and_then(Value::as_str).filter(|u| !u.is_empty());
        let transport = match (kind, command, url) {
            (Some("stdio") | None, Some(command), _) => Transport::Stdio(ProcessSpec {
                command: command.to_string(),
                args: strings(at("args"), &what("args"))?,
                env: string_map(at("env"), &what("env"))?,
                cwd: at("cwd").and_then(Value::as_str).map(str::to_string),
            }),
            (Some("streamable-http" | "http") | None, None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(format!("{} must be an http(s) URL", what("url"))));
                }
                Transport::Http {
                    url: url.to_string(),
                    headers: string_map(at("headers"), &what("headers"))?,
                }
            }
            (Some(other), _, _) if !matches!(other, "stdio" | "streamable-http" | "http") => {
                return Err(invalid(format!(
                    "{} {other:?} is not supported (stdio or streamable-http)",
                    what("transport")
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "mcp.servers.{name} needs a command (stdio) or a url (streamable-http)"
                )));
            }
        };
        let filter = at("toolFilter");
        config.servers.push(ServerConfig {
            name: name.clone(),
            transport,
            tool_filter: ToolFilter {
                include: strings(
                    filter.and_then(|f| f.get("include")),
                    &what("toolFilter.include"),
                )?,
                exclude: strings(
                    filter.and_then(|f| f.get("exclude")),
                    &what("toolFilter.exclude"),
                )?,
            },
            connection_timeout: millis(
                at("connectionTimeoutMs"),
                &what("connectionTimeoutMs"),
                CONNECTION_TIMEOUT,
            )?,
            request_timeout: millis(
                at("requestTimeoutMs"),
                &what("requestTimeoutMs"),
                REQUEST_TIMEOUT,
            )?,
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_as_upstream() {
        assert!(glob_matches("read_*", "read_file"));
        assert!(glob_matches("*", "x"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(!glob_matches("read_*", "write"));
        assert!(glob_matches("search", "search"));
        assert!(!glob_matches("search", "search2"));
        assert!(!glob_matches("ab*ba", "aba"));
        let f = ToolFilter {
            include: vec!["search".into(), "read_*".into()],
            exclude: vec!["read_secret".into()],
        };
        assert!(f.allows("read_file") && f.allows("search"));
        assert!(!f.allows("read_secret") && !f.allows("write"));
        assert!(ToolFilter::default().allows("anything"));
    }

    #[test]
    fn both_transports_resolve_and_disabled_servers_are_left_out() {
        let c = resolve(&json!({"mcp": {"servers": {
            "local": {"command": "node", "args": ["s.js"], "env": {"A": "1"}, "cwd": "/srv",
                      "requestTimeoutMs": 500, "toolFilter": {"include": ["echo"]}},
            "docs": {"url": "http://127.0.0.1:9/mcp", "transport": "streamable-http",
                     "headers": {"Authorization": "Bearer x"}},
            "off": {"command": "x", "enabled": false}
        }}}))
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        let docs = &c.servers[0];
        assert_eq!(docs.name, "docs");
        assert!(matches!(&docs.transport, Transport::Http { headers, .. } if headers.len() == 1));
        let local = &c.servers[1];
        assert_eq!(local.request_timeout, Duration::from_millis(500));
        assert_eq!(local.connection_timeout, CONNECTION_TIMEOUT);
        assert_eq!(
            local.transport,
            Transport::Stdio(ProcessSpec {
                command: "node".into(),
                args: vec!["s.js".into()],
                env: vec![("A".into(), "1".into())],
                cwd: Some("/srv".into()),
            })
        );
    }

    #[test]
    fn unusable_servers_refuse_the_config() {
        for bad in [
            json!({"x": {}}),
            json!({"x": {"command": "a", "transport": "sse"}}),
            json!({"x": {"url": "ftp://h"}}),
            json!({"x": {"command": "a", "args": "b"}}),
            json!({"a__b": {"command": "a"}}),
            json!({"x": {"command": "a", "requestTimeoutMs": 0}}),
        ] {
            assert!(
                resolve(&json!({"mcp": {"servers": bad}})).is_err(),
                "{bad} accepted"
            );
        }
    }
}
