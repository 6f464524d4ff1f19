//! Outbound HTTP performed on the event loop's own thread: every `http://` and `https://`
//! request is connected, (for `https://`) put through its TLS handshake, written and read
//! here, non-blocking ([`crate::http_conn`]), so its answer reaches the core in the wake-up
//! that read it, with no worker thread to hand it over.
//!
//! The two blocking steps never run here: a host name is looked up on a short-lived
//! thread ([`crate::lookup`]: one per name however many requests wait on it, a few at once; a
//! request on a kept connection needs none), which also loads the TLS roots the first time an
//! `https://` request needs them ([`crate::tls`]); it hands the addresses back through a
//! waker on this module's poller. The addresses are raced as Node races them
//! ([`crate::happy_eyeballs`]: the next one tried beside the first after 250 ms), each
//! attempt within the connect timeout, the lookup within the lookup timeout (as long), and
//! opening a connection (the lookup, every attempt, the TLS handshake) within the open
//! timeout in all ([`HttpLimits`]).
//!
//! The sockets are registered with a poller of this module's own (`epoll` on Linux), whose
//! descriptor ([`HttpLoop::fd`]) the loop watches like any socket: readable means "drive me"
//! ([`HttpLoop::drive`]). Its deadlines (connect and idle timeouts, an end to report, a kept
//! connection to close) come from [`HttpLoop::due`].
//!
//! Connections are kept alive between requests ([`crate::http_pool`]): a response that ended
//! by its framing returns its connection to the pool, and the next request to the same
//! origin takes it. A request on a reused connection that fails before any byte of the
//! answer (the server closed it as it was sent) goes once more on a fresh connection when
//! that cannot repeat an effect: when writing it failed (the server cannot have read all of
//! it), or after it was written when it is [`idempotent`](HttpRequest::idempotent).
//! Everything else surfaces its error. Requests are not queued: sockets here cost no thread,
//! and the core already bounds model requests (`agents.defaults.maxConcurrent` runs) and
//! channel sends. A cancel ends a request at once (during a lookup too: its answer is
//! dropped) with the error [`CANCELLED`].
//!
//! The channels' WebSockets (Slack's Socket Mode, Discord's Gateway) run here too
//! ([`crate::ws_conn`]): looked up and connected as a request is, then upgraded, their frames
//! read in the wake-up their bytes cause and written when the core sends them
//! ([`HttpLoop::ws_open`], [`HttpLoop::ws_send`], [`HttpLoop::ws_close`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_core::model::http1::{ResponseLimits, Scheme, Target, encode_request};
use clawgate_core::model::{Dialing, HttpRequest};
use clawgate_core::{HttpError, HttpErrorKind, WorkId, WorkResult, WsOpen};
use mio::{Events, Poll, Token, Waker};

use crate::happy_eyeballs::dialed;
use crate::http_conn::{Exchange, Failed};
use crate::http_pool::{ConnectionPool, KeepAlive, Origin};
use crate::lookup::Lookups;
use crate::tls;
use crate::ws_conn::WsConn;

/// Readiness events taken from the poller per call.
const EVENTS_CAPACITY: usize = 64;
/// How many bytes one read takes from a socket.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// The token of the waker a lookup thread wakes the poller with (sockets count up from 0).
const RESOLVED: Token = Token(usize::MAX);
/// The default of [`HttpLimits::connect_timeout`]: 10 s, as Node's `fetch` (undici) gives
/// its whole connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`HttpLimits::lookup_timeout`]: 10 s, as Node's `fetch` (undici) gives its
/// whole connect, the lookup included.
pub const LOOKUP_TIMEOUT: Duration = CONNECT_TIMEOUT;
/// The default of [`HttpLimits::attempt_delay`]: 250 ms, Node's
/// `autoSelectFamilyAttemptTimeout`.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// The default of [`HttpLimits::open_timeout`]: 30 s, room for three addresses that never
/// answer.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of [`HttpLimits::lookup_threads`]: 4.
pub const LOOKUP_THREADS: usize = 4;
/// The default of [`HttpLimits::idle_timeout`]: 120 s without a byte ends a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The error of a cancelled request.
pub const CANCELLED: &str = "cancelled";

