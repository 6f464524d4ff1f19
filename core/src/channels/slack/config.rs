//! `channels.slack` (root fields, `accounts`, `defaultAccount`) resolved into one
//! [`SlackAccount`] per account, with upstream's validation: keys its schema does not know are
//! refused (naming the key), `mode: "http"` needs a `signingSecret`, `dmPolicy` needs
//! `allowFrom` as upstream's. A missing token is not a refusal: that account reports it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::auth::Secret;
use crate::channels::config::{
    AccessPolicy, GroupRule, invalid, object, one_of, policies, refuse_unknown,
};
use crate::config::{ConfigError, is_placeholder_secret};

/// Fields upstream's `channels.slack` schema accepts on an account (and on the root).
const ACCOUNT_KEYS: &[&str] = &[
    "ackReaction",
    "actions",
    "allowBots",
    "allowFrom",
    "appToken",
    "botLoopProtection",
    "botToken",
    "capabilities",
    "channels",
    "commands",
    "configWrites",
    "contextVisibility",
    "dangerouslyAllowNameMatching",
    "defaultTo",
    "dm",
    "dmHistoryLimit",
    "dmPolicy",
    "dms",
    "enabled",
    "execApprovals",
    "groupPolicy",
    "healthMonitor",
    "heartbeatVisibility",
    "historyLimit",
    "implicitMentions",
    "joinIntro",
    "markdown",
    "mediaMaxMb",
    "mentionPatterns",
    "mode",
    "name",
    "postAs",
    "presenceEvents",
    "reactionAllowlist",
    "reactionNotifications",
    "relay",
    "replyToMode",
    "replyToModeByChatType",
    "requireMention",
    "responsePrefix",
    "signingSecret",
    "slashCommand",
    "streaming",
    "textChunkLimit",
    "thread",
    "typingReaction",
    "unfurlLinks",
    "unfurlMedia",
    "userToken",
    "userTokenReadOnly",
    "webhookPath",
];
/// Fields only the root of `channels.slack` has.
const ROOT_ONLY_KEYS: &[&str] = &["accounts", "defaultAccount"];
/// Fields of one `channels.<id>` entry.
const CHANNEL_KEYS: &[&str] = &[
    "allowBots",
    "botLoopProtection",
    "enabled",
    "ignoreOtherMentions",
    "presenceEvents",
    "replyToMode",
    "requireMention",
    "skills",
    "systemPrompt",
    "tools",
    "toolsBySender",
    "users",
];

/// The account id used when `accounts` is absent.
pub const DEFAULT_ACCOUNT: &str = "default";
/// The default `webhookPath`.
pub const DEFAULT_WEBHOOK_PATH: &str = "/slack/events";
/// The default `textChunkLimit` (upstream's Slack chunk size).
pub const DEFAULT_TEXT_CHUNK_LIMIT: usize = 8000;
/// Where the default account's bot token is read from when the config has none.
pub const BOT_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";
/// Where the default account's app token is read from when the config has none.
pub const APP_TOKEN_ENV: &str = "SLACK_APP_TOKEN";

/// How an account receives events (`mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlackMode {
    /// Socket Mode: an outbound WebSocket opened with the app token (the default).
    Socket,
    /// The Events API: Slack POSTs to `webhookPath` on the gateway's port.
    Http,
    /// Upstream's relay, which clawgate does not run (the account reports it).
    Relay,
}

impl SlackMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SlackMode::Socket => "socket",
            SlackMode::Http => "http",
            SlackMode::Relay => "relay",
        }
    }
}

/// One Slack account, resolved (account fields over the root's).
#[derive(Clone, Debug, PartialEq)]
pub struct SlackAccount {
    /// The account id (`default` without `accounts`).
    pub account_id: String,
    /// `enabled` (default `true`).
    pub enabled: bool,
    /// `mode`.
    pub mode: SlackMode,
    /// The bot token (`xoxb-…`), or why there is none (naming the key to set).
    pub bot_token: Result<Secret, String>,
    /// The app token (`xapp-…`, Socket Mode), or why there is none.
    pub app_token: Result<Secret, String>,
    /// The signing secret (HTTP mode; the config is refused without one there).
    pub signing_secret: Option<Secret>,
    /// `webhookPath`, with its leading `/`.
    pub webhook_path: String,
    /// DM and channel access (`channels` are the groups, by channel id).
    pub access: AccessPolicy,
    /// `textChunkLimit` (default 8000).
    pub text_chunk_limit: usize,
}

impl SlackAccount {
    /// Whether this account takes Events API POSTs on the gateway's port.
    pub fn serves_webhook(&self) -> bool {
        self.enabled && self.mode == SlackMode::Http && self.signing_secret.is_some()
    }
}

/// The `(webhookPath, account id)` of every account that takes Events API POSTs.
pub fn webhooks(accounts: &[SlackAccount]) -> Vec<(String, String)> {
    accounts
        .iter()
        .filter(|a| a.serves_webhook())
        .map(|a| (a.webhook_path.clone(), a.account_id.clone()))
        .collect()
}

