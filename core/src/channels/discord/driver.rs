//! What Discord supplies to the transport-generic channels: an account's start
//! (`GET /gateway/bot`, then the Gateway socket: Hello → Identify → READY, heartbeats with
//! jitter carrying the last sequence, a missed ACK or a dropped socket resumed with the
//! session id and sequence, Reconnect resumed about 2 s later, Invalid Session answered with
//! a fresh Identify, a READY timeout restarting the socket, fatal closes such as 4004
//! stopping the account), `MESSAGE_CREATE`s handed to [`Gateway::receive`], and the REST
//! calls that deliver a reply and show typing, held back by the rate limits Discord announced.

use std::time::{Duration, Instant};

use super::account::{Account, Phase, Session};
use super::{gateway, rest};
use crate::channels::account::Transport;
use crate::channels::inbound::{Inbound, Target};
use crate::channels::{Answer, Due as ChannelDue, Failure, Purpose as ChannelPurpose, Receipt};
use crate::gateway::Gateway;
use crate::log::Level;
use crate::work::{WorkId, WorkResult, WsOpen};

/// How long after opening a socket READY (or RESUMED) may take before it is restarted.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause before resuming after op 7 (Reconnect) or reconnecting after op 9.
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// The largest Gateway message read (READY of a large bot is big).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// The close code clawgate sends when it means to resume (not 1000, which ends the session).
const CLOSE_RESUMABLE: u16 = 4000;

/// What a Discord call of its own is for.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// `GET /gateway/bot`.
    GatewayBot,
}

/// A Discord timer of one socket (`epoch`): stale once the account moved to another.
#[derive(Clone, Debug)]
pub struct Due {
    epoch: u64,
    what: What,
}

#[derive(Clone, Copy, Debug)]
enum What {
    Heartbeat,
    ReadyTimeout,
    Reconnect,
}

/// Close codes after which reconnecting cannot help: the account stops with the reason.
fn fatal(code: u16) -> Option<&'static str> {
    match code {
        4004 => Some("authentication failed"),
        4010 => Some("invalid shard"),
        4011 => Some("sharding required"),
        4012 => Some("invalid API version"),
        4013 => Some("invalid intents"),
        4014 => {
            Some("disallowed intents (enable the Message Content intent in the Developer Portal)")
        }
        _ => None,
    }
}

/// `scheme://host[:port]` of a URL, with `ws`/`wss` read as `http`/`https`.
fn origin(url: &str) -> Option<(bool, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        _ => return None,
    };
    let host = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    Some((tls, host))
}

