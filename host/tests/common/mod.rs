//! The HTTP client under test: an [`HttpLoop`] driven by a small event loop of the tests'
//! own ([`OnLoop`], the shape of the mio shell's: its poller's descriptor watched beside a
//! waker, driven when readable or when due), on a thread named [`LOOP_THREAD`]; its
//! requests and WebSockets.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawgate_core::model::{Dialing, HttpRequest, Pinned};
use clawgate_core::{WorkId, WorkResult, WsOpen};
use clawgate_host::http_loop::{HttpLimits, HttpLoop, LookupFn};
use clawgate_tests::fake_model::{FakeApi, FakeModel, Reply};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

/// Where results go, in batches (one per result on the loop).
pub type Report = Box<dyn Fn(WorkId, Vec<WorkResult>) + Send + Sync>;

/// The name of the loop's thread.
pub const LOOP_THREAD: &str = "http-loop";

enum Order {
    Submit(WorkId, HttpRequest),
    Cancel(WorkId),
    WsOpen(WorkId, WsOpen),
    WsSend(WorkId, String),
    WsClose(WorkId, u16),
    Idle(mpsc::Sender<usize>),
    Stop,
}

/// An [`HttpLoop`] on a loop thread of its own.
pub struct OnLoop {
    orders: mpsc::Sender<Order>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

const HTTP: Token = Token(0);
const ORDERS: Token = Token(1);

impl OnLoop {
    fn send(&self, order: Order) {
        self.orders.send(order).expect("the loop runs");
        self.waker.wake().expect("wake the loop");
    }
}

/// The loop: sleep until the client's descriptor is readable, an order comes or the client is
/// due; drive it; repeat until told to stop.
fn run(
    mut http: HttpLoop,
    poll: &mut Poll,
    orders: &mpsc::Receiver<Order>,
    report: &Report,
) -> io::Result<()> {
    let mut events = Events::with_capacity(8);
    loop {
        let now = Instant::now();
        let timeout = http.due().map(|due| due.saturating_duration_since(now));
        poll.poll(&mut events, timeout)?;
        let now = Instant::now();
        for order in orders.try_iter() {
            match order {
                Order::Submit(id, req) => http.start(id, req, now),
                Order::Cancel(id) => {
                    http.cancel(id);
                }
                Order::WsOpen(id, open) => http.ws_open(id, open, now),
                Order::WsSend(id, text) => http.ws_send(id, text),
                Order::WsClose(id, code) => http.ws_close(id, code, now),
                Order::Idle(reply) => {
                    let _ = reply.send(http.idle_connections());
                }
                Order::Stop => {
                    http.shutdown();
                    return Ok(());
                }
            }
        }
        let ready = events.iter().any(|e| e.token() == HTTP);
        if ready || http.due().is_some_and(|due| due <= now) {
            http.drive(now, |id, r| report(id, vec![r]));
        }
    }
}

impl OnLoop {
    /// `http` on a loop of its own, reporting to `report`.
    fn with(http: HttpLoop, report: Report) -> Self {
        let mut poll = Poll::new().expect("a poller");
        poll.registry()
            .register(
                &mut SourceFd(&http.fd().as_raw_fd()),
                HTTP,
                Interest::READABLE,
            )
            .expect("watch the client");
        let waker = Arc::new(Waker::new(poll.registry(), ORDERS).expect("a waker"));
        let (tx, orders) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(LOOP_THREAD.into())
            .spawn(move || {
                run(http, &mut poll, &orders, &report).expect("the loop runs");
            })
            .expect("a loop thread");
        OnLoop {
            orders: tx,
            waker,
            thread: Some(thread),
        }
    }

    /// Perform `req` as `id`.
    pub fn submit(&mut self, id: WorkId, req: HttpRequest) {
        self.send(Order::Submit(id, req));
    }

    /// Stop `id`.
    pub fn cancel(&mut self, id: WorkId) {
        self.send(Order::Cancel(id));
    }

    /// Open WebSocket `id`.
    pub fn ws_open(&mut self, id: WorkId, open: WsOpen) {
        self.send(Order::WsOpen(id, open));
    }

    /// Send `text` on WebSocket `id`.
    pub fn ws_send(&mut self, id: WorkId, text: impl Into<String>) {
        self.send(Order::WsSend(id, text.into()));
    }

    /// Close WebSocket `id` with `code`.
    pub fn ws_close(&mut self, id: WorkId, code: u16) {
        self.send(Order::WsClose(id, code));
    }

