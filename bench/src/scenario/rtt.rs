//! Request round trips (`health`, or the baseline's echo), closed loop: every connection has
//! one request outstanding and sends the next as soon as the answer arrives.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::feed::Feed;
use crate::stats::Percentiles;
use crate::wire::{Note, Wire};

/// The result of one round-trip run (or of several pooled, see [`crate::rates`]).
#[derive(Clone, Debug, Default)]
pub struct RoundTrips {
    /// Round-trip latency.
    pub latency: Percentiles,
    /// Every round-trip latency of the run, in order (empty once pooled into `latency`).
    pub samples: Vec<Duration>,
    /// Answers per second over the run, all connections together.
    pub per_sec: f64,
}

/// Open `conns` connections, then keep one request outstanding on each for `limit` or until
/// `max_total` answers.
pub fn run<W: Wire>(
    addr: SocketAddr,
    dial: &mut impl FnMut() -> W,
    conns: usize,
    limit: Duration,
    max_total: usize,
) -> Result<RoundTrips, BenchError> {
    let mut pool = super::pool(addr)?;
    let mut feed = Feed::default();
    let keys = super::ramp(
        &mut pool,
        &mut feed,
        dial,
        conns,
        super::RAMP_WINDOW,
        Duration::from_secs(30),
    )?;
    let mut sent: Vec<Option<(Instant, String)>> = Vec::new();
    let t0 = Instant::now();
    for &key in &keys {
        send(&mut pool, &mut sent, key);
    }
    let end = t0 + limit;
    let mut samples = Vec::with_capacity(max_total.min(1 << 20));
    while Instant::now() < end && samples.len() < max_total {
        feed.pump(&mut pool, end.saturating_duration_since(Instant::now()))?;
        while let Some(a) = feed.pop() {
            match a.note {
                Note::Response { id, result } => {
                    let Some((t, want)) = sent.get_mut(a.key).and_then(Option::take) else {
                        continue;
                    };
                    if id != want {
                        return Err(BenchError::Protocol(format!(
                            "answer {id}, expected {want}"
                        )));
                    }
                    result.map_err(BenchError::Protocol)?;
                    samples.push(a.at - t);
                    send(&mut pool, &mut sent, a.key);
                }
                Note::Closed(why) => {
                    return Err(BenchError::Protocol(format!("connection closed: {why}")));
                }
                _ => {}
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    pool.close_all();
    Ok(RoundTrips {
        latency: Percentiles::of(&samples),
        per_sec: samples.len() as f64 / elapsed.max(1e-9),
        samples,
    })
}

fn send<W: Wire>(
    pool: &mut crate::pool::Pool<W>,
    sent: &mut Vec<Option<(Instant, String)>>,
    key: usize,
) {
    if sent.len() <= key {
        sent.resize(key + 1, None);
    }
    let at = Instant::now();
    if let Some(id) = pool.with(key, |w| w.send_probe())
        && let Some(slot) = sent.get_mut(key)
    {
        *slot = Some((at, id));
    }
}
