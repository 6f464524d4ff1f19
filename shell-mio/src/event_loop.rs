//! The single-threaded mio event loop (the shape of rustls's `tlsserver-mio`): a table of
//! sockets keyed by [`Token`], write interest only while bytes wait to be sent, one reused read
//! buffer. Every byte read goes to the core, every output of the core is acted on at once.
//! Signals and worker threads wake it too (a [`Waker`] feeds it the host's worker inputs), and
//! so do the sockets the host drives on this thread (outbound HTTP, [`Host::sockets`]).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_core::{ConnId, ConnMap, Gateway, Level, Output};
use clawgate_host::Host;
use clawgate_host::shell::{WindDown, absorb, note, take_worker_inputs};
use clawgate_host::sockets::{
    ACCEPT_BACKOFF, AcceptThrottle, AfterFailure, CLOSE_GRACE, accepted_local, write_until_blocked,
};
use clawgate_host::startup::Started;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
/// The worker threads' [`Waker`].
const WORKERS: Token = Token(usize::MAX - 2);
/// The host's own sockets ([`Host::sockets`]).
const HOST_SOCKETS: Token = Token(usize::MAX - 3);
/// The one read buffer every socket shares.
const READ_BUFFER: usize = 16 * 1024;
/// Reads per socket per wake-up before the others get their turn.
const READS_PER_WAKE: usize = 16;
/// Accepts per wake-up before the sockets get their turn.
const ACCEPTS_PER_WAKE: usize = 256;
const EVENTS_CAPACITY: usize = 1024;

/// One accepted socket and the bytes still to be written to it.
struct Socket {
    stream: TcpStream,
    /// Chunks to write, in order; `sent` bytes of the front one are already written.
    out: VecDeque<Vec<u8>>,
    sent: usize,
    /// The core closed it: flush, half-close, wait for the peer's EOF (bounded), drop.
    closing: bool,
    /// The peer's EOF was seen while closing, with bytes still to flush.
    peer_eof: bool,
    /// Left unread until the core wants its input again (listed in `EventLoop::paused`).
    paused: bool,
    interest: Interest,
}

impl Socket {
    fn wanted_interest(&self) -> Interest {
        if self.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// Send `data` after whatever is queued: written at once when nothing is waiting (no queue
    /// allocated for the common case), the rest queued; the number of bytes written.
    fn send(&mut self, data: Vec<u8>) -> io::Result<usize> {
        if !self.out.is_empty() {
            self.out.push_back(data);
            return self.flush();
        }
        let sent = write_until_blocked(&mut self.stream, &data)?;
        if sent < data.len() {
            self.out.push_back(data);
            self.sent = sent;
        }
        Ok(sent)
    }

    /// Throw away the queued chunks that have not started to go out (the core is cutting a
    /// slow consumer); a chunk partly written stays, so a close frame can follow it.
    fn discard(&mut self) {
        let started = (self.sent > 0).then(|| self.out.pop_front()).flatten();
        self.out = started.into_iter().collect();
    }

    /// Write queued bytes until done or the socket is full; the number of bytes written, or
    /// the error that ended the socket.
    fn flush(&mut self) -> io::Result<usize> {
        let mut total = 0;
        while let Some(front) = self.out.front() {
            let n =
                write_until_blocked(&mut self.stream, front.get(self.sent..).unwrap_or_default())?;
            total += n;
            self.sent += n;
            if self.sent < front.len() {
                break;
            }
            self.out.pop_front();
            self.sent = 0;
        }
        if self.out.is_empty() {
            // Give the memory of a burst back.
            self.out = VecDeque::new();
        }
        Ok(total)
    }
}

/// Why a socket is read now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadCause {
    /// Not at all: only written.
    None,
    /// A readiness event that said nothing of EOF or an error: a short read empties the
    /// socket, and (edge-triggered) anything arriving later, EOF included, raises a new event.
    Data,
    /// Anything else (EOF or an error seen, a budget or a pause run out): read until the
    /// socket says `WouldBlock` or EOF.
    Drain,
}

impl ReadCause {
    fn of(event: &mio::event::Event) -> Self {
        if event.is_read_closed() || event.is_error() {
            ReadCause::Drain
        } else if event.is_readable() {
            ReadCause::Data
        } else {
            ReadCause::None
        }
    }
}

/// What happened to a socket that was read.
enum ReadOutcome {
    /// Nothing more to read now.
    Drained,
    /// The per-wake budget ran out with data possibly left.
    Budget,
    /// The core wants no more of this connection's input for now.
    Paused,
    /// EOF or an error.
    Ended,
}

struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    sockets: ConnMap<Token, Socket>,
    read_buf: Box<[u8]>,
    /// Deadlines of closing sockets, in order (all are `now + CLOSE_GRACE`).
    closing: VecDeque<(Instant, Token)>,
    /// Sockets whose read budget ran out: read again before sleeping.
    again: Vec<Token>,
    /// Sockets left unread because the core wants none of their input for now; read again
    /// (through `again`) once it does.
    paused: Vec<Token>,
    accept_again: bool,
    accept_paused_until: Option<Instant>,
    accept_throttle: AcceptThrottle,
    core_deadline: Instant,
    wind_down: Option<WindDown>,
}

/// Run the gateway until it is shut down by a signal. Errors are those of the poller itself.
pub fn run(started: Started) -> io::Result<()> {
    let Started {
        mut gateway,
        listener,
        local_addr,
        mut host,
    } = started;
    let result = serve(&mut gateway, listener, local_addr, &mut host);
    if let Err(e) = &result {
        note(&mut host, Level::Error, format!("event loop failed: {e}"));
    }
    result
}

/// Serve `listener` with `gateway` and `host` until the gateway has shut down and wound down.
fn serve<H: Host>(
    gateway: &mut Gateway,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    host: &mut H,
) -> io::Result<()> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    if let Some(signals) = host.signals() {
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
    }
    if let Some(fd) = host.sockets() {
        poll.registry().register(
            &mut SourceFd(&fd.as_raw_fd()),
            HOST_SOCKETS,
            Interest::READABLE,
        )?;
    }
    let waker = Arc::new(Waker::new(poll.registry(), WORKERS)?);
    host.inbox().set_wake(move || {
        // A failed wake leaves the inputs queued for the next wake-up.
        let _ = waker.wake();
    });
    let now = Instant::now();
    let mut el = EventLoop {
        poll,
        listener: Some(listener),
        local_addr,
        sockets: ConnMap::default(),
        read_buf: vec![0u8; READ_BUFFER].into_boxed_slice(),
        closing: VecDeque::new(),
        again: Vec::new(),
        paused: Vec::new(),
        accept_again: false,
        accept_paused_until: None,
        accept_throttle: AcceptThrottle::default(),
        core_deadline: now,
        wind_down: None,
    };
    el.drain(gateway, host, now);
    el.run(gateway, host)
}

