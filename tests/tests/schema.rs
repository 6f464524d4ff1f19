//! Every frame the gateway sends conforms to upstream's `protocol.schema.json`: a full session
//! (challenge, hello-ok, the read methods, pairing, node.invoke, every failure row, tick,
//! shutdown) through the in-memory core, and the same against both binaries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::fuzzing::{self, Sim, loopback, remote};
use clawgate_core::{ConnId, PairingStore};
use clawgate_tests::both;
use clawgate_tests::harness::{Options, Shell, Ws};
use clawgate_tests::schema::{self, Schema, server_text_frames};
use serde_json::{Value, json};

/// What a session's frames covered, so a session that silently did less fails.
#[derive(Default)]
struct Seen {
    kinds: HashMap<String, usize>,
    failures: Vec<String>,
}

impl Seen {
    /// Validate every server frame of one connection; `methods` maps request ids to methods.
    fn check(&mut self, s: &Schema, bytes: &[u8], methods: &HashMap<String, String>) {
        for text in server_text_frames(bytes) {
            let frame: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    self.failures.push(format!("not JSON ({e}): {text}"));
                    continue;
                }
            };
            let mut result = s.validate_server_frame(&frame);
            let kind = match (frame["type"].as_str(), frame["ok"].as_bool()) {
                (Some("event"), _) => format!("event {}", frame["event"].as_str().unwrap_or("")),
                (Some("res"), Some(true)) if frame["payload"]["type"] == "hello-ok" => {
                    "hello-ok".into()
                }
                (Some("res"), Some(true)) => {
                    let method = methods
                        .get(frame["id"].as_str().unwrap_or(""))
                        .cloned()
                        .unwrap_or_default();
                    if result.is_ok() && !method.is_empty() {
                        result = s.validate_result(&method, &frame["payload"]);
                    }
                    format!("result {method}")
                }
                _ => format!(
                    "error {}",
                    frame
                        .pointer("/error/details/code")
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                ),
            };
            if let Err(e) = result {
                self.failures.push(format!("{kind}: {e}\n  frame: {text}"));
            }
            *self.kinds.entry(kind).or_default() += 1;
        }
    }

    fn assert_covered(&self, kinds: &[&str]) {
        assert!(
            self.failures.is_empty(),
            "frames upstream's schema rejects:\n{}",
            self.failures.join("\n")
        );
        let missing: Vec<&&str> = kinds
            .iter()
            .filter(|k| !self.kinds.contains_key(**k))
            .collect();
        assert!(
            missing.is_empty(),
            "the session never produced {missing:?}; it produced {:?}",
            self.kinds.keys()
        );
    }
}

/// Send a request with a fresh id and remember which method it was.
fn call(
    sim: &mut Sim,
    ids: &mut HashMap<String, String>,
    conn: ConnId,
    method: &str,
    params: Value,
) -> String {
    let id = format!("{method}#{}", ids.len());
    ids.insert(id.clone(), method.to_string());
    sim.send_text(
        conn,
        json!({"type": "req", "id": id, "method": method, "params": params}).to_string(),
    );
    id
}

fn response(events: &[Event], id: &str) -> Option<Result<Value, clawgate_core::frame::ErrorShape>> {
    events.iter().find_map(|e| match e {
        Event::Response { id: rid, result } if rid == id => Some(result.clone()),
        _ => None,
    })
}

fn event_payload(events: &[Event], name: &str) -> Option<Value> {
    events.iter().find_map(|e| match e {
        Event::Event { event, payload, .. } if event == name => Some(payload.clone()),
        _ => None,
    })
}

