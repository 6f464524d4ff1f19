//! A fake Discord for black-box tests: REST and the Gateway WebSocket on one loopback port
//! (point `DISCORD_API_URL` at [`FakeDiscord::api_url`]). REST answers `GET /gateway/bot`
//! (the Gateway on the same origin), `GET /users/@me`, `GET /channels/{id}` (the DM
//! channels messages were pushed in), `POST /channels/{id}/messages` and
//! `POST /channels/{id}/typing`, refuses other tokens with 401, and can be told to answer
//! the next calls of a route with a scripted failure (a 429 with its headers). The Gateway
//! sends Hello, answers heartbeats with ACKs, Identify with READY (a bad token with a 4004
//! close), Resume with the dispatches missed since the given sequence then RESUMED (an
//! unknown session with op 9), and lets the test dispatch `MESSAGE_CREATE`s, send op 7 or
//! op 9, and drop the socket. Every REST call, Identify, Resume and heartbeat is recorded.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocket};
use async_tungstenite::tungstenite::{Message, handshake};
use serde_json::{Value, json};

use crate::fake_api::{Answer, FakeApi, Wakes, WriteTimes, poll_for, send_ws};
use crate::fake_model::RecordedRequest;
use crate::harness::WAIT;

/// The bot's user id in READY.
pub const BOT_ID: &str = "900000000000000001";
/// The bot's username in READY.
pub const BOT_USERNAME: &str = "clawbot";

#[derive(Default)]
struct State {
    /// Every Identify's token.
    identifies: Vec<String>,
    /// Every Resume: session id and sequence.
    resumes: Vec<(String, Option<u64>)>,
    /// Every heartbeat's sequence.
    heartbeats: Vec<Value>,
    /// When each `MESSAGE_CREATE` was last written to a socket, by message id.
    written: WriteTimes,
    session: Option<String>,
    sessions: u64,
    seq: u64,
    /// The session's dispatches, by sequence, for Resume to replay.
    dispatched: Vec<(u64, Value)>,
    /// The live connection and what waits to be sent on it.
    live: Option<u64>,
    connections: u64,
    outgoing: VecDeque<String>,
    drop_live: bool,
    next_message: u64,
    /// Close every Identify with 4004 (a token the Gateway refuses).
    refuse_identify: bool,
    /// The DM channels of [`FakeDiscord::push_dm`], with their user.
    dm_channels: HashMap<String, String>,
}

struct Shared {
    api: Arc<FakeApi>,
    state: Mutex<State>,
    /// The Gateway sockets' threads, woken when a payload is queued.
    wakes: Wakes,
    token: String,
    interval_ms: u64,
}

