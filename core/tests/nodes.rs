//! Nodes: attachment, approval, node.invoke end to end, timeouts, dedupe, presence.

use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::device::DeviceKey;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::scopes::Role;
use clawgate_core::{Config, ConnId};
use serde_json::{Value, json};

fn node_config(seed: u8, commands: &[&str]) -> ClientConfig {
    let mut c = cli(Some("t"));
    c.client.id = "node-host".into();
    c.client.mode = "node".into();
    c.client.display_name = Some("sim-node".into());
    c.role = Role::Node;
    c.scopes = vec![];
    c.caps = vec!["system".into()];
    c.commands = commands.iter().map(|s| s.to_string()).collect();
    c.device = Some(DeviceKey::from_seed([seed; 32]));
    c
}

fn operator(p: &mut Sim, scopes: &[&str]) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    let id = p.open_client(c, loopback());
    assert!(p.hello(id).is_some());
    p.events(id);
    id
}

fn node_events(p: &mut Sim, id: ConnId, name: &str) -> Vec<Value> {
    p.events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. } if event == name => Some(payload),
            _ => None,
        })
        .collect()
}

/// A connected and approved node; returns (node conn, node id, operator conn).
fn approved_node(p: &mut Sim) -> (ConnId, String, ConnId) {
    let op = operator(p, &["operator.admin", "operator.pairing"]);
    let node = p.open_client(
        node_config(50, &["system.which", "system.notify"]),
        loopback(),
    );
    let hello = p.hello(node).expect("node hello");
    assert_eq!(hello["auth"]["role"], "node");
    assert_eq!(hello["auth"]["scopes"], json!([]));
    assert!(hello["auth"]["deviceToken"].is_string());
    let node_id = DeviceKey::from_seed([50; 32]).id();
    let list = p.call(op, "node.list", None).unwrap();
    assert_eq!(list["nodes"][0]["approvalState"], "pending-approval");
    assert_eq!(list["nodes"][0]["commands"], json!([]));
    assert_eq!(list["nodes"][0]["connected"], true);
    let pending = p.call(op, "node.pair.list", None).unwrap();
    let req = &pending["pending"][0];
    assert_eq!(req["nodeId"], json!(node_id));
    assert_eq!(
        req["requiredApproveScopes"],
        json!(["operator.pairing", "operator.admin"])
    );
    let rid = req["requestId"].clone();
    let approved = p
        .call(op, "node.pair.approve", Some(json!({"requestId": rid})))
        .unwrap();
    assert_eq!(
        approved["node"]["commands"],
        json!(["system.which", "system.notify"])
    );
    assert_eq!(node_events(p, node, "node.pair.resolved").len(), 1);
    let list = p.call(op, "node.list", None).unwrap();
    assert_eq!(list["nodes"][0]["approvalState"], "approved");
    assert_eq!(
        list["nodes"][0]["commands"],
        json!(["system.notify", "system.which"])
    );
    (node, node_id, op)
}

#[test]
fn node_without_device_is_refused() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let mut c = node_config(1, &[]);
    c.device = None;
    let id = p.open_client(c, loopback());
    assert_eq!(
        p.connect_error(id).unwrap().message,
        "device identity required"
    );
    assert_eq!(p.close_of(id).unwrap().0, Some(1008));
}

#[test]
fn approval_needs_admin_for_system_commands() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let op = operator(&mut p, &["operator.pairing"]);
    p.open_client(node_config(51, &["system.which"]), loopback());
    let rid = p.call(op, "node.pair.list", None).unwrap()["pending"][0]["requestId"].clone();
    let e = p
        .call(op, "node.pair.approve", Some(json!({"requestId": rid})))
        .unwrap_err();
    assert_eq!(e.message, "missing scope: operator.admin");
}

