//! The tool router through the simulated gateway: a provider's tools in `tools.catalog`, a
//! `tools.invoke` answered after the provider's work comes back, the result bound, the
//! per-call deadline, and an unknown tool.

use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use clawgate_core::fuzzing::sim::*;
use clawgate_core::model::HttpRequest;
use clawgate_core::tools::skills;
use clawgate_core::tools::{
    Availability, CallContext, CallId, ProviderIo, TRUNCATED_MARKER, ToolCall, ToolEntry,
    ToolOutcome, ToolProvider, ToolSource,
};
use clawgate_core::{Config, ConnId, Work, WorkResult};
use serde_json::{Value, json};

/// A provider whose `echo` answers after one HTTP request, `big` answers 1 MiB at once,
/// `hang` never answers, and `broken` is unavailable.
#[derive(Debug, Default)]
struct Fake {
    waiting: Vec<(u64, CallId, String)>,
    cancelled: Arc<AtomicU32>,
    next: u64,
}

impl ToolProvider for Fake {
    fn source(&self) -> ToolSource {
        ToolSource::Mcp
    }

    fn tools(&self) -> Vec<ToolEntry> {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}});
        let mut broken = ToolEntry::new(
            "fake__broken",
            "Fails to start.",
            schema.clone(),
            ToolSource::Mcp,
        );
        broken.availability = Availability::Unavailable("server exited with status 1".into());
        ["fake__echo", "fake__big", "fake__hang"]
            .into_iter()
            .map(|n| {
                let mut t = ToolEntry::new(n, "A fake tool.", schema.clone(), ToolSource::Mcp);
                t.origin = Some("fake".into());
                t
            })
            .chain([broken])
            .collect()
    }

    fn start(
        &mut self,
        _: Instant,
        id: CallId,
        call: &ToolCall,
        _: &CallContext,
        io: &mut ProviderIo,
    ) {
        match call.name.as_str() {
            "fake__echo" => {
                self.next += 1;
                let text = call.str_arg("text").unwrap_or_default().to_string();
                self.waiting.push((self.next, id, text));
                let req = HttpRequest {
                    method: "POST",
                    url: "http://127.0.0.1:9/mcp".into(),
                    headers: vec![],
                    body: vec![],
                    idempotent: false,
                    dialing: Default::default(),
                };
                io.submit(self.next, Work::Http(req));
            }
            "fake__big" => io.finish(id, ToolOutcome::text("x".repeat(1 << 20))),
            _ => {}
        }
    }

    fn work_result(&mut self, _: Instant, token: u64, result: WorkResult, io: &mut ProviderIo) {
        if let WorkResult::HttpEnd(_) = result
            && let Some(i) = self.waiting.iter().position(|w| w.0 == token)
        {
            let (_, id, text) = self.waiting.remove(i);
            io.finish(id, ToolOutcome::json(json!({"echo": text})));
        }
    }

    fn cancel(&mut self, _: Instant, _: CallId, _: &mut ProviderIo) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

fn setup() -> (Sim, ConnId, Arc<AtomicU32>) {
    let mut config: Config = Config::local_default().with_token("t");
    config.limits.tool_timeout = Duration::from_secs(5);
    let mut p = Sim::started(Instant::now(), config);
    let fake = Fake::default();
    let cancelled = fake.cancelled.clone();
    p.gw.add_tool_provider(Box::new(fake));
    p.set_http(|_| vec![WorkResult::HttpEnd(Ok(()))]);
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    p.events(op);
    (p, op, cancelled)
}

fn invoke(p: &mut Sim, op: ConnId, name: &str, args: Value) -> Value {
    p.call(
        op,
        "tools.invoke",
        Some(json!({"name": name, "args": args})),
    )
    .expect("tools.invoke answers ok")
}

#[test]
fn a_provider_tool_answers_through_the_work_flow() {
    let (mut p, op, _) = setup();
    let r = invoke(&mut p, op, "fake__echo", json!({"text": "hi"}));
    assert_eq!(
        r,
        json!({"ok": true, "toolName": "fake__echo", "output": {"echo": "hi"}})
    );
}

#[test]
fn unknown_and_unavailable_tools() {
    let (mut p, op, _) = setup();
    let r = invoke(&mut p, op, "nope", json!({}));
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "not_found");
    let r = invoke(&mut p, op, "fake__broken", json!({}));
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server exited")
    );
}

