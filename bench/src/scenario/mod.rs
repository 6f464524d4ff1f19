//! The measurements, each over a [`Pool`] of client connections to one server.

pub mod agent;
pub mod channels;
pub mod churn;
pub mod handshake;
pub mod hold;
pub mod hops;
pub mod invoke;
pub mod ready;
pub mod rtt;
pub mod transcripts;
pub mod watchers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Context};
use crate::feed::Feed;
use crate::pool::Pool;
use crate::wire::{Note, Wire};

/// Connections handshaking at once while a scenario opens many (under the gateway's pre-auth
/// budget per address even when it is not raised).
pub const RAMP_WINDOW: usize = 24;

/// A fresh pool for `addr`.
pub fn pool<W: Wire>(addr: SocketAddr) -> Result<Pool<W>, BenchError> {
    Pool::new(addr).context("create a client poll")
}

/// Open connections until `n` more are ready in `pool`, at most `window` handshaking at once,
/// within `limit`; returns their keys. A few failed attempts are retried; many are an error.
pub fn ramp<W: Wire>(
    pool: &mut Pool<W>,
    feed: &mut Feed,
    dial: &mut impl FnMut() -> W,
    n: usize,
    window: usize,
    limit: Duration,
) -> Result<Vec<usize>, BenchError> {
    let end = Instant::now() + limit;
    let mut ready = Vec::with_capacity(n);
    let mut pending = 0usize;
    let mut failures = 0usize;
    while ready.len() < n {
        if Instant::now() >= end {
            return Err(BenchError::Timeout(format!(
                "opening {n} connections ({} ready)",
                ready.len()
            )));
        }
        while pending < window && ready.len() + pending < n {
            pool.open(dial()).context("connect")?;
            pending += 1;
        }
        feed.pump(pool, Duration::from_millis(10))?;
        while let Some(a) = feed.pop() {
            match a.note {
                Note::Ready => {
                    ready.push(a.key);
                    pending -= 1;
                }
                Note::Closed(why) if ready.contains(&a.key) => {
                    return Err(BenchError::Protocol(format!(
                        "held connection closed: {why}"
                    )));
                }
                Note::Closed(why) => {
                    pool.close(a.key);
                    pending -= 1;
                    failures += 1;
                    if failures > 10 + n / 100 {
                        return Err(BenchError::Protocol(format!(
                            "{failures} handshakes failed, last: {why}"
                        )));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(ready)
}

/// A WebSocket key for the `n`th connection (uniqueness is all that matters here).
pub fn ws_key(n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&n.to_le_bytes());
    k[8..].copy_from_slice(&(!n).to_le_bytes());
    k
}
