//! A fake Slack for black-box tests: the Web API over real HTTP/1.1 on a loopback port (point
//! `SLACK_API_URL` at [`FakeSlack::api_url`]) answering `auth.test`, `apps.connections.open`
//! (a fresh `ws://` URL on a second loopback port each time) and `chat.postMessage`, and a
//! Socket Mode WebSocket that sends `hello`, `events_api` envelopes and `disconnect`, and
//! records every ack (an ack for an envelope it never sent fails [`FakeSlack::check_acks`]);
//! an envelope not acknowledged is sent again on the next socket, as Slack retries.
//! Any method can be told to fail next (`invalid_auth`, a 429 with `Retry-After`).
//! `users.info` (form-encoded, as Slack's client sends it) answers the users added with
//! [`FakeSlack::add_user`] (`user_not_found` for others) and refuses any token but a bot
//! token (`not_allowed_token_type`), as Slack does.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};
use tungstenite::Message;

use crate::fake_api::{Answer, FakeApi, Wakes, WriteTimes, poll_for, send_ws};
use crate::fake_model::RecordedRequest;
use crate::harness::WAIT;

/// The bot user `auth.test` names.
pub const BOT_USER: &str = "UBOT";

#[derive(Default)]
struct State {
    /// Frames waiting for a socket.
    outgoing: VecDeque<String>,
    /// Envelopes sent (id and frame), and acks received, in order.
    sent_envelopes: Vec<(String, String)>,
    /// When each envelope's frame was last written, by id.
    written: WriteTimes,
    acks: Vec<String>,
    /// Sockets opened so far.
    sockets: usize,
    /// Close the current socket after sending what waits.
    drop_socket: bool,
    next_envelope: u64,
    next_ts: u64,
    /// Users `users.info` knows: id and Slack's `user` object.
    users: Vec<(String, Value)>,
    /// The `user` argument of every `users.info` call, in order.
    looked_up: Vec<String>,
}

struct Shared {
    api: Arc<FakeApi>,
    state: Mutex<State>,
    /// The socket threads, woken when a frame is queued.
    wakes: Wakes,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Slack; stops when dropped. Its Web API calls are recorded by the
/// [`FakeApi`] it derefs to, named by method.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Deref for FakeSlack {
    type Target = FakeApi;
    fn deref(&self) -> &FakeApi {
        &self.shared.api
    }
}

impl FakeSlack {
    /// Listen on two loopback ports: the Web API and the Socket Mode endpoint.
    pub fn start() -> FakeSlack {
        let api = FakeApi::new();
        let shared = Arc::new(Shared {
            api: api.clone(),
            state: Mutex::new(State::default()),
            wakes: Wakes::default(),
        });
        let sockets = shared.clone();
        // Listener 0: Socket Mode, whose address `apps.connections.open` gives out.
        api.listen("fake-slack-socket", move |conn| socket(conn, &sockets));
        let conns = shared.clone();
        let addr = api.listen("fake-slack", move |conn| {
            conns
                .api
                .serve_http(conn, "application/json; charset=utf-8", |req| {
                    Some(answer(&conns, req))
                });
        });
        FakeSlack { addr, shared }
    }

    /// The value for `SLACK_API_URL`: `http://127.0.0.1:<port>/api/`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// Queue a DM `text` from `user` in channel `D<user>` (in thread `thread_ts` if any) as an
    /// `events_api` envelope; returns the message's `ts`.
    pub fn push_dm(&self, user: &str, text: &str, thread_ts: Option<&str>) -> String {
        let ts = {
            let mut s = self.shared.state();
            s.next_ts += 1;
            format!("1795500000.{:06}", s.next_ts)
        };
        let mut event = json!({"type": "message", "channel": format!("D{user}"),
            "channel_type": "im", "user": user, "text": text, "ts": ts});
        if let Some(t) = thread_ts {
            event["thread_ts"] = json!(t);
        }
        self.push_event(event);
        ts
    }

    /// Queue `event` in a new `events_api` envelope (a redelivery when sent again); returns
    /// the envelope id.
    pub fn push_event(&self, event: Value) -> String {
        self.push_envelope(|n, id| {
            let payload = json!({"type": "event_callback", "team_id": "T1",
                "event_id": format!("Ev{n}"), "event": event});
            json!({"type": "events_api", "envelope_id": id, "payload": payload,
                "accepts_response_payload": false, "retry_attempt": 0})
        })
    }

