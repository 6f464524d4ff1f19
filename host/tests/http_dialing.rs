//! A request's `dialing` (Telegram's `network.autoSelectFamily` and `dnsResultOrder`, as
//! upstream passes them to Node's `net.connect`) on the loop's HTTP client, with host names
//! looked up by the tests' own resolver: with the race on, a first address that never
//! answers loses to the next after the request's own attempt delay (Telegram's 300 ms); off,
//! only the first address is tried, to its connect timeout, as Node tries the one address
//! `dns.lookup` gives it; and `ipv4first` puts the IPv4 addresses before the IPv6 ones.
//! With the core's Telegram transport attempts deciding the dialing, a request whose first
//! attempt is black-holed goes through on the IPv4-only fallback.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use clawgate_core::channels::config::TELEGRAM_ATTEMPT_DELAY;
use clawgate_core::channels::telegram::transport::{Next, Transport, Tried};
use clawgate_core::model::{Dialing, HttpRequest};
use clawgate_core::{HttpError, HttpErrorKind, WorkId, WorkResult};
use clawgate_host::http_loop::{HttpLimits, LookupFn};
use clawgate_tests::fake_model::{FakeModel, Reply};
use common::{BlackHole, chat, client_with_lookup};

/// How long a test waits for any one result.
const WAIT: Duration = Duration::from_secs(10);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address (all of 127/8 is), for a black hole at the same port.
const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A name resolving to a black hole, then the fake model; a request to it dialed as
/// `dialing`, with a connect timeout of `connect_timeout`: its end, how long it took, and
/// how many requests the model got.
fn past_a_black_hole(
    dialing: Dialing,
    connect_timeout: Duration,
) -> (Result<(), HttpError>, Duration, usize, u16) {
    let model = FakeModel::start(|_| Reply::text(&["reached"]));
    let port = model.addr().port();
    let _hole = BlackHole::at(SocketAddr::new(LOOPBACK_2, port));
    let lookup: LookupFn = Arc::new(|_: &str| Ok(vec![LOOPBACK_2, LOOPBACK]));
    let limits = HttpLimits {
        connect_timeout,
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client_with_lookup(limits, lookup);
    let started = Instant::now();
    pool.submit(
        WorkId(1),
        HttpRequest {
            dialing,
            ..chat(format!("http://api.test:{port}/v1/chat/completions"))
        },
    );
    let end = end_of(&rx);
    (end, started.elapsed(), model.requests().len(), port)
}

/// The end of the one request, past its head and body.
fn end_of(rx: &mpsc::Receiver<(WorkId, WorkResult)>) -> Result<(), HttpError> {
    loop {
        match rx.recv_timeout(WAIT).expect("a result in time") {
            (_, WorkResult::HttpEnd(end)) => return end,
            (_, WorkResult::HttpHead { .. } | WorkResult::HttpBody(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

const TELEGRAM: Dialing = Dialing {
    race: true,
    ipv4_first: false,
    attempt_delay: Some(TELEGRAM_ATTEMPT_DELAY),
    ipv4_only: false,
    pinned: None,
};

#[test]
fn raced_the_next_address_wins_after_the_requests_own_attempt_delay() {
    let (end, took, reached, _) = past_a_black_hole(TELEGRAM, Duration::from_secs(10));
    assert_eq!(end, Ok(()));
    assert_eq!(reached, 1);
    // Telegram's 300 ms, not the loop's 250.
    assert!(took >= TELEGRAM_ATTEMPT_DELAY, "{took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn without_the_race_only_the_first_address_is_tried_to_its_connect_timeout() {
    let off = Dialing {
        race: false,
        ..TELEGRAM
    };
    let connect_timeout = Duration::from_millis(1500);
    let (end, took, reached, port) = past_a_black_hole(off, connect_timeout);
    let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
    assert_eq!(
        end,
        Err(HttpError::new(
            HttpErrorKind::TimedOut,
            format!("cannot connect to api.test:{port} (127.0.0.2:{port}): {timed_out}")
        ))
    );
    assert_eq!(reached, 0, "the second address was never tried");
    assert!(took >= connect_timeout, "{took:?}");
    assert!(took < connect_timeout + Duration::from_secs(1), "{took:?}");
}

/// The core's Telegram transport attempts on the loop, as the driver runs them: a request
/// that fails at the transport goes again on the attempt the transport names.
fn through_the_transport(
    pool: &mut common::OnLoop,
    rx: &mpsc::Receiver<(WorkId, WorkResult)>,
    transport: &mut Transport,
    url: &str,
) -> (Vec<usize>, Vec<HttpError>, Result<(), String>) {
    let now = Instant::now();
    let notes = &mut Vec::new();
    let (start, mut next) = transport.begin(now, notes);
    let (mut tried, mut errors) = (Vec::new(), Vec::new());
    loop {
        let attempt = match next {
            Next::Try(attempt) => attempt,
            Next::Fail(error) => return (tried, errors, Err(error)),
        };
        tried.push(attempt);
        let id = WorkId(tried.len() as u64);
        let dialing = transport.dialing(attempt);
        pool.submit(
            id,
            HttpRequest {
                dialing,
                ..chat(url.to_owned())
            },
        );
        let at = Tried { start, attempt };
        match end_of(rx) {
            Ok(()) => {
                transport.succeeded(at, notes);
                return (tried, errors, Ok(()));
            }
            Err(e) => {
                next = transport.failed(now, at, &e, notes);
                errors.push(e);
            }
        }
    }
}

#[test]
fn a_black_holed_ipv6_address_fails_the_first_attempt_and_the_request_goes_through_ipv4_only() {
    // `autoSelectFamily: false`: the first address only, the IPv6 one, black-holed.
    let model = FakeModel::start(|_| Reply::text(&["reached"]));
    let port = model.addr().port();
    let _hole = BlackHole::at(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
    let lookup: LookupFn = Arc::new(|_: &str| Ok(vec![IpAddr::V6(Ipv6Addr::LOCALHOST), LOOPBACK]));
    let limits = HttpLimits {
        connect_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let (mut pool, rx) = client_with_lookup(limits, lookup);
    let primary = Dialing {
        race: false,
        ..TELEGRAM
    };
    let mut transport = Transport::new(primary, true);
    let url = format!("http://api.test:{port}/v1/chat/completions");
    let (tried, errors, end) = through_the_transport(&mut pool, &rx, &mut transport, &url);
    assert_eq!(end, Ok(()));
    assert_eq!(tried, [0, 1], "the primary, then IPv4 only");
    assert_eq!(errors[0].kind, HttpErrorKind::TimedOut, "{}", errors[0]);
    assert_eq!(model.requests().len(), 1);
    // Sticky: the next request goes IPv4 only at once.
    let (tried, _, end) = through_the_transport(&mut pool, &rx, &mut transport, &url);
    assert_eq!((tried, end), (vec![1], Ok(())));
    // Without the fallback (dnsResultOrder: verbatim), the request fails.
    let mut transport = Transport::new(primary, false);
    let (tried, _, end) = through_the_transport(&mut pool, &rx, &mut transport, &url);
    assert_eq!(tried, [0]);
    assert!(end.unwrap_err().contains("[::1]"));
}
