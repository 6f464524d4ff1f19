//! The driver: the one task that owns the [`Gateway`]. Everything that happens (a socket
//! accepted, bytes read, bytes written, EOF, an order) reaches it as an [`Event`] on one
//! queue; a deadline ([`Alarm`]), a signal or a worker thread's input wakes it directly. After each it
//! drains the core's outputs: bytes to the sockets' writers, logs and snapshots to the
//! [`Host`].

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use clawgate_core::{Config, ConnId, ConnMap, Gateway, Level, Output};
use clawgate_host::Host;
use clawgate_host::logging::unix_ms;
use clawgate_host::shell::{WindDown, absorb, note, take_worker_inputs};
use clawgate_host::sockets::{ACCEPT_BACKOFF, AcceptThrottle, AfterFailure, accepted_local};
use smol::channel::{Receiver, Sender};
use smol::{Executor, Timer, future};

use crate::alarm::Alarm;
use crate::clients::{Poller, Registered};
use crate::readiness::{Flag, Readiness};
use crate::socket::{GATHER_LIMIT, Socket};

/// Events queued for the driver at most; readers wait when it is full.
const EVENT_QUEUE: usize = 1024;
/// Events handled per turn of the driver before deadlines and the core's backlog.
const EVENTS_PER_TURN: usize = 64;
/// Bytes the driver writes to sockets itself per turn; past them, frames go through the
/// sockets' writer tasks (see [`Socket::flush`]).
const DIRECT_BYTES_PER_TURN: usize = 256 * 1024;

/// Orders from the embedding program.
#[derive(Debug)]
pub enum Control {
    /// Send `shutdown`, close every socket, and return from [`serve`].
    Shutdown,
    /// Apply a new configuration.
    Reload(Box<Config>),
}

/// Something that happened, for the driver.
pub(crate) enum Event {
    Accepted(Registered<TcpStream>, SocketAddr),
    /// A log line of the shell's own.
    Note(Level, String),
    Data(ConnId, Vec<u8>),
    Written(ConnId, usize),
    Eof(ConnId),
    Control(Control),
}

/// Serve `listener` with `gw` until the gateway is shut down (by [`Control::Shutdown`] on
/// `control`, or by the host's signals); then stop listening, give the sockets
/// [`SHUTDOWN_GRACE`](clawgate_host::sockets::SHUTDOWN_GRACE) to flush, let the host's workers
/// finish, and return. Tasks are spawned on `ex`, which the caller runs.
pub async fn serve<H: Host>(
    ex: &Executor<'_>,
    listener: std::net::TcpListener,
    gw: Gateway,
    host: &mut H,
    control: Receiver<Control>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let poller = Arc::new(Poller::new()?);
    let mut clients = Readiness::new(poller.fd()?)?;
    let listener = Registered::new(listener, &poller)?;
    let signals = match host.signals() {
        Some(s) => Some(Readiness::new(s.try_clone()?.into())?),
        None => None,
    };
    let host_sockets = match host.sockets() {
        Some(fd) => Some(Readiness::new(fd.try_clone_to_owned()?)?),
        None => None,
    };
    // One pending wake is enough: the driver takes everything queued when it wakes. A flag,
    // not a channel: a channel's send woke the driver while it held the channel's lock, and
    // the driver, woken, waited on that lock (a second wake-up per worker input).
    let workers = Arc::new(Flag::default());
    let raise = workers.clone();
    host.inbox().set_wake(move || raise.raise());
    let (events_tx, events) = smol::channel::bounded(EVENT_QUEUE);
    let (alive, sockets_done) = smol::channel::bounded::<()>(1);
    let acceptor = ex.spawn(accept_loop(listener, poller.clone(), events_tx.clone()));
    let _orders = ex.spawn(forward_orders(control, events_tx.clone()));
    let mut driver = Driver {
        ex,
        gw,
        host,
        local,
        sockets: ConnMap::default(),
        gathering: Vec::new(),
        unpermitted: Vec::new(),
        events_tx,
        alive,
        direct_budget: DIRECT_BYTES_PER_TURN,
    };
    let wakes = Wakes {
        events: &events,
        signals,
        workers: &workers,
        host_sockets,
        clients: (&mut clients, &poller),
    };
    driver.run(wakes).await;
    drop(acceptor);
    driver
        .wind_down(&events, &sockets_done, (&mut clients, &poller))
        .await;
    Ok(())
}

