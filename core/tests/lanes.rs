//! Per-session lanes on the fake clock: runs of one session never overlap, and a message on
//! a busy session follows its `queueMode` (steer, followup, collect, interrupt). Aborting a
//! queued run never calls the model; a run's end in any way (answer, error, timeout, abort)
//! frees the lane for the next.

use core::time::Duration;
use std::time::Instant;

use clawgate_core::client::Event;
use clawgate_core::config::QueueMode;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, ConnId, HttpError, HttpErrorKind, WorkId, WorkResult};
use serde_json::{Value, json};

/// Upstream's queue debounce (the default `queueDebounce`).
const DEBOUNCE: Duration = Duration::from_millis(500);

/// A gateway holding model requests, and an operator.
fn gateway(config: Config) -> (Sim, ConnId) {
    let mut p = Sim::started(Instant::now(), config);
    p.hold_http(true);
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    p.events(op);
    (p, op)
}

fn send(p: &mut Sim, op: ConnId, key: &str, mode: Option<&str>) -> Value {
    let mut params =
        json!({"sessionKey": "main", "message": format!("m-{key}"), "idempotencyKey": key});
    if let Some(m) = mode {
        params["queueMode"] = json!(m);
    }
    p.call(op, "chat.send", Some(params)).unwrap()
}

/// The held model requests: (id, the transcript turns they send, the system prompt left out).
fn requests(p: &Sim) -> Vec<(WorkId, Vec<Value>)> {
    p.held_http()
        .iter()
        .map(|(id, req)| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let transcript = body["messages"].as_array().unwrap().iter();
            let turns = transcript.filter(|m| m["role"] != "system").cloned();
            (*id, turns.collect())
        })
        .collect()
}

/// (`runId`, `state`) of the `chat` events an operator received.
fn chat_states(p: &mut Sim, op: ConnId) -> Vec<(String, String)> {
    p.events(op)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. } if event == "chat" => Some((
                payload["runId"].as_str().unwrap_or("").to_string(),
                payload["state"].as_str().unwrap_or("").to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn history_texts(p: &mut Sim, op: ConnId) -> Vec<String> {
    page_texts(&p.chat_history(op, json!({"sessionKey": "main"})))
}

fn wait(p: &mut Sim, op: ConnId, run: &str) -> Value {
    p.call(
        op,
        "agent.wait",
        Some(json!({"runId": run, "timeoutMs": 0})),
    )
    .unwrap()
}

/// `agent.wait` on `run` for 100 ms, waited out on the fake clock: its answer.
fn wait_out(p: &mut Sim, op: ConnId, run: &str) -> Option<Value> {
    let r = p.request(
        op,
        "agent.wait",
        Some(json!({"runId": run, "timeoutMs": 100})),
    );
    p.advance(Duration::from_millis(100));
    p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == r => Some(result.unwrap()),
        _ => None,
    })
}

#[test]
fn followup_waits_for_the_run_in_progress_then_runs_after_the_debounce() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    let queued = send(&mut p, op, "k2", Some("followup"));
    assert_eq!(queued, json!({"runId": "k2", "status": "started"}));
    assert_eq!(requests(&p).len(), 1, "one run at a time");
    assert!(
        chat_states(&mut p, op).iter().all(|(run, _)| run == "k1"),
        "a queued run sends nothing yet"
    );
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    assert!(requests(&p).is_empty(), "the debounce is not over");
    p.advance(DEBOUNCE);
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1);
    let sent: Vec<&str> = reqs[0]
        .1
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        sent,
        ["m-k1", "a1", "m-k2"],
        "the model sees the turns in order"
    );
    p.http_results(reqs[0].0, openai_text_answer("a2"));
    let states = chat_states(&mut p, op);
    assert_eq!(states.last().unwrap(), &("k2".into(), "final".into()));
    assert_eq!(history_texts(&mut p, op), ["m-k1", "a1", "m-k2", "a2"]);
    assert_eq!(wait(&mut p, op, "k2")["status"], "ok");
}

