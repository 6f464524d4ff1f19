//! Upstream's Control UI in a real browser against both binaries: headless Chromium
//! (Debian's `chromium`, driven over the DevTools protocol by playwright-core, both installed
//! by `scripts/interop-deps.sh`) loads the UI from clawgate with the token in the URL
//! fragment, reaches hello-ok and the chat composer, sends two messages and sees each of the
//! fake model's streamed replies rendered once, stops a third, slow reply with the Stop button,
//! approves one node's pending pairing and rejects another's from the Devices page, then
//! opens the Systems, Channels (a fake Telegram account shown running) and Logs views (the
//! start-up line in the view's time, level and subsystem columns), with no uncaught page
//! error, no reply shown twice, no visible error banner or "could not be refreshed" notice
//! and no request answered with an error; the requests of each view are recorded, and the
//! page's `/control-ui-config.json` is read with its token. The driver is
//! `tests/browser/control-ui.mjs`; its screenshots of every step are kept under
//! `target/control-ui-artifacts/` when a run fails (or always, with
//! `CLAWGATE_KEEP_SCREENSHOTS=1`).
//!
//! Under `CI=true` a missing browser, Node or package fails; elsewhere the test skips loudly.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clawgate_core::device::DeviceKey;
use clawgate_core::scopes::Role;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use clawgate_tests::{both, deps};
use serde_json::{Value, json};

const TOKEN: &str = "browser-token-51c2";
/// The display name of the node whose pairing the page approves.
const NODE: &str = "kitchen-pi";
/// The display name of the node whose pairing the page rejects.
const REJECTED_NODE: &str = "garage-pi";
/// The fake Telegram bot's token.
const BOT_TOKEN: &str = "123456:browser-bot";
/// The message whose slow reply the page stops, and that reply's first and last words.
const ABORT: &str = "count slowly, then stop";
const ABORT_FIRST: &str = "Counting:";
const ABORT_LAST: &str = "twenty";
/// What the Channels view shows on the Telegram card of a running account.
const CHANNEL_STATUS: &str = "Running";
/// The start of the gateway's start-up log line, which the Logs view must show.
const LOG_LINE: &str = "gateway ready: auth mode token";
/// The whole browser run: start-up, connect, three chat turns, the devices and the other
/// views (each step waits at most 20 s).
const RUN_WAIT: Duration = Duration::from_secs(180);
/// The pause before each streamed word of the model's answer.
const STREAM_PACE: Duration = Duration::from_millis(300);

fn artifacts(shell: Shell) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join("control-ui-artifacts")
        .join(format!("{shell:?}-{}", std::process::id()))
}

/// A node host named `name` attached with a new device (from `seed`): its device is approved
/// silently (a local connection) and its commands wait for an operator's approval.
fn attach_node(gw: &Gateway, name: &str, seed: u8) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some(TOKEN.into());
    cfg.device = Some(DeviceKey::from_seed([seed; 32]));
    cfg.client.id = "node-host".into();
    cfg.client.mode = "node".into();
    cfg.client.display_name = Some(name.into());
    cfg.role = Role::Node;
    cfg.scopes = Vec::new();
    cfg.caps = vec!["system".into()];
    cfg.commands = vec!["system.which".into()];
    let mut node = gw.ws(cfg);
    node.hello().expect("node hello-ok");
    node
}

