//! `clawgate-bench independent`: the cross-check of the control-plane ratios by a second load
//! generator that shares no code with the bench's client (`pool`, `feed`, `wire` and
//! `clawgate_core::client` are not used): plain blocking tungstenite clients, one thread per
//! connection ([`client`]), speaking the protocol as written in the spec ([`proto`]).
//!
//! It measures what issue 22's client measured, against the bare baseline and a clawgate
//! binary started side by side, the two taking turns round by round (the order swapped each
//! round), best of N rounds: handshakes per second (TCP connect → `hello-ok`, a fresh TCP
//! connection each) at c=1 and c=64, `health` requests per second over 64 connections, and
//! the resident memory of each server holding many connections (lowest of its rounds, each
//! round on freshly started servers). It prints a Markdown table.

mod client;
mod proto;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;

use crate::canned::Canned;
use crate::error::{BenchError, Context};
use crate::machine;
use crate::procs::{self, Launch, Server, TOKEN};

/// The ratio every per-operation row must reach (issue 22).
const GOAL: f64 = 0.9;
/// Longest a spawned server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Starts of a server before giving up.
const START_ATTEMPTS: usize = 3;
/// Threads that open the held connections.
const HOLD_THREADS: usize = 8;
/// Connections of the `health` step.
const HEALTH_CONNECTIONS: usize = 64;
/// Stack of each client thread (64 of them at most in the rate steps).
const CLIENT_STACK: usize = 256 * 1024;

/// What `independent` runs.
pub struct Options {
    /// The clawgate binary measured against the baseline.
    pub bin: PathBuf,
    /// This binary (the baseline is its `bare-server` command).
    pub exe: PathBuf,
    /// Rounds of each rate step; the best is reported.
    pub rounds: usize,
    /// Length of one rate measurement.
    pub window: Duration,
    /// Connections held for the memory step (0: no memory step).
    pub hold: usize,
    /// Rounds of the memory step; the lowest is reported.
    pub hold_rounds: usize,
    /// The rate steps to run, by key (`c1`, `c64`, `health`).
    pub steps: Vec<String>,
    /// Measure only the server already listening on this port (for profiling it).
    pub port: Option<u16>,
}

/// One rate measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    /// Operations completed.
    ops: u64,
    /// Operations per second.
    per_sec: f64,
    /// The server's CPU time per operation, µs.
    server_us: f64,
    /// The server's context switches per operation (wake-ups and preemptions).
    switches: f64,
}

/// The rounds of one step on each server.
#[derive(Clone, Debug, Default)]
struct Rounds {
    bare: Vec<Rate>,
    gate: Vec<Rate>,
}

/// The memory step's reading of one server: resident and anonymous memory, KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    rss_kib: u64,
    anon_kib: u64,
}

/// The rate steps: key, row name, step.
const STEPS: [(&str, &str, Step); 3] = [
    ("c1", "handshakes/s, c=1", Step::Handshakes(1)),
    ("c64", "handshakes/s, c=64", Step::Handshakes(64)),
    (
        "health",
        "`health` requests/s, 64 connections",
        Step::Health(HEALTH_CONNECTIONS),
    ),
];

/// Run the cross-check and print its table (or, with [`Options::port`], the rates of that
/// server alone).
pub fn run(o: &Options) -> Result<(), BenchError> {
    if let Some(port) = o.port {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for (_, name, step) in STEPS.iter().filter(|s| o.steps.iter().any(|k| k == s.0)) {
            for _ in 0..o.rounds {
                let r = step.measure_at(addr, None, o.window)?;
                println!(
                    "{name}: {} in {:.1} s, {:.0}/s",
                    r.ops,
                    o.window.as_secs_f64(),
                    r.per_sec
                );
            }
        }
        return Ok(());
    }
    let load0 = machine::loadavg();
    let canned = Canned::capture(&o.bin)?;
    let bare = Launch::Bare {
        exe: o.exe.clone(),
        canned: Box::new(canned),
    };
    let gate = Launch::Clawgate { bin: o.bin.clone() };
    let mut steps: Vec<(&str, Rounds)> = Vec::new();
    {
        let servers = [started("bare", &bare)?, started("clawgate", &gate)?];
        for (key, name, step) in STEPS {
            if !o.steps.iter().any(|s| s == key) {
                continue;
            }
            eprintln!("== {name}");
            let mut r = Rounds::default();
            for round in 0..o.rounds {
                for i in [round % 2, 1 - round % 2] {
                    let s = servers
                        .get(i)
                        .ok_or_else(|| BenchError::Usage("no server".into()))?;
                    let rate = step.measure(s, o.window)?;
                    eprintln!(
                        "   {} {:.0}/s, server {:.1} µs, {:.2} context switches per op",
                        s.name(),
                        rate.per_sec,
                        rate.server_us,
                        rate.switches
                    );
                    if i == 0 {
                        r.bare.push(rate)
                    } else {
                        r.gate.push(rate)
                    }
                }
            }
            steps.push((name, r));
        }
    }
    let mut held: Vec<(Held, Held)> = Vec::new();
    if o.hold > 0 {
        check_nofile(o.hold)?;
        for round in 0..o.hold_rounds {
            eprintln!("== {} held connections, round {}", o.hold, round + 1);
            let b = hold(&bare, "bare", o.hold)?;
            let g = hold(&gate, "clawgate", o.hold)?;
            eprintln!("   bare {} KiB, clawgate {} KiB", b.rss_kib, g.rss_kib);
            held.push((b, g));
        }
    }
    print!("{}", table(o, &steps, &held, &load0, &machine::loadavg()));
    Ok(())
}

