//! One HTTP/1.1 request on a non-blocking connection, moved along by readiness: connect (the
//! resolved addresses raced as [`crate::happy_eyeballs`] does: the next one tried beside the
//! first after the attempt delay, the first to connect kept), the TLS handshake for
//! `https://` on that connection, write the request, read and parse the response
//! ([`ResponseParser`]) until its framing ends it or the server closes. Nothing here waits:
//! [`Exchange::advance`] does what the sockets allow now and says whether the request is
//! still under way, done, or failed (and at which [`Stage`], which decides whether it may go
//! again on a fresh connection). The sockets it waits on are registered with the loop's
//! poller by [`Exchange::watch`]; the deadline of the step it waits on
//! ([`Exchange::deadline`]) is the caller's to watch: while connecting, the next attempt's
//! start or an attempt's connect timeout; for the TLS handshake, what is left of the open
//! timeout (a total: the bytes it exchanges do not renew it); from then on, the idle timeout,
//! renewed by every byte sent or read ([`HttpLimits`]).
//!
//! A WebSocket's connection opens the same way ([`Exchange::open`]: connect and TLS
//! handshake only); its upgrade and frames are [`crate::ws_conn`]'s.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use clawgate_core::model::http1::{ResponseEvent, ResponseParser};
use clawgate_core::{HttpError, HttpErrorKind, WorkResult};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::happy_eyeballs::{Attempt, Race, RaceError};
use crate::http_loop::HttpLimits;
use crate::http_pool::Connection;
use crate::tls::Stream;

/// How a request and its response went through without error.
pub(crate) struct Ended {
    /// The connection may carry another request ([`ResponseParser::reusable`]).
    pub(crate) reusable: bool,
    /// The server's `Keep-Alive` header.
    pub(crate) keep_alive: Option<String>,
}

/// How far a failed exchange got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Writing the request failed: the server has not read all of it.
    Write,
    /// The request was written; not a byte of the answer came.
    Written,
    /// Some of the answer came.
    Answered,
}

/// Why an exchange failed, and at which [`Stage`].
pub(crate) struct Failed {
    /// What the request's `HttpEnd` says.
    pub(crate) error: HttpError,
    /// How far it got.
    pub(crate) stage: Stage,
}

impl Failed {
    /// Whether the request may go again on a fresh connection after this failure on a reused
    /// one: the server cannot have taken its effect (a write that failed: an HTTP/1.1 server
    /// acts on a whole request only), or taking it twice is taking it once (`idempotent`,
    /// written but unanswered). An answered request never goes again.
    pub(crate) fn may_send_again(&self, idempotent: bool) -> bool {
        match self.stage {
            Stage::Write => true,
            Stage::Written => idempotent,
            Stage::Answered => false,
        }
    }
}

/// The error of a request that went `limits.idle_timeout` without a byte, to `addr`
/// (`host:port`).
fn idle_error(addr: &str, limits: &HttpLimits) -> HttpError {
    let text = format!(
        "no data from {addr} for {} s (idle timeout)",
        limits.idle_timeout.as_secs_f32()
    );
    HttpError::new(HttpErrorKind::IdleTimeout, text)
}

/// What kind of failure the OS error `e` is, on a connection or an attempt to make one;
/// `otherwise` for an error of none of the kinds upstream's rules name.
pub(crate) fn kind_of(e: &io::Error, otherwise: HttpErrorKind) -> HttpErrorKind {
    match e.kind() {
        io::ErrorKind::TimedOut => HttpErrorKind::TimedOut,
        io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkDown => HttpErrorKind::Unreachable,
        io::ErrorKind::ConnectionRefused => HttpErrorKind::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => HttpErrorKind::Reset,
        _ => otherwise,
    }
}

/// The error of a TLS handshake with `addr` (`host:port`) not done within
/// `limits.open_timeout`.
pub(crate) fn handshake_timeout_error(addr: &str, limits: &HttpLimits) -> String {
    format!(
        "TLS handshake with {addr} failed: not done within {} s (open timeout)",
        limits.open_timeout.as_secs_f32()
    )
}

