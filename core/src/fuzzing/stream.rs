//! The script of the whole-connection target: which peers connect, how their bytes are
//! chunked, when time passes. Every byte string is a valid script; [`encode`] writes one.
//!
//! Byte 0 picks the setup (bit 0: token mode instead of mode `none`; bit 1: small limits).
//! Then operations, each a tag byte (`tag % 7`) and its arguments:
//!
//! | tag | operation | arguments |
//! |---|---|---|
//! | 0 | open a connection and send a valid upgrade head | `v`: bit 0 remote peer, bits 1–2 head variant |
//! | 1 | bytes from a connection | `k` connection, `len` u16 LE, `len` bytes (fewer at the end) |
//! | 2 | advance the clock by `n` × 10 ms and fire timers | `n` u16 LE |
//! | 3 | a connection's socket reaches EOF | `k` |
//! | 4 | a connection stops (or resumes) reading what it is sent | `k` |
//! | 5 | shut the gateway down | |
//! | 6 | reload the configuration with the other auth mode | |
//!
//! `k` is taken modulo the connections opened so far (ignored while there are none); at most
//! [`MAX_CONNS`] are opened.

use core::time::Duration;
use std::time::Instant;

use super::fuzz_config;
use super::sim::{Sim, Transcript, loopback, remote};
use crate::PairingStore;

/// Most connections one script opens.
pub const MAX_CONNS: usize = 8;

const HEAD_START: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1:18789\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Extra upgrade headers, by head variant: none, a loopback browser, a foreign browser, a proxy.
const HEAD_EXTRA: [&str; 4] = [
    "",
    "Origin: http://127.0.0.1:18789\r\n",
    "Origin: https://evil.example\r\n",
    "X-Forwarded-For: 198.51.100.9\r\n",
];

/// The upgrade head a connection opened with `variant` sends.
pub fn upgrade_head(variant: u8) -> Vec<u8> {
    let extra = HEAD_EXTRA[usize::from(variant) % HEAD_EXTRA.len()];
    format!("{HEAD_START}{extra}\r\n").into_bytes()
}

/// One masked, final WebSocket text frame as a client sends it (mask key zero, so the text
/// stays readable in corpus files).
pub fn client_text_frame(text: &[u8]) -> Vec<u8> {
    client_frame(0x81, text, [0; 4], false)
}

/// A client frame: first byte `b0`, `payload` masked with `key`, its length in the shortest
/// form (or the 16-bit one when `long` and it fits).
pub fn client_frame(b0: u8, payload: &[u8], key: [u8; 4], long: bool) -> Vec<u8> {
    let mut f = vec![b0];
    match payload.len() {
        n @ 0..=125 if !long => f.push(0x80 | n as u8),
        n @ 0..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    f
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Open a connection; `variant` picks extra upgrade headers.
    Open {
        /// From a non-loopback address.
        remote: bool,
        /// Index into the head variants.
        variant: u8,
    },
    /// Bytes from connection `conn` (after its upgrade head).
    Data {
        /// Connection index.
        conn: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Advance the clock by `tens_of_ms` × 10 ms.
    Advance {
        /// Time to pass, in units of 10 ms.
        tens_of_ms: u16,
    },
    /// The connection's socket reaches EOF.
    Eof {
        /// Connection index.
        conn: u8,
    },
    /// The connection stops (or resumes) reading.
    ToggleAcks {
        /// Connection index.
        conn: u8,
    },
    /// Shut the gateway down.
    Shutdown,
    /// Reload with the other auth mode.
    Reload,
}

/// The script that performs `ops` with `setup` (see the module docs).
pub fn encode(setup: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![setup];
    for op in ops {
        match op {
            Op::Open { remote, variant } => out.extend([0, u8::from(*remote) | (variant << 1)]),
            Op::Data { conn, bytes } => {
                for chunk in bytes.chunks(usize::from(u16::MAX)) {
                    out.extend([1, *conn]);
                    out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
                    out.extend_from_slice(chunk);
                }
            }
            Op::Advance { tens_of_ms } => {
                out.push(2);
                out.extend_from_slice(&tens_of_ms.to_le_bytes());
            }
            Op::Eof { conn } => out.extend([3, *conn]),
            Op::ToggleAcks { conn } => out.extend([4, *conn]),
            Op::Shutdown => out.push(5),
            Op::Reload => out.push(6),
        }
    }
    out
}

/// A cursor over a script.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Run a script against a fresh gateway started at `start`; returns what the gateway did.
pub fn run(start: Instant, script: &[u8]) -> Transcript {
    let mut r = Reader(script);
    let setup = r.byte();
    let mut token = setup & 1 == 1;
    let small = setup & 2 == 2;
    let mut sim = Sim::new(start, fuzz_config(token, small), PairingStore::default());
    let mut conns = Vec::new();
    let pick =
        |conns: &[crate::ConnId], k: u8| conns.get(usize::from(k) % conns.len().max(1)).copied();
    while !r.0.is_empty() {
        match r.byte() % 7 {
            0 => {
                let v = r.byte();
                if conns.len() < MAX_CONNS {
                    let id = sim.open_raw(if v & 1 == 1 { remote() } else { loopback() });
                    sim.input(id, &upgrade_head(v >> 1));
                    conns.push(id);
                }
            }
            1 => {
                let k = r.byte();
                let len = r.u16();
                let bytes = r.take(usize::from(len));
                if let Some(id) = pick(&conns, k) {
                    sim.input(id, bytes);
                }
            }
            2 => sim.advance(Duration::from_millis(u64::from(r.u16()) * 10)),
            3 => {
                if let Some(id) = pick(&conns, r.byte()) {
                    sim.eof(id);
                }
            }
            4 => {
                if let Some(id) = pick(&conns, r.byte()) {
                    sim.toggle_acks(id);
                }
            }
            5 => sim.shutdown(),
            _ => {
                token = !token;
                sim.reload(fuzz_config(token, small));
            }
        }
    }
    sim.transcript
}
