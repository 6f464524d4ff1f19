//! Channels inside the gateway (Telegram first), sans-IO. A transport's calls leave as
//! [`Work::Http`] and come back as results; its messages are normalised into the general
//! [`inbound::Inbound`], committed to the durable queue ([`ingress`]) before the offset that
//! confirms them is requested, checked ([`inbound::decide`], [`pairing`]), and served in
//! per-chat lanes: an allowed message becomes a turn of the agent in the session
//! [`inbound::Inbound::session_key`] names; the turn's answer is rendered, cut, stored in the
//! [`outbox`] with the transcript, and delivered with retries.
//!
//! The interface a transport fills in is [`inbound`]: Slack or Discord produce the same
//! `Inbound` and deliver to the same `Target`; the queue, access, routing and outbox are theirs
//! unchanged.

pub mod config;
pub mod inbound;
pub mod ingress;
mod methods;
pub mod outbox;
pub mod pairing;
pub mod telegram;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::QueueMode;
use crate::gateway::{Gateway, Output, Timer};
use crate::log::Level;
use crate::persist::{ChannelRowKind, StoreChange, StoredChannelRow};
use crate::work::{Work, WorkId, WorkResult};

use inbound::{Access, Inbound};
use outbox::AfterFailure;
use pairing::{PairingRequest, Requested};
use telegram::account::{Account, Phase};
use telegram::api::{self, ApiError};

/// The first backoff after a failure; it doubles per failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long past its own timeout a poll may run before the watchdog restarts it.
pub const POLL_MARGIN: Duration = Duration::from_secs(15);
/// How often the typing action is repeated while a turn runs.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(5);
/// The largest Bot API answer read.
pub const MAX_API_BODY: usize = 8 * 1024 * 1024;
/// Messages received and not served yet at most: past it, polls wait until turns end, so
/// memory follows this bound and not the traffic (Telegram keeps what is not confirmed).
pub const MAX_UNSERVED: usize = 500;

/// What a Bot API call is for.
#[derive(Clone, Debug)]
enum Purpose {
    GetMe,
    DeleteWebhook,
    Poll,
    Deliver(u64),
    Typing,
    /// The `send` RPC with this idempotency key: answer its callers.
    Send(String),
}

/// A Bot API call in flight.
#[derive(Debug)]
struct Call {
    account: String,
    purpose: Purpose,
    status: u16,
    body: Vec<u8>,
}

/// A channel timer.
#[derive(Clone, Debug)]
enum Due {
    /// An account's backoff is over: start (or poll) again.
    Retry(String),
    /// A poll should have returned by now.
    Watchdog(String, WorkId),
    /// Repeat the typing action while this run lasts.
    Typing(String),
    /// A delivery's backoff is over.
    Redeliver(u64),
}

/// What waits for a store batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// New updates of this account are committed: confirm them with this offset.
    Polled(String, i64),
    /// Rows were committed: serve the queue and send what waits.
    Committed,
}

/// The channels' state: accounts, pairing, the queue, the outbox, calls and timers.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    accounts: BTreeMap<String, Account>,
    pub(crate) pairing: pairing::ChannelPairing,
    ingress: ingress::Ingress,
    outbox: outbox::Outbox,
    calls: HashMap<WorkId, Call>,
    timers: HashMap<u64, Due>,
    next_timer: u64,
    unsaved: Vec<StoreChange>,
    /// `send` calls in flight by idempotency key: the callers to answer.
    sends: HashMap<String, Vec<(crate::ConnId, String)>>,
}

impl Channels {
    /// Whether work `id` is a channel call.
    pub(crate) fn owns(&self, id: WorkId) -> bool {
        self.calls.contains_key(&id)
    }

    /// The row changes for the next store batch (a failed batch is replayed by the
    /// durability layer, so these are never needed twice).
    pub(crate) fn store_changes(&mut self) -> Vec<StoreChange> {
        std::mem::take(&mut self.unsaved)
    }
}

/// The idempotency cache key of a `send`.
fn send_key(idempotency_key: &str) -> String {
    format!("send:{idempotency_key}")
}

fn offset_row(account: &str, offset: i64) -> StoreChange {
    StoreChange::PutChannelRow {
        kind: ChannelRowKind::Offset,
        key: account.to_string(),
        row: json!({"offset": offset}),
    }
}

