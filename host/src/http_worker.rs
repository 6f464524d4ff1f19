//! Outbound HTTP for the core's [`Work::Http`](clawgate_core::Work::Http): each request runs on
//! a worker thread (at most [`HttpLimits::max_concurrent`] at once; later ones wait in order),
//! which resolves the host, connects, writes the request ([`encode_request`]) and streams the
//! response back as it arrives: one [`WorkResult::HttpHead`], [`WorkResult::HttpBody`] pieces
//! (framing removed by the core's [`ResponseParser`]), then exactly one
//! [`WorkResult::HttpEnd`]. Nothing here runs on the event loop, DNS included. (The gateway
//! performs its HTTP on the loop instead, with the same rules and errors
//! ([`crate::http_loop`]); the HTTP tests run against both, and the WebSocket workers
//! connect with [`open`].)
//!
//! `https://` goes through rustls ([`crate::tls`]): the handshake, with the server's
//! certificate checked against the system's roots, completes in [`open`] before the request
//! is written, so a refused certificate ends the request with its own error.
//!
//! Connections are kept alive between requests ([`crate::http_pool`]): a response that ended
//! by its framing ([`ResponseParser::reusable`]) returns its connection to the pool, and the
//! next request to the same origin takes it. A request on a reused connection that fails
//! before any byte of the answer (the server closed it as it was sent) goes once more on a
//! fresh connection when that cannot repeat an effect: when writing it failed (the server
//! cannot have read all of it), or after it was written when it is
//! [`idempotent`](HttpRequest::idempotent). Everything else surfaces its error.
//!
//! A cancel sets the request's flag and shuts its socket down, so a blocked read returns at
//! once and the request ends with `HttpEnd(Err("cancelled"))`; its connection is not kept.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::model::http1::{ResponseLimits, ResponseParser, Scheme, Target, encode_request};
use clawgate_core::{WorkId, WorkResult};

use crate::http_conn::{Ended, Failed, Stage, connect_error, idle_error, resolve, results_of};
use crate::http_pool::{Connection, ConnectionPool, KeepAlive, Origin};
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
/// The default of [`HttpLimits::idle_exit`]: 2 s without a request ends a worker thread (starting
/// one again costs tens of microseconds, nothing beside a model request).
pub const IDLE_EXIT: Duration = Duration::from_secs(2);
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
    /// How long a worker thread waits for a request before it exits: a burst of model
    /// requests (a thread each) leaves no threads, nor their stacks' pages, behind it; the
    /// pool starts threads again as requests come.
    pub idle_exit: Duration,
    /// The idle connections kept for later requests.
    pub keep_alive: KeepAlive,
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
            idle_exit: IDLE_EXIT,
            keep_alive: KeepAlive::default(),
        }
    }
}

