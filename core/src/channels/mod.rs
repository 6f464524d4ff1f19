//! Channels inside the gateway, sans-IO, transport-generic. A transport (Telegram today;
//! its calls leave as [`Work::Http`] and, for socket transports, [`Work::WsOpen`]) normalises
//! what arrives into the general [`inbound::Inbound`] and hands it to [`Gateway::receive`],
//! which commits it to the durable queue ([`ingress`]) before the transport's receipt (an
//! offset, an ack) is confirmed. Everything after is the same for every transport: the
//! access check ([`inbound::decide`], [`pairing`]), per-chat lanes, the agent turn in the
//! session [`inbound::Inbound::session_key`] names, the reply rendered by the account's
//! transport ([`account::Account::render`]), stored in the [`outbox`] with the transcript and
//! delivered with retries, `channels.status|start|stop`.
//!
//! What a transport supplies (see [`telegram::driver`]): start and stop of an account, how
//! its inbound arrives, the request that delivers one rendered message and the one that
//! shows typing, how its answers decode into [`Failure`]s, its status fields and its config
//! section ([`config`]).

pub mod account;
pub mod bindings;
pub mod chunk;
pub mod config;
pub mod discord;
pub mod inbound;
pub mod ingress;
mod markdown;
mod methods;
pub mod outbox;
pub mod pairing;
mod row_key;
pub mod slack;
pub mod telegram;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::QueueMode;
use crate::gateway::{Gateway, Output, Timer};
use crate::log::Level;
use crate::model::HttpRequest;
use crate::persist::{ChannelRowKind, StoreChange, StoredChannelRow};
use crate::work::{Work, WorkId, WorkResult, WsOpen};

use account::{Account, Kind, Transport};
use inbound::{Access, Inbound};
use outbox::AfterFailure;
use pairing::{PairingRequest, Requested};

/// The first backoff after a failure; it doubles per failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the typing action is repeated while a turn runs.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a reply's delivery record (its outbox row deleted) may wait to ride with the
/// next store batch. In a batch of its own it was committing as the next message arrived, and
/// that message's commit waited for its fsync too. A kill before the record is written sends
/// the reply once more at the next start, as a kill before its commit always could.
pub const DELIVERY_RECORD_DELAY: Duration = Duration::from_millis(20);
/// The largest API answer read.
pub const MAX_API_BODY: usize = 8 * 1024 * 1024;
/// Messages received and not served yet at most: past it, polls wait until turns end, so
/// memory follows this bound and not the traffic (Telegram keeps what is not confirmed).
pub const MAX_UNSERVED: usize = 500;
/// How a channel message waits in its session's lane: never folded into another message's
/// turn nor interrupting one (its reply goes to its own chat).
const CHANNEL_QUEUE_MODE: QueueMode = QueueMode::Followup;

/// What an API call is for.
#[derive(Clone, Debug)]
pub(crate) enum Purpose {
    /// A chunk of this outbox delivery.
    Deliver(u64),
    /// The typing indicator.
    Typing,
    /// The `send` RPC with this idempotency key: answer its callers.
    Send(String),
    /// A Telegram call of its own.
    Telegram(telegram::driver::Purpose),
    /// A Discord call of its own.
    Discord(discord::driver::Purpose),
    /// A Slack call of its own.
    Slack(slack::driver::Purpose),
}

/// An API call in flight.
#[derive(Debug)]
struct Call {
    account: String,
    purpose: Purpose,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// A Telegram call's transport attempt (and its request, to try again on the next).
    attempt: Option<telegram::driver::Attempt>,
}

impl Call {
    /// A call of account `key` for `purpose`, nothing answered yet.
    fn new(key: &str, purpose: Purpose) -> Self {
        Call {
            account: key.to_string(),
            purpose,
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            attempt: None,
        }
    }
}

/// A finished call's answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer<'a> {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The response headers (lowercase names).
    pub(crate) headers: &'a [(String, String)],
    /// The body (at most [`MAX_API_BODY`]).
    pub(crate) body: &'a [u8],
}

/// A channel timer.
#[derive(Clone, Debug)]
pub(crate) enum Due {
    /// An account's backoff is over: start (or resume) again.
    Retry(String),
    /// Repeat the typing action while this run lasts.
    Typing(String),
    /// A delivery's backoff is over.
    Redeliver(u64),
    /// Look again at replies held for accounts that were not running.
    Repump,
    /// Store the delivery records no batch has taken along.
    RecordDeliveries,
    /// A Telegram timer of this account.
    Telegram(String, telegram::driver::Due),
    /// A Discord timer of this account.
    Discord(String, discord::driver::Due),
    /// Account `.0`'s `users.info` for user `.1` waited long enough.
    SlackUser(String, String),
}

