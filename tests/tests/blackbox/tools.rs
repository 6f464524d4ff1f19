//! Tool calls over real sockets against both binaries: the fake model calls a tool, the
//! gateway runs it (a real command on a host worker, the refusal under the default
//! `tools.exec.mode`, a command killed at its timeout, an oversized output cut with a
//! marker), feeds the result back and the model answers. Upstream's transcript rows and
//! `agent` `item` / `command_output` events, `tools.catalog` / `tools.invoke`, and every
//! frame validated against upstream's schema.

use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeApi, FakeModel, RecordedRequest, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use serde_json::{Value, json};

use super::agent::{assert_frames_valid, chat_send, run_events};

/// A model that calls `exec` with `command` first, then answers with the tool's result.
pub(super) fn exec_model(api: FakeApi, command: &'static str) -> FakeModel {
    FakeModel::with(api, None, move |req: &RecordedRequest| {
        let args = json!({"command": command});
        match (req.last_tool_result(), api) {
            (Some(result), FakeApi::OpenAi) => Reply::text(&["tool said: ", &result]),
            (Some(result), FakeApi::Anthropic) => Reply::anthropic_text(&["tool said: ", &result]),
            (None, FakeApi::OpenAi) => Reply::tool_calls(&[("call_1", "exec", args)]),
            (None, FakeApi::Anthropic) => Reply::anthropic_tool_use(&[("toolu_1", "exec", args)]),
        }
    })
}

fn start(shell: Shell, model: &FakeModel, tools: &str) -> Gateway {
    Options::new()
        .token("t0ken")
        .config(&format!(
            "{{ {} tools: {{ {tools} }} }}",
            model.config_members()
        ))
        .start(shell)
}

fn operator(gw: &Gateway, scopes: &[&str]) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = scopes.iter().map(|s| s.to_string()).collect();
    let mut ws = gw.ws(cfg);
    ws.hello().expect("operator hello-ok");
    ws
}

fn agent_stream(events: &[(String, Value)], stream: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|(e, p)| e == "agent" && p["stream"] == stream)
        .map(|(_, p)| p["data"].clone())
        .collect()
}

pub(super) fn final_text(events: &[(String, Value)]) -> String {
    let (_, last) = events.last().expect("events");
    assert_eq!(last["state"], "final", "{last}");
    last["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub(super) fn history(ws: &mut Ws) -> Vec<Value> {
    let h = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .expect("chat.history");
    h["messages"].as_array().expect("messages").clone()
}

fn a_turn_runs_an_allowed_command_and_answers_with_its_output(shell: Shell) {
    let model = exec_model(FakeApi::OpenAi, "echo clawgate-tool-ok");
    let gw = start(
        shell,
        &model,
        r#"exec: { mode: "allowlist", safeBins: ["echo"] }"#,
    );
    let mut ws = operator(&gw, &["operator.read", "operator.write"]);
    chat_send(&mut ws, "run it", "k-tool-1");
    let events = run_events(&mut ws, "k-tool-1");
    assert!(
        final_text(&events).starts_with("tool said: {"),
        "{events:?}"
    );
    let items = agent_stream(&events, "item");
    let phases: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i["phase"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(phases, [("start", "running"), ("end", "completed")]);
    assert_eq!(items[0]["kind"], "tool");
    let out = agent_stream(&events, "command_output");
    assert_eq!(out[0]["exitCode"], 0);
    assert_eq!(out[0]["output"], "clawgate-tool-ok\n");
    let h = history(&mut ws);
    let roles: Vec<&str> = h.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "toolResult", "assistant"]);
    assert_eq!(h[1]["content"][0]["type"], "toolCall");
    assert_eq!(h[1]["content"][0]["name"], "exec");
    assert_eq!(h[2]["toolCallId"], "call_1");
    // The second request carried the call and its result back to the model.
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[0].json["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "exec")
    );
    assert!(
        requests[1]
            .last_tool_result()
            .unwrap()
            .contains("clawgate-tool-ok")
    );
    assert_frames_valid(&ws);
}