#[test]
fn steer_is_the_default_and_waits_like_a_followup() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    send(&mut p, op, "k3", Some("steer"));
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    p.advance(DEBOUNCE);
    let (second, msgs) = requests(&p)[0].clone();
    assert_eq!(msgs.last().unwrap()["content"], "m-k2");
    p.http_results(second, openai_text_answer("a2"));
    p.advance(DEBOUNCE);
    let (third, msgs) = requests(&p)[0].clone();
    assert_eq!(msgs.last().unwrap()["content"], "m-k3");
    p.http_results(third, openai_text_answer("a3"));
    assert_eq!(
        history_texts(&mut p, op),
        ["m-k1", "a1", "m-k2", "a2", "m-k3", "a3"]
    );
}

#[test]
fn collect_coalesces_what_queued_into_one_turn() {
    let mut cfg = fake_model_config();
    cfg.queue_mode = QueueMode::Collect;
    let (mut p, op) = gateway(cfg);
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    send(&mut p, op, "k3", None);
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    chat_states(&mut p, op);
    p.advance(DEBOUNCE);
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1, "one turn for both");
    let last = reqs[0].1.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        last,
        "[Queued messages while agent was busy]\n\n---\nQueued #1\nm-k2\n\n---\nQueued #2\nm-k3"
    );
    p.http_results(reqs[0].0, openai_text_answer("both"));
    let states = chat_states(&mut p, op);
    assert!(
        states.contains(&("k2".into(), "final".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("k3".into(), "final".into())),
        "{states:?}"
    );
    assert_eq!(wait(&mut p, op, "k3")["terminalReply"]["text"], "both");
    assert_eq!(history_texts(&mut p, op).len(), 4, "one collected user row");
    // A repeated key of a folded run replays its end: no new run.
    let again = send(&mut p, op, "k3", None);
    assert_eq!(again["status"], "ok");
    p.advance(DEBOUNCE);
    assert!(requests(&p).is_empty());
}

#[test]
fn interrupt_aborts_the_run_and_the_queue_then_starts_at_once() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", Some("followup"));
    let (first, _) = requests(&p)[0].clone();
    chat_states(&mut p, op);
    let params = json!({"sessionKey": "main", "message": "m-k3", "idempotencyKey": "k3", "queueMode": "interrupt"});
    p.request(op, "chat.send", Some(params));
    assert_eq!(p.cancelled, vec![first], "the run in progress is cancelled");
    let states = chat_states(&mut p, op);
    assert!(
        states.contains(&("k1".into(), "aborted".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("k2".into(), "aborted".into())),
        "{states:?}"
    );
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1, "no debounce, and k2 never ran");
    assert_eq!(reqs[0].1.last().unwrap()["content"], "m-k3");
    assert_eq!(wait(&mut p, op, "k2")["aborted"], true);
    p.http_results(reqs[0].0, openai_text_answer("a3"));
    assert_eq!(history_texts(&mut p, op), ["m-k1", "m-k3", "a3"]);
}

#[test]
fn an_aborted_queued_run_never_calls_the_model() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    let r = p
        .call(
            op,
            "chat.abort",
            Some(json!({"sessionKey": "main", "runId": "k2"})),
        )
        .unwrap();
    assert_eq!(r, json!({"ok": true, "aborted": true, "runIds": ["k2"]}));
    assert!(p.cancelled.is_empty(), "k1 goes on");
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    p.advance(DEBOUNCE * 4);
    assert!(requests(&p).is_empty(), "k2 never reaches the model");
    let w = wait(&mut p, op, "k2");
    assert_eq!(
        (w["status"].clone(), w["aborted"].clone()),
        (json!("ok"), json!(true))
    );
    assert_eq!(history_texts(&mut p, op), ["m-k1", "a1"]);

    // A session abort takes the queued runs first, then the run in progress.
    send(&mut p, op, "k3", None);
    send(&mut p, op, "k4", None);
    send(&mut p, op, "k5", None);
    let r = p
        .call(op, "chat.abort", Some(json!({"sessionKey": "main"})))
        .unwrap();
    assert_eq!(r["runIds"], json!(["k4", "k5", "k3"]));
    p.advance(DEBOUNCE * 4);
    assert!(
        requests(&p).is_empty(),
        "nothing starts after a session abort"
    );
    send(&mut p, op, "k6", None);
    assert_eq!(requests(&p).len(), 1, "the lane is free again");
}

