//! MCP servers and skills over real sockets, on both shells: the fake MCP server of the
//! tests over stdio (the `fake-mcp` binary, spawned by the gateway) and over Streamable HTTP
//! (JSON answers, SSE for calls, a session id), its tools in `tools.catalog` once started,
//! called through `tools.invoke`; a server that cannot start reported in the catalog and in
//! `health` (`plugins.errors`) beside working ones; a hanging tool timed out (and the server told); a result
//! too large cut with a marker; a crashed server restarted; a skill in the system prompt and
//! read by `read_skill`, and the first model turn starting the servers. An agent turn started
//! right after gateway start calls an MCP tool end to end (model → `local__echo` → model →
//! final), offered directly with `tools.toolSearch: false` and through `tool_search` /
//! `tool_call` by default: the turn waits for the starting servers, the server records the
//! call, and the transcript holds upstream's rows.

use std::time::{Duration, Instant};

use clawgate_core::tools::TRUNCATED_MARKER;
use clawgate_tests::both;
use clawgate_tests::fake_mcp::{FakeMcpHttp, SESSION_ID};
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use clawgate_tests::tempdir::TempDir;
use serde_json::{Value, json};

use super::agent::{assert_frames_valid, chat_send, operator, run_events};
use super::tools::{final_text, history};

const FAKE_MCP: &str = env!("CARGO_BIN_EXE_fake-mcp");

struct Setup {
    gw: Gateway,
    http: FakeMcpHttp,
    dir: TempDir,
}

/// A gateway with three servers: `local` (stdio, calls time out after 1.5 s), `remote`
/// (Streamable HTTP, `crash` filtered out) and `broken` (a command that does not exist).
fn start(shell: Shell, extra: &str) -> Setup {
    let http = FakeMcpHttp::start();
    let dir = TempDir::new("mcp");
    let log = dir.path().join("mcp.log");
    let config = format!(
        r#"{{ "mcp": {{ "servers": {{
            "local": {{ "command": {cmd}, "env": {{ "FAKE_MCP_LOG": {log} }}, "requestTimeoutMs": 1500 }},
            "remote": {{ "url": {url}, "transport": "streamable-http",
                         "headers": {{ "X-Test": "yes" }}, "toolFilter": {{ "exclude": ["crash"] }} }},
            "broken": {{ "command": "/nonexistent/mcp-server" }}
        }} }} {extra} }}"#,
        cmd = json!(FAKE_MCP),
        log = json!(log.display().to_string()),
        url = json!(http.url()),
    );
    let gw = Options::new().token("t0ken").config(&config).start(shell);
    Setup { gw, http, dir }
}

/// Every tool of `tools.catalog` (the servers start at the first call).
fn catalog(ws: &mut Ws) -> Vec<Value> {
    let c = ws
        .call("tools.catalog", Some(json!({})))
        .expect("tools.catalog");
    c["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["tools"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn ready(tools: &[Value], id: &str) -> bool {
    tools.iter().any(|t| {
        t["id"] == id
            && !t["tags"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("unavailable")))
    })
}

