//! The gateway state machine: connections in, outputs out. See the crate docs for the loop.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::Role as WsRole;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::auth::{self, CredentialKind, RateLimiter};
use crate::close::CloseReason;
use crate::config::{AuthMode, Config};
use crate::conn::{AuthMethod, Conn, ConnId, Framed, MemIo, Phase, Session, State, Ws, ws_context};
use crate::frame::{
    ErrorShape, FrameError, InvalidFrame, OutFrame, SeqEvent, parse_request, truncate_reason,
};
use crate::handshake::{self, ConnectParams};
use crate::http::{self, Head};
use crate::log::{Level, LogRecord, LogRing};
use crate::pairing::PairingStore;
use crate::route::Router;
use crate::scopes::Role;

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
    /// Write this pairing-store snapshot durably (temp file, fsync, rename).
    Persist(Vec<u8>),
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
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) preauth_by_ip: HashMap<IpAddr, usize>,
    pub(crate) limiter: RateLimiter,
    pub(crate) router: Router,
    pub(crate) logs: LogRing,
    /// Refusals held back by the local failed-auth penalty, answered when their timer fires.
    held: HashMap<ConnId, Held>,
    /// Failed shared-secret attempts by local address: (count in window, window start).
    local_failures: HashMap<IpAddr, (u32, Instant)>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    out: VecDeque<Output>,
    next_conn: u64,
    start: Instant,
    /// The latest wall-clock reading: an instant and the Unix milliseconds at it.
    wall: (Instant, u64),
    pub(crate) boot_id: String,
    draining: bool,
    pub(crate) presence_version: u64,
    pub(crate) health_version: u64,
    last_prune: Instant,
}

