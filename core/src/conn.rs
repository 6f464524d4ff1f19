//! One connection: its HTTP head buffer, then its WebSocket context over an in-memory
//! read/write adapter, its handshake state and, after `hello-ok`, its session.

use core::net::{IpAddr, SocketAddr};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};

use tungstenite::protocol::{Role as WsRole, WebSocketConfig, WebSocketContext};

use crate::frame_tally::FrameTally;
use crate::handshake::ClientInfo;
use crate::scopes::Role;

/// Identifies a connection between the core and its shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hashes a connection id (or a shell's token for one) by one multiplication: ids are handed
/// out in sequence by the gateway, never chosen by a peer, so the maps keyed by them need no
/// keyed SipHash (several lookups per request). The multiplier (2^64 / golden ratio) spreads
/// sequential ids over the high bits the hash table's tags are taken from.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64((self.0 << 8) | u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by connection id (or a shell's token for one), hashed by [`ConnIdHasher`].
pub type ConnMap<K, V> = HashMap<K, V, BuildHasherDefault<ConnIdHasher>>;

/// The in-memory stream a tungstenite `WebSocketContext` runs over in a sans-IO driver: bytes
/// received are pushed in, bytes to send are taken out. Reads return `WouldBlock` when empty
/// (never `Ok(0)`, which tungstenite would take for EOF).
#[derive(Debug, Default)]
pub struct MemIo {
    pub(crate) rd: VecDeque<u8>,
    pub(crate) wr: Vec<u8>,
    /// The frames of the bytes read so far, and the messages taken from them.
    tally: FrameTally,
}

impl MemIo {
    /// A stream whose first bytes to send are `out` (an HTTP upgrade request, say).
    pub fn with_output(out: Vec<u8>) -> Self {
        Self {
            rd: VecDeque::new(),
            wr: out,
            tally: FrameTally::default(),
        }
    }

    /// Bytes received from the peer, for the WebSocket context to read.
    pub fn push(&mut self, data: &[u8]) {
        self.rd.extend(data);
    }

    /// Everything written so far and not yet taken, if anything.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.wr.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.wr))
        }
    }

    /// The text of the whole unfragmented text frame the bytes received start with, taken
    /// from them, when it is one tungstenite would read as a message of its own and the
    /// stream is between frames (every byte handed to tungstenite was read as whole messages):
    /// masked, no reserved bit, a 7- or 16-bit length within `max_len`, whole in the buffer's
    /// first slice, valid UTF-8. Unmasked in one copy, without tungstenite's zero-filled read
    /// step. `None` (nothing taken) for anything else, which tungstenite then reads.
    pub(crate) fn take_text_frame(&mut self, max_len: usize) -> Option<String> {
        if !self.tally.all_taken() {
            return None;
        }
        let (bytes, _) = self.rd.as_slices();
        let (len, start) = match bytes {
            [FIN_TEXT, b1, ..] if *b1 == MASKED | 126 => {
                let len = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
                (usize::from(len), 4)
            }
            [FIN_TEXT, b1, ..] if b1 & MASKED != 0 && b1 & 0x7f < 126 => {
                (usize::from(b1 & 0x7f), 2)
            }
            _ => return None,
        };
        if len > max_len {
            return None;
        }
        let key = bytes.get(start..start + 4)?;
        let frame = bytes.get(..start + 4 + len)?;
        let payload = frame.get(start + 4..)?;
        let text = String::from_utf8(unmasked(payload, key)).ok()?;
        self.tally.handed_whole_frame();
        let taken = frame.len();
        self.rd.drain(..taken);
        Some(text)
    }

    /// The WebSocket context returned a message read from this stream.
    pub(crate) fn took_message(&mut self) {
        self.tally.took();
    }

    /// Whether every byte received was read, as whole frames that each were a message: the
    /// context has nothing left to read until more bytes come.
    pub(crate) fn is_drained(&self) -> bool {
        self.rd.is_empty() && self.tally.all_taken()
    }
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rd.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.rd.read(buf)?;
        self.tally.handed(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wr.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `payload` unmasked with the 4-byte `key` (the key's bytes in turn, from the first): copied
/// once, then unmasked in place eight bytes at a time.
fn unmasked(payload: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 8];
    for (slot, b) in k.iter_mut().zip(key.iter().cycle()) {
        *slot = *b;
    }
    let word_key = u64::from_ne_bytes(k);
    let mut out = payload.to_vec();
    let mut words = out.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ word_key).to_ne_bytes());
    }
    for (b, m) in words.into_remainder().iter_mut().zip(k) {
        *b ^= m;
    }
    out
}

