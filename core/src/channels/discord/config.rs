//! `channels.discord`: the keys every transport shares (`enabled`, `token`, `dmPolicy`,
//! `allowFrom`, `guilds` as the group rules, `groupPolicy`, `textChunkLimit`, `accounts`),
//! and the REST base, `DISCORD_API_URL` (upstream's variable) or Discord's own. Keys
//! upstream's schema (`openclaw@2026.9.6`) does not know, on the root, an account or a guild,
//! are refused by name; the ones it knows and clawgate does not use are read past.

use crate::channels::config::{Common, Fields, HasCommon, Sources};
use crate::config::ConfigError;

/// Discord's REST base.
pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";
/// The environment variable that points the REST base (and so the Gateway) elsewhere.
pub const API_URL_ENV: &str = "DISCORD_API_URL";

/// Fields only upstream's `channels.discord` schema accepts on an account (and on the root),
/// beyond the lists every channel, and Slack with Discord, share (`channels::config`).
pub(crate) const ACCOUNT_KEYS: &[&str] = &[
    "ackReactionScope",
    "activities",
    "activity",
    "activityType",
    "activityUrl",
    "agentComponents",
    "applicationId",
    "autoPresence",
    "guilds",
    "inboundWorker",
    "intents",
    "maxLinesPerMessage",
    "mentionAliases",
    "pluralkit",
    "proxy",
    "status",
    "suppressEmbeds",
    "threadBindings",
    "token",
    "voice",
];
/// Fields only a `guilds.<id>` entry has, beyond the shared group-rule lists
/// (`channels::config`).
pub(crate) const GUILD_KEYS: &[&str] = &["channels", "reactionNotifications", "roles", "slug"];

/// One Discord bot account, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscordAccount {
    /// What every transport has.
    pub common: Common,
    /// The REST base without a trailing slash.
    pub api_url: String,
    /// Whether the base was overridden (`DISCORD_API_URL`): the Gateway must then be on the
    /// same origin.
    pub api_overridden: bool,
}

impl HasCommon for DiscordAccount {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// One Discord account.
pub(crate) fn account(f: &Fields<'_>, src: &Sources<'_>) -> Result<DiscordAccount, ConfigError> {
    let overridden = src
        .env
        .get(API_URL_ENV)
        .map(|v| v.trim().trim_end_matches('/'))
        .filter(|v| !v.is_empty());
    Ok(DiscordAccount {
        common: f.common(src)?,
        api_url: overridden.unwrap_or(DEFAULT_API_URL).to_string(),
        api_overridden: overridden.is_some(),
    })
}
