//! What the fake channel APIs ([`crate::fake_telegram`], [`crate::fake_slack`],
//! [`crate::fake_discord`]) share: their loopback listeners, the HTTP/1.1 request loop, a
//! record of every call (name, method, path, `Authorization`, JSON body, arrival), answers
//! scripted for the next calls of a name (a 429 with its headers, a 401, a 502), and waiting
//! for calls. Each fake derefs to its [`FakeApi`], so `fake.calls("sendMessage")`,
//! `fake.wait_calls(..)` and `fake.fail_next(..)` read the same on every transport.

use std::collections::{HashMap, VecDeque};
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fake_model::{Framing, Part, RecordedRequest, Reply, read_request, write_reply};
use crate::harness::{WAIT, accept_each};
use crate::rx_stamp::{Arrival, StampedStream};

/// An answer: status, extra headers, JSON body (no body is written for a 204).
pub type Answer = (u16, Vec<(String, String)>, Value);

/// One recorded call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// What the fake calls it: Telegram's and Slack's method (`sendMessage`), Discord's
    /// path under the API base (`/channels/500/messages`).
    pub name: String,
    /// The HTTP method, `POST`.
    pub method: String,
    /// The `Authorization` header, empty when there was none.
    pub auth: String,
    /// The JSON body (`Null` when not JSON).
    pub body: Value,
    /// When it reached the fake (the kernel's stamp of its last segment) and was read.
    pub arrival: Arrival,
}

/// The shared recorder and listeners of one fake API; see the module docs.
#[derive(Default)]
pub struct FakeApi {
    calls: Mutex<Vec<Call>>,
    scripted: Mutex<HashMap<String, VecDeque<Answer>>>,
    stop: AtomicBool,
    /// Each listener's address (kept after [`FakeApi::shut_down`]: a connection's thread may
    /// still ask) and its acceptor until it is joined.
    listeners: Mutex<Vec<(SocketAddr, Option<JoinHandle<()>>)>>,
    /// Connections [`FakeApi::serve_http`] has served.
    connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeApi {
    /// A recorder with nothing recorded or scripted.
    pub fn new() -> Arc<FakeApi> {
        Arc::new(FakeApi::default())
    }

    /// Listen on `127.0.0.1:0`, each connection served by `serve` on its own thread named
    /// after `name`, until [`FakeApi::shut_down`]; the address. What the fake writes goes
    /// out at once (`TCP_NODELAY`, as servers set it), not held back for the client's ack.
    pub fn listen(
        self: &Arc<Self>,
        name: &str,
        serve: impl Fn(TcpStream) + Clone + Send + 'static,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake API");
        let addr = listener.local_addr().expect("local address");
        let api = self.clone();
        let serve = move |conn: TcpStream| {
            let _ = conn.set_nodelay(true);
            serve(conn);
        };
        let thread = accept_each(listener, name, move || api.stopped(), serve);
        lock(&self.listeners).push((addr, Some(thread)));
        addr
    }

    /// The address of the `n`-th listener, in the order [`FakeApi::listen`] was called.
    pub fn address(&self, n: usize) -> SocketAddr {
        lock(&self.listeners)[n].0
    }

    /// Whether the fake is shutting down.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Stop accepting and join the acceptors (the owning fake's `Drop` calls this).
    pub fn shut_down(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let acceptors: Vec<_> = lock(&self.listeners)
            .iter_mut()
            .filter_map(|(addr, thread)| Some((*addr, thread.take()?)))
            .collect();
        for (addr, thread) in acceptors {
            let _ = TcpStream::connect(addr);
            let _ = thread.join();
        }
    }

    /// Serve HTTP/1.1 requests on `conn` until it closes: each is answered by `answer` as
    /// JSON of `content_type`. When `answer` gives `None` (a WebSocket upgrade, say) the
    /// connection and that request are handed back.
    pub fn serve_http(
        &self,
        conn: TcpStream,
        content_type: &str,
        answer: impl FnMut(&RecordedRequest) -> Option<Answer>,
    ) -> Option<(TcpStream, RecordedRequest)> {
        self.serve_http_timed(conn, content_type, answer, |_| {})
    }

    /// [`FakeApi::serve_http`], telling `written` when each answer is written (the instant
    /// just before the one write that carries it), before that write.
    pub fn serve_http_timed(
        &self,
        conn: TcpStream,
        content_type: &str,
        mut answer: impl FnMut(&RecordedRequest) -> Option<Answer>,
        mut written: impl FnMut(Instant),
    ) -> Option<(TcpStream, RecordedRequest)> {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
        let mut reader = BufReader::new(StampedStream::new(conn.try_clone().ok()?).ok()?);
        let mut writer = conn;
        while let Ok(Some(req)) = read_request(&mut reader) {
            let Some((status, headers, body)) = answer(&req) else {
                return Some((writer, req));
            };
            let bytes = if status == 204 {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            };
            let reply = Reply {
                status,
                headers,
                content_type: content_type.into(),
                parts: vec![Part {
                    delay: Duration::ZERO,
                    bytes,
                }],
                framing: Framing::Length,
            };
            let closes = req
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            let mut first = true;
            let wrote = write_reply(&mut writer, &reply, closes, |at| {
                if std::mem::take(&mut first) {
                    written(at);
                }
            });
            if wrote.is_err() || closes {
                return None;
            }
        }
        None
    }

    /// How many connections the fake has served HTTP on (a client keeping connections alive
    /// makes many calls on each).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Record `req` as a call named `name`; the answer scripted for it, if any (the first
    /// queue whose key `name` ends with).
    pub fn record(&self, name: &str, req: &RecordedRequest) -> Option<Answer> {
        lock(&self.calls).push(Call {
            name: name.to_string(),
            method: req.method.clone(),
            auth: req.header("authorization").unwrap_or_default().to_string(),
            body: req.json.clone(),
            arrival: req.arrival,
        });
        lock(&self.scripted)
            .iter_mut()
            .find(|(key, q)| name.ends_with(key.as_str()) && !q.is_empty())
            .and_then(|(_, q)| q.pop_front())
    }

    /// Answer the next call whose name ends with `name` with `status`, `headers` and `body`
    /// instead of succeeding.
    pub fn fail_next(&self, name: &str, status: u16, headers: &[(&str, &str)], body: Value) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        lock(&self.scripted)
            .entry(name.to_string())
            .or_default()
            .push_back((status, headers, body));
    }

