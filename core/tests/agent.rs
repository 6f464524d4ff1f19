//! The agent through the simulated gateway: `chat.send` → the model request → `agent` and
//! `chat` events → the transcript, against a scripted fake model.

use core::time::Duration;
use std::time::Instant;

use clawgate_core::client::Event;
use clawgate_core::config::ModelRoute;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::persist::StoreChange;
use clawgate_core::{Config, ConnId, HttpError, HttpErrorKind, WorkResult};
use serde_json::{Value, json};

fn config(model: bool) -> Config {
    if model {
        fake_model_config()
    } else {
        Config::local_default().with_token("t")
    }
}

fn operator(p: &mut Sim, scopes: &[&str]) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    let id = p.open_client(c, loopback());
    p.events(id);
    id
}

fn chunk(text: &str) -> Vec<u8> {
    let c = json!({"choices":[{"index":0,"delta":{"content":text}}]});
    format!("data: {c}\n\n").into_bytes()
}

/// A 200 streaming `chunks`, then `stop`, usage and `[DONE]`.
fn answer(chunks: &[&str]) -> Vec<WorkResult> {
    let mut out = vec![WorkResult::HttpHead {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
    }];
    out.extend(chunks.iter().map(|c| WorkResult::HttpBody(chunk(c))));
    let tail = json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5}});
    out.push(WorkResult::HttpBody(
        format!("data: {tail}\n\ndata: [DONE]\n\n").into_bytes(),
    ));
    out.push(WorkResult::HttpEnd(Ok(())));
    out
}

/// The `chat`/`agent` events a client received (`event`, payload), and responses as `res`.
fn frames(p: &mut Sim, id: ConnId) -> Vec<(String, Value)> {
    p.events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. } if event == "chat" || event == "agent" => {
                Some((event, payload))
            }
            Event::Response { result, .. } => Some((
                "res".into(),
                result.unwrap_or_else(|e| json!({"error": e.message})),
            )),
            _ => None,
        })
        .collect()
}

/// A short name per frame: `chat:status`, `agent:lifecycle:start`, `res`.
fn names(frames: &[(String, Value)]) -> Vec<String> {
    frames
        .iter()
        .map(|(e, p)| match e.as_str() {
            "chat" => format!("chat:{}", p["state"].as_str().unwrap_or("?")),
            "agent" if p["stream"] == "lifecycle" => {
                format!(
                    "agent:lifecycle:{}",
                    p["data"]["phase"].as_str().unwrap_or("?")
                )
            }
            "agent" => format!("agent:{}", p["stream"].as_str().unwrap_or("?")),
            other => other.to_string(),
        })
        .collect()
}

/// The answer and the two preparing statuses every run starts with.
const STARTED: [&str; 5] = [
    "res",
    "chat:status",
    "agent:run_status",
    "chat:status",
    "agent:run_status",
];

/// A gateway whose model requests are held, with a writer that started run `key`: the sim,
/// the writer, and the run's request.
fn held_run(key: &str) -> (Sim, ConnId, clawgate_core::WorkId) {
    let mut p = Sim::started(Instant::now(), config(true));
    p.hold_http(true);
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, key, "hi");
    let id = p.held_http()[0].0;
    (p, op, id)
}

fn send(p: &mut Sim, id: ConnId, key: &str, message: &str) {
    let params =
        json!({"sessionKey": "agent:main:main", "message": message, "idempotencyKey": key});
    p.request(id, "chat.send", Some(params));
}

fn of<'a>(frames: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    names(frames)
        .into_iter()
        .zip(frames)
        .filter(|(n, _)| n == name)
        .map(|(_, (_, p))| p)
        .collect()
}

