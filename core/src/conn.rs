//! One connection: its HTTP head buffer, then its WebSocket context over an in-memory
//! read/write adapter, its handshake state and, after `hello-ok`, its session.

use core::net::{IpAddr, SocketAddr};
use std::collections::VecDeque;
use std::io::{self, Read, Write};

use tungstenite::protocol::{Role as WsRole, WebSocketConfig, WebSocketContext};

use crate::handshake::ClientInfo;
use crate::scopes::Role;

/// Identifies a connection between the core and its shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The in-memory stream a tungstenite `WebSocketContext` runs over in a sans-IO driver: bytes
/// received are pushed in, bytes to send are taken out. Reads return `WouldBlock` when empty
/// (never `Ok(0)`, which tungstenite would take for EOF).
#[derive(Debug, Default)]
pub struct MemIo {
    pub(crate) rd: VecDeque<u8>,
    pub(crate) wr: Vec<u8>,
}

impl MemIo {
    /// A stream whose first bytes to send are `out` (an HTTP upgrade request, say).
    pub fn with_output(out: Vec<u8>) -> Self {
        Self {
            rd: VecDeque::new(),
            wr: out,
        }
    }

    /// Bytes received from the peer, for the WebSocket context to read.
    pub fn push(&mut self, data: &[u8]) {
        self.rd.extend(data);
    }

    /// Everything written so far and not yet taken, if anything.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.wr.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.wr))
        }
    }
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rd.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.rd.read(buf)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wr.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A WebSocket context configured for the core: small read buffer, no write buffering.
pub(crate) fn ws_context(role: WsRole, max_message: usize) -> WebSocketContext {
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    WebSocketContext::new(role, Some(cfg))
}

/// How the connection proved itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// Mode `none`, local.
    None,
    /// The shared token.
    Token,
    /// The shared password.
    Password,
    /// A paired device's token.
    DeviceToken,
}

impl AuthMethod {
    /// upstream's `auth.method` name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Token => "token",
            AuthMethod::Password => "password",
            AuthMethod::DeviceToken => "device-token",
        }
    }
}

/// An authenticated connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) role: Role,
    /// Shared, so a request borrows them for its whole call for a reference count.
    pub(crate) scopes: std::sync::Arc<[String]>,
    pub(crate) client: ClientInfo,
    pub(crate) conn_uuid: String,
    pub(crate) device_id: Option<String>,
    pub(crate) auth: AuthMethod,
    /// The device token this connection authenticated with, if any (to close it on revoke).
    pub(crate) device_token: Option<String>,
    pub(crate) caps: Vec<String>,
    pub(crate) commands: Vec<String>,
    pub(crate) seq: u64,
    pub(crate) unauthorized_calls: u32,
    pub(crate) connected_at_ms: u64,
}

/// Where a WebSocket connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Challenge sent, waiting for `connect`.
    PreHello { nonce: String, frames: usize },
    /// `hello-ok` sent.
    Authed(Box<Session>),
}

/// A WebSocket connection.
pub(crate) struct Ws {
    pub(crate) ctx: WebSocketContext,
    pub(crate) io: MemIo,
    pub(crate) client_ip: IpAddr,
    pub(crate) local: bool,
    pub(crate) origin: Option<String>,
    /// The `Host` the upgrade was sent to (a same-origin page's `Origin` names it).
    pub(crate) host: Option<String>,
    /// The upgrade's `x-openclaw-scopes` header: admitted scopes are capped to it.
    pub(crate) scope_cap: Option<String>,
    pub(crate) phase: Phase,
}

/// The state of a connection.
pub(crate) enum State {
    /// Reading the HTTP request head.
    Http(Vec<u8>),
    /// Upgraded.
    Ws(Box<Ws>),
    /// Answering a Control UI request (the transfer is the gateway's `Serving`'s).
    Static,
}

/// What [`Conn::frame_text`] made of a text frame.
pub(crate) enum Framed {
    /// The bytes to transmit (already counted as unsent).
    Bytes(Vec<u8>),
    /// They would pass the unsent limit: dropped uncounted, the peer is a slow consumer.
    SlowConsumer,
    /// The connection is not (yet) a WebSocket.
    NotWebSocket,
}

/// A connection the core knows about.
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    pub(crate) state: State,
    /// Bytes handed to the shell and not yet reported written.
    pub(crate) unsent: usize,
    /// Its frame quota ran out with input left: it waits in the backlog for another turn.
    pub(crate) backlogged: bool,
}

impl Conn {
    pub(crate) fn session(&self) -> Option<&Session> {
        match &self.state {
            State::Ws(ws) => match &ws.phase {
                Phase::Authed(s) => Some(s),
                Phase::PreHello { .. } => None,
            },
            State::Http(_) | State::Static => None,
        }
    }

    pub(crate) fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Ws(ws) => match &mut ws.phase {
                Phase::Authed(s) => Some(s),
                Phase::PreHello { .. } => None,
            },
            State::Http(_) | State::Static => None,
        }
    }

    /// Frame `text` as a WebSocket message to the peer and count its bytes as unsent, unless
    /// they would take the unsent total past `max_unsent`.
    pub(crate) fn frame_text(&mut self, text: String, max_unsent: usize) -> Framed {
        let State::Ws(ws) = &mut self.state else {
            return Framed::NotWebSocket;
        };
        let _ = ws.ctx.write(&mut ws.io, tungstenite::Message::text(text));
        let bytes = std::mem::take(&mut ws.io.wr);
        if self.unsent + bytes.len() > max_unsent {
            return Framed::SlowConsumer;
        }
        self.unsent += bytes.len();
        Framed::Bytes(bytes)
    }

    /// Whether this connection counts against the pre-auth budget of its address.
    pub(crate) fn is_preauth_ws(&self) -> bool {
        matches!(&self.state, State::Ws(ws) if matches!(ws.phase, Phase::PreHello { .. }))
    }
}