#[test]
fn the_lane_is_released_on_an_error_and_on_a_timeout() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    send(&mut p, op, "k3", None);
    let (first, _) = requests(&p)[0].clone();
    let timed_out = HttpError::new(HttpErrorKind::TimedOut, "request timed out");
    p.http_result(first, WorkResult::HttpEnd(Err(timed_out)));
    p.advance(DEBOUNCE);
    let (second, msgs) = requests(&p)[0].clone();
    assert_eq!(msgs.last().unwrap()["content"], "m-k2");
    p.http_result(
        second,
        WorkResult::HttpHead {
            status: 400,
            headers: vec![],
        },
    );
    p.http_result(second, WorkResult::HttpEnd(Ok(())));
    p.advance(DEBOUNCE);
    let (third, msgs) = requests(&p)[0].clone();
    assert_eq!(msgs.last().unwrap()["content"], "m-k3");
    p.http_results(third, openai_text_answer("a3"));
    assert_eq!(wait(&mut p, op, "k1")["status"], "error");
    assert_eq!(wait(&mut p, op, "k2")["status"], "error");
    assert_eq!(wait(&mut p, op, "k3")["status"], "ok");
}

#[test]
fn a_wait_on_a_queued_run_reports_it_pending_and_the_queue_is_bounded() {
    let mut cfg = fake_model_config();
    cfg.limits.max_queued_runs = 1;
    let (mut p, op) = gateway(cfg);
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    assert_eq!(
        wait_out(&mut p, op, "k2"),
        Some(json!({"runId": "k2", "status": "pending", "timeoutPhase": "queue"}))
    );
    let full = p
        .call(
            op,
            "chat.send",
            Some(json!({"sessionKey": "main", "message": "x", "idempotencyKey": "k3"})),
        )
        .unwrap_err();
    assert!(full.message.contains("messages.queue.cap"), "{full:?}");
    // Another session has its own lane.
    p.call(
        op,
        "chat.send",
        Some(json!({"sessionKey": "other", "message": "x", "idempotencyKey": "k4"})),
    )
    .unwrap();
    assert_eq!(requests(&p).len(), 2);
    let e = p
        .call(
            op,
            "chat.send",
            Some(json!({"sessionKey": "main", "message": "x", "idempotencyKey": "k5", "queueMode": "later"})),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "invalid params: at /queueMode: must be equal to one of the allowed values"
    );
}

#[test]
fn a_queued_run_whose_message_cannot_be_stored_fails_and_frees_the_lane() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    send(&mut p, op, "k3", None);
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    chat_states(&mut p, op);
    // k2 leaves the queue, but its message never reaches the disk.
    p.hold_store_writes(true);
    p.advance(DEBOUNCE);
    p.write_store(false);
    assert!(requests(&p).is_empty(), "k2 never reaches the model");
    let states = chat_states(&mut p, op);
    assert!(
        states.contains(&("k2".into(), "error".into())),
        "{states:?}"
    );
    // The store writes again: what waited is caught up, and the lane goes on to k3.
    p.hold_store_writes(false);
    p.write_store(true);
    let w = wait(&mut p, op, "k2");
    assert_eq!(w["status"], "error");
    assert!(
        w["error"].as_str().unwrap().contains("could not be saved"),
        "{w}"
    );
    let (third, msgs) = requests(&p)[0].clone();
    assert_eq!(msgs.last().unwrap()["content"], "m-k3");
    p.http_results(third, openai_text_answer("a3"));
    assert_eq!(wait(&mut p, op, "k3")["status"], "ok");
}

