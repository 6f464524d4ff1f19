//! Outbound WebSockets for the core's [`Work::WsOpen`](clawgate_core::Work::WsOpen) (a
//! channel's socket, such as Discord's Gateway): one thread per socket connects (DNS, TCP,
//! `wss://` through rustls as [`crate::tls`] sets it up; plain `ws://` only to loopback
//! addresses), upgrades with tungstenite, reports [`WorkResult::WsOpened`], then waits (poll(2),
//! no timeout) until the socket has bytes or the loop asks to send ([`WsWorkers::send`] wakes
//! it through an eventfd), so a frame leaves at once and an idle socket costs no wake-ups,
//! reporting each text message as [`WorkResult::WsText`] and the end as exactly one
//! [`WorkResult::WsClosed`]. A close the gateway asks for waits (poll(2), at most
//! [`CLOSE_FLUSH_WAIT`]) until the socket has taken every queued frame and the close frame, then
//! shuts the socket down. Messages over the core's size bound close the socket. Nothing here
//! runs on the event loop.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use clawgate_core::model::http1::{Scheme, Target};
use clawgate_core::{WorkId, WorkResult, WsOpen};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::connect::{Running, open};
use crate::http_loop::HttpLimits;
use crate::tls::Stream;
use crate::wait::{Wake, wait};

/// The stack of a socket thread.
const STACK_BYTES: usize = 512 * 1024;
/// The read buffer of a socket (tungstenite's default is 128 KiB, zero-filled per read).
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// The longest a closing socket waits for the peer to take the frames still queued and the
/// close frame (its receive window full: a peer that does not read) before it is shut down.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Where results go: called on socket threads, must not block.
type Report = Arc<dyn Fn(WorkId, WorkResult) + Send + Sync>;

/// What the loop asks of a socket.
enum Ask {
    Text(String),
    Close(u16),
}

struct Socket {
    asks: Sender<Ask>,
    /// Written after each ask: the socket's thread waits on it beside the socket.
    wake: Arc<Wake>,
    running: Arc<Running>,
}

impl Socket {
    /// Hand `ask` to the socket's thread and wake it; false when the thread is gone.
    fn ask(&self, ask: Ask) -> bool {
        let sent = self.asks.send(ask).is_ok();
        self.wake.wake();
        sent
    }
}

/// The open sockets.
pub struct WsWorkers {
    sockets: HashMap<WorkId, Socket>,
    report: Report,
    limits: HttpLimits,
}

impl std::fmt::Debug for WsWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWorkers")
            .field("sockets", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

impl WsWorkers {
    /// No sockets yet; `report` gets every result (on a socket thread).
    pub fn new(report: impl Fn(WorkId, WorkResult) + Send + Sync + 'static) -> Self {
        WsWorkers {
            sockets: HashMap::new(),
            report: Arc::new(report),
            limits: HttpLimits::default(),
        }
    }

    /// Open socket `id` on its own thread; a thread that cannot start is reported as the
    /// socket's end.
    pub fn open(&mut self, id: WorkId, open: WsOpen) {
        self.sockets.retain(|_, s| !s.running.is_cancelled());
        let wake = match Wake::new() {
            Ok(wake) => Arc::new(wake),
            Err(e) => return self.not_started(id, e),
        };
        let (asks, inbox) = mpsc::channel();
        let running = Arc::new(Running::default());
        let (report, limits, thread_running) = (self.report.clone(), self.limits, running.clone());
        let thread_wake = wake.clone();
        let spawned = std::thread::Builder::new()
            .name("clawgate-ws".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let asks = Asks {
                    inbox,
                    wake: &thread_wake,
                };
                let (code, reason) =
                    match session(id, &open, &limits, &thread_running, &asks, &report) {
                        Ok(end) => end,
                        Err(e) => (None, e),
                    };
                thread_running.cancel();
                report(id, WorkResult::WsClosed { code, reason });
                drop((asks, thread_running, report));
                // One thread per socket, many at once; glibc keeps their stacks for later
                // threads: with their pages returned.
                crate::allocator::release_stack();
            });
        match spawned {
            Ok(_) => {
                let socket = Socket {
                    asks,
                    wake,
                    running,
                };
                self.sockets.insert(id, socket);
            }
            Err(e) => self.not_started(id, e),
        }
    }

    /// Socket `id`'s thread could not start: report its end.
    fn not_started(&self, id: WorkId, e: io::Error) {
        let reason = format!("cannot start a socket thread: {e}");
        (self.report)(id, WorkResult::WsClosed { code: None, reason });
    }

    /// Send a text frame on socket `id` (ignored once it is closed).
    pub fn send(&self, id: WorkId, text: String) {
        if let Some(s) = self.sockets.get(&id) {
            s.ask(Ask::Text(text));
        }
    }

    /// Close socket `id` with `code`.
    pub fn close(&mut self, id: WorkId, code: u16) {
        if let Some(s) = self.sockets.remove(&id)
            && !s.ask(Ask::Close(code))
        {
            s.running.cancel();
        }
    }

    /// Close every socket (at shutdown): their threads end on their own.
    pub fn shutdown(&mut self) {
        for (_, s) in self.sockets.drain() {
            s.running.cancel();
            s.wake.wake();
        }
    }
}

