//! `channels.slack` (root fields, `accounts`, `defaultAccount`) resolved into one
//! [`SlackAccount`] per account, with upstream's validation: keys its schema does not know are
//! refused (naming the key), `mode: "http"` needs a `signingSecret`, `dmPolicy` needs
//! `allowFrom` as upstream's. A missing token is not a refusal: that account reports it.

use std::collections::BTreeMap;

use super::api::{API_URL_ENV, DEFAULT_API_URL};
use crate::auth::Secret;
use crate::channels::config::{
    BOT_ACCOUNT_KEYS, BOT_GROUP_KEYS, Common, Fields, HasCommon, SHARED_ACCOUNT_KEYS,
    SHARED_GROUP_KEYS, SecretField, Section, Sources, invalid, one_of,
};
use crate::config::{ConfigError, is_placeholder_secret};

/// Fields only upstream's `channels.slack` schema accepts on an account (and on the root),
/// beyond [`SHARED_ACCOUNT_KEYS`] and [`BOT_ACCOUNT_KEYS`].
const ACCOUNT_KEYS: &[&str] = &[
    "appToken",
    "botToken",
    "channels",
    "implicitMentions",
    "mode",
    "postAs",
    "presenceEvents",
    "reactionAllowlist",
    "reactionNotifications",
    "relay",
    "replyToModeByChatType",
    "requireMention",
    "signingSecret",
    "typingReaction",
    "unfurlLinks",
    "unfurlMedia",
    "userToken",
    "userTokenReadOnly",
    "webhookPath",
];
/// Fields only one `channels.<id>` entry has, beyond [`SHARED_GROUP_KEYS`] and
/// [`BOT_GROUP_KEYS`].
const CHANNEL_KEYS: &[&str] = &[
    "allowBots",
    "botLoopProtection",
    "enabled",
    "replyToMode",
    "skills",
    "systemPrompt",
];

/// The account id used when `accounts` is absent.
pub const DEFAULT_ACCOUNT: &str = "default";
/// The default `webhookPath`.
pub const DEFAULT_WEBHOOK_PATH: &str = "/slack/events";
/// The default `textChunkLimit` (upstream's Slack chunk size).
pub const DEFAULT_TEXT_CHUNK_LIMIT: usize = 8000;
/// The longest text one Slack message carries (Slack truncates past it).
pub const SLACK_MAX_TEXT: usize = 40_000;
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
    /// What every transport has (the token is the bot token, `xoxb-…`; `channels` are the
    /// group rules).
    pub common: Common,
    /// `mode`.
    pub mode: SlackMode,
    /// The app token (`xapp-…`, Socket Mode), or why there is none.
    pub app_token: Result<Secret, String>,
    /// The signing secret (HTTP mode; the config is refused without one there).
    pub signing_secret: Option<Secret>,
    /// `webhookPath`, with its leading `/`.
    pub webhook_path: String,
    /// The Web API base: `SLACK_API_URL` (upstream's variable) or Slack's own.
    pub api_url: String,
}

impl SlackAccount {
    /// Whether this account takes Events API POSTs on the gateway's port.
    pub fn serves_webhook(&self) -> bool {
        self.common.enabled && self.mode == SlackMode::Http && self.signing_secret.is_some()
    }
}

/// The `(webhookPath, account id)` of every account that takes Events API POSTs.
pub fn webhooks(accounts: &[SlackAccount]) -> Vec<(String, String)> {
    accounts
        .iter()
        .filter(|a| a.serves_webhook())
        .map(|a| (a.webhook_path.clone(), a.common.account_id.clone()))
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

/// A Slack id as allow lists hold it, read as upstream's `normalizeSlackUserId`: a `<@U…>`
/// mention's id, else the entry with one `slack:` or `user:` prefix dropped (any case; a second
/// prefix stays, so `slack:user:U1` names no user), upper case (`*` kept).
pub fn normalize_id(s: &str) -> String {
    let s = s.trim();
    if let Some(id) = s
        .strip_prefix("<@")
        .and_then(|m| m.strip_suffix('>'))
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return id.to_ascii_uppercase();
    }
    let unprefixed = ["slack:", "user:"].iter().find_map(|prefix| {
        s.get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .and_then(|_| s.get(prefix.len()..))
    });
    unprefixed.unwrap_or(s).to_ascii_uppercase()
}

