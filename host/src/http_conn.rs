//! One HTTP/1.1 request on a non-blocking connection, moved along by readiness: connect (to
//! each resolved address in turn until one answers), the TLS handshake for `https://`, write
//! the request, read and parse the response ([`ResponseParser`]) until its framing ends
//! it or the server closes. Nothing here waits: [`Exchange::advance`] does what the socket
//! allows now and says whether the request is still under way, done, or failed (and at which
//! [`Stage`], which decides whether it may go again on a fresh connection). The deadline of
//! the step it waits on ([`Exchange::deadline`]) is the caller's to watch: for each address,
//! the connect timeout; for the TLS handshake, what is left of the open timeout (a total: the
//! bytes it exchanges do not renew it); from then on, the idle timeout, renewed by every byte
//! sent or read ([`HttpLimits`]).
//!
//! The pieces the blocking connect of the WebSocket workers ([`crate::connect`]) shares
//! (the lookup, the error texts) live here too, so both say the same things.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clawgate_core::WorkResult;
use clawgate_core::model::http1::{ResponseEvent, ResponseParser};

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
fn idle_error(addr: &str, limits: &HttpLimits) -> String {
    format!(
        "no data from {addr} for {} s (idle timeout)",
        limits.idle_timeout.as_secs_f32()
    )
}

/// The error of a TLS handshake with `addr` (`host:port`) not done within
/// `limits.open_timeout`.
pub(crate) fn handshake_timeout_error(addr: &str, limits: &HttpLimits) -> String {
    format!(
        "TLS handshake with {addr} failed: not done within {} s (open timeout)",
        limits.open_timeout.as_secs_f32()
    )
}

/// The error of a connection to `name` (`host:port`) at `addr` that could not be made.
pub(crate) fn connect_error(name: &str, addr: SocketAddr, e: &io::Error) -> String {
    format!("cannot connect to {name} ({addr}): {e}")
}

/// The addresses of `host` at `port`, in the resolver's order, or why there are none;
/// `name` (`host:port`) names it in errors. Blocking (a DNS lookup): never on the loop.
pub(crate) fn resolve(host: &str, port: u16, name: &str) -> Result<Vec<SocketAddr>, String> {
    let ips = crate::lookup::system(host).map_err(|why| format!("cannot resolve {name}: {why}"))?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
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

/// What an exchange waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The connection to this address is being made.
    Connecting(SocketAddr),
    /// The TLS handshake.
    Handshaking,
    /// This many bytes of the request are written.
    Writing(usize),
    /// The response.
    Reading,
}

/// One request on one non-blocking connection (see the module doc).
pub(crate) struct Exchange {
    conn: Connection,
    /// The addresses still to try when connecting to the current one fails, in order.
    next: Vec<SocketAddr>,
    /// For `https://`, the host the server's certificate must name.
    tls: Option<String>,
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
    idle_timeout: Duration,
    limits: HttpLimits,
}

/// A non-blocking connection to `addr` being made; for `https://` (`tls` is the host) a TLS
/// session over it, its handshake not started.
fn open(addr: SocketAddr, tls: Option<&str>, name: &str) -> Result<Connection, String> {
    let socket = mio::net::TcpStream::connect(addr)
        .map(TcpStream::from)
        .and_then(|s| {
            s.set_nodelay(true)?;
            Ok((s.try_clone()?, s))
        });
    let (handle, socket) = socket.map_err(|e| connect_error(name, addr, &e))?;
    let stream = match tls {
        Some(host) => crate::tls::client(host, name, socket)?,
        None => Stream::Plain(socket),
    };
    Ok(Connection {
        stream,
        socket: handle,
    })
}

