//! Connections opening and closing for a while, a fixed number held, with the server's RSS
//! sampled every second: its slope shows whether anything is retained per connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Context};
use crate::feed::Feed;
use crate::stats;
use crate::wire::{Note, Wire};

/// Handshakes at once while churning.
const WINDOW: usize = 16;

/// What a churn run saw.
#[derive(Clone, Debug, Default)]
pub struct Churn {
    /// (seconds since start, server RSS KiB), once a second.
    pub samples: Vec<(f64, u64)>,
    /// Connections opened and closed.
    pub cycles: u64,
    /// Handshakes that failed.
    pub failures: u64,
    /// How long it ran, in seconds.
    pub secs: f64,
}

impl Churn {
    /// RSS slope in KiB per minute over the second half of the run: the first is the churn's
    /// working set filling up (handshakes in flight, sockets closing, the allocator's
    /// high-water mark), which levels off (clawgate-smol: within about 30 s, then flat for the
    /// rest of a 240 s run), and only growth after it is kept per connection.
    pub fn slope_kib_per_min(&self) -> f64 {
        let skip = self.samples.len() / 2;
        let pts: Vec<(f64, f64)> = self
            .samples
            .iter()
            .skip(skip)
            .map(|&(t, kib)| (t / 60.0, kib as f64))
            .collect();
        stats::slope(&pts)
    }

    /// The RSS sample (KiB) at the end of each tenth of the run, to show whether growth levels
    /// off.
    pub fn tenths_kib(&self) -> Vec<u64> {
        let n = self.samples.len();
        (1..=10)
            .filter_map(|k| self.samples.get((n * k / 10).saturating_sub(1)))
            .map(|&(_, kib)| kib)
            .collect()
    }
}

/// Hold `keep` connections and replace them at `rate` per second for `secs`, sampling `rss`.
pub fn run<W: Wire>(
    addr: SocketAddr,
    dial: &mut impl FnMut() -> W,
    keep: usize,
    rate: f64,
    secs: u64,
    rss: impl Fn() -> u64,
) -> Result<Churn, BenchError> {
    let mut pool = super::pool(addr)?;
    let mut feed = Feed::default();
    let mut ready: VecDeque<usize> = super::ramp(
        &mut pool,
        &mut feed,
        dial,
        keep,
        super::RAMP_WINDOW,
        Duration::from_secs(60),
    )?
    .into();
    let mut out = Churn::default();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut next_sample = t0;
    let mut pending = 0usize;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            out.samples.push(((now - t0).as_secs_f64(), rss()));
            next_sample += Duration::from_secs(1);
        }
        let due = ((now - t0).as_secs_f64() * rate) as u64;
        while out.cycles < due && pending < WINDOW {
            if let Some(old) = ready.pop_front() {
                pool.close(old);
            }
            pool.open(dial()).context("connect")?;
            pending += 1;
            out.cycles += 1;
        }
        feed.pump(&mut pool, Duration::from_millis(5))?;
        while let Some(a) = feed.pop() {
            match a.note {
                Note::Ready => {
                    ready.push_back(a.key);
                    pending -= 1;
                }
                Note::Closed(_) => {
                    pool.close(a.key);
                    if let Some(i) = ready.iter().position(|k| *k == a.key) {
                        ready.remove(i);
                    } else {
                        pending -= 1;
                    }
                    out.failures += 1;
                    if out.failures > 100 + out.cycles / 100 {
                        return Err(BenchError::Protocol(format!(
                            "{} churn handshakes failed",
                            out.failures
                        )));
                    }
                }
                _ => {}
            }
        }
    }
    out.secs = t0.elapsed().as_secs_f64();
    out.samples.push((out.secs, rss()));
    pool.close_all();
    Ok(out)
}
