//! The gateway state machine: connections in, outputs out. See the crate docs for the loop.
//!
//! `Gateway` composes the phases of a connection, each in its own module with the state it
//! owns: `upgrade` (the HTTP head; unauthenticated sockets per address), `frames` (WebSocket
//! frames in and out; unsent-byte budgets), `connect` (the first request; held refusals),
//! `admission` (the decision; lockouts and penalties), then `methods` and `route` after
//! `hello-ok`. This module holds what spans them: the connection table, timers, outputs and
//! the clock.

use core::net::SocketAddr;
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use serde_json::json;

use crate::admission::Guard;
use crate::backpressure::Backpressure;
use crate::close::CloseReason;
use crate::config::Config;
use crate::conn::{AuthMethod, Conn, ConnId, Phase, State};
use crate::connect::Held;
use crate::durable::{Deferred, Durability};
use crate::http;
use crate::log::{Level, LogRecord, LogRing};
use crate::pairing::PairingStore;
use crate::route::Router;
use crate::scopes::Role;
use crate::upgrade::Preauth;
use crate::work::{Work, WorkId};

/// Longest close reason a WebSocket close frame carries.
pub const MAX_CLOSE_REASON: usize = 123;

/// A source of randomness handed in by the shell (nonces, connection ids, tokens).
pub trait Entropy: Send {
    /// Fill `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// Something the shell must do, drained with [`Gateway::poll_output`]. New kinds of work
/// will be added: a shell's catch-all arm must not drop one silently (log or debug-assert).
#[derive(Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Write these bytes to the connection's socket, in order.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Flush what was transmitted, then close the socket. The core has forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Throw away the bytes queued for this connection that have not started to go out (a
    /// chunk partly written may be finished): the peer is a slow consumer being cut, and a
    /// close frame and [`Output::Close`] follow.
    Discard {
        /// The connection.
        conn: ConnId,
    },
    /// Do this work off the event loop and report its outcome with
    /// [`Gateway::handle_work_result`] and the same id.
    Work {
        /// The id to report the outcome with.
        id: WorkId,
        /// What to do.
        work: Work,
    },
    /// A log record.
    Log(LogRecord),
    /// Nothing more to do until this instant or the next input.
    Timeout(Instant),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Handshake(ConnId),
    Refusal(ConnId),
    Tick,
    Invoke(u64),
    /// The live-text pacing of an agent run (by serial).
    LiveText(u64),
    /// The timeout of an `agent.wait` call (by serial).
    AgentWait(u64),
    /// The first-byte or idle deadline of an agent run's model request (by run serial).
    ModelDeadline(u64),
    /// The end of an agent run's backoff before retrying its model request (by run serial).
    ModelRetry(u64),
    /// A channel's timer (backoff, watchdog, typing, redelivery; by number).
    Channel(u64),
    /// Queued agent runs may start (their lanes' debounce is over).
    Lanes,
    /// The body of a request with one must have arrived (by connection).
    HttpBody(ConnId),
    /// A tool call's deadline.
    ToolCall(crate::tools::CallId),
    /// A tool provider asked to be woken (by index).
    ToolProvider(usize),
    /// An exec approval request's time runs out (by serial).
    ExecApproval(u64),
    /// Something waiting for starting tool providers may have waited long enough.
    ToolsSettle,
}

/// Live counts, for embedders and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Open sockets.
    pub connections: usize,
    /// Sockets past `hello-ok`.
    pub authenticated: usize,
    /// Connected nodes.
    pub nodes: usize,
}