impl Gateway {
    /// A gateway with its configuration, a randomness source, the pairing store loaded at
    /// start, and the time now (monotonic and as Unix milliseconds).
    pub fn new(
        config: Config,
        entropy: Box<dyn Entropy>,
        mut store: PairingStore,
        now: Instant,
        unix_ms: u64,
    ) -> Self {
        store.version = crate::pairing::STORE_VERSION;
        let mut gw = Self {
            logs: LogRing::new(config.limits.log_ring_records),
            config,
            entropy,
            store,
            conns: HashMap::new(),
            preauth_by_ip: HashMap::new(),
            limiter: RateLimiter::default(),
            router: Router::default(),
            held: HashMap::new(),
            local_failures: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            next_conn: 1,
            start: now,
            wall: (now, unix_ms),
            boot_id: String::new(),
            draining: false,
            presence_version: 1,
            health_version: 1,
            last_prune: now,
        };
        gw.boot_id = gw.uuid();
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
        gw
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
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

    pub(crate) fn uptime_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// A random v4 UUID.
    pub(crate) fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.entropy.fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = data_encoding::HEXLOWER.encode(&b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// 32 random bytes, base64url: a device token.
    pub(crate) fn new_token(&mut self) -> String {
        let mut b = [0u8; 32];
        self.entropy.fill(&mut b);
        crate::device::b64url(&b)
    }

    pub(crate) fn log(
        &mut self,
        now: Instant,
        level: Level,
        conn: Option<ConnId>,
        message: String,
    ) {
        let rec = LogRecord {
            level,
            ts_ms: self.unix_ms(now),
            conn,
            message,
        };
        if level <= Level::Info {
            self.logs.push(rec.line());
        }
        self.out.push_back(Output::Log(rec));
    }

    pub(crate) fn persist(&mut self) {
        let bytes = self.store.to_bytes();
        self.out.push_back(Output::Persist(bytes));
    }

    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    /// The next output to act on. Call after every input until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        match self.timers.peek() {
            Some(Reverse((at, _))) => Output::Timeout(*at),
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
        self.log(now, Level::Debug, Some(id), format!("accepted {peer}"));
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
                self.read_frames(now, conn);
            }
        }
    }

    /// The shell wrote `n` bytes of what it was given for this connection.
    pub fn handle_written(&mut self, _now: Instant, conn: ConnId, n: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unsent = c.unsent.saturating_sub(n);
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
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Handshake(id) => self.handshake_expired(now, id),
                Timer::Tick => {
                    self.on_tick(now);
                    let next = at + self.config.limits.tick_interval;
                    self.schedule(next.max(now), Timer::Tick);
                }
                Timer::Invoke(invoke) => self.invoke_expired(now, invoke),
                Timer::Refusal(id) => {
                    if let Some(d) = self.held.remove(&id) {
                        self.reject(now, id, &d.req_id, d.error, d.close);
                    }
                }
            }
        }
    }

    fn handshake_expired(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(&id) else { return };
        if c.session().is_some() {
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
            self.limiter.prune(now, self.config.limits.auth_window);
            let window = self.config.limits.auth_window;
            self.local_failures
                .retain(|_, (_, start)| now.saturating_duration_since(*start) <= window);
        }
        let expired = self.store.expire(ts);
        if !expired.is_empty() {
            self.persist();
        }
        self.router.prune_dedupe(now, self.config.limits.dedupe_ttl);
    }

    /// Stop: every authenticated client gets `shutdown`, every WebSocket is closed 1012,
    /// plain HTTP sockets are closed, and `/ready` answers 503 from now on.
    pub fn shutdown(&mut self, now: Instant) {
        self.draining = true;
        self.log(now, Level::Info, None, "shutting down".into());
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
        self.log(
            now,
            Level::Info,
            None,
            format!(
                "config reloaded (auth mode {})",
                self.config.auth_mode.as_str()
            ),
        );
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
        }
        self.out.push_back(Output::Transmit { conn, data });
    }

    /// Forget a connection: counters, routes, presence; tell the shell to close it.
    pub(crate) fn forget(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        if let State::Ws(ws) = &c.state
            && matches!(ws.phase, Phase::PreHello { .. })
        {
            self.release_preauth(ws.client_ip);
        }
        if let Some(s) = c.session()
            && s.role == Role::Node
            && let Some(dev) = s.device_id.clone()
        {
            self.node_disconnected(now, id, &dev);
        }
        self.router.conn_gone(id);
        self.out.push_back(Output::Close { conn: id });
    }

    fn release_preauth(&mut self, ip: IpAddr) {
        if let Some(n) = self.preauth_by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.preauth_by_ip.remove(&ip);
            }
        }
    }

    /// Close a WebSocket with a code and reason (truncated to 123 bytes), then forget it.
    pub(crate) fn close_ws(&mut self, now: Instant, id: ConnId, why: CloseReason) {
        let code = why.code();
        let text = why.text();
        let reason = truncate_reason(&text, MAX_CLOSE_REASON).to_string();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut bytes = Vec::new();
        if let State::Ws(ws) = &mut c.state {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.clone().into(),
            };
            let _ = ws.ctx.close(&mut ws.io, Some(frame));
            bytes = std::mem::take(&mut ws.io.wr);
        }
        self.transmit(id, bytes);
        self.log(
            now,
            Level::Info,
            Some(id),
            format!("closed {code} {reason:?}"),
        );
        self.forget(now, id);
    }

    /// Send a frame on a WebSocket connection; closes it as a slow consumer when its unsent
    /// bytes pass `maxBufferedBytes`.
    pub(crate) fn send(&mut self, now: Instant, id: ConnId, frame: &OutFrame) {
        let text = frame.to_text();
        self.send_text(now, id, text);
    }

    pub(crate) fn send_text(&mut self, now: Instant, id: ConnId, text: String) {
        let text_for_log = if self.config.log_frames {
            text.clone()
        } else {
            String::new()
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.frame_text(text, self.config.limits.max_buffered_bytes) {
            Framed::Bytes(data) => {
                self.out.push_back(Output::Transmit { conn: id, data });
                self.log_frame_out(now, id, &text_for_log);
            }
            Framed::SlowConsumer => self.slow_consumer(now, id),
            Framed::NotWebSocket => {}
        }
    }

    fn slow_consumer(&mut self, now: Instant, id: ConnId) {
        self.log(now, Level::Warn, Some(id), "slow consumer".into());
        self.close_ws(now, id, CloseReason::SlowConsumer);
    }

    /// With `--verbose`, the text of a frame sent (secrets masked).
    fn log_frame_out(&mut self, now: Instant, id: ConnId, text: &str) {
        if self.config.log_frames {
            self.log(
                now,
                Level::Trace,
                Some(id),
                format!("frame out: {}", crate::mask::mask_secrets(text)),
            );
        }
    }

    /// Send an event to every authenticated connection allowed to see it, each with its own
    /// `seq`: one pass over the connections, the frame serialised once.
    pub(crate) fn broadcast(
        &mut self,
        now: Instant,
        event: &str,
        payload: &Value,
        state_version: Option<&Value>,
    ) {
        let frame = SeqEvent::new(event, payload, state_version);
        let max_unsent = self.config.limits.max_buffered_bytes;
        let mut slow = Vec::new();
        let mut sent = Vec::new();
        for (&id, c) in &mut self.conns {
            let Some(s) = c.session_mut() else { continue };
            if !crate::scopes::may_receive(s.role, &s.scopes, event) {
                continue;
            }
            s.seq += 1;
            let seq = s.seq;
            match c.frame_text(frame.with_seq(seq), max_unsent) {
                Framed::Bytes(data) => {
                    self.out.push_back(Output::Transmit { conn: id, data });
                    if self.config.log_frames {
                        sent.push((id, seq));
                    }
                }
                Framed::SlowConsumer => slow.push(id),
                // A session is only ever on a WebSocket.
                Framed::NotWebSocket => {}
            }
        }
        for (id, seq) in sent {
            self.log_frame_out(now, id, &frame.with_seq(seq));
        }
        for id in slow {
            self.slow_consumer(now, id);
        }
    }

    fn on_head(&mut self, now: Instant, id: ConnId, buf: Vec<u8>) {
        let max_head = self.config.limits.max_head_bytes;
        match http::parse_head(&buf, max_head) {
            Ok(None) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.state = State::Http(buf);
                }
            }
            Err(e) => {
                self.log(now, Level::Warn, Some(id), format!("refused request: {e}"));
                self.transmit(id, http::bad_head(e));
                self.forget(now, id);
            }
            Ok(Some((Head::Plain { method, path }, _))) => {
                let phase = if self.draining {
                    http::Phase::Draining
                } else {
                    http::Phase::Ready
                };
                let body = http::plain_response(
                    &method,
                    &path,
                    phase,
                    self.uptime_ms(now),
                    &self.config.version,
                );
                self.log(now, Level::Debug, Some(id), format!("http {method} {path}"));
                self.transmit(id, body);
                self.forget(now, id);
            }
            Ok(Some((Head::Upgrade(up), len))) => {
                self.on_upgrade(now, id, *up, buf.get(len..).unwrap_or(&[]).to_vec())
            }
        }
    }

    fn on_upgrade(&mut self, now: Instant, id: ConnId, up: http::Upgrade, rest: Vec<u8>) {
        let Some(peer) = self.conns.get(&id).map(|c| c.peer.ip()) else {
            return;
        };
        let fwd = auth::parse_forwarded(
            up.forwarded.as_deref(),
            up.x_forwarded_for.as_deref(),
            up.x_real_ip.as_deref(),
        );
        let client_ip = match auth::client_address(peer, &fwd, &self.config.trusted_proxies) {
            Ok(ip) => ip,
            Err(e) => {
                self.log(
                    now,
                    Level::Warn,
                    Some(id),
                    format!("refused upgrade from {peer}: {e}"),
                );
                self.transmit(id, http::proxy_refused());
                self.forget(now, id);
                return;
            }
        };
        if up.path == "/__openclaw__/worker" {
            self.log(
                now,
                Level::Warn,
                Some(id),
                "refused worker protocol upgrade".into(),
            );
        }
        let pre = self.preauth_by_ip.get(&client_ip).copied().unwrap_or(0);
        if pre >= self.config.limits.max_preauth_per_ip {
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!("refused {client_ip}: too many unauthenticated sockets"),
            );
            self.transmit(id, http::too_many_preauth());
            self.forget(now, id);
            return;
        }
        if self.draining {
            self.transmit(
                id,
                http::plain_response(
                    "GET",
                    "/ready",
                    http::Phase::Draining,
                    self.uptime_ms(now),
                    &self.config.version,
                ),
            );
            self.forget(now, id);
            return;
        }
        *self.preauth_by_ip.entry(client_ip).or_default() += 1;
        let local = auth::is_local(client_ip, up.origin.as_deref());
        let nonce = self.uuid();
        let mut ctx = ws_context(WsRole::Server, self.config.limits.max_preauth_payload);
        let mut io = MemIo::default();
        let challenge = OutFrame::direct(
            "connect.challenge",
            json!({"nonce": nonce, "ts": self.unix_ms(now), "capabilities": ["model-catalog-snapshot"]}),
        );
        let _ = ctx.write(&mut io, Message::text(challenge.to_text()));
        let mut bytes = http::switching_protocols(&up.request);
        bytes.append(&mut io.wr);
        let worker = up.path == "/__openclaw__/worker";
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::Ws(Box::new(Ws {
                ctx,
                io,
                client_ip,
                local,
                origin: up.origin,
                phase: Phase::PreHello { nonce, frames: 0 },
            }));
        }
        self.transmit(id, bytes);
        self.log(
            now,
            Level::Info,
            Some(id),
            format!("websocket open from {client_ip} (local: {local})"),
        );
        if worker {
            self.close_ws(now, id, CloseReason::WorkerProtocol);
            return;
        }
        if !rest.is_empty() {
            self.handle_input(now, id, &rest);
        }
    }

    fn read_frames(&mut self, now: Instant, id: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let State::Ws(ws) = &mut c.state else { return };
            let res = ws.ctx.read(&mut ws.io);
            let pending = std::mem::take(&mut ws.io.wr);
            let preauth = matches!(ws.phase, Phase::PreHello { .. });
            self.transmit(id, pending);
            match res {
                Ok(Message::Text(t)) => self.on_text(now, id, t.as_str()),
                Ok(Message::Binary(_)) => self.on_other_frame(now, id),
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {
                    self.on_other_frame(now, id)
                }
                Ok(Message::Close(_)) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return;
                }
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    self.log(now, Level::Info, Some(id), "closed by client".into());
                    self.forget(now, id);
                    return;
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    self.log(now, Level::Warn, Some(id), format!("frame too large: {e}"));
                    self.close_ws(now, id, CloseReason::TooBig { preauth });
                    return;
                }
                Err(tungstenite::Error::Utf8(_)) => {
                    self.close_ws(now, id, CloseReason::InvalidUtf8);
                    return;
                }
                Err(e) => {
                    self.log(
                        now,
                        Level::Warn,
                        Some(id),
                        format!("websocket protocol error: {e}"),
                    );
                    self.close_ws(now, id, CloseReason::ProtocolError);
                    return;
                }
            }
        }
    }

    /// Count a pre-hello frame; closes on the 16th.
    fn count_preauth_frame(&mut self, now: Instant, id: ConnId) -> bool {
        let max = self.config.limits.max_pending_handshake_frames;
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let State::Ws(ws) = &mut c.state else {
            return false;
        };
        if let Phase::PreHello { frames, .. } = &mut ws.phase {
            *frames += 1;
            if *frames > max {
                self.close_ws(now, id, CloseReason::TooManyHandshakeFrames);
                return false;
            }
        }
        true
    }

    fn on_other_frame(&mut self, now: Instant, id: ConnId) {
        let preauth = self.conns.get(&id).is_some_and(Conn::is_preauth_ws);
        if preauth {
            self.count_preauth_frame(now, id);
        }
    }

    fn on_text(&mut self, now: Instant, id: ConnId, text: &str) {
        let preauth = self.conns.get(&id).is_some_and(Conn::is_preauth_ws);
        if self.config.log_frames {
            self.log(
                now,
                Level::Trace,
                Some(id),
                format!("frame in: {}", crate::mask::mask_secrets(text)),
            );
        }
        if !preauth {
            self.on_request_text(now, id, text);
            return;
        }
        if !self.count_preauth_frame(now, id) || self.held.contains_key(&id) {
            return;
        }
        let req = match parse_request(text) {
            Ok(r) => r,
            Err(FrameError::NotJson) => {
                self.log(
                    now,
                    Level::Warn,
                    Some(id),
                    "handshake frame is not JSON".into(),
                );
                self.close_ws(now, id, CloseReason::HandshakeNotJson);
                return;
            }
            Err(FrameError::Invalid { id: rid, problem }) => {
                let unexpected = matches!(problem, InvalidFrame::UnexpectedProperty(_));
                let msg = if unexpected || rid == "invalid" {
                    "invalid handshake: first request must be connect".to_string()
                } else {
                    format!("invalid request frame: {problem}")
                };
                self.reject(now, id, &rid, ErrorShape::invalid(msg), None);
                return;
            }
        };
        if req.method != "connect" {
            self.reject(
                now,
                id,
                &req.id,
                ErrorShape::invalid("invalid handshake: first request must be connect"),
                None,
            );
            return;
        }
        let params = match handshake::parse_connect(&req.params) {
            Ok(p) => p,
            Err(e) => {
                self.reject(now, id, &req.id, e.to_error(), None);
                return;
            }
        };
        if !handshake::protocol_ok(&params) {
            self.send(
                now,
                id,
                &OutFrame::err(&req.id, handshake::protocol_mismatch(&params)),
            );
            self.log(
                now,
                Level::Warn,
                Some(id),
                "rejected: protocol mismatch".into(),
            );
            self.close_ws(now, id, CloseReason::ProtocolMismatch);
            return;
        }
        match self.admit(now, id, &params) {
            Ok(hello) => self.finish_hello(now, id, &req.id, params, hello),
            Err(err) => match err.delay {
                Some(delay) => self.hold(now, id, req.id, err, delay),
                None => self.reject(now, id, &req.id, err.error, err.close),
            },
        }
    }

    /// Hold a refusal back for `delay` (the local failed-auth penalty); frames meanwhile are ignored.
    fn hold(&mut self, now: Instant, id: ConnId, req_id: String, err: Refusal, delay: Duration) {
        self.log(
            now,
            Level::Debug,
            Some(id),
            format!("refusal held {} ms", delay.as_millis()),
        );
        self.held.insert(
            id,
            Held {
                req_id,
                error: err.error,
                close: err.close,
            },
        );
        self.schedule(now + delay, Timer::Refusal(id));
    }

    /// Answer a failed `connect` and close with `close`, by default 1008 with the message.
    pub(crate) fn reject(
        &mut self,
        now: Instant,
        id: ConnId,
        req_id: &str,
        err: ErrorShape,
        close: Option<CloseReason>,
    ) {
        let close = close.unwrap_or_else(|| CloseReason::Refused(err.message.as_str().into()));
        let detail = err
            .details
            .as_ref()
            .and_then(|d| d.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.log(
            now,
            Level::Warn,
            Some(id),
            format!("rejected: {} {detail}", err.message),
        );
        self.send(now, id, &OutFrame::err(req_id, err));
        self.close_ws(now, id, close);
    }

    fn finish_hello(
        &mut self,
        now: Instant,
        id: ConnId,
        req_id: &str,
        params: ConnectParams,
        hello: Admitted,
    ) {
        let conn_uuid = self.uuid();
        let now_ms = self.unix_ms(now);
        let max_payload = self.config.limits.max_payload;
        let session = Session {
            role: params.role,
            scopes: hello.scopes.clone(),
            client: params.client.clone(),
            conn_uuid: conn_uuid.clone(),
            device_id: hello.device_id.clone(),
            auth: hello.method,
            device_token: hello.used_device_token.clone(),
            caps: params.caps.clone(),
            commands: params.commands.clone(),
            seq: 0,
            unauthorized_calls: 0,
            connected_at_ms: now_ms,
        };
        let ip = {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let State::Ws(ws) = &mut c.state else { return };
            ws.ctx.set_config(|cfg| {
                cfg.max_message_size = Some(max_payload);
                cfg.max_frame_size = Some(max_payload);
            });
            ws.phase = Phase::Authed(Box::new(session));
            ws.client_ip
        };
        self.release_preauth(ip);
        if !crate::route::is_ephemeral_mode(&params.client.mode) {
            self.router.presence.insert(id);
        }
        let text = self.hello_text(now, req_id, &conn_uuid, &params, &hello);
        self.send_text(now, id, text);
        self.log(
            now,
            Level::Info,
            Some(id),
            format!(
                "hello {} {}/{} role={} scopes={:?} auth={}",
                ip,
                params.client.id,
                params.client.mode,
                params.role.as_str(),
                hello.scopes,
                hello.method.as_str()
            ),
        );
        for (event, payload) in hello.events {
            self.broadcast(now, event, &payload, None);
        }
        if params.role == Role::Node
            && let Some(dev) = hello.device_id
        {
            self.node_connected(now, id, &dev);
        }
    }
}