    /// Queue slash command `command` (`/approve`) with `text` from `user` in their DM as a
    /// `slash_commands` envelope; returns the envelope id.
    pub fn push_slash_command(&self, user: &str, command: &str, text: &str) -> String {
        self.push_envelope(|n, id| {
            let payload = json!({"token": "t", "team_id": "T1", "channel_id": format!("D{user}"),
                "channel_name": "directmessage", "user_id": user, "command": command,
                "text": text, "response_url": "http://127.0.0.1:1/commands/response",
                "trigger_id": format!("trigger-{n}")});
            json!({"type": "slash_commands", "envelope_id": id, "payload": payload,
                "accepts_response_payload": true})
        })
    }

    /// Queue the envelope `frame` builds from the next envelope number and id; the id.
    fn push_envelope(&self, frame: impl FnOnce(u64, &str) -> Value) -> String {
        let mut s = self.shared.state();
        s.next_envelope += 1;
        let id = format!("env-{}", s.next_envelope);
        let frame = frame(s.next_envelope, &id);
        s.outgoing.push_back(frame.to_string());
        drop(s);
        self.shared.wakes.wake_all();
        id
    }

    /// Make `users.info` know user `id` with Slack's `user` object `user` (its `name` and
    /// `profile.display_name` / `profile.real_name`).
    pub fn add_user(&self, id: &str, user: Value) {
        self.shared.state().users.push((id.to_string(), user));
    }

    /// The `user` argument of every `users.info` call so far, in order.
    pub fn looked_up(&self) -> Vec<String> {
        self.shared.state().looked_up.clone()
    }

    /// Send `disconnect` on the current socket and close it.
    pub fn disconnect(&self) {
        let mut s = self.shared.state();
        s.outgoing
            .push_back(json!({"type": "disconnect", "reason": "refresh_requested"}).to_string());
        s.drop_socket = true;
        drop(s);
        self.shared.wakes.wake_all();
    }

    /// Wait until the envelope `id` is acknowledged.
    pub fn wait_ack(&self, id: &str) {
        poll_for(WAIT, || {
            self.shared
                .state()
                .acks
                .iter()
                .any(|a| a == id)
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "envelope {id} never acknowledged; acks: {:?}",
                self.shared.state().acks
            )
        });
    }

    /// When the frame of envelope `id` was last written to a socket, if it was.
    pub fn written_at(&self, id: &str) -> Option<Instant> {
        self.shared.state().written.last(id)
    }

    /// Sockets opened so far.
    pub fn sockets(&self) -> usize {
        self.shared.state().sockets
    }

    /// Every ack named an envelope that was sent, and every envelope sent was acknowledged
    /// (waiting up to [`WAIT`] for acks still on their way).
    pub fn check_acks(&self) {
        poll_for(WAIT, || {
            let s = self.shared.state();
            s.sent_envelopes
                .iter()
                .all(|(e, _)| s.acks.contains(e))
                .then_some(())
        });
        let s = self.shared.state();
        for a in &s.acks {
            assert!(
                s.sent_envelopes.iter().any(|(e, _)| e == a),
                "ack for unknown envelope {a}"
            );
        }
        for (e, _) in &s.sent_envelopes {
            assert!(s.acks.contains(e), "envelope {e} never acknowledged");
        }
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.shared.api.shut_down();
        self.shared.wakes.wake_all();
    }
}

/// The answer to one Web API call, `POST /api/<method>`.
fn answer(shared: &Shared, req: &RecordedRequest) -> Answer {
    let method = req.path.strip_prefix("/api/").unwrap_or(&req.path);
    if let Some(f) = shared.api.record(method, req) {
        return f;
    }
    let ok = |v: Value| (200, Vec::new(), v);
    match method {
        "auth.test" => ok(
            json!({"ok": true, "url": "https://fake.slack.test/", "team": "Fake",
            "user": "claw", "team_id": "T1", "user_id": BOT_USER, "bot_id": "B1"}),
        ),
        "apps.connections.open" => {
            let n = shared.state().sockets + 1;
            let ws_addr = shared.api.address(0);
            ok(json!({"ok": true, "url": format!("ws://{ws_addr}/link/?ticket={n}")}))
        }
        "chat.postMessage" => {
            let mut s = shared.state();
            s.next_ts += 1;
            let ts = format!("1795600000.{:06}", s.next_ts);
            ok(json!({"ok": true, "channel": req.json["channel"], "ts": ts,
                "message": {"text": req.json["text"], "ts": ts}}))
        }
        "users.info" => ok(users_info(shared, req)),
        _ => ok(json!({"ok": false, "error": "unknown_method"})),
    }
}