/// Looks a host name up: its addresses in the order to try them, or why there are none.
/// Blocking: it runs on a lookup thread. The system's resolver unless a test gives its own
/// ([`HttpLoop::with_lookup`]).
pub type LookupFn = Arc<dyn Fn(&str) -> Result<Vec<IpAddr>, String> + Send + Sync>;

/// How requests are performed (the WebSockets connect with the same timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long connecting to one address may take.
    pub connect_timeout: Duration,
    /// How long a host's lookup may take (waiting for a lookup thread included): one that
    /// never answers ends its request then, a timeout (a transport failure, on which
    /// Telegram's transport tries its next attempt), not at the open timeout.
    pub lookup_timeout: Duration,
    /// How long an attempt to connect goes without connecting before the next address is
    /// tried beside it ([`crate::happy_eyeballs`]).
    pub attempt_delay: Duration,
    /// How long opening a fresh connection may take in all, from the request's start:
    /// the host's lookup (waiting for a lookup thread included), every attempt to connect,
    /// and the TLS handshake, however many bytes it exchanges meanwhile. (Node's `fetch`
    /// gives connect and TLS handshake 10 s in all, and gives an attempt up when it tries
    /// the next address; here an address gets [`connect_timeout`](Self::connect_timeout).)
    pub open_timeout: Duration,
    /// How long a request may go without sending or receiving a byte.
    pub idle_timeout: Duration,
    /// How many host-name lookups run at once, each on a thread of its own (more names wait
    /// their turn): a burst of requests to new names starts no more threads than this.
    pub lookup_threads: usize,
    /// The response parser's limits.
    pub response: ResponseLimits,
    /// The idle connections kept for later requests.
    pub keep_alive: KeepAlive,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: CONNECT_TIMEOUT,
            lookup_timeout: LOOKUP_TIMEOUT,
            attempt_delay: ATTEMPT_DELAY,
            open_timeout: OPEN_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            lookup_threads: LOOKUP_THREADS,
            response: ResponseLimits::default(),
            keep_alive: KeepAlive::default(),
        }
    }
}

/// A request: what it is, for whom, and where it goes.
struct Request {
    id: WorkId,
    target: Target,
    origin: Origin,
    idempotent: bool,
    method: &'static str,
    dialing: Dialing,
}

/// What a fresh connection is for.
enum Purpose {
    /// A request: its wire.
    Request(Vec<u8>),
    /// The WebSocket under this token, upgraded once the connection is open.
    Socket(Token),
}

/// A connection whose host is being looked up: for whom, and for what.
struct Resolving {
    req: Request,
    purpose: Purpose,
    /// When its connection must be open ([`HttpLimits::open_timeout`]).
    by: Instant,
    /// When its lookup must have answered ([`HttpLimits::lookup_timeout`], no later than
    /// `by`).
    answer_by: Instant,
    /// The addresses known without a lookup (a name its dialing pins, or an address), when
    /// the lookup only loads the TLS roots: its answer holds the first of them alone.
    known: Option<Vec<IpAddr>>,
}

impl Request {
    /// `host:port`, as errors name it.
    fn name(&self) -> String {
        format!("{}:{}", self.target.host, self.target.port)
    }

    /// For `https://`, the host the certificate must name.
    fn tls(&self) -> Option<String> {
        (self.target.scheme == Scheme::Https).then(|| self.target.host.clone())
    }
}

/// A request under way.
struct Running {
    req: Request,
    exchange: Exchange,
    /// Its connection came from the pool (a failure may send it again on a fresh one).
    reused: bool,
    /// The token its sockets are registered under, once it waited for them.
    token: Option<Token>,
}

