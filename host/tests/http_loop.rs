//! The HTTP client on the loop against the fake model provider over real sockets: streaming,
//! each body framing, error statuses, refused connections, names that do not resolve, an
//! untrusted TLS certificate, cancel and the idle timeout.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_loop::{CANCELLED, HttpLimits};
use clawgate_tests::fake_model::{FakeApi, FakeModel, Framing, Reply};
use clawgate_tests::fake_tls::TestCa;
use common::client;

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);

fn chat(url: String) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: vec![
            ("Authorization".into(), "Bearer sk-test".into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: br#"{"model":"fake-1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
            .to_vec(),
        idempotent: false,
        dialing: Default::default(),
    }
}

/// What one request reported, checked for order: at most one head first, exactly one end last.
#[derive(Debug, Default)]
struct Response {
    head: Option<(u16, Vec<(String, String)>)>,
    bodies: Vec<Vec<u8>>,
    end: Option<Result<(), String>>,
}

impl Response {
    fn body(&self) -> String {
        String::from_utf8(self.bodies.concat()).unwrap()
    }

    fn error(&self) -> String {
        self.end.clone().unwrap().unwrap_err()
    }
}

/// Take results for `id` until its end (results of other ids are not expected).
fn collect(rx: &mpsc::Receiver<(WorkId, WorkResult)>, id: WorkId) -> Response {
    let mut r = Response::default();
    loop {
        let (got, result) = rx.recv_timeout(WAIT).expect("a result in time");
        assert_eq!(got, id);
        match result {
            WorkResult::HttpHead { status, headers } => {
                assert!(r.head.is_none() && r.bodies.is_empty(), "head out of order");
                r.head = Some((status, headers));
            }
            WorkResult::HttpBody(b) => {
                assert!(r.head.is_some(), "body before head");
                assert!(!b.is_empty());
                r.bodies.push(b);
            }
            WorkResult::HttpEnd(end) => {
                r.end = Some(end.map_err(|e| e.message));
                assert!(
                    rx.recv_timeout(Duration::from_millis(50)).is_err(),
                    "results after the end"
                );
                return r;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn url(model: &FakeModel) -> String {
    format!("{}/chat/completions", model.base_url())
}

#[test]
fn a_streamed_answer_arrives_in_pieces_as_it_is_sent() {
    let model = FakeModel::start(|_| {
        Reply::text(&["one", "two", "three"]).with_delay(Duration::from_millis(40))
    });
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(1), chat(url(&model)));
    let r = collect(&rx, WorkId(1));
    assert_eq!(r.end, Some(Ok(())));
    let (status, headers) = r.head.clone().unwrap();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream"))
    );
    assert!(r.bodies.len() >= 4, "{} pieces", r.bodies.len());
    let body = r.body();
    for needle in ["\"one\"", "\"two\"", "\"three\"", "data: [DONE]"] {
        assert!(body.contains(needle), "{needle} not in {body}");
    }
    assert!(
        !body.contains("\r\n0\r\n"),
        "chunk framing left in the body"
    );
    let seen = model.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(seen[0].json["messages"][0]["content"], "hi");
    pool.shutdown();
}

#[test]
fn every_framing_gives_the_same_body() {
    let mut bodies = Vec::new();
    for framing in [Framing::Chunked, Framing::Close, Framing::Length] {
        let model = FakeModel::start(move |_| Reply::text(&["a", "b"]).with_framing(framing));
        let (mut pool, rx) = client(HttpLimits::default());
        pool.submit(WorkId(7), chat(url(&model)));
        let r = collect(&rx, WorkId(7));
        assert_eq!(r.end, Some(Ok(())), "{framing:?}");
        bodies.push(r.body());
    }
    assert!(bodies[0].ends_with("data: [DONE]\n\n"), "{}", bodies[0]);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
}

#[test]
fn an_error_status_comes_with_its_headers_and_body() {
    let model = FakeModel::start(|_| {
        Reply::error(429, "Rate limit reached").with_header("Retry-After", "2")
    });
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(2), chat(url(&model)));
    let r = collect(&rx, WorkId(2));
    assert_eq!(r.end, Some(Ok(())));
    let (status, headers) = r.head.clone().unwrap();
    assert_eq!(status, 429);
    assert!(
        headers.contains(&("retry-after".into(), "2".into())),
        "{headers:?}"
    );
    assert!(r.body().contains("Rate limit reached"));
}

#[test]
fn a_refused_connection_ends_with_the_address() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(
        WorkId(3),
        chat(format!("http://127.0.0.1:{port}/v1/chat/completions")),
    );
    let r = collect(&rx, WorkId(3));
    assert!(r.head.is_none());
    assert!(
        r.error().contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.error()
    );
}

