//! This process's threads as the kernel counts them, for tests that a thread sleeps while it has
//! nothing to do: a thread that waits on a timer wakes whatever the machine's load, one asleep
//! until there is work does not.

use std::collections::BTreeMap;

/// The longest thread name the kernel keeps (`TASK_COMM_LEN` less the final NUL); it cuts
/// longer ones.
const COMM_BYTES: usize = 15;

/// The voluntary context switches so far (times it slept, so wake-ups) of this process's one
/// thread named `name` (its first [`COMM_BYTES`] bytes); panics unless exactly one thread has
/// that name.
pub fn voluntary_switches(name: &str) -> u64 {
    let name = name.get(..COMM_BYTES).unwrap_or(name);
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("list this process's threads") {
        let dir = task.expect("a thread").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("a thread's status");
        let count = counted(&status, Switches::Voluntary)
            .expect("voluntary_ctxt_switches in a thread's status");
        found.push(count);
    }
    assert_eq!(found.len(), 1, "one thread named {name}: {found:?}");
    found[0]
}

/// Which of a thread's context switches to count.
#[derive(Clone, Copy, Debug)]
pub enum Switches {
    /// Voluntary only: the times it slept, so its wake-ups (a busy machine's preemptions
    /// are not counted).
    Voluntary,
    /// Voluntary and involuntary.
    All,
}

/// `which` context switches in a thread's `/proc/.../status` text.
fn counted(status: &str, which: Switches) -> Option<u64> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    let voluntary = field("voluntary_ctxt_switches:")?;
    match which {
        Switches::Voluntary => Some(voluntary),
        Switches::All => Some(voluntary + field("nonvoluntary_ctxt_switches:")?),
    }
}

/// Every thread of process `pid`, by thread id: its name and its `which` context switches so
/// far (empty once the process is gone).
pub fn of_process(pid: u32, which: Switches) -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let count = counted(&status, which).unwrap_or(0);
        let tid = task.file_name().to_string_lossy().into_owned();
        out.insert(tid, (name.trim().to_string(), count));
    }
    out
}