/// Where results go: called on worker threads, must not block. A request's results come in
/// order, in batches: what one read of its socket yielded, the last batch ending with its
/// `HttpEnd` (so an answer read whole reaches the loop in one wake-up).
type Report = Box<dyn Fn(WorkId, Vec<WorkResult>) + Send + Sync>;

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

    /// Register its socket so a cancel can shut it down; fails when it was cancelled already
    /// (a cancel that came before found no socket).
    pub(crate) fn attach(&self, socket: TcpStream) -> Result<(), String> {
        *lock(&self.socket) = Some(socket);
        if self.is_cancelled() {
            return Err(CANCELLED.into());
        }
        Ok(())
    }

    /// Whether it was stopped.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(WorkId, HttpRequest)>,
    running: HashMap<WorkId, Arc<Running>>,
    /// Threads free for a request: waiting for one, or reporting the end of the last.
    idle: usize,
    /// Threads started and not yet returning.
    live: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    limits: HttpLimits,
    report: Report,
    pool: ConnectionPool,
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
            .field("threads", &self.live_threads())
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl HttpWorkers {
    /// A pool with these limits; `report` gets every result (on a worker thread, or on the
    /// caller's for a request cancelled before it started), in order, in batches: what one
    /// read of the socket yielded, the last batch ending with the request's `HttpEnd`.
    /// Threads start as requests come.
    pub fn new(
        limits: HttpLimits,
        report: impl Fn(WorkId, Vec<WorkResult>) + Send + Sync + 'static,
    ) -> Self {
        HttpWorkers {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                limits,
                report: Box::new(report),
                pool: ConnectionPool::new(limits.keep_alive),
            }),
            threads: Vec::new(),
        }
    }

    /// Worker threads started and not yet exiting (busy or waiting for a request).
    pub fn live_threads(&self) -> usize {
        lock(&self.shared.queue).live
    }

    /// Idle connections kept for later requests.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.len()
    }

    /// Perform `req`, reporting with `id`. Fails (the error is also the request's `HttpEnd`)
    /// only when no thread can be started for it.
    pub fn submit(&mut self, id: WorkId, req: HttpRequest) -> io::Result<()> {
        let spawn = {
            let mut q = lock(&self.shared.queue);
            q.waiting.push_back((id, req));
            let spawn =
                q.idle < q.waiting.len() && q.live < self.shared.limits.max_concurrent.max(1);
            q.live += usize::from(spawn);
            spawn
        };
        self.threads.retain(|t| !t.is_finished());
        if spawn {
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name("clawgate-http".into())
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || {
                    serve(&shared);
                    drop(shared);
                    // glibc keeps this stack for a later thread: with its pages returned.
                    crate::allocator::release_stack();
                });
            match started {
                Ok(t) => self.threads.push(t),
                Err(e) => {
                    let mut q = lock(&self.shared.queue);
                    q.live -= 1;
                    // With no thread left to take it, the request fails; else one takes it
                    // when it is free.
                    if q.live == 0 {
                        q.waiting.retain(|(w, _)| *w != id);
                        drop(q);
                        let error = format!("cannot start an HTTP worker: {e}");
                        (self.shared.report)(id, vec![WorkResult::HttpEnd(Err(error))]);
                        return Err(e);
                    }
                }
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
            (self.shared.report)(id, vec![WorkResult::HttpEnd(Err(CANCELLED.into()))]);
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
            (self.shared.report)(id, vec![WorkResult::HttpEnd(Err(CANCELLED.into()))]);
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
        self.shared.pool.sweep(Instant::now(), true);
        stuck.is_empty()
    }
}

/// A worker thread: take requests until the pool closes or none came for
/// [`HttpLimits::idle_exit`]. A thread is free again (counted in `idle`) as soon as its
/// request has ended, before the end is reported: the request the loop submits in answer
/// (the next long poll) finds it, rather than starting another thread while this one reports.
fn serve(shared: &Shared) {
    let mut q = lock(&shared.queue);
    q.idle += 1;
    // Since when this thread has had nothing to do: a wake-up that finds no request (another
    // thread took it) does not restart the count.
    let mut idle_since: Option<Instant> = None;
    loop {
        let quiet = idle_since.is_some_and(|t| t.elapsed() >= shared.limits.idle_exit);
        // Decided under the lock: a request submitted after this starts a thread.
        if q.closed || (quiet && q.waiting.is_empty()) {
            q.idle -= 1;
            q.live -= 1;
            // The last thread closes every idle connection: none is held with no thread
            // to close it when it expires.
            let last = q.live == 0;
            drop(q);
            shared.pool.sweep(Instant::now(), last);
            return;
        }
        let Some((id, req)) = q.waiting.pop_front() else {
            let since = *idle_since.get_or_insert_with(Instant::now);
            let left = shared.limits.idle_exit.saturating_sub(since.elapsed());
            q = shared
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        };
        idle_since = None;
        q.idle -= 1;
        let running = Arc::new(Running::default());
        q.running.insert(id, running.clone());
        drop(q);
        let report = |r| {
            if !running.is_cancelled() {
                (shared.report)(id, r);
            }
        };
        let end = perform(&req, shared, &running, report);
        {
            let mut q = lock(&shared.queue);
            q.running.remove(&id);
            q.idle += 1;
        }
        // The last read's results go with the end, in one batch.
        let last = match end {
            _ if running.is_cancelled() => vec![WorkResult::HttpEnd(Err(CANCELLED.to_owned()))],
            Ok(mut last) => {
                last.push(WorkResult::HttpEnd(Ok(())));
                last
            }
            Err(e) => vec![WorkResult::HttpEnd(Err(e))],
        };
        (shared.report)(id, last);
        q = lock(&shared.queue);
    }
}