/// The result of an admission: who the connection is and what it may do.
pub(crate) struct Admitted {
    pub(crate) method: AuthMethod,
    pub(crate) scopes: Vec<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) device_token: Option<(String, u64)>,
    pub(crate) used_device_token: Option<String>,
    pub(crate) events: Vec<(&'static str, Value)>,
}

/// A refused `connect`: the error, the close reason when it is not the message, and
/// how long to hold the answer back (the local failed-auth penalty).
pub(crate) struct Refusal {
    pub(crate) error: ErrorShape,
    pub(crate) close: Option<CloseReason>,
    pub(crate) delay: Option<Duration>,
}

impl From<ErrorShape> for Refusal {
    fn from(error: ErrorShape) -> Self {
        Refusal {
            error,
            close: None,
            delay: None,
        }
    }
}

/// A refusal waiting for its penalty to pass.
struct Held {
    req_id: String,
    error: ErrorShape,
    close: Option<CloseReason>,
}

impl Gateway {
    /// The `hello-ok` response frame for request `req_id`, as JSON text.
    fn hello_text(
        &self,
        now: Instant,
        req_id: &str,
        conn_uuid: &str,
        params: &ConnectParams,
        hello: &Admitted,
    ) -> String {
        use crate::hello::{
            Auth, HelloOk, OkFrame, Policy, Server, SessionDefaults, Snapshot, StateVersion,
            Suspension,
        };
        let limits = &self.config.limits;
        let token = hello.device_token.as_ref();
        let payload = HelloOk::new(
            Server {
                version: &self.config.version,
                boot_id: &self.boot_id,
                conn_id: conn_uuid,
            },
            Snapshot {
                suspension: Suspension {
                    phase: if self.draining {
                        "draining"
                    } else {
                        "accepting"
                    },
                },
                presence: Value::Array(self.presence_list(now)),
                health: self.health_payload(now),
                state_version: StateVersion {
                    presence: self.presence_version,
                    health: self.health_version,
                },
                uptime_ms: self.uptime_ms(now),
                session_defaults: SessionDefaults,
                config_path: &self.config.config_path,
                state_dir: &self.config.state_dir,
                auth_mode: self.config.auth_mode.as_str(),
            },
            Auth {
                method: hello.method.as_str(),
                role: params.role.as_str(),
                scopes: &hello.scopes,
                device_token: token.map(|(t, _)| t.as_str()),
                issued_at_ms: token.map(|&(_, at)| at),
                recovery_migration_allowed: token.is_some() && params.role == Role::Operator,
            },
            Policy {
                max_payload: limits.max_payload,
                max_buffered_bytes: limits.max_buffered_bytes,
                tick_interval_ms: limits.tick_interval.as_millis() as u64,
            },
        );
        OkFrame::new(req_id, &payload).to_text()
    }

