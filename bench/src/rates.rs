//! The rate steps (handshakes at c=1 and c=64, `health` round trips on 1 and 64 connections).
//! At c=1 a rate is one client's round trip, so it moves with whatever else the machine runs:
//! on a shared 2-core machine one run of a step moves by tenths from one second to the next.
//! So every server but upstream runs each step many times in short runs, the servers taking
//! turns run by run (A B C, B C A, C A B, …: each goes first as often), one step at a time. A
//! server's rate is the median of its runs and its latencies and CPU per operation pool all
//! its runs; its ratio to the baseline is the median of the ratios of runs taken side by side
//! (its run k over the baseline's run k), shown with their spread, so a slow moment of the
//! machine moves both sides of a ratio.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::BenchError;
use crate::procs::{self, Server};
use crate::scenario::handshake::{self, Handshakes};
use crate::scenario::rtt::{self, RoundTrips};
use crate::stats::{self, Percentiles};
use crate::wire::Wire;

/// How much one run of each step does.
#[derive(Clone, Copy, Debug)]
pub struct RatePlan {
    /// Most handshakes at c=1.
    pub hs_c1: usize,
    /// Most handshakes at c=64.
    pub hs_c64: usize,
    /// Longest time of each step.
    pub step: Duration,
}

/// The figures of the rate steps: one run's, or the runs of each step combined.
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
    /// Runs of each step the figures combine.
    pub runs: usize,
    /// Lowest and highest rate over the runs: handshakes/s c=1 and c=64, requests/s on 1
    /// and 64 connections.
    pub spread: [Option<(f64, f64)>; 4],
    /// The same four rates to the baseline's, run by run (`None` for the baseline itself and
    /// where the rates did not run side by side with it).
    pub to_baseline: [Option<Paired>; 4],
}

/// The ratios of runs taken side by side: their median and the middle half of them (a run
/// stalled by another process makes one wild ratio, which the quartiles leave out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// The median ratio.
    pub median: f64,
    /// The first quartile.
    pub lower: f64,
    /// The third quartile.
    pub upper: f64,
    /// Pairs of runs.
    pub pairs: usize,
}

impl Paired {
    /// The median and quartiles of `ratios`; `None` when there are none.
    fn of(ratios: &[f64]) -> Option<Self> {
        (!ratios.is_empty()).then(|| Self {
            median: stats::median(ratios),
            lower: stats::quantile(ratios, 0.25),
            upper: stats::quantile(ratios, 0.75),
            pairs: ratios.len(),
        })
    }
}

/// CPU time per operation of the server and of the load generator, µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuPerOp {
    /// The server process and its descendants.
    pub server: Option<f64>,
    /// This process (the load generator).
    pub generator: Option<f64>,
}

/// CPU used by the server and by this process over some operations.
#[derive(Clone, Copy, Debug, Default)]
struct CpuUse {
    server_ns: u64,
    generator_ns: u64,
    ops: usize,
}

impl CpuUse {
    /// CPU per operation, µs (`None` without operations).
    fn per_op(self) -> CpuPerOp {
        let per = |ns: u64| (self.ops > 0).then(|| ns as f64 / 1e3 / self.ops as f64);
        CpuPerOp {
            server: per(self.server_ns),
            generator: per(self.generator_ns),
        }
    }
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

    /// CPU used since the mark, for `ops` operations.
    fn since(&self, server: &Server, ops: usize) -> CpuUse {
        let now = Self::take(server);
        CpuUse {
            server_ns: now.server.saturating_sub(self.server),
            generator_ns: now.generator.saturating_sub(self.generator),
            ops,
        }
    }
}

/// The four rate steps, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    HandshakesC1,
    HandshakesC64,
    RoundTrips1,
    RoundTrips64,
}

impl Step {
    const ALL: [Step; 4] = [
        Step::HandshakesC1,
        Step::HandshakesC64,
        Step::RoundTrips1,
        Step::RoundTrips64,
    ];

