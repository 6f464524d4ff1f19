//! Connection reuse by the HTTP client on the loop against a scripted local server that
//! counts the connections it accepts: sequential requests share one connection; a `Connection: close`
//! answer, a close-delimited body, a truncated body, a cancel, an expired or hinted lifetime
//! each lead to a new one; a connection the server closed while idle is not used; a reused
//! connection that dies after the request was written is retried only for an idempotent
//! request; the pool's bounds hold and shutting down closes what it kept; an answer
//! a Nagle-ing server writes in two pieces is not held up by a delayed ACK.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::{CANCELLED, HttpLimits};
use clawgate_host::http_pool::KeepAlive;
use common::{OnLoop, client};

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);

/// What the server does with the `nth` request (from 0) on its `conn`-th connection (from 0).
#[derive(Clone)]
enum Act {
    /// Write these bytes and wait for the next request.
    Reply(&'static str),
    /// Write the head, then the body in a second write (Nagle's algorithm on, as a server
    /// that does not set `TCP_NODELAY`), and wait for the next request.
    ReplySplit(&'static str, &'static str),
    /// Write these bytes and close the connection.
    ReplyClose(&'static str),
    /// Write these bytes; close the connection if no request comes within the duration.
    ReplyIdleClose(&'static str, Duration),
    /// Write a head and part of the body, then nothing for seconds.
    Stall,
    /// Reset the connection (RST) without answering.
    Reset,
}

/// A `200` with a 2-byte body and `Content-Length`.
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

type Script = dyn Fn(usize, usize) -> Act + Send + Sync;

/// The scripted server: connections accepted and closed, and every request line with the
/// connection it came on.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
}

impl Server {
    fn start(script: impl Fn(usize, usize) -> Act + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            closed: Arc::default(),
            seen: Arc::default(),
        };
        let (accepted, closed, seen) = (
            server.accepted.clone(),
            server.closed.clone(),
            server.seen.clone(),
        );
        let script: Arc<Script> = Arc::new(script);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let n = accepted.fetch_add(1, Ordering::SeqCst);
                let (closed, seen, script) = (closed.clone(), seen.clone(), script.clone());
                thread::spawn(move || {
                    serve(conn, n, &seen, &*script);
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<(usize, String)> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serve the `conn`-th connection until the script or the client ends it.
fn serve(conn: TcpStream, n: usize, seen: &Mutex<Vec<(usize, String)>>, script: &Script) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    for nth in 0.. {
        let Some(line) = read_request(&mut reader) else {
            return;
        };
        seen.lock().unwrap().push((n, line));
        match script(n, nth) {
            Act::Reply(bytes) => {
                let _ = conn.write_all(bytes.as_bytes());
            }
            Act::ReplySplit(head, body) => {
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body.as_bytes());
            }
            Act::ReplyClose(bytes) => {
                let _ = conn.write_all(bytes.as_bytes());
                return;
            }
            Act::ReplyIdleClose(bytes, idle) => {
                let _ = conn.write_all(bytes.as_bytes());
                let _ = conn.set_read_timeout(Some(idle));
            }
            Act::Stall => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
                thread::sleep(Duration::from_secs(3));
                return;
            }
            Act::Reset => {
                let _ = rustix::net::sockopt::set_socket_linger(&conn, Some(Duration::ZERO));
                return;
            }
        }
    }
}

/// The request line of the next request (its headers and `Content-Length` body read), or
/// `None` at EOF or a timeout.
fn read_request(reader: &mut impl BufRead) -> Option<String> {
    let mut first = String::new();
    reader.read_line(&mut first).ok().filter(|&n| n > 0)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(first.trim().to_owned())
}

fn post(url: String) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: b"{}".to_vec(),
        idempotent: false,
        dialing: Default::default(),
    }
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: "GET",
        body: Vec::new(),
        idempotent: true,
        ..post(url)
    }
}

