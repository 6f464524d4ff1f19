//! What the host reads about the machine for the core's
//! [`Work::DescribeMachine`](clawgate_core::Work::DescribeMachine) (`system.info`): host name,
//! kernel release, CPUs, load and memory, from Linux's `/proc`, read on a file worker thread
//! like any other file. Elsewhere, or when a file is missing, the fields stay empty.

use std::fs;

use clawgate_core::MachineInfo;

/// Describe this machine and process.
pub fn describe() -> MachineInfo {
    let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    MachineInfo {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        release: read("/proc/sys/kernel/osrelease").trim().to_string(),
        pid: std::process::id(),
        cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        cpu_model: cpu_model(&cpuinfo),
        load_milli: load_milli(&read("/proc/loadavg")),
        memory_total_bytes: meminfo_kib(&meminfo, "MemTotal").saturating_mul(1024),
        memory_free_bytes: meminfo_kib(&meminfo, "MemAvailable").saturating_mul(1024),
    }
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The three load averages of `/proc/loadavg`, in thousandths.
fn load_milli(loadavg: &str) -> Option<[u64; 3]> {
    let mut fields = loadavg.split_whitespace().map(|f| {
        let (int, frac) = f.split_once('.').unwrap_or((f, "0"));
        let frac: String = frac.chars().chain("000".chars()).take(3).collect();
        Some(int.parse::<u64>().ok()? * 1000 + frac.parse::<u64>().ok()?)
    });
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// A `/proc/meminfo` value in KiB (0 when absent).
fn meminfo_kib(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            load_milli("0.52 1.5 12.03 2/345 6789\n"),
            Some([520, 1500, 12030])
        );
        assert_eq!(load_milli("garbage"), None);
        let mem = "MemTotal:       16318684 kB\nMemFree:  1 kB\nMemAvailable:   9876543 kB\n";
        assert_eq!(meminfo_kib(mem, "MemTotal"), 16_318_684);
        assert_eq!(meminfo_kib(mem, "MemAvailable"), 9_876_543);
        assert_eq!(meminfo_kib(mem, "Nope"), 0);
        let cpu = "processor\t: 0\nmodel name\t: AMD EPYC\n";
        assert_eq!(cpu_model(cpu).as_deref(), Some("AMD EPYC"));
    }

    #[test]
    fn this_machine_is_described() {
        let m = describe();
        assert!(m.cpu_count >= 1 && m.pid == std::process::id());
    }
}
