//! The cost of broadcasting a streamed answer's deltas to many operators: the server's CPU
//! per turn with only the sending operator connected, then with `watchers` more read-only
//! operators connected (each receives every `chat` and `agent` event of the run), the same
//! fake model streaming the same answers. The difference, divided by the `chat` deltas of a
//! turn, is what one delta broadcast to that many operators costs (its `agent` twin included).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_tests::fake_model::{FakeModel, Reply};

use crate::error::BenchError;
use crate::feed::Feed;
use crate::pool::Pool;
use crate::procs::{Launch, Server, TOKEN};
use crate::scenario::agent::{chat_state, config, failed, send};
use crate::wire::{GatewayWire, Note};

/// Text parts of each answer, and the pause before each (long enough that the gateway's
/// delta pacing sends several deltas per turn).
const PARTS: usize = 8;
const GAP: Duration = Duration::from_millis(40);
/// Longest wait for one turn.
const TURN_LIMIT: Duration = Duration::from_secs(60);

/// What one gateway measured.
#[derive(Clone, Debug, Default)]
pub struct WatcherFigures {
    /// Read-only operators in the second run.
    pub watchers: usize,
    /// Server CPU per turn with the sender alone, µs.
    pub alone_us: f64,
    /// Server CPU per turn with the watchers connected, µs.
    pub watched_us: f64,
    /// `chat` deltas one watcher received per turn.
    pub deltas_per_turn: f64,
    /// Frames (every event) each watcher received per turn.
    pub frames_per_turn: f64,
    /// Watchers that missed a turn's `final`.
    pub watchers_short: usize,
}

impl WatcherFigures {
    /// Extra server CPU per `chat` delta for broadcasting it to the watchers, µs; `None` when
    /// the turns with watchers cost less than those without (the difference is lost in what
    /// else the server did meanwhile, as upstream's timers and garbage collection).
    pub fn per_delta_us(&self) -> Option<f64> {
        let extra = self.watched_us - self.alone_us;
        (extra >= 0.0).then(|| extra / self.deltas_per_turn.max(1.0))
    }
}

/// A read-only operator (`operator.read`, as the bench's other clients).
fn watcher(addr: SocketAddr, n: u64) -> GatewayWire {
    let mut cfg = ClientConfig::cli(&addr.to_string());
    cfg.token = Some(TOKEN.into());
    GatewayWire::new(cfg, super::ws_key(n))
}

/// Run `turns` turns from `sender` one after another; per watcher key, the `chat` deltas and
/// all events it received, and the finals.
fn turns(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    sender: usize,
    tag: &str,
    turns: usize,
) -> Result<HashMap<usize, (usize, usize, usize)>, BenchError> {
    let mut seen: HashMap<usize, (usize, usize, usize)> = HashMap::new();
    for i in 0..turns {
        let run = format!("bench-watch-{tag}-{i}");
        send(
            pool,
            sender,
            "agent:main:bench-watch",
            "stream please",
            &run,
        );
        let deadline = Instant::now() + TURN_LIMIT;
        loop {
            let a = feed.next(pool, deadline, "a watched turn's final")?;
            if let Some(why) = failed(&a.note) {
                return Err(BenchError::Protocol(why));
            }
            if matches!(a.note, Note::Event { .. }) {
                let e = seen.entry(a.key).or_default();
                e.1 += 1;
                match chat_state(&a.note) {
                    Some((r, "delta")) if r == run => e.0 += 1,
                    Some((r, "final")) if r == run => {
                        e.2 += 1;
                        if a.key == sender {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // The watchers read the last frames after the sender's final.
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        feed.pump(pool, Duration::from_millis(20))?;
        while let Some(a) = feed.pop() {
            if matches!(a.note, Note::Event { .. }) {
                let e = seen.entry(a.key).or_default();
                e.1 += 1;
                match chat_state(&a.note) {
                    Some((_, "delta")) => e.0 += 1,
                    Some((_, "final")) => e.2 += 1,
                    _ => {}
                }
            }
        }
    }
    Ok(seen)
}

/// Everything [`WatcherFigures`] holds, for the gateway `launch` starts.
pub fn measure(
    name: &str,
    launch: &Launch,
    watchers: usize,
    runs: usize,
) -> Result<WatcherFigures, BenchError> {
    let model = FakeModel::start(|_| {
        let words: Vec<String> = (0..PARTS).map(|i| format!("word{i} ")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        Reply::text(&words).with_delay(GAP)
    });
    let mut server = Server::spawn_with(name, launch, &config(&model, 4))?;
    let addr = server.addr;
    super::agent::await_ready(&mut server)?;
    let (mut pool, mut feed, sender) = super::agent::connect(addr)?;
    // Warm-up (upstream prepares its workspace on the first turn).
    turns(&mut pool, &mut feed, sender, "warm-up", 1)?;
    let cpu = server.cpu_ns();
    turns(&mut pool, &mut feed, sender, "alone", runs)?;
    let alone_us = (server.cpu_ns() - cpu) as f64 / 1e3 / runs as f64;
    let mut k = 1_000u64;
    let mut dial = || {
        k += 1;
        watcher(addr, k)
    };
    let keys = super::ramp(
        &mut pool,
        &mut feed,
        &mut dial,
        watchers,
        super::RAMP_WINDOW,
        Duration::from_secs(120),
    )?;
    feed.clear();
    let cpu = server.cpu_ns();
    let seen = turns(&mut pool, &mut feed, sender, "watched", runs)?;
    let watched_us = (server.cpu_ns() - cpu) as f64 / 1e3 / runs as f64;
    let per: Vec<(usize, usize, usize)> = keys
        .iter()
        .map(|k| seen.get(k).copied().unwrap_or_default())
        .collect();
    let mean = |f: fn(&(usize, usize, usize)) -> usize| {
        per.iter().map(f).sum::<usize>() as f64 / per.len().max(1) as f64 / runs as f64
    };
    server.check_alive()?;
    pool.close_all();
    Ok(WatcherFigures {
        watchers,
        alone_us,
        watched_us,
        deltas_per_turn: mean(|p| p.0),
        frames_per_turn: mean(|p| p.1),
        watchers_short: per.iter().filter(|p| p.2 < runs).count(),
    })
}