/// upstream's `normalizeSlackWebhookPath`: trimmed, `/` added in front, the default if empty.
pub fn normalize_webhook_path(path: Option<&str>) -> String {
    match path.map(str::trim).filter(|p| !p.is_empty()) {
        None => DEFAULT_WEBHOOK_PATH.to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    }
}

/// A Slack id as allow lists hold it: `slack:`/`user:` prefixes dropped, upper case (`*` kept).
pub fn normalize_id(s: &str) -> String {
    let mut s = s.trim();
    for prefix in ["slack:", "user:"] {
        if s.len() >= prefix.len()
            && s.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            s = s.get(prefix.len()..).unwrap_or_default().trim();
        }
    }
    s.to_ascii_uppercase()
}

/// Resolve `channels.slack` of a parsed config file (`env` for the tokens' fallbacks and env
/// SecretRefs).
pub(crate) fn resolve(
    file: &Value,
    env: &BTreeMap<String, String>,
) -> Result<Vec<SlackAccount>, ConfigError> {
    let Some(sl) = file.get("channels").and_then(|c| c.get("slack")) else {
        return Ok(Vec::new());
    };
    const ROOT: &str = "channels.slack";
    let root = object(sl, ROOT)?;
    refuse_unknown(root, &[ACCOUNT_KEYS, ROOT_ONLY_KEYS], ROOT)?;
    let mut out = Vec::new();
    match root.get("accounts") {
        None | Some(Value::Null) => out.push(account(DEFAULT_ACCOUNT, root, None, env)?),
        Some(accounts) => {
            for (id, acc) in object(accounts, "channels.slack.accounts")? {
                let at = format!("channels.slack.accounts.{id}");
                let acc = object(acc, &at)?;
                refuse_unknown(acc, &[ACCOUNT_KEYS], &at)?;
                out.push(account(id, root, Some((acc, &at)), env)?);
            }
        }
    }
    if let Some(d) = root.get("defaultAccount").filter(|v| !v.is_null()) {
        let known = d
            .as_str()
            .is_some_and(|d| out.iter().any(|a| a.account_id == d));
        if !known {
            return Err(invalid(
                "channels.slack.defaultAccount",
                format!("names {d}, which is not under channels.slack.accounts"),
            ));
        }
    }
    Ok(out)
}

/// A Slack id list: strings or numbers, normalised.
fn id_list(v: &Value, key: &str) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(invalid(key, format!("must be a list, got {v}")));
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(normalize_id(s)),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(invalid(
                key,
                format!("entries must be strings or numbers, got {other}"),
            )),
        })
        .collect()
}

/// One account: its own field if set, else the root's.
fn account(
    id: &str,
    root: &Map<String, Value>,
    own: Option<(&Map<String, Value>, &str)>,
    env: &BTreeMap<String, String>,
) -> Result<SlackAccount, ConfigError> {
    let at = own.map_or("channels.slack".to_string(), |(_, at)| at.to_string());
    let field = |name: &str| -> Option<(&Value, String)> {
        if let Some((acc, at)) = own
            && let Some(v) = acc.get(name).filter(|v| !v.is_null())
        {
            return Some((v, format!("{at}.{name}")));
        }
        root.get(name)
            .filter(|v| !v.is_null())
            .map(|v| (v, format!("channels.slack.{name}")))
    };
    let str_field = |name: &str| -> Result<Option<(String, String)>, ConfigError> {
        match field(name) {
            None => Ok(None),
            Some((Value::String(s), key)) => Ok(Some((s.clone(), key))),
            Some((v, key)) => Err(invalid(key, format!("must be a string, got {v}"))),
        }
    };
    let enabled = match field("enabled") {
        None => true,
        Some((Value::Bool(b), _)) => *b,
        Some((v, key)) => return Err(invalid(key, format!("must be true or false, got {v}"))),
    };
    let mode = one_of(
        str_field("mode")?,
        SlackMode::Socket,
        &[
            ("socket", SlackMode::Socket),
            ("http", SlackMode::Http),
            ("relay", SlackMode::Relay),
        ],
    )?;
    let allow_from = match field("allowFrom") {
        None => Vec::new(),
        Some((v, key)) => id_list(v, &key)?,
    };
    let (dm_policy, group_policy) = policies(
        str_field("dmPolicy")?,
        str_field("groupPolicy")?,
        &allow_from,
        &format!("{at}.allowFrom"),
    )?;
    let mut groups = BTreeMap::new();
    if let Some((chans, key)) = field("channels") {
        for (chan, rule) in object(chans, &key)? {
            let rule_key = format!("{key}.{chan}");
            let rule = object(rule, &rule_key)?;
            refuse_unknown(rule, &[CHANNEL_KEYS], &rule_key)?;
            let require_mention = match rule.get("requireMention") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(v) => {
                    return Err(invalid(
                        format!("{rule_key}.requireMention"),
                        format!("must be true or false, got {v}"),
                    ));
                }
            };
            groups.insert(chan.clone(), GroupRule { require_mention });
        }
    }
    let text_chunk_limit = match field("textChunkLimit") {
        None => DEFAULT_TEXT_CHUNK_LIMIT,
        Some((v, key)) => match v.as_u64().filter(|n| *n > 0) {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => return Err(invalid(key, format!("must be a positive integer, got {v}"))),
        },
    };
    let default_env = |var: &'static str| (id == DEFAULT_ACCOUNT).then_some(var);
    let bot_token = secret(&field, "botToken", default_env(BOT_TOKEN_ENV), env, &at)?;
    let app_token = secret(&field, "appToken", default_env(APP_TOKEN_ENV), env, &at)?;
    let signing_secret = secret(&field, "signingSecret", None, env, &at)?.ok();
    if enabled && mode == SlackMode::Http && signing_secret.is_none() {
        return Err(invalid(
            format!("{at}.signingSecret"),
            "mode \"http\" requires channels.slack.signingSecret or channels.slack.accounts.*.signingSecret",
        ));
    }
    let webhook_path = match str_field("webhookPath")? {
        Some((p, _)) => normalize_webhook_path(Some(&p)),
        None => normalize_webhook_path(None),
    };
    Ok(SlackAccount {
        account_id: id.to_string(),
        enabled,
        mode,
        bot_token,
        app_token,
        signing_secret,
        webhook_path,
        access: AccessPolicy {
            dm_policy,
            allow_from,
            group_policy,
            groups,
            group_allow_from: None,
        },
        text_chunk_limit,
    })
}