    /// How notes and progress lines name it.
    fn label(self) -> &'static str {
        match self {
            Step::HandshakesC1 => "handshakes c=1",
            Step::HandshakesC64 => "handshakes c=64",
            Step::RoundTrips1 => "round trips x1",
            Step::RoundTrips64 => "round trips x64",
        }
    }

    /// Its place in [`Rates::rates`].
    fn index(self) -> usize {
        self as usize
    }

    /// Run it once on `server`.
    fn run<W: Wire>(
        self,
        server: &Server,
        dial: &mut impl FnMut() -> W,
        plan: &RatePlan,
    ) -> Result<StepRun, BenchError> {
        let addr: SocketAddr = server.addr;
        let mark = CpuMark::take(server);
        let (handshakes, concurrency) = match self {
            Step::HandshakesC1 => (plan.hs_c1, 1),
            Step::HandshakesC64 => (plan.hs_c64, 64),
            Step::RoundTrips1 => {
                let r = rtt::run(addr, dial, 1, plan.step, 1_000_000)?;
                return Ok(StepRun::of_round_trips(r, None));
            }
            Step::RoundTrips64 => {
                let r = rtt::run(addr, dial, 64, plan.step, 10_000_000)?;
                let cpu = mark.since(server, r.latency.n);
                return Ok(StepRun::of_round_trips(r, Some(cpu)));
            }
        };
        let h = handshake::run(addr, dial, handshakes, concurrency, plan.step)?;
        let cpu = mark.since(server, h.latency.n);
        Ok(StepRun {
            per_sec: h.per_sec,
            samples: h.samples,
            failures: h.failures,
            last_failure: h.last_failure,
            cpu: Some(cpu),
        })
    }
}

/// What one run of one step measured.
#[derive(Clone, Debug, Default)]
struct StepRun {
    per_sec: f64,
    samples: Vec<Duration>,
    failures: usize,
    last_failure: Option<String>,
    /// CPU over the run, where the step measures it.
    cpu: Option<CpuUse>,
}

impl StepRun {
    fn of_round_trips(r: RoundTrips, cpu: Option<CpuUse>) -> Self {
        Self {
            per_sec: r.per_sec,
            samples: r.samples,
            cpu,
            ..Self::default()
        }
    }
}

/// The runs of one step on one server combined: the median rate, the lowest and highest,
/// every sample and failure pooled, CPU summed over the runs.
struct Combined {
    per_sec: f64,
    spread: (f64, f64),
    latency: Percentiles,
    failures: usize,
    last_failure: Option<String>,
    cpu: CpuPerOp,
}

impl Combined {
    /// `None` when no run succeeded.
    fn of(runs: Vec<StepRun>) -> Option<Self> {
        let rates: Vec<f64> = runs.iter().map(|r| r.per_sec).collect();
        let lowest = rates.iter().copied().reduce(f64::min)?;
        let highest = rates.iter().copied().reduce(f64::max)?;
        let mut samples = Vec::with_capacity(runs.iter().map(|r| r.samples.len()).sum());
        let mut cpu = CpuUse::default();
        let mut measured_cpu = false;
        let mut failures = 0;
        let mut last_failure = None;
        for r in runs {
            samples.extend(r.samples);
            failures += r.failures;
            last_failure = r.last_failure.or(last_failure);
            if let Some(c) = r.cpu {
                measured_cpu = true;
                cpu.server_ns += c.server_ns;
                cpu.generator_ns += c.generator_ns;
                cpu.ops += c.ops;
            }
        }
        Some(Self {
            per_sec: stats::median(&rates),
            spread: (lowest, highest),
            latency: Percentiles::of(&samples),
            failures,
            last_failure,
            cpu: if measured_cpu {
                cpu.per_op()
            } else {
                CpuPerOp::default()
            },
        })
    }

    fn handshakes(&self) -> Handshakes {
        Handshakes {
            latency: self.latency,
            samples: Vec::new(),
            per_sec: self.per_sec,
            failures: self.failures,
            last_failure: self.last_failure.clone(),
        }
    }

    fn round_trips(&self) -> RoundTrips {
        RoundTrips {
            latency: self.latency,
            samples: Vec::new(),
            per_sec: self.per_sec,
        }
    }
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

    /// Every step's runs combined (a step none of whose runs succeeded stays empty).
    fn combine(steps: [Vec<StepRun>; 4], runs: usize) -> Rates {
        let mut r = Rates {
            runs,
            ..Rates::default()
        };
        for (step, step_runs) in Step::ALL.into_iter().zip(steps) {
            let Some(c) = Combined::of(step_runs) else {
                continue;
            };
            if let Some(s) = r.spread.get_mut(step.index()) {
                *s = Some(c.spread);
            }
            match step {
                Step::HandshakesC1 => {
                    r.hs_c1 = Some(c.handshakes());
                    r.hs_c1_cpu = c.cpu;
                }
                Step::HandshakesC64 => {
                    r.hs_c64 = Some(c.handshakes());
                    r.hs_c64_cpu = c.cpu;
                }
                Step::RoundTrips1 => r.rtt_1 = Some(c.round_trips()),
                Step::RoundTrips64 => {
                    r.rtt_64 = Some(c.round_trips());
                    r.rtt_64_cpu = c.cpu;
                }
            }
        }
        r
    }
}

