//! What one channel turn costs in wake-ups: a Telegram DM answered by the agent wakes the
//! gateway's threads for the long poll's answer, the model's request and answer, the store's
//! commit and its acknowledgement, the `sendMessage` and the next long poll, and for little
//! else. Counted per thread as voluntary context switches (`/proc/PID/task/*/status`: the
//! times a thread slept, so its wake-ups) whatever the machine's load, unlike time: a wake-up
//! handed from thread to thread is also a hop's latency. And an operator's requests: answered
//! on the loop's thread, they wake no other.

use std::time::Duration;

use clawgate_tests::both;
use clawgate_tests::fake_api::poll_for;
use clawgate_tests::fake_model::FakeModel;
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::harness::{Options, Shell, WAIT};
use clawgate_tests::threads::{self, Switches};
use serde_json::json;

use crate::idle::{BOT_TOKEN, with_telegram_dms};

/// DMs timed, one after the other (each answered before the next).
const TURNS: u64 = 10;

/// Wake-ups (voluntary context switches, every thread) one turn may cost, either shell: the
/// loop's thread wakes for each answer the HTTP loop reads and each store acknowledgement,
/// the store's thread for each commit; the rest is room for how the store's lingering
/// writes fall on a loaded machine (a model's answer that misses the linger costs a second
/// commit and its acknowledgement). A busy loop or a timer re-armed per event costs more.
///
/// Measured here (load average 3-5, 10 turns, five runs): release builds mio 9.8-14.1 a
/// turn, clawgate-smol 13.6-17.6 while async-io's thread watched the HTTP loop's poller for
/// the driver (3.5-4.3 of those wake-ups a turn were that thread's: each answer the loop
/// read woke it, and it woke the driver's) and 10.2-13.9 since the driver's thread waits on
/// the poller itself; debug builds mio 10.5-12.7, clawgate-smol 10.0-11.9.
const MAX_WAKEUPS_PER_TURN: u64 = 20;

/// async-io's thread (clawgate-smol's reactor, which has only the socket tasks' few timers to
/// watch): a channel turn wakes it for nothing (measured: 0 in 10 turns; 35-43 when it
/// watched the HTTP loop's poller).
const REACTOR_THREAD: &str = "async-io";
/// Its wake-ups in all [`TURNS`] at most: room for a stray timer of a socket task.
const MAX_REACTOR_WAKEUPS: u64 = TURNS / 2;

/// After a first DM (connections opened, caches warm), [`TURNS`] more DMs one after the
/// other: every thread's wake-ups are printed, their total per turn stays within
/// [`MAX_WAKEUPS_PER_TURN`], and async-io's thread sleeps through them.
fn wakeups_per_telegram_turn(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw = with_telegram_dms(Options::new(), &model, &tg).start(shell);
    tg.wait_calls("getUpdates", 1);
    answer(&tg, "warm-up", 1);
    std::thread::sleep(Duration::from_millis(300));
    let pid = gw.pid();
    let before = threads::of_process(pid, Switches::Voluntary);
    for n in 0..TURNS {
        answer(&tg, &format!("turn {n}"), 2 + n as usize);
    }
    let after = threads::of_process(pid, Switches::Voluntary);
    let (mut total, mut reactor) = (0, 0);
    let mut table = String::new();
    for (tid, (name, n)) in &after {
        let woke = n - before.get(tid).map_or(0, |(_, b)| *b);
        total += woke;
        if name == REACTOR_THREAD {
            reactor += woke;
        }
        table.push_str(&format!("  {tid:>8} {name:<18} {woke}\n"));
    }
    let per_turn = total as f64 / TURNS as f64;
    eprintln!(
        "{shell:?}: {total} wake-ups in {TURNS} turns ({per_turn:.1} a turn), per thread:\n{table}"
    );
    assert!(
        total <= MAX_WAKEUPS_PER_TURN * TURNS,
        "{shell:?} woke {total} times in {TURNS} turns (at most {MAX_WAKEUPS_PER_TURN} a turn):\n{table}"
    );
    assert!(
        reactor <= MAX_REACTOR_WAKEUPS,
        "{shell:?}: {REACTOR_THREAD} woke {reactor} times in {TURNS} turns (at most \
         {MAX_REACTOR_WAKEUPS}):\n{table}"
    );
}

/// The highest `offset` a `getUpdates` call carried so far (0: none).
fn polled_offset(tg: &FakeTelegram) -> i64 {
    tg.calls("getUpdates")
        .iter()
        .filter_map(|c| c["offset"].as_i64())
        .max()
        .unwrap_or(0)
}

/// Send a DM `text`, wait for the `sendMessage` answering it (the `nth`) and for the long
/// poll past it: the turn whole, its tail included.
fn answer(tg: &FakeTelegram, text: &str, nth: usize) {
    let offset = polled_offset(tg);
    tg.push_dm(201, "Ann", text);
    let sent = tg.wait_calls("sendMessage", nth);
    assert!(
        sent.get(nth - 1)
            .and_then(|m| m["text"].as_str())
            .is_some_and(|t| t.contains(text)),
        "{sent:?}"
    );
    poll_for(WAIT, || (polled_offset(tg) > offset).then_some(()))
        .unwrap_or_else(|| panic!("no long poll past {text:?}"));
}

/// `health` requests timed, one after the other on one operator connection.
const REQUESTS: u64 = 50;

/// An operator's requests wake async-io's thread for none of them: clawgate-smol's loop
/// thread waits on the clients' sockets itself (measured: 0 in 50 requests; one or more a
/// request while async-io's reactor watched them, each request then woke that thread and it
/// woke the loop's).
fn operator_requests_spare_the_reactor_thread(shell: Shell) {
    let gw = Options::new().token("wake-token").start(shell);
    let mut cfg = gw.cli();
    cfg.token = Some("wake-token".into());
    let mut ws = gw.ws(cfg);
    ws.hello().expect("hello-ok");
    ws.call("health", None).expect("health");
    let before = threads::of_process(gw.pid(), Switches::Voluntary);
    for _ in 0..REQUESTS {
        let answer = ws.call("health", None).expect("health");
        assert_ne!(answer, json!(null));
    }
    let after = threads::of_process(gw.pid(), Switches::Voluntary);
    let reactor: u64 = after
        .iter()
        .filter(|(_, (name, _))| name == REACTOR_THREAD)
        .map(|(tid, (_, n))| n - before.get(tid).map_or(0, |(_, b)| *b))
        .sum();
    assert!(
        reactor <= MAX_REACTOR_WAKEUPS,
        "{shell:?}: {REACTOR_THREAD} woke {reactor} times in {REQUESTS} requests (at most \
         {MAX_REACTOR_WAKEUPS})"
    );
}

both!(
    wakeups_per_telegram_turn,
    operator_requests_spare_the_reactor_thread
);
