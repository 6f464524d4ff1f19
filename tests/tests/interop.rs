//! Interop with the real OpenClaw clients (npm `openclaw@2026.9.6` on Node 24, installed by
//! `scripts/interop-deps.sh`) against both binaries: the CLI's `gateway call health|status`,
//! `gateway probe`, its own auth error for a wrong token, and the real node host attaching,
//! being approved with `openclaw nodes pending|approve` and answering `node.invoke`; and the
//! switch from upstream's own gateway ([`switch_from_upstream`]).
//!
//! Under `CI=true` a missing Node or package fails; elsewhere these tests skip loudly.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, TempDir, Ws};
use clawgate_tests::{both, deps, schema};
use serde_json::{Value, json};

#[path = "interop/switch_from_upstream.rs"]
mod switch_from_upstream;

const TOKEN: &str = "interop-token-7f3a";

/// How long one CLI command may take (upstream's own timeouts are 3–10 s; Node starts in ~2 s).
const CLI_WAIT: Duration = Duration::from_secs(60);

/// How long the node host may take to attach (upstream measured 5–9 s).
const NODE_WAIT: Duration = Duration::from_secs(60);

/// A private home for one openclaw process: HOME, state dir, a config that keeps its log
/// file inside and its network quiet.
struct Home(TempDir);

impl Home {
    /// `None` (skip) when the clients are not installed outside CI; a panic under CI.
    fn new() -> Option<Self> {
        let bins = [deps::node_bin_dir().join("node"), deps::openclaw()];
        deps::available("interop", &bins).then_some(())?;
        let dir = TempDir::new("openclaw");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let config = json!({
            "logging": {"file": dir.path().join("openclaw.log")},
            "models": {"catalogRefresh": {"enabled": false}},
            "update": {"checkOnStart": false},
        });
        std::fs::write(state.join("openclaw.json"), config.to_string()).expect("config");
        Some(Self(dir))
    }

    /// `openclaw <args>` with Node 24 first on PATH and this home, leading its own process group.
    fn command(&self, args: &[&str]) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![deps::node_bin_dir()];
        paths.extend(std::env::split_paths(&path));
        let mut c = Command::new(deps::openclaw());
        c.args(args)
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .env("HOME", self.0.path())
            .env("OPENCLAW_STATE_DIR", self.0.path().join("state"))
            .env("OPENCLAW_SKIP_CHANNELS", "1")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .env("OPENCLAW_NO_RESPAWN", "1")
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_GATEWAY_PASSWORD")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .stdin(Stdio::null())
            .process_group(0);
        c
    }

    fn out_file(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// What a finished CLI command printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as JSON, or a panic that shows everything.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `openclaw <args>` to completion within [`CLI_WAIT`] (killed and failed past it).
fn openclaw(args: &[&str]) -> Option<Run> {
    openclaw_with_env(args, &[])
}

/// [`openclaw`] with `env` set (for commands that take the gateway from the environment).
fn openclaw_with_env(args: &[&str], env: &[(&str, &str)]) -> Option<Run> {
    let home = Home::new()?;
    let (out, err) = (home.out_file("stdout"), home.out_file("stderr"));
    let mut command = home.command(args);
    command.envs(env.iter().copied());
    let mut child = command
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn openclaw");
    let deadline = Instant::now() + CLI_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait openclaw") {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            panic!(
                "openclaw {args:?} did not finish within {CLI_WAIT:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    Some(Run {
        code: status.code(),
        stdout: read(&out),
        stderr: read(&err),
    })
}

/// The real node host attached to a gateway, killed (and its home removed) on drop.
struct NodeHost {
    child: Child,
    home: Home,
}

impl NodeHost {
    fn start(gw: &Gateway) -> Option<Self> {
        Self::start_on(gw.port())
    }