/// A rejected node that stays connected is `unapproved` (upstream's state for a node neither
/// paired nor pending), not still waiting for an approval that cannot come.
#[test]
fn a_rejected_node_is_unapproved() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let op = operator(&mut p, &["operator.read", "operator.pairing"]);
    p.open_client(node_config(52, &["system.which"]), loopback());
    let rid = p.call(op, "node.pair.list", None).unwrap()["pending"][0]["requestId"].clone();
    p.call(op, "node.pair.reject", Some(json!({"requestId": rid})))
        .unwrap();
    let list = p.call(op, "node.list", None).unwrap();
    let node = &list["nodes"][0];
    assert_eq!(node["connected"], true, "{list}");
    assert_eq!(node["approvalState"], "unapproved", "{list}");
    assert_eq!(node.get("pendingRequestId"), None, "{list}");
}

#[test]
fn invoke_round_trip() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let (node, node_id, op) = approved_node(&mut p);
    let params = json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["ls"]}, "idempotencyKey": "idem-1", "timeoutMs": 5000});
    let rid = p.request(op, "node.invoke", Some(params));
    let reqs = node_events(&mut p, node, "node.invoke.request");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r["paramsJSON"], r#"{"bins":["ls"]}"#);
    assert_eq!(r["timeoutMs"], 5000);
    assert_eq!(r["idempotencyKey"], "idem-1");
    let result = json!({"id": r["id"], "nodeId": node_id, "ok": true, "payloadJSON": r#"{"bins":{"ls":"/bin/ls"}}"#});
    let ack = p.call(node, "node.invoke.result", Some(result)).unwrap();
    assert_eq!(ack, json!({"ok": true}));
    let got = p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result),
        _ => None,
    });
    let got = got.expect("operator answered").unwrap();
    assert_eq!(got["payload"], json!({"bins": {"ls": "/bin/ls"}}));
    assert_eq!(got["command"], "system.which");
    // The same idempotency key within 5 minutes gets the same answer without a new request.
    let again = p
        .call(
            op,
            "node.invoke",
            Some(json!({"nodeId": node_id, "command": "system.which", "idempotencyKey": "idem-1"})),
        )
        .unwrap();
    assert_eq!(again["payload"], got["payload"]);
    assert!(node_events(&mut p, node, "node.invoke.request").is_empty());
}

/// `node.invoke` of `system.which` under `key`; a node asked answers `{"n": n}`. Returns the
/// operator's payload and whether the node was asked.
fn invoke_keyed(
    p: &mut Sim,
    (node, node_id, op): (ConnId, &str, ConnId),
    key: &str,
    n: u64,
) -> (Value, bool) {
    let params = json!({"nodeId": node_id, "command": "system.which", "idempotencyKey": key});
    let rid = p.request(op, "node.invoke", Some(params));
    let asked = node_events(p, node, "node.invoke.request");
    for r in &asked {
        let result = json!({"id": r["id"], "nodeId": node_id, "ok": true, "payload": {"n": n}});
        p.call(node, "node.invoke.result", Some(result)).unwrap();
    }
    let got = p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result),
        _ => None,
    });
    (
        got.expect("answered").unwrap()["payload"].clone(),
        !asked.is_empty(),
    )
}

