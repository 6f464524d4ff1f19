//! The channels' configuration: `channels.telegram` (root fields, `accounts`, `defaultAccount`)
//! resolved into one [`TelegramAccount`] per account, `session.dmScope`, and
//! `commands.ownerAllowFrom`. Keys upstream's schema does not know are refused (exit 78, naming
//! the key), as upstream refuses them; a missing or placeholder token is not a refusal: that
//! account reports the error and the gateway keeps serving everything else.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::Secret;
use crate::config::{ConfigError, is_placeholder_secret};
use crate::model::Dialing;

/// Fields upstream's schema accepts on an account (and on the root) of every channel
/// clawgate runs.
pub(crate) const SHARED_ACCOUNT_KEYS: &[&str] = &[
    "ackReaction",
    "actions",
    "allowFrom",
    "capabilities",
    "commands",
    "configWrites",
    "contextVisibility",
    "defaultTo",
    "dmHistoryLimit",
    "dmPolicy",
    "dms",
    "enabled",
    "execApprovals",
    "groupPolicy",
    "healthMonitor",
    "heartbeatVisibility",
    "historyLimit",
    "joinIntro",
    "markdown",
    "mediaMaxMb",
    "mentionPatterns",
    "name",
    "replyToMode",
    "responsePrefix",
    "streaming",
    "textChunkLimit",
];
/// Fields Slack's and Discord's schemas (and not Telegram's) accept on an account.
pub(crate) const BOT_ACCOUNT_KEYS: &[&str] = &[
    "allowBots",
    "botLoopProtection",
    "dangerouslyAllowNameMatching",
    "dm",
    "slashCommand",
    "thread",
];
/// Fields only upstream's `channels.telegram` schema accepts on an account (and on the root).
const ACCOUNT_KEYS: &[&str] = &[
    "apiRoot",
    "autoTopicLabel",
    "botToken",
    "customCommands",
    "direct",
    "errorPolicy",
    "groupAllowFrom",
    "groups",
    "linkPreview",
    "network",
    "proxy",
    "reactionLevel",
    "reactionNotifications",
    "richMessages",
    "silentErrorReplies",
    "threadBindings",
    "tokenFile",
    "trustedLocalFileRoots",
    "webhookCertPath",
    "webhookHost",
    "webhookPath",
    "webhookPort",
    "webhookSecret",
    "webhookUrl",
];
/// Fields only the root of `channels.telegram` has.
const ROOT_ONLY_KEYS: &[&str] = &["accounts", "defaultAccount"];
/// Fields of `network`.
const NETWORK_KEYS: &[&str] = &[
    "autoSelectFamily",
    "dnsResultOrder",
    "dangerouslyAllowPrivateNetwork",
];
/// Fields of a group rule every channel's schema accepts (Telegram's `groups.<id>`, Discord's
/// `guilds.<id>`, Slack's `channels.<id>`).
pub(crate) const SHARED_GROUP_KEYS: &[&str] = &["requireMention", "tools", "toolsBySender"];
/// Fields of a group rule Slack's and Discord's schemas (and not Telegram's) accept.
pub(crate) const BOT_GROUP_KEYS: &[&str] = &["ignoreOtherMentions", "presenceEvents", "users"];
/// Fields only Telegram's `groups.<id>` entry has.
const GROUP_KEYS: &[&str] = &[
    "skills",
    "enabled",
    "allowFrom",
    "systemPrompt",
    "topics",
    "groupPolicy",
];

/// Telegram's own limit on one message's text.
pub const TELEGRAM_MAX_TEXT: usize = 4096;
/// The default `textChunkLimit`.
pub const DEFAULT_TEXT_CHUNK_LIMIT: usize = 4000;
/// The default Bot API root.
pub const DEFAULT_API_ROOT: &str = "https://api.telegram.org";
/// The account id used when `accounts` is absent.
pub const DEFAULT_ACCOUNT: &str = "default";
/// The environment variable upstream reads the default account's token from.
pub const TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";
/// Set to a true value (`1`, `true`, `yes`, `on`), it turns `network.autoSelectFamily` on
/// whatever the config says.
pub const ENABLE_AUTO_SELECT_FAMILY_ENV: &str = "OPENCLAW_TELEGRAM_ENABLE_AUTO_SELECT_FAMILY";
/// Set to a true value, it turns `network.autoSelectFamily` off whatever the config says
/// (unless [`ENABLE_AUTO_SELECT_FAMILY_ENV`] is set too).
pub const DISABLE_AUTO_SELECT_FAMILY_ENV: &str = "OPENCLAW_TELEGRAM_DISABLE_AUTO_SELECT_FAMILY";
/// `ipv4first` or `verbatim`: `network.dnsResultOrder` whatever the config says.
pub const DNS_RESULT_ORDER_ENV: &str = "OPENCLAW_TELEGRAM_DNS_RESULT_ORDER";
/// How long a Bot API connection attempt goes without connecting before the next address
/// is tried beside it: upstream's `autoSelectFamilyAttemptTimeout` for Telegram, 300 ms.
pub const TELEGRAM_ATTEMPT_DELAY: Duration = Duration::from_millis(300);