#[test]
fn an_oversized_result_is_cut_with_a_marker() {
    let (mut p, op, _) = setup();
    let r = invoke(&mut p, op, "fake__big", json!({}));
    let out = r["output"].as_str().unwrap();
    assert!(out.ends_with(TRUNCATED_MARKER));
    assert_eq!(out.len(), 64 * 1024 + TRUNCATED_MARKER.len());
}

#[test]
fn a_hanging_tool_times_out_and_is_cancelled() {
    let (mut p, op, cancelled) = setup();
    let req = p.request(op, "tools.invoke", Some(json!({"name": "fake__hang"})));
    assert!(p.events(op).is_empty(), "no answer before the deadline");
    p.advance(Duration::from_secs(6));
    let r = p
        .events(op)
        .into_iter()
        .find_map(|e| match e {
            clawgate_core::client::Event::Response { id, result } if id == req => result.ok(),
            _ => None,
        })
        .expect("answered at the deadline");
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 5 s (tools.timeoutSeconds)")
    );
    assert_eq!(cancelled.load(Ordering::SeqCst), 1);
}

#[test]
fn the_catalog_lists_every_tool_with_its_availability() {
    let (mut p, op, _) = setup();
    let c = p.call(op, "tools.catalog", Some(json!({}))).unwrap();
    let tools: Vec<&Value> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tools"].as_array().unwrap())
        .collect();
    let broken = tools.iter().find(|t| t["id"] == "fake__broken").unwrap();
    assert!(
        broken["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("unavailable"))
    );
    assert!(
        broken["description"]
            .as_str()
            .unwrap()
            .contains("server exited")
    );
    let e = p
        .call(
            op,
            "tools.effective",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .unwrap();
    let mcp = e["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "mcp")
        .unwrap();
    assert_eq!(mcp["tools"].as_array().unwrap().len(), 3);
    assert_eq!(mcp["tools"][0]["mcpServer"], "fake");
    assert_eq!(mcp["tools"][0]["mcpToolName"], "echo");
}

// ---- The turn loop: model → tool → model → final ----

use clawgate_core::client::Event;
use clawgate_core::config::tools::ExecMode;
use clawgate_core::{ExecOutput, WorkId};
use std::cell::RefCell;
use std::rc::Rc;

/// One streamed chunk.
fn sse(v: Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

/// A model answer calling `name` with `args`, or saying `text` when `name` is empty.
fn model_answer(name: &str, args: Value, text: &str) -> Vec<WorkResult> {
    let mut body = Vec::new();
    if name.is_empty() {
        body.extend(sse(
            json!({"choices":[{"index":0,"delta":{"content":text}}]}),
        ));
        body.extend(sse(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        ));
    } else {
        let call = json!({"index":0,"id":format!("call_{name}"),"type":"function","function":{"name":name,"arguments":args.to_string()}});
        body.extend(sse(
            json!({"choices":[{"index":0,"delta":{"tool_calls":[call]}}]}),
        ));
        body.extend(sse(
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ));
    }
    body.extend(b"data: [DONE]\n\n");
    vec![
        WorkResult::HttpHead {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
        },
        WorkResult::HttpBody(body),
        WorkResult::HttpEnd(Ok(())),
    ]
}

/// A gateway whose model calls `name(args)` on its first request (of each turn: any request
/// whose last message is the user's) and answers "done" after; the model request bodies
/// seen, and an operator with `scopes`.
fn looping(
    name: &'static str,
    args: Value,
    setup: impl FnOnce(&mut Config),
    scopes: &[&str],
) -> (Sim, ConnId, Rc<RefCell<Vec<Value>>>) {
    let mut config = fake_model_config();
    config.limits.tool_timeout = Duration::from_secs(5);
    setup(&mut config);
    let mut p = Sim::started(Instant::now(), config);
    p.gw.add_tool_provider(Box::new(Fake::default()));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let bodies = seen.clone();
    p.set_http(move |req| {
        if req.url.ends_with("/mcp") {
            return vec![WorkResult::HttpEnd(Ok(()))];
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let last_is_user = body["messages"].as_array().unwrap().last().unwrap()["role"] == "user";
        bodies.borrow_mut().push(body);
        if last_is_user {
            model_answer(name, args.clone(), "")
        } else {
            model_answer("", json!(null), "done")
        }
    });
    let mut c = cli(Some("t"));
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    let op = p.open_client(c, loopback());
    p.events(op);
    (p, op, seen)
}

fn chat_send(p: &mut Sim, op: ConnId, text: &str) {
    let params = json!({"sessionKey": "agent:main:main", "message": text, "idempotencyKey": "k1"});
    p.request(op, "chat.send", Some(params));
}

/// The `agent` events of `stream` a client received.
fn agent_events(events: &[Event], stream: &str) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. }
                if event == "agent" && payload["stream"] == stream =>
            {
                Some(payload["data"].clone())
            }
            _ => None,
        })
        .collect()
}

fn history(p: &mut Sim, op: ConnId) -> Vec<Value> {
    let h = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    h["messages"].as_array().unwrap().clone()
}

fn final_text(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::Event { event, payload, .. } if event == "chat" && payload["state"] == "final" => {
            payload["message"]["content"][0]["text"]
                .as_str()
                .map(str::to_string)
        }
        _ => None,
    })
}

