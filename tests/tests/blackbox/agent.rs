//! The agent over real sockets: `chat.send` against a local fake OpenAI-compatible provider
//! (real HTTP, SSE), the streamed `chat`/`agent` events, `chat.history` across a kill -9, a
//! provider error, the offline answer when no model is configured, and `agent` (two answers on
//! one id) with `agent.wait`. Every frame the gateway sends validates against upstream's schema.

use clawgate_core::client::Event;
use clawgate_core::frame::{ErrorCode, ErrorShape};
use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use clawgate_tests::schema::{self, server_text_frames};
use serde_json::{Value, json};

pub(super) fn options(model: Option<&FakeModel>) -> Options {
    let models = model.map_or(String::new(), FakeModel::config_members);
    Options::new()
        .token("t0ken")
        .config(&format!("{{ {models} }}"))
}

pub(super) fn operator(gw: &Gateway) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = vec!["operator.read".into(), "operator.write".into()];
    let mut ws = gw.ws(cfg);
    ws.hello().expect("operator hello-ok");
    ws
}

/// The `chat` and `agent` events of run `run_id` until its terminal `chat` event.
pub(super) fn run_events(ws: &mut Ws, run_id: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    loop {
        let (event, payload) = ws.expect("the run's events", |e| match e {
            Event::Event { event, payload, .. }
                if (event == "chat" || event == "agent") && payload["runId"] == run_id =>
            {
                Some((event.clone(), payload.clone()))
            }
            _ => None,
        });
        let terminal = event == "chat"
            && matches!(
                payload["state"].as_str(),
                Some("final" | "error" | "aborted")
            );
        out.push((event, payload));
        if terminal {
            return out;
        }
    }
}

pub(super) fn chat_send(ws: &mut Ws, message: &str, key: &str) -> Value {
    ws.call(
        "chat.send",
        Some(json!({"sessionKey": "agent:main:main", "message": message, "idempotencyKey": key})),
    )
    .expect("chat.send")
}

/// Keys the real gateway adds to `agent` event payloads although upstream's schema closes the
/// object (upstream-agent.md §1.3: "the schema is closed, but the server adds these"); clients
/// rely on them, so clawgate sends them too and the check leaves exactly these out.
const AGENT_EVENT_EXTRAS: &[&str] = &["sessionKey", "sessionId", "agentId", "lane"];

/// Every frame the connection received validates against upstream's schema.
pub(super) fn assert_frames_valid(ws: &Ws) {
    let Some(s) = schema::schema() else {
        return; // the schema tests say loudly when it is missing (and fail under CI)
    };
    for text in server_text_frames(ws.received()) {
        let mut frame: Value = serde_json::from_str(&text).expect("a JSON frame");
        if frame["event"] == "agent"
            && let Some(payload) = frame["payload"].as_object_mut()
        {
            for key in AGENT_EVENT_EXTRAS {
                payload.remove(*key);
            }
        }
        if let Err(e) = s.validate_server_frame(&frame) {
            panic!("frame does not validate: {e}\n{text}");
        }
    }
}

pub(crate) fn history_texts(ws: &mut Ws) -> Vec<(String, String)> {
    let history = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .expect("chat.history");
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let text = m["content"]
                .as_array()
                .and_then(|c| c.first())
                .and_then(|c| c["text"].as_str())
                .or_else(|| m["content"].as_str())
                .unwrap_or_default();
            (
                m["role"].as_str().unwrap_or_default().to_string(),
                text.to_string(),
            )
        })
        .collect()
}