/// A secret field: a string, or an env SecretRef; else `fallback_env`; else why there is none.
fn secret<'a>(
    field: &dyn Fn(&str) -> Option<(&'a Value, String)>,
    name: &str,
    fallback_env: Option<&str>,
    env: &BTreeMap<String, String>,
    at: &str,
) -> Result<Result<Secret, String>, ConfigError> {
    let check = |value: &str, key: &str| {
        let value = value.trim();
        if value.is_empty() || is_placeholder_secret(value) {
            Err(format!("{key} is empty or a placeholder; set it"))
        } else {
            Ok(Secret::new(value))
        }
    };
    if let Some((v, key)) = field(name) {
        return match v {
            Value::String(s) => Ok(check(s, &key)),
            Value::Object(r) if r.get("source").and_then(Value::as_str) == Some("env") => {
                let var = r.get("id").and_then(Value::as_str).unwrap_or_default();
                Ok(match env.get(var).filter(|v| !v.is_empty()) {
                    Some(t) => check(t, &key),
                    None => Err(format!(
                        "{key} names the environment variable {var}, which is not set"
                    )),
                })
            }
            Value::Object(_) => Ok(Err(format!(
                "{key}: only a string or an env SecretRef ({{source:\"env\",provider,id}}) is supported by clawgate"
            ))),
            other => Err(invalid(
                key,
                format!("must be a string or a SecretRef, got {other}"),
            )),
        };
    }
    if let Some(var) = fallback_env
        && let Some(t) = env.get(var).filter(|v| !v.is_empty())
    {
        return Ok(check(t, var));
    }
    let also = fallback_env.map_or(String::new(), |v| format!(" or {v}"));
    Ok(Err(format!("{at}.{name} is not set (set it{also})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve_json(v: Value) -> Result<Vec<SlackAccount>, ConfigError> {
        resolve(&json!({"channels": {"slack": v}}), &BTreeMap::new())
    }

    #[test]
    fn defaults_and_http_mode() {
        let a = resolve_json(json!({"botToken": "xoxb-1", "appToken": "xapp-1"})).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].mode, SlackMode::Socket);
        assert_eq!(a[0].webhook_path, "/slack/events");
        assert_eq!(a[0].text_chunk_limit, 8000);
        assert!(!a[0].serves_webhook());
        let a = resolve_json(json!({"mode": "http", "botToken": "xoxb-1",
            "signingSecret": "s", "webhookPath": "hooks/slack"}))
        .unwrap();
        assert!(a[0].serves_webhook());
        assert_eq!(a[0].webhook_path, "/hooks/slack");
    }

    #[test]
    fn refusals_name_the_key() {
        let e = resolve_json(json!({"mode": "http", "botToken": "xoxb-1"})).unwrap_err();
        assert!(
            e.to_string().contains("channels.slack.signingSecret"),
            "{e}"
        );
        let e = resolve_json(json!({"bogus": 1})).unwrap_err();
        assert!(e.to_string().contains("channels.slack.bogus"), "{e}");
        let e = resolve_json(json!({"dmPolicy": "open", "allowFrom": ["U1"]})).unwrap_err();
        assert!(e.to_string().contains("allowFrom"), "{e}");
        let e = resolve_json(json!({"accounts": {"a": {"mode": "nope"}}})).unwrap_err();
        assert!(
            e.to_string().contains("channels.slack.accounts.a.mode"),
            "{e}"
        );
    }

    #[test]
    fn ids_and_missing_tokens() {
        let a = resolve_json(json!({"dmPolicy": "allowlist", "allowFrom": ["slack:u123", "*"]}))
            .unwrap();
        assert_eq!(a[0].access.allow_from, vec!["U123", "*"]);
        let why = a[0].bot_token.clone().unwrap_err();
        assert!(why.contains("channels.slack.botToken") && why.contains(BOT_TOKEN_ENV));
    }
}
