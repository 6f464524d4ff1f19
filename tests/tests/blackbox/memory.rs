//! How the gateway uses glibc's allocator (host/src/allocator.rs): after a burst of DMs
//! answered by the agent (many worker threads allocating), it holds at most one malloc arena
//! besides the main one, and returns the memory the burst freed once it has been quiet. An
//! idle gateway starts no thread it does not need: the file readers start with the first job.

use std::time::Duration;

use clawgate_tests::both;
use clawgate_tests::fake_model::FakeModel;
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::harness::{Options, Shell};
use serde_json::json;

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

/// How many threads of the process have a name starting with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .count()
}

/// The file reader threads (Control UI assets, `system.info`, config edits) start with their
/// first job: a gateway that has only taken a handshake and a `health` call has none, and
/// `system.info`, answered from `/proc` by them, starts them and is answered.
fn file_readers_start_with_the_first_job(shell: Shell) {
    let gw = Options::new().start(shell);
    let mut ws = gw.ws(gw.cli());
    ws.hello().expect("hello-ok");
    ws.call("health", None).expect("health");
    assert_eq!(
        threads_named(gw.pid(), "clawgate-files"),
        0,
        "{shell:?}: file readers running before any file work"
    );
    let info = ws
        .call("system.info", Some(json!({})))
        .expect("system.info");
    assert!(info["hostname"].is_string(), "{info}");
    // A thread names itself once it runs: the second may not have yet when the first answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while threads_named(gw.pid(), "clawgate-files") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{shell:?}: {} file reader(s) after system.info, 2 expected",
            threads_named(gw.pid(), "clawgate-files")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

both!(
    arenas_limited_and_memory_returned_after_a_burst,
    file_readers_start_with_the_first_job
);