#[test]
fn a_streamed_answer_in_upstreams_order_and_shapes() {
    let mut p = Sim::started(Instant::now(), config(true));
    let requests = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = requests.clone();
    p.set_http(move |req| {
        seen.borrow_mut().push(req.clone());
        answer(&["Echo", " from", " fake"])
    });
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-1", "hello");
    let f = frames(&mut p, op);
    assert_eq!(
        names(&f),
        [
            STARTED.as_slice(),
            &[
                "agent:lifecycle:start",
                "chat:status",
                "agent:lifecycle:model",
                "agent:assistant",
                "chat:delta",
                "agent:assistant",
                "agent:usage",
                "agent:lifecycle:finishing",
                "agent:lifecycle:end",
                "chat:delta",
                "chat:final",
            ],
        ]
        .concat()
    );
    assert_eq!(f[0].1, json!({"runId": "k-1", "status": "started"}));
    let fin = of(&f, "chat:final")[0];
    assert_eq!(fin["runId"], "k-1");
    assert_eq!(fin["sessionKey"], "agent:main:main");
    assert_eq!(fin["agentId"], "main");
    assert_eq!(fin["stopReason"], "stop");
    assert_eq!(fin["message"]["role"], "assistant");
    assert_eq!(
        fin["message"]["content"],
        json!([{"type": "text", "text": "Echo from fake"}])
    );
    let deltas = of(&f, "chat:delta");
    assert_eq!(deltas[0]["deltaText"], "Echo");
    assert_eq!(deltas[1]["deltaText"], " from fake");
    assert_eq!(deltas[1]["message"]["content"][0]["text"], "Echo from fake");
    let usage = of(&f, "agent:usage")[0];
    assert_eq!(usage["data"], json!({"inputTokens": 3, "outputTokens": 5}));
    let model = of(&f, "agent:lifecycle:model")[0];
    assert_eq!(
        model["data"],
        json!({"phase": "model", "provider": "fake", "model": "fake-1"})
    );
    // Every event carries the run, the session and a per-run seq that never goes back.
    let seqs: Vec<u64> = f[1..]
        .iter()
        .map(|(_, p)| p["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    for (e, p) in &f[1..] {
        assert_eq!(p["runId"], "k-1", "{e} {p}");
        if e == "agent" {
            assert!(p["ts"].is_u64() && p["sessionId"].is_string(), "{p}");
        }
    }
    let reqs = requests.borrow();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].url, "http://127.0.0.1:9/v1/chat/completions");
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["model"], "fake-1");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "hello"})
    );
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
}

#[test]
fn deltas_are_coalesced_under_a_fast_model() {
    let (mut p, op, id) = held_run("k-fast");
    let results = answer(&["a"; 40]);
    let n = results.len();
    for (i, r) in results.into_iter().enumerate() {
        p.http_result(id, r);
        if i + 2 < n {
            p.advance(Duration::from_millis(5));
        }
    }
    let f = frames(&mut p, op);
    let deltas = of(&f, "chat:delta");
    // 40 chunks over ~200 ms: one delta per 75 ms, plus the last.
    assert!((2..=5).contains(&deltas.len()), "{} deltas", deltas.len());
    let joined: String = deltas
        .iter()
        .map(|d| d["deltaText"].as_str().unwrap())
        .collect();
    assert_eq!(joined, "a".repeat(40));
    assert_eq!(
        of(&f, "chat:final")[0]["message"]["content"][0]["text"],
        "a".repeat(40)
    );
}

#[test]
fn history_after_a_run_and_after_a_restart() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.set_http(|_| answer(&["hi there"]));
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, "k-h", "hello");
    p.events(op);
    let h = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(h["sessionKey"], "agent:main:main");
    assert!(h["sessionId"].is_string());
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"][0]["text"], "hello");
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"][0]["text"], "hi there");
    let last = p.chat_history(op, json!({"sessionKey": "main", "limit": 1}));
    assert_eq!(last["messages"].as_array().unwrap().len(), 1);
    assert_eq!(last["hasMore"], true);

    // The store's batches, loaded back into a new gateway, give the same history.
    let mut q = Sim::started(Instant::now(), config(true));
    q.sessions = p.sessions.clone();
    q.gw.restore_sessions(p.sessions.stored(200));
    let op = operator(&mut q, &["operator.read"]);
    let again = q.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(again["messages"], h["messages"]);
    assert_eq!(again["sessionId"], h["sessionId"]);
}

fn failed(status: Option<u16>, body: &str, end: Result<(), HttpError>) -> Vec<(String, Value)> {
    let mut c = config(true);
    c.limits.model_max_retries = 0;
    let mut p = Sim::started(Instant::now(), c);
    let body = body.as_bytes().to_vec();
    p.set_http(move |_| {
        let mut out = Vec::new();
        if let Some(status) = status {
            out.push(WorkResult::HttpHead {
                status,
                headers: vec![("retry-after".into(), "7".into())],
            });
            out.push(WorkResult::HttpBody(body.clone()));
        }
        out.push(WorkResult::HttpEnd(end.clone()));
        out
    });
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, "k-err", "hello");
    frames(&mut p, op)
}