/// What a transport confirms once the messages it handed over are durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Receipt {
    /// Telegram: the `getUpdates` offset past them.
    Offset(i64),
    /// Nothing to confirm (Discord: the Gateway does not redeliver).
    Nothing,
    /// Slack: the HTTP 200 or the envelope's ack.
    Slack(slack::Ack),
}

/// What waits for a store batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Messages of this account are committed: confirm the receipt.
    Received(String, Receipt),
    /// Rows were committed: serve the queue and send what waits.
    Committed,
    /// The batch with this agent run's message is settled: its gated turn may show.
    Turn(u64),
    /// The outbox rows up to this seq are in the batch: once it is durable they may send.
    Stored(u64),
    /// A Slack message is durable: acknowledge it once the batches that were in flight then
    /// are settled too (see [`Gateway::slack_received`]).
    SlackAck(slack::Ack),
    /// A Telegram account's updates are durable: poll again once the batches that were in
    /// flight then are settled too (see [`Gateway::tg_received`]).
    Poll(String),
}

/// How a queued message's turn starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Served now: its user message is appended. `alone` when no other message is served
    /// beside it (none before it in the same pass, none ready after it): only then is its
    /// batch flagged to linger for the answer's.
    New { alone: bool },
    /// Running before a restart: its user message is in the transcript already.
    Again,
}

/// The channels' state: accounts, pairing, the queue, the outbox, calls and timers.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    accounts: BTreeMap<String, Account>,
    pub(crate) pairing: pairing::ChannelPairing,
    ingress: ingress::Ingress,
    outbox: outbox::Outbox,
    calls: HashMap<WorkId, Call>,
    /// Open sockets (their [`Work::WsOpen`] ids) by account key.
    sockets: HashMap<WorkId, String>,
    timers: HashMap<u64, Due>,
    next_timer: u64,
    unsaved: Vec<StoreChange>,
    /// `send` calls in flight by idempotency key: the callers to answer.
    sends: HashMap<String, Vec<(crate::ConnId, String)>>,
    /// `channels.logout` calls waiting for their `openclaw.json` edit, by its work id.
    logouts: HashMap<WorkId, methods::Logout>,
    /// A [`Due::Repump`] timer is armed (at most one at a time).
    repump_armed: bool,
    /// A [`Due::RecordDeliveries`] timer is armed (at most one at a time).
    record_armed: bool,
    /// Slack senders' names and their lookups, by account key (kept across reloads, so a
    /// lookup's waiting messages are always let go).
    slack_users: HashMap<String, slack::users::Users>,
}

impl Channels {
    /// The configured account a message or a reply target names by `channel` and `account`.
    fn account(&self, channel: &str, account: &str) -> Option<&Account> {
        self.accounts.get(&Kind::parse(channel)?.key(account))
    }

    /// Whether work `id` is a channel call.
    pub(crate) fn owns(&self, id: WorkId) -> bool {
        self.calls.contains_key(&id)
    }

    /// The row changes for the next store batch (a failed batch is replayed by the
    /// durability layer, so these are never needed twice).
    pub(crate) fn store_changes(&mut self) -> Vec<StoreChange> {
        std::mem::take(&mut self.unsaved)
    }

    /// What a store batch just issued must release once durable: the outbox rows pushed so
    /// far that are not known to be durable (they are in it or in a batch before it).
    pub(crate) fn step_after_batch(&self) -> Option<Step> {
        self.outbox.newest_unsettled().map(Step::Stored)
    }
}

/// The idempotency cache key of a `send`.
fn send_key(idempotency_key: &str) -> String {
    format!("send:{idempotency_key}")
}

/// Every configured account, as a stopped transport state, by key.
fn configured(cfg: &config::ChannelsConfig) -> Vec<(String, Transport)> {
    let telegram = cfg.telegram.iter().map(|c| {
        let t = Transport::Telegram(telegram::account::Account::new(c.clone()));
        (Kind::Telegram.key(&c.common.account_id), t)
    });
    let discord = cfg.discord.iter().map(|c| {
        let t = Transport::Discord(discord::account::Account::new(c.clone()));
        (Kind::Discord.key(&c.common.account_id), t)
    });
    let slack = cfg.slack.iter().map(|c| {
        let t = Transport::Slack(slack::account::Account::new(c.clone()));
        (Kind::Slack.key(&c.common.account_id), t)
    });
    telegram.chain(discord).chain(slack).collect()
}

