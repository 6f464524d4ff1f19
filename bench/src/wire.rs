//! What travels on one load-generator connection, as a sans-IO state machine: the gateway
//! protocol through the core's client, or the bare baseline's upgrade-and-echo.

use std::collections::VecDeque;
use std::io;

use clawgate_core::MemIo;
use clawgate_core::client::{Client, ClientConfig, Event};
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::handshake::client::Response;
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// What a connection observed, in the terms the scenarios need.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// The handshake is complete (`hello-ok`, or the baseline's first echo).
    Ready,
    /// A response to a request.
    Response {
        /// Request id (empty for the baseline).
        id: String,
        /// Payload, or the error message.
        result: Result<Value, String>,
    },
    /// An event (the baseline's broadcasts come as `tick` with `{"ts": n}`).
    Event {
        /// Event name.
        event: String,
        /// Payload.
        payload: Value,
    },
    /// The connection ended; why.
    Closed(String),
}

/// One side of a connection the load generator drives.
pub trait Wire: Send {
    /// Bytes to write, if any.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// Bytes read from the socket.
    fn handle_input(&mut self, data: &[u8]);
    /// The socket reached EOF or failed.
    fn handle_eof(&mut self);
    /// The next observation, if any.
    fn poll_note(&mut self) -> Option<Note>;
    /// Send the scenario's cheapest request (`health`, or an echo); returns its id.
    fn send_probe(&mut self) -> String;
}

/// The gateway protocol through [`clawgate_core::client::Client`].
pub struct GatewayWire {
    client: Client,
}

impl GatewayWire {
    /// A client with `config` and WebSocket key `key`.
    pub fn new(config: ClientConfig, key: [u8; 16]) -> Self {
        Self {
            client: Client::new(config, key),
        }
    }

    /// Send a request; returns its id.
    pub fn request(&mut self, method: &str, params: Value) -> String {
        self.client.request(method, Some(params))
    }
}

impl Wire for GatewayWire {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.client.poll_transmit()
    }

    fn handle_input(&mut self, data: &[u8]) {
        self.client.handle_input(data);
    }

    fn handle_eof(&mut self) {
        self.client.handle_eof();
    }

    fn poll_note(&mut self) -> Option<Note> {
        loop {
            let note = match self.client.poll_event()? {
                Event::Challenge { .. } => continue,
                Event::Hello(_) => Note::Ready,
                Event::Response { id, result } => Note::Response {
                    id,
                    result: result.map_err(|e| format!("{:?}: {}", e.code, e.message)),
                },
                Event::Event { event, payload, .. } => Note::Event { event, payload },
                Event::ConnectFailed(e) => {
                    Note::Closed(format!("connect failed: {:?}: {}", e.code, e.message))
                }
                Event::Closed { code, reason } => Note::Closed(format!("closed {code:?} {reason}")),
                Event::HttpRefused { status, body } => {
                    Note::Closed(format!("HTTP {status} {body}"))
                }
                Event::ProtocolError(e) => Note::Closed(format!("protocol error: {e}")),
            };
            return Some(note);
        }
    }

    fn send_probe(&mut self) -> String {
        self.client.request("health", None)
    }
}

/// The WebSocket configuration both baseline ends use: the core's small buffers.
pub fn small_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// The text the baseline client sends as its handshake stand-in.
const HANDSHAKE_ECHO: &str = "hello";
/// Prefix of the baseline server's broadcasts: `tick:<n>`.
pub const BARE_TICK_PREFIX: &str = "tick:";

/// The bare baseline's client: upgrade, one echo round trip as the handshake, then echoes.
pub struct BareWire {
    upgrading: Option<(String, Vec<u8>)>,
    ctx: WebSocketContext,
    io: MemIo,
    ready: bool,
    closed: bool,
    notes: VecDeque<Note>,
}

impl BareWire {
    /// A client that sends its upgrade request for `host` with WebSocket key `key`.
    pub fn new(host: &str, key: [u8; 16]) -> Self {
        let key = data_encoding::BASE64.encode(&key);
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        Self {
            upgrading: Some((key, Vec::new())),
            ctx: WebSocketContext::new(Role::Client, Some(small_ws_config())),
            io: MemIo::with_output(req.into_bytes()),
            ready: false,
            closed: false,
            notes: VecDeque::new(),
        }
    }

    fn send(&mut self, text: &str) {
        let _ = self.ctx.write(&mut self.io, Message::text(text));
    }

    fn close_with(&mut self, why: String) {
        if !self.closed {
            self.closed = true;
            self.notes.push_back(Note::Closed(why));
        }
    }

    fn read_frames(&mut self) {
        loop {
            match self.ctx.read(&mut self.io) {
                Ok(Message::Text(t)) => {
                    let note = if let Some(n) = t.as_str().strip_prefix(BARE_TICK_PREFIX) {
                        Note::Event {
                            event: "tick".into(),
                            payload: json!({"ts": n.parse::<u64>().unwrap_or(0)}),
                        }
                    } else if !self.ready {
                        self.ready = true;
                        Note::Ready
                    } else {
                        Note::Response {
                            id: String::new(),
                            result: Ok(Value::Null),
                        }
                    };
                    self.notes.push_back(note);
                }
                Ok(Message::Close(_)) => self.close_with("closed by server".into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.close_with(e.to_string());
                    return;
                }
            }
        }
    }
}

impl Wire for BareWire {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.io.take_output()
    }

    fn handle_input(&mut self, data: &[u8]) {
        let Some((key, buf)) = &mut self.upgrading else {
            self.io.push(data);
            self.read_frames();
            return;
        };
        buf.extend_from_slice(data);
        match Response::try_parse(buf) {
            Ok(None) => {}
            Ok(Some((len, resp))) => {
                let accepted = resp.status().as_u16() == 101
                    && resp.headers().get("Sec-WebSocket-Accept").is_some_and(|v| {
                        v.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes()
                    });
                let rest = buf.split_off(len.min(buf.len()));
                self.upgrading = None;
                if !accepted {
                    self.close_with(format!("upgrade refused: {}", resp.status()));
                    return;
                }
                self.io.push(&rest);
                self.send(HANDSHAKE_ECHO);
                self.read_frames();
            }
            Err(e) => self.close_with(format!("bad upgrade response: {e}")),
        }
    }

    fn handle_eof(&mut self) {
        self.close_with("eof".into());
    }

    fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    fn send_probe(&mut self) -> String {
        self.send("echo");
        String::new()
    }
}
