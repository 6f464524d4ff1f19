//! Drive `N` messages on each of Telegram, Slack (Socket Mode) and Discord, the channels taking
//! turns message by message as the bench's three-channel step does, through a gateway binary
//! (started under an optional profiler command) against the fakes and an echoing fake model;
//! print each channel's hop (event written → reply arrived, and the same less the fake model's
//! own time), p50 and p99 in µs, and each of the gateway's threads' CPU time and context
//! switches per message, then stop the gateway: for comparing and profiling the channel hops
//! of the two shells (`strace -f`, callgrind) without the rest of the paths step.
//!
//! `channel_hops CLAWGATE MESSAGES [PROFILER ARGS...]`

use std::time::{Duration, Instant};

use clawgate_tests::fake_api::FakeApi;
use clawgate_tests::fake_discord::FakeDiscord;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::fake_slack::FakeSlack;
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::profiled;
use clawgate_tests::rx_stamp::Arrival;
use clawgate_tests::threads::{Switches, of_process};
use serde_json::json;

const TG_TOKEN: &str = "4343:hops-bot";
const TG_CHAT: i64 = 6000;
const SLACK_USER: &str = "UHOPS";
const DISCORD_TOKEN: &str = "OTAwMDAwMDAwMDAwMDAwMDAx.GbEnch.fake-hops-signature";
const DISCORD_USER: &str = "400000000000000042";
const DISCORD_DM: &str = "500000000000000042";
/// Untimed messages per channel before the timed ones.
const WARM: usize = 1;
const LIMIT: Duration = Duration::from_secs(120);

