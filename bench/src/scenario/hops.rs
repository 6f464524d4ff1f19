//! Telegram, Slack (Socket Mode) and Discord (Gateway WebSocket) running at once in one
//! gateway, each against its fake in this process ([`FakeTelegram`], [`FakeSlack`],
//! [`FakeDiscord`]) with a fake model answering at once: the gateway-added latency per
//! channel, from the event written to the gateway (the `getUpdates` answer carrying it, the
//! Socket Mode envelope, the `MESSAGE_CREATE` dispatch) to its reply reaching the fake
//! (`sendMessage`, `chat.postMessage`, `POST /channels/{id}/messages`), and the RSS with the
//! three channels running, before any message and after the runs.
//!
//! The fakes stamp when they wrote each event (just before the write) and when each call
//! arrived (the kernel's receive stamp of its last segment), on the load generator's clock.
//! Messages go one at a time, the channels taking turns message by message (Telegram, Slack,
//! Discord, Telegram, ...): their DMs share one session, so each channel's messages meet the
//! same range of transcript lengths. The bench waits for a reply asleep until the fake records
//! a call, and looks only at calls it has not seen.

use std::time::{Duration, Instant};

use clawgate_tests::fake_api::FakeApi;
use clawgate_tests::fake_discord::FakeDiscord;
use clawgate_tests::fake_model::FakeModel;
use clawgate_tests::fake_slack::FakeSlack;
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::rx_stamp::Arrival;
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::procs::{Launch, RSS_SETTLE, Server, settled_rss_kib, started_rss_kib};
use crate::samples;
use crate::scenario::channels::{self, HopSample, HopTimes};

/// The Discord bot token the fake accepts, shaped as Discord's are: its first part is the
/// bot's id in base64, where upstream reads the application id from.
const DISCORD_TOKEN: &str = "OTAwMDAwMDAwMDAwMDAwMDAx.GbEnch.fake-bench-signature";
/// The Telegram bot token here: not the Telegram run's, since upstream's gateways of both
/// runs are up at once and one bot is polled by one gateway.
const TG_TOKEN: &str = "4343:bench-hops-bot";
/// The Telegram chat, Slack user and Discord user and DM channel of the runs.
const TG_CHAT: i64 = 6000;
const SLACK_USER: &str = "UBENCH";
const DISCORD_USER: &str = "400000000000000042";
const DISCORD_DM: &str = "500000000000000042";
/// Longest wait for one answer (upstream's first turn prepares its workspace).
const ANSWER_LIMIT: Duration = Duration::from_secs(120);

/// One of the three channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Telegram, long polling.
    Telegram,
    /// Slack, Socket Mode.
    Slack,
    /// Discord, the Gateway WebSocket.
    Discord,
}

impl Channel {
    /// All three, in the order they are measured.
    pub const ALL: [Channel; 3] = [Channel::Telegram, Channel::Slack, Channel::Discord];

    /// The id in `openclaw.json` (`channels.<id>`) and of upstream's plugin.
    pub fn id(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Slack => "slack",
            Channel::Discord => "discord",
        }
    }

    /// The name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Telegram => "Telegram",
            Channel::Slack => "Slack",
            Channel::Discord => "Discord",
        }
    }
}

/// What one gateway measured; each channel may have failed on its own.
pub struct HopFigures {
    /// The hop times per channel in [`Channel::ALL`] order.
    pub hops: [Result<HopTimes, BenchError>; 3],
    /// How many of the three channels ran (upstream lacks those whose plugin is missing).
    pub channels_on: usize,
    /// Messages timed on each channel.
    pub messages: usize,
    /// RSS with the channels connected, before any message, KiB.
    pub rss_start_kib: u64,
    /// RSS after the runs, KiB.
    pub rss_after_kib: u64,
}

impl HopFigures {
    /// The RSS before any message, KiB, if all three channels ran.
    pub fn rss_start_all(&self) -> Option<u64> {
        (self.channels_on == Channel::ALL.len()).then_some(self.rss_start_kib)
    }

    /// The RSS after the runs, KiB, if all three channels ran.
    pub fn rss_after_all(&self) -> Option<u64> {
        (self.channels_on == Channel::ALL.len()).then_some(self.rss_after_kib)
    }

    /// The hop times of `c`.
    pub fn hop(&self, c: Channel) -> &Result<HopTimes, BenchError> {
        let i = Channel::ALL.iter().position(|x| *x == c).unwrap_or(0);
        &self.hops[i]
    }
}

/// The three fakes.
struct Fakes {
    tg: FakeTelegram,
    slack: FakeSlack,
    discord: FakeDiscord,
}

impl Fakes {
    fn start() -> Self {
        let slack = FakeSlack::start();
        // A real sender, as Slack knows them: the gateway looks the name up once and keeps it
        // (a failed `users.info` is not kept, so an unknown user would cost a lookup per
        // message on the hop, upstream's as well).
        slack.add_user(
            SLACK_USER,
            json!({"name": "bench", "profile": {"display_name": "Bench"}}),
        );
        Self {
            tg: FakeTelegram::start(TG_TOKEN),
            slack,
            discord: FakeDiscord::start(DISCORD_TOKEN),
        }
    }

