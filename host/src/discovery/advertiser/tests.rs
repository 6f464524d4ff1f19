//! The advertiser against scripted responders: every failure injected, every wait bounded.

use std::sync::Mutex;
use std::time::Instant;

use clawgate_core::discovery::SERVICE_TYPE;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Register,
    Health,
    Unregister,
}

type Calls = Arc<Mutex<Vec<(Call, Instant)>>>;

/// A responder that does what its script says and records every call.
#[derive(Default)]
struct Scripted {
    calls: Calls,
    /// Registrations that fail before the first success (`usize::MAX`: all of them).
    failing_registers: usize,
    /// Health checks (1-based) that fail.
    failing_health: Vec<usize>,
    /// How long each registration takes.
    register_takes: Duration,
    /// Panic in `register`.
    panics: bool,
}

impl Scripted {
    fn count(&self, call: Call) -> usize {
        self.calls
            .lock()
            .expect("calls lock")
            .iter()
            .filter(|(c, _)| *c == call)
            .count()
    }

    fn record(&self, call: Call) -> usize {
        let mut calls = self.calls.lock().expect("calls lock");
        calls.push((call, Instant::now()));
        calls.iter().filter(|(c, _)| *c == call).count()
    }
}

impl Responder for Scripted {
    fn register(&mut self, _: &Advert) -> Result<(), DiscoveryError> {
        let n = self.record(Call::Register);
        assert!(!self.panics, "scripted panic");
        thread::sleep(self.register_takes);
        if n <= self.failing_registers {
            return Err(DiscoveryError::Runtime(std::io::Error::other(
                "no multicast route",
            )));
        }
        Ok(())
    }

    fn health(&mut self) -> Result<Health, DiscoveryError> {
        let n = self.record(Call::Health);
        if self.failing_health.contains(&n) {
            Err(DiscoveryError::Stopped)
        } else {
            Ok(Health::Ok)
        }
    }

    fn unregister(&mut self) {
        self.record(Call::Unregister);
    }
}

/// A responder sharing its call log with the test.
fn scripted() -> (Scripted, Scripted) {
    let calls = Calls::default();
    let view = Scripted {
        calls: Arc::clone(&calls),
        ..Scripted::default()
    };
    (
        Scripted {
            calls,
            ..Scripted::default()
        },
        view,
    )
}

fn advert() -> Advert {
    Advert {
        service_type: SERVICE_TYPE.into(),
        instance_name: "pi5 (OpenClaw)".into(),
        host_label: "pi5".into(),
        port: 18789,
        address: None,
        txt: vec![("role".into(), "gateway".into())],
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        first_retry: Duration::from_millis(10),
        max_retry: Duration::from_millis(40),
        health_every: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(2),
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn logger() -> (Lines, impl Fn(String) + Send + 'static) {
    let lines = Lines::default();
    let sink = Arc::clone(&lines);
    (lines, move |line: String| {
        sink.lock().expect("log lock").push(line)
    })
}

fn lines(l: &Lines) -> Vec<String> {
    l.lock().expect("log lock").clone()
}

/// Poll `done` every 5 ms for at most 5 s.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn backoff_doubles_to_the_cap_and_resets() {
    let mut b = Backoff::new(&RetryPolicy::default());
    let secs: Vec<u64> = (0..11).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_secs(1));
}

#[test]
fn an_outage_is_logged_once_and_its_end_counts_the_failures() {
    let mut outage = Outage::default();
    let e = || DiscoveryError::Stopped;
    let first = outage
        .failed(&e(), &advert(), &RetryPolicy::default())
        .expect("first failure is logged");
    assert!(
        first.contains("mDNS responder stopped") && first.contains("keeps serving"),
        "{first}"
    );
    assert_eq!(
        outage.failed(&e(), &advert(), &RetryPolicy::default()),
        None
    );
    assert_eq!(
        outage.failed(&e(), &advert(), &RetryPolicy::default()),
        None
    );
    let end = outage.recovered(&advert()).expect("recovery is logged");
    assert!(end.ends_with("after 3 failed attempts"), "{end}");
    assert_eq!(outage.recovered(&advert()), None);
    assert!(outage.is_clear());
}

