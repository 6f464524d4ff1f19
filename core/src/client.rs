//! The other side of the protocol as a sans-IO state machine: the upgrade request,
//! `connect` on the challenge (with an optional device signature), `hello-ok`, then
//! requests and events. The CLI, the tests and embedders drive it over any transport.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::handshake::client::Response;
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::protocol::Role as WsRole;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::conn::{MemIo, ws_context};
use crate::device::{DeviceKey, SignedFields};
use crate::frame::{ErrorShape, PROTOCOL_VERSION};
use crate::handshake::ClientInfo;
use crate::scopes::Role;

/// How a client introduces itself.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `Host` header value (`127.0.0.1:18789`).
    pub host: String,
    /// Request path (`/`).
    pub path: String,
    /// `Origin` header, if any.
    pub origin: Option<String>,
    /// `auth.token`.
    pub token: Option<String>,
    /// `auth.password`.
    pub password: Option<String>,
    /// `auth.deviceToken`.
    pub device_token: Option<String>,
    /// `client`.
    pub client: ClientInfo,
    /// `role`.
    pub role: Role,
    /// `scopes`.
    pub scopes: Vec<String>,
    /// `caps`.
    pub caps: Vec<String>,
    /// `commands`.
    pub commands: Vec<String>,
    /// Device key to sign with, if any.
    pub device: Option<DeviceKey>,
    /// `minProtocol`.
    pub min_protocol: u64,
    /// `maxProtocol`.
    pub max_protocol: u64,
    /// Wait for [`Client::send_connect`] after the challenge instead of sending `connect` itself.
    pub manual_connect: bool,
}

impl ClientConfig {
    /// A CLI operator client (`cli`/`cli`) for `host`.
    pub fn cli(host: &str) -> Self {
        Self {
            host: host.to_string(),
            path: "/".into(),
            origin: None,
            token: None,
            password: None,
            device_token: None,
            client: ClientInfo {
                id: "cli".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                platform: std::env::consts::OS.into(),
                mode: "cli".into(),
                ..Default::default()
            },
            role: Role::Operator,
            scopes: vec![crate::scopes::READ.into()],
            caps: Vec::new(),
            commands: Vec::new(),
            device: None,
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            manual_connect: false,
        }
    }

    /// The `connect` params for a challenge.
    pub fn connect_params(&self, nonce: &str, challenge_ts: i64) -> Value {
        let mut auth = serde_json::Map::new();
        for (k, v) in [
            ("token", &self.token),
            ("password", &self.password),
            ("deviceToken", &self.device_token),
        ] {
            if let Some(v) = v {
                auth.insert(k.into(), json!(v));
            }
        }
        let mut client = json!({"id": self.client.id, "version": self.client.version, "platform": self.client.platform, "mode": self.client.mode});
        for (k, v) in [
            ("displayName", &self.client.display_name),
            ("deviceFamily", &self.client.device_family),
            ("instanceId", &self.client.instance_id),
        ] {
            if let Some(v) = v {
                client[k] = json!(v);
            }
        }
        let mut p = json!({
            "minProtocol": self.min_protocol, "maxProtocol": self.max_protocol, "client": client,
            "caps": self.caps, "role": self.role.as_str(), "scopes": self.scopes,
        });
        if !self.commands.is_empty() {
            p["commands"] = json!(self.commands);
        }
        if !auth.is_empty() {
            p["auth"] = Value::Object(auth);
        }
        if let Some(key) = &self.device {
            let token = self
                .token
                .as_deref()
                .or(self.device_token.as_deref())
                .unwrap_or("");
            let fields = SignedFields {
                client_id: &self.client.id,
                client_mode: &self.client.mode,
                role: self.role.as_str(),
                scopes: &self.scopes,
                token,
                platform: &self.client.platform,
                device_family: self.client.device_family.as_deref().unwrap_or(""),
            };
            let proof = key.prove(&fields, challenge_ts, nonce);
            p["device"] = json!({"id": proof.id, "publicKey": proof.public_key, "signature": proof.signature, "signedAt": proof.signed_at, "nonce": proof.nonce});
        }
        p
    }
}