/// The end of `id`, skipping its head and body.
fn end_of(rx: &mpsc::Receiver<(WorkId, WorkResult)>, id: WorkId) -> Result<(), String> {
    loop {
        match rx.recv_timeout(WAIT).expect("a result in time") {
            (got, WorkResult::HttpEnd(end)) if got == id => return end.map_err(|e| e.message),
            (got, _) if got == id => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Send `req` as `id` and wait for its end.
fn request(
    pool: &mut OnLoop,
    rx: &mpsc::Receiver<(WorkId, WorkResult)>,
    id: u64,
    req: HttpRequest,
) -> Result<(), String> {
    pool.submit(WorkId(id), req);
    end_of(rx, WorkId(id))
}

#[test]
fn sequential_requests_to_one_origin_share_one_connection() {
    let server = Server::start(|_, _| Act::Reply(OK));
    let (mut pool, rx) = client(HttpLimits::default());
    for id in 0..5 {
        assert_eq!(request(&mut pool, &rx, id, post(server.url("/a"))), Ok(()));
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(server.seen().len(), 5);
    assert_eq!(pool.idle_connections(), 1);
    pool.shutdown();
    assert_eq!(pool.idle_connections(), 0);
}

#[test]
fn an_answer_written_in_two_pieces_on_a_reused_connection_ends_without_a_delayed_ack() {
    // The body leaves once the head is acknowledged: a client that delays that ACK (40 ms at
    // least on Linux) makes every answer on a reused connection that much late.
    let server =
        Server::start(|_, _| Act::ReplySplit("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "ok"));
    let (mut pool, rx) = client(HttpLimits::default());
    const REQUESTS: u32 = 20;
    let started = Instant::now();
    for id in 0..REQUESTS {
        assert_eq!(
            request(&mut pool, &rx, id.into(), post(server.url("/a"))),
            Ok(())
        );
    }
    let took = started.elapsed();
    assert_eq!(server.accepted(), 1, "one kept-alive connection");
    let delayed_acks = Duration::from_millis(40) * (REQUESTS - 1);
    assert!(
        took < delayed_acks,
        "{REQUESTS} answers took {took:?}: a delayed ACK each"
    );
    pool.shutdown();
}

/// Two requests where the first is answered with `first`: each is answered, on `connections`
/// connections in all.
fn after(first: Act, connections: usize) {
    let server = Server::start(move |conn, _| {
        if conn == 0 {
            first.clone()
        } else {
            Act::Reply(OK)
        }
    });
    let (mut pool, rx) = client(HttpLimits::default());
    let _ = request(&mut pool, &rx, 1, post(server.url("/1")));
    assert_eq!(request(&mut pool, &rx, 2, post(server.url("/2"))), Ok(()));
    assert_eq!(server.accepted(), connections);
}

#[test]
fn a_connection_the_answer_ends_is_not_reused() {
    // The server says it closes (and does).
    after(
        Act::ReplyClose("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
        2,
    );
    // The server says it closes but leaves the socket open: still not reused.
    after(
        Act::Reply("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
        2,
    );
    // A body read until the connection closes.
    after(Act::ReplyClose("HTTP/1.1 200 OK\r\n\r\nto the end"), 2);
    // HTTP/1.0.
    after(
        Act::Reply("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        2,
    );
    // A truncated body.
    after(
        Act::ReplyClose("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok"),
        2,
    );
    // The server's Keep-Alive hint leaves no time to reuse it (3 s less undici's 2 s margin
    // is still some: 1 s; 2 s is none).
    after(
        Act::Reply("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=2\r\nContent-Length: 2\r\n\r\nok"),
        2,
    );
    after(
        Act::Reply("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=3\r\nContent-Length: 2\r\n\r\nok"),
        1,
    );
    // And the control: a chunked body ended by its last chunk is reused.
    after(
        Act::Reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        1,
    );
}

#[test]
fn a_cancelled_request_leaves_no_connection_behind() {
    let server = Server::start(|conn, _| {
        if conn == 0 {
            Act::Stall
        } else {
            Act::Reply(OK)
        }
    });
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(1), post(server.url("/stall")));
    let (id, head) = rx.recv_timeout(WAIT).unwrap();
    assert!(matches!(
        (id, head),
        (WorkId(1), WorkResult::HttpHead { .. })
    ));
    pool.cancel(WorkId(1));
    assert_eq!(end_of(&rx, WorkId(1)), Err(CANCELLED.to_owned()));
    assert_eq!(pool.idle_connections(), 0);
    assert_eq!(request(&mut pool, &rx, 2, post(server.url("/2"))), Ok(()));
    assert_eq!(server.accepted(), 2);
}

#[test]
fn an_expired_connection_is_closed_and_not_reused() {
    let server = Server::start(|_, _| Act::Reply(OK));
    let limits = HttpLimits {
        keep_alive: KeepAlive {
            lifetime: Duration::from_millis(100),
            ..KeepAlive::default()
        },
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client(limits);
    assert_eq!(request(&mut pool, &rx, 1, post(server.url("/1"))), Ok(()));
    thread::sleep(Duration::from_millis(250));
    assert_eq!(request(&mut pool, &rx, 2, post(server.url("/2"))), Ok(()));
    assert_eq!(server.accepted(), 2);
    // The expired one was closed when the second was taken.
    let deadline = Instant::now() + WAIT;
    while server.closed.load(Ordering::SeqCst) < 1 {
        assert!(
            Instant::now() < deadline,
            "the expired connection is still open"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_connection_the_server_closed_while_idle_is_not_used() {
    // The server closes each connection 50 ms after answering.
    let server = Server::start(|_, _| Act::ReplyIdleClose(OK, Duration::from_millis(50)));
    let (mut pool, rx) = client(HttpLimits::default());
    assert_eq!(request(&mut pool, &rx, 1, post(server.url("/1"))), Ok(()));
    thread::sleep(Duration::from_millis(300));
    // A POST: no retry would save it, the peek must.
    assert_eq!(request(&mut pool, &rx, 2, post(server.url("/2"))), Ok(()));
    assert_eq!(server.accepted(), 2);
    let seen: Vec<usize> = server.seen().iter().map(|(c, _)| *c).collect();
    assert_eq!(seen, [0, 1]);
}

/// The reused connection dies after the second request was written, before any answer.
fn reset_on_reuse() -> Server {
    Server::start(|conn, nth| match (conn, nth) {
        (0, 0) => Act::Reply(OK),
        (0, _) => Act::Reset,
        _ => Act::Reply(OK),
    })
}

#[test]
fn an_idempotent_request_goes_again_when_its_reused_connection_dies_unanswered() {
    let server = reset_on_reuse();
    let (mut pool, rx) = client(HttpLimits::default());
    assert_eq!(request(&mut pool, &rx, 1, get(server.url("/1"))), Ok(()));
    assert_eq!(request(&mut pool, &rx, 2, get(server.url("/2"))), Ok(()));
    assert_eq!(
        server.seen(),
        [
            (0, "GET /1 HTTP/1.1".to_owned()),
            (0, "GET /2 HTTP/1.1".to_owned()),
            (1, "GET /2 HTTP/1.1".to_owned())
        ]
    );
}

#[test]
fn a_post_whose_reused_connection_dies_after_it_was_written_is_not_sent_again() {
    let server = reset_on_reuse();
    let (mut pool, rx) = client(HttpLimits::default());
    assert_eq!(request(&mut pool, &rx, 1, post(server.url("/1"))), Ok(()));
    let end = request(&mut pool, &rx, 2, post(server.url("/send")));
    let error = end.expect_err("the failure surfaces");
    assert!(error.contains(&server.addr.to_string()), "{error}");
    assert_eq!(
        server.seen(),
        [
            (0, "POST /1 HTTP/1.1".to_owned()),
            (0, "POST /send HTTP/1.1".to_owned())
        ]
    );
    assert_eq!(server.accepted(), 1);
}

#[test]
fn the_pool_keeps_at_most_its_bounds_and_shutting_down_closes_them() {
    let slow = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let script = move |_: usize, _: usize| {
        // Long enough for every request of a burst to need its own connection.
        thread::sleep(Duration::from_millis(200));
        Act::Reply(slow)
    };
    let (a, b) = (Server::start(script), Server::start(script));
    let limits = HttpLimits {
        keep_alive: KeepAlive {
            per_origin: 2,
            total: 3,
            ..KeepAlive::default()
        },
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client(limits);
    for (server, first) in [(&a, 10), (&b, 20)] {
        for id in first..first + 3 {
            pool.submit(WorkId(id), post(server.url("/burst")));
        }
        let mut ends = Vec::new();
        while ends.len() < 3 {
            if let (id, WorkResult::HttpEnd(end)) = rx.recv_timeout(WAIT).unwrap() {
                ends.push((id.0, end));
            }
        }
        ends.sort_by_key(|(id, _)| *id);
        assert_eq!(
            ends,
            (first..first + 3)
                .map(|id| (id, Ok(())))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!((a.accepted(), b.accepted()), (3, 3));
    assert_eq!(pool.idle_connections(), 3, "at most 2 per origin, 3 in all");
    // Shutting down closes the connections kept.
    pool.shutdown();
    let deadline = Instant::now() + WAIT;
    while a.closed.load(Ordering::SeqCst) + b.closed.load(Ordering::SeqCst) < 6 {
        assert!(Instant::now() < deadline, "kept connections left open");
        thread::sleep(Duration::from_millis(20));
    }
}
