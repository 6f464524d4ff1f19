//! Server processes under test: spawned with a private state directory, measured through
//! `/proc`, and killed with all their descendants when dropped. They stay in the terminal's
//! process group, so an interrupted run (Ctrl-C) stops them too.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::canned::Canned;
use crate::error::{BenchError, Context};

/// The shared token every gateway under test is started with.
pub const TOKEN: &str = "bench-token-5f2c9a";
/// Broadcast interval for the servers that let it be configured.
pub const TICK_MS: u64 = 2000;
/// Upstream's state database, which holds its plugins' install records.
const PLUGIN_RECORDS: &str = "state/openclaw.sqlite";
/// Longest a baseline server process lives.
const BARE_LIFETIME_SECS: u64 = 4 * 3600;

/// How to start one kind of server.
#[derive(Clone, Debug)]
pub enum Launch {
    /// The bare baseline: this binary's `bare-server` command.
    Bare {
        /// This binary.
        exe: PathBuf,
        /// The frames it sends (written to its state directory for it).
        canned: Box<Canned>,
    },
    /// A clawgate shell binary (`gateway run`).
    Clawgate {
        /// The binary.
        bin: PathBuf,
    },
    /// The upstream Node gateway.
    Upstream {
        /// Node's `bin/` directory (put first on `PATH`).
        node_bin: PathBuf,
        /// The `openclaw` launcher.
        openclaw: PathBuf,
        /// The state directory upstream's channel plugins were installed into
        /// (`openclaw plugins install`, as `scripts/bench.sh` does).
        plugins: PathBuf,
    },
}

impl Launch {
    /// Whether this server has a fixed 30 s tick instead of [`TICK_MS`].
    pub fn tick(&self) -> Duration {
        match self {
            Launch::Upstream { .. } => Duration::from_secs(30),
            _ => Duration::from_millis(TICK_MS),
        }
    }

    /// Whether this gateway has channel `id`: built in, or (upstream's Slack and Discord)
    /// its plugin installed in the `plugins` state directory; an error saying what is missing.
    pub fn has_channel(&self, id: &str) -> Result<(), BenchError> {
        let Launch::Upstream { plugins, .. } = self else {
            return Ok(());
        };
        if id == "telegram" {
            return Ok(());
        }
        let missing = || {
            BenchError::Unavailable(format!(
                "upstream's {id} plugin is not installed under {} (`scripts/bench.sh` installs it)",
                plugins.display()
            ))
        };
        // `openclaw plugins install npm:@openclaw/<id>` puts it in an npm project of its own
        // and records the install in the state database.
        if !plugins.join(PLUGIN_RECORDS).exists() {
            return Err(missing());
        }
        let projects = fs::read_dir(plugins.join("npm/projects")).map_err(|_| missing())?;
        projects
            .flatten()
            .filter(|p| {
                p.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("openclaw-{id}-"))
            })
            .any(|p| {
                let dir = p.path().join("node_modules/@openclaw").join(id);
                dir.join("package.json").exists()
            })
            .then_some(())
            .ok_or_else(missing)
    }
}

/// A running server; killed with its descendants on drop.
pub struct Server {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
    /// When it was spawned.
    pub spawned: Instant,
    dir: PathBuf,
    name: String,
    /// Whether it hands back start-up's memory once quiet (a clawgate shell:
    /// [`Server::await_start_up_release`]).
    releases_start_up: bool,
}

/// A free loopback port (bound, read and released).
fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr().context("read the free port")?.port())
}

/// A fresh private directory under the system temp dir.
fn temp_dir(name: &str) -> Result<PathBuf, BenchError> {
    let mut r = [0u8; 6];
    let _ = getrandom::fill(&mut r);
    let dir = std::env::temp_dir().join(format!(
        "clawgate-bench-{name}-{}",
        data_encoding::HEXLOWER.encode(&r)
    ));
    fs::create_dir_all(&dir).context(format!("create {}", dir.display()))?;
    Ok(dir)
}

impl Server {
    /// Start `launch` on a free port; `name` labels it in errors.
    pub fn spawn(name: &str, launch: &Launch) -> Result<Self, BenchError> {
        Self::spawn_with(name, launch, &json!({}))
    }

