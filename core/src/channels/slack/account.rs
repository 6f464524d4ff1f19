//! One Slack app account's connection state: where its start-up is (`auth.test`, then in
//! Socket Mode `apps.connections.open` and the socket until `hello`), the bot's identity,
//! and what `channels.status` shows about it beyond what every transport shows.

use serde_json::json;

use super::api::Identity;
use super::config::{SlackAccount, SlackMode};
use crate::channels::account::{Connection, Lifecycle};
use crate::work::WorkId;

/// Where an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not running: never started, stopped, or refused (its `last_error` says why).
    Stopped,
    /// `auth.test` in flight.
    Authenticating,
    /// `apps.connections.open` in flight, or the socket opening, waiting for `hello`.
    Connecting,
    /// Receiving: `hello` came (Socket Mode), or `auth.test` passed (HTTP mode).
    Ready,
    /// Waiting out a backoff before starting again.
    Waiting,
}

/// One account's Slack state.
#[derive(Debug)]
pub struct Account {
    /// Its configuration.
    pub cfg: SlackAccount,
    /// Where it is.
    pub phase: Phase,
    /// The open Socket Mode socket.
    pub socket: Option<WorkId>,
    /// The bot, once `auth.test` answered.
    pub me: Option<Identity>,
    /// Unix ms of the last `hello` (or, in HTTP mode, of the last start).
    pub last_connected_at: Option<u64>,
}

impl Account {
    /// A stopped account.
    pub fn new(cfg: SlackAccount) -> Self {
        Account {
            cfg,
            phase: Phase::Stopped,
            socket: None,
            me: None,
            last_connected_at: None,
        }
    }

    /// Where its connection is.
    pub fn lifecycle(&self) -> Lifecycle {
        match self.phase {
            Phase::Stopped => Lifecycle::Stopped,
            Phase::Ready => Lifecycle::Ready,
            Phase::Waiting => Lifecycle::Waiting,
            Phase::Authenticating | Phase::Connecting => Lifecycle::Starting,
        }
    }

    /// What `channels.status` shows of its connection.
    pub fn connection(&self) -> Connection {
        let webhook = (self.cfg.mode == SlackMode::Http).then_some(&self.cfg.webhook_path);
        Connection {
            mode: self.cfg.mode.as_str(),
            last_connected_at: self.last_connected_at,
            own: json!({
                "webhookPath": webhook,
                "botUserId": self.me.as_ref().map(|m| &m.user_id),
                "appTokenSource": if self.cfg.app_token.is_ok() { "config" } else { "none" },
            }),
        }
    }
}