impl EventLoop {
    fn run<H: Host>(&mut self, gw: &mut Gateway, host: &mut H) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let now = Instant::now();
            if gw.is_draining() && self.wind_down(now, host) {
                return Ok(());
            }
            // The host's deferred work (log lines written in batches, memory returned after a
            // burst): wake for it if nothing else comes.
            let wake = [host.before_wait(now), host.sockets_due()]
                .into_iter()
                .flatten()
                .fold(self.next_wake(), Instant::min);
            let timeout = if self.again.is_empty() && !self.accept_again {
                wake.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            let now = Instant::now();
            gw.handle_wall_clock(now, clawgate_host::logging::unix_ms());
            let mut host_sockets = host.sockets_due().is_some_and(|due| due <= now);
            for event in events.iter() {
                match event.token() {
                    HOST_SOCKETS => host_sockets = true,
                    LISTENER => self.accept(gw, host, now),
                    SIGNALS => {
                        host.on_signals(gw, now);
                        self.drain(gw, host, now);
                    }
                    WORKERS => {
                        take_worker_inputs(host, gw, now);
                        self.drain(gw, host, now);
                    }
                    token => self.socket_ready(
                        gw,
                        host,
                        now,
                        token,
                        ReadCause::of(event),
                        event.is_writable(),
                    ),
                }
            }
            if host_sockets {
                host.on_sockets(gw, now);
                self.drain(gw, host, now);
            }
            for token in std::mem::take(&mut self.again) {
                self.socket_ready(gw, host, now, token, ReadCause::Drain, false);
            }
            let paused = self.accept_paused_until.is_some_and(|t| now < t);
            if (self.accept_again || self.accept_paused_until.is_some()) && !paused {
                self.accept_paused_until = None;
                self.accept(gw, host, now);
            }
            self.expire_closing(now);
            if now >= self.core_deadline {
                gw.handle_timeout(now);
                self.drain(gw, host, now);
            }
            self.resume_paused(gw);
        }
    }

    /// Paused sockets whose input the core wants again are read on the next turn.
    fn resume_paused(&mut self, gw: &Gateway) {
        let (again, sockets) = (&mut self.again, &mut self.sockets);
        self.paused.retain(|token| {
            let Some(s) = sockets.get_mut(token) else {
                return false;
            };
            s.paused = !gw.wants_input(conn_of(*token));
            if !s.paused {
                again.push(*token);
            }
            s.paused
        });
    }

    /// The earliest instant the loop must wake without IO.
    fn next_wake(&self) -> Instant {
        [
            Some(self.core_deadline),
            self.closing.front().map(|c| c.0),
            self.accept_paused_until,
            self.wind_down.map(|w| w.deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.core_deadline)
    }

    /// After `shutdown`: stop listening, let the sockets flush, and say when to exit.
    fn wind_down<H: Host>(&mut self, now: Instant, host: &mut H) -> bool {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
            self.wind_down = Some(WindDown::begin(host, now));
        }
        let Some(wind_down) = self.wind_down else {
            return false;
        };
        if self.sockets.is_empty() || wind_down.is_over(now) {
            wind_down.finish(host, self.sockets.len());
            return true;
        }
        false
    }

    /// Act on the core's outputs until it has none; remember its next deadline.
    fn drain<H: Host>(&mut self, gw: &mut Gateway, host: &mut H, now: Instant) {
        loop {
            match gw.poll_output() {
                Output::Timeout(at) => {
                    self.core_deadline = at;
                    return;
                }
                output => match absorb(host, gw, now, output) {
                    Some(Output::Transmit { conn, data }) => {
                        host.transmitted(data.len());
                        self.transmit(gw, now, conn, data)
                    }
                    Some(Output::Close { conn }) => self.begin_close(now, token_of(conn)),
                    Some(Output::Discard { conn }) => {
                        if let Some(s) = self.sockets.get_mut(&token_of(conn)) {
                            s.discard();
                        }
                    }
                    Some(other) => {
                        debug_assert!(false, "unhandled core output {other:?}");
                        note(
                            host,
                            Level::Warn,
                            format!("unhandled core output {other:?}"),
                        );
                    }
                    None => {}
                },
            }
        }
    }

    fn transmit(&mut self, gw: &mut Gateway, now: Instant, conn: ConnId, data: Vec<u8>) {
        let token = token_of(conn);
        let Some(s) = self.sockets.get_mut(&token) else {
            return;
        };
        match s.send(data) {
            Ok(n) => {
                gw.handle_written(now, conn, n);
                self.update_interest(token);
            }
            Err(_) => self.fail(gw, now, token),
        }
    }

    /// A socket failed or reached EOF while the core still knew it.
    fn fail(&mut self, gw: &mut Gateway, now: Instant, token: Token) {
        self.drop_socket(token);
        gw.handle_closed(now, conn_of(token));
    }

    /// The core forgot the connection: flush what is queued, then half-close and wait
    /// (bounded) for the peer's EOF, so the last bytes are not lost to a reset.
    fn begin_close(&mut self, now: Instant, token: Token) {
        let Some(s) = self.sockets.get_mut(&token) else {
            return;
        };
        s.closing = true;
        if s.out.is_empty() {
            let _ = s.stream.shutdown(Shutdown::Write);
        }
        self.closing.push_back((now + CLOSE_GRACE, token));
        self.update_interest(token);
    }

    fn expire_closing(&mut self, now: Instant) {
        while let Some(&(at, token)) = self.closing.front() {
            if at > now {
                break;
            }
            self.closing.pop_front();
            self.drop_socket(token);
        }
    }

    /// Close the socket. Closing its (only) descriptor takes it out of the poll: no
    /// `epoll_ctl` per connection for that.
    fn drop_socket(&mut self, token: Token) {
        self.sockets.remove(&token);
    }

    fn update_interest(&mut self, token: Token) {
        let Some(s) = self.sockets.get_mut(&token) else {
            return;
        };
        let wanted = s.wanted_interest();
        if wanted != s.interest {
            s.interest = wanted;
            // A failure here surfaces as an error on the next read or write.
            let _ = self
                .poll
                .registry()
                .reregister(&mut s.stream, token, wanted);
        }
    }

    fn accept<H: Host>(&mut self, gw: &mut Gateway, host: &mut H, now: Instant) {
        self.accept_again = false;
        for _ in 0..ACCEPTS_PER_WAKE {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let (after, line) = self.accept_throttle.failed(&e);
                    if let Some((level, message)) = line {
                        note(host, level, message);
                    }
                    if after == AfterFailure::Pause {
                        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                    continue;
                }
            };
            if let Some((level, message)) = self.accept_throttle.accepted() {
                note(host, level, message);
            }
            let _ = stream.set_nodelay(true);
            let local = accepted_local(self.local_addr, || stream.local_addr());
            let conn = gw.accept(now, peer, local);
            let token = token_of(conn);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                gw.handle_closed(now, conn);
            } else {
                let socket = Socket {
                    stream,
                    out: VecDeque::new(),
                    sent: 0,
                    closing: false,
                    peer_eof: false,
                    paused: false,
                    interest: Interest::READABLE,
                };
                self.sockets.insert(token, socket);
            }
            self.drain(gw, host, now);
        }
        self.accept_again = true;
    }

    fn socket_ready<H: Host>(
        &mut self,
        gw: &mut Gateway,
        host: &mut H,
        now: Instant,
        token: Token,
        cause: ReadCause,
        writable: bool,
    ) {
        let Some(s) = self.sockets.get_mut(&token) else {
            return;
        };
        if writable && !s.out.is_empty() {
            let closing = s.closing;
            match s.flush() {
                Ok(_) if closing && s.out.is_empty() && s.peer_eof => {
                    self.drop_socket(token);
                    return;
                }
                Ok(_) if closing => {
                    if s.out.is_empty() {
                        let _ = s.stream.shutdown(Shutdown::Write);
                    }
                }
                Ok(n) => {
                    // A stalled connection that caught up is due another turn: take the
                    // core's new deadline now, not at whatever wakes the loop next.
                    gw.handle_written(now, conn_of(token), n);
                    self.drain(gw, host, now);
                }
                Err(_) if closing => {
                    self.drop_socket(token);
                    return;
                }
                Err(_) => {
                    self.fail(gw, now, token);
                    self.drain(gw, host, now);
                    return;
                }
            }
        }
        if cause != ReadCause::None {
            match self.read(gw, host, now, token, cause) {
                ReadOutcome::Drained => {}
                ReadOutcome::Budget => self.again.push(token),
                ReadOutcome::Paused => {
                    if let Some(s) = self.sockets.get_mut(&token)
                        && !std::mem::replace(&mut s.paused, true)
                    {
                        self.paused.push(token);
                    }
                }
                ReadOutcome::Ended => return,
            }
        }
        self.update_interest(token);
    }

    /// Read what the socket has (within the budget, and while the core wants more of this
    /// connection's input) and feed it to the core; a closing socket's bytes are read only to
    /// find its EOF. For [`ReadCause::Data`], a read that did not fill the buffer ends it
    /// without the read that would only say `WouldBlock`.
    fn read<H: Host>(
        &mut self,
        gw: &mut Gateway,
        host: &mut H,
        now: Instant,
        token: Token,
        cause: ReadCause,
    ) -> ReadOutcome {
        for _ in 0..READS_PER_WAKE {
            let Some(s) = self.sockets.get_mut(&token) else {
                return ReadOutcome::Ended;
            };
            let closing = s.closing;
            if !closing && !gw.wants_input(conn_of(token)) {
                // The rest stays in the socket until the core has caught up.
                return ReadOutcome::Paused;
            }
            match s.stream.read(&mut self.read_buf) {
                Ok(0) if closing && !s.out.is_empty() => {
                    s.peer_eof = true;
                    return ReadOutcome::Drained;
                }
                Ok(0) if closing => {
                    self.drop_socket(token);
                    return ReadOutcome::Ended;
                }
                Ok(0) => {
                    self.fail(gw, now, token);
                    self.drain(gw, host, now);
                    return ReadOutcome::Ended;
                }
                Ok(n) if closing => {
                    if cause == ReadCause::Data && n < self.read_buf.len() {
                        return ReadOutcome::Drained;
                    }
                }
                Ok(n) => {
                    gw.handle_input(
                        now,
                        conn_of(token),
                        self.read_buf.get(..n).unwrap_or_default(),
                    );
                    self.drain(gw, host, now);
                    if cause == ReadCause::Data && n < self.read_buf.len() {
                        return ReadOutcome::Drained;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if closing => {
                    self.drop_socket(token);
                    return ReadOutcome::Ended;
                }
                Err(_) => {
                    self.fail(gw, now, token);
                    self.drain(gw, host, now);
                    return ReadOutcome::Ended;
                }
            }
        }
        ReadOutcome::Budget
    }
}

fn token_of(conn: ConnId) -> Token {
    Token(conn.0 as usize)
}

fn conn_of(token: Token) -> ConnId {
    ConnId(token.0 as u64)
}
