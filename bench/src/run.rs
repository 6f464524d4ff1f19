//! The `all` command: every server, every measurement, in one run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;

use crate::error::BenchError;
use crate::figures::Figures;
use crate::procs::{self, Launch, Server, TOKEN, settled_rss_kib};
use crate::rates::{self, RatePlan, Rates};
use crate::scenario::hold::Held;
use crate::scenario::{churn, invoke, ready, ws_key};
use crate::stats::Percentiles;
use crate::wire::{GatewayWire, Wire};

/// What `all` measures and how long it may take.
#[derive(Clone, Debug)]
pub struct Options {
    /// Connections in the large hold (and the fan-out).
    pub connections: usize,
    /// Connections in the small hold.
    pub small_hold: usize,
    /// Length of each churn run, seconds (0 = none).
    pub churn_secs: u64,
    /// Spawns for the time-to-ready median.
    pub spawns: usize,
    /// Broadcasts watched for the fan-out.
    pub ticks: usize,
    /// The short plan: upstream gets smaller counts and one 30 s tick.
    pub quick: bool,
}

/// One server to measure.
pub struct Target {
    /// Display name.
    pub name: String,
    /// How to start it.
    pub launch: Launch,
    /// Whether to run the churn on it.
    pub churn: bool,
}

/// How hard to push one server: the upstream gateway is ~100× slower, so it gets smaller
/// counts (every step is bounded in time as well).
struct Plan {
    spawns: usize,
    ready_limit: Duration,
    retry: Duration,
    settle: Duration,
    hs_c1: usize,
    hs_c64: usize,
    /// Length of every other step.
    step: Duration,
    /// Length of each rate step.
    rate_step: Duration,
    invokes: usize,
    hold_limit: Duration,
    /// Ticks watched when the server's tick is its fixed 30 s.
    slow_ticks: usize,
}

impl Plan {
    fn rates(&self) -> RatePlan {
        RatePlan {
            hs_c1: self.hs_c1,
            hs_c64: self.hs_c64,
            step: self.rate_step,
        }
    }

    /// One of `runs` short runs of each rate step that together take what [`Plan::rates`]
    /// takes `rounds` times (see [`rate_rounds`]).
    fn rate_run(&self, rounds: usize, runs: usize) -> RatePlan {
        let share = |n: usize| (n * rounds).div_ceil(runs.max(1));
        RatePlan {
            hs_c1: share(self.hs_c1),
            hs_c64: share(self.hs_c64),
            step: self.rate_step * rounds as u32 / runs.max(1) as u32,
        }
    }

    fn for_launch(launch: &Launch, opts: &Options) -> Self {
        match launch {
            Launch::Upstream { .. } => {
                let pick = |quick: usize, full: usize| if opts.quick { quick } else { full };
                Self {
                    spawns: 1,
                    ready_limit: Duration::from_secs(90),
                    retry: Duration::from_millis(100),
                    settle: Duration::from_secs(pick(2, 5) as u64),
                    hs_c1: pick(200, 500),
                    hs_c64: pick(1000, 3000),
                    step: Duration::from_secs(pick(3, 10) as u64),
                    rate_step: Duration::from_secs(pick(3, 10) as u64),
                    invokes: pick(100, 300),
                    hold_limit: Duration::from_secs(300),
                    slow_ticks: pick(1, 2),
                }
            }
            _ => Self {
                spawns: opts.spawns.max(1),
                ready_limit: Duration::from_secs(10),
                retry: Duration::from_millis(1),
                settle: Duration::from_secs(1),
                hs_c1: 3000,
                hs_c64: 30_000,
                step: Duration::from_secs(if opts.quick { 2 } else { 5 }),
                rate_step: Duration::from_secs(if opts.quick { 1 } else { 3 }),
                invokes: 3000,
                hold_limit: Duration::from_secs(120),
                slow_ticks: 2,
            },
        }
    }
}

/// Measure `target` (its rate steps taken from `rated` when they ran taking turns, see
/// [`rate_rounds`]); a failing step is noted and the rest still run.
pub fn measure(target: &Target, opts: &Options, rated: Option<Rated>) -> Figures {
    let mut f = Figures {
        name: target.name.clone(),
        large_hold: opts.connections,
        ..Figures::default()
    };
    eprintln!("== {}", target.name);
    let r = steps(target, opts, &mut f, gateway_wire, invoke_fn(target), rated);
    if let Err(e) = r {
        f.notes.push(format!("stopped: {e}"));
    }
    eprintln!("   step times: {}", step_times(&f.steps));
    f
}

/// How `target` is timed on `node.invoke`: the gateway's, or the baseline's stand-in.
fn invoke_fn(target: &Target) -> InvokeFn {
    match &target.launch {
        Launch::Bare { .. } => invoke::bare,
        _ => invoke::gateway,
    }
}

