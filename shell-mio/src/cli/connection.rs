//! One gateway connection driven over a blocking `TcpStream`: the sans-IO
//! [`Client`](clawgate_core::client::Client) does the protocol, this module does the socket
//! and holds every step to one overall deadline.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clawgate_core::client::{Client, ClientConfig, Event};
use clawgate_core::frame::ErrorShape;
use serde_json::Value;

use super::url::GatewayUrl;

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
        /// The OS error.
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

/// An open connection after `hello-ok`.
pub struct Session {
    wire: Wire,
    deadline: Instant,
    /// The `hello-ok` payload.
    pub hello: Value,
    /// Time from the start of the TCP connect to `hello-ok`.
    pub latency: Duration,
    /// The last close seen, once the connection ended.
    pub close: Option<Close>,
}

/// What one step of reading produced.
enum Step {
    Event(Event),
    Timeout,
    Io(io::Error),
}

/// The socket and the client, before and after `hello-ok`.
struct Wire {
    stream: TcpStream,
    client: Client,
}

impl Wire {
    /// Write whatever the client has queued.
    fn flush(&mut self) -> io::Result<()> {
        while let Some(bytes) = self.client.poll_transmit() {
            self.stream.write_all(&bytes)?;
        }
        Ok(())
    }

    /// The next event, reading from the socket until one comes or `deadline` passes.
    fn next(&mut self, deadline: Instant) -> Step {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Err(e) = self.flush() {
                return Step::Io(e);
            }
            if let Some(ev) = self.client.poll_event() {
                return Step::Event(ev);
            }
            let now = Instant::now();
            if now >= deadline {
                return Step::Timeout;
            }
            if let Err(e) = self
                .stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            {
                return Step::Io(e);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.client.handle_eof();
                    if let Some(ev) = self.client.poll_event() {
                        return Step::Event(ev);
                    }
                    return Step::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
                Ok(n) => self.client.handle_input(buf.get(..n).unwrap_or(&[])),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Step::Io(e),
            }
        }
    }
}

/// Open a TCP connection to `url` before `deadline`.
fn tcp_connect(url: &GatewayUrl, deadline: Instant) -> Result<TcpStream, ConnectError> {
    let unreachable = |e: io::Error| ConnectError::Unreachable {
        code: errno_name(&e),
        reason: e.to_string(),
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(unreachable)?
        .collect();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} resolves to no address", url.host),
    );
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Timeout);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(ConnectError::Timeout),
            Err(e) => last = e,
        }
    }
    Err(unreachable(last))
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

/// Read on until the close that follows a refusal, or `deadline`.
fn wait_close(wire: &mut Wire, deadline: Instant) -> Option<Close> {
    loop {
        match wire.next(deadline) {
            Step::Event(Event::Closed { code, reason }) => return Some(Close { code, reason }),
            Step::Event(_) => {}
            Step::Timeout => return None,
            Step::Io(e) => return Some(closed_by_io(&e)),
        }
    }
}

fn closed_by_io(e: &io::Error) -> Close {
    Close {
        code: None,
        reason: e.to_string(),
    }
}

impl Session {
    /// Connect to `url` as `config` describes and wait for `hello-ok`, all before `deadline`.
    pub fn connect(
        url: &GatewayUrl,
        mut config: ClientConfig,
        deadline: Instant,
    ) -> Result<Self, ConnectError> {
        let started = Instant::now();
        config.host = url.host_header();
        config.path = url.path.clone();
        let stream = tcp_connect(url, deadline)?;
        let _ = stream.set_nodelay(true);
        let client = Client::new(config, clawgate_host::entropy::random_bytes::<16>());
        let mut wire = Wire { stream, client };
        loop {
            match wire.next(deadline) {
                Step::Timeout => return Err(ConnectError::Timeout),
                Step::Io(e) => return Err(ConnectError::Closed(closed_by_io(&e))),
                Step::Event(Event::Hello(hello)) => {
                    return Ok(Session {
                        wire,
                        deadline,
                        hello,
                        latency: started.elapsed(),
                        close: None,
                    });
                }
                Step::Event(Event::ConnectFailed(error)) => {
                    let close = wait_close(&mut wire, deadline.min(Instant::now() + CLOSE_GRACE));
                    return Err(ConnectError::Refused { error, close });
                }
                Step::Event(Event::Closed { code, reason }) => {
                    return Err(ConnectError::Closed(Close { code, reason }));
                }
                Step::Event(Event::HttpRefused { status, body }) => {
                    return Err(ConnectError::Http { status, body });
                }
                Step::Event(Event::ProtocolError(p)) => return Err(ConnectError::Protocol(p)),
                Step::Event(_) => {}
            }
        }
    }

    /// Give the session `more` time from now (a long-lived `logs -f`).
    pub fn extend_deadline(&mut self, more: Duration) {
        self.deadline = Instant::now() + more;
    }

    /// Send a request now, answer later with [`Session::collect`]; returns its id.
    pub fn send(&mut self, method: &str, params: Option<Value>) -> String {
        self.wire.client.request(method, params)
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
            match self.wire.next(self.deadline) {
                Step::Timeout => break Some(CallError::Timeout),
                Step::Io(e) => break Some(self.note_close(closed_by_io(&e))),
                Step::Event(Event::Response { id, result }) => {
                    if ids.contains(&id) {
                        got.insert(id, result);
                    }
                }
                Step::Event(Event::Closed { code, reason }) => {
                    break Some(self.note_close(Close { code, reason }));
                }
                Step::Event(Event::ProtocolError(p)) => break Some(CallError::Protocol(p)),
                Step::Event(_) => {}
            }
        };
        (got, end)
    }

    fn note_close(&mut self, close: Close) -> CallError {
        self.close = Some(close.clone());
        CallError::Closed(close)
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

    /// Close politely (1000) and drop the socket.
    pub fn close(mut self) {
        self.wire.client.close(1000, "");
        let _ = self.wire.flush();
        let _ = self.wire.stream.shutdown(Shutdown::Write);
    }
}
