//! The loop's WebSockets against local servers over real sockets: frames go both ways, a
//! socket with nothing to do keeps the loop asleep (no deadline, readability only), a close
//! reaches a peer that is slow to read, a frame the socket takes in part is finished when it
//! is writable, a text sent before the upgrade is done goes once it is, a peer that closes
//! mid-frame and a message over the bound each end the socket with one `WsClosed`, as do a
//! close before the upgrade is answered and an upgrade never answered. `wss://` is in
//! `ws_loop_tls.rs`; what an ended socket leaves behind in `http_open_fds.rs`.

mod common;
mod ws_common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::HttpLimits;
use clawgate_tests::threads::voluntary_switches;
use common::LOOP_THREAD;
use tungstenite::Message;
use ws_common::{WAIT, echo_until_closed, open_to, opened, opening, opening_with};

/// Held by each test: one loop at a time, so that the idle test counts its own thread.
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
    let (mut on_loop, rx) = opened(id, echo_server());
    let next = || rx.recv_timeout(WAIT).expect("a result in time");
    for n in 0..3 {
        on_loop.ws_send(id, format!("frame {n}"));
        match next() {
            (WorkId(7), WorkResult::WsText(t)) => assert_eq!(t, format!("echo frame {n}")),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    // Idle: the loop waits for the socket or an order, not for a deadline (a worker thread
    // that woke every 20 ms woke 25 times in this window).
    let before = voluntary_switches(LOOP_THREAD);
    std::thread::sleep(Duration::from_millis(500));
    let woke = voluntary_switches(LOOP_THREAD) - before;
    assert!(
        woke <= 2,
        "the loop of an idle socket woke {woke} times in 500 ms"
    );
    on_loop.ws_close(id, 1000);
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
    let (mut on_loop, rx) = opened(id, url);
    let frames = queued_frames();
    for n in 0..frames {
        let digit = char::from(b'0' + (n % 10) as u8);
        on_loop.ws_send(id, digit.to_string().repeat(QUEUED_BYTES));
    }
    on_loop.ws_close(id, 4000);
    // The peer reads nothing yet: the socket waits for room for the rest and its close frame
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

/// The largest send buffer TCP grows to (the third of `tcp_wmem`).
fn send_buffer_max() -> usize {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    wmem.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_frame_the_socket_takes_in_part_is_finished_once_it_is_writable() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(&listener, 4096).unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    // More than the kernel buffers on both sides: most of it waits in the loop.
    let big = 2 * send_buffer_max() + 1;
    let (read_now, may_read) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(conn).unwrap();
        may_read.recv().unwrap();
        while let Ok(m) = ws.read() {
            if let Message::Text(t) = m {
                let _ = ws.send(Message::text(format!("got {}", t.len())));
            }
        }
    });
    let id = WorkId(11);
    let (mut on_loop, rx) = opened(id, url);
    on_loop.ws_send(id, "x".repeat(big));
    on_loop.ws_send(id, "after");
    // The peer reads only once the socket is full: the rest leaves when it is writable.
    thread::sleep(Duration::from_millis(200));
    read_now.send(()).unwrap();
    for expected in [format!("got {big}"), "got 5".to_owned()] {
        match rx.recv_timeout(WAIT) {
            Ok((WorkId(11), WorkResult::WsText(t))) => assert_eq!(t, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    on_loop.ws_close(id, 1000);
}

#[test]
fn a_text_sent_before_the_upgrade_is_done_goes_once_it_is() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        // The upgrade's answer comes late: the text is sent meanwhile.
        thread::sleep(Duration::from_millis(300));
        echo_until_closed(&mut tungstenite::accept(conn).unwrap());
    });
    let id = WorkId(12);
    let (mut on_loop, rx) = opening(id, open_to(url, 1 << 20));
    on_loop.ws_send(id, "early");
    let next = || rx.recv_timeout(WAIT).expect("a result in time");
    assert_eq!(next(), (id, WorkResult::WsOpened));
    assert_eq!(next(), (id, WorkResult::WsText("echo early".into())));
    on_loop.ws_close(id, 1000);
}

/// A server that upgrades one connection, then writes `bytes` raw and closes it.
fn write_raw_then_close(listener: TcpListener, bytes: Vec<u8>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(conn).unwrap();
        ws.get_mut().write_all(&bytes).unwrap();
    })
}

/// Expect exactly one `WsClosed` for `id`, without a peer's code, whose reason says `why`.
fn closed_once(rx: &mpsc::Receiver<(WorkId, WorkResult)>, id: WorkId, why: &str) {
    match rx.recv_timeout(WAIT) {
        Ok((got, WorkResult::WsClosed { code: None, reason })) if got == id => {
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("expected the socket's end, got {other:?}"),
    }
    let after = rx.recv_timeout(Duration::from_millis(300));
    assert!(after.is_err(), "more after the end: {after:?}");
}

#[test]
fn a_peer_that_closes_mid_frame_ends_the_socket_once() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    // A text frame of 4096 bytes (16-bit length), cut after 100 of them.
    let mut cut = vec![0x81, 126, 0x10, 0x00];
    cut.extend_from_slice(&[b'a'; 100]);
    let server = write_raw_then_close(listener, cut);
    let id = WorkId(13);
    let (_on_loop, rx) = opened(id, url);
    server.join().unwrap();
    closed_once(&rx, id, "without closing handshake");
}

#[test]
fn a_message_over_the_bound_closes_the_socket() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    let (closed_tx, closed) = mpsc::channel();
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(conn).unwrap();
        ws.send(Message::text("y".repeat(2048))).unwrap();
        // The socket is dropped: reading ends.
        let _ = closed_tx.send(ws.read().err().map(|e| e.to_string()));
    });
    let id = WorkId(14);
    let (_on_loop, rx) = opening(id, open_to(url, 1024));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (id, WorkResult::WsOpened));
    closed_once(&rx, id, "too long");
    let ended = closed.recv_timeout(WAIT).expect("the peer's read ends");
    assert!(
        ended.is_some(),
        "the peer read a message instead of the end"
    );
}

/// A server that accepts one connection and never answers its upgrade; it ends when the
/// client closes it.
fn silent_server(listener: TcpListener) {
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = std::io::copy(&mut conn, &mut std::io::sink());
    });
}

#[test]
fn a_close_before_the_upgrade_is_answered_ends_the_socket_at_once() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    silent_server(listener);
    let id = WorkId(15);
    let (mut on_loop, rx) = opening(id, open_to(url, 1 << 20));
    thread::sleep(Duration::from_millis(100));
    on_loop.ws_close(id, 1000);
    closed_once(&rx, id, "closed by the gateway");
}

#[test]
fn an_upgrade_never_answered_ends_at_the_idle_timeout() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/socket", listener.local_addr().unwrap());
    silent_server(listener);
    let limits = HttpLimits {
        idle_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let id = WorkId(16);
    let started = std::time::Instant::now();
    let (_on_loop, rx) = opening_with(limits, id, open_to(url, 1 << 20));
    closed_once(&rx, id, "no answer within 0.3 s (idle timeout)");
    assert!(started.elapsed() >= Duration::from_millis(300));
}
