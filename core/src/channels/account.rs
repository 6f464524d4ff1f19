//! An account of any transport, as the transport-generic layer sees it: which channel it
//! belongs to ([`Kind`]), the state every transport shares ([`Status`]: failures, the
//! operator's stop, the times and the last error `channels.status` shows), and the
//! transport's own state ([`Transport`]), which answers the questions that differ: its
//! access policy, where its connection is ([`Lifecycle`]), how a reply is cut and rendered,
//! its own status fields ([`Connection`]).

use serde_json::{Value, json};

use super::config::AccessPolicy;
use super::discord;
use super::slack;
use super::telegram;

/// A channel (transport) clawgate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Telegram, over the Bot API.
    Telegram,
    /// Discord, over its Gateway WebSocket and REST API.
    Discord,
    /// Slack, over Socket Mode or the Events API, and the Web API.
    Slack,
}

impl Kind {
    /// Every kind, in `channelOrder` order.
    pub const ALL: [Kind; 3] = [Kind::Telegram, Kind::Discord, Kind::Slack];

    /// The channel id (`telegram`).
    pub fn id(self) -> &'static str {
        match self {
            Kind::Telegram => "telegram",
            Kind::Discord => "discord",
            Kind::Slack => "slack",
        }
    }

    /// The kind a channel id names exactly.
    pub fn from_id(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.id() == s)
    }

    /// Fields of its accounts' snapshots its `channels` summary carries too.
    pub fn summary_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Telegram => &["lastPollAt"],
            Kind::Discord | Kind::Slack => &[],
        }
    }

    /// The kind a channel id (or its short alias) names.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "telegram" | "tg" => Some(Kind::Telegram),
            "discord" => Some(Kind::Discord),
            "slack" => Some(Kind::Slack),
            _ => None,
        }
    }

    /// A pairing request's `meta`, as upstream's plugin of this kind writes it: Telegram
    /// `{username, firstName}`, Slack `{name, senderId}` (its `teamId` only on Enterprise
    /// Grid installs, which clawgate does not serve), Discord `{tag, name}` (the username).
    pub fn pairing_meta(self, sender: &super::inbound::Sender) -> Value {
        match self {
            Kind::Telegram => json!({"username": sender.username, "firstName": sender.name}),
            Kind::Slack => {
                let mut meta = json!({"senderId": sender.id});
                if let (Some(name), Some(o)) = (&sender.name, meta.as_object_mut()) {
                    o.insert("name".into(), json!(name));
                }
                meta
            }
            Kind::Discord => {
                let mut meta = serde_json::Map::new();
                for (k, v) in [("tag", &sender.tag), ("name", &sender.username)] {
                    if let Some(v) = v {
                        meta.insert(k.into(), json!(v));
                    }
                }
                Value::Object(meta)
            }
        }
    }

    /// Its label (`Telegram`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Telegram => "Telegram",
            Kind::Discord => "Discord",
            Kind::Slack => "Slack",
        }
    }

    /// Its detail label (`Telegram Bot`).
    pub fn detail_label(self) -> &'static str {
        match self {
            Kind::Telegram => "Telegram Bot",
            Kind::Discord => "Discord Bot",
            Kind::Slack => "Slack Bot",
        }
    }

    /// Its system image, as upstream names it.
    pub fn system_image(self) -> &'static str {
        match self {
            Kind::Telegram => "paperplane",
            Kind::Discord => "bubble.left.and.bubble.right",
            Kind::Slack => "number",
        }
    }

    /// What a sender id is called in pairing lists (`telegramUserId`).
    pub fn sender_label(self) -> &'static str {
        match self {
            Kind::Telegram => "telegramUserId",
            Kind::Discord => "discordUserId",
            Kind::Slack => "slackUserId",
        }
    }

    /// The config key of its token, for errors that send the operator there.
    pub fn token_key(self) -> &'static str {
        match self {
            Kind::Telegram => "channels.telegram.botToken",
            Kind::Discord => "channels.discord.token",
            Kind::Slack => "channels.slack.botToken",
        }
    }

    /// The name of its call that sends a message, for errors.
    pub fn send_call(self) -> &'static str {
        match self {
            Kind::Telegram => "sendMessage",
            Kind::Discord => "POST /channels/{id}/messages",
            Kind::Slack => "chat.postMessage",
        }
    }

    /// The key of account `account` of this kind in the channels' account table.
    pub fn key(self, account: &str) -> String {
        [self.id(), account].join(":")
    }
}

