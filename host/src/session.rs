//! One gateway connection driven over a blocking `TcpStream`: the sans-IO
//! [`Client`] does the protocol, this module does the socket.
//! The CLI, the black-box test harness and the tests all use it.
//!
//! [`Session::connect`] is the CLI's way in: connect, wait for `hello-ok`, then [`Session::call`]
//! and [`Session::collect`], every step held to one overall deadline, a socket error reported
//! with its text ([`ReadErrors::Report`]). [`Session::dial`] only opens the socket and sends the
//! upgrade, so a caller can read event by event ([`Session::next`], [`Session::next_event`],
//! [`Session::first_before`]), optionally recording every received byte
//! ([`Options::record`]) and taking a failed socket for an end of stream
//! ([`ReadErrors::AsEof`]), as the tests do.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clawgate_core::client::{Client, ClientConfig, Event};
use clawgate_core::frame::ErrorShape;
use serde_json::Value;

use crate::happy_eyeballs::{Race, RaceError};
use crate::http_loop::HttpLimits;
use crate::url::GatewayUrl;

/// How long to keep reading after a refused `connect` for the close frame that follows it.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A WebSocket close as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The close code; `None` when the socket ended without a close frame.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
}

/// Why a connection did not reach `hello-ok`.
#[derive(Clone, Debug)]
pub enum ConnectError {
    /// The TCP connection failed (`ECONNREFUSED`, no route, name not resolved).
    Unreachable {
        /// The OS error; for addresses that all failed, each address and why.
        reason: String,
        /// The errno name where known (`ECONNREFUSED`).
        code: Option<&'static str>,
    },
    /// The deadline passed.
    Timeout,
    /// The gateway answered `connect` with an error (and usually closed).
    Refused {
        /// The error.
        error: ErrorShape,
        /// The close that followed, if it came in time.
        close: Option<Close>,
    },
    /// The upgrade was refused with an HTTP status.
    Http {
        /// Status code.
        status: u16,
        /// Body.
        body: String,
    },
    /// The socket closed before `hello-ok`.
    Closed(Close),
    /// The peer is not a gateway, or broke the protocol.
    Protocol(String),
}

/// Why a request got no answer.
#[derive(Clone, Debug)]
pub enum CallError {
    /// The gateway answered with an error.
    Request(ErrorShape),
    /// The connection closed first.
    Closed(Close),
    /// The deadline passed.
    Timeout,
    /// The peer broke the protocol.
    Protocol(String),
}

/// Why [`Session::next`] returned no event.
#[derive(Debug, thiserror::Error)]
pub enum NextError {
    /// The deadline passed first.
    #[error("timed out")]
    Timeout,
    /// The socket ended and every event before its end was taken.
    #[error("connection closed")]
    Ended,
    /// Writing or reading the socket failed ([`ReadErrors::Report`] only).
    #[error("{0}")]
    Io(io::Error),
}

/// What a failed socket read or write means to a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadErrors {
    /// [`Session::next`] returns [`NextError::Io`] with the error; the CLI prints its text.
    #[default]
    Report,
    /// A failed read is an end of stream (the client reports a close without a frame), a
    /// failed write is ignored (the read side will tell).
    AsEof,
}

/// How a session treats the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep every byte received, for [`Session::received`].
    pub record: bool,
    /// What a socket error means.
    pub errors: ReadErrors,
}

/// The gateway's `hello-ok`, as [`Session::connect`] got it.
#[derive(Clone, Debug)]
pub struct Hello {
    /// The `hello-ok` payload.
    pub payload: Value,
    /// Time from the start of the TCP connect to `hello-ok`.
    pub latency: Duration,
}

/// A client connection over a blocking socket.
pub struct Session {
    stream: TcpStream,
    client: Client,
    options: Options,
    /// Every byte received, when recording.
    received: Vec<u8>,
    /// The first write error not yet reported.
    write_error: Option<io::Error>,
    /// The socket reached its end (or failed): nothing more will be read.
    ended: bool,
    /// The deadline of [`Session::collect`] and [`Session::call`].
    deadline: Instant,
}

