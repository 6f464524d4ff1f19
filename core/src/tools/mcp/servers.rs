//! Every configured MCP server, each with its own [`Session`] and transport, none able to
//! take another down. Servers start on first need ([`McpServers::need`]), a server that
//! dies or fails to start is restarted after a backoff that doubles from
//! [`McpLimits::restart_initial`] to [`McpLimits::restart_max`] (reset by a successful
//! call), and its last failure stays visible in [`McpServers::statuses`].
//!
//! The transports are work for the host: stdio is a [`Work::Spawn`] whose stdout lines come
//! back as [`WorkResult::ProcessLine`] and whose stdin takes [`Work::WriteLine`]; Streamable
//! HTTP is one [`Work::Http`] POST per message, answered with JSON or an SSE stream, the
//! `Mcp-Session-Id` the server hands out sent back on every later request.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::Value;

use super::config::{McpConfig, McpLimits, ServerConfig, Transport};
use super::jsonrpc;
use super::session::{CallError, CallResult, Phase, Session, SessionEvent};
use crate::log::Level;
use crate::model::HttpRequest;
use crate::model::sse::{SseDecoder, SseEvent, SseLimits};
use crate::work::{Work, WorkId, WorkResult};

/// What separates a server's name from its tool's in the name the model sees.
pub const NAME_SEPARATOR: &str = "__";

/// A tool of a ready server, as the agent sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct McpTool {
    /// `<server>__<tool>`.
    pub name: String,
    /// The server.
    pub server: String,
    /// The server's description, unchanged.
    pub description: Option<String>,
    /// The server's input schema, unchanged.
    pub input_schema: Value,
}

/// Where a server is, for `tools.catalog` and `health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Not started yet (nothing needed it).
    Idle,
    /// Starting: spawned or connecting, initializing, listing.
    Starting,
    /// Listed and taking calls.
    Ready,
    /// Failed; restarts at the end of its backoff.
    Broken,
}

impl ServerState {
    /// The state's name in status payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Idle => "idle",
            ServerState::Starting => "starting",
            ServerState::Ready => "ready",
            ServerState::Broken => "error",
        }
    }
}

/// One server's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStatus {
    /// Its name.
    pub name: String,
    /// `stdio` or `streamable-http`.
    pub transport: &'static str,
    /// Where it is.
    pub state: ServerState,
    /// Tools it offers (after the filter).
    pub tools: usize,
    /// Its last failure, if it failed since it was last ready.
    pub error: Option<String>,
    /// Times it was restarted.
    pub restarts: u32,
}

/// What the servers want done or report, drained with [`McpServers::poll`].
#[derive(Clone, Debug, PartialEq)]
pub enum McpOutput {
    /// Work for the host, under this token (a [`Work::WriteLine`] names its process by
    /// the token of its [`Work::Spawn`]).
    Work(WorkId, Work),
    /// Stop the work with this token.
    Cancel(WorkId),
    /// A call ended.
    CallDone {
        /// The caller's id.
        call: u64,
        /// Its outcome.
        outcome: Result<CallResult, CallError>,
    },
    /// The catalog changed (a server listed its tools, or failed).
    CatalogChanged,
    /// A log line.
    Log(Level, String),
}

/// A Streamable HTTP exchange: one POST and its answer.
#[derive(Debug)]
struct Exchange {
    /// The call the POST starts, if it is a `tools/call` (its stream is stopped when the
    /// call is given up).
    call: Option<u64>,
    status: u16,
    sse: Option<SseDecoder>,
    body: Vec<u8>,
}

#[derive(Debug)]
enum Link {
    Stdio {
        process: WorkId,
    },
    Http {
        session_id: Option<String>,
        exchanges: HashMap<WorkId, Exchange>,
    },
}

#[derive(Debug)]
enum Run {
    Idle,
    Up { session: Box<Session>, link: Link },
    Down { until: Instant },
}

#[derive(Debug)]
struct Server {
    config: ServerConfig,
    run: Run,
    failures: u32,
    restarts: u32,
    error: Option<String>,
    /// Calls of this server in flight, by caller id.
    calls: Vec<u64>,
}