/// Slack's section: `botToken` (or `SLACK_BOT_TOKEN`) is the account's token, `channels` its
/// group rules.
pub(crate) const SECTION: Section = Section {
    name: "slack",
    account_keys: &[SHARED_ACCOUNT_KEYS, BOT_ACCOUNT_KEYS, ACCOUNT_KEYS],
    token_key: "botToken",
    token_file: false,
    token_env: BOT_TOKEN_ENV,
    token_hint: "the bot token (xoxb-…) from the Slack app's OAuth & Permissions page",
    max_text: SLACK_MAX_TEXT,
    default_chunk: DEFAULT_TEXT_CHUNK_LIMIT,
    groups_key: "channels",
    group_keys: &[SHARED_GROUP_KEYS, BOT_GROUP_KEYS, CHANNEL_KEYS],
};

impl HasCommon for SlackAccount {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// One Slack account.
pub(crate) fn account(f: &Fields<'_>, src: &Sources<'_>) -> Result<SlackAccount, ConfigError> {
    let at = f.at();
    let mut common = f.common(src)?;
    for id in &mut common.access.allow_from {
        *id = normalize_id(id);
    }
    common.access.name_matching = f.bool_field("dangerouslyAllowNameMatching", false)?;
    let mode = one_of(
        f.str_field("mode")?,
        SlackMode::Socket,
        &[
            ("socket", SlackMode::Socket),
            ("http", SlackMode::Http),
            ("relay", SlackMode::Relay),
        ],
    )?;
    let default_env = (common.account_id == DEFAULT_ACCOUNT).then_some(APP_TOKEN_ENV);
    let app_token = secret(f, "appToken", default_env, src.env, &at)?;
    let signing_secret = secret(f, "signingSecret", None, src.env, &at)?.ok();
    if common.enabled && mode == SlackMode::Http && signing_secret.is_none() {
        return Err(invalid(
            format!("{at}.signingSecret"),
            "mode \"http\" requires channels.slack.signingSecret or channels.slack.accounts.*.signingSecret",
        ));
    }
    let webhook_path =
        normalize_webhook_path(f.str_field("webhookPath")?.map(|(p, _)| p).as_deref());
    let api_url = src
        .env
        .get(API_URL_ENV)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_URL)
        .to_string();
    Ok(SlackAccount {
        common,
        mode,
        app_token,
        signing_secret,
        webhook_path,
        api_url,
    })
}

/// A secret field: a string, or an env SecretRef; else `fallback_env`; else why there is none.
fn secret(
    f: &Fields<'_>,
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
    if let Some(SecretField { key, value }) = f.secret(name, env)? {
        return Ok(value.and_then(|(v, _)| check(&v, &key)));
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
    use crate::channels::config::DmPolicy;
    use serde_json::{Value, json};

    fn resolve_json(v: Value) -> Result<Vec<SlackAccount>, ConfigError> {
        let file = json!({"channels": {"slack": v}});
        let (env, files) = (BTreeMap::new(), BTreeMap::new());
        let src = Sources {
            env: &env,
            files: &files,
        };
        crate::channels::config::resolve(&file, &src).map(|c| c.slack)
    }

    #[test]
    fn defaults_and_http_mode() {
        let a = resolve_json(json!({"botToken": "xoxb-1", "appToken": "xapp-1"})).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].mode, SlackMode::Socket);
        assert_eq!(a[0].webhook_path, "/slack/events");
        assert_eq!(a[0].common.text_chunk_limit, 8000);
        assert_eq!(a[0].api_url, DEFAULT_API_URL);
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
        let e = resolve_json(json!({"channels": {"C1": {"nope": true}}})).unwrap_err();
        assert!(
            e.to_string().contains("channels.slack.channels.C1.nope"),
            "{e}"
        );
    }

    #[test]
    fn ids_and_missing_tokens() {
        let a = resolve_json(json!({"dmPolicy": "allowlist", "allowFrom": ["slack:u123", "*"]}))
            .unwrap();
        assert_eq!(a[0].common.access.dm_policy, DmPolicy::Allowlist);
        assert_eq!(a[0].common.access.allow_from, vec!["U123", "*"]);
        let read = |entries: serde_json::Value| {
            resolve_json(json!({"dmPolicy": "allowlist", "allowFrom": entries})).unwrap()[0]
                .common
                .access
                .allow_from
                .clone()
        };
        // As upstream's normalizeSlackUserId: a mention, one prefix in any case, not two.
        assert_eq!(
            read(json!([
                "<@u7>",
                "USER:U8",
                " Slack:w9 ",
                "slack:user:U1",
                "<@>"
            ])),
            vec!["U7", "U8", "W9", "USER:U1", "<@>"]
        );
        let why = a[0].common.token.clone().unwrap_err();
        assert!(why.contains("channels.slack.botToken"), "{why}");
        let why = a[0].app_token.clone().unwrap_err();
        assert!(why.contains(APP_TOKEN_ENV), "{why}");
    }
}
