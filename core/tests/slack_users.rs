//! Slack senders' names through the simulated gateway (HTTP mode, every Web API call held):
//! `users.info` is called once per sender and kept, only when a message needs the name, never
//! before the message is committed and acknowledged; a 429 pauses lookups for its
//! `Retry-After`, a lookup that does not answer is cancelled after its bounded wait, and in
//! both cases the message goes on without a name. The name reaches the pairing request's
//! metadata, the model's request and name-based allowlists (only under
//! `dangerouslyAllowNameMatching`).

use core::time::Duration;
use std::time::Instant;

use clawgate_core::channels::slack::users::LOOKUP_WAIT;
use clawgate_core::channels::slack::verify::sign;
use clawgate_core::config::{ConfigInput, RunFlags};
use clawgate_core::fuzzing::sim::*;
use clawgate_core::persist::StoreChange;
use clawgate_core::{Config, ConnId, WorkId, WorkResult};
use serde_json::{Value, json};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn config(slack: &str) -> Config {
    let text = format!(
        r#"{{ gateway: {{ auth: {{ token: "t" }} }},
             models: {{ providers: {{ fake: {{ baseUrl: "http://model.test/v1", api: "openai-completions" }} }} }},
             agents: {{ defaults: {{ model: "fake/fake-1" }} }},
             channels: {{ slack: {{ mode: "http", botToken: "xoxb-1", signingSecret: "{SECRET}", {slack} }} }} }}"#
    );
    Config::resolve(&ConfigInput {
        file_text: Some(text),
        flags: RunFlags::default(),
        ..Default::default()
    })
    .expect("config")
}

/// A gateway whose `auth.test` passed, every later call held.
fn started(slack: &str) -> Sim {
    let mut sim = Sim::started_holding_http(Instant::now(), config(slack));
    authenticate(&mut sim);
    sim
}

/// Answer the held `auth.test`.
fn authenticate(sim: &mut Sim) {
    let auth = sim.held_calls("auth.test")[0].0;
    answer(sim, auth, 200, &[], json!({"ok": true, "user_id": "UB"}));
}

fn answer(sim: &mut Sim, id: WorkId, status: u16, headers: &[(&str, &str)], body: Value) {
    let headers = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    sim.http_results(
        id,
        vec![
            WorkResult::HttpHead { status, headers },
            WorkResult::HttpBody(body.to_string().into_bytes()),
            WorkResult::HttpEnd(Ok(())),
        ],
    );
}

/// A signed Events API POST of a DM from `user`, message `ts`.
fn dm(sim: &mut Sim, user: &str, ts: &str) -> ConnId {
    let body = json!({"type": "event_callback", "event_id": format!("Ev{ts}"), "team_id": "T1",
        "event": {"type": "message", "channel": format!("D{user}"), "channel_type": "im",
            "user": user, "text": "hello there", "ts": ts}})
    .to_string();
    let stamp = (sim.unix_ms() / 1000).to_string();
    let sig = sign(SECRET.as_bytes(), &stamp, body.as_bytes());
    let req = format!(
        "POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nX-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: {sig}\r\n\r\n{body}",
        body.len()
    );
    sim.open_raw_sending(req.as_bytes(), remote())
}

fn answered_200(sim: &Sim, id: ConnId) -> bool {
    sim.sent(id).starts_with(b"HTTP/1.1 200")
}

/// The metadata of the pairing request stored for `sender`.
fn pairing_meta(sim: &Sim, sender: &str) -> Option<Value> {
    sim.batches.iter().flatten().rev().find_map(|c| match c {
        StoreChange::PutChannelRow { row, .. } => Some(row.to_value())
            .filter(|row| {
                row.get("senderId").and_then(Value::as_str) == Some(sender)
                    && row.get("code").is_some()
            })?
            .get("metadata")
            .cloned(),
        _ => None,
    })
}

fn posted_to(sim: &Sim, channel: &str) -> usize {
    sim.held_calls("chat.postMessage")
        .iter()
        .filter(|(_, r)| String::from_utf8_lossy(&r.body).contains(&format!("\"{channel}\"")))
        .count()
}

#[test]
fn looked_up_once_kept_and_in_the_pairing_request() {
    let mut sim = started("");
    let first = dm(&mut sim, "U1", "1.000001");
    assert!(answered_200(&sim, first), "acknowledged before any lookup");
    let lookups = sim.held_calls("users.info");
    assert_eq!(lookups.len(), 1);
    let (id, req) = &lookups[0];
    assert_eq!(req.body, b"user=U1");
    assert_eq!(req.header("authorization"), Some("Bearer xoxb-1"));
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // The lane waits for the name: no pairing message yet, and a second message from the
    // same sender joins the lookup in flight.
    assert_eq!(posted_to(&sim, "DU1"), 0);
    let second = dm(&mut sim, "U1", "1.000002");
    assert!(answered_200(&sim, second));
    assert_eq!(sim.held_calls("users.info").len(), 1);
    let user = json!({"ok": true, "user": {"id": "U1", "name": "alice",
        "profile": {"display_name": "", "real_name": "Alice Liddell"}}});
    answer(&mut sim, *id, 200, &[], user);
    assert_eq!(
        pairing_meta(&sim, "U1"),
        Some(json!({"name": "Alice Liddell", "senderId": "U1"}))
    );
    assert_eq!(posted_to(&sim, "DU1"), 1, "one pairing message");
    // Kept: later messages need no call.
    dm(&mut sim, "U1", "1.000003");
    sim.advance(Duration::from_secs(60));
    dm(&mut sim, "U1", "1.000004");
    assert_eq!(sim.held_calls("users.info").len(), 0);
}