/// The niceness the rate steps run at, when the bench may raise its priority (root or
/// `CAP_SYS_NICE`): on a shared machine other processes' work is what moves a c=1 rate most,
/// and at -10 the bench and the servers it starts take a contended CPU before them.
const RATES_NICE: i32 = -10;

/// Run `f` with this thread, and the processes it starts meanwhile, at [`RATES_NICE`]
/// (Linux's `setpriority` of the calling thread; children inherit it), then back at the
/// niceness it had. The error says why the priority could not be raised (`f` still runs).
pub fn at_high_priority<T>(f: impl FnOnce() -> T) -> (T, Option<String>) {
    use rustix::process::{getpriority_process, setpriority_process};
    let before = getpriority_process(None).unwrap_or(0);
    let raised = setpriority_process(None, RATES_NICE);
    let out = f();
    match raised {
        Ok(()) => {
            let _ = setpriority_process(None, before);
            (out, None)
        }
        Err(e) => (
            out,
            Some(format!("ran at niceness {before}: raising it failed ({e})")),
        ),
    }
}

/// Record a step's failure in `notes`.
fn note_failure(notes: &mut Vec<String>, step: Step, e: &BenchError) {
    eprintln!("   {}: {e}", step.label());
    notes.push(format!("{}: {e}", step.label()));
}

/// One run of each rate step on `server` (upstream's, which is too slow to take turns);
/// failed steps are noted and stay empty.
pub fn round<W: Wire>(
    server: &Server,
    dial: &mut impl FnMut() -> W,
    plan: &RatePlan,
    notes: &mut Vec<String>,
) -> Rates {
    let steps = Step::ALL.map(|step| match step.run(server, dial, plan) {
        Ok(run) => vec![run],
        Err(e) => {
            note_failure(notes, step, &e);
            Vec::new()
        }
    });
    Rates::combine(steps, 1)
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

/// The order the `n` servers take their `k`th run of a step in: rotated by one each time, so
/// that each goes first (and follows each other) as often.
fn turn_order(k: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |j| (k + j) % n.max(1))
}