/// Start `target` and time `count` `node.invoke` round trips on it as [`measure`] does.
pub fn invoke_round_trips(
    target: &Target,
    opts: &Options,
    count: usize,
) -> Result<Percentiles, BenchError> {
    let plan = Plan::for_launch(&target.launch, opts);
    let mut server = Server::spawn(&target.name, &target.launch)?;
    let host = server.addr.to_string();
    let mut n = 0u64;
    let mut dial = || {
        n += 1;
        gateway_wire(&host, n)
    };
    ready::time_to_ready(&mut server, &mut dial, plan.ready_limit, plan.retry)?;
    eprintln!("== {} (pid {})", target.name, server.pid());
    let r = invoke_fn(target)(server.addr, server.pid(), count, Duration::from_secs(60));
    server.check_alive()?;
    r
}

/// Step times as the report and the run print them: `what N s, …`.
pub fn step_times(steps: &[(&str, Duration)]) -> String {
    let v: Vec<String> = steps
        .iter()
        .map(|(what, took)| format!("{what} {:.0} s", took.as_secs_f64()))
        .collect();
    v.join(", ")
}

/// The `n`th benchmark client of a gateway at `host`: `cli`/`cli` with the bench token.
pub fn gateway_wire(host: &str, n: u64) -> GatewayWire {
    let mut cfg = ClientConfig::cli(host);
    cfg.token = Some(TOKEN.into());
    GatewayWire::new(cfg, ws_key(n))
}

/// What [`rate_rounds`] measured on one server: its runs combined and the notes of steps
/// that failed.
pub type Rated = (Rates, Vec<String>);

/// The time and counts of the rate steps, in rounds of [`Plan::rates`] per server.
fn rounds(opts: &Options) -> usize {
    if opts.quick { 3 } else { 5 }
}

/// Runs of each rate step per server, which share those rounds' time and counts (a quarter
/// of a second each in the quick run, half a second in the full one).
fn rate_runs(opts: &Options) -> usize {
    if opts.quick { 12 } else { 30 }
}

/// The rate steps of every target but upstream, the servers taking turns run by run (see
/// [`crate::rates`]), all those servers running at once; by index of `list`, `None` for
/// upstream (which runs them once in [`measure`]) and for a server that did not start.
pub fn rate_rounds(list: &[Target], opts: &Options) -> Vec<Option<Rated>> {
    let (mut out, refused) = rates::at_high_priority(|| rates_taking_turns(list, opts));
    if let Some(why) = refused {
        eprintln!("   rates: {why}");
        for (_, notes) in out.iter_mut().flatten() {
            notes.push(format!("rates: {why}"));
        }
    }
    out
}

/// [`rate_rounds`] at whatever priority it runs.
fn rates_taking_turns(list: &[Target], opts: &Options) -> Vec<Option<Rated>> {
    let mut out: Vec<Option<Rated>> = vec![None; list.len()];
    let mut started = Vec::new();
    let mut plan = None;
    for (i, t) in list.iter().enumerate() {
        if matches!(t.launch, Launch::Upstream { .. }) {
            continue;
        }
        let p = Plan::for_launch(&t.launch, opts);
        let mut n = 0u64;
        let r = Server::spawn(&t.name, &t.launch).and_then(|mut s| {
            let host = s.addr.to_string();
            let mut dial = || {
                n += 1;
                gateway_wire(&host, n)
            };
            ready::time_to_ready(&mut s, &mut dial, p.ready_limit, p.retry)?;
            Ok(s)
        });
        match r {
            Ok(s) => started.push((i, s)),
            Err(e) => eprintln!("   {}: rate rounds: {e}", t.name),
        }
        plan = Some(p.rate_run(rounds(opts), rate_runs(opts)));
    }
    let Some(plan) = plan else {
        return out;
    };
    eprintln!("== rates, {} runs of each step", rate_runs(opts));
    let mut servers: Vec<_> = started
        .iter()
        .map(|(_, s)| {
            let host = s.addr.to_string();
            let mut n = 0u64;
            rates::Contender {
                server: s,
                dial: Box::new(move || {
                    n += 1;
                    gateway_wire(&host, n)
                }) as Box<dyn FnMut() -> GatewayWire>,
                notes: Vec::new(),
            }
        })
        .collect();
    let baseline = started.iter().position(|(i, _)| {
        list.get(*i)
            .is_some_and(|t| matches!(t.launch, Launch::Bare { .. }))
    });
    let medians = rates::interleave(&mut servers, baseline, rate_runs(opts), &plan);
    for (((i, _), c), m) in started.iter().zip(servers).zip(medians) {
        if let Some(slot) = out.get_mut(*i) {
            *slot = Some((m, c.notes));
        }
    }
    out
}

