//! A fake Telegram Bot API for black-box tests: real HTTP/1.1 on a loopback port (point
//! `channels.telegram.apiRoot` at [`FakeTelegram::api_root`], with
//! `network.dangerouslyAllowPrivateNetwork: true`). It answers `getMe`, `deleteWebhook`,
//! `sendChatAction`, `sendMessage` and long-poll `getUpdates` (held until an update is pushed or
//! the poll's timeout ends), records every call, and can be told to fail the next calls of a
//! method (a 429 with `retry_after`, a 502) or to refuse the token (401).
//!
//! ```no_run
//! use clawgate_tests::fake_telegram::FakeTelegram;
//! let tg = FakeTelegram::start("123:abc");
//! tg.push_dm(222, "Mallory", "hello");
//! let sent = tg.wait_calls("sendMessage", 1); // the bodies, as JSON
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_model::{Reply, read_request, write_reply};
use crate::harness::WAIT;

/// The bot's id in `getMe`.
pub const BOT_ID: i64 = 999;
/// The bot's username in `getMe`.
pub const BOT_USERNAME: &str = "clawbot";

#[derive(Default)]
struct State {
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    /// Every call: method and JSON body.
    calls: Vec<(String, Value)>,
    /// When each call of `calls` arrived (its body read), in the same order.
    arrived: Vec<Instant>,
    /// Each `getUpdates` answer that carried updates: when it was answered, and their ids.
    deliveries: Vec<(Instant, Vec<i64>)>,
    /// Scripted answers for the next calls of a method.
    failures: HashMap<String, VecDeque<(u16, Value)>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    token: String,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Bot API; stops when dropped.
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeTelegram {
    /// Listen on `127.0.0.1:0`, accepting the bot token `token` (others get 401).
    pub fn start(token: &str) -> FakeTelegram {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Bot API");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_update: 1000,
                next_message: 500,
                ..State::default()
            }),
            changed: Condvar::new(),
            token: token.to_string(),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("fake-telegram-accept".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if shared.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(conn) = conn else { continue };
                        let shared = shared.clone();
                        let _ = thread::Builder::new()
                            .name("fake-telegram-conn".into())
                            .spawn(move || serve(conn, &shared));
                    }
                })
                .expect("spawn the fake Bot API")
        };
        FakeTelegram {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The `apiRoot` to configure: `http://127.0.0.1:<port>`.
    pub fn api_root(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `channels.telegram` members that point an account at this fake with `token`.
    pub fn config_members(&self, token: &str) -> String {
        format!(
            r#"botToken: "{token}", apiRoot: "{}", network: {{ dangerouslyAllowPrivateNetwork: true }},"#,
            self.api_root()
        )
    }

    /// Queue a DM `text` from user `from` (whose chat id is the same); returns its message id.
    pub fn push_dm(&self, from: i64, name: &str, text: &str) -> i64 {
        let mut s = self.shared.state();
        s.next_message += 1;
        let id = s.next_message;
        drop(s);
        self.push_message(json!({
            "message_id": id,
            "from": {"id": from, "is_bot": false, "first_name": name, "username": name.to_lowercase()},
            "chat": {"id": from, "type": "private", "first_name": name},
            "date": 1_795_500_000,
            "text": text,
        }));
        id
    }

    /// Queue an update carrying `message` (a Bot API `Message`); returns its update id.
    pub fn push_message(&self, message: Value) -> i64 {
        let mut s = self.shared.state();
        s.next_update += 1;
        let id = s.next_update;
        s.updates.push(json!({"update_id": id, "message": message}));
        drop(s);
        self.shared.changed.notify_all();
        id
    }

    /// Answer the next call of `method` with `status` and `body` instead of succeeding.
    pub fn fail_next(&self, method: &str, status: u16, body: Value) {
        self.shared
            .state()
            .failures
            .entry(method.to_string())
            .or_default()
            .push_back((status, body));
    }

    /// The bodies of every call of `method` so far.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.shared
            .state()
            .calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The bodies of every call of `method` so far, each with when it arrived.
    pub fn timed_calls(&self, method: &str) -> Vec<(Instant, Value)> {
        let s = self.shared.state();
        s.calls
            .iter()
            .zip(&s.arrived)
            .filter(|((m, _), _)| m == method)
            .map(|((_, b), at)| (*at, b.clone()))
            .collect()
    }

    /// Every `getUpdates` answer that carried updates: when it was answered (just before its
    /// bytes were written), and the ids of the updates in it.
    pub fn deliveries(&self) -> Vec<(Instant, Vec<i64>)> {
        self.shared.state().deliveries.clone()
    }

    /// Wait (up to [`WAIT`]) until `method` was called at least `n` times; the bodies.
    pub fn wait_calls(&self, method: &str, n: usize) -> Vec<Value> {
        self.wait_calls_for(method, n, WAIT)
    }

    /// [`FakeTelegram::wait_calls`] with its own timeout; panics when it passes.
    pub fn wait_calls_for(&self, method: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls(method);
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{method} called {} times, wanted {n}; calls: {:?}",
                calls.len(),
                self.shared.state().calls
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(clone) = conn.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut writer = conn;
    while let Ok(Some(req)) = read_request(&mut reader) {
        let (status, body) = answer(shared, &req.path, req.json.clone());
        let reply = Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json".into(),
            parts: vec![crate::fake_model::Part {
                delay: Duration::ZERO,
                bytes: body.to_string().into_bytes(),
            }],
            framing: crate::fake_model::Framing::Length,
        };
        let closes = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if write_reply(&mut writer, &reply, closes, || {}).is_err() || closes {
            return;
        }
    }
}

/// The answer to `POST /bot<token>/<method>` with `body`.
fn answer(shared: &Shared, path: &str, body: Value) -> (u16, Value) {
    let Some((token, method)) = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"}),
        );
    };
    let method = method.to_string();
    let mut s = shared.state();
    s.calls.push((method.clone(), body.clone()));
    s.arrived.push(Instant::now());
    drop(s);
    if token != shared.token {
        return (
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    if let Some(f) = shared
        .state()
        .failures
        .get_mut(&method)
        .and_then(VecDeque::pop_front)
    {
        return f;
    }
    let ok = |result: Value| (200, json!({"ok": true, "result": result}));
    match method.as_str() {
        "getMe" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Claw", "username": BOT_USERNAME}),
        ),
        "deleteWebhook" | "sendChatAction" => ok(json!(true)),
        "sendMessage" => {
            let mut s = shared.state();
            s.next_message += 1;
            let id = s.next_message;
            ok(
                json!({"message_id": id, "chat": {"id": body["chat_id"]}, "date": 1_795_500_000, "text": body["text"]}),
            )
        }
        "getUpdates" => {
            let updates = long_poll(shared, &body);
            if !updates.is_empty() {
                let ids = updates
                    .iter()
                    .filter_map(|u| u["update_id"].as_i64())
                    .collect();
                shared.state().deliveries.push((Instant::now(), ids));
            }
            ok(Value::Array(updates))
        }
        _ => (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}),
        ),
    }
}

/// The updates at or after `offset`, waiting up to the poll's `timeout` for one to come.
fn long_poll(shared: &Shared, body: &Value) -> Vec<Value> {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
    let deadline = Instant::now() + timeout;
    let mut s = shared.state();
    loop {
        let ready: Vec<Value> = s
            .updates
            .iter()
            .filter(|u| u["update_id"].as_i64().is_some_and(|id| id >= offset))
            .cloned()
            .collect();
        let now = Instant::now();
        if !ready.is_empty() || now >= deadline || shared.stop.load(Ordering::SeqCst) {
            return ready;
        }
        s = shared
            .changed
            .wait_timeout(s, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
