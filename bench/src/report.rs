//! `BENCHMARKS.md`: the table, the machine, the exact command, and the details behind the
//! numbers. Hand-written text after the `<!-- notes -->` line of an existing file is kept.

use std::fmt::Write as _;

use crate::error::BenchError;
use crate::figures::Figures;
use crate::machine::Machine;
use crate::run::Options;
use crate::scenario::agent::AgentFigures;
use crate::sizes::{self, PiBuild, Sizes};
use crate::stats;

/// Name of the bare baseline column.
pub const BARE: &str = "bare baseline";
/// Name of the mio shell column.
pub const MIO: &str = "clawgate (mio)";
/// Name of the smol shell column.
pub const SMOL: &str = "clawgate-smol";
/// Name of the upstream gateway column.
pub const UPSTREAM: &str = "upstream (Node)";
/// The line after which an existing report's text is kept.
pub const KEEP_MARKER: &str = "<!-- notes -->";

/// What issue 22 (or an earlier issue, where 22 set none) asks of the mio shell's figure.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// The figure is at most this.
    AtMost(f64),
    /// The figure is at least this multiple of the bare baseline's.
    OfBareAtLeast(f64),
    /// The figure is at most this multiple of the bare baseline's.
    OfBareAtMost(f64),
}

/// One goal checked, for the summary at the top of the report.
#[derive(Clone, Debug)]
pub struct GoalCheck {
    /// The row's label.
    pub metric: String,
    /// The mio shell's figure, formatted.
    pub figure: String,
    /// The goal and whether it was met.
    pub verdict: String,
}

struct Row {
    label: &'static str,
    get: fn(&Figures) -> Option<f64>,
    decimals: usize,
    goal: Option<Goal>,
}

const MIB: f64 = 1024.0;

/// The rate rows, whose `mio ÷ bare` is the median ratio of runs taken side by side
/// ([`crate::rates::Rates::to_baseline`], in this order) rather than the ratio of the columns.
const RATE_ROWS: [&str; 4] = [
    "handshakes/s, c=1",
    "handshakes/s, c=64",
    "requests/s, 1 conn",
    "requests/s, 64 conns",
];

/// The mio shell's rate of `row` to the baseline's, run by run, if `row` is a rate row and the
/// rates ran side by side.
fn paired_to_bare(row: &Row, mio: Option<&Figures>) -> Option<f64> {
    let i = RATE_ROWS.iter().position(|label| *label == row.label)?;
    Some(mio?.rates.to_baseline.get(i).copied().flatten()?.median)
}