/// What the client observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The challenge arrived (and `connect` was sent, unless `manual_connect`).
    Challenge {
        /// The challenge nonce.
        nonce: String,
        /// The challenge's `ts` (Unix ms), what clients sign as `signedAt`.
        ts: i64,
    },
    /// `hello-ok`: the payload.
    Hello(Value),
    /// `connect` failed.
    ConnectFailed(ErrorShape),
    /// A response to a request.
    Response {
        /// Request id.
        id: String,
        /// Result payload, on success.
        result: Result<Value, ErrorShape>,
    },
    /// An event frame.
    Event {
        /// Event name.
        event: String,
        /// Event payload.
        payload: Value,
        /// Sequence number, on broadcasts.
        seq: Option<u64>,
        /// `stateVersion` (`{presence, health}`), on `presence` and `health` events.
        state_version: Option<Value>,
    },
    /// The server refused the upgrade with an HTTP status.
    HttpRefused {
        /// Status code.
        status: u16,
        /// Response body, as far as received.
        body: String,
    },
    /// The WebSocket was closed by the server (code and reason), or without a close frame.
    Closed {
        /// Close code, if a close frame came.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// The peer broke the protocol.
    ProtocolError(String),
}

/// A request frame as the client writes it.
#[derive(Serialize)]
struct RequestFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
}

enum Phase {
    Upgrading { key: String, buf: Vec<u8> },
    Open,
    Closed,
}

/// A sans-IO gateway client.
pub struct Client {
    config: ClientConfig,
    phase: Phase,
    ctx: tungstenite::protocol::WebSocketContext,
    io: MemIo,
    out: Vec<u8>,
    events: VecDeque<Event>,
    next_id: u64,
    connect_id: Option<String>,
    hello: bool,
}

