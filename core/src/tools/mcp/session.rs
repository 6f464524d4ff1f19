//! One MCP session, transport aside: the lifecycle initialize → `notifications/initialized`
//! → `tools/list` (following `nextCursor`) → ready, then `tools/call`s, each with a deadline
//! and a `notifications/cancelled` when it is given up; `notifications/tools/list_changed`
//! lists again. Messages in are [`Message`]s; messages out are bytes drained with
//! [`Session::poll_transmit`]; what happens is drained with [`Session::poll_event`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::config::{McpLimits, ToolFilter};
use super::jsonrpc::{self, METHOD_NOT_FOUND, Message, RequestId, RpcError};

/// The protocol versions the client speaks, newest first: it asks for the first and accepts
/// any of them in the server's answer.
pub const PROTOCOL_VERSIONS: [&str; 2] = ["2025-06-18", "2025-03-26"];

/// A tool as the server lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// Its name on the server.
    pub name: String,
    /// Its description, unchanged.
    pub description: Option<String>,
    /// Its input schema, unchanged (`{"type":"object"}` when the server gave none).
    pub input_schema: Value,
}

/// What a tool call returned, as text for the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// The text content, non-text parts named in brackets (the router bounds its size).
    pub text: String,
    /// The server's `isError`.
    pub is_error: bool,
}

/// Why a tool call has no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No server has a tool by that name.
    #[error("unknown tool {0}")]
    NotFound(String),
    /// The server is not running (it failed to start, or is restarting).
    #[error("MCP server {server} is unavailable: {reason}")]
    Unavailable {
        /// The server.
        server: String,
        /// Its last failure.
        reason: String,
    },
    /// No answer within the server's `requestTimeoutMs`.
    #[error("MCP tool call timed out after {0} ms")]
    Timeout(u128),
    /// The server answered with a JSON-RPC error.
    #[error("MCP error {code}: {message}")]
    Rpc {
        /// The code.
        code: i64,
        /// The message.
        message: String,
    },
    /// The server went away before answering.
    #[error("MCP server stopped before answering: {0}")]
    Gone(String),
    /// The answer is not a tool result.
    #[error("MCP server sent a malformed tool result")]
    Malformed,
    /// The caller gave it up.
    #[error("cancelled")]
    Cancelled,
}

/// Why a session cannot go on (its server must be restarted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Start-up took longer than `connectionTimeoutMs`.
    #[error("no answer to {0} in time")]
    Timeout(&'static str),
    /// The server answered initialize with a version the client does not speak.
    #[error("unsupported protocol version {0:?}")]
    Version(String),
    /// The server refused a start-up request.
    #[error("{method} failed: {message}")]
    Refused {
        /// The request.
        method: &'static str,
        /// The server's error message.
        message: String,
    },
    /// An answer that does not fit the request.
    #[error("malformed {0} result")]
    Malformed(&'static str),
}

/// What happened in a session.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// The first listing is done: the session takes calls.
    Ready,
    /// A later listing (after `list_changed`) replaced the tools.
    ToolsChanged,
    /// A call ended.
    CallDone {
        /// The caller's id of the call.
        call: u64,
        /// Its outcome.
        outcome: Result<CallResult, CallError>,
    },
    /// The session cannot go on.
    Failed(SessionError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Initialize,
    List,
    Call(u64),
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    kind: Kind,
    deadline: Instant,
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The message.
    pub bytes: Vec<u8>,
    /// The call it starts, if it is a `tools/call`.
    pub call: Option<u64>,
}

/// Where the session is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// initialize sent, no answer yet.
    Initializing,
    /// The first tools/list is under way.
    Listing,
    /// Takes calls.
    Ready,
    /// Failed or closed: takes nothing more.
    Closed,
}

/// One MCP session (see the module docs).
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    next_id: i64,
    pending: BTreeMap<i64, Pending>,
    tools: Vec<Tool>,
    listing: Vec<Tool>,
    pages: usize,
    relist: bool,
    version: Option<String>,
    limits: McpLimits,
    filter: ToolFilter,
    connection_timeout: Duration,
    request_timeout: Duration,
    out: VecDeque<Outgoing>,
    events: VecDeque<SessionEvent>,
}

