//! `https://` on the loop against the fake model provider
//! behind a test CA this test binary trusts (`SSL_CERT_FILE`, set once before any client
//! loads the roots): an answer over TLS to an address and to a name (`localhost`),
//! keep-alive reuse of a TLS session, and a server that never completes the handshake:
//! cancelled in it, or timed out in it by the open timeout, whether it stays silent or
//! trickles bytes (the handshake's time is a total, not renewed by each byte); and a name
//! pinned to an address (Telegram's fallback) dialled there, unlooked-up, its certificate
//! checked against the name.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::{CANCELLED, HttpLimits};
use clawgate_tests::fake_model::{FakeApi, FakeModel, Reply};
use clawgate_tests::fake_tls::{TestCa, trickle_handshake};
use common::{PinnedRun, chat, client, submit_pinned};

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);

/// The CA every client in this binary trusts. Every test calls this before it starts a
/// client, so `SSL_CERT_FILE` is set while no other thread of the test reads the
/// environment (the first caller sets it; the others wait for it).
fn trusted() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = TestCa::new("trusted test CA");
        // SAFETY: see the function doc: no other thread reads the environment meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("SSL_CERT_FILE", ca.ca_path());
        }
        ca
    })
}

fn model() -> FakeModel {
    FakeModel::with(FakeApi::OpenAi, Some(trusted().server.clone()), |_| {
        Reply::text(&["over ", "TLS"])
    })
}