/// The last user turn of held request `n`.
fn last_turn(p: &Sim, n: usize) -> String {
    let reqs = requests(p);
    let turns = &reqs[n].1;
    turns.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn abort(p: &mut Sim, op: ConnId, run: &str) -> Value {
    p.call(
        op,
        "chat.abort",
        Some(json!({"sessionKey": "main", "runId": run})),
    )
    .unwrap()
}

#[test]
fn one_run_at_a_time_then_the_queue_in_order_after_the_debounce() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    send(&mut p, op, "k2", None);
    send(&mut p, op, "k3", None);
    send(&mut p, op, "k4", None);
    assert_eq!(requests(&p).len(), 1, "k1 holds the lane");
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    assert!(
        requests(&p).is_empty(),
        "the debounce counts from k4's queueing"
    );
    p.advance(DEBOUNCE - Duration::from_millis(1));
    assert!(requests(&p).is_empty(), "not before the debounce is over");
    p.advance(Duration::from_millis(1));
    assert_eq!(requests(&p).len(), 1);
    assert_eq!(last_turn(&p, 0), "m-k2", "the oldest queued run first");
    // A queued run that ends (here aborted) is not the lane's holder: k2 keeps it.
    assert_eq!(abort(&mut p, op, "k3")["runIds"], json!(["k3"]));
    p.advance(DEBOUNCE * 4);
    assert_eq!(requests(&p).len(), 1, "only its holder frees a lane");
    assert_eq!(last_turn(&p, 0), "m-k2");
    // The debounce is long over: k4 starts the moment k2 ends.
    let (second, _) = requests(&p)[0].clone();
    p.http_results(second, openai_text_answer("a2"));
    assert_eq!(requests(&p).len(), 1);
    assert_eq!(last_turn(&p, 0), "m-k4");
    let (fourth, _) = requests(&p)[0].clone();
    p.http_results(fourth, openai_text_answer("a4"));
    // An idle lane holds nothing back: the next message starts at once.
    send(&mut p, op, "k5", None);
    assert_eq!(requests(&p).len(), 1);
    assert_eq!(last_turn(&p, 0), "m-k5");
    assert_eq!(
        history_texts(&mut p, op),
        ["m-k1", "a1", "m-k2", "a2", "m-k4", "a4", "m-k5"]
    );
}

#[test]
fn collect_runs_start_together_and_queued_runs_can_leave() {
    let (mut p, op) = gateway(fake_model_config());
    send(&mut p, op, "k1", None);
    for k in ["k2", "k3", "k4"] {
        send(&mut p, op, k, Some("collect"));
    }
    send(&mut p, op, "k5", Some("followup"));
    assert_eq!(abort(&mut p, op, "k3")["aborted"], true);
    let again = abort(&mut p, op, "k3");
    assert_eq!(
        (again["aborted"].clone(), again["runIds"].clone()),
        (json!(false), json!([])),
        "it left the queue already"
    );
    let (first, _) = requests(&p)[0].clone();
    p.http_results(first, openai_text_answer("a1"));
    p.advance(DEBOUNCE);
    let reqs = requests(&p);
    assert_eq!(reqs.len(), 1, "k2 and k4 start as one turn");
    assert_eq!(
        last_turn(&p, 0),
        "[Queued messages while agent was busy]\n\n---\nQueued #1\nm-k2\n\n---\nQueued #2\nm-k4",
        "collecting stops at the followup run"
    );
    assert_eq!(
        wait_out(&mut p, op, "k5").map(|w| w["timeoutPhase"].clone()),
        Some(json!("queue")),
        "k5 still waits"
    );
    // A session abort takes what waits (k5), then the run in progress (k2 with k4).
    let r = p
        .call(op, "chat.abort", Some(json!({"sessionKey": "main"})))
        .unwrap();
    assert_eq!(r["runIds"], json!(["k5", "k2"]));
    p.advance(DEBOUNCE * 4);
    assert!(requests(&p).is_empty(), "nothing waits any more");
    send(&mut p, op, "k6", None);
    assert_eq!(requests(&p).len(), 1, "the lane is free");
}