#[test]
fn model_tool_model_final_with_upstreams_rows_and_events() {
    let (mut p, op, seen) = looping(
        "fake__echo",
        json!({"text": "ping"}),
        |c| c.tools.tool_search = false,
        &["operator.write", "operator.read"],
    );
    chat_send(&mut p, op, "echo ping");
    let events = p.events(op);
    assert_eq!(final_text(&events).as_deref(), Some("done"));
    let items = agent_events(&events, "item");
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["phase"].as_str(), items[0]["status"].as_str()),
        (Some("start"), Some("running"))
    );
    assert_eq!(
        (items[1]["phase"].as_str(), items[1]["status"].as_str()),
        (Some("end"), Some("completed"))
    );
    assert_eq!(items[1]["kind"], "tool");
    assert_eq!(items[1]["itemId"], "tool:call_fake__echo");
    // The first request offered the tool; the second carried the call and its result.
    let bodies = seen.borrow();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "fake__echo")
    );
    let msgs = bodies[1]["messages"].as_array().unwrap();
    let n = msgs.len();
    assert_eq!(
        msgs[n - 2]["tool_calls"][0]["function"]["name"],
        "fake__echo"
    );
    assert_eq!(msgs[n - 1]["role"], "tool");
    assert_eq!(msgs[n - 1]["content"], "{\"echo\":\"ping\"}");
    drop(bodies);
    let h = history(&mut p, op);
    let roles: Vec<&str> = h.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "toolResult", "assistant"]);
    assert_eq!(h[1]["content"][0]["type"], "toolCall");
    assert_eq!(h[1]["content"][0]["arguments"], json!({"text": "ping"}));
    assert_eq!(h[2]["toolCallId"], "call_fake__echo");
    assert_eq!(h[2]["isError"], false);
}

#[test]
fn tool_search_stands_in_for_provider_tools() {
    let (mut p, op, seen) = looping(
        "tool_call",
        json!({"id": "fake__echo", "args": {"text": "via search"}}),
        |_| {},
        &["operator.write", "operator.read"],
    );
    chat_send(&mut p, op, "go");
    let events = p.events(op);
    assert_eq!(final_text(&events).as_deref(), Some("done"));
    let bodies = seen.borrow();
    let names: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["nodes", "exec", "tool_search", "tool_describe", "tool_call"]
    );
    let msgs = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["content"], "{\"echo\":\"via search\"}");
}

#[test]
fn exec_is_refused_by_default_naming_the_key() {
    let (mut p, op, _) = looping(
        "exec",
        json!({"command": "id"}),
        |_| {},
        &["operator.write", "operator.read"],
    );
    chat_send(&mut p, op, "run id");
    let events = p.events(op);
    assert_eq!(final_text(&events).as_deref(), Some("done"));
    assert!(p.execs.is_empty(), "nothing ran");
    let h = history(&mut p, op);
    assert_eq!(h[2]["isError"], true);
    assert!(tool_result(&h).contains("tools.exec.mode is \"deny\""));
    let out = agent_events(&events, "command_output");
    assert_eq!(out[0]["status"], "failed");
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("exec \"id\": denied"))
    );
}

