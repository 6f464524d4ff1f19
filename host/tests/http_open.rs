//! Opening a connection for the HTTP client on the loop, with host names looked up by the
//! tests' own resolver ([`HttpLoop::with_lookup`](clawgate_host::http_loop::HttpLoop)): the
//! next address tried beside one that never answers after the attempt delay (also beside
//! three), every address and why in the error when all refuse, the open timeout over every
//! attempt and over a lookup that does not answer (also one still waiting for a thread), the
//! lookup timeout (the connect timeout's 10 s) over one that hangs, `lookup_threads` hung
//! lookups that do not keep the next request's lookup waiting, one lookup for requests
//! to one name, at most `lookup_threads` at once under 50 names, and a shutdown that does
//! not wait for a lookup in flight. (The descriptors a race leaves:
//! `http_open_fds.rs`, a process of its own.)

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use clawgate_core::channels::telegram::transport::falls_back;
use clawgate_core::model::HttpRequest;
use clawgate_core::{HttpErrorKind, WorkId, WorkResult};
use clawgate_host::http_loop::{
    ATTEMPT_DELAY, CONNECT_TIMEOUT, HttpLimits, HttpLoop, LOOKUP_THREADS, LookupFn,
};
use clawgate_tests::fake_model::{FakeModel, Reply};
use common::{BlackHole, chat, client_with_lookup};

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: "GET",
        url,
        headers: Vec::new(),
        body: Vec::new(),
        idempotent: true,
        dialing: Default::default(),
    }
}

