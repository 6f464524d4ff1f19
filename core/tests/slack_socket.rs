//! A Slack Socket Mode turn through the simulated gateway (every Web API call, the model's
//! included, held; the store's batches held): the envelope is acknowledged only once its
//! message is durable, and when the model's answer is committed in the same transaction as
//! the message, the reply leaves before the ack.

use std::time::Instant;

use clawgate_core::config::{ConfigInput, RunFlags};
use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, Work, WorkId, WorkResult};
use serde_json::{Value, json};

fn config() -> Config {
    let text = r#"{ gateway: { auth: { token: "t" } },
        models: { providers: { fake: { baseUrl: "http://model.test/v1", api: "openai-completions" } } },
        agents: { defaults: { model: "fake/fake-1" } },
        channels: { slack: { mode: "socket", botToken: "xoxb-1", appToken: "xapp-1",
            dmPolicy: "open", allowFrom: ["*"] } } }"#;
    Config::resolve(&ConfigInput {
        file_text: Some(text.into()),
        flags: RunFlags::default(),
        ..Default::default()
    })
    .expect("config")
}

/// Answer held call `id` with a 200 and `body`.
fn answer(sim: &mut Sim, id: WorkId, body: Value) {
    sim.http_results(
        id,
        vec![
            WorkResult::HttpHead {
                status: 200,
                headers: Vec::new(),
            },
            WorkResult::HttpBody(body.to_string().into_bytes()),
            WorkResult::HttpEnd(Ok(())),
        ],
    );
}

/// Authenticated, the socket open and `hello` read: the socket's id.
fn connected(sim: &mut Sim) -> WorkId {
    let auth = sim.held_calls("auth.test")[0].0;
    answer(sim, auth, json!({"ok": true, "user_id": "UB"}));
    let open = sim.held_calls("apps.connections.open")[0].0;
    answer(
        sim,
        open,
        json!({"ok": true, "url": "wss://slack.test/link"}),
    );
    let socket = sim
        .sockets
        .iter()
        .find_map(|(id, w)| matches!(w, Work::WsOpen(_)).then_some(*id))
        .expect("the Socket Mode socket");
    sim.socket_result(socket, WorkResult::WsOpened);
    let hello = json!({"type": "hello", "num_connections": 1});
    sim.socket_result(socket, WorkResult::WsText(hello.to_string()));
    socket
}

/// The acks written on `socket` so far: each one's work id and envelope id.
fn acks(sim: &Sim, socket: WorkId) -> Vec<(WorkId, String)> {
    sim.sockets
        .iter()
        .filter_map(|(id, w)| match w {
            Work::WsSend { socket: s, text } if *s == socket => {
                let v: Value = serde_json::from_str(text).ok()?;
                Some((*id, v["envelope_id"].as_str()?.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// The DM envelope `envelope_id` from `U1`, saying `text`, on `socket` (its message's `ts`
/// and event id follow from the envelope's id: one envelope, one message).
fn dm(sim: &mut Sim, socket: WorkId, envelope_id: &str, text: &str) {
    let n = envelope_id.len() + envelope_id.bytes().map(usize::from).sum::<usize>();
    let frame = json!({"type": "events_api", "envelope_id": envelope_id, "payload": {
        "type": "event_callback", "event_id": format!("Ev{n}"), "team_id": "T1",
        "event": {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1",
            "text": text, "ts": format!("1795500000.{n:06}")}}});
    sim.socket_result(socket, WorkResult::WsText(frame.to_string()));
}

/// The model answers at once, while the message's batch is being written: the message's and
/// the answer's batches commit in one transaction, reported in order, and the reply the
/// second releases is sent before the ack the first released (the ack is written behind
/// it, not in front of it). Before the commit there is neither.
#[test]
fn a_reply_committed_with_its_message_leaves_before_the_ack() {
    let mut sim = Sim::started_holding_http(Instant::now(), config());
    let socket = connected(&mut sim);
    // A first message from U1: its name is looked up once and kept.
    dm(&mut sim, socket, "env-0", "hello");
    let lookup = sim.held_calls("users.info")[0].0;
    answer(
        &mut sim,
        lookup,
        json!({"ok": true, "user": {"name": "u1", "profile": {"display_name": "U One"}}}),
    );
    let model = sim.held_calls("/chat/completions")[0].0;
    sim.http_results(model, openai_text_answer("first"));
    let first = sim.held_calls("chat.postMessage")[0].0;
    answer(&mut sim, first, json!({"ok": true, "ts": "1.1"}));

    sim.hold_store_writes(true);
    dm(&mut sim, socket, "env-1", "hi");
    let model = sim.held_calls("/chat/completions")[0].0;
    sim.http_results(model, openai_text_answer("hello back"));
    assert!(
        !acks(&sim, socket).iter().any(|(_, e)| e == "env-1"),
        "no ack before the commit"
    );
    assert!(
        sim.held_calls("chat.postMessage").is_empty(),
        "no reply either"
    );
    // The message's batch, flagged to linger, and the answer's queued behind it.
    let flags: Vec<bool> = sim.held_batches().iter().map(|(_, l)| *l).collect();
    assert_eq!(
        flags,
        [true, false],
        "the message's batch, then the answer's"
    );
    assert!(sim.write_together(true));
    let (ack, envelope) = acks(&sim, socket).pop().expect("the ack once durable");
    assert_eq!(envelope, "env-1");
    let (reply, request) = sim.held_calls("chat.postMessage").pop().expect("the reply");
    assert!(
        String::from_utf8_lossy(&request.body).contains("hello back"),
        "the answer's reply"
    );
    assert!(
        reply < ack,
        "the reply ({reply:?}) is issued before the ack ({ack:?})"
    );
}

/// The model has not answered when the message's batch is durable: the ack goes at once,
/// not held for the answer (nothing else is in flight).
#[test]
fn a_message_whose_answer_is_not_in_flight_is_acknowledged_at_once() {
    let mut sim = Sim::started_holding_http(Instant::now(), config());
    let socket = connected(&mut sim);
    sim.hold_store_writes(true);
    dm(&mut sim, socket, "env-2", "hi");
    let lookup = sim.held_calls("users.info")[0].0;
    answer(
        &mut sim,
        lookup,
        json!({"ok": true, "user": {"name": "u1"}}),
    );
    assert!(acks(&sim, socket).is_empty(), "no ack before the commit");
    sim.write_store(true);
    let acked: Vec<String> = acks(&sim, socket).into_iter().map(|(_, e)| e).collect();
    assert_eq!(acked, ["env-2"], "acknowledged once its batch is durable");
    assert_eq!(
        sim.held_calls("/chat/completions").len(),
        1,
        "the model still asked"
    );
}