/// Who may DM the bot (`dmPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; approved ones are let in (the default).
    Pairing,
    /// Only `allowFrom`.
    Allowlist,
    /// Anyone matching `allowFrom` (which must hold `"*"` to mean everyone).
    Open,
    /// No DMs.
    Disabled,
}

impl DmPolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DmPolicy::Pairing => "pairing",
            DmPolicy::Allowlist => "allowlist",
            DmPolicy::Open => "open",
            DmPolicy::Disabled => "disabled",
        }
    }
}

/// Which groups are served (`groupPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupPolicy {
    /// Any group (senders still checked against `groupAllowFrom` when set).
    Open,
    /// Only the groups listed under `groups` (or `"*"`), the default.
    Allowlist,
    /// No groups.
    Disabled,
}

/// One `groups.<chatId>` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRule {
    /// Whether the bot must be mentioned (default `true`).
    pub require_mention: Option<bool>,
}

/// Who may reach the agent through one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    /// DMs.
    pub dm_policy: DmPolicy,
    /// DM senders allowed by configuration (normalised ids, or `"*"`).
    pub allow_from: Vec<String>,
    /// Groups.
    pub group_policy: GroupPolicy,
    /// Groups by chat id (or `"*"`).
    pub groups: BTreeMap<String, GroupRule>,
    /// Group senders allowed; `None` falls back to `allow_from`.
    pub group_allow_from: Option<Vec<String>>,
    /// `dangerouslyAllowNameMatching` where the transport honours it (Slack): allowlist
    /// entries match the sender's name too, not only its id.
    pub name_matching: bool,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Allowlist,
            groups: BTreeMap::new(),
            group_allow_from: None,
            name_matching: false,
        }
    }
}

/// Where an account's token came from (`tokenSource` in `channels.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `botToken`.
    Config,
    /// `tokenFile`.
    File,
    /// The environment.
    Env,
}

impl TokenSource {
    /// The status spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Config => "config",
            TokenSource::File => "tokenFile",
            TokenSource::Env => "env",
        }
    }
}

/// What every transport's account configures the same way.
#[derive(Clone, Debug, PartialEq)]
pub struct Common {
    /// The account id (`default` without `accounts`).
    pub account_id: String,
    /// `enabled` (default `true`).
    pub enabled: bool,
    /// The bot token and its source, or why there is none (naming the key to set).
    pub token: Result<(Secret, TokenSource), String>,
    /// DM and group access.
    pub access: AccessPolicy,
    /// `textChunkLimit`, at most the transport's own limit.
    pub text_chunk_limit: usize,
}

/// One Telegram bot account, resolved (account fields over the root's).
#[derive(Clone, Debug, PartialEq)]
pub struct TelegramAccount {
    /// What every transport has.
    pub common: Common,
    /// `apiRoot` without a trailing slash.
    pub api_root: String,
    /// `network.dangerouslyAllowPrivateNetwork`.
    pub allow_private_network: bool,
    /// How the Bot API's addresses are tried: `network.autoSelectFamily` and
    /// `network.dnsResultOrder`, or their environment overrides
    /// ([`ENABLE_AUTO_SELECT_FAMILY_ENV`], [`DISABLE_AUTO_SELECT_FAMILY_ENV`],
    /// [`DNS_RESULT_ORDER_ENV`]).
    pub dialing: Dialing,
    /// Whether a Bot API request that fails at the transport may fall back to IPv4 only,
    /// then to a pinned address ([`crate::channels::telegram::transport`]): not when
    /// `dnsResultOrder` is set, by the config or [`DNS_RESULT_ORDER_ENV`], to something
    /// other than `ipv4first` (as upstream).
    pub transport_fallback: bool,
    /// `proxy`, which clawgate does not support (the account reports it).
    pub proxy: Option<String>,
}

/// Which session a DM lands in (`session.dmScope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DmScope {
    /// `agent:main:main` for every DM (the default).
    #[default]
    Main,
    /// `agent:main:direct:<peer>`.
    PerPeer,
    /// `agent:main:<channel>:direct:<peer>`.
    PerChannelPeer,
    /// `agent:main:<channel>:<account>:direct:<peer>`.
    PerAccountChannelPeer,
}

/// Which session a group message lands in (`session.groupScope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupScope {
    /// `agent:<id>:<channel>:group:<id>` (topics appended): the default.
    #[default]
    PerGroup,
    /// The agent's main session.
    Main,
}

/// Everything about channels in the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelsConfig {
    /// The Telegram accounts (empty when `channels.telegram` is absent).
    pub telegram: Vec<TelegramAccount>,
    /// `channels.telegram.defaultAccount`, else `default`, else the first account.
    pub telegram_default: Option<String>,
    /// `channels.discord` accounts.
    pub discord: Vec<super::discord::config::DiscordAccount>,
    /// `channels.discord.defaultAccount`, else `default`, else the first account.
    pub discord_default: Option<String>,
    /// `channels.slack` accounts.
    pub slack: Vec<super::slack::config::SlackAccount>,
    /// `channels.slack.defaultAccount`, else `default`, else the first account.
    pub slack_default: Option<String>,
    /// `session.dmScope`.
    pub dm_scope: DmScope,
    /// `session.groupScope`.
    pub group_scope: GroupScope,
    /// `bindings[]`: the route bindings, in order.
    pub bindings: Vec<super::bindings::Binding>,
    /// `commands.ownerAllowFrom`.
    pub owner_allow_from: Vec<String>,
}

