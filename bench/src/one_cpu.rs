//! The load generator's thread and a server's threads on one CPU while a latency is timed.
//!
//! On a machine with idle CPUs a round trip's cost depends on where the scheduler put the two
//! processes: on one CPU each hop is a context switch; on two, each hop wakes the other CPU,
//! which in a VM whose idle CPUs halt (`cpuidle-haltpoll` with `guest_halt_poll_ns` 0) costs
//! an exit to the hypervisor and an interrupt. Measured here (`clawgate-bench invoke` under
//! `taskset`, load about 7): the baseline's old stand-in (two canned round trips) read 23 µs
//! p50 with both processes on one CPU and 126 µs across two; clawgate's `node.invoke` 42 and
//! 155. Which of the two a run gets is the scheduler's choice, so timing both servers on one
//! CPU compares their work, not their luck.

use std::process::{Command, Stdio};

use crate::error::BenchError;

/// While alive, the calling thread and every thread of a process run on one CPU; dropped,
/// both get back the CPUs they had.
pub struct OneCpu {
    /// The calling thread's id and the CPUs it had.
    thread: (u32, String),
    /// The server's process id and the CPUs it had.
    server: (u32, String),
}

impl OneCpu {
    /// Put the calling thread and every thread of process `server` on the first CPU the
    /// calling thread may use.
    pub fn pin(server: u32) -> Result<Self, BenchError> {
        let tid = thread_id()?;
        let mine = allowed("/proc/thread-self/status")?;
        let theirs = allowed(&format!("/proc/{server}/status"))?;
        let cpu = first_cpu(&mine)
            .ok_or_else(|| BenchError::Protocol(format!("no CPU in the list {mine:?}")))?;
        let pinned = Self {
            thread: (tid, mine),
            server: (server, theirs),
        };
        taskset(false, tid, &cpu)?;
        taskset(true, server, &cpu)?;
        Ok(pinned)
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        let _ = taskset(false, self.thread.0, &self.thread.1);
        let _ = taskset(true, self.server.0, &self.server.1);
    }
}

/// The calling thread's id (`/proc/thread-self` is `PID/task/TID`).
fn thread_id() -> Result<u32, BenchError> {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .ok_or_else(|| BenchError::Protocol("no /proc/thread-self".into()))
}

/// The `Cpus_allowed_list` of a `/proc/…/status` file (`0-1`, `0,2-3`).
fn allowed(status: &str) -> Result<String, BenchError> {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| cpus_allowed_list(&s).map(String::from))
        .ok_or_else(|| BenchError::Protocol(format!("no Cpus_allowed_list in {status}")))
}

/// The `Cpus_allowed_list` value of the text of a `/proc/…/status` file.
fn cpus_allowed_list(status: &str) -> Option<&str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim)
}

/// The first CPU of a CPU list (`0-1` → `0`, `3,5` → `3`).
fn first_cpu(list: &str) -> Option<String> {
    let first = list.split([',', '-']).next()?.trim();
    first.parse::<u32>().ok().map(|n| n.to_string())
}

/// `taskset -p -c LIST ID` (with `-a`: every thread of process `id`).
fn taskset(all: bool, id: u32, list: &str) -> Result<(), BenchError> {
    let mut c = Command::new("taskset");
    if all {
        c.arg("-a");
    }
    let ok = c
        .args(["-p", "-c", list])
        .arg(id.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(BenchError::Protocol(format!(
            "taskset -p -c {list} {id} failed (util-linux's taskset is needed)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowed_list_and_its_first_cpu() {
        let status = "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t2-3,6\nMems_allowed:\t1\n";
        assert_eq!(cpus_allowed_list(status), Some("2-3,6"));
        assert_eq!(first_cpu("2-3,6").as_deref(), Some("2"));
        assert_eq!(first_cpu("5").as_deref(), Some("5"));
        assert_eq!(first_cpu("x"), None);
        assert_eq!(cpus_allowed_list("Name:\tx\n"), None);
    }
}