/// The end of `id`, with its body (results of other ids are not expected).
fn end_of(rx: &mpsc::Receiver<(WorkId, WorkResult)>, id: WorkId) -> (Result<(), String>, String) {
    let mut body = Vec::new();
    loop {
        let (got, result) = rx.recv_timeout(WAIT).expect("a result in time");
        assert_eq!(got, id);
        match result {
            WorkResult::HttpHead { .. } => {}
            WorkResult::HttpBody(b) => body.extend(b),
            WorkResult::HttpEnd(end) => {
                return (end.map_err(|e| e.message), String::from_utf8(body).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The ends of `n` requests, by id, in any order.
fn ends(rx: &mpsc::Receiver<(WorkId, WorkResult)>, n: usize) -> Vec<(WorkId, Result<(), String>)> {
    let mut ends = Vec::new();
    while ends.len() < n {
        match rx.recv_timeout(WAIT).expect("a result in time") {
            (id, WorkResult::HttpEnd(end)) => ends.push((id, end.map_err(|e| e.message))),
            other => panic!("unexpected {other:?}"),
        }
    }
    ends.sort_by_key(|(id, _)| id.0);
    ends
}

/// A resolver that answers every name with `ips`.
fn answering(ips: Vec<IpAddr>) -> LookupFn {
    Arc::new(move |_: &str| Ok(ips.clone()))
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address (all of 127/8 is), for a black hole at the same port.
const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOOPBACK_3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const LOOPBACK_4: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
const LOOPBACK_5: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));

/// A request to a name resolving to `holes` (addresses that never answer) and then the fake
/// model, with the default limits (one address after the other, the next would start after
/// the previous one's 10 s connect timeout): how long it took, asserted answered by the model.
fn race_past(holes: &[IpAddr]) -> Duration {
    let model = FakeModel::start(|_| Reply::text(&["reached"]));
    let port = model.addr().port();
    let _holes: Vec<_> = holes
        .iter()
        .map(|&ip| BlackHole::at(SocketAddr::new(ip, port)))
        .collect();
    let lookup = answering(holes.iter().copied().chain([LOOPBACK]).collect());
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    let started = Instant::now();
    pool.submit(
        WorkId(1),
        chat(format!("http://model.test:{port}/v1/chat/completions")),
    );
    let (end, body) = end_of(&rx, WorkId(1));
    let took = started.elapsed();
    assert_eq!(end, Ok(()));
    assert!(body.contains("reached"), "{body}");
    assert_eq!(model.requests().len(), 1);
    took
}

#[test]
fn an_address_that_never_answers_loses_to_the_next_within_the_attempt_delay() {
    let took = race_past(&[LOOPBACK_2]);
    assert!(took >= ATTEMPT_DELAY, "{took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn three_addresses_that_never_answer_go_on_while_the_fourth_is_tried() {
    let took = race_past(&[LOOPBACK_2, LOOPBACK_3, LOOPBACK_4]);
    // 30 s one address after the other; three attempt delays when raced.
    assert!(took >= 3 * ATTEMPT_DELAY, "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn when_every_address_refuses_the_error_names_each() {
    let port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lookup = answering(vec![LOOPBACK, LOOPBACK_2]);
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    pool.submit(WorkId(3), get(format!("http://model.test:{port}/")));
    let (end, _) = end_of(&rx, WorkId(3));
    let why = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
    assert_eq!(
        end,
        Err(format!(
            "cannot connect to model.test:{port}: 127.0.0.1:{port}: {why}; 127.0.0.2:{port}: {why}"
        ))
    );
}

#[test]
fn the_open_timeout_bounds_every_attempt() {
    let port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let holes =
        [LOOPBACK_2, LOOPBACK_3, LOOPBACK_4, LOOPBACK_5].map(|ip| SocketAddr::new(ip, port));
    let _holes = holes.map(BlackHole::at);
    let limits = HttpLimits {
        connect_timeout: Duration::from_secs(2),
        attempt_delay: Duration::from_secs(1),
        open_timeout: Duration::from_millis(2200),
        ..HttpLimits::default()
    };
    // Attempts start at 0, 1 and 2 s and end at 2.2 s; were the total not bounded, the third
    // would go on to 4 s, and the fourth start at 3 s.
    let ips = holes.iter().map(SocketAddr::ip).collect();
    let (mut pool, rx) = client_with_lookup(limits, answering(ips));
    let started = Instant::now();
    pool.submit(WorkId(2), get(format!("http://model.test:{port}/")));
    let (end, _) = end_of(&rx, WorkId(2));
    let took = started.elapsed();
    let [a, b, c, d] = holes;
    assert_eq!(
        end,
        Err(format!(
            "cannot connect to model.test:{port}: {a}: timed out; {b}: timed out; {c}: timed out; \
             not tried within the open timeout: {d}"
        ))
    );
    assert!(took >= Duration::from_millis(2200), "{took:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
}

/// A resolver that takes `delay` for every name (answering `127.0.0.1`), counting the lookups
/// and the most that ran at once.
#[derive(Default)]
struct Counting {
    started: AtomicUsize,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Counting {
    fn lookup(counting: &Arc<Counting>, delay: Duration) -> LookupFn {
        let c = counting.clone();
        Arc::new(move |_: &str| {
            c.started.fetch_add(1, Ordering::SeqCst);
            let now = c.running.fetch_add(1, Ordering::SeqCst) + 1;
            c.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(delay);
            c.running.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![LOOPBACK])
        })
    }
}

#[test]
fn requests_to_one_name_share_one_lookup() {
    let model = FakeModel::start(|_| Reply::text(&["shared"]));
    let port = model.addr().port();
    let counting = Arc::new(Counting::default());
    let lookup = Counting::lookup(&counting, Duration::from_millis(500));
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    let url = format!("http://model.test:{port}/v1/chat/completions");
    pool.submit(WorkId(1), chat(url.clone()));
    pool.submit(WorkId(2), chat(url));
    let ends = ends_with_bodies(&rx, 2);
    assert_eq!(ends, vec![(1, true), (2, true)]);
    assert_eq!(counting.started.load(Ordering::SeqCst), 1, "one lookup");
}

/// Which of `n` requests ended well with a body, by id.
fn ends_with_bodies(rx: &mpsc::Receiver<(WorkId, WorkResult)>, n: usize) -> Vec<(u64, bool)> {
    let mut bodies = std::collections::HashMap::<u64, usize>::new();
    let mut ends = Vec::new();
    while ends.len() < n {
        match rx.recv_timeout(WAIT).expect("a result in time") {
            (_, WorkResult::HttpHead { .. }) => {}
            (id, WorkResult::HttpBody(b)) => *bodies.entry(id.0).or_default() += b.len(),
            (id, WorkResult::HttpEnd(end)) => {
                ends.push((
                    id.0,
                    end.is_ok() && bodies.get(&id.0).is_some_and(|n| *n > 0),
                ));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    ends.sort_unstable();
    ends
}

#[test]
fn no_more_lookups_than_the_limit_run_at_once_under_fifty_names() {
    // Every name resolves to a port that refuses: each request ends once its lookup answered.
    let port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let counting = Arc::new(Counting::default());
    let lookup = Counting::lookup(&counting, Duration::from_millis(50));
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    for n in 0..50 {
        pool.submit(WorkId(n), get(format!("http://name-{n}.test:{port}/")));
    }
    for (id, end) in ends(&rx, 50) {
        let error = end.unwrap_err();
        let refused = format!(
            "cannot connect to name-{}.test:{port} (127.0.0.1:{port}): ",
            id.0
        );
        assert!(error.starts_with(&refused), "{error}");
    }
    assert_eq!(counting.started.load(Ordering::SeqCst), 50);
    let most = counting.most.load(Ordering::SeqCst);
    assert!(most <= LOOKUP_THREADS, "{most} lookups at once");
}

#[test]
fn a_lookup_that_does_not_answer_ends_its_requests_at_the_open_timeout() {
    let counting = Arc::new(Counting::default());
    let lookup = Counting::lookup(&counting, Duration::from_secs(3));
    let limits = HttpLimits {
        open_timeout: Duration::from_millis(300),
        lookup_threads: 2,
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client_with_lookup(limits, lookup);
    // More names than lookup threads: the last ones wait for a thread, and time out waiting.
    let names = 5;
    let started = Instant::now();
    for n in 0..names {
        pool.submit(WorkId(n), get(format!("http://slow-{n}.test:80/")));
    }
    for (id, end) in ends(&rx, names as usize) {
        let expected = format!(
            "cannot resolve slow-{}.test:80: no answer within 0.3 s (open timeout)",
            id.0
        );
        assert_eq!(end, Err(expected));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        counting.started.load(Ordering::SeqCst),
        2,
        "the lookups nobody waits for never start"
    );
}

/// A lookup that never answers (a black-holed DNS server) ends its request at the lookup
/// timeout, the connect timeout's 10 s by default, not the open timeout's 30: a timeout, on
/// which Telegram's transport goes on to its next attempt. (The loop driven here with
/// instants of the test's own: no waiting.)
#[test]
fn a_lookup_that_hangs_ends_its_request_at_the_lookup_timeout() {
    let hangs: LookupFn = Arc::new(|_: &str| -> Result<Vec<IpAddr>, String> {
        loop {
            std::thread::park();
        }
    });
    let limits = HttpLimits::default();
    assert_eq!(limits.lookup_timeout, CONNECT_TIMEOUT);
    let mut http = HttpLoop::with_lookup(limits, hangs).unwrap();
    let start = Instant::now();
    http.start(WorkId(1), get("http://hangs.test:80/".into()), start);
    assert_eq!(http.due(), Some(start + CONNECT_TIMEOUT));
    let mut ended = Vec::new();
    http.drive(
        start + CONNECT_TIMEOUT - Duration::from_millis(1),
        |id, r| {
            ended.push((id, r));
        },
    );
    assert!(ended.is_empty(), "{ended:?}");
    http.drive(start + CONNECT_TIMEOUT, |id, r| ended.push((id, r)));
    let [(WorkId(1), WorkResult::HttpEnd(Err(error)))] = &ended[..] else {
        panic!("{ended:?}");
    };
    assert_eq!(error.kind, HttpErrorKind::TimedOut);
    assert!(falls_back(error.kind));
    assert_eq!(
        error.message,
        "cannot resolve hangs.test:80: no answer within 10 s (lookup timeout)"
    );
}

/// `lookup_threads` lookups that hang (their requests ended at the lookup timeout) give
/// their threads' places up: the next request's lookup runs at once and it is answered,
/// not left waiting for a place until its own lookup timeout.
#[test]
fn lookups_that_hang_do_not_keep_the_next_one_waiting() {
    let model = FakeModel::start(|_| Reply::text(&["reached"]));
    let port = model.addr().port();
    let lookup: LookupFn = Arc::new(|host: &str| -> Result<Vec<IpAddr>, String> {
        if host.starts_with("hangs") {
            loop {
                std::thread::park();
            }
        }
        Ok(vec![LOOPBACK])
    });
    let limits = HttpLimits {
        lookup_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client_with_lookup(limits, lookup);
    for n in 1..=LOOKUP_THREADS as u64 {
        pool.submit(WorkId(n), get(format!("http://hangs-{n}.test:80/")));
    }
    for (_, end) in ends(&rx, LOOKUP_THREADS) {
        let end = end.unwrap_err();
        assert!(end.ends_with("(lookup timeout)"), "{end}");
    }
    pool.submit(
        WorkId(99),
        chat(format!("http://model.test:{port}/v1/chat/completions")),
    );
    let (end, body) = end_of(&rx, WorkId(99));
    assert_eq!(end, Ok(()));
    assert!(body.contains("reached"), "{body}");
}

#[test]
fn a_shutdown_does_not_wait_for_a_lookup_in_flight() {
    let counting = Arc::new(Counting::default());
    let lookup = Counting::lookup(&counting, Duration::from_secs(5));
    let (mut pool, rx) = client_with_lookup(HttpLimits::default(), lookup);
    pool.submit(WorkId(1), get("http://slow.test:80/".into()));
    while counting.started.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopping = Instant::now();
    pool.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopping.elapsed()
    );
    assert!(rx.try_recv().is_err(), "a dropped request reports nothing");
}
