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
        let commit = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            mem_mib: mem_kib / 1024,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            loadavg: read_trim("/proc/loadavg"),
            commit,
        }
    }
}

fn read_trim(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
