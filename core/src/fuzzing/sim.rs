//! The in-memory harness (after quinn's `Pair`): a gateway on a fake clock with sans-IO
//! clients or raw peers attached, and the invariants every drain of its outputs must keep.
//! The fuzzers, the core's tests and the schema tests all drive the gateway through it.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};

use crate::client::{Client, ClientConfig, Event};
use crate::frame::ErrorShape;
use crate::model::HttpRequest;
use crate::persist::{
    ChannelRowKind, HistoryPage, HistoryQuery, HistoryRange, HistoryRow, RowText, StoreChange,
    StoredChannelRow, StoredPendingInput, StoredSession,
};
use crate::{
    Config, ConnId, Entropy, FileChunk, FileError, FileRead, Gateway, HttpError, HttpErrorKind,
    LogRecord, MachineInfo, Output, PairingStore, Work, WorkId, WorkResult,
};

/// The seed of a simulated gateway's random numbers.
const ENTROPY_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

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
    /// The durable store after each batch was written, in order.
    pub persisted: Vec<PairingStore>,
}

/// One peer of the gateway: a sans-IO client, or a raw peer that only receives bytes.
pub struct Peer {
    /// The client; `None` for raw peers.
    pub client: Option<Client>,
    /// What the client observed and nobody drained yet, in order.
    pub events: VecDeque<Event>,
    /// Whether the gateway closed the connection.
    pub closed: bool,
    acks: bool,
}

/// The simulation: one gateway, its peers, a fake clock and the transcript so far.
pub struct Sim {
    /// The gateway under test.
    pub gw: Gateway,
    /// The fake clock.
    pub now: Instant,
    start: Instant,
    peers: BTreeMap<ConnId, Peer>,
    /// What the gateway did so far.
    pub transcript: Transcript,
    /// The log records the gateway emitted so far.
    pub logs: Vec<LogRecord>,
    key_seq: SeqEntropy,
    /// What the simulated disk holds: the store batches written so far.
    pub disk: PairingStore,
    /// The chat sessions on the simulated disk: rows and transcripts.
    pub sessions: SimSessions,
    /// Store batches and reads asked for and not yet done, in order, while writes are held.
    unwritten: VecDeque<(WorkId, Work)>,
    hold_writes: bool,
    /// Every store batch written, in order.
    pub batches: Vec<Vec<StoreChange>>,
    /// The fake model: answers each [`Work::Http`] at once, unless requests are held.
    model: Option<FakeModel>,
    /// HTTP requests held for the test to answer with [`Sim::http_result`].
    held_http: Vec<(WorkId, HttpRequest)>,
    hold_http: bool,
    /// The requests the gateway cancelled, in order.
    pub cancelled: Vec<WorkId>,
    /// The simulated files [`Work::ReadFile`] reads: contents and modification time (Unix
    /// ms) by `root/rel`.
    pub files: BTreeMap<String, (Vec<u8>, u64)>,
    /// Every file read the gateway asked for, in order.
    pub file_reads: Vec<FileRead>,
    /// Every [`Work::WsOpen`], [`Work::WsSend`] and [`Work::WsClose`] the gateway asked for,
    /// in order: a test plays the far end and answers with [`Sim::socket_result`].
    pub sockets: Vec<(WorkId, Work)>,
    /// Commands the gateway asked to run and the test has not answered
    /// ([`Sim::exec_result`]).
    pub execs: Vec<(WorkId, crate::work::ExecRequest)>,
    /// The simulated `openclaw.json` that [`Work::EditConfig`] changes (`null`: no file).
    pub config_file: Value,
    /// Every [`Work::EditConfig`] the gateway asked for, in order.
    pub config_edits: Vec<crate::config::edit::ConfigEdit>,
}

