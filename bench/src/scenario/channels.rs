//! Telegram through a gateway: a fake Bot API ([`FakeTelegram`]) and a fake model answering
//! at once, both in this process. The latency from an update being available on the fake to
//! the matching `sendMessage` reaching it (and the same from the `getUpdates` answer that
//! carried it, without the long-poll hop), messages per second with many chats at once
//! (every one answered), and the cost of the gateway sitting idle with the channel polling:
//! RSS, wake-ups (context switches) per minute and CPU per hour.
//!
//! The fake records when each call arrived (the kernel's receive stamp of its last segment)
//! and when each `getUpdates` answer was written (just before the write), on the load
//! generator's clock, so the figures are what the gateway (the long poll, the channel's
//! ingress, the agent turn with its model request, the `sendMessage` request) adds, without
//! the time the fakes' threads took to wake and read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use clawgate_tests::fake_api::Call;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::rx_stamp::Arrival;
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::procs::{
    Launch, Server, ThreadCounts, await_steady_threads, counts_since, settled_rss_kib,
    started_rss_kib,
};
use crate::samples;
use crate::scenario::agent::{self, AgentFigures};
use crate::stats::Percentiles;

/// The bot token the fake accepts.
pub(crate) const BOT_TOKEN: &str = "4242:bench-bot";
/// First chat id of the burst's chats (the latency run uses the one before it).
const FIRST_CHAT: i64 = 7000;
/// Longest wait for one answer, or one wave of the burst.
const ANSWER_LIMIT: Duration = Duration::from_secs(120);
/// Tick interval the gateways run with here (upstream's fixed tick), so the idle figures are
/// those of a gateway as configured in use, not the bench's 2 s tick.
const IDLE_TICK_MS: u64 = 30_000;

/// How much of the channel path to run.
#[derive(Clone, Copy, Debug)]
pub struct ChannelPlan {
    /// Sequential messages timed on one chat.
    pub messages: usize,
    /// Chats writing at once in the burst.
    pub chats: usize,
    /// Waves of the burst (one message per chat per wave).
    pub waves: usize,
    /// Shortest idle window.
    pub idle: Duration,
    /// Chats of upstream's burst (its turns take seconds each).
    pub upstream_chats: usize,
}

/// Messages upstream times per run at most: each of its turns takes seconds (tens under
/// load), so the full count would take longer than every other step together.
pub const UPSTREAM_MESSAGES: usize = 5;

impl ChannelPlan {
    /// The plan for `launch`: upstream times at most [`UPSTREAM_MESSAGES`] messages and sends
    /// one wave of the burst from at most `upstream_chats` chats.
    pub fn for_launch(&self, launch: &Launch) -> ChannelPlan {
        match launch {
            Launch::Upstream { .. } => ChannelPlan {
                messages: self.messages.min(UPSTREAM_MESSAGES),
                waves: self.waves.min(1),
                chats: self.chats.min(self.upstream_chats),
                ..*self
            },
            _ => *self,
        }
    }
}

/// What one gateway measured.
#[derive(Clone, Debug, Default)]
pub struct ChannelFigures {
    /// The plan it ran (upstream's is smaller).
    pub plan: Option<ChannelPlan>,
    /// The sequential messages' latencies.
    pub latency: Latency,
    /// Messages answered per second in the burst.
    pub burst_per_sec: f64,
    /// Messages the burst sent.
    pub burst_sent: usize,
    /// Messages of the burst with no answer.
    pub burst_lost: usize,
    /// RSS once the channel polls, before any message, KiB.
    pub rss_start_kib: u64,
    /// RSS after the burst (its sessions held), KiB.
    pub rss_after_kib: u64,
}

