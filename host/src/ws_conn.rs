//! One outbound WebSocket for the core's [`Work::WsOpen`](clawgate_core::Work::WsOpen) (a
//! channel's socket: Slack's Socket Mode, Discord's Gateway) on a non-blocking connection,
//! moved along by readiness on the loop's poller ([`crate::http_loop`]) as an HTTP request is
//! ([`crate::http_conn`]), so a frame read reaches the core in the wake-up that read it and a
//! frame the core sends is written at once, with no thread to hand either over.
//!
//! Its course: the host's lookup (the loop's), the connect and, for `wss://`, the TLS handshake
//! ([`Exchange::open`]: the loop's happy eyeballs, open timeout and rustls); plain `ws://` goes
//! only to loopback addresses. Then the upgrade (tungstenite's client handshake, resumed on
//! each readiness), answered within the idle timeout ([`HttpLimits::idle_timeout`]); then
//! [`WorkResult::WsOpened`] and frames both ways: every text message read is a
//! [`WorkResult::WsText`]; a text the loop sends is written at once, and what the socket does
//! not take waits for it to become writable (texts sent before the upgrade finished wait for
//! it). An open socket has no deadline and is watched for readability only (writability too
//! while frames wait to leave): an idle one costs no wake-up. The end is exactly one
//! [`WorkResult::WsClosed`]: a close (the gateway's, or the peer's, answered) waits at most
//! [`CLOSE_FLUSH_WAIT`] for the socket to take the frames still queued and the close frame,
//! then shuts the socket down; a message over the core's bound, a protocol error or a failed
//! socket ends it at once.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clawgate_core::model::http1::{Scheme, Target};
use clawgate_core::{WorkId, WorkResult, WsOpen};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{ClientHandshake, Request, Response};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::http_conn::Exchange;
use crate::http_loop::HttpLimits;
use crate::tls::Stream;
use crate::url::is_loopback_host;

/// The read buffer of a socket (tungstenite's default is 128 KiB, zero-filled per read).
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// The longest a closing socket waits for the peer to take the frames still queued and the
/// close frame (its receive window full: a peer that does not read) before it is shut down.
pub const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(5);
/// The reason of a socket the gateway closed.
const CLOSED_BY_THE_GATEWAY: &str = "closed by the gateway";

/// How a socket ended, as its [`WorkResult::WsClosed`] says: the peer's close code, and why.
type End = (Option<u16>, String);

/// Where a socket is in its course; `Err`: it ended.
type Next = Result<State, End>;

/// Where a socket is (see the module doc).
enum State {
    /// Its host is being looked up (by the loop); the upgrade request to send once open.
    Resolving(Box<Request>),
    /// Connecting, then the TLS handshake; the upgrade request.
    Opening(Box<Exchange>, Box<Request>),
    /// The upgrade under way, to be answered by the instant.
    Upgrading(Box<MidHandshake<ClientHandshake<Stream>>>, Instant),
    /// Frames both ways; `true` while frames wait for the socket to take them.
    Open(Box<WebSocket<Stream>>, bool),
    /// The close frame (and the frames queued before it) leaving until the instant; then the
    /// socket ends as `End` says.
    Closing(Box<WebSocket<Stream>>, Instant, End),
    /// Ended; its [`WorkResult::WsClosed`] is reported.
    Ended,
}

/// One outbound WebSocket (see the module doc).
pub(crate) struct WsConn {
    /// Its [`Work::WsOpen`](clawgate_core::Work::WsOpen)'s id.
    id: WorkId,
    state: State,
    config: WebSocketConfig,
    /// Texts the loop asked to send before the socket was open.
    early: Vec<String>,
    /// How its socket is registered with the loop's poller once open (the attempts to
    /// connect are [`Exchange::watch`]'s).
    watched: Option<Interest>,
    /// `host:port`, for errors.
    name: String,
    idle_timeout: Duration,
}

