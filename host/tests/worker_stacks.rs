//! What a burst of HTTP requests leaves behind once its worker threads have exited: glibc
//! keeps their stacks for later threads, and each must hold only its top pages
//! (`allocator::release_stack`), not the 16 KiB below the exit path that glibc's own teardown
//! leaves resident. Its own test binary: no other test's threads have stacks of this size.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_worker::{HttpLimits, HttpWorkers};

/// Requests at once, so as many worker threads run at once.
const REQUESTS: usize = 8;
/// The size of a worker thread's stack mapping (`http_worker`'s worker stack).
const STACK_MAPPING_KIB: u64 = 512;
/// What one released stack may keep resident: its descriptor, TLS and first frames.
const KEPT_KIB: u64 = 12;
/// How long the test waits for each step.
const WAIT: Duration = Duration::from_secs(10);

/// A server that answers no request until `REQUESTS` connections are open, so each request
/// holds a worker thread of its own.
fn serve_together(listener: TcpListener) {
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < REQUESTS {
        let (mut s, _) = listener.accept().expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).expect("read the request");
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        held.push(s);
    }
    for mut s in held {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .expect("answer");
    }
}

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

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("tasks").count()
}

#[test]
fn exited_workers_keep_only_the_top_of_their_stacks() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let before = threads();
    let server = std::thread::spawn(move || serve_together(listener));
    let (tx, rx) = mpsc::channel();
    let limits = HttpLimits {
        max_concurrent: REQUESTS,
        idle_exit: Duration::from_millis(50),
        ..HttpLimits::default()
    };
    let mut pool = HttpWorkers::new(limits, move |id, batch: Vec<WorkResult>| {
        for r in batch {
            let _ = tx.send((id, r));
        }
    });
    for n in 0..REQUESTS {
        let request = HttpRequest {
            method: "GET",
            url: url.clone(),
            headers: Vec::new(),
            body: Vec::new(),
            idempotent: true,
        };
        pool.submit(WorkId(n as u64), request).expect("submit");
    }
    let mut ended = 0;
    while ended < REQUESTS {
        let (_, r) = rx.recv_timeout(WAIT).expect("results in time");
        if let WorkResult::HttpEnd(end) = r {
            end.expect("the request went through");
            ended += 1;
        }
    }
    server.join().expect("server");
    let deadline = Instant::now() + WAIT;
    while threads() > before {
        assert!(Instant::now() < deadline, "the workers did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stacks = resident_of_mappings(STACK_MAPPING_KIB);
    assert!(
        stacks.len() >= REQUESTS,
        "glibc keeps the {REQUESTS} stacks: found {stacks:?}"
    );
    assert!(
        stacks.iter().all(|&kib| kib <= KEPT_KIB),
        "resident KiB of each kept stack: {stacks:?}"
    );
}