#[test]
fn a_body_cut_short_is_reported_up_to_the_cut() {
    // Cut after the text: the last read carries the text and the EOF together.
    let model = FakeModel::start(|_| Reply::text(&["half ", "an answer"]).dropped(3));
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(8), chat(url(&model)));
    let r = collect(&rx, WorkId(8));
    assert!(r.body().contains("\"an answer\""), "{}", r.body());
    assert_eq!(
        r.error(),
        format!(
            "{}: connection closed before the end of the response body",
            model.addr()
        )
    );
}

#[test]
fn https_to_an_untrusted_certificate_fails_in_the_handshake_before_the_request() {
    // The system's roots do not include this throwaway CA.
    let ca = TestCa::new("untrusted test CA");
    let model = FakeModel::with(FakeApi::OpenAi, Some(ca.server.clone()), |_| {
        Reply::text(&["never"])
    });
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(4), chat(url(&model)));
    let r = collect(&rx, WorkId(4));
    assert!(r.head.is_none());
    assert_eq!(
        r.error(),
        format!(
            "TLS handshake with {} failed: invalid peer certificate: UnknownIssuer",
            model.addr()
        )
    );
    assert!(model.requests().is_empty(), "nothing was sent");
    pool.shutdown();
}

#[test]
fn a_name_that_does_not_resolve_ends_with_the_name() {
    // `.invalid` never resolves (RFC 2606).
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(
        WorkId(9),
        chat("https://no-such-host.invalid:8443/v1/chat/completions".into()),
    );
    let r = collect(&rx, WorkId(9));
    assert!(r.head.is_none());
    assert!(
        r.error()
            .starts_with("cannot resolve no-such-host.invalid:8443: "),
        "{}",
        r.error()
    );
}

#[test]
fn a_cancel_mid_stream_ends_promptly() {
    let deltas = ["x"; 20];
    let model =
        FakeModel::start(move |_| Reply::text(&deltas).with_delay(Duration::from_millis(300)));
    let (mut pool, rx) = client(HttpLimits::default());
    pool.submit(WorkId(5), chat(url(&model)));
    let (id, first) = rx.recv_timeout(WAIT).unwrap();
    assert!(matches!(
        (id, first),
        (WorkId(5), WorkResult::HttpHead { status: 200, .. })
    ));
    let cancelled = Instant::now();
    pool.cancel(WorkId(5));
    let rest = collect_after_head(&rx, WorkId(5));
    assert_eq!(rest, Err(CANCELLED.to_owned()));
    assert!(
        cancelled.elapsed() < Duration::from_millis(250),
        "{:?}",
        cancelled.elapsed()
    );
    pool.cancel(WorkId(5)); // an ended request: ignored
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
}

/// The end of `id`, skipping body pieces already on their way.
fn collect_after_head(rx: &mpsc::Receiver<(WorkId, WorkResult)>, id: WorkId) -> Result<(), String> {
    loop {
        match rx.recv_timeout(WAIT).unwrap() {
            (got, WorkResult::HttpEnd(end)) if got == id => return end.map_err(|e| e.message),
            (got, WorkResult::HttpBody(_)) if got == id => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_silent_server_hits_the_idle_timeout() {
    let model = FakeModel::start(|_| Reply::text(&["late"]).with_delay(Duration::from_secs(3)));
    let limits = HttpLimits {
        idle_timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client(limits);
    let started = Instant::now();
    pool.submit(WorkId(6), chat(url(&model)));
    let end = collect(&rx, WorkId(6)).error();
    assert!(end.contains("idle timeout"), "{end}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