/// The requests the loop performs itself (see the module doc).
pub struct HttpLoop {
    poll: Poll,
    events: Events,
    limits: HttpLimits,
    pool: ConnectionPool,
    running: HashMap<Token, Running>,
    /// The WebSockets, by the token their sockets are registered under.
    sockets: HashMap<Token, WsConn>,
    /// The token of each WebSocket, by its id.
    socket_tokens: HashMap<WorkId, Token>,
    /// Tokens are never used twice: a late event of a finished request finds nothing.
    next_token: usize,
    /// Requests whose host is being looked up, by ticket.
    resolving: HashMap<u64, Resolving>,
    next_ticket: u64,
    /// The lookups, which wake the poller with their answers.
    lookups: Lookups,
    /// Results decided outside [`HttpLoop::drive`] (a cancel's end, a request that failed as
    /// it started), reported at the next drive, which [`HttpLoop::due`] asks for at once.
    decided: Vec<(WorkId, WorkResult)>,
    /// Since when `decided` has waited (it is due from then on).
    decided_since: Option<Instant>,
    buf: Box<[u8]>,
    /// The tokens of one poll's events, and one step's results: buffers kept from one
    /// drive to the next (as `decided`'s is) instead of allocated in each.
    ready: Vec<Token>,
    results: Vec<WorkResult>,
}

impl std::fmt::Debug for HttpLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLoop")
            .field("running", &self.running.len())
            .field("resolving", &self.resolving.len())
            .field("sockets", &self.sockets.len())
            .field("idle", &self.pool.len())
            .finish_non_exhaustive()
    }
}

impl HttpLoop {
    /// A loop client with these limits (the poller is created here).
    pub fn new(limits: HttpLimits) -> io::Result<Self> {
        Self::with_lookup(limits, Arc::new(crate::lookup::system))
    }

