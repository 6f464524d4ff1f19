//! Hostile load, bounded in time: clients that never read against the gateway-wide budget,
//! slowloris heads, the pre-auth cap, a frame flood, connection churn, parallel wrong tokens,
//! and the remote lockout behind a trusted proxy. Through each, a legitimate client still
//! completes a handshake and a request within [`LEGIT`], and the gateway's memory and
//! descriptors stay bounded. Each attack prints its RSS (idle, peak, after) as a row of
//! BENCHMARKS.md's hostile-load table: run with `--nocapture` and keep the lines that start
//! with `|` (`scripts/hostile-table.sh` does, on release builds).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};
use clawgate_tests::both;
use clawgate_tests::harness::{Gateway, Options, Shell, Ws, raw};
use serde_json::{Value, json};

/// How long a legitimate client may take for its handshake and one request under attack: the
/// target is a second; half as much again for debug builds on a shared 2-core machine (the
/// old code took 2.4 s to 10 s and more here).
const LEGIT: Duration = Duration::from_millis(1_500);

/// One hostile case at a time: each loads the machine, and their clocks are measured.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Hold [`ONE_AT_A_TIME`] for a case (a case that failed before leaves it poisoned: still ours).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// CPU time a process has used (user and system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// Whether a process goes (nearly) idle, using at most one clock tick in 300 ms, within
/// `timeout`.
fn settles(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last = cpu_ticks(pid);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
        let now = cpu_ticks(pid);
        if now - last <= 1 {
            return true;
        }
        last = now;
    }
    false
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A fresh client's upgrade, handshake and one `health` call: how long it took to each, or
/// what failed.
fn legit_round_trip(gw: &Gateway) -> Result<[Duration; 3], String> {
    let started = Instant::now();
    let mut ws = Ws::try_connect(gw.port(), gw.cli()).map_err(|e| format!("{e:?}"))?;
    let upgraded = started.elapsed();
    match ws.try_hello() {
        Some(Ok(_)) => {}
        other => return Err(format!("no hello-ok within the wait: {other:?}")),
    }
    let hello = started.elapsed();
    match ws.try_call("health", None) {
        Some(Ok(_)) => {}
        other => return Err(format!("no health within the wait: {other:?}")),
    }
    Ok([upgraded, hello, started.elapsed()])
}

/// Assert that a legitimate client gets through within [`LEGIT`] while `what` goes on.
fn legit_gets_through(gw: &Gateway, what: &str) {
    let took = legit_round_trip(gw);
    assert!(
        took.as_ref().is_ok_and(|t| t[2] <= LEGIT),
        "{what}: a legitimate upgrade, hello-ok and health took {took:?}"
    );
}

/// Samples a process's RSS every few milliseconds until stopped; keeps the peak.
struct RssProbe {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<u64>,
}

impl RssProbe {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        Self { stop, handle }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("rss probe")
    }
}

/// A gateway's RSS around an attack: idle before it, the peak during it, and after it.
#[derive(Clone, Copy, Debug)]
struct Rss {
    idle: u64,
    peak: u64,
    after: u64,
}

/// Measures [`Rss`] around an attack, from [`Storm::begin`] to [`Storm::end`].
struct Storm {
    pid: u32,
    idle: u64,
    probe: RssProbe,
}

impl Storm {
    /// The attack begins: the idle figure now, the peak sampled from now on.
    fn begin(pid: u32) -> Self {
        Self {
            pid,
            idle: rss(pid),
            probe: RssProbe::start(pid),
        }
    }