#[test]
fn rate_limit_pauses_lookups_and_messages_go_on_without_a_name() {
    let mut sim = started("");
    dm(&mut sim, "U2", "2.000001");
    let (id, _) = sim.held_calls("users.info")[0].clone();
    answer(&mut sim, id, 429, &[("retry-after", "30")], json!({}));
    assert_eq!(
        pairing_meta(&sim, "U2"),
        Some(json!({"senderId": "U2"})),
        "no name"
    );
    assert_eq!(posted_to(&sim, "DU2"), 1);
    // Within the Retry-After: no call, the message goes on at once.
    sim.advance(Duration::from_secs(29));
    dm(&mut sim, "U3", "3.000001");
    assert!(sim.held_calls("users.info").is_empty());
    assert_eq!(posted_to(&sim, "DU3"), 1);
    // The failure was not kept: U2 is looked up again once the pause is over.
    sim.advance(Duration::from_secs(2));
    dm(&mut sim, "U2", "2.000002");
    let again = sim.held_calls("users.info");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.body, b"user=U2");
}

#[test]
fn a_lookup_that_does_not_answer_is_cancelled_after_its_wait() {
    let mut sim = started("");
    let post = dm(&mut sim, "U5", "5.000001");
    assert!(answered_200(&sim, post));
    let (id, _) = sim.held_calls("users.info")[0].clone();
    sim.advance(LOOKUP_WAIT - Duration::from_millis(1));
    assert_eq!(posted_to(&sim, "DU5"), 0);
    sim.advance(Duration::from_millis(2));
    assert!(sim.cancelled.contains(&id));
    assert_eq!(pairing_meta(&sim, "U5"), Some(json!({"senderId": "U5"})));
    assert_eq!(posted_to(&sim, "DU5"), 1);
}

#[test]
fn not_looked_up_for_a_message_that_is_dropped_anyway() {
    let mut sim = started(r#"dmPolicy: "allowlist", allowFrom: ["U9", "alice"]"#);
    dm(&mut sim, "U1", "6.000001");
    assert!(
        sim.held_calls("users.info").is_empty(),
        "no name could let it in"
    );
    assert_eq!(posted_to(&sim, "DU1"), 0);
}

#[test]
fn names_match_allowlists_only_under_dangerously_allow_name_matching() {
    let allow = r#"dmPolicy: "allowlist", allowFrom: ["U9", "Alice Liddell"], dangerouslyAllowNameMatching: true"#;
    let mut sim = started(allow);
    dm(&mut sim, "U1", "7.000001");
    let (id, _) = sim.held_calls("users.info")[0].clone();
    let user = json!({"ok": true, "user": {"id": "U1", "name": "alice",
        "profile": {"display_name": "Alice Liddell"}}});
    answer(&mut sim, id, 200, &[], user);
    // Let in by its name: the turn's model request names the sender.
    let model = sim.held_calls("chat/completions");
    assert_eq!(model.len(), 1, "held: {:?}", sim.held_http());
    let body: Value = serde_json::from_slice(&model[0].1.body).expect("json");
    // The sender's block is the user's, just before the message; the system prompt is not
    // the sender's to change.
    let messages = body["messages"].as_array().expect("messages");
    let system = messages[0]["content"].as_str().unwrap_or_default();
    assert!(!system.contains("Alice"), "{system}");
    let info = &messages[messages.len() - 2];
    let text = info["content"].as_str().unwrap_or_default();
    assert_eq!(info["role"], "user");
    assert!(
        text.starts_with("Conversation info (untrusted metadata):")
            && text.contains("\"id\": \"U1\"")
            && text.contains("\"name\": \"Alice Liddell\""),
        "{text}"
    );
    assert_eq!(messages[messages.len() - 1]["content"], "hello there");
}

#[test]
fn a_crash_during_a_lookup_looks_up_again_and_answers_once() {
    let mut sim = started("");
    let post = dm(&mut sim, "U6", "8.000001");
    assert!(answered_200(&sim, post));
    assert_eq!(sim.held_calls("users.info").len(), 1);
    let mut sim = sim.crash_and_restart(config(""));
    authenticate(&mut sim);
    let lookups = sim.held_calls("users.info");
    assert_eq!(lookups.len(), 1, "the committed message is served again");
    let user = json!({"ok": true, "user": {"id": "U6", "name": "bob"}});
    answer(&mut sim, lookups[0].0, 200, &[], user);
    assert_eq!(
        pairing_meta(&sim, "U6"),
        Some(json!({"name": "bob", "senderId": "U6"}))
    );
    assert_eq!(posted_to(&sim, "DU6"), 1);
}