impl Shared {
    /// The one listener's address: REST and the Gateway.
    fn addr(&self) -> SocketAddr {
        self.api.address(0)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Discord; stops when dropped.
pub struct FakeDiscord {
    shared: Arc<Shared>,
}

impl Deref for FakeDiscord {
    type Target = FakeApi;
    fn deref(&self) -> &FakeApi {
        &self.shared.api
    }
}

impl FakeDiscord {
    /// Listen on `127.0.0.1:0`, accepting the bot token `token`.
    pub fn start(token: &str) -> FakeDiscord {
        Self::start_with(token, 41_250)
    }

    /// [`FakeDiscord::start`] with Hello's heartbeat interval.
    pub fn start_with(token: &str, interval_ms: u64) -> FakeDiscord {
        let api = FakeApi::new();
        let shared = Arc::new(Shared {
            api: api.clone(),
            state: Mutex::new(State {
                next_message: 1_300_000_000_000_000_000,
                ..State::default()
            }),
            token: token.to_string(),
            wakes: Wakes::default(),
            interval_ms,
        });
        let conns = shared.clone();
        api.listen("fake-discord", move |conn| serve(conn, &conns));
        FakeDiscord { shared }
    }

    /// The REST base to put in `DISCORD_API_URL`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.shared.addr())
    }

    /// Dispatch a `MESSAGE_CREATE` of a DM from user `from` in DM channel `channel`; its
    /// message id. Sent at once when a session is live, else replayed by the next Resume.
    pub fn push_dm(&self, from: &str, channel: &str, text: &str) -> String {
        let id = {
            let mut s = self.shared.state();
            s.next_message += 1;
            s.dm_channels.insert(channel.to_string(), from.to_string());
            s.next_message.to_string()
        };
        self.dispatch_message(json!({
            "id": id, "channel_id": channel, "type": 0, "content": text,
            "author": {"id": from, "username": format!("user{from}"), "global_name": "Mallory"},
            "mentions": [], "timestamp": "2026-12-06T10:00:00.000000+00:00",
        }));
        id
    }

    /// Dispatch a `MESSAGE_CREATE` carrying `message` (again, if it was already).
    pub fn dispatch_message(&self, message: Value) {
        self.dispatch("MESSAGE_CREATE", message);
    }

    fn dispatch(&self, t: &str, d: Value) {
        let mut s = self.shared.state();
        s.seq += 1;
        let seq = s.seq;
        let payload = json!({"op": 0, "t": t, "s": seq, "d": d});
        s.dispatched.push((seq, payload.clone()));
        if s.live.is_some() {
            s.outgoing.push_back(payload.to_string());
        }
        drop(s);
        self.shared.wakes.wake_all();
    }

    /// Send op 7 (Reconnect).
    pub fn reconnect(&self) {
        self.send_raw(json!({"op": 7, "d": null}));
    }

    /// Send op 9 (Invalid Session, not resumable): the session is forgotten.
    pub fn invalidate_session(&self) {
        let mut s = self.shared.state();
        s.session = None;
        s.outgoing
            .push_back(json!({"op": 9, "d": false}).to_string());
        drop(s);
        self.shared.wakes.wake_all();
    }

    fn send_raw(&self, payload: Value) {
        self.shared.state().outgoing.push_back(payload.to_string());
        self.shared.wakes.wake_all();
    }

    /// Refuse every Identify with a 4004 close (REST still accepts the token).
    pub fn refuse_identify(&self) {
        self.shared.state().refuse_identify = true;
    }

    /// Drop the live socket without a close frame (a network failure).
    pub fn drop_socket(&self) {
        self.shared.state().drop_live = true;
        self.shared.wakes.wake_all();
    }

    /// The message bodies posted so far: channel id and content.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.all_calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.name.ends_with("/messages"))
            .map(|c| {
                let channel = c.name.split('/').nth(2).unwrap_or_default().to_string();
                (
                    channel,
                    c.body["content"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Wait (up to [`WAIT`]) for at least `n` posted messages.
    pub fn wait_messages(&self, n: usize) -> Vec<(String, String)> {
        self.wait(|f| {
            let m = f.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| panic!("wanted {n} messages, calls: {:?}", self.all_calls()))
    }

    /// Every Identify's token so far.
    pub fn identifies(&self) -> Vec<String> {
        self.shared.state().identifies.clone()
    }

    /// Every Resume so far: session id and sequence.
    pub fn resumes(&self) -> Vec<(String, Option<u64>)> {
        self.shared.state().resumes.clone()
    }

    /// Every heartbeat's `d` so far.
    pub fn heartbeats(&self) -> Vec<Value> {
        self.shared.state().heartbeats.clone()
    }

    /// When the `MESSAGE_CREATE` of message `id` was last written to a socket, if it was.
    pub fn written_at(&self, id: &str) -> Option<Instant> {
        self.shared.state().written.last(id)
    }

    /// How many sockets were opened.
    pub fn connections(&self) -> u64 {
        self.shared.state().connections
    }

    /// Whether a session is live (READY or RESUMED sent on an open socket).
    pub fn is_live(&self) -> bool {
        let s = self.shared.state();
        s.live.is_some() && s.session.is_some()
    }

    /// Poll `check` until it answers or [`WAIT`] passes.
    pub fn wait<T>(&self, check: impl Fn(&FakeDiscord) -> Option<T>) -> Option<T> {
        self.wait_for(WAIT, check)
    }

    /// [`FakeDiscord::wait`] with its own timeout.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&FakeDiscord) -> Option<T>,
    ) -> Option<T> {
        poll_for(timeout, || check(self))
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.shared.api.shut_down();
        self.shared.wakes.wake_all();
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let upgrade = shared.api.serve_http(conn, "application/json", |req| {
        let upgrade = req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        (!upgrade).then(|| rest(shared, req))
    });
    if let Some((stream, req)) = upgrade {
        gateway(stream, &req, shared);
    }
}

fn rest(shared: &Shared, req: &RecordedRequest) -> Answer {
    let path = req.path.strip_prefix("/api/v10").unwrap_or(&req.path);
    let scripted = shared.api.record(path, req);
    let auth = req.header("authorization").unwrap_or_default();
    if auth != format!("Bot {}", shared.token) {
        return (
            401,
            Vec::new(),
            json!({"message": "401: Unauthorized", "code": 0}),
        );
    }
    if let Some(f) = scripted {
        return f;
    }
    match (
        req.method.as_str(),
        path.split('/').collect::<Vec<_>>().as_slice(),
    ) {
        ("GET", ["", "gateway", "bot"]) => (
            200,
            Vec::new(),
            json!({"url": format!("ws://{}", shared.addr()), "shards": 1,
                   "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}),
        ),
        ("POST", ["", "channels", channel, "messages"]) => {
            let id = {
                let mut s = shared.state();
                s.next_message += 1;
                s.next_message.to_string()
            };
            let headers = vec![
                ("X-RateLimit-Limit".into(), "5".into()),
                ("X-RateLimit-Remaining".into(), "4".into()),
                ("X-RateLimit-Reset-After".into(), "1.000".into()),
                ("X-RateLimit-Bucket".into(), "fake-bucket".into()),
            ];
            (
                200,
                headers,
                json!({"id": id, "channel_id": channel, "content": req.json["content"],
                       "author": {"id": BOT_ID, "username": BOT_USERNAME, "bot": true}}),
            )
        }
        ("POST", ["", "channels", _, "typing"]) => (204, Vec::new(), Value::Null),
        ("GET", ["", "users", "@me"]) => (
            200,
            Vec::new(),
            json!({"id": BOT_ID, "username": BOT_USERNAME, "bot": true}),
        ),
        // The DM channels messages were pushed in (type 1, the user as the recipient).
        ("GET", ["", "channels", channel]) => match shared.state().dm_channels.get(*channel) {
            Some(user) => (
                200,
                Vec::new(),
                json!({"id": channel, "type": 1, "recipients": [{"id": user}]}),
            ),
            None => (
                404,
                Vec::new(),
                json!({"message": "Unknown Channel", "code": 10003}),
            ),
        },
        _ => (
            404,
            Vec::new(),
            json!({"message": "404: Not Found", "code": 0}),
        ),
    }
}

/// Complete the upgrade and run the Gateway on this connection.
fn gateway(mut stream: TcpStream, req: &RecordedRequest, shared: &Shared) {
    let Some(key) = req.header("sec-websocket-key") else {
        return;
    };
    let accept = handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    // Registered before the first look at the queue: a push after it wakes the thread.
    let Ok(wake) = shared.wakes.register() else {
        return;
    };
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let raw = stream.try_clone().ok();
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
    let conn = {
        let mut s = shared.state();
        s.connections += 1;
        s.live = Some(s.connections);
        s.outgoing.clear();
        s.drop_live = false;
        s.connections
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": shared.interval_ms}});
    if send_ws(&mut ws, &wake, Message::text(hello.to_string())).is_err() {
        return;
    }
    loop {
        if shared.api.stopped() {
            return;
        }
        let (out, drop_now, still_live) = {
            let mut s = shared.state();
            let live = s.live == Some(conn);
            let out: Vec<String> = if live {
                s.outgoing.drain(..).collect()
            } else {
                Vec::new()
            };
            let drop_now = live && std::mem::take(&mut s.drop_live);
            (out, drop_now, live)
        };
        if !still_live || drop_now {
            if let Some(r) = &raw {
                let _ = r.shutdown(Shutdown::Both);
            }
            if drop_now {
                shared.state().live = None;
            }
            return;
        }
        for text in out {
            // Stamped and recorded just before the write (a stall between the two counts
            // against the gateway), so the record is there before the gateway can answer.
            if let Ok(v) = serde_json::from_str::<Value>(&text)
                && v["t"] == "MESSAGE_CREATE"
                && let Some(id) = v["d"]["id"].as_str()
            {
                let at = Instant::now();
                shared.state().written.record(id.to_string(), at);
            }
            if send_ws(&mut ws, &wake, Message::text(text.as_str())).is_err() {
                return;
            }
        }
        // Everything the client has written, then sleep until it writes more or something
        // is queued.
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(close) = on_payload(shared, &v) {
                        let _ = ws.close(Some(CloseFrame {
                            code: CloseCode::from(close.0),
                            reason: close.1.into(),
                        }));
                        let _ = ws.flush();
                        let mut s = shared.state();
                        if s.live == Some(conn) {
                            s.live = None;
                        }
                        return;
                    }
                }
                Ok(Message::Close(_)) => {
                    let mut s = shared.state();
                    if s.live == Some(conn) {
                        s.live = None;
                    }
                    return;
                }
                Ok(_) => {}
                Err(async_tungstenite::tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    break;
                }
                Err(_) => {
                    let mut s = shared.state();
                    if s.live == Some(conn) {
                        s.live = None;
                    }
                    return;
                }
            }
        }
        // What the client's payloads queued (a heartbeat's ACK, READY, RESUMED) goes out at
        // once, not after the nap.
        if shared.state().outgoing.is_empty() && wake.wait(ws.get_ref()).is_err() {
            return;
        }
    }
}

/// Answer one client payload (queued on the live socket); a close code and reason when
/// the socket must close.
fn on_payload(shared: &Shared, v: &Value) -> Option<(u16, &'static str)> {
    let mut s = shared.state();
    match v["op"].as_u64() {
        Some(1) => {
            s.heartbeats.push(v["d"].clone());
            s.outgoing.push_back(json!({"op": 11}).to_string());
        }
        Some(2) => {
            let token = v["d"]["token"].as_str().unwrap_or_default().to_string();
            s.identifies.push(token.clone());
            if token != shared.token || s.refuse_identify {
                return Some((4004, "Authentication failed."));
            }
            if v["d"]["intents"].as_u64() != Some(46601) {
                return Some((4013, "Invalid intent(s)."));
            }
            s.sessions += 1;
            let session = format!("session-{}", s.sessions);
            s.session = Some(session.clone());
            s.seq += 1;
            let seq = s.seq;
            s.dispatched.clear();
            let ready = json!({"op": 0, "t": "READY", "s": seq, "d": {
                "v": 10, "session_id": session, "resume_gateway_url": format!("ws://{}", shared.addr()),
                "user": {"id": BOT_ID, "username": BOT_USERNAME, "bot": true},
                "guilds": [], "application": {"id": BOT_ID},
            }});
            s.outgoing.push_back(ready.to_string());
        }
        Some(6) => {
            let session = v["d"]["session_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let seq = v["d"]["seq"].as_u64();
            s.resumes.push((session.clone(), seq));
            if s.session.as_deref() != Some(session.as_str())
                || v["d"]["token"] != shared.token.as_str()
            {
                s.outgoing
                    .push_back(json!({"op": 9, "d": false}).to_string());
                return None;
            }
            let missed: Vec<String> = s
                .dispatched
                .iter()
                .filter(|(n, _)| Some(*n) > seq)
                .map(|(_, p)| p.to_string())
                .collect();
            s.outgoing.extend(missed);
            s.seq += 1;
            let resumed = json!({"op": 0, "t": "RESUMED", "s": s.seq, "d": {}});
            s.outgoing.push_back(resumed.to_string());
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::SOCKET_NAP;
    use crate::fake_api::tests::an_idle_socket_thread_wakes_at_a_push;

    /// The Gateway thread sleeps while nothing is queued (it used to look every 10 ms), and
    /// a dispatch pushed wakes it: it goes out long before the thread's safety nap ends. So
    /// does an answer to the client's payload (a heartbeat's ACK), as the payload is read.
    /// (One test: the wake-ups are counted over every thread of that name.)
    #[test]
    fn a_pushed_dispatch_and_an_ack_go_out_at_once() {
        let dc = FakeDiscord::start("t");
        let url = format!("ws://{}/", dc.shared.addr());
        let (mut ws, _) = tungstenite::connect(url).expect("connect");
        let hello = ws.read().expect("hello");
        assert!(hello.to_text().unwrap().contains("heartbeat_interval"));
        // The thread serving the socket ("fake-discord-conn", cut by the kernel).
        an_idle_socket_thread_wakes_at_a_push(&mut ws, "fake-discord-co", || {
            dc.push_dm("7", "8", "hi")
        });
        let sent = Instant::now();
        ws.send(tungstenite::Message::text(
            json!({"op": 1, "d": 1}).to_string(),
        ))
        .expect("heartbeat");
        let ack = ws.read().expect("the ACK");
        let took = sent.elapsed();
        assert!(ack.to_text().unwrap().contains(r#""op":11"#), "{ack:?}");
        assert!(
            took < SOCKET_NAP / 4,
            "the ACK came {took:?} after the heartbeat"
        );
    }
}