/// What resolving reads besides the file: the environment and the files named by `tokenFile`.
pub(crate) struct Sources<'a> {
    pub(crate) env: &'a BTreeMap<String, String>,
    /// `tokenFile` path → its text, or why it could not be read.
    pub(crate) files: &'a BTreeMap<String, Result<String, String>>,
}

/// Every `tokenFile` path in a parsed config file, so the host can read them before resolving.
pub fn token_files(file: &Value) -> Vec<String> {
    let Some(tg) = file.get("channels").and_then(|c| c.get("telegram")) else {
        return Vec::new();
    };
    let accounts = tg
        .get("accounts")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|a| a.values());
    std::iter::once(tg)
        .chain(accounts)
        .filter_map(|a| a.get("tokenFile").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::InvalidAt {
        key: key.into(),
        message: message.into(),
    }
}

pub(crate) fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| invalid(key, format!("must be an object, got {v}")))
}

pub(crate) fn refuse_unknown(
    obj: &Map<String, Value>,
    known: &[&[&str]],
    at: &str,
) -> Result<(), ConfigError> {
    match obj
        .keys()
        .find(|k| !known.iter().any(|set| set.contains(&k.as_str())))
    {
        Some(k) => Err(invalid(
            format!("{at}.{k}"),
            "Unrecognized key (not in upstream's schema; remove it)",
        )),
        None => Ok(()),
    }
}

/// Resolve the channels' part of a parsed config file.
pub(crate) fn resolve(file: &Value, src: &Sources<'_>) -> Result<ChannelsConfig, ConfigError> {
    let mut out = ChannelsConfig {
        dm_scope: dm_scope(file)?,
        group_scope: group_scope(file)?,
        bindings: super::bindings::resolve(file)?,
        owner_allow_from: string_list(
            file.get("commands").and_then(|c| c.get("ownerAllowFrom")),
            "commands.ownerAllowFrom",
        )?,
        ..Default::default()
    };
    let (telegram, telegram_default) = section(file, &TELEGRAM, |f| telegram_account(f, src))?;
    out.telegram = telegram;
    out.telegram_default = telegram_default;
    let (discord, discord_default) =
        section(file, &DISCORD, |f| super::discord::config::account(f, src))?;
    out.discord = discord;
    out.discord_default = discord_default;
    let (slack, slack_default) = section(file, &super::slack::config::SECTION, |f| {
        super::slack::config::account(f, src)
    })?;
    out.slack = slack;
    out.slack_default = slack_default;
    Ok(out)
}