impl Gateway {
    /// Start every configured account (at start-up).
    pub(crate) fn start_channels(&mut self, now: Instant) {
        for (key, t) in configured(&self.config.channels) {
            self.channels.accounts.insert(key.clone(), Account::new(t));
            self.start_account(now, &key);
        }
    }

    /// A new configuration: accounts keep their transport; policies and limits apply at once.
    pub(crate) fn channels_reloaded(&mut self, now: Instant) {
        for (key, t) in configured(&self.config.channels) {
            match self.channels.accounts.get_mut(&key) {
                Some(a) => {
                    if a.reconfigure(t) {
                        self.log(
                            now,
                            Level::Info,
                            None,
                            format!("{key}: token or endpoint changed; restarting"),
                        );
                        self.stop_account(now, &key);
                        self.start_account(now, &key);
                    }
                }
                None => {
                    self.channels.accounts.insert(key.clone(), Account::new(t));
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
                ChannelRowKind::Offset => self.restore_offset(&r.key, &r.row),
                ChannelRowKind::ExecGrant => self.tools.exec.grants.restore(r.key.clone(), r.row),
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
                let key = self.channel_session_key(&ev.inbound);
                self.run_channel_turn(now, &ev, &key, run_id, Start::Again);
            }
        }
        self.serve_ingress(now);
        self.pump_outbox(now);
    }

    /// A stored receipt row of account `key` (its transport's own position).
    fn restore_offset(&mut self, key: &str, row: &Value) -> bool {
        match self
            .channels
            .accounts
            .get_mut(key)
            .map(|a| &mut a.transport)
        {
            Some(Transport::Telegram(t)) => t.restore_offset(row),
            Some(Transport::Discord(_) | Transport::Slack(_)) | None => row.is_object(),
        }
    }

    fn start_account(&mut self, now: Instant, key: &str) {
        let ts = self.unix_ms(now);
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        a.status.stopped_by_operator = false;
        if !a.common().enabled {
            return;
        }
        let kind = a.kind();
        let started = match a.common().token.clone() {
            Err(e) => Err(e),
            Ok(_) => match kind {
                Kind::Telegram => self.tg_start(now, key),
                Kind::Discord => self.dc_start(now, key),
                Kind::Slack => self.sl_start(now, key),
            },
        };
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        match started {
            Ok(()) => {
                a.status.last_start_at = Some(ts);
                // Replies held while it was stopped go now.
                self.pump_outbox(now);
            }
            Err(e) => {
                a.status.last_error = Some(e.clone());
                self.log(now, Level::Error, None, format!("{key} not started: {e}"));
            }
        }
    }

    fn stop_account(&mut self, now: Instant, key: &str) {
        let ts = self.unix_ms(now);
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        a.status.last_stop_at = Some(ts);
        match a.kind() {
            Kind::Telegram => self.tg_stop(key),
            Kind::Discord => self.dc_stop(key),
            Kind::Slack => self.sl_stop(key),
        }
    }

    /// Issue `request` for account `key` with this purpose; its id.
    fn channel_call(&mut self, key: &str, purpose: Purpose, request: HttpRequest) -> WorkId {
        let id = self.next_work_id();
        self.channels.calls.insert(id, Call::new(key, purpose));
        self.out.push_back(Output::Work {
            id,
            work: Work::Http(request),
        });
        id
    }

    /// Open a WebSocket for account `key` (a socket transport's connection); its id, which
    /// its results come back with to [`Gateway::on_channel_ws`].
    fn open_socket(&mut self, key: &str, open: WsOpen) -> WorkId {
        let id = self.next_work_id();
        self.channels.sockets.insert(id, key.to_string());
        self.out.push_back(Output::Work {
            id,
            work: Work::WsOpen(open),
        });
        id
    }

    /// Send a text frame on `socket`.
    fn socket_send(&mut self, socket: WorkId, text: String) {
        let id = self.next_work_id();
        self.out.push_back(Output::Work {
            id,
            work: Work::WsSend { socket, text },
        });
    }

    /// Close `socket` with `code`; nothing more of it reaches its transport.
    fn close_socket(&mut self, socket: WorkId, code: u16) {
        if self.channels.sockets.remove(&socket).is_some() {
            let id = self.next_work_id();
            self.out.push_back(Output::Work {
                id,
                work: Work::WsClose { socket, code },
            });
        }
    }

    /// A result of a channel socket, for its account's transport.
    pub(crate) fn on_channel_ws(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let Some(key) = self.channels.sockets.get(&id).cloned() else {
            return;
        };
        if let WorkResult::WsClosed { .. } = result {
            self.channels.sockets.remove(&id);
        }
        match self.channels.accounts.get(&key).map(Account::kind) {
            Some(Kind::Discord) => self.dc_socket(now, &key, id, result),
            Some(Kind::Slack) => self.sl_socket(now, &key, id, result),
            Some(Kind::Telegram) | None => {}
        }
    }

    /// Arm a channel timer; its number (for [`Gateway::cancel_channel_timer`]).
    fn channel_timer_at(&mut self, at: Instant, due: Due) -> u64 {
        self.channels.next_timer += 1;
        let n = self.channels.next_timer;
        self.channels.timers.insert(n, due);
        self.schedule(at, Timer::Channel(n));
        n
    }

    /// Have the delivery records not yet in a batch stored within [`DELIVERY_RECORD_DELAY`].
    fn record_deliveries_soon(&mut self, now: Instant) {
        if !self.channels.record_armed {
            self.channels.record_armed = true;
            self.channel_timer_at(now + DELIVERY_RECORD_DELAY, Due::RecordDeliveries);
        }
    }

    /// Disarm channel timer `n`: it no longer wakes the event loop (see
    /// [`Gateway::channel_timer_live`]).
    fn cancel_channel_timer(&mut self, n: Option<u64>) {
        if let Some(n) = n {
            self.channels.timers.remove(&n);
        }
    }

    /// Whether channel timer `n` is still armed.
    pub(crate) fn channel_timer_live(&self, n: u64) -> bool {
        self.channels.timers.contains_key(&n)
    }

    /// A backoff: doubling from [`BASE_BACKOFF`] per failure up to [`MAX_BACKOFF`], plus up
    /// to half again of random jitter; `retry_after` (a 429's) wins when longer.
    fn backoff(&mut self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let exp = BASE_BACKOFF
            .saturating_mul(1u32 << failures.min(5).saturating_sub(1))
            .min(MAX_BACKOFF);
        let mut b = [0u8; 2];
        self.entropy.fill(&mut b);
        let jitter = exp.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0);
        let wait = exp + jitter;
        match retry_after {
            Some(r) => wait.max(r),
            None => wait,
        }
    }