/// The key of a Telegram account in [`Channels`].
fn tg_key(account: &str) -> String {
    format!("telegram:{account}")
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

impl Gateway {
    /// Start every configured account (at start-up).
    pub(crate) fn start_channels(&mut self, now: Instant) {
        for cfg in self.config.channels.telegram.clone() {
            let key = tg_key(&cfg.account_id);
            self.channels
                .accounts
                .insert(key.clone(), Account::new(cfg));
            self.start_account(now, &key);
        }
    }

    /// A new configuration: accounts keep their transport; policies and limits apply at once.
    pub(crate) fn channels_reloaded(&mut self, now: Instant) {
        for cfg in self.config.channels.telegram.clone() {
            let key = tg_key(&cfg.account_id);
            match self.channels.accounts.get_mut(&key) {
                Some(a) => {
                    let token_changed = a.cfg.token != cfg.token || a.cfg.api_root != cfg.api_root;
                    a.cfg = cfg;
                    if token_changed {
                        self.log(
                            now,
                            Level::Info,
                            None,
                            format!("{key}: token or apiRoot changed; restarting"),
                        );
                        self.stop_account(now, &key);
                        self.start_account(now, &key);
                    }
                }
                None => {
                    self.channels
                        .accounts
                        .insert(key.clone(), Account::new(cfg));
                    self.start_account(now, &key);
                }
            }
        }
    }

    /// Load the channel rows the store kept (at start, before the first result comes back):
    /// pairing, the queue, the outbox, offsets. Turns that were running are run again and
    /// messages waiting are sent.
    pub fn restore_channels(&mut self, rows: Vec<StoredChannelRow>) {
        let now = self.last_wake();
        for r in rows {
            let ok = match r.kind {
                ChannelRowKind::PairingRequest | ChannelRowKind::PairingApproval => {
                    self.channels.pairing.restore(r.kind, r.row)
                }
                ChannelRowKind::Ingress => self.channels.ingress.restore(r.row),
                ChannelRowKind::Outbox => self.channels.outbox.restore(r.row),
                ChannelRowKind::Offset => match r.row.get("offset").and_then(Value::as_i64) {
                    Some(o) => {
                        if let Some(a) = self.channels.accounts.get_mut(&r.key) {
                            a.offset = a.offset.max(o);
                        }
                        true
                    }
                    None => false,
                },
            };
            if !ok {
                let table = r.kind.table();
                self.log(
                    now,
                    Level::Warn,
                    None,
                    format!("stored {table} row {} does not decode, skipped", r.key),
                );
            }
        }
        for ev in self.channels.ingress.running_events() {
            if let ingress::State::Running { run_id } = &ev.state {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!(
                        "{}: answering {} again after a restart",
                        ev.inbound.lane(),
                        ev.inbound.message_id
                    ),
                );
                let key = ev.inbound.session_key(self.config.channels.dm_scope);
                self.run_channel_turn(now, &ev, &key, run_id, false);
            }
        }
        self.serve_ingress(now);
        self.pump_outbox(now);
    }

    fn start_account(&mut self, now: Instant, key: &str) {
        let ts = self.unix_ms(now);
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        a.stopped_by_operator = false;
        let refusal = if !a.cfg.enabled {
            None
        } else if let Err(e) = &a.cfg.token {
            Some(e.clone())
        } else if a.cfg.proxy.is_some() {
            Some(format!(
                "channels.telegram.proxy is not supported by clawgate; remove it to reach {} directly",
                a.cfg.api_root
            ))
        } else if private_api_root(&a.cfg.api_root) && !a.cfg.allow_private_network {
            Some(format!(
                "channels.telegram.apiRoot {} is a private address: set channels.telegram.network.dangerouslyAllowPrivateNetwork to true to allow it",
                a.cfg.api_root
            ))
        } else {
            a.phase = Phase::Identifying;
            a.last_start_at = Some(ts);
            None
        };
        if !a.cfg.enabled {
            return;
        }
        if let Some(e) = refusal {
            a.last_error = Some(e.clone());
            self.log(now, Level::Error, None, format!("{key} not started: {e}"));
            return;
        }
        self.log(now, Level::Info, None, format!("{key}: starting (getMe)"));
        self.tg_call(now, key, Purpose::GetMe, "getMe", &json!({}));
    }

    fn stop_account(&mut self, now: Instant, key: &str) {
        let ts = self.unix_ms(now);
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        a.phase = Phase::Stopped;
        a.last_stop_at = Some(ts);
        if let Some(poll) = a.poll.take() {
            self.cancel_work(poll);
        }
    }

    /// Issue Bot API `method` for account `key`; its id.
    fn tg_call(
        &mut self,
        _now: Instant,
        key: &str,
        purpose: Purpose,
        method: &str,
        body: &Value,
    ) -> Option<WorkId> {
        let a = self.channels.accounts.get(key)?;
        let (token, _) = a.cfg.token.as_ref().ok()?;
        let request = api::request(&a.cfg.api_root, token.expose(), method, body);
        let id = self.next_work_id();
        self.channels.calls.insert(
            id,
            Call {
                account: key.to_string(),
                purpose,
                status: 0,
                body: Vec::new(),
            },
        );
        self.out.push_back(Output::Work {
            id,
            work: Work::Http(request),
        });
        Some(id)
    }

    fn channel_timer_at(&mut self, at: Instant, due: Due) {
        self.channels.next_timer += 1;
        let n = self.channels.next_timer;
        self.channels.timers.insert(n, due);
        self.schedule(at, Timer::Channel(n));
    }

    /// A backoff: doubling from [`BASE_BACKOFF`] per failure up to [`MAX_BACKOFF`], plus up
    /// to half again of random jitter; `retry_after` (a 429's) wins when longer.
    fn backoff(&mut self, failures: u32, retry_after: Option<u64>) -> Duration {
        let exp = BASE_BACKOFF
            .saturating_mul(1u32 << failures.min(5).saturating_sub(1))
            .min(MAX_BACKOFF);
        let mut b = [0u8; 2];
        self.entropy.fill(&mut b);
        let jitter = exp.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0);
        let wait = exp + jitter;
        match retry_after {
            Some(s) => wait.max(Duration::from_secs(s)),
            None => wait,
        }
    }

    /// A channel timer fired.
    pub(crate) fn channel_timer(&mut self, now: Instant, n: u64) {
        let Some(due) = self.channels.timers.remove(&n) else {
            return;
        };
        match due {
            Due::Retry(key) => {
                let Some(a) = self.channels.accounts.get_mut(&key) else {
                    return;
                };
                if a.phase != Phase::Waiting {
                    return;
                }
                if a.me.id == 0 {
                    a.phase = Phase::Identifying;
                    self.tg_call(now, &key, Purpose::GetMe, "getMe", &json!({}));
                } else {
                    self.poll(now, &key);
                }
            }
            Due::Watchdog(key, id) => {
                let stalled = self
                    .channels
                    .accounts
                    .get(&key)
                    .is_some_and(|a| a.poll == Some(id));
                if stalled {
                    let limit = Duration::from_secs(api::POLL_TIMEOUT_SECS) + POLL_MARGIN;
                    let e = format!(
                        "getUpdates did not return within {} s; restarted by the watchdog",
                        limit.as_secs()
                    );
                    self.log(now, Level::Warn, None, format!("{key}: {e}"));
                    if let Some(a) = self.channels.accounts.get_mut(&key) {
                        a.last_error = Some(e);
                        a.poll = None;
                    }
                    self.channels.calls.remove(&id);
                    self.cancel_work(id);
                    self.poll(now, &key);
                }
            }
            Due::Typing(run_id) => {
                if let Some(ev) = self.channels.ingress.by_run(&run_id).cloned() {
                    self.send_typing(now, &ev.inbound);
                    self.channel_timer_at(now + TYPING_INTERVAL, Due::Typing(run_id));
                }
            }
            Due::Redeliver(seq) => {
                self.channels.outbox.release(seq);
                self.pump_outbox(now);
            }
        }
    }

    fn poll(&mut self, now: Instant, key: &str) {
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        if a.poll.is_some() || a.committing || a.phase == Phase::Stopped {
            return;
        }
        a.phase = Phase::Polling;
        if self.channels.ingress.pending() >= MAX_UNSERVED {
            return; // resumed by `resume_polls` once turns end
        }
        let body = api::get_updates(a.offset);
        if let Some(id) = self.tg_call(now, key, Purpose::Poll, "getUpdates", &body) {
            if let Some(a) = self.channels.accounts.get_mut(key) {
                a.poll = Some(id);
            }
            let limit = Duration::from_secs(api::POLL_TIMEOUT_SECS) + POLL_MARGIN;
            self.channel_timer_at(now + limit, Due::Watchdog(key.to_string(), id));
        }
    }

    /// A result of a channel call.
    pub(crate) fn on_channel_http(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let Some(call) = self.channels.calls.get_mut(&id) else {
            return;
        };
        match result {
            WorkResult::HttpHead { status, .. } => call.status = status,
            WorkResult::HttpBody(bytes) => {
                let room = MAX_API_BODY.saturating_sub(call.body.len());
                call.body.extend(bytes.iter().take(room));
            }
            WorkResult::HttpEnd(end) => {
                let Some(call) = self.channels.calls.remove(&id) else {
                    return;
                };
                let outcome = end.map(|()| (call.status, call.body.as_slice()));
                self.call_done(now, id, &call, outcome);
            }
            WorkResult::Stored(_) | WorkResult::History(_) | WorkResult::File(_) => {}
            WorkResult::ProcessLine(_) | WorkResult::ProcessExited(_) => {}
        }
    }

    fn call_done(
        &mut self,
        now: Instant,
        id: WorkId,
        call: &Call,
        outcome: Result<(u16, &[u8]), String>,
    ) {
        let key = call.account.as_str();
        if let Purpose::Poll = call.purpose {
            let ours = self
                .channels
                .accounts
                .get(key)
                .is_some_and(|a| a.poll == Some(id));
            if !ours {
                return; // cancelled by the watchdog or a stop
            }
            if let Some(a) = self.channels.accounts.get_mut(key) {
                a.poll = None;
            }
            let me = self
                .channels
                .accounts
                .get(key)
                .map(|a| a.me.clone())
                .unwrap_or_default();
            let account = key.strip_prefix("telegram:").unwrap_or(key).to_string();
            match outcome
                .map_err(Failure::Transport)
                .and_then(|(s, b)| api::updates(s, b, &account, &me).map_err(Failure::Api))
            {
                Ok(updates) => self.polled(now, key, updates),
                Err(f) => self.account_failed(now, key, "getUpdates", f),
            }
            return;
        }
        let result = outcome
            .map_err(Failure::Transport)
            .and_then(|(s, b)| api::result(s, b).map_err(Failure::Api));
        match (&call.purpose, result) {
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
                    if let Some(a) = self.channels.accounts.get_mut(key) {
                        a.me = me;
                        a.phase = Phase::ClearingWebhook;
                    }
                    self.tg_call(
                        now,
                        key,
                        Purpose::DeleteWebhook,
                        "deleteWebhook",
                        &json!({"drop_pending_updates": false}),
                    );
                }
                Err(e) => self.account_failed(now, key, "getMe", Failure::Api(e)),
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
                self.poll(now, key);
            }
            (Purpose::Deliver(seq), r) => self.delivered(now, key, *seq, r),
            (Purpose::Typing, _) => {}
            (Purpose::Send(run_id), r) => {
                let answer = match r {
                    Ok(v) => {
                        let ts = self.unix_ms(now);
                        if let Some(a) = self.channels.accounts.get_mut(key) {
                            a.last_outbound_at = Some(ts);
                        }
                        let mid = api::sent_message_id(&v).map(|m| m.to_string());
                        Ok(json!({"runId": run_id, "messageId": mid, "channel": "telegram"}))
                    }
                    Err(f) => Err(crate::frame::ErrorShape::new(
                        crate::frame::ErrorCode::Unavailable,
                        format!("telegram sendMessage failed: {f}"),
                    )),
                };
                let max = self.config.limits.dedupe_max;
                self.router
                    .remember(now, send_key(run_id), answer.clone(), max);
                for (conn, req_id) in self.channels.sends.remove(run_id).unwrap_or_default() {
                    self.answer(now, conn, &req_id, answer.clone());
                }
            }
            (Purpose::Poll, _) => {}
        }
    }

    /// A call of account `key` failed: a bad token stops the account; anything else waits
    /// out a backoff (a 429's `retry_after` at least) and tries again.
    fn account_failed(&mut self, now: Instant, key: &str, method: &str, f: Failure) {
        let e = format!("{method}: {f}");
        if f.is_auth() {
            self.log(
                now,
                Level::Error,
                None,
                format!("{key} stopped: {e} (check channels.telegram.botToken)"),
            );
            self.stop_account(now, key);
            if let Some(a) = self.channels.accounts.get_mut(key) {
                a.last_error = Some(format!("{e} (check channels.telegram.botToken)"));
            }
            return;
        }
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        if a.phase == Phase::Stopped {
            return;
        }
        a.failures += 1;
        a.phase = Phase::Waiting;
        a.last_error = Some(e.clone());
        let failures = a.failures;
        let wait = self.backoff(failures, f.retry_after());
        self.log(
            now,
            Level::Warn,
            None,
            format!("{key}: {e}; retrying in {} ms", wait.as_millis()),
        );
        self.channel_timer_at(now + wait, Due::Retry(key.to_string()));
    }

    /// A poll answered: commit the new messages and the offset past them, then confirm.
    fn polled(&mut self, now: Instant, key: &str, updates: Vec<api::Update>) {
        let ts = self.unix_ms(now);
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        a.failures = 0;
        a.last_poll_at = Some(ts);
        let offset = a.offset;
        let mut next = offset;
        let mut changes = Vec::new();
        for u in updates.into_iter().filter(|u| u.update_id >= offset) {
            next = next.max(u.update_id.saturating_add(1));
            if let Some(m) = u.message {
                if self.channels.ingress.has_seen(&m.dedupe_key()) {
                    continue;
                }
                if let Some(a) = self.channels.accounts.get_mut(key) {
                    a.last_inbound_at = Some(ts);
                }
                self.channels.ingress.push(m, &mut changes);
            }
        }
        if next == offset {
            self.poll(now, key);
            return;
        }
        changes.push(offset_row(key, next));
        self.channels.unsaved.extend(changes);
        if let Some(a) = self.channels.accounts.get_mut(key) {
            a.committing = true;
        }
        self.persist();
        self.after_commit(now, Step::Polled(key.to_string(), next));
    }

    /// Run `step` once every batch issued so far is durable.
    fn after_commit(&mut self, now: Instant, step: Step) {
        self.hold_channel_step(now, step);
    }

    /// A held channel step: its batch is durable (`durable`) or failed.
    pub(crate) fn channel_step(&mut self, now: Instant, step: Step, durable: bool) {
        match step {
            Step::Polled(key, offset) => {
                if let Some(a) = self.channels.accounts.get_mut(&key) {
                    a.committing = false;
                    if durable {
                        a.offset = a.offset.max(offset);
                    }
                }
                if durable {
                    self.poll(now, &key);
                } else {
                    self.account_failed(
                        now,
                        &key,
                        "store",
                        Failure::Transport("the update batch was not saved".into()),
                    );
                }
                self.serve_ingress(now);
            }
            Step::Committed => {
                self.serve_ingress(now);
                self.pump_outbox(now);
                self.resume_polls(now);
            }
        }
    }

    /// Poll again on accounts that waited for the queue to drain.
    fn resume_polls(&mut self, now: Instant) {
        let idle: Vec<String> = self
            .channels
            .accounts
            .iter()
            .filter(|(_, a)| a.phase == Phase::Polling && a.poll.is_none() && !a.committing)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            self.poll(now, &key);
        }
    }

    /// Serve queued messages whose lane is free.
    fn serve_ingress(&mut self, now: Instant) {
        let mut changed = false;
        while let Some(ev) = self.channels.ingress.next_ready() {
            if self.agent_runs_full() {
                break;
            }
            changed = true;
            self.serve(now, ev);
        }
        if changed {
            self.persist();
            self.after_commit(now, Step::Committed);
        }
    }

    fn serve(&mut self, now: Instant, ev: ingress::Event) {
        let m = &ev.inbound;
        let mut changes = Vec::new();
        let Some(a) = self.channels.accounts.get(&tg_key(&m.account)) else {
            self.channels.ingress.done(ev.seq, &mut changes);
            self.channels.unsaved.extend(changes);
            return;
        };
        let approved = self
            .channels
            .pairing
            .is_approved(&m.channel, &m.account, &m.sender.id);
        let access = inbound::decide(&a.cfg.access, m, approved);
        match access {
            Access::Drop(why) => {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!(
                        "{}: message {} from {} dropped: {why}",
                        m.lane(),
                        m.message_id,
                        m.sender.id
                    ),
                );
                self.channels.ingress.done(ev.seq, &mut changes);
            }
            Access::Pair => {
                let ts = self.unix_ms(now);
                let mut random = [0u8; pairing::CODE_LEN];
                self.entropy.fill(&mut random);
                let request = PairingRequest {
                    request_id: self.uuid(),
                    code: pairing::code(random),
                    channel: m.channel.clone(),
                    account_id: m.account.clone(),
                    sender_id: m.sender.id.clone(),
                    chat_id: m.chat_id.clone(),
                    metadata: json!({"username": m.sender.username, "firstName": m.sender.name}),
                    created_at: ts,
                    last_seen_at: ts,
                    expires_at: 0,
                };
                match self.channels.pairing.ask(request, &mut changes) {
                    Requested::New(r) => {
                        self.log(
                            now,
                            Level::Info,
                            None,
                            format!(
                                "{}: pairing request {} for sender {}",
                                m.lane(),
                                r.request_id,
                                m.sender.id
                            ),
                        );
                        let text =
                            pairing::pairing_message("Telegram", &m.sender.id, &r.code, &m.channel);
                        self.channels
                            .outbox
                            .push(m.reply_target(), vec![text], ts, &mut changes);
                    }
                    Requested::Pending => {}
                    Requested::Full => self.log(
                        now,
                        Level::Warn,
                        None,
                        format!(
                            "{}: pairing request from {} dropped: {} requests already pending",
                            m.lane(),
                            m.sender.id,
                            pairing::MAX_PENDING_PER_ACCOUNT
                        ),
                    ),
                }
                self.channels.ingress.done(ev.seq, &mut changes);
            }
            Access::Allow => {
                let key = m.session_key(self.config.channels.dm_scope);
                let run_id = format!("{}:{}", m.lane(), m.message_id);
                self.channels.ingress.running(ev.seq, &run_id, &mut changes);
                self.channels.unsaved.extend(changes);
                self.run_channel_turn(now, &ev, &key, &run_id, true);
                return;
            }
        }
        self.channels.unsaved.extend(changes);
    }

    /// Start the turn of a queued message (its user message appended unless it already is).
    fn run_channel_turn(
        &mut self,
        now: Instant,
        ev: &ingress::Event,
        key: &str,
        run_id: &str,
        append: bool,
    ) {
        let ts = self.unix_ms(now);
        self.ensure_session(key, ts);
        // A channel message waits its turn in the session's lane: it is never folded into
        // another message's turn nor interrupts one (its reply goes to its own chat).
        let text = ev.inbound.text.as_str();
        let (serial, holds) = self.admit_run(now, (key, run_id, text), None, QueueMode::Followup);
        if holds {
            if append {
                self.append_user(key, text, run_id, ts);
            }
            self.persist();
            self.start_run_when_durable(now, serial);
        }
        self.send_typing(now, &ev.inbound);
        self.channel_timer_at(now + TYPING_INTERVAL, Due::Typing(run_id.to_string()));
    }

    fn send_typing(&mut self, now: Instant, m: &Inbound) {
        let mut body = json!({"chat_id": m.chat_id, "action": "typing"});
        if let (Some(t), Some(o)) = (
            m.thread.as_ref().and_then(|t| t.parse::<i64>().ok()),
            body.as_object_mut(),
        ) {
            o.insert("message_thread_id".into(), json!(t));
        }
        self.tg_call(
            now,
            &tg_key(&m.account),
            Purpose::Typing,
            "sendChatAction",
            &body,
        );
    }

    /// A channel turn ended with `reply` (the answer, or the notice of a failure): the message
    /// is served and the reply stored in the outbox in the batch that records the turn.
    pub(crate) fn channel_turn_ended(&mut self, now: Instant, run_id: &str, reply: Option<String>) {
        let Some(ev) = self.channels.ingress.by_run(run_id).cloned() else {
            return;
        };
        let ts = self.unix_ms(now);
        let mut changes = Vec::new();
        self.channels.ingress.done(ev.seq, &mut changes);
        let limit = self
            .channels
            .accounts
            .get(&tg_key(&ev.inbound.account))
            .map_or(config::DEFAULT_TEXT_CHUNK_LIMIT, |a| a.cfg.text_chunk_limit);
        if let Some(text) = reply.filter(|t| !t.trim().is_empty()) {
            let chunks = telegram::format::chunks(&text, limit);
            self.channels
                .outbox
                .push(ev.inbound.reply_target(), chunks, ts, &mut changes);
        }
        self.channels.unsaved.extend(changes);
        self.persist();
        self.after_commit(now, Step::Committed);
    }

    /// Send what the outbox has ready.
    fn pump_outbox(&mut self, now: Instant) {
        for d in self.channels.outbox.take_ready() {
            let key = tg_key(&d.target.account);
            let running = self
                .channels
                .accounts
                .get(&key)
                .is_some_and(|a| a.cfg.token.is_ok() && a.phase != Phase::Stopped);
            let Some(chunk) = d.chunks.get(d.next).filter(|_| running) else {
                // The account is not running: try again later.
                self.channels.outbox.release(d.seq);
                if running {
                    continue;
                }
                self.channel_timer_at(now + MAX_BACKOFF, Due::Redeliver(d.seq));
                continue;
            };
            let body = api::send_message(&d.target.to, chunk, d.target.thread.as_deref());
            self.tg_call(now, &key, Purpose::Deliver(d.seq), "sendMessage", &body);
        }
    }

    fn delivered(&mut self, now: Instant, key: &str, seq: u64, result: Result<Value, Failure>) {
        let mut changes = Vec::new();
        match result {
            Ok(_) => {
                let ts = self.unix_ms(now);
                if let Some(a) = self.channels.accounts.get_mut(key) {
                    a.last_outbound_at = Some(ts);
                }
                let complete = self.channels.outbox.accepted(seq, &mut changes);
                self.channels.unsaved.extend(changes);
                self.persist();
                if complete {
                    self.pump_outbox(now);
                } else if let Some(d) = self.channels.outbox.get(seq).cloned() {
                    // The next chunk of the same message, at once.
                    if let Some(chunk) = d.chunks.get(d.next) {
                        let body =
                            api::send_message(&d.target.to, chunk, d.target.thread.as_deref());
                        self.tg_call(now, key, Purpose::Deliver(seq), "sendMessage", &body);
                    }
                }
            }
            Err(f) => {
                let permanent = f.is_permanent();
                let retry_after = f.retry_after();
                let e = format!("sendMessage: {f}");
                if let Some(a) = self.channels.accounts.get_mut(key) {
                    a.last_error = Some(e.clone());
                }
                let after = self
                    .channels
                    .outbox
                    .failed(seq, e.clone(), permanent, &mut changes);
                self.channels.unsaved.extend(changes);
                self.persist();
                match after {
                    AfterFailure::Retry(n) => {
                        let wait = self.backoff(n, retry_after);
                        self.log(
                            now,
                            Level::Warn,
                            None,
                            format!(
                                "{key}: {e}; delivery {seq} retried in {} ms",
                                wait.as_millis()
                            ),
                        );
                        self.channel_timer_at(now + wait, Due::Redeliver(seq));
                    }
                    AfterFailure::Undelivered => {
                        self.log(
                            now,
                            Level::Error,
                            None,
                            format!("{key}: {e}; delivery {seq} kept as undelivered"),
                        );
                        self.pump_outbox(now);
                    }
                }
                if f.is_auth() {
                    self.account_failed(now, key, "sendMessage", f);
                }
            }
        }
    }

    /// Expire pairing requests (on the tick).
    pub(crate) fn expire_channel_pairing(&mut self, now: Instant) {
        let ts = self.unix_ms(now);
        let mut changes = Vec::new();
        self.channels.pairing.expire(ts, &mut changes);
        if !changes.is_empty() {
            self.channels.unsaved.extend(changes);
            self.persist();
        }
    }
}

/// Why a Bot API call failed.
#[derive(Debug)]
enum Failure {
    /// No answer (connect, timeout, cancel).
    Transport(String),
    /// Telegram's answer.
    Api(ApiError),
}

impl Failure {
    fn is_auth(&self) -> bool {
        matches!(
            self,
            Failure::Api(ApiError::Refused {
                code: 401 | 404,
                ..
            })
        )
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Failure::Api(e) if e.is_permanent())
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Failure::Api(ApiError::Refused { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => f.write_str(e),
            Failure::Api(e) => write!(f, "{e}"),
        }
    }
}

/// The rows a sequence of changes leaves, as a store applying them would hold them.
#[cfg(test)]
pub(crate) fn latest_rows(changes: &[StoreChange]) -> Vec<(ChannelRowKind, Value)> {
    let mut rows = BTreeMap::new();
    for c in changes {
        match c {
            StoreChange::PutChannelRow { kind, key, row } => {
                rows.insert((*kind, key.clone()), row.clone());
            }
            StoreChange::DeleteChannelRow { kind, key } => {
                rows.remove(&(*kind, key.clone()));
            }
            _ => {}
        }
    }
    rows.into_iter().map(|((k, _), v)| (k, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