/// How a channel's config section is read: its name, whether unknown keys are refused,
/// and where its token comes from.
pub(crate) struct Section {
    /// `telegram`: the section is `channels.telegram`.
    pub(crate) name: &'static str,
    /// The lists of keys an account may have (any other is refused).
    pub(crate) account_keys: &'static [&'static [&'static str]],
    /// The token's key (`botToken`).
    pub(crate) token_key: &'static str,
    /// Whether a `tokenFile` key is read.
    pub(crate) token_file: bool,
    /// The environment variable of the default account's token.
    pub(crate) token_env: &'static str,
    /// Where the operator gets a token, for the error when none is set.
    pub(crate) token_hint: &'static str,
    /// The most characters one message may carry (and the default `textChunkLimit`).
    pub(crate) max_text: usize,
    /// The default `textChunkLimit`.
    pub(crate) default_chunk: usize,
    /// The key of the group rules (`groups`, Discord's `guilds`, Slack's `channels`).
    pub(crate) groups_key: &'static str,
    /// The lists of keys a group rule may have (any other is refused).
    pub(crate) group_keys: &'static [&'static [&'static str]],
}

/// Telegram's section.
const TELEGRAM: Section = Section {
    name: "telegram",
    account_keys: &[SHARED_ACCOUNT_KEYS, ACCOUNT_KEYS],
    token_key: "botToken",
    token_file: true,
    token_env: TOKEN_ENV,
    token_hint: "the bot token from @BotFather",
    max_text: TELEGRAM_MAX_TEXT,
    default_chunk: DEFAULT_TEXT_CHUNK_LIMIT,
    groups_key: "groups",
    group_keys: &[SHARED_GROUP_KEYS, GROUP_KEYS],
};

/// Discord's section: keys upstream's schema does not know are refused, as upstream refuses
/// them (the many it knows and clawgate does not use are accepted and read past).
const DISCORD: Section = Section {
    name: "discord",
    account_keys: &[
        SHARED_ACCOUNT_KEYS,
        BOT_ACCOUNT_KEYS,
        super::discord::config::ACCOUNT_KEYS,
    ],
    token_key: "token",
    token_file: false,
    token_env: "DISCORD_BOT_TOKEN",
    token_hint: "the bot token from the Discord Developer Portal",
    max_text: super::discord::format::DISCORD_MAX_TEXT,
    default_chunk: super::discord::format::DISCORD_MAX_TEXT,
    groups_key: "guilds",
    group_keys: &[
        SHARED_GROUP_KEYS,
        BOT_GROUP_KEYS,
        super::discord::config::GUILD_KEYS,
    ],
};

/// A channel section's accounts (`accounts.<id>` over the root's fields, else one
/// `default` account from the root) and its default account.
fn section<T: HasCommon>(
    file: &Value,
    sec: &'static Section,
    parse: impl Fn(&Fields<'_>) -> Result<T, ConfigError>,
) -> Result<(Vec<T>, Option<String>), ConfigError> {
    let Some(v) = file.get("channels").and_then(|c| c.get(sec.name)) else {
        return Ok((Vec::new(), None));
    };
    let at_root = format!("channels.{}", sec.name);
    let root = object(v, &at_root)?;
    refuse_unknown(
        root,
        &[sec.account_keys, &[ROOT_ONLY_KEYS]].concat(),
        &at_root,
    )?;
    let default = match root.get("defaultAccount") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(invalid(
                format!("{at_root}.defaultAccount"),
                format!("must be a string, got {v}"),
            ));
        }
    };
    let mut out = Vec::new();
    match root.get("accounts") {
        None | Some(Value::Null) => {
            out.push(parse(&Fields {
                sec,
                id: DEFAULT_ACCOUNT.into(),
                root,
                own: None,
            })?);
        }
        Some(accounts) => {
            let accounts = object(accounts, &format!("{at_root}.accounts"))?;
            for (id, acc) in accounts {
                let at = format!("{at_root}.accounts.{id}");
                let acc = object(acc, &at)?;
                refuse_unknown(acc, sec.account_keys, &at)?;
                out.push(parse(&Fields {
                    sec,
                    id: id.clone(),
                    root,
                    own: Some((acc, at)),
                })?);
            }
        }
    }
    let ids: Vec<&str> = out.iter().map(|a| a.common().account_id.as_str()).collect();
    if let Some(d) = &default
        && !ids.contains(&d.as_str())
    {
        return Err(invalid(
            format!("{at_root}.defaultAccount"),
            format!("names account {d:?}, which is not under {at_root}.accounts"),
        ));
    }
    let default = default.or_else(|| {
        let named = ids.iter().find(|i| **i == DEFAULT_ACCOUNT);
        named.or(ids.first()).map(|i| (*i).to_string())
    });
    Ok((out, default))
}

/// An account configuration with the [`Common`] part.
pub(crate) trait HasCommon {
    /// Its common part.
    fn common(&self) -> &Common;
}

impl HasCommon for TelegramAccount {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// The DM scopes by their config names.
const DM_SCOPES: &[(&str, DmScope)] = &[
    ("main", DmScope::Main),
    ("per-peer", DmScope::PerPeer),
    ("per-channel-peer", DmScope::PerChannelPeer),
    ("per-account-channel-peer", DmScope::PerAccountChannelPeer),
];

/// The group scopes by their config names.
const GROUP_SCOPES: &[(&str, GroupScope)] = &[
    ("per-group", GroupScope::PerGroup),
    ("main", GroupScope::Main),
];

/// A string at `key` under `session`, if set.
fn session_string(file: &Value, key: &str) -> Result<Option<(String, String)>, ConfigError> {
    let at = format!("session.{key}");
    match file.get("session").and_then(|s| s.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some((s.clone(), at))),
        Some(v) => Err(invalid(at, format!("must be a string, got {v}"))),
    }
}

fn dm_scope(file: &Value) -> Result<DmScope, ConfigError> {
    one_of(session_string(file, "dmScope")?, DmScope::Main, DM_SCOPES)
}

fn group_scope(file: &Value) -> Result<GroupScope, ConfigError> {
    one_of(
        session_string(file, "groupScope")?,
        GroupScope::PerGroup,
        GROUP_SCOPES,
    )
}

/// The DM scope named `value` (at config key `key`).
pub(super) fn dm_scope_named(value: &str, key: &str) -> Result<DmScope, ConfigError> {
    one_of(Some((value.into(), key.into())), DmScope::Main, DM_SCOPES)
}

/// The group scope named `value` (at config key `key`).
pub(super) fn group_scope_named(value: &str, key: &str) -> Result<GroupScope, ConfigError> {
    one_of(
        Some((value.into(), key.into())),
        GroupScope::PerGroup,
        GROUP_SCOPES,
    )
}

/// The option a string `(value, key)` names among `options`, `default` when absent.
pub(crate) fn one_of<T: Copy>(
    found: Option<(String, String)>,
    default: T,
    options: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some((value, key)) = found else {
        return Ok(default);
    };
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            invalid(
                key,
                format!("unknown value {value:?} ({})", names.join(", ")),
            )
        })
}

/// A Telegram id list: strings or numbers, `telegram:`/`tg:` prefixes removed.
fn string_list(v: Option<&Value>, key: &str) -> Result<Vec<String>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(normalize_id(s)),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(invalid(
                    key,
                    format!("entries must be strings or numbers, got {other}"),
                )),
            })
            .collect(),
        Some(other) => Err(invalid(key, format!("must be a list, got {other}"))),
    }
}