#[test]
fn a_full_in_memory_session_conforms() {
    let Some(s) = schema::schema() else { return };
    let mut sim = Sim::new(
        Instant::now(),
        fuzzing::fuzz_config(true, false),
        PairingStore::default(),
    );
    let mut ids = HashMap::new();
    let op = sim.open_client(fuzzing::operator_client(), loopback());
    let node = sim.open_client(fuzzing::node_client(), loopback());
    let node_id = clawgate_core::device::DeviceKey::from_seed([7; 32]).id();
    for (m, p) in [
        ("health", json!({})),
        ("status", json!({})),
        ("system-presence", json!({})),
        ("config.get", json!({})),
        ("logs.tail", json!({"limit": 20, "maxBytes": 250000})),
        ("node.list", json!({})),
        ("node.describe", json!({"nodeId": node_id})),
        ("device.pair.list", json!({})),
        ("last-heartbeat", json!({})),
        ("exec.approvals.get", json!({})),
        ("environments.list", json!({})),
        ("system.info", json!({})),
        ("agent.identity.get", json!({"agentId": "main"})),
        // What the Control UI calls of features clawgate lacks: empty, in upstream's shape.
        ("update.status", json!({})),
        ("question.list", json!({})),
        ("talk.catalog", json!({})),
        ("progressCard.get", json!({"sessionKey": "agent:main:main"})),
        (
            "sessions.branches.list",
            json!({"sessionKey": "agent:main:main"}),
        ),
        (
            "sessions.companion.state",
            json!({"sessionKey": "agent:main:main"}),
        ),
        (
            "tasks.list",
            json!({"status": ["queued", "running"], "limit": 200}),
        ),
        ("plugins.list", json!({})),
        ("sessions.observer.visibility", json!({"visible": true})),
        ("cron.list", json!({"limit": 50, "compact": true})),
    ] {
        call(&mut sim, &mut ids, op, m, p);
    }
    let list = call(&mut sim, &mut ids, op, "node.pair.list", json!({}));
    let events = sim.events(op);
    let pending = response(&events, &list)
        .expect("node.pair.list answered")
        .expect("node.pair.list ok");
    let request_id = pending["pending"][0]["requestId"]
        .as_str()
        .expect("a pending node request")
        .to_string();
    call(
        &mut sim,
        &mut ids,
        op,
        "node.pair.approve",
        json!({"requestId": request_id}),
    );
    let invoke = json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["ls"]}, "idempotencyKey": "k1", "timeoutMs": 5000});
    call(&mut sim, &mut ids, op, "node.invoke", invoke);
    let request = event_payload(&sim.events(node), "node.invoke.request")
        .expect("node.invoke.request reached the node");
    let result = json!({"id": request["id"], "nodeId": node_id, "ok": true, "payloadJSON": "{\"bins\":{\"ls\":\"/usr/bin/ls\"}}"});
    call(&mut sim, &mut ids, node, "node.invoke.result", result);
    let late = json!({"nodeId": node_id, "command": "system.which", "params": {}, "idempotencyKey": "k2", "timeoutMs": 1000});
    call(&mut sim, &mut ids, op, "node.invoke", late);
    sim.advance(Duration::from_millis(1_500));
    // Failures after hello: unknown method, unknown property, a client event, a second
    // connect, an unknown node, a missing scope.
    call(&mut sim, &mut ids, op, "nosuch.method", json!({}));
    sim.send_text(
        op,
        r#"{"type":"req","id":"bogus","method":"health","bogus":1}"#.into(),
    );
    sim.send_text(op, r#"{"type":"event","event":"tick"}"#.into());
    call(&mut sim, &mut ids, op, "connect", json!({}));
    call(
        &mut sim,
        &mut ids,
        op,
        "node.invoke",
        json!({"nodeId": "nope", "command": "system.which", "idempotencyKey": "k3"}),
    );
    let mut probe = fuzzing::operator_client();
    probe.client.mode = "probe".into();
    let probe = sim.open_client(probe, loopback());
    call(&mut sim, &mut ids, probe, "status", json!({}));
    sim.advance(Duration::from_secs(31));
    sim.shutdown();

    let mut seen = Seen::default();
    for bytes in sim.transcript.sent.values() {
        seen.check(s, bytes, &ids);
    }
    seen.assert_covered(&[
        "event connect.challenge",
        "hello-ok",
        "result health",
        "result status",
        "result system-presence",
        "result config.get",
        "result logs.tail",
        "result node.list",
        "result node.describe",
        "result node.pair.list",
        "result node.pair.approve",
        "result device.pair.list",
        "result exec.approvals.get",
        "result environments.list",
        "result system.info",
        "result agent.identity.get",
        "result update.status",
        "result question.list",
        "result talk.catalog",
        "result progressCard.get",
        "result sessions.branches.list",
        "result sessions.companion.state",
        "result tasks.list",
        "result plugins.list",
        "result sessions.observer.visibility",
        "result node.invoke",
        "result node.invoke.result",
        "event node.invoke.request",
        "event node.invoke.cancel",
        "event node.pair.resolved",
        "event device.pair.resolved",
        "event presence",
        "event tick",
        "event shutdown",
        "error MISSING_SCOPE",
    ]);
}