impl Server {
    fn state(&self) -> ServerState {
        match &self.run {
            Run::Idle => ServerState::Idle,
            Run::Up { session, .. } if session.phase() == Phase::Ready => ServerState::Ready,
            Run::Up { .. } => ServerState::Starting,
            Run::Down { .. } => ServerState::Broken,
        }
    }

    fn owns(&self, id: WorkId) -> bool {
        match &self.run {
            Run::Up {
                link: Link::Stdio { process },
                ..
            } => *process == id,
            Run::Up {
                link: Link::Http { exchanges, .. },
                ..
            } => exchanges.contains_key(&id),
            _ => false,
        }
    }
}

/// Every configured MCP server (see the module docs).
#[derive(Debug)]
pub struct McpServers {
    config: McpConfig,
    servers: Vec<Server>,
    limits: McpLimits,
    client_version: String,
    out: VecDeque<McpOutput>,
    last_token: u64,
}

impl McpServers {
    /// The servers of `config`, none started.
    pub fn new(config: &McpConfig, client_version: &str) -> Self {
        McpServers {
            config: config.clone(),
            servers: config
                .servers
                .iter()
                .map(|c| Server {
                    config: c.clone(),
                    run: Run::Idle,
                    failures: 0,
                    restarts: 0,
                    error: None,
                    calls: Vec::new(),
                })
                .collect(),
            limits: config.limits,
            client_version: client_version.to_string(),
            out: VecDeque::new(),
            last_token: 0,
        }
    }

    /// The configuration the servers run with.
    pub fn config(&self) -> &McpConfig {
        &self.config
    }

    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The tools need to be known: start every server not started yet.
    pub fn need(&mut self, now: Instant) {
        for i in 0..self.servers.len() {
            if matches!(self.servers[i].run, Run::Idle) {
                self.start(now, i);
            }
        }
    }

    fn start(&mut self, now: Instant, i: usize) {
        let limits = self.limits;
        let server = &mut self.servers[i];
        let c = &server.config;
        let session = Session::start(
            now,
            limits,
            c.tool_filter.clone(),
            c.connection_timeout,
            c.request_timeout,
            &self.client_version,
        );
        let link = match &c.transport {
            Transport::Stdio(spec) => {
                let process = next_token(&mut self.last_token);
                self.out
                    .push_back(McpOutput::Work(process, Work::Spawn(spec.clone())));
                Link::Stdio { process }
            }
            Transport::Http { .. } => Link::Http {
                session_id: None,
                exchanges: HashMap::new(),
            },
        };
        self.out.push_back(McpOutput::Log(
            Level::Info,
            format!("mcp: starting server {}", c.name),
        ));
        server.run = Run::Up {
            session: Box::new(session),
            link,
        };
        self.flush(now, i);
    }

    /// Send what server `i`'s session queued and report its events.
    fn flush(&mut self, now: Instant, i: usize) {
        loop {
            let server = &mut self.servers[i];
            let Run::Up { session, link } = &mut server.run else {
                return;
            };
            if let Some(outgoing) = session.poll_transmit() {
                let message = outgoing.bytes;
                let work = match link {
                    Link::Stdio { process } => Work::WriteLine {
                        process: *process,
                        line: message,
                    },
                    Link::Http {
                        session_id,
                        exchanges,
                    } => {
                        let id = next_token(&mut self.last_token);
                        exchanges.insert(
                            id,
                            Exchange {
                                call: outgoing.call,
                                status: 0,
                                sse: None,
                                body: Vec::new(),
                            },
                        );
                        let Transport::Http { url, headers } = &server.config.transport else {
                            return;
                        };
                        let request = post(
                            url,
                            headers,
                            session_id.as_deref(),
                            session.protocol_version(),
                            message,
                        );
                        self.out.push_back(McpOutput::Work(id, Work::Http(request)));
                        continue;
                    }
                };
                let id = next_token(&mut self.last_token);
                self.out.push_back(McpOutput::Work(id, work));
                continue;
            }
            let Some(event) = session.poll_event() else {
                return;
            };
            match event {
                SessionEvent::Ready => {
                    let n = session.tools().len();
                    server.error = None;
                    let name = server.config.name.clone();
                    self.out.push_back(McpOutput::Log(
                        Level::Info,
                        format!("mcp: server {name} ready with {n} tool(s)"),
                    ));
                    self.out.push_back(McpOutput::CatalogChanged);
                }
                SessionEvent::ToolsChanged => self.out.push_back(McpOutput::CatalogChanged),
                SessionEvent::CallDone { call, outcome } => {
                    server.calls.retain(|c| *c != call);
                    if let Link::Http { exchanges, .. } = link {
                        stop_exchanges(exchanges, call, &mut self.out);
                    }
                    if outcome.is_ok() {
                        server.failures = 0;
                    }
                    self.out.push_back(McpOutput::CallDone { call, outcome });
                }
                SessionEvent::Failed(e) => {
                    let reason = e.to_string();
                    self.fail(now, i, reason);
                }
            }
        }
    }