    /// A channel timer fired.
    pub(crate) fn channel_timer(&mut self, now: Instant, n: u64) {
        let Some(due) = self.channels.timers.remove(&n) else {
            return;
        };
        match due {
            Due::Retry(key) => match self.channels.accounts.get(&key).map(Account::kind) {
                Some(Kind::Telegram) => self.tg_retry(now, &key),
                Some(Kind::Discord) => self.dc_retry(now, &key),
                Some(Kind::Slack) => self.sl_retry(now, &key),
                None => {}
            },
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
            Due::RecordDeliveries => {
                self.channels.record_armed = false;
                self.persist();
            }
            Due::Repump => {
                self.channels.repump_armed = false;
                self.pump_outbox(now);
            }
            Due::Telegram(key, due) => self.tg_timer(now, &key, due),
            Due::Discord(key, due) => self.dc_timer(now, &key, due),
            Due::SlackUser(key, user) => self.sl_lookup_timed_out(now, &key, &user),
        }
    }

    /// A result of a channel call.
    pub(crate) fn on_channel_http(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let Some(call) = self.channels.calls.get_mut(&id) else {
            return;
        };
        match result {
            WorkResult::HttpHead { status, headers } => {
                call.status = status;
                call.headers = headers;
            }
            WorkResult::HttpBody(bytes) => {
                let room = MAX_API_BODY.saturating_sub(call.body.len());
                call.body.extend(bytes.iter().take(room));
            }
            WorkResult::HttpEnd(end) => {
                let Some(call) = self.channels.calls.remove(&id) else {
                    return;
                };
                let Some((call, end)) = self.tg_transport_end(now, id, call, end) else {
                    return; // tried again on the next transport attempt
                };
                let answer = end.map(|()| Answer {
                    status: call.status,
                    headers: &call.headers,
                    body: &call.body,
                });
                self.call_done(now, id, &call, answer);
            }
            _ => {}
        }
    }

    fn call_done(
        &mut self,
        now: Instant,
        id: WorkId,
        call: &Call,
        answer: Result<Answer<'_>, String>,
    ) {
        let key = call.account.as_str();
        let Some(kind) = self.channels.accounts.get(key).map(Account::kind) else {
            return;
        };
        let result = match &call.purpose {
            Purpose::Telegram(p) => return self.tg_call_done(now, id, key, p, answer),
            Purpose::Discord(p) => return self.dc_call_done(now, key, p, answer),
            Purpose::Slack(p) => return self.sl_call_done(now, key, p, answer),
            _ => match kind {
                // Only `send`'s caller reads what Telegram answered.
                Kind::Telegram => {
                    telegram::driver::result(answer, matches!(call.purpose, Purpose::Send(_)))
                }
                Kind::Slack => slack::driver::result(answer),
                Kind::Discord => {
                    self.dc_note(now, key, id, &answer);
                    discord::rest::result(answer)
                }
            },
        };
        match &call.purpose {
            Purpose::Deliver(seq) => self.delivered(now, key, *seq, result),
            Purpose::Send(idempotency_key) => self.sent(now, key, kind, idempotency_key, result),
            Purpose::Typing | Purpose::Telegram(_) | Purpose::Discord(_) | Purpose::Slack(_) => {}
        }
    }

