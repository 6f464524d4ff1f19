//! The WebSocket workers against a local echo server over real sockets: frames go both ways,
//! and a socket with nothing to do keeps its thread asleep (it waits on the socket and on the
//! loop's asks, not on a timer).

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult, WsOpen};
use clawgate_host::ws_worker::WsWorkers;
use clawgate_tests::threads::voluntary_switches;
use tungstenite::Message;

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);

/// A server that echoes each text frame of one connection until it closes.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(conn).unwrap();
        while let Ok(m) = ws.read() {
            if let Message::Text(t) = m
                && ws
                    .send(Message::text(format!("echo {}", t.as_str())))
                    .is_err()
            {
                return;
            }
        }
    });
    format!("ws://{addr}/socket")
}

#[test]
fn frames_go_both_ways_and_an_idle_socket_sleeps() {
    let (tx, rx) = mpsc::channel();
    let mut workers = WsWorkers::new(move |id, r| {
        let _ = tx.send((id, r));
    });
    let id = WorkId(7);
    let open = WsOpen {
        url: echo_server(),
        headers: Vec::new(),
        max_message: 1 << 20,
    };
    workers.open(id, open);
    let next = || rx.recv_timeout(WAIT).expect("a result in time");
    assert!(matches!(next(), (WorkId(7), WorkResult::WsOpened)));
    for n in 0..3 {
        workers.send(id, format!("frame {n}"));
        match next() {
            (WorkId(7), WorkResult::WsText(t)) => assert_eq!(t, format!("echo frame {n}")),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    // Idle: the thread waits for the socket or an ask, not for a poll interval (it woke
    // every 20 ms, 25 times in this window).
    let before = voluntary_switches("clawgate-ws");
    std::thread::sleep(Duration::from_millis(500));
    let woke = voluntary_switches("clawgate-ws") - before;
    assert!(
        woke <= 2,
        "an idle socket's thread woke {woke} times in 500 ms"
    );
    workers.close(id, 1000);
    match next() {
        (WorkId(7), WorkResult::WsClosed { .. }) => {}
        other => panic!("expected the close, got {other:?}"),
    }
}