impl Client {
    /// A client that will send its upgrade request; `ws_key` is 16 random bytes.
    pub fn new(config: ClientConfig, ws_key: [u8; 16]) -> Self {
        let key = data_encoding::BASE64.encode(&ws_key);
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
            config.path, config.host
        );
        if let Some(o) = &config.origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        req.push_str("\r\n");
        Self {
            config,
            phase: Phase::Upgrading {
                key,
                buf: Vec::new(),
            },
            ctx: ws_context(WsRole::Client, 64 * 1024 * 1024),
            io: MemIo::default(),
            out: req.into_bytes(),
            events: VecDeque::new(),
            next_id: 1,
            connect_id: None,
            hello: false,
        }
    }

    /// Whether `hello-ok` has arrived.
    pub fn is_ready(&self) -> bool {
        self.hello
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Bytes to write to the socket, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.append(&mut self.io.wr);
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// The next observation, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Send a request; returns its id.
    pub fn request(&mut self, method: &str, params: Option<Value>) -> String {
        let id = self.next_id.to_string();
        self.next_id += 1;
        let frame = RequestFrame {
            kind: "req",
            id: &id,
            method,
            params,
        };
        // Serialising strings and a `Value` cannot fail.
        self.send_text(serde_json::to_string(&frame).unwrap_or_default());
        id
    }

    /// Send `connect` with these params (with `manual_connect`, after [`Event::Challenge`]).
    pub fn send_connect(&mut self, params: Value) {
        self.connect_id = Some(self.request("connect", Some(params)));
    }

    /// Send raw text as one frame (tests use it for malformed input).
    pub fn send_text(&mut self, text: String) {
        let _ = self.ctx.write(&mut self.io, Message::text(text));
    }

    /// Start the closing handshake with a code and reason.
    pub fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        };
        let _ = self.ctx.close(&mut self.io, Some(frame));
    }

    /// The socket reached EOF.
    pub fn handle_eof(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            self.phase = Phase::Closed;
            self.events.push_back(Event::Closed {
                code: None,
                reason: String::new(),
            });
        }
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8]) {
        match &mut self.phase {
            Phase::Upgrading { key, buf } => {
                buf.extend_from_slice(data);
                let parsed = Response::try_parse(buf);
                match parsed {
                    Ok(None) => {}
                    Ok(Some((len, resp))) => {
                        let rest = buf.get(len..).unwrap_or(&[]).to_vec();
                        let accept = derive_accept_key(key.as_bytes());
                        if resp.status().as_u16() != 101 {
                            let body = String::from_utf8_lossy(&rest).into_owned();
                            self.events.push_back(Event::HttpRefused {
                                status: resp.status().as_u16(),
                                body,
                            });
                            self.phase = Phase::Closed;
                            return;
                        }
                        let ok = resp
                            .headers()
                            .get("Sec-WebSocket-Accept")
                            .is_some_and(|v| v.as_bytes() == accept.as_bytes());
                        if !ok {
                            self.events
                                .push_back(Event::ProtocolError("bad Sec-WebSocket-Accept".into()));
                            self.phase = Phase::Closed;
                            return;
                        }
                        self.phase = Phase::Open;
                        self.io.rd.extend(rest);
                        self.read_frames();
                    }
                    Err(e) => {
                        self.events
                            .push_back(Event::ProtocolError(format!("bad upgrade response: {e}")));
                        self.phase = Phase::Closed;
                    }
                }
            }
            Phase::Open => {
                self.io.rd.extend(data);
                self.read_frames();
            }
            Phase::Closed => {}
        }
    }

    fn read_frames(&mut self) {
        loop {
            match self.ctx.read(&mut self.io) {
                Ok(Message::Text(t)) => self.on_text(t.as_str()),
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    self.events.push_back(Event::Closed {
                        code: code.or(Some(1005)),
                        reason,
                    });
                    self.phase = Phase::Closed;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return;
                }
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    self.phase = Phase::Closed;
                    return;
                }
                Err(e) => {
                    self.events.push_back(Event::ProtocolError(e.to_string()));
                    self.phase = Phase::Closed;
                    return;
                }
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        let Ok(mut v) = serde_json::from_str::<Value>(text) else {
            self.events
                .push_back(Event::ProtocolError("non-JSON frame".into()));
            return;
        };
        // The payload and error are moved out of the frame, not copied: the frame is dropped.
        let mut take = |key: &str| v.get_mut(key).map(Value::take);
        let (payload, error) = (take("payload"), take("error"));
        match v.get("type").and_then(Value::as_str) {
            Some("event") => {
                let event = v
                    .get("event")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let payload = payload.unwrap_or(Value::Null);
                if event == "connect.challenge" && self.connect_id.is_none() {
                    let nonce = payload
                        .get("nonce")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let ts = payload.get("ts").and_then(Value::as_i64).unwrap_or(0);
                    if !self.config.manual_connect {
                        let params = self.config.connect_params(&nonce, ts);
                        self.send_connect(params);
                    }
                    self.events.push_back(Event::Challenge { nonce, ts });
                    return;
                }
                let seq = v.get("seq").and_then(Value::as_u64);
                let state_version = v.get("stateVersion").cloned();
                self.events.push_back(Event::Event {
                    event,
                    payload,
                    seq,
                    state_version,
                });
            }
            Some("res") => {
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
                let result = if ok {
                    Ok(payload.unwrap_or(Value::Null))
                } else {
                    Err(error
                        .and_then(|e| serde_json::from_value(e).ok())
                        .unwrap_or_else(|| ErrorShape::invalid("malformed error")))
                };
                if self.connect_id.as_deref() == Some(id.as_str()) && !self.hello {
                    match result {
                        Ok(p) => {
                            self.hello = true;
                            self.events.push_back(Event::Hello(p));
                        }
                        Err(e) => self.events.push_back(Event::ConnectFailed(e)),
                    }
                    return;
                }
                self.events.push_back(Event::Response { id, result });
            }
            _ => self
                .events
                .push_back(Event::ProtocolError("unknown frame type".into())),
        }
    }
}
