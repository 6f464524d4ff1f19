//! What Slack supplies to the transport-generic channels: an account's start (`auth.test`
//! with the bot token; `invalid_auth` stops the account with the error, the gateway serves
//! on), then in Socket Mode `apps.connections.open` with the app token and the returned
//! socket until `hello`; every `events_api` envelope acknowledged by its `envelope_id` only
//! once its message is committed; `disconnect` answered with a fresh URL at once, a dropped
//! socket after a backoff. Replies go out with `chat.postMessage` (in the thread when the
//! message came from one); a 429 waits its `Retry-After`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Ack;
use super::account::{Account, Phase};
use super::api::{self, ApiError};
use super::config::SlackMode;
use super::events::{self, Callback, SocketFrame};
use super::users::{LOOKUP_WAIT, Need};
use crate::channels::account::{Kind, Transport};
use crate::channels::inbound::{self, Access, Target};
use crate::channels::ingress::Event;
use crate::channels::{Answer, Due, Failure, Purpose as ChannelPurpose, Receipt, Step};
use crate::gateway::Gateway;
use crate::log::Level;
use crate::work::{WorkId, WorkResult, WsOpen};

/// The largest Socket Mode message read.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// What a Slack call of its own is for.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// `auth.test`.
    AuthTest,
    /// `apps.connections.open`.
    ConnectionsOpen,
    /// `users.info` for this user.
    UsersInfo(String),
}

/// A finished Web API call as the channels' result.
pub(crate) fn result(answer: Result<Answer<'_>, String>) -> Result<Value, Failure> {
    answer
        .map_err(Failure::Transport)
        .and_then(|a| api::decode(a.status, a.headers, a.body).map_err(failure))
}

/// A Web API error as the channels' failure.
fn failure(e: ApiError) -> Failure {
    match e {
        ApiError::Refused(ref error) => Failure::Refused {
            code: 200,
            description: error.clone(),
            retry_after: None,
            auth: e.is_auth(),
            permanent: e.is_permanent(),
        },
        ApiError::RateLimited(secs) => Failure::Refused {
            code: 429,
            description: "ratelimited".into(),
            retry_after: Some(Duration::from_secs(secs)),
            auth: false,
            permanent: false,
        },
        e @ ApiError::Unreadable { .. } => Failure::Transport(e.to_string()),
    }
}

impl Gateway {
    fn sl(&mut self, key: &str) -> Option<&mut Account> {
        match self
            .channels
            .accounts
            .get_mut(key)
            .map(|a| &mut a.transport)
        {
            Some(Transport::Slack(s)) => Some(s),
            _ => None,
        }
    }

    fn sl_bot_token(&mut self, key: &str) -> Option<String> {
        let a = self.sl(key)?;
        let (t, _) = a.cfg.common.token.as_ref().ok()?;
        Some(t.expose().to_string())
    }

    /// Start account `key` (its bot token is there): `auth.test` first; or why it cannot.
    pub(crate) fn sl_start(&mut self, now: Instant, key: &str) -> Result<(), String> {
        let Some(a) = self.sl(key) else {
            return Ok(());
        };
        match a.cfg.mode {
            SlackMode::Relay => {
                return Err(
                    "mode \"relay\" is not supported by clawgate; use socket or http".into(),
                );
            }
            SlackMode::Socket => {
                if let Err(e) = &a.cfg.app_token {
                    return Err(e.clone());
                }
            }
            SlackMode::Http => {}
        }
        self.log(
            now,
            Level::Info,
            None,
            format!("{key}: starting (auth.test)"),
        );
        self.sl_auth(key);
        Ok(())
    }

    fn sl_auth(&mut self, key: &str) {
        let Some(token) = self.sl_bot_token(key) else {
            return;
        };
        let Some(a) = self.sl(key) else {
            return;
        };
        a.phase = Phase::Authenticating;
        let request = api::request(&a.cfg.api_url, &token, "auth.test", &Value::Null);
        self.channel_call(key, ChannelPurpose::Slack(Purpose::AuthTest), request);
    }

