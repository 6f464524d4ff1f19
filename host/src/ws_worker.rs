//! Outbound WebSockets for the core's [`Work::WsOpen`](clawgate_core::Work::WsOpen) (a
//! channel's socket, such as Discord's Gateway): one thread per socket connects (DNS, TCP,
//! `wss://` through rustls as [`crate::tls`] sets it up; plain `ws://` only to loopback
//! addresses), upgrades with tungstenite, reports [`WorkResult::WsOpened`], then reads with a
//! short timeout so frames the loop asks to send ([`WsWorkers::send`]) leave within
//! [`POLL_INTERVAL`], reporting each text message as [`WorkResult::WsText`] and the end as
//! exactly one [`WorkResult::WsClosed`]. Messages over the core's size bound close the
//! socket. Nothing here runs on the event loop.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use clawgate_core::model::http1::{Scheme, Target};
use clawgate_core::{WorkId, WorkResult, WsOpen};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::http_worker::{HttpLimits, Running, open};
use crate::tls::Stream;

/// How long a socket's read waits before the thread looks for frames to send.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The stack of a socket thread.
const STACK_BYTES: usize = 512 * 1024;
/// The read buffer of a socket (tungstenite's default is 128 KiB, zero-filled per read).
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Where results go: called on socket threads, must not block.
type Report = Arc<dyn Fn(WorkId, WorkResult) + Send + Sync>;

/// What the loop asks of a socket.
enum Ask {
    Text(String),
    Close(u16),
}

struct Socket {
    asks: Sender<Ask>,
    running: Arc<Running>,
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
        let (asks, inbox) = mpsc::channel();
        let running = Arc::new(Running::default());
        let (report, limits, thread_running) = (self.report.clone(), self.limits, running.clone());
        let spawned = std::thread::Builder::new()
            .name("clawgate-ws".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let (code, reason) =
                    match session(id, &open, &limits, &thread_running, &inbox, &report) {
                        Ok(end) => end,
                        Err(e) => (None, e),
                    };
                thread_running.cancel();
                report(id, WorkResult::WsClosed { code, reason });
            });
        match spawned {
            Ok(_) => {
                self.sockets.insert(id, Socket { asks, running });
            }
            Err(e) => (self.report)(
                id,
                WorkResult::WsClosed {
                    code: None,
                    reason: format!("cannot start a socket thread: {e}"),
                },
            ),
        }
    }

    /// Send a text frame on socket `id` (ignored once it is closed).
    pub fn send(&self, id: WorkId, text: String) {
        if let Some(s) = self.sockets.get(&id) {
            let _ = s.asks.send(Ask::Text(text));
        }
    }

    /// Close socket `id` with `code`.
    pub fn close(&mut self, id: WorkId, code: u16) {
        if let Some(s) = self.sockets.remove(&id)
            && s.asks.send(Ask::Close(code)).is_err()
        {
            s.running.cancel();
        }
    }

    /// Close every socket (at shutdown): their threads end on their own.
    pub fn shutdown(&mut self) {
        for (_, s) in self.sockets.drain() {
            s.running.cancel();
        }
    }
}

/// Whether `host` is a loopback name or address.
fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Connect, upgrade, then pump frames both ways until the socket ends: the peer's close
/// code and reason, or what failed.
fn session(
    id: WorkId,
    open_ws: &WsOpen,
    limits: &HttpLimits,
    running: &Running,
    asks: &Receiver<Ask>,
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
    running.set_read_timeout(Some(POLL_INTERVAL));
    loop {
        if running.is_cancelled() {
            return Ok((None, "closed by the gateway".into()));
        }
        match asks.try_recv() {
            Ok(Ask::Text(text)) => {
                ws.send(Message::text(text)).map_err(|e| e.to_string())?;
                continue;
            }
            Ok(Ask::Close(code)) => {
                close(&mut ws, code);
                return Ok((None, "closed by the gateway".into()));
            }
            Err(TryRecvError::Disconnected) => {
                close(&mut ws, 1000);
                return Ok((None, "closed by the gateway".into()));
            }
            Err(TryRecvError::Empty) => {}
        }
        match ws.read() {
            Ok(Message::Text(text)) => report(id, WorkResult::WsText(text.as_str().to_owned())),
            Ok(Message::Close(frame)) => {
                let _ = ws.flush();
                return Ok(match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                    None => (None, "closed by the peer".into()),
                });
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok((None, "closed by the peer".into()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Send a close frame with `code`, best effort.
fn close(ws: &mut WebSocket<Stream>, code: u16) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    let _ = ws.close(Some(frame));
    let _ = ws.flush();
}
