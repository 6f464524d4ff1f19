//! The descriptors and poller registrations a connection race leaves behind: none. A test
//! process of its own, so no other test opens or closes descriptors while it counts them.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::HttpLimits;
use common::{BlackHole, client_with_lookup};

/// The descriptors this process holds.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The sockets registered with this process's pollers (`tfd:` lines of its epoll
/// descriptors).
fn watched() -> usize {
    let entries = std::fs::read_dir("/proc/self/fdinfo").unwrap();
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|info| info.lines().filter(|l| l.starts_with("tfd:")).count())
        .sum()
}

#[test]
fn a_race_won_past_three_black_holes_leaves_no_descriptor() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let holes = [2, 3, 4].map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)));
    let _holes = holes.map(|ip| BlackHole::at(SocketAddr::new(ip, port)));
    let mut ips = holes.to_vec();
    ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let lookup = Arc::new(move |_: &str| Ok(ips.clone()));
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    let (before, watched_before) = (open_fds(), watched());
    let answer = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let mut request = [0u8; 512];
        let _ = conn.read(&mut request).unwrap();
        // Closed after the answer: the client keeps no connection either.
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        // The listener outlives the count, as it was there for the first.
        server
    });
    pool.submit(
        WorkId(1),
        HttpRequest {
            method: "GET",
            url: format!("http://race.test:{port}/"),
            headers: Vec::new(),
            body: Vec::new(),
            idempotent: true,
            dialing: Default::default(),
        },
    );
    loop {
        let (_, result) = rx.recv_timeout(Duration::from_secs(10)).expect("an end");
        if let WorkResult::HttpEnd(end) = result {
            assert_eq!(end, Ok(()));
            break;
        }
    }
    let _server = answer.join().unwrap();
    assert_eq!(pool.idle_connections(), 0);
    assert_eq!(open_fds(), before, "every attempt's socket closed");
    assert_eq!(watched(), watched_before, "every socket out of the pollers");
}
