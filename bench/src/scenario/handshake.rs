//! TCP connect → ready latency and handshakes per second at a fixed concurrency: each
//! connection is dropped as soon as it is ready and replaced by a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Context};
use crate::feed::Feed;
use crate::stats::Percentiles;
use crate::wire::{Note, Wire};

/// The result of one handshake run (or of several pooled, see [`crate::rates`]).
#[derive(Clone, Debug, Default)]
pub struct Handshakes {
    /// Connect → ready latency.
    pub latency: Percentiles,
    /// Every connect → ready latency of the run, in order (empty once pooled into `latency`).
    pub samples: Vec<Duration>,
    /// Completed handshakes per second over the run.
    pub per_sec: f64,
    /// Handshakes that failed, and the last reason.
    pub failures: usize,
    /// Why the last failure happened.
    pub last_failure: Option<String>,
}

/// Run up to `total` handshakes, `concurrency` at once, for at most `limit`.
pub fn run<W: Wire>(
    addr: SocketAddr,
    dial: &mut impl FnMut() -> W,
    total: usize,
    concurrency: usize,
    limit: Duration,
) -> Result<Handshakes, BenchError> {
    let mut pool = super::pool(addr)?;
    let mut feed = Feed::default();
    let mut started: HashMap<usize, Instant> = HashMap::new();
    let mut samples = Vec::with_capacity(total);
    let mut out = Handshakes::default();
    let t0 = Instant::now();
    let end = t0 + limit;
    let mut launched = 0usize;
    while (launched < total || !started.is_empty()) && Instant::now() < end {
        while launched < total && started.len() < concurrency && Instant::now() < end {
            let at = Instant::now();
            let key = pool.open(dial()).context("connect")?;
            started.insert(key, at);
            launched += 1;
        }
        feed.pump(&mut pool, Duration::from_millis(10))?;
        while let Some(a) = feed.pop() {
            let Some(t) = started.remove(&a.key) else {
                continue;
            };
            match a.note {
                Note::Ready => samples.push(a.at - t),
                Note::Closed(why) => {
                    out.failures += 1;
                    out.last_failure = Some(why);
                }
                _ => {
                    started.insert(a.key, t);
                    continue;
                }
            }
            pool.close(a.key);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    pool.close_all();
    out.latency = Percentiles::of(&samples);
    out.per_sec = samples.len() as f64 / elapsed.max(1e-9);
    out.samples = samples;
    Ok(out)
}
