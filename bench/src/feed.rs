//! A queue of [`Arrival`]s over a [`Pool`], so a scenario can take them one at a time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Context};
use crate::pool::{Arrival, Pool};
use crate::wire::Wire;

/// Longest single wait inside [`Feed::pump`], so callers get control back often.
const SLICE: Duration = Duration::from_millis(20);

/// Arrivals read from a pool and not yet taken.
#[derive(Default)]
pub struct Feed {
    queue: VecDeque<Arrival>,
    batch: Vec<Arrival>,
}

impl Feed {
    /// Wait up to `timeout` (at most 20 ms) for readiness and queue what arrived.
    pub fn pump<W: Wire>(
        &mut self,
        pool: &mut Pool<W>,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        pool.pump(timeout.min(SLICE), &mut self.batch)
            .context("poll client sockets")?;
        self.queue.extend(self.batch.drain(..));
        Ok(())
    }

    /// The oldest queued arrival, if any.
    pub fn pop(&mut self) -> Option<Arrival> {
        self.queue.pop_front()
    }

    /// The next arrival, waiting until `deadline`; `what` names the wait in the error.
    pub fn next<W: Wire>(
        &mut self,
        pool: &mut Pool<W>,
        deadline: Instant,
        what: &str,
    ) -> Result<Arrival, BenchError> {
        loop {
            if let Some(a) = self.pop() {
                return Ok(a);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BenchError::Timeout(what.to_string()));
            }
            self.pump(pool, deadline - now)?;
        }
    }

    /// Forget everything queued.
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}