/// How much tungstenite takes from the connection's input per step. It zero-fills that much
/// of its buffer before each step, so the step after a request, which could only find the
/// input empty, is skipped ([`MemIo::is_drained`]); a smaller step (512 bytes was tried) made
/// a flood of requests take several times as many steps.
const READ_STEP: usize = 4096;

/// A WebSocket context configured for the core: small read buffer, no write buffering.
pub(crate) fn ws_context(role: WsRole, max_message: usize) -> WebSocketContext {
    let cfg = WebSocketConfig::default()
        .read_buffer_size(READ_STEP)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    WebSocketContext::new(role, Some(cfg))
}

/// How the connection proved itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// Mode `none`, local.
    None,
    /// The shared token.
    Token,
    /// The shared password.
    Password,
    /// A paired device's token.
    DeviceToken,
}

impl AuthMethod {
    /// upstream's `auth.method` name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Token => "token",
            AuthMethod::Password => "password",
            AuthMethod::DeviceToken => "device-token",
        }
    }
}

/// An authenticated connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) role: Role,
    /// Shared, so a request borrows them for its whole call for a reference count.
    pub(crate) scopes: std::sync::Arc<[String]>,
    pub(crate) client: ClientInfo,
    pub(crate) conn_uuid: String,
    pub(crate) device_id: Option<String>,
    pub(crate) auth: AuthMethod,
    /// The device token this connection authenticated with, if any (to close it on revoke).
    pub(crate) device_token: Option<String>,
    pub(crate) caps: Vec<String>,
    pub(crate) commands: Vec<String>,
    pub(crate) seq: u64,
    pub(crate) unauthorized_calls: u32,
    pub(crate) connected_at_ms: u64,
}

/// Where a WebSocket connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Challenge sent, waiting for `connect`.
    PreHello { nonce: String, frames: usize },
    /// `hello-ok` sent.
    Authed(Box<Session>),
}

/// A WebSocket connection.
pub(crate) struct Ws {
    pub(crate) ctx: WebSocketContext,
    pub(crate) io: MemIo,
    pub(crate) client_ip: IpAddr,
    pub(crate) local: bool,
    pub(crate) origin: Option<String>,
    /// The `Host` the upgrade was sent to (a same-origin page's `Origin` names it).
    pub(crate) host: Option<String>,
    /// The upgrade's `x-openclaw-scopes` header: admitted scopes are capped to it.
    pub(crate) scope_cap: Option<String>,
    pub(crate) phase: Phase,
}

