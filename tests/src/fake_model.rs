//! A fake model provider for black-box tests: real HTTP/1.1 (or HTTPS, [`FakeModel::with`]
//! and [`crate::fake_tls`]) on a loopback port, answering OpenAI's `POST
//! /v1/chat/completions` or Anthropic's `POST /v1/messages` ([`FakeApi`]) as each test
//! scripts it.
//!
//! ```no_run
//! use clawgate_tests::fake_model::{FakeModel, Reply};
//! let model = FakeModel::start(|req| match req.last_user_text().as_deref() {
//!     Some("slow") => Reply::text(&["a", "b"]).with_delay(std::time::Duration::from_millis(50)),
//!     _ => Reply::error(429, "Rate limit reached").with_header("Retry-After", "2"),
//! });
//! // config: models.providers.fake{baseUrl: model.base_url(), api: "openai-completions", …}
//! let seen = model.requests(); // path, headers (Authorization), JSON body of each request
//! let times = model.write_times(); // when each part of each reply left, for latency figures
//! ```
//!
//! Every request is recorded (any path). The API's path goes to the script; anything else
//! gets a 404. A [`Reply`] streams its parts with `Transfer-Encoding: chunked`
//! (the default for streams), or ends the body by closing the connection ([`Framing::Close`]),
//! or sends one body with `Content-Length` (errors). One thread accepts, one thread serves each
//! connection; dropping the [`FakeModel`] stops accepting and joins the accept thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::request_body;
use crate::rx_stamp::{Arrival, Arrivals, StampedStream};

/// The path prefix of [`FakeModel::base_url`].
pub const BASE_PATH: &str = "/v1";
/// The model id the canned replies name.
pub const MODEL: &str = "fake-1";
/// The API key [`FakeModel::config_members`] configures.
pub const API_KEY: &str = "sk-test";

/// Which provider API the fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeApi {
    /// `POST /v1/chat/completions`, `api: "openai-completions"`.
    OpenAi,
    /// `POST /v1/messages`, `api: "anthropic-messages"`.
    Anthropic,
}

impl FakeApi {
    /// The path the script answers.
    pub fn path(self) -> &'static str {
        match self {
            FakeApi::OpenAi => "/v1/chat/completions",
            FakeApi::Anthropic => "/v1/messages",
        }
    }

    /// The config's `api`.
    pub fn name(self) -> &'static str {
        match self {
            FakeApi::OpenAi => "openai-completions",
            FakeApi::Anthropic => "anthropic-messages",
        }
    }
}
/// The largest request head or body the fake reads.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// How long a connection may sit idle before the fake drops it.
const IDLE: Duration = Duration::from_secs(10);

/// One request as it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names (as sent) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The body as JSON (a form's fields as an object of strings), `Value::Null` when it is
    /// neither.
    pub json: Value,
    /// When it reached the fake and when the fake had read it.
    pub arrival: Arrival,
}

impl RecordedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The result text of the tool call the body ends with, if it ends with one: OpenAI's
    /// `{"role":"tool"}` message, or Anthropic's user message of `tool_result` blocks (the
    /// last one).
    pub fn last_tool_result(&self) -> Option<String> {
        let last = self.json["messages"].as_array()?.last()?;
        if last["role"] == "tool" {
            return last["content"].as_str().map(str::to_owned);
        }
        let block = last["content"]
            .as_array()?
            .iter()
            .rev()
            .find(|b| b["type"] == "tool_result")?;
        block["content"].as_str().map(str::to_owned)
    }

    /// The text of the last `{"role":"user"}` message of the body: its `content` string, or
    /// its text parts joined (`[{"type":"text","text":…}]`, the other shape OpenAI accepts and
    /// Anthropic's only one).
    pub fn last_user_text(&self) -> Option<String> {
        self.user_texts().next()
    }

    /// The text of every `{"role":"user"}` message of the body, as
    /// [`RecordedRequest::last_user_text`] reads it, newest first.
    pub fn user_texts(&self) -> impl Iterator<Item = String> + '_ {
        let messages = self.json["messages"].as_array().map(Vec::as_slice);
        messages
            .unwrap_or_default()
            .iter()
            .rev()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| {
                let content = &m["content"];
                if let Some(text) = content.as_str() {
                    return Some(text.to_owned());
                }
                let parts = content.as_array()?.iter();
                Some(parts.filter_map(|p| p["text"].as_str()).collect())
            })
    }
}