/// `runs` runs of every rate step on each of the running `servers`, taking turns run by run
/// (see the module doc); `baseline` is the index of the server the others' ratios are taken
/// to. Returns each server's runs combined, in the order of `servers`.
pub fn interleave<W: Wire>(
    servers: &mut [Contender<'_, W>],
    baseline: Option<usize>,
    runs: usize,
    plan: &RatePlan,
) -> Vec<Rates> {
    let n = servers.len();
    // Per server, per step: run k's result, `None` where it failed.
    let mut measured: Vec<[Vec<Option<StepRun>>; 4]> = (0..n).map(|_| Default::default()).collect();
    for step in Step::ALL {
        eprintln!(
            "   {}: {runs} runs on each of {n} servers, taking turns",
            step.label()
        );
        let mut failed: Vec<(usize, Option<BenchError>)> = (0..n).map(|_| (0, None)).collect();
        for k in 0..runs {
            for i in turn_order(k, n) {
                let (Some(c), Some(m), Some(f)) =
                    (servers.get_mut(i), measured.get_mut(i), failed.get_mut(i))
                else {
                    continue;
                };
                let Some(slot) = m.get_mut(step.index()) else {
                    continue;
                };
                match step.run(c.server, &mut c.dial, plan) {
                    Ok(run) => slot.push(Some(run)),
                    Err(e) => {
                        f.0 += 1;
                        f.1 = Some(e);
                        slot.push(None);
                    }
                }
            }
        }
        for (c, m) in servers.iter().zip(&measured) {
            let rates: Vec<String> = m
                .get(step.index())
                .into_iter()
                .flatten()
                .map(|r| {
                    r.as_ref()
                        .map_or("–".into(), |r| format!("{:.0}", r.per_sec))
                })
                .collect();
            eprintln!("     {}: {}", c.server.name(), rates.join(" "));
        }
        for (c, (count, last)) in servers.iter_mut().zip(failed) {
            if let Some(e) = last {
                let e =
                    BenchError::Protocol(format!("{count} of {runs} runs failed, the last: {e}"));
                note_failure(&mut c.notes, step, &e);
            }
        }
    }
    let ratios = |i: usize, step: usize| -> Option<Paired> {
        let base = measured.get(baseline?)?.get(step)?;
        side_by_side(base, measured.get(i)?.get(step)?)
    };
    let paired: Vec<[Option<Paired>; 4]> = (0..n)
        .map(|i| {
            if Some(i) == baseline {
                [None; 4]
            } else {
                [0, 1, 2, 3].map(|step| ratios(i, step))
            }
        })
        .collect();
    let out: Vec<Rates> = measured
        .into_iter()
        .zip(paired)
        .map(|(steps, to_baseline)| Rates {
            to_baseline,
            ..Rates::combine(steps.map(|runs| runs.into_iter().flatten().collect()), runs)
        })
        .collect();
    for (c, r) in servers.iter().zip(&out) {
        eprintln!("   {}: {}", c.server.name(), summary(r));
    }
    out
}

/// A server's rates for the progress log: each median, and its ratio to the baseline's run
/// by run where there is one.
fn summary(r: &Rates) -> String {
    let parts: Vec<String> = Step::ALL
        .iter()
        .zip(r.rates())
        .zip(r.to_baseline)
        .filter_map(|((step, rate), paired)| {
            let mut part = format!("{} {:.0}/s", step.label(), rate?);
            if let Some(p) = paired {
                part += &format!(
                    " ({:.2}× the baseline, middle half {:.2}–{:.2})",
                    p.median, p.lower, p.upper
                );
            }
            Some(part)
        })
        .collect();
    parts.join(", ")
}

/// The ratios of `mine` to `base`, run k to run k, where both succeeded.
fn side_by_side(base: &[Option<StepRun>], mine: &[Option<StepRun>]) -> Option<Paired> {
    let r: Vec<f64> = base
        .iter()
        .zip(mine)
        .filter_map(|(b, m)| {
            let (b, m) = (b.as_ref()?.per_sec, m.as_ref()?.per_sec);
            (b > 0.0).then(|| m / b)
        })
        .collect();
    Paired::of(&r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(per_sec: f64, samples_us: &[u64], cpu_ns: u64) -> StepRun {
        StepRun {
            per_sec,
            samples: samples_us
                .iter()
                .map(|&us| Duration::from_micros(us))
                .collect(),
            cpu: Some(CpuUse {
                server_ns: cpu_ns,
                generator_ns: 2 * cpu_ns,
                ops: samples_us.len(),
            }),
            ..StepRun::default()
        }
    }

    #[test]
    fn runs_combine_into_the_median_rate_pooled_latencies_and_summed_cpu() {
        let steps = [
            vec![
                run(100.0, &[10, 20], 4_000),
                run(300.0, &[30], 1_000),
                run(200.0, &[40, 50, 60], 7_000),
            ],
            Vec::new(),
            vec![run(5.0, &[7], 0)],
            Vec::new(),
        ];
        let r = Rates::combine(steps, 3);
        let h = r.hs_c1.expect("c=1 ran");
        assert_eq!(h.per_sec, 200.0);
        assert_eq!(h.latency.n, 6, "every run's samples");
        assert_eq!(h.latency.p50, 30.0);
        assert_eq!(h.latency.p99, 60.0);
        assert!(h.samples.is_empty());
        assert_eq!(r.spread[0], Some((100.0, 300.0)));
        // (4 + 1 + 7) µs of server CPU over 6 handshakes.
        assert_eq!(r.hs_c1_cpu.server, Some(2.0));
        assert_eq!(r.hs_c1_cpu.generator, Some(4.0));
        assert!(r.hs_c64.is_none() && r.spread[1].is_none());
        assert_eq!(r.rtt_1.expect("x1 ran").per_sec, 5.0);
        assert!(r.rtt_64.is_none());
        assert_eq!(r.runs, 3);
    }

    #[test]
    fn the_ratio_to_the_baseline_is_the_median_of_side_by_side_runs() {
        // Run by run the server is mostly at 0.9-0.95 of the baseline while the machine's
        // speed moves both; a run that failed on either side makes no pair.
        let runs = |rates: &[f64]| -> Vec<Option<StepRun>> {
            rates
                .iter()
                .map(|&r| (r > 0.0).then(|| run(r, &[1], 1)))
                .collect()
        };
        let base = runs(&[100.0, 200.0, 400.0, 50.0, 0.0, 100.0]);
        let mine = runs(&[95.0, 150.0, 360.0, 0.0, 80.0, 92.0]);
        let p = side_by_side(&base, &mine).expect("four pairs");
        assert_eq!(p.median, 0.9);
        assert_eq!((p.lower, p.upper, p.pairs), (0.75, 0.92, 4));
        assert_eq!(side_by_side(&base, &[]), None);
    }

    #[test]
    fn servers_take_turns_going_first() {
        let orders: Vec<Vec<usize>> = (0..4).map(|k| turn_order(k, 3).collect()).collect();
        assert_eq!(
            orders,
            [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]].map(Vec::from)
        );
        let two: Vec<Vec<usize>> = (0..2).map(|k| turn_order(k, 2).collect()).collect();
        assert_eq!(two, [[0, 1], [1, 0]].map(Vec::from));
    }
}
