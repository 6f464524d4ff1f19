//! The rate steps (handshakes at c=1 and c=64, `health` round trips on 1 and 64 connections)
//! in rounds: on a 2-core machine the load generator and the server share the cores and one
//! run moves by tenths, so every server but upstream runs each step once per round, the
//! servers alternating (each round starts with the next one), and the report takes the median
//! round of each figure and shows the spread.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::BenchError;
use crate::procs::{self, Server};
use crate::scenario::handshake::{self, Handshakes};
use crate::scenario::rtt::{self, RoundTrips};
use crate::stats;
use crate::wire::Wire;

/// How much each step of a round does.
#[derive(Clone, Copy, Debug)]
pub struct RatePlan {
    /// Most handshakes at c=1.
    pub hs_c1: usize,
    /// Most handshakes at c=64.
    pub hs_c64: usize,
    /// Longest time of each step.
    pub step: Duration,
}

/// The figures of the rate steps: one round's, or the median round's of several.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    /// Handshakes one at a time.
    pub hs_c1: Option<Handshakes>,
    /// Handshakes 64 at a time.
    pub hs_c64: Option<Handshakes>,
    /// Round trips on one connection.
    pub rtt_1: Option<RoundTrips>,
    /// Round trips on 64 connections.
    pub rtt_64: Option<RoundTrips>,
    /// Server and load-generator CPU per handshake at c=1, µs.
    pub hs_c1_cpu: CpuPerOp,
    /// Server and load-generator CPU per handshake at c=64, µs.
    pub hs_c64_cpu: CpuPerOp,
    /// Server and load-generator CPU per request on 64 connections, µs (the ramp's 64
    /// handshakes included, a small share of the requests).
    pub rtt_64_cpu: CpuPerOp,
    /// Rounds the figures are the median of.
    pub rounds: usize,
    /// Lowest and highest rate over the rounds: handshakes/s c=1 and c=64, requests/s on 1
    /// and 64 connections.
    pub spread: [Option<(f64, f64)>; 4],
}

/// CPU time per operation of the server and of the load generator, µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuPerOp {
    /// The server process and its descendants.
    pub server: Option<f64>,
    /// This process (the load generator).
    pub generator: Option<f64>,
}

/// CPU used so far by the server and by this process, ns.
struct CpuMark {
    server: u64,
    generator: u64,
}

impl CpuMark {
    fn take(server: &Server) -> Self {
        Self {
            server: server.cpu_ns(),
            generator: procs::own_cpu_ns(std::process::id()),
        }
    }

    /// CPU per operation since the mark, for `ops` operations.
    fn per_op(&self, server: &Server, ops: usize) -> CpuPerOp {
        let per = |ns: u64| Some(ns as f64 / 1e3 / ops.max(1) as f64);
        let now = Self::take(server);
        CpuPerOp {
            server: per(now.server.saturating_sub(self.server)),
            generator: per(now.generator.saturating_sub(self.generator)),
        }
    }
}

/// Record a step's result, or its failure in `notes`.
fn noted<T>(notes: &mut Vec<String>, step: &str, r: Result<T, BenchError>) -> Option<T> {
    r.map_err(|e| {
        eprintln!("   {step}: {e}");
        notes.push(format!("{step}: {e}"));
    })
    .ok()
}

/// One round of the rate steps on `server`; failed steps are noted and stay empty.
pub fn round<W: Wire>(
    server: &Server,
    dial: &mut impl FnMut() -> W,
    plan: &RatePlan,
    notes: &mut Vec<String>,
) -> Rates {
    let addr: SocketAddr = server.addr;
    let mut r = Rates {
        rounds: 1,
        ..Rates::default()
    };
    let mark = CpuMark::take(server);
    let hs = handshake::run(addr, dial, plan.hs_c1, 1, plan.step);
    r.hs_c1 = noted(notes, "handshakes c=1", hs);
    if let Some(h) = &r.hs_c1 {
        r.hs_c1_cpu = mark.per_op(server, h.latency.n);
    }
    let mark = CpuMark::take(server);
    let hs = handshake::run(addr, dial, plan.hs_c64, 64, plan.step);
    r.hs_c64 = noted(notes, "handshakes c=64", hs);
    if let Some(h) = &r.hs_c64 {
        r.hs_c64_cpu = mark.per_op(server, h.latency.n);
    }
    let rt = rtt::run(addr, dial, 1, plan.step, 1_000_000);
    r.rtt_1 = noted(notes, "round trips x1", rt);
    let mark = CpuMark::take(server);
    let rt = rtt::run(addr, dial, 64, plan.step, 10_000_000);
    r.rtt_64 = noted(notes, "round trips x64", rt);
    if let Some(t) = &r.rtt_64 {
        r.rtt_64_cpu = mark.per_op(server, t.latency.n);
    }
    r.spread = r.rates().map(|v| v.map(|v| (v, v)));
    r
}

