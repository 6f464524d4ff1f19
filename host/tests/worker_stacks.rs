//! What the threads that can be many at once leave behind once they have exited: glibc keeps
//! their stacks for later threads, and each must hold only its top pages
//! (`allocator::release_stack`), not the pages below the exit path that the thread's work and
//! glibc's own teardown leave resident. The threads: the loop's `clawgate-dns` lookups (one
//! per lookup). Its own test binary: no other test's threads have stacks of this size.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::HttpLimits;

/// Lookups at once, so as many threads run at once.
const AT_ONCE: usize = 8;
/// The size of a lookup thread's stack mapping.
const STACK_MAPPING_KIB: u64 = 512;
/// What one released stack may keep resident: its descriptor, TLS and first frames.
const KEPT_KIB: u64 = 12;
/// How long the test waits for each step.
const WAIT: Duration = Duration::from_secs(10);

/// The resident KiB of each anonymous mapping of `kib` KiB in this process.
fn resident_of_mappings(kib: u64) -> Vec<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut found = Vec::new();
    let mut size_matches = false;
    for line in smaps.lines() {
        if let Some((range, rest)) = line.split_once(' ')
            && let Some((from, to)) = range.split_once('-')
            && let (Ok(from), Ok(to)) = (u64::from_str_radix(from, 16), u64::from_str_radix(to, 16))
        {
            // An anonymous mapping names no file: six fields at most, the last the inode 0.
            let anonymous = rest.split_whitespace().count() == 4;
            size_matches = anonymous && (to - from) == kib * 1024;
        } else if size_matches && let Some(v) = line.strip_prefix("Rss:") {
            let v = v.trim().trim_end_matches("kB").trim();
            found.push(v.parse().expect("Rss in kB"));
        }
    }
    found
}

/// How many of this process's threads are named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

/// Wait until no thread is named `name` (the test's other threads are joined), then check every kept stack of the
/// threads' size: there is one at least, and each holds at most [`KEPT_KIB`]. (Not one per
/// thread: glibc may hand a new thread a larger stack an earlier test's thread left, up to
/// four times the size asked for.)
fn kept_stacks_hold_only_their_top(name: &str) {
    let deadline = Instant::now() + WAIT;
    while threads_named(name) > 0 {
        assert!(Instant::now() < deadline, "the threads did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let kept = resident_of_mappings(STACK_MAPPING_KIB);
    eprintln!(
        "KEPT {name} {kept:?} all512={:?}",
        resident_of_mappings(512)
    );
    assert!(!kept.is_empty(), "glibc keeps the threads' stacks");
    assert!(
        kept.iter().all(|&kib| kib <= KEPT_KIB),
        "resident KiB of each kept stack: {kept:?}"
    );
}

/// A server that takes `AT_ONCE` connections and closes each at once.
fn refuse_handshakes(listener: TcpListener) {
    for _ in 0..AT_ONCE {
        drop(listener.accept().expect("accept"));
    }
}

#[test]
fn ended_lookup_threads_keep_only_the_top_of_their_stacks() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || refuse_handshakes(listener));
    let (mut client, rx) = common::client(HttpLimits::default());
    for n in 0..AT_ONCE {
        let request = HttpRequest {
            method: "GET",
            // `https://`: the first lookup's thread also loads the TLS roots.
            url: format!("https://localhost:{port}/v1"),
            headers: Vec::new(),
            body: Vec::new(),
            idempotent: true,
            dialing: Default::default(),
        };
        client.submit(WorkId(n as u64), request);
    }
    let mut ended = 0;
    while ended < AT_ONCE {
        if let (_, WorkResult::HttpEnd(end)) = rx.recv_timeout(WAIT).expect("results in time") {
            let error = end.expect_err("the server closes in the handshake");
            assert!(error.message.contains("TLS"), "{error}");
            ended += 1;
        }
    }
    client.shutdown();
    server.join().expect("server");
    kept_stacks_hold_only_their_top("clawgate-dns");
}