#[test]
fn provider_failures_end_in_a_chat_error_with_its_kind() {
    let f = failed(
        Some(429),
        r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}"#,
        Ok(()),
    );
    let names = names(&f);
    assert!(
        names.ends_with(&[
            "agent:lifecycle:error".into(),
            "chat:error".into(),
            "chat:error".into()
        ]),
        "{names:?}"
    );
    let err = of(&f, "chat:error")[0];
    assert_eq!(err["errorKind"], "rate_limit");
    assert_eq!(err["errorDetail"]["httpStatus"], 429);
    assert_eq!(err["errorDetail"]["provider"], "fake");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached"),
        "{err}"
    );
    assert_eq!(of(&f, "chat:error")[1]["seq"], 1, "the user-facing notice");

    let f = failed(Some(500), "upstream exploded", Ok(()));
    assert_eq!(of(&f, "chat:error")[0]["errorKind"], "unknown");
    assert_eq!(of(&f, "chat:error")[0]["errorDetail"]["httpStatus"], 500);

    let refused = HttpError::new(HttpErrorKind::Refused, "connection refused");
    let f = failed(None, "", Err(refused));
    let err = of(&f, "chat:error")[0];
    assert_eq!(err["errorKind"], "unknown");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
    let lifecycle = of(&f, "agent:lifecycle:error")[0];
    assert!(
        lifecycle["data"]["error"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
}

#[test]
fn offline_the_run_fails_naming_the_keys_to_set() {
    let mut p = Sim::started(Instant::now(), config(false));
    let op = operator(&mut p, &["operator.write"]);
    assert_eq!(p.hello(op), None, "hello drained");
    send(&mut p, op, "k-off", "hello offline");
    let f = frames(&mut p, op);
    assert_eq!(
        names(&f),
        [
            STARTED.as_slice(),
            &[
                "agent:lifecycle:model",
                "agent:lifecycle:error",
                "chat:error",
                "chat:error",
            ],
        ]
        .concat()
    );
    let errors = of(&f, "chat:error");
    assert!(
        errors[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("agents.defaults.model.primary")
    );
    assert!(
        errors[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("models.providers")
    );
    assert_eq!(errors[1].get("agentId"), None);
    let h = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(h["messages"][1]["customType"], "run-failed-before-reply");
    let hello_cfg = operator_hello(&mut p);
    assert_eq!(
        hello_cfg["snapshot"]["sessionDefaults"]["modelConfigured"],
        false
    );
}

fn operator_hello(p: &mut Sim) -> Value {
    let id = p.open_client(cli(Some("t")), loopback());
    p.hello(id).unwrap()
}

#[test]
fn abort_mid_stream_cancels_the_request_and_ends_the_run() {
    let (mut p, op, id) = held_run("k-ab");
    let mut results = answer(&["Once", " upon"]).into_iter();
    p.http_result(id, results.next().unwrap());
    p.http_result(id, results.next().unwrap());
    p.events(op);
    let r = p
        .call(
            op,
            "chat.abort",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .unwrap();
    assert_eq!(r, json!({"ok": true, "aborted": true, "runIds": ["k-ab"]}));
    assert_eq!(p.cancelled, vec![id]);
    assert!(p.held_http().is_empty());
    // Late results of the cancelled request change nothing.
    for r in results {
        p.http_result(id, r);
    }
    let f = frames(&mut p, op);
    assert!(of(&f, "chat:final").is_empty(), "{f:?}");
    let r = p
        .call(
            op,
            "chat.abort",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .unwrap();
    assert_eq!(r, json!({"ok": true, "aborted": false, "runIds": []}));
}

#[test]
fn aborted_events_and_a_closed_origin_do_not_stop_the_run() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.hold_http(true);
    let watcher = operator(&mut p, &["operator.read"]);
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, "k-live", "hi");
    p.eof(op);
    let (id, _) = p.held_http()[0].clone();
    for r in answer(&["still here"]) {
        p.http_result(id, r);
    }
    let f = frames(&mut p, watcher);
    assert_eq!(
        of(&f, "chat:final")[0]["message"]["content"][0]["text"],
        "still here"
    );
    send(&mut p, watcher, "k-nope", "no write scope");
    let f = frames(&mut p, watcher);
    assert_eq!(f[0].1["error"], "missing scope: operator.write");
}

#[test]
fn events_reach_read_scoped_operators_only() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.set_http(|_| answer(&["x"]));
    let reader = operator(&mut p, &["operator.read"]);
    let blind = operator(&mut p, &[]);
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, "k-b", "hi");
    assert!(!of(&frames(&mut p, reader), "chat:final").is_empty());
    assert!(frames(&mut p, blind).is_empty());
    let hello = operator_hello(&mut p);
    let events = hello["features"]["events"].as_array().unwrap();
    assert!(events.contains(&json!("chat")) && events.contains(&json!("agent")));
    assert_eq!(
        hello["snapshot"]["sessionDefaults"]["modelConfigured"],
        true
    );
}

#[test]
fn params_are_upstreams_closed_schemas() {
    let mut p = Sim::started(Instant::now(), config(true));
    let op = operator(&mut p, &["operator.write"]);
    let e = p
        .call(
            op,
            "chat.send",
            Some(json!({"sessionKey": "main", "message": "", "idempotencyKey": "k", "bogus": 1})),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "invalid params: at root: unexpected property 'bogus'"
    );
    let e = p
        .call(
            op,
            "chat.send",
            Some(json!({"sessionKey": "main", "message": "x"})),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "invalid params: at root: must have required property 'idempotencyKey'"
    );
    let e = p.call(op, "chat.history", Some(json!({}))).unwrap_err();
    assert_eq!(
        e.message,
        "invalid params: at root: must have required property 'sessionKey'"
    );
}

#[test]
fn a_repeated_key_while_live_starts_no_second_run() {
    let (mut p, op, _) = held_run("k-dup");
    let r = p.call(
        op,
        "chat.send",
        Some(
            json!({"sessionKey": "agent:main:main", "message": "once", "idempotencyKey": "k-dup"}),
        ),
    );
    assert_eq!(r.unwrap(), json!({"runId": "k-dup", "status": "in_flight"}));
    assert_eq!(p.held_http().len(), 1);
}

#[test]
fn messages_leave_as_store_batches_and_a_failed_write_replays_the_unsaved_changes() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.set_http(|_| answer(&["reply"]));
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, "k-s", "hello");
    p.events(op);
    let appended: Vec<Value> = p
        .batches
        .iter()
        .flatten()
        .filter_map(|c| match c {
            StoreChange::AppendMessage { message, .. } => Some(message.to_value()),
            _ => None,
        })
        .collect();
    assert_eq!(appended.len(), 2);
    assert_eq!(appended[0]["role"], "user");
    assert_eq!(appended[1]["content"][0]["text"], "reply");

    // The next user row fails to write: the answer is an error and no run starts.
    p.hold_store_writes(true);
    send(&mut p, op, "k-s2", "again");
    p.write_store(false);
    let f = frames(&mut p, op);
    assert_eq!(names(&f), ["res"]);
    assert!(
        f[0].1["error"]
            .as_str()
            .unwrap()
            .contains("could not be saved")
    );
    // The tick catches the disk up: the pairing rows, then only the session changes no
    // batch got onto the disk, replayed (no transcript is rewritten whole).
    p.hold_store_writes(false);
    p.advance(Duration::from_secs(31));
    let rewrite = p.batches.last().unwrap();
    assert_eq!(rewrite.first(), Some(&StoreChange::ClearPairing));
    let replayed: Vec<u64> = rewrite
        .iter()
        .filter_map(|c| match c {
            StoreChange::AppendMessage { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(replayed, [3], "the unsaved user row only");
    let rows = p.sessions.stored(200);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].messages.len(),
        3,
        "user, assistant, and the unsaved user row"
    );
    assert_eq!(p.gw.held_messages().unacked_changes, 0);
}