async fn accept_loop(
    listener: Registered<TcpListener>,
    poller: Arc<Poller>,
    events: Sender<Event>,
) {
    let mut throttle = AcceptThrottle::default();
    loop {
        let accepted = listener
            .read_with(|l| l.accept())
            .await
            .and_then(|(s, peer)| {
                s.set_nonblocking(true)?;
                Ok((Registered::new(s, &poller)?, peer))
            });
        let (line, event) = match accepted {
            Ok((stream, peer)) => (throttle.accepted(), Some(Event::Accepted(stream, peer))),
            Err(e) => {
                let (after, line) = throttle.failed(&e);
                if after == AfterFailure::Pause {
                    Timer::after(ACCEPT_BACKOFF).await;
                }
                (line, None)
            }
        };
        for event in line
            .map(|(level, message)| Event::Note(level, message))
            .into_iter()
            .chain(event)
        {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

async fn forward_orders(control: Receiver<Control>, events: Sender<Event>) {
    while let Ok(order) = control.recv().await {
        if events.send(Event::Control(order)).await.is_err() {
            return;
        }
    }
}

/// Until `watch` says its descriptor may be readable; never, if there is none.
async fn ready(watch: Option<&mut Readiness>) {
    match watch {
        Some(w) => w.ready().await,
        None => future::pending().await,
    }
}

/// What wakes the driver besides its deadline.
struct Wakes<'a> {
    events: &'a Receiver<Event>,
    signals: Option<Readiness>,
    /// Raised by the worker threads ([`Host::inbox`]).
    workers: &'a Flag,
    /// The host's own sockets ([`Host::sockets`]).
    host_sockets: Option<Readiness>,
    /// The clients' poller, and its descriptor's readiness.
    clients: (&'a mut Readiness, &'a Poller),
}

struct Driver<'e, 'x, 'h, H> {
    ex: &'e Executor<'x>,
    gw: Gateway,
    host: &'h mut H,
    local: SocketAddr,
    /// Each open socket's tasks; the core's connection ids are the keys.
    sockets: ConnMap<ConnId, Socket>,
    /// Sockets with frames gathered this turn, to flush before the driver waits.
    gathering: Vec<ConnId>,
    /// Sockets whose reader waits for a permit until the core wants more of their input.
    unpermitted: Vec<ConnId>,
    events_tx: Sender<Event>,
    /// Every socket's tasks hold a clone; the receiver sees the channel close when all are
    /// done.
    alive: Sender<()>,
    /// What the driver may still write itself this turn, in bytes.
    direct_budget: usize,
}

enum Wake {
    Event(Event),
    Deadline,
    Signals,
    Workers,
    HostSockets,
    Clients,
}

impl<H: Host> Driver<'_, '_, '_, H> {
    /// Drive the core until it is draining.
    async fn run(&mut self, wakes: Wakes<'_>) {
        let Wakes {
            events,
            mut signals,
            workers,
            mut host_sockets,
            clients: (clients, poller),
        } = wakes;
        let mut deadline = self.drain(Instant::now());
        let mut alarm = Alarm::new(deadline);
        while !self.gw.is_draining() {
            // The host's deferred work (log lines written in batches, memory returned after a
            // burst): wake for it if nothing else comes.
            let wake_at = [
                self.host.before_wait(Instant::now()),
                self.host.sockets_due(),
            ]
            .into_iter()
            .flatten()
            .fold(deadline, Instant::min);
            alarm.set(wake_at);
            // `race`, not `or`: under a flood the event queue is always ready, and polling it
            // first would starve the workers (a store ack a hello-ok waits for), signals and
            // the deadline.
            let wake = future::race(
                future::race(
                    async { events.recv().await.map_or(Wake::Deadline, Wake::Event) },
                    async {
                        alarm.ring().await;
                        Wake::Deadline
                    },
                ),
                future::race(
                    async {
                        ready(signals.as_mut()).await;
                        Wake::Signals
                    },
                    future::race(
                        async {
                            workers.wait().await;
                            Wake::Workers
                        },
                        future::race(
                            async {
                                ready(host_sockets.as_mut()).await;
                                Wake::HostSockets
                            },
                            async {
                                clients.ready().await;
                                Wake::Clients
                            },
                        ),
                    ),
                ),
            )
            .await;
            let now = Instant::now();
            self.direct_budget = DIRECT_BYTES_PER_TURN;
            self.gw.handle_wall_clock(now, unix_ms());
            let mut host_sockets_due = self.host.sockets_due().is_some_and(|due| due <= now);
            match wake {
                Wake::Deadline => {}
                Wake::HostSockets => host_sockets_due = true,
                Wake::Signals => self.host.on_signals(&mut self.gw, now),
                Wake::Workers => take_worker_inputs(self.host, &mut self.gw, now),
                // The socket tasks woken run when this turn yields.
                Wake::Clients => poller.dispatch(),
                Wake::Event(event) => self.handle(now, event),
            }
            if host_sockets_due {
                self.host.on_sockets(&mut self.gw, now);
            }
            // One turn takes what is queued (up to a bound), as a poll turn of mio does: the
            // backlog's round below then comes once per turn, not once per event.
            for _ in 1..EVENTS_PER_TURN {
                let Ok(event) = events.try_recv() else { break };
                self.handle(now, event);
            }
            // Also when events never stop coming: a deadline (the backlog's next round) is
            // not starved by a busy queue.
            if now >= deadline {
                self.gw.handle_timeout(now);
            }
            deadline = self.drain(now);
            self.permit_readers();
            // Let the socket tasks run between turns even when the queue never empties.
            future::yield_now().await;
        }
    }

    fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::Accepted(stream, peer) => self.accept(now, stream, peer),
            Event::Note(level, message) => note(self.host, level, message),
            Event::Data(id, bytes) => {
                self.gw.handle_input(now, id, &bytes);
                self.unpermitted.push(id);
            }
            Event::Written(id, n) => self.gw.handle_written(now, id, n),
            Event::Eof(id) => self.gw.handle_closed(now, id),
            Event::Control(Control::Reload(config)) => self.gw.reload(now, *config),
            Event::Control(Control::Shutdown) => self.gw.shutdown(now),
        }
    }

    fn accept(&mut self, now: Instant, stream: Registered<TcpStream>, peer: SocketAddr) {
        // Frames are small and written whole: Nagle would only delay them.
        let _ = stream.get_ref().set_nodelay(true);
        let local = accepted_local(self.local, || stream.get_ref().local_addr());
        let id = self.gw.accept(now, peer, local);
        let socket = Socket::spawn(self.ex, id, stream, self.events_tx.clone(), &self.alive);
        self.sockets.insert(id, socket);
    }

    /// Let the readers whose input the core has worked through read their next chunk.
    fn permit_readers(&mut self) {
        let (gw, sockets) = (&self.gw, &self.sockets);
        self.unpermitted.retain(|id| {
            let Some(socket) = sockets.get(id) else {
                return false;
            };
            let go = gw.wants_input(*id);
            if go {
                socket.permit();
            }
            !go
        });
    }

    /// Act on the core's outputs until it asks to sleep; returns the deadline. The frames for
    /// one socket are gathered and written together once the core has no more outputs, or
    /// asks for work, or [`GATHER_LIMIT`] of them wait, so a turn that sends a connection
    /// several frames (a model delta's `agent` and `chat` events) costs it one write.
    fn drain(&mut self, now: Instant) -> Instant {
        loop {
            let output = self.gw.poll_output();
            // What the core transmitted before it asked for work goes out before the work
            // starts, as on the mio shell: a store commit wakes the writer thread, which
            // would otherwise take the second core before the frames' reader wakes (the
            // writev waiting for the rest of the turn: measured, an agent turn's `chat`
            // final 0.15 ms later at p50).
            if matches!(output, Output::Work { .. }) {
                self.flush_gathered(now);
            }
            match absorb(self.host, &mut self.gw, now, output) {
                Some(Output::Transmit { conn, data }) => {
                    self.host.transmitted(data.len());
                    let Some(socket) = self.sockets.get_mut(&conn) else {
                        continue;
                    };
                    if socket.queue(data) {
                        self.gathering.push(conn);
                    }
                    if socket.gathered_bytes() >= GATHER_LIMIT {
                        self.flush(now, conn);
                    }
                }
                Some(Output::Discard { conn }) => {
                    if let Some(socket) = self.sockets.get_mut(&conn) {
                        socket.discard();
                    }
                }
                Some(Output::Close { conn }) => {
                    // The socket writes what it gathered, flushes, half-closes and closes on
                    // its own.
                    self.sockets.remove(&conn);
                }
                // What was written may let the core send more: drain again.
                Some(Output::Timeout(_)) if !self.gathering.is_empty() => self.flush_gathered(now),
                Some(Output::Timeout(at)) => return at,
                Some(other) => {
                    debug_assert!(false, "unhandled core output {other:?}");
                    note(
                        self.host,
                        Level::Warn,
                        format!("unhandled core output {other:?}"),
                    );
                }
                None => {}
            }
        }
    }

    /// Write the frames gathered for every socket.
    fn flush_gathered(&mut self, now: Instant) {
        for conn in std::mem::take(&mut self.gathering) {
            self.flush(now, conn);
        }
    }

    /// Write the frames gathered for `conn` and tell the core what went out.
    fn flush(&mut self, now: Instant, conn: ConnId) {
        let budget = &mut self.direct_budget;
        let sent = self.sockets.get_mut(&conn).map_or(0, |s| s.flush(budget));
        if sent > 0 {
            self.gw.handle_written(now, conn, sent);
        }
    }

    /// After shutdown: keep the queue moving and the clients' poller dispatched while the
    /// sockets flush and see their peers' EOF, for at most the wind-down's grace.
    async fn wind_down(
        self,
        events: &Receiver<Event>,
        sockets_done: &Receiver<()>,
        (clients, poller): (&mut Readiness, &Poller),
    ) {
        let Driver {
            host,
            alive,
            sockets,
            ..
        } = self;
        drop((alive, sockets));
        // The goodbye frames are queued: the sockets flush while the host winds down.
        let wind_down = WindDown::begin(host, Instant::now());
        let flushed = future::or(
            async {
                // Socket tasks may wait on a full queue; what they report no longer matters.
                while events.recv().await.is_ok() {}
                false
            },
            future::or(
                async { sockets_done.recv().await.is_err() },
                future::or(
                    async {
                        Timer::at(wind_down.deadline()).await;
                        false
                    },
                    async {
                        loop {
                            clients.ready().await;
                            poller.dispatch();
                        }
                    },
                ),
            ),
        )
        .await;
        let unflushed = if flushed {
            0
        } else {
            sockets_done.sender_count()
        };
        wind_down.finish(host, unflushed);
    }
}
