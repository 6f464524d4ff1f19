//! The HTTP client against the fake model provider over real sockets: streaming, each body
//! framing, error statuses, refused connections and URLs, cancel and the idle timeout, on
//! the worker threads and on the loop (`both!`); an untrusted TLS certificate and the
//! workers' own queueing and threads on the workers.

mod common;

both!(
    a_streamed_answer_arrives_in_pieces_as_it_is_sent,
    every_framing_gives_the_same_body,
    an_error_status_comes_with_its_headers_and_body,
    a_refused_connection_ends_with_the_address,
    a_cancel_mid_stream_ends_promptly,
    a_silent_server_hits_the_idle_timeout,
    a_body_cut_short_is_reported_up_to_the_cut,
    https_to_an_untrusted_certificate_fails_in_the_handshake_before_the_request,
    a_name_that_does_not_resolve_ends_with_the_name,
);

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clawgate_core::model::HttpRequest;
use clawgate_core::{WorkId, WorkResult};
use clawgate_host::http_worker::{CANCELLED, HttpLimits, HttpWorkers};
use clawgate_tests::fake_model::{FakeApi, FakeModel, Framing, Reply};
use clawgate_tests::fake_tls::TestCa;
use common::{Client, client};

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);

fn workers(limits: HttpLimits) -> (HttpWorkers, mpsc::Receiver<(WorkId, WorkResult)>) {
    client(limits)
}

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
                r.end = Some(end);
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

fn a_streamed_answer_arrives_in_pieces_as_it_is_sent<C: Client>() {
    let model = FakeModel::start(|_| {
        Reply::text(&["one", "two", "three"]).with_delay(Duration::from_millis(40))
    });
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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
    assert!(pool.shutdown());
}

fn every_framing_gives_the_same_body<C: Client>() {
    let mut bodies = Vec::new();
    for framing in [Framing::Chunked, Framing::Close, Framing::Length] {
        let model = FakeModel::start(move |_| Reply::text(&["a", "b"]).with_framing(framing));
        let (mut pool, rx) = client::<C>(HttpLimits::default());
        pool.submit(WorkId(7), chat(url(&model)));
        let r = collect(&rx, WorkId(7));
        assert_eq!(r.end, Some(Ok(())), "{framing:?}");
        bodies.push(r.body());
    }
    assert!(bodies[0].ends_with("data: [DONE]\n\n"), "{}", bodies[0]);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
}

