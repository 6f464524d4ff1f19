//! An in-memory gateway with clients attached and a fake clock (after quinn's `Pair`).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::{Client, ClientConfig, Event};
use clawgate_core::{Config, ConnId, Entropy, Gateway, LogRecord, Output, PairingStore};

/// The fuzzers' deterministic generator and fake-clock origin, shared so every in-memory run
/// draws the same randomness.
pub use clawgate_core::fuzzing::{SeqEntropy, T0_MS};

pub struct Peer {
    /// `None` for raw peers that only record bytes.
    pub client: Option<Client>,
    pub events: VecDeque<Event>,
    pub closed: bool,
    /// Raw bytes the gateway sent (for HTTP-level peers).
    pub raw: Vec<u8>,
}

pub struct Pair {
    pub gw: Gateway,
    pub now: Instant,
    pub start: Instant,
    pub peers: BTreeMap<ConnId, Peer>,
    pub persisted: Vec<Vec<u8>>,
    pub logs: Vec<LogRecord>,
    rng: SeqEntropy,
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

pub fn remote() -> SocketAddr {
    "203.0.113.7:50000".parse().unwrap()
}

impl Pair {
    pub fn new(config: Config) -> Self {
        Self::with_store(config, PairingStore::default())
    }

    pub fn with_store(config: Config, store: PairingStore) -> Self {
        let now = Instant::now();
        let gw = Gateway::new(
            config,
            Box::new(SeqEntropy(0x9E37_79B9_7F4A_7C15)),
            store,
            now,
            T0_MS,
        );
        let mut p = Self {
            gw,
            now,
            start: now,
            peers: BTreeMap::new(),
            persisted: Vec::new(),
            logs: Vec::new(),
            rng: SeqEntropy(42),
        };
        p.drive();
        p
    }

    pub fn unix_ms(&self) -> u64 {
        T0_MS + (self.now - self.start).as_millis() as u64
    }

    /// Connect a client from `peer`; runs until quiet.
    pub fn connect(&mut self, config: ClientConfig, peer: SocketAddr) -> ConnId {
        let mut key = [0u8; 16];
        self.rng.fill(&mut key);
        let client = Client::new(config, key);
        let id = self
            .gw
            .accept(self.now, peer, "127.0.0.1:18789".parse().unwrap());
        self.peers.insert(
            id,
            Peer {
                client: Some(client),
                events: VecDeque::new(),
                closed: false,
                raw: Vec::new(),
            },
        );
        self.drive();
        id
    }

    /// Connect a raw peer and send `bytes`; returns the id.
    pub fn raw(&mut self, bytes: &[u8], peer: SocketAddr) -> ConnId {
        let id = self
            .gw
            .accept(self.now, peer, "127.0.0.1:18789".parse().unwrap());
        self.peers.insert(
            id,
            Peer {
                client: None,
                events: VecDeque::new(),
                closed: false,
                raw: Vec::new(),
            },
        );
        self.drain_gateway();
        self.gw.handle_input(self.now, id, bytes);
        self.drain_gateway();
        id
    }

    /// Move bytes both ways until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut moved = self.drain_gateway();
            let ids: Vec<ConnId> = self.peers.keys().copied().collect();
            for id in ids {
                let p = self.peers.get_mut(&id).unwrap();
                let Some(client) = p.client.as_mut() else {
                    continue;
                };
                while let Some(e) = client.poll_event() {
                    p.events.push_back(e);
                }
                if p.closed {
                    continue;
                }
                if let Some(bytes) = client.poll_transmit() {
                    moved = true;
                    self.gw.handle_input(self.now, id, &bytes);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("pair did not settle");
    }

    fn drain_gateway(&mut self) -> bool {
        let mut moved = false;
        loop {
            match self.gw.poll_output() {
                Output::Transmit { conn, data } => {
                    moved = true;
                    self.gw.handle_written(self.now, conn, data.len());
                    if let Some(p) = self.peers.get_mut(&conn) {
                        p.raw.extend_from_slice(&data);
                        if let Some(c) = p.client.as_mut() {
                            c.handle_input(&data);
                        }
                    }
                }
                Output::Close { conn } => {
                    moved = true;
                    if let Some(p) = self.peers.get_mut(&conn) {
                        p.closed = true;
                        if let Some(c) = p.client.as_mut() {
                            c.handle_eof();
                            while let Some(e) = c.poll_event() {
                                p.events.push_back(e);
                            }
                        }
                    }
                }
                Output::Persist(bytes) => self.persisted.push(bytes),
                Output::Log(r) => self.logs.push(r),
                Output::Timeout(_) => return moved,
            }
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.gw.handle_timeout(self.now);
        self.drive();
    }

    /// Let held refusals (the local failed-auth penalty, at most 5 s) come out.
    pub fn settle(&mut self) {
        self.advance(Duration::from_secs(5));
    }

    pub fn peer(&mut self, id: ConnId) -> &mut Peer {
        self.peers.get_mut(&id).unwrap()
    }

    pub fn events(&mut self, id: ConnId) -> Vec<Event> {
        self.peer(id).events.drain(..).collect()
    }

    pub fn request(
        &mut self,
        id: ConnId,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> String {
        let rid = self
            .peer(id)
            .client
            .as_mut()
            .expect("not a raw peer")
            .request(method, params);
        self.drive();
        rid
    }

    /// Request and return the response for it.
    pub fn call(
        &mut self,
        id: ConnId,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, clawgate_core::frame::ErrorShape> {
        let rid = self.request(id, method, params);
        let evs = self.events(id);
        for e in evs {
            if let Event::Response { id, result } = e
                && id == rid
            {
                return result;
            }
        }
        panic!("no response to {method}");
    }

    pub fn hello(&mut self, id: ConnId) -> Option<serde_json::Value> {
        self.peer(id).events.iter().find_map(|e| match e {
            Event::Hello(v) => Some(v.clone()),
            _ => None,
        })
    }

    pub fn close_of(&mut self, id: ConnId) -> Option<(Option<u16>, String)> {
        self.peer(id).events.iter().find_map(|e| match e {
            Event::Closed { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
    }

    pub fn connect_error(&mut self, id: ConnId) -> Option<clawgate_core::frame::ErrorShape> {
        self.peer(id).events.iter().find_map(|e| match e {
            Event::ConnectFailed(err) => Some(err.clone()),
            _ => None,
        })
    }
}

pub fn cli(token: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::cli("127.0.0.1:18789");
    c.token = token.map(str::to_string);
    c
}