fn chat_send_streams_the_models_answer_and_history_survives_a_crash(shell: Shell) {
    let model = FakeModel::start(|_| Reply::text(&["Hello", " from", " the fake"]));
    let opts = options(Some(&model));
    let gw = opts.start(shell);
    let mut ws = operator(&gw);
    let started = chat_send(&mut ws, "hi there", "k-bb-1");
    assert_eq!(started, json!({"runId": "k-bb-1", "status": "started"}));
    let events = run_events(&mut ws, "k-bb-1");
    let (_, last) = events.last().expect("events");
    assert_eq!(last["state"], "final", "{events:?}");
    assert_eq!(last["sessionKey"], "agent:main:main");
    assert_eq!(
        last["message"]["content"][0]["text"], "Hello from the fake",
        "{last}"
    );
    let phases: Vec<&str> = events
        .iter()
        .filter(|(e, p)| e == "agent" && p["stream"] == "lifecycle")
        .filter_map(|(_, p)| p["data"]["phase"].as_str())
        .collect();
    assert!(
        phases.contains(&"start") && phases.contains(&"end"),
        "{phases:?}"
    );
    let deltas: String = events
        .iter()
        .filter(|(e, p)| e == "chat" && p["state"] == "delta")
        .filter_map(|(_, p)| p["deltaText"].as_str())
        .collect();
    assert_eq!(
        deltas, "Hello from the fake",
        "the deltas add up to the answer"
    );
    assert_frames_valid(&ws);

    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(requests[0].json["stream"], true);
    assert_eq!(requests[0].last_user_text().as_deref(), Some("hi there"));

    let expected = vec![
        ("user".to_string(), "hi there".to_string()),
        ("assistant".to_string(), "Hello from the fake".to_string()),
    ];
    assert_eq!(history_texts(&mut ws), expected);
    drop(ws);
    let gw = opts.crash_and_restart(shell, gw);
    let mut ws = operator(&gw);
    assert_eq!(history_texts(&mut ws), expected, "history after kill -9");
}

fn a_provider_error_reaches_the_client(shell: Shell) {
    // A Retry-After past the retry window: no retry, the error at once.
    let model = FakeModel::start(|_| {
        Reply::error(429, "Rate limit reached").with_header("Retry-After", "120")
    });
    let gw = options(Some(&model)).start(shell);
    let mut ws = operator(&gw);
    chat_send(&mut ws, "hello", "k-bb-429");
    let events = run_events(&mut ws, "k-bb-429");
    let (_, last) = events.last().expect("events");
    assert_eq!(last["state"], "error", "{events:?}");
    assert_eq!(last["errorKind"], "rate_limit", "{last}");
    assert!(
        last["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("Rate limit reached")),
        "{last}"
    );
    assert_frames_valid(&ws);
}

fn without_a_model_the_error_names_the_key_to_set(shell: Shell) {
    let gw = options(None).start(shell);
    let mut ws = operator(&gw);
    chat_send(&mut ws, "hello offline", "k-bb-off");
    let events = run_events(&mut ws, "k-bb-off");
    let (_, last) = events.last().expect("events");
    assert_eq!(last["state"], "error", "{events:?}");
    assert!(
        last["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("agents.defaults.model")),
        "{last}"
    );
    assert_frames_valid(&ws);
}

/// `agent` with `message`: its `accepted` answer, then its final answer (same id, the only
/// request in flight) and the events that came between them.
fn agent_call(
    ws: &mut Ws,
    message: &str,
    key: &str,
) -> (Value, Result<Value, ErrorShape>, Vec<Event>) {
    let params =
        json!({"message": message, "idempotencyKey": key, "sessionKey": "agent:main:main"});
    let accepted = ws.call("agent", Some(params)).expect("agent accepted");
    let mut between = Vec::new();
    let done = ws
        .first(
            |e| match e {
                Event::Response { result, .. } => Some(result.clone()),
                _ => None,
            },
            &mut between,
        )
        .expect("the agent call's final answer");
    (accepted, done, between)
}

fn agent_answers_twice_and_agent_wait_reports_the_end(shell: Shell) {
    let model = FakeModel::start(|_| Reply::text(&["Agent", " says", " hi"]));
    let gw = options(Some(&model)).start(shell);
    let mut ws = operator(&gw);
    let (accepted, done, between) = agent_call(&mut ws, "hello agent", "k-bb-agent");
    assert_eq!(accepted["runId"], "k-bb-agent");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["sessionKey"], "agent:main:main");
    let done = done.expect("the run succeeded");
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(
        done["result"]["payloads"],
        json!([{"text": "Agent says hi", "mediaUrl": null}])
    );
    assert_eq!(done["result"]["meta"]["agentMeta"]["provider"], "fake");
    assert!(
        between
            .iter()
            .any(|e| matches!(e, Event::Event { event, payload, .. }
            if event == "chat" && payload["state"] == "final")),
        "the final chat event precedes the final answer: {between:?}"
    );
    let waited = ws
        .call("agent.wait", Some(json!({"runId": "k-bb-agent"})))
        .expect("agent.wait");
    assert_eq!(waited["status"], "ok", "{waited}");
    assert_eq!(waited["stopReason"], "stop");
    let timeout = ws
        .call(
            "agent.wait",
            Some(json!({"runId": "k-never", "timeoutMs": 50})),
        )
        .expect("agent.wait");
    assert_eq!(timeout, json!({"runId": "k-never", "status": "timeout"}));
    assert_eq!(model.requests().len(), 1);
    assert_frames_valid(&ws);
}

fn a_failed_agent_run_answers_unavailable(shell: Shell) {
    let gw = options(None).start(shell);
    let mut ws = operator(&gw);
    let (accepted, done, _) = agent_call(&mut ws, "hello offline", "k-bb-agent-off");
    assert_eq!(accepted["status"], "accepted");
    let e = done.expect_err("the run failed");
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("agents.defaults.model"), "{e:?}");
    let failed: Value = server_text_frames(ws.received())
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .find(|f| f["type"] == "res" && f["ok"] == false)
        .expect("the failed res frame");
    assert_eq!(
        failed["payload"],
        json!({"runId": "k-bb-agent-off", "status": "error", "summary": e.message})
    );
    let waited = ws
        .call("agent.wait", Some(json!({"runId": "k-bb-agent-off"})))
        .expect("agent.wait");
    assert_eq!(waited["status"], "error", "{waited}");
    assert_frames_valid(&ws);
}