    /// A loop client whose host names `lookup` looks up instead of the system's resolver.
    pub fn with_lookup(limits: HttpLimits, lookup: LookupFn) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), RESOLVED)?);
        Ok(HttpLoop {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            limits,
            pool: ConnectionPool::new(limits.keep_alive),
            running: HashMap::new(),
            sockets: HashMap::new(),
            socket_tokens: HashMap::new(),
            next_token: 0,
            resolving: HashMap::new(),
            next_ticket: 0,
            lookups: Lookups::new(lookup, waker, limits.lookup_threads),
            decided: Vec::new(),
            decided_since: None,
            buf: vec![0u8; READ_BUFFER_BYTES].into_boxed_slice(),
            ready: Vec::with_capacity(EVENTS_CAPACITY),
            results: Vec::new(),
        })
    }

    /// The descriptor that becomes readable when a socket here is ready.
    #[allow(unsafe_code)]
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the poller owns this descriptor and closes it only when dropped, which the
        // borrow of `self` rules out while the `BorrowedFd` lives (mio's `Poll` offers only
        // `AsRawFd`).
        unsafe { BorrowedFd::borrow_raw(self.poll.as_raw_fd()) }
    }

    /// Requests under way (their host being looked up included).
    pub fn running(&self) -> usize {
        self.running.len() + self.resolving.len()
    }

    /// Idle connections kept for later requests.
    pub fn idle_connections(&self) -> usize {
        self.pool.len()
    }

    /// When [`HttpLoop::drive`] is due without readiness: the earliest timeout (a lookup's
    /// and a WebSocket's included: an open one has none), a kept connection's expiry, or now
    /// when results wait to be reported.
    pub fn due(&self) -> Option<Instant> {
        if self.decided_since.is_some() {
            return self.decided_since;
        }
        self.running
            .values()
            .map(|r| r.exchange.deadline())
            .chain(self.sockets.values().filter_map(WsConn::deadline))
            .chain(self.resolving.values().map(|r| r.answer_by))
            .chain(self.pool.next_expiry())
            .min()
    }

    /// Start `req`, reporting with `id`: on a kept connection its
    /// request is written at once. Its results come from later [`HttpLoop::drive`]s.
    pub fn start(&mut self, id: WorkId, req: HttpRequest, now: Instant) {
        let invalid = |e: String| HttpError::new(HttpErrorKind::Other, e);
        let prepared = Target::parse(&req.url)
            .map_err(|e| invalid(e.to_string()))
            .and_then(|t| {
                let wire = encode_request(&req, &t).map_err(|e| invalid(e.to_string()))?;
                Ok((t, wire))
            });
        let (target, wire) = match prepared {
            Ok(p) => p,
            Err(e) => return self.decide(vec![(id, WorkResult::HttpEnd(Err(e)))]),
        };
        let req = Request {
            id,
            origin: Origin::of(&target, req.dialing),
            target,
            idempotent: req.idempotent,
            method: req.method,
            dialing: req.dialing,
        };
        let mut out = Vec::new();
        match self.pool.checkout(&req.origin, now) {
            Some(conn) => {
                let exchange = Exchange::on(conn, req.name(), wire, req.method, &self.limits, now);
                let running = Running {
                    req,
                    exchange,
                    reused: true,
                    token: None,
                };
                self.step(running, now, &mut out);
            }
            None => self.open(req, Purpose::Request(wire), now, &mut out),
        }
        self.decide(out);
    }

    /// Open WebSocket `id` as `open` says (see [`crate::ws_conn`]); its results come from
    /// later [`HttpLoop::drive`]s, and end with exactly one `WsClosed`.
    pub fn ws_open(&mut self, id: WorkId, open: WsOpen, now: Instant) {
        let (conn, target) = match WsConn::new(id, &open, &self.limits) {
            Ok(made) => made,
            Err(reason) => {
                let closed = WorkResult::WsClosed { code: None, reason };
                return self.decide(vec![(id, closed)]);
            }
        };
        let token = self.token();
        self.sockets.insert(token, conn);
        self.socket_tokens.insert(id, token);
        let req = Request {
            id,
            origin: Origin::of(&target, Dialing::default()),
            target,
            idempotent: false,
            method: "GET",
            dialing: Dialing::default(),
        };
        let mut out = Vec::new();
        self.open(req, Purpose::Socket(token), now, &mut out);
        self.decide(out);
    }

    /// Send a text frame on WebSocket `id`: written at once as far as its socket takes it
    /// (ignored once it is closed).
    pub fn ws_send(&mut self, id: WorkId, text: String) {
        self.on_socket(id, |conn, results| conn.send(text, results));
    }

    /// Close WebSocket `id` with `code` (see [`WsConn::close`]); its `WsClosed` still comes.
    pub fn ws_close(&mut self, id: WorkId, code: u16, now: Instant) {
        if let Some(&token) = self.socket_tokens.get(&id)
            && let Some(ticket) = self.resolving.iter().find_map(|(ticket, r)| {
                matches!(r.purpose, Purpose::Socket(t) if t == token).then_some(*ticket)
            })
        {
            // Its lookup's answer is for nobody now.
            self.resolving.remove(&ticket);
            self.lookups.forget(ticket);
        }
        self.on_socket(id, |conn, results| conn.close(code, now, results));
    }

    /// Do `act` on WebSocket `id`, if it is still open, and report what it ended in at the
    /// next drive.
    fn on_socket(&mut self, id: WorkId, act: impl FnOnce(&mut WsConn, &mut Vec<WorkResult>)) {
        let Some(&token) = self.socket_tokens.get(&id) else {
            return;
        };
        let Some(mut conn) = self.sockets.remove(&token) else {
            return;
        };
        let mut results = std::mem::take(&mut self.results);
        act(&mut conn, &mut results);
        self.results = results;
        let mut out = Vec::new();
        self.settle(token, conn, &mut out);
        self.decide(out);
    }

    /// A fresh token.
    fn token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        token
    }

    /// Open a fresh connection for `req` (for `purpose`), open within the open timeout from
    /// `now`: at once to an IP address or a name its dialing pins (when TLS, if it needs it,
    /// is set up); otherwise once a lookup thread found the host's addresses and, for
    /// `https://`, loaded the TLS configuration (both block: never on the loop's thread; an
    /// address, a pinned name's first included, is not looked up).
    fn open(
        &mut self,
        req: Request,
        purpose: Purpose,
        now: Instant,
        out: &mut Vec<(WorkId, WorkResult)>,
    ) {
        let by = now + self.limits.open_timeout;
        let https = req.target.scheme == Scheme::Https;
        let known = match req.dialing.pinned_for(&req.target.host) {
            Some(pinned) => Some(pinned.to_vec()),
            None => req.target.host.parse::<IpAddr>().ok().map(|ip| vec![ip]),
        };
        match known {
            Some(ips) if !https || tls::is_loaded() => {
                self.connect(req, ips, purpose, by, now, out);
            }
            known => {
                let ticket = self.next_ticket;
                self.next_ticket = self.next_ticket.wrapping_add(1);
                let load_tls = https && !tls::is_loaded();
                // Known addresses are not looked up: the first is asked, to load TLS.
                let name = known
                    .as_ref()
                    .and_then(|ips| ips.first().map(IpAddr::to_string))
                    .unwrap_or_else(|| req.target.host.clone());
                self.lookups.ask(&name, load_tls, ticket);
                let resolving = Resolving {
                    req,
                    purpose,
                    by,
                    answer_by: by.min(now + self.limits.lookup_timeout),
                    known,
                };
                self.resolving.insert(ticket, resolving);
            }
        }
    }

    /// Connect for `req` to the first of `ips` that answers (open by `by`) and go on with it:
    /// send its request, or upgrade its WebSocket.
    fn connect(
        &mut self,
        req: Request,
        ips: Vec<IpAddr>,
        purpose: Purpose,
        by: Instant,
        now: Instant,
        out: &mut Vec<(WorkId, WorkResult)>,
    ) {
        let port = req.target.port;
        let addrs: Vec<SocketAddr> = dialed(ips, &req.dialing)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        let limits = HttpLimits {
            attempt_delay: (req.dialing.attempt_delay).unwrap_or(self.limits.attempt_delay),
            ..self.limits
        };
        let wire = match purpose {
            Purpose::Request(wire) => wire,
            Purpose::Socket(token) => {
                if let Some(conn) = self.sockets.get_mut(&token) {
                    conn.connect(&addrs, req.tls(), &limits, by, now);
                    self.socket_step(token, now, out);
                }
                return;
            }
        };
        let exchange = Exchange::connect(
            &addrs,
            req.tls(),
            req.name(),
            wire,
            req.method,
            &limits,
            by,
            now,
        );
        let running = Running {
            req,
            exchange,
            reused: false,
            token: None,
        };
        self.step(running, now, out);
    }

    /// Report `results` at the next drive, due at once.
    fn decide(&mut self, mut results: Vec<(WorkId, WorkResult)>) {
        if !results.is_empty() {
            self.decided.append(&mut results);
            self.decided_since.get_or_insert_with(Instant::now);
        }
    }

    /// Stop the request `id`: its connection is closed (or its lookup's answer ignored) and
    /// it ends with `HttpEnd(Err("cancelled"))` at the next drive. Returns whether it was one
    /// of these.
    pub fn cancel(&mut self, id: WorkId) -> bool {
        if let Some(token) = self
            .running
            .iter()
            .find_map(|(t, r)| (r.req.id == id).then_some(*t))
        {
            self.running.remove(&token);
        } else if let Some(ticket) = self.resolving.iter().find_map(|(t, r)| {
            (r.req.id == id && matches!(r.purpose, Purpose::Request(_))).then_some(*t)
        }) {
            self.resolving.remove(&ticket);
            self.lookups.forget(ticket);
        } else {
            return false;
        }
        let cancelled = HttpError::new(HttpErrorKind::Cancelled, CANCELLED);
        self.decide(vec![(id, WorkResult::HttpEnd(Err(cancelled)))]);
        true
    }

    /// Drop every request and WebSocket (unreported) and every kept connection; a lookup
    /// still running ends on its own, answering nobody.
    pub fn shutdown(&mut self) {
        self.running.clear();
        self.sockets.clear();
        self.socket_tokens.clear();
        self.resolving.clear();
        self.lookups.clear();
        self.decided.clear();
        self.decided_since = None;
        self.pool.sweep(Instant::now(), true);
    }

    /// Move every request along as far as its socket allows (never waiting: the loop calls
    /// this when the descriptor is readable or [`HttpLoop::due`] passed), end those past their
    /// deadline, and hand every result to `report`, in order per request.
    pub fn drive(&mut self, now: Instant, mut report: impl FnMut(WorkId, WorkResult)) {
        let mut out = std::mem::take(&mut self.decided);
        self.decided_since = None;
        let mut ready = std::mem::take(&mut self.ready);
        loop {
            if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO))
                && e.kind() != io::ErrorKind::Interrupted
            {
                break;
            }
            ready.clear();
            ready.extend(self.events.iter().map(|e| e.token()));
            let full = ready.len() == self.events.capacity();
            for &token in &ready {
                if token == RESOLVED {
                    self.resolved(now, &mut out);
                } else if let Some(running) = self.running.remove(&token) {
                    self.step(running, now, &mut out);
                } else {
                    self.socket_step(token, now, &mut out);
                }
            }
            // Edge-triggered: fewer events than room means none is left.
            if !full {
                break;
            }
        }
        self.ready = ready;
        let late: Vec<Token> = self
            .running
            .iter()
            .filter(|(_, r)| r.exchange.deadline() <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(mut r) = self.running.remove(&token) {
                match r.exchange.timed_out() {
                    Ok(()) => self.step(r, now, &mut out),
                    Err(failed) => self.fail(r, failed, now, &mut out),
                }
            }
        }
        let late: Vec<Token> = self
            .sockets
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            self.socket_step(token, now, &mut out);
        }
        self.end_late_lookups(now, &mut out);
        self.pool.sweep(now, false);
        for (id, result) in out.drain(..) {
            report(id, result);
        }
        // Nothing here decides results for a later drive: the buffer is kept for the next.
        if self.decided.is_empty() {
            self.decided = out;
        }
    }

    /// Connect the requests whose lookups ended.
    fn resolved(&mut self, now: Instant, out: &mut Vec<(WorkId, WorkResult)>) {
        for (ticket, answer) in self.lookups.answers() {
            let Some(Resolving {
                req,
                purpose,
                by,
                known,
                ..
            }) = self.resolving.remove(&ticket)
            else {
                continue;
            };
            match answer {
                Ok(found) => self.connect(req, known.unwrap_or(found), purpose, by, now, out),
                Err(e) => {
                    let error = e.error(&req.name());
                    self.not_open(&req, purpose, error, out);
                }
            }
        }
    }

    /// End the requests whose lookup did not answer within the lookup timeout (or the open
    /// timeout, when that is shorter).
    fn end_late_lookups(&mut self, now: Instant, out: &mut Vec<(WorkId, WorkResult)>) {
        let late: Vec<u64> = self
            .resolving
            .iter()
            .filter(|(_, r)| r.answer_by <= now)
            .map(|(t, _)| *t)
            .collect();
        for ticket in late {
            self.lookups.forget(ticket);
            if let Some(r) = self.resolving.remove(&ticket) {
                let error = lookup_timeout_error(&r.req.name(), r.answer_by < r.by, &self.limits);
                let error = HttpError::new(HttpErrorKind::TimedOut, error);
                self.not_open(&r.req, r.purpose, error, out);
            }
        }
    }

    /// End what a connection that could not be opened was for with `error`.
    fn not_open(
        &mut self,
        req: &Request,
        purpose: Purpose,
        error: HttpError,
        out: &mut Vec<(WorkId, WorkResult)>,
    ) {
        match purpose {
            Purpose::Request(_) => out.push((req.id, WorkResult::HttpEnd(Err(error)))),
            Purpose::Socket(token) => {
                if let Some(mut conn) = self.sockets.remove(&token) {
                    conn.fail(error.message, &mut self.results);
                    self.settle(token, conn, out);
                }
            }
        }
    }

    /// Move the WebSocket under `token` along as far as its socket allows (or end it past
    /// its deadline); its results go to `out`.
    fn socket_step(&mut self, token: Token, now: Instant, out: &mut Vec<(WorkId, WorkResult)>) {
        let Some(mut conn) = self.sockets.remove(&token) else {
            return;
        };
        conn.advance(self.poll.registry(), now, &mut self.buf, &mut self.results);
        self.settle(token, conn, out);
    }

    /// After the WebSocket under `token` moved: its results onto `out`, and it kept,
    /// watched for what it waits on, or forgotten once ended.
    fn settle(&mut self, token: Token, mut conn: WsConn, out: &mut Vec<(WorkId, WorkResult)>) {
        let id = conn.id();
        if !conn.is_ended() {
            conn.watch(self.poll.registry(), token, &mut self.results);
        }
        out.extend(self.results.drain(..).map(|r| (id, r)));
        if conn.is_ended() {
            self.socket_tokens.remove(&id);
        } else {
            self.sockets.insert(token, conn);
        }
    }

    /// Advance `running` and keep it, end it (its connection to the pool when it may carry
    /// another request), or fail it; its results go to `out`.
    fn step(&mut self, mut running: Running, now: Instant, out: &mut Vec<(WorkId, WorkResult)>) {
        let id = running.req.id;
        let advanced = running
            .exchange
            .advance(now, &mut self.buf, &mut self.results);
        out.extend(self.results.drain(..).map(|r| (id, r)));
        match advanced {
            Ok(None) => self.keep(running, out),
            Ok(Some(ended)) => {
                out.push((id, WorkResult::HttpEnd(Ok(()))));
                // Out of the poller: a kept connection must not wake it while idle.
                let conn = running.exchange.into_connection(self.poll.registry());
                if let Some(mut conn) = conn
                    && ended.reusable
                    && conn.stream.is_drained()
                {
                    self.pool
                        .checkin(running.req.origin, conn, ended.keep_alive.as_deref(), now);
                }
            }
            Err(failed) => self.fail(running, failed, now, out),
        }
    }

    /// Keep a request that waits for its sockets, registered for what it waits on under a
    /// token of its own ([`Exchange::watch`]: each socket once, and again only when that
    /// changes).
    fn keep(&mut self, mut running: Running, out: &mut Vec<(WorkId, WorkResult)>) {
        let token = match running.token {
            Some(token) => token,
            None => self.token(),
        };
        running.token = Some(token);
        match running.exchange.watch(self.poll.registry(), token) {
            Ok(()) => {
                self.running.insert(token, running);
            }
            Err(e) => {
                let error = HttpError::new(
                    HttpErrorKind::Other,
                    format!("cannot watch the connection: {e}"),
                );
                out.push((running.req.id, WorkResult::HttpEnd(Err(error))));
            }
        }
    }

    /// End a failed request, or send it again on a fresh connection when its reused one
    /// failed before any answer and that cannot repeat an effect.
    fn fail(
        &mut self,
        running: Running,
        failed: Failed,
        now: Instant,
        out: &mut Vec<(WorkId, WorkResult)>,
    ) {
        if !(running.reused && failed.may_send_again(running.req.idempotent)) {
            return out.push((running.req.id, WorkResult::HttpEnd(Err(failed.error))));
        }
        // Its socket closes here, which takes it out of the poller.
        let wire = running.exchange.into_wire();
        self.open(running.req, Purpose::Request(wire), now, out);
    }
}

/// The error of a request to `name` (`host:port`) whose host's lookup did not answer within
/// `limits.lookup_timeout` (when `lookup`) or `limits.open_timeout`.
fn lookup_timeout_error(name: &str, lookup: bool, limits: &HttpLimits) -> String {
    let (bound, which) = if lookup {
        (limits.lookup_timeout, "lookup timeout")
    } else {
        (limits.open_timeout, "open timeout")
    };
    format!(
        "cannot resolve {name}: no answer within {} s ({which})",
        bound.as_secs_f32()
    )
}
