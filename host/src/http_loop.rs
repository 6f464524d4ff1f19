//! Outbound HTTP performed on the event loop's own thread: what needs no blocking call (a
//! plain `http://` URL whose host is an IP address: no DNS lookup, no TLS handshake) is
//! connected, written and read here, non-blocking ([`crate::http_conn`]), so its answer
//! reaches the core in the wake-up that read it, with no worker thread to hand it over. The
//! rest goes to the [`HttpWorkers`](crate::http_worker::HttpWorkers) ([`HttpLoop::takes`]).
//!
//! The sockets are registered with a poller of this module's own (`epoll` on Linux), whose
//! descriptor ([`HttpLoop::fd`]) the loop watches like any socket: readable means "drive me"
//! ([`HttpLoop::drive`]). Its deadlines (connect and idle timeouts, an end to report, a kept
//! connection to close) come from [`HttpLoop::due`].
//!
//! It keeps the worker path's rules (see [`crate::http_worker`]): the same
//! [`HttpLimits`] (connect and idle timeouts, response limits, the keep-alive pool and its
//! bounds), the same retry of a request whose reused connection failed before any answer, the
//! same results in the same order, the same errors. What differs: requests are not queued
//! behind [`HttpLimits::max_concurrent`] (that bound is on threads; sockets here cost none,
//! and the core already bounds model requests and channel sends), and a cancel ends a request
//! at once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::model::http1::{Scheme, Target, encode_request};
use clawgate_core::{WorkId, WorkResult};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::http_conn::{Exchange, Failed};
use crate::http_pool::{ConnectionPool, Origin};
use crate::http_worker::{CANCELLED, HttpLimits};

/// Readiness events taken from the poller per call.
const EVENTS_CAPACITY: usize = 64;
/// How many bytes one read takes from a socket.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A request under way.
struct Running {
    id: WorkId,
    exchange: Exchange,
    origin: Origin,
    /// Its connection came from the pool (a failure may send it again on a fresh one).
    reused: bool,
    idempotent: bool,
    method: &'static str,
    /// Where a fresh connection goes.
    addr: SocketAddr,
    /// The token its socket is registered under, once it waited for it.
    token: Option<Token>,
    /// Registered for writability too.
    writable: bool,
}

/// The requests the loop performs itself (see the module doc).
pub struct HttpLoop {
    poll: Poll,
    events: Events,
    limits: HttpLimits,
    pool: ConnectionPool,
    running: HashMap<Token, Running>,
    /// Tokens are never used twice: a late event of a finished request finds nothing.
    next_token: usize,
    /// Results decided outside [`HttpLoop::drive`] (a cancel's end, a request that failed as
    /// it started), reported at the next drive, which [`HttpLoop::due`] asks for at once.
    decided: Vec<(WorkId, WorkResult)>,
    /// Since when `decided` has waited (it is due from then on).
    decided_since: Option<Instant>,
    buf: Box<[u8]>,
}

impl std::fmt::Debug for HttpLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLoop")
            .field("running", &self.running.len())
            .field("idle", &self.pool.len())
            .finish_non_exhaustive()
    }
}

impl HttpLoop {
    /// A loop client with these limits (the poller is created here).
    pub fn new(limits: HttpLimits) -> io::Result<Self> {
        Ok(HttpLoop {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            limits,
            pool: ConnectionPool::new(limits.keep_alive),
            running: HashMap::new(),
            next_token: 0,
            decided: Vec::new(),
            decided_since: None,
            buf: vec![0u8; READ_BUFFER_BYTES].into_boxed_slice(),
        })
    }

    /// Whether `req` is performed here: a plain `http://` URL to an IP address.
    pub fn takes(req: &HttpRequest) -> bool {
        Target::parse(&req.url).is_ok_and(|t| address_of(&t).is_some())
    }