    /// Start `launch` with the top-level members of `extra` added to its `openclaw.json`
    /// (the bare baseline has no config and ignores them).
    pub fn spawn_with(name: &str, launch: &Launch, extra: &Value) -> Result<Self, BenchError> {
        Self::start(name, launch, extra, None)
    }

    /// [`Server::spawn_with`] with the channels configured in `extra` running (upstream is
    /// otherwise started with `OPENCLAW_SKIP_CHANNELS=1`) and the variables `env` set (where
    /// a channel's API is, e.g. `SLACK_API_URL`).
    pub fn spawn_channels(
        name: &str,
        launch: &Launch,
        extra: &Value,
        env: &[(&str, String)],
    ) -> Result<Self, BenchError> {
        Self::start(name, launch, extra, Some(env))
    }

    /// Start `launch`; `channels` is `None` to keep upstream's channels off, else the
    /// variables to set for them.
    fn start(
        name: &str,
        launch: &Launch,
        extra: &Value,
        channels: Option<&[(&str, String)]>,
    ) -> Result<Self, BenchError> {
        let port = free_port()?;
        let dir = temp_dir(name)?;
        let mut cmd = command(launch, port, &dir, extra)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("OPENCLAW_STATE_DIR", &dir)
            .env("HOME", &dir)
            .env("OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP", "100000")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .env("OPENCLAW_NO_RESPAWN", "1")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_GATEWAY_PORT");
        match channels {
            Some(env) => {
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
            }
            None => {
                cmd.env("OPENCLAW_SKIP_CHANNELS", "1");
            }
        }
        let spawned = Instant::now();
        let child = cmd.spawn().context(format!("spawn {name}"))?;
        Ok(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            spawned,
            dir,
            name: name.to_string(),
            releases_start_up: matches!(launch, Launch::Clawgate { .. }),
        })
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Set the CPU scheduling policy of every thread of the process and its descendants
    /// (`chrt --all-tasks`): `idle` is `SCHED_IDLE` (its threads run only on a CPU no other
    /// thread wants, and give it up at once to one that wakes), else back to the normal
    /// policy. Threads and processes it starts afterwards inherit their parent's policy; one
    /// started while this runs may miss it, so it is set again until every thread has it
    /// (read back from `/proc`), a few rounds at most.
    pub fn set_idle_priority(&self, idle: bool) -> Result<(), BenchError> {
        let (flag, want) = if idle {
            ("--idle", SCHED_IDLE)
        } else {
            ("--other", SCHED_OTHER)
        };
        for _ in 0..5 {
            for pid in tree(self.pid()) {
                // A process of the tree that exits meanwhile makes `chrt` fail: the read-back
                // below is what counts.
                let _ = Command::new("chrt")
                    .args([flag, "--all-tasks", "--pid", "0"])
                    .arg(pid.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .context("run chrt")?;
            }
            if tasks(self.pid()).all(|t| policy(&t.path()).is_none_or(|p| p == want)) {
                return Ok(());
            }
        }
        Err(BenchError::Unavailable(format!(
            "`chrt {flag}` left threads of {} with another scheduling policy",
            self.name
        )))
    }

    /// Fail if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            _ => Err(BenchError::ServerExited(self.name.clone())),
        }
    }

    /// CPU time used so far by the process and its descendants, in ns.
    pub fn cpu_ns(&self) -> u64 {
        cpu_ns(self.pid())
    }

    /// Per thread of the process and its descendants: its CPU time and context switches so
    /// far.
    pub fn thread_counts(&self) -> BTreeMap<u32, ThreadCounts> {
        thread_counts(self.pid())
    }

    /// The thread ids of the process and its descendants, sorted.
    pub fn threads(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = tasks(self.pid())
            .filter_map(|t| t.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The anonymous part of [`Server::rss_kib`] (`RssAnon`: heap, stacks; not the mapped
    /// binary and libraries), in KiB.
    pub fn rss_anon_kib(&self) -> u64 {
        tree(self.pid())
            .iter()
            .map(|p| status_kib(*p, "RssAnon:"))
            .sum()
    }

    /// Resident memory of the process and all its descendants, in KiB.
    pub fn rss_kib(&self) -> u64 {
        tree(self.pid()).iter().map(|p| vm_rss_kib(*p)).sum()
    }

    /// Wait until a clawgate gateway has handed back start-up's memory: at its first quiet
    /// spell ([`clawgate_host::allocator::QUIET`] after its last work, which channels
    /// connecting push back) it unmaps start-up's code and trims its heap, and its RSS falls
    /// [`START_UP_RELEASE_KIB`] or more below its peak (`VmHWM`); at most `limit`. Whether it
    /// did (at once for a server that does not: the bare baseline, upstream).
    pub fn await_start_up_release(&self, limit: Duration) -> bool {
        let released = || {
            let pid = self.pid();
            vm_rss_kib(pid) + START_UP_RELEASE_KIB <= status_kib(pid, "VmHWM:")
        };
        let t = Instant::now();
        while self.releases_start_up && !released() {
            if t.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pids: Vec<String> = tree(self.pid()).iter().map(u32::to_string).collect();
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The command that starts `launch` on `port` with state in `dir` (its config file written,
/// with the members of `extra`).
fn command(launch: &Launch, port: u16, dir: &Path, extra: &Value) -> Result<Command, BenchError> {
    let port_s = port.to_string();
    let allow = json!({"nodes": {"commands": {"allow": ["bench.echo"]}}});
    match launch {
        Launch::Bare { exe, canned } => {
            let file = dir.join("canned.json");
            canned.save(&file)?;
            let mut c = Command::new(exe);
            c.args(["bare-server", "--port", &port_s])
                .arg("--canned")
                .arg(&file)
                .args(["--tick-ms", &TICK_MS.to_string()])
                .args(["--lifetime-secs", &BARE_LIFETIME_SECS.to_string()]);
            Ok(c)
        }
        Launch::Clawgate { bin } => {
            let mut gw = allow;
            gw["tickIntervalMs"] = json!(TICK_MS);
            gw["maxConnections"] = json!(20_000);
            write_config(dir, &json!({"gateway": gw}), extra)?;
            let mut c = Command::new(bin);
            c.args(["gateway", "run", "--port", &port_s, "--token", TOKEN]);
            Ok(c)
        }
        Launch::Upstream {
            node_bin,
            openclaw,
            plugins,
        } => {
            let log = dir.join("openclaw.log");
            // Upstream gives a plugin's trusted features (the Slack and Discord plugins need
            // them) only to one with an install record: a run that enables plugins starts
            // from the state database their install wrote.
            if extra.pointer("/plugins/entries").is_some() {
                let to = dir.join(PLUGIN_RECORDS);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).context(format!("create {}", parent.display()))?;
                }
                fs::copy(plugins.join(PLUGIN_RECORDS), &to).context(format!(
                    "copy upstream's plugin records to {}",
                    to.display()
                ))?;
            }
            // Upstream refuses to start with a key it does not know: its tick is fixed at 30 s.
            let mut extra = extra.clone();
            if let Some(gw) = extra.get_mut("gateway").and_then(Value::as_object_mut) {
                gw.remove("tickIntervalMs");
            }
            write_config(
                dir,
                &json!({
                    "gateway": allow,
                    "logging": {"file": log},
                    "models": {"catalogRefresh": {"enabled": false}},
                    "update": {"checkOnStart": false},
                }),
                &extra,
            )?;
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![node_bin.clone()];
            paths.extend(std::env::split_paths(&path));
            let mut c = Command::new(openclaw);
            c.args(["gateway", "run", "--port", &port_s, "--bind", "loopback"])
                .args(["--auth", "token", "--token", TOKEN, "--allow-unconfigured"])
                .env("PATH", std::env::join_paths(paths).unwrap_or(path));
            Ok(c)
        }
    }
}

fn write_config(dir: &Path, base: &Value, extra: &Value) -> Result<(), BenchError> {
    let mut v = base.clone();
    merge(&mut v, extra);
    let path = dir.join("openclaw.json");
    fs::write(&path, v.to_string()).context(format!("write {}", path.display()))
}

/// `extra` laid over `into`: objects merge member by member, anything else replaces.
fn merge(into: &mut Value, extra: &Value) {
    match (into, extra) {
        (Value::Object(into), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, extra) => *into = extra.clone(),
    }
}

/// `pid` and its descendants (through `/proc/<pid>/task/*/children`), bounded in size.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() < 4096 {
        let p = out.get(i).copied().unwrap_or(pid);
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                kids.split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// CPU time used so far by `pid` and its descendants, in ns: the live processes' own, and
/// that of the children they reaped (so a helper exiting does not make the sum go back).
fn cpu_ns(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .map(|p| own_cpu_ns(p) + reaped_cpu_ns(p))
        .sum()
}

/// CPU time of the children `pid` has waited for (`cutime` + `cstime` of
/// `/proc/<pid>/stat`), in ns.
fn reaped_cpu_ns(pid: u32) -> u64 {
    /// `USER_HZ`, the unit of those fields (100 on every Linux the bench runs on).
    const TICK_NS: u64 = 10_000_000;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at field 3: `cutime`
    // and `cstime` are fields 16 and 17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    [13, 14]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum::<u64>()
        * TICK_NS
}

/// One thread's CPU time and context switches (voluntary and involuntary: each is a wake-up
/// of a thread that had gone to sleep or was preempted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCounts {
    /// CPU time, ns (`/proc/<pid>/task/<tid>/schedstat`).
    pub cpu_ns: u64,
    /// Context switches (`voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches`).
    pub ctx: u64,
}

/// The `/proc/<pid>/task/<tid>` entries of every thread of `pid` and its descendants.
fn tasks(pid: u32) -> impl Iterator<Item = fs::DirEntry> {
    tree(pid)
        .into_iter()
        .flat_map(|p| {
            fs::read_dir(format!("/proc/{p}/task"))
                .into_iter()
                .flatten()
        })
        .flatten()
}

/// [`ThreadCounts`] of every thread of `pid` and its descendants, by thread id.
fn thread_counts(pid: u32) -> BTreeMap<u32, ThreadCounts> {
    tasks(pid)
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let ctx = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            let sched = fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            let cpu_ns = sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Some((tid, ThreadCounts { cpu_ns, ctx }))
        })
        .collect()
}

/// What the threads of `now` did since `then`: each one's growth, a thread new since then
/// counted whole. A thread gone since then is not in `now`, so what it did after `then` is
/// not counted (the caller can tell by comparing the two sets of ids).
pub fn counts_since(
    then: &BTreeMap<u32, ThreadCounts>,
    now: &BTreeMap<u32, ThreadCounts>,
) -> ThreadCounts {
    now.iter().fold(ThreadCounts::default(), |sum, (tid, c)| {
        let before = then.get(tid).copied().unwrap_or_default();
        ThreadCounts {
            cpu_ns: sum.cpu_ns + c.cpu_ns.saturating_sub(before.cpu_ns),
            ctx: sum.ctx + c.ctx.saturating_sub(before.ctx),
        }
    })
}

/// CPU time used so far by the threads of `pid` alone, in ns, from
/// `/proc/<pid>/task/<tid>/schedstat`.
pub fn own_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let stat = fs::read_to_string(t.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The unit of `/proc/<pid>/stat`'s CPU times (`USER_HZ`, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// CPU time (user and system) used so far by this process, its exited threads included
/// (`/proc/self/stat` fields 14 and 15, in 10 ms ticks): the bench's own cost of a step.
pub fn self_cpu() -> Duration {
    let ticks = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            let mut f = rest.split_whitespace().skip(14 - 3);
            let user: u64 = f.next()?.parse().ok()?;
            let system: u64 = f.next()?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// CPU time every CPU of the machine has spent running anything so far (`/proc/stat`'s
/// first line: user, nice, system, irq, softirq and steal, in 10 ms ticks): less
/// [`self_cpu`] over a step, what the rest of the machine (the gateway measured included)
/// ran meanwhile.
pub fn machine_busy() -> Duration {
    let ticks: u64 = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let cpu = stat.lines().next()?.strip_prefix("cpu ")?.to_string();
            let f: Vec<u64> = cpu
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq steal
            Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum())
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// The normal scheduling policy's number (`SCHED_OTHER`).
const SCHED_OTHER: u32 = 0;
/// `SCHED_IDLE`'s number.
const SCHED_IDLE: u32 = 5;

/// The scheduling policy of the thread at `task` (`/proc/<pid>/task/<tid>`: field 41 of its
/// `stat`), `None` when it is gone.
fn policy(task: &Path) -> Option<u32> {
    let stat = fs::read_to_string(task.join("stat")).ok()?;
    // The fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(41 - 3)?.parse().ok()
}

/// `VmRSS` of one process in KiB (0 when it is gone).
pub fn vm_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A KiB figure of one process's `/proc/PID/status` (`field` with its colon; 0 when it is gone).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wait until `server`'s set of threads has not changed for `steady` (its short-lived
/// threads gone), at most `limit`; how long that took.
pub fn await_steady_threads(server: &Server, steady: Duration, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut threads = server.threads();
    let mut since = Instant::now();
    while since.elapsed() < steady && t.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.threads();
        if now != threads {
            (threads, since) = (now, Instant::now());
        }
    }
    t.elapsed()
}

/// How long a gateway is left alone before its RSS is read where a step has just worked it:
/// past the quiet spell after which it returns freed memory
/// ([`clawgate_host::allocator::QUIET`]), with a second's margin for the work that ends the
/// spell (a last delivery record).
pub const RSS_SETTLE: Duration = Duration::from_secs(clawgate_host::allocator::QUIET.as_secs() + 1);

/// How far below its peak a clawgate gateway's RSS falls when it hands back start-up's memory
/// (start-up's code and heap: 3.2-3.3 MiB with three channels connected, 4.9 -> 1.7 MiB).
pub const START_UP_RELEASE_KIB: u64 = 1024;

/// The longest a step waits for [`Server::await_start_up_release`] before it reads the RSS of
/// a gateway with nothing to do yet.
pub const START_UP_RELEASE_LIMIT: Duration = Duration::from_secs(10);

/// A gateway's RSS once it has nothing to do yet: after it has handed back start-up's memory
/// (at most [`START_UP_RELEASE_LIMIT`]), the median of three samples (see [`settled_rss_kib`]).
pub fn started_rss_kib(server: &Server) -> u64 {
    if !server.await_start_up_release(START_UP_RELEASE_LIMIT) {
        eprintln!(
            "bench: {} had not handed back start-up's memory {} s after it was ready; its RSS is read anyway",
            server.name(),
            START_UP_RELEASE_LIMIT.as_secs()
        );
    }
    settled_rss_kib(server, Duration::from_millis(200))
}

/// Sleep `settle`, then the median of three RSS samples 200 ms apart, in KiB.
pub fn settled_rss_kib(server: &Server, settle: Duration) -> u64 {
    std::thread::sleep(settle);
    let mut s = Vec::with_capacity(3);
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        s.push(server.rss_kib());
    }
    s.sort_unstable();
    s.get(1).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_counts_at_least_the_cpu_this_process_used() {
        let (busy0, own0) = (machine_busy(), self_cpu());
        // Burn 200 ms of CPU (however long that takes on a busy machine, 20 s at most).
        let t0 = Instant::now();
        let mut x = 0u64;
        while self_cpu().saturating_sub(own0) < Duration::from_millis(200)
            && t0.elapsed() < Duration::from_secs(20)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let own = self_cpu().saturating_sub(own0);
        assert!(own >= Duration::from_millis(200), "{own:?}");
        // Both count in 10 ms ticks, read at slightly different moments.
        assert!(machine_busy().saturating_sub(busy0) + Duration::from_millis(20) >= own);
    }

    #[test]
    fn the_policy_read_back_is_the_one_chrt_set() {
        let mut idle = Command::new("chrt")
            .args(["--idle", "0", "sleep", "5"])
            .spawn()
            .expect("spawn chrt");
        let task = PathBuf::from(format!("/proc/{}/task/{}", idle.id(), idle.id()));
        // `chrt` sets the policy, then execs `sleep` in the same process.
        let deadline = Instant::now() + Duration::from_secs(5);
        while policy(&task) != Some(SCHED_IDLE) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = policy(&task);
        let _ = idle.kill();
        let _ = idle.wait();
        assert_eq!(seen, Some(SCHED_IDLE));
        assert_eq!(policy(&task), None, "a reaped process has no policy");
        let me = format!("/proc/self/task/{}", std::process::id());
        assert_eq!(policy(Path::new(&me)), Some(SCHED_OTHER));
    }
}