fn ask_mode(c: &mut Config) {
    c.tools.exec.mode = ExecMode::Ask;
    c.tools.exec.approval_timeout = Duration::from_secs(10);
}

const APPROVER: &[&str] = &["operator.write", "operator.read", "operator.approvals"];

/// A turn calling `exec` with `command` under `tools.exec.mode: "ask"`, an approver connected.
fn asking(command: &'static str) -> (Sim, ConnId, Rc<RefCell<Vec<Value>>>) {
    looping("exec", json!({"command": command}), ask_mode, APPROVER)
}

/// The text of the first tool result of history `h` (user, assistant, toolResult, …).
fn tool_result(h: &[Value]) -> String {
    h[2]["content"][0]["text"].as_str().unwrap().to_string()
}

fn approval_request(events: &[Event]) -> Value {
    events
        .iter()
        .find_map(|e| match e {
            Event::Event { event, payload, .. } if event == "exec.approval.requested" => {
                Some(payload.clone())
            }
            _ => None,
        })
        .expect("exec.approval.requested")
}

fn done(code: i32, output: &str) -> Result<ExecOutput, String> {
    Ok(ExecOutput {
        exit_code: Some(code),
        output: output.into(),
        truncated: false,
        timed_out: false,
        duration_ms: 3,
    })
}

#[test]
fn approval_granted_runs_the_command_on_a_worker() {
    let (mut p, op, _) = looping("exec", json!({"command": "uname -s"}), ask_mode, APPROVER);
    chat_send(&mut p, op, "which os");
    let events = p.events(op);
    let req = approval_request(&events);
    assert_eq!(req["request"]["command"], "uname -s");
    assert!(p.execs.is_empty(), "nothing runs before the answer");
    let r = p.call(
        op,
        "exec.approval.resolve",
        Some(json!({"id": req["id"], "decision": "allow-once"})),
    );
    assert_eq!(r.unwrap(), json!({"ok": true}));
    let (work, request): (WorkId, _) = p.execs[0].clone();
    assert_eq!(request.command, "uname -s");
    p.exec_result(work, done(0, "Linux\n"));
    let events = p.events(op);
    assert_eq!(final_text(&events).as_deref(), Some("done"));
    let out = agent_events(&events, "command_output");
    assert_eq!(
        (out[0]["exitCode"].as_i64(), out[0]["status"].as_str()),
        (Some(0), Some("completed"))
    );
    assert_eq!(out[0]["output"], "Linux\n");
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("approved (allow-once)"))
    );
}

#[test]
fn approval_denied_or_unanswered_tells_the_turn() {
    let (mut p, op, _) = asking("rm -rf /tmp/x");
    chat_send(&mut p, op, "clean");
    let req = approval_request(&p.events(op));
    p.call(
        op,
        "exec.approval.resolve",
        Some(json!({"id": req["id"], "decision": "deny"})),
    )
    .unwrap();
    assert!(p.execs.is_empty());
    let h = history(&mut p, op);
    assert!(tool_result(&h).contains("an operator denied"));

    let (mut p, op, _) = asking("rm -rf /tmp/x");
    chat_send(&mut p, op, "clean");
    approval_request(&p.events(op));
    p.advance(Duration::from_secs(11));
    let events = p.events(op);
    assert_eq!(final_text(&events).as_deref(), Some("done"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Event { event, .. } if event == "exec.approval.resolved"))
    );
    let h = history(&mut p, op);
    assert!(tool_result(&h).contains("within 10 s (tools.exec.approvalTimeoutSeconds)"));
    assert!(p.execs.is_empty());
}

#[test]
fn no_approver_connected_is_denied_at_once() {
    let (mut p, op, _) = looping(
        "exec",
        json!({"command": "uname"}),
        ask_mode,
        &["operator.write", "operator.read"],
    );
    chat_send(&mut p, op, "go");
    let events = p.events(op);
    assert_eq!(final_text(&events).as_deref(), Some("done"), "no wait");
    let h = history(&mut p, op);
    assert!(tool_result(&h).contains("no operator with operator.approvals is connected"));
}