    /// Every call so far, in order.
    pub fn all_calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// The bodies of every call named `name` so far.
    pub fn calls(&self, name: &str) -> Vec<Value> {
        self.timed_calls(name).into_iter().map(|(_, b)| b).collect()
    }

    /// The bodies of every call named `name` so far, each with when it arrived and was read.
    pub fn timed_calls(&self, name: &str) -> Vec<(Arrival, Value)> {
        lock(&self.calls)
            .iter()
            .filter(|c| c.name == name)
            .map(|c| (c.arrival, c.body.clone()))
            .collect()
    }

    /// The `Authorization` headers of the calls named `name`.
    pub fn auth_headers(&self, name: &str) -> Vec<String> {
        lock(&self.calls)
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.auth.clone())
            .collect()
    }

    /// Wait (up to [`WAIT`]) until `name` was called at least `n` times; the bodies.
    pub fn wait_calls(&self, name: &str, n: usize) -> Vec<Value> {
        self.wait_calls_for(name, n, WAIT)
    }

    /// [`FakeApi::wait_calls`] with its own timeout; panics when it passes.
    pub fn wait_calls_for(&self, name: &str, n: usize, timeout: Duration) -> Vec<Value> {
        poll_for(timeout, || {
            let calls = self.calls(name);
            (calls.len() >= n).then_some(calls)
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} called {} times, wanted {n}; calls: {:?}",
                self.calls(name).len(),
                self.all_calls()
            )
        })
    }
}

/// Poll `check` every 10 ms until it answers or `timeout` passes.
pub fn poll_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// When each event a fake pushed over its socket (a Slack envelope, a Discord dispatch) was
/// written, by the event's id, in order: what the bench times a gateway's reply from.
#[derive(Debug, Default)]
pub struct WriteTimes(Vec<(String, Instant)>);

impl WriteTimes {
    /// Event `id` was written at `at`.
    pub fn record(&mut self, id: String, at: Instant) {
        self.0.push((id, at));
    }

    /// When event `id` was last written, if it was.
    pub fn last(&self, id: &str) -> Option<Instant> {
        self.0
            .iter()
            .rev()
            .find(|(e, _)| e == id)
            .map(|(_, at)| *at)
    }
}