/// Ask `tools.catalog` until every one of `ids` is ready (bounded).
fn wait_ready(ws: &mut Ws, ids: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let tools = catalog(ws);
        if ids.iter().all(|id| ready(&tools, id)) {
            return tools;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {ids:?} in {tools:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn invoke(ws: &mut Ws, name: &str, args: Value) -> Value {
    ws.call("tools.invoke", Some(json!({"name": name, "args": args})))
        .expect("tools.invoke")
}

fn mcp_tools_are_listed_and_called_over_both_transports(shell: Shell) {
    let s = start(shell, "");
    let mut ws = operator(&s.gw);
    let tools = wait_ready(
        &mut ws,
        &[
            "local__echo",
            "local__hang",
            "local__big",
            "local__crash",
            "remote__echo",
            "remote__big",
        ],
    );
    assert!(!ready(&tools, "remote__crash"), "the filter hides it");
    let echo = tools.iter().find(|t| t["id"] == "local__echo").unwrap();
    assert_eq!(echo["description"], "Echoes its text.", "unchanged");
    let broken = tools
        .iter()
        .find(|t| t["id"] == "broken")
        .expect("the broken server is listed");
    assert!(
        broken["description"]
            .as_str()
            .unwrap()
            .contains("cannot start /nonexistent/mcp-server"),
        "{broken}"
    );
    assert_eq!(
        invoke(&mut ws, "local__echo", json!({"text": "over stdio"})),
        json!({"ok": true, "toolName": "local__echo", "output": "echo: over stdio"})
    );
    assert_eq!(
        invoke(&mut ws, "remote__echo", json!({"text": "over HTTP"})),
        json!({"ok": true, "toolName": "remote__echo", "output": "echo: over HTTP"})
    );
    let requests = s.http.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    assert_eq!(requests[0].json["method"], "initialize");
    assert_eq!(requests[0].header("x-test"), Some("yes"));
    for r in &requests[1..] {
        assert_eq!(r.header("mcp-session-id"), Some(SESSION_ID), "{:?}", r.json);
        assert_eq!(r.header("mcp-protocol-version"), Some("2025-06-18"));
        assert_eq!(
            r.header("accept"),
            Some("application/json, text/event-stream")
        );
    }
    let health = ws.call("health", None).expect("health");
    let problems = health["plugins"]["errors"]
        .as_array()
        .expect("plugin errors");
    assert!(
        problems
            .iter()
            .any(|p| p["id"] == "mcp:broken" && p["origin"] == "mcp"),
        "{health}"
    );
    assert!(!problems.iter().any(|p| p["id"] == "mcp:local"), "{health}");
    assert_frames_valid(&ws);
}

fn a_hanging_tool_times_out_and_a_large_result_is_cut(shell: Shell) {
    let s = start(shell, "");
    let mut ws = operator(&s.gw);
    wait_ready(&mut ws, &["local__hang", "local__big"]);
    let started = Instant::now();
    let hung = invoke(&mut ws, "local__hang", json!({}));
    assert_eq!(hung["ok"], false, "{hung}");
    assert!(
        hung["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 1500 ms"),
        "{hung}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // The server is told (it writes what it reads to its log as it reads it).
    let log = s.dir.path().join("mcp.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("notifications/cancelled")) {
        assert!(Instant::now() < deadline, "the server was not told");
        std::thread::sleep(Duration::from_millis(20));
    }
    let big = invoke(&mut ws, "local__big", json!({"chars": 300_000}));
    let output = big["output"].as_str().expect("text output");
    assert!(
        output.ends_with(TRUNCATED_MARKER),
        "{}",
        &output[output.len() - 80..]
    );
    assert!(
        output.len() < 70_000,
        "cut to the result bound: {}",
        output.len()
    );
    assert_eq!(
        invoke(&mut ws, "local__echo", json!({"text": "still"}))["output"],
        "echo: still"
    );
}

fn a_crashed_server_is_reported_and_restarted(shell: Shell) {
    let s = start(shell, "");
    let mut ws = operator(&s.gw);
    wait_ready(&mut ws, &["local__crash"]);
    let crashed = invoke(&mut ws, "local__crash", json!({}));
    assert_eq!(crashed["ok"], false, "{crashed}");
    assert!(
        crashed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped before answering"),
        "{crashed}"
    );
    // Restarted after its backoff (250 ms), and callable again.
    wait_ready(&mut ws, &["local__echo"]);
    assert_eq!(
        invoke(&mut ws, "local__echo", json!({"text": "back"}))["output"],
        "echo: back"
    );
    let log = std::fs::read_to_string(s.dir.path().join("mcp.log")).expect("the server's log");
    assert_eq!(
        log.matches("\"initialize\"").count(),
        2,
        "started twice: {log}"
    );
    assert!(s.gw.wait_for_log("mcp: server local failed", Duration::from_secs(5)));
    assert_frames_valid(&ws);
}

fn a_skill_is_offered_in_the_prompt_and_read_on_demand(shell: Shell) {
    let skills = TempDir::new("skills");
    let folder = skills.path().join("release-notes");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("SKILL.md"),
        "---\nname: release-notes\ndescription: Write release notes from a changelog.\n---\n# Release notes\nGroup changes by kind.\n",
    )
    .unwrap();
    let model = FakeModel::start(|_| Reply::text(&["ok"]));
    let extra = format!(
        r#", {} "skills": {{ "load": {{ "extraDirs": [{}] }} }}"#,
        model.config_members(),
        json!(skills.path().display().to_string())
    );
    let s = start(shell, &extra);
    let mut ws = operator(&s.gw);
    assert_eq!(
        invoke(&mut ws, "read_skill", json!({"name": "release-notes"})),
        json!({"ok": true, "toolName": "read_skill", "output": "# Release notes\nGroup changes by kind."})
    );
    chat_send(&mut ws, "write notes", "k-skill");
    run_events(&mut ws, "k-skill");
    // The turn started the MCP servers (nothing asked for the catalog before it).
    let log = s.dir.path().join("mcp.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("\"initialize\"")) {
        assert!(
            Instant::now() < deadline,
            "the turn did not start the stdio server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let system = model.requests()[0].json["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        system.contains("<name>release-notes</name>\n    <description>Write release notes from a changelog.</description>"),
        "{system}"
    );
}

/// The tool messages of a model request, in order.
fn tool_results(req: &clawgate_tests::fake_model::RecordedRequest) -> usize {
    req.json["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count())
}

/// The names of the tools a model request offered.
fn offered(req: &clawgate_tests::fake_model::RecordedRequest) -> Vec<String> {
    req.json["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A turn sent right after gateway start whose model makes `calls` (one per request, in
/// order) and then answers with the last tool result: the final text, and the model's
/// requests. The server's log must record the echo.
fn turn_calling_mcp(
    shell: Shell,
    tools: &str,
    calls: Vec<(&'static str, Value)>,
) -> (
    String,
    Vec<clawgate_tests::fake_model::RecordedRequest>,
    Vec<Value>,
) {
    let script = calls.clone();
    let model = FakeModel::start(move |req| {
        let done = tool_results(req);
        match script.get(done) {
            Some((name, args)) => {
                Reply::tool_calls(&[(&format!("call_{done}"), name, args.clone())])
            }
            None => Reply::text(&["tool said: ", &req.last_tool_result().unwrap_or_default()]),
        }
    });
    let s = start(shell, &format!(", {} {tools}", model.config_members()));
    let mut ws = operator(&s.gw);
    chat_send(&mut ws, "echo something", "k-mcp-turn");
    let events = run_events(&mut ws, "k-mcp-turn");
    let text = final_text(&events);
    let log = std::fs::read_to_string(s.dir.path().join("mcp.log")).expect("the server's log");
    assert!(
        log.contains("\"tools/call\"") && log.contains("from the turn"),
        "the server saw no call: {log}"
    );
    let items: Vec<&Value> = events
        .iter()
        .filter(|(e, p)| e == "agent" && p["stream"] == "item")
        .map(|(_, p)| &p["data"])
        .collect();
    assert!(
        items
            .iter()
            .any(|i| i["kind"] == "tool" && i["phase"] == "end"),
        "{items:?}"
    );
    let h = history(&mut ws);
    assert_frames_valid(&ws);
    (text, model.requests(), h)
}

fn a_turn_calls_an_mcp_tool_offered_directly(shell: Shell) {
    let call = ("local__echo", json!({"text": "from the turn"}));
    let (text, requests, h) =
        turn_calling_mcp(shell, r#""tools": { "toolSearch": false }"#, vec![call]);
    assert_eq!(text, "tool said: echo: from the turn");
    // The turn waited for the servers that the turn itself started.
    let first = offered(&requests[0]);
    assert!(first.contains(&"local__echo".to_string()), "{first:?}");
    assert!(first.contains(&"remote__echo".to_string()), "{first:?}");
    assert!(!first.contains(&"tool_call".to_string()), "{first:?}");
    let roles: Vec<&str> = h.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "toolResult", "assistant"]);
    assert_eq!(h[1]["content"][0]["type"], "toolCall");
    assert_eq!(h[1]["content"][0]["name"], "local__echo");
    assert_eq!(h[2]["toolCallId"], "call_0");
    assert_eq!(h[2]["toolName"], "local__echo");
}

fn a_turn_finds_and_calls_an_mcp_tool_through_tool_search(shell: Shell) {
    let calls = vec![
        ("tool_search", json!({"query": "echo"})),
        (
            "tool_call",
            json!({"id": "local__echo", "args": {"text": "from the turn"}}),
        ),
    ];
    let (text, requests, h) = turn_calling_mcp(shell, "", calls);
    assert_eq!(text, "tool said: echo: from the turn");
    let first = offered(&requests[0]);
    assert!(first.contains(&"tool_search".to_string()), "{first:?}");
    assert!(!first.contains(&"local__echo".to_string()), "{first:?}");
    let found = requests[1].last_tool_result().unwrap_or_default();
    assert!(found.contains("local__echo"), "{found}");
    let roles: Vec<&str> = h.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "toolResult",
            "assistant",
            "toolResult",
            "assistant"
        ]
    );
    assert_eq!(h[3]["content"][0]["name"], "tool_call");
}

both!(
    a_turn_calls_an_mcp_tool_offered_directly,
    a_turn_finds_and_calls_an_mcp_tool_through_tool_search,
    mcp_tools_are_listed_and_called_over_both_transports,
    a_hanging_tool_times_out_and_a_large_result_is_cut,
    a_crashed_server_is_reported_and_restarted,
    a_skill_is_offered_in_the_prompt_and_read_on_demand
);
