//! The blocking embedding example (`examples/blocking_server.rs`) serves real sockets: a
//! client completes the handshake and a call, the next client is served after it, and a
//! silent socket is closed at the core's deadline.

#[allow(dead_code)] // The example's `main` is not used here.
#[path = "../examples/blocking_server.rs"]
mod example;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawgate_core::Config;
use clawgate_core::client::{Client, ClientConfig, Event};

/// Serve `sockets` connections one after another on a loopback port, in a thread.
fn spawn_server(config: Config, sockets: usize) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut gw = example::new_gateway(config).unwrap();
        for stream in listener.incoming().take(sockets) {
            let _ = example::serve_one(&mut gw, stream.unwrap());
        }
    });
    (port, handle)
}

/// Drive `client` over `stream` until `done` picks an event, or fail after 10 s.
fn until<T>(
    stream: &mut TcpStream,
    client: &mut Client,
    mut done: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 65536];
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while Instant::now() < deadline {
        while let Some(bytes) = client.poll_transmit() {
            stream.write_all(&bytes).unwrap();
        }
        while let Some(e) = client.poll_event() {
            if let Some(t) = done(&e) {
                return t;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => client.handle_eof(),
            Ok(n) => client.handle_input(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    panic!("no expected event within 10 s");
}

fn session(port: u16) -> (TcpStream, Client) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (
        stream,
        Client::new(ClientConfig::cli(&format!("127.0.0.1:{port}")), [9; 16]),
    )
}

#[test]
fn serves_handshake_and_calls_one_connection_after_another() {
    let (port, server) = spawn_server(Config::local_default(), 2);
    for _ in 0..2 {
        let (mut stream, mut client) = session(port);
        let hello = until(&mut stream, &mut client, |e| match e {
            Event::Hello(v) => Some(v.clone()),
            _ => None,
        });
        assert_eq!(hello["type"], "hello-ok");
        let rid = client.request("health", None);
        let health = until(&mut stream, &mut client, |e| match e {
            Event::Response { id, result } if *id == rid => Some(result.clone()),
            _ => None,
        });
        assert!(health.is_ok(), "{health:?}");
        client.close(1000, "");
        until(&mut stream, &mut client, |e| {
            matches!(e, Event::Closed { .. }).then_some(())
        });
    }
    server.join().unwrap();
}

#[test]
fn closes_a_silent_socket_at_the_handshake_deadline() {
    let mut config = Config::local_default();
    config.limits.handshake_timeout = Duration::from_millis(200);
    let (port, server) = spawn_server(config, 1);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    // A client that upgrades and then says nothing: the raw socket, not the client machine.
    stream.write_all(upgrade.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    // 101, the challenge, then a close frame (0x88) with code 1000 and no reason, then EOF.
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        got.ends_with(&[0x88, 0x02, 0x03, 0xe8]),
        "{:02x?}",
        &got[got.len().saturating_sub(8)..]
    );
    server.join().unwrap();
}
