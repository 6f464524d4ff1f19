//! Everything measured for one server.

use crate::scenario::churn::Churn;
use crate::scenario::handshake::Handshakes;
use crate::scenario::hold::FanOut;
use crate::scenario::rtt::RoundTrips;
use crate::stats::Percentiles;

impl Figures {
    /// The median idle RSS over the spawns, KiB.
    pub fn idle_median_kib(&self) -> Option<f64> {
        let v: Vec<f64> = self.idle_kib.iter().map(|&k| k as f64).collect();
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
    /// RSS with the small number of held connections, KiB.
    pub small_hold_kib: Option<u64>,
    /// Connections in the large hold.
    pub large_hold: usize,
    /// RSS with the large number of held connections, KiB.
    pub large_hold_kib: Option<u64>,
    /// Handshakes one at a time.
    pub hs_c1: Option<Handshakes>,
    /// Handshakes 64 at a time.
    pub hs_c64: Option<Handshakes>,
    /// Server CPU time per handshake in the c=64 run, µs.
    pub hs_cpu_us: Option<f64>,
    /// Load-generator CPU time per handshake in the c=64 run, µs.
    pub hs_gen_cpu_us: Option<f64>,
    /// Round trips on one connection.
    pub rtt_1: Option<RoundTrips>,
    /// Round trips on 64 connections.
    pub rtt_64: Option<RoundTrips>,
    /// Server CPU time per request in the 64-connection run, µs.
    pub rtt_cpu_us: Option<f64>,
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
}