    /// The attackers are gone: the settled figure (the lowest within [`SETTLE`], sampled from
    /// half a second on, so a loaded machine's late closes are not counted as kept memory),
    /// printed as a row of BENCHMARKS.md's hostile-load table
    /// (`attack | shell | idle | peak | after | note`), and asserted to be back within
    /// [`AFTER_STORM`] of the idle figure.
    fn end(self, shell: Shell, attack: &str, note: &str) -> Rss {
        let peak = self.probe.peak();
        let start = Instant::now();
        thread::sleep(Duration::from_millis(500));
        let mut after = rss(self.pid);
        while after > self.idle + MIB && start.elapsed() < SETTLE {
            thread::sleep(Duration::from_millis(250));
            after = after.min(rss(self.pid));
        }
        let figures = Rss {
            idle: self.idle,
            peak,
            after,
        };
        let mib = |b: u64| b as f64 / MIB as f64;
        eprintln!(
            "\n| {attack} | {shell:?} | {:.1} | {:.1} | {:.1} | {note} |",
            mib(figures.idle),
            mib(figures.peak),
            mib(figures.after)
        );
        assert!(
            figures.after <= figures.idle + AFTER_STORM,
            "{shell:?} after {attack}: RSS {figures:?}"
        );
        figures
    }
}

const MIB: u64 = 1024 * 1024;
/// How long after an attack its memory may take to be given back: the attackers' sockets
/// close and their queued answers are dropped within a second on a quiet machine, but a CI
/// machine running the other suites beside this one took longer than 3 s (smol, 12.5 MiB
/// still held at 3 s). The wait ends as soon as RSS is back within 1 MiB of idle.
const SETTLE: Duration = Duration::from_secs(10);
/// How far above its idle figure a gateway's RSS may stay once an attack is over (what the
/// allocator keeps of the memory the attack made it use).
const AFTER_STORM: u64 = 8 * MIB;
/// The gateway-wide budget (`gateway.maxBufferedBytesTotal`'s default).
const BUDGET: u64 = 64 * MIB;
const SLOW_CLIENTS: usize = 20;