/// The gateway of a Telegram run left polling after it, over its idle window.
#[derive(Clone, Debug, Default)]
pub struct IdleFigures {
    /// How long the gateway took to settle after the burst: until its set of threads had
    /// not changed for [`STEADY`] (its short-lived threads, name lookups among them, gone).
    pub settle_secs: f64,
    /// The idle window's length.
    pub secs: f64,
    /// Context switches (voluntary and not) per minute while idle, every thread.
    pub wakeups_per_min: f64,
    /// CPU time per hour while idle, ms.
    pub cpu_ms_per_hour: f64,
    /// `getUpdates` calls per minute while idle (the long poll's own rhythm).
    pub polls_per_min: f64,
    /// Whether the gateway's set of threads changed during the window (what a thread that
    /// exited did in it is not counted).
    pub threads_changed: bool,
}

/// How long a gateway's set of threads must stay the same before its idle window starts.
pub(crate) const STEADY: Duration = Duration::from_secs(3);
/// Longest wait for that after the burst; the window starts then regardless.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// How upstream's own user message starts: the last of every request it makes, with its
/// context for the turn (which may quote earlier replies, and so earlier tokens).
const UPSTREAM_CONTEXT: &str = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>";

/// A fake model answering at once with the newest user text it was sent, upstream's context
/// message skipped, so every reply carries the token of the message it answers; an agent
/// run's request (the agent turns run on the Telegram run's gateway) it answers as
/// [`agent::reply`] does.
pub(crate) fn echo_model() -> FakeModel {
    FakeModel::start(|req| {
        agent::reply(req).unwrap_or_else(|| {
            let said = req
                .user_texts()
                .find(|t| !t.starts_with(UPSTREAM_CONTEXT))
                .unwrap_or_default();
            Reply::text(&["Echo from fake LLM: ", &said])
        })
    })
}

/// The `openclaw.json` members: the fake model as the agent's model (`maxConcurrent` runs at
/// once), Telegram open to everyone and pointed at the fake, upstream's tick.
pub(crate) fn config(model: &FakeModel, tg: &FakeTelegram, max_concurrent: usize) -> Value {
    let mut c = super::agent::config(model, max_concurrent);
    c["channels"] = json!({"telegram": {
        "botToken": BOT_TOKEN,
        "apiRoot": tg.api_root(),
        "network": {"dangerouslyAllowPrivateNetwork": true},
        "dmPolicy": "open",
        "allowFrom": ["*"],
    }});
    c["gateway"] = json!({"tickIntervalMs": IDLE_TICK_MS});
    c
}

/// The unique token of message `n`, which the echoed answer carries back.
fn token(n: usize) -> String {
    format!("q{n}z")
}

/// Whether `call` is a `sendMessage` carrying `token`.
fn sends(call: &Call, token: &str) -> bool {
    call.name == "sendMessage"
        && call.body["text"]
            .as_str()
            .is_some_and(|t| t.contains(token))
}

/// Wait (up to [`ANSWER_LIMIT`]) for the `sendMessage` call that carries `token`, looking
/// only at the calls from the `seen`-th on; when it arrived.
fn answered(tg: &FakeTelegram, token: &str, seen: &mut usize) -> Option<Arrival> {
    tg.next_call(seen, ANSWER_LIMIT, |c| sends(c, token).then_some(c.arrival))
}