impl Session {
    /// Start a session: queues the initialize request, answerable within
    /// `connection_timeout`; each later call gets `request_timeout`.
    pub fn start(
        now: Instant,
        limits: McpLimits,
        filter: ToolFilter,
        connection_timeout: Duration,
        request_timeout: Duration,
        client_version: &str,
    ) -> Self {
        let mut s = Session {
            phase: Phase::Initializing,
            next_id: 0,
            pending: BTreeMap::new(),
            tools: Vec::new(),
            listing: Vec::new(),
            pages: 0,
            relist: false,
            version: None,
            limits,
            filter,
            connection_timeout,
            request_timeout,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": {},
            "clientInfo": {"name": "clawgate", "version": client_version},
        });
        s.request(now, Kind::Initialize, "initialize", params);
        s
    }

    /// Where the session is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The protocol version agreed on, once initialized.
    pub fn protocol_version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The tools of the last complete listing (filtered).
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    fn request(&mut self, now: Instant, kind: Kind, method: &str, params: Value) {
        self.next_id += 1;
        let timeout = match kind {
            Kind::Call(_) => self.request_timeout,
            _ if self.phase == Phase::Ready => self.request_timeout,
            _ => self.connection_timeout,
        };
        self.pending.insert(
            self.next_id,
            Pending {
                kind,
                deadline: now + timeout,
            },
        );
        let call = match kind {
            Kind::Call(call) => Some(call),
            _ => None,
        };
        let bytes = jsonrpc::encode_request(self.next_id, method, params);
        self.out.push_back(Outgoing { bytes, call });
    }

    /// Call `tool` with `arguments`; the outcome comes as [`SessionEvent::CallDone`] with
    /// `call`. Refused (returned) unless the session is ready.
    pub fn call(
        &mut self,
        now: Instant,
        call: u64,
        tool: &str,
        arguments: Value,
    ) -> Result<(), CallError> {
        if self.phase != Phase::Ready {
            return Err(CallError::Gone("the session is not ready".into()));
        }
        let params = json!({"name": tool, "arguments": arguments});
        self.request(now, Kind::Call(call), "tools/call", params);
        Ok(())
    }

    /// Give up the call `call` (no event follows): the server is told with
    /// `notifications/cancelled`.
    pub fn cancel(&mut self, call: u64, reason: &str) {
        let id = self
            .pending
            .iter()
            .find(|(_, p)| p.kind == Kind::Call(call))
            .map(|(id, _)| *id);
        if let Some(id) = id {
            self.pending.remove(&id);
            self.send_cancelled(id, reason);
        }
    }

    fn send_cancelled(&mut self, id: i64, reason: &str) {
        self.send(jsonrpc::encode_notification(
            "notifications/cancelled",
            json!({"requestId": id, "reason": reason}),
        ));
    }

    /// The earliest deadline of a request in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Expire what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            match p.kind {
                Kind::Call(call) => {
                    self.send_cancelled(id, "timed out");
                    let ms = self.request_timeout.as_millis();
                    self.events.push_back(SessionEvent::CallDone {
                        call,
                        outcome: Err(CallError::Timeout(ms)),
                    });
                }
                Kind::Initialize => self.fail(SessionError::Timeout("initialize")),
                Kind::List => self.fail(SessionError::Timeout("tools/list")),
            }
        }
    }

    fn fail(&mut self, error: SessionError) {
        if self.phase != Phase::Closed {
            self.close(&error.to_string());
            self.events.push_back(SessionEvent::Failed(error));
        }
    }

    /// The transport is gone: every call in flight ends with [`CallError::Gone`].
    pub fn close(&mut self, reason: &str) {
        self.phase = Phase::Closed;
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Kind::Call(call) = p.kind {
                self.events.push_back(SessionEvent::CallDone {
                    call,
                    outcome: Err(CallError::Gone(reason.to_string())),
                });
            }
        }
    }

    /// A message from the server.
    pub fn handle_message(&mut self, now: Instant, message: Message) {
        if self.phase == Phase::Closed {
            return;
        }
        match message {
            Message::Request { id, method, .. } => {
                let outcome = if method == "ping" {
                    Ok(json!({}))
                } else {
                    Err(RpcError {
                        code: METHOD_NOT_FOUND,
                        message: format!("method not found: {method}"),
                    })
                };
                self.send(jsonrpc::encode_response(&id, outcome));
            }
            Message::Notification { method, .. } => {
                if method == "notifications/tools/list_changed" {
                    self.relist(now);
                }
            }
            Message::Response {
                id: RequestId::Num(id),
                outcome,
            } => {
                if let Some(p) = self.pending.remove(&id) {
                    self.answered(now, p.kind, outcome);
                }
            }
            // The client never sends string ids: an answer to nothing we asked.
            Message::Response { .. } => {}
        }
    }

    fn relist(&mut self, now: Instant) {
        let listing = self.pending.values().any(|p| p.kind == Kind::List);
        match self.phase {
            Phase::Ready if !listing => self.list_page(now, None),
            Phase::Ready | Phase::Listing => self.relist = true,
            _ => {}
        }
    }

    fn list_page(&mut self, now: Instant, cursor: Option<String>) {
        if cursor.is_none() {
            self.listing.clear();
            self.pages = 0;
        }
        self.pages += 1;
        let params = cursor.map_or(Value::Null, |c| json!({"cursor": c}));
        self.request(now, Kind::List, "tools/list", params);
    }

    fn answered(&mut self, now: Instant, kind: Kind, outcome: Result<Value, RpcError>) {
        match kind {
            Kind::Initialize => match outcome {
                Ok(result) => self.initialized(now, &result),
                Err(e) => self.fail(SessionError::Refused {
                    method: "initialize",
                    message: e.message,
                }),
            },
            Kind::List => match outcome {
                Ok(result) => self.listed(now, result),
                Err(e) if self.phase == Phase::Listing => self.fail(SessionError::Refused {
                    method: "tools/list",
                    message: e.message,
                }),
                // A failed relisting keeps the tools listed before.
                Err(_) => {}
            },
            Kind::Call(call) => {
                let outcome = match outcome {
                    Ok(result) => tool_result(&result, self.limits.max_message_bytes)
                        .ok_or(CallError::Malformed),
                    Err(e) => Err(CallError::Rpc {
                        code: e.code,
                        message: e.message,
                    }),
                };
                self.events
                    .push_back(SessionEvent::CallDone { call, outcome });
            }
        }
    }

    fn initialized(&mut self, now: Instant, result: &Value) {
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !PROTOCOL_VERSIONS.contains(&version) {
            return self.fail(SessionError::Version(version.to_string()));
        }
        self.version = Some(version.to_string());
        self.send(jsonrpc::encode_notification(
            "notifications/initialized",
            Value::Null,
        ));
        self.phase = Phase::Listing;
        if result.pointer("/capabilities/tools").is_some() {
            self.list_page(now, None);
        } else {
            // A server without tools is ready with none.
            self.finish_listing(now);
        }
    }

    fn listed(&mut self, now: Instant, result: Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            if self.phase == Phase::Listing {
                self.fail(SessionError::Malformed("tools/list"));
            }
            return;
        };
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            if self.listing.len() >= self.limits.max_tools || !self.filter.allows(name) {
                continue;
            }
            self.listing.push(Tool {
                name: name.to_string(),
                description: tool
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                input_schema: tool
                    .get("inputSchema")
                    .filter(|s| s.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            });
        }
        let cursor = result.get("nextCursor").and_then(Value::as_str);
        match cursor {
            Some(c) if self.pages < self.limits.max_list_pages && !c.is_empty() => {
                self.list_page(now, Some(c.to_string()))
            }
            _ => self.finish_listing(now),
        }
    }

    fn finish_listing(&mut self, now: Instant) {
        self.tools = std::mem::take(&mut self.listing);
        let first = self.phase == Phase::Listing;
        self.phase = Phase::Ready;
        self.events.push_back(if first {
            SessionEvent::Ready
        } else {
            SessionEvent::ToolsChanged
        });
        if std::mem::take(&mut self.relist) {
            self.list_page(now, None);
        }
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Outgoing { bytes, call: None });
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    /// The next thing that happened, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
}

/// The text of a `tools/call` result: text parts joined by newlines, other parts named
/// (`[image]`), `structuredContent` when there is no content. The text stops growing past
/// `max_bytes` (the message bound already limits it; the router cuts it to its own bound).
/// `None` when it is not a result object.
fn tool_result(result: &Value, max_bytes: usize) -> Option<CallResult> {
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
    let mut text = String::new();
    match result.get("content") {
        Some(Value::Array(parts)) => {
            for part in parts {
                if !text.is_empty() {
                    text.push('\n');
                }
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some(kind), _) => text.push_str(&format!("[{kind}]")),
                    _ => text.push_str("[content]"),
                }
                if text.len() > max_bytes {
                    break;
                }
            }
        }
        None => match result.get("structuredContent") {
            Some(v) => text = v.to_string(),
            None if result.is_object() => {}
            None => return None,
        },
        Some(_) => return None,
    }
    Some(CallResult { text, is_error })
}