/// Open a TCP connection to `url` before `deadline`: its addresses raced as the gateway's
/// own connections race them ([`crate::happy_eyeballs`]: IPv6 and IPv4 interleaved, the next
/// address tried beside one that has not connected in 250 ms), as Node's `net.connect`
/// (`autoSelectFamily`) does for upstream's CLI.
fn tcp_connect(url: &GatewayUrl, deadline: Instant) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(unreachable)?
        .collect();
    if addrs.is_empty() {
        return Err(unreachable(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", url.host),
        )));
    }
    race(&addrs, format!("{}:{}", url.host, url.port), deadline)
}

/// The first of `addrs` (of `name`, `host:port`) to connect before `deadline`, blocking.
/// The deadline passing is a [`ConnectError::Timeout`]; every address failing before it is
/// [`ConnectError::Unreachable`] with the errno of the first failure (Node's
/// `AggregateError` takes its first error's code) and its text, or with several addresses
/// tried, a text naming each and why.
fn race(addrs: &[SocketAddr], name: String, deadline: Instant) -> Result<TcpStream, ConnectError> {
    let limits = HttpLimits {
        // Every attempt may go on to the deadline.
        connect_timeout: deadline.saturating_duration_since(Instant::now()),
        ..HttpLimits::default()
    };
    match Race::new(addrs, name, &limits, deadline).finish(|| false) {
        Ok(winner) => {
            let socket = winner.socket;
            socket.set_nonblocking(false).map_err(unreachable)?;
            Ok(socket)
        }
        Err(RaceError::Lost {
            open_timeout: true, ..
        }) => Err(ConnectError::Timeout),
        Err(e) => {
            let (first, several) = match &e {
                RaceError::Lost { failures, .. } => {
                    (failures.first().map(|(_, why)| why), failures.len() > 1)
                }
                RaceError::Wait { source, .. } => (Some(source), false),
                RaceError::NoAddresses { .. } | RaceError::Cancelled => (None, false),
            };
            // One address: the OS error's text alone, as before the race.
            let reason = match first {
                Some(why) if !several => why.to_string(),
                _ => e.to_string(),
            };
            Err(ConnectError::Unreachable {
                code: first.and_then(errno_name),
                reason,
            })
        }
    }
}

/// The connect failure `e`.
fn unreachable(e: io::Error) -> ConnectError {
    ConnectError::Unreachable {
        code: errno_name(&e),
        reason: e.to_string(),
    }
}

/// The errno name of a connect failure, as Node reports it.
fn errno_name(e: &io::Error) -> Option<&'static str> {
    Some(match e.kind() {
        io::ErrorKind::ConnectionRefused => "ECONNREFUSED",
        io::ErrorKind::ConnectionReset => "ECONNRESET",
        io::ErrorKind::HostUnreachable => "EHOSTUNREACH",
        io::ErrorKind::NetworkUnreachable => "ENETUNREACH",
        io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
        io::ErrorKind::TimedOut => "ETIMEDOUT",
        _ => return None,
    })
}

/// The close a [`Session::next`] failure stands for (deadlines aside).
fn closed_by(e: &NextError) -> Close {
    Close {
        code: None,
        reason: e.to_string(),
    }
}

impl Session {
    /// Open a TCP connection to `url` before `deadline` and send the upgrade request that
    /// `config` describes (its `host` and `path` as given). `deadline` also becomes the
    /// deadline of [`Session::collect`] and [`Session::call`].
    pub fn dial(
        url: &GatewayUrl,
        config: ClientConfig,
        options: Options,
        deadline: Instant,
    ) -> Result<Self, ConnectError> {
        let stream = tcp_connect(url, deadline)?;
        let _ = stream.set_nodelay(true);
        let mut session = Session {
            stream,
            client: Client::new(config, crate::entropy::random_bytes::<16>()),
            options,
            received: Vec::new(),
            write_error: None,
            ended: false,
            deadline,
        };
        session.flush();
        Ok(session)
    }