/// Server CPU microseconds per operation.
fn per_op_us(cpu_ns: u64, ops: usize) -> f64 {
    cpu_ns as f64 / 1e3 / ops.max(1) as f64
}

type InvokeFn = fn(SocketAddr, u32, usize, Duration) -> Result<Percentiles, BenchError>;

/// Record how long the step `what` took (since `since`) in `f`, and restart the clock.
fn lap(f: &mut Figures, what: &'static str, since: &mut Instant) {
    f.steps.push((what, since.elapsed()));
    *since = Instant::now();
}

/// Record a step's result, or its failure as a note.
fn note<T>(f: &mut Figures, step: &str, r: Result<T, BenchError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("   {step}: {e}");
            f.notes.push(format!("{step}: {e}"));
            None
        }
    }
}

fn steps<W: Wire>(
    target: &Target,
    opts: &Options,
    f: &mut Figures,
    make: fn(&str, u64) -> W,
    invoke: InvokeFn,
    rated: Option<Rated>,
) -> Result<(), BenchError> {
    let plan = Plan::for_launch(&target.launch, opts);
    let mut n = 0u64;
    let mut server = None;
    let mut t = Instant::now();
    for _ in 0..plan.spawns {
        drop(server.take());
        let mut s = Server::spawn(&target.name, &target.launch)?;
        let host = s.addr.to_string();
        let mut dial = || {
            n += 1;
            make(&host, n)
        };
        let t = ready::time_to_ready(&mut s, &mut dial, plan.ready_limit, plan.retry)?;
        f.ready_ms.push(t.as_secs_f64() * 1e3);
        f.idle_kib.push(settled_rss_kib(&s, plan.settle));
        f.idle_code_kib
            .extend(ready::resident_code_kib(s.pid()).filter(|&k| k > 0));
        server = Some(s);
    }
    if matches!(target.launch, Launch::Clawgate { .. })
        && let Some(w) = f.idle_code_median_kib().and_then(ready::stale_list_warning)
    {
        eprintln!("   warning: {w}");
        f.notes.push(w);
    }
    let Some(mut server) = server else {
        return Ok(());
    };
    lap(f, "starts", &mut t);
    eprintln!("   ready in {:?} ms", f.ready_ms);
    let addr = server.addr;
    let host = addr.to_string();
    let mut dial = || {
        n += 1;
        make(&host, n)
    };

    if let Some((r, notes)) = rated {
        f.rates = r;
        f.notes.extend(notes);
    } else {
        let rate_plan = plan.rates();
        f.rates = rates::round(&server, &mut dial, &rate_plan, &mut f.notes);
        lap(f, "rates", &mut t);
    }
    f.invoke = note(
        f,
        "invoke",
        invoke(addr, server.pid(), plan.invokes, plan.step),
    );
    lap(f, "invoke", &mut t);
    server.check_alive()?;
    eprintln!("   handshakes, round trips, invoke done");

    // Churn before the holds, so its RSS starts from the working set of the small hold and
    // not from the high-water mark of the large one.
    if target.churn && opts.churn_secs > 0 {
        let rss = || server.rss_kib();
        let keep = opts.small_hold;
        f.churn = note(
            f,
            "churn",
            churn::run(addr, &mut dial, keep, 300.0, opts.churn_secs, rss),
        );
        lap(f, "churn", &mut t);
        eprintln!("   churn done");
    }

    let mut held = Held::new(addr)?;
    let small = held.grow_to(&mut dial, opts.small_hold, plan.hold_limit);
    if note(f, "small hold", small).is_some() {
        f.small_hold_kib = Some(settled_rss_kib(&server, plan.settle));
        lap(f, "small hold", &mut t);
        let large = held.grow_to(&mut dial, opts.connections, plan.hold_limit);
        if note(f, "large hold", large).is_some() {
            f.large_hold_kib = Some(settled_rss_kib(&server, plan.settle));
            lap(f, "large hold", &mut t);
            let tick = target.launch.tick();
            let ticks = if tick > Duration::from_secs(10) {
                plan.slow_ticks
            } else {
                opts.ticks
            };
            let cpu = server.cpu_ns();
            let gen_cpu = procs::own_cpu_ns(std::process::id());
            f.fanout = note(f, "fan-out", held.fanout(ticks, tick));
            let gen_used = procs::own_cpu_ns(std::process::id()) - gen_cpu;
            let used = server.cpu_ns() - cpu;
            let per_tick = |ns| f.fanout.as_ref().map(|o| per_op_us(ns, o.ticks_seen) / 1e3);
            f.fanout_cpu_ms = per_tick(used);
            f.fanout_gen_cpu_ms = per_tick(gen_used);
            lap(f, "fan-out", &mut t);
        }
    }
    held.release();
    server.check_alive()?;
    eprintln!("   hold and fan-out done");

    server.check_alive()
}
