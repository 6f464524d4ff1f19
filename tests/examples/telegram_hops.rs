//! Drive `N` Telegram messages, one at a time on one chat, through a gateway binary (started
//! under an optional profiler command) against the fake Bot API and an echoing fake model, then
//! stop it and write what went on the wire (the model requests' heads and bodies, the
//! `sendMessage` bodies) to a file: for profiling a channel hop and checking that a change
//! leaves the bytes alone.
//!
//! `telegram_hops CLAWGATE MESSAGES WIRE_OUT [PROFILER ARGS...]`

use std::io::Write;
use std::time::{Duration, Instant};

use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::profiled;
use serde_json::json;

const TOKEN: &str = "4242:hops-bot";
const CHAT: i64 = 6999;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, n, out, prefix @ ..] = args.as_slice() else {
        panic!("usage: telegram_hops CLAWGATE MESSAGES WIRE_OUT [PROFILER ARGS...]");
    };
    let n: usize = n.parse().expect("MESSAGES");
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["Echo from fake LLM: ", &said])
    });
    let tg = FakeTelegram::start(TOKEN);
    let state = std::env::temp_dir().join(format!("telegram-hops-{}", std::process::id()));
    std::fs::create_dir_all(&state).expect("state dir");
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": model.base_url(), "api": "openai-completions", "apiKey": "sk-bench",
            "models": [{"id": "echo", "name": "echo"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/echo"}, "maxConcurrent": 4}},
        "channels": {"telegram": {
            "botToken": TOKEN, "apiRoot": tg.api_root(),
            "network": {"dangerouslyAllowPrivateNetwork": true},
            "dmPolicy": "open", "allowFrom": ["*"],
        }},
        "gateway": {"tickIntervalMs": 30_000},
    });
    std::fs::write(state.join("openclaw.json"), config.to_string()).expect("config");
    let gw = profiled::spawn(bin, prefix, &state, &[]);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let end = Instant::now() + Duration::from_secs(300);
        while !done() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    wait("the first getUpdates", &|| {
        !tg.timed_calls("getUpdates").is_empty()
    });
    for i in 0..n {
        let tok = format!("q{i}z");
        tg.push_dm(CHAT, "Bench", &format!("hello {tok}"));
        wait(&tok, &|| {
            tg.calls("sendMessage")
                .iter()
                .any(|b| b["text"].as_str().is_some_and(|t| t.contains(&tok)))
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM: the profiler writes its output as the gateway exits.
    profiled::stop(gw);
    let mut f = std::fs::File::create(out).expect("out");
    for r in model.requests() {
        writeln!(f, "{} {}", r.method, r.path).unwrap();
        for (k, v) in &r.headers {
            writeln!(f, "{k}: {v}").unwrap();
        }
        f.write_all(&r.body).unwrap();
        writeln!(f).unwrap();
    }
    for b in tg.calls("sendMessage") {
        writeln!(f, "sendMessage {b}").unwrap();
    }
    let _ = std::fs::remove_dir_all(&state);
}
