//! What Telegram supplies to the transport-generic channels: an account's start (`getMe`,
//! `deleteWebhook`, then the long poll) and stop, the poll and its watchdog, the updates it
//! hands to [`Gateway::receive`] with the offset that confirms them, and the `sendMessage`
//! and `sendChatAction` calls that deliver a reply and show typing. Every Bot API call goes
//! on the account's transport attempt ([`super::transport`]), and again on the next one when
//! it fails at the transport.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::api::{self, ApiError};
use super::transport::{Next, Note, Tried};
use crate::channels::account::Transport;
use crate::channels::inbound::{Inbound, Target};
use crate::channels::{
    Answer, Call, Due as ChannelDue, Failure, Purpose as ChannelPurpose, Receipt, Step,
};
use crate::gateway::Gateway;
use crate::log::Level;
use crate::model::HttpRequest;
use crate::persist::{ChannelRowKind, RowText, StoreChange};
use crate::work::{HttpError, WorkId};

use super::account::{Account, Phase};

/// How long past its own timeout a poll may run before the watchdog restarts it.
pub const POLL_MARGIN: Duration = Duration::from_secs(15);

/// What a Telegram call of its own is for.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// `getMe` at start.
    GetMe,
    /// `deleteWebhook` before polling.
    DeleteWebhook,
    /// `getUpdates`.
    Poll,
}

/// A Telegram timer.
#[derive(Clone, Debug)]
pub enum Due {
    /// This poll should have returned by now.
    Watchdog(WorkId),
    /// This call was not started (every transport attempt left cools down): it fails so.
    NotStarted(WorkId, String),
}

/// A Bot API call's transport attempt: where its request started and is, and a copy of it
/// to send on the next attempt when there is one.
#[derive(Debug)]
pub(crate) struct Attempt {
    tried: Tried,
    request: Option<HttpRequest>,
}

/// A Bot API answer decoded: the `result` (when the caller `reads` it, else `null`), or why
/// the call failed.
pub(crate) fn result(answer: Result<Answer<'_>, String>, reads: bool) -> Result<Value, Failure> {
    answer.map_err(Failure::Transport).and_then(|a| {
        let decoded = if reads {
            api::result(a.status, a.body)
        } else {
            api::accepted(a.status, a.body).map(|()| Value::Null)
        };
        decoded.map_err(failure)
    })
}

/// A Bot API error as the channels' failure: 401 and 404 mean a bad token.
fn failure(e: ApiError) -> Failure {
    let permanent = e.is_permanent();
    match e {
        ApiError::Refused {
            code,
            description,
            retry_after,
        } => Failure::Refused {
            code,
            description,
            retry_after: retry_after.map(Duration::from_secs),
            auth: matches!(code, 401 | 404),
            permanent,
        },
        e @ ApiError::Unreadable { .. } => Failure::Transport(e.to_string()),
    }
}

fn offset_row(account: &str, offset: i64) -> StoreChange {
    StoreChange::PutChannelRow {
        kind: ChannelRowKind::Offset,
        key: account.to_string(),
        row: RowText::from_encoded(&format!("{{\"offset\":{offset}}}")),
    }
}

