//! What the fake channel APIs ([`crate::fake_telegram`], [`crate::fake_slack`],
//! [`crate::fake_discord`]) share: their loopback listeners, the HTTP/1.1 request loop, a
//! record of every call (name, method, path, `Authorization`, JSON body, arrival), answers
//! scripted for the next calls of a name (a 429 with its headers, a 401, a 502), and waiting
//! for calls. Each fake derefs to its [`FakeApi`], so `fake.calls("sendMessage")`,
//! `fake.wait_calls(..)` and `fake.fail_next(..)` read the same on every transport.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
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
    /// Signalled each time a call is recorded.
    recorded: Condvar,
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
        self.recorded.notify_all();
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

    /// The first call from the `seen`-th one on (in recording order) that `pick` answers
    /// for, waiting up to `timeout` for it to be recorded; `None` when it passes. Each call
    /// is shown to `pick` once: `seen` moves past every call looked at, so a waiter that keeps
    /// its cursor across waits never reads a call twice, and between looks it sleeps until
    /// a call is recorded (not on a timer).
    pub fn next_call<T>(
        &self,
        seen: &mut usize,
        timeout: Duration,
        mut pick: impl FnMut(&Call) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut calls = lock(&self.calls);
        loop {
            while let Some(call) = calls.get(*seen) {
                *seen += 1;
                if let Some(v) = pick(call) {
                    return Some(v);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            calls = self
                .recorded
                .wait_timeout(calls, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// [`FakeApi::wait_calls`] with its own timeout; panics when it passes. It looks every
    /// 10 ms ([`poll_for`]), not at each record as [`FakeApi::next_call`] does: a test that
    /// kills the gateway right after a reply arrives would kill it before the reply's
    /// delivery record is written (`telegram.rs`'s pairing CLI test then sees the reply
    /// again after the restart).
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

/// Longest a fake's socket thread sleeps without being woken: a safety net only, since
/// pushes and [`Wakes::wake_all`] at shutdown wake it.
pub(crate) const SOCKET_NAP: Duration = Duration::from_secs(1);

/// What the fakes' socket threads (Slack's Socket Mode, Discord's Gateway) sleep on: each
/// registers an eventfd, and a push of something to send wakes every one of them at once,
/// instead of each looking for work on a timer.
#[derive(Default)]
pub struct Wakes(Mutex<Vec<Arc<OwnedFd>>>);

impl Wakes {
    /// A wake for one socket thread, woken by every [`Wakes::wake_all`] while it lives.
    pub fn register(&self) -> io::Result<SocketWake> {
        let fd = Arc::new(eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?);
        let mut all = lock(&self.0);
        // Those whose thread is gone.
        all.retain(|w| Arc::strong_count(w) > 1);
        all.push(fd.clone());
        Ok(SocketWake(fd))
    }

    /// Wake every registered socket thread (something waits to be sent, or the fake stops).
    pub fn wake_all(&self) {
        for w in lock(&self.0).iter() {
            let _ = rustix::io::write(&**w, &1u64.to_ne_bytes());
        }
    }
}

/// One socket thread's wake; see [`Wakes`].
pub struct SocketWake(Arc<OwnedFd>);

impl SocketWake {
    /// Sleep until `sock` has bytes to read (or is closed), or this thread is woken (at most
    /// [`SOCKET_NAP`]); a wake is consumed.
    pub fn wait(&self, sock: &impl AsFd) -> io::Result<()> {
        self.poll(sock, PollFlags::IN)
    }

    /// Sleep until `sock` can take more bytes (or is closed), or this thread is woken.
    pub fn wait_writable(&self, sock: &impl AsFd) -> io::Result<()> {
        self.poll(sock, PollFlags::OUT)
    }

    fn poll(&self, sock: &impl AsFd, on: PollFlags) -> io::Result<()> {
        let nap = Timespec::try_from(SOCKET_NAP).map_err(io::Error::other)?;
        let mut fds = [PollFd::new(sock, on), PollFd::new(&*self.0, PollFlags::IN)];
        match poll(&mut fds, Some(&nap)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() {
            let _ = rustix::io::read(&*self.0, &mut [0u8; 8]);
        }
        Ok(())
    }
}

/// Send `msg` on `ws` over a non-blocking socket: when the socket is full, wait until it
/// drains (woken by `wake` at most [`SOCKET_NAP`] apart) and flush what tungstenite kept.
pub fn send_ws(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    wake: &SocketWake,
    msg: tungstenite::Message,
) -> tungstenite::Result<()> {
    let mut r = ws.send(msg);
    loop {
        match r {
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                wake.wait_writable(ws.get_ref())?;
                r = ws.flush();
            }
            r => return r,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::threads::{Switches, of_process};
    use serde_json::json;

    /// The wake-ups so far of this process's threads whose (cut) name starts with `name`.
    fn wakeups(name: &str) -> u64 {
        of_process(std::process::id(), Switches::Voluntary)
            .values()
            .filter(|(n, _)| n.starts_with(name))
            .map(|(_, s)| s)
            .sum()
    }

    /// A fake's socket thread (`thread`: its name as the kernel cuts it) serving `ws`, which
    /// has read its greeting, sleeps while nothing is queued (at most 3 wake-ups in 300 ms),
    /// and what `push` queues (it returns an id the frame carries) goes out long before the
    /// thread's safety nap ends.
    pub(crate) fn an_idle_socket_thread_wakes_at_a_push(
        ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
        thread: &str,
        push: impl FnOnce() -> String,
    ) {
        let before = wakeups(thread);
        std::thread::sleep(Duration::from_millis(300));
        let idle = wakeups(thread) - before;
        assert!(idle <= 3, "{idle} wake-ups in 300 ms with nothing to send");
        let pushed = Instant::now();
        let id = push();
        let frame = ws.read().expect("the pushed frame");
        let took = pushed.elapsed();
        assert!(frame.to_text().unwrap().contains(&id));
        assert!(
            took < SOCKET_NAP / 4,
            "the pushed frame went out {took:?} after the push"
        );
    }

    fn req(n: u64) -> RecordedRequest {
        RecordedRequest {
            method: "POST".into(),
            path: "/x".into(),
            headers: Vec::new(),
            body: Vec::new(),
            json: json!({ "n": n }),
            arrival: Arrival {
                kernel: None,
                read: Instant::now(),
            },
        }
    }

    /// A waiter with a long timeout is woken by the record itself, and is shown each call
    /// once: those it saw before are not looked at again.
    #[test]
    fn a_waiter_wakes_at_the_record_and_sees_each_call_once() {
        let api = FakeApi::new();
        api.record("a", &req(0));
        let mut seen = 0;
        let mut looks = 0;
        let n = |c: &Call| c.body["n"].as_u64();
        assert_eq!(api.next_call(&mut seen, Duration::ZERO, n), Some(0));
        assert_eq!(api.next_call(&mut seen, Duration::ZERO, n), None);
        let writer = {
            let api = api.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                let at = Instant::now();
                api.record("b", &req(1));
                at
            })
        };
        let woke = api.next_call(&mut seen, Duration::from_secs(60), |c| {
            looks += 1;
            (c.name == "b").then(Instant::now)
        });
        let recorded = writer.join().unwrap();
        let woke = woke.expect("the call recorded");
        assert_eq!(looks, 1, "only the new call is looked at");
        assert_eq!(seen, 2);
        // Woken by the record, not by the 60 s timeout (slack for a loaded machine).
        let late = woke.saturating_duration_since(recorded);
        assert!(
            late < Duration::from_secs(1),
            "woke {late:?} after the record"
        );
    }
}
