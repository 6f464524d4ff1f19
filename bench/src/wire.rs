//! What travels on one load-generator connection, as a sans-IO state machine: the gateway
//! protocol through the core's client (the bare baseline speaks it too, from canned frames).

use clawgate_core::client::{Client, ClientConfig, Event};
use serde_json::Value;
use tungstenite::protocol::WebSocketConfig;

/// What a connection observed, in the terms the scenarios need.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// The handshake is complete (`hello-ok`).
    Ready,
    /// A response to a request.
    Response {
        /// Request id.
        id: String,
        /// Payload, or the error message.
        result: Result<Value, String>,
    },
    /// An event.
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
    /// Send the scenario's cheapest request (`health`); returns its id.
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

/// The WebSocket configuration of the baseline server: the core's small buffers.
pub fn small_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}
