//! The machine a run happened on, from `/proc` (and `git` for the commit).

use std::fs;
use std::process::Command;

/// What the report says about the machine.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// CPUs available to this process.
    pub nproc: usize,
    /// `/proc/cpuinfo` model name.
    pub cpu: String,
    /// `MemTotal`, MiB.
    pub mem_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Load averages at the start of the run.
    pub loadavg: String,
    /// `git describe` of the tree measured.
    pub commit: String,
    /// When the run started, UTC (`date -u`).
    pub date: String,
}

impl Machine {
    /// Read it now.
    pub fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = ["model name", "Model", "Hardware", "cpu model"]
            .iter()
            .find_map(|k| {
                cpuinfo.lines().find_map(|l| {
                    let (key, v) = l.split_once(':')?;
                    (key.trim() == *k).then(|| v.trim().to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let commit = stdout_of("git", &["describe", "--always", "--dirty"]);
        let date = stdout_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            mem_mib: mem_kib / 1024,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            loadavg: loadavg(),
            commit,
            date,
        }
    }

    /// The one-minute load average at the start, per CPU.
    pub fn load_per_cpu(&self) -> f64 {
        let one: f64 = self
            .loadavg
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        one / self.nproc.max(1) as f64
    }
}

/// The 1, 5 and 15 minute load averages now.
pub fn loadavg() -> String {
    let all = read_trim("/proc/loadavg");
    all.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// What `program args` prints, trimmed, or "unknown".
fn stdout_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn read_trim(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