/// The error of a connection to `name` (`host:port`) at `addr` that could not be made
/// (`why`).
pub(crate) fn connect_error(name: &str, addr: SocketAddr, why: impl std::fmt::Display) -> String {
    format!("cannot connect to {name} ({addr}): {why}")
}

/// The parser's `events` as results, in order, onto `results`; the `Keep-Alive` header of a
/// head is kept in `keep_alive`.
fn push_results(
    events: &mut Vec<ResponseEvent>,
    keep_alive: &mut Option<String>,
    results: &mut Vec<WorkResult>,
) {
    results.extend(events.drain(..).map(|event| match event {
        ResponseEvent::Head { status, headers } => {
            *keep_alive = headers
                .iter()
                .find(|(n, _)| n == "keep-alive")
                .map(|(_, v)| v.clone());
            WorkResult::HttpHead { status, headers }
        }
        ResponseEvent::Body(bytes) => WorkResult::HttpBody(bytes),
    }));
}

/// What an exchange waits for once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The TLS handshake.
    Handshaking,
    /// This many bytes of the request are written.
    Writing(usize),
    /// The response.
    Reading,
}

/// The connection an exchange runs on, or the attempts to make it.
enum Link {
    /// The attempts to connect ([`Race`]).
    Racing(Race),
    /// The connection, and how its socket is registered with the loop's poller (`None`: it
    /// is not).
    Open(Connection, Option<Interest>),
}

/// The request and its answer, on whichever connection carries it.
struct Transfer {
    /// The request as it goes on the wire; kept until the answer starts, so the request can
    /// go again on a fresh connection.
    wire: Vec<u8>,
    phase: Phase,
    parser: ResponseParser,
    stage: Stage,
    keep_alive: Option<String>,
    /// `host:port`, for errors.
    name: String,
    deadline: Instant,
    /// When a fresh connection must be open, its TLS handshake done
    /// ([`HttpLimits::open_timeout`]).
    by: Instant,
    limits: HttpLimits,
    /// Only open the connection ([`Exchange::open`]): done once connected (and, for
    /// `https://`, its handshake done), nothing written.
    open_only: bool,
}

/// One request on one non-blocking connection (see the module doc).
pub(crate) struct Exchange {
    link: Link,
    /// Attempts that lost the race while registered with the loop's poller: taken out of it
    /// at the next [`watch`](Exchange::watch), then closed.
    losers: Vec<Attempt>,
    /// For `https://`, the host the server's certificate must name.
    tls: Option<String>,
    transfer: Transfer,
}

/// The connection over `winner`'s socket (non-blocking, its registration with the poller
/// kept); for `https://` (`tls` is the host) a TLS session over it, its handshake not
/// started.
fn open(winner: Attempt, tls: Option<&str>, name: &str) -> Result<Connection, HttpError> {
    let Attempt { addr, socket, .. } = winner;
    let handle = socket
        .set_nodelay(true)
        .and_then(|()| socket.try_clone())
        .map_err(|e| HttpError::new(HttpErrorKind::Other, connect_error(name, addr, e)))?;
    let stream = match tls {
        Some(host) => crate::tls::client(host, name, socket)
            .map_err(|e| HttpError::new(HttpErrorKind::Tls, e))?,
        None => Stream::Plain(socket),
    };
    Ok(Connection {
        stream,
        socket: handle,
    })
}

/// Take `socket` out of `registry` (it may close then).
fn unwatch(registry: &Registry, socket: &TcpStream) {
    let _ = registry.deregister(&mut SourceFd(&socket.as_raw_fd()));
}