    /// Idle connections kept.
    pub fn idle_connections(&self) -> usize {
        if self.thread.is_none() {
            // Stopped: the loop closed them all.
            return 0;
        }
        let (tx, rx) = mpsc::channel();
        self.send(Order::Idle(tx));
        rx.recv().expect("the loop answers")
    }

    /// Stop everything (the loop closes its connections) and wait for the loop to end.
    pub fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.send(Order::Stop);
            thread.join().expect("the loop ends");
        }
    }
}

impl Drop for OnLoop {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A client and the results it reports, one by one.
pub fn client(limits: HttpLimits) -> (OnLoop, mpsc::Receiver<(WorkId, WorkResult)>) {
    on_loop(HttpLoop::new(limits).expect("a poller"))
}

/// A client whose host names `lookup` looks up, and the results it reports, one by one.
pub fn client_with_lookup(
    limits: HttpLimits,
    lookup: LookupFn,
) -> (OnLoop, mpsc::Receiver<(WorkId, WorkResult)>) {
    on_loop(HttpLoop::with_lookup(limits, lookup).expect("a poller"))
}

/// `http` on a loop of its own, and the results it reports, one by one.
fn on_loop(http: HttpLoop) -> (OnLoop, mpsc::Receiver<(WorkId, WorkResult)>) {
    let (tx, rx) = mpsc::channel();
    let client = OnLoop::with(
        http,
        Box::new(move |id, batch: Vec<WorkResult>| {
            for r in batch {
                let _ = tx.send((id, r));
            }
        }),
    );
    (client, rx)
}

/// A listener at `ip:port` whose accept queue is full, so a connection attempt to it is
/// never answered (its SYN is dropped), checked: an attempt times out rather than fails.
pub struct BlackHole {
    _listener: TcpListener,
    _queued: TcpStream,
}

impl BlackHole {
    #[allow(unsafe_code)]
    pub fn at(addr: SocketAddr) -> BlackHole {
        let listener = TcpListener::bind(addr).unwrap();
        // SAFETY: `listen` on a socket this function owns; a backlog of 0 holds one connection.
        let listened = unsafe { libc::listen(listener.as_raw_fd(), 0) };
        assert_eq!(listened, 0, "{}", std::io::Error::last_os_error());
        let queued = TcpStream::connect(addr).unwrap();
        let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        let e = probe.expect_err("the accept queue is full: no answer");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        BlackHole {
            _listener: listener,
            _queued: queued,
        }
    }
}

/// The descriptors this process holds.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The sockets registered with this process's pollers (`tfd:` lines of its epoll
/// descriptors).
pub fn watched() -> usize {
    let entries = std::fs::read_dir("/proc/self/fdinfo").unwrap();
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|info| info.lines().filter(|l| l.starts_with("tfd:")).count())
        .sum()
}

/// A fake OpenAI model for `name` behind `server` answering "pinned", a client whose lookups
/// are refused and counted (the count is returned), and a chat request to `name` pinned to
/// `addrs` submitted to it as `id` (Telegram's fallback dialing).
pub fn submit_pinned(
    server: Arc<rustls::ServerConfig>,
    name: &'static str,
    addrs: &'static [IpAddr],
    id: WorkId,
) -> PinnedRun {
    let model = FakeModel::with(FakeApi::OpenAi, Some(server), |_| Reply::text(&["pinned"]));
    let port = model.addr().port();
    let looked_up = Arc::new(AtomicUsize::new(0));
    let counted = looked_up.clone();
    let lookup: LookupFn = Arc::new(move |_: &str| {
        counted.fetch_add(1, Ordering::SeqCst);
        Err("blocked".into())
    });
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    let dialing = Dialing {
        pinned: Some(Pinned { host: name, addrs }),
        ..Dialing::default()
    };
    let url = format!("https://{name}:{port}/v1/chat/completions");
    pool.submit(
        id,
        HttpRequest {
            dialing,
            ..chat(url)
        },
    );
    PinnedRun {
        model,
        pool,
        rx,
        looked_up,
    }
}

/// What [`submit_pinned`] set up.
pub struct PinnedRun {
    /// The fake model, which records the requests it answered.
    pub model: FakeModel,
    /// The client the request went to.
    pub pool: OnLoop,
    /// Its results.
    pub rx: mpsc::Receiver<(WorkId, WorkResult)>,
    /// How many lookups the client asked for.
    pub looked_up: Arc<AtomicUsize>,
}

/// A streamed chat completion request, as the fake model answers it.
pub fn chat(url: String) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"model":"fake-1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
            .to_vec(),
        idempotent: false,
        dialing: Default::default(),
    }
}