    /// Ask for a fresh Socket Mode URL (`apps.connections.open`, with the app token).
    fn sl_connections_open(&mut self, key: &str) {
        let Some(a) = self.sl(key) else {
            return;
        };
        let Ok(app) = a.cfg.app_token.as_ref().map(|t| t.expose().to_string()) else {
            return;
        };
        a.phase = Phase::Connecting;
        if let Some(old) = a.socket.take() {
            self.close_socket(old, 1000);
        }
        let Some(a) = self.sl(key) else {
            return;
        };
        let request = api::request(&a.cfg.api_url, &app, "apps.connections.open", &Value::Null);
        self.channel_call(
            key,
            ChannelPurpose::Slack(Purpose::ConnectionsOpen),
            request,
        );
    }

    /// Stop account `key`: its socket is closed.
    pub(crate) fn sl_stop(&mut self, key: &str) {
        let Some(a) = self.sl(key) else {
            return;
        };
        a.phase = Phase::Stopped;
        if let Some(socket) = a.socket.take() {
            self.close_socket(socket, 1000);
        }
    }

    /// A backoff is over: authenticate again, or (authenticated) reconnect.
    pub(crate) fn sl_retry(&mut self, now: Instant, key: &str) {
        let Some(a) = self.sl(key) else {
            return;
        };
        if a.phase != Phase::Waiting {
            return;
        }
        match (a.me.is_some(), a.cfg.mode) {
            (true, SlackMode::Socket) => self.sl_connections_open(key),
            (true, _) => self.sl_ready(now, key),
            (false, _) => self.sl_auth(key),
        }
    }

    fn sl_ready(&mut self, now: Instant, key: &str) {
        let ts = self.unix_ms(now);
        if let Some(a) = self.sl(key) {
            a.phase = Phase::Ready;
            a.last_connected_at = Some(ts);
        }
        if let Some(a) = self.channels.accounts.get_mut(key) {
            a.status.failures = 0;
        }
    }

    /// A Slack call of its own ended.
    pub(crate) fn sl_call_done(
        &mut self,
        now: Instant,
        key: &str,
        purpose: &Purpose,
        answer: Result<Answer<'_>, String>,
    ) {
        match purpose {
            Purpose::AuthTest => {
                if self
                    .sl(key)
                    .is_none_or(|a| a.phase != Phase::Authenticating)
                {
                    return;
                }
                let me = result(answer)
                    .and_then(|v| api::identity(&v).map_err(|e| Failure::Transport(e.to_string())));
                match me {
                    Err(f) => self.account_failed(now, key, "auth.test", f),
                    Ok(me) => {
                        self.log(
                            now,
                            Level::Info,
                            None,
                            format!("{key}: authenticated as {}", me.user_id),
                        );
                        let Some(a) = self.sl(key) else {
                            return;
                        };
                        a.me = Some(me);
                        if a.cfg.mode == SlackMode::Socket {
                            self.sl_connections_open(key);
                        } else {
                            self.sl_ready(now, key);
                        }
                    }
                }
            }
            Purpose::UsersInfo(user) => self.sl_user_answered(now, key, user, answer),
            Purpose::ConnectionsOpen => {
                if self.sl(key).is_none_or(|a| a.phase != Phase::Connecting) {
                    return;
                }
                let url = result(answer).and_then(|v| {
                    api::socket_url(&v).map_err(|e| Failure::Transport(e.to_string()))
                });
                match url {
                    Err(f) => self.account_failed(now, key, "apps.connections.open", f),
                    Ok(url) => {
                        let open = WsOpen {
                            url,
                            headers: Vec::new(),
                            max_message: MAX_MESSAGE,
                        };
                        let socket = self.open_socket(key, open);
                        if let Some(a) = self.sl(key) {
                            a.socket = Some(socket);
                        }
                    }
                }
            }
        }
    }

