//! Outbound HTTP for the core's [`Work::Http`](clawgate_core::Work::Http): each request runs on
//! a worker thread (at most [`HttpLimits::max_concurrent`] at once; later ones wait in order),
//! which resolves the host, connects, writes the request ([`encode_request`]) and streams the
//! response back as it arrives: one [`WorkResult::HttpHead`], [`WorkResult::HttpBody`] pieces
//! (framing removed by the core's [`ResponseParser`]), then exactly one
//! [`WorkResult::HttpEnd`]. Nothing here runs on the event loop, DNS included.
//!
//! `https://` goes through rustls ([`crate::tls`]): the handshake, with the server's
//! certificate checked against the system's roots, completes in [`open`] before the request
//! is written, so a refused certificate ends the request with its own error.
//!
//! A cancel sets the request's flag and shuts its socket down, so a blocked read returns at
//! once and the request ends with `HttpEnd(Err("cancelled"))`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::model::http1::{
    ResponseEvent, ResponseLimits, ResponseParser, Scheme, Target, encode_request,
};
use clawgate_core::{WorkId, WorkResult};

use crate::tls::{self, Stream};

/// The default of [`HttpLimits::max_concurrent`].
pub const MAX_CONCURRENT_REQUESTS: usize = 8;
/// Threads beyond the model requests' for other HTTP work (a channel's long poll, one per
/// account, and its sends): model requests are at most `agents.defaults.maxConcurrent` at
/// once (the core holds the others back), so with this much room neither kind waits for
/// the other ([`HttpLimits::for_runs`]).
pub const OTHER_REQUESTS: usize = 16;
/// The stack of a worker thread: a request needs little (its buffers are on the heap).
const WORKER_STACK_BYTES: usize = 512 * 1024;
/// The default of [`HttpLimits::connect_timeout`]: 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`HttpLimits::idle_timeout`]: 120 s without a byte ends a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How many bytes one read takes from a socket.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// The error of a cancelled request.
pub const CANCELLED: &str = "cancelled";

/// How the workers perform requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Requests running at once (one thread each); later requests wait in order.
    pub max_concurrent: usize,
    /// How long connecting to one address may take.
    pub connect_timeout: Duration,
    /// How long a request may go without sending or receiving a byte.
    pub idle_timeout: Duration,
    /// The response parser's limits.
    pub response: ResponseLimits,
}

impl HttpLimits {
    /// The defaults, with room for `max_runs` model requests at once besides
    /// [`OTHER_REQUESTS`] others.
    pub fn for_runs(max_runs: usize) -> Self {
        HttpLimits {
            max_concurrent: max_runs.saturating_add(OTHER_REQUESTS),
            ..HttpLimits::default()
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_concurrent: MAX_CONCURRENT_REQUESTS,
            connect_timeout: CONNECT_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            response: ResponseLimits::default(),
        }
    }
}

/// Where results go: called on worker threads, must not block.
type Report = Box<dyn Fn(WorkId, WorkResult) + Send + Sync>;

/// A request (or socket) being performed: how to stop it.
#[derive(Default)]
pub(crate) struct Running {
    cancelled: AtomicBool,
    /// A handle on its socket once connected, to shut it down.
    socket: Mutex<Option<TcpStream>>,
}

impl Running {
    /// Stop it: its socket is shut down so a blocked read returns.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.socket).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Whether it was stopped.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Set its socket's read timeout (a socket thread's poll interval).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) {
        if let Some(s) = lock(&self.socket).as_ref() {
            let _ = s.set_read_timeout(timeout);
        }
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(WorkId, HttpRequest)>,
    running: HashMap<WorkId, Arc<Running>>,
    /// Threads free for a request: waiting for one, or reporting the end of the last.
    idle: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    limits: HttpLimits,
    report: Report,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked left consistent data behind (every update is one statement).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HTTP worker pool.
pub struct HttpWorkers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWorkers")
            .field("threads", &self.threads.len())
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl HttpWorkers {
    /// A pool with these limits; `report` gets every result (on a worker thread, or on the
    /// caller's for a request cancelled before it started). Threads start as requests come.
    pub fn new(
        limits: HttpLimits,
        report: impl Fn(WorkId, WorkResult) + Send + Sync + 'static,
    ) -> Self {
        HttpWorkers {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                limits,
                report: Box::new(report),
            }),
            threads: Vec::new(),
        }
    }

    /// Perform `req`, reporting with `id`. Fails (the error is also the request's `HttpEnd`)
    /// only when no thread can be started for it.
    pub fn submit(&mut self, id: WorkId, req: HttpRequest) -> io::Result<()> {
        let spawn = {
            let mut q = lock(&self.shared.queue);
            q.waiting.push_back((id, req));
            q.idle < q.waiting.len()
                && self.threads.len() < self.shared.limits.max_concurrent.max(1)
        };
        self.threads.retain(|t| !t.is_finished());
        if spawn {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name("clawgate-http".into())
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || serve(&shared))
            {
                Ok(t) => self.threads.push(t),
                Err(e) if self.threads.is_empty() => {
                    lock(&self.shared.queue).waiting.retain(|(w, _)| *w != id);
                    (self.shared.report)(
                        id,
                        WorkResult::HttpEnd(Err(format!("cannot start an HTTP worker: {e}"))),
                    );
                    return Err(e);
                }
                // The running threads take it when they are free.
                Err(_) => {}
            }
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Stop the request `id`: a waiting one ends at once, a running one as soon as its
    /// thread sees it (its socket is shut down). Unknown or finished ids are ignored.
    pub fn cancel(&self, id: WorkId) {
        let mut q = lock(&self.shared.queue);
        if let Some(at) = q.waiting.iter().position(|(w, _)| *w == id) {
            q.waiting.remove(at);
            drop(q);
            (self.shared.report)(id, WorkResult::HttpEnd(Err(CANCELLED.into())));
        } else if let Some(running) = q.running.get(&id) {
            running.cancel();
        }
    }

    /// Cancel everything and wait up to `grace` for the threads to finish (one blocked in a
    /// DNS lookup or a connect is left behind). Returns whether they all finished.
    pub fn shutdown(&mut self, grace: Duration) -> bool {
        let waiting = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            q.running.values().for_each(|r| r.cancel());
            std::mem::take(&mut q.waiting)
        };
        for (id, _) in waiting {
            (self.shared.report)(id, WorkResult::HttpEnd(Err(CANCELLED.into())));
        }
        self.shared.ready.notify_all();
        let deadline = Instant::now() + grace;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (done, stuck): (Vec<_>, Vec<_>) = self.threads.drain(..).partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        stuck.is_empty()
    }
}

