//! `BENCHMARKS.md`: the table, the machine, the exact command, and the details behind the
//! numbers. Hand-written text after the `<!-- notes -->` line of an existing file is kept.

use std::fmt::Write as _;

use crate::error::BenchError;
use crate::figures::Figures;
use crate::machine::Machine;
use crate::run::Options;
use crate::scenario::agent::AgentFigures;
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

/// What a target asks of the mio shell.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    /// At least this fraction of the bare baseline's value.
    OfBare(f64),
}

struct Row {
    label: &'static str,
    get: fn(&Figures) -> Option<f64>,
    decimals: usize,
    goal: Option<Goal>,
}

const MIB: f64 = 1024.0;

fn per_conn_kib(f: &Figures) -> Option<f64> {
    Some((f.large_hold_kib? as f64 - f.idle_median_kib()?) / f.large_hold.max(1) as f64)
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            label: "stripped binary, MiB",
            get: |f| Some(f.binary_bytes? as f64 / MIB / MIB),
            decimals: 2,
            goal: Some(Goal::AtMost(1.5)),
        },
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
            get: |f| Some(f.hs_c1.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=1 p99, µs",
            get: |f| Some(f.hs_c1.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=1 p999, µs",
            get: |f| Some(f.hs_c1.as_ref()?.latency.p999),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=64 p50, µs",
            get: |f| Some(f.hs_c64.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=64 p99, µs",
            get: |f| Some(f.hs_c64.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshake c=64 p999, µs",
            get: |f| Some(f.hs_c64.as_ref()?.latency.p999),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshakes/s, c=1",
            get: |f| Some(f.hs_c1.as_ref()?.per_sec),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "handshakes/s, c=64",
            get: |f| Some(f.hs_c64.as_ref()?.per_sec),
            decimals: 0,
            goal: Some(Goal::OfBare(0.8)),
        },
        Row {
            label: "server CPU per handshake (c=64), µs",
            get: |f| f.hs_cpu_us,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "load generator CPU per handshake (c=64), µs",
            get: |f| f.hs_gen_cpu_us,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "health RTT, 1 conn, p50 µs",
            get: |f| Some(f.rtt_1.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "health RTT, 1 conn, p99 µs",
            get: |f| Some(f.rtt_1.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "requests/s, 1 conn",
            get: |f| Some(f.rtt_1.as_ref()?.per_sec),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "health RTT, 64 conns, p50 µs",
            get: |f| Some(f.rtt_64.as_ref()?.latency.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "health RTT, 64 conns, p99 µs",
            get: |f| Some(f.rtt_64.as_ref()?.latency.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "requests/s, 64 conns",
            get: |f| Some(f.rtt_64.as_ref()?.per_sec),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "server CPU per request (64 conns), µs",
            get: |f| f.rtt_cpu_us,
            decimals: 1,
            goal: None,
        },
        Row {
            label: "node.invoke RTT p50, µs (bare: 2 echo hops)",
            get: |f| Some(f.invoke.as_ref()?.p50),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "node.invoke RTT p99, µs (bare: 2 echo hops)",
            get: |f| Some(f.invoke.as_ref()?.p99),
            decimals: 0,
            goal: None,
        },
        Row {
            label: "fan-out to large hold, ms (median tick)",
            get: |f| Some(stats::median(&f.fanout.as_ref()?.spreads_ms)),
            decimals: 1,
            goal: Some(Goal::AtMost(50.0)),
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

/// `a ÷ b` with two decimals (as `1/n` when far below 1), or a dash.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a != 0.0 => {
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

fn verdict(goal: Option<Goal>, mio: Option<f64>, bare: Option<f64>) -> String {
    let (Some(goal), Some(v)) = (goal, mio) else {
        return String::new();
    };
    match goal {
        Goal::AtMost(limit) => format!("≤ {limit} {}", if v <= limit { "✅" } else { "❌" }),
        Goal::OfBare(frac) => match bare {
            Some(b) if b > 0.0 => format!(
                "≥ {:.0} % of bare {}",
                frac * 100.0,
                if v / b >= frac { "✅" } else { "❌" }
            ),
            _ => format!("≥ {:.0} % of bare (no baseline)", frac * 100.0),
        },
    }
}

/// The whole report; `kept` is the hand-written tail of the previous one.
pub fn render(
    figs: &[Figures],
    m: &Machine,
    o: &Options,
    command: &str,
    wall_secs: f64,
    kept: &str,
) -> String {
    let find = |name: &str| figs.iter().find(|f| f.name == name);
    let (bare, mio, up) = (find(BARE), find(MIO), find(UPSTREAM));
    let mut s = String::new();
    let _ = writeln!(s, "# clawgate benchmarks\n");
    let _ = writeln!(
        s,
        "Generated by `clawgate-bench` (commit `{}`); the run took {:.0} s.\n",
        m.commit, wall_secs
    );
    let _ = writeln!(s, "Command:\n\n```\n{command}\n```\n");
    let _ = writeln!(
        s,
        "Machine: {} CPUs, {}, {} MiB RAM, Linux {}; load average at start {}.\n",
        m.nproc, m.cpu, m.mem_mib, m.kernel, m.loadavg
    );
    let _ = writeln!(
        s,
        "Small hold = {} connections, large hold = {} connections; churn {} s per clawgate shell.",
        o.small_hold, o.connections, o.churn_secs
    );
    let _ = writeln!(
        s,
        "The load generator and the server share the machine; every figure comes from this one run, so compare the ratios more than the absolute numbers.\n"
    );
    let mut header = String::from("| metric |");
    let mut rule = String::from("|---|");
    for f in figs {
        let _ = write!(header, " {} |", f.name);
        rule.push_str("---:|");
    }
    header.push_str(" mio ÷ bare | mio ÷ upstream | target (mio) |");
    rule.push_str("---:|---:|---|");
    let _ = writeln!(s, "{header}\n{rule}");
    for r in rows() {
        let _ = write!(s, "| {} |", r.label);
        for f in figs {
            let _ = write!(s, " {} |", fmt((r.get)(f), r.decimals));
        }
        let v = |f: Option<&Figures>| f.and_then(r.get);
        let _ = writeln!(
            s,
            " {} | {} | {} |",
            ratio(v(mio), v(bare)),
            ratio(v(mio), v(up)),
            verdict(r.goal, v(mio), v(bare))
        );
    }
    let _ = writeln!(s, "\n## Details\n");
    for f in figs {
        details(&mut s, f);
    }
    let _ = writeln!(s, "{}", METHOD);
    let _ = writeln!(s, "{KEEP_MARKER}{kept}");
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
    for (label, h) in [("c=1", &f.hs_c1), ("c=64", &f.hs_c64)] {
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
    for (label, r) in [("1 conn", &f.rtt_1), ("64 conns", &f.rtt_64)] {
        if let Some(r) = r {
            let _ = writeln!(s, "- round trips, {label}: {} answers", r.latency.n);
        }
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
    for n in &f.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    let _ = writeln!(s);
}

const METHOD: &str = "## Method

- Run it with `cargo run --release -p clawgate-bench -- all` (or `scripts/bench.sh`, which
  raises `ulimit -n` first). It builds both shells with `cargo build --release -p clawgate -p
  clawgate-smol` (`--no-build` skips that), measures each server in turn and rewrites this file.
  `--no-upstream` skips the Node gateway (skipped with a note when it is not installed),
  `--churn-secs` sets the churn length (600 by default), `--connections` the large hold,
  `--only bare,mio,smol,upstream` a subset. Every step is bounded in count and time, traffic
  stays on 127.0.0.1 and every server is killed with its child processes at the end.
- Every server runs as its own process on a free 127.0.0.1 port with a private state directory,
  token auth, `OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP=100000` (the default 32 per address would
  refuse the 64-way handshake run, all from 127.0.0.1) and `gateway.nodes.commands.allow:
  [\"bench.echo\"]`. The clawgate shells also get `gateway.tickIntervalMs: 2000` and
  `gateway.maxConnections: 20000`; upstream's tick is fixed at 30 s, so its fan-out is watched over
  two ticks.
- RSS is `VmRSS` from `/proc/<pid>/status`, summed over the process tree (upstream runs three
  processes), the median of three samples after a settle time. Idle RSS is taken on every
  spawn of the time-to-ready step, after its one handshake, and the median is shown: the kernel
  maps code in 64 KiB windows aligned to addresses, and where the binary lands (ASLR) moves the
  figure by tens of KiB from spawn to spawn. Per-connection cost = (large-hold RSS − median idle
  RSS) ÷ connections.
- Clients: one mio poll loop in the `clawgate-bench` process, each connection driven by the
  core's sans-IO `client::Client` (`cli`/`cli`, token, `operator.read`). Handshake = TCP connect
  → `hello-ok` (the baseline: connect → upgrade → one echo round trip); the socket is dropped
  at once and replaced. Round trips are closed-loop `health` requests (the baseline: echo).
- `node.invoke`: a signed node (`node-host`/`node`, command `bench.echo`) and an admin operator;
  pending node pairing requests are approved with `node.pair.approve`, then `node.invoke` is
  called sequentially and the node answers with `node.invoke.result`. The baseline's figure is
  an echo round trip on one connection followed by one on a second connection.
- Fan-out: the spread between the first and the last connection reading the same `tick`
  (told apart by its `ts`), as seen by the single-threaded load generator. It includes the
  generator's own time to read 10,000 sockets, which the baseline column shows.
- Server CPU: the server's on-CPU time over a step (`/proc/<pid>/task/*/schedstat`, summed over
  its process tree) divided by the operations in it. On a shared 2-core machine the load
  generator competes with the server, so these rows show what each operation costs the server
  regardless of who was the bottleneck (the load-generator rows are the same measure of the
  bench process's own thread). For the fan-out, the server's CPU while watching the
  ticks (the hold is otherwise idle) divided by the ticks seen; for upstream this also takes in
  whatever else Node does in that minute (timers, GC, its worker processes), so it is an upper
  bound there.
- Ratios are `mio ÷ column` of the same row; those far below 1 are shown as 1/n.
- Churn runs before the holds: the small hold is kept open while connections are replaced at 300 per second;
  the slope is a least-squares fit over the samples after the first tenth of the run.
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