    /// Stop server `i`'s transport and end its calls with `reason`; it is left idle.
    /// Returns whether it was running.
    fn stop(&mut self, i: usize, reason: &str) -> bool {
        let server = &mut self.servers[i];
        let Run::Up { mut session, link } = std::mem::replace(&mut server.run, Run::Idle) else {
            return false;
        };
        session.close(reason);
        while let Some(event) = session.poll_event() {
            if let SessionEvent::CallDone { call, outcome } = event {
                self.out.push_back(McpOutput::CallDone { call, outcome });
            }
        }
        server.calls.clear();
        match link {
            Link::Stdio { process } => self.out.push_back(McpOutput::Cancel(process)),
            Link::Http { exchanges, .. } => {
                for id in exchanges.into_keys() {
                    self.out.push_back(McpOutput::Cancel(id));
                }
            }
        }
        true
    }

    /// Server `i` failed: stop it, back off, and restart it once the backoff is over.
    fn fail(&mut self, now: Instant, i: usize, reason: String) {
        if !self.stop(i, &reason) {
            return;
        }
        let limits = self.limits;
        let server = &mut self.servers[i];
        let factor = 1u32
            .checked_shl(server.failures.min(20))
            .unwrap_or(u32::MAX);
        let delay = limits
            .restart_initial
            .saturating_mul(factor)
            .min(limits.restart_max);
        server.failures = server.failures.saturating_add(1);
        self.out.push_back(McpOutput::Log(
            Level::Warn,
            format!(
                "mcp: server {} failed: {reason}; restarting in {} ms",
                server.config.name,
                delay.as_millis()
            ),
        ));
        server.error = Some(reason);
        server.run = Run::Down { until: now + delay };
        self.out.push_back(McpOutput::CatalogChanged);
    }

    /// The tools of every ready server, `<server>__<tool>`.
    pub fn catalog(&self) -> Vec<McpTool> {
        let mut tools = Vec::new();
        for server in &self.servers {
            if let Run::Up { session, .. } = &server.run
                && session.phase() == Phase::Ready
            {
                tools.extend(session.tools().iter().map(|t| McpTool {
                    name: format!("{}{NAME_SEPARATOR}{}", server.config.name, t.name),
                    server: server.config.name.clone(),
                    description: t.description.clone(),
                    input_schema: t.input_schema.clone(),
                }));
            }
        }
        tools
    }

    /// Every server's status, in name order.
    pub fn statuses(&self) -> Vec<ServerStatus> {
        self.servers
            .iter()
            .map(|s| ServerStatus {
                name: s.config.name.clone(),
                transport: match s.config.transport {
                    Transport::Stdio(_) => "stdio",
                    Transport::Http { .. } => "streamable-http",
                },
                state: s.state(),
                tools: match &s.run {
                    Run::Up { session, .. } => session.tools().len(),
                    _ => 0,
                },
                error: s.error.clone(),
                restarts: s.restarts,
            })
            .collect()
    }