impl Rates {
    /// The four rates: handshakes/s c=1, c=64, requests/s on 1 and 64 connections.
    pub fn rates(&self) -> [Option<f64>; 4] {
        [
            self.hs_c1.as_ref().map(|h| h.per_sec),
            self.hs_c64.as_ref().map(|h| h.per_sec),
            self.rtt_1.as_ref().map(|r| r.per_sec),
            self.rtt_64.as_ref().map(|r| r.per_sec),
        ]
    }

    /// The median of `rounds`: each rate from the round with its median value (with that
    /// round's latencies), each CPU figure the median over the rounds, and the spread.
    pub fn median_of(rounds: &[Rates]) -> Rates {
        let pick = |i: usize| -> Option<&Rates> {
            let mut have: Vec<(&Rates, f64)> = rounds
                .iter()
                .filter_map(|r| Some((r, r.rates()[i]?)))
                .collect();
            have.sort_by(|a, b| a.1.total_cmp(&b.1));
            have.get(have.len().saturating_sub(1) / 2).map(|(r, _)| *r)
        };
        let spread = |i: usize| {
            let v: Vec<f64> = rounds.iter().filter_map(|r| r.rates()[i]).collect();
            let lo = v.iter().copied().reduce(f64::min)?;
            Some((lo, v.iter().copied().reduce(f64::max)?))
        };
        let cpu = |get: fn(&Rates) -> CpuPerOp| {
            let med = |f: fn(CpuPerOp) -> Option<f64>| {
                let v: Vec<f64> = rounds.iter().filter_map(|r| f(get(r))).collect();
                (!v.is_empty()).then(|| stats::median(&v))
            };
            CpuPerOp {
                server: med(|c| c.server),
                generator: med(|c| c.generator),
            }
        };
        Rates {
            hs_c1: pick(0).and_then(|r| r.hs_c1.clone()),
            hs_c64: pick(1).and_then(|r| r.hs_c64.clone()),
            rtt_1: pick(2).and_then(|r| r.rtt_1.clone()),
            rtt_64: pick(3).and_then(|r| r.rtt_64.clone()),
            hs_c1_cpu: cpu(|r| r.hs_c1_cpu),
            hs_c64_cpu: cpu(|r| r.hs_c64_cpu),
            rtt_64_cpu: cpu(|r| r.rtt_64_cpu),
            rounds: rounds.len(),
            spread: [0, 1, 2, 3].map(spread),
        }
    }
}

/// A running server in the rounds: how to open a connection to it, and its failed steps.
pub struct Contender<'a, W> {
    /// The server.
    pub server: &'a Server,
    /// Opens the next connection to it.
    pub dial: Box<dyn FnMut() -> W + 'a>,
    /// Steps that failed, and why.
    pub notes: Vec<String>,
}

/// `rounds` rounds over the running `servers`, alternating: round `k` starts with server
/// `k mod n`. Returns the median of each server's rounds.
pub fn alternate<W: Wire>(
    servers: &mut [Contender<'_, W>],
    rounds: usize,
    plan: &RatePlan,
) -> Vec<Rates> {
    let n = servers.len();
    let mut all: Vec<Vec<Rates>> = vec![Vec::new(); n];
    for k in 0..rounds {
        for j in 0..n {
            let i = (k + j) % n;
            if let (Some(c), Some(out)) = (servers.get_mut(i), all.get_mut(i)) {
                eprintln!("   round {} of {rounds}: {}", k + 1, c.server.name());
                out.push(round(c.server, &mut c.dial, plan, &mut c.notes));
            }
        }
    }
    all.iter().map(|r| Rates::median_of(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;

    fn with_rates(hs1: f64, cpu: f64) -> Rates {
        Rates {
            hs_c1: Some(Handshakes {
                per_sec: hs1,
                latency: Percentiles {
                    p50: 1e6 / hs1,
                    ..Percentiles::default()
                },
                ..Handshakes::default()
            }),
            hs_c1_cpu: CpuPerOp {
                server: Some(cpu),
                generator: None,
            },
            rounds: 1,
            ..Rates::default()
        }
    }

    #[test]
    fn the_median_round_keeps_its_latencies_and_the_spread_its_extremes() {
        let m = Rates::median_of(&[
            with_rates(100.0, 5.0),
            with_rates(300.0, 1.0),
            with_rates(200.0, 9.0),
        ]);
        let h = m.hs_c1.unwrap();
        assert_eq!(h.per_sec, 200.0);
        assert_eq!(h.latency.p50, 5000.0);
        assert_eq!(m.spread[0], Some((100.0, 300.0)));
        assert_eq!(m.spread[1], None);
        assert_eq!(m.hs_c1_cpu.server, Some(5.0));
        assert_eq!(m.hs_c1_cpu.generator, None);
        assert_eq!(m.rounds, 3);
        assert!(m.hs_c64.is_none());
    }
}