/// The gateway: a pure state machine driven by its shell.
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) entropy: Box<dyn Entropy>,
    pub(crate) store: PairingStore,
    pub(crate) conns: crate::conn::ConnMap<ConnId, Conn>,
    pub(crate) preauth: Preauth,
    pub(crate) guard: Guard,
    /// Unsent bytes over all connections and the connections waiting for another turn.
    pub(crate) pressure: Backpressure,
    pub(crate) router: Router,
    pub(crate) logs: LogRing,
    /// Refusals held back by the local failed-auth penalty, answered when their timer fires.
    pub(crate) held: HashMap<ConnId, Held>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    pub(crate) out: VecDeque<Output>,
    next_conn: u64,
    /// The last [`WorkId`] handed out.
    next_work: u64,
    /// Store batches in flight and the answers waiting for them.
    pub(crate) durable: Durability<Deferred>,
    /// Chat sessions and agent runs.
    pub(crate) agent: crate::agent::Agent,
    /// Channel accounts, pairing, the inbound queue and the outbox.
    pub(crate) channels: crate::channels::Channels,
    /// Control UI responses in progress.
    pub(crate) serving: crate::control_ui::Serving,
    /// The routes that take a request body, by path.
    pub(crate) post_routes: crate::http_post::PostRoutes,
    /// The tool router: providers and calls in flight.
    pub(crate) tools: crate::tools::ToolRouter,
    /// `system.info` calls waiting for the host's description of the machine.
    pub(crate) machine_calls: crate::methods::MachineCalls,
    start: Instant,
    /// The latest wall-clock reading: an instant and the Unix milliseconds at it.
    wall: (Instant, u64),
    pub(crate) boot_id: String,
    /// The parts of `hello-ok` that only change with the configuration.
    pub(crate) hello: crate::hello::HelloTemplate,
    /// The gateway's own Ed25519 identity (`gateway.identity.get`), set by the host.
    pub(crate) identity: Option<crate::device::DeviceKey>,
    draining: bool,
    pub(crate) presence_version: u64,
    /// The `health` payload, serialised, while nothing it is made of changed, and its
    /// version (`stateVersion.health`).
    pub(crate) health_cache: crate::health_cache::HealthCache,
    last_prune: Instant,
}

impl Gateway {
    /// A gateway with its configuration, a randomness source, the pairing store loaded at
    /// start, and the time now (monotonic and as Unix milliseconds).
    pub fn new(
        config: Config,
        mut entropy: Box<dyn Entropy>,
        mut store: PairingStore,
        now: Instant,
        unix_ms: u64,
    ) -> Self {
        store.version = crate::pairing::STORE_VERSION;
        let durable = Durability::new(&store);
        let boot_id = random_uuid(entropy.as_mut());
        let hello = crate::hello::HelloTemplate::new(&config, &boot_id);
        let mut gw = Self {
            logs: LogRing::new(config.limits.log_ring_records),
            config,
            entropy,
            store,
            conns: Default::default(),
            preauth: Preauth::default(),
            guard: Guard::default(),
            pressure: Backpressure::default(),
            router: Router::default(),
            held: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            next_conn: 1,
            next_work: 0,
            durable,
            agent: Default::default(),
            channels: Default::default(),
            serving: Default::default(),
            post_routes: Default::default(),
            tools: Default::default(),
            machine_calls: Default::default(),
            start: now,
            wall: (now, unix_ms),
            boot_id,
            hello,
            identity: None,
            draining: false,
            presence_version: 1,
            health_cache: Default::default(),
            last_prune: now,
        };
        gw.post_routes = crate::http_post::PostRoutes::from_config(&gw.config);
        if !gw.config.mcp.servers.is_empty() {
            let mcp = crate::tools::mcp::McpServers::new(&gw.config.mcp, &gw.config.version);
            gw.tools.add_provider(Box::new(mcp));
        }
        if !gw.config.skills.is_empty() {
            let skills = crate::tools::skills::SkillsProvider::new(gw.config.skills.clone());
            gw.tools.add_provider(Box::new(skills));
        }
        let tick = now + gw.config.limits.tick_interval;
        gw.timers.push(Reverse((tick, Timer::Tick)));
        let mode = gw.config.auth_mode.as_str();
        let bind = format!("{}:{}", gw.config.bind_host, gw.config.port);
        gw.log(
            now,
            Level::Info,
            None,
            format!(
                "gateway ready: auth mode {mode}, bind {} ({bind})",
                gw.config.bind_label
            ),
        );
        gw.warn_of_config(now);
        gw.start_channels(now);
        gw
    }