    /// Whether `name` is a tool of some server (ready or not): the router sends it here.
    pub fn handles(&self, name: &str) -> bool {
        name.split_once(NAME_SEPARATOR)
            .is_some_and(|(server, _)| self.servers.iter().any(|s| s.config.name == server))
    }

    /// Call the tool `name` (`<server>__<tool>`) with `arguments`; the outcome comes as
    /// [`McpOutput::CallDone`] with `call`, or is returned at once when the call cannot start.
    pub fn call(
        &mut self,
        now: Instant,
        call: u64,
        name: &str,
        arguments: Value,
    ) -> Result<(), CallError> {
        let not_found = || CallError::NotFound(name.to_string());
        let (server, tool) = name.split_once(NAME_SEPARATOR).ok_or_else(not_found)?;
        let i = self
            .servers
            .iter()
            .position(|s| s.config.name == server)
            .ok_or_else(not_found)?;
        let s = &mut self.servers[i];
        let Run::Up { session, .. } = &mut s.run else {
            return Err(CallError::Unavailable {
                server: server.to_string(),
                reason: s.error.clone().unwrap_or_else(|| "not started".into()),
            });
        };
        if session.phase() != Phase::Ready {
            return Err(CallError::Unavailable {
                server: server.to_string(),
                reason: "still starting".into(),
            });
        }
        if !session.tools().iter().any(|t| t.name == tool) {
            return Err(not_found());
        }
        session.call(now, call, tool, arguments)?;
        s.calls.push(call);
        self.flush(now, i);
        Ok(())
    }

    /// Give up the call `call` (the server is told; no [`McpOutput::CallDone`] follows).
    pub fn cancel(&mut self, now: Instant, call: u64) {
        let Some(i) = self.servers.iter().position(|s| s.calls.contains(&call)) else {
            return;
        };
        let server = &mut self.servers[i];
        server.calls.retain(|c| *c != call);
        if let Run::Up { session, link } = &mut server.run {
            session.cancel(call, "aborted");
            if let Link::Http { exchanges, .. } = link {
                stop_exchanges(exchanges, call, &mut self.out);
            }
        }
        self.flush(now, i);
    }