#[test]
fn shutdown_cancels_runs() {
    let (mut p, _, id) = held_run("k-sd");
    p.shutdown();
    assert_eq!(p.cancelled, vec![id]);
}

/// The responses to request `rid` a client received, in order.
fn responses_to(
    events: &[Event],
    rid: &str,
) -> Vec<Result<Value, clawgate_core::frame::ErrorShape>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Response { id, result } if id == rid => Some(result.clone()),
            _ => None,
        })
        .collect()
}

fn agent(p: &mut Sim, id: ConnId, key: &str, message: &str) -> String {
    p.request(
        id,
        "agent",
        Some(json!({"message": message, "idempotencyKey": key})),
    )
}

#[test]
fn agent_answers_accepted_then_the_result_on_the_same_id_after_the_runs_events() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.set_http(|_| answer(&["Echo", " from", " fake"]));
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    let rid = agent(&mut p, op, "k-ag-1", "hello");
    let events = p.events(op);
    let answers = responses_to(&events, &rid);
    assert_eq!(answers.len(), 2, "{events:?}");
    let accepted = answers[0].clone().unwrap();
    assert_eq!(accepted["runId"], "k-ag-1");
    assert_eq!(accepted["sessionKey"], "agent:main:main");
    assert_eq!(accepted["agentId"], "main");
    assert_eq!(accepted["status"], "accepted");
    assert!(accepted["acceptedAt"].is_u64());
    let done = answers[1].clone().unwrap();
    assert_eq!(done["runId"], "k-ag-1");
    assert_eq!(done["status"], "ok");
    assert_eq!(done["summary"], "completed");
    assert_eq!(
        done["result"]["payloads"],
        json!([{"text": "Echo from fake", "mediaUrl": null}])
    );
    let meta = &done["result"]["meta"];
    assert_eq!(meta["aborted"], false);
    assert!(meta["durationMs"].is_u64());
    assert_eq!(meta["agentMeta"]["provider"], "fake");
    assert_eq!(meta["agentMeta"]["model"], "fake-1");
    assert_eq!(meta["agentMeta"]["usage"]["output"], 5);
    assert!(
        meta["agentMeta"]["sessionId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    // accepted first, the run's events between, the result after the final chat event.
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Response { .. } => Some("res".to_string()),
            Event::Event { event, payload, .. } if event == "chat" => {
                Some(format!("chat:{}", payload["state"].as_str().unwrap_or("?")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(order.first().map(String::as_str), Some("res"), "{order:?}");
    assert_eq!(
        &order[order.len() - 2..],
        ["chat:final", "res"],
        "{order:?}"
    );

    let h = p.chat_history(op, json!({"sessionKey": "main"}));
    assert_eq!(h["messages"][1]["content"][0]["text"], "Echo from fake");
}

#[test]
fn a_failed_agent_run_answers_unavailable_with_the_error_payload() {
    let mut p = Sim::started(Instant::now(), config(false));
    let op = operator(&mut p, &["operator.write"]);
    let rid = agent(&mut p, op, "k-ag-off", "hello offline");
    let answers = responses_to(&p.events(op), &rid);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].clone().unwrap()["status"], "accepted");
    let e = answers[1].clone().unwrap_err();
    assert_eq!(e.code, clawgate_core::frame::ErrorCode::Unavailable);
    assert!(e.message.starts_with("No model is configured"), "{e:?}");
    // The failure carries its payload beside the error, as upstream's does.
    let sent = String::from_utf8_lossy(p.sent(op)).into_owned();
    let frame = sent
        .split(|c: char| c.is_control())
        .filter_map(|t| t.find('{').map(|i| &t[i..]))
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .find(|f| f["ok"] == false && f["id"] == rid.as_str())
        .unwrap_or_else(|| panic!("no failed res in {sent}"));
    assert_eq!(frame["payload"]["runId"], "k-ag-off");
    assert_eq!(frame["payload"]["status"], "error");
    assert_eq!(frame["payload"]["summary"], json!(e.message));
    assert_eq!(frame["error"]["code"], "UNAVAILABLE");
}

#[test]
fn agent_wait_answers_when_the_run_ends_and_at_once_after() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.hold_http(true);
    let op = operator(&mut p, &["operator.write"]);
    agent(&mut p, op, "k-w", "hi");
    let id = p.held_http()[0].0;
    let wait = p.request(op, "agent.wait", Some(json!({"runId": "k-w"})));
    p.events(op);
    for r in answer(&["Hello"]) {
        p.http_result(id, r);
    }
    let got = responses_to(&p.events(op), &wait);
    let ok = got[0].clone().unwrap();
    assert_eq!(ok["runId"], "k-w");
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["stopReason"], "stop");
    assert_eq!(ok["terminalReply"]["text"], "Hello");
    assert!(ok["endedAt"].as_u64() >= ok["startedAt"].as_u64());
    // Ended: answered at once from the record of recent outcomes.
    let again = p
        .call(
            op,
            "agent.wait",
            Some(json!({"runId": "k-w", "timeoutMs": 0})),
        )
        .unwrap();
    assert_eq!(again, ok);
}

