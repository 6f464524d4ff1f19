//! One Discord bot account's connection state: where its start-up is (`GET /gateway/bot`,
//! the socket, Hello, Identify or Resume, READY), the session and sequence a Resume needs,
//! the heartbeat, the rate limits its calls met, and what `channels.status` shows about it
//! beyond what every transport shows.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::config::DiscordAccount;
use super::gateway::Me;
use super::rest::Limits;
use crate::channels::account::{Connection, Lifecycle};
use crate::work::WorkId;

/// Where an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not running: never started, stopped, or refused (its `last_error` says why).
    Stopped,
    /// `GET /gateway/bot` in flight.
    Discovering,
    /// The socket is opening, or open and waiting for Hello.
    Connecting,
    /// Identify or Resume sent, waiting for READY or RESUMED.
    Identifying,
    /// READY (or RESUMED): messages flow.
    Ready,
    /// Waiting out a backoff (or the pause before a Resume) before connecting again.
    Waiting,
    /// [`crate::channels::MAX_UNSERVED`] messages wait for a turn: the socket is closed
    /// (resumably) until the queue drains, then the session is resumed and Discord replays
    /// what was dispatched meanwhile, so memory stays bounded and nothing is lost.
    Held,
}

/// A Gateway session, kept to resume it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// `session_id`.
    pub id: String,
    /// `resume_gateway_url`.
    pub resume_url: Option<String>,
}

/// One account's Discord state.
#[derive(Debug)]
pub struct Account {
    /// Its configuration.
    pub cfg: DiscordAccount,
    /// Where it is.
    pub phase: Phase,
    /// The Gateway URL `GET /gateway/bot` gave.
    pub gateway_url: Option<String>,
    /// The open socket.
    pub socket: Option<WorkId>,
    /// Counts sockets: a timer of an older one is stale.
    pub epoch: u64,
    /// The session to resume.
    pub session: Option<Session>,
    /// The last sequence number received.
    pub seq: Option<u64>,
    /// The heartbeat interval Hello gave.
    pub interval: Option<Duration>,
    /// A heartbeat was sent and not acknowledged yet.
    pub awaiting_ack: bool,
    /// The bot, once READY.
    pub me: Me,
    /// Unix ms of the last READY or RESUMED.
    pub last_connected_at: Option<u64>,
    /// The rate limits its calls met.
    pub limits: Limits,
    /// The route (channel id) each REST call in flight counts against.
    pub routes: HashMap<WorkId, String>,
}

impl Account {
    /// A stopped account.
    pub fn new(cfg: DiscordAccount) -> Self {
        Account {
            cfg,
            phase: Phase::Stopped,
            gateway_url: None,
            socket: None,
            epoch: 0,
            session: None,
            seq: None,
            interval: None,
            awaiting_ack: false,
            me: Me::default(),
            last_connected_at: None,
            limits: Limits::default(),
            routes: HashMap::new(),
        }
    }

    /// Where its connection is.
    pub fn lifecycle(&self) -> Lifecycle {
        match self.phase {
            Phase::Stopped => Lifecycle::Stopped,
            Phase::Ready => Lifecycle::Ready,
            Phase::Waiting => Lifecycle::Waiting,
            Phase::Held => Lifecycle::Held,
            Phase::Discovering | Phase::Connecting | Phase::Identifying => Lifecycle::Starting,
        }
    }

    /// What `channels.status` shows of its connection.
    pub fn connection(&self) -> Connection {
        Connection {
            mode: "gateway",
            last_connected_at: self.last_connected_at,
            own: json!({
                "botUsername": self.me.username,
                "botUserId": (!self.me.id.is_empty()).then_some(&self.me.id),
            }),
        }
    }
}