/// Whether `e` is tungstenite's "the socket would block" (the frame is kept for later).
fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl WsConn {
    /// A socket for `open`, its host not yet looked up, and where it connects; or why `open`
    /// cannot be (not a `ws://` or `wss://` URL, plain `ws://` beyond loopback, a header
    /// that cannot be sent).
    pub(crate) fn new(
        id: WorkId,
        open: &WsOpen,
        limits: &HttpLimits,
    ) -> Result<(Self, Target), String> {
        let lower = open.url.to_ascii_lowercase();
        let as_http = if let Some(rest) = lower.strip_prefix("wss://").and(open.url.get(6..)) {
            format!("https://{rest}")
        } else if let Some(rest) = lower.strip_prefix("ws://").and(open.url.get(5..)) {
            format!("http://{rest}")
        } else {
            return Err(format!("{} is not a ws:// or wss:// URL", open.url));
        };
        let target = Target::parse(&as_http).map_err(|e| e.to_string())?;
        if target.scheme == Scheme::Http && !is_loopback_host(&target.host) {
            return Err(format!(
                "plain ws:// is only allowed to loopback addresses, not {}; use wss://",
                target.host
            ));
        }
        let mut request = open
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{}: {e}", open.url))?;
        for (name, value) in &open.headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header {name}: {e}"))?;
            let value = tungstenite::http::HeaderValue::from_str(value)
                .map_err(|e| format!("header {name}: {e}"))?;
            request.headers_mut().insert(name, value);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(open.max_message))
            .max_frame_size(Some(open.max_message));
        let conn = WsConn {
            id,
            state: State::Resolving(Box::new(request)),
            config,
            early: Vec::new(),
            watched: None,
            name: format!("{}:{}", target.host, target.port),
            idle_timeout: limits.idle_timeout,
        };
        Ok((conn, target))
    }

    /// Its host's addresses are known: connect to `addrs` (for `wss://`, `tls` is the name
    /// the certificate must carry), open `by` then; the first [`advance`](Self::advance)
    /// starts.
    pub(crate) fn connect(
        &mut self,
        addrs: &[SocketAddr],
        tls: Option<String>,
        limits: &HttpLimits,
        by: Instant,
        now: Instant,
    ) {
        let state = std::mem::replace(&mut self.state, State::Ended);
        self.state = match state {
            State::Resolving(request) => {
                let exchange = Exchange::open(addrs, tls, self.name.clone(), limits, by, now);
                State::Opening(Box::new(exchange), request)
            }
            other => other,
        };
    }

    /// Its [`Work::WsOpen`](clawgate_core::Work::WsOpen)'s id.
    pub(crate) fn id(&self) -> WorkId {
        self.id
    }

    /// Whether it ended (its [`WorkResult::WsClosed`] reported).
    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// When the step it waits on times out: none once open (an idle socket waits for its
    /// peer as long as it takes) or while its host is looked up (the loop's).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Opening(exchange, _) => Some(exchange.deadline()),
            State::Upgrading(_, by) | State::Closing(_, by, _) => Some(*by),
            State::Resolving(_) | State::Open(..) | State::Ended => None,
        }
    }

    /// Move along from `state` with `go`; an end is reported onto `results`, once.
    fn then(
        &mut self,
        results: &mut Vec<WorkResult>,
        go: impl FnOnce(&mut Self, State, &mut Vec<WorkResult>) -> Next,
    ) {
        let state = std::mem::replace(&mut self.state, State::Ended);
        if let State::Ended = state {
            return;
        }
        match go(self, state, results) {
            Ok(state) => self.state = state,
            Err((code, reason)) => results.push(WorkResult::WsClosed { code, reason }),
        }
    }

    /// End it now with `reason` (its lookup failed, the poller refused its socket).
    pub(crate) fn fail(&mut self, reason: String, results: &mut Vec<WorkResult>) {
        self.then(results, |_, _, _| Err((None, reason)));
    }

    /// Do what its socket allows now (the loop calls this when the socket is ready or the
    /// [`deadline`](Self::deadline) passed), reading into `buf` while it opens; what it read
    /// goes to `results`.
    pub(crate) fn advance(
        &mut self,
        registry: &Registry,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) {
        self.then(results, |conn, state, results| match state {
            State::Opening(exchange, request) => {
                conn.opening(exchange, request, registry, now, buf, results)
            }
            State::Upgrading(_, by) if by <= now => Err((
                None,
                format!(
                    "WebSocket upgrade with {} failed: no answer within {} s (idle timeout)",
                    conn.name,
                    conn.idle_timeout.as_secs_f32()
                ),
            )),
            State::Upgrading(mid, by) => conn.upgraded(mid.handshake(), by, now, results),
            State::Open(ws, _) => conn.pump(ws, now, results),
            State::Closing(ws, until, end) => closing(ws, until, end, now),
            state @ (State::Resolving(_) | State::Ended) => Ok(state),
        });
    }

    /// Connect and handshake as far as the sockets allow; once open, start the upgrade.
    fn opening(
        &mut self,
        mut exchange: Box<Exchange>,
        request: Box<Request>,
        registry: &Registry,
        now: Instant,
        buf: &mut [u8],
        results: &mut Vec<WorkResult>,
    ) -> Next {
        if exchange.deadline() <= now {
            exchange.timed_out().map_err(|f| (None, f.error.message))?;
        }
        // An open only reads nothing: no results.
        let mut none = Vec::new();
        match exchange.advance(now, buf, &mut none) {
            Ok(None) => return Ok(State::Opening(exchange, request)),
            Ok(Some(_)) => {}
            Err(failed) => return Err((None, failed.error.message)),
        }
        let Some(conn) = exchange.into_connection(registry) else {
            return Err((None, format!("{}: no connection", self.name)));
        };
        let by = now + self.idle_timeout;
        let started = ClientHandshake::start(conn.stream, *request, Some(self.config))
            .map_err(|e| (None, self.upgrade_error(&e)))?;
        self.upgraded(started.handshake(), by, now, results)
    }

    /// The end of an upgrade that failed with `e`.
    fn upgrade_error(&self, e: &tungstenite::Error) -> String {
        format!("WebSocket upgrade with {} failed: {e}", self.name)
    }

    /// Where the upgrade got: waiting for the socket, failed, or done (the texts sent early
    /// written, and what came with the answer read).
    fn upgraded(
        &mut self,
        upgrade: Result<(WebSocket<Stream>, Response), HandshakeError<ClientHandshake<Stream>>>,
        by: Instant,
        now: Instant,
        results: &mut Vec<WorkResult>,
    ) -> Next {
        let mut ws = match upgrade {
            Ok((ws, _)) => ws,
            Err(HandshakeError::Interrupted(mid)) => {
                return Ok(State::Upgrading(Box::new(mid), by));
            }
            Err(HandshakeError::Failure(e)) => return Err((None, self.upgrade_error(&e))),
        };
        results.push(WorkResult::WsOpened);
        for text in std::mem::take(&mut self.early) {
            write(&mut ws, text)?;
        }
        self.pump(Box::new(ws), now, results)
    }

    /// Read every message the socket has, then write what waits: how it goes on.
    fn pump(
        &mut self,
        mut ws: Box<WebSocket<Stream>>,
        now: Instant,
        results: &mut Vec<WorkResult>,
    ) -> Next {
        let peer_closed = || (None, "closed by the peer".to_owned());
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => results.push(WorkResult::WsText(text.as_str().into())),
                Ok(Message::Close(frame)) => {
                    let end = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                        None => peer_closed(),
                    };
                    // Our answering close frame, queued by tungstenite.
                    return closing(ws, now + CLOSE_FLUSH_WAIT, end, now);
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(peer_closed());
                }
                Err(e) => return Err((None, e.to_string())),
            }
        }
        let blocked = flush(&mut ws)?;
        Ok(State::Open(ws, blocked))
    }

    /// Send a text frame: written at once as far as the socket takes it, or (not open yet)
    /// once the upgrade is done; ignored once it closes.
    pub(crate) fn send(&mut self, text: String, results: &mut Vec<WorkResult>) {
        self.then(results, |conn, state, _| match state {
            State::Resolving(_) | State::Opening(..) | State::Upgrading(..) => {
                conn.early.push(text);
                Ok(state)
            }
            State::Open(mut ws, _) => {
                write(&mut ws, text)?;
                let blocked = flush(&mut ws)?;
                Ok(State::Open(ws, blocked))
            }
            state @ (State::Closing(..) | State::Ended) => Ok(state),
        });
    }

    /// Close it with `code`: once open, after the frames queued (waiting at most
    /// [`CLOSE_FLUSH_WAIT`] for the socket to take them), else at once.
    pub(crate) fn close(&mut self, code: u16, now: Instant, results: &mut Vec<WorkResult>) {
        self.then(results, |_, state, _| match state {
            State::Open(mut ws, _) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "".into(),
                };
                // Queued even when the socket takes none of it now.
                let _ = ws.close(Some(frame));
                let end = (None, CLOSED_BY_THE_GATEWAY.to_owned());
                closing(ws, now + CLOSE_FLUSH_WAIT, end, now)
            }
            state @ State::Closing(..) => Ok(state),
            _ => Err((None, CLOSED_BY_THE_GATEWAY.to_owned())),
        });
    }

    /// Register its socket with `registry` under `token` for what it waits on: the attempts
    /// while it connects ([`Exchange::watch`]); during the upgrade, readability and
    /// writability; once open, readability (writability too while frames wait); while
    /// closing, writability. Left as it is when that did not change; a socket the poller
    /// refuses ends.
    pub(crate) fn watch(
        &mut self,
        registry: &Registry,
        token: Token,
        results: &mut Vec<WorkResult>,
    ) {
        let both = Interest::READABLE | Interest::WRITABLE;
        let (stream, interest) = match &mut self.state {
            State::Opening(exchange, _) => match exchange.watch(registry, token) {
                Ok(()) => return,
                Err(e) => return self.fail(format!("cannot watch the socket: {e}"), results),
            },
            State::Upgrading(mid, _) => (mid.get_ref().get_ref(), both),
            State::Open(ws, true) => (ws.get_ref(), both),
            State::Open(ws, false) => (ws.get_ref(), Interest::READABLE),
            State::Closing(ws, ..) => (ws.get_ref(), Interest::WRITABLE),
            State::Resolving(_) | State::Ended => return,
        };
        let fd = stream.tcp().as_raw_fd();
        let registered = match self.watched {
            Some(now) if now == interest => Ok(()),
            Some(_) => registry.reregister(&mut SourceFd(&fd), token, interest),
            None => registry.register(&mut SourceFd(&fd), token, interest),
        };
        // Its registration goes with the socket: it closes when the socket ends.
        match registered {
            Ok(()) => self.watched = Some(interest),
            Err(e) => self.fail(format!("cannot watch the socket: {e}"), results),
        }
    }
}

/// Queue `text` on `ws` and write what the socket takes (the rest waits for [`flush`]).
fn write(ws: &mut WebSocket<Stream>, text: String) -> Result<(), End> {
    match ws.write(Message::text(text)) {
        Ok(()) => Ok(()),
        Err(e) if would_block(&e) => Ok(()),
        Err(e) => Err((None, e.to_string())),
    }
}

/// Write what `ws` holds (tungstenite's frames, then rustls's records): whether some is left
/// for when the socket is writable again.
fn flush(ws: &mut WebSocket<Stream>) -> Result<bool, End> {
    match ws.flush() {
        Ok(()) => Ok(false),
        Err(e) if would_block(&e) => Ok(true),
        Err(e) => Err((None, e.to_string())),
    }
}

/// Write what a closing socket holds; once all is written, writing failed or `until`
/// passed, shut it down and end it as `end` says.
fn closing(mut ws: Box<WebSocket<Stream>>, until: Instant, end: End, now: Instant) -> Next {
    if matches!(flush(&mut ws), Ok(true)) && now < until {
        return Ok(State::Closing(ws, until, end));
    }
    let _ = ws.get_ref().tcp().shutdown(Shutdown::Write);
    Err(end)
}
