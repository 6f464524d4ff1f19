//! Everything measured for one server.

use std::time::Duration;

use crate::rates::Rates;
use crate::scenario::churn::Churn;
use crate::scenario::hold::FanOut;
use crate::stats::Percentiles;

impl Figures {
    /// The median idle RSS over the spawns, KiB.
    pub fn idle_median_kib(&self) -> Option<f64> {
        let v: Vec<f64> = self.idle_kib.iter().map(|&k| k as f64).collect();
        (!v.is_empty()).then(|| crate::stats::median(&v))
    }

    /// The median over the spawns of the binary's code resident at idle, KiB.
    pub fn idle_code_median_kib(&self) -> Option<f64> {
        let v: Vec<f64> = self.idle_code_kib.iter().map(|&k| k as f64).collect();
        (!v.is_empty()).then(|| crate::stats::median(&v))
    }
}

/// The figures of one server; `None` where a step was skipped or failed (see `notes`).
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Display name.
    pub name: String,
    /// Spawn → first ready handshake, ms, one per spawn.
    pub ready_ms: Vec<f64>,
    /// RSS after start (one handshake, then idle), KiB, one per spawn: where the kernel maps
    /// code in 64 KiB windows, the address the binary lands at (ASLR) moves this by tens of KiB.
    pub idle_kib: Vec<u64>,
    /// The binary's own code resident at idle (the `Rss` of its executable mapping), KiB, one
    /// per spawn, taken with [`Figures::idle_kib`].
    pub idle_code_kib: Vec<u64>,
    /// RSS with the small number of held connections, KiB.
    pub small_hold_kib: Option<u64>,
    /// Connections in the large hold.
    pub large_hold: usize,
    /// RSS with the large number of held connections, KiB.
    pub large_hold_kib: Option<u64>,
    /// Handshakes and round trips (the runs of each step combined, see [`crate::rates`]).
    pub rates: Rates,
    /// `node.invoke` (or the baseline's two-hop echo) round trip.
    pub invoke: Option<Percentiles>,
    /// Broadcast fan-out to the large hold.
    pub fanout: Option<FanOut>,
    /// Server CPU time per broadcast to the large hold, ms.
    pub fanout_cpu_ms: Option<f64>,
    /// Load-generator CPU time per broadcast to the large hold (reading it everywhere), ms.
    pub fanout_gen_cpu_ms: Option<f64>,
    /// The churn run.
    pub churn: Option<Churn>,
    /// Skipped or failed steps, and anything else worth reading.
    pub notes: Vec<String>,
    /// How long each step took, in the order they ran (the bench's own time).
    pub steps: Vec<(&'static str, Duration)>,
}