/// The state every transport's account keeps the same way.
#[derive(Debug, Default)]
pub struct Status {
    /// Consecutive failures (the backoff exponent; `reconnectAttempts`).
    pub failures: u32,
    /// Stopped by `channels.stop` (stays stopped until `channels.start`).
    pub stopped_by_operator: bool,
    /// Unix ms of the last start.
    pub last_start_at: Option<u64>,
    /// Unix ms of the last stop.
    pub last_stop_at: Option<u64>,
    /// Unix ms of the last message received.
    pub last_inbound_at: Option<u64>,
    /// Unix ms of the last message delivered.
    pub last_outbound_at: Option<u64>,
    /// The last error, for `channels.status`.
    pub last_error: Option<String>,
}

/// Where an account's connection is, as `channels.status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Not running: never started, stopped, or refused (its `last_error` says why).
    Stopped,
    /// Starting up or connecting.
    Starting,
    /// Connected: messages flow.
    Ready,
    /// Waiting out a backoff (or a pause) before starting again.
    Waiting,
    /// Receiving is paused until the messages waiting for a turn drain (Discord).
    Held,
}

impl Lifecycle {
    /// Its `lifecycle` field (a wait shows as starting, with `restartPending`).
    fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Stopped => "stopped",
            Lifecycle::Ready => "ready",
            Lifecycle::Held => "held",
            Lifecycle::Starting | Lifecycle::Waiting => "starting",
        }
    }
}

/// What a transport shows of its account's connection in `channels.status`, beside its
/// [`Lifecycle`].
#[derive(Debug)]
pub struct Connection {
    /// How it receives (`polling`, `gateway`, `socket`, `http`).
    pub mode: &'static str,
    /// Unix ms of its last connection.
    pub last_connected_at: Option<u64>,
    /// The fields only this transport shows (a JSON object).
    pub own: Value,
}

/// A transport's own account state.
// A handful of accounts at most: boxing the larger one would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Transport {
    /// A Telegram bot.
    Telegram(telegram::account::Account),
    /// A Discord bot.
    Discord(discord::account::Account),
    /// A Slack app.
    Slack(slack::account::Account),
}

impl Transport {
    /// The configuration's common part.
    pub fn common(&self) -> &super::config::Common {
        match self {
            Transport::Telegram(t) => &t.cfg.common,
            Transport::Discord(d) => &d.cfg.common,
            Transport::Slack(s) => &s.cfg.common,
        }
    }

    fn common_mut(&mut self) -> &mut super::config::Common {
        match self {
            Transport::Telegram(t) => &mut t.cfg.common,
            Transport::Discord(d) => &mut d.cfg.common,
            Transport::Slack(s) => &mut s.cfg.common,
        }
    }

    /// Where its connection is.
    fn lifecycle(&self) -> Lifecycle {
        match self {
            Transport::Telegram(t) => t.lifecycle(),
            Transport::Discord(d) => d.lifecycle(),
            Transport::Slack(s) => s.lifecycle(),
        }
    }

    /// Where its API is (a change restarts the account).
    fn endpoint(&self) -> &str {
        match self {
            Transport::Telegram(t) => &t.cfg.api_root,
            Transport::Discord(d) => &d.cfg.api_url,
            Transport::Slack(s) => &s.cfg.api_url,
        }
    }
}

/// One account.
#[derive(Debug)]
pub struct Account {
    /// What every transport keeps.
    pub status: Status,
    /// The transport's state.
    pub transport: Transport,
}

impl Account {
    /// A stopped account around a transport's state.
    pub fn new(transport: Transport) -> Self {
        Account {
            status: Status::default(),
            transport,
        }
    }

    /// Its channel.
    pub fn kind(&self) -> Kind {
        match &self.transport {
            Transport::Telegram(_) => Kind::Telegram,
            Transport::Discord(_) => Kind::Discord,
            Transport::Slack(_) => Kind::Slack,
        }
    }

    /// Its configuration's common part.
    pub fn common(&self) -> &super::config::Common {
        self.transport.common()
    }

    /// Its token is gone from the configuration (`channels.logout`): `why` says so.
    pub fn forget_token(&mut self, why: String) {
        self.transport.common_mut().token = Err(why);
    }

    /// Its account id.
    pub fn account_id(&self) -> &str {
        &self.common().account_id
    }

    /// Its access policy.
    pub fn access(&self) -> &AccessPolicy {
        &self.common().access
    }