impl Exchange {
    /// Start connecting to the first of `addrs` that takes a connection attempt (the next
    /// ones are tried in order when one fails or times out), for `wire` (a request to
    /// `method`), non-blocking: the connection is made once the socket is writable, and must
    /// be open (its TLS handshake done) `by` then. For `https://`, `tls` is the host the
    /// certificate must name.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        addrs: Vec<SocketAddr>,
        tls: Option<String>,
        name: String,
        wire: Vec<u8>,
        method: &str,
        limits: &HttpLimits,
        by: Instant,
        now: Instant,
    ) -> Result<Self, String> {
        let mut next = addrs;
        next.reverse();
        let mut last = format!("cannot resolve {name}: no addresses");
        while let Some(addr) = next.pop() {
            match open(addr, tls.as_deref(), &name) {
                Ok(conn) => {
                    next.reverse();
                    let mut exchange = Self::on(conn, name, wire, method, limits, now);
                    exchange.next = next;
                    exchange.tls = tls;
                    exchange.phase = Phase::Connecting(addr);
                    exchange.by = by;
                    exchange.deadline = by.min(now + limits.connect_timeout);
                    return Ok(exchange);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
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
            next: Vec::new(),
            tls: None,
            wire,
            phase: Phase::Writing(0),
            parser: ResponseParser::new(limits.response, method),
            stage: Stage::Write,
            keep_alive: None,
            name,
            deadline: now + limits.idle_timeout,
            by: now,
            idle_timeout: limits.idle_timeout,
            limits: *limits,
        }
    }

    /// The socket, to register for readiness (it changes when the next address is tried).
    pub(crate) fn socket(&self) -> &TcpStream {
        self.conn.stream.tcp()
    }

    /// Whether it waits for the socket to be writable (connecting, in the handshake, the
    /// request not all written, or TLS holding bytes to send); otherwise it waits for it to
    /// be readable.
    pub(crate) fn wants_write(&self) -> bool {
        !matches!(self.phase, Phase::Reading) || self.conn.stream.wants_write()
    }

    /// When the step it waits on times out.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Its [`deadline`](Self::deadline) passed: a connection not made in time goes on to
    /// the next address while the open timeout allows (`Ok`: [`advance`](Self::advance) it
    /// again); otherwise it failed.
    pub(crate) fn timed_out(&mut self, now: Instant) -> Result<(), Failed> {
        let error = match self.phase {
            Phase::Connecting(addr) => {
                let error = connect_error(&self.name, addr, &io::ErrorKind::TimedOut.into());
                return self.next_address(error, now);
            }
            Phase::Handshaking => handshake_timeout_error(&self.name, &self.limits),
            Phase::Writing(_) | Phase::Reading => idle_error(&self.name, &self.limits),
        };
        Err(Failed {
            error,
            stage: self.stage,
        })
    }

    /// Connect to the next address after the current one failed with `error`, or fail with
    /// it when none is left (or none takes a connection attempt), or the open timeout passed.
    fn next_address(&mut self, mut error: String, now: Instant) -> Result<(), Failed> {
        while !self.next.is_empty() && now < self.by {
            let addr = self.next.remove(0);
            // The old socket closes after the new one opens: the new one has another number.
            match open(addr, self.tls.as_deref(), &self.name) {
                Ok(conn) => {
                    self.conn = conn;
                    self.phase = Phase::Connecting(addr);
                    self.deadline = self.by.min(now + self.limits.connect_timeout);
                    return Ok(());
                }
                Err(e) => error = e,
            }
        }
        Err(Failed {
            error,
            stage: Stage::Write,
        })
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
    /// waits for the socket; `Some`: the response ended.
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
                    let refused = match tcp.take_error() {
                        Ok(Some(e)) | Err(e) => Some(e),
                        Ok(None) => match tcp.peer_addr() {
                            Ok(_) => None,
                            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
                            Err(e) => Some(e),
                        },
                    };
                    if let Some(e) = refused {
                        self.next_address(connect_error(&self.name, addr, &e), now)?;
                        continue;
                    }
                    (self.phase, self.deadline) = if self.tls.is_some() {
                        (Phase::Handshaking, self.by)
                    } else {
                        (Phase::Writing(0), now + self.idle_timeout)
                    };
                }
                Phase::Handshaking => {
                    let done = self.conn.stream.handshake().map_err(|e| Failed {
                        error: crate::tls::handshake_error(&self.name, &e),
                        stage: Stage::Write,
                    })?;
                    if !done {
                        return Ok(None);
                    }
                    self.phase = Phase::Writing(0);
                    self.deadline = now + self.idle_timeout;
                }
                Phase::Writing(done) => {
                    let rest = self.wire.get(done..).unwrap_or_default();
                    let sent = self.conn.stream.send(rest).map_err(|e| self.failed(e))?;
                    if sent > 0 {
                        self.deadline = now + self.idle_timeout;
                    }
                    if sent < rest.len() || self.conn.stream.wants_write() {
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
            push_results(&mut events, &mut self.keep_alive, results);
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

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
            addrs,
            None,
            "x:80".into(),
            wire,
            "GET",
            &limits,
            now + limits.open_timeout,
            now,
        )
        .unwrap()
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
    fn when_every_address_refuses_the_last_ones_error_ends_it() {
        let (first, last) = (refusing(), refusing());
        let mut exchange = get(vec![first, last]);
        let failed = run(&mut exchange).0.err().expect("refused");
        assert_eq!(failed.stage, Stage::Write);
        assert!(
            failed
                .error
                .starts_with(&format!("cannot connect to x:80 ({last}): ")),
            "{}",
            failed.error
        );
    }
}