fn per_conn_kib(f: &Figures) -> Option<f64> {
    Some((f.large_hold_kib? as f64 - f.idle_median_kib()?) / f.large_hold.max(1) as f64)
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            label: "spawn → first hello-ok, ms (median)",
            get: |f| (!f.ready_ms.is_empty()).then(|| stats::median(&f.ready_ms)),
            decimals: 1,
            goal: Some(Goal::AtMost(20.0)),
        },
        Row {
            label: "idle RSS after start, MiB (median of spawns)",
            get: |f| Some(f.idle_median_kib()? / MIB),
            decimals: 2,
            goal: Some(Goal::AtMost(2.5)),
        },
        Row {
            label: "binary's code resident at idle, MiB (median of spawns)",
            get: |f| Some(f.idle_code_median_kib()? / MIB),
            decimals: 2,
            goal: None,
        },
        Row {
            label: "RSS, small hold (see below), MiB",
            get: |f| Some(f.small_hold_kib? as f64 / MIB),
            decimals: 1,
            goal: None,
        },
        Row {
            label: "RSS, large hold (see below), MiB",
            get: |f| Some(f.large_hold_kib? as f64 / MIB),
            decimals: 1,
            goal: Some(Goal::AtMost(150.0)),
        },
        Row {
            label: "per idle authenticated connection, KiB",
            get: per_conn_kib,
            decimals: 1,
            goal: Some(Goal::AtMost(12.0)),
        },
        Row {
            label: "handshake c=1 p50, µs",
            get: |f| Some(f.rates.hs_c1.as_ref()?.latency.p50),
            decimals: 0,
            goal: Some(Goal::OfBareAtMost(1.5)),
        },
        Row {
            label: "handshake c=1 p99, µs",
            get: |f| Some(f.rates.hs_c1.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=1 p999, µs",
            get: |f| Some(f.rates.hs_c1.as_ref()?.latency.p999),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=64 p50, µs",
            get: |f| Some(f.rates.hs_c64.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=64 p99, µs",
            get: |f| Some(f.rates.hs_c64.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=64 p999, µs",
            get: |f| Some(f.rates.hs_c64.as_ref()?.latency.p999),
            decimals: 0,
            goal: None,
        },
        Row {
            label: RATE_ROWS[0],
            get: |f| Some(f.rates.hs_c1.as_ref()?.per_sec),
            decimals: 0,
            goal: Some(Goal::OfBareAtLeast(0.9)),
        },
        Row {
            label: RATE_ROWS[1],
            get: |f| Some(f.rates.hs_c64.as_ref()?.per_sec),
            decimals: 0,
            goal: Some(Goal::OfBareAtLeast(0.9)),
        },
        Row {
            label: "server CPU per handshake (c=64), µs",
            get: |f| f.rates.hs_c64_cpu.server,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "load generator CPU per handshake (c=64), µs",
            get: |f| f.rates.hs_c64_cpu.generator,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "server CPU per handshake (c=1), µs",
            get: |f| f.rates.hs_c1_cpu.server,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "load generator CPU per handshake (c=1), µs",
            get: |f| f.rates.hs_c1_cpu.generator,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "health RTT, 1 conn, p50 µs",
            get: |f| Some(f.rates.rtt_1.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "health RTT, 1 conn, p99 µs",
            get: |f| Some(f.rates.rtt_1.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: RATE_ROWS[2],
            get: |f| Some(f.rates.rtt_1.as_ref()?.per_sec),
            decimals: 0,
            goal: Some(Goal::OfBareAtLeast(0.9)),
        },
        Row {
            label: "health RTT, 64 conns, p50 µs",
            get: |f| Some(f.rates.rtt_64.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "health RTT, 64 conns, p99 µs",
            get: |f| Some(f.rates.rtt_64.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: RATE_ROWS[3],
            get: |f| Some(f.rates.rtt_64.as_ref()?.per_sec),
            decimals: 0,
            goal: Some(Goal::OfBareAtLeast(0.9)),
        },
        Row {
            label: "server CPU per request (64 conns), µs",
            get: |f| f.rates.rtt_64_cpu.server,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "load generator CPU per request (64 conns), µs",
            get: |f| f.rates.rtt_64_cpu.generator,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "node.invoke RTT p50, µs, one CPU (bare: relays it)",
            get: |f| Some(f.invoke.as_ref()?.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "node.invoke RTT p99, µs, one CPU (bare: relays it)",
            get: |f| Some(f.invoke.as_ref()?.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "fan-out to large hold, ms (median tick)",
            get: |f| Some(stats::median(&f.fanout.as_ref()?.spreads_ms)),
            decimals: 1,
            goal: Some(Goal::OfBareAtMost(1.2)),
        },
        Row {
            label: "fan-out to large hold, ms (worst tick)",
            get: |f| {
                f.fanout
                    .as_ref()?
                    .spreads_ms
                    .iter()
                    .copied()
                    .reduce(f64::max)
            },
            decimals: 1,
            goal: None,
        },
        Row {
            label: "server CPU per broadcast to large hold, ms",
            get: |f| f.fanout_cpu_ms,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "load generator CPU per broadcast to large hold, ms",
            get: |f| f.fanout_gen_cpu_ms,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "churn RSS slope, KiB/min",
            get: |f| Some(f.churn.as_ref()?.slope_kib_per_min()),
            decimals: 1,
            goal: None,
        },
    ]
}

/// `v` with `decimals` decimals, or a dash when there is none.
pub fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

/// `a ÷ b` with two decimals (as `1/n` when far below 1), or a dash unless both are positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => {
            let r = a / b;
            if r >= 0.1 {
                format!("{r:.2}")
            } else {
                format!("1/{:.0}", 1.0 / r)
            }
        }
        _ => "–".into(),
    }
}

/// The goal, and ✅ or ❌ for the mio shell's figure `mio` (`bare`: the baseline's, for the
/// goals relative to it); empty without a goal.
pub fn verdict(goal: Option<Goal>, mio: Option<f64>, bare: Option<f64>) -> String {
    let Some(goal) = goal else {
        return String::new();
    };
    let mark = |met: bool| if met { "✅" } else { "❌" };
    let relative = |op: &str, frac: f64, met: fn(f64, f64) -> bool| match (mio, bare) {
        (Some(v), Some(b)) if b > 0.0 => format!("{op} {frac}× bare {}", mark(met(v / b, frac))),
        _ => format!("{op} {frac}× bare (no figure)"),
    };
    match goal {
        Goal::AtMost(limit) => match mio {
            Some(v) => format!("≤ {limit} {}", mark(v <= limit)),
            None => format!("≤ {limit} (no figure)"),
        },
        Goal::OfBareAtLeast(frac) => relative("≥", frac, |r, f| r >= f),
        Goal::OfBareAtMost(frac) => relative("≤", frac, |r, f| r <= f),
    }
}

/// The control plane's table (one column per server, mio ÷ bare, mio ÷ upstream, the goal),
/// with the goals it checked.
pub fn control_table(figs: &[Figures]) -> (String, Vec<GoalCheck>) {
    let find = |name: &str| figs.iter().find(|f| f.name == name);
    let (bare, mio, up) = (find(BARE), find(MIO), find(UPSTREAM));
    let mut s = String::new();
    let mut checks = Vec::new();
    let mut header = String::from("| metric |");
    let mut rule = String::from("|---|");
    for f in figs {
        let _ = write!(header, " {} |", f.name);
        rule.push_str("---:|");
    }
    header.push_str(" mio ÷ bare | mio ÷ upstream | goal (mio) |");
    rule.push_str("---:|---:|---|");
    let _ = writeln!(s, "{header}\n{rule}");
    for r in rows() {
        let _ = write!(s, "| {} |", r.label);
        for f in figs {
            let _ = write!(s, " {} |", fmt((r.get)(f), r.decimals));
        }
        let v = |f: Option<&Figures>| f.and_then(r.get);
        // A rate row compares runs taken side by side: its ratio, against 1.
        let (of_bare, bare_figure) = match paired_to_bare(&r, mio) {
            Some(p) => (Some(p), Some(1.0)),
            None => (v(mio), v(bare)),
        };
        let verdict = verdict(r.goal, of_bare, bare_figure);
        let to_bare = ratio(of_bare, bare_figure);
        let _ = writeln!(s, " {to_bare} | {} | {verdict} |", ratio(v(mio), v(up)));
        if r.goal.is_some() {
            let figure = match (v(mio), bare_figure) {
                (Some(m), Some(_)) if !matches!(r.goal, Some(Goal::AtMost(_))) => {
                    format!("{} ({to_bare}× bare)", fmt(Some(m), r.decimals))
                }
                (m, _) => fmt(m, r.decimals),
            };
            checks.push(GoalCheck {
                metric: r.label.to_string(),
                figure,
                verdict,
            });
        }
    }
    (s, checks)
}

/// The binary sizes' table, with the goal it checked.
pub fn sizes_table(z: &Sizes) -> (String, Vec<GoalCheck>) {
    const GOAL: Goal = Goal::AtMost(4.0);
    let mib = |b: Option<u64>| b.map(|b| b as f64 / MIB / MIB);
    let mut s = String::new();
    let mut checks = Vec::new();
    let _ = writeln!(
        s,
        "| stripped binary (TLS, SQLite, the agent), MiB | this machine | Pi ({}) | goal |\n|---|---:|---:|---|",
        sizes::PI_TARGET
    );
    for (i, name) in sizes::SHELLS.iter().enumerate() {
        let (host, pi) = (mib(z.host[i]), mib(z.pi[i]));
        let verdict = verdict(Some(GOAL), host, None);
        let _ = writeln!(
            s,
            "| `{name}` | {} | {} | {verdict} |",
            fmt(host, 2),
            fmt(pi, 2)
        );
        checks.push(GoalCheck {
            metric: format!("stripped `{name}` binary, MiB"),
            figure: fmt(host, 2),
            verdict: verdict.clone(),
        });
        if pi.is_some() {
            checks.push(GoalCheck {
                metric: format!("stripped `{name}` binary for the Pi, MiB"),
                figure: fmt(pi, 2),
                verdict: self::verdict(Some(GOAL), pi, None),
            });
        }
    }
    let _ = match &z.pi_build {
        PiBuild::Built(secs) => {
            writeln!(s, "\nThe Pi binaries were built by this run ({secs:.0} s).")
        }
        PiBuild::NotRebuilt => writeln!(
            s,
            "\nThe Pi binaries were not rebuilt by this run (`--no-build`): these are whatever `target/{}/release` held.",
            sizes::PI_TARGET
        ),
        PiBuild::Missing(why) => writeln!(s, "\nNo Pi build: {why}."),
    };
    (s, checks)
}

/// The goals summary: every goal checked, its figure and verdict.
fn goals_table(checks: &[GoalCheck]) -> String {
    let mut s = String::from("| goal for clawgate (mio) | figure | goal |\n|---|---:|---|\n");
    for c in checks {
        let _ = writeln!(s, "| {} | {} | {} |", c.metric, c.figure, c.verdict);
    }
    s
}

/// Everything one report is made of.
pub struct Report<'a> {
    /// The control plane's figures, one per server.
    pub figs: &'a [Figures],
    /// The agent and channel paths' section and the goals it checked (`None`: not run).
    pub paths: Option<(String, Vec<GoalCheck>)>,
    /// Binary sizes.
    pub sizes: &'a Sizes,
    /// The machine, at the start.
    pub machine: &'a Machine,
    /// The control plane's options.
    pub opts: &'a Options,
    /// Whether this is the quick run.
    pub quick: bool,
    /// The command line.
    pub command: &'a str,
    /// How long the measurements took (builds excluded), s.
    pub wall_secs: f64,
    /// How long the builds took, s.
    pub build_secs: f64,
    /// The load averages at the end.
    pub load_end: String,
    /// The hand-written tail of the previous report.
    pub kept: &'a str,
}

/// Issue 22's bound on the bench's own time: the measurements (builds excluded, said in the
/// report's first line) of a quick run under 5 minutes, of a full run under 40.
fn own_time(r: &Report) -> GoalCheck {
    let (what, limit) = if r.quick {
        ("quick", 300.0)
    } else {
        ("full", 2400.0)
    };
    let goal = Some(Goal::AtMost(limit));
    GoalCheck {
        metric: format!("the bench's own time: the measurements of this {what} run, s"),
        figure: fmt(Some(r.wall_secs), 0),
        verdict: verdict(goal, Some(r.wall_secs), None),
    }
}

/// The whole report.
pub fn render(r: &Report) -> String {
    let m = r.machine;
    let o = r.opts;
    let mut s = String::new();
    let _ = writeln!(s, "# clawgate benchmarks\n");
    let _ = writeln!(
        s,
        "One {} run of `clawgate-bench` at commit `{}`, {}: the measurements took {:.0} s \
         (the release builds before them {:.0} s, {:.0} s in all). Regenerate this file with \
         the command below; the text after the analysis heading is hand-written and kept.\n",
        if r.quick {
            "quick (`--quick`: smaller holds, counts and windows)"
        } else {
            "full"
        },
        m.commit,
        m.date,
        r.wall_secs,
        r.build_secs,
        r.wall_secs + r.build_secs,
    );
    let _ = writeln!(s, "```\n{}\n```\n", r.command);
    let _ = writeln!(
        s,
        "Machine: {} CPUs, {}, {} MiB RAM, Linux {}; load average {} at the start, {} at the end.\n",
        m.nproc, m.cpu, m.mem_mib, m.kernel, m.loadavg, r.load_end
    );
    if m.load_per_cpu() > 0.5 {
        let _ = writeln!(
            s,
            "**The machine was loaded** ({:.1} runnable per CPU at the start): other processes \
             took CPU time from the servers and the load generator alike, so times and rates here \
             are noise; ratios within this run, counts and CPU per operation hold better.\n",
            m.load_per_cpu()
        );
    }
    let (control, mut checks) = control_table(r.figs);
    let (sizes, size_checks) = sizes_table(r.sizes);
    checks.extend(size_checks);
    if let Some((_, c)) = &r.paths {
        checks.extend(c.iter().cloned());
    }
    checks.push(own_time(r));
    let _ = writeln!(
        s,
        "## Goals\n\nIssue 22's goals (and the earlier ones it kept), for the mio shell on this \
         machine; ratios are to the bare mio + tungstenite server of the same run.\n"
    );
    let _ = writeln!(s, "{}", goals_table(&checks));
    let _ = writeln!(s, "## Binary size\n\n{sizes}");
    let _ = writeln!(
        s,
        "## Control plane\n\nSmall hold = {} connections, large hold = {} connections; churn {} s \
         per clawgate shell. The load generator and the servers share the machine; compare the \
         ratios of this one run more than the absolute figures.\n",
        o.small_hold, o.connections, o.churn_secs
    );
    let _ = writeln!(s, "{control}");
    if let Some((section, _)) = &r.paths {
        let _ = writeln!(s, "{section}");
    }
    let _ = writeln!(s, "## Details\n");
    for f in r.figs {
        details(&mut s, f);
    }
    let _ = writeln!(s, "{}", METHOD);
    let _ = writeln!(s, "{KEEP_MARKER}{}", r.kept);
    s
}

fn details(s: &mut String, f: &Figures) {
    let _ = writeln!(s, "### {}\n", f.name);
    if !f.ready_ms.is_empty() {
        let v: Vec<String> = f.ready_ms.iter().map(|x| format!("{x:.1}")).collect();
        let _ = writeln!(s, "- spawn → hello-ok per spawn, ms: {}", v.join(", "));
    }
    if !f.idle_kib.is_empty() {
        let v: Vec<String> = f
            .idle_kib
            .iter()
            .map(|&k| format!("{:.2}", k as f64 / MIB))
            .collect();
        let _ = writeln!(s, "- idle RSS per spawn, MiB: {}", v.join(", "));
    }
    for (label, h) in [("c=1", &f.rates.hs_c1), ("c=64", &f.rates.hs_c64)] {
        if let Some(h) = h {
            let _ = writeln!(
                s,
                "- handshakes {label}: {} completed, {} failed{}",
                h.latency.n,
                h.failures,
                h.last_failure
                    .as_ref()
                    .map(|w| format!(" (last: {w})"))
                    .unwrap_or_default()
            );
        }
    }
    for (label, r) in [("1 conn", &f.rates.rtt_1), ("64 conns", &f.rates.rtt_64)] {
        if let Some(r) = r {
            let _ = writeln!(s, "- round trips, {label}: {} answers", r.latency.n);
        }
    }
    let labels = [
        "handshakes/s c=1",
        "handshakes/s c=64",
        "requests/s 1 conn",
        "requests/s 64 conns",
    ];
    let spread: Vec<String> = labels
        .iter()
        .zip(f.rates.spread)
        .zip(f.rates.rates())
        .filter_map(|((label, lohi), med)| {
            let ((lo, hi), med) = (lohi?, med?);
            Some(format!(
                "{label} {lo:.0}–{hi:.0} (±{:.0} % of the median)",
                (hi - lo) / 2.0 / med.max(1e-9) * 100.0
            ))
        })
        .collect();
    if !spread.is_empty() {
        let _ = writeln!(
            s,
            "- rates: median of {} runs of each step; lowest–highest run: {}",
            f.rates.runs,
            spread.join(", ")
        );
    }
    let paired: Vec<String> = labels
        .iter()
        .zip(f.rates.to_baseline)
        .filter_map(|(label, p)| {
            let p = p?;
            Some(format!(
                "{label} {:.2} (middle half {:.2}–{:.2}, {} pairs)",
                p.median, p.lower, p.upper, p.pairs
            ))
        })
        .collect();
    if !paired.is_empty() {
        let _ = writeln!(
            s,
            "- rates ÷ the bare baseline's, run by run (median and quartiles): {}",
            paired.join(", ")
        );
    }
    if let Some(i) = &f.invoke {
        let _ = writeln!(s, "- invoke round trips: {} (p999 {:.0} µs)", i.n, i.p999);
    }
    if let Some(fo) = &f.fanout {
        let v: Vec<String> = fo.spreads_ms.iter().map(|x| format!("{x:.1}")).collect();
        let _ = writeln!(
            s,
            "- fan-out to {} connections, first → last arrival per tick, ms: {}",
            fo.connections,
            v.join(", ")
        );
    }
    if let Some(c) = &f.churn {
        let first = c.samples.first().map_or(0, |p| p.1);
        let last = c.samples.last().map_or(0, |p| p.1);
        let max = c.samples.iter().map(|p| p.1).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "- churn: {:.0} s, {} connections opened and closed ({} failed); RSS {:.2} → {:.2} MiB (max {:.2}); slope {:.1} KiB/min",
            c.secs,
            c.cycles,
            c.failures,
            first as f64 / MIB,
            last as f64 / MIB,
            max as f64 / MIB,
            c.slope_kib_per_min()
        );
        let _ = writeln!(
            s,
            "- churn RSS at each tenth of the run, MiB: {}",
            c.tenths_kib()
                .iter()
                .map(|&k| format!("{:.2}", k as f64 / MIB))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !f.steps.is_empty() {
        let _ = writeln!(s, "- step times: {}", crate::run::step_times(&f.steps));
    }
    for n in &f.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    let _ = writeln!(s);
}

const METHOD: &str = "## Method

- Run it with `cargo run --release -p clawgate-bench -- all` (or `scripts/bench.sh`, which
  raises `ulimit -n` first); `--quick` is the short plan (2,000 held connections, 10 s churn,
  1 s rate steps and 2 s for the rest (upstream 3 s), one upstream tick, 30 sessions streaming
  at once instead of 100, fewer turns and messages, upstream's burst from 10 chats, idle windows
  of at least 35 s instead of 65 s; no delta broadcast or stored transcripts on upstream). It builds both shells with `cargo build
  --release -p clawgate -p clawgate-smol` and, where the aarch64 cross toolchain is installed,
  the same for `aarch64-unknown-linux-gnu` (the Pi column of the size table); `--no-build` skips
  both. It then measures each server in turn on the control plane, then each gateway on the
  agent and channel paths (`--no-paths` keeps the previous run's section), and rewrites this
  file above the analysis heading. `--no-upstream` skips the Node gateway (skipped with a note
  when it is not installed), `--churn-secs` sets the churn length (300 by default),
  `--connections` the large hold, `--only bare,mio,smol,upstream` a subset. Every step is
  bounded in count and time, traffic stays on 127.0.0.1 and every server is killed with its
  child processes at the end.
- Binary sizes are the release binaries as linked (stripped at link by `host/link`).
- Every server runs as its own process on a free 127.0.0.1 port with a private state directory,
  token auth, `OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP=100000` (the default 32 per address would
  refuse the 64-way handshake run, all from 127.0.0.1) and `gateway.nodes.commands.allow:
  [\"bench.echo\"]`. The clawgate shells also get `gateway.tickIntervalMs: 2000` and
  `gateway.maxConnections: 20000`; upstream's tick is fixed at 30 s, so its fan-out is watched over
  two ticks (one in the quick run).
- RSS is `VmRSS` from `/proc/<pid>/status`, summed over the process tree (upstream runs three
  processes), the median of three samples after a settle time. Idle RSS is taken on every
  spawn of the time-to-ready step, after its one handshake, and the median is shown: the kernel
  maps code in 64 KiB windows aligned to addresses, and where the binary lands (ASLR) moves the
  figure by tens of KiB from spawn to spawn. Per-connection cost = (large-hold RSS − median idle
  RSS) ÷ connections.
- Clients: one mio poll loop in the `clawgate-bench` process, each connection driven by the
  core's sans-IO `client::Client` (`cli`/`cli`, token, `operator.read`), which parses every
  frame it receives as JSON. Handshake = TCP connect → `hello-ok`; the socket is dropped at
  once and replaced. Round trips are closed-loop `health` requests.
- The bare baseline is a mio + tungstenite server with no logic that puts the gateway's bytes
  on the wire: at the start of the run the bench starts the mio shell once and captures, on one
  connection of the same client, the `connect.challenge` event, the `hello-ok`, a `health`
  answer and a `tick`. The baseline sends the challenge after the 101, answers a `connect`
  request with the `hello-ok` and any other request with the `health` answer (the request id
  spliced in, found by a byte search; nothing is parsed) and broadcasts the `tick` (its `ts`
  spliced in). The baseline's clients are the same `client::Client`s sending the same
  `connect` and `health` bytes, so the load generator's work and the bytes on the wire are the
  same for every server and a ratio compares the servers. (Until this change the baseline's
  handshake was the upgrade and a 5-byte echo and its request a 4-byte echo, while the
  gateway's clients also built and parsed the multi-KB JSON frames: on a shared 2-core machine
  that extra generator work lowered the gateway's rates.)
- Rates: at c=1 a rate is one client's round trip, so it moves with whatever else the
  machine runs. The baseline and the clawgate shells are all started at once and every rate
  step runs in short runs (12 of a quarter second in the quick run, 30 of half a second in
  the full one; a c=1 run stops at 750 or 500 handshakes), the servers taking turns run by
  run (A B C, B C A, C A B, …: each goes first as often), one step at a time. A server's rate
  is the median of its runs; its latencies pool every run's samples and its CPU rows divide
  the CPU of all its runs by all their operations. `mio ÷ bare` of a rate row is the median
  of the ratios of runs taken side by side (the mio shell's run k over the baseline's run k),
  so a slow moment of the machine moves both sides of each ratio; each server's details list
  the lowest and highest run and, for the clawgate shells, the quartiles of those ratios. The
  unit stays the whole handshake (TCP connect → `hello-ok`) and the whole round trip. The
  bench and the servers of these runs run at niceness −10 when the bench may raise its
  priority (root or `CAP_SYS_NICE`; a note says when it could not), so other processes of a
  shared machine take a contended CPU from them less. Upstream runs each step once.
- `node.invoke`: a signed node (`node-host`/`node`, command `bench.echo`) and an admin operator;
  pending node pairing requests are approved with `node.pair.approve`, then `node.invoke` is
  called sequentially and the node answers with `node.invoke.result`. The baseline relays the
  same hops with the gateway's captured frames: the operator's `node.invoke` goes to the node
  as the `node.invoke.request` event, the node's result comes back to that operator as the
  answer to its request (matched by the invocation's id), each hop starting when the one
  before it has arrived. The load generator's thread and the server's threads run on one CPU
  for this step, so each hop is a context switch: across two CPUs each hop also waits for the
  other CPU to wake, which on this VM (idle CPUs halt at once) cost 100+ µs per invoke and
  depended on where the scheduler put the processes in that run.
- Fan-out: the spread between the first and the last connection reading the same `tick`
  (told apart by its `ts`), as seen by the load generator's receiving threads (one per CPU,
  each reading its share of the sockets). It includes the generator's own time to read them,
  which the baseline column shows; the server CPU per broadcast does not depend on it.
- Server CPU: the server's on-CPU time over a step (`/proc/<pid>/task/*/schedstat`, summed over
  its process tree) divided by the operations in it. On a shared 2-core machine the load
  generator competes with the server, so these rows show what each operation costs the server
  regardless of who was the bottleneck (the load-generator rows are the same measure of the
  bench process's own thread). For the fan-out, the server's CPU while watching the
  ticks (the hold is otherwise idle) divided by the ticks seen; for upstream this also takes in
  whatever else Node does in that minute (timers, GC, its worker processes), so it is an upper
  bound there.
- Ratios are `mio ÷ column` of the same row; those far below 1 are shown as 1/n.
- Step times (each server's details): how long each step of its control plane took, waits and
  settle times included; the rate runs come before them (the first line gives the measurements'
  total, which issue 22 bounds: a quick run under 5 minutes, a full one under 40).
- Churn runs before the holds: the small hold is kept open while connections are replaced at 300 per second;
  the slope is a least-squares fit over the second half of the run (the first half fills the working set).
";

/// One `agent` row: label, how to read it from one gateway's figures, decimals.
type AgentRow = (&'static str, fn(&AgentFigures) -> f64, usize);

/// The `agent` command's report: one column per gateway, and mio ÷ upstream.
pub fn agent_table(
    rows: &[(String, Result<AgentFigures, BenchError>)],
    m: &Machine,
    turns: usize,
    sessions: usize,
    skipped: &[String],
) -> String {
    fn ms(us: f64) -> f64 {
        us / 1e3
    }
    let table: [AgentRow; 8] = [
        (
            "model's first text → first `chat` delta, ms p50",
            |f| ms(f.first_delta.p50),
            2,
        ),
        (
            "model's first text → first `chat` delta, ms p99",
            |f| ms(f.first_delta.p99),
            2,
        ),
        (
            "model's last byte → `chat` final, ms p50",
            |f| ms(f.last_to_final.p50),
            2,
        ),
        (
            "model's last byte → `chat` final, ms p99",
            |f| ms(f.last_to_final.p99),
            2,
        ),
        (
            "`chat.send` → `chat` final, ms p50 (the answer streams for 240 ms)",
            |f| ms(f.turn.p50),
            1,
        ),
        (
            "RSS before the concurrent run, MiB",
            |f| f.rss_before_kib as f64 / MIB,
            2,
        ),
        (
            "peak RSS, sessions streaming at once, MiB",
            |f| f.rss_peak_kib as f64 / MIB,
            2,
        ),
        (
            "first `chat.send` → last final of the concurrent run, s",
            |f| f.concurrent_elapsed.as_secs_f64(),
            2,
        ),
    ];
    let ok = |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, r)| r.as_ref().ok())
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Agent turns (commit `{}`): {turns} sequential turns on one session, then {sessions} \
         sessions streaming at once (each answer 8 parts, 250 ms apart), against a fake \
         OpenAI-compatible model in the load generator's process. Machine: {} CPUs, {}, \
         {} MiB RAM, Linux {}; load average at start {}.\n",
        m.commit, m.nproc, m.cpu, m.mem_mib, m.kernel, m.loadavg
    );
    let _ = write!(s, "| metric |");
    for (name, _) in rows {
        let _ = write!(s, " {name} |");
    }
    let _ = writeln!(s, " mio ÷ upstream |");
    let _ = writeln!(s, "|---|{}---:|", "---:|".repeat(rows.len()));
    for (label, get, decimals) in table {
        let _ = write!(s, "| {label} |");
        for (_, r) in rows {
            let v = r.as_ref().ok().map(get);
            let _ = write!(s, " {} |", fmt(v, decimals));
        }
        let (mio, up) = (ok(MIO).map(get), ok(UPSTREAM).map(get));
        let _ = writeln!(s, " {} |", ratio(mio, up));
    }
    for (name, r) in rows {
        if let Err(e) = r {
            let _ = writeln!(s, "\n- {name}: {e}");
        }
    }
    for note in skipped {
        let _ = writeln!(s, "- {note}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{BARE, Figures, Goal, MIO, control_table, verdict};
    use crate::rates::Paired;
    use crate::scenario::handshake::Handshakes;

    #[test]
    fn a_rate_row_compares_runs_side_by_side() {
        let with_rate = |name: &str, per_sec: f64| {
            let mut f = Figures {
                name: name.into(),
                ..Figures::default()
            };
            f.rates.hs_c1 = Some(Handshakes {
                per_sec,
                ..Handshakes::default()
            });
            f
        };
        let bare = with_rate(BARE, 100.0);
        let mut mio = with_rate(MIO, 80.0);
        // The medians' ratio is 0.80; run by run the mio shell kept up.
        mio.rates.to_baseline[0] = Some(Paired {
            median: 0.95,
            lower: 0.9,
            upper: 1.1,
            pairs: 12,
        });
        let (table, checks) = control_table(&[bare.clone(), mio.clone()]);
        assert!(
            table.contains("| handshakes/s, c=1 | 100 | 80 | 0.95 | – | ≥ 0.9× bare ✅ |"),
            "{table}"
        );
        let check = checks.iter().find(|c| c.metric == "handshakes/s, c=1");
        assert_eq!(check.map(|c| c.figure.as_str()), Some("80 (0.95× bare)"));
        // Without side-by-side runs, the columns' ratio.
        mio.rates.to_baseline[0] = None;
        let (table, _) = control_table(&[bare, mio]);
        assert!(
            table.contains("| handshakes/s, c=1 | 100 | 80 | 0.80 | – | ≥ 0.9× bare ❌ |"),
            "{table}"
        );
    }

    #[test]
    fn a_goal_is_met_or_missed_by_the_mio_figure() {
        assert_eq!(verdict(Some(Goal::AtMost(4.0)), Some(3.9), None), "≤ 4 ✅");
        assert_eq!(verdict(Some(Goal::AtMost(4.0)), Some(4.3), None), "≤ 4 ❌");
        assert_eq!(verdict(Some(Goal::AtMost(0.0)), Some(0.0), None), "≤ 0 ✅");
        assert_eq!(
            verdict(Some(Goal::AtMost(8.0)), None, None),
            "≤ 8 (no figure)"
        );
        assert_eq!(verdict(None, Some(1.0), Some(1.0)), "");
    }

    #[test]
    fn a_goal_relative_to_bare_needs_the_baseline() {
        let at_least = Some(Goal::OfBareAtLeast(0.9));
        assert_eq!(verdict(at_least, Some(95.0), Some(100.0)), "≥ 0.9× bare ✅");
        assert_eq!(verdict(at_least, Some(85.0), Some(100.0)), "≥ 0.9× bare ❌");
        let at_most = Some(Goal::OfBareAtMost(1.2));
        assert_eq!(verdict(at_most, Some(110.0), Some(100.0)), "≤ 1.2× bare ✅");
        assert_eq!(verdict(at_most, Some(130.0), Some(100.0)), "≤ 1.2× bare ❌");
        assert_eq!(verdict(at_most, Some(1.0), None), "≤ 1.2× bare (no figure)");
    }
}