/// Twenty authenticated clients ask for `logs.tail` (the whole ring of JSON lines; the
/// answer's size, measured before the attack, is in the label) in a loop and never read (the attack of issue 21): the gateway stops answering each once it holds its
/// slow-consumer share, its RSS stays under the budget plus its idle figure (the twenty
/// sessions open and quiet), and a legitimate client gets through meanwhile.
fn slow_consumers_against_the_budget(shell: Shell) {
    let _serial = one_at_a_time();
    let gw = Options::new().start(shell);
    let pid = gw.pid();
    fill_log_ring(&gw);
    let tail = json!({"limit": 1000, "maxBytes": 1_000_000});
    let tail_kb = logs_tail_kb(&gw, &tail);
    legit_gets_through(&gw, "idle");
    let port = gw.port();
    let hold = Arc::new(AtomicBool::new(true));
    let connected = Arc::new(Barrier::new(SLOW_CLIENTS + 1));
    let ready = Arc::new(Barrier::new(SLOW_CLIENTS + 1));
    let floods: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let (hold, connected, ready) = (hold.clone(), connected.clone(), ready.clone());
            let tail = tail.clone();
            thread::spawn(move || {
                let mut ws = Ws::connect(port, ClientConfig::cli(&format!("127.0.0.1:{port}")));
                ws.hello().expect("flooder hello-ok");
                ws.stream()
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .expect("write timeout");
                connected.wait();
                ready.wait();
                let started = Instant::now();
                for _ in 0..400 {
                    ws.client().request("logs.tail", Some(tail.clone()));
                    ws.flush();
                    if started.elapsed() > Duration::from_secs(4) {
                        break;
                    }
                }
                // Never read; keep the socket until the test has measured.
                while hold.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    // Idle: the twenty sessions are open and quiet.
    connected.wait();
    thread::sleep(Duration::from_millis(200));
    let storm = Storm::begin(pid);
    ready.wait();
    // Each flooder is answered until it holds more than the slow-consumer threshold unsent
    // (the cut of the biggest past the budget is shown in the core's simulation tests); then
    // the gateway has nothing to do for them, though they are still connected.
    // Before, it went on building answers they would never read, and a legitimate client
    // got no hello-ok at all.
    assert!(
        settles(pid, Duration::from_secs(20)),
        "the gateway kept working for clients that do not read"
    );
    let during = legit_round_trip(&gw);
    hold.store(false, Ordering::Relaxed);
    for f in floods {
        f.join().expect("flooder");
    }
    let cut = gw.stderr().matches("slow consumer").count();
    let Rss { idle, peak, .. } = storm.end(
        shell,
        &format!("20 clients loop `logs.tail` ({tail_kb} KB) and never read"),
        &format!("{cut} cut"),
    );
    assert!(
        during.as_ref().is_ok_and(|t| t[2] <= LEGIT),
        "among 20 slow consumers, a legitimate upgrade, hello-ok and health took {during:?}"
    );
    assert!(
        peak <= idle + BUDGET,
        "peak RSS {peak} passed idle {idle} + budget {BUDGET}"
    );
    thread::sleep(Duration::from_millis(500));
    legit_gets_through(&gw, "after the storm");
}

/// The gateway-wide budget, configured small (2.5 MB) so that three clients that never read
/// pass it together though two do not (each is answered, past what the kernel buffers, until
/// it holds its 1 MiB slow-consumer share): the biggest queue is cut as a slow consumer,
/// 1008, and only it; the others, once they read, get every answer and go on; a legitimate
/// client gets through meanwhile; RSS during and after the storm stays near the idle figure.
fn budget_cuts_the_biggest(shell: Shell) {
    const FLOODERS: usize = 3;
    const REQUESTS: usize = 70;
    let _serial = one_at_a_time();
    let budget: u64 = 2_500_000;
    let config = json!({"gateway": {"maxBufferedBytesTotal": budget}});
    let gw = Options::new().config(&config.to_string()).start(shell);
    let pid = gw.pid();
    fill_log_ring(&gw);
    let mut flooders: Vec<Ws> = (0..FLOODERS)
        .map(|_| {
            let mut ws = gw.ws(gw.cli());
            ws.hello().expect("flooder hello-ok");
            ws
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let storm = Storm::begin(pid);
    let tail = json!({"limit": 1000, "maxBytes": 1_000_000});
    let sent: Vec<Vec<String>> = flooders
        .iter_mut()
        .map(|ws| {
            let ids = (0..REQUESTS)
                .map(|_| ws.client().request("logs.tail", Some(tail.clone())))
                .collect();
            ws.flush();
            ids
        })
        .collect();
    assert!(
        settles(pid, Duration::from_secs(20)),
        "the gateway kept working for clients that do not read"
    );
    legit_gets_through(&gw, "three slow consumers past the budget");
    // Now they read: a cut one finds its close, the others every answer.
    let mut cut = 0;
    for (ws, ids) in flooders.iter_mut().zip(&sent) {
        let mut answered = 0;
        let end = ws.first(
            |e| match e {
                Event::Response { id, .. } if ids.contains(id) => {
                    answered += 1;
                    (answered == ids.len()).then_some(None)
                }
                Event::Closed { code, reason } => Some(Some((*code, reason.clone()))),
                _ => None,
            },
            &mut Vec::new(),
        );
        match end {
            Some(None) => {
                let health = ws.try_call("health", None);
                assert!(
                    matches!(health, Some(Ok(_))),
                    "a flooder under the budget, answered in full, then: {health:?}"
                );
            }
            Some(Some(close)) => {
                cut += 1;
                assert!(
                    close.0.is_none() || close == (Some(1008), "slow consumer".into()),
                    "a cut flooder saw {close:?}"
                );
            }
            None => panic!("a flooder got {answered} of {REQUESTS} answers and no close"),
        }
    }
    drop(flooders);
    let Rss { idle, peak, after } = storm.end(
        shell,
        "3 clients never read, `maxBufferedBytesTotal` 2.5 MB",
        &format!("{cut} cut"),
    );
    let logged = gw
        .stderr()
        .matches("over gateway.maxBufferedBytesTotal")
        .count();
    assert_eq!(cut, 1, "flooders cut (the budget holds two of them)");
    assert_eq!(logged, cut, "cuts logged vs. seen by the clients");
    // At the peak the budget is queued besides answers being built; after it nothing is,
    // and what the allocator keeps must stay under the budget.
    assert!(
        peak <= idle + 4 * budget && after <= idle + budget,
        "RSS idle {idle}, peak {peak}, after {after}"
    );
}

/// What the host logs (at debug) when it returns freed memory to the system.
const TRIMMED: &str = "memory: returned freed pages to the system";

/// A flood of large answers is socket traffic alone (no worker, no store write): the memory
/// it freed is still returned once the gateway has been quiet, as after a burst of work.
/// Without that, what glibc kept of it stayed for good, and how much depended on how the
/// frees interleaved: `budget_cuts_the_biggest` read idle + 0.4-0.7 MB after its storm here,
/// and idle + 3.08 MB, past its 2.5 MB bound, once in CI.
fn memory_returned_after_a_flood_of_answers(shell: Shell) {
    let _serial = one_at_a_time();
    let gw = Options::new().arg("--log-level").arg("debug").start(shell);
    fill_log_ring(&gw);
    // Start-up (and the handshakes above) may have their own trim: wait for the gateway to
    // be quiet past it.
    assert!(
        settles(gw.pid(), Duration::from_secs(20)),
        "the gateway kept working after the handshakes"
    );
    thread::sleep(Duration::from_secs(2));
    let before = gw.stderr().matches(TRIMMED).count();
    let mut ws = gw.ws(gw.cli());
    ws.hello().expect("hello-ok");
    let tail = json!({"limit": 1000, "maxBytes": 1_000_000});
    for _ in 0..20 {
        ws.call("logs.tail", Some(tail.clone())).expect("logs.tail");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.stderr().matches(TRIMMED).count() <= before {
        assert!(
            Instant::now() < deadline,
            "{shell:?}: no memory returned within 10 s of 20 `logs.tail` answers"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Handshakes until the gateway's log ring (1,000 lines) is full, so `logs.tail` is large.
/// The size of the `logs.tail` answer to `params`, in KB (its payload's JSON text).
fn logs_tail_kb(gw: &Gateway, params: &Value) -> usize {
    let mut ws = Ws::connect(gw.port(), gw.cli());
    ws.hello().expect("hello-ok");
    let answer = ws
        .call("logs.tail", Some(params.clone()))
        .expect("logs.tail");
    answer.to_string().len() / 1000
}

fn fill_log_ring(gw: &Gateway) {
    let port = gw.port();
    let until = Instant::now() + Duration::from_secs(2);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                while Instant::now() < until {
                    let mut ws = Ws::connect(port, ClientConfig::cli(&format!("127.0.0.1:{port}")));
                    ws.hello().expect("hello-ok");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("log filler");
    }
}

/// A hundred sockets dribble their HTTP head a byte at a time: a legitimate client gets
/// through meanwhile, and the dribblers are dropped at the handshake timeout.
fn slowloris(shell: Shell) {
    let _serial = one_at_a_time();
    let gw = Options::new()
        .env("OPENCLAW_HANDSHAKE_TIMEOUT_MS", "1500")
        .start(shell);
    let head = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        gw.port()
    );
    let storm = Storm::begin(gw.pid());
    let mut socks: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.port())).expect("connect"))
        .collect();
    let started = Instant::now();
    let mut cut = 0;
    for byte in head.bytes().take(12) {
        for s in &mut socks {
            let _ = s.write_all(&[byte]);
        }
        thread::sleep(Duration::from_millis(100));
    }
    legit_gets_through(&gw, "100 slowloris heads");
    // Past the timeout, every dribbler has been dropped (a write or read sees the end).
    thread::sleep(
        Duration::from_millis(1_500).saturating_sub(started.elapsed()) + Duration::from_millis(700),
    );
    for s in &mut socks {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        if matches!(std::io::Read::read(s, &mut buf), Ok(0) | Err(_)) {
            cut += 1;
        }
    }
    assert_eq!(
        cut,
        socks.len(),
        "dribblers left open past the handshake timeout"
    );
    drop(socks);
    storm.end(shell, "100 slowloris heads (a byte per 100 ms)", "");
    legit_gets_through(&gw, "after the slowloris");
}

/// Sockets that upgrade and never send `connect` fill the per-address pre-auth cap: the
/// next upgrade is refused, and once one of them goes, a legitimate client gets through.
fn preauth_cap(shell: Shell) {
    let _serial = one_at_a_time();
    let gw = Options::new()
        .env("OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP", "8")
        .start(shell);
    let port = gw.port();
    let mut idle: Vec<Ws> = (0..8)
        .map(|_| {
            let mut c = ClientConfig::cli(&format!("127.0.0.1:{port}"));
            c.manual_connect = true;
            let mut ws = Ws::connect(port, c);
            ws.expect("the challenge", |e| {
                matches!(e, Event::Challenge { .. }).then_some(())
            });
            ws
        })
        .collect();
    let mut refused = gw.ws(gw.cli());
    let outcome = refused.first(
        |e| match e {
            Event::HttpRefused { status, .. } => Some(*status),
            Event::Hello(_) => Some(101),
            _ => None,
        },
        &mut Vec::new(),
    );
    assert!(
        outcome.is_some_and(|s| s != 101),
        "a ninth pre-auth socket was let in: {outcome:?}"
    );
    drop(idle.pop());
    thread::sleep(Duration::from_millis(100));
    legit_gets_through(&gw, "a full pre-auth cap with one slot freed");
}

/// One client writes 20,000 requests at once (and reads its answers only later): a
/// legitimate client gets through meanwhile, and the flooder is answered in full.
fn frame_flood(shell: Shell) {
    let _serial = one_at_a_time();
    let gw = Options::new().start(shell);
    let mut flood = gw.ws(gw.cli());
    flood.hello().expect("flooder hello-ok");
    let storm = Storm::begin(gw.pid());
    for _ in 0..20_000 {
        flood.client().request("health", None);
    }
    let last = flood.client().request("health", None);
    let mut bytes = Vec::new();
    while let Some(b) = flood.client().poll_transmit() {
        bytes.extend(b);
    }
    let mut out = flood
        .stream()
        .try_clone()
        .expect("clone the flooder's socket");
    let writer = thread::spawn(move || out.write_all(&bytes));
    thread::sleep(Duration::from_millis(100));
    legit_gets_through(&gw, "a 20,000-frame flood");
    let answered = flood.first(
        |e| matches!(e, Event::Response { id, .. } if *id == last).then_some(()),
        &mut Vec::new(),
    );
    assert!(
        answered.is_some(),
        "the flood's last request went unanswered"
    );
    writer.join().expect("flood writer").expect("flood written");
    drop(flood);
    storm.end(
        shell,
        "one client writes 20,000 `health` frames at once",
        "",
    );
}

/// Churn: clients connect, finish their handshake and leave, from 8 threads at once. The
/// descriptors the gateway holds stay bounded by what is open, not by what has closed.
fn churn(shell: Shell) {
    let _serial = one_at_a_time();
    let (peak, _) = churn_fds(shell);
    // 8 open at a time, plus the listener, the store, logs and workers; closed sockets
    // must not pile up (smol held ~1,000 of them before).
    assert!(peak <= 64, "{shell:?} held {peak} descriptors under churn");
}

/// Run a churn against `shell`: the peak and the idle count of its descriptors.
fn churn_fds(shell: Shell) -> (usize, usize) {
    let gw = Options::new().start(shell);
    let pid = gw.pid();
    legit_gets_through(&gw, "idle");
    let idle = fds(pid);
    let port = gw.port();
    let storm = Storm::begin(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut ws = Ws::connect(port, ClientConfig::cli(&format!("127.0.0.1:{port}")));
                    ws.hello().expect("churn hello-ok");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        peak = peak.max(fds(pid));
        thread::sleep(Duration::from_millis(2));
    }
    legit_gets_through(&gw, "churn");
    stop.store(true, Ordering::Relaxed);
    let cycles: usize = workers
        .into_iter()
        .map(|w| w.join().expect("churner"))
        .sum();
    storm.end(
        shell,
        "churn: 8 threads connect, handshake, leave (4 s)",
        &format!("{cycles} handshakes; descriptors idle {idle}, peak {peak}"),
    );
    assert!(cycles > 100, "only {cycles} handshakes in 4 s");
    (peak, idle)
}

/// Four wrong tokens at once from one address are answered no sooner than four in a row
/// would be (250, 500, 1000 ms apart…), and the right token then gets in.
fn parallel_wrong_tokens(shell: Shell) {
    let _serial = one_at_a_time();
    let gw = Options::new().token("right-token").start(shell);
    let port = gw.port();
    let start = Arc::new(Barrier::new(4));
    let began = Instant::now();
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = ClientConfig::cli(&format!("127.0.0.1:{port}"));
                c.token = Some("wrong-token".into());
                let mut ws = Ws::connect(port, c);
                start.wait();
                let outcome = ws.hello();
                assert!(outcome.is_err(), "a wrong token was let in");
                Instant::now()
            })
        })
        .collect();
    let mut answered: Vec<Duration> = attempts
        .into_iter()
        .map(|a| a.join().expect("attempt") - began)
        .collect();
    answered.sort();
    let mut due = Duration::ZERO;
    for (at, penalty) in answered.iter().zip([250, 500, 1000, 2000]) {
        due += Duration::from_millis(penalty);
        assert!(
            *at >= due,
            "answered at {at:?}, before {due:?}: {answered:?}"
        );
    }
    let mut ok = gw.ws(ClientConfig {
        token: Some("right-token".into()),
        ..gw.cli()
    });
    ok.hello().expect("the right token after the wrong ones");
}