impl Exchange {
    /// Connect to `addrs` (the resolver's order) as [`Race`] does, for `wire` (a request to
    /// `method`), non-blocking: the first attempt starts at the first
    /// [`advance`](Self::advance), and the connection must be open (its TLS handshake done)
    /// `by` then. For `https://`, `tls` is the host the certificate must name.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        addrs: &[SocketAddr],
        tls: Option<String>,
        name: String,
        wire: Vec<u8>,
        method: &str,
        limits: &HttpLimits,
        by: Instant,
        now: Instant,
    ) -> Self {
        let race = Race::new(addrs, name.clone(), limits, by);
        let mut transfer = Transfer::new(name, wire, method, limits, now);
        // Due at once: the first advance starts the first attempt.
        (transfer.by, transfer.deadline) = (by, now);
        Exchange {
            link: Link::Racing(race),
            losers: Vec::new(),
            tls,
            transfer,
        }
    }

    /// Open a connection to `addrs` as [`connect`](Self::connect) does, for a WebSocket
    /// (whose upgrade is the caller's): [`advance`](Self::advance) ends it once connected,
    /// its TLS handshake done, with nothing written; [`into_connection`](Self::into_connection)
    /// hands the connection over.
    pub(crate) fn open(
        addrs: &[SocketAddr],
        tls: Option<String>,
        name: String,
        limits: &HttpLimits,
        by: Instant,
        now: Instant,
    ) -> Self {
        let mut exchange = Self::connect(addrs, tls, name, Vec::new(), "GET", limits, by, now);
        exchange.transfer.open_only = true;
        exchange
    }

    /// `wire` (a request to `method`) on `conn`, a kept connection (non-blocking).
    pub(crate) fn on(
        conn: Connection,
        name: String,
        wire: Vec<u8>,
        method: &str,
        limits: &HttpLimits,
        now: Instant,
    ) -> Self {
        Exchange {
            link: Link::Open(conn, None),
            losers: Vec::new(),
            tls: None,
            transfer: Transfer::new(name, wire, method, limits, now),
        }
    }

    /// Register its sockets with `registry` under `token` for what it waits on: while
    /// connecting, every attempt's (the losers' taken out); once connected, the connection's,
    /// for writability too while it has bytes to send (the handshake, the request, or TLS
    /// holding some), else for readability. A socket already registered for that is left as
    /// it is.
    pub(crate) fn watch(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        for loser in self.losers.drain(..) {
            unwatch(registry, &loser.socket);
        }
        match &mut self.link {
            Link::Racing(race) => {
                for ended in race.take_ended() {
                    unwatch(registry, &ended.socket);
                }
                for attempt in race.attempts_mut().iter_mut().filter(|a| !a.watched) {
                    let fd = attempt.socket.as_raw_fd();
                    registry.register(&mut SourceFd(&fd), token, CONNECTING)?;
                    attempt.watched = true;
                }
            }
            Link::Open(conn, watched) => {
                let writes = self.transfer.phase != Phase::Reading || conn.stream.wants_write();
                let interest = if writes {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let fd = conn.stream.tcp().as_raw_fd();
                match *watched {
                    Some(now) if now == interest => {}
                    Some(_) => registry.reregister(&mut SourceFd(&fd), token, interest)?,
                    None => registry.register(&mut SourceFd(&fd), token, interest)?,
                }
                *watched = Some(interest);
            }
        }
        Ok(())
    }

    /// When the step it waits on times out.
    pub(crate) fn deadline(&self) -> Instant {
        self.transfer.deadline
    }

    /// Its [`deadline`](Self::deadline) passed: while connecting, the attempts' timeouts
    /// and the next attempt's start are [`advance`](Self::advance)'s (`Ok`: advance it);
    /// otherwise it failed.
    pub(crate) fn timed_out(&mut self) -> Result<(), Failed> {
        let t = &self.transfer;
        let error = match (&self.link, t.phase) {
            (Link::Racing(_), _) => return Ok(()),
            (Link::Open(..), Phase::Handshaking) => HttpError::new(
                HttpErrorKind::TimedOut,
                handshake_timeout_error(&t.name, &t.limits),
            ),
            (Link::Open(..), Phase::Writing(_) | Phase::Reading) => idle_error(&t.name, &t.limits),
        };
        Err(Failed {
            error,
            stage: t.stage,
        })
    }

    /// Take the request back (to send it again on a fresh connection).
    pub(crate) fn into_wire(self) -> Vec<u8> {
        self.transfer.wire
    }

    /// Take the connection back once the exchange [`Ended`], its socket out of `registry`.
    pub(crate) fn into_connection(mut self, registry: &Registry) -> Option<Connection> {
        for loser in self.losers.drain(..) {
            unwatch(registry, &loser.socket);
        }
        match self.link {
            Link::Open(conn, watched) => {
                if watched.is_some() {
                    unwatch(registry, conn.stream.tcp());
                }
                Some(conn)
            }
            Link::Racing(_) => None,
        }
    }

    /// Do what the sockets allow now, reading into `buf`; what it read goes to `results`
    /// (also when it then fails: a body cut short is reported up to the cut). `None`: it
    /// waits for a socket; `Some`: the response ended.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) -> Result<Option<Ended>, Failed> {
        if let Link::Racing(race) = &mut self.link {
            let lost = |error| Failed {
                error,
                stage: Stage::Write,
            };
            let lost_race = |e: RaceError| lost(HttpError::new(e.kind(), e.to_string()));
            let Some(winner) = race.advance(now).map_err(lost_race)? else {
                self.transfer.deadline = race.deadline();
                return Ok(None);
            };
            let watched = winner.watched.then_some(CONNECTING);
            let conn = open(winner, self.tls.as_deref(), &self.transfer.name).map_err(lost)?;
            let raced = std::mem::replace(&mut self.link, Link::Open(conn, watched));
            if let Link::Racing(race) = raced {
                // The losers close now, those registered once out of the poller (next watch).
                self.losers.extend(race.into_losers().filter(|a| a.watched));
            }
            let t = &mut self.transfer;
            (t.phase, t.deadline) = if self.tls.is_some() {
                (Phase::Handshaking, t.by)
            } else {
                (Phase::Writing(0), now + t.limits.idle_timeout)
            };
        }
        match &mut self.link {
            Link::Open(conn, _) => self.transfer.advance(conn, now, buf, results),
            Link::Racing(_) => Ok(None),
        }
    }
}