#[test]
fn a_session_permission_mode_only_tightens() {
    let (mut p, op, _) = looping(
        "exec",
        json!({"command": "uname"}),
        |c| c.tools.exec.mode = ExecMode::Full,
        APPROVER,
    );
    p.call(
        op,
        "sessions.patch",
        Some(json!({"key": "agent:main:main", "permissionMode": "read-only"})),
    )
    .unwrap();
    chat_send(&mut p, op, "go");
    p.events(op);
    assert!(p.execs.is_empty());
    let h = history(&mut p, op);
    assert!(
        h.iter()
            .any(|m| m["role"] == "toolResult" && m["isError"] == true)
    );
}

#[test]
fn a_model_that_keeps_calling_tools_is_stopped() {
    let mut config = fake_model_config();
    config.limits.tool_max_rounds = 3;
    config.tools.tool_search = false;
    let mut p = Sim::started(Instant::now(), config);
    p.gw.add_tool_provider(Box::new(Fake::default()));
    let requests = Rc::new(RefCell::new(0));
    let count = requests.clone();
    p.set_http(move |req| {
        if req.url.ends_with("/mcp") {
            return vec![WorkResult::HttpEnd(Ok(()))];
        }
        *count.borrow_mut() += 1;
        model_answer("fake__big", json!({}), "")
    });
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    chat_send(&mut p, op, "loop");
    let events = p.events(op);
    assert_eq!(*requests.borrow(), 3);
    let error = events.iter().find_map(|e| match e {
        Event::Event { event, payload, .. } if event == "chat" && payload["state"] == "error" => {
            payload["errorMessage"].as_str().map(str::to_string)
        }
        _ => None,
    });
    assert!(
        error
            .unwrap()
            .contains("stopped after 3 model requests (tools.maxRounds)")
    );
}

#[test]
fn aborting_a_turn_stops_its_tool_calls() {
    let (mut p, op, _) = looping(
        "fake__hang",
        json!({}),
        |c| c.tools.tool_search = false,
        &["operator.write", "operator.read"],
    );
    chat_send(&mut p, op, "hang");
    p.events(op);
    assert_eq!(p.gw.tool_calls_in_flight(), 1);
    p.call(
        op,
        "chat.abort",
        Some(json!({"sessionKey": "agent:main:main"})),
    )
    .unwrap();
    assert_eq!(p.gw.tool_calls_in_flight(), 0);
}

/// A provider that starts lazily: its tool is ready once a turn warmed it up, or, when
/// `slow`, once the HTTP request the warm-up sends has ended (it is starting until then).
#[derive(Debug, Default)]
struct Lazy {
    slow: bool,
    asked: bool,
    started: bool,
}

impl ToolProvider for Lazy {
    fn source(&self) -> ToolSource {
        ToolSource::Mcp
    }

    fn tools(&self) -> Vec<ToolEntry> {
        let mut t = ToolEntry::new(
            "lazy__ping",
            "Ping.",
            json!({"type": "object"}),
            ToolSource::Mcp,
        );
        if !self.started {
            t.availability = Availability::Unavailable("not started yet".into());
        }
        vec![t]
    }

    fn start(
        &mut self,
        _: Instant,
        id: CallId,
        _: &ToolCall,
        _: &CallContext,
        io: &mut ProviderIo,
    ) {
        io.finish(id, ToolOutcome::text("pong"));
    }

    fn work_result(&mut self, _: Instant, _: u64, result: WorkResult, io: &mut ProviderIo) {
        if let WorkResult::HttpEnd(_) = result {
            self.started = true;
            io.catalog_changed = true;
        }
    }

    fn cancel(&mut self, _: Instant, _: CallId, _: &mut ProviderIo) {}

    fn warm_up(&mut self, _: Instant, io: &mut ProviderIo) {
        if self.asked {
            return;
        }
        self.asked = true;
        if self.slow {
            let req = HttpRequest {
                method: "POST",
                url: "http://127.0.0.1:9/slow/mcp".into(),
                headers: vec![],
                body: vec![],
                idempotent: false,
                dialing: Default::default(),
            };
            io.submit(1, Work::Http(req));
        } else {
            self.started = true;
            io.catalog_changed = true;
        }
    }

    fn starting(&self) -> bool {
        self.asked && !self.started
    }
}