/// A sender id as allow lists hold it: `telegram:`/`tg:`/`discord:` prefixes dropped, trimmed.
pub fn normalize_id(s: &str) -> String {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    for prefix in ["telegram:", "tg:", "discord:"] {
        if lower.starts_with(prefix) {
            return s.get(prefix.len()..).unwrap_or_default().trim().to_string();
        }
    }
    s.to_string()
}

/// A secret field as written ([`Fields::secret`]).
pub(crate) struct SecretField {
    /// The key it was read from.
    pub(crate) key: String,
    /// Its value and where it came from, or why it has none.
    pub(crate) value: Result<(String, TokenSource), String>,
}

/// One account's fields: its own if set, else the root's.
pub(crate) struct Fields<'a> {
    sec: &'static Section,
    id: String,
    root: &'a Map<String, Value>,
    own: Option<(&'a Map<String, Value>, String)>,
}

impl<'a> Fields<'a> {
    /// Where the account's own keys are (`channels.telegram.accounts.a`).
    pub(crate) fn at(&self) -> String {
        match &self.own {
            Some((_, at)) => at.clone(),
            None => format!("channels.{}", self.sec.name),
        }
    }

    /// The value of `name` and the key it was read from.
    pub(crate) fn field(&self, name: &str) -> Option<(&'a Value, String)> {
        if let Some((acc, at)) = &self.own
            && let Some(v) = acc.get(name).filter(|v| !v.is_null())
        {
            return Some((v, format!("{at}.{name}")));
        }
        self.root
            .get(name)
            .filter(|v| !v.is_null())
            .map(|v| (v, format!("channels.{}.{name}", self.sec.name)))
    }

    pub(crate) fn bool_field(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.field(name) {
            None => Ok(default),
            Some((Value::Bool(b), _)) => Ok(*b),
            Some((v, key)) => Err(invalid(key, format!("must be true or false, got {v}"))),
        }
    }

    /// A string field and its key.
    pub(crate) fn str_field(&self, name: &str) -> Result<Option<(String, String)>, ConfigError> {
        match self.field(name) {
            None => Ok(None),
            Some((Value::String(s), key)) => Ok(Some((s.clone(), key))),
            Some((v, key)) => Err(invalid(key, format!("must be a string, got {v}"))),
        }
    }

