//! A fake Slack for black-box tests: the Web API over real HTTP/1.1 on a loopback port (point
//! `SLACK_API_URL` at [`FakeSlack::api_url`]) answering `auth.test`, `apps.connections.open`
//! (a fresh `ws://` URL on a second loopback port each time) and `chat.postMessage`, and a
//! Socket Mode WebSocket that sends `hello`, `events_api` envelopes and `disconnect`, and
//! records every ack (an ack for an envelope it never sent fails [`FakeSlack::check_acks`]);
//! an envelope not acknowledged is sent again on the next socket, as Slack retries.
//! Any method can be told to fail next (`invalid_auth`, a 429 with `Retry-After`).

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use crate::fake_model::{Framing, Part, Reply, read_request, write_reply};
use crate::harness::WAIT;

/// The bot user `auth.test` names.
pub const BOT_USER: &str = "UBOT";

/// A scripted answer: status, headers, body.
type Scripted = (u16, Vec<(String, String)>, Value);

#[derive(Default)]
struct State {
    /// Every Web API call: method, `Authorization` header, JSON body.
    calls: Vec<(String, String, Value)>,
    /// Scripted answers for the next calls of a method: status, headers, body.
    failures: HashMap<String, VecDeque<Scripted>>,
    /// Frames waiting for a socket.
    outgoing: VecDeque<String>,
    /// Envelopes sent (id and frame), and acks received, in order.
    sent_envelopes: Vec<(String, String)>,
    acks: Vec<String>,
    /// Sockets opened so far.
    sockets: usize,
    /// Close the current socket after sending what waits.
    drop_socket: bool,
    next_envelope: u64,
    next_ts: u64,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    ws_addr: SocketAddr,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Slack; stops when dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeSlack {
    /// Listen on two loopback ports: the Web API and the Socket Mode endpoint.
    pub fn start() -> FakeSlack {
        let api = TcpListener::bind("127.0.0.1:0").expect("bind the fake Web API");
        let ws = TcpListener::bind("127.0.0.1:0").expect("bind the fake Socket Mode");
        let addr = api.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            ws_addr: ws.local_addr().expect("local address"),
        });
        let mut threads = Vec::new();
        for (listener, socket_mode) in [(api, false), (ws, true)] {
            let shared = shared.clone();
            threads.push(
                thread::Builder::new()
                    .name("fake-slack-accept".into())
                    .spawn(move || {
                        for conn in listener.incoming() {
                            if shared.stop.load(Ordering::SeqCst) {
                                return;
                            }
                            let Ok(conn) = conn else { continue };
                            let shared = shared.clone();
                            let _ = thread::Builder::new().name("fake-slack-conn".into()).spawn(
                                move || {
                                    if socket_mode {
                                        socket(conn, &shared)
                                    } else {
                                        serve(conn, &shared)
                                    }
                                },
                            );
                        }
                    })
                    .expect("spawn the fake Slack"),
            );
        }
        FakeSlack {
            addr,
            shared,
            threads,
        }
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
        let mut s = self.shared.state();
        s.next_envelope += 1;
        let id = format!("env-{}", s.next_envelope);
        let payload = json!({"type": "event_callback", "team_id": "T1",
            "event_id": format!("Ev{}", s.next_envelope), "event": event});
        let frame = json!({"type": "events_api", "envelope_id": id, "payload": payload,
            "accepts_response_payload": false, "retry_attempt": 0});
        s.outgoing.push_back(frame.to_string());
        id
    }

    /// Send `disconnect` on the current socket and close it.
    pub fn disconnect(&self) {
        let mut s = self.shared.state();
        s.outgoing
            .push_back(json!({"type": "disconnect", "reason": "refresh_requested"}).to_string());
        s.drop_socket = true;
    }

    /// Answer the next call of `method` with `status`, `headers` and `body`.
    pub fn fail_next(&self, method: &str, status: u16, headers: &[(&str, &str)], body: Value) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.shared
            .state()
            .failures
            .entry(method.to_string())
            .or_default()
            .push_back((status, headers, body));
    }

    /// The bodies of every call of `method` so far.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        let s = self.shared.state();
        s.calls
            .iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    /// The `Authorization` headers of the calls of `method`.
    pub fn auth_headers(&self, method: &str) -> Vec<String> {
        let s = self.shared.state();
        s.calls
            .iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, a, _)| a.clone())
            .collect()
    }

    /// Wait (up to [`WAIT`]) until `method` was called at least `n` times; the bodies.
    pub fn wait_calls(&self, method: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
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

    /// Wait until the envelope `id` is acknowledged.
    pub fn wait_ack(&self, id: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.shared.state().acks.iter().any(|a| a == id) {
            assert!(
                Instant::now() < deadline,
                "envelope {id} never acknowledged; acks: {:?}",
                self.shared.state().acks
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sockets opened so far.
    pub fn sockets(&self) -> usize {
        self.shared.state().sockets
    }

    /// Every ack named an envelope that was sent, and every envelope sent was acknowledged
    /// (waiting up to [`WAIT`] for acks still on their way).
    pub fn check_acks(&self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let s = self.shared.state();
            if s.sent_envelopes.iter().all(|(e, _)| s.acks.contains(e)) {
                break;
            }
            drop(s);
            thread::sleep(Duration::from_millis(10));
        }
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
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        let _ = TcpStream::connect(self.shared.ws_addr);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One Web API connection.
fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(clone) = conn.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut writer = conn;
    while let Ok(Some(req)) = read_request(&mut reader) {
        let auth = req.header("authorization").unwrap_or_default().to_string();
        let method = req
            .path
            .strip_prefix("/api/")
            .unwrap_or(&req.path)
            .to_string();
        let (status, headers, body) = answer(shared, &method, &auth, req.json.clone());
        let reply = Reply {
            status,
            headers,
            content_type: "application/json; charset=utf-8".into(),
            parts: vec![Part {
                delay: Duration::ZERO,
                bytes: body.to_string().into_bytes(),
            }],
            framing: Framing::Length,
        };
        let closes = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if write_reply(&mut writer, &reply, closes, || {}).is_err() || closes {
            return;
        }
    }
}

fn answer(shared: &Shared, method: &str, auth: &str, body: Value) -> Scripted {
    let mut s = shared.state();
    s.calls
        .push((method.to_string(), auth.to_string(), body.clone()));
    if let Some(f) = s.failures.get_mut(method).and_then(VecDeque::pop_front) {
        return f;
    }
    let ok = |v: Value| (200, Vec::new(), v);
    match method {
        "auth.test" => ok(
            json!({"ok": true, "url": "https://fake.slack.test/", "team": "Fake",
            "user": "claw", "team_id": "T1", "user_id": BOT_USER, "bot_id": "B1"}),
        ),
        "apps.connections.open" => {
            let n = s.sockets + 1;
            ok(json!({"ok": true, "url": format!("ws://{}/link/?ticket={n}", shared.ws_addr)}))
        }
        "chat.postMessage" => {
            s.next_ts += 1;
            let ts = format!("1795600000.{:06}", s.next_ts);
            ok(json!({"ok": true, "channel": body["channel"], "ts": ts,
                "message": {"text": body["text"], "ts": ts}}))
        }
        _ => ok(json!({"ok": false, "error": "unknown_method"})),
    }
}

/// One Socket Mode connection: `hello`, then queued frames out and acks in.
fn socket(conn: TcpStream, shared: &Shared) {
    let Ok(mut ws) = tungstenite::accept(conn) else {
        return;
    };
    let _ = ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)));
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
    if ws.send(Message::text(hello.to_string())).is_err() {
        return;
    }
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (frames, close) = {
            let mut s = shared.state();
            let frames: Vec<String> = s.outgoing.drain(..).collect();
            for f in &frames {
                if let Some(id) = serde_json::from_str::<Value>(f)
                    .ok()
                    .and_then(|v| v["envelope_id"].as_str().map(str::to_string))
                {
                    s.sent_envelopes.push((id, f.clone()));
                }
            }
            (frames, std::mem::take(&mut s.drop_socket))
        };
        for f in frames {
            if ws.send(Message::text(f)).is_err() {
                return;
            }
        }
        if close {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
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
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