/// How a reply's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one HTTP chunk per part; the connection stays open.
    Chunked,
    /// No length: the body ends when the server closes the connection.
    Close,
    /// `Content-Length`: the parts sent as one body.
    Length,
    /// Chunked, but the connection closes after the parts without the last chunk: a stream
    /// dropped mid-answer.
    Dropped,
}

/// One piece of a reply body, sent after waiting `delay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// How long to wait before sending it.
    pub delay: Duration,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What the fake answers one chat completions request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Extra headers (`Content-Type` and the framing headers are added).
    pub headers: Vec<(String, String)>,
    /// `Content-Type`.
    pub content_type: String,
    /// The body, in parts.
    pub parts: Vec<Part>,
    /// How the body is delimited.
    pub framing: Framing,
}

/// One `chat.completion.chunk` as an SSE event, OpenAI's documented shape.
pub fn chunk_event(delta: Value, finish_reason: Option<&str>) -> String {
    sse_data(&json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "usage": null,
    }))
}

/// An Anthropic SSE event: `event: <type>`, `data: <json>`, the blank line.
pub fn anthropic_event(payload: &Value) -> String {
    format!(
        "event: {}\ndata: {payload}\n\n",
        payload["type"].as_str().unwrap_or("message")
    )
}

/// `data: <json>` and the blank line that dispatches it.
pub fn sse_data(payload: &Value) -> String {
    format!("data: {payload}\n\n")
}