    /// Secret field `name` as written: a string, or an env SecretRef
    /// (`{source:"env",provider,id}`) read from `env`. `None` when it is absent; a value of
    /// another type is refused.
    pub(crate) fn secret(
        &self,
        name: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<SecretField>, ConfigError> {
        let Some((v, key)) = self.field(name) else {
            return Ok(None);
        };
        let value = match v {
            Value::String(s) => Ok((s.clone(), TokenSource::Config)),
            Value::Object(r) if r.get("source").and_then(Value::as_str) == Some("env") => {
                let var = r.get("id").and_then(Value::as_str).unwrap_or_default();
                match env.get(var).filter(|v| !v.is_empty()) {
                    Some(t) => Ok((t.clone(), TokenSource::Env)),
                    None => Err(format!(
                        "{key} names the environment variable {var}, which is not set"
                    )),
                }
            }
            Value::Object(_) => Err(format!(
                "{key}: only a string or an env SecretRef ({{source:\"env\",provider,id}}) is supported by clawgate"
            )),
            other => {
                return Err(invalid(
                    key,
                    format!("must be a string or a SecretRef, got {other}"),
                ));
            }
        };
        Ok(Some(SecretField { key, value }))
    }

    fn list_field(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.field(name)
            .map(|(v, key)| string_list(Some(v), &key))
            .transpose()
    }

    /// What every transport's account has: enabled, token, access, textChunkLimit.
    pub(crate) fn common(&self, src: &Sources<'_>) -> Result<Common, ConfigError> {
        let at = self.at();
        let dm_policy = one_of(
            self.str_field("dmPolicy")?,
            DmPolicy::Pairing,
            &[
                ("pairing", DmPolicy::Pairing),
                ("allowlist", DmPolicy::Allowlist),
                ("open", DmPolicy::Open),
                ("disabled", DmPolicy::Disabled),
            ],
        )?;
        let group_policy = one_of(
            self.str_field("groupPolicy")?,
            GroupPolicy::Allowlist,
            &[
                ("open", GroupPolicy::Open),
                ("allowlist", GroupPolicy::Allowlist),
                ("disabled", GroupPolicy::Disabled),
            ],
        )?;
        let allow_from = self.list_field("allowFrom")?.unwrap_or_default();
        let allow_key = format!("{at}.allowFrom");
        if dm_policy == DmPolicy::Allowlist && allow_from.is_empty() {
            return Err(invalid(
                allow_key,
                "dmPolicy \"allowlist\" needs at least one entry",
            ));
        }
        if dm_policy == DmPolicy::Open && !allow_from.iter().any(|a| a == "*") {
            return Err(invalid(
                allow_key,
                "dmPolicy \"open\" needs \"*\" in allowFrom",
            ));
        }
        let mut groups = BTreeMap::new();
        if let Some((g, key)) = self.field(self.sec.groups_key) {
            for (chat, rule) in object(g, &key)? {
                let rule_key = format!("{key}.{chat}");
                let rule = object(rule, &rule_key)?;
                refuse_unknown(rule, self.sec.group_keys, &rule_key)?;
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
                groups.insert(chat.clone(), GroupRule { require_mention });
            }
        }
        let text_chunk_limit = match self.field("textChunkLimit") {
            None => self.sec.default_chunk,
            Some((v, key)) => match v.as_u64().filter(|n| *n > 0) {
                Some(n) => usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(self.sec.max_text),
                None => return Err(invalid(key, format!("must be a positive integer, got {v}"))),
            },
        };
        Ok(Common {
            account_id: self.id.clone(),
            enabled: self.bool_field("enabled", true)?,
            token: token(self, src)?,
            access: AccessPolicy {
                dm_policy,
                allow_from,
                group_policy,
                groups,
                group_allow_from: self.list_field("groupAllowFrom")?,
                name_matching: false,
            },
            text_chunk_limit,
        })
    }
}

/// One Telegram account.
fn telegram_account(f: &Fields<'_>, src: &Sources<'_>) -> Result<TelegramAccount, ConfigError> {
    let at = f.at();
    if let Some((net, key)) = f.field("network") {
        refuse_unknown(object(net, &key)?, &[NETWORK_KEYS], &key)?;
    }
    let allow_private_network = match f
        .field("network")
        .and_then(|(n, _)| n.get("dangerouslyAllowPrivateNetwork").cloned())
    {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(v) => {
            return Err(invalid(
                format!("{at}.network.dangerouslyAllowPrivateNetwork"),
                format!("must be true or false, got {v}"),
            ));
        }
    };
    let api_root = f
        .str_field("apiRoot")?
        .map(|(s, _)| s)
        .unwrap_or_else(|| DEFAULT_API_ROOT.into())
        .trim_end_matches('/')
        .to_string();
    let common = f.common(src)?;
    let (dialing, transport_fallback) = telegram_dialing(f, src.env)?;
    Ok(TelegramAccount {
        common,
        api_root,
        allow_private_network,
        dialing,
        transport_fallback,
        proxy: f.str_field("proxy")?.map(|(s, _)| s),
    })
}

/// How the account's Bot API connections try the addresses, as upstream decides it
/// (`extensions/telegram/src/network-config.ts`, on Node 24): `autoSelectFamily` is
/// [`ENABLE_AUTO_SELECT_FAMILY_ENV`], else [`DISABLE_AUTO_SELECT_FAMILY_ENV`], else
/// `network.autoSelectFamily`, else on, with an attempt delay of [`TELEGRAM_ATTEMPT_DELAY`]
/// (off, only the first address is tried); the order is [`DNS_RESULT_ORDER_ENV`], else
/// `network.dnsResultOrder`, else the resolver's (Node's default `verbatim`). (Upstream also
/// turns it off by default under WSL2; clawgate does not look.) With whether the transport
/// fallback is allowed: not when the order is set to `verbatim`.
fn telegram_dialing(
    f: &Fields<'_>,
    env: &BTreeMap<String, String>,
) -> Result<(Dialing, bool), ConfigError> {
    let network = f.field("network");
    let setting = |name: &str| {
        network.as_ref().and_then(|(n, at)| {
            n.get(name)
                .filter(|v| !v.is_null())
                .map(|v| (v, format!("{at}.{name}")))
        })
    };
    let configured = match setting("autoSelectFamily") {
        None => None,
        Some((Value::Bool(b), _)) => Some(*b),
        Some((v, key)) => return Err(invalid(key, format!("must be true or false, got {v}"))),
    };
    let order = match setting("dnsResultOrder") {
        None => None,
        Some((Value::String(s), _)) if s == "ipv4first" || s == "verbatim" => Some(s.as_str()),
        Some((v, key)) => {
            return Err(invalid(
                key,
                format!("must be \"ipv4first\" or \"verbatim\", got {v}"),
            ));
        }
    };
    let env_set = |name: &str| env.get(name).is_some_and(|v| truthy(v));
    let race = if env_set(ENABLE_AUTO_SELECT_FAMILY_ENV) {
        true
    } else if env_set(DISABLE_AUTO_SELECT_FAMILY_ENV) {
        false
    } else {
        configured.unwrap_or(true)
    };
    let env_order = env
        .get(DNS_RESULT_ORDER_ENV)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v == "ipv4first" || v == "verbatim");
    let set_order = env_order.as_deref().or(order);
    let ipv4_first = set_order == Some("ipv4first");
    let dialing = Dialing {
        race,
        ipv4_first,
        attempt_delay: Some(TELEGRAM_ATTEMPT_DELAY),
        ..Dialing::default()
    };
    Ok((dialing, set_order.is_none_or(|o| o == "ipv4first")))
}