/// Sessions in [`more_sessions_than_windows_each_answer_with_their_own_context`]: more than
/// the gateway's `maxLoadedWindows` (16).
const MANY_SESSIONS: usize = 18;

/// The texts of the non-system messages of a model request, in order.
fn request_texts(req: &clawgate_tests::fake_model::RecordedRequest) -> Vec<String> {
    req.json["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Turn `round` on every one of [`MANY_SESSIONS`] sessions, one after another; each model
/// request must carry that session's own transcript (`round` earlier turns, then the new
/// message).
fn round_of_turns(ws: &mut Ws, model: &FakeModel, round: usize) {
    for s in 0..MANY_SESSIONS {
        let (key, run) = (format!("agent:main:many-{s}"), format!("many-{s}-{round}"));
        let params =
            json!({"sessionKey": key, "message": format!("s{s} r{round}"), "idempotencyKey": run});
        ws.call("chat.send", Some(params)).expect("chat.send");
        let events = run_events(ws, &run);
        let (_, last) = events.last().expect("events");
        assert_eq!(last["state"], "final", "{events:?}");
        let mut want = Vec::new();
        for r in 0..round {
            want.push(format!("s{s} r{r}"));
            want.push(format!("Echo from fake LLM: s{s} r{r}"));
        }
        want.push(format!("s{s} r{round}"));
        let req = model.requests().pop().expect("a model request");
        assert_eq!(request_texts(&req), want, "session {s}, round {round}");
    }
}

fn more_sessions_than_windows_each_answer_with_their_own_context(shell: Shell) {
    let model = FakeModel::echo();
    let opts = options(Some(&model));
    let gw = opts.start(shell);
    let mut ws = operator(&gw);
    for round in 0..2 {
        round_of_turns(&mut ws, &model, round);
    }
    // A read is answered after every write asked for before it: all is on disk.
    let last = json!({"sessionKey": format!("agent:main:many-{}", MANY_SESSIONS - 1)});
    let page = ws.call("chat.history", Some(last)).expect("chat.history");
    assert_eq!(page["totalMessages"], 4);
    drop(ws);
    // After a restart no window is in memory: each is read back from the store.
    let gw = opts.crash_and_restart(shell, gw);
    let mut ws = operator(&gw);
    round_of_turns(&mut ws, &model, 2);
    assert_frames_valid(&ws);
}

both!(
    agent_answers_twice_and_agent_wait_reports_the_end,
    more_sessions_than_windows_each_answer_with_their_own_context,
    a_failed_agent_run_answers_unavailable,
    chat_send_streams_the_models_answer_and_history_survives_a_crash,
    a_provider_error_reaches_the_client,
    without_a_model_the_error_names_the_key_to_set
);