/// A server started and accepting connections. Its port is picked free just before it
/// starts; a client connection of the run before may take it meanwhile (it is in the
/// ephemeral range), so a server that exits before accepting is started again on another.
fn started(name: &str, launch: &Launch) -> Result<Server, BenchError> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let mut s = Server::spawn(name, launch)?;
        let end = Instant::now() + START_LIMIT;
        loop {
            if TcpStream::connect(s.addr).is_ok() {
                return Ok(s);
            }
            if let Err(e) = s.check_alive() {
                last = Some(e);
                break;
            }
            if Instant::now() > end {
                return Err(BenchError::Timeout(format!("{name} to accept connections")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Err(last.unwrap_or_else(|| BenchError::ServerExited(name.into())))
}

/// A rate step.
#[derive(Clone, Copy)]
enum Step {
    /// Handshakes by this many threads, each dropping its connection once ready and opening
    /// the next.
    Handshakes(usize),
    /// `health` round trips by this many threads, each on one connection.
    Health(usize),
}

impl Step {
    /// One measurement of `window` against `server`.
    fn measure(self, server: &Server, window: Duration) -> Result<Rate, BenchError> {
        self.measure_at(server.addr, Some(server), window)
    }

    /// One measurement of `window` against the server at `addr`; its CPU time and context
    /// switches are read when it is `server`.
    fn measure_at(
        self,
        addr: SocketAddr,
        server: Option<&Server>,
        window: Duration,
    ) -> Result<Rate, BenchError> {
        let cpu = || server.map_or(0, Server::cpu_ns);
        let counts = || server.map(Server::thread_counts).unwrap_or_default();
        let threads = match self {
            Step::Handshakes(n) | Step::Health(n) => n,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(threads + 1));
        let seeds = Seeds::new();
        let mut workers = Vec::with_capacity(threads);
        for t in 0..threads {
            let (stop, start, seeds) = (stop.clone(), start.clone(), seeds.clone());
            let w = std::thread::Builder::new()
                .stack_size(CLIENT_STACK)
                .spawn(move || -> Result<u64, BenchError> {
                    let mut session = match self {
                        Step::Health(_) => client::open(addr, TOKEN, seeds.ids(t), None).map(Some),
                        Step::Handshakes(_) => Ok(None),
                    };
                    start.wait();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        match session.as_mut() {
                            Ok(Some(s)) => s.health()?,
                            Ok(None) => drop(client::open(addr, TOKEN, seeds.ids(t), None)?),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    session.map(|_| n)
                })
                .context("start a client thread")?;
            workers.push(w);
        }
        start.wait();
        let (t0, cpu0, threads0) = (Instant::now(), cpu(), counts());
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        let mut failure = None;
        for w in workers {
            match w.join() {
                Ok(Ok(n)) => ops += n,
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(BenchError::Protocol("a client thread panicked".into())),
            }
        }
        let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu() - cpu0);
        let switches = procs::counts_since(&threads0, &counts()).ctx;
        if let Some(e) = failure {
            return Err(e);
        }
        let per_op = |x: f64| x / ops.max(1) as f64;
        Ok(Rate {
            ops,
            per_sec: ops as f64 / secs,
            server_us: per_op(cpu as f64 / 1e3),
            switches: per_op(switches as f64),
        })
    }
}

/// Distinct request-id UUIDs (and `instanceId`s) for every connection of a run.
#[derive(Clone)]
struct Seeds {
    base: [u8; 16],
    count: Arc<AtomicU64>,
}

impl Seeds {
    fn new() -> Self {
        let mut base = [0u8; 16];
        let _ = getrandom::fill(&mut base);
        Self {
            base,
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Ids for the next connection of thread `t`.
    fn ids(&self, t: usize) -> proto::Ids {
        let mut seed = self.base;
        let n = self.count.fetch_add(1, Ordering::Relaxed) ^ ((t as u64) << 48);
        for (b, x) in seed.iter_mut().skip(8).zip(n.to_le_bytes()) {
            *b ^= x;
        }
        proto::Ids::new(seed)
    }
}

/// Start `launch` fresh, open `n` connections to it and keep them, and read its settled
/// memory.
fn hold(launch: &Launch, name: &str, n: usize) -> Result<Held, BenchError> {
    let server = started(name, launch)?;
    let seeds = Seeds::new();
    let addr = server.addr;
    // The held connections' own buffers are the client's business: small ones keep the
    // client's memory modest; the server is what is measured.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let workers: Vec<_> = (0..HOLD_THREADS)
        .map(|t| {
            let seeds = seeds.clone();
            let count = n / HOLD_THREADS + usize::from(t < n % HOLD_THREADS);
            std::thread::Builder::new()
                .stack_size(CLIENT_STACK)
                .spawn(move || {
                    (0..count)
                        .map(|_| client::open(addr, TOKEN, seeds.ids(t), Some(config)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .context("start a client thread")
        })
        .collect::<Result<_, _>>()?;
    let mut sessions = Vec::with_capacity(n);
    for w in workers {
        let s = w
            .join()
            .map_err(|_| BenchError::Protocol("a client thread panicked".into()))??;
        sessions.extend(s);
    }
    let rss_kib = procs::settled_rss_kib(&server, Duration::from_secs(2));
    let anon_kib = server.rss_anon_kib();
    drop(sessions);
    Ok(Held { rss_kib, anon_kib })
}

/// Fail early when this process may not open `n` connections.
fn check_nofile(n: usize) -> Result<(), BenchError> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("read /proc/self/limits")?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if soft < n + 100 {
        return Err(BenchError::Usage(format!(
            "open-file limit {soft} is below {}: raise it (`ulimit -n`) or lower --hold",
            n + 100
        )));
    }
    Ok(())
}

/// The best rate of `v` (and its server CPU per operation).
fn best(v: &[Rate]) -> Rate {
    v.iter()
        .copied()
        .max_by(|a, b| a.per_sec.total_cmp(&b.per_sec))
        .unwrap_or_default()
}

fn mark(ratio: f64) -> &'static str {
    if ratio >= GOAL { "✅" } else { "❌" }
}

/// The Markdown report.
fn table(
    o: &Options,
    steps: &[(&str, Rounds)],
    held: &[(Held, Held)],
    load0: &str,
    load1: &str,
) -> String {
    let mut s = String::new();
    s.push_str("### Cross-check by an independent client (`clawgate-bench independent`)\n\n");
    s.push_str(&format!(
        "Blocking tungstenite clients, one thread per connection, Nagle on, default read \
         buffer; best of {} rounds of {:.1} s, the servers taking turns; load average {load0} \
         at the start, {load1} at the end.\n\n",
        o.rounds,
        o.window.as_secs_f64()
    ));
    s.push_str(
        "| measurement | bare | clawgate | ratio | server per op (bare / clawgate): CPU µs, \
         context switches | goal |\n",
    );
    s.push_str("|---|---|---|---|---|---|\n");
    for (name, r) in steps {
        let (b, g) = (best(&r.bare), best(&r.gate));
        let ratio = g.per_sec / b.per_sec.max(1e-9);
        s.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {ratio:.2} | {:.1} / {:.1}; {:.2} / {:.2} | ≥ {GOAL}× bare {} |\n",
            b.per_sec,
            g.per_sec,
            b.server_us,
            g.server_us,
            b.switches,
            g.switches,
            mark(ratio)
        ));
    }
    if let (Some(b), Some(g)) = (
        held.iter().map(|h| h.0.rss_kib).min(),
        held.iter().map(|h| h.1.rss_kib).min(),
    ) {
        let anon = |f: fn(&(Held, Held)) -> u64| held.iter().map(f).min().unwrap_or(0);
        s.push_str(&format!(
            "| RSS, {} held connections, MB (lowest of {}) | {:.1} | {:.1} | {:.2} | RssAnon {:.1} / {:.1} MB |  |\n",
            o.hold,
            held.len(),
            mb(b),
            mb(g),
            g as f64 / b.max(1) as f64,
            mb(anon(|h| h.0.anon_kib)),
            mb(anon(|h| h.1.anon_kib)),
        ));
    }
    s.push('\n');
    for (name, r) in steps {
        let list = |v: &[Rate]| {
            v.iter()
                .map(|x| format!("{:.0}", x.per_sec))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut pairs: Vec<f64> = r
            .bare
            .iter()
            .zip(&r.gate)
            .map(|(b, g)| g.per_sec / b.per_sec.max(1e-9))
            .collect();
        pairs.sort_by(f64::total_cmp);
        s.push_str(&format!(
            "- {name}: bare {}; clawgate {}; round by round clawgate ÷ bare median {:.2} \
             (lowest {:.2}, highest {:.2})\n",
            list(&r.bare),
            list(&r.gate),
            crate::stats::median(&pairs),
            pairs.first().copied().unwrap_or(0.0),
            pairs.last().copied().unwrap_or(0.0),
        ));
    }
    s
}

/// KiB as MB (10^6 bytes, the unit).
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}