#[test]
fn agent_wait_reports_an_error_and_times_out_without_cancelling() {
    let mut p = Sim::started(Instant::now(), config(false));
    let op = operator(&mut p, &["operator.write"]);
    agent(&mut p, op, "k-we", "hi");
    let e = p
        .call(op, "agent.wait", Some(json!({"runId": "k-we"})))
        .unwrap();
    assert_eq!(e["status"], "error");
    assert!(e["error"].as_str().unwrap().starts_with("No model"), "{e}");

    let (mut p, op, id) = held_run("k-wt");
    let wait = p.request(
        op,
        "agent.wait",
        Some(json!({"runId": "k-wt", "timeoutMs": 1000})),
    );
    p.advance(Duration::from_millis(999));
    assert!(responses_to(&p.events(op), &wait).is_empty());
    p.advance(Duration::from_millis(1));
    let got = responses_to(&p.events(op), &wait);
    assert_eq!(got, [Ok(json!({"runId": "k-wt", "status": "timeout"}))]);
    assert!(p.cancelled.is_empty());
    for r in answer(&["still here"]) {
        p.http_result(id, r);
    }
    let f = frames(&mut p, op);
    assert_eq!(of(&f, "chat:final").len(), 1, "the run went on");
    // A timeout past what the clock holds waits for the run's end instead of panicking.
    let r = p.request(
        op,
        "agent.wait",
        Some(json!({"runId": "k-later", "timeoutMs": u64::MAX})),
    );
    p.advance(Duration::from_secs(3600));
    assert!(responses_to(&p.events(op), &r).is_empty());
}

