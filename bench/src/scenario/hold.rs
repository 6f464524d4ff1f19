//! Many authenticated idle connections held open, and the time one broadcast (`tick`) takes
//! to reach all of them: first arrival to last, per tick, as read by the load generator.

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

/// Connections kept open and ready.
pub struct Held<W> {
    pool: Pool<W>,
    feed: Feed,
}

impl<W: Wire> Held<W> {
    /// No connections yet, to `addr`.
    pub fn new(addr: SocketAddr) -> Result<Self, BenchError> {
        Ok(Self {
            pool: super::pool(addr)?,
            feed: Feed::default(),
        })
    }

    /// Open connections until `n` are held, within `limit`.
    pub fn grow_to(
        &mut self,
        dial: &mut impl FnMut() -> W,
        n: usize,
        limit: Duration,
    ) -> Result<(), BenchError> {
        let more = n.saturating_sub(self.pool.len());
        super::ramp(
            &mut self.pool,
            &mut self.feed,
            dial,
            more,
            super::RAMP_WINDOW,
            limit,
        )?;
        Ok(())
    }

    /// Watch `ticks` broadcasts reach every held connection (or until the time `ticks + 2`
    /// intervals take, plus 5 s, has passed).
    pub fn fanout(&mut self, ticks: usize, interval: Duration) -> Result<FanOut, BenchError> {
        let n = self.pool.len();
        let since_ms = unix_ms();
        let end = Instant::now() + interval * (ticks as u32 + 2) + Duration::from_secs(5);
        // Each tick is told apart by its `ts` (the server's clock, ms): cheaper to key than
        // the whole payload, on the path that reads 10,000 arrivals per tick.
        let mut seen: HashMap<u64, (Instant, Instant, usize)> = HashMap::new();
        let mut out = FanOut {
            spreads_ms: Vec::new(),
            connections: n,
            ticks_seen: 0,
        };
        self.feed.clear();
        while out.spreads_ms.len() < ticks && Instant::now() < end {
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
                            out.spreads_ms.push((e.1 - e.0).as_secs_f64() * 1e3);
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
        out.ticks_seen = seen.len();
        if out.spreads_ms.is_empty() {
            return Err(BenchError::Timeout(format!(
                "a tick reaching all {n} connections"
            )));
        }
        Ok(out)
    }

    /// Close every connection.
    pub fn release(&mut self) {
        self.pool.close_all();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