/// The idempotency cache answers a key's newest result within its TTL, and holds
/// `dedupe_max` results: the oldest goes first, and the eviction of a key's expired entry
/// leaves the newer entry of the same key.
#[test]
fn the_idempotency_cache_keeps_the_newest_results_up_to_its_bound() {
    let mut cfg = Config::local_default().with_token("t");
    cfg.limits.dedupe_max = 2;
    cfg.limits.dedupe_ttl = Duration::from_secs(10);
    cfg.limits.tick_interval = Duration::from_secs(3600);
    let mut p = Sim::started(Instant::now(), cfg);
    let (node, node_id, op) = approved_node(&mut p);
    let call = |p: &mut Sim, key: &str, n: u64| invoke_keyed(p, (node, &node_id, op), key, n);
    assert_eq!(call(&mut p, "a", 1), (json!({"n": 1}), true));
    assert_eq!(call(&mut p, "a", 0), (json!({"n": 1}), false));
    p.advance(Duration::from_secs(11));
    // Expired (no tick has pruned it): asked again, a second entry for "a".
    assert_eq!(call(&mut p, "a", 2), (json!({"n": 2}), true));
    // The bound evicts the expired entry, not the newer one.
    assert_eq!(call(&mut p, "b", 3), (json!({"n": 3}), true));
    assert_eq!(call(&mut p, "a", 0), (json!({"n": 2}), false));
    assert_eq!(call(&mut p, "b", 0), (json!({"n": 3}), false));
    // A third key evicts the oldest ("a").
    assert_eq!(call(&mut p, "c", 4), (json!({"n": 4}), true));
    assert_eq!(call(&mut p, "b", 0), (json!({"n": 3}), false));
    assert_eq!(call(&mut p, "a", 5), (json!({"n": 5}), true));
    assert_eq!(call(&mut p, "b", 6), (json!({"n": 6}), true));
}

#[test]
fn invoke_timeout_cancels_and_late_result_is_ignored() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let (node, node_id, op) = approved_node(&mut p);
    let rid = p.request(op, "node.invoke", Some(json!({"nodeId": node_id, "command": "system.which", "idempotencyKey": "k2", "timeoutMs": 1000})));
    let req = node_events(&mut p, node, "node.invoke.request").remove(0);
    p.advance(Duration::from_millis(999));
    assert!(p.events(op).is_empty());
    p.advance(Duration::from_millis(2));
    let err = p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result: Err(e) } if id == rid => Some(e),
        _ => None,
    });
    let err = err.expect("timeout answered");
    assert_eq!(err.message, "TIMEOUT: node invoke timed out");
    assert_eq!(err.details.unwrap()["nodeError"]["code"], "TIMEOUT");
    let cancels = node_events(&mut p, node, "node.invoke.cancel");
    assert_eq!(
        cancels,
        vec![json!({"invokeId": req["id"], "nodeId": node_id})]
    );
    let late = p
        .call(
            node,
            "node.invoke.result",
            Some(json!({"id": req["id"], "nodeId": node_id, "ok": true})),
        )
        .unwrap();
    assert_eq!(late, json!({"ok": true, "ignored": true}));
}

#[test]
fn invoke_fails_fast_for_unknown_node_and_disallowed_command() {
    let mut cfg = Config::local_default().with_token("t");
    cfg.node_commands_deny = vec!["system.notify".into()];
    let mut p = Sim::started(Instant::now(), cfg);
    let (node, node_id, op) = approved_node_with_deny(&mut p);
    let e = p
        .call(
            op,
            "node.invoke",
            Some(json!({"nodeId": "nope", "command": "system.which", "idempotencyKey": "a"})),
        )
        .unwrap_err();
    assert_eq!(e.message, "node not connected: nope");
    let e = p
        .call(
            op,
            "node.invoke",
            Some(json!({"nodeId": node_id, "command": "system.run", "idempotencyKey": "b"})),
        )
        .unwrap_err();
    assert!(
        e.message
            .starts_with("node command not allowed: \"system.run\"")
    );
    let e = p
        .call(
            op,
            "node.invoke",
            Some(json!({"nodeId": node_id, "command": "system.notify", "idempotencyKey": "c"})),
        )
        .unwrap_err();
    assert!(
        e.message.starts_with("node command not allowed"),
        "denied by gateway.nodes.commands.deny"
    );
    let e = p
        .call(
            op,
            "node.invoke",
            Some(json!({"nodeId": node_id, "command": "system.which"})),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "invalid params: at root: must have required property 'idempotencyKey'"
    );
    // The node disconnecting fails an in-flight invoke at once.
    let rid = p.request(
        op,
        "node.invoke",
        Some(json!({"nodeId": node_id, "command": "system.which", "idempotencyKey": "d"})),
    );
    p.gw.handle_closed(p.now, node);
    p.drive();
    let err = p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result: Err(e) } if id == rid => Some(e),
        _ => None,
    });
    assert_eq!(
        err.expect("answered").message,
        "node disconnected during invoke"
    );
}

