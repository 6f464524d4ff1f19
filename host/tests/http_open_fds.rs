//! The descriptors and poller registrations a connection race and an ended WebSocket leave
//! behind: none. A test process of its own, its tests one at a time, so no other test opens
//! or closes descriptors while one counts them.

mod common;
mod ws_common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::HttpLimits;
use common::{BlackHole, client, client_with_lookup, open_fds, watched};
use ws_common::{WAIT, echo_until_closed, open_to};

/// Held by each test: the descriptors counted are its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_race_won_past_three_black_holes_leaves_no_descriptor() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
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

#[test]
fn an_ended_socket_leaves_no_descriptor_and_no_registration() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    let (mut on_loop, rx) = client(HttpLimits::default());
    let (before, watched_before) = (open_fds(), watched());
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        echo_until_closed(&mut tungstenite::accept(conn).unwrap());
        // The listener outlives the count, as it was there for the first.
        listener
    });
    let id = WorkId(17);
    on_loop.ws_open(id, open_to(url, 1 << 20));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (id, WorkResult::WsOpened));
    on_loop.ws_close(id, 1000);
    match rx.recv_timeout(WAIT) {
        Ok((got, WorkResult::WsClosed { .. })) if got == id => {}
        other => panic!("expected the close, got {other:?}"),
    }
    let _listener = server.join().unwrap();
    assert_eq!(open_fds(), before, "the socket closed");
    assert_eq!(watched(), watched_before, "the socket out of the poller");
}