    /// Connect to `url` as `config` describes (with the URL's `Host` and path) and wait for
    /// `hello-ok`, all before `deadline`.
    pub fn connect(
        url: &GatewayUrl,
        mut config: ClientConfig,
        deadline: Instant,
    ) -> Result<(Self, Hello), ConnectError> {
        let started = Instant::now();
        config.host = url.host_header();
        config.path = url.path.clone();
        let mut session = Self::dial(url, config, Options::default(), deadline)?;
        loop {
            match session.next(deadline) {
                Err(NextError::Timeout) => return Err(ConnectError::Timeout),
                Err(e) => return Err(ConnectError::Closed(closed_by(&e))),
                Ok(Event::Hello(payload)) => {
                    let latency = started.elapsed();
                    return Ok((session, Hello { payload, latency }));
                }
                Ok(Event::ConnectFailed(error)) => {
                    let close = session.wait_close(deadline.min(Instant::now() + CLOSE_GRACE));
                    return Err(ConnectError::Refused { error, close });
                }
                Ok(Event::Closed { code, reason }) => {
                    return Err(ConnectError::Closed(Close { code, reason }));
                }
                Ok(Event::HttpRefused { status, body }) => {
                    return Err(ConnectError::Http { status, body });
                }
                Ok(Event::ProtocolError(p)) => return Err(ConnectError::Protocol(p)),
                Ok(_) => {}
            }
        }
    }

    /// Read on until the close that follows a refusal, or `deadline`.
    fn wait_close(&mut self, deadline: Instant) -> Option<Close> {
        loop {
            match self.next(deadline) {
                Ok(Event::Closed { code, reason }) => return Some(Close { code, reason }),
                Ok(_) => {}
                Err(NextError::Timeout) => return None,
                Err(e) => return Some(closed_by(&e)),
            }
        }
    }

    /// The client state machine (for requests and raw frames; [`Session::flush`] sends them).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Write whatever the client has queued. A failure is reported by the next
    /// [`Session::next`] (or ignored, with [`ReadErrors::AsEof`]).
    pub fn flush(&mut self) {
        while let Some(bytes) = self.client.poll_transmit() {
            if let Err(e) = self.stream.write_all(&bytes) {
                if self.options.errors == ReadErrors::Report && self.write_error.is_none() {
                    self.write_error = Some(e);
                }
                return;
            }
        }
    }