/// Wait until the gateway has started its long poll.
fn wait_polling(tg: &FakeTelegram, limit: Duration) -> Result<(), BenchError> {
    let end = Instant::now() + limit;
    while tg.timed_calls("getUpdates").is_empty() {
        if Instant::now() >= end {
            return Err(BenchError::Timeout("the gateway's first getUpdates".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// When the request that carries `token` reached the fake model (and was read by it), and
/// when its answer's end was written.
pub(crate) fn model_times(model: &FakeModel, token: &str) -> Option<(Arrival, Instant)> {
    let (arrival, written) = model.times_of(|r| r.user_texts().any(|t| t.contains(token)))?;
    Some((arrival, *written.last()?))
}

/// One message's hop from its event written to its reply, and the same less the fake
/// model's own time: `stamped`, to the kernel's arrival stamps; `read`, to when the fakes'
/// threads read the reply and the model's request (the figure before kernel stamps).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HopSample {
    /// Event written → reply arrived.
    pub hop: Duration,
    /// The same less the model's own time (model request arrived → answer's end written).
    pub net: Option<Duration>,
    /// Event written → reply read.
    pub hop_read: Duration,
    /// The same less the model's time from its request read.
    pub net_read: Option<Duration>,
    /// Whether an arrival lacked the kernel's stamp (its read time stood in).
    pub unstamped: bool,
    /// When the event was written, on the wall clock (to line a sample up with a trace).
    pub at: SystemTime,
    /// The first leg: event written → model request arrived (to its read).
    pub first: Option<(Duration, Duration)>,
    /// The second leg: the model's answer's end written → reply arrived (to its read).
    pub second: Option<(Duration, Duration)>,
}

impl HopSample {
    /// The hop from `written` to `reply`, less the model's `model` times when known.
    pub(crate) fn of(written: Instant, reply: Arrival, model: Option<(Arrival, Instant)>) -> Self {
        let less = |hop: Duration, from: Instant, ended: Instant| {
            hop.saturating_sub(ended.saturating_duration_since(from))
        };
        let hop = reply.at().saturating_duration_since(written);
        let hop_read = reply.read.saturating_duration_since(written);
        let leg = |from: Instant, to: Arrival| {
            (
                to.at().saturating_duration_since(from),
                to.read.saturating_duration_since(from),
            )
        };
        Self {
            hop,
            net: model.map(|(m, ended)| less(hop, m.at(), ended)),
            hop_read,
            net_read: model.map(|(m, ended)| less(hop_read, m.read, ended)),
            unstamped: reply.kernel.is_none() || model.is_some_and(|(m, _)| m.kernel.is_none()),
            at: SystemTime::now() - written.elapsed(),
            first: model.map(|(m, _)| leg(written, m)),
            second: model.map(|(_, ended)| leg(ended, reply)),
        }
    }
}

/// The latencies of messages timed one at a time.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Update available on the fake → the matching `sendMessage` arrived at it.
    pub whole: Percentiles,
    /// The `getUpdates` answer carrying the update written → the `sendMessage` arrived.
    pub hop: Percentiles,
    /// The fake model's own time: its request read whole → its answer's end written.
    pub model: Percentiles,
    /// [`Latency::hop`] less the fake model's own time, message by message.
    pub hop_net: Percentiles,
    /// [`Latency::hop_net`] to when the fakes' threads read the `sendMessage` and the model
    /// request instead of when they arrived: the figure before kernel stamps.
    pub hop_net_read: Percentiles,
    /// Messages whose `sendMessage` or model request had no kernel stamp.
    pub unstamped: usize,
}

/// `n` messages one after another on one chat, each timed from being pushed and from the
/// `getUpdates` answer that carried it to its `sendMessage`, and the fake model's own time
/// for it; `first` numbers their tokens. Prints the hop's stages (the answer → the model
/// request arrived, the model's own time, its answer's end → `sendMessage` arrived, each
/// also to when the fakes read them) to stderr, and dumps the samples as `step` of
/// `gateway` ([`samples::dump`]).
fn latency(
    tg: &FakeTelegram,
    model: &FakeModel,
    (first, n): (usize, usize),
    (gateway, step): (&str, &str),
) -> Result<Latency, BenchError> {
    let mut whole = Vec::with_capacity(n);
    let mut own = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    let (mut to_model, mut to_send) = (Stage::default(), Stage::default());
    // Calls looked at already: each wait looks only at those recorded since.
    let mut seen = 0;
    for i in first..first + n {
        let tok = token(i);
        let pushed = Instant::now();
        tg.push_dm(FIRST_CHAT - 1, "Bench", &format!("hello {tok}"));
        let sent = answered(tg, &tok, &mut seen)
            .ok_or_else(|| BenchError::Timeout(format!("the answer to message {i}")))?;
        // One message in flight at a time: the first answer with updates after the push
        // carried it.
        let delivered = tg.delivered_since(pushed);
        whole.push(sent.at().saturating_duration_since(pushed));
        let times = model_times(model, &tok);
        if let Some((arrived, ended)) = times {
            own.push(ended.saturating_duration_since(arrived.at()));
            to_send.push(ended, sent);
        }
        if let Some(d) = delivered {
            samples.push(HopSample::of(d, sent, times));
            if let Some((arrived, _)) = times {
                to_model.push(d, arrived);
            }
        }
    }
    if n > 1 {
        eprintln!(
            "   hop stages, µs p50/p99 to arrival (to read): getUpdates answer → model request {}, model's own {}, model's end → sendMessage {}",
            to_model.show(),
            us(&own),
            to_send.show()
        );
        samples::dump(gateway, step, &samples);
    }
    let hops = HopTimes::of(&samples);
    Ok(Latency {
        whole: Percentiles::of(&whole),
        hop: hops.hop,
        model: Percentiles::of(&own),
        hop_net: hops.net,
        hop_net_read: hops.net_read,
        unstamped: hops.unstamped,
    })
}

/// `p50/p99` of `v` in µs.
fn us(v: &[Duration]) -> String {
    let p = Percentiles::of(v);
    format!("{:.0}/{:.0}", p.p50, p.p99)
}

/// One stage of a hop: from a write to an arrival, to its kernel stamp and to its read.
#[derive(Default)]
struct Stage {
    arrived: Vec<Duration>,
    read: Vec<Duration>,
}

impl Stage {
    fn push(&mut self, from: Instant, to: Arrival) {
        self.arrived.push(to.at().saturating_duration_since(from));
        self.read.push(to.read.saturating_duration_since(from));
    }

    fn show(&self) -> String {
        format!("{} ({})", us(&self.arrived), us(&self.read))
    }
}

/// The hop times of a run of messages on one channel.
pub struct HopTimes {
    /// Event written → reply arrived.
    pub hop: Percentiles,
    /// The same less the fake model's own time (its request arrived → its answer's end
    /// written), message by message: what the gateway adds, the disk's commits included.
    pub net: Percentiles,
    /// [`HopTimes::net`] to when the fakes' threads read the reply and the model request:
    /// the figure before kernel stamps, the fakes' wake-ups counted as the gateway's.
    pub net_read: Percentiles,
    /// Messages with an arrival the kernel did not stamp (its read time stood in).
    pub unstamped: usize,
}

impl HopTimes {
    /// The percentiles of `samples`.
    pub(crate) fn of(samples: &[HopSample]) -> Self {
        let all = |f: fn(&HopSample) -> Option<Duration>| {
            Percentiles::of(&samples.iter().filter_map(f).collect::<Vec<_>>())
        };
        Self {
            hop: all(|s| Some(s.hop)),
            net: all(|s| s.net),
            net_read: all(|s| s.net_read),
            unstamped: samples.iter().filter(|s| s.unstamped).count(),
        }
    }

    /// Hop p50/p99 and net p99, to arrival and to read, µs, for stderr.
    pub(crate) fn show(samples: &[HopSample]) -> String {
        let to = |f: fn(&HopSample) -> Option<Duration>| {
            us(&samples.iter().filter_map(f).collect::<Vec<_>>())
        };
        format!(
            "hop {} (read {}), less the model {} (read {})",
            to(|s| Some(s.hop)),
            to(|s| Some(s.hop_read)),
            to(|s| s.net),
            to(|s| s.net_read)
        )
    }
}

/// `waves` rounds of one message from each of `chats` chats at once; messages per second
/// over the whole burst, messages sent, messages never answered.
fn burst(
    tg: &FakeTelegram,
    first: usize,
    chats: usize,
    waves: usize,
) -> Result<(f64, usize, usize), BenchError> {
    let t0 = Instant::now();
    let (mut sent, mut lost) = (0usize, 0usize);
    let mut seen = 0;
    for w in 0..waves {
        let toks: Vec<String> = (0..chats).map(|c| token(first + w * chats + c)).collect();
        for (c, tok) in toks.iter().enumerate() {
            tg.push_dm(FIRST_CHAT + c as i64, "Bench", &format!("hi {tok}"));
        }
        sent += chats;
        let end = Instant::now() + ANSWER_LIMIT;
        let mut pending = toks;
        // Each call recorded is looked at once, as it comes.
        while !pending.is_empty() {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                break;
            };
            tg.next_call(&mut seen, left, |c| {
                let before = pending.len();
                pending.retain(|tok| !sends(c, tok));
                (pending.len() < before || pending.is_empty()).then_some(())
            });
        }
        lost += pending.len();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    Ok(((sent - lost) as f64 / elapsed.max(1e-9), sent, lost))
}

/// A gateway started for the Telegram runs, with its fakes.
pub struct ChannelRun {
    /// The agent's model, answering while the gateway runs.
    model: FakeModel,
    tg: FakeTelegram,
    server: Server,
    plan: ChannelPlan,
    /// Longest wait for its first long poll.
    limit: Duration,
    /// RSS once the channel polls, before any message, KiB.
    rss_start_kib: u64,
}

/// The store setting that takes the commit's fsync off the reply's path (clawgate only).
const SYNC_NORMAL: (&str, &str) = ("CLAWGATE_STORE_SYNCHRONOUS", "normal");

/// Start the gateway `launch` for the Telegram runs of `plan` (upstream's smaller) and
/// `sessions` agent turns at once, with the variables `env`; not yet polling.
pub fn start(
    name: &str,
    launch: &Launch,
    plan: &ChannelPlan,
    sessions: usize,
    env: &[(&str, String)],
) -> Result<ChannelRun, BenchError> {
    let plan = plan.for_launch(launch);
    let model = echo_model();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let max_concurrent = plan.chats.max(sessions);
    let server = Server::spawn_channels(name, launch, &config(&model, &tg, max_concurrent), env)?;
    let limit = if matches!(launch, Launch::Upstream { .. }) {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(20)
    };
    Ok(ChannelRun {
        model,
        tg,
        server,
        plan,
        limit,
        rss_start_kib: 0,
    })
}

impl ChannelRun {
    /// Its gateway.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Wait until the gateway has started its long poll, and take its RSS then.
    pub fn ready(mut self) -> Result<Self, BenchError> {
        wait_polling(&self.tg, self.limit)?;
        self.rss_start_kib = started_rss_kib(&self.server);
        Ok(self)
    }

    /// The agent turns of [`agent::run_on`], on this gateway (before any Telegram message).
    pub fn agent(&mut self, turns: usize, sessions: usize) -> Result<AgentFigures, BenchError> {
        agent::run_on(&mut self.server, &self.model, turns, sessions)
    }

    /// Everything [`ChannelFigures`] holds; then the gateway is left polling, settled, at the
    /// start of its idle window.
    pub fn run(self) -> Result<(ChannelFigures, Idle), BenchError> {
        let (tg, server, plan) = (&self.tg, &self.server, &self.plan);
        // Warm-up (upstream prepares its workspace on the first turn).
        let name = server.name();
        latency(tg, &self.model, (0, 1), (name, "telegram"))?;
        let latency = latency(tg, &self.model, (1, plan.messages), (name, "telegram"))?;
        let (burst_per_sec, burst_sent, burst_lost) =
            burst(tg, 1 + plan.messages, plan.chats, plan.waves)?;
        let rss_after_kib = settled_rss_kib(server, Duration::from_secs(1));
        let figures = ChannelFigures {
            plan: Some(*plan),
            latency,
            burst_per_sec,
            burst_sent,
            burst_lost,
            rss_start_kib: self.rss_start_kib,
            rss_after_kib,
        };
        Ok((figures, Idle::begin(self)))
    }
}

/// A Telegram run's gateway left polling with nothing to do, from the start of its idle
/// window; the bench goes on with other gateways meanwhile (never this one).
pub struct Idle {
    run: ChannelRun,
    settle: Duration,
    counts0: BTreeMap<u32, ThreadCounts>,
    t0: Instant,
    polls0: usize,
}

impl Idle {
    /// Wait until `run`'s gateway has settled (its threads unchanged for [`STEADY`], at most
    /// [`SETTLE_LIMIT`]), then open the window.
    fn begin(run: ChannelRun) -> Self {
        let settle = await_steady_threads(&run.server, STEADY, SETTLE_LIMIT);
        Self {
            counts0: run.server.thread_counts(),
            t0: Instant::now(),
            polls0: run.tg.calls("getUpdates").len(),
            run,
            settle,
        }
    }

    /// Close the window once it is at least `least` long (sleeping the rest), and what the
    /// gateway's threads did in it; an error when it stopped meanwhile.
    pub fn end(mut self, least: Duration) -> Result<IdleFigures, BenchError> {
        if let Some(rest) = least.checked_sub(self.t0.elapsed()) {
            std::thread::sleep(rest);
        }
        let secs = self.t0.elapsed().as_secs_f64();
        let counts = self.run.server.thread_counts();
        let polls = self.run.tg.calls("getUpdates").len() - self.polls0;
        self.run.server.check_alive()?;
        let used = counts_since(&self.counts0, &counts);
        Ok(IdleFigures {
            settle_secs: self.settle.as_secs_f64(),
            secs,
            wakeups_per_min: used.ctx as f64 * 60.0 / secs,
            cpu_ms_per_hour: used.cpu_ns as f64 / 1e6 * 3600.0 / secs,
            polls_per_min: polls as f64 * 60.0 / secs,
            threads_changed: !counts.keys().eq(self.counts0.keys()),
        })
    }
}

/// The two Telegram latencies of [`ChannelFigures`] (update available → `sendMessage`, and
/// from the `getUpdates` answer) of a clawgate shell run with `synchronous=normal`, so the
/// report shows the hop without the commit's fsync next to the default one.
pub fn measure_sync_normal(
    name: &str,
    launch: &Launch,
    plan: &ChannelPlan,
) -> Result<Latency, BenchError> {
    if matches!(launch, Launch::Upstream { .. }) {
        return Err(BenchError::Unavailable(format!(
            "`{}` is a clawgate store setting",
            SYNC_NORMAL.0
        )));
    }
    let env = [(SYNC_NORMAL.0, SYNC_NORMAL.1.to_string())];
    let r = start(name, launch, plan, 0, &env)?.ready()?;
    let step = (name, "telegram synchronous=normal");
    latency(&r.tg, &r.model, (0, 1), step)?;
    latency(&r.tg, &r.model, (1, r.plan.messages), step)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A message written at 0 whose model request arrived at 1 ms and was read at 2, whose
    /// model answered by 3, and whose reply arrived at 5 and was read at 7.
    fn sample(stamped: bool) -> HopSample {
        let t0 = Instant::now();
        let at = |ms: u32| t0 + MS * ms;
        let arrival = |kernel, read| Arrival {
            kernel: stamped.then(|| at(kernel)),
            read: at(read),
        };
        HopSample::of(t0, arrival(5, 7), Some((arrival(1, 2), at(3))))
    }

    #[test]
    fn a_hop_counts_to_the_kernel_stamps_and_keeps_the_read_figures() {
        let s = sample(true);
        assert_eq!(s.hop, 5 * MS);
        // The model's own time runs from its request's arrival: 2 ms.
        assert_eq!(s.net, Some(3 * MS));
        assert_eq!(s.hop_read, 7 * MS);
        // From its read: 1 ms.
        assert_eq!(s.net_read, Some(6 * MS));
        assert!(!s.unstamped);
    }

    #[test]
    fn an_arrival_without_a_kernel_stamp_counts_from_its_read() {
        let s = sample(false);
        assert_eq!((s.hop, s.net), (7 * MS, Some(6 * MS)));
        assert!(s.unstamped);
        let t = HopTimes::of(&[s, sample(true)]);
        assert_eq!((t.hop.n, t.net.n, t.unstamped), (2, 2, 1));
    }
}
