//! Admission of runs on the fake clock: a message waiting in a lane is durable (pending input)
//! before it is answered `started`, and comes back into its lane after a restart; runs past
//! `agents.defaults.maxConcurrent` wait in a global queue, oldest first, instead of being
//! refused, and a waiting run can be aborted without reaching the model.

use core::time::Duration;
use std::time::Instant;

use clawgate_core::client::Event;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::persist::StoreChange;
use clawgate_core::{Config, ConnId, WorkId};
use serde_json::{Value, json};

/// Upstream's queue debounce.
const DEBOUNCE: Duration = Duration::from_millis(500);

fn gateway(config: Config) -> (Sim, ConnId) {
    let mut p = Sim::started(Instant::now(), config);
    p.hold_http(true);
    let op = operator(&mut p);
    (p, op)
}

fn operator(p: &mut Sim) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    p.events(op);
    op
}

fn params(session: &str, key: &str, mode: Option<&str>) -> Value {
    let mut params =
        json!({"sessionKey": session, "message": format!("m-{key}"), "idempotencyKey": key});
    if let Some(m) = mode {
        params["queueMode"] = json!(m);
    }
    params
}

fn send(p: &mut Sim, op: ConnId, session: &str, key: &str) -> Result<Value, String> {
    p.call(
        op,
        "chat.send",
        Some(params(session, key, Some("followup"))),
    )
    .map_err(|e| e.message)
}

/// The held model requests: (id, the text of their last message).
fn requests(p: &Sim) -> Vec<(WorkId, String)> {
    p.held_http()
        .iter()
        .map(|(id, req)| (*id, last_message_text(req)))
        .collect()
}

fn response(p: &mut Sim, op: ConnId, rid: &str) -> Option<Result<Value, String>> {
    p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result.map_err(|e| e.message)),
        _ => None,
    })
}

/// What `agent.wait` on `run` answers after 100 ms.
fn wait(p: &mut Sim, op: ConnId, run: &str) -> Value {
    let rid = p.request(
        op,
        "agent.wait",
        Some(json!({"runId": run, "timeoutMs": 100})),
    );
    p.advance(Duration::from_millis(100));
    response(p, op, &rid).unwrap().unwrap()
}

fn pending_runs(p: &Sim) -> Vec<String> {
    p.sessions
        .pending
        .iter()
        .map(|r| r.run_id.clone())
        .collect()
}

fn texts(p: &Sim, session: &str) -> Vec<String> {
    p.sessions.transcripts[session]
        .values()
        .map(|m| m["content"][0]["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A run in progress on `main` (k1), and the request id of a `chat.send` (k2) that waits in
/// its lane, sent while store writes are held.
fn queued_with_writes_held() -> (Sim, ConnId, String) {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "main", "k1").unwrap();
    p.hold_store_writes(true);
    let params = params("main", "k2", Some("followup"));
    let rid = p.request(op, "chat.send", Some(params));
    (p, op, rid)
}

#[test]
fn a_queued_message_is_answered_only_once_its_pending_input_is_durable() {
    let (mut p, op, rid) = queued_with_writes_held();
    assert_eq!(response(&mut p, op, &rid), None, "not on disk yet");
    p.write_store(true);
    assert_eq!(
        response(&mut p, op, &rid),
        Some(Ok(json!({"runId": "k2", "status": "started"})))
    );
    assert_eq!(pending_runs(&p), ["k2"]);
    assert!(
        p.batches
            .last()
            .unwrap()
            .iter()
            .all(|c| !matches!(c, StoreChange::AppendMessage { .. })),
        "a queued message is not in the transcript yet"
    );
    // Its run starts: the message reaches the transcript and leaves the pending input in one batch.
    p.hold_store_writes(false);
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    p.advance(DEBOUNCE);
    assert_eq!(requests(&p)[0].1, "m-k2");
    let started = p.batches.last().unwrap();
    assert!(started.contains(&StoreChange::DeletePendingInput("k2".into())));
    assert!(
        started
            .iter()
            .any(|c| matches!(c, StoreChange::AppendMessage { message, .. } if message.to_value()["content"][0]["text"] == "m-k2"))
    );
    assert!(pending_runs(&p).is_empty());
}

#[test]
fn a_queued_message_whose_pending_input_fails_to_store_is_refused_and_never_runs() {
    let (mut p, op, rid) = queued_with_writes_held();
    p.write_store(false);
    let refused = response(&mut p, op, &rid).unwrap().unwrap_err();
    assert!(refused.contains("could not be saved"), "{refused}");
    p.hold_store_writes(false);
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    p.advance(Duration::from_secs(31));
    assert!(requests(&p).is_empty(), "the refused message never runs");
    assert!(pending_runs(&p).is_empty(), "and is not left in the store");
}

#[test]
fn pending_input_comes_back_into_its_lane_after_a_restart_in_order() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "main", "k1").unwrap();
    send(&mut p, op, "main", "k2").unwrap();
    send(&mut p, op, "main", "k3").unwrap();
    send(&mut p, op, "main", "k4").unwrap();
    p.call(
        op,
        "chat.abort",
        Some(json!({"sessionKey": "main", "runId": "k4"})),
    )
    .unwrap();
    assert_eq!(
        pending_runs(&p),
        ["k2", "k3"],
        "an aborted message leaves the store"
    );
    // A crash: the next gateway loads what the disk holds.
    let mut q = Sim::started(Instant::now(), fake_model_config());
    q.hold_http(true);
    q.sessions = p.sessions.clone();
    q.gw.restore_sessions(p.sessions.stored(200));
    q.gw.restore_pending_input(p.sessions.pending.clone());
    let op = operator(&mut q);
    let wait = wait(&mut q, op, "k2");
    assert_eq!(wait["status"], "pending", "{wait}");
    q.advance(DEBOUNCE);
    let reqs = requests(&q);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1, "m-k2");
    q.http_results(reqs[0].0, openai_text_answer("a2"));
    q.advance(DEBOUNCE);
    let reqs = requests(&q);
    assert_eq!(reqs[0].1, "m-k3");
    q.http_results(reqs[0].0, openai_text_answer("a3"));
    assert_eq!(
        texts(&q, "agent:main:main"),
        ["m-k1", "m-k2", "a2", "m-k3", "a3"],
        "k1's answer was lost with the crash, no message was"
    );
    assert!(pending_runs(&q).is_empty());
}