    /// The `send` RPC's message was sent (or not): answer its callers.
    fn sent(
        &mut self,
        now: Instant,
        key: &str,
        kind: Kind,
        run_id: &str,
        r: Result<Value, Failure>,
    ) {
        let answer = match r {
            Ok(v) => {
                let ts = self.unix_ms(now);
                if let Some(a) = self.channels.accounts.get_mut(key) {
                    a.status.last_outbound_at = Some(ts);
                }
                let mid = sent_message_id(&v);
                Ok(json!({"runId": run_id, "messageId": mid, "channel": kind.id()}))
            }
            Err(f) => Err(crate::frame::ErrorShape::new(
                crate::frame::ErrorCode::Unavailable,
                format!("{} sendMessage failed: {f}", kind.id()),
            )),
        };
        let max = self.config.limits.dedupe_max;
        self.router
            .remember(now, send_key(run_id), answer.clone(), max);
        for (conn, req_id) in self.channels.sends.remove(run_id).unwrap_or_default() {
            self.answer(now, conn, &req_id, answer.clone());
        }
    }

    /// A call of account `key` failed: a bad token stops the account; anything else waits
    /// out a backoff (a 429's retry-after at least) and tries again.
    fn account_failed(&mut self, now: Instant, key: &str, method: &str, f: Failure) {
        let e = format!("{method}: {f}");
        let Some(a) = self.channels.accounts.get_mut(key) else {
            return;
        };
        if f.is_auth() {
            let hint = format!("{e} (check {})", a.kind().token_key());
            self.log(now, Level::Error, None, format!("{key} stopped: {hint}"));
            self.stop_account(now, key);
            if let Some(a) = self.channels.accounts.get_mut(key) {
                a.status.last_error = Some(hint);
            }
            return;
        }
        if !a.wait() {
            return;
        }
        a.status.failures += 1;
        a.status.last_error = Some(e.clone());
        let failures = a.status.failures;
        let wait = self.backoff(failures, f.retry_after());
        self.log(
            now,
            Level::Warn,
            None,
            format!("{key}: {e}; retrying in {} ms", wait.as_millis()),
        );
        self.channel_timer_at(now + wait, Due::Retry(key.to_string()));
    }

