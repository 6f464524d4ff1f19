//! Telegram's transport attempts (`core/src/channels/telegram/transport.rs`): which attempt a
//! Bot API call uses, stickiness, cooldowns and the primary's probe, driven with instants from
//! the test (the core reads no clock).

use std::time::{Duration, Instant};

use clawgate_core::channels::telegram::transport::*;
use clawgate_core::model::Dialing;
use clawgate_core::{HttpError, HttpErrorKind, Level};

fn transport() -> Transport {
    Transport::new(Dialing::default(), true)
}

fn error(kind: HttpErrorKind) -> HttpError {
    HttpError::new(kind, format!("{kind:?}"))
}

/// Run one request at `now` whose attempts fail with `fail(attempt)` (`None`: answered):
/// the attempts tried, and whether it was answered.
fn request(
    t: &mut Transport,
    now: Instant,
    fail: impl Fn(usize) -> Option<HttpErrorKind>,
) -> (Vec<usize>, Result<(), String>) {
    let notes = &mut Vec::new();
    let (start, mut next) = t.begin(now, notes);
    let mut tried = Vec::new();
    loop {
        match next {
            Next::Fail(e) => return (tried, Err(e)),
            Next::Try(attempt) => {
                tried.push(attempt);
                let at = Tried { start, attempt };
                match fail(attempt) {
                    None => {
                        t.succeeded(at, notes);
                        return (tried, Ok(()));
                    }
                    Some(kind) => next = t.failed(now, at, &error(kind), notes),
                }
            }
        }
    }
}

#[test]
fn a_transport_error_moves_to_ipv4_only_then_to_the_pinned_address_and_stays() {
    let mut t = transport();
    let now = Instant::now();
    let only_pinned = |a: usize| (a < 2).then_some(HttpErrorKind::TimedOut);
    assert_eq!(request(&mut t, now, only_pinned), (vec![0, 1, 2], Ok(())));
    // Upstream's lines: IPv4 only at debug, the pinned address as a warning.
    let notes = &mut Vec::new();
    let mut u = transport();
    let (start, _) = u.begin(now, notes);
    let e = error(HttpErrorKind::TimedOut);
    u.failed(now, Tried { start, attempt: 0 }, &e, notes);
    u.failed(now, Tried { start, attempt: 1 }, &e, notes);
    let levels: Vec<Level> = notes.iter().map(|n| n.level).collect();
    assert_eq!(levels, [Level::Debug, Level::Warn]);
    assert_eq!(
        notes[1].text,
        "fetch fallback: primary connection path failed; trying alternative Telegram API IP (TimedOut)"
    );
    assert_eq!(t.sticky(), 2);
    let d = t.dialing(2);
    assert!(!d.race && d.ipv4_only && d.ipv4_first);
    assert_eq!(d.pinned_for("API.telegram.org."), Some(&FALLBACK_IPS[..]));
    assert_eq!(d.pinned_for("api.telegram.test"), None);
    assert_eq!(t.dialing(1).pinned, None);
    // Sticky: the next request starts on the pinned address.
    assert_eq!(request(&mut t, now, only_pinned), (vec![2], Ok(())));
    // An unreachable network or a closed connection fall back too.
    for kind in [HttpErrorKind::Unreachable, HttpErrorKind::Closed] {
        let mut t = transport();
        assert_eq!(request(&mut t, now, |a| (a == 0).then_some(kind)).0, [0, 1]);
        assert_eq!(t.sticky(), 1);
    }
}

#[test]
fn an_api_or_other_error_does_not_fall_back() {
    for kind in [
        HttpErrorKind::Refused,
        HttpErrorKind::Lookup,
        HttpErrorKind::Tls,
        HttpErrorKind::Reset,
        HttpErrorKind::IdleTimeout,
        HttpErrorKind::Cancelled,
    ] {
        let mut t = transport();
        let (tried, end) = request(&mut t, Instant::now(), |_| Some(kind));
        assert_eq!((tried, end), (vec![0], Err(format!("{kind:?}"))));
        assert_eq!(t.sticky(), 0);
    }
}

#[test]
fn without_the_fallback_there_is_one_attempt() {
    let mut t = Transport::new(Dialing::default(), false);
    let timed_out = |_| Some(HttpErrorKind::TimedOut);
    let (tried, end) = request(&mut t, Instant::now(), timed_out);
    assert_eq!((tried, end), (vec![0], Err("TimedOut".into())));
    assert!(!t.has_fallback());
}