    /// The earliest instant [`McpServers::handle_timeout`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.servers
            .iter()
            .filter_map(|s| match &s.run {
                Run::Up { session, .. } => session.next_deadline(),
                Run::Down { until } => Some(*until),
                Run::Idle => None,
            })
            .min()
    }

    /// Expire requests and restart servers whose backoff is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.servers.len() {
            match &mut self.servers[i].run {
                Run::Up { session, .. } => {
                    session.handle_timeout(now);
                    self.flush(now, i);
                }
                Run::Down { until } if *until <= now => {
                    self.servers[i].restarts += 1;
                    self.start(now, i);
                }
                _ => {}
            }
        }
    }

    /// Whether the work `id` is one of the servers'.
    pub fn owns(&self, id: WorkId) -> bool {
        self.servers.iter().any(|s| s.owns(id))
    }

    /// The outcome of work [`McpServers::owns`].
    pub fn handle_work_result(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let Some(i) = self.servers.iter().position(|s| s.owns(id)) else {
            return;
        };
        let max = self.limits.max_message_bytes;
        let name = self.servers[i].config.name.clone();
        let Run::Up { session, link } = &mut self.servers[i].run else {
            return;
        };
        let mut messages: Vec<Vec<u8>> = Vec::new();
        let mut failure: Option<String> = None;
        match (link, result) {
            (Link::Stdio { .. }, WorkResult::ProcessLine(line)) => messages.push(line),
            (Link::Stdio { .. }, WorkResult::ProcessExited(how)) => failure = Some(how),
            (
                Link::Http {
                    session_id,
                    exchanges,
                },
                result,
            ) => {
                let Some(ex) = exchanges.get_mut(&id) else {
                    return;
                };
                match result {
                    WorkResult::HttpHead { status, headers } => {
                        ex.status = status;
                        let header = |n: &str| {
                            headers
                                .iter()
                                .find(|(k, _)| k == n)
                                .map(|(_, v)| v.as_str())
                        };
                        if let Some(sid) = header("mcp-session-id") {
                            *session_id = Some(sid.to_string());
                        }
                        if header("content-type")
                            .is_some_and(|t| t.starts_with("text/event-stream"))
                        {
                            ex.sse = Some(SseDecoder::new(SseLimits {
                                max_line_bytes: max,
                                max_event_bytes: max,
                            }));
                        }
                    }
                    WorkResult::HttpBody(chunk) => match &mut ex.sse {
                        Some(sse) => {
                            let mut events: Vec<SseEvent> = Vec::new();
                            match sse.feed(&chunk, &mut events) {
                                Ok(()) => {
                                    messages.extend(events.into_iter().map(|e| e.data.into_bytes()))
                                }
                                Err(e) => failure = Some(e.to_string()),
                            }
                        }
                        None if ex.body.len() + chunk.len() > max => {
                            failure = Some(format!("answer over {max} bytes"))
                        }
                        None => ex.body.extend_from_slice(&chunk),
                    },
                    WorkResult::HttpEnd(end) => {
                        let ex = exchanges.remove(&id);
                        match (end, ex) {
                            (Err(e), _) => failure = Some(e.message),
                            (Ok(()), Some(ex)) if !(200..300).contains(&ex.status) => {
                                failure = Some(format!("HTTP {}", ex.status))
                            }
                            (Ok(()), Some(ex)) if ex.sse.is_none() && !ex.body.is_empty() => {
                                messages.push(ex.body)
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        for bytes in messages {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match jsonrpc::parse(&bytes, max) {
                Ok(message) => session.handle_message(now, message),
                Err(e) => self.out.push_back(McpOutput::Log(
                    Level::Warn,
                    format!("mcp: server {name} sent an unreadable message: {e}"),
                )),
            }
        }
        match failure {
            Some(reason) => {
                self.flush(now, i);
                self.fail(now, i, reason);
            }
            None => self.flush(now, i),
        }
    }

    /// Stop every server (shutdown, or a reload that changed `mcp`).
    pub fn stop_all(&mut self) {
        for i in 0..self.servers.len() {
            self.stop(i, "stopped");
            self.servers[i].run = Run::Idle;
        }
        self.out.push_back(McpOutput::CatalogChanged);
    }

    /// The next output, if any.
    pub fn poll(&mut self) -> Option<McpOutput> {
        self.out.pop_front()
    }
}

/// Stop the POSTs of `call` still streaming (a call given up, or answered early).
fn stop_exchanges(
    exchanges: &mut HashMap<WorkId, Exchange>,
    call: u64,
    out: &mut VecDeque<McpOutput>,
) {
    exchanges.retain(|id, ex| {
        let keep = ex.call != Some(call);
        if !keep {
            out.push_back(McpOutput::Cancel(*id));
        }
        keep
    });
}

/// A fresh token for a piece of work (the router maps it to a work id).
fn next_token(last: &mut u64) -> WorkId {
    *last += 1;
    WorkId(*last)
}

/// The POST carrying `message` to a Streamable HTTP server.
fn post(
    url: &str,
    headers: &[(String, String)],
    session_id: Option<&str>,
    version: Option<&str>,
    message: Vec<u8>,
) -> HttpRequest {
    let mut h: Vec<(Cow<'static, str>, String)> = vec![
        ("content-type".into(), "application/json".into()),
        (
            "accept".into(),
            "application/json, text/event-stream".into(),
        ),
    ];
    if let Some(sid) = session_id {
        h.push(("mcp-session-id".into(), sid.to_string()));
    }
    if let Some(v) = version {
        h.push(("mcp-protocol-version".into(), v.to_string()));
    }
    h.extend(
        headers
            .iter()
            .map(|(k, v)| (Cow::Owned(k.clone()), v.clone())),
    );
    HttpRequest {
        method: "POST",
        url: url.to_string(),
        headers: h,
        body: message,
        idempotent: false,
        dialing: Default::default(),
    }
}