fn an_error_status_comes_with_its_headers_and_body<C: Client>() {
    let model = FakeModel::start(|_| {
        Reply::error(429, "Rate limit reached").with_header("Retry-After", "2")
    });
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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

fn a_refused_connection_ends_with_the_address<C: Client>() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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

fn a_body_cut_short_is_reported_up_to_the_cut<C: Client>() {
    // Cut after the text: the last read carries the text and the EOF together.
    let model = FakeModel::start(|_| Reply::text(&["half ", "an answer"]).dropped(3));
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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

fn https_to_an_untrusted_certificate_fails_in_the_handshake_before_the_request<C: Client>() {
    // The system's roots do not include this throwaway CA.
    let ca = TestCa::new("untrusted test CA");
    let model = FakeModel::with(FakeApi::OpenAi, Some(ca.server.clone()), |_| {
        Reply::text(&["never"])
    });
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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
    assert!(pool.shutdown());
}

fn a_name_that_does_not_resolve_ends_with_the_name<C: Client>() {
    // `.invalid` never resolves (RFC 2606).
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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

fn a_cancel_mid_stream_ends_promptly<C: Client>() {
    let deltas = ["x"; 20];
    let model =
        FakeModel::start(move |_| Reply::text(&deltas).with_delay(Duration::from_millis(300)));
    let (mut pool, rx) = client::<C>(HttpLimits::default());
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
            (got, WorkResult::HttpEnd(end)) if got == id => return end,
            (got, WorkResult::HttpBody(_)) if got == id => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn a_silent_server_hits_the_idle_timeout<C: Client>() {
    let model = FakeModel::start(|_| Reply::text(&["late"]).with_delay(Duration::from_secs(3)));
    let limits = HttpLimits {
        idle_timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client::<C>(limits);
    let started = Instant::now();
    pool.submit(WorkId(6), chat(url(&model)));
    let end = collect(&rx, WorkId(6)).error();
    assert!(end.contains("idle timeout"), "{end}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn requests_beyond_the_cap_wait_in_order_and_can_be_cancelled_while_waiting() {
    let model = FakeModel::start(|_| Reply::text(&["a"]).with_delay(Duration::from_millis(100)));
    let limits = HttpLimits {
        max_concurrent: 1,
        ..HttpLimits::default()
    };
    let (mut pool, rx) = workers(limits);
    for id in 1..=3 {
        pool.submit(WorkId(id), chat(url(&model))).unwrap();
    }
    pool.cancel(WorkId(3));
    let mut ends = Vec::new();
    while ends.len() < 3 {
        let (id, r) = rx.recv_timeout(WAIT).unwrap();
        if let WorkResult::HttpEnd(end) = r {
            ends.push((id, end));
        }
    }
    assert_eq!(
        ends,
        [
            (WorkId(3), Err(CANCELLED.to_owned())),
            (WorkId(1), Ok(())),
            (WorkId(2), Ok(()))
        ]
    );
    assert_eq!(model.requests().len(), 2);
}

/// Requests one after another, each submitted as the last reports its end (as the next long
/// poll is): one thread performs them all; the pool does not start another because the last
/// thread is still busy reporting.
#[test]
fn a_request_submitted_as_the_last_ends_reuses_its_thread() {
    let model = FakeModel::start(|_| Reply::text(&["ok"]));
    let pool: Arc<Mutex<Option<HttpWorkers>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let (again, target) = (pool.clone(), url(&model));
    let workers = HttpWorkers::new(HttpLimits::default(), move |id, batch: Vec<WorkResult>| {
        for r in batch {
            if matches!(r, WorkResult::HttpEnd(_))
                && id.0 < 10
                && let Some(p) = again.lock().unwrap().as_mut()
            {
                p.submit(WorkId(id.0 + 1), chat(target.clone())).unwrap();
            }
            let _ = tx.send((id, r));
        }
    });
    *pool.lock().unwrap() = Some(workers);
    let first = chat(url(&model));
    pool.lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .submit(WorkId(0), first)
        .unwrap();
    // The next request's results follow each end at once: gather the ends.
    let mut ends = Vec::new();
    while ends.len() < 11 {
        if let (id, WorkResult::HttpEnd(end)) = rx.recv_timeout(WAIT).expect("a result in time") {
            ends.push((id.0, end));
        }
    }
    assert_eq!(ends, (0..=10).map(|n| (n, Ok(()))).collect::<Vec<_>>());
    let mut workers = pool.lock().unwrap().take().unwrap();
    assert!(
        format!("{workers:?}").contains("threads: 1,"),
        "{workers:?}"
    );
    assert!(workers.shutdown(Duration::from_secs(1)));
}

#[test]
fn idle_threads_exit_and_later_requests_start_new_ones() {
    let model = FakeModel::start(|_| Reply::text(&["a"]));
    let limits = HttpLimits {
        idle_exit: Duration::from_millis(100),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = workers(limits);
    pool.submit(WorkId(1), chat(url(&model))).unwrap();
    assert_eq!(collect(&rx, WorkId(1)).end, Some(Ok(())));
    let end = Instant::now() + WAIT;
    while pool.live_threads() > 0 {
        assert!(
            Instant::now() < end,
            "{} threads still live",
            pool.live_threads()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pool.submit(WorkId(2), chat(url(&model))).unwrap();
    assert_eq!(collect(&rx, WorkId(2)).end, Some(Ok(())));
    assert!(pool.shutdown(WAIT));
}

/// An answer that arrives whole (one write of head and body) reaches the reporter in one
/// batch that ends with its end: the loop is woken once for it, not once per piece.
#[test]
fn an_answer_read_whole_is_reported_in_one_batch_with_its_end() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let mut body = vec![0u8; chat(String::new()).body.len()];
        conn.read_exact(&mut body).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
            .unwrap();
        // Held open: the answer ends by its length, not by the close.
        std::thread::sleep(Duration::from_millis(500));
    });
    let (tx, rx) = mpsc::channel();
    let mut pool = HttpWorkers::new(HttpLimits::default(), move |id, batch: Vec<WorkResult>| {
        let _ = tx.send((id, batch));
    });
    pool.submit(WorkId(1), chat(format!("http://{addr}/v1/chat")))
        .unwrap();
    let (id, batch) = rx.recv_timeout(WAIT).expect("a batch in time");
    assert_eq!(id, WorkId(1));
    assert!(
        matches!(
            batch.as_slice(),
            [
                WorkResult::HttpHead { status: 200, .. },
                WorkResult::HttpBody(b),
                WorkResult::HttpEnd(Ok(())),
            ] if b == b"{\"ok\":true}"
        ),
        "one batch: head, body, end; got {batch:?}"
    );
    server.join().unwrap();
}