fn capped(cap: usize) -> Config {
    let mut cfg = fake_model_config();
    cfg.limits.max_concurrent_runs = cap;
    cfg
}

#[test]
fn runs_past_max_concurrent_wait_in_order_instead_of_being_refused() {
    let (mut p, op) = gateway(capped(2));
    for s in ["a", "b", "c", "d"] {
        let started = send(&mut p, op, s, &format!("k{s}")).unwrap();
        assert_eq!(started["status"], "started");
    }
    let reqs = requests(&p);
    let sent: Vec<&str> = reqs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(sent, ["m-ka", "m-kb"], "two at once");
    let wait = wait(&mut p, op, "kc");
    assert_eq!(wait["status"], "pending");
    assert_eq!(wait["timeoutPhase"], "queue");
    // The waiting runs' messages are in their transcripts already.
    assert_eq!(texts(&p, "agent:main:c"), ["m-kc"]);
    p.http_results(reqs[1].0, openai_text_answer("b"));
    let reqs = requests(&p);
    let sent: Vec<&str> = reqs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(sent, ["m-ka", "m-kc"], "the oldest waiting run starts");
    p.http_results(reqs[0].0, openai_text_answer("a"));
    p.http_results(reqs[1].0, openai_text_answer("c"));
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1, "m-kd");
}

#[test]
fn an_aborted_waiting_run_never_calls_the_model_and_its_slot_goes_on() {
    let (mut p, op) = gateway(capped(1));
    send(&mut p, op, "a", "ka").unwrap();
    send(&mut p, op, "b", "kb").unwrap();
    send(&mut p, op, "c", "kc").unwrap();
    p.events(op);
    let rid = p.request(op, "chat.abort", Some(json!({"sessionKey": "b"})));
    let events = p.events(op);
    let aborted = events.iter().find_map(|e| match e {
        Event::Response { id, result } if *id == rid => Some(result.clone().unwrap()),
        _ => None,
    });
    assert_eq!(aborted.unwrap()["runIds"], json!(["kb"]));
    let states: Vec<(String, String)> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. } if event == "agent" || event == "chat" => Some((
                payload["runId"].as_str().unwrap_or("").to_string(),
                payload["state"].as_str().unwrap_or("agent").to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(states, [("kb".into(), "aborted".into())]);
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1);
    p.http_results(reqs[0].0, openai_text_answer("a"));
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1, "m-kc", "kb was skipped");
    // The session b is free again: a new message there waits behind nothing but the cap.
    p.http_results(reqs[0].0, openai_text_answer("c"));
    send(&mut p, op, "b", "kb2").unwrap();
    assert_eq!(requests(&p)[0].1, "m-kb2");
}

#[test]
fn the_waiting_runs_are_bounded_and_the_refusal_names_the_key() {
    let mut cfg = capped(1);
    cfg.limits.max_waiting_runs = 2;
    let (mut p, op) = gateway(cfg);
    send(&mut p, op, "a", "ka").unwrap();
    send(&mut p, op, "b", "kb").unwrap();
    send(&mut p, op, "c", "kc").unwrap();
    let refused = send(&mut p, op, "d", "kd").unwrap_err();
    assert!(
        refused.contains("agents.defaults.maxConcurrent"),
        "{refused}"
    );
    let reqs = requests(&p);
    p.http_results(reqs[0].0, openai_text_answer("a"));
    send(&mut p, op, "d", "kd").unwrap();
}

#[test]
fn a_larger_max_concurrent_on_reload_starts_the_waiting_runs() {
    let (mut p, op) = gateway(capped(1));
    send(&mut p, op, "a", "ka").unwrap();
    send(&mut p, op, "b", "kb").unwrap();
    assert_eq!(requests(&p).len(), 1);
    p.reload(capped(2));
    let sent: Vec<String> = requests(&p).into_iter().map(|r| r.1).collect();
    assert_eq!(sent, ["m-ka", "m-kb"]);
}
