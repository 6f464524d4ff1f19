//! The driver: the one task that owns the [`Gateway`]. Everything that happens (a socket
//! accepted, bytes read, bytes written, EOF, a deadline, a signal) reaches it as an
//! [`Event`] on one queue; after each it drains the core's outputs to the sockets' writers.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_core::{Config, ConnId, Gateway, Level, LogRecord, Output};
use smol::channel::{Receiver, Sender};
use smol::net::{Shutdown, TcpListener, TcpStream};
use smol::{Executor, Timer, future};

use crate::socket;

/// How long a closed socket may take to flush its last bytes and see the peer's EOF before
/// it is shut down hard (upstream's `WEBSOCKET_CLOSE_GRACE_MS`). Shutdown waits at most this.
pub const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// Events queued for the driver at most; readers wait when it is full.
const EVENT_QUEUE: usize = 1024;

/// Pause after a failed `accept` (out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the embedding program provides: durable storage and a log sink.
pub trait Host {
    /// Write this pairing-store snapshot durably.
    fn persist(&mut self, store: &[u8]);
    /// Record a log line.
    fn log(&mut self, record: &LogRecord);
}

/// Orders from outside the gateway (signals, an embedding program).
#[derive(Debug)]
pub enum Control {
    /// Send `shutdown`, close every socket, and return from [`serve`].
    Shutdown,
    /// Apply a new configuration.
    Reload(Box<Config>),
}

/// Something that happened, for the driver.
pub(crate) enum Event {
    Accepted(TcpStream, SocketAddr),
    AcceptFailed(io::Error),
    Data(ConnId, Vec<u8>),
    Written(ConnId, usize),
    Eof(ConnId),
    Control(Control),
}

/// The driver's handle on one socket.
struct Link {
    queue: Sender<Vec<u8>>,
    stream: TcpStream,
}

/// Serve `listener` with `gw` until [`Control::Shutdown`] arrives on `control`; then close
/// every socket (waiting at most [`CLOSE_GRACE`] for them to flush) and return. Tasks are
/// spawned on `ex`, which the caller must be running.
pub async fn serve<H: Host>(
    ex: &Executor<'_>,
    listener: std::net::TcpListener,
    gw: Gateway,
    host: H,
    control: Receiver<Control>,
) -> io::Result<()> {
    let listener = TcpListener::try_from(listener)?;
    let local = listener.local_addr()?;
    let (events_tx, events) = smol::channel::bounded(EVENT_QUEUE);
    let (alive, writers_done) = smol::channel::bounded::<()>(1);
    let acceptor = ex.spawn(accept_loop(listener, events_tx.clone()));
    let forwarder = ex.spawn(forward_control(control, events_tx.clone()));
    let mut driver = Driver {
        ex,
        gw,
        host,
        local,
        links: HashMap::new(),
        events_tx,
        alive,
    };
    driver.run(&events).await;
    drop((acceptor, forwarder));
    drop(driver);
    // Every writer holds a clone of `alive`: the channel closes when the last one is done.
    future::or(
        async { while writers_done.recv().await.is_ok() {} },
        async {
            Timer::after(CLOSE_GRACE).await;
        },
    )
    .await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, events: Sender<Event>) {
    loop {
        let event = match listener.accept().await {
            Ok((stream, peer)) => Event::Accepted(stream, peer),
            Err(e) => Event::AcceptFailed(e),
        };
        let failed = matches!(event, Event::AcceptFailed(_));
        if events.send(event).await.is_err() {
            return;
        }
        if failed {
            Timer::after(ACCEPT_BACKOFF).await;
        }
    }
}

async fn forward_control(control: Receiver<Control>, events: Sender<Event>) {
    while let Ok(c) = control.recv().await {
        if events.send(Event::Control(c)).await.is_err() {
            return;
        }
    }
}

struct Driver<'e, 'x, H> {
    ex: &'e Executor<'x>,
    gw: Gateway,
    host: H,
    local: SocketAddr,
    links: HashMap<ConnId, Link>,
    events_tx: Sender<Event>,
    alive: Sender<()>,
}

enum Wake {
    Event(Event),
    Deadline,
}

impl<H: Host> Driver<'_, '_, H> {
    async fn run(&mut self, events: &Receiver<Event>) {
        let mut deadline = self.drain();
        let mut timer = Timer::at(deadline);
        let mut armed = Some(deadline);
        loop {
            if armed != Some(deadline) {
                timer.set_at(deadline);
                armed = Some(deadline);
            }
            let wake = future::or(
                async { events.recv().await.map_or(Wake::Deadline, Wake::Event) },
                async {
                    (&mut timer).await;
                    Wake::Deadline
                },
            )
            .await;
            let now = Instant::now();
            match wake {
                Wake::Deadline => {
                    armed = None;
                    self.gw.handle_timeout(now);
                }
                Wake::Event(Event::Accepted(stream, peer)) => self.accept(now, stream, peer),
                Wake::Event(Event::AcceptFailed(e)) => self.warn(format!("accept failed: {e}")),
                Wake::Event(Event::Data(id, bytes)) => self.gw.handle_input(now, id, &bytes),
                Wake::Event(Event::Written(id, n)) => self.gw.handle_written(now, id, n),
                Wake::Event(Event::Eof(id)) => self.gw.handle_closed(now, id),
                Wake::Event(Event::Control(Control::Reload(config))) => {
                    self.gw.reload(now, *config)
                }
                Wake::Event(Event::Control(Control::Shutdown)) => {
                    self.gw.shutdown(now);
                    self.drain();
                    return;
                }
            }
            deadline = self.drain();
        }
    }

    fn accept(&mut self, now: Instant, stream: TcpStream, peer: SocketAddr) {
        // Frames are small and written whole: Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let id = self.gw.accept(now, peer, self.local);
        let (queue, queued) = smol::channel::unbounded();
        let events = self.events_tx.clone();
        self.ex
            .spawn(socket::read_side(id, stream.clone(), events.clone()))
            .detach();
        self.ex
            .spawn(socket::write_side(
                id,
                stream.clone(),
                queued,
                events,
                self.alive.clone(),
            ))
            .detach();
        self.links.insert(id, Link { queue, stream });
    }

    /// Act on the core's outputs until it asks to sleep; returns the deadline.
    fn drain(&mut self) -> Instant {
        loop {
            match self.gw.poll_output() {
                Output::Transmit { conn, data } => {
                    if let Some(link) = self.links.get(&conn) {
                        // Unbounded: the core caps each connection's unsent bytes itself.
                        let _ = link.queue.try_send(data);
                    }
                }
                Output::Close { conn } => {
                    if let Some(Link { queue, stream }) = self.links.remove(&conn) {
                        // Dropping the queue lets the writer flush and shut the write half;
                        // a peer that does not read gets a hard shutdown after the grace.
                        drop(queue);
                        self.ex
                            .spawn(async move {
                                Timer::after(CLOSE_GRACE).await;
                                let _ = stream.shutdown(Shutdown::Both);
                            })
                            .detach();
                    }
                }
                Output::Persist(bytes) => self.host.persist(&bytes),
                Output::Log(record) => self.host.log(&record),
                Output::Timeout(at) => return at,
            }
        }
    }

    fn warn(&mut self, message: String) {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.host.log(&LogRecord {
            level: Level::Warn,
            ts_ms,
            conn: None,
            message,
        });
    }
}
