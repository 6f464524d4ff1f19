//! The bare baseline: a minimal mio + tungstenite server with no JSON, no auth and next to no
//! state. It puts the gateway's bytes on the wire without the logic behind them: after the
//! upgrade it sends a captured `connect.challenge`, answers a `connect` request with a captured
//! `hello-ok` and any other request with a captured `health` answer (the request id spliced
//! in, found by a byte search), and broadcasts a captured `tick` (its timestamp spliced in) to
//! every open socket on an interval ([`crate::canned`]). It relays `node.invoke` as the gateway
//! does, with the gateway's captured frames ([`Relay`]). The load generator's client and its
//! work are then the same for the baseline as for the gateway: the practical limit of the
//! gateway's stack, run as its own process.

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
/// Whether a `connect` is a node's.
const ROLE_NODE: &str = "\"role\":\"node\"";
/// Whether a request frame is an operator's `node.invoke` (the closing quote leaves out
/// `node.invoke.result`).
const INVOKE: &str = "\"method\":\"node.invoke\"";
/// Whether a request frame is the node's `node.invoke.result`.
const INVOKE_RESULT: &str = "\"method\":\"node.invoke.result\"";
/// Where a request's params start (the bench's client writes them after `method`).
const PARAMS: &str = "\"params\":";

/// What the baseline answers, and on which connection: a request's canned answer on its own,
/// and `node.invoke` relayed as the gateway relays it (operator → node, then the node's result
/// → operator, each answer to the request it answers), with the gateway's frames.
#[derive(Default)]
pub struct Relay {
    /// The connection whose `connect` said it is a node (the latest).
    node: Option<usize>,
    /// Invocations sent to the node and not answered: their id → the operator's connection
    /// and request id.
    pending: HashMap<String, (usize, String)>,
    /// Invocations sent so far (their ids are made from it).
    sent: u64,
}

impl Relay {
    /// Append to `out` the frames to send for the text frame `text` read on connection
    /// `key`: (connection, text), in the order the gateway sends them. An operator's
    /// `node.invoke` with no node connected, and a result for no pending invocation, get
    /// only what the node's own request needs (the gateway would answer an error).
    pub fn on_text(
        &mut self,
        key: usize,
        text: &str,
        canned: &Canned,
        out: &mut Vec<(usize, String)>,
    ) {
        let id = request_id(text).unwrap_or("");
        if text.contains(CONNECT) {
            if text.contains(ROLE_NODE) {
                self.node = Some(key);
            }
            out.push((key, canned.hello_ok.with(id)));
        } else if text.contains(INVOKE) {
            if let Some(node) = self.node {
                self.sent += 1;
                // Shaped as the gateway's UUIDs, so the frame keeps its size.
                let invoke = format!("00000000-0000-4000-8000-{:012x}", self.sent);
                out.push((node, canned.invoke_request.with(&invoke)));
                self.pending.insert(invoke, (key, id.to_string()));
            }
        } else if text.contains(INVOKE_RESULT) {
            let invoke = params_id(text).unwrap_or("");
            if let Some((op, op_id)) = self.pending.remove(invoke) {
                out.push((op, canned.invoke_answer.with(&op_id)));
            }
            out.push((key, canned.invoke_ack.with(id)));
        } else {
            out.push((key, canned.health.with(id)));
        }
    }
}

/// The `id` in a request's params (`node.invoke.result`'s invocation id: the bench's client
/// writes params' keys sorted, `id` first), found by a byte search.
fn params_id(frame: &str) -> Option<&str> {
    let params = frame.find(PARAMS)? + PARAMS.len();
    request_id(frame.get(params..)?)
}

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
    let mut relay = Relay::default();
    let mut relayed = Vec::new();
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
            let mut on = On {
                canned,
                relay: &mut relay,
                out: &mut relayed,
            };
            if ev.token() == LISTENER {
                accept_all(&listener, &poll, &mut peers, &mut next_key, &mut on);
            } else {
                let key = ev.token().0;
                if let Some(peer) = peers.remove(&key)
                    && let Some(peer) = drive(peer, key, ev.is_writable(), &mut on)
                {
                    peers.insert(key, peer);
                }
            }
            for (to, text) in relayed.drain(..) {
                if let Some(Peer::Open(ws)) = peers.get_mut(&to)
                    && is_fatal(ws.send(Message::text(text)))
                {
                    peers.remove(&to);
                }
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

/// What handling a connection's frames needs beside the connection: the frames to answer
/// with, the relay's state, and the frames to send (on any connection, in order), which the
/// loop sends once the connection is back in its table.
struct On<'a> {
    canned: &'a Canned,
    relay: &'a mut Relay,
    out: &'a mut Vec<(usize, String)>,
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    peers: &mut HashMap<usize, Peer>,
    next_key: &mut usize,
    on: &mut On<'_>,
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
            key,
            on,
        ) {
            peers.insert(key, peer);
        }
    }
}

