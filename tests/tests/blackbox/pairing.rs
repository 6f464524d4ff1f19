//! Pairing, device tokens and node routing over real sockets: a device pairs, is approved,
//! reconnects with its device token and loses it to a revoke; an operator invokes a command on
//! a node through the gateway.

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::device::DeviceKey;
use clawgate_core::scopes::Role;
use clawgate_tests::both;
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use serde_json::{Value, json};

/// Token mode, and every new device needs an approval, local or not.
fn gateway(shell: Shell) -> Gateway {
    Options::new()
        .token("t0ken")
        .config(r#"{gateway: {nodes: {pairing: {autoApproveLocal: false}}}}"#)
        .start(shell)
}

pub(super) fn admin(gw: &Gateway) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = vec!["operator.admin".into(), "operator.pairing".into()];
    let mut ws = gw.ws(cfg);
    ws.hello().expect("admin hello-ok");
    ws
}

fn device(gw: &Gateway, seed: u8) -> ClientConfig {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.device = Some(DeviceKey::from_seed([seed; 32]));
    cfg
}

fn pair_approve_reconnect_revoke(shell: Shell) {
    let gw = gateway(shell);
    let mut first = gw.ws(device(&gw, 7));
    let err = first.hello().expect_err("a new device needs approval");
    let details = err.details.clone().expect("details");
    assert_eq!(details["code"], "PAIRING_REQUIRED");
    let request_id = details["requestId"]
        .as_str()
        .expect("requestId")
        .to_string();
    let (code, reason) = first.closed();
    assert_eq!(code, Some(1008));
    assert!(
        reason.ends_with(&format!("(requestId: {request_id})")),
        "{reason}"
    );

    let mut admin = admin(&gw);
    let approved = admin
        .call(
            "device.pair.approve",
            Some(json!({"requestId": request_id})),
        )
        .expect("approve");
    assert_eq!(approved["requestId"], json!(request_id));

    let mut again = gw.ws(device(&gw, 7));
    let hello = again.hello().expect("approved device connects");
    let token = hello["auth"]["deviceToken"]
        .as_str()
        .expect("deviceToken")
        .to_string();

    let mut by_token = device(&gw, 7);
    by_token.token = None;
    by_token.device_token = Some(token.clone());
    let mut live = gw.ws(by_token.clone());
    assert_eq!(
        live.hello().expect("device token accepted")["auth"]["method"],
        "device-token"
    );

    let id = DeviceKey::from_seed([7; 32]).id();
    admin
        .call(
            "device.token.revoke",
            Some(json!({"deviceId": id, "role": "operator"})),
        )
        .expect("revoke");
    assert_eq!(
        live.closed(),
        (Some(4001), "client invalidated: token revoked".into())
    );
    let err = gw
        .ws(by_token)
        .hello()
        .expect_err("a revoked token is refused");
    assert_eq!(
        err.details.expect("details")["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    // The shared-secret session of the same device is not touched by the revoke.
    assert!(again.call("health", None).is_ok());
}

/// A node device (seed 9) declaring `system.which`, paired and approved by `admin`: its
/// session and its id.
pub(super) fn paired_node(gw: &Gateway, admin: &mut Ws) -> (Ws, String) {
    let node_id = DeviceKey::from_seed([9; 32]).id();
    let mut node_cfg = device(gw, 9);
    node_cfg.client.id = "node-host".into();
    node_cfg.client.mode = "node".into();
    node_cfg.role = Role::Node;
    node_cfg.scopes = vec![];
    node_cfg.caps = vec!["system".into()];
    node_cfg.commands = vec!["system.which".into()];

    // The node's device needs approval first, then its commands.
    let err = gw
        .ws(node_cfg.clone())
        .hello()
        .expect_err("new node device");
    let rid = err.details.expect("details")["requestId"].clone();
    admin
        .call("device.pair.approve", Some(json!({"requestId": rid})))
        .expect("approve device");
    let mut node = gw.ws(node_cfg);
    assert_eq!(node.hello().expect("node hello-ok")["auth"]["role"], "node");
    let pending = admin.call("node.pair.list", None).expect("node.pair.list");
    let rid = pending["pending"][0]["requestId"].clone();
    admin
        .call("node.pair.approve", Some(json!({"requestId": rid})))
        .expect("approve node");
    let nodes = admin.call("node.list", None).expect("node.list");
    assert_eq!(nodes["nodes"][0]["commands"], json!(["system.which"]));
    (node, node_id)
}

fn operator_invokes_a_command_on_a_node(shell: Shell) {
    let gw = gateway(shell);
    let mut admin = admin(&gw);
    let (mut node, node_id) = paired_node(&gw, &mut admin);

    let params = json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["ls"]}, "idempotencyKey": "bb-1"});
    let call_id = admin.client().request("node.invoke", Some(params));
    admin.flush();
    let request: Value = node.expect("node.invoke.request", |e| match e {
        Event::Event { event, payload, .. } if event == "node.invoke.request" => {
            Some(payload.clone())
        }
        _ => None,
    });
    assert_eq!(request["paramsJSON"], r#"{"bins":["ls"]}"#);
    let result = json!({"id": request["id"], "nodeId": node_id, "ok": true, "payloadJSON": r#"{"bins":{"ls":"/bin/ls"}}"#});
    assert_eq!(
        node.call("node.invoke.result", Some(result)).expect("ack"),
        json!({"ok": true})
    );
    let answer = admin.expect("the invoke answer", |e| match e {
        Event::Response { id, result } if *id == call_id => Some(result.clone()),
        _ => None,
    });
    let answer = answer.expect("invoke succeeded");
    assert_eq!(answer["payload"], json!({"bins": {"ls": "/bin/ls"}}));
    assert_eq!(answer["nodeId"], json!(node_id));
}

both!(
    pair_approve_reconnect_revoke,
    operator_invokes_a_command_on_a_node
);
