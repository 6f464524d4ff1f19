//! One Telegram bot account's transport state: where its start-up is (`getMe`, then
//! `deleteWebhook`, then the long poll), the offset it confirms, the poll in flight,
//! and what `channels.status` shows about it beyond what every transport shows.

use serde_json::json;

use super::api::Me;
use super::transport::Transport;
use crate::channels::account::{Connection, Lifecycle};
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

/// One account's Telegram state (what every transport keeps is in the channels' `Status`).
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
    /// The channel timer of that poll's watchdog (cancelled when the poll returns).
    pub watchdog: Option<u64>,
    /// A batch of new updates is being committed: no poll until it is durable.
    pub committing: bool,
    /// Unix ms of the last successful poll.
    pub last_poll_at: Option<u64>,
    /// Its Bot API transport attempts (the fallback's state).
    pub transport: Transport,
}

impl Account {
    /// A stopped account.
    pub fn new(cfg: TelegramAccount) -> Self {
        Account {
            transport: Transport::new(cfg.dialing, cfg.transport_fallback),
            cfg,
            phase: Phase::Stopped,
            me: Me::default(),
            offset: 0,
            poll: None,
            watchdog: None,
            committing: false,
            last_poll_at: None,
        }
    }

    /// Where its connection is: ready once a poll succeeded.
    pub fn lifecycle(&self) -> Lifecycle {
        match self.phase {
            Phase::Stopped => Lifecycle::Stopped,
            Phase::Polling if self.last_poll_at.is_some() => Lifecycle::Ready,
            Phase::Waiting => Lifecycle::Waiting,
            _ => Lifecycle::Starting,
        }
    }

    /// What `channels.status` shows of its connection.
    pub fn connection(&self) -> Connection {
        Connection {
            mode: "polling",
            last_connected_at: self.last_poll_at,
            own: json!({
                "lastPollAt": self.last_poll_at,
                "botUsername": self.me.username,
            }),
        }
    }
}
