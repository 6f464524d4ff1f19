//! The cost of sitting idle: a gateway with Telegram long-polling a fake Bot API and the
//! agent configured, after a conversation, wakes only for what it must (the long poll's
//! answer, the tick). Counted per thread from `/proc/PID/task/*/status`: context switches count
//! wake-ups whatever the machine's load (a thread asleep is never switched out), unlike time.

use std::thread;
use std::time::{Duration, Instant};

use clawgate_tests::both;
use clawgate_tests::fake_model::FakeModel;
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::harness::{Options, Shell};
use clawgate_tests::threads::{self, Switches};

pub(crate) const BOT_TOKEN: &str = "123456:test-token";
/// How long the idle gateway is watched: one long poll's timeout (30 s) and one tick (30 s)
/// end inside it.
const WINDOW: Duration = Duration::from_secs(31);
/// Wake-ups (context switches, every thread) the window may hold, per shell. The loop wakes
/// for each of its deadlines (the core's, the HTTP loop's) and for the long poll's answer,
/// and the store's thread once; the rest is room for a loaded machine's preemptions. A timer
/// re-armed while nothing is due, a worker polling with a short timeout or a log flush
/// firing with nothing to write costs more than this.
///
/// Measured here (release builds, load average 4-9): mio 6-8; clawgate-smol 7-11, where
/// each of its deadlines cost async-io's thread two wake-ups besides the loop's own (the
/// timer's, and the next timer's arming) and the HTTP poller's readiness was counted late,
/// 26 in all (15 with the deadlines alone fixed).
fn max_switches(shell: Shell) -> u64 {
    match shell {
        Shell::Mio => 40,
        Shell::Smol => 18,
    }
}

/// `options` with a token, the agent on `model` and Telegram DMs from anyone through `tg`
/// (its bot token [`BOT_TOKEN`]).
pub(crate) fn with_telegram_dms(options: Options, model: &FakeModel, tg: &FakeTelegram) -> Options {
    options.token("t0ken").config(&format!(
        r#"{{ {} channels: {{ telegram: {{ {} dmPolicy: "open", allowFrom: ["*"] }} }} }}"#,
        model.config_members(),
        tg.config_members(BOT_TOKEN)
    ))
}

/// After a DM answered by the agent, the gateway idles for [`WINDOW`]: every thread's
/// wake-ups are printed, and their total stays within [`max_switches`].
fn idle_wakeups_with_telegram_polling(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw = with_telegram_dms(Options::new(), &model, &tg).start(shell);
    tg.wait_calls("getUpdates", 1);
    tg.push_dm(201, "Ann", "hello");
    let sent = tg.wait_calls("sendMessage", 1);
    assert!(
        sent[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("hello")),
        "{sent:?}"
    );
    // The turn's tail settles: the long poll past the update is out, the transcript written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tg
        .calls("getUpdates")
        .iter()
        .any(|b| b["offset"].as_i64().is_some_and(|o| o > 0))
    {
        assert!(Instant::now() < deadline, "no long poll past the update");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_secs(1));
    let pid = gw.pid();
    let before = threads::of_process(pid, Switches::All);
    let started = Instant::now();
    thread::sleep(WINDOW);
    let after = threads::of_process(pid, Switches::All);
    let secs = started.elapsed().as_secs_f64();
    let mut total = 0;
    let mut table = String::new();
    for (tid, (name, n)) in &after {
        let woke = n - before.get(tid).map_or(0, |(_, b)| *b);
        total += woke;
        table.push_str(&format!("  {tid:>8} {name:<18} {woke}\n"));
    }
    eprintln!(
        "{shell:?}: {total} context switches in {secs:.1} s idle ({:.0}/min), per thread:\n{table}",
        total as f64 * 60.0 / secs
    );
    let most = max_switches(shell);
    assert!(
        total <= most,
        "{shell:?} woke {total} times in {secs:.1} s idle (at most {most}):\n{table}"
    );
}

both!(idle_wakeups_with_telegram_polling);