    /// The next event, reading from the socket until one comes or `deadline` passes.
    pub fn next(&mut self, deadline: Instant) -> Result<Event, NextError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.flush();
            if let Some(e) = self.write_error.take() {
                return Err(self.failed(e));
            }
            if let Some(ev) = self.client.poll_event() {
                self.flush();
                return Ok(ev);
            }
            if self.ended {
                return Err(NextError::Ended);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NextError::Timeout);
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            let read = match self.stream.set_read_timeout(Some(left)) {
                Ok(()) => self.stream.read(&mut buf),
                Err(e) => Err(e),
            };
            match read {
                Ok(0) => {
                    self.ended = true;
                    self.client.handle_eof();
                }
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    if self.options.record {
                        self.received.extend_from_slice(data);
                    }
                    self.client.handle_input(data);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => match self.options.errors {
                    ReadErrors::Report => return Err(self.failed(e)),
                    ReadErrors::AsEof => {
                        self.ended = true;
                        self.client.handle_eof();
                    }
                },
            }
        }
    }

    /// The socket failed with `e`: nothing more will be read from it.
    fn failed(&mut self, e: io::Error) -> NextError {
        self.ended = true;
        NextError::Io(e)
    }

    /// The next event within `timeout`; `None` when the connection ended or `timeout` passed.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        self.next(Instant::now() + timeout).ok()
    }

    /// The first event that matches `pick`, or `None` when the connection ends or `deadline`
    /// passes first; the events that did not match are pushed to `seen`.
    pub fn first_before<T>(
        &mut self,
        deadline: Instant,
        mut pick: impl FnMut(&Event) -> Option<T>,
        seen: &mut Vec<Event>,
    ) -> Option<T> {
        while let Ok(e) = self.next(deadline) {
            if let Some(t) = pick(&e) {
                return Some(t);
            }
            seen.push(e);
        }
        None
    }

    /// Give the session `more` time from now (a long-lived `logs -f`).
    pub fn extend_deadline(&mut self, more: Duration) {
        self.deadline = Instant::now() + more;
    }

    /// Send a request now, answer later with [`Session::collect`]; returns its id.
    pub fn send(&mut self, method: &str, params: Option<Value>) -> String {
        self.client.request(method, params)
    }

    /// Wait for the responses to `ids`. Returns what arrived, and why the wait ended early if
    /// it did (close, timeout).
    pub fn collect(
        &mut self,
        ids: &[String],
    ) -> (
        BTreeMap<String, Result<Value, ErrorShape>>,
        Option<CallError>,
    ) {
        let mut got = BTreeMap::new();
        let end = loop {
            if ids.iter().all(|id| got.contains_key(id)) {
                break None;
            }
            match self.next(self.deadline) {
                Err(NextError::Timeout) => break Some(CallError::Timeout),
                Err(e) => break Some(CallError::Closed(closed_by(&e))),
                Ok(Event::Response { id, result }) => {
                    if ids.contains(&id) {
                        got.insert(id, result);
                    }
                }
                Ok(Event::Closed { code, reason }) => {
                    break Some(CallError::Closed(Close { code, reason }));
                }
                Ok(Event::ProtocolError(p)) => break Some(CallError::Protocol(p)),
                Ok(_) => {}
            }
        };
        (got, end)
    }

    /// One request and its answer.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, CallError> {
        let id = self.send(method, params);
        let (mut got, end) = self.collect(std::slice::from_ref(&id));
        match got.remove(&id) {
            Some(r) => r.map_err(CallError::Request),
            None => Err(end.unwrap_or(CallError::Timeout)),
        }
    }

    /// Every byte the gateway sent so far (the 101 head, then WebSocket frames) when
    /// recording ([`Options::record`]); empty otherwise.
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Close politely (1000) and drop the socket.
    pub fn close(mut self) {
        self.client.close(1000, "");
        self.flush();
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::happy_eyeballs::tests::{black_hole, refusing};
    use crate::http_loop::ATTEMPT_DELAY;

    #[test]
    fn a_first_address_that_never_answers_costs_the_attempt_delay_not_the_deadline() {
        let (hole, _held) = black_hole("127.0.0.2:0");
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = [hole, good.local_addr().unwrap()];
        let started = Instant::now();
        let stream = race(&addrs, "x:1".into(), started + Duration::from_secs(5))
            .expect("the second address answers");
        let took = started.elapsed();
        assert_eq!(stream.peer_addr().unwrap(), addrs[1]);
        assert!(took >= ATTEMPT_DELAY, "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // Blocking again, as the session reads it: a read waits for its timeout.
        let wait = Duration::from_millis(50);
        stream.set_read_timeout(Some(wait)).unwrap();
        let reading = Instant::now();
        let e = (&stream).read(&mut [0; 1]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(reading.elapsed() >= wait, "{:?}", reading.elapsed());
    }

    #[test]
    fn every_address_refusing_is_unreachable_with_the_first_errno_and_each_address() {
        let (first, second) = (refusing(), refusing());
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = race(&[first, second], "x:1".into(), deadline).unwrap_err();
        let why = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        match error {
            ConnectError::Unreachable { code, reason } => {
                assert_eq!(code, Some("ECONNREFUSED"));
                assert_eq!(
                    reason,
                    format!("cannot connect to x:1: {first}: {why}; {second}: {why}")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn one_address_refusing_keeps_the_os_errors_text() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = race(&[refusing()], "x:1".into(), deadline).unwrap_err();
        let why = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        match error {
            ConnectError::Unreachable { code, reason } => {
                assert_eq!(code, Some("ECONNREFUSED"));
                assert_eq!(reason, why.to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_deadline_passing_while_no_address_answers_is_a_timeout() {
        let (hole, _held) = black_hole("127.0.0.3:0");
        let (other, _held_too) = black_hole("127.0.0.4:0");
        let started = Instant::now();
        let deadline = started + Duration::from_millis(400);
        let error = race(&[hole, other], "x:1".into(), deadline).unwrap_err();
        assert!(matches!(error, ConnectError::Timeout), "{error:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