    /// Whether the gateway is connected on `c`, ready for an event.
    fn ready(&self, c: Channel) -> bool {
        match c {
            Channel::Telegram => !self.tg.timed_calls("getUpdates").is_empty(),
            Channel::Slack => self.slack.sockets() > 0,
            Channel::Discord => self.discord.is_live(),
        }
    }

    /// Send message `n`, `text`, to the gateway on `c`; what identifies the event.
    fn push(&self, c: Channel, n: usize, text: &str) -> String {
        match c {
            Channel::Telegram => self.tg.push_dm(TG_CHAT, "Bench", text).to_string(),
            Channel::Slack => self.slack.push_event(json!({"type": "message",
                "channel": format!("D{SLACK_USER}"), "channel_type": "im", "user": SLACK_USER,
                "text": text, "ts": format!("1795500000.{n:06}")})),
            Channel::Discord => self.discord.push_dm(DISCORD_USER, DISCORD_DM, text),
        }
    }

    /// When the event `id` pushed at `pushed` was written to the gateway.
    fn written(&self, c: Channel, id: &str, pushed: Instant) -> Option<Instant> {
        match c {
            // One message in flight at a time: the first answer with updates after the push
            // carried it.
            Channel::Telegram => self.tg.delivered_since(pushed),
            Channel::Slack => self.slack.written_at(id),
            Channel::Discord => self.discord.written_at(id),
        }
    }

    /// Wait (up to `timeout`) for the reply carrying `token` on `c`, looking only at the
    /// calls from the `seen`-th on (see [`FakeApi::next_call`]); when it arrived.
    fn reply(
        &self,
        c: Channel,
        token: &str,
        seen: &mut usize,
        timeout: Duration,
    ) -> Option<Arrival> {
        let (api, name, key): (&FakeApi, String, &str) = match c {
            Channel::Telegram => (&self.tg, "sendMessage".into(), "text"),
            Channel::Slack => (&self.slack, "chat.postMessage".into(), "text"),
            Channel::Discord => (
                &self.discord,
                format!("/channels/{DISCORD_DM}/messages"),
                "content",
            ),
        };
        api.next_call(seen, timeout, |call| {
            let hit =
                call.name == name && call.body[key].as_str().is_some_and(|t| t.contains(token));
            hit.then_some(call.arrival)
        })
    }
}

/// The `openclaw.json` members: the agent's fake model and the channels of `on` open to
/// everyone, each pointed at its fake (Telegram by `apiRoot`; Slack and Discord by the
/// variables [`env`] gives), their plugins enabled (upstream's Slack and Discord are plugins).
fn config(model: &FakeModel, f: &Fakes, on: &[Channel]) -> Value {
    let mut c = channels::config(model, &f.tg, 4);
    c["channels"]["telegram"]["botToken"] = json!(TG_TOKEN);
    let open = |mut v: Value| {
        v["dmPolicy"] = json!("open");
        v["allowFrom"] = json!(["*"]);
        v
    };
    for ch in on {
        let section = match ch {
            Channel::Telegram => continue,
            Channel::Slack => json!({"botToken": "xoxb-bench", "appToken": "xapp-1-bench"}),
            Channel::Discord => json!({"token": DISCORD_TOKEN}),
        };
        c["channels"][ch.id()] = open(section);
        c["plugins"]["entries"][ch.id()] = json!({"enabled": true});
    }
    c
}

/// The variables that point the gateway's Slack and Discord at their fakes.
fn env(f: &Fakes) -> Vec<(&'static str, String)> {
    vec![
        ("SLACK_API_URL", f.slack.api_url()),
        ("DISCORD_API_URL", f.discord.api_url()),
    ]
}