/// Whether an environment value means yes, as upstream reads one (`1`, `true`, `yes`, `on`,
/// any case).
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The account's token: the section's token key (a string or an env SecretRef), else
/// `tokenFile` (Telegram), else (default account only) the section's environment variable
/// (`TELEGRAM_BOT_TOKEN`). A missing or placeholder token is the account's error, not a
/// refusal to start.
fn token(
    f: &Fields<'_>,
    src: &Sources<'_>,
) -> Result<Result<(Secret, TokenSource), String>, ConfigError> {
    let sec = f.sec;
    let id = f.id.as_str();
    let check = |value: &str, key: &str, source| {
        let value = value.trim();
        if is_placeholder_secret(value) {
            Err(format!(
                "{key} is a placeholder ({value:?}); set {}",
                sec.token_hint
            ))
        } else {
            Ok((Secret::new(value), source))
        }
    };
    if let Some(SecretField { key, value }) = f.secret(sec.token_key, src.env)? {
        return Ok(value.and_then(|(v, source)| check(&v, &key, source)));
    }
    if let Some((v, key)) = f.field("tokenFile").filter(|_| sec.token_file) {
        let Some(path) = v.as_str() else {
            return Err(invalid(key, format!("must be a string, got {v}")));
        };
        return Ok(match src.files.get(path) {
            Some(Ok(text)) => check(text, &key, TokenSource::File),
            Some(Err(e)) => Err(format!("{key}: cannot read {path}: {e}")),
            None => Err(format!("{key}: {path} was not read")),
        });
    }
    if id == DEFAULT_ACCOUNT
        && let Some(t) = src.env.get(sec.token_env).filter(|v| !v.is_empty())
    {
        return Ok(check(t, sec.token_env, TokenSource::Env));
    }
    let key = format!("{}.{}", f.at(), sec.token_key);
    let file = if sec.token_file {
        " (or tokenFile)"
    } else {
        ""
    };
    Ok(Err(format!(
        "{key} is not set: set it{file} to {}",
        sec.token_hint
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str) -> Result<ChannelsConfig, ConfigError> {
        let file = crate::config::parse_file(text).unwrap();
        let env = BTreeMap::new();
        let mut files = BTreeMap::new();
        files.insert("/t".to_string(), Ok("123:file\n".to_string()));
        resolve(
            &file,
            &Sources {
                env: &env,
                files: &files,
            },
        )
    }

    fn resolve_with_env(text: &str, env: &[(&str, &str)]) -> Result<ChannelsConfig, ConfigError> {
        let file = crate::config::parse_file(text).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(
            &file,
            &Sources {
                env: &env,
                files: &BTreeMap::new(),
            },
        )
    }

    /// The dialing of each Telegram account.
    fn dialings(text: &str, env: &[(&str, &str)]) -> Vec<Dialing> {
        let c = resolve_with_env(text, env).unwrap();
        c.telegram.iter().map(|a| a.dialing).collect()
    }

    const RACED: Dialing = Dialing {
        race: true,
        ipv4_first: false,
        ipv4_only: false,
        attempt_delay: Some(TELEGRAM_ATTEMPT_DELAY),
        pinned: None,
    };

    #[test]
    fn network_auto_select_family_and_dns_result_order_decide_the_dialing_per_account() {
        // Upstream on Node 24: raced, 300 ms apart, in the resolver's order (`verbatim`).
        assert_eq!(
            dialings(r#"{channels:{telegram:{botToken:"1:a"}}}"#, &[]),
            [RACED]
        );
        let off = Dialing {
            race: false,
            ..RACED
        };
        let text = r#"{channels:{telegram:{network:{autoSelectFamily:false},
            accounts:{a:{botToken:"1:a"},
                      b:{botToken:"2:b", network:{dnsResultOrder:"ipv4first"}},
                      c:{botToken:"3:c", network:{autoSelectFamily:true, dnsResultOrder:"verbatim"}}}}}}"#;
        let ipv4_first = Dialing {
            ipv4_first: true,
            ..RACED
        };
        // An account's `network` replaces the root's whole, as upstream's shallow merge.
        assert_eq!(dialings(text, &[]), [off, ipv4_first, RACED]);
        // The environment wins over the config: enabling over disabling.
        let env_off = [(DISABLE_AUTO_SELECT_FAMILY_ENV, "yes")];
        let both_off = Dialing {
            race: false,
            ipv4_first: true,
            ..RACED
        };
        assert_eq!(dialings(text, &env_off), [off, both_off, off]);
        let env_on = [
            (DISABLE_AUTO_SELECT_FAMILY_ENV, "1"),
            (ENABLE_AUTO_SELECT_FAMILY_ENV, " ON "),
        ];
        assert_eq!(dialings(text, &env_on), [RACED, ipv4_first, RACED]);
        let not_true = [(DISABLE_AUTO_SELECT_FAMILY_ENV, "maybe")];
        assert_eq!(dialings(text, &not_true), [off, ipv4_first, RACED]);
        let env_order = [(DNS_RESULT_ORDER_ENV, "IPv4First")];
        assert_eq!(
            dialings(text, &env_order),
            [
                Dialing {
                    ipv4_first: true,
                    ..off
                },
                ipv4_first,
                ipv4_first
            ]
        );
    }

    #[test]
    fn the_transport_fallback_is_off_when_the_dns_result_order_is_set_to_verbatim() {
        let fallbacks = |text: &str, env: &[(&str, &str)]| -> Vec<bool> {
            let c = resolve_with_env(text, env).unwrap();
            c.telegram.iter().map(|a| a.transport_fallback).collect()
        };
        let text = r#"{channels:{telegram:{accounts:{
            a:{botToken:"1:a"},
            b:{botToken:"2:b", network:{dnsResultOrder:"ipv4first"}},
            c:{botToken:"3:c", network:{dnsResultOrder:"verbatim", autoSelectFamily:false}}}}}}"#;
        assert_eq!(fallbacks(text, &[]), [true, true, false]);
        let verbatim = [(DNS_RESULT_ORDER_ENV, "verbatim")];
        assert_eq!(fallbacks(text, &verbatim), [false, false, false]);
        let ipv4_first = [(DNS_RESULT_ORDER_ENV, "ipv4first")];
        assert_eq!(fallbacks(text, &ipv4_first), [true, true, true]);
    }

    #[test]
    fn network_settings_of_the_wrong_kind_are_refused_naming_the_key() {
        for (text, key) in [
            (
                r#"{channels:{telegram:{botToken:"1:a", network:{autoSelectFamily:"no"}}}}"#,
                "channels.telegram.network.autoSelectFamily",
            ),
            (
                r#"{channels:{telegram:{accounts:{a:{botToken:"1:a", network:{dnsResultOrder:"ipv6first"}}}}}}"#,
                "channels.telegram.accounts.a.network.dnsResultOrder",
            ),
        ] {
            match resolve_with_env(text, &[]) {
                Err(ConfigError::InvalidAt { key: at, .. }) => assert_eq!(at, key),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn accounts_inherit_the_root_and_tokens_resolve() {
        let c = resolve_text(
            r#"{channels:{telegram:{dmPolicy:"allowlist", allowFrom:["tg:111", 222],
                accounts:{default:{botToken:"123:abc"}, other:{tokenFile:"/t", dmPolicy:"pairing", textChunkLimit:9000}}}},
               session:{dmScope:"per-channel-peer"}}"#,
        )
        .unwrap();
        assert_eq!(c.dm_scope, DmScope::PerChannelPeer);
        let d = &c.telegram[0];
        assert_eq!(d.common.access.dm_policy, DmPolicy::Allowlist);
        assert_eq!(d.common.access.allow_from, ["111", "222"]);
        assert_eq!(d.common.token.as_ref().unwrap().0.expose(), "123:abc");
        let o = &c.telegram[1];
        assert_eq!(o.common.access.dm_policy, DmPolicy::Pairing);
        assert_eq!(o.common.token.as_ref().unwrap().1, TokenSource::File);
        assert_eq!(o.common.token.as_ref().unwrap().0.expose(), "123:file");
        assert_eq!(o.common.text_chunk_limit, TELEGRAM_MAX_TEXT);
        assert_eq!(c.telegram_default.as_deref(), Some("default"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name_and_missing_tokens_are_account_errors() {
        let e = resolve_text(r#"{channels:{telegram:{botToken:"1:a", nope:1}}}"#).unwrap_err();
        assert!(e.to_string().starts_with("channels.telegram.nope:"), "{e}");
        let e = resolve_text(r#"{channels:{telegram:{network:{x:1}}}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("channels.telegram.network.x:"),
            "{e}"
        );
        let e = resolve_text(r#"{channels:{telegram:{accounts:{a:{defaultAccount:"a"}}}}}"#)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("channels.telegram.accounts.a.defaultAccount:"),
            "{e}"
        );
        let c = resolve_text(r#"{channels:{telegram:{botToken:"changeme"}}}"#).unwrap();
        let err = c.telegram[0].common.token.as_ref().unwrap_err();
        assert!(
            err.starts_with("channels.telegram.botToken is a placeholder"),
            "{err}"
        );
        let c = resolve_text(r#"{channels:{telegram:{}}}"#).unwrap();
        let err = c.telegram[0].common.token.as_ref().unwrap_err();
        assert!(
            err.starts_with("channels.telegram.botToken is not set"),
            "{err}"
        );
        let e = resolve_text(r#"{channels:{telegram:{dmPolicy:"allowlist"}}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("channels.telegram.allowFrom:"),
            "{e}"
        );
        assert!(resolve_text(r#"{channels:{telegram:{dmPolicy:"open"}}}"#).is_err());
    }

    #[test]
    fn discord_keys_upstream_does_not_know_are_refused_and_the_rest_read_past() {
        for (text, key) in [
            (
                r#"{channels:{discord:{token:"t", nope:1}}}"#,
                "channels.discord.nope:",
            ),
            (
                r#"{channels:{discord:{accounts:{a:{token:"t", defaultAccount:"a"}}}}}"#,
                "channels.discord.accounts.a.defaultAccount:",
            ),
            (
                r#"{channels:{discord:{token:"t", guilds:{"1":{requireMention:true, nope:1}}}}}"#,
                "channels.discord.guilds.1.nope:",
            ),
        ] {
            let e = resolve_text(text).unwrap_err();
            assert!(e.to_string().starts_with(key), "{text}: {e}");
        }
        let c = resolve_text(
            r#"{channels:{discord:{token:"t", intents:{}, voice:{}, threadBindings:{},
                guilds:{"1":{slug:"g", roles:["2"], channels:{}}}, defaultAccount:"default"}}}"#,
        )
        .unwrap();
        assert_eq!(c.discord.len(), 1);
    }
}