fn chat_in_the_browser(shell: Shell) {
    let needed = [
        deps::chromium(),
        deps::node_bin_dir().join("node"),
        deps::playwright(),
        deps::control_ui_root().join("index.html"),
    ];
    if !deps::available("control ui in a browser", &needed) {
        return;
    }
    // The first reply comes at once in two deltas (the run ends in the same instant as its
    // last delta); the second streams word by word, slowly enough for the page to render the
    // live reply before the run's final event and the transcript's copy of it arrive.
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        if said == ABORT {
            // Slow enough that the page stops it long before its last word.
            let count = format!(
                "{ABORT_FIRST} one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen {ABORT_LAST}"
            );
            let words: Vec<&str> = count.split_inclusive(' ').collect();
            return Reply::text(&words).with_delay(STREAM_PACE * 2);
        }
        if !said.ends_with(" again") {
            return Reply::text(&["Echo from fake LLM: ", &said]);
        }
        let echo = format!("Echo from fake LLM: {said}");
        let words: Vec<&str> = echo.split_inclusive(' ').collect();
        Reply::text(&words).with_delay(STREAM_PACE)
    });
    let telegram = FakeTelegram::start(BOT_TOKEN);
    let root = deps::control_ui_root().display().to_string();
    let gw = Options::new()
        .config(&format!(
            "{{ {} channels: {{ telegram: {{ {} }} }}, gateway: {{ auth: {{ token: {TOKEN:?} }}, controlUi: {{ root: {root:?} }} }} }}",
            model.config_members(),
            telegram.config_members(BOT_TOKEN)
        ))
        .start(shell);
    let _node = attach_node(&gw, NODE, 42);
    let _rejected = attach_node(&gw, REJECTED_NODE, 43);
    let mut admin = gw.ws({
        let mut cfg = gw.cli();
        cfg.token = Some(TOKEN.into());
        cfg.scopes = vec!["operator.read".into(), "operator.pairing".into()];
        cfg
    });
    admin.hello().expect("operator hello-ok");
    let pending = admin.call("node.pair.list", None).expect("node.pair.list");
    assert_eq!(
        pending["pending"].as_array().map(Vec::len),
        Some(2),
        "{pending}"
    );
    let out = artifacts(shell);
    let _ = std::fs::remove_dir_all(&out);
    let url = format!("http://127.0.0.1:{}/#token={TOKEN}", gw.port());
    let message = "hello from chromium";
    let expected = format!("Echo from fake LLM: {message}");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/control-ui.mjs");
    let mut child = Command::new(deps::node_bin_dir().join("node"))
        .arg(&script)
        .arg(
            json!({
                "url": url, "outDir": out, "message": message, "expected": expected,
                "abort": ABORT, "abortShown": ABORT_FIRST, "abortNever": ABORT_LAST,
                "approve": NODE, "reject": REJECTED_NODE, "logLine": LOG_LINE,
                "channel": {"label": "Telegram", "status": CHANNEL_STATUS},
            })
            .to_string(),
        )
        .env("CLAWGATE_INTEROP_DIR", deps::interop_dir())
        .env("CLAWGATE_CHROMIUM", deps::chromium())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > RUN_WAIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("driver output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let ok = status.is_some_and(|s| s.success()) && summary["ok"] == true;
    assert!(
        ok,
        "{shell:?}: the Control UI run failed ({status:?}): {}\nstderr: {}\nscreenshots: {}\ngateway log:\n{}",
        summary,
        String::from_utf8_lossy(&output.stderr),
        out.display(),
        gw.stderr()
    );
    assert_eq!(summary["pageErrors"], Value::Array(vec![]), "{summary}");
    assert_eq!(
        summary["steps"],
        json!([
            "loaded",
            "connected",
            "replied",
            "replied-again",
            "aborted",
            "pending",
            "approved",
            "rejected",
            "systems",
            "channels",
            "logs",
            "log-line"
        ])
    );
    // Every request the page made was answered without an error (upstream's UI calls many
    // methods whatever hello-ok lists).
    assert_eq!(summary["failedMethods"], json!({}), "{summary}");
    // It read its settings with the token: the assistant and the server as clawgate has them.
    let bootstrap = &summary["bootstrapConfig"];
    let statuses = bootstrap["statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| s == 200),
        "{summary}"
    );
    assert_eq!(bootstrap["body"]["assistantName"], "Assistant", "{summary}");
    assert_eq!(bootstrap["body"]["basePath"], "", "{summary}");
    assert_eq!(
        bootstrap["body"]["serverVersion"], summary["server"]["version"],
        "{summary}"
    );
    // The approval and the rejection the page made are the gateway's: nothing pending, the
    // approved node's commands granted, the rejected one's not.
    let pending = admin.call("node.pair.list", None).expect("node.pair.list");
    assert_eq!(pending["pending"], json!([]), "{pending}");
    let nodes = admin.call("node.list", None).expect("node.list");
    let commands = |name: &str| {
        nodes["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["displayName"] == name))
            .map(|n| n["commands"].clone())
    };
    assert_eq!(commands(NODE), Some(json!(["system.which"])), "{nodes}");
    assert_ne!(
        commands(REJECTED_NODE),
        Some(json!(["system.which"])),
        "{nodes}"
    );
    // Each view made its own requests: the stop, the pairing answers, the channels' status
    // and the log tail among them.
    let called = |view: &str, method: &str| {
        summary["views"][view]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == method))
    };
    for (view, method) in [
        ("chat", "chat.abort"),
        ("devices", "node.pair.approve"),
        ("devices", "node.pair.reject"),
        ("channels", "channels.status"),
        ("logs", "logs.tail"),
    ] {
        assert!(called(view, method), "{view}: no {method} in {summary}");
    }
    assert_eq!(summary["abortNeverShown"], true, "{summary}");
    // The Logs view parsed the start-up line into its columns.
    let row = &summary["logRow"];
    assert_eq!(row["level"], "info", "{summary}");
    assert_eq!(row["subsystem"], "gateway", "{summary}");
    assert!(
        row["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(LOG_LINE))
            && row["time"].as_str().is_some_and(|t| !t.is_empty()),
        "{summary}"
    );
    assert_eq!(summary["logRowFiltered"], true, "{summary}");
    // The model was asked three times, with the messages typed in the page.
    let asked: Vec<String> = model
        .requests()
        .iter()
        .filter_map(|r| r.last_user_text())
        .collect();
    assert_eq!(
        asked,
        [
            message.to_string(),
            format!("{message} again"),
            ABORT.to_string()
        ],
        "{summary}"
    );
    // `CLAWGATE_KEEP_SCREENSHOTS=1` keeps a passing run's screenshots (the README's picture).
    if std::env::var_os("CLAWGATE_KEEP_SCREENSHOTS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

both!(chat_in_the_browser);