impl Reply {
    /// A 200 `text/event-stream` whose parts are the given SSE text, chunked, without delays.
    pub fn sse<S: Into<String>>(events: impl IntoIterator<Item = S>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Cache-Control".into(), "no-cache".into())],
            content_type: "text/event-stream".into(),
            parts: events
                .into_iter()
                .map(|e| Part {
                    delay: Duration::ZERO,
                    bytes: e.into().into_bytes(),
                })
                .collect(),
            framing: Framing::Chunked,
        }
    }

    /// A streamed text answer: the role chunk, one chunk per delta, `finish_reason: "stop"`,
    /// a usage chunk (one completion token per delta) and `[DONE]`.
    pub fn text(deltas: &[&str]) -> Reply {
        let mut events = vec![chunk_event(
            json!({"role": "assistant", "content": ""}),
            None,
        )];
        events.extend(
            deltas
                .iter()
                .map(|d| chunk_event(json!({"content": d}), None)),
        );
        events.push(chunk_event(json!({}), Some("stop")));
        events.push(sse_data(&json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": deltas.len(),
                      "total_tokens": 10 + deltas.len()},
        })));
        events.push("data: [DONE]\n\n".into());
        Reply::sse(events)
    }

    /// A streamed answer calling tools: one `tool_calls` delta per call (its id, function
    /// name and JSON arguments, the arguments split in two fragments as OpenAI streams them),
    /// then `finish_reason: "tool_calls"` and `[DONE]`.
    pub fn tool_calls(calls: &[(&str, &str, Value)]) -> Reply {
        let mut events = vec![chunk_event(
            json!({"role": "assistant", "content": null}),
            None,
        )];
        for (i, (id, name, args)) in calls.iter().enumerate() {
            let text = args.to_string();
            let (a, b) = text.split_at(text.len() / 2);
            events.push(chunk_event(
                json!({"tool_calls": [{"index": i, "id": id, "type": "function",
                    "function": {"name": name, "arguments": a}}]}),
                None,
            ));
            events.push(chunk_event(
                json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
                None,
            ));
        }
        events.push(chunk_event(json!({}), Some("tool_calls")));
        events.push("data: [DONE]\n\n".into());
        Reply::sse(events)
    }

    /// A streamed Anthropic answer calling tools: a `tool_use` block per call with its
    /// input in two `input_json_delta` pieces, then `stop_reason: "tool_use"`.
    pub fn anthropic_tool_use(calls: &[(&str, &str, Value)]) -> Reply {
        let mut events = vec![anthropic_event(
            &json!({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
            "model": MODEL, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        )];
        for (i, (id, name, args)) in calls.iter().enumerate() {
            let text = args.to_string();
            let (a, b) = text.split_at(text.len() / 2);
            events.push(anthropic_event(
                &json!({"type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
            ));
            for piece in [a, b] {
                events.push(anthropic_event(
                    &json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            events.push(anthropic_event(
                &json!({"type": "content_block_stop", "index": i}),
            ));
        }
        events.push(anthropic_event(&json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 5}})));
        events.push(anthropic_event(&json!({"type": "message_stop"})));
        Reply::sse(events)
    }

    /// A streamed Anthropic text answer: `message_start`, a text block with one
    /// `text_delta` per delta, a `ping`, `message_delta` (`end_turn`, one output token per
    /// delta) and `message_stop`.
    pub fn anthropic_text(deltas: &[&str]) -> Reply {
        let mut events = vec![
            anthropic_event(&json!({"type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                "model": MODEL, "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}}})),
            anthropic_event(&json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}})),
            anthropic_event(&json!({"type": "ping"})),
        ];
        events.extend(deltas.iter().map(|d| {
            anthropic_event(&json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": d}}))
        }));
        events.push(anthropic_event(
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(anthropic_event(&json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": deltas.len()}})));
        events.push(anthropic_event(&json!({"type": "message_stop"})));
        Reply::sse(events)
    }

    /// An Anthropic error answer, `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_error(status: u16, error_type: &str, message: &str) -> Reply {
        let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
        Reply::json(status, &body)
    }

    /// The same reply without its last `n` parts and its final chunk, the connection
    /// closed: a stream the server dropped mid-answer.
    pub fn dropped(mut self, n: usize) -> Reply {
        self.parts.truncate(self.parts.len().saturating_sub(n));
        self.framing = Framing::Dropped;
        self
    }

    /// An error answer with OpenAI's body `{"error":{"message","type","code"}}`, as one
    /// `Content-Length` body.
    pub fn error(status: u16, message: &str) -> Reply {
        let body = json!({"error": {"message": message, "type": "fake_error", "code": null}});
        Reply::json(status, &body)
    }

    /// A JSON answer with `status`, as one `Content-Length` body.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json".into(),
            parts: vec![Part {
                delay: Duration::ZERO,
                bytes: body.to_string().into_bytes(),
            }],
            framing: Framing::Length,
        }
    }

    /// The same reply with one more header, e.g. `Retry-After`.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same reply waiting `delay` before each part.
    pub fn with_delay(mut self, delay: Duration) -> Reply {
        for p in &mut self.parts {
            p.delay = delay;
        }
        self
    }

    /// The same reply delimited by `framing`.
    pub fn with_framing(mut self, framing: Framing) -> Reply {
        self.framing = framing;
        self
    }
}

type Script = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// One request and when the parts of its reply were written.
struct Served {
    /// Shared with the script answering it, not copied (a long conversation's request is
    /// many KiB).
    request: Arc<RecordedRequest>,
    /// For each part, then for the body's end, the instant just before the write that
    /// carried it.
    written: Vec<Instant>,
}

/// Everything served, in arrival order.
type Log = Mutex<Vec<Served>>;

/// A running fake provider; stops accepting when dropped.
pub struct FakeModel {
    addr: SocketAddr,
    api: FakeApi,
    tls: bool,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
}