    /// Warn of what the configuration holds that matches nothing.
    fn warn_of_config(&mut self, now: Instant) {
        for w in self.config.trusted_proxy_warnings.clone() {
            self.log(now, Level::Warn, None, w);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Set the gateway's own identity, which `gateway.identity.get` shows (the host keeps
    /// it in the store, created once or imported from upstream).
    pub fn set_identity(&mut self, key: crate::device::DeviceKey) {
        self.identity = Some(key);
    }

    /// The pairing store as it is now.
    pub fn store(&self) -> &PairingStore {
        &self.store
    }

    /// Live counts.
    pub fn counts(&self) -> Counts {
        Counts {
            connections: self.conns.len(),
            authenticated: self
                .conns
                .values()
                .filter(|c| c.session().is_some())
                .count(),
            nodes: self.router.node_count(),
        }
    }

    /// Whether `shutdown` was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The wall-clock time at `now`: the latest reading plus the monotonic time since it.
    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        ms.saturating_add(now.saturating_duration_since(at).as_millis() as u64)
    }

    /// A wall-clock reading: at `now` it is `unix_ms` milliseconds since the Unix epoch.
    /// Call it on every wake, before feeding inputs (it is cheap), so a suspend or a clock
    /// step reaches signature freshness, timestamps and pairing TTLs at once instead of
    /// wall time drifting from the reading taken at start.
    pub fn handle_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    /// The instant of the latest wall-clock reading (for logs outside an input).
    pub(crate) fn last_wake(&self) -> Instant {
        self.wall.0
    }

    pub(crate) fn uptime_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// A random v4 UUID.
    pub(crate) fn uuid(&mut self) -> String {
        random_uuid(self.entropy.as_mut())
    }

    /// 32 random bytes, base64url: a device token.
    pub(crate) fn new_token(&mut self) -> String {
        let mut b = [0u8; 32];
        self.entropy.fill(&mut b);
        crate::device::b64url(&b)
    }

    /// Whether a record at `level` goes anywhere: to the host (its level) or to the ring
    /// `logs.tail` reads (info and above).
    pub(crate) fn logs_at(&self, level: Level) -> bool {
        level <= self.config.log_level.max(Level::Info)
    }

    /// Log `message`, formatted only if a record at `level` goes anywhere.
    pub(crate) fn log_with(
        &mut self,
        now: Instant,
        level: Level,
        conn: Option<ConnId>,
        message: impl FnOnce() -> String,
    ) {
        if self.logs_at(level) {
            self.log(now, level, conn, message());
        }
    }

    pub(crate) fn log(
        &mut self,
        now: Instant,
        level: Level,
        conn: Option<ConnId>,
        message: String,
    ) {
        if !self.logs_at(level) {
            return;
        }
        let rec = LogRecord {
            level,
            ts_ms: self.unix_ms(now),
            conn,
            message,
        };
        if level <= Level::Info {
            self.logs.push(&rec);
        }
        if level <= self.config.log_level {
            self.out.push_back(Output::Log(rec));
        }
    }

    /// A fresh id for a piece of work.
    pub(crate) fn next_work_id(&mut self) -> WorkId {
        self.next_work += 1;
        WorkId(self.next_work)
    }

    /// Ask the host to stop the work `of` (its result, if any still comes, is ignored).
    pub(crate) fn cancel_work(&mut self, of: WorkId) {
        let id = self.next_work_id();
        self.out.push_back(Output::Work {
            id,
            work: crate::work::Work::Cancel(of),
        });
    }

    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    /// The next output to act on. Call after every input until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        // Cancelled channel timers (a returned poll's watchdog) leave the heap here, so
        // they never wake an idle gateway.
        while let Some(Reverse((_, Timer::Channel(n)))) = self.timers.peek() {
            if self.channel_timer_live(*n) {
                break;
            }
            self.timers.pop();
        }
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        match timer.into_iter().chain(self.pressure.due()).min() {
            Some(at) => Output::Timeout(at),
            None => Output::Timeout(self.start + Duration::from_secs(86_400 * 365)),
        }
    }