fn approved_node_with_deny(p: &mut Sim) -> (ConnId, String, ConnId) {
    let op = operator(p, &["operator.admin"]);
    let node = p.open_client(
        node_config(52, &["system.which", "system.notify"]),
        loopback(),
    );
    let node_id = DeviceKey::from_seed([52; 32]).id();
    let rid = p.call(op, "node.pair.list", None).unwrap()["pending"][0]["requestId"].clone();
    p.call(op, "node.pair.approve", Some(json!({"requestId": rid})))
        .unwrap();
    (node, node_id, op)
}

#[test]
fn operators_may_not_call_node_methods_and_nodes_may_not_call_operator_methods() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let (node, node_id, op) = approved_node(&mut p);
    let e = p
        .call(
            op,
            "node.invoke.result",
            Some(json!({"id": "x", "nodeId": node_id, "ok": true})),
        )
        .unwrap_err();
    assert_eq!(e.message, "unauthorized role: operator");
    let e = p.call(node, "status", None).unwrap_err();
    assert_eq!(e.message, "unauthorized role: node");
    assert!(p.call(node, "health", None).is_ok());
}

#[test]
fn presence_is_broadcast_with_seq_on_node_connect_and_disconnect() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let op = operator(&mut p, &["operator.read"]);
    let node = p.open_client(node_config(53, &[]), loopback());
    let evs = p.events(op);
    let presence: Vec<(Value, Option<u64>, Option<Value>)> = evs
        .into_iter()
        .filter_map(|e| match e {
            Event::Event {
                event,
                payload,
                seq,
                state_version,
            } if event == "presence" => Some((payload, seq, state_version)),
            _ => None,
        })
        .collect();
    assert_eq!(presence.len(), 1);
    assert_eq!(presence[0].1, Some(1));
    // upstream's versions: presence moved from 1, health is the first snapshot's.
    assert_eq!(presence[0].2, Some(json!({"presence": 2, "health": 2})));
    assert!(
        presence[0].0["presence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["mode"] == "node")
    );
    p.gw.handle_closed(p.now, node);
    p.drive();
    let seqs: Vec<Option<u64>> = p
        .events(op)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, seq, .. } if event == "presence" => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![Some(2)]);
}

#[test]
fn progress_chunks_reach_the_caller_and_nodes_speak_only_for_themselves() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let (node, node_id, op) = approved_node(&mut p);
    p.request(
        op,
        "node.invoke",
        Some(json!({"nodeId": node_id, "command": "system.which", "idempotencyKey": "p1"})),
    );
    let req = node_events(&mut p, node, "node.invoke.request").remove(0);
    let chunk =
        json!({"invokeId": req["id"], "nodeId": node_id, "seq": 0, "chunk": "partial output"});
    assert_eq!(
        p.call(node, "node.invoke.progress", Some(chunk.clone()))
            .unwrap(),
        json!({"ok": true, "ignored": false})
    );
    let forwarded: Vec<Value> = p
        .events(op)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event {
                event,
                payload,
                seq: None,
                ..
            } if event == "node.invoke.progress" => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded, vec![chunk]);
    let big = json!({"invokeId": req["id"], "nodeId": node_id, "seq": 1, "chunk": "x".repeat(16 * 1024 + 1)});
    assert_eq!(
        p.call(node, "node.invoke.progress", Some(big))
            .unwrap_err()
            .message,
        "progress chunk too large"
    );
    let other = json!({"id": req["id"], "nodeId": "someone-else", "ok": true});
    assert_eq!(
        p.call(node, "node.invoke.result", Some(other))
            .unwrap_err()
            .message,
        "nodeId mismatch"
    );
    let stray = json!({"invokeId": "nope", "nodeId": node_id, "seq": 2, "chunk": "late"});
    assert_eq!(
        p.call(node, "node.invoke.progress", Some(stray)).unwrap(),
        json!({"ok": true, "ignored": true})
    );
}