/// One `connect` through a trusted proxy for `client` (X-Forwarded-For) with `token`: the
/// error's `details.code`, or `None` on hello-ok.
fn connect_forwarded(port: u16, client: &str, token: &str) -> Option<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut cfg = ClientConfig::cli(&format!("127.0.0.1:{port}"));
    cfg.token = Some(token.into());
    let answer = raw::connect_over(tcp, &cfg.host.clone(), &[("x-forwarded-for", client)], &cfg)
        .expect("upgrade through the proxy");
    (answer["ok"] != true).then(|| {
        answer["error"]["details"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    })
}

/// `gateway.auth.rateLimit` applies to a remote client (here behind a trusted proxy): its
/// failures are answered at once, no local penalty, and after `maxAttempts` even the right
/// token is refused for the lockout, while another address is not affected.
fn remote_lockout(shell: Shell) {
    let _serial = one_at_a_time();
    let config = json!({"gateway": {
        "trustedProxies": ["127.0.0.1"],
        "auth": {"rateLimit": {"maxAttempts": 3, "windowMs": 60_000, "lockoutMs": 60_000}},
    }});
    let gw = Options::new()
        .token("right-token")
        .config(&config.to_string())
        .start(shell);
    let port = gw.port();
    let started = Instant::now();
    for _ in 0..3 {
        let code = connect_forwarded(port, "203.0.113.9", "wrong-token");
        assert_eq!(code.as_deref(), Some("AUTH_TOKEN_MISMATCH"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(750),
        "remote failures were held back like local ones: {:?}",
        started.elapsed()
    );
    let locked = connect_forwarded(port, "203.0.113.9", "right-token");
    assert_eq!(locked.as_deref(), Some("AUTH_RATE_LIMITED"));
    assert_eq!(connect_forwarded(port, "203.0.113.10", "right-token"), None);
}

/// smol's descriptors under churn stay within twice mio's.
#[test]
fn churn_fds_of_smol_within_twice_mio() {
    let _serial = one_at_a_time();
    let (mio, _) = churn_fds(Shell::Mio);
    let (smol, _) = churn_fds(Shell::Smol);
    assert!(
        smol <= 2 * mio,
        "under churn smol held {smol} descriptors, mio {mio}"
    );
}

both!(
    slow_consumers_against_the_budget,
    budget_cuts_the_biggest,
    memory_returned_after_a_flood_of_answers,
    slowloris,
    preauth_cap,
    frame_flood,
    churn,
    parallel_wrong_tokens,
    remote_lockout,
);
