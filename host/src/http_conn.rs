//! One HTTP/1.1 request on a non-blocking connection, moved along by readiness: connect,
//! write the request, read and parse the response ([`ResponseParser`]) until its framing ends
//! it or the server closes. Nothing here waits: [`Exchange::advance`] does what the socket
//! allows now and says whether the request is still under way, done, or failed (and at which
//! [`Stage`], which decides whether it may go again on a fresh connection). The deadline of
//! the step it waits on ([`Exchange::deadline`]) is the caller's to watch.
//!
//! The pieces both ways of performing a request share (how far a failed one got, how the
//! parser's events become [`WorkResult`]s, the error texts) live here too, so the worker
//! threads ([`crate::http_worker`]) and the loop ([`crate::http_loop`]) say the same things.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clawgate_core::WorkResult;
use clawgate_core::model::http1::{ResponseEvent, ResponseParser};

use crate::http_pool::Connection;
use crate::http_worker::HttpLimits;
use crate::sockets::write_until_blocked;
use crate::tls::Stream;

/// How a request and its response went through without error.
pub(crate) struct Ended {
    /// The connection may carry another request ([`ResponseParser::reusable`]).
    pub(crate) reusable: bool,
    /// The server's `Keep-Alive` header.
    pub(crate) keep_alive: Option<String>,
    /// What the last read yielded, not reported yet: it goes with the end.
    pub(crate) last: Vec<WorkResult>,
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
    pub(crate) error: String,
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
pub(crate) fn idle_error(addr: &str, limits: &HttpLimits) -> String {
    format!(
        "no data from {addr} for {} s (idle timeout)",
        limits.idle_timeout.as_secs_f32()
    )
}

/// The error of a connection to `name` (`host:port`) at `addr` that could not be made.
pub(crate) fn connect_error(name: &str, addr: SocketAddr, e: &io::Error) -> String {
    format!("cannot connect to {name} ({addr}): {e}")
}

/// The parser's `events` as results, in order; the `Keep-Alive` header of a head is kept in
/// `keep_alive`.
pub(crate) fn results_of(
    events: &mut Vec<ResponseEvent>,
    keep_alive: &mut Option<String>,
) -> Vec<WorkResult> {
    events
        .drain(..)
        .map(|event| match event {
            ResponseEvent::Head { status, headers } => {
                *keep_alive = headers
                    .iter()
                    .find(|(n, _)| n == "keep-alive")
                    .map(|(_, v)| v.clone());
                WorkResult::HttpHead { status, headers }
            }
            ResponseEvent::Body(bytes) => WorkResult::HttpBody(bytes),
        })
        .collect()
}

/// What an exchange waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The connection to this address is being made.
    Connecting(SocketAddr),
    /// This many bytes of the request are written.
    Writing(usize),
    /// The response.
    Reading,
}

/// One request on one non-blocking connection (see the module doc).
pub(crate) struct Exchange {
    conn: Connection,
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
    idle_timeout: Duration,
    limits: HttpLimits,
}