    /// A result of account `key`'s socket `id`.
    pub(crate) fn sl_socket(&mut self, now: Instant, key: &str, id: WorkId, result: WorkResult) {
        if self.sl(key).is_none_or(|a| a.socket != Some(id)) {
            return;
        }
        match result {
            WorkResult::WsText(text) => match events::parse_socket_frame(&text) {
                Ok(frame) => self.sl_frame(now, key, id, frame),
                Err(e) => self.log(now, Level::Warn, None, format!("{key}: {e}")),
            },
            WorkResult::WsClosed { code, reason } => {
                if let Some(a) = self.sl(key) {
                    a.socket = None;
                }
                let why = match code {
                    Some(c) => format!("Slack closed the socket: {c} {reason}"),
                    None => format!("socket ended: {reason}"),
                };
                self.account_failed(now, key, "socket mode", Failure::Transport(why));
            }
            _ => {}
        }
    }

    fn sl_frame(&mut self, now: Instant, key: &str, socket: WorkId, frame: SocketFrame) {
        match frame {
            SocketFrame::Hello => {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!("{key}: socket mode connected"),
                );
                self.sl_ready(now, key);
            }
            SocketFrame::Disconnect(reason) => {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!("{key}: Slack asked to reconnect ({reason}); opening a fresh socket"),
                );
                self.sl_connections_open(key);
            }
            SocketFrame::Envelope {
                envelope_id,
                callback,
            } => {
                let ack = Ack::Socket {
                    socket,
                    envelope_id,
                };
                match callback {
                    Callback::Message(m) => self.slack_ingest(now, key, *m, ack),
                    Callback::UrlVerification(_) | Callback::Ignored(_) => {
                        self.slack_acked(now, ack, true)
                    }
                }
            }
        }
    }

    /// Queue a Slack message of account `key` durably (unless it is a redelivery), then
    /// acknowledge it: once its batch (or the one already carrying it) is durable.
    pub(crate) fn slack_ingest(
        &mut self,
        now: Instant,
        key: &str,
        m: events::SlackMessage,
        ack: Ack,
    ) {
        let account = key.strip_prefix("slack:").unwrap_or(key).to_string();
        let bot = self
            .sl(key)
            .and_then(|a| a.me.as_ref().map(|m| m.user_id.clone()));
        let inbound = m.into_inbound(&account, bot.as_deref());
        let receipt = Receipt::Slack(ack);
        if !self.receive(now, key, vec![inbound], Vec::new(), receipt.clone()) {
            self.hold_channel_step(now, Step::Received(key.to_string(), receipt));
        }
    }

    /// Whether queued Slack message `ev` waits for its sender's name (its lane held until
    /// the `users.info` it started or joined is over); otherwise it goes on, with the name
    /// when one is known. A name is needed when the message reaches the agent or asks for
    /// pairing, or when the sender is refused by an allowlist that may name it
    /// (`dangerouslyAllowNameMatching`).
    pub(crate) fn sl_wait_for_name(&mut self, now: Instant, ev: &mut Event) -> bool {
        let m = &ev.inbound;
        if m.channel != Kind::Slack.id() || ev.named || m.sender.name.is_some() {
            return false;
        }
        let Some(a) = self.channels.account(&m.channel, &m.account) else {
            return false;
        };
        let policy = a.access();
        let approved = self
            .channels
            .pairing
            .is_approved(&m.channel, &m.account, &m.sender.id);
        let needed = match inbound::decide(policy, m, approved) {
            Access::Allow | Access::Pair => true,
            refused => policy.name_matching && refused.refuses_the_sender(),
        };
        let key = Kind::Slack.key(&m.account);
        let (seq, user) = (ev.seq, m.sender.id.clone());
        let users = self.channels.slack_users.entry(key.clone()).or_default();
        let need = if needed {
            users.need(&user, seq)
        } else {
            Need::Skip
        };
        let name = match need {
            Need::Joined => {
                self.channels.ingress.hold(seq);
                return true;
            }
            Need::Start if !users.paused(now) => {
                if self.sl_lookup(now, &key, &user, seq) {
                    return true;
                }
                None
            }
            Need::Known(name) => name,
            Need::Start | Need::Skip => None,
        };
        self.channels.ingress.named(seq, name.clone());
        ev.named = true;
        if name.is_some() {
            ev.inbound.sender.name = name;
        }
        false
    }

    /// Start `users.info` for `user` of account `key`, message `seq` waiting for it at most
    /// [`LOOKUP_WAIT`]; false when the account has no token.
    fn sl_lookup(&mut self, now: Instant, key: &str, user: &str, seq: u64) -> bool {
        let Some(token) = self.sl_bot_token(key) else {
            return false;
        };
        let Some(a) = self.sl(key) else {
            return false;
        };
        let request = api::form_request(&a.cfg.api_url, &token, "users.info", &[("user", user)]);
        let purpose = ChannelPurpose::Slack(Purpose::UsersInfo(user.to_string()));
        let call = self.channel_call(key, purpose, request);
        let due = Due::SlackUser(key.to_string(), user.to_string());
        let timer = self.channel_timer_at(now + LOOKUP_WAIT, due);
        if let Some(users) = self.channels.slack_users.get_mut(key) {
            users.started(user, call, timer, seq);
        }
        self.channels.ingress.hold(seq);
        true
    }

    /// `users.info` for `user` of account `key` answered: its name is kept (a failure is
    /// not; a 429 pauses lookups for its `Retry-After`), and what waited goes on.
    fn sl_user_answered(
        &mut self,
        now: Instant,
        key: &str,
        user: &str,
        answer: Result<Answer<'_>, String>,
    ) {
        let users = self
            .channels
            .slack_users
            .entry(key.to_string())
            .or_default();
        let name = match result(answer) {
            Ok(v) => {
                let name = api::user_name(&v);
                users.remember(user, name.clone());
                name
            }
            Err(f) => {
                if let Some(wait) = f.retry_after() {
                    users.pause(now + wait);
                }
                self.log(
                    now,
                    Level::Warn,
                    None,
                    format!("{key}: users.info {user}: {f}; going on without a name"),
                );
                None
            }
        };
        self.sl_lookup_over(now, key, user, name);
    }

    /// `users.info` for `user` of account `key` took longer than [`LOOKUP_WAIT`]: it is
    /// cancelled and what waited goes on without a name.
    pub(crate) fn sl_lookup_timed_out(&mut self, now: Instant, key: &str, user: &str) {
        let Some(call) = self
            .channels
            .slack_users
            .get(key)
            .and_then(|u| u.in_flight(user))
            .map(|l| l.call)
        else {
            return;
        };
        self.channels.calls.remove(&call);
        self.cancel_work(call);
        self.log(
            now,
            Level::Warn,
            None,
            format!(
                "{key}: users.info {user} took over {} ms; going on without a name",
                LOOKUP_WAIT.as_millis()
            ),
        );
        self.sl_lookup_over(now, key, user, None);
    }

    fn sl_lookup_over(&mut self, now: Instant, key: &str, user: &str, name: Option<String>) {
        let Some(lookup) = self
            .channels
            .slack_users
            .get_mut(key)
            .and_then(|u| u.finish(user))
        else {
            return;
        };
        self.cancel_channel_timer(Some(lookup.timer));
        for seq in lookup.waiting {
            self.channels.ingress.named(seq, name.clone());
        }
        self.serve_ingress(now);
    }

    /// Send one message; false when the account has no token.
    pub(crate) fn sl_send(
        &mut self,
        key: &str,
        purpose: ChannelPurpose,
        to: &Target,
        text: &str,
    ) -> bool {
        let Some(token) = self.sl_bot_token(key) else {
            return false;
        };
        let Some(a) = self.sl(key) else {
            return false;
        };
        let body = api::post_message(&to.to, text, to.thread.as_deref());
        let request = api::request(&a.cfg.api_url, &token, "chat.postMessage", &body);
        self.channel_call(key, purpose, request);
        true
    }
}

impl From<Purpose> for ChannelPurpose {
    fn from(p: Purpose) -> Self {
        ChannelPurpose::Slack(p)
    }
}