    /// Whether it has a usable token.
    pub fn configured(&self) -> bool {
        self.common().token.is_ok()
    }

    /// Whether it is started (in any phase but stopped).
    pub fn running(&self) -> bool {
        self.transport.lifecycle() != Lifecycle::Stopped
    }

    /// Take a new configuration of the same account; whether the transport must restart
    /// for it (its token or endpoint changed). Policies and limits apply at once.
    pub fn reconfigure(&mut self, new: Transport) -> bool {
        let restart = self.common().token != new.common().token
            || self.transport.endpoint() != new.endpoint();
        match (&mut self.transport, new) {
            (Transport::Telegram(a), Transport::Telegram(b)) => {
                // New network settings: the transport attempts start over from them.
                let network = |c: &crate::channels::config::TelegramAccount| {
                    (c.dialing, c.transport_fallback)
                };
                if network(&a.cfg) != network(&b.cfg) {
                    a.transport = b.transport;
                }
                a.cfg = b.cfg;
            }
            (Transport::Discord(a), Transport::Discord(b)) => a.cfg = b.cfg,
            (Transport::Slack(a), Transport::Slack(b)) => {
                // The app token and the mode are where Slack's events come from.
                let moved = a.cfg.app_token != b.cfg.app_token || a.cfg.mode != b.cfg.mode;
                a.cfg = b.cfg;
                return restart || moved;
            }
            // Keys carry the kind: an account never changes transport.
            _ => return false,
        }
        restart
    }

    /// Mark it as waiting out a backoff (after a failure); false when it is stopped (a
    /// stopped account does not retry).
    pub fn wait(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        match &mut self.transport {
            Transport::Telegram(t) => t.phase = telegram::account::Phase::Waiting,
            Transport::Discord(d) => d.phase = discord::account::Phase::Waiting,
            Transport::Slack(s) => s.phase = slack::account::Phase::Waiting,
        }
        true
    }

    /// Plain text (the `send` method's message) as this transport sends it.
    pub fn plain(&self, text: &str) -> String {
        match &self.transport {
            Transport::Telegram(_) => telegram::format::escape(text),
            Transport::Discord(_) => text.to_string(),
            Transport::Slack(_) => slack::format::escape(text),
        }
    }

    /// A reply (the agent's Markdown) as the messages this transport sends.
    pub fn render(&self, text: &str) -> Vec<String> {
        let limit = self.common().text_chunk_limit;
        match &self.transport {
            Transport::Telegram(_) => telegram::format::chunks(text, limit),
            Transport::Discord(_) => discord::format::chunks(text, limit),
            Transport::Slack(_) => slack::format::chunks(text, limit),
        }
    }

    /// The account snapshot of `channels.status`, with the replies kept as undelivered and
    /// the number waiting to be sent.
    pub fn snapshot(&self, undelivered: Vec<Value>, pending_replies: usize) -> Value {
        let c = self.common();
        let s = &self.status;
        let lifecycle = self.transport.lifecycle();
        let conn = match &self.transport {
            Transport::Telegram(t) => t.connection(),
            Transport::Discord(d) => d.connection(),
            Transport::Slack(s) => s.connection(),
        };
        let mut out = json!({
            "accountId": c.account_id,
            "enabled": c.enabled,
            "configured": c.token.is_ok(),
            "running": lifecycle != Lifecycle::Stopped,
            "connected": lifecycle == Lifecycle::Ready,
            "lifecycle": lifecycle.as_str(),
            "mode": conn.mode,
            "restartPending": lifecycle == Lifecycle::Waiting,
            "lastConnectedAt": conn.last_connected_at,
            "reconnectAttempts": s.failures,
            "lastStartAt": s.last_start_at,
            "lastStopAt": s.last_stop_at,
            "lastEventAt": s.last_inbound_at,
            "lastInboundAt": s.last_inbound_at,
            "lastOutboundAt": s.last_outbound_at,
            "lastError": s.last_error,
            "tokenSource": c.token.as_ref().map_or("none", |t| t.1.as_str()),
            "tokenStatus": if c.token.is_ok() { "available" } else { "missing" },
            "dmPolicy": c.access.dm_policy.as_str(),
            "allowFrom": c.access.allow_from,
            "allowUnmentionedGroups": false,
            "pendingReplies": pending_replies,
            "undeliveredReplies": undelivered,
        });
        if let (Some(out), Value::Object(own)) = (out.as_object_mut(), conn.own) {
            out.extend(own);
        }
        out
    }
}