/// A change to the client's configuration that makes `connect` fail.
type Tweak = fn(&mut ClientConfig);

/// Each row of upstream §3.2 (and the other connect refusals) answers with a frame the schema accepts.
#[test]
fn every_handshake_failure_conforms() {
    let Some(s) = schema::schema() else { return };
    let mut seen = Seen::default();
    // (token mode, tweak, from a remote address)
    let refusals: [(bool, Tweak, bool); 6] = [
        (true, |c| c.token = Some("wrong".into()), false),
        (true, |c| c.token = None, false),
        (true, |c| (c.min_protocol, c.max_protocol) = (3, 3), false),
        (
            true,
            |c| c.origin = Some("https://evil.example".into()),
            false,
        ),
        (false, |_| {}, true),
        (true, |c| c.client.id = "no-such-client".into(), false),
    ];
    for (token_mode, tweak, from_remote) in refusals {
        let mut sim = Sim::new(
            Instant::now(),
            fuzzing::fuzz_config(token_mode, false),
            PairingStore::default(),
        );
        let mut config = fuzzing::operator_client();
        tweak(&mut config);
        sim.open_client(config, if from_remote { remote() } else { loopback() });
        // Failed shared-secret answers to local addresses are held back (250 ms, doubling).
        sim.advance(Duration::from_secs(6));
        for bytes in sim.transcript.sent.values() {
            seen.check(s, bytes, &HashMap::new());
        }
    }
    // A first request that is not connect, and invalid connect params.
    for frame in [
        r#"{"type":"req","id":"h","method":"health"}"#,
        r#"{"type":"req","id":"c","method":"connect","params":{"bogusField":1}}"#,
    ] {
        let mut sim = Sim::new(
            Instant::now(),
            fuzzing::fuzz_config(true, false),
            PairingStore::default(),
        );
        let id = sim.open_raw(loopback());
        let bytes = [
            fuzzing::stream::upgrade_head(0),
            fuzzing::stream::client_text_frame(frame.as_bytes()),
        ]
        .concat();
        sim.input(id, &bytes);
        for bytes in sim.transcript.sent.values() {
            seen.check(s, bytes, &HashMap::new());
        }
    }
    seen.assert_covered(&[
        "error AUTH_TOKEN_MISMATCH",
        "error DEVICE_IDENTITY_REQUIRED",
        "error PROTOCOL_MISMATCH",
        "error CONTROL_UI_ORIGIN_NOT_ALLOWED",
        "error AUTH_REQUIRED",
        "error -",
    ]);
}

