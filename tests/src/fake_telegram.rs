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
//! let sent = tg.wait_calls("sendMessage", 1); // the bodies, as JSON (see `FakeApi`)
//! ```

use std::cell::Cell;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_api::{Answer, FakeApi};
use crate::fake_model::RecordedRequest;

/// The bot's id in `getMe`.
pub const BOT_ID: i64 = 999;
/// The bot's username in `getMe`.
pub const BOT_USERNAME: &str = "clawbot";

#[derive(Default)]
struct State {
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    /// Each `getUpdates` answer that carried updates: when it was written, and their ids.
    deliveries: Vec<(Instant, Vec<i64>)>,
}

struct Shared {
    api: Arc<FakeApi>,
    state: Mutex<State>,
    changed: Condvar,
    token: String,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Bot API; stops when dropped. Its calls are recorded by the [`FakeApi`] it
/// derefs to, named by method.
pub struct FakeTelegram {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl Deref for FakeTelegram {
    type Target = FakeApi;
    fn deref(&self) -> &FakeApi {
        &self.shared.api
    }
}

impl FakeTelegram {
    /// Listen on `127.0.0.1:0`, accepting the bot token `token` (others get 401).
    pub fn start(token: &str) -> FakeTelegram {
        let api = FakeApi::new();
        let shared = Arc::new(Shared {
            api: api.clone(),
            state: Mutex::new(State {
                next_update: 1000,
                next_message: 500,
                ..State::default()
            }),
            changed: Condvar::new(),
            token: token.to_string(),
        });
        let conns = shared.clone();
        let addr = api.listen("fake-telegram", move |conn| {
            // The ids of the updates the answer being written carries.
            let carried = Cell::new(None);
            conns.api.serve_http_timed(
                conn,
                "application/json",
                |req| Some(answer(&conns, req, &carried)),
                |at| {
                    if let Some(ids) = carried.take() {
                        conns.state().deliveries.push((at, ids));
                    }
                },
            );
        });
        FakeTelegram { addr, shared }
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

    /// Every `getUpdates` answer that carried updates: when it was written (the instant just
    /// before the one write that carried it), and the ids of the updates in it.
    pub fn deliveries(&self) -> Vec<(Instant, Vec<i64>)> {
        self.shared.state().deliveries.clone()
    }

    /// When the first `getUpdates` answer carrying updates written at or after `since` was
    /// written (looked up without copying every delivery).
    pub fn delivered_since(&self, since: Instant) -> Option<Instant> {
        let s = self.shared.state();
        s.deliveries
            .iter()
            .map(|(at, _)| *at)
            .find(|at| *at >= since)
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.shared.api.shut_down();
        self.shared.changed.notify_all();
    }
}

/// The answer to `POST /bot<token>/<method>`; the ids of the updates a `getUpdates` answer
/// carries go in `carried`.
fn answer(shared: &Shared, req: &RecordedRequest, carried: &Cell<Option<Vec<i64>>>) -> Answer {
    let plain = |status: u16, body: Value| (status, Vec::new(), body);
    let Some((token, method)) = req
        .path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return plain(
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"}),
        );
    };
    let scripted = shared.api.record(method, req);
    if token != shared.token {
        return plain(
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    if let Some(f) = scripted {
        return f;
    }
    let ok = |result: Value| plain(200, json!({"ok": true, "result": result}));
    match method {
        "getMe" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Claw", "username": BOT_USERNAME}),
        ),
        "deleteWebhook" | "sendChatAction" => ok(json!(true)),
        "sendMessage" => {
            let mut s = shared.state();
            s.next_message += 1;
            let id = s.next_message;
            ok(
                json!({"message_id": id, "chat": {"id": req.json["chat_id"]}, "date": 1_795_500_000, "text": req.json["text"]}),
            )
        }
        "getUpdates" => {
            let updates = long_poll(shared, &req.json);
            if !updates.is_empty() {
                let ids = updates
                    .iter()
                    .filter_map(|u| u["update_id"].as_i64())
                    .collect();
                carried.set(Some(ids));
            }
            ok(Value::Array(updates))
        }
        _ => plain(
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
        if !ready.is_empty() || now >= deadline || shared.api.stopped() {
            return ready;
        }
        s = shared
            .changed
            .wait_timeout(s, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