    /// Messages of account `key` arrived: the new ones (not seen before) are committed to
    /// the queue with `rows` (the transport's own, such as its offset) and `receipt` is
    /// confirmed to the transport once durable. Returns false when nothing was to commit
    /// (then no receipt follows).
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        key: &str,
        messages: Vec<Inbound>,
        rows: Vec<StoreChange>,
        receipt: Receipt,
    ) -> bool {
        let ts = self.unix_ms(now);
        let mut changes = rows;
        for m in messages {
            if self.channels.ingress.has_seen(&m.dedupe_key()) {
                continue;
            }
            if let Some(a) = self.channels.accounts.get_mut(key) {
                a.status.last_inbound_at = Some(ts);
            }
            if self.chat_command(now, &m) {
                self.channels.ingress.push_served(m, &mut changes);
                continue;
            }
            self.channels.ingress.push(m, &mut changes);
        }
        if changes.is_empty() {
            return false;
        }
        self.channels.unsaved.extend(changes);
        // Served at once: what serving decides (a turn's start with its user message, a
        // pairing request with its message) goes in the batch that commits the messages and
        // the receipt's own rows, one commit on the path instead of two. Only a turn's model
        // request leaves before that batch is durable; nothing anyone sees does (the turn is
        // gated, the outbox sends and the receipt is confirmed after it), and a crash before
        // it loses all of it together: the unconfirmed messages come again.
        self.serve_ingress(now);
        self.persist();
        self.after_commit(now, Step::Received(key.to_string(), receipt));
        true
    }

    /// An `/approve` command: answered at once, outside the chat's lane (the turn it answers
    /// holds that lane), when its sender passes the chat's access policy, and ignored (logged)
    /// when not. Returns whether `m` was one.
    fn chat_command(&mut self, now: Instant, m: &Inbound) -> bool {
        if crate::tools::approvals::parse_approve(&m.text).is_none() {
            return false;
        }
        let Some(a) = self.channels.account(&m.channel, &m.account) else {
            return false;
        };
        let label = a.kind().label();
        let approved = self
            .channels
            .pairing
            .is_approved(&m.channel, &m.account, &m.sender.id);
        match inbound::decide(a.access(), m, approved) {
            Access::Allow => self.chat_approve(now, m, label),
            _ => {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!(
                        "{}: /approve from unauthorized sender {} ignored",
                        m.lane(),
                        m.sender.id
                    ),
                );
                true
            }
        }
    }

    /// The message whose turn is run `run_id`, if a channel message's.
    pub(crate) fn channel_message_of(&self, run_id: &str) -> Option<&Inbound> {
        self.channels.ingress.by_run(run_id).map(|ev| &ev.inbound)
    }

    /// Post `text` to chat `target` through the outbox (stored, then sent in the chat's
    /// order); nothing when its account is not configured.
    pub(crate) fn post_to_chat(&mut self, now: Instant, target: &inbound::Target, text: &str) {
        let Some(a) = self.channels.account(&target.channel, &target.account) else {
            return;
        };
        let chunks = a.render(text);
        let ts = self.unix_ms(now);
        let mut changes = Vec::new();
        self.channels
            .outbox
            .push(target.clone(), chunks, None, ts, &mut changes);
        self.channels.unsaved.extend(changes);
        self.persist();
        self.after_commit(now, Step::Committed);
    }

    /// Run `step` once every batch issued so far is durable.
    fn after_commit(&mut self, now: Instant, step: Step) {
        self.hold_channel_step(now, step);
    }

    /// A held channel step: its batch is durable (`durable`) or failed.
    pub(crate) fn channel_step(&mut self, now: Instant, step: Step, durable: bool) {
        match step {
            Step::Received(key, receipt) => {
                match receipt {
                    Receipt::Offset(offset) => self.tg_received(now, &key, offset, durable),
                    Receipt::Slack(ack) => self.slack_received(now, ack, durable),
                    Receipt::Nothing => {}
                }
                self.serve_ingress(now);
            }
            // Its message's batch was durable; whatever the batches after it did.
            Step::SlackAck(ack) => self.slack_acked(now, ack, true),
            Step::Poll(key) => self.tg_poll(now, &key),
            Step::Committed => {
                self.serve_ingress(now);
                self.pump_outbox(now);
                self.tg_resume_polls(now);
                self.dc_resume_held(now);
            }
            Step::Turn(serial) => self.open_gate(now, serial),
            Step::Stored(seq) if durable => {
                self.channels.outbox.settle(seq);
                self.pump_outbox(now);
            }
            // The rewrite that follows a failed batch carries the rows again, and its own
            // `Stored` step lets them go.
            Step::Stored(_) => {}
        }
    }

    /// Serve queued messages whose lane is free.
    fn serve_ingress(&mut self, now: Instant) {
        let mut changed = false;
        while let Some(mut ev) = self.channels.ingress.next_ready() {
            let key = self.channel_session_key(&ev.inbound);
            if self.waiting_is_full(&key, CHANNEL_QUEUE_MODE) {
                break;
            }
            if self.sl_wait_for_name(now, &mut ev) {
                continue;
            }
            self.serve(now, ev, !changed);
            changed = true;
        }
        if changed {
            self.persist();
            self.after_commit(now, Step::Committed);
        }
    }

    /// Serve message `ev`; `first` when it is the first this pass of
    /// [`Gateway::serve_ingress`] serves.
    fn serve(&mut self, now: Instant, ev: ingress::Event, first: bool) {
        let m = &ev.inbound;
        let mut changes = Vec::new();
        let Some(a) = self.channels.account(&m.channel, &m.account) else {
            self.channels.ingress.done(ev.seq, &mut changes);
            self.channels.unsaved.extend(changes);
            return;
        };
        let (kind, label) = (a.kind(), a.kind().label());
        let approved = self
            .channels
            .pairing
            .is_approved(&m.channel, &m.account, &m.sender.id);
        let access = inbound::decide(a.access(), m, approved);
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
                    metadata: kind.pairing_meta(&m.sender),
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
                            pairing::pairing_message(label, &m.sender.id, &r.code, &m.channel);
                        let chunks = self
                            .channels
                            .accounts
                            .get(&kind.key(&m.account))
                            .map(|a| a.render(&text))
                            .unwrap_or_default();
                        let pairing = Some(r.request_id.clone());
                        self.channels.outbox.push(
                            m.reply_target(),
                            chunks,
                            pairing,
                            ts,
                            &mut changes,
                        );
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
                let key = self.channel_session_key(m);
                let run_id = format!("{}:{}", m.lane(), m.message_id);
                self.channels.ingress.running(ev.seq, &run_id, &mut changes);
                self.channels.unsaved.extend(changes);
                // Alone: no message served before it in this pass, none ready after it.
                let alone = first && !self.channels.ingress.has_ready();
                self.run_channel_turn(now, &ev, &key, &run_id, Start::New { alone });
                return;
            }
        }
        self.channels.unsaved.extend(changes);
    }

    /// Start the turn of a queued message.
    fn run_channel_turn(
        &mut self,
        now: Instant,
        ev: &ingress::Event,
        key: &str,
        run_id: &str,
        start: Start,
    ) {
        let ts = self.unix_ms(now);
        self.ensure_session(key, ts);
        let text = ev.inbound.text.as_str();
        let (serial, holds) = self.admit_run(now, (key, run_id, text), None, CHANNEL_QUEUE_MODE);
        if holds {
            if matches!(start, Start::New { .. }) {
                self.append_user(key, text, run_id, ts);
            }
            // The model request leaves now, beside the batch that stores the message (and, on
            // the ingress path, the message's queue row): the turn is gated until that batch
            // is settled, so its reply and events never run ahead of the disk. The request
            // is the step's first output, so the shell writes it before it hands the batch
            // to the store's writer thread (whose wake-up would otherwise come first). With
            // the request out, the batch is flagged to linger: an answer that comes at once
            // is processed while it is in flight, and its batch (the answer, the reply's
            // outbox row) can join it in one transaction. Only a turn started alone
            // lingers: in a burst (a poll that brought messages from many chats) the other
            // turns' batches follow at once anyway, and a flagged batch would hold them all,
            // and the poll's offset, for an answer that is not the next thing due.
            self.start_run_gated(now, serial);
            if matches!(start, Start::New { alone: true }) && self.awaits_model(serial) {
                self.persist_lingering();
            } else {
                self.persist();
            }
            self.after_commit(now, Step::Turn(serial));
        }
        self.send_typing(now, &ev.inbound);
        self.channel_timer_at(now + TYPING_INTERVAL, Due::Typing(run_id.to_string()));
    }

    fn send_typing(&mut self, now: Instant, m: &Inbound) {
        let Some(kind) = Kind::parse(&m.channel) else {
            return;
        };
        let key = kind.key(&m.account);
        match kind {
            Kind::Telegram => self.tg_typing(now, &key, m),
            Kind::Discord => self.dc_typing(&key, m),
            // Slack shows no typing for a bot outside the assistant APIs.
            Kind::Slack => {}
        }
    }

    /// Send one rendered message `text` to `target` for account `key`; false when the
    /// account cannot send (no such account, no token).
    fn deliver_chunk(
        &mut self,
        now: Instant,
        key: &str,
        purpose: Purpose,
        target: &inbound::Target,
        text: &str,
    ) -> bool {
        match self.channels.accounts.get(key).map(Account::kind) {
            Some(Kind::Telegram) => self.tg_send(now, key, purpose, target, text),
            Some(Kind::Discord) => self.dc_send(now, key, purpose, target, text),
            Some(Kind::Slack) => self.sl_send(key, purpose, target, text),
            None => false,
        }
    }

    /// A channel turn ended with `reply` (the answer, or the notice of a failure): the message
    /// is served and the reply stored in the outbox in the batch that records the turn.
    pub(crate) fn channel_turn_ended(&mut self, now: Instant, run_id: &str, reply: Option<String>) {
        let Some(ev) = self.channels.ingress.by_run(run_id) else {
            return;
        };
        let seq = ev.seq;
        let reply = reply.filter(|t| !t.trim().is_empty()).and_then(|text| {
            let a = self
                .channels
                .account(&ev.inbound.channel, &ev.inbound.account)?;
            Some((ev.inbound.reply_target(), a.render(&text)))
        });
        let ts = self.unix_ms(now);
        let mut changes = Vec::new();
        self.channels.ingress.done(seq, &mut changes);
        if let Some((target, chunks)) = reply {
            self.channels
                .outbox
                .push(target, chunks, None, ts, &mut changes);
        }
        self.channels.unsaved.extend(changes);
        // One batch records the turn: the answer in the transcript, the message served, the
        // outbox row. The reply leaves once it is durable (see `Step::Stored`), so a reply
        // the user saw is in the transcript after a crash.
        self.persist();
        self.after_commit(now, Step::Committed);
    }

    /// Send what the outbox has ready (a pairing message whose request is gone is dropped).
    fn pump_outbox(&mut self, now: Instant) {
        let mut changes = Vec::new();
        let pairing = &self.channels.pairing;
        self.channels
            .outbox
            .drop_stale_pairing(|id| pairing.request(id).is_some(), &mut changes);
        if !changes.is_empty() {
            self.channels.unsaved.extend(changes);
            self.persist();
        }
        for d in self.channels.outbox.take_ready() {
            self.send_delivery(now, d);
        }
    }

    /// Send the current chunk of `d` (taken from the outbox), or release it to try later.
    fn send_delivery(&mut self, now: Instant, d: outbox::Delivery) {
        let key = Kind::parse(&d.target.channel)
            .map(|k| k.key(&d.target.account))
            .unwrap_or_default();
        let running = self
            .channels
            .accounts
            .get(&key)
            .is_some_and(|a| a.configured() && a.running());
        let Some(chunk) = d.chunks.get(d.next).filter(|_| running) else {
            // The account is not running: the reply waits, untaken, for the account's start
            // or the next look. One timer for all of them, never one per pass: a timer that
            // released a reply by its seq could release it while it is being sent.
            self.channels.outbox.release(d.seq);
            if !running && !self.channels.repump_armed {
                self.channels.repump_armed = true;
                self.channel_timer_at(now + MAX_BACKOFF, Due::Repump);
            }
            return;
        };
        self.deliver_chunk(now, &key, Purpose::Deliver(d.seq), &d.target, chunk);
    }

    fn delivered(&mut self, now: Instant, key: &str, seq: u64, result: Result<Value, Failure>) {
        let mut changes = Vec::new();
        match result {
            Ok(_) => {
                let ts = self.unix_ms(now);
                if let Some(a) = self.channels.accounts.get_mut(key) {
                    a.status.last_outbound_at = Some(ts);
                }
                let complete = self.channels.outbox.accepted(seq, &mut changes);
                self.channels.unsaved.extend(changes);
                if complete {
                    // The record rides with the next batch, or goes alone soon.
                    self.record_deliveries_soon(now);
                    self.pump_outbox(now);
                    return;
                }
                self.persist();
                if let Some(d) = self.channels.outbox.get(seq).cloned() {
                    // The next chunk of the same message, at once.
                    if let Some(chunk) = d.chunks.get(d.next) {
                        self.deliver_chunk(now, key, Purpose::Deliver(seq), &d.target, chunk);
                    }
                }
            }
            Err(f) => {
                let permanent = f.is_permanent();
                let retry_after = f.retry_after();
                let Some(a) = self.channels.accounts.get_mut(key) else {
                    return;
                };
                let method = a.kind().send_call();
                let e = format!("{method}: {f}");
                a.status.last_error = Some(e.clone());
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
                    self.account_failed(now, key, method, f);
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

/// Why an API call failed, as the transport decoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No usable answer (connect, timeout, cancel, an unreadable body).
    Transport(String),
    /// The API refused.
    Refused {
        /// The API's error code (else the HTTP status).
        code: u16,
        /// Its description.
        description: String,
        /// How long it asked to wait (a 429's).
        retry_after: Option<Duration>,
        /// The token is bad: the account stops.
        auth: bool,
        /// Retrying cannot help.
        permanent: bool,
    },
}

impl Failure {
    fn is_auth(&self) -> bool {
        matches!(self, Failure::Refused { auth: true, .. })
    }

    fn is_permanent(&self) -> bool {
        matches!(
            self,
            Failure::Refused {
                permanent: true,
                ..
            }
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Refused { retry_after, .. } => *retry_after,
            Failure::Transport(_) => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => f.write_str(e),
            Failure::Refused {
                code, description, ..
            } => write!(f, "{code} {description}"),
        }
    }
}

/// The id of a sent message in a send call's result (`message_id` or `id`).
fn sent_message_id(result: &Value) -> Option<String> {
    match result.get("message_id").or_else(|| result.get("id")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The rows a sequence of changes leaves, as a store applying them would hold them.
#[cfg(test)]
pub(crate) fn latest_rows(changes: &[StoreChange]) -> Vec<(ChannelRowKind, Value)> {
    let mut rows = BTreeMap::new();
    for c in changes {
        match c {
            StoreChange::PutChannelRow { kind, key, row } => {
                rows.insert((*kind, key.clone()), row.to_value());
            }
            StoreChange::DeleteChannelRow { kind, key } => {
                rows.remove(&(*kind, key.clone()));
            }
            _ => {}
        }
    }
    rows.into_iter().map(|((k, _), v)| (k, v)).collect()
}