/// Whether an API root points at a loopback or private address (refused unless
/// `network.dangerouslyAllowPrivateNetwork`).
fn private_api_root(root: &str) -> bool {
    let host = root
        .split_once("://")
        .map_or(root, |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<core::net::IpAddr>() {
        Ok(core::net::IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Ok(core::net::IpAddr::V6(ip)) => {
            let unique_local = ip.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00);
            ip.is_loopback() || ip.is_unspecified() || unique_local
        }
        Err(_) => false,
    }
}

impl Account {
    /// Take a stored offset row.
    pub(crate) fn restore_offset(&mut self, row: &Value) -> bool {
        match row.get("offset").and_then(Value::as_i64) {
            Some(o) => {
                self.offset = self.offset.max(o);
                true
            }
            None => false,
        }
    }
}

impl Gateway {
    fn tg(&mut self, key: &str) -> Option<&mut Account> {
        match self
            .channels
            .accounts
            .get_mut(key)
            .map(|a| &mut a.transport)
        {
            Some(Transport::Telegram(t)) => Some(t),
            _ => None,
        }
    }

    /// Start account `key` (its token is there): `getMe` first; or why it cannot start.
    pub(crate) fn tg_start(&mut self, now: Instant, key: &str) -> Result<(), String> {
        let Some(a) = self.tg(key) else {
            return Ok(());
        };
        if a.cfg.proxy.is_some() {
            return Err(format!(
                "channels.telegram.proxy is not supported by clawgate; remove it to reach {} directly",
                a.cfg.api_root
            ));
        }
        if private_api_root(&a.cfg.api_root) && !a.cfg.allow_private_network {
            return Err(format!(
                "channels.telegram.apiRoot {} is a private address: set channels.telegram.network.dangerouslyAllowPrivateNetwork to true to allow it",
                a.cfg.api_root
            ));
        }
        a.phase = Phase::Identifying;
        self.log(now, Level::Info, None, format!("{key}: starting (getMe)"));
        self.tg_call(now, key, Purpose::GetMe.into(), "getMe", "{}".into());
        Ok(())
    }

    /// Stop account `key`: its poll is cancelled.
    pub(crate) fn tg_stop(&mut self, key: &str) {
        let Some(a) = self.tg(key) else {
            return;
        };
        a.phase = Phase::Stopped;
        let watchdog = a.watchdog.take();
        if let Some(poll) = a.poll.take() {
            self.cancel_work(poll);
        }
        self.cancel_channel_timer(watchdog);
    }

    /// Issue Bot API `method` for account `key` on its transport attempt; its id.
    fn tg_call(
        &mut self,
        now: Instant,
        key: &str,
        purpose: ChannelPurpose,
        method: &str,
        body: String,
    ) -> Option<WorkId> {
        let a = self.tg(key)?;
        let (token, _) = a.cfg.common.token.as_ref().ok()?;
        let request = api::request(&a.cfg.api_root, token.expose(), method, body);
        let mut notes = Vec::new();
        let (start, next) = a.transport.begin(now, &mut notes);
        self.tg_notes(now, key, notes);
        Some(self.tg_attempt(now, key, purpose, request, start, next))
    }

    /// Send `request` on the attempt `next` says (it started on `start`), or have it fail
    /// untried; its id.
    fn tg_attempt(
        &mut self,
        now: Instant,
        key: &str,
        purpose: ChannelPurpose,
        request: HttpRequest,
        start: usize,
        next: Next,
    ) -> WorkId {
        let attempt = match next {
            Next::Try(attempt) => attempt,
            Next::Fail(error) => {
                let id = self.next_work_id();
                self.channels.calls.insert(id, Call::new(key, purpose));
                let due = ChannelDue::Telegram(key.to_string(), Due::NotStarted(id, error));
                self.channel_timer_at(now, due);
                return id;
            }
        };
        let (dialing, later) = match self.tg(key) {
            Some(a) => (a.transport.dialing(attempt), a.transport.has_after(attempt)),
            None => (request.dialing, false),
        };
        let request = HttpRequest { dialing, ..request };
        let copy = later.then(|| request.clone());
        let id = self.channel_call(key, purpose, request);
        if let Some(call) = self.channels.calls.get_mut(&id) {
            call.attempt = Some(Attempt {
                tried: Tried { start, attempt },
                request: copy,
            });
        }
        id
    }

    /// The transport's log lines for account `key`.
    fn tg_notes(&mut self, now: Instant, key: &str, notes: Vec<Note>) {
        for n in notes {
            self.log(now, n.level, None, format!("{key}: {}", n.text));
        }
    }

    /// A Bot API call ended (`end`; any HTTP status is an answer): its transport attempt
    /// learns how it went, and a transport failure goes on the next attempt (`None`: it is
    /// under way again, the account's poll under its new id). Otherwise the call and its
    /// end, as the transport leaves it (a failure that skipped cooling attempts says so).
    pub(in crate::channels) fn tg_transport_end(
        &mut self,
        now: Instant,
        id: WorkId,
        mut call: Call,
        end: Result<(), HttpError>,
    ) -> Option<(Call, Result<(), String>)> {
        let answered = call.status != 0;
        let Some(at) = call.attempt.take() else {
            return Some((call, end.map_err(|e| e.message)));
        };
        let Some(a) = self.tg(&call.account) else {
            return Some((call, end.map_err(|e| e.message)));
        };
        let mut notes = Vec::new();
        let next = match &end {
            Err(e) if !answered => Some(a.transport.failed(now, at.tried, e, &mut notes)),
            _ => {
                a.transport.succeeded(at.tried, &mut notes);
                None
            }
        };
        self.tg_notes(now, &call.account, notes);
        let Some(next) = next else {
            return Some((call, end.map_err(|e| e.message)));
        };
        let key = call.account.clone();
        match (next, at.request) {
            (Next::Try(attempt), Some(request)) => {
                let next = Next::Try(attempt);
                let again = self.tg_attempt(now, &key, call.purpose, request, at.tried.start, next);
                self.tg_poll_moved(now, &key, id, again);
                None
            }
            (Next::Fail(error), _) => Some((call, Err(error))),
            (Next::Try(_), None) => Some((call, end.map_err(|e| e.message))),
        }
    }

    /// The poll `from` goes on as `to`: its watchdog too (from now).
    fn tg_poll_moved(&mut self, now: Instant, key: &str, from: WorkId, to: WorkId) {
        let Some(a) = self.tg(key).filter(|a| a.poll == Some(from)) else {
            return;
        };
        a.poll = Some(to);
        let watchdog = a.watchdog.take();
        self.cancel_channel_timer(watchdog);
        let limit = Duration::from_secs(api::POLL_TIMEOUT_SECS) + POLL_MARGIN;
        let due = ChannelDue::Telegram(key.to_string(), Due::Watchdog(to));
        let watchdog = self.channel_timer_at(now + limit, due);
        if let Some(a) = self.tg(key) {
            a.watchdog = Some(watchdog);
        }
    }

    /// A backoff is over: identify again, or poll.
    pub(crate) fn tg_retry(&mut self, now: Instant, key: &str) {
        let Some(a) = self.tg(key) else {
            return;
        };
        if a.phase != Phase::Waiting {
            return;
        }
        if a.me.id == 0 {
            a.phase = Phase::Identifying;
            self.tg_call(now, key, Purpose::GetMe.into(), "getMe", "{}".into());
        } else {
            self.tg_poll(now, key);
        }
    }

    /// A Telegram timer fired.
    pub(crate) fn tg_timer(&mut self, now: Instant, key: &str, due: Due) {
        let id = match due {
            Due::Watchdog(id) => id,
            Due::NotStarted(id, error) => {
                if let Some(call) = self.channels.calls.remove(&id) {
                    self.call_done(now, id, &call, Err(error));
                }
                return;
            }
        };
        let stalled = self.tg(key).is_some_and(|a| a.poll == Some(id));
        if stalled {
            let limit = Duration::from_secs(api::POLL_TIMEOUT_SECS) + POLL_MARGIN;
            let e = format!(
                "getUpdates did not return within {} s; restarted by the watchdog",
                limit.as_secs()
            );
            self.log(now, Level::Warn, None, format!("{key}: {e}"));
            if let Some(a) = self.tg(key) {
                a.poll = None;
                a.watchdog = None;
            }
            if let Some(a) = self.channels.accounts.get_mut(key) {
                a.status.last_error = Some(e);
            }
            self.channels.calls.remove(&id);
            self.cancel_work(id);
            self.tg_poll(now, key);
        }
    }

    /// Long-poll account `key` for updates, unless it is polling, committing or stopped.
    pub(crate) fn tg_poll(&mut self, now: Instant, key: &str) {
        let pending = self.channels.ingress.pending();
        let Some(a) = self.tg(key) else {
            return;
        };
        if a.poll.is_some() || a.committing || a.phase == Phase::Stopped {
            return;
        }
        a.phase = Phase::Polling;
        if pending >= crate::channels::MAX_UNSERVED {
            return; // resumed by `tg_resume_polls` once turns end
        }
        let body = api::get_updates(a.offset);
        if let Some(id) = self.tg_call(now, key, Purpose::Poll.into(), "getUpdates", body) {
            if let Some(a) = self.tg(key) {
                a.poll = Some(id);
            }
            let limit = Duration::from_secs(api::POLL_TIMEOUT_SECS) + POLL_MARGIN;
            let watchdog = self.channel_timer_at(
                now + limit,
                ChannelDue::Telegram(key.to_string(), Due::Watchdog(id)),
            );
            if let Some(a) = self.tg(key) {
                a.watchdog = Some(watchdog);
            }
        }
    }

    /// A Telegram call of its own ended.
    pub(crate) fn tg_call_done(
        &mut self,
        now: Instant,
        id: WorkId,
        key: &str,
        purpose: &Purpose,
        answer: Result<Answer<'_>, String>,
    ) {
        if let Purpose::Poll = purpose {
            let Some(a) = self.tg(key).filter(|a| a.poll == Some(id)) else {
                return; // cancelled by the watchdog or a stop
            };
            a.poll = None;
            let watchdog = a.watchdog.take();
            let me = a.me.clone();
            let account = key.strip_prefix("telegram:").unwrap_or(key).to_string();
            self.cancel_channel_timer(watchdog);
            match answer
                .map_err(Failure::Transport)
                .and_then(|a| api::updates(a.status, a.body, &account, &me).map_err(failure))
            {
                Ok(updates) => self.polled(now, key, updates),
                Err(f) => self.account_failed(now, key, "getUpdates", f),
            }
            return;
        }
        match (purpose, result(answer, true)) {
            (Purpose::GetMe, Ok(v)) => match api::me(v) {
                Ok(me) => {
                    self.log(
                        now,
                        Level::Info,
                        None,
                        format!(
                            "{key}: bot @{} (id {})",
                            me.username.as_deref().unwrap_or("?"),
                            me.id
                        ),
                    );
                    if let Some(a) = self.tg(key) {
                        a.me = me;
                        a.phase = Phase::ClearingWebhook;
                    }
                    self.tg_call(
                        now,
                        key,
                        Purpose::DeleteWebhook.into(),
                        "deleteWebhook",
                        r#"{"drop_pending_updates":false}"#.into(),
                    );
                }
                Err(e) => self.account_failed(now, key, "getMe", failure(e)),
            },
            (Purpose::GetMe, Err(f)) => self.account_failed(now, key, "getMe", f),
            (Purpose::DeleteWebhook, r) => {
                if let Err(f) = r {
                    if f.is_auth() {
                        return self.account_failed(now, key, "deleteWebhook", f);
                    }
                    self.log(
                        now,
                        Level::Warn,
                        None,
                        format!("{key}: deleteWebhook failed ({f}); continuing to polling"),
                    );
                }
                self.tg_poll(now, key);
            }
            (Purpose::Poll, _) => {}
        }
    }

    /// A poll answered: commit the new messages and the offset past them, then confirm.
    fn polled(&mut self, now: Instant, key: &str, updates: Vec<api::Update>) {
        let ts = self.unix_ms(now);
        if let Some(a) = self.channels.accounts.get_mut(key) {
            a.status.failures = 0;
        }
        let Some(a) = self.tg(key) else {
            return;
        };
        a.last_poll_at = Some(ts);
        let offset = a.offset;
        let mut next = offset;
        let mut messages = Vec::new();
        for u in updates.into_iter().filter(|u| u.update_id >= offset) {
            next = next.max(u.update_id.saturating_add(1));
            messages.extend(u.message);
        }
        if next == offset {
            self.tg_poll(now, key);
            return;
        }
        if let Some(a) = self.tg(key) {
            a.committing = true;
        }
        let rows = vec![offset_row(key, next)];
        self.receive(now, key, messages, rows, Receipt::Offset(next));
    }

    /// The updates up to `offset` are durable (or failed to be): poll on from there.
    pub(crate) fn tg_received(&mut self, now: Instant, key: &str, offset: i64, durable: bool) {
        if let Some(a) = self.tg(key) {
            a.committing = false;
            if durable {
                a.offset = a.offset.max(offset);
            }
        }
        if durable {
            // The next poll goes behind the batches in flight now, when there are any: the
            // message's answer, when the model answered at once, is among them (committed in
            // the same transaction, reported in the same wake-up), and its reply then leaves
            // before the next `getUpdates` instead of behind it. Not held at all when nothing
            // else is being written.
            self.hold_channel_step(now, Step::Poll(key.to_string()));
        } else {
            self.account_failed(
                now,
                key,
                "store",
                Failure::Transport("the update batch was not saved".into()),
            );
        }
    }

    /// Poll again on accounts that waited for the queue to drain.
    pub(crate) fn tg_resume_polls(&mut self, now: Instant) {
        let idle: Vec<String> = self
            .channels
            .accounts
            .iter()
            .filter(|(_, a)| match &a.transport {
                Transport::Telegram(t) => {
                    t.phase == Phase::Polling && t.poll.is_none() && !t.committing
                }
                Transport::Discord(_) | Transport::Slack(_) => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            self.tg_poll(now, &key);
        }
    }

    /// Show typing in the chat of `m`.
    pub(crate) fn tg_typing(&mut self, now: Instant, key: &str, m: &Inbound) {
        let body = api::typing(&m.chat_id, m.thread.as_deref());
        self.tg_call(now, key, ChannelPurpose::Typing, "sendChatAction", body);
    }

    /// Send one rendered (HTML) message; false when the account has no token.
    pub(crate) fn tg_send(
        &mut self,
        now: Instant,
        key: &str,
        purpose: ChannelPurpose,
        to: &Target,
        html: &str,
    ) -> bool {
        let body = api::send_message(&to.to, html, to.thread.as_deref());
        self.tg_call(now, key, purpose, "sendMessage", body)
            .is_some()
    }
}

impl From<Purpose> for ChannelPurpose {
    fn from(p: Purpose) -> Self {
        ChannelPurpose::Telegram(p)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_offset_row_is_the_text_of_its_value() {
        for offset in [i64::MIN, -1, 0, 7, 860_000_123, i64::MAX] {
            let StoreChange::PutChannelRow { row, .. } = offset_row("default", offset) else {
                panic!("not a channel row");
            };
            assert_eq!(row.as_str(), json!({"offset": offset}).to_string());
        }
    }

    #[test]
    fn private_roots_are_recognised() {
        for r in [
            "http://127.0.0.1:9",
            "http://localhost",
            "http://10.1.2.3/x",
            "http://[::1]:8/",
            "http://192.168.0.1",
        ] {
            assert!(private_api_root(r), "{r}");
        }
        for r in ["https://api.telegram.org", "http://8.8.8.8:80"] {
            assert!(!private_api_root(r), "{r}");
        }
    }
}