/// The status, body and end of `id` (results of other ids are not expected).
fn collect(
    rx: &mpsc::Receiver<(WorkId, WorkResult)>,
    id: WorkId,
) -> (Option<u16>, String, Result<(), String>) {
    let (mut status, mut body) = (None, Vec::new());
    loop {
        let (got, result) = rx.recv_timeout(WAIT).expect("a result in time");
        assert_eq!(got, id);
        match result {
            WorkResult::HttpHead { status: s, .. } => status = Some(s),
            WorkResult::HttpBody(b) => body.extend(b),
            WorkResult::HttpEnd(end) => {
                return (
                    status,
                    String::from_utf8(body).unwrap(),
                    end.map_err(|e| e.message),
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn an_answer_comes_over_tls_from_an_address() {
    let model = model();
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(
        WorkId(1),
        chat(format!("{}/chat/completions", model.base_url())),
    );
    let (status, body, end) = collect(&rx, WorkId(1));
    assert_eq!(end, Ok(()));
    assert_eq!(status, Some(200));
    assert!(body.contains("\"TLS\""), "{body}");
    assert_eq!(model.requests().len(), 1);
}

#[test]
fn an_answer_comes_over_tls_from_a_name() {
    let model = model();
    let (mut pool, rx) = client(HttpLimits::default());
    // The certificate names `localhost`; the fake listens on 127.0.0.1 (where `localhost`
    // also resolves to ::1 first, that address refuses and the next one answers).
    let url = format!(
        "https://localhost:{}/v1/chat/completions",
        model.addr().port()
    );
    pool.submit(WorkId(2), chat(url));
    let (status, body, end) = collect(&rx, WorkId(2));
    assert_eq!(end, Ok(()));
    assert_eq!(status, Some(200));
    assert!(body.contains("\"TLS\""), "{body}");
}

#[test]
fn sequential_requests_share_one_tls_connection() {
    let model = model();
    let (mut pool, rx) = client(HttpLimits::default());
    let url = format!("{}/chat/completions", model.base_url());
    for id in 1..=3 {
        pool.submit(WorkId(id), chat(url.clone()));
        let (_, body, end) = collect(&rx, WorkId(id));
        assert_eq!(end, Ok(()));
        assert!(body.contains("\"TLS\""), "{body}");
    }
    assert_eq!(model.requests().len(), 3);
    assert_eq!(model.connections(), 1, "one handshake for three requests");
    assert_eq!(pool.idle_connections(), 1);
}

#[test]
fn a_large_answer_comes_whole_over_tls() {
    // Far more than one read buffer (16 KiB) and one TLS record: plaintext rustls holds
    // after a read must be taken before the loop waits for the socket again.
    let deltas = vec!["0123456789abcdef"; 20_000];
    let model = FakeModel::with(FakeApi::OpenAi, Some(trusted().server.clone()), move |_| {
        Reply::text(&deltas)
    });
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(
        WorkId(4),
        chat(format!("{}/chat/completions", model.base_url())),
    );
    let (_, body, end) = collect(&rx, WorkId(4));
    assert_eq!(end, Ok(()));
    assert_eq!(body.matches("0123456789abcdef").count(), 20_000);
}

/// A server that accepts connections and never says a word: a TLS handshake with it waits.
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/v1/chat/completions",
        listener.local_addr().unwrap().port()
    );
    (listener, url)
}

#[test]
fn a_cancel_during_the_handshake_ends_promptly() {
    trusted();
    let (_listener, url) = silent_server();
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(5), chat(url));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "it waits"
    );
    let cancelled = Instant::now();
    pool.cancel(WorkId(5));
    let (status, _, end) = collect(&rx, WorkId(5));
    assert_eq!((status, end), (None, Err(CANCELLED.to_owned())));
    assert!(cancelled.elapsed() < Duration::from_millis(250));
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
}

#[test]
fn a_silent_handshake_hits_the_open_timeout() {
    trusted();
    let (listener, url) = silent_server();
    // The idle timeout is far: the open timeout ends the handshake.
    let limits = HttpLimits {
        open_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client(limits);
    let started = Instant::now();
    pool.submit(WorkId(6), chat(url));
    let (status, _, end) = collect(&rx, WorkId(6));
    let addr = listener.local_addr().unwrap();
    assert_eq!(status, None);
    assert_eq!(
        end,
        Err(format!(
            "TLS handshake with {addr} failed: not done within 0.3 s (open timeout)"
        ))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_handshake_that_trickles_bytes_still_hits_the_open_timeout() {
    trusted();
    let (listener, url) = silent_server();
    let addr = listener.local_addr().unwrap();
    trickle_handshake(listener);
    let limits = HttpLimits {
        idle_timeout: Duration::from_millis(200),
        open_timeout: Duration::from_millis(800),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client(limits);
    let started = Instant::now();
    pool.submit(WorkId(7), chat(url));
    let (status, _, end) = collect(&rx, WorkId(7));
    assert_eq!(status, None);
    assert_eq!(
        end,
        Err(format!(
            "TLS handshake with {addr} failed: not done within 0.8 s (open timeout)"
        ))
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[test]
fn a_pinned_name_is_dialled_at_its_address_unlooked_up_while_tls_verifies_the_name() {
    // A certificate for the name only: a check against the address would fail.
    const NAME: &str = "api.telegram.test";
    const PINNED: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let server = trusted().server_for(&[NAME]);
    // The name's lookup is blocked (and counted).
    let PinnedRun {
        model,
        mut pool,
        rx,
        looked_up,
    } = submit_pinned(server, NAME, &PINNED, WorkId(7));
    let port = model.addr().port();
    let (status, body, end) = collect(&rx, WorkId(7));
    assert_eq!(end, Ok(()));
    assert_eq!(status, Some(200));
    assert!(body.contains("\"pinned\""), "{body}");
    assert_eq!(looked_up.load(Ordering::SeqCst), 0, "no lookup of the name");
    let host = model.requests()[0].header("host").map(str::to_owned);
    assert_eq!(host, Some(format!("{NAME}:{port}")));
    // Unpinned, the same name is looked up (and blocked).
    pool.submit(
        WorkId(8),
        chat(format!("https://{NAME}:{port}/v1/chat/completions")),
    );
    let (_, _, end) = collect(&rx, WorkId(8));
    assert!(end.unwrap_err().contains("blocked"));
    assert_eq!(looked_up.load(Ordering::SeqCst), 1);
}