    /// The shell accepted a TCP socket from `peer` on `local`.
    pub fn accept(&mut self, now: Instant, peer: SocketAddr, _local: SocketAddr) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                peer,
                state: State::Http(Vec::new()),
                unsent: 0,
                backlogged: false,
            },
        );
        if self.conns.len() > self.config.limits.max_connections {
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!("refused {peer}: gateway.maxConnections reached"),
            );
            self.transmit(id, http::too_many_connections());
            self.forget(now, id);
            return id;
        }
        // The head must arrive within the handshake timeout too.
        self.schedule(
            now + self.config.limits.handshake_timeout,
            Timer::Handshake(id),
        );
        self.log_with(now, Level::Debug, Some(id), || format!("accepted {peer}"));
        id
    }

    /// Bytes read from a connection's socket.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut c.state {
            State::Http(buf) => {
                buf.extend_from_slice(data);
                let buf = std::mem::take(buf);
                self.on_head(now, conn, buf);
            }
            State::Ws(ws) => {
                ws.io.rd.extend(data);
                // A connection waiting for its turn is read in the backlog's round.
                if !c.backlogged {
                    self.read_frames(now, conn);
                }
            }
            State::Body(_) => self.read_body(now, conn, data),
            // One request per connection: what follows the head (or body) is not read.
            State::Static | State::Answering => {}
        }
    }

    /// The shell wrote `n` bytes of what it was given for this connection.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, n: usize) {
        self.count_written(now, conn, n);
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, State::Static))
        {
            self.pump(now, conn);
        }
    }

    /// The socket reached EOF or failed.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.log(now, Level::Info, Some(conn), "closed by peer".into());
            self.forget(now, conn);
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.backlog_round(now);
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if !matches!(timer, Timer::Handshake(_)) {
                // Channels, tools and agent runs move on timers: `health` is taken anew.
                self.health_cache.invalidate();
            }
            match timer {
                Timer::Handshake(id) => self.handshake_expired(now, id),
                Timer::Tick => {
                    self.on_tick(now);
                    let next = at + self.config.limits.tick_interval;
                    self.schedule(next.max(now), Timer::Tick);
                }
                Timer::Invoke(invoke) => self.invoke_expired(now, invoke),
                Timer::LiveText(run) => self.live_text_due(now, run),
                Timer::AgentWait(wait) => self.agent_wait_expired(now, wait),
                Timer::ModelDeadline(run) => self.model_deadline_due(now, run),
                Timer::ModelRetry(run) => self.model_retry_due(now, run),
                Timer::Channel(n) => self.channel_timer(now, n),
                Timer::Lanes => self.drain_lanes(now),
                Timer::HttpBody(id) => self.body_expired(now, id),
                Timer::ToolCall(call) => self.tool_call_due(now, call),
                Timer::ToolProvider(index) => self.tool_provider_due(now, index),
                Timer::ExecApproval(serial) => self.exec_approval_due(now, serial),
                Timer::ToolsSettle => self.tools_settle_due(now),
                Timer::Refusal(id) => {
                    self.refusal_due(now, id);
                }
            }
        }
    }

    fn handshake_expired(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(&id) else { return };
        // A body has its own timer; an answer is its handler's.
        if c.session().is_some() || matches!(c.state, State::Body(_) | State::Answering) {
            return;
        }
        if matches!(c.state, State::Static) {
            // A Control UI response gets the same time again while it moves.
            if self.serving.progressed(id) {
                let next = now + self.config.limits.handshake_timeout;
                self.schedule(next, Timer::Handshake(id));
            } else {
                self.log(
                    now,
                    Level::Info,
                    Some(id),
                    "control ui response stalled".into(),
                );
                self.forget(now, id);
            }
            return;
        }
        let http = matches!(c.state, State::Http(_));
        self.log(now, Level::Info, Some(id), "handshake timeout".into());
        if http {
            self.forget(now, id);
        } else {
            self.close_ws(now, id, CloseReason::HandshakeTimeout);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let ts = self.unix_ms(now);
        self.broadcast(now, "tick", &json!({"ts": ts}), None);
        if now.saturating_duration_since(self.last_prune) >= self.config.limits.auth_window {
            self.last_prune = now;
            self.guard.prune(now, self.config.limits.auth_window);
        }
        let expired = self.store.expire(ts);
        if !expired.is_empty() {
            self.persist();
        }
        self.expire_channel_pairing(now);
        self.retry_failed_store();
        self.router.prune_dedupe(now, self.config.limits.dedupe_ttl);
        // upstream takes a health snapshot every minute and broadcasts it: here on the tick
        // (no wake-up of its own), and only a snapshot that says something new is sent.
        self.refresh_health(now);
    }

    /// Stop: every authenticated client gets `shutdown`, every WebSocket is closed 1012,
    /// plain HTTP sockets are closed, and `/ready` answers 503 from now on.
    pub fn shutdown(&mut self, now: Instant) {
        self.draining = true;
        self.log(now, Level::Info, None, "shutting down".into());
        self.cancel_runs();
        // Delivery records waiting to ride with a batch go now.
        self.persist();
        self.broadcast(
            now,
            "shutdown",
            &json!({"reason": "gateway stopping"}),
            None,
        );
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let is_ws = matches!(self.conns.get(&id).map(|c| &c.state), Some(State::Ws(_)));
            if is_ws {
                self.close_ws(now, id, CloseReason::ServiceRestart);
            } else {
                self.forget(now, id);
            }
        }
    }

    /// Apply a new configuration: limits and secrets at once. Connections that rest on a
    /// shared secret that changed are closed 4001 `gateway auth changed`.
    pub fn reload(&mut self, now: Instant, config: Config) {
        let secret_changed =
            config.secret != self.config.secret || config.auth_mode != self.config.auth_mode;
        self.config = config;
        self.hello = crate::hello::HelloTemplate::new(&self.config, &self.boot_id);
        self.health_cache.invalidate();
        self.post_routes = crate::http_post::PostRoutes::from_config(&self.config);
        // A larger agents.defaults.maxConcurrent starts runs waiting for a slot.
        self.start_admitted(now);
        self.log(
            now,
            Level::Info,
            None,
            format!(
                "config reloaded (auth mode {})",
                self.config.auth_mode.as_str()
            ),
        );
        self.warn_of_config(now);
        self.channels_reloaded(now);
        if !secret_changed {
            return;
        }
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.session()
                    .is_some_and(|s| matches!(s.auth, AuthMethod::Token | AuthMethod::Password))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in victims {
            self.close_ws(now, id, CloseReason::AuthChanged);
        }
    }

    pub(crate) fn transmit(&mut self, conn: ConnId, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unsent += data.len();
            self.count_unsent(data.len());
        }
        self.out.push_back(Output::Transmit { conn, data });
    }

    /// Forget a connection: counters, routes, presence; tell the shell to close it.
    pub(crate) fn forget(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        self.release_unsent(c.unsent);
        self.held.remove(&id);
        if let State::Ws(ws) = &c.state
            && matches!(ws.phase, Phase::PreHello { .. })
        {
            self.preauth.release(ws.client_ip);
        }
        if let Some(s) = c.session()
            && s.role == Role::Node
            && let Some(dev) = s.device_id.clone()
        {
            self.node_disconnected(now, id, &dev);
        }
        self.router.conn_gone(id);
        self.http_invoke_gone(now, id);
        self.agent.conn_gone(id);
        self.serving.conn_gone(id);
        self.out.push_back(Output::Close { conn: id });
    }
}

/// A random v4 UUID from `entropy`.
fn random_uuid(entropy: &mut dyn Entropy) -> String {
    let mut b = [0u8; 16];
    entropy.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// `b` as a UUID's text: lower-case hex digits in groups of 8-4-4-4-12, pushed as bytes into
/// one buffer of the right size (a handshake takes two: the challenge's nonce and the
/// connection's id).
fn uuid_text(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(36);
    for (i, &byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push(b'-');
        }
        // A nibble is below 16: in bounds.
        text.push(HEX[usize::from(byte >> 4)]);
        text.push(HEX[usize::from(byte & 0x0f)]);
    }
    // Hex digits and dashes are ASCII.
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod uuid_tests {
    use super::uuid_text;

    #[test]
    fn uuid_text_is_hex_in_groups_of_8_4_4_4_12() {
        let b: [u8; 16] = core::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(uuid_text(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