impl Ws {
    /// A fresh server WebSocket from a loopback peer, before `connect`, taking messages of
    /// up to `max_message` bytes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn loopback_server(max_message: usize) -> Self {
        Ws {
            ctx: ws_context(WsRole::Server, max_message),
            io: MemIo::default(),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            local: true,
            origin: None,
            host: None,
            scope_cap: None,
            phase: Phase::PreHello {
                nonce: String::new(),
                frames: 0,
            },
        }
    }

    /// The next message: a plain text frame read by [`MemIo::take_text_frame`] while the
    /// context is open both ways (after what tungstenite's own read does first: a queued pong
    /// or close goes out), anything else by tungstenite.
    pub(crate) fn read_message(&mut self) -> tungstenite::Result<tungstenite::Message> {
        if self.ctx.can_read() && self.ctx.can_write() {
            self.ctx.flush(&mut self.io)?;
            let cfg = self.ctx.get_config();
            let max = cfg
                .max_frame_size
                .unwrap_or(usize::MAX)
                .min(cfg.max_message_size.unwrap_or(usize::MAX));
            if let Some(text) = self.io.take_text_frame(max) {
                return Ok(tungstenite::Message::Text(text.into()));
            }
        }
        self.ctx.read(&mut self.io)
    }

    /// The bytes of `text` as one unmasked, unfragmented text frame from the server, as
    /// tungstenite writes it, in one allocation and one copy (tungstenite's own write copies
    /// the payload twice, through its frame buffer into a fresh `Vec`). A control frame
    /// tungstenite has queued (the pong of a ping just read) goes first; nothing once the
    /// context may no longer write (a close was sent or received).
    pub(crate) fn text_frame(&mut self, text: &str) -> Vec<u8> {
        if !self.ctx.can_write() {
            return Vec::new();
        }
        // Moves a queued pong into `io.wr`; writing to memory cannot block or fail.
        let _ = self.ctx.flush(&mut self.io);
        let mut bytes = std::mem::take(&mut self.io.wr);
        let len = text.len();
        bytes.reserve_exact(MAX_FRAME_HEADER + len);
        bytes.push(FIN_TEXT);
        match u16::try_from(len) {
            Ok(short) if short < 126 => bytes.push(short as u8),
            Ok(short) => {
                bytes.push(126);
                bytes.extend_from_slice(&short.to_be_bytes());
            }
            Err(_) => {
                bytes.push(127);
                bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }
}

/// First byte of an unfragmented text frame: FIN set, opcode 1.
const FIN_TEXT: u8 = 0x81;
/// The mask bit of a frame's second byte.
const MASKED: u8 = 0x80;
/// A server frame's header at most: two bytes and a 64-bit length (no mask).
const MAX_FRAME_HEADER: usize = 10;

/// The state of a connection.
pub(crate) enum State {
    /// Reading the HTTP request head.
    Http(Vec<u8>),
    /// Upgraded.
    Ws(Box<Ws>),
    /// Answering a Control UI request (the transfer is the gateway's `Serving`'s).
    Static,
    /// Reading the body of a request to a route that takes one.
    Body(Box<crate::http_post::BodyRead>),
    /// A request with a body is with its route's handler, which answers it.
    Answering,
}

/// What [`Conn::frame_text`] made of a text frame.
pub(crate) enum Framed {
    /// The bytes to transmit (already counted as unsent).
    Bytes(Vec<u8>),
    /// They would pass the unsent limit: dropped uncounted, the peer is a slow consumer.
    SlowConsumer,
    /// The connection is not (yet) a WebSocket.
    NotWebSocket,
}

/// A connection the core knows about.
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    pub(crate) state: State,
    /// Bytes handed to the shell and not yet reported written.
    pub(crate) unsent: usize,
    /// Its frame quota ran out with input left: it waits in the backlog for another turn.
    pub(crate) backlogged: bool,
}

impl Conn {
    pub(crate) fn session(&self) -> Option<&Session> {
        match &self.state {
            State::Ws(ws) => match &ws.phase {
                Phase::Authed(s) => Some(s),
                Phase::PreHello { .. } => None,
            },
            State::Http(_) | State::Static | State::Body(_) | State::Answering => None,
        }
    }