    /// Decide whether a `connect` is admitted, in upstream's order of checks.
    fn admit(&mut self, now: Instant, id: ConnId, p: &ConnectParams) -> Result<Admitted, Refusal> {
        let (client_ip, local, origin, nonce) = {
            let Some(State::Ws(ws)) = self.conns.get(&id).map(|c| &c.state) else {
                return Err(ErrorShape::invalid("connection gone").into());
            };
            let Phase::PreHello { nonce, .. } = &ws.phase else {
                return Err(
                    ErrorShape::invalid("connect is only valid as the first request").into(),
                );
            };
            (ws.client_ip, ws.local, ws.origin.clone(), nonce.clone())
        };
        let limits = self.config.limits.clone();
        let now_ms = self.unix_ms(now);
        if let Some(o) = &origin
            && !auth::origin_allowed(o, &self.config.allowed_origins)
        {
            return Err(handshake::origin_not_allowed(o).into());
        }
        let exempt = local && limits.auth_exempt_loopback;
        if !exempt
            && let Some(left) = self
                .limiter
                .locked(now, client_ip, CredentialKind::SharedSecret)
        {
            return Err(handshake::rate_limited(left.as_millis() as u64).into());
        }
        // Upstream decides a missing device identity before the secret: a Control UI needs a
        // secure context, and a node always needs a device.
        if p.device.is_none() && self.config.auth_mode != AuthMode::None {
            if p.client.id == "openclaw-control-ui" && !self.config.allow_insecure_control_ui {
                return Err(handshake::control_ui_device_required().into());
            }
            if p.role == Role::Node {
                return Err(handshake::device_identity_required().into());
            }
        }
        if let Some(dev) = &p.device {
            let fields = crate::device::SignedFields {
                client_id: &p.client.id,
                client_mode: &p.client.mode,
                role: p.role.as_str(),
                scopes: &p.scopes,
                token: p.auth.signed_token(),
                platform: &p.client.platform,
                device_family: p.client.device_family.as_deref().unwrap_or(""),
            };
            let skew = limits.device_signature_skew.as_millis() as i64;
            if let Err(e) = crate::device::verify(dev, &fields, &nonce, now_ms as i64, skew) {
                return Err(ErrorShape::invalid(e.to_string())
                    .with_details(json!({"code": e.code(), "reason": e.reason()}))
                    .into());
            }
        }
        let method = self.check_secret(now, p, client_ip, local, exempt)?;
        let used_device_token = match method {
            AuthMethod::DeviceToken => p.auth.device_token.clone().or_else(|| p.auth.token.clone()),
            _ => None,
        };
        let Some(dev) = &p.device else {
            if p.role == Role::Node {
                return Err(handshake::device_identity_required().into());
            }
            let keeps_scopes = local
                && origin.is_none()
                && ((p.client.id == "cli" && p.client.mode == "cli")
                    || (p.client.id == "gateway-client" && p.client.mode == "backend"));
            let scopes = if keeps_scopes {
                crate::scopes::normalize(&p.scopes)
            } else {
                Vec::new()
            };
            return Ok(Admitted {
                method,
                scopes,
                device_id: None,
                device_token: None,
                used_device_token,
                events: Vec::new(),
            });
        };
        self.admit_device(now, p, dev, client_ip, local, method, used_device_token)
    }

