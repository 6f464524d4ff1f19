//! A gateway on a fake clock with sans-IO clients or raw peers attached, and the invariants
//! every drain of its outputs must keep.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::client::{Client, ClientConfig, Event};
use crate::{Config, ConnId, Entropy, Gateway, Output, PairingStore};

/// Unix milliseconds the fake clock starts at (the challenge `ts` of upstream's capture).
pub const T0_MS: u64 = 1_795_505_861_985;

/// Upper bound on drive rounds before a simulation is declared stuck (a bug).
const MAX_ROUNDS: usize = 10_000;

/// A deterministic generator (xorshift64*), so every run of an input is the same run.
pub struct SeqEntropy(pub u64);

impl Entropy for SeqEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
    }
}

/// Everything the gateway asked its shell to do, per connection, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Bytes transmitted to each connection, concatenated.
    pub sent: BTreeMap<u64, Vec<u8>>,
    /// Connections in the order the gateway closed them.
    pub closed: Vec<u64>,
    /// Pairing-store snapshots in the order they were persisted.
    pub persisted: Vec<Vec<u8>>,
}

struct Peer {
    client: Option<Client>,
    open: bool,
    acks: bool,
}

/// The simulation: one gateway, its peers, a fake clock and the transcript so far.
pub struct Sim {
    /// The gateway under test.
    pub gw: Gateway,
    now: Instant,
    peers: BTreeMap<ConnId, Peer>,
    /// What the gateway did so far.
    pub transcript: Transcript,
    key_seq: SeqEntropy,
}

/// The address of a local peer.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50_000))
}

/// The address of a remote peer (TEST-NET-3).
pub fn remote() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], 50_000))
}

fn listener() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 18_789))
}

impl Sim {
    /// A gateway started at `start` with `config` and `store`.
    pub fn new(start: Instant, config: Config, store: PairingStore) -> Self {
        let gw = Gateway::new(
            config,
            Box::new(SeqEntropy(0x9E37_79B9_7F4A_7C15)),
            store,
            start,
            T0_MS,
        );
        let mut sim = Self {
            gw,
            now: start,
            peers: BTreeMap::new(),
            transcript: Transcript::default(),
            key_seq: SeqEntropy(42),
        };
        sim.drive();
        sim
    }

    /// A peer that sends only what it is told to.
    pub fn open_raw(&mut self, peer: SocketAddr) -> ConnId {
        self.open(peer, None)
    }

    /// A sans-IO client that upgrades, answers the challenge and reaches `hello-ok` if allowed.
    pub fn open_client(&mut self, config: ClientConfig, peer: SocketAddr) -> ConnId {
        let mut key = [0u8; 16];
        self.key_seq.fill(&mut key);
        self.open(peer, Some(Client::new(config, key)))
    }

    fn open(&mut self, peer: SocketAddr, client: Option<Client>) -> ConnId {
        let id = self.gw.accept(self.now, peer, listener());
        self.peers.insert(
            id,
            Peer {
                client,
                open: true,
                acks: true,
            },
        );
        self.drive();
        id
    }

    /// Bytes from a peer.
    pub fn input(&mut self, id: ConnId, bytes: &[u8]) {
        if self.peers.get(&id).is_some_and(|p| p.open) {
            self.gw.handle_input(self.now, id, bytes);
        }
        self.drive();
    }

    /// A client sends one text frame.
    pub fn send_text(&mut self, id: ConnId, text: String) {
        if let Some(c) = self.peers.get_mut(&id).and_then(|p| p.client.as_mut()) {
            c.send_text(text);
        }
        self.drive();
    }

    /// The peer's socket reached EOF.
    pub fn eof(&mut self, id: ConnId) {
        if self.peers.get(&id).is_some_and(|p| p.open) {
            self.gw.handle_closed(self.now, id);
        }
        self.drive();
    }

    /// Stop (or resume) acknowledging the writes of a peer, as a stalled reader would.
    pub fn toggle_acks(&mut self, id: ConnId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.acks = !p.acks;
        }
    }

    /// Advance the fake clock and fire what is due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.gw.handle_timeout(self.now);
        self.drive();
    }

    /// Stop the gateway.
    pub fn shutdown(&mut self) {
        self.gw.shutdown(self.now);
        self.drive();
    }

    /// Apply a new configuration.
    pub fn reload(&mut self, config: Config) {
        self.gw.reload(self.now, config);
        self.drive();
    }

    /// The events a client observed so far, drained.
    pub fn events(&mut self, id: ConnId) -> Vec<Event> {
        let Some(c) = self.peers.get_mut(&id).and_then(|p| p.client.as_mut()) else {
            return Vec::new();
        };
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Move bytes both ways until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = self.drain();
            for (id, p) in &mut self.peers {
                let Some(c) = p.client.as_mut().filter(|_| p.open) else {
                    continue;
                };
                if let Some(bytes) = c.poll_transmit() {
                    moved = true;
                    self.gw.handle_input(self.now, *id, &bytes);
                }
            }
            if !moved {
                self.check_counts();
                return;
            }
        }
        panic!("simulation did not settle in {MAX_ROUNDS} rounds");
    }

    /// Drain the gateway's outputs, checking that each one makes sense.
    fn drain(&mut self) -> bool {
        let mut moved = false;
        loop {
            match self.gw.poll_output() {
                Output::Transmit { conn, data } => {
                    moved = true;
                    let p = self.peers.get_mut(&conn).filter(|p| p.open);
                    let p = p.unwrap_or_else(|| panic!("transmit to {conn:?}, which is not open"));
                    assert!(!data.is_empty(), "empty transmit to {conn:?}");
                    if p.acks {
                        self.gw.handle_written(self.now, conn, data.len());
                    }
                    if let Some(c) = p.client.as_mut() {
                        c.handle_input(&data);
                    }
                    self.transcript
                        .sent
                        .entry(conn.0)
                        .or_default()
                        .extend_from_slice(&data);
                }
                Output::Close { conn } => {
                    moved = true;
                    let p = self.peers.get_mut(&conn).filter(|p| p.open);
                    let p = p.unwrap_or_else(|| panic!("close of {conn:?}, which is not open"));
                    p.open = false;
                    if let Some(c) = p.client.as_mut() {
                        c.handle_eof();
                    }
                    self.transcript.closed.push(conn.0);
                }
                Output::Persist(bytes) => {
                    if let Err(e) = PairingStore::load(&bytes) {
                        panic!("persisted store does not load back: {e}");
                    }
                    self.transcript.persisted.push(bytes);
                }
                Output::Log(_) => {}
                Output::Timeout(_) => return moved,
            }
        }
    }

    fn check_counts(&self) {
        let open = self.peers.values().filter(|p| p.open).count();
        let counts = self.gw.counts();
        assert_eq!(
            counts.connections, open,
            "gateway counts {counts:?} but {open} sockets are open"
        );
        assert!(counts.authenticated <= counts.connections, "{counts:?}");
    }
}