/// `users.info`: the form's `user` looked up, with a bot token only.
fn users_info(shared: &Shared, req: &RecordedRequest) -> Value {
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let user = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .unwrap_or_default()
        .to_string();
    let mut s = shared.state();
    s.looked_up.push(user.clone());
    let bot = req
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer xoxb-"));
    if !bot {
        return json!({"ok": false, "error": "not_allowed_token_type"});
    }
    match s.users.iter().find(|(id, _)| *id == user) {
        Some((_, u)) => json!({"ok": true, "user": u}),
        None => json!({"ok": false, "error": "user_not_found"}),
    }
}

/// One Socket Mode connection: `hello`, then queued frames out and acks in. The thread
/// sleeps until the gateway writes or a frame is queued ([`Wakes`]), so an event goes out as
/// soon as it is pushed.
fn socket(conn: std::net::TcpStream, shared: &Shared) {
    let Ok(mut ws) = tungstenite::accept(conn) else {
        return;
    };
    // Registered before the first look at the queue: a push after it wakes the thread.
    let Ok(wake) = shared.wakes.register() else {
        return;
    };
    if ws.get_ref().set_nonblocking(true).is_err() {
        return;
    }
    {
        // As Slack does, what was sent and never acknowledged is sent again on the next socket.
        let mut s = shared.state();
        s.sockets += 1;
        let unacked: Vec<String> = s
            .sent_envelopes
            .iter()
            .filter(|(id, _)| !s.acks.contains(id))
            .map(|(_, f)| f.clone())
            .collect();
        for f in unacked.into_iter().rev() {
            s.outgoing.push_front(f);
        }
    }
    let hello = json!({"type": "hello", "num_connections": 1,
        "connection_info": {"app_id": "A1"}, "debug_info": {"host": "fake"}});
    if send_ws(&mut ws, &wake, Message::text(hello.to_string())).is_err() {
        return;
    }
    loop {
        if shared.api.stopped() {
            return;
        }
        let (frames, close) = {
            let mut s = shared.state();
            let frames: Vec<(Option<String>, String)> = s
                .outgoing
                .drain(..)
                .map(|f| {
                    let id = serde_json::from_str::<Value>(&f)
                        .ok()
                        .and_then(|v| v["envelope_id"].as_str().map(str::to_string));
                    (id, f)
                })
                .collect();
            for (id, f) in &frames {
                if let Some(id) = id {
                    s.sent_envelopes.push((id.clone(), f.clone()));
                }
            }
            (frames, std::mem::take(&mut s.drop_socket))
        };
        for (id, f) in frames {
            // Stamped and recorded just before the write (a stall between the two counts
            // against the gateway), so the record is there before the gateway can answer.
            if let Some(id) = id {
                let at = Instant::now();
                shared.state().written.record(id, at);
            }
            if send_ws(&mut ws, &wake, Message::text(f)).is_err() {
                return;
            }
        }
        if close {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
        // Everything the gateway has written, then sleep until it writes more or a frame
        // is queued.
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    if let Some(id) = serde_json::from_str::<Value>(&t)
                        .ok()
                        .and_then(|v| v["envelope_id"].as_str().map(str::to_string))
                    {
                        shared.state().acks.push(id);
                    }
                }
                Ok(Message::Close(_)) => return,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        if wake.wait(ws.get_ref()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::tests::an_idle_socket_thread_wakes_at_a_push;

    /// The socket thread sleeps while nothing is queued (it used to look every 20 ms), and
    /// an envelope pushed wakes it: it goes out long before the thread's safety nap ends.
    #[test]
    fn a_pushed_envelope_wakes_the_idle_socket_thread() {
        let slack = FakeSlack::start();
        let url = format!("ws://{}/link/", slack.address(0));
        let (mut ws, _) = tungstenite::connect(url).expect("connect");
        let hello = ws.read().expect("hello");
        assert!(hello.to_text().unwrap().contains("hello"));
        an_idle_socket_thread_wakes_at_a_push(&mut ws, "fake-slack-sock", || {
            slack.push_event(json!({"type": "message", "text": "hi"}))
        });
    }
}