#[test]
fn agent_survives_its_callers_close_and_refuses_unknown_params() {
    let mut p = Sim::started(Instant::now(), config(true));
    p.hold_http(true);
    let op = operator(&mut p, &["operator.write"]);
    let watcher = operator(&mut p, &["operator.read"]);
    agent(&mut p, op, "k-gone", "hi");
    let id = p.held_http()[0].0;
    p.eof(op);
    for r in answer(&["done anyway"]) {
        p.http_result(id, r);
    }
    let f = frames(&mut p, watcher);
    assert_eq!(of(&f, "chat:final").len(), 1, "{f:?}");

    let op = operator(&mut p, &["operator.write"]);
    for (method, params, want) in [
        (
            "agent",
            json!({"message": "x", "idempotencyKey": "k", "bogus": 1}),
            "invalid params: at root: unexpected property 'bogus'",
        ),
        (
            "agent",
            json!({"message": "x"}),
            "invalid params: at root: must have required property 'idempotencyKey'",
        ),
        (
            "agent.wait",
            json!({"runId": "k", "bogus": 1}),
            "invalid params: at root: unexpected property 'bogus'",
        ),
        (
            "agent.wait",
            json!({"runId": "k", "timeoutMs": -1}),
            "invalid params: at /timeoutMs: must be integer",
        ),
    ] {
        let e = p.call(op, method, Some(params)).unwrap_err();
        assert_eq!(e.message, want, "{method}");
    }
    let e = p
        .call(
            op,
            "agent",
            Some(json!({"message": "/reset", "idempotencyKey": "k-r"})),
        )
        .unwrap_err();
    assert_eq!(e.message, "missing scope: operator.admin");
}

#[test]
fn agent_wait_calls_of_a_closed_connection_free_their_slots() {
    let mut cfg = config(true);
    cfg.limits.max_agent_waits = 1;
    let mut p = Sim::started(Instant::now(), cfg);
    let gone = operator(&mut p, &["operator.write"]);
    let wait = json!({"runId": "k-never", "timeoutMs": 3_600_000});
    p.request(gone, "agent.wait", Some(wait.clone()));
    let other = operator(&mut p, &["operator.write"]);
    let full = p.call(other, "agent.wait", Some(wait.clone())).unwrap_err();
    assert!(
        full.message.contains("too many agent.wait calls"),
        "{full:?}"
    );
    p.eof(gone);
    let r = p.request(other, "agent.wait", Some(wait));
    assert!(
        responses_to(&p.events(other), &r).is_empty(),
        "the closed connection's slot is free: this call waits"
    );
}

#[test]
fn a_repeated_idempotency_key_replays_the_ended_run_without_a_second_model_call() {
    let mut p = Sim::started(Instant::now(), config(true));
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let counted = calls.clone();
    p.set_http(move |_| {
        counted.set(counted.get() + 1);
        answer(&["Once"])
    });
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-dup", "hello");
    p.events(op);
    let again = p.request(
        op,
        "chat.send",
        Some(
            json!({"sessionKey": "agent:main:main", "message": "hello", "idempotencyKey": "k-dup"}),
        ),
    );
    let events = p.events(op);
    assert_eq!(
        responses_to(&events, &again),
        [Ok(json!({"runId": "k-dup", "status": "ok"}))]
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Event { event, .. } if event == "chat")),
        "no second run: {events:?}"
    );
    // `agent` with the same key answers the run's final result at once.
    let rid = agent(&mut p, op, "k-dup", "hello");
    let answers = responses_to(&p.events(op), &rid);
    assert_eq!(answers.len(), 1);
    let result = answers[0].clone().unwrap();
    assert_eq!(result["status"], "ok");
    assert_eq!(result["result"]["payloads"][0]["text"], "Once");
    assert_eq!(calls.get(), 1, "one model call for one key");
    let history = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(history["totalMessages"], 2, "{history}");

    // A failed run replays its error with its payload.
    let mut p = Sim::started(Instant::now(), config(false));
    let op = operator(&mut p, &["operator.write"]);
    send(&mut p, op, "k-dup-off", "hello");
    p.events(op);
    let again = p.request(
        op,
        "chat.send",
        Some(json!({"sessionKey": "agent:main:main", "message": "hello", "idempotencyKey": "k-dup-off"})),
    );
    let got = responses_to(&p.events(op), &again);
    let err = got[0].clone().unwrap_err();
    assert_eq!(err.code, clawgate_core::frame::ErrorCode::Unavailable);
    assert!(err.message.starts_with("No model"), "{err:?}");
}