/// Wait until every channel of `on` is connected.
fn wait_ready(
    f: &Fakes,
    on: &[Channel],
    server: &mut Server,
    limit: Duration,
) -> Result<(), BenchError> {
    let end = Instant::now() + limit;
    for &c in on {
        while !f.ready(c) {
            server.check_alive()?;
            if Instant::now() >= end {
                return Err(BenchError::Timeout(format!("{} connected", c.label())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// One channel's messages in a run.
struct Lane {
    channel: Channel,
    /// Calls to its fake already looked at.
    seen: usize,
    samples: Vec<HopSample>,
    /// Why it stopped, if it did.
    failed: Option<BenchError>,
}

/// Message `i` on `lane`'s channel, timed from its event being written to its reply, and the
/// fake `model`'s own time for it.
fn hop(f: &Fakes, model: &FakeModel, lane: &mut Lane, i: usize) -> Result<HopSample, BenchError> {
    let c = lane.channel;
    let tok = format!("{}{i}z", c.id());
    let pushed = Instant::now();
    let id = f.push(c, i, &format!("hello {tok}"));
    let sent = f
        .reply(c, &tok, &mut lane.seen, ANSWER_LIMIT)
        .ok_or_else(|| BenchError::Timeout(format!("the {} answer to message {i}", c.label())))?;
    let written = f.written(c, &id, pushed).ok_or_else(|| {
        BenchError::Protocol(format!("{} event {i} answered, never written", c.label()))
    })?;
    Ok(HopSample::of(
        written,
        sent,
        channels::model_times(model, &tok),
    ))
}

/// `warm` untimed messages then `n` timed ones on each channel of `on`, one at a time, the
/// channels taking turns message by message; each channel's hop times (a channel that fails
/// stops, the others go on).
fn hops(
    f: &Fakes,
    model: &FakeModel,
    (gateway, on): (&str, &[Channel]),
    warm: usize,
    n: usize,
) -> Vec<(Channel, Result<HopTimes, BenchError>)> {
    let mut lanes: Vec<Lane> = on
        .iter()
        .map(|&channel| Lane {
            channel,
            seen: 0,
            samples: Vec::with_capacity(n),
            failed: None,
        })
        .collect();
    for i in 0..warm + n {
        for lane in lanes.iter_mut().filter(|l| l.failed.is_none()) {
            match hop(f, model, lane, i) {
                Ok(s) if i >= warm => lane.samples.push(s),
                Ok(_) => {}
                Err(e) => lane.failed = Some(e),
            }
        }
    }
    lanes
        .into_iter()
        .map(|l| {
            let times = match l.failed {
                Some(e) => Err(e),
                None => {
                    let label = l.channel.label();
                    eprintln!("   {label}, µs p50/p99: {}", HopTimes::show(&l.samples));
                    samples::dump(gateway, &format!("three channels {label}"), &l.samples);
                    Ok(HopTimes::of(&l.samples))
                }
            };
            (l.channel, times)
        })
        .collect()
}

/// A gateway started with the three channels, with its fakes.
pub struct HopRun {
    /// The agent's model, answering while the gateway runs.
    model: FakeModel,
    fakes: Fakes,
    server: Server,
    /// Whether it has each channel of [`Channel::ALL`], and why not.
    has: [Result<(), BenchError>; 3],
    /// Longest wait for every channel to connect.
    limit: Duration,
    messages: usize,
}

/// Start the gateway `launch` with the three channels (those it has), `messages` to be timed
/// per channel; not yet connected.
pub fn start(name: &str, launch: &Launch, messages: usize) -> Result<HopRun, BenchError> {
    let upstream = matches!(launch, Launch::Upstream { .. });
    let model = channels::echo_model();
    let fakes = Fakes::start();
    // The channels this gateway has (upstream's Slack and Discord are plugins), and why not.
    let has = Channel::ALL.map(|c| launch.has_channel(c.id()));
    let config = config(&model, &fakes, &on(&has));
    let server = Server::spawn_channels(name, launch, &config, &env(&fakes))?;
    // Upstream loading two more plugins starts its channels after a minute and a half on a
    // busy machine.
    let limit = Duration::from_secs(if upstream { 240 } else { 20 });
    Ok(HopRun {
        model,
        fakes,
        server,
        has,
        limit,
        messages,
    })
}

/// The channels of `has` the gateway has.
fn on(has: &[Result<(), BenchError>; 3]) -> Vec<Channel> {
    Channel::ALL
        .iter()
        .zip(has)
        .filter_map(|(c, h)| h.is_ok().then_some(*c))
        .collect()
}

impl HopRun {
    /// Its gateway.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Wait until every channel it has is connected.
    pub fn ready(mut self) -> Result<Self, BenchError> {
        wait_ready(&self.fakes, &on(&self.has), &mut self.server, self.limit)?;
        Ok(self)
    }

    /// Everything [`HopFigures`] holds.
    pub fn run(self) -> Result<HopFigures, BenchError> {
        let (f, model, server, messages) = (&self.fakes, &self.model, &self.server, self.messages);
        let channels_on = on(&self.has).len();
        let rss_start_kib = started_rss_kib(server);
        // One warm-up message per channel (upstream prepares its workspace on the first turn).
        let mut timed = hops(f, model, (server.name(), &on(&self.has)), 1, messages);
        let mut has = self.has.into_iter();
        let hops = Channel::ALL.map(|c| match has.next() {
            Some(Err(e)) => Err(e),
            _ => match timed.iter().position(|(d, _)| *d == c) {
                Some(k) => timed.swap_remove(k).1,
                None => Err(BenchError::Protocol(format!("{} was not run", c.label()))),
            },
        });
        let rss_after_kib = settled_rss_kib(server, RSS_SETTLE);
        Ok(HopFigures {
            hops,
            channels_on,
            messages,
            rss_start_kib,
            rss_after_kib,
        })
    }
}