/// The validator is not a rubber stamp: frames upstream's schema forbids are refused.
#[test]
fn the_schema_rejects_what_upstream_rejects() {
    let Some(s) = schema::schema() else { return };
    let bad = [
        json!({"type": "res", "id": "1", "ok": true, "extra": 1}),
        json!({"type": "event", "event": "tick", "payload": {"ts": -1}, "seq": 1}),
        json!({"type": "res", "id": "1", "ok": false, "error": {"code": "FORBIDDEN", "message": "missing scope: operator.read", "details": {"code": "MISSING_SCOPE"}}}),
        json!({"type": "req", "id": "1", "method": "health"}),
        json!({"type": "res", "id": "1", "ok": true, "payload": {"type": "hello-ok", "protocol": 4}}),
    ];
    for frame in bad {
        assert!(s.validate_server_frame(&frame).is_err(), "accepted {frame}");
    }
    let good = json!({"type": "event", "event": "shutdown", "payload": {"reason": "gateway stopping"}, "seq": 2});
    assert_eq!(s.validate_server_frame(&good), Ok(()));
}

/// The same session against a binary: read methods, failures after hello, every connect
/// refusal, and the shutdown event on SIGTERM. Every frame received must conform.
fn binary_session_conforms(shell: Shell) {
    let Some(s) = schema::schema() else { return };
    let token = "schema-token";
    let gw = Options::new().token(token).start(shell);
    let mut seen = Seen::default();
    let mut config = fuzzing::operator_client();
    config.token = Some(token.into());
    let mut op = Ws::connect(gw.port(), config.clone());
    op.hello().expect("hello-ok");
    for (m, p) in [
        ("health", json!({})),
        ("status", json!({})),
        ("system-presence", json!({})),
        ("config.get", json!({})),
        ("logs.tail", json!({"limit": 20, "maxBytes": 250000})),
        ("node.list", json!({})),
        ("node.pair.list", json!({})),
        ("device.pair.list", json!({})),
        ("last-heartbeat", json!({})),
        ("system.info", json!({})),
        (
            "agent.identity.get",
            json!({"sessionKey": "agent:main:main"}),
        ),
    ] {
        let payload = op.call(m, Some(p)).unwrap_or_else(|e| panic!("{m}: {e:?}"));
        if let Err(e) = s.validate_result(m, &payload) {
            seen.failures.push(format!("result {m}: {e}"));
        }
        seen.kinds.insert(format!("result {m}"), 1);
    }
    assert!(op.call("nosuch.method", None).is_err());
    op.client()
        .send_text(r#"{"type":"req","id":"bogus","method":"health","bogus":1}"#.into());
    op.flush();
    op.expect("the answer to a bogus frame", |e| {
        matches!(e, Event::Response { id, .. } if id == "bogus").then_some(())
    });
    let mut probe = config.clone();
    probe.client.mode = "probe".into();
    let mut probe = Ws::connect(gw.port(), probe);
    probe.hello().expect("probe hello-ok");
    assert!(probe.call("status", None).is_err());
    let refusals: [Tweak; 4] = [
        |c| c.token = Some("wrong".into()),
        |c| c.token = None,
        |c| (c.min_protocol, c.max_protocol) = (3, 3),
        |c| c.origin = Some("https://evil.example".into()),
    ];
    for tweak in refusals {
        let mut c = config.clone();
        tweak(&mut c);
        let mut w = Ws::connect(gw.port(), c);
        assert!(w.hello().is_err());
        w.closed();
        seen.check(s, w.received(), &HashMap::new());
    }
    gw.terminate();
    op.expect("shutdown", |e| {
        matches!(e, Event::Event { event, .. } if event == "shutdown").then_some(())
    });
    assert_eq!(op.closed(), (Some(1012), "service restart".to_string()));
    seen.check(s, op.received(), &HashMap::new());
    seen.check(s, probe.received(), &HashMap::new());
    seen.assert_covered(&[
        "event connect.challenge",
        "hello-ok",
        "result health",
        "result logs.tail",
        "event shutdown",
        "error MISSING_SCOPE",
        "error AUTH_TOKEN_MISMATCH",
        "error DEVICE_IDENTITY_REQUIRED",
        "error PROTOCOL_MISMATCH",
        "error CONTROL_UI_ORIGIN_NOT_ALLOWED",
        "error -",
    ]);
}

both!(binary_session_conforms);