#[test]
fn node_tokens_need_admin_to_rotate_or_revoke() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let (_node, node_id, admin) = approved_node(&mut p);
    let pairing_only = operator(&mut p, &["operator.pairing"]);
    for method in ["device.token.rotate", "device.token.revoke"] {
        let e = p
            .call(
                pairing_only,
                method,
                Some(json!({"deviceId": node_id, "role": "node"})),
            )
            .unwrap_err();
        assert_eq!(e.message, "missing scope: operator.admin", "{method}");
    }
    let r = p
        .call(
            admin,
            "device.token.rotate",
            Some(json!({"deviceId": node_id, "role": "node"})),
        )
        .unwrap();
    assert_eq!(r["role"], "node");
}

#[test]
fn logs_tail_follows_with_a_cursor() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let op = operator(&mut p, &["operator.read"]);
    let first = p.call(op, "logs.tail", Some(json!({"limit": 5}))).unwrap();
    assert!(!first["lines"].as_array().unwrap().is_empty());
    let cursor = first["cursor"].clone();
    let _ = operator(&mut p, &["operator.read"]);
    let next = p
        .call(op, "logs.tail", Some(json!({"cursor": cursor})))
        .unwrap();
    let lines = next["lines"].as_array().unwrap();
    assert!(
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| !first["lines"].as_array().unwrap().contains(l))
    );
    assert_eq!(next["reset"], false);
    let e = p
        .call(op, "logs.tail", Some(json!({"limit": 0})))
        .unwrap_err();
    assert!(e.message.starts_with("invalid params: at /limit"));
}

#[test]
fn the_nodes_tool_invokes_and_a_disconnect_ends_the_call() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let (node, node_id, _) = approved_node(&mut p);
    let op = operator(&mut p, &["operator.write", "operator.read"]);
    let which =
        json!({"name": "nodes", "args": {"action": "which", "node": "sim-node", "bins": ["ls"]}});
    let rid = p.request(op, "tools.invoke", Some(which.clone()));
    let reqs = node_events(&mut p, node, "node.invoke.request");
    assert_eq!(reqs[0]["command"], "system.which");
    assert_eq!(reqs[0]["paramsJSON"], r#"{"bins":["ls"]}"#);
    let result = json!({"id": reqs[0]["id"], "nodeId": node_id, "ok": true, "payload": {"bins": {"ls": "/bin/ls"}}});
    p.call(node, "node.invoke.result", Some(result)).unwrap();
    let got = p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result),
        _ => None,
    });
    assert_eq!(
        got.expect("answered").unwrap(),
        json!({"ok": true, "toolName": "nodes", "output": {"bins": {"ls": "/bin/ls"}}})
    );
    // A command the node was not approved for is refused by the same routing.
    let denied = json!({"name": "nodes", "args": {"action": "invoke", "node": node_id, "invokeCommand": "camera.snap"}});
    let r = p.call(op, "tools.invoke", Some(denied)).unwrap();
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node command not allowed"),
        "{r}"
    );
    // The node leaves mid-call: the call ends with an error, not a hang.
    let rid = p.request(op, "tools.invoke", Some(which));
    assert_eq!(node_events(&mut p, node, "node.invoke.request").len(), 1);
    p.eof(node);
    let got = p.events(op).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result),
        _ => None,
    });
    let got = got.expect("answered at the disconnect").unwrap();
    assert_eq!(got["ok"], false);
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node disconnected"),
        "{got}"
    );
    assert_eq!(p.gw.tool_calls_in_flight(), 0);
}
