//! Serve the fake Telegram Bot API, Slack (Web API and Socket Mode) and Discord (REST and
//! Gateway, heartbeat every `HEARTBEAT_MS`) until killed, after writing into `DIR` what points a
//! gateway at all three with nothing to say: `openclaw.json` (the three channels open to
//! everyone, the agent's model at a port nothing answers) and `env` (`SLACK_API_URL=...` and
//! `DISCORD_API_URL=...`, a line each), `env` last. For `scripts/hot-functions.sh`: the code a
//! gateway with every channel connected runs while it idles (long polls, Socket Mode pings,
//! Gateway heartbeats), placed with the idle code so a heartbeat maps no window of its own.
//!
//! `idle_channels DIR HEARTBEAT_MS`

use clawgate_tests::fake_discord::FakeDiscord;
use clawgate_tests::fake_slack::FakeSlack;
use clawgate_tests::fake_telegram::FakeTelegram;
use serde_json::json;

const TELEGRAM_TOKEN: &str = "123456:idle-channels";
const DISCORD_TOKEN: &str = "idle-channels-discord";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, heartbeat_ms] = args.as_slice() else {
        panic!("usage: idle_channels DIR HEARTBEAT_MS");
    };
    let heartbeat_ms: u64 = heartbeat_ms.parse().expect("HEARTBEAT_MS");
    let dir = std::path::Path::new(dir);
    let tg = FakeTelegram::start(TELEGRAM_TOKEN);
    let slack = FakeSlack::start();
    let discord = FakeDiscord::start_with(DISCORD_TOKEN, heartbeat_ms);
    let open = |mut v: serde_json::Value| {
        v["dmPolicy"] = json!("open");
        v["allowFrom"] = json!(["*"]);
        v
    };
    let config = json!({
        "gateway": {"tickIntervalMs": 2000},
        "models": {"providers": {"fake": {
            "baseUrl": "http://127.0.0.1:9/v1", "api": "anthropic-messages", "apiKey": "sk-idle",
            "models": [{"id": "fake-1"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-1"}}},
        "channels": {
            "telegram": open(json!({
                "botToken": TELEGRAM_TOKEN, "apiRoot": tg.api_root(),
                "network": {"dangerouslyAllowPrivateNetwork": true},
            })),
            "slack": open(json!({"botToken": "xoxb-idle", "appToken": "xapp-1-idle"})),
            "discord": open(json!({"token": DISCORD_TOKEN})),
        },
    });
    std::fs::write(dir.join("openclaw.json"), config.to_string()).expect("openclaw.json");
    let env = format!(
        "SLACK_API_URL={}\nDISCORD_API_URL={}\n",
        slack.api_url(),
        discord.api_url()
    );
    std::fs::write(dir.join("env"), env).expect("env");
    loop {
        std::thread::park();
    }
}