    /// A node host for the gateway on `port` (upstream's or clawgate's).
    fn start_on(port: u16) -> Option<Self> {
        let home = Home::new()?;
        let log = std::fs::File::create(home.out_file("node.log")).expect("node log");
        let child = home
            .command(&[
                "node",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn openclaw node run");
        Some(Self { child, home })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.out_file("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Kill an openclaw process and whatever it spawned (it leads its own process group).
///
/// A direct `kill(2)` on the group: procps-ng's `kill -KILL -<pgid>` parses `-<pgid>` as an
/// option and signals the group named by its first digit (`-1`: every process we may signal).
/// The child is not reaped yet, so its pid (the group's id) cannot have been reused.
fn kill_group(child: &mut Child) {
    let group = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A gateway in token mode that logs every frame (`--verbose`).
fn start(shell: Shell) -> Gateway {
    Options::new().token(TOKEN).arg("--verbose").start(shell)
}

/// [`start`], with `model` as the agent's model.
fn start_with_model(shell: Shell, model: &FakeModel) -> Gateway {
    Options::new()
        .token(TOKEN)
        .arg("--verbose")
        .config(&format!("{{ {} }}", model.config_members()))
        .start(shell)
}

/// `ws://127.0.0.1:<port>`.
fn url(gw: &Gateway) -> String {
    format!("ws://127.0.0.1:{}", gw.port())
}

/// A local CLI operator with the scopes node approval and invocation need.
fn admin() -> ClientConfig {
    let mut c = clawgate_core::fuzzing::operator_client();
    c.host = "127.0.0.1".into();
    c.token = Some(TOKEN.into());
    c
}

/// The last lines of the gateway's log (every frame, with `--verbose`), for failure messages.
fn frames(gw: &Gateway) -> String {
    let log = gw.stderr();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn cli_call_health(shell: Shell) {
    let gw = start(shell);
    let Some(run) = gateway_call(&gw, "health", None, TOKEN) else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run}\n--- gateway\n{}", frames(&gw));
    assert_eq!(run.json()["ok"], true, "{run}");
}

fn cli_call_status(shell: Shell) {
    let gw = start(shell);
    let Some(run) = gateway_call(&gw, "status", None, TOKEN) else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run}\n--- gateway\n{}", frames(&gw));
    assert!(run.json().is_object(), "{run}");
}

fn cli_probe(shell: Shell) {
    let gw = start(shell);
    let Some(run) = openclaw(&[
        "gateway",
        "probe",
        "--url",
        &url(&gw),
        "--token",
        TOKEN,
        "--json",
    ]) else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run}\n--- gateway\n{}", frames(&gw));
    let probe = run.json();
    assert_eq!(probe["ok"], true, "{run}");
    let targets = probe["targets"].as_array().expect("targets");
    let ours = targets
        .iter()
        .find(|t| t["url"] == url(&gw))
        .unwrap_or_else(|| panic!("no target for {}: {run}", url(&gw)));
    assert_eq!(ours["connect"]["ok"], true, "{run}");
    // The probe connects as cli/probe without a device, so its scopes are stripped (as upstream).
    assert_eq!(ours["connect"]["scopeLimited"], true, "{run}");
}

fn cli_wrong_token(shell: Shell) {
    let gw = start(shell);
    let Some(run) = gateway_call(&gw, "health", None, "not-the-token") else {
        return;
    };
    assert_eq!(run.code, Some(1), "{run}");
    let err = &run.json()["error"];
    assert_eq!(err["type"], "gateway_request_error", "{run}");
    assert_eq!(err["code"], "INVALID_REQUEST", "{run}");
    assert_eq!(err["details"]["code"], "AUTH_TOKEN_MISMATCH", "{run}");
    assert_eq!(
        err["message"],
        "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
        "{run}"
    );
}

/// The node as `node.list` shows it, once it is connected.
fn wait_for_node(op: &mut Ws, node: &NodeHost, gw: &Gateway) -> Value {
    wait_for_node_of(op, node, || frames(gw))
}

/// [`wait_for_node`] on any gateway, with `gateway_log` for failure messages.
fn wait_for_node_of(op: &mut Ws, node: &NodeHost, gateway_log: impl Fn() -> String) -> Value {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        let list = op.call("node.list", Some(json!({}))).expect("node.list");
        if let Some(n) = list["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["connected"] == true))
        {
            return n.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the node host did not attach within {NODE_WAIT:?}\n--- node\n{}\n--- gateway\n{}",
            node.log(),
            gateway_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The node host attached to `gw` and approved with the real CLI (`openclaw nodes pending`,
/// `openclaw nodes approve`): its node id.
fn attach_and_approve(gw: &Gateway, node: &NodeHost, op: &mut Ws) -> String {
    let listed = wait_for_node(op, node, gw);
    assert_eq!(listed["clientId"], "node-host", "{listed}");
    let node_id = listed["nodeId"].as_str().expect("nodeId").to_string();

    let url = url(gw);
    let pending = openclaw(&[
        "nodes", "pending", "--url", &url, "--token", TOKEN, "--json",
    ])
    .expect("installed");
    assert_eq!(
        pending.code,
        Some(0),
        "{pending}\n--- gateway\n{}",
        frames(gw)
    );
    let pending = pending.json();
    let request = pending
        .as_array()
        .and_then(|p| p.iter().find(|r| r["nodeId"] == node_id.as_str()))
        .unwrap_or_else(|| panic!("no pending request for {node_id}: {pending}"));
    let request_id = request["requestId"].as_str().expect("requestId");
    assert!(
        request["commands"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "system.which")),
        "{request}"
    );

    let approve = openclaw(&[
        "nodes", "approve", request_id, "--url", &url, "--token", TOKEN,
    ])
    .expect("installed");
    assert_eq!(
        approve.code,
        Some(0),
        "{approve}\n--- gateway\n{}",
        frames(gw)
    );

    let list = op.call("node.list", Some(json!({}))).expect("node.list");
    let approved = list["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["nodeId"] == node_id.as_str()))
        .cloned();
    let approved = approved.unwrap_or_else(|| panic!("node gone after approval: {list}"));
    assert_eq!(approved["approvalState"], "approved", "{approved}");
    node_id
}

fn node_host_attaches_is_approved_and_answers_invoke(shell: Shell) {
    let gw = start(shell);
    let Some(node) = NodeHost::start(&gw) else {
        return;
    };
    let mut op = gw.ws(admin());
    op.hello().expect("admin operator hello-ok");
    let node_id = attach_and_approve(&gw, &node, &mut op);

    let invoke = json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["ls"]}, "idempotencyKey": "interop-1", "timeoutMs": 15000});
    let result = op.call("node.invoke", Some(invoke)).unwrap_or_else(|e| {
        panic!(
            "node.invoke failed: {e:?}\n--- node\n{}\n--- gateway\n{}",
            node.log(),
            frames(&gw)
        )
    });
    assert_eq!(result["ok"], true, "{result}");
    let ls = result["payload"]["bins"]["ls"]
        .as_str()
        .unwrap_or_else(|| panic!("no path for ls: {result}"));
    assert!(ls.ends_with("/ls"), "{result}");

    for text in schema::server_text_frames(op.received()) {
        let frame: Value = serde_json::from_str(&text).expect("gateway frames are JSON");
        schema::validate_server_frame(&frame).unwrap_or_else(|e| panic!("{e}\n  frame: {text}"));
    }
}

/// The agent's `nodes` tool reaches the real node host: the fake model asks for
/// `system.which` of `ls` through `nodes` action `which`, the node answers, and the model's
/// second request carries the path back.
fn the_agent_calls_system_which_on_the_real_node_host(shell: Shell) {
    let target = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let wanted = target.clone();
    let model = FakeModel::start(move |req| match req.last_tool_result() {
        Some(result) => Reply::text(&["node said: ", &result]),
        None => {
            let node = wanted.lock().unwrap().clone();
            let args = json!({"action": "which", "node": node, "bins": ["ls"]});
            Reply::tool_calls(&[("call_which", "nodes", args)])
        }
    });
    let gw = start_with_model(shell, &model);
    let Some(node) = NodeHost::start(&gw) else {
        return;
    };
    let mut op = gw.ws(admin());
    op.hello().expect("admin operator hello-ok");
    let node_id = attach_and_approve(&gw, &node, &mut op);
    *target.lock().unwrap() = node_id;
    let params = json!({"sessionKey": "agent:main:main", "message": "where is ls?", "idempotencyKey": "k-node-tool"});
    op.call("chat.send", Some(params)).expect("chat.send");
    let text = op.expect("the final answer", |e| match e {
        clawgate_core::client::Event::Event { event, payload, .. }
            if event == "chat" && payload["state"] != "delta" && payload["state"] != "status" =>
        {
            Some(payload.clone())
        }
        _ => None,
    });
    assert_eq!(
        text["state"],
        "final",
        "{text}\n--- node\n{}\n--- gateway\n{}",
        node.log(),
        frames(&gw)
    );
    let requests = model.requests();
    let result = requests[1]
        .last_tool_result()
        .expect("the tool result went back");
    let payload: Value = serde_json::from_str(&result).expect("the node's JSON payload");
    let ls = payload["bins"]["ls"]
        .as_str()
        .unwrap_or_else(|| panic!("{payload}"));
    assert!(ls.ends_with("/ls"), "{payload}");
    for text in schema::server_text_frames(op.received()) {
        let mut frame: Value = serde_json::from_str(&text).expect("gateway frames are JSON");
        if frame["event"] == "agent"
            && let Some(p) = frame["payload"].as_object_mut()
        {
            for key in ["sessionKey", "sessionId", "agentId", "lane"] {
                p.remove(key);
            }
        }
        schema::validate_server_frame(&frame).unwrap_or_else(|e| panic!("{e}\n  frame: {text}"));
    }
}

/// `openclaw gateway call <method> [--params <params>] --token <token> --json` against `gw`.
fn gateway_call(gw: &Gateway, method: &str, params: Option<&Value>, token: &str) -> Option<Run> {
    let params = params.map(Value::to_string);
    let url = url(gw);
    let mut args = vec!["gateway", "call", method];
    if let Some(p) = &params {
        args.extend(["--params", p]);
    }
    args.extend(["--url", &url, "--token", token, "--json"]);
    openclaw(&args)
}

/// `openclaw gateway call <method> --params <params>` against `gw`, exit 0, its JSON.
fn call(gw: &Gateway, method: &str, params: &Value) -> Option<Value> {
    let run = gateway_call(gw, method, Some(params), TOKEN)?;
    assert_eq!(run.code, Some(0), "{run}\n--- gateway\n{}", frames(gw));
    Some(run.json())
}

fn cli_chat_send_reaches_the_model_and_history_has_the_answer(shell: Shell) {
    let model = FakeModel::echo();
    let gw = start_with_model(shell, &model);
    let params = json!({"sessionKey": "agent:main:main", "message": "hello from the cli", "idempotencyKey": "k-cli-1"});
    let Some(started) = call(&gw, "chat.send", &params) else {
        return;
    };
    assert_eq!(started, json!({"runId": "k-cli-1", "status": "started"}));
    let want = "Echo from fake LLM: hello from the cli";
    let deadline = Instant::now() + CLI_WAIT;
    loop {
        let history = call(
            &gw,
            "chat.history",
            &json!({"sessionKey": "agent:main:main"}),
        )
        .expect("openclaw ran once already");
        let texts: Vec<String> = history["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "assistant")
            .filter_map(|m| m["content"][0]["text"].as_str().map(String::from))
            .collect();
        if texts.iter().any(|t| t == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no assistant answer in the history: {history}\n--- gateway\n{}",
            frames(&gw)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(model.requests().len(), 1);
}

/// `openclaw agent --message …` runs a turn through clawgate (`agent`, answered twice) and
/// prints the fake model's answer.
fn cli_agent_prints_the_models_answer(shell: Shell) {
    let model = FakeModel::echo();
    let gw = start_with_model(shell, &model);
    let url = url(&gw);
    let Some(run) = openclaw_with_env(
        &[
            "agent",
            "--message",
            "hello from openclaw agent",
            "--session-key",
            "agent:main:main",
        ],
        &[
            ("OPENCLAW_GATEWAY_URL", &url),
            ("OPENCLAW_GATEWAY_TOKEN", TOKEN),
        ],
    ) else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run}\n--- gateway\n{}", frames(&gw));
    assert!(
        run.stdout
            .contains("Echo from fake LLM: hello from openclaw agent"),
        "{run}\n--- gateway\n{}",
        frames(&gw)
    );
    assert_eq!(model.requests().len(), 1);
}

/// The real `openclaw tui` in a detached tmux session of its own tmux server (a private
/// socket in the client's home), killed with that server on drop.
struct Tui {
    home: Home,
    tmux: PathBuf,
}

/// How long the TUI may take to connect, or to show an answer (Node starts in ~2 s; the
/// TUI loads its plugins first).
const TUI_WAIT: Duration = Duration::from_secs(90);

impl Tui {
    /// `openclaw tui --url … --token …` against `gw` in a 120×40 pane.
    fn start(gw: &Gateway) -> Option<Self> {
        let home = Home::new()?;
        let tmux = find_tmux();
        deps::available("tui", std::slice::from_ref(&tmux)).then_some(())?;
        let tui = home.command(&["tui", "--url", &url(gw), "--token", TOKEN]);
        let mut c = Command::new(&tmux);
        c.arg("-S")
            .arg(home.out_file("tmux.sock"))
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "tui"])
            .args(["-x", "120", "-y", "40", "--"])
            .arg(tui.get_program())
            .args(tui.get_args());
        for (k, v) in tui.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let status = c.env("TERM", "xterm-256color").status().expect("run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        Some(Self { home, tmux })
    }

    /// `tmux <args>` on this TUI's server.
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.tmux)
            .arg("-S")
            .arg(self.home.out_file("tmux.sock"))
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// What the pane shows (wrapped lines joined).
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-t", "tui"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the pane shows `text`; `None` if it never did within [`TUI_WAIT`].
    fn wait_for(&self, text: &str, mut meanwhile: impl FnMut()) -> Option<String> {
        let deadline = Instant::now() + TUI_WAIT;
        while Instant::now() < deadline {
            let screen = self.screen();
            if screen.contains(text) {
                return Some(screen);
            }
            meanwhile();
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    /// Type `text` into the editor and press Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "tui", "-l", text]);
        std::thread::sleep(Duration::from_millis(300));
        self.tmux(&["send-keys", "-t", "tui", "Enter"]);
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// `tmux` on PATH (`/usr/bin/tmux` when PATH has none, so a missing tmux is reported there).
fn find_tmux() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("tmux"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/tmux"))
}

/// The real `openclaw tui` connects to clawgate (`sessions.subscribe`, `agents.list`,
/// `sessions.describe`, `chat.history`, …), and a typed message gets the fake model's answer
/// on screen, twice (the second shows the TUI came back to idle after the first). The model
/// waits 300 ms before answering, as a real one does: the TUI handles a run that ends before
/// it has read the `chat.send` answer as still running (it reads that answer after the
/// events that arrived with it), which upstream's slower start never shows it.
fn tui_connects_and_shows_the_models_answer(shell: Shell) {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["Echo from fake LLM: ", &said]).with_delay(Duration::from_millis(300))
    });
    let gw = start_with_model(shell, &model);
    let Some(tui) = Tui::start(&gw) else {
        return;
    };
    let failed = |what: &str| -> ! {
        panic!(
            "{what}
--- screen
{}
--- gateway
{}",
            tui.screen(),
            frames(&gw)
        )
    };
    if tui.wait_for("gateway connected", || {}).is_none() {
        failed("the TUI never connected");
    }
    for (n, said) in ["hello from the tui", "and once more"].iter().enumerate() {
        tui.type_line(said);
        let mut pressed = Instant::now();
        let answer = format!("Echo from fake LLM: {said}");
        // A key pressed while the TUI is still settling can be dropped: press Enter again
        // while the model has not been asked.
        let shown = tui.wait_for(&answer, || {
            if model.requests().len() == n && pressed.elapsed() > Duration::from_secs(3) {
                tui.tmux(&["send-keys", "-t", "tui", "Enter"]);
                pressed = Instant::now();
            }
        });
        if shown.is_none() {
            failed(&format!("the answer {answer:?} never showed"));
        }
        if tui.wait_for("idle", || {}).is_none() {
            failed("the TUI did not come back to idle");
        }
    }
    assert_eq!(model.requests().len(), 2);
}

both!(
    tui_connects_and_shows_the_models_answer,
    cli_agent_prints_the_models_answer,
    cli_call_health,
    cli_call_status,
    cli_probe,
    cli_wrong_token,
    cli_chat_send_reaches_the_model_and_history_has_the_answer,
    node_host_attaches_is_approved_and_answers_invoke,
    the_agent_calls_system_which_on_the_real_node_host
);
