//! Admission of runs over real sockets: a message waiting in a session's lane survives a
//! kill -9 (it was answered `started` only once stored as pending input, and runs after the
//! restart), and with `agents.defaults.maxConcurrent: 1` a run of a second session waits for
//! the first to end instead of being refused.

use std::time::Duration;

use clawgate_core::fuzzing::sim::page_texts;
use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Shell, Ws};
use serde_json::{Value, json};

use super::agent::{assert_frames_valid, chat_send, operator, options, run_events};
use super::runs::assert_ran_one_after_the_other;

fn wait(ws: &mut Ws, run_id: &str, timeout_ms: u64) -> Value {
    ws.call(
        "agent.wait",
        Some(json!({"runId": run_id, "timeoutMs": timeout_ms})),
    )
    .expect("agent.wait")
}

fn history(ws: &mut Ws, session: &str) -> Vec<String> {
    let h = ws
        .call("chat.history", Some(json!({"sessionKey": session})))
        .expect("chat.history");
    page_texts(&h)
}

fn a_queued_message_survives_a_kill_and_runs_after_the_restart(shell: Shell) {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        let reply = Reply::text(&["re: ", &said]);
        if said == "first" {
            // Still streaming when the gateway is killed.
            reply.with_delay(Duration::from_secs(30))
        } else {
            reply
        }
    });
    let opts = options(Some(&model));
    let gw = opts.start(shell);
    let mut ws = operator(&gw);
    assert_eq!(chat_send(&mut ws, "first", "k-pend-1")["status"], "started");
    // Answered once its pending input is on disk.
    assert_eq!(
        chat_send(&mut ws, "second", "k-pend-2")["status"],
        "started"
    );
    assert_eq!(wait(&mut ws, "k-pend-2", 0)["status"], "pending");
    assert_frames_valid(&ws);
    drop(ws);

    let gw = opts.crash_and_restart(shell, gw);
    let mut ws = operator(&gw);
    let done = wait(&mut ws, "k-pend-2", 10_000);
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(
        history(&mut ws, "agent:main:main"),
        ["first", "second", "re: second"],
        "the first run died with the process; no message was lost"
    );
    let last = model.requests().pop().unwrap();
    assert_eq!(last.last_user_text().as_deref(), Some("second"));
    assert_frames_valid(&ws);
}

fn with_max_concurrent_1_a_second_session_waits_for_the_first(shell: Shell) {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["re: ", &said]).with_delay(Duration::from_millis(200))
    });
    let config = format!("{{ {} }}", model.config_members()).replace(
        "agents: { defaults: {",
        "agents: { defaults: { maxConcurrent: 1,",
    );
    let gw = options(Some(&model)).config(&config).start(shell);
    let mut ws = operator(&gw);
    let send = |ws: &mut Ws, session: &str, key: &str| {
        ws.call(
            "chat.send",
            Some(json!({"sessionKey": session, "message": session, "idempotencyKey": key})),
        )
        .expect("chat.send")
    };
    assert_eq!(send(&mut ws, "one", "k-cap-1")["status"], "started");
    assert_eq!(send(&mut ws, "two", "k-cap-2")["status"], "started");
    let waiting = wait(&mut ws, "k-cap-2", 0);
    assert_eq!(waiting["status"], "pending", "{waiting}");
    let last = run_events(&mut ws, "k-cap-2");
    assert_eq!(last.last().unwrap().1["state"], "final", "{last:?}");
    assert_ran_one_after_the_other(&ws, "k-cap-1", "k-cap-2");
    assert_eq!(model.requests().len(), 2);
    assert_eq!(history(&mut ws, "two"), ["two", "re: two"]);
    assert_frames_valid(&ws);
}

both!(
    a_queued_message_survives_a_kill_and_runs_after_the_restart,
    with_max_concurrent_1_a_second_session_waits_for_the_first
);