impl FakeModel {
    /// Listen on `127.0.0.1:0` and answer OpenAI chat completions with `script`.
    pub fn start(script: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> FakeModel {
        FakeModel::with(FakeApi::OpenAi, None, script)
    }

    /// Listen on `127.0.0.1:0` and answer `api`'s path with `script`, over TLS with `tls`
    /// (see [`crate::fake_tls`]).
    pub fn with(
        api: FakeApi,
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) -> FakeModel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake model");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let secure = tls.is_some();
        let connections = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let (log, stop, count) = (log.clone(), stop.clone(), connections.clone());
            thread::Builder::new()
                .name("fake-model-accept".into())
                .spawn(move || {
                    accept_loop(&listener, &stop, api, tls, &log, &script, &count);
                })
                .expect("spawn the fake model")
        };
        FakeModel {
            addr,
            api,
            tls: secure,
            log,
            stop,
            acceptor: Some(acceptor),
            connections,
        }
    }

    /// A fake that answers `Echo from fake LLM: <last user message>` in two deltas, as the
    /// fake upstream was verified with (upstream-agent.md §1.2).
    pub fn echo() -> FakeModel {
        FakeModel::start(|req| {
            let said = req.last_user_text().unwrap_or_default();
            Reply::text(&["Echo from fake LLM: ", &said])
        })
    }

    /// The `openclaw.json` keys that make this fake the agent's model (provider `fake`, model
    /// [`MODEL`], api key [`API_KEY`]), as JSON5 members to put inside the top-level object.
    pub fn config_members(&self) -> String {
        self.provider_config("fake", &format!(r#"apiKey: "{API_KEY}""#))
    }

    /// The same keys with provider id `id` and `extra` members in its entry (e.g.
    /// `timeoutSeconds: 1`, or none to take the key from the provider's usual variable).
    pub fn provider_config(&self, id: &str, extra: &str) -> String {
        format!(
            r#"models: {{ providers: {{ {id}: {{ baseUrl: "{}", api: "{}", {extra}, models: [{{ id: "{MODEL}" }}] }} }} }},
               agents: {{ defaults: {{ model: {{ primary: "{id}/{MODEL}" }} }} }},"#,
            self.base_url(),
            self.api.name(),
        )
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The provider's `baseUrl`: `http(s)://127.0.0.1:<port>/v1` for OpenAI, without the
    /// `/v1` for Anthropic (whose client adds it, as to `https://api.anthropic.com`).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let path = match self.api {
            FakeApi::OpenAi => BASE_PATH,
            FakeApi::Anthropic => "",
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// How many connections the fake has accepted (a client keeping connections alive sends
    /// many requests on each).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().iter().map(|s| (*s.request).clone()).collect()
    }

    /// For every request so far (as [`FakeModel::requests`] orders them), when each part of
    /// its reply was written, then when the body ended: the instant just before the write
    /// that carried it (a stall between the stamp and the write counts against the
    /// client), the model's side of a latency measurement.
    pub fn write_times(&self) -> Vec<Vec<Instant>> {
        self.lock().iter().map(|s| s.written.clone()).collect()
    }

    /// For every request so far (as [`FakeModel::requests`] orders them), when it reached
    /// the fake (the kernel's stamp of its last segment) and when the fake had read it
    /// whole: with [`FakeModel::write_times`], the fake's own time per request.
    pub fn arrival_times(&self) -> Vec<Arrival> {
        self.lock().iter().map(|s| s.request.arrival).collect()
    }

    /// The arrival and the write times ([`FakeModel::arrival_times`],
    /// [`FakeModel::write_times`]) of the newest request `pick` accepts, looked up without
    /// copying every request recorded (a bench's long conversation makes thousands of KiB).
    pub fn times_of(
        &self,
        pick: impl Fn(&RecordedRequest) -> bool,
    ) -> Option<(Arrival, Vec<Instant>)> {
        let log = self.lock();
        let s = log.iter().rev().find(|s| pick(&s.request))?;
        Some((s.request.arrival, s.written.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Served>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the loop sees `stop` and returns, closing the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    api: FakeApi,
    tls: Option<Arc<rustls::ServerConfig>>,
    log: &Arc<Log>,
    script: &Arc<Script>,
    connections: &AtomicUsize,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        connections.fetch_add(1, Ordering::SeqCst);
        let (log, script, tls) = (log.clone(), script.clone(), tls.clone());
        let _ = thread::Builder::new()
            .name("fake-model-conn".into())
            .spawn(move || {
                if conn.set_read_timeout(Some(IDLE)).is_err() || conn.set_nodelay(true).is_err() {
                    return;
                }
                let Ok(conn) = StampedStream::new(conn) else {
                    return;
                };
                let _ = match tls {
                    None => serve(conn, api, &log, &*script),
                    Some(config) => match rustls::ServerConnection::new(config) {
                        Ok(session) => {
                            serve(rustls::StreamOwned::new(session, conn), api, &log, &*script)
                        }
                        Err(_) => Ok(()),
                    },
                };
            });
    }
}

/// Serve requests on one connection until the client closes it or a reply ends it.
fn serve(
    conn: impl Read + Write + Arrivals,
    api: FakeApi,
    log: &Log,
    script: &Script,
) -> io::Result<()> {
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader)? {
        let req = Arc::new(req);
        let index = {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.push(Served {
                request: req.clone(),
                written: Vec::new(),
            });
            log.len() - 1
        };
        let mark = |at| {
            if let Some(s) = log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(index)
            {
                s.written.push(at);
            }
        };
        let reply = if req.method == "POST" && req.path == api.path() {
            script(&req)
        } else {
            Reply::error(404, &format!("no route for {} {}", req.method, req.path))
        };
        let client_closes = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        write_reply(reader.get_mut(), &reply, client_closes, mark)?;
        if client_closes || matches!(reply.framing, Framing::Close | Framing::Dropped) {
            return Ok(());
        }
    }
    Ok(())
}

/// One request: the request line, the headers, a `Content-Length` body, and when it
/// arrived (the kernel's stamp of the last read, when the stream keeps one) and was read
/// (before the body is parsed as JSON, which is the fake's own work: a model request's body
/// of a few KiB takes tens of µs to parse into a `Value`). `None` at a clean EOF.
pub(crate) fn read_request<R: Read + Arrivals>(
    reader: &mut BufReader<R>,
) -> io::Result<Option<RecordedRequest>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    let mut head_bytes = line.len();
    loop {
        line.clear();
        head_bytes += reader.read_line(&mut line)?;
        if head_bytes > MAX_REQUEST_BYTES || line.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad head"));
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let body = request_body::read(reader, &headers, MAX_REQUEST_BYTES)?;
    let arrival = Arrival {
        // The last read took the request's last bytes (the fakes' clients send one request
        // at a time and wait for its answer).
        kernel: reader.get_ref().arrived(),
        read: Instant::now(),
    };
    let json = request_body::json(&headers, &body);
    Ok(Some(RecordedRequest {
        method,
        path,
        headers,
        body,
        json,
        arrival,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Write `reply`: the head, then each part (after its delay) in one write, the chunked
/// body's last chunk with the last part (a body without delays goes out with the head unless
/// it is streamed). `mark` gets, for each part and then for the body's end, the instant
/// taken just before the write that carries it, and is called before that write, so what it
/// records is there before the client can answer (its own time counts as the write's).
pub(crate) fn write_reply(
    w: &mut impl Write,
    reply: &Reply,
    client_closes: bool,
    mut mark: impl FnMut(Instant),
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let chunked = matches!(reply.framing, Framing::Chunked | Framing::Dropped);
    match reply.framing {
        Framing::Chunked | Framing::Dropped => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Close => head.push_str("Connection: close\r\n"),
        Framing::Length => {
            let len: usize = reply.parts.iter().map(|p| p.bytes.len()).sum();
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
    }
    if client_closes && reply.framing != Framing::Close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if chunked {
        // A streaming server sends its head before the first event.
        send(w, &mut out)?;
    }
    let last = reply.parts.len().checked_sub(1);
    for (i, part) in reply.parts.iter().enumerate() {
        if !part.delay.is_zero() {
            send(w, &mut out)?;
            thread::sleep(part.delay);
        }
        if chunked && !part.bytes.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", part.bytes.len()).as_bytes());
            out.extend_from_slice(&part.bytes);
            out.extend_from_slice(b"\r\n");
        } else if !chunked {
            out.extend_from_slice(&part.bytes);
        }
        let at = Instant::now();
        mark(at);
        if Some(i) == last {
            if reply.framing == Framing::Chunked {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            mark(at);
        }
        send(w, &mut out)?;
    }
    if last.is_none() {
        if reply.framing == Framing::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        mark(Instant::now());
        send(w, &mut out)?;
    }
    Ok(())
}

/// Write and flush what `out` holds, if anything, and empty it.
fn send(w: &mut impl Write, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        w.write_all(out)?;
        w.flush()?;
        out.clear();
    }
    Ok(())
}