// The model backend: retries, timeouts and the Anthropic route behind the same agent.

/// A sim whose fake model answers request `n` (from 0) with `script(n)`; the requests seen.
fn scripted(
    config: Config,
    script: impl Fn(usize) -> Vec<WorkResult> + 'static,
) -> (
    Sim,
    std::rc::Rc<std::cell::RefCell<Vec<clawgate_core::model::HttpRequest>>>,
) {
    let mut p = Sim::started(Instant::now(), config);
    let requests = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = requests.clone();
    p.set_http(move |req| {
        seen.borrow_mut().push(req.clone());
        let n = seen.borrow().len() - 1;
        script(n)
    });
    (p, requests)
}

fn refusal(status: u16, retry_after: Option<&str>, body: &str) -> Vec<WorkResult> {
    vec![
        WorkResult::HttpHead {
            status,
            headers: retry_after
                .map(|v| ("retry-after".to_string(), v.to_string()))
                .into_iter()
                .collect(),
        },
        WorkResult::HttpBody(body.as_bytes().to_vec()),
        WorkResult::HttpEnd(Ok(())),
    ]
}

#[test]
fn a_429_is_retried_after_its_retry_after_and_the_turn_then_answers() {
    let (mut p, requests) = scripted(config(true), |n| match n {
        0 => refusal(
            429,
            Some("3"),
            r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}"#,
        ),
        _ => answer(&["Second", " try"]),
    });
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-retry", "hello");
    let f = frames(&mut p, op);
    assert_eq!(requests.borrow().len(), 1);
    let status = of(&f, "chat:status");
    let retry = status.last().unwrap();
    assert_eq!(retry["phase"], "starting_model");
    assert_eq!(
        retry.get("retry"),
        None,
        "not in upstream's published schema"
    );
    let retrying = of(&f, "agent:run_status");
    let data = &retrying.last().unwrap()["data"];
    assert_eq!(data["phase"], "retrying");
    assert_eq!(data["delayMs"], 3000, "Retry-After is the floor: {data}");
    assert_eq!(data["reason"], "rate_limit");
    assert_eq!(
        (&data["attempt"], &data["maxAttempts"]),
        (&json!(2), &json!(9))
    );
    assert!(of(&f, "chat:error").is_empty(), "{:?}", names(&f));
    p.advance(Duration::from_millis(2_999));
    assert_eq!(requests.borrow().len(), 1, "not before Retry-After");
    p.advance(Duration::from_millis(1));
    assert_eq!(requests.borrow().len(), 2);
    let f = frames(&mut p, op);
    let fin = of(&f, "chat:final")[0];
    assert_eq!(fin["message"]["content"][0]["text"], "Second try");
}

#[test]
fn retries_are_bounded_and_the_error_names_provider_and_status() {
    let mut c = config(true);
    c.limits.model_max_retries = 2;
    let (mut p, requests) = scripted(c, |_| refusal(503, None, "upstream unavailable"));
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-503", "hello");
    // Backoff: 1 s then 2 s, each jittered by 0.5–1.5.
    for _ in 0..10 {
        p.advance(Duration::from_secs(1));
    }
    assert_eq!(requests.borrow().len(), 3, "the first try and two retries");
    let f = frames(&mut p, op);
    let delays: Vec<u64> = of(&f, "agent:run_status")
        .iter()
        .filter(|e| e["data"]["phase"] == "retrying")
        .map(|e| e["data"]["delayMs"].as_u64().unwrap())
        .collect();
    assert_eq!(delays.len(), 2);
    assert!((500..=1500).contains(&delays[0]), "{delays:?}");
    assert!((1000..=3000).contains(&delays[1]), "{delays:?}");
    let reasons: Vec<&Value> = of(&f, "agent:run_status")
        .iter()
        .filter(|e| e["data"]["phase"] == "retrying")
        .map(|e| &e["data"]["reason"])
        .collect();
    assert_eq!(reasons, [&json!("server_error"), &json!("server_error")]);
    let err = of(&f, "chat:error")[0];
    assert_eq!(err["errorDetail"]["httpStatus"], 503);
    assert_eq!(
        err["errorMessage"],
        "model provider \"fake\" answered HTTP 503 (unknown): upstream unavailable"
    );
}