/// A worker thread: take requests until the pool closes. A thread is free again (counted in
/// `idle`) as soon as its request has ended, before the end is reported: the request the
/// loop submits in answer (the next long poll) finds it, rather than starting another thread
/// while this one reports.
fn serve(shared: &Shared) {
    let mut q = lock(&shared.queue);
    q.idle += 1;
    loop {
        if q.closed {
            return;
        }
        let Some((id, req)) = q.waiting.pop_front() else {
            q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        q.idle -= 1;
        let running = Arc::new(Running::default());
        q.running.insert(id, running.clone());
        drop(q);
        let report = |r| {
            if !running.is_cancelled() {
                (shared.report)(id, r);
            }
        };
        let end = perform(&req, &shared.limits, &running, report);
        {
            let mut q = lock(&shared.queue);
            q.running.remove(&id);
            q.idle += 1;
        }
        let end = if running.is_cancelled() {
            Err(CANCELLED.to_owned())
        } else {
            end
        };
        (shared.report)(id, WorkResult::HttpEnd(end));
        q = lock(&shared.queue);
    }
}

/// Perform one request, reporting its head and body; the result is its end.
fn perform(
    req: &HttpRequest,
    limits: &HttpLimits,
    running: &Running,
    report: impl Fn(WorkResult),
) -> Result<(), String> {
    let target = Target::parse(&req.url).map_err(|e| e.to_string())?;
    let wire = encode_request(req, &target).map_err(|e| e.to_string())?;
    let mut stream = open(&target, limits, running)?;
    let addr = format!("{}:{}", target.host, target.port);
    let idle = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "no data from {addr} for {} s (idle timeout)",
            limits.idle_timeout.as_secs_f32()
        ),
        _ => format!("{addr}: {e}"),
    };
    stream.write_all(&wire).map_err(idle)?;
    let mut parser = ResponseParser::new(limits.response, req.method);
    let mut buf = vec![0; READ_BUFFER_BYTES];
    let mut events = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            // A signal (SIGHUP's reload) landed on this thread: a socket with a read timeout
            // is not restarted by the kernel; the request goes on.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => read.map_err(idle)?,
        };
        if n == 0 {
            return parser.finish().map_err(|e| format!("{addr}: {e}"));
        }
        let fed = parser.feed(buf.get(..n).unwrap_or_default(), &mut events);
        for event in events.drain(..) {
            report(match event {
                ResponseEvent::Head { status, headers } => WorkResult::HttpHead { status, headers },
                ResponseEvent::Body(bytes) => WorkResult::HttpBody(bytes),
            });
        }
        fed.map_err(|e| format!("{addr}: {e}"))?;
        if parser.is_complete() {
            return Ok(());
        }
    }
}

/// A connected byte stream to `target`, with the idle timeout set and registered with
/// `running` so a cancel can shut it down; for `https://` a TLS session over it, its
/// handshake done.
pub(crate) fn open(
    target: &Target,
    limits: &HttpLimits,
    running: &Running,
) -> Result<Stream, String> {
    let name = format!("{}:{}", target.host, target.port);
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {name}: {e}"))?;
    let mut last = None;
    for addr in addrs {
        if running.is_cancelled() {
            return Err(CANCELLED.into());
        }
        match TcpStream::connect_timeout(&addr, limits.connect_timeout) {
            Ok(stream) => {
                let setup = |s: &TcpStream| {
                    s.set_read_timeout(Some(limits.idle_timeout))?;
                    s.set_write_timeout(Some(limits.idle_timeout))?;
                    s.set_nodelay(true)?;
                    s.try_clone()
                };
                let handle = setup(&stream).map_err(|e| format!("{name} ({addr}): {e}"))?;
                *lock(&running.socket) = Some(handle);
                // A cancel that came while connecting found no socket to shut down.
                if running.is_cancelled() {
                    return Err(CANCELLED.into());
                }
                return match target.scheme {
                    Scheme::Http => Ok(Stream::Plain(stream)),
                    Scheme::Https => {
                        let session = tls::connect(&target.host, &name, stream);
                        if running.is_cancelled() {
                            return Err(CANCELLED.into());
                        }
                        Ok(Stream::Tls(Box::new(session?)))
                    }
                };
            }
            Err(e) => last = Some(format!("cannot connect to {name} ({addr}): {e}")),
        }
    }
    Err(last.unwrap_or_else(|| format!("cannot resolve {name}: no addresses")))
}