    pub(crate) fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Ws(ws) => match &mut ws.phase {
                Phase::Authed(s) => Some(s),
                Phase::PreHello { .. } => None,
            },
            State::Http(_) | State::Static | State::Body(_) | State::Answering => None,
        }
    }

    /// Frame `text` as a WebSocket message to the peer and count its bytes as unsent, unless
    /// they would take the unsent total past `max_unsent`.
    pub(crate) fn frame_text(&mut self, text: String, max_unsent: usize) -> Framed {
        let State::Ws(ws) = &mut self.state else {
            return Framed::NotWebSocket;
        };
        let bytes = ws.text_frame(&text);
        if self.unsent + bytes.len() > max_unsent {
            return Framed::SlowConsumer;
        }
        self.unsent += bytes.len();
        Framed::Bytes(bytes)
    }

    /// Whether this connection counts against the pre-auth budget of its address.
    pub(crate) fn is_preauth_ws(&self) -> bool {
        matches!(&self.state, State::Ws(ws) if matches!(ws.phase, Phase::PreHello { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::stream::client_frame;
    use tungstenite::Message;

    fn server() -> Ws {
        Ws::loopback_server(1 << 20)
    }

    /// What tungstenite's own write puts on the wire for `text`.
    fn tungstenite_frame(ws: &mut Ws, text: &str) -> Vec<u8> {
        let _ = ws.ctx.write(&mut ws.io, Message::text(text));
        std::mem::take(&mut ws.io.wr)
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn a_plain_text_frame_is_read_by_the_core_as_tungstenite_reads_it() {
        for (text, long) in [
            ("", false),
            (
                "{\"type\":\"req\",\"id\":\"1\",\"method\":\"health\"}",
                false,
            ),
            (&"é✓x".repeat(20)[..], false),
            (&"y".repeat(125)[..], false),
            (&"z".repeat(126)[..], false),
            (&"w".repeat(65_535)[..], false),
            ("short, long form", true),
        ] {
            let frame = client_frame(0x81, text.as_bytes(), KEY, long);
            let mut ws = server();
            ws.io.push(&frame);
            ws.io.push(&[0x81]);
            assert_eq!(ws.io.take_text_frame(1 << 20).as_deref(), Some(text));
            assert_eq!(ws.io.rd.len(), 1, "the frame, and only it, was taken");
            ws.io.took_message();
            ws.io.rd.clear();
            assert!(ws.io.is_drained(), "the tally is between frames");
            let mut theirs = server();
            theirs.io.push(&frame);
            assert!(
                matches!(theirs.ctx.read(&mut theirs.io), Ok(Message::Text(t)) if t.as_str() == text)
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_tungstenite() {
        let text = b"{\"a\":1}";
        let whole = client_frame(0x81, text, KEY, false);
        let mut unmasked = whole.clone();
        unmasked[1] &= 0x7f;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("binary", client_frame(0x82, text, KEY, false)),
            ("a first fragment", client_frame(0x01, text, KEY, false)),
            ("a reserved bit", client_frame(0xc1, text, KEY, false)),
            ("a ping", client_frame(0x89, b"p", KEY, false)),
            ("a close", client_frame(0x88, &[3, 232], KEY, false)),
            ("unmasked", unmasked),
            (
                "a 64-bit length",
                client_frame(0x81, &[b'x'; 70_000], KEY, false),
            ),
            (
                "invalid UTF-8",
                client_frame(0x81, &[b'a', 0xff, b'b'], KEY, false),
            ),
            ("cut short", whole[..whole.len() - 1].to_vec()),
            ("a header cut short", whole[..3].to_vec()),
        ];
        for (what, bytes) in cases {
            let mut ws = server();
            ws.io.push(&bytes);
            assert_eq!(ws.io.take_text_frame(1 << 20), None, "{what}");
            assert_eq!(ws.io.rd.len(), bytes.len(), "{what}: nothing taken");
        }
        let mut ws = server();
        ws.io.push(&whole);
        assert_eq!(
            ws.io.take_text_frame(text.len() - 1),
            None,
            "over the limit"
        );
        assert!(ws.io.take_text_frame(text.len()).is_some(), "at the limit");
        // Mid-frame for tungstenite (it was handed part of a frame): the bytes are its.
        let mut ws = server();
        ws.io.push(&whole[..4]);
        assert!(ws.ctx.read(&mut ws.io).is_err());
        ws.io.push(&whole[4..]);
        ws.io.push(&whole);
        assert_eq!(
            ws.io.take_text_frame(1 << 20),
            None,
            "tungstenite holds a header"
        );
        assert!(matches!(ws.read_message(), Ok(Message::Text(_))));
        ws.io.took_message();
        assert_eq!(
            ws.io.take_text_frame(1 << 20),
            None,
            "tungstenite read the next frame with that one"
        );
        assert!(matches!(ws.read_message(), Ok(Message::Text(_))));
        ws.io.took_message();
        ws.io.push(&whole);
        assert!(
            ws.io.take_text_frame(1 << 20).is_some(),
            "between frames again"
        );
    }

    #[test]
    fn a_pong_queued_by_a_ping_goes_out_before_the_next_text_is_read() {
        let mut ws = server();
        ws.io.push(&client_frame(0x89, b"hi", KEY, false));
        ws.io.push(&client_frame(0x81, b"ok", KEY, false));
        assert!(matches!(ws.read_message(), Ok(Message::Ping(_))));
        ws.io.took_message();
        assert!(ws.io.wr.is_empty(), "queued, not yet written");
        assert!(matches!(ws.read_message(), Ok(Message::Text(t)) if t.as_str() == "ok"));
        assert_eq!(ws.io.wr, [0x8a, 2, b'h', b'i']);
    }

    /// One frame of a generated client stream.
    fn any_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let payload = proptest::collection::vec(any::<u8>(), 0..300);
        let text = "[a-zé✓\\\\\" ]{0,200}";
        prop_oneof![
            4 => (text, any::<[u8; 4]>(), any::<bool>())
                .prop_map(|(t, k, long)| client_frame(0x81, t.as_bytes(), k, long)),
            1 => (prop_oneof![Just(0x01u8), Just(0x00), Just(0x80), Just(0x82), Just(0x89),
                    Just(0x8a), Just(0x88), Just(0xc1), Just(0x91), Just(0x83)],
                    payload.clone(), any::<[u8; 4]>())
                .prop_map(|(b0, p, k)| client_frame(b0, &p, k, false)),
            1 => (payload, any::<[u8; 4]>()).prop_map(|(p, k)| client_frame(0x81, &p, k, false)),
            1 => (text, any::<[u8; 4]>()).prop_map(|(t, k)| {
                let mut f = client_frame(0x81, t.as_bytes(), k, false);
                f[1] &= 0x7f;
                f
            }),
            1 => proptest::collection::vec(any::<u8>(), 1..20),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        /// Streams of frames, mostly plain text, some anything else, in chunks of any size:
        /// the core's read gives what tungstenite's gives, message by message.
        #[test]
        fn the_core_s_read_agrees_with_tungstenite(
            frames in proptest::collection::vec(any_frame(), 1..8),
            ctl in proptest::prelude::any::<u8>(),
        ) {
            let mut input = vec![ctl];
            input.extend(frames.concat());
            crate::fuzzing::ws_read::ws_read(&input);
        }
    }

    #[test]
    fn sequential_ids_spread_over_the_hash_tags() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hasher = BuildHasherDefault::<ConnIdHasher>::default();
        // hashbrown tags each slot with the hash's top 7 bits: sequential ids must not share them.
        let tags: std::collections::BTreeSet<u64> = (1..=128u64)
            .map(|id| hasher.hash_one(ConnId(id)) >> 57)
            .collect();
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
        let mut map: ConnMap<ConnId, u64> = ConnMap::default();
        map.extend((1..=1000).map(|id| (ConnId(id), id * 2)));
        assert!((1..=1000).all(|id| map.get(&ConnId(id)) == Some(&(id * 2))));
    }

    #[test]
    fn text_frames_are_tungstenite_s_bytes() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let ours = server().text_frame(&text);
            assert_eq!(
                ours,
                tungstenite_frame(&mut server(), &text),
                "length {len}"
            );
            assert!(
                ours.capacity() <= len + MAX_FRAME_HEADER,
                "one allocation, sized for the frame"
            );
        }
    }

    #[test]
    fn a_queued_pong_goes_out_and_nothing_after_a_close() {
        let mut ws = server();
        // A masked ping from the client, "hi", mask 0.
        ws.io.push(&[0x89, 0x82, 0, 0, 0, 0, b'h', b'i']);
        assert!(matches!(ws.ctx.read(&mut ws.io), Ok(Message::Ping(_))));
        let bytes = ws.text_frame("ok");
        assert_eq!(bytes, [0x8a, 2, b'h', b'i', 0x81, 2, b'o', b'k']);
        let _ = ws.ctx.close(&mut ws.io, None);
        ws.io.wr.clear();
        assert!(ws.text_frame("late").is_empty());
    }
}
