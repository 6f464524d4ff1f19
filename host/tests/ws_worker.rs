//! The WebSocket workers against local servers over real sockets: frames go both ways, a
//! socket with nothing to do keeps its thread asleep (it waits on the socket and on the loop's
//! asks, not on a timer), and a close reaches a peer that is slow to read. `wss://` is in
//! `ws_worker_tls.rs`.

mod ws_common;

use std::net::TcpListener;
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult};
use clawgate_tests::threads::voluntary_switches;
use tungstenite::Message;
use ws_common::{WAIT, echo_until_closed, opened};

/// Held by each test: one socket thread at a time, so that the idle test counts its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A server that echoes each text frame of one connection until it closes.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        echo_until_closed(&mut tungstenite::accept(conn).unwrap());
    });
    format!("ws://{addr}/socket")
}

#[test]
fn frames_go_both_ways_and_an_idle_socket_sleeps() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let id = WorkId(7);
    let (mut workers, rx) = opened(id, echo_server());
    let next = || rx.recv_timeout(WAIT).expect("a result in time");
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

/// The length of each frame queued before the close.
const QUEUED_BYTES: usize = 256 * 1024;

/// How many frames to queue before the close: twice what the kernel may buffer on the sending
/// side (the largest send buffer TCP grows to), the peer's receive buffer being shrunk to 4 KiB.
fn queued_frames() -> usize {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    let max: usize = wmem.split_whitespace().nth(2).unwrap().parse().unwrap();
    2 * max / QUEUED_BYTES + 1
}

#[test]
fn the_close_frame_reaches_a_peer_that_reads_only_after_the_close() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(&listener, 4096).unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    let (read_now, may_read) = mpsc::channel::<()>();
    // What the peer read once allowed to: the text frames, then the close frame's code.
    let peer = thread::spawn(move || -> Result<(usize, Option<u16>), String> {
        let (conn, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(conn).unwrap();
        may_read.recv().unwrap();
        let mut texts = 0;
        loop {
            match ws.read() {
                Ok(Message::Text(t)) if t.len() == QUEUED_BYTES => texts += 1,
                Ok(Message::Close(frame)) => return Ok((texts, frame.map(|f| u16::from(f.code)))),
                Ok(other) => return Err(format!("unexpected {other:?} after {texts} texts")),
                Err(e) => return Err(format!("no close frame after {texts} texts: {e}")),
            }
        }
    });
    let id = WorkId(9);
    let (mut workers, rx) = opened(id, url);
    let frames = queued_frames();
    for n in 0..frames {
        let digit = char::from(b'0' + (n % 10) as u8);
        workers.send(id, digit.to_string().repeat(QUEUED_BYTES));
    }
    workers.close(id, 4000);
    // The peer reads nothing yet: the thread waits for room for the rest and its close frame
    // (it used to end here, dropping what the socket had not taken).
    let early = rx.recv_timeout(Duration::from_millis(500));
    assert!(
        early.is_err(),
        "the socket ended before its frames could leave: {early:?}"
    );
    read_now.send(()).unwrap();
    let read = peer.join().unwrap();
    assert_eq!(read, Ok((frames, Some(4000))));
    match rx.recv_timeout(WAIT) {
        Ok((WorkId(9), WorkResult::WsClosed { .. })) => {}
        other => panic!("expected the close, got {other:?}"),
    }
}