/// Whether `host` is a loopback name or address.
fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A socket thread's end of its asks: the queue and the wake-up written after each.
struct Asks<'a> {
    inbox: Receiver<Ask>,
    wake: &'a Wake,
}

/// How a socket's pump goes on.
enum Pump {
    /// Wait for the socket (readable; writable too when `true`: frames wait to leave) or an ask.
    Wait(bool),
    /// The socket ended: the peer's close code and reason.
    End(Option<u16>, String),
}

/// Connect, upgrade, then pump frames both ways until the socket ends: the peer's close
/// code and reason, or what failed.
fn session(
    id: WorkId,
    open_ws: &WsOpen,
    limits: &HttpLimits,
    running: &Running,
    asks: &Asks<'_>,
    report: &Report,
) -> Result<(Option<u16>, String), String> {
    let lower = open_ws.url.to_ascii_lowercase();
    let as_http = if let Some(rest) = lower.strip_prefix("wss://").and(open_ws.url.get(6..)) {
        format!("https://{rest}")
    } else if let Some(rest) = lower.strip_prefix("ws://").and(open_ws.url.get(5..)) {
        format!("http://{rest}")
    } else {
        return Err(format!("{} is not a ws:// or wss:// URL", open_ws.url));
    };
    let target = Target::parse(&as_http).map_err(|e| e.to_string())?;
    if target.scheme == Scheme::Http && !loopback(&target.host) {
        return Err(format!(
            "plain ws:// is only allowed to loopback addresses, not {}; use wss://",
            target.host
        ));
    }
    let stream = open(&target, limits, running)?;
    let mut request = open_ws
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{}: {e}", open_ws.url))?;
    for (name, value) in &open_ws.headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header {name}: {e}"))?;
        let value = tungstenite::http::HeaderValue::from_str(value)
            .map_err(|e| format!("header {name}: {e}"))?;
        request.headers_mut().insert(name, value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(open_ws.max_message))
        .max_frame_size(Some(open_ws.max_message));
    let (mut ws, _) = tungstenite::client::client_with_config(request, stream, Some(config))
        .map_err(|e| {
            format!(
                "WebSocket upgrade with {}:{} failed: {e}",
                target.host, target.port
            )
        })?;
    report(id, WorkResult::WsOpened);
    // From here the socket does not block: the thread waits in poll(2) for it or an ask.
    ws.get_ref()
        .tcp()
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    loop {
        if running.is_cancelled() {
            return Ok((None, "closed by the gateway".into()));
        }
        let writable = match pump(&mut ws, id, asks, report)? {
            Pump::Wait(writable) => writable,
            Pump::End(code, reason) => return Ok((code, reason)),
        };
        let mut interest = PollFlags::IN;
        if writable {
            interest |= PollFlags::OUT;
        }
        wait(ws.get_ref().tcp(), interest, Some(asks.wake), None)
            .map_err(|e| format!("poll: {e}"))?;
    }
}

/// Send what the loop asked, then read every message the socket has: how to go on.
fn pump(
    ws: &mut WebSocket<Stream>,
    id: WorkId,
    asks: &Asks<'_>,
    report: &Report,
) -> Result<Pump, String> {
    let closed = || Pump::End(None, "closed by the gateway".into());
    loop {
        match asks.inbox.try_recv() {
            // Queued; the flush below sends it, or waits for the socket to take it.
            Ok(Ask::Text(text)) => match ws.write(Message::text(text)) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.to_string()),
            },
            Ok(Ask::Close(code)) => {
                close(ws, code);
                return Ok(closed());
            }
            Err(TryRecvError::Disconnected) => {
                close(ws, 1000);
                return Ok(closed());
            }
            Err(TryRecvError::Empty) => break,
        }
    }
    let writable = match ws.flush() {
        Ok(()) => false,
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(e) => return Err(e.to_string()),
    };
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => report(id, WorkResult::WsText(text.as_str().to_owned())),
            Ok(Message::Close(frame)) => {
                // Our answering close frame, queued by tungstenite.
                flush_within(ws, Instant::now() + CLOSE_FLUSH_WAIT);
                return Ok(match frame {
                    Some(f) => Pump::End(Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                    None => Pump::End(None, "closed by the peer".into()),
                });
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Pump::Wait(writable));
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(Pump::End(None, "closed by the peer".into()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Send a close frame with `code` after the frames still queued, waiting at most
/// [`CLOSE_FLUSH_WAIT`] for the socket to take them, then shut the socket down: best effort.
fn close(ws: &mut WebSocket<Stream>, code: u16) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    // Queued even when the socket takes none of it now.
    let _ = ws.close(Some(frame));
    flush_within(ws, Instant::now() + CLOSE_FLUSH_WAIT);
    let _ = ws.get_ref().tcp().shutdown(Shutdown::Write);
}

/// Write what is queued (tungstenite's frames, then rustls's records), waiting in poll(2) for
/// the socket to take more, until it is all written, writing fails or `deadline` passes.
fn flush_within(ws: &mut WebSocket<Stream>, deadline: Instant) {
    loop {
        match ws.flush() {
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return,
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        if wait(ws.get_ref().tcp(), PollFlags::OUT, None, Some(left)).is_err() {
            return;
        }
    }
}