    /// The descriptor that becomes readable when a socket here is ready.
    #[allow(unsafe_code)]
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the poller owns this descriptor and closes it only when dropped, which the
        // borrow of `self` rules out while the `BorrowedFd` lives (mio's `Poll` offers only
        // `AsRawFd`).
        unsafe { BorrowedFd::borrow_raw(self.poll.as_raw_fd()) }
    }

    /// Requests under way.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Idle connections kept for later requests.
    pub fn idle_connections(&self) -> usize {
        self.pool.len()
    }

    /// When [`HttpLoop::drive`] is due without readiness: the earliest timeout, a kept
    /// connection's expiry, or now when results wait to be reported.
    pub fn due(&self) -> Option<Instant> {
        if self.decided_since.is_some() {
            return self.decided_since;
        }
        self.running
            .values()
            .map(|r| r.exchange.deadline())
            .chain(self.pool.next_expiry())
            .min()
    }

    /// Start `req` (one [`HttpLoop::takes`]), reporting with `id`: on a kept connection its
    /// request is written at once. Its results come from later [`HttpLoop::drive`]s.
    pub fn start(&mut self, id: WorkId, req: HttpRequest, now: Instant) {
        let prepared = Target::parse(&req.url)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                let wire = encode_request(&req, &t).map_err(|e| e.to_string())?;
                let addr = address_of(&t).ok_or_else(|| format!("{} is not an address", t.host))?;
                Ok((Origin::of(&t), addr, wire))
            });
        let (origin, addr, wire) = match prepared {
            Ok(p) => p,
            Err(e) => return self.decide(vec![(id, WorkResult::HttpEnd(Err(e)))]),
        };
        let name = name_of(addr);
        let (exchange, reused) = match self.pool.checkout(&origin, now) {
            Some(conn) => (
                Exchange::on(conn, name, wire, req.method, &self.limits, now),
                true,
            ),
            None => match Exchange::connect(addr, name, wire, req.method, &self.limits, now) {
                Ok(exchange) => (exchange, false),
                Err(e) => return self.decide(vec![(id, WorkResult::HttpEnd(Err(e)))]),
            },
        };
        let running = Running {
            id,
            exchange,
            origin,
            reused,
            idempotent: req.idempotent,
            method: req.method,
            addr,
            token: None,
            writable: false,
        };
        let mut out = Vec::new();
        self.step(running, now, &mut out);
        self.decide(out);
    }

    /// Report `results` at the next drive, due at once.
    fn decide(&mut self, mut results: Vec<(WorkId, WorkResult)>) {
        if !results.is_empty() {
            self.decided.append(&mut results);
            self.decided_since.get_or_insert_with(Instant::now);
        }
    }

    /// Stop the request `id`: its connection is closed and it ends with
    /// `HttpEnd(Err("cancelled"))` at the next drive. Returns whether it was one of these.
    pub fn cancel(&mut self, id: WorkId) -> bool {
        let Some(token) = self
            .running
            .iter()
            .find_map(|(t, r)| (r.id == id).then_some(*t))
        else {
            return false;
        };
        self.running.remove(&token);
        self.decide(vec![(id, WorkResult::HttpEnd(Err(CANCELLED.into())))]);
        true
    }

    /// Drop every request (unreported) and every kept connection.
    pub fn shutdown(&mut self) {
        self.running.clear();
        self.decided.clear();
        self.decided_since = None;
        self.pool.sweep(Instant::now(), true);
    }

    /// Move every request along as far as its socket allows, wait up to `timeout` for
    /// readiness first (the loop passes zero: it was told the descriptor is readable), end
    /// those past their deadline, and hand every result to `report`, in order per request.
    pub fn drive(
        &mut self,
        now: Instant,
        timeout: Option<Duration>,
        mut report: impl FnMut(WorkId, WorkResult),
    ) {
        let mut out = std::mem::take(&mut self.decided);
        self.decided_since = None;
        let mut wait = timeout;
        loop {
            if let Err(e) = self.poll.poll(&mut self.events, wait)
                && e.kind() != io::ErrorKind::Interrupted
            {
                break;
            }
            wait = Some(Duration::ZERO);
            let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
            let full = tokens.len() == self.events.capacity();
            for token in tokens {
                if let Some(running) = self.running.remove(&token) {
                    self.step(running, now, &mut out);
                }
            }
            // Edge-triggered: fewer events than room means none is left.
            if !full {
                break;
            }
        }
        let late: Vec<Token> = self
            .running
            .iter()
            .filter(|(_, r)| r.exchange.deadline() <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(r) = self.running.remove(&token) {
                let failed = r.exchange.timed_out();
                self.fail(r, failed, now, &mut out);
            }
        }
        self.pool.sweep(now, false);
        for (id, result) in out {
            report(id, result);
        }
    }

    /// Advance `running` and keep it, end it (its connection to the pool when it may carry
    /// another request), or fail it; its results go to `out`.
    fn step(&mut self, mut running: Running, now: Instant, out: &mut Vec<(WorkId, WorkResult)>) {
        let id = running.id;
        let mut results = Vec::new();
        let advanced = running.exchange.advance(now, &mut self.buf, &mut results);
        out.extend(results.into_iter().map(|r| (id, r)));
        match advanced {
            Ok(None) => self.keep(running, out),
            Ok(Some(ended)) => {
                out.push((id, WorkResult::HttpEnd(Ok(()))));
                let conn = running.exchange.into_connection();
                // A socket that closes leaves the poller by itself; a kept one must not
                // wake it while idle.
                if ended.reusable {
                    if running.token.is_some() {
                        let fd = conn.stream.tcp().as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    self.pool
                        .checkin(running.origin, conn, ended.keep_alive.as_deref(), now);
                }
            }
            Err(failed) => self.fail(running, failed, now, out),
        }
    }

    /// Keep a request that waits for its socket, registered for what it waits on (once,
    /// and again only when that changes).
    fn keep(&mut self, mut running: Running, out: &mut Vec<(WorkId, WorkResult)>) {
        let writable = running.exchange.wants_write();
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let fd = running.exchange.socket().as_raw_fd();
        let registry = self.poll.registry();
        let token = match running.token {
            Some(token) if running.writable == writable => Ok(token),
            Some(token) => registry
                .reregister(&mut SourceFd(&fd), token, interest)
                .map(|()| token),
            None => {
                let token = Token(self.next_token);
                self.next_token = self.next_token.wrapping_add(1);
                registry
                    .register(&mut SourceFd(&fd), token, interest)
                    .map(|()| token)
            }
        };
        match token {
            Ok(token) => {
                running.token = Some(token);
                running.writable = writable;
                self.running.insert(token, running);
            }
            Err(e) => {
                let error = format!("cannot watch the connection: {e}");
                out.push((running.id, WorkResult::HttpEnd(Err(error))));
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
        if !(running.reused && failed.may_send_again(running.idempotent)) {
            return out.push((running.id, WorkResult::HttpEnd(Err(failed.error))));
        }
        let Running {
            id,
            exchange,
            origin,
            idempotent,
            method,
            addr,
            ..
        } = running;
        // Its socket closes here, which takes it out of the poller.
        let wire = exchange.into_wire();
        match Exchange::connect(addr, name_of(addr), wire, method, &self.limits, now) {
            Ok(exchange) => {
                let again = Running {
                    id,
                    exchange,
                    origin,
                    reused: false,
                    idempotent,
                    method,
                    addr,
                    token: None,
                    writable: false,
                };
                self.step(again, now, out);
            }
            Err(e) => out.push((id, WorkResult::HttpEnd(Err(e)))),
        }
    }
}

/// The address of a plain `http://` target whose host is an IP address.
fn address_of(target: &Target) -> Option<SocketAddr> {
    if target.scheme != Scheme::Http {
        return None;
    }
    let ip: IpAddr = target.host.parse().ok()?;
    Some(SocketAddr::new(ip, target.port))
}

/// `host:port` as the worker path names it in errors.
fn name_of(addr: SocketAddr) -> String {
    format!("{}:{}", addr.ip(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET",
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            idempotent: true,
        }
    }

    #[test]
    fn only_plain_http_to_an_address_is_taken() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://[::1]:11434/api",
            "http://10.0.0.2/bot1:x/getUpdates",
        ] {
            assert!(HttpLoop::takes(&get(url)), "{url}");
        }
        // A name needs a DNS lookup, https:// a TLS handshake: both block, so the workers.
        for url in [
            "http://localhost:8080/v1",
            "https://127.0.0.1/v1",
            "https://api.telegram.org/bot1:x/getMe",
            "ftp://127.0.0.1/",
        ] {
            assert!(!HttpLoop::takes(&get(url)), "{url}");
        }
    }
}
