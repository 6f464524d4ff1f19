//! One Telegram bot account's transport state: where its start-up is (`getMe`, then
//! `deleteWebhook`, then the long poll), the offset it confirms, the poll in flight, its
//! backoff, and what `channels.status` shows about it.

use serde_json::{Value, json};

use super::api::Me;
use crate::channels::config::TelegramAccount;
use crate::work::WorkId;

/// Where an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not running: never started, stopped, or refused (its `last_error` says why).
    Stopped,
    /// `getMe` in flight.
    Identifying,
    /// `deleteWebhook` in flight.
    ClearingWebhook,
    /// Long-polling.
    Polling,
    /// Waiting out a backoff before trying again.
    Waiting,
}

/// One account.
#[derive(Debug)]
pub struct Account {
    /// Its configuration.
    pub cfg: TelegramAccount,
    /// Where it is.
    pub phase: Phase,
    /// The bot, once `getMe` answered.
    pub me: Me,
    /// The next `getUpdates` offset (confirms everything before it).
    pub offset: i64,
    /// The `getUpdates` in flight.
    pub poll: Option<WorkId>,
    /// A batch of new updates is being committed: no poll until it is durable.
    pub committing: bool,
    /// Consecutive failures (the backoff exponent; `reconnectAttempts`).
    pub failures: u32,
    /// Stopped by `channels.stop` (stays stopped until `channels.start`).
    pub stopped_by_operator: bool,
    /// Unix ms of status events.
    pub last_start_at: Option<u64>,
    /// Unix ms.
    pub last_stop_at: Option<u64>,
    /// Unix ms of the last successful poll.
    pub last_poll_at: Option<u64>,
    /// Unix ms.
    pub last_inbound_at: Option<u64>,
    /// Unix ms.
    pub last_outbound_at: Option<u64>,
    /// The last error, for `channels.status`.
    pub last_error: Option<String>,
}

impl Account {
    /// A stopped account.
    pub fn new(cfg: TelegramAccount) -> Self {
        Account {
            cfg,
            phase: Phase::Stopped,
            me: Me::default(),
            offset: 0,
            poll: None,
            committing: false,
            failures: 0,
            stopped_by_operator: false,
            last_start_at: None,
            last_stop_at: None,
            last_poll_at: None,
            last_inbound_at: None,
            last_outbound_at: None,
            last_error: None,
        }
    }

    /// Whether it is started (in any phase but stopped).
    pub fn running(&self) -> bool {
        self.phase != Phase::Stopped
    }

    /// The account snapshot of `channels.status`, with the replies kept as undelivered and
    /// the number waiting to be sent.
    pub fn snapshot(&self, undelivered: Vec<Value>, pending_replies: usize) -> Value {
        let connected = self.phase == Phase::Polling && self.last_poll_at.is_some();
        let lifecycle = match self.phase {
            Phase::Stopped => "stopped",
            Phase::Polling if connected => "ready",
            _ => "starting",
        };
        json!({
            "accountId": self.cfg.account_id,
            "enabled": self.cfg.enabled,
            "configured": self.cfg.token.is_ok(),
            "running": self.running(),
            "connected": connected,
            "lifecycle": lifecycle,
            "mode": "polling",
            "restartPending": self.phase == Phase::Waiting,
            "reconnectAttempts": self.failures,
            "lastStartAt": self.last_start_at,
            "lastStopAt": self.last_stop_at,
            "lastConnectedAt": self.last_poll_at,
            "lastPollAt": self.last_poll_at,
            "lastEventAt": self.last_inbound_at,
            "lastInboundAt": self.last_inbound_at,
            "lastOutboundAt": self.last_outbound_at,
            "lastError": self.last_error,
            "tokenSource": self.cfg.token.as_ref().map_or("none", |t| t.1.as_str()),
            "tokenStatus": if self.cfg.token.is_ok() { "available" } else { "missing" },
            "dmPolicy": self.cfg.access.dm_policy.as_str(),
            "allowFrom": self.cfg.access.allow_from,
            "allowUnmentionedGroups": false,
            "botUsername": self.me.username,
            "pendingReplies": pending_replies,
            "undeliveredReplies": undelivered,
        })
    }
}