/// The peer after a handshake step (the challenge sent once it is open), or `None` when it
/// failed.
fn upgraded(
    r: Result<WebSocket<TcpStream>, HandshakeError<ServerHandshake<TcpStream, NoCallback>>>,
    key: usize,
    on: &mut On<'_>,
) -> Option<Peer> {
    match r {
        Ok(mut ws) => {
            if is_fatal(ws.send(Message::text(on.canned.challenge.as_str()))) {
                return None;
            }
            drive(Peer::Open(ws), key, false, on)
        }
        Err(HandshakeError::Interrupted(mid)) => Some(Peer::Handshaking(mid)),
        Err(HandshakeError::Failure(_)) => None,
    }
}

/// Flush and read connection `key`; the frames to send for what it read (on it or on
/// others) go to `on.out`. `None` when the connection is over.
fn drive(peer: Peer, key: usize, writable: bool, on: &mut On<'_>) -> Option<Peer> {
    let mut ws = match peer {
        Peer::Handshaking(mid) => return upgraded(mid.handshake(), key, on),
        Peer::Open(ws) => ws,
    };
    if writable && is_fatal(ws.flush()) {
        return None;
    }
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => on.relay.on_text(key, t.as_str(), on.canned, on.out),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canned::Template;

    /// Frames that say what they are and what was spliced in.
    fn canned() -> Canned {
        let t = |name: &str| Template {
            before: format!("{name}("),
            after: ")".into(),
        };
        Canned {
            challenge: "challenge".into(),
            hello_ok: t("hello"),
            health: t("health"),
            tick: t("tick"),
            invoke_request: t("request"),
            invoke_ack: t("ack"),
            invoke_answer: t("answer"),
        }
    }

    fn req(id: &str, method: &str, params: &str) -> String {
        format!(r#"{{"type":"req","id":"{id}","method":"{method}","params":{params}}}"#)
    }

    /// The frames sent for `text` read on `key`.
    fn on(relay: &mut Relay, key: usize, text: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        relay.on_text(key, text, &canned(), &mut out);
        out
    }

    /// The invocation id in a `request(…)` frame of [`canned`].
    fn invoke_id(frame: &str) -> &str {
        frame
            .strip_prefix("request(")
            .and_then(|f| f.strip_suffix(')'))
            .unwrap()
    }

    #[test]
    fn each_invoke_is_answered_to_its_operator_with_its_request_id() {
        let mut r = Relay::default();
        let node = 5;
        let connect = req("1", "connect", r#"{"role":"node","scopes":[]}"#);
        assert_eq!(on(&mut r, node, &connect), [(node, "hello(1)".into())]);
        assert_eq!(
            on(&mut r, 1, &req("1", "connect", r#"{"role":"operator"}"#)),
            [(1, "hello(1)".into())]
        );
        // Two operators' invocations reach the node, each with an id of its own.
        let a = on(&mut r, 1, &req("7", "node.invoke", r#"{"command":"x"}"#));
        let b = on(&mut r, 2, &req("9", "node.invoke", r#"{"command":"x"}"#));
        let (a, b) = (invoke_id(&a[0].1), invoke_id(&b[0].1));
        assert_eq!((r.pending.len(), a == b), (2, false));
        // The node answers the second first: each answer goes to the operator that asked,
        // with that operator's request id, before the node's own acknowledgement.
        let result = |id: &str, inv: &str| {
            req(
                id,
                "node.invoke.result",
                &format!(r#"{{"id":"{inv}","ok":true}}"#),
            )
        };
        assert_eq!(
            on(&mut r, node, &result("3", b)),
            [(2, "answer(9)".into()), (node, "ack(3)".into())]
        );
        assert_eq!(
            on(&mut r, node, &result("4", a)),
            [(1, "answer(7)".into()), (node, "ack(4)".into())]
        );
        // A result for no pending invocation is only acknowledged.
        assert_eq!(on(&mut r, node, &result("5", a)), [(node, "ack(5)".into())]);
        // Any other request gets the health answer, on its own connection.
        assert_eq!(
            on(&mut r, 2, &req("10", "health", "null")),
            [(2, "health(10)".into())]
        );
    }

    #[test]
    fn an_invoke_with_no_node_is_not_relayed() {
        let mut r = Relay::default();
        assert!(on(&mut r, 1, &req("2", "node.invoke", "{}")).is_empty());
        assert!(r.pending.is_empty());
    }

    #[test]
    fn the_params_id_is_not_the_request_id() {
        let f = req("12", "node.invoke.result", r#"{"id":"inv-3","nodeId":"n"}"#);
        assert_eq!(params_id(&f), Some("inv-3"));
        assert_eq!(params_id(&req("12", "health", "null")), None);
    }
}