/// A scripted model provider: the results (head, body chunks, end) for a request.
pub type FakeModel = Box<dyn FnMut(&HttpRequest) -> Vec<WorkResult>>;

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
        Self::build(start, config, store, false)
    }

    /// A gateway started at `start` with `config` whose HTTP requests are held from the first
    /// one on (a channel's start-up calls leave with the gateway's construction).
    pub fn started_holding_http(start: Instant, config: Config) -> Self {
        Self::build(start, config, PairingStore::default(), true)
    }

    fn build(start: Instant, config: Config, store: PairingStore, hold_http: bool) -> Self {
        let mut sim = Self::build_quiet(start, config, store, hold_http, ENTROPY_SEED);
        sim.drive();
        sim
    }

    fn build_quiet(
        start: Instant,
        config: Config,
        store: PairingStore,
        hold_http: bool,
        seed: u64,
    ) -> Self {
        let store_copy = store.clone();
        let gw = Gateway::new(config, Box::new(SeqEntropy(seed)), store, start, T0_MS);
        Self {
            gw,
            now: start,
            start,
            peers: BTreeMap::new(),
            transcript: Transcript::default(),
            logs: Vec::new(),
            key_seq: SeqEntropy(42),
            disk: store_copy,
            sessions: SimSessions::default(),
            unwritten: VecDeque::new(),
            hold_writes: false,
            batches: Vec::new(),
            model: None,
            held_http: Vec::new(),
            hold_http,
            cancelled: Vec::new(),
            files: BTreeMap::new(),
            file_reads: Vec::new(),
            sockets: Vec::new(),
            execs: Vec::new(),
            config_file: Value::Null,
            config_edits: Vec::new(),
        }
    }

    /// A gateway built with `config` on the disk `disk` and `sessions`, nothing driven yet.
    fn restarted(&self, config: Config) -> Self {
        // Another process draws other random numbers.
        let seed =
            ENTROPY_SEED ^ (self.batches.len() as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut sim = Self::build_quiet(self.now, config, self.disk.clone(), self.hold_http, seed);
        sim.batches = self.batches.clone();
        sim.hold_writes = self.hold_writes;
        sim.sessions = self.sessions.clone();
        sim
    }

    /// Hold store writes (`true`) until [`Sim::write_store`], or write each batch as soon as
    /// the gateway asks (`false`, the default).
    pub fn hold_store_writes(&mut self, hold: bool) {
        self.hold_writes = hold;
    }

    /// Answer every [`Work::Http`] with `model` (all its results at once, at the same instant).
    pub fn set_http(&mut self, model: impl FnMut(&HttpRequest) -> Vec<WorkResult> + 'static) {
        self.model = Some(Box::new(model));
    }

    /// Hold HTTP requests (`true`) for [`Sim::http_result`] instead of answering them.
    pub fn hold_http(&mut self, hold: bool) {
        self.hold_http = hold;
    }

    /// The HTTP requests held so far and not ended.
    pub fn held_http(&self) -> &[(WorkId, HttpRequest)] {
        &self.held_http
    }

    /// The held HTTP requests whose URL ends with `suffix` (an API method, a path).
    pub fn held_calls(&self, suffix: &str) -> Vec<(WorkId, HttpRequest)> {
        self.held_http
            .iter()
            .filter(|(_, r)| r.url.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Answer the command the gateway asked to run with `id` and let the simulation settle.
    pub fn exec_result(&mut self, id: WorkId, result: Result<crate::work::ExecOutput, String>) {
        self.execs.retain(|(w, _)| *w != id);
        self.gw
            .handle_work_result(self.now, id, WorkResult::Exec(result));
        self.drive();
    }

    /// Report one result of a held request and let the simulation settle; an `HttpEnd`
    /// releases it.
    pub fn http_result(&mut self, id: WorkId, result: WorkResult) {
        if matches!(result, WorkResult::HttpEnd(_)) {
            self.held_http.retain(|(w, _)| *w != id);
        }
        self.gw.handle_work_result(self.now, id, result);
        self.drive();
    }

    /// Report every one of `results` for held request `id`, in order (see [`Sim::http_result`]).
    pub fn http_results(&mut self, id: WorkId, results: Vec<WorkResult>) {
        for result in results {
            self.http_result(id, result);
        }
    }

    /// Report a result of the socket opened by the [`Work::WsOpen`] with id `socket` and let
    /// the simulation settle.
    pub fn socket_result(&mut self, socket: WorkId, result: WorkResult) {
        self.gw.handle_work_result(self.now, socket, result);
        self.drive();
    }

    /// Write the held store batches (`ok`) or fail them, answer the reads queued between
    /// them, report each outcome to the gateway, and let the simulation settle.
    pub fn write_store(&mut self, ok: bool) {
        while let Some((id, work)) = self.unwritten.pop_front() {
            match work {
                Work::Store { changes, .. } => self.write_batch(id, &changes, ok),
                Work::ReadHistory(query) => self.read_history(id, &query),
                _ => {}
            }
        }
        self.drive();
    }

    /// The held store batches, oldest first: their changes and whether each is flagged to
    /// linger ([`Work::Store`]).
    pub fn held_batches(&self) -> Vec<(&[StoreChange], bool)> {
        self.unwritten
            .iter()
            .filter_map(|(_, work)| match work {
                Work::Store { changes, linger } => Some((changes.as_slice(), *linger)),
                _ => None,
            })
            .collect()
    }

    /// Write the held store batches up to the first held read (all of them when none is)
    /// in one transaction, as the host's writer commits the batches queued behind a
    /// flagged one: every one of them on disk (`ok`) or none; then report each outcome in
    /// order, answer the read, and let the simulation settle. `false` when nothing was held.
    pub fn write_together(&mut self, ok: bool) -> bool {
        let mut group = Vec::new();
        while let Some((id, work)) = self.unwritten.pop_front() {
            match work {
                Work::Store { changes, .. } => group.push((id, changes)),
                Work::ReadHistory(query) => {
                    self.unwritten.push_front((id, Work::ReadHistory(query)));
                    break;
                }
                _ => {}
            }
        }
        if group.is_empty() {
            return self.write_next_batch();
        }
        if ok {
            for (_, changes) in &group {
                self.apply_batch(changes);
            }
        }
        for (id, _) in group {
            self.report_batch(id, ok);
        }
        self.drive();
        true
    }

    /// Write the oldest held store batch (answering the reads queued before it, or only the
    /// reads when no batch is held) and let the simulation settle; `false` when nothing was
    /// held.
    pub fn write_next_batch(&mut self) -> bool {
        let mut moved = false;
        while let Some((id, work)) = self.unwritten.pop_front() {
            moved = true;
            match work {
                Work::Store { changes, .. } => {
                    self.write_batch(id, &changes, true);
                    break;
                }
                Work::ReadHistory(query) => self.read_history(id, &query),
                _ => {}
            }
        }
        self.drive();
        moved
    }

    /// The process dies (kill -9): whatever was not written is lost, requests in flight are
    /// gone. A new gateway starts with `config` from what the disk holds, as the host's
    /// start-up loads it (sessions, then channel rows), HTTP held or not as before.
    pub fn crash_and_restart(self, config: Config) -> Sim {
        let mut sim = self.restarted(config);
        sim.gw.restore_sessions(self.sessions.stored(1));
        sim.gw.restore_channels(self.sessions.stored_channel_rows());
        sim.drive();
        sim
    }

    /// Fail every held store read with `why` (the held batches stay held) and let the
    /// simulation settle; how many reads there were.
    pub fn fail_reads(&mut self, why: &str) -> usize {
        let mut failed = 0;
        self.unwritten.retain(|(id, work)| {
            let read = matches!(work, Work::ReadHistory(_));
            if read {
                self.gw
                    .handle_work_result(self.now, *id, WorkResult::History(Err(why.into())));
                failed += 1;
            }
            !read
        });
        self.drive();
        failed
    }

    fn read_history(&mut self, id: WorkId, query: &HistoryQuery) {
        let page = self.sessions.read(query);
        self.gw
            .handle_work_result(self.now, id, WorkResult::History(Ok(page)));
    }

    fn write_batch(&mut self, id: WorkId, changes: &[StoreChange], ok: bool) {
        if ok {
            self.apply_batch(changes);
        }
        self.report_batch(id, ok);
    }

    /// Put a batch on the simulated disk.
    fn apply_batch(&mut self, changes: &[StoreChange]) {
        // Each row goes through its durable encoding, as a host's database would keep it.
        for change in changes {
            if let Some((kind, _, row)) = change.encoded() {
                PairingStore::from_rows([(kind, row.as_bytes())])
                    .unwrap_or_else(|e| panic!("a stored row does not load back: {e}"));
            }
        }
        self.disk.apply(changes);
        self.sessions.apply(changes);
        self.batches.push(changes.to_vec());
        self.transcript.persisted.push(self.disk.clone());
    }

    /// Tell the gateway batch `id` is durable (`ok`) or failed.
    fn report_batch(&mut self, id: WorkId, ok: bool) {
        let result = if ok {
            Ok(())
        } else {
            Err("simulated write failure".to_string())
        };
        self.gw
            .handle_work_result(self.now, id, WorkResult::Stored(result));
    }

    /// A gateway started at `start` with `config` and an empty pairing store.
    pub fn started(start: Instant, config: Config) -> Self {
        Self::new(start, config, PairingStore::default())
    }

    /// The fake wall clock: Unix milliseconds now.
    pub fn unix_ms(&self) -> u64 {
        T0_MS + self.now.saturating_duration_since(self.start).as_millis() as u64
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

    /// A raw peer that sends `bytes` at once.
    pub fn open_raw_sending(&mut self, bytes: &[u8], peer: SocketAddr) -> ConnId {
        let id = self.open_raw(peer);
        self.input(id, bytes);
        id
    }

    fn open(&mut self, peer: SocketAddr, client: Option<Client>) -> ConnId {
        let id = self.gw.accept(self.now, peer, listener());
        self.peers.insert(
            id,
            Peer {
                client,
                events: VecDeque::new(),
                closed: false,
                acks: true,
            },
        );
        self.drive();
        id
    }

    /// A peer, by connection.
    ///
    /// # Panics
    /// If the connection was never opened here.
    pub fn peer(&mut self, id: ConnId) -> &mut Peer {
        match self.peers.get_mut(&id) {
            Some(p) => p,
            None => panic!("no peer {id:?}"),
        }
    }

    /// The bytes the gateway sent to a connection so far.
    pub fn sent(&self, id: ConnId) -> &[u8] {
        self.transcript.sent.get(&id.0).map_or(&[], Vec::as_slice)
    }

    /// Bytes from a peer.
    pub fn input(&mut self, id: ConnId, bytes: &[u8]) {
        if self.peers.get(&id).is_some_and(|p| !p.closed) {
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
        if self.peers.get(&id).is_some_and(|p| !p.closed) {
            self.gw.handle_closed(self.now, id);
        }
        self.drive();
    }

    /// The peer's socket took `n` more bytes (for a peer whose writes are not acknowledged).
    pub fn written(&mut self, id: ConnId, n: usize) {
        self.gw.handle_written(self.now, id, n);
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

    /// Let held refusals (the local failed-auth penalty, at most 5 s) come out.
    pub fn settle(&mut self) {
        self.advance(Duration::from_secs(5));
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
        let Some(p) = self.peers.get_mut(&id) else {
            return Vec::new();
        };
        p.collect_events();
        p.events.drain(..).collect()
    }

    /// A client sends a request; returns its id. Runs until quiet.
    ///
    /// # Panics
    /// If the peer is a raw one.
    pub fn request(&mut self, id: ConnId, method: &str, params: Option<Value>) -> String {
        let Some(client) = self.peer(id).client.as_mut() else {
            panic!("{id:?} is a raw peer");
        };
        let rid = client.request(method, params);
        self.drive();
        rid
    }

    /// A client's request and the response to it (other events are drained).
    ///
    /// # Panics
    /// If no response came.
    pub fn call(
        &mut self,
        id: ConnId,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, ErrorShape> {
        let rid = self.request(id, method, params);
        let response = self.events(id).into_iter().find_map(|e| match e {
            Event::Response { id, result } if id == rid => Some(result),
            _ => None,
        });
        match response {
            Some(r) => r,
            None => panic!("no response to {method}"),
        }
    }

    /// The `chat.history` payload for `params` (`{"sessionKey": ...}` and paging).
    ///
    /// # Panics
    /// If the call is refused.
    pub fn chat_history(&mut self, id: ConnId, params: Value) -> Value {
        match self.call(id, "chat.history", Some(params)) {
            Ok(page) => page,
            Err(e) => panic!("chat.history refused: {e:?}"),
        }
    }

    /// The `hello-ok` payload the client received, if any (not drained).
    pub fn hello(&mut self, id: ConnId) -> Option<Value> {
        self.find_event(id, |e| match e {
            Event::Hello(v) => Some(v.clone()),
            _ => None,
        })
    }

    /// The close code and reason the client saw, if closed (not drained).
    pub fn close_of(&mut self, id: ConnId) -> Option<(Option<u16>, String)> {
        self.find_event(id, |e| match e {
            Event::Closed { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
    }

    /// The error that refused the client's `connect`, if any (not drained).
    pub fn connect_error(&mut self, id: ConnId) -> Option<ErrorShape> {
        self.find_event(id, |e| match e {
            Event::ConnectFailed(err) => Some(err.clone()),
            _ => None,
        })
    }

    fn find_event<T>(&mut self, id: ConnId, f: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        let p = self.peers.get_mut(&id)?;
        p.collect_events();
        p.events.iter().find_map(f)
    }

    /// Move bytes both ways until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = self.drain();
            for (id, p) in &mut self.peers {
                p.collect_events();
                let Some(c) = p.client.as_mut().filter(|_| !p.closed) else {
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
                    let p = self.peers.get_mut(&conn).filter(|p| !p.closed);
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
                // Transmits reach the peer at once here: nothing is queued to throw away.
                Output::Discard { conn } => {
                    moved = true;
                    assert!(
                        self.peers.get(&conn).is_some_and(|p| !p.closed),
                        "discard of {conn:?}, which is not open"
                    );
                }
                Output::Close { conn } => {
                    moved = true;
                    let p = self.peers.get_mut(&conn).filter(|p| !p.closed);
                    let p = p.unwrap_or_else(|| panic!("close of {conn:?}, which is not open"));
                    p.closed = true;
                    if let Some(c) = p.client.as_mut() {
                        c.handle_eof();
                    }
                    p.collect_events();
                    self.transcript.closed.push(conn.0);
                }
                Output::Work {
                    id,
                    work: work @ (Work::Store { .. } | Work::ReadHistory(_)),
                } => {
                    moved = true;
                    match work {
                        work if self.hold_writes => self.unwritten.push_back((id, work)),
                        Work::Store { changes, .. } => self.write_batch(id, &changes, true),
                        Work::ReadHistory(query) => self.read_history(id, &query),
                        _ => {}
                    }
                }
                Output::Work {
                    id,
                    work: Work::Http(request),
                } => {
                    moved = true;
                    self.do_http(id, request);
                }
                Output::Work {
                    work: Work::Cancel(id),
                    ..
                } => {
                    moved = true;
                    self.cancelled.push(id);
                    self.execs.retain(|(w, _)| *w != id);
                    if let Some(pos) = self.held_http.iter().position(|(w, _)| *w == id) {
                        self.held_http.remove(pos);
                        let end = WorkResult::HttpEnd(Err(HttpError::new(
                            HttpErrorKind::Cancelled,
                            "cancelled",
                        )));
                        self.gw.handle_work_result(self.now, id, end);
                    }
                }
                Output::Work {
                    id,
                    work: Work::Exec(request),
                } => {
                    moved = true;
                    self.execs.push((id, request));
                }
                Output::Work {
                    id,
                    work: Work::ReadFile(read),
                } => {
                    moved = true;
                    let result = self.read_file(&read);
                    self.file_reads.push(read);
                    self.gw
                        .handle_work_result(self.now, id, WorkResult::File(result));
                }
                Output::Work {
                    id,
                    work: work @ (Work::WsOpen(_) | Work::WsSend { .. } | Work::WsClose { .. }),
                } => {
                    moved = true;
                    self.sockets.push((id, work));
                }
                Output::Work {
                    id,
                    work: Work::DescribeMachine,
                } => {
                    moved = true;
                    let machine = MachineInfo {
                        hostname: "sim".into(),
                        cpu_count: 1,
                        ..MachineInfo::default()
                    };
                    self.gw
                        .handle_work_result(self.now, id, WorkResult::Machine(machine));
                }
                // The simulation runs no processes: a spawn fails at once.
                Output::Work {
                    id,
                    work: Work::Spawn(_),
                } => {
                    moved = true;
                    let exited = WorkResult::ProcessExited("no processes here".into());
                    self.gw.handle_work_result(self.now, id, exited);
                }
                Output::Work {
                    work: Work::WriteLine { .. },
                    ..
                } => moved = true,
                Output::Work {
                    id,
                    work: Work::EditConfig(edit),
                } => {
                    moved = true;
                    let result = edit.apply(&mut self.config_file).map_err(|e| e.to_string());
                    self.config_edits.push(edit);
                    let edited = WorkResult::ConfigEdited(result);
                    self.gw.handle_work_result(self.now, id, edited);
                }
                Output::Log(record) => self.logs.push(record),
                // A deadline already due (the backlog's next round): a shell fires it at once.
                Output::Timeout(at) if at <= self.now => {
                    moved = true;
                    self.gw.handle_timeout(self.now);
                }
                Output::Timeout(_) => return moved,
            }
        }
    }

    fn read_file(&self, read: &FileRead) -> Result<FileChunk, FileError> {
        let (index, (data, modified_ms)) = read
            .candidates
            .iter()
            .enumerate()
            .find_map(|(i, rel)| Some((i, self.files.get(&format!("{}/{rel}", read.root))?)))
            .ok_or(FileError::NotFound)?;
        let start = usize::try_from(read.offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(read.max_len).min(data.len());
        Ok(FileChunk {
            index,
            size: data.len() as u64,
            modified_ms: *modified_ms,
            data: data.get(start..end).unwrap_or_default().to_vec(),
        })
    }

    fn do_http(&mut self, id: WorkId, request: HttpRequest) {
        if self.hold_http {
            self.held_http.push((id, request));
            return;
        }
        let Some(model) = self.model.as_mut() else {
            panic!("no fake model for {request:?}: call Sim::set_http or Sim::hold_http");
        };
        for result in model(&request) {
            self.gw.handle_work_result(self.now, id, result);
        }
    }

    fn check_counts(&self) {
        let open = self.peers.values().filter(|p| !p.closed).count();
        let counts = self.gw.counts();
        assert_eq!(
            counts.connections, open,
            "gateway counts {counts:?} but {open} sockets are open"
        );
        assert!(counts.authenticated <= counts.connections, "{counts:?}");
    }
}

/// The chat sessions of the simulated disk, as the host's database keeps them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimSessions {
    /// Session rows by key.
    pub rows: BTreeMap<String, Value>,
    /// Transcripts by session key: messages by position.
    pub transcripts: BTreeMap<String, BTreeMap<u64, Value>>,
    /// Pending input, oldest first (a put of a known run moves it to the end, as a
    /// database's replace does).
    pub pending: Vec<StoredPendingInput>,
    /// The channels' rows (queue, outbox, pairing, offsets) by table and key.
    pub channel_rows: BTreeMap<(ChannelRowKind, String), Value>,
}

/// A stored row decoded, after checking that its text is what the store held when the core
/// handed it rows as `Value`s: the compact encoding of the `Value` it decodes to (members in
/// sorted order, no spaces), whichever way the core wrote it.
fn stored(row: &RowText) -> Value {
    let value = row.to_value();
    assert_eq!(
        row.as_str(),
        RowText::of_value(&value).as_str(),
        "a row's text is not its value's encoding"
    );
    value
}

impl SimSessions {
    /// Apply the session changes of a written batch.
    fn apply(&mut self, changes: &[StoreChange]) {
        for change in changes {
            match change {
                StoreChange::PutSession { key, row } => {
                    self.rows.insert(key.clone(), stored(row));
                }
                StoreChange::AppendMessage {
                    session_key,
                    seq,
                    message,
                } => {
                    self.transcripts
                        .entry(session_key.clone())
                        .or_default()
                        .insert(*seq, stored(message));
                }
                StoreChange::PutPendingInput { run_id, row } => {
                    self.pending.retain(|p| p.run_id != *run_id);
                    self.pending.push(StoredPendingInput {
                        run_id: run_id.clone(),
                        row: stored(row),
                    });
                }
                StoreChange::DeletePendingInput(run_id) => {
                    self.pending.retain(|p| p.run_id != *run_id);
                }
                StoreChange::PutChannelRow { kind, key, row } => {
                    self.channel_rows.insert((*kind, key.clone()), stored(row));
                }
                StoreChange::DeleteChannelRow { kind, key } => {
                    self.channel_rows.remove(&(*kind, key.clone()));
                }
                _ => {}
            }
        }
    }

    /// The channel rows as a start-up would load them.
    pub fn stored_channel_rows(&self) -> Vec<StoredChannelRow> {
        self.channel_rows
            .iter()
            .map(|((kind, key), row)| StoredChannelRow {
                kind: *kind,
                key: key.clone(),
                row: row.clone(),
            })
            .collect()
    }

    /// The sessions as a start-up would load them: each row with its last `window` messages.
    pub fn stored(&self, window: usize) -> Vec<StoredSession> {
        let empty = BTreeMap::new();
        self.rows
            .iter()
            .map(|(key, row)| {
                let t = self.transcripts.get(key).unwrap_or(&empty);
                let mut messages: Vec<Value> = t.values().rev().take(window).cloned().collect();
                messages.reverse();
                StoredSession {
                    key: key.clone(),
                    row: row.clone(),
                    messages,
                    total: t.keys().next_back().copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// Answer a history read as the host's store does.
    fn read(&self, q: &HistoryQuery) -> HistoryPage {
        let Some(t) = self.transcripts.get(&q.session_key) else {
            return HistoryPage::default();
        };
        let to = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let found: Vec<(&u64, &Value)> = match q.range {
            HistoryRange::Tail { offset, limit } => {
                t.iter().rev().skip(to(offset)).take(to(limit)).collect()
            }
            HistoryRange::After { seq, limit } => {
                t.range(seq.saturating_add(1)..).take(to(limit)).collect()
            }
        };
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        for (seq, message) in found {
            let len = message.to_string().len();
            let oversized = len > q.max_message_bytes;
            let cost = if oversized { 128 } else { len };
            if !rows.is_empty() && bytes.saturating_add(cost) > q.max_bytes {
                break;
            }
            bytes = bytes.saturating_add(cost);
            let message = if oversized {
                Value::Null
            } else {
                message.clone()
            };
            rows.push(HistoryRow {
                seq: *seq,
                message,
                oversized,
            });
        }
        if matches!(q.range, HistoryRange::Tail { .. }) {
            rows.reverse();
        }
        HistoryPage {
            rows,
            total: t.keys().next_back().copied().unwrap_or(0),
        }
    }
}

impl Peer {
    /// Move what the client observed into `events`.
    fn collect_events(&mut self) {
        if let Some(c) = self.client.as_mut() {
            self.events.extend(std::iter::from_fn(|| c.poll_event()));
        }
    }
}

/// A local configuration with token `t` whose agent talks to the scripted model (provider
/// `fake`, model `fake-1`; the Sim answers its requests, nothing listens at its URL).
pub fn fake_model_config() -> Config {
    let mut c = Config::local_default().with_token("t");
    c.model = Some(crate::config::ModelRoute::new(
        "fake",
        "fake-1",
        "http://127.0.0.1:9/v1",
    ));
    c
}

/// A `cli`/`cli` client of the simulated gateway, with a shared token when given.
pub fn cli(token: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::cli("127.0.0.1:18789");
    c.token = token.map(str::to_string);
    c
}

/// A scripted OpenAI-compatible model's whole answer `text`: a 200, one streamed chunk that
/// stops, `[DONE]`, and the end.
pub fn openai_text_answer(text: &str) -> Vec<WorkResult> {
    let chunk = json!({"choices":[{"index":0,"delta":{"content": text},"finish_reason":"stop"}]});
    openai_chunk_answer(&chunk)
}

/// A scripted OpenAI-compatible model's answer calling tool `name` with `args` (one call).
pub fn openai_tool_call_answer(name: &str, args: &Value) -> Vec<WorkResult> {
    let call = json!({"index": 0, "id": "call_1", "type": "function",
        "function": {"name": name, "arguments": args.to_string()}});
    let chunk =
        json!({"choices":[{"index":0,"delta":{"tool_calls":[call]},"finish_reason":"tool_calls"}]});
    openai_chunk_answer(&chunk)
}

/// A 200 answer streaming the one chunk `chunk`, then `[DONE]`, and the end.
fn openai_chunk_answer(chunk: &Value) -> Vec<WorkResult> {
    vec![
        WorkResult::HttpHead {
            status: 200,
            headers: vec![],
        },
        WorkResult::HttpBody(format!("data: {chunk}\n\ndata: [DONE]\n\n").into_bytes()),
        WorkResult::HttpEnd(Ok(())),
    ]
}

/// The text of the last message of a model request (empty when it has none or it is not text).
pub fn last_message_text(req: &HttpRequest) -> String {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The first text block of every message of a `chat.history` page, in order (empty for a
/// message without one).
pub fn page_texts(page: &Value) -> Vec<String> {
    let messages = page["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    messages
        .iter()
        .map(|m| {
            m["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}