#[test]
fn a_lazy_provider_starts_when_a_turn_needs_tools() {
    let mut config = fake_model_config();
    config.tools.tool_search = false;
    let mut p = Sim::started(Instant::now(), config);
    p.gw.add_tool_provider(Box::new(Lazy::default()));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let bodies = seen.clone();
    p.set_http(move |req| {
        bodies
            .borrow_mut()
            .push(serde_json::from_slice::<Value>(&req.body).unwrap());
        model_answer("", json!(null), "ok")
    });
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    let before = p
        .call(op, "tools.invoke", Some(json!({"name": "lazy__ping"})))
        .unwrap();
    assert_eq!(before["ok"], false);
    chat_send(&mut p, op, "hi");
    assert!(
        seen.borrow()[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "lazy__ping")
    );
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("changed its catalog (1 tools)"))
    );
}

/// The skills provider on its own: the prompt's `<available_skills>` block, and `read_skill`
/// answering a known skill with its instructions and an unknown one with an error.
#[test]
fn the_prompt_lists_skills_and_the_tool_reads_them() {
    let skill = skills::Skill {
        name: "a<b".into(),
        description: "d".into(),
        location: "/l".into(),
        body: "do this".into(),
    };
    let section = skills::prompt_section(std::slice::from_ref(&skill)).unwrap();
    assert!(section.contains("<available_skills>\n  <skill>\n    <name>a&lt;b</name>\n    <description>d</description>\n    <location>/l</location>\n  </skill>\n</available_skills>"), "{section}");
    assert_eq!(skills::prompt_section(&[]), None);
    let mut p = skills::SkillsProvider::new(vec![skill]);
    let mut io = ProviderIo::default();
    let now = Instant::now();
    let call = ToolCall::from_model("c", skills::READ_SKILL, r#"{"name":"a<b"}"#);
    let ctx = CallContext {
        session_key: None,
        owner: false,
        chat: None,
    };
    p.start(now, CallId(1), &call, &ctx, &mut io);
    let call = ToolCall::from_model("c", skills::READ_SKILL, r#"{"name":"zz"}"#);
    p.start(now, CallId(2), &call, &ctx, &mut io);
    assert_eq!(io.done[0], (CallId(1), ToolOutcome::text("do this")));
    assert!(io.done[1].1.is_error);
}

// ---- The first turn waits for providers still starting ----

/// A gateway with the slow provider and direct tool schemas, holding every HTTP request,
/// with a turn sent: the held requests' URLs.
fn turn_with_slow_provider(start_wait: Duration) -> (Sim, Vec<String>) {
    let mut config = fake_model_config();
    config.tools.tool_search = false;
    config.limits.tools_start_wait = start_wait;
    let mut p = Sim::started(Instant::now(), config);
    p.gw.add_tool_provider(Box::new(Lazy {
        slow: true,
        ..Lazy::default()
    }));
    p.hold_http(true);
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    chat_send(&mut p, op, "ping it");
    let urls = p.held_http().iter().map(|(_, r)| r.url.clone()).collect();
    (p, urls)
}

/// The tool names of the held model request.
fn offered(p: &Sim) -> Vec<String> {
    let (_, req) = p
        .held_http()
        .iter()
        .find(|(_, r)| r.url.contains("/v1"))
        .expect("a model request");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_first_turn_waits_for_a_provider_still_starting() {
    let (mut p, urls) = turn_with_slow_provider(Duration::from_secs(30));
    assert_eq!(
        urls,
        ["http://127.0.0.1:9/slow/mcp"],
        "no model request yet"
    );
    let (start, _) = p.held_http()[0].clone();
    p.http_result(start, WorkResult::HttpEnd(Ok(())));
    assert!(
        offered(&p).contains(&"lazy__ping".to_string()),
        "{:?}",
        offered(&p)
    );
}

#[test]
fn the_wait_for_a_starting_provider_is_bounded() {
    let (mut p, urls) = turn_with_slow_provider(Duration::from_secs(2));
    assert_eq!(urls.len(), 1);
    p.advance(Duration::from_millis(1900));
    assert_eq!(p.held_http().len(), 1, "still waiting");
    p.advance(Duration::from_millis(200));
    assert_eq!(p.held_http().len(), 2, "the model request went out");
    assert!(!offered(&p).contains(&"lazy__ping".to_string()));
}