#[test]
fn a_failing_responder_is_logged_once_and_retried_with_backoff() {
    let (mut responder, view) = scripted();
    responder.failing_registers = usize::MAX;
    let (log, sink) = logger();
    let handle = spawn_advertiser_with(responder, advert(), sink, fast());
    eventually("eight attempts", || view.count(Call::Register) >= 8);
    let stopping = Instant::now();
    assert!(
        handle.shutdown(),
        "the thread ended within the grace period"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        stopping.elapsed()
    );

    let logged = lines(&log);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("no multicast route"), "{logged:?}");
    let calls = view.calls.lock().expect("calls lock").clone();
    let registers: Vec<Instant> = calls
        .iter()
        .filter(|(c, _)| *c == Call::Register)
        .map(|(_, t)| *t)
        .collect();
    let gaps: Vec<Duration> = registers.windows(2).map(|w| w[1] - w[0]).collect();
    let floors = [10, 20, 40, 40, 40, 40, 40].map(Duration::from_millis);
    for (gap, floor) in gaps.iter().zip(floors) {
        assert!(
            *gap >= floor,
            "gap {gap:?} shorter than the backoff {floor:?}: {gaps:?}"
        );
    }
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(40) * 10),
        "a gap far past the cap: {gaps:?}"
    );
    assert_eq!(
        calls.last().map(|(c, _)| *c),
        Some(Call::Unregister),
        "a failed attempt leaves nothing registered"
    );
    assert_eq!(view.count(Call::Unregister), view.count(Call::Register));
}

#[test]
fn recovery_is_logged_once_with_the_number_of_failures() {
    let (mut responder, view) = scripted();
    responder.failing_registers = 3;
    let (log, sink) = logger();
    let handle = spawn_advertiser_with(responder, advert(), sink, fast());
    eventually("two health checks", || view.count(Call::Health) >= 2);
    drop(handle);
    let logged = lines(&log);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged[0].starts_with("mDNS: cannot advertise \"pi5 (OpenClaw)\""),
        "{logged:?}"
    );
    assert!(logged[1].ends_with("after 3 failed attempts"), "{logged:?}");
    assert_eq!(view.count(Call::Register), 4);
}

#[test]
fn a_failed_health_check_unregisters_and_registers_again() {
    let (mut responder, view) = scripted();
    responder.failing_health = vec![2];
    let (log, sink) = logger();
    let handle = spawn_advertiser_with(responder, advert(), sink, fast());
    eventually("a healthy check after the failure", || {
        view.count(Call::Health) >= 3
    });
    drop(handle);
    let calls: Vec<Call> = view
        .calls
        .lock()
        .expect("calls lock")
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let expected = [
        Call::Register,
        Call::Health,
        Call::Health,
        Call::Unregister,
        Call::Register,
        Call::Health,
    ];
    assert_eq!(
        calls.get(..expected.len()),
        Some(&expected[..]),
        "{calls:?}"
    );
    let logged = lines(&log);
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert!(
        logged[0].starts_with(
            "mDNS: advertising \"pi5 (OpenClaw)\" (_openclaw-gw._tcp.local. port 18789)"
        )
    );
    assert!(logged[1].contains("mDNS responder stopped"), "{logged:?}");
    assert!(logged[2].ends_with("after 1 failed attempt"), "{logged:?}");
}

#[test]
fn dropping_the_handle_unregisters() {
    let (responder, view) = scripted();
    let (_log, sink) = logger();
    let handle = spawn_advertiser_with(responder, advert(), sink, fast());
    eventually("a health check", || view.count(Call::Health) >= 1);
    drop(handle);
    let calls = view.calls.lock().expect("calls lock").clone();
    assert_eq!(calls.last().map(|(c, _)| *c), Some(Call::Unregister));
    assert_eq!(view.count(Call::Unregister), 1);
}

#[test]
fn spawning_never_waits_and_shutdown_is_bounded_when_the_responder_hangs() {
    let (mut responder, view) = scripted();
    responder.register_takes = Duration::from_secs(2);
    let (_log, sink) = logger();
    let policy = RetryPolicy {
        shutdown_grace: Duration::from_millis(100),
        ..fast()
    };
    let spawning = Instant::now();
    let handle = spawn_advertiser_with(responder, advert(), sink, policy);
    assert!(
        spawning.elapsed() < Duration::from_millis(100),
        "spawn took {:?}",
        spawning.elapsed()
    );
    eventually("the registration to start", || {
        view.count(Call::Register) == 1
    });
    let stopping = Instant::now();
    assert!(!handle.shutdown(), "a hung responder cannot end in 100 ms");
    assert!(
        stopping.elapsed() < Duration::from_millis(1000),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_panicking_responder_is_contained_and_logged() {
    let (mut responder, view) = scripted();
    responder.panics = true;
    let (log, sink) = logger();
    let handle = spawn_advertiser_with(responder, advert(), sink, fast());
    eventually("the panic to be logged", || !lines(&log).is_empty());
    assert!(handle.shutdown(), "the thread ended");
    let logged = lines(&log);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].contains("failed internally: scripted panic"),
        "{logged:?}"
    );
    assert_eq!(view.count(Call::Register), 1, "no retry after a panic");
}