#[test]
fn no_retry_once_text_reached_clients_nor_past_the_window() {
    let (mut p, requests) = scripted(config(true), |_| {
        let text = chunk("partial");
        let error =
            b"data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"}}\n\n";
        vec![
            WorkResult::HttpHead {
                status: 200,
                headers: vec![],
            },
            WorkResult::HttpBody(text),
            WorkResult::HttpBody(error.to_vec()),
            WorkResult::HttpEnd(Ok(())),
        ]
    });
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-mid", "hello");
    p.advance(Duration::from_secs(60));
    assert_eq!(requests.borrow().len(), 1);
    let f = frames(&mut p, op);
    let err = of(&f, "chat:error")[0];
    assert_eq!(err["errorKind"], "rate_limit");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("model provider \"fake\" reported an error (rate_limit): Overloaded"),
        "{err}"
    );

    let (mut p, requests) = scripted(config(true), |_| {
        refusal(429, Some("120"), "Rate limit reached")
    });
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-long", "hello");
    assert_eq!(requests.borrow().len(), 1);
    let f = frames(&mut p, op);
    assert_eq!(
        of(&f, "chat:error")[0]["errorKind"],
        "rate_limit",
        "a Retry-After past the retry window fails at once"
    );
}

#[test]
fn a_silent_model_times_out_at_first_byte_then_idle() {
    let (mut p, op, id) = held_run("k-silent");
    p.events(op);
    p.advance(Duration::from_secs(119));
    assert!(p.cancelled.is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(p.cancelled, [id], "the request is cancelled");
    let f = frames(&mut p, op);
    let err = of(&f, "chat:error")[0];
    assert_eq!(err["errorKind"], "timeout");
    assert_eq!(
        err["errorMessage"],
        "model provider \"fake\" sent nothing for 120 s (first-byte timeout); raise models.providers.fake.timeoutSeconds if it is just slow"
    );

    let mut c = config(true);
    if let Some(m) = c.model.as_mut() {
        m.timeout = Some(Duration::from_secs(10));
    }
    let mut p = Sim::started(Instant::now(), c);
    p.hold_http(true);
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-idle", "hi");
    let id = p.held_http()[0].0;
    p.advance(Duration::from_secs(5));
    p.http_result(
        id,
        WorkResult::HttpHead {
            status: 200,
            headers: vec![],
        },
    );
    p.http_result(id, WorkResult::HttpBody(chunk("Hel")));
    p.advance(Duration::from_secs(9));
    assert!(p.cancelled.is_empty(), "the stream moved 9 s ago");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.cancelled, [id]);
    let f = frames(&mut p, op);
    let err = of(&f, "chat:error")[0];
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 10 s (idle timeout)"),
        "{err}"
    );
    let history = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(history["messages"][1]["content"][0]["text"], "Hel");
}

#[test]
fn an_anthropic_route_streams_through_the_same_agent_with_the_identity() {
    let mut c = config(true);
    if let Some(m) = c.model.as_mut() {
        *m = ModelRoute::new("anthropic", "claude-x", "http://127.0.0.1:9");
        m.api = clawgate_core::config::ModelApi::AnthropicMessages;
        m.api_key = Some(clawgate_core::auth::Secret::new("sk-ant-test"));
    }
    c.identity.name = Some("Max".into());
    let (mut p, requests) = scripted(c, |_| {
        let events = [
            json!({"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":7,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"ping"}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi, "}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I am Max"}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}),
            json!({"type":"message_stop"}),
        ];
        let mut out = vec![WorkResult::HttpHead {
            status: 200,
            headers: vec![],
        }];
        out.extend(events.iter().map(|e| {
            WorkResult::HttpBody(
                format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()).into_bytes(),
            )
        }));
        out.push(WorkResult::HttpEnd(Ok(())));
        out
    });
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    send(&mut p, op, "k-ant", "who are you?");
    let f = frames(&mut p, op);
    let fin = of(&f, "chat:final")[0];
    assert_eq!(fin["message"]["content"][0]["text"], "Hi, I am Max");
    assert_eq!(fin["stopReason"], "stop");
    assert_eq!(
        of(&f, "agent:usage")[0]["data"],
        json!({"inputTokens": 7, "outputTokens": 4})
    );
    let req = requests.borrow()[0].clone();
    assert_eq!(req.url, "http://127.0.0.1:9/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["max_tokens"], 4096);
    assert!(
        body["system"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Your name is Max."),
        "{body}"
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "who are you?"}]}])
    );
}
