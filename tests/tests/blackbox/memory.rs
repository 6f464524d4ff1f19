//! How the gateway uses glibc's allocator (host/src/allocator.rs): after a burst of DMs
//! answered by the agent (many worker threads allocating), it holds at most one malloc arena
//! besides the main one, and returns the memory the burst freed once it has been quiet.

use std::time::Duration;

use clawgate_tests::both;
use clawgate_tests::fake_model::FakeModel;
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::harness::{Options, Shell};

use crate::idle::{BOT_TOKEN, with_telegram_dms};

/// DMs in the burst, each from its own chat: with the model requests, the replies and the
/// store writes they make well over the host's burst of 64 work items.
const DMS: usize = 24;
/// What the host logs (at debug) when it returns freed memory.
const TRIMMED: &str = "memory: returned freed pages to the system";
/// How long the host may take to trim after its start-up or a burst: its quiet second and
/// room for a loaded machine.
const TRIM_WITHIN: Duration = Duration::from_secs(10);
/// glibc's thread arenas are 64 MiB-aligned mappings (HEAP_MAX_SIZE on 64-bit systems).
const ARENA_ALIGN: u64 = 64 << 20;

/// The start addresses of the process's 64 MiB-aligned anonymous read-write mappings: its
/// malloc arenas besides the main one (which grows the program break instead).
fn thread_arenas(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .filter(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let path = f.nth(3);
            let start = range.split('-').next().unwrap_or("");
            perms == "rw-p"
                && path.is_none()
                && u64::from_str_radix(start, 16).is_ok_and(|a| a % ARENA_ALIGN == 0)
        })
        .map(str::to_string)
        .collect()
}

fn arenas_limited_and_memory_returned_after_a_burst(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw =
        with_telegram_dms(Options::new().arg("--log-level").arg("debug"), &model, &tg).start(shell);
    tg.wait_calls("getUpdates", 1);
    // Start-up is a burst of its own (migrations, loads): its trim comes first.
    assert!(
        gw.wait_for_log(TRIMMED, TRIM_WITHIN),
        "{shell:?}: no memory returned after start-up"
    );
    let before = gw.stderr().matches(TRIMMED).count();
    for i in 0..DMS {
        tg.push_dm(300 + i as i64, "Ann", &format!("hello {i}"));
    }
    tg.wait_calls_for("sendMessage", DMS, Duration::from_secs(30));
    let arenas = thread_arenas(gw.pid());
    assert!(
        arenas.len() < 2,
        "{shell:?}: {} thread arenas after the burst (at most 1):\n{}",
        arenas.len(),
        arenas.join("\n")
    );
    let deadline = std::time::Instant::now() + TRIM_WITHIN;
    while gw.stderr().matches(TRIMMED).count() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "{shell:?}: no memory returned within 10 s of the burst"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

both!(arenas_limited_and_memory_returned_after_a_burst);