/// CPU time (ns, `schedstat`) and context switches (voluntary and not) of each live thread of
/// `pid`, by thread id and name.
fn usage(pid: u32) -> std::collections::BTreeMap<(String, String), (u64, u64)> {
    of_process(pid, Switches::All)
        .into_iter()
        .map(|(tid, (name, switches))| {
            let cpu = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
                .ok()
                .and_then(|s| s.split(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            ((tid, name), (cpu, switches))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, n, prefix @ ..] = args.as_slice() else {
        panic!("usage: channel_hops CLAWGATE MESSAGES [PROFILER ARGS...]");
    };
    let n: usize = n.parse().expect("MESSAGES");
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["Echo from fake LLM: ", &said])
    });
    let tg = FakeTelegram::start(TG_TOKEN);
    let slack = FakeSlack::start();
    slack.add_user(
        SLACK_USER,
        json!({"name": "hops", "profile": {"display_name": "Hops"}}),
    );
    let discord = FakeDiscord::start(DISCORD_TOKEN);
    let state = std::env::temp_dir().join(format!("channel-hops-{}", std::process::id()));
    std::fs::create_dir_all(&state).expect("state dir");
    let open = json!({"dmPolicy": "open", "allowFrom": ["*"]});
    let mut config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": model.base_url(), "api": "openai-completions", "apiKey": "sk-bench",
            "models": [{"id": "echo", "name": "echo"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/echo"}, "maxConcurrent": 4}},
        "channels": {
            "telegram": {"botToken": TG_TOKEN, "apiRoot": tg.api_root(),
                "network": {"dangerouslyAllowPrivateNetwork": true}},
            "slack": {"botToken": "xoxb-hops", "appToken": "xapp-1-hops"},
            "discord": {"token": DISCORD_TOKEN},
        },
        "plugins": {"entries": {"slack": {"enabled": true}, "discord": {"enabled": true}}},
        "gateway": {"tickIntervalMs": 30_000},
    });
    for ch in ["telegram", "slack", "discord"] {
        config["channels"][ch]["dmPolicy"] = open["dmPolicy"].clone();
        config["channels"][ch]["allowFrom"] = open["allowFrom"].clone();
    }
    std::fs::write(state.join("openclaw.json"), config.to_string()).expect("config");
    let gw = profiled::spawn(
        bin,
        prefix,
        &state,
        &[
            ("SLACK_API_URL", slack.api_url()),
            ("DISCORD_API_URL", discord.api_url()),
        ],
    );
    let end = Instant::now() + LIMIT;
    while tg.timed_calls("getUpdates").is_empty() || slack.sockets() == 0 || !discord.is_live() {
        assert!(Instant::now() < end, "timed out waiting for the channels");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = usage(gw.id());
    let names = ["telegram", "slack", "discord"];
    let mut seen = [0usize; 3];
    let mut hops: [Vec<(Duration, Duration)>; 3] = Default::default();
    for i in 0..WARM + n {
        for (c, name) in names.iter().enumerate() {
            let tok = format!("{name}{i}z");
            let text = format!("hello {tok}");
            let pushed = Instant::now();
            let id = match c {
                0 => tg.push_dm(TG_CHAT, "Hops", &text).to_string(),
                1 => slack.push_event(json!({"type": "message",
                    "channel": format!("D{SLACK_USER}"), "channel_type": "im",
                    "user": SLACK_USER, "text": text, "ts": format!("1795500000.{i:06}")})),
                _ => discord.push_dm(DISCORD_USER, DISCORD_DM, &text),
            };
            let (api, call, key): (&FakeApi, String, &str) = match c {
                0 => (&tg, "sendMessage".into(), "text"),
                1 => (&slack, "chat.postMessage".into(), "text"),
                _ => (
                    &discord,
                    format!("/channels/{DISCORD_DM}/messages"),
                    "content",
                ),
            };
            let reply: Arrival = api
                .next_call(&mut seen[c], LIMIT, |r| {
                    (r.name == call && r.body[key].as_str().is_some_and(|t| t.contains(&tok)))
                        .then_some(r.arrival)
                })
                .unwrap_or_else(|| panic!("no {name} reply to {i}"));
            let written = match c {
                0 => tg.delivered_since(pushed),
                1 => slack.written_at(&id),
                _ => discord.written_at(&id),
            }
            .expect("the event's write");
            let (m, parts) = model
                .times_of(|r| r.user_texts().any(|t| t.contains(&tok)))
                .expect("the model request");
            let hop = reply.at().saturating_duration_since(written);
            let own = parts
                .last()
                .expect("an answer")
                .saturating_duration_since(m.at());
            if i >= WARM {
                hops[c].push((hop, hop.saturating_sub(own)));
            }
        }
    }
    let after = usage(gw.id());
    let hopped = (3 * (WARM + n)) as f64;
    let (mut cpu, mut switches) = (0.0, 0.0);
    for (thread, (c1, s1)) in &after {
        let (c0, s0) = before.get(thread).copied().unwrap_or_default();
        let (c, s) = ((c1 - c0) as f64 / 1e3 / hopped, (s1 - s0) as f64 / hopped);
        println!(
            "  thread {} {}: CPU {c:.0} µs, context switches {s:.2} per hop",
            thread.0, thread.1
        );
        cpu += c;
        switches += s;
    }
    println!(
        "per hop (the process's threads, or the profiler's when one runs): CPU {cpu:.0} µs, context switches {switches:.2}"
    );
    for (name, h) in names.iter().zip(&mut hops) {
        let pct = |v: &mut Vec<Duration>, p: usize| {
            v.sort();
            v.get((v.len() * p / 100).min(v.len() - 1))
                .map_or(0, Duration::as_micros)
        };
        let mut whole: Vec<Duration> = h.iter().map(|x| x.0).collect();
        let mut net: Vec<Duration> = h.iter().map(|x| x.1).collect();
        println!(
            "{name}: hop p50/p99 {}/{} µs, less the model {}/{} µs",
            pct(&mut whole, 50),
            pct(&mut whole, 99),
            pct(&mut net, 50),
            pct(&mut net, 99)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    profiled::stop(gw);
    let _ = std::fs::remove_dir_all(&state);
}
