//! `tools.*`: tool search, the per-call bounds, and `tools.exec` (the gateway host's
//! commands), with clawgate's defaults where they differ from upstream's (exec is denied
//! unless the owner allows it).

use core::time::Duration;

use serde_json::Value;

use super::{ConfigError, Limits, at, num_at, str_list};

/// `tools.exec.mode`: what the `exec` tool may run on the gateway host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExecMode {
    /// Nothing (clawgate's default; upstream's is `full`).
    Deny,
    /// Only programs named in `tools.exec.safeBins`; anything else is refused.
    Allowlist,
    /// Programs in `tools.exec.safeBins` run; anything else asks an operator first.
    Ask,
    /// Anything, without asking.
    Full,
}

impl ExecMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Deny => "deny",
            ExecMode::Allowlist => "allowlist",
            ExecMode::Ask => "ask",
            ExecMode::Full => "full",
        }
    }

    /// A mode by its config spelling (upstream's `auto`, a reviewer model then a human, is
    /// `ask` here: clawgate has no reviewer model).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "deny" => ExecMode::Deny,
            "allowlist" => ExecMode::Allowlist,
            "ask" | "auto" => ExecMode::Ask,
            "full" => ExecMode::Full,
            _ => return None,
        })
    }
}

/// `tools.exec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// What may run.
    pub mode: ExecMode,
    /// Program names (or absolute paths) that run without asking in `allowlist` and `ask`.
    pub safe_bins: Vec<String>,
    /// How long a command may run before it is killed (`tools.exec.timeoutSeconds`;
    /// clawgate's default is 60 s, upstream's 1800 s).
    pub timeout: Duration,
    /// How long an operator has to answer an approval request
    /// (`tools.exec.approvalTimeoutSeconds`); unanswered, the command is denied.
    pub approval_timeout: Duration,
    /// Bytes of a command's output kept (`tools.exec.maxOutputBytes`); the rest is cut.
    pub max_output_bytes: usize,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            mode: ExecMode::Deny,
            safe_bins: Vec::new(),
            timeout: Duration::from_secs(60),
            approval_timeout: Duration::from_secs(60),
            max_output_bytes: 64 * 1024,
        }
    }
}

/// `tools`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolsConfig {
    /// `tools.toolSearch` (unset: on, as upstream): the model is offered `tool_search`,
    /// `tool_describe` and `tool_call` instead of every MCP and skill tool's schema.
    pub tool_search: bool,
    /// `tools.exec`.
    pub exec: ExecConfig,
    /// `gateway.tools.allow`: names taken off `POST /tools/invoke`'s default deny list.
    pub http_allow: Vec<String>,
    /// `gateway.tools.deny`: names denied over `POST /tools/invoke` beside the default list.
    pub http_deny: Vec<String>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            tool_search: true,
            exec: ExecConfig::default(),
            http_allow: Vec::new(),
            http_deny: Vec::new(),
        }
    }
}

/// Read `tools` from the config file, and its bounds into `limits`.
pub(crate) fn resolve(file: &Value, limits: &mut Limits) -> Result<ToolsConfig, ConfigError> {
    let mut t = ToolsConfig::default();
    match at(file, &["tools", "toolSearch"]) {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => t.tool_search = *b,
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "tools.toolSearch",
                message: format!("must be true or false, got {other}"),
            });
        }
    }
    let secs = |path: &[&str], key| num_at(file, path, key).map(|n| n.map(Duration::from_secs));
    if let Some(d) = secs(&["tools", "timeoutSeconds"], "tools.timeoutSeconds")? {
        limits.tool_timeout = d;
    }
    if let Some(n) = num_at(file, &["tools", "maxResultBytes"], "tools.maxResultBytes")? {
        limits.tool_result_max_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = num_at(file, &["tools", "maxRounds"], "tools.maxRounds")? {
        limits.tool_max_rounds = u32::try_from(n).unwrap_or(u32::MAX).max(1);
    }
    let e = &mut t.exec;
    match at(file, &["tools", "exec", "mode"]) {
        None | Some(Value::Null) => {}
        Some(v) => {
            e.mode = v
                .as_str()
                .and_then(ExecMode::parse)
                .ok_or_else(|| ConfigError::Invalid {
                    key: "tools.exec.mode",
                    message: format!("must be one of deny, allowlist, ask, auto, full; got {v}"),
                })?;
        }
    }
    e.safe_bins = str_list(file, &["tools", "exec", "safeBins"]);
    if let Some(d) = secs(
        &["tools", "exec", "timeoutSeconds"],
        "tools.exec.timeoutSeconds",
    )? {
        e.timeout = d;
    }
    let key = "tools.exec.approvalTimeoutSeconds";
    if let Some(d) = secs(&["tools", "exec", "approvalTimeoutSeconds"], key)? {
        e.approval_timeout = d;
    }
    let key = "tools.exec.maxOutputBytes";
    if let Some(n) = num_at(file, &["tools", "exec", "maxOutputBytes"], key)? {
        e.max_output_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    t.http_allow = str_list(file, &["gateway", "tools", "allow"]);
    t.http_deny = str_list(file, &["gateway", "tools", "deny"]);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exec_is_denied_unless_configured() {
        let mut limits = Limits::default();
        let t = resolve(&json!({}), &mut limits).unwrap();
        assert_eq!(t.exec.mode, ExecMode::Deny);
        assert!(t.tool_search);
        let file = json!({"tools": {"toolSearch": false, "maxRounds": 3, "timeoutSeconds": 7,
            "exec": {"mode": "allowlist", "safeBins": ["echo"], "approvalTimeoutSeconds": 5}}});
        let t = resolve(&file, &mut limits).unwrap();
        assert_eq!(t.exec.mode, ExecMode::Allowlist);
        assert_eq!(t.exec.safe_bins, ["echo"]);
        assert_eq!(t.exec.approval_timeout, Duration::from_secs(5));
        assert!(!t.tool_search);
        assert_eq!(limits.tool_max_rounds, 3);
        assert_eq!(limits.tool_timeout, Duration::from_secs(7));
        let file = json!({"gateway": {"tools": {"allow": ["nodes"], "deny": ["read_skill", 3]}}});
        let t = resolve(&file, &mut limits).unwrap();
        assert_eq!(t.http_allow, ["nodes"]);
        assert_eq!(t.http_deny, ["read_skill"]);
        let bad = json!({"tools": {"exec": {"mode": "yolo"}}});
        assert!(resolve(&bad, &mut limits).is_err());
    }
}