/// Perform one request, reporting its head and body as they are read; the result is its end,
/// with the results of the last read (reported with the end). A kept connection to its origin
/// is used first; see the module doc for when the request goes again on a fresh one.
fn perform(
    req: &HttpRequest,
    shared: &Shared,
    running: &Running,
    report: impl Fn(Vec<WorkResult>),
) -> Result<Vec<WorkResult>, String> {
    let limits = &shared.limits;
    let target = Target::parse(&req.url).map_err(|e| e.to_string())?;
    let wire = encode_request(req, &target).map_err(|e| e.to_string())?;
    let origin = Origin::of(&target);
    let addr = format!("{}:{}", target.host, target.port);
    let send = |stream: &mut Stream| exchange(stream, &wire, req.method, limits, &addr, &report);
    if let Some(Connection { mut stream, socket }) = shared.pool.checkout(&origin, Instant::now()) {
        running.attach(socket)?;
        match send(&mut stream) {
            Ok(ended) => {
                keep(shared, running, origin, stream, &ended);
                return Ok(ended.last);
            }
            Err(failed) if failed.may_send_again(req.idempotent) && !running.is_cancelled() => {}
            Err(failed) => return Err(failed.error),
        }
    }
    let mut stream = open(&target, limits, running)?;
    let ended = send(&mut stream).map_err(|f| f.error)?;
    keep(shared, running, origin, stream, &ended);
    Ok(ended.last)
}

/// Write `wire` on `stream` and read the response to `method` to its end, reporting the head
/// and the body as they come.
fn exchange(
    stream: &mut Stream,
    wire: &[u8],
    method: &str,
    limits: &HttpLimits,
    addr: &str,
    report: &impl Fn(Vec<WorkResult>),
) -> Result<Ended, Failed> {
    let idle = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => idle_error(addr, limits),
        _ => format!("{addr}: {e}"),
    };
    let failed = |stage| move |error| Failed { error, stage };
    // `flush` sends what TLS still holds, so a failed send is seen here.
    stream
        .write_all(wire)
        .and_then(|()| stream.flush())
        .map_err(idle)
        .map_err(failed(Stage::Write))?;
    stream.ack_promptly();
    let mut parser = ResponseParser::new(limits.response, method);
    // On the worker's stack, whose pages go when an idle worker exits; a heap buffer would
    // stay in the thread's malloc arena.
    let mut buf = [0u8; READ_BUFFER_BYTES];
    let mut events = Vec::new();
    let mut stage = Stage::Written;
    let mut keep_alive = None;
    loop {
        let n = match stream.read(&mut buf) {
            // A signal (SIGHUP's reload) landed on this thread: a socket with a read timeout
            // is not restarted by the kernel; the request goes on.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => read.map_err(idle).map_err(failed(stage))?,
        };
        if n == 0 {
            parser
                .finish()
                .map_err(|e| format!("{addr}: {e}"))
                .map_err(failed(stage))?;
            return Ok(Ended {
                reusable: false,
                keep_alive,
                last: Vec::new(),
            });
        }
        stage = Stage::Answered;
        let fed = parser.feed(buf.get(..n).unwrap_or_default(), &mut events);
        let read = results_of(&mut events, &mut keep_alive);
        if fed.is_ok() && parser.is_complete() {
            return Ok(Ended {
                reusable: parser.reusable(),
                keep_alive,
                last: read,
            });
        }
        if !read.is_empty() {
            report(read);
        }
        fed.map_err(|e| format!("{addr}: {e}"))
            .map_err(failed(stage))?;
    }
}

/// Return the connection of a request that `ended` to the pool, when it may carry another
/// and the request was not cancelled (a cancelled one's socket may be shut down).
fn keep(shared: &Shared, running: &Running, origin: Origin, mut stream: Stream, ended: &Ended) {
    // Taken before the flag is read: a cancel from now on finds no socket to shut down.
    let socket = lock(&running.socket).take();
    if !ended.reusable || running.is_cancelled() || !stream.is_drained() {
        return;
    }
    if let Some(socket) = socket {
        let conn = Connection { stream, socket };
        shared
            .pool
            .checkin(origin, conn, ended.keep_alive.as_deref(), Instant::now());
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
    let addrs = resolve(&target.host, target.port, &name)?;
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
                running.attach(handle)?;
                return match target.scheme {
                    Scheme::Http => Ok(Stream::Plain(stream)),
                    Scheme::Https => {
                        let idle = || idle_error(&name, limits);
                        let session = tls::connect(&target.host, &name, stream, idle);
                        if running.is_cancelled() {
                            return Err(CANCELLED.into());
                        }
                        session
                    }
                };
            }
            Err(e) => last = Some(connect_error(&name, addr, &e)),
        }
    }
    Err(last.unwrap_or_else(|| CANCELLED.into()))
}
