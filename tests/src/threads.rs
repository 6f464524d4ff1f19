//! This process's threads as the kernel counts them, for tests that a thread sleeps while it has
//! nothing to do: a thread that waits on a timer wakes whatever the machine's load, one asleep
//! until there is work does not.

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
        let count = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("voluntary_ctxt_switches in a thread's status");
        found.push(count);
    }
    assert_eq!(found.len(), 1, "one thread named {name}: {found:?}");
    found[0]
}