fn exec_is_refused_by_default_and_the_refusal_names_the_key(shell: Shell) {
    let model = exec_model(FakeApi::Anthropic, "touch /tmp/clawgate-must-not-exist");
    let gw = start(shell, &model, "");
    let mut ws = operator(&gw, &["operator.read", "operator.write"]);
    chat_send(&mut ws, "try it", "k-tool-2");
    let events = run_events(&mut ws, "k-tool-2");
    assert!(
        final_text(&events).contains("tools.exec.mode is \"deny\""),
        "{events:?}"
    );
    assert!(!std::path::Path::new("/tmp/clawgate-must-not-exist").exists());
    let h = history(&mut ws);
    assert_eq!(h[2]["isError"], true);
    let requests = model.requests();
    assert_eq!(
        requests[0].json["tools"][1]["name"], "exec",
        "Anthropic's tools shape"
    );
    assert_frames_valid(&ws);
}

fn a_command_past_its_timeout_is_killed_and_the_turn_told(shell: Shell) {
    let model = exec_model(FakeApi::OpenAi, "sleep 30");
    let gw = start(
        shell,
        &model,
        r#"exec: { mode: "full", timeoutSeconds: 1 }"#,
    );
    let mut ws = operator(&gw, &["operator.read", "operator.write"]);
    let started = std::time::Instant::now();
    chat_send(&mut ws, "hang", "k-tool-3");
    let events = run_events(&mut ws, "k-tool-3");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(final_text(&events).contains("timed out (tools.exec.timeoutSeconds)"));
    let out = agent_stream(&events, "command_output");
    assert_eq!(out[0]["status"], "failed");
    assert_frames_valid(&ws);
}

fn an_oversized_result_reaches_the_model_cut_with_a_marker(shell: Shell) {
    let model = exec_model(FakeApi::OpenAi, "head -c 300000 /dev/zero | tr '\\0' x");
    let gw = start(
        shell,
        &model,
        r#"exec: { mode: "full", maxOutputBytes: 1000000 }, maxResultBytes: 4096"#,
    );
    let mut ws = operator(&gw, &["operator.read", "operator.write"]);
    chat_send(&mut ws, "big", "k-tool-4");
    run_events(&mut ws, "k-tool-4");
    let result = model.requests()[1].last_tool_result().unwrap();
    assert!(result.len() < 4096 + 100, "{}", result.len());
    assert!(
        result.ends_with("[… result truncated by the gateway]"),
        "{result}"
    );
    assert_frames_valid(&ws);
}

fn tools_catalog_and_invoke_over_the_socket(shell: Shell) {
    let model = FakeModel::start(|_| Reply::text(&["unused"]));
    let gw = start(shell, &model, "");
    let mut ws = operator(&gw, &["operator.read", "operator.write"]);
    let catalog = ws
        .call("tools.catalog", Some(json!({})))
        .expect("tools.catalog");
    let ids: Vec<&str> = catalog["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tools"].as_array().unwrap())
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["nodes", "exec"]);
    let missing = ws
        .call(
            "tools.invoke",
            Some(json!({"name": "no_such_tool", "args": {}})),
        )
        .expect("an ok response");
    assert_eq!(missing["ok"], false);
    assert_eq!(missing["error"]["code"], "not_found");
    let refused = ws
        .call(
            "tools.invoke",
            Some(json!({"name": "exec", "args": {"command": "id"}})),
        )
        .expect("an ok response");
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools.exec.mode")
    );
    let nodes = ws
        .call(
            "tools.invoke",
            Some(json!({"name": "nodes", "args": {"action": "status"}})),
        )
        .expect("an ok response");
    assert_eq!(nodes["ok"], true);
    assert_eq!(nodes["output"]["nodes"], json!([]));
    assert_frames_valid(&ws);
}

both!(
    a_turn_runs_an_allowed_command_and_answers_with_its_output,
    exec_is_refused_by_default_and_the_refusal_names_the_key,
    a_command_past_its_timeout_is_killed_and_the_turn_told,
    an_oversized_result_reaches_the_model_cut_with_a_marker,
    tools_catalog_and_invoke_over_the_socket
);
