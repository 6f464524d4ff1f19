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
use crate::pool::{Arrival, Pool};
use crate::procs::{Launch, Server, TOKEN};
use crate::scenario::agent::{chat_state, config, failed, send};
use crate::wire::{GatewayWire, Note};

/// Text parts of each answer, and the pause before each (long enough that the gateway's
/// delta pacing sends several deltas per turn).
const PARTS: usize = 8;
const GAP: Duration = Duration::from_millis(40);
/// Longest wait for one turn.
const TURN_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait, after the sender read the last turn's final, for every watcher to have read
/// the finals of all turns.
const FINALS_LIMIT: Duration = Duration::from_secs(10);

/// What one gateway measured.
#[derive(Clone, Debug, Default)]
pub struct WatcherFigures {
    /// Server CPU per turn with the sender alone, µs.
    pub alone_us: f64,
    /// Server CPU per turn with the watchers connected, µs.
    pub watched_us: f64,
    /// `chat` deltas one watcher received per turn.
    pub deltas_per_turn: f64,
    /// `chat` and `agent` events each watcher received per turn.
    pub frames_per_turn: f64,
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

/// What one connection received of a run's turns.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// `chat` deltas of the run's turns.
    deltas: usize,
    /// `chat` and `agent` events (not the gateway's `tick`, `health` or `presence`).
    events: usize,
    /// `chat` finals of the run's turns.
    finals: usize,
}

/// Per connection key, what it received of the turns whose run ids start with one prefix.
/// A watcher may read a turn's frames after the sender has read its final and the next turn
/// has started, so they are counted by the run's prefix, not by the turn being waited for.
struct Tally {
    prefix: String,
    seen: HashMap<usize, Seen>,
}

impl Tally {
    fn new(tag: &str) -> Self {
        Self {
            prefix: format!("bench-watch-{tag}-"),
            seen: HashMap::new(),
        }
    }

    /// The run id of turn `i`.
    fn run(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// Count `a`; whether it is the `chat` final of `run`.
    fn count(&mut self, a: &Arrival, run: &str) -> bool {
        let Note::Event { event, .. } = &a.note else {
            return false;
        };
        if !matches!(event.as_str(), "chat" | "agent") {
            return false;
        }
        let e = self.seen.entry(a.key).or_default();
        e.events += 1;
        match chat_state(&a.note) {
            Some((r, "delta")) if r.starts_with(&self.prefix) => e.deltas += 1,
            Some((r, "final")) if r.starts_with(&self.prefix) => {
                e.finals += 1;
                return r == run;
            }
            _ => {}
        }
        false
    }

    /// What `key` received.
    fn of(&self, key: usize) -> Seen {
        self.seen.get(&key).copied().unwrap_or_default()
    }
}

/// Run `turns` turns from `sender` one after another, each started when the sender has read
/// the previous one's final; what every connection received of them, counted as it arrives.
fn turns(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    sender: usize,
    tag: &str,
    turns: usize,
) -> Result<Tally, BenchError> {
    let mut tally = Tally::new(tag);
    for i in 0..turns {
        let run = tally.run(i);
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
            if tally.count(&a, &run) && a.key == sender {
                break;
            }
        }
    }
    Ok(tally)
}

/// Read on until every one of `keys` has received the finals of `turns` turns, at most
/// [`FINALS_LIMIT`]; an error names the watchers still short of one then.
fn await_finals(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    tally: &mut Tally,
    keys: &[usize],
    turns: usize,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + FINALS_LIMIT;
    loop {
        while let Some(a) = feed.pop() {
            if let Some(why) = failed(&a.note) {
                return Err(BenchError::Protocol(why));
            }
            tally.count(&a, "");
        }
        let short = keys.iter().filter(|k| tally.of(**k).finals < turns).count();
        if short == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Protocol(format!(
                "{short} of {} watchers had not read the finals of all {turns} turns {:.0} s \
                 after the sender read its last",
                keys.len(),
                FINALS_LIMIT.as_secs_f64()
            )));
        }
        feed.pump(pool, deadline - Instant::now())?;
    }
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
    let mut seen = turns(&mut pool, &mut feed, sender, "watched", runs)?;
    await_finals(&mut pool, &mut feed, &mut seen, &keys, runs)?;
    let watched_us = (server.cpu_ns() - cpu) as f64 / 1e3 / runs as f64;
    let per: Vec<Seen> = keys.iter().map(|k| seen.of(*k)).collect();
    let mean = |f: fn(&Seen) -> usize| {
        per.iter().map(f).sum::<usize>() as f64 / per.len().max(1) as f64 / runs as f64
    };
    server.check_alive()?;
    pool.close_all();
    Ok(WatcherFigures {
        alone_us,
        watched_us,
        deltas_per_turn: mean(|p| p.deltas),
        frames_per_turn: mean(|p| p.events),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(key: usize, run: &str, state: &str) -> Arrival {
        Arrival {
            key,
            at: Instant::now(),
            note: Note::Event {
                event: "chat".into(),
                payload: json!({"runId": run, "state": state}),
            },
        }
    }

    #[test]
    fn a_final_read_after_the_senders_counts_for_its_own_turn() {
        let (sender, watcher) = (0, 1);
        let mut t = Tally::new("watched");
        let (first, second) = (t.run(0), t.run(1));
        assert!(!t.count(&chat(watcher, &first, "delta"), &first));
        assert!(t.count(&chat(sender, &first, "final"), &first));
        // The watcher's final of turn 0 is read while turn 1 is awaited.
        assert!(!t.count(&chat(watcher, &first, "final"), &second));
        assert!(t.count(&chat(watcher, &second, "final"), &second));
        let tick = Arrival {
            key: watcher,
            at: Instant::now(),
            note: Note::Event {
                event: "tick".into(),
                payload: json!({}),
            },
        };
        assert!(!t.count(&tick, &second));
        let w = t.of(watcher);
        assert_eq!((w.deltas, w.finals, w.events), (1, 2, 3));
        // Another run's frames are not this one's.
        assert!(!t.count(&chat(watcher, "bench-watch-alone-0", "final"), &second));
        assert_eq!(t.of(watcher).finals, 2);
    }
}