#[test]
fn after_five_successes_on_a_fallback_the_primary_is_probed_and_taken_back() {
    let mut t = transport();
    let now = Instant::now();
    let primary_down = |a: usize| (a == 0).then_some(HttpErrorKind::Unreachable);
    // The first success on attempt 2 counts.
    assert_eq!(request(&mut t, now, primary_down).0, [0, 1]);
    for _ in 1..PROBE_AFTER_SUCCESSES {
        assert_eq!(request(&mut t, now, primary_down).0, [1]);
    }
    // The probe: the primary first, still down, so on to the sticky one.
    assert_eq!(request(&mut t, now, primary_down).0, [0, 1]);
    assert_eq!(t.sticky(), 1);
    for _ in 1..PROBE_AFTER_SUCCESSES {
        assert_eq!(request(&mut t, now, primary_down).0, [1]);
    }
    // The primary is back: the probe answers, and requests stay there.
    assert_eq!(request(&mut t, now, |_| None).0, [0]);
    assert_eq!(t.sticky(), 0);
    assert_eq!(request(&mut t, now, |_| None).0, [0]);
}

#[test]
fn five_failures_in_a_row_cool_an_attempt_down_for_10_s_doubling_to_60() {
    let mut t = Transport::new(Dialing::default(), false);
    let mut now = Instant::now();
    let down = |_| Some(HttpErrorKind::TimedOut);
    for cooldown in [10, 20, 40, 60, 60] {
        for _ in 0..FAILURE_THRESHOLD {
            assert_eq!(request(&mut t, now, down).0, [0]);
        }
        // Cooling: the request fails without a try.
        let (tried, end) = request(&mut t, now, down);
        assert!(tried.is_empty());
        let expected = format!("retry after {}ms", cooldown * 1000);
        assert!(end.unwrap_err().ends_with(&expected), "{cooldown}");
        now += Duration::from_secs(cooldown - 1);
        assert!(request(&mut t, now, down).0.is_empty());
        now += Duration::from_secs(1);
    }
    // A success resets it.
    assert_eq!(request(&mut t, now, |_| None).0, [0]);
    for _ in 0..FAILURE_THRESHOLD {
        assert_eq!(request(&mut t, now, down).0, [0]);
    }
    let (_, end) = request(&mut t, now, down);
    assert!(end.unwrap_err().ends_with("retry after 10000ms"));
}

#[test]
fn cooling_attempts_are_skipped_and_a_cooling_sticky_one_probes_the_primary() {
    let now = Instant::now();
    // Only the pinned address answers: every fifth request probes from the primary,
    // until the primary and IPv4-only attempts cool down (five failures each); then the
    // probe skips both.
    let mut t = transport();
    let pinned_only = |a: usize| (a < 2).then_some(HttpErrorKind::TimedOut);
    let tried: Vec<Vec<usize>> = (0..26)
        .map(|_| request(&mut t, now, pinned_only).0)
        .collect();
    let expected: Vec<Vec<usize>> = (0..26)
        .map(|i| {
            if i % 5 == 0 && i < 25 {
                vec![0, 1, 2]
            } else {
                vec![2]
            }
        })
        .collect();
    assert_eq!(tried, expected);

    // The sticky pinned attempt cools down: the next request probes the primary, which
    // is back, and takes requests back.
    let mut t = transport();
    assert_eq!(request(&mut t, now, pinned_only).0, [0, 1, 2]);
    let all_down = |_| Some(HttpErrorKind::TimedOut);
    for _ in 0..FAILURE_THRESHOLD {
        assert_eq!(request(&mut t, now, all_down).0, [2]);
    }
    assert_eq!(request(&mut t, now, |_| None).0, [0]);
    assert_eq!(t.sticky(), 0);

    // Every attempt down: once all three cool, a request fails untried.
    let mut t = transport();
    let tried: Vec<Vec<usize>> = (0..10).map(|_| request(&mut t, now, all_down).0).collect();
    assert_eq!(tried[0], [0, 1, 2]);
    assert_eq!(tried[1..5], [[2], [2], [2], [2]]);
    assert_eq!(tried[5..9], [[0, 1], [0, 1], [0, 1], [0, 1]]);
    assert!(tried[9].is_empty());
    let (_, end) = request(&mut t, now, all_down);
    assert!(
        end.unwrap_err()
            .starts_with("Telegram transport attempts are cooling down")
    );
}
