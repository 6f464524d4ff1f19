//! The bare baseline: a minimal mio + tungstenite server with no JSON, no auth and no state.
//! It puts the gateway's bytes on the wire without the logic behind them: after the upgrade it
//! sends a captured `connect.challenge`, answers a `connect` request with a captured `hello-ok`
//! and any other request with a captured `health` answer (the request id spliced in, found by a
//! byte search), and broadcasts a captured `tick` (its timestamp spliced in) to every open
//! socket on an interval ([`crate::canned`]). The load generator's client and its work are then
//! the same for the baseline as for the gateway: the practical limit of the gateway's stack,
//! run as its own process.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tungstenite::handshake::server::{NoCallback, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::{Message, WebSocket};

use crate::canned::{Canned, request_id};
use crate::error::{BenchError, Context};
use crate::wire::small_ws_config;

const LISTENER: Token = Token(usize::MAX);

enum Peer {
    Handshaking(MidHandshake<ServerHandshake<TcpStream, NoCallback>>),
    Open(WebSocket<TcpStream>),
}

/// How the baseline server runs.
pub struct BareOptions {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Broadcast interval.
    pub tick: Duration,
    /// The server exits after this long whatever happens.
    pub lifetime: Duration,
    /// The frames it sends.
    pub canned: Canned,
}

/// Whether a request frame is `connect` (the bench's client writes `method` right after `id`).
const CONNECT: &str = "\"method\":\"connect\"";

/// Serve until `lifetime` has passed.
pub fn serve(opts: &BareOptions) -> Result<(), BenchError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let mut listener = TcpListener::bind(addr).context("bind the baseline listener")?;
    let mut poll = Poll::new().context("create a poll")?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .context("register the listener")?;
    let mut events = Events::with_capacity(1024);
    let mut peers: HashMap<usize, Peer> = HashMap::new();
    let mut next_key = 0usize;
    let canned = &opts.canned;
    let end = Instant::now() + opts.lifetime;
    let mut next_tick = Instant::now() + opts.tick;
    while Instant::now() < end {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(wait)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r.context("poll")?,
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(&listener, &poll, &mut peers, &mut next_key, canned);
                continue;
            }
            let key = ev.token().0;
            if let Some(peer) = peers.remove(&key)
                && let Some(peer) = drive(peer, ev.is_writable(), canned)
            {
                peers.insert(key, peer);
            }
        }
        if Instant::now() >= next_tick {
            next_tick += opts.tick;
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let text = canned.tick.with(&ms.to_string());
            peers.retain(|_, p| match p {
                Peer::Open(ws) => !is_fatal(ws.send(Message::text(text.clone()))),
                Peer::Handshaking(_) => true,
            });
        }
    }
    Ok(())
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    peers: &mut HashMap<usize, Peer>,
    next_key: &mut usize,
    canned: &Canned,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let key = *next_key;
        *next_key += 1;
        let _ = stream.set_nodelay(true);
        let registered = poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            continue;
        }
        if let Some(peer) = upgraded(
            tungstenite::accept_with_config(stream, Some(small_ws_config())),
            canned,
        ) {
            peers.insert(key, peer);
        }
    }
}

/// The peer after a handshake step (the challenge sent once it is open), or `None` when it
/// failed.
fn upgraded(
    r: Result<WebSocket<TcpStream>, HandshakeError<ServerHandshake<TcpStream, NoCallback>>>,
    canned: &Canned,
) -> Option<Peer> {
    match r {
        Ok(mut ws) => {
            if is_fatal(ws.send(Message::text(canned.challenge.as_str()))) {
                return None;
            }
            drive(Peer::Open(ws), false, canned)
        }
        Err(HandshakeError::Interrupted(mid)) => Some(Peer::Handshaking(mid)),
        Err(HandshakeError::Failure(_)) => None,
    }
}

/// Read, answer and flush; `None` when the connection is over.
fn drive(peer: Peer, writable: bool, canned: &Canned) -> Option<Peer> {
    let mut ws = match peer {
        Peer::Handshaking(mid) => return upgraded(mid.handshake(), canned),
        Peer::Open(ws) => ws,
    };
    if writable && is_fatal(ws.flush()) {
        return None;
    }
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let id = request_id(t.as_str()).unwrap_or("");
                let answer = if t.as_str().contains(CONNECT) {
                    canned.hello_ok.with(id)
                } else {
                    canned.health.with(id)
                };
                if is_fatal(ws.send(Message::text(answer))) {
                    return None;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Some(Peer::Open(ws));
            }
            Err(_) => return None,
        }
    }
}

/// Whether a write result means the connection is gone (`WouldBlock` only defers the bytes).
fn is_fatal(r: tungstenite::Result<()>) -> bool {
    match r {
        Ok(()) => false,
        Err(tungstenite::Error::Io(e)) => e.kind() != io::ErrorKind::WouldBlock,
        Err(_) => true,
    }
}