impl Exchange {
    /// Start connecting to `addr` for `wire` (a request to `method`), non-blocking: the
    /// connection is made once the socket is writable.
    pub(crate) fn connect(
        addr: SocketAddr,
        name: String,
        wire: Vec<u8>,
        method: &str,
        limits: &HttpLimits,
        now: Instant,
    ) -> Result<Self, String> {
        let opened = mio::net::TcpStream::connect(addr).and_then(|s| {
            let socket = TcpStream::from(s);
            socket.set_nodelay(true)?;
            let handle = socket.try_clone()?;
            Ok(Connection {
                stream: Stream::Plain(socket),
                socket: handle,
            })
        });
        let conn = opened.map_err(|e| connect_error(&name, addr, &e))?;
        let mut exchange = Self::on(conn, name, wire, method, limits, now);
        exchange.phase = Phase::Connecting(addr);
        exchange.deadline = now + limits.connect_timeout;
        Ok(exchange)
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
            conn,
            wire,
            phase: Phase::Writing(0),
            parser: ResponseParser::new(limits.response, method),
            stage: Stage::Write,
            keep_alive: None,
            name,
            deadline: now + limits.idle_timeout,
            idle_timeout: limits.idle_timeout,
            limits: *limits,
        }
    }

    /// The socket, to register for readiness.
    pub(crate) fn socket(&self) -> &TcpStream {
        self.conn.stream.tcp()
    }

    /// Whether it waits for the socket to be writable (connecting, or the request not all
    /// written); otherwise it waits for it to be readable.
    pub(crate) fn wants_write(&self) -> bool {
        !matches!(self.phase, Phase::Reading)
    }

    /// When the step it waits on times out.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The failure of a request whose [`deadline`](Self::deadline) passed.
    pub(crate) fn timed_out(&self) -> Failed {
        let error = match self.phase {
            Phase::Connecting(addr) => {
                connect_error(&self.name, addr, &io::ErrorKind::TimedOut.into())
            }
            _ => idle_error(&self.name, &self.limits),
        };
        Failed {
            error,
            stage: self.stage,
        }
    }

    /// Take the request back (to send it again on a fresh connection).
    pub(crate) fn into_wire(self) -> Vec<u8> {
        self.wire
    }

    /// Take the connection back once the exchange [`Ended`].
    pub(crate) fn into_connection(self) -> Connection {
        self.conn
    }

    /// Do what the socket allows now, reading into `buf`; what it read goes to `results`
    /// (also when it then fails: a body cut short is reported up to the cut). `None`: it
    /// waits for the socket; `Some`: the response ended (its [`Ended::last`] is empty).
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) -> Result<Option<Ended>, Failed> {
        loop {
            match self.phase {
                Phase::Connecting(addr) => {
                    let tcp = self.conn.stream.tcp();
                    let refused = |e: io::Error| Failed {
                        error: connect_error(&self.name, addr, &e),
                        stage: Stage::Write,
                    };
                    if let Some(e) = tcp.take_error().map_err(refused)? {
                        return Err(refused(e));
                    }
                    match tcp.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
                        Err(e) => return Err(refused(e)),
                    }
                    self.phase = Phase::Writing(0);
                    self.deadline = now + self.idle_timeout;
                }
                Phase::Writing(done) => {
                    let rest = self.wire.get(done..).unwrap_or_default();
                    let sent = write_until_blocked(&mut self.conn.stream, rest)
                        .map_err(|e| self.failed(e))?;
                    if sent > 0 {
                        self.deadline = now + self.idle_timeout;
                    }
                    if sent < rest.len() {
                        self.phase = Phase::Writing(done + sent);
                        return Ok(None);
                    }
                    self.conn.stream.ack_promptly();
                    self.phase = Phase::Reading;
                    self.stage = Stage::Written;
                }
                Phase::Reading => return self.read(now, buf, results),
            }
        }
    }

    /// Read what the socket has and parse it.
    fn read(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) -> Result<Option<Ended>, Failed> {
        let mut events = Vec::new();
        loop {
            let n = match self.conn.stream.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.failed(e)),
            };
            self.deadline = now + self.idle_timeout;
            if n == 0 {
                return match self.parser.finish() {
                    Ok(()) => Ok(Some(self.ended(false))),
                    Err(e) => Err(self.failed_with(e.to_string())),
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
            results.extend(results_of(&mut events, &mut self.keep_alive));
            if fed.is_ok() && self.parser.is_complete() {
                return Ok(Some(self.ended(self.parser.reusable())));
            }
            fed.map_err(|e| self.failed_with(e.to_string()))?;
        }
    }

    fn ended(&mut self, reusable: bool) -> Ended {
        Ended {
            reusable,
            keep_alive: self.keep_alive.take(),
            last: Vec::new(),
        }
    }

    fn failed(&self, e: io::Error) -> Failed {
        self.failed_with(e.to_string())
    }

    fn failed_with(&self, e: String) -> Failed {
        Failed {
            error: format!("{}: {e}", self.name),
            stage: self.stage,
        }
    }
}
