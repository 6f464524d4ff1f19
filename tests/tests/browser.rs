//! Upstream's Control UI in a real browser against both binaries: headless Chromium
//! (Debian's `chromium`, driven over the DevTools protocol by playwright-core, both installed
//! by `scripts/interop-deps.sh`) loads the UI from clawgate with the token in the URL
//! fragment, reaches hello-ok and the chat composer, sends two messages and sees each of the
//! fake model's streamed replies rendered once, then approves a node's pending pairing from the Devices
//! page, then opens the Systems, Channels and Logs views (finding the start-up line in the
//! logs), with no uncaught page error, no reply shown twice, no visible error banner or "could
//! not be refreshed" notice and no request answered with an error; the page's
//! `/control-ui-config.json` is read with its token. The
//! driver is
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
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use clawgate_tests::{both, deps};
use serde_json::Value;

const TOKEN: &str = "browser-token-51c2";
/// The display name of the node whose pairing the page approves.
const NODE: &str = "kitchen-pi";
/// The start of the gateway's start-up log line, which the Logs view must show.
const LOG_LINE: &str = "gateway ready: auth mode token";
/// The whole browser run: start-up, connect, one chat turn (each step waits at most 20 s).
const RUN_WAIT: Duration = Duration::from_secs(120);
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

/// A node host attached with a new device: its device is approved silently (a local
/// connection) and its commands wait for an operator's approval.
fn attach_node(gw: &Gateway) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some(TOKEN.into());
    cfg.device = Some(DeviceKey::from_seed([42; 32]));
    cfg.client.id = "node-host".into();
    cfg.client.mode = "node".into();
    cfg.client.display_name = Some(NODE.into());
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
        if !said.ends_with(" again") {
            return Reply::text(&["Echo from fake LLM: ", &said]);
        }
        let echo = format!("Echo from fake LLM: {said}");
        let words: Vec<&str> = echo.split_inclusive(' ').collect();
        Reply::text(&words).with_delay(STREAM_PACE)
    });
    let root = deps::control_ui_root().display().to_string();
    let gw = Options::new()
        .config(&format!(
            "{{ {} gateway: {{ auth: {{ token: {TOKEN:?} }}, controlUi: {{ root: {root:?} }} }} }}",
            model.config_members()
        ))
        .start(shell);
    let _node = attach_node(&gw);
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
        Some(1),
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
        .args([
            url.as_str(),
            &out.display().to_string(),
            message,
            &expected,
            NODE,
            LOG_LINE,
        ])
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
        serde_json::json!([
            "loaded",
            "connected",
            "replied",
            "replied-again",
            "pending",
            "approved",
            "systems",
            "channels",
            "logs",
            "log-line"
        ])
    );
    // Every request the page made was answered without an error (upstream's UI calls many
    // methods whatever hello-ok lists).
    assert_eq!(summary["failedMethods"], serde_json::json!({}), "{summary}");
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
    // The approval the page made is the gateway's: nothing pending, the commands granted.
    let pending = admin.call("node.pair.list", None).expect("node.pair.list");
    assert_eq!(pending["pending"], serde_json::json!([]), "{pending}");
    let nodes = admin.call("node.list", None).expect("node.list");
    assert_eq!(
        nodes["nodes"][0]["commands"],
        serde_json::json!(["system.which"]),
        "{nodes}"
    );
    // The model was asked once, with the message typed in the page.
    let asked: Vec<String> = model
        .requests()
        .iter()
        .filter_map(|r| r.last_user_text())
        .collect();
    assert_eq!(
        asked,
        [message.to_string(), format!("{message} again")],
        "{summary}"
    );
    // `CLAWGATE_KEEP_SCREENSHOTS=1` keeps a passing run's screenshots (the README's picture).
    if std::env::var_os("CLAWGATE_KEEP_SCREENSHOTS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

both!(chat_in_the_browser);