/// Whether plain (unencrypted) `url` is allowed: only to loopback hosts.
fn plain_allowed(url: &str) -> bool {
    let Some((tls, authority)) = origin(url) else {
        return false;
    };
    if tls {
        return true;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<core::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Gateway {
    fn dc(&mut self, key: &str) -> Option<&mut Account> {
        match self
            .channels
            .accounts
            .get_mut(key)
            .map(|a| &mut a.transport)
        {
            Some(Transport::Discord(d)) => Some(d),
            _ => None,
        }
    }

    fn dc_token(&mut self, key: &str) -> Option<String> {
        let a = self.dc(key)?;
        a.cfg
            .common
            .token
            .as_ref()
            .ok()
            .map(|(t, _)| t.expose().to_string())
    }

    /// Start account `key` (its token is there): `GET /gateway/bot` first; or why it
    /// cannot start.
    pub(crate) fn dc_start(&mut self, now: Instant, key: &str) -> Result<(), String> {
        let Some(a) = self.dc(key) else {
            return Ok(());
        };
        if !plain_allowed(&a.cfg.api_url) {
            return Err(format!(
                "DISCORD_API_URL {} is plain http to a host that is not loopback; use https",
                a.cfg.api_url
            ));
        }
        self.log(
            now,
            Level::Info,
            None,
            format!("{key}: starting (GET /gateway/bot)"),
        );
        self.dc_discover(key);
        Ok(())
    }

    fn dc_discover(&mut self, key: &str) {
        let Some(token) = self.dc_token(key) else {
            return;
        };
        let Some(a) = self.dc(key) else {
            return;
        };
        a.phase = Phase::Discovering;
        let request = rest::gateway_bot(&a.cfg.api_url, &token);
        self.channel_call(key, ChannelPurpose::Discord(Purpose::GatewayBot), request);
    }

    /// Stop account `key`: its socket is closed and its session forgotten.
    pub(crate) fn dc_stop(&mut self, key: &str) {
        let Some(a) = self.dc(key) else {
            return;
        };
        a.phase = Phase::Stopped;
        a.epoch += 1;
        a.session = None;
        a.seq = None;
        if let Some(socket) = a.socket.take() {
            self.close_socket(socket, 1000);
        }
    }

    /// A backoff is over: connect again (resuming when a session is kept).
    pub(crate) fn dc_retry(&mut self, now: Instant, key: &str) {
        let Some(a) = self.dc(key) else {
            return;
        };
        if a.phase != Phase::Waiting {
            return;
        }
        if a.gateway_url.is_none() {
            self.dc_discover(key);
        } else {
            self.dc_connect(now, key);
        }
    }

    /// Open a new socket: to the session's resume URL when there is one, else the Gateway's.
    fn dc_connect(&mut self, now: Instant, key: &str) {
        let Some(a) = self.dc(key) else {
            return;
        };
        let base = a
            .session
            .as_ref()
            .and_then(|s| s.resume_url.clone())
            .or_else(|| a.gateway_url.clone());
        let Some(base) = base else {
            return self.dc_discover(key);
        };
        if let Some(old) = a.socket.take() {
            self.close_socket(old, CLOSE_RESUMABLE);
        }
        let Some(a) = self.dc(key) else {
            return;
        };
        a.epoch += 1;
        a.phase = Phase::Connecting;
        a.interval = None;
        a.awaiting_ack = false;
        let epoch = a.epoch;
        let open = WsOpen {
            url: gateway::socket_url(&base),
            headers: Vec::new(),
            max_message: MAX_MESSAGE,
        };
        let socket = self.open_socket(key, open);
        if let Some(a) = self.dc(key) {
            a.socket = Some(socket);
        }
        self.dc_timer_at(now + READY_TIMEOUT, key, epoch, What::ReadyTimeout);
    }

    fn dc_timer_at(&mut self, at: Instant, key: &str, epoch: u64, what: What) {
        self.channel_timer_at(
            at,
            ChannelDue::Discord(key.to_string(), Due { epoch, what }),
        );
    }

    /// Send a payload on the account's socket.
    fn dc_send_payload(&mut self, key: &str, text: String) {
        if let Some(socket) = self.dc(key).and_then(|a| a.socket) {
            self.socket_send(socket, text);
        }
    }

    /// A Discord timer fired.
    pub(crate) fn dc_timer(&mut self, now: Instant, key: &str, due: Due) {
        let Some(a) = self.dc(key).filter(|a| a.epoch == due.epoch) else {
            return;
        };
        match due.what {
            What::Heartbeat => {
                let Some(interval) = a.interval else {
                    return;
                };
                if a.awaiting_ack {
                    let f = Failure::Transport("no heartbeat ACK; reconnecting to resume".into());
                    return self.dc_lost(now, key, f);
                }
                a.awaiting_ack = true;
                let beat = gateway::heartbeat(a.seq);
                self.dc_send_payload(key, beat);
                self.dc_timer_at(now + interval, key, due.epoch, What::Heartbeat);
            }
            What::ReadyTimeout => {
                if a.phase == Phase::Ready {
                    return;
                }
                a.session = None;
                let e = format!(
                    "no READY within {} s; restarting the Gateway connection",
                    READY_TIMEOUT.as_secs()
                );
                self.dc_lost(now, key, Failure::Transport(e));
            }
            What::Reconnect => {
                if a.phase == Phase::Waiting {
                    self.dc_connect(now, key);
                }
            }
        }
    }

    /// The socket is gone (or given up on): close it and wait out a backoff before
    /// connecting again.
    fn dc_lost(&mut self, now: Instant, key: &str, f: Failure) {
        if let Some(a) = self.dc(key) {
            a.epoch += 1;
            if let Some(socket) = a.socket.take() {
                self.close_socket(socket, CLOSE_RESUMABLE);
            }
        }
        self.account_failed(now, key, "gateway", f);
    }

    /// A result of account `key`'s socket `id`.
    pub(crate) fn dc_socket(&mut self, now: Instant, key: &str, id: WorkId, result: WorkResult) {
        if self.dc(key).is_none_or(|a| a.socket != Some(id)) {
            return;
        }
        match result {
            WorkResult::WsText(text) => match gateway::parse(&text) {
                Ok(p) => self.dc_payload(now, key, p),
                Err(e) => self.log(now, Level::Warn, None, format!("{key}: {e}")),
            },
            WorkResult::WsClosed { code, reason } => {
                if let Some(a) = self.dc(key) {
                    a.socket = None;
                }
                let why = match code {
                    Some(c) => format!("Gateway closed the socket: {c} {reason}"),
                    None => format!("Gateway socket ended: {reason}"),
                };
                if let Some(what) = code.and_then(fatal) {
                    let auth = code == Some(4004);
                    let f = Failure::Refused {
                        code: code.unwrap_or_default(),
                        description: format!("{what} ({why})"),
                        retry_after: None,
                        auth,
                        permanent: true,
                    };
                    if !auth {
                        self.log(now, Level::Error, None, format!("{key} stopped: {f}"));
                        self.stop_account(now, key);
                        if let Some(a) = self.channels.accounts.get_mut(key) {
                            a.status.last_error = Some(format!("gateway: {f}"));
                        }
                        return;
                    }
                    return self.account_failed(now, key, "gateway", f);
                }
                if matches!(code, Some(4007 | 4009))
                    && let Some(a) = self.dc(key)
                {
                    a.session = None;
                    a.seq = None;
                }
                self.dc_lost(now, key, Failure::Transport(why));
            }
            _ => {}
        }
    }

    fn dc_payload(&mut self, now: Instant, key: &str, p: gateway::Payload) {
        let Some(a) = self.dc(key) else {
            return;
        };
        if let Some(s) = p.seq {
            a.seq = Some(a.seq.map_or(s, |old| old.max(s)));
        }
        let epoch = a.epoch;
        match p.event {
            gateway::Event::Hello { interval_ms } => {
                let interval = Duration::from_millis(interval_ms);
                a.interval = Some(interval);
                a.phase = Phase::Identifying;
                let session = a.session.clone();
                let seq = a.seq;
                let mut b = [0u8; 2];
                self.entropy.fill(&mut b);
                let jitter = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
                self.dc_timer_at(now + interval.mul_f64(jitter), key, epoch, What::Heartbeat);
                let Some(token) = self.dc_token(key) else {
                    return;
                };
                let hello = match session {
                    Some(s) => gateway::resume(&token, &s.id, seq),
                    None => gateway::identify(&token),
                };
                self.dc_send_payload(key, hello);
            }
            gateway::Event::HeartbeatAck => a.awaiting_ack = false,
            gateway::Event::HeartbeatRequest => {
                let beat = gateway::heartbeat(a.seq);
                self.dc_send_payload(key, beat);
            }
            gateway::Event::Reconnect => {
                self.dc_pause(now, key, "the Gateway asked to reconnect (op 7)")
            }
            gateway::Event::InvalidSession { resumable } => {
                if !resumable {
                    a.session = None;
                    a.seq = None;
                }
                self.dc_pause(now, key, "the Gateway invalidated the session (op 9)");
            }
            gateway::Event::Ready {
                session_id,
                resume_url,
                me,
            } => {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!(
                        "{key}: READY as {} (id {})",
                        me.username.as_deref().unwrap_or("?"),
                        me.id
                    ),
                );
                if let Some(a) = self.dc(key) {
                    a.session = Some(Session {
                        id: session_id,
                        resume_url: resume_url
                            .filter(|u| !a.cfg.api_overridden || same_origin(u, &a.cfg.api_url)),
                    });
                    a.me = me;
                }
                self.dc_ready(now, key);
            }
            gateway::Event::Resumed => {
                self.log(now, Level::Info, None, format!("{key}: session resumed"));
                self.dc_ready(now, key);
            }
            gateway::Event::Message(d) => {
                let account = key.strip_prefix("discord:").unwrap_or(key).to_string();
                let me = a.me.clone();
                if let Some(m) = gateway::message(d, &account, &me) {
                    self.receive(now, key, vec![m], Vec::new(), Receipt::Nothing);
                }
                if self.channels.ingress.pending() >= crate::channels::MAX_UNSERVED {
                    self.dc_hold(now, key);
                }
            }
            gateway::Event::Other => {}
        }
    }

    fn dc_ready(&mut self, now: Instant, key: &str) {
        let ts = self.unix_ms(now);
        if let Some(a) = self.dc(key) {
            a.phase = Phase::Ready;
            a.last_connected_at = Some(ts);
        }
        if let Some(a) = self.channels.accounts.get_mut(key) {
            a.status.failures = 0;
        }
    }

    /// Close the socket and connect again after [`RECONNECT_PAUSE`] (resuming when the
    /// session is kept).
    fn dc_pause(&mut self, now: Instant, key: &str, why: &str) {
        self.log(
            now,
            Level::Info,
            None,
            format!(
                "{key}: {why}; reconnecting in {} s",
                RECONNECT_PAUSE.as_secs()
            ),
        );
        let Some(a) = self.dc(key) else {
            return;
        };
        a.epoch += 1;
        a.phase = Phase::Waiting;
        let epoch = a.epoch;
        if let Some(socket) = a.socket.take() {
            self.close_socket(socket, CLOSE_RESUMABLE);
        }
        self.dc_timer_at(now + RECONNECT_PAUSE, key, epoch, What::Reconnect);
    }

    /// Too many messages wait for a turn: close the socket (resumably) and read no more
    /// until [`Gateway::dc_resume_held`] finds the queue drained. Discord keeps what it
    /// dispatches meanwhile for the Resume.
    fn dc_hold(&mut self, now: Instant, key: &str) {
        self.log(
            now,
            Level::Warn,
            None,
            format!(
                "{key}: {} messages wait for a turn; the Gateway socket is closed and resumed once they are served (Discord replays what arrives meanwhile)",
                crate::channels::MAX_UNSERVED
            ),
        );
        let Some(a) = self.dc(key) else {
            return;
        };
        a.epoch += 1;
        a.phase = Phase::Held;
        if let Some(socket) = a.socket.take() {
            self.close_socket(socket, CLOSE_RESUMABLE);
        }
    }

    /// Resume the accounts held by [`Gateway::dc_hold`] once the queue is under half the bound.
    pub(crate) fn dc_resume_held(&mut self, now: Instant) {
        if self.channels.ingress.pending() > crate::channels::MAX_UNSERVED / 2 {
            return;
        }
        let held: Vec<String> = self
            .channels
            .accounts
            .iter()
            .filter(
                |(_, a)| matches!(&a.transport, Transport::Discord(d) if d.phase == Phase::Held),
            )
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            self.log(
                now,
                Level::Info,
                None,
                format!("{key}: the queue drained; resuming the Gateway session"),
            );
            self.dc_connect(now, &key);
        }
    }

    /// A Discord call of its own ended.
    pub(crate) fn dc_call_done(
        &mut self,
        now: Instant,
        key: &str,
        purpose: &Purpose,
        answer: Result<Answer<'_>, String>,
    ) {
        let Purpose::GatewayBot = purpose;
        if self.dc(key).is_none_or(|a| a.phase != Phase::Discovering) {
            return;
        }
        let url = match rest::result(answer) {
            Ok(v) => rest::gateway_url(&v),
            Err(f) => return self.account_failed(now, key, "GET /gateway/bot", f),
        };
        let Some(a) = self.dc(key) else {
            return;
        };
        let checked = match url {
            None => Err("GET /gateway/bot: the answer has no url".to_string()),
            Some(u) if a.cfg.api_overridden && !same_origin(&u, &a.cfg.api_url) => Err(format!(
                "GET /gateway/bot: the Gateway {u} is not on DISCORD_API_URL's origin {}",
                a.cfg.api_url
            )),
            Some(u) if !plain_allowed(&u) => Err(format!(
                "GET /gateway/bot: the Gateway {u} is plain ws to a host that is not loopback"
            )),
            Some(u) => Ok(u),
        };
        match checked {
            Ok(u) => {
                a.gateway_url = Some(u);
                self.dc_connect(now, key);
            }
            Err(e) => self.account_failed(now, key, "gateway", Failure::Transport(e)),
        }
    }

    /// Note what the answer to REST call `id` says about the rate limits.
    pub(crate) fn dc_note(
        &mut self,
        now: Instant,
        key: &str,
        id: WorkId,
        answer: &Result<Answer<'_>, String>,
    ) {
        let Some(a) = self.dc(key) else {
            return;
        };
        if let (Some(route), Ok(answer)) = (a.routes.remove(&id), answer) {
            a.limits.note(now, &route, answer);
        }
    }

    /// Show typing in the channel of `m`.
    pub(crate) fn dc_typing(&mut self, key: &str, m: &Inbound) {
        let Some(token) = self.dc_token(key) else {
            return;
        };
        let Some(a) = self.dc(key) else {
            return;
        };
        let request = rest::typing(&a.cfg.api_url, &token, &m.chat_id);
        self.channel_call(key, ChannelPurpose::Typing, request);
    }

    /// Send one message; false when the account has no token. A delivery on a route that
    /// is rate limited waits until the limit resets.
    pub(crate) fn dc_send(
        &mut self,
        now: Instant,
        key: &str,
        purpose: ChannelPurpose,
        to: &Target,
        text: &str,
    ) -> bool {
        let Some(token) = self.dc_token(key) else {
            return false;
        };
        let Some(a) = self.dc(key) else {
            return false;
        };
        if let (Some(until), ChannelPurpose::Deliver(seq)) =
            (a.limits.blocked(now, &to.to), &purpose)
        {
            // It stays taken until the limit resets, so one timer frees it, once: released
            // now, every pump before then would take it again and add a timer (and a send).
            self.channel_timer_at(until, ChannelDue::Redeliver(*seq));
            return true;
        }
        let request = rest::create_message(&a.cfg.api_url, &token, &to.to, text);
        let id = self.channel_call(key, purpose, request);
        if let Some(a) = self.dc(key) {
            a.routes.insert(id, to.to.clone());
        }
        true
    }
}

/// Whether `url` is on the origin of `api` (`ws`/`wss` matching `http`/`https`).
fn same_origin(url: &str, api: &str) -> bool {
    origin(url).is_some() && origin(url) == origin(api)
}

impl From<Purpose> for ChannelPurpose {
    fn from(p: Purpose) -> Self {
        ChannelPurpose::Discord(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_plain_urls() {
        assert!(same_origin(
            "ws://127.0.0.1:9/gw",
            "http://127.0.0.1:9/api/v10"
        ));
        assert!(!same_origin(
            "ws://127.0.0.1:8",
            "http://127.0.0.1:9/api/v10"
        ));
        assert!(!same_origin(
            "wss://127.0.0.1:9",
            "http://127.0.0.1:9/api/v10"
        ));
        assert!(plain_allowed("ws://127.0.0.1:9"));
        assert!(plain_allowed("http://localhost:9/api"));
        assert!(plain_allowed("wss://gateway.discord.gg"));
        assert!(!plain_allowed("ws://gateway.discord.gg"));
        assert!(!plain_allowed("http://10.0.0.1/api"));
    }
}