/// How an attempt's socket is registered while it connects (the winner's stays so: its
/// handshake or request is written next).
const CONNECTING: Interest = Interest::READABLE.add(Interest::WRITABLE);

impl Transfer {
    fn new(name: String, wire: Vec<u8>, method: &str, limits: &HttpLimits, now: Instant) -> Self {
        Transfer {
            wire,
            phase: Phase::Writing(0),
            parser: ResponseParser::new(limits.response, method),
            stage: Stage::Write,
            keep_alive: None,
            name,
            deadline: now + limits.idle_timeout,
            by: now,
            limits: *limits,
            open_only: false,
        }
    }

    /// Do what `conn` allows now (see [`Exchange::advance`]).
    fn advance(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) -> Result<Option<Ended>, Failed> {
        loop {
            match self.phase {
                Phase::Handshaking => {
                    let done = conn.stream.handshake().map_err(|e| Failed {
                        error: HttpError::new(
                            crate::tls::handshake_kind(&e),
                            crate::tls::handshake_error(&self.name, &e),
                        ),
                        stage: Stage::Write,
                    })?;
                    if !done {
                        return Ok(None);
                    }
                    self.phase = Phase::Writing(0);
                    self.deadline = now + self.limits.idle_timeout;
                }
                Phase::Writing(_) if self.open_only => return Ok(Some(self.ended(false))),
                Phase::Writing(done) => {
                    let rest = self.wire.get(done..).unwrap_or_default();
                    let sent = conn.stream.send(rest).map_err(|e| self.failed(e))?;
                    if sent > 0 {
                        self.deadline = now + self.limits.idle_timeout;
                    }
                    if sent < rest.len() || conn.stream.wants_write() {
                        self.phase = Phase::Writing(done + sent);
                        return Ok(None);
                    }
                    conn.stream.ack_promptly();
                    self.phase = Phase::Reading;
                    self.stage = Stage::Written;
                }
                Phase::Reading => return self.read(conn, now, buf, results),
            }
        }
    }

