//! Many authenticated idle connections held open, and the time one broadcast (`tick`) takes
//! to reach all of them: first arrival to last, per tick, as read by the load generator.
//!
//! The connections are spread over one receiving thread per CPU, each with its own poll, so
//! reading 10,000 sockets is not one thread's work: the spread measures the server's fan-out
//! more than the generator's reading (the bare baseline's column shows what is left of it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::BenchError;
use crate::feed::Feed;
use crate::pool::Pool;
use crate::wire::{Note, Wire};

/// Broadcast spreads over the ticks that reached every held connection.
#[derive(Clone, Debug, Default)]
pub struct FanOut {
    /// First → last arrival of each complete tick, in ms.
    pub spreads_ms: Vec<f64>,
    /// Connections each tick had to reach.
    pub connections: usize,
    /// Distinct ticks seen while watching, complete or not.
    pub ticks_seen: usize,
}

/// One receiving thread's connections.
struct Shard<W> {
    pool: Pool<W>,
    feed: Feed,
}

/// First arrival, last arrival and arrivals of each tick (keyed by its `ts`).
type Arrivals = HashMap<u64, (Instant, Instant, usize)>;

/// Connections kept open and ready.
pub struct Held<W> {
    shards: Vec<Shard<W>>,
}

impl<W: Wire> Held<W> {
    /// No connections yet, to `addr`; one shard per CPU.
    pub fn new(addr: SocketAddr) -> Result<Self, BenchError> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (0..n)
            .map(|_| {
                Ok(Shard {
                    pool: super::pool(addr)?,
                    feed: Feed::default(),
                })
            })
            .collect::<Result<_, BenchError>>()?;
        Ok(Self { shards })
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.pool.len()).sum()
    }

    /// Open connections until `n` are held, within `limit` (spread evenly over the shards).
    pub fn grow_to(
        &mut self,
        dial: &mut impl FnMut() -> W,
        n: usize,
        limit: Duration,
    ) -> Result<(), BenchError> {
        let end = Instant::now() + limit;
        let count = self.shards.len();
        for (i, s) in self.shards.iter_mut().enumerate() {
            let share = n / count + usize::from(i < n % count);
            let more = share.saturating_sub(s.pool.len());
            super::ramp(
                &mut s.pool,
                &mut s.feed,
                dial,
                more,
                super::RAMP_WINDOW,
                end.saturating_duration_since(Instant::now()),
            )?;
        }
        Ok(())
    }

    /// Watch `ticks` broadcasts reach every held connection (or until the time `ticks + 2`
    /// intervals take, plus 5 s, has passed), each shard on its own thread.
    pub fn fanout(&mut self, ticks: usize, interval: Duration) -> Result<FanOut, BenchError> {
        let n = self.len();
        let since_ms = unix_ms();
        let end = Instant::now() + interval * (ticks as u32 + 2) + Duration::from_secs(5);
        let results: Vec<Result<Arrivals, BenchError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .map(|s| scope.spawn(move || s.watch(ticks, since_ms, end)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(BenchError::Protocol("a receiver panicked".into())))
                })
                .collect()
        });
        let mut seen: Arrivals = HashMap::new();
        for r in results {
            for (ts, (first, last, count)) in r? {
                let e = seen.entry(ts).or_insert((first, last, 0));
                e.0 = e.0.min(first);
                e.1 = e.1.max(last);
                e.2 += count;
            }
        }
        let mut complete: Vec<(u64, f64)> = seen
            .iter()
            .filter(|(_, e)| e.2 == n)
            .map(|(ts, e)| (*ts, (e.1 - e.0).as_secs_f64() * 1e3))
            .collect();
        complete.sort_by_key(|c| c.0);
        let out = FanOut {
            spreads_ms: complete.into_iter().map(|c| c.1).take(ticks).collect(),
            connections: n,
            ticks_seen: seen.len(),
        };
        if out.spreads_ms.is_empty() {
            return Err(BenchError::Timeout(format!(
                "a tick reaching all {n} connections"
            )));
        }
        Ok(out)
    }

    /// Close every connection.
    pub fn release(&mut self) {
        for s in &mut self.shards {
            s.pool.close_all();
        }
    }
}

impl<W: Wire> Shard<W> {
    /// Read ticks until `ticks` of them reached every connection of this shard, or `end`.
    fn watch(&mut self, ticks: usize, since_ms: u64, end: Instant) -> Result<Arrivals, BenchError> {
        let n = self.pool.len();
        // Each tick is told apart by its `ts` (the server's clock, ms): cheaper to key than
        // the whole payload, on the path that reads thousands of arrivals per tick.
        let mut seen: Arrivals = HashMap::new();
        let mut complete = 0;
        self.feed.clear();
        while complete < ticks && Instant::now() < end {
            self.feed.pump(&mut self.pool, Duration::from_millis(20))?;
            while let Some(a) = self.feed.pop() {
                match a.note {
                    Note::Event { event, payload } if event == "tick" => {
                        let Some(ts) = payload.get("ts").and_then(Value::as_u64) else {
                            return Err(BenchError::Protocol(format!(
                                "tick without a numeric ts: {payload}"
                            )));
                        };
                        if ts < since_ms {
                            continue;
                        }
                        let e = seen.entry(ts).or_insert((a.at, a.at, 0));
                        e.0 = e.0.min(a.at);
                        e.1 = e.1.max(a.at);
                        e.2 += 1;
                        if e.2 == n {
                            complete += 1;
                        }
                    }
                    Note::Closed(why) => {
                        return Err(BenchError::Protocol(format!(
                            "held connection closed: {why}"
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(seen)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