    /// Check the shared secret or device token; count failures.
    fn check_secret(
        &mut self,
        now: Instant,
        p: &ConnectParams,
        client_ip: IpAddr,
        local: bool,
        exempt: bool,
    ) -> Result<AuthMethod, Refusal> {
        let mode = self.config.auth_mode;
        let Some(secret) = self
            .config
            .secret
            .clone()
            .filter(|_| mode != AuthMode::None)
        else {
            return if local {
                Ok(AuthMethod::None)
            } else {
                Err(handshake::auth_required().into())
            };
        };
        let password = mode == AuthMode::Password;
        let shared = p.auth.token.as_deref().or(p.auth.password.as_deref());
        let fields = [p.auth.token.as_deref(), p.auth.password.as_deref()];
        if fields.iter().flatten().any(|s| secret.matches(s)) {
            return Ok(if password {
                AuthMethod::Password
            } else {
                AuthMethod::Token
            });
        }
        let role = p.role.as_str();
        if let Some(dev) = &p.device {
            if let Some(dt) = &p.auth.device_token {
                if !exempt
                    && let Some(left) =
                        self.limiter
                            .locked(now, client_ip, CredentialKind::DeviceToken)
                {
                    return Err(handshake::rate_limited(left.as_millis() as u64).into());
                }
                if self.store.token_matches(&dev.id, role, dt) {
                    return Ok(AuthMethod::DeviceToken);
                }
                self.count_failure(now, client_ip, CredentialKind::DeviceToken, exempt);
                return Err(handshake::auth_failure(
                    "unauthorized: device token mismatch (rotate/reissue device token)".into(),
                    "AUTH_DEVICE_TOKEN_MISMATCH",
                    "device_token_mismatch",
                    "update_auth_credentials",
                    false,
                )
                .into());
            }
            if let Some(t) = &p.auth.token
                && self.store.token_matches(&dev.id, role, t)
            {
                return Ok(AuthMethod::DeviceToken);
            }
        }
        let hint = handshake::auth_hint(&p.client, local, password);
        let (what, key) = if password {
            ("password", "PASSWORD")
        } else {
            ("token", "TOKEN")
        };
        if shared.is_none() {
            if p.device.is_none() {
                return Err(handshake::device_identity_required().into());
            }
            return Err(handshake::auth_failure(
                format!("unauthorized: gateway {what} missing ({hint})"),
                &format!("AUTH_{key}_MISSING"),
                &format!("{what}_missing"),
                "update_auth_configuration",
                false,
            )
            .into());
        }
        self.count_failure(now, client_ip, CredentialKind::SharedSecret, exempt);
        let paired = p
            .device
            .as_ref()
            .is_some_and(|d| self.store.devices.contains_key(&d.id));
        let error = handshake::auth_failure(
            format!("unauthorized: gateway {what} mismatch ({hint})"),
            &format!("AUTH_{key}_MISMATCH"),
            &format!("{what}_mismatch"),
            if paired {
                "retry_with_device_token"
            } else {
                "update_auth_credentials"
            },
            paired,
        );
        let delay = if exempt {
            Some(self.local_penalty(now, client_ip))
        } else {
            None
        };
        Err(Refusal {
            error,
            close: None,
            delay,
        })
    }

    /// The delay before answering a failed shared secret from a local address (exempt from the
    /// lockout): 250 ms doubling per failure in the window, at most 5 s; success does not reset it.
    fn local_penalty(&mut self, now: Instant, ip: IpAddr) -> Duration {
        let window = self.config.limits.auth_window;
        let entry = self.local_failures.entry(ip).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > window {
            *entry = (0, now);
        }
        entry.0 += 1;
        let ms = 250u64.saturating_mul(1u64 << (entry.0 - 1).min(10));
        Duration::from_millis(ms.min(self.config.limits.local_auth_penalty_max.as_millis() as u64))
    }

    fn count_failure(&mut self, now: Instant, ip: IpAddr, kind: CredentialKind, exempt: bool) {
        if exempt {
            return;
        }
        let l = &self.config.limits;
        let (max, window, lockout) = (l.auth_max_attempts, l.auth_window, l.auth_lockout);
        if self
            .limiter
            .fail(now, ip, kind, max, window, lockout)
            .is_some()
        {
            self.log(
                now,
                Level::Warn,
                None,
                format!(
                    "{ip} locked out for {}s after {max} failed attempts",
                    lockout.as_secs()
                ),
            );
        }
    }
}