    /// Read what the socket has and parse it.
    fn read(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) -> Result<Option<Ended>, Failed> {
        let mut events = Vec::new();
        loop {
            let n = match conn.stream.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.failed(e)),
            };
            self.deadline = now + self.limits.idle_timeout;
            if n == 0 {
                return match self.parser.finish() {
                    Ok(()) => Ok(Some(self.ended(false))),
                    Err(e) => Err(self.failed_with(HttpErrorKind::Closed, e.to_string())),
                };
            }
            if self.stage != Stage::Answered {
                self.stage = Stage::Answered;
                // Not sent again from now on.
                self.wire = Vec::new();
            }
            let fed = self
                .parser
                .feed(buf.get(..n).unwrap_or_default(), &mut events);
            push_results(&mut events, &mut self.keep_alive, results);
            if fed.is_ok() && self.parser.is_complete() {
                return Ok(Some(self.ended(self.parser.reusable())));
            }
            fed.map_err(|e| self.failed_with(HttpErrorKind::Protocol, e.to_string()))?;
        }
    }

    fn ended(&mut self, reusable: bool) -> Ended {
        Ended {
            reusable,
            keep_alive: self.keep_alive.take(),
        }
    }

    fn failed(&self, e: io::Error) -> Failed {
        self.failed_with(kind_of(&e, HttpErrorKind::Reset), e.to_string())
    }

    fn failed_with(&self, kind: HttpErrorKind, e: String) -> Failed {
        Failed {
            error: HttpError::new(kind, format!("{}: {e}", self.name)),
            stage: self.stage,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// An address that refuses connections (a port just closed).
    fn refusing() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// Advance `exchange` until it ends or fails (a few seconds at most).
    fn run(exchange: &mut Exchange) -> (Result<Ended, Failed>, Vec<WorkResult>) {
        let (mut buf, mut results) = (vec![0u8; 1024], Vec::new());
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            match exchange.advance(Instant::now(), &mut buf, &mut results) {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Ok(Some(ended)) => return (Ok(ended), results),
                Err(failed) => return (Err(failed), results),
            }
        }
        panic!("no end in time");
    }

    fn get(addrs: Vec<SocketAddr>) -> Exchange {
        let wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let limits = HttpLimits::default();
        let now = Instant::now();
        Exchange::connect(
            &addrs,
            None,
            "x:80".into(),
            wire,
            "GET",
            &limits,
            now + limits.open_timeout,
            now,
        )
    }

    #[test]
    fn the_next_address_is_tried_when_one_refuses() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = server.local_addr().unwrap();
        let answer = std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            let mut request = [0u8; 256];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let mut exchange = get(vec![refusing(), good]);
        let (ended, results) = run(&mut exchange);
        assert!(ended.is_ok(), "{:?}", ended.err().map(|f| f.error));
        assert!(results.contains(&WorkResult::HttpBody(b"ok".to_vec())));
        answer.join().unwrap();
    }

    #[test]
    fn a_server_that_closes_or_resets_before_answering_fails_as_closed_or_reset() {
        for reset in [false, true] {
            let server = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = server.local_addr().unwrap();
            let answer = std::thread::spawn(move || {
                let (mut conn, _) = server.accept().unwrap();
                // Closed with bytes of the request unread, a socket sends a reset.
                let mut request = vec![0u8; if reset { 1 } else { 256 }];
                std::thread::sleep(Duration::from_millis(50));
                let _ = conn.read(&mut request).unwrap();
            });
            let mut exchange = get(vec![addr]);
            let failed = run(&mut exchange).0.err().expect("no answer");
            answer.join().unwrap();
            assert_eq!(failed.stage, Stage::Written);
            let kind = if reset {
                HttpErrorKind::Reset
            } else {
                HttpErrorKind::Closed
            };
            assert_eq!(failed.error.kind, kind, "{}", failed.error);
        }
    }

    #[test]
    fn when_every_address_refuses_the_error_names_each() {
        let (first, last) = (refusing(), refusing());
        let mut exchange = get(vec![first, last]);
        let failed = run(&mut exchange).0.err().expect("refused");
        assert_eq!(failed.stage, Stage::Write);
        let why = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let text = format!("cannot connect to x:80: {first}: {why}; {last}: {why}");
        assert_eq!(failed.error, HttpError::new(HttpErrorKind::Refused, text));
    }
}
