//! A `wss://` socket of the loop's WebSockets against a local TLS server (its certificate from a
//! test CA, trusted through `SSL_CERT_FILE`): a message that arrived with the upgrade's answer
//! and waits decrypted in rustls's buffer is reported although the socket never becomes
//! readable again, frames go both ways, and an idle socket keeps the loop asleep.
//!
//! One test in this binary: it sets `SSL_CERT_FILE` before any thread could read the
//! environment or load the CA roots (once per process).

mod common;
mod ws_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult};
use clawgate_tests::fake_tls::TestCa;
use clawgate_tests::threads::voluntary_switches;
use common::LOOP_THREAD;
use rustls::{ServerConnection, StreamOwned};
use tungstenite::WebSocket;
use tungstenite::protocol::Role;
use ws_common::{WAIT, echo_until_closed, opened};

/// The first message, sent in the same TLS record as the upgrade's answer: larger than what
/// tungstenite reads of the answer at once (4 KiB), smaller than a record (16 KiB), so the rest
/// of it is left decrypted in rustls's buffer with nothing more on the socket.
const HELLO_BYTES: usize = 10 * 1024;

/// A TLS server for one WebSocket: it answers the upgrade and sends a hello in one record,
/// then echoes each text frame until the socket closes.
fn server(ca: &TestCa) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ca.server.clone();
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), conn);
        let key = read_upgrade_key(&mut tls);
        let mut first = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            tungstenite::handshake::derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        // An unmasked text frame (FIN, text; 16-bit length).
        first.extend_from_slice(&[0x81, 126]);
        first.extend_from_slice(&u16::try_from(HELLO_BYTES).unwrap().to_be_bytes());
        first.extend_from_slice(&hello());
        tls.write_all(&first).unwrap();
        tls.flush().unwrap();
        echo_until_closed(&mut WebSocket::from_raw_socket(tls, Role::Server, None));
    });
    format!("wss://{addr}/socket")
}

fn hello() -> Vec<u8> {
    b"hello ".repeat(HELLO_BYTES / 6 + 1)[..HELLO_BYTES].to_vec()
}

/// Read the upgrade request's head; its `Sec-WebSocket-Key`.
fn read_upgrade_key(tls: &mut StreamOwned<ServerConnection, TcpStream>) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head)
        .unwrap()
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("a Sec-WebSocket-Key")
}

#[test]
fn a_wss_socket_reads_what_rustls_holds_echoes_and_sleeps_when_idle() {
    let ca = TestCa::new("ws loop test CA");
    // SAFETY: the only test of this binary, before it starts a thread or loads the CA roots.
    unsafe { std::env::set_var("SSL_CERT_FILE", ca.ca_path()) };
    let url = server(&ca);
    let id = WorkId(3);
    let (mut on_loop, rx) = opened(id, url);
    let next = || rx.recv_timeout(WAIT).expect("a result in time");
    // Nothing more comes on the socket until the loop sends: the hello is read from what
    // the upgrade left behind, not after a wait for the socket.
    match next() {
        (WorkId(3), WorkResult::WsText(t)) => assert!(t.as_bytes() == hello(), "{}", t.len()),
        other => panic!("expected the hello, got {other:?}"),
    }
    for n in 0..3 {
        on_loop.ws_send(id, format!("frame {n}"));
        match next() {
            (WorkId(3), WorkResult::WsText(t)) => assert_eq!(t, format!("echo frame {n}")),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    let before = voluntary_switches(LOOP_THREAD);
    thread::sleep(Duration::from_millis(500));
    let woke = voluntary_switches(LOOP_THREAD) - before;
    assert!(
        woke <= 2,
        "the loop of an idle wss:// socket woke {woke} times in 500 ms"
    );
    on_loop.ws_close(id, 1000);
    match next() {
        (WorkId(3), WorkResult::WsClosed { .. }) => {}
        other => panic!("expected the close, got {other:?}"),
    }
}
