//! Device identity, pairing and device tokens.

use clawgate_core::Config;
use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::device::DeviceKey;
use clawgate_core::fuzzing::sim::*;
use serde_json::json;
use std::time::Instant;

fn device_cli(token: Option<&str>, seed: u8, scopes: &[&str]) -> ClientConfig {
    let mut c = cli(token);
    c.device = Some(DeviceKey::from_seed([seed; 32]));
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    c
}

fn admin(p: &mut Sim) -> clawgate_core::ConnId {
    let id = p.open_client(
        device_cli(Some("t"), 200, &["operator.admin", "operator.pairing"]),
        loopback(),
    );
    assert!(p.hello(id).is_some(), "{:?}", p.connect_error(id));
    p.events(id);
    id
}

#[test]
fn local_device_is_paired_silently_and_reconnects_with_its_token() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let id = p.open_client(device_cli(Some("t"), 1, &["operator.read"]), loopback());
    let hello = p.hello(id).unwrap();
    let token = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43);
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]));
    assert!(!p.transcript.persisted.is_empty(), "pairing is persisted");
    let mut c = device_cli(None, 1, &["operator.read"]);
    c.device_token = Some(token.clone());
    let id = p.open_client(c, loopback());
    let hello = p.hello(id).expect("device token accepted");
    assert_eq!(hello["auth"]["method"], "device-token");
    assert_eq!(hello["auth"]["deviceToken"], json!(token));
    // The device token also works in auth.token.
    let c = device_cli(Some(&token), 1, &["operator.read"]);
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["method"], "device-token");
}

#[test]
fn remote_device_needs_pairing_with_a_stable_request_id() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let id = p.open_client(device_cli(Some("t"), 2, &["operator.read"]), remote());
    let e = p.connect_error(id).unwrap();
    assert_eq!(e.message, "pairing required: device is not approved yet");
    let d = e.details.unwrap();
    assert_eq!(d["code"], "PAIRING_REQUIRED");
    assert_eq!(d["reason"], "not-paired");
    let rid = d["requestId"].as_str().unwrap().to_string();
    let (code, reason) = p.close_of(id).unwrap();
    assert_eq!(code, Some(1008));
    assert_eq!(
        reason,
        format!("pairing required: device is not approved yet (requestId: {rid})")
    );
    // Asking again for more keeps the same request and merges the scopes.
    let id = p.open_client(device_cli(Some("t"), 2, &["operator.admin"]), remote());
    let d = p.connect_error(id).unwrap().details.unwrap();
    assert_eq!(d["requestId"], json!(rid));
    let a = admin(&mut p);
    let list = p.call(a, "device.pair.list", None).unwrap();
    let pending = list["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0]["scopes"],
        json!(["operator.read", "operator.admin"])
    );
    let approved = p
        .call(a, "device.pair.approve", Some(json!({"requestId": rid})))
        .unwrap();
    assert_eq!(approved["requestId"], json!(rid));
    let id = p.open_client(device_cli(Some("t"), 2, &["operator.admin"]), remote());
    let hello = p.hello(id).expect("approved device connects");
    assert_eq!(hello["auth"]["scopes"], json!(["operator.admin"]));
    // A device paired with admin can ask for less without re-pairing.
    let id = p.open_client(device_cli(Some("t"), 2, &["operator.read"]), remote());
    assert!(p.hello(id).is_some());
}

#[test]
fn pending_requests_expire_after_five_minutes() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let id = p.open_client(device_cli(Some("t"), 3, &["operator.read"]), remote());
    let rid = p.connect_error(id).unwrap().details.unwrap()["requestId"].clone();
    p.advance(std::time::Duration::from_secs(301));
    let id = p.open_client(device_cli(Some("t"), 3, &["operator.read"]), remote());
    let rid2 = p.connect_error(id).unwrap().details.unwrap()["requestId"].clone();
    assert_ne!(rid, rid2);
}

#[test]
fn device_token_failures_are_told_apart_from_token_mismatch() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let id = p.open_client(device_cli(Some("t"), 4, &["operator.read"]), loopback());
    let token = p.hello(id).unwrap()["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Wrong shared secret plus a valid explicit device token connects.
    let mut c = device_cli(Some("wrong"), 4, &["operator.read"]);
    c.device_token = Some(token);
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["method"], "device-token");
    // A wrong explicit device token says so.
    let mut c = device_cli(None, 4, &["operator.read"]);
    c.device_token = Some("nope".into());
    let id = p.open_client(c, loopback());
    assert_eq!(
        p.connect_error(id).unwrap().details.unwrap()["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    // A wrong shared token alone keeps "gateway token mismatch".
    let id = p.open_client(device_cli(Some("wrong"), 4, &["operator.read"]), loopback());
    p.settle();
    let e = p.connect_error(id).unwrap();
    assert!(
        e.message
            .starts_with("unauthorized: gateway token mismatch")
    );
    assert_eq!(e.details.as_ref().unwrap()["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(e.details.unwrap()["canRetryWithDeviceToken"], true);
    // A signed device with no secret at all: AUTH_TOKEN_MISSING.
    let id = p.open_client(device_cli(None, 5, &[]), loopback());
    assert_eq!(
        p.connect_error(id).unwrap().details.unwrap()["code"],
        "AUTH_TOKEN_MISSING"
    );
}

#[test]
fn revoking_a_token_closes_its_live_connections() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let id = p.open_client(device_cli(Some("t"), 6, &["operator.read"]), loopback());
    let token = p.hello(id).unwrap()["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = device_cli(None, 6, &["operator.read"]);
    c.device_token = Some(token.clone());
    let live = p.open_client(c.clone(), loopback());
    assert!(p.hello(live).is_some());
    let a = admin(&mut p);
    let dev = DeviceKey::from_seed([6; 32]).id();
    p.call(
        a,
        "device.token.revoke",
        Some(json!({"deviceId": dev, "role": "operator"})),
    )
    .unwrap();
    assert_eq!(
        p.close_of(live),
        Some((Some(4001), "client invalidated: token revoked".into()))
    );
    assert!(!p.peer(id).closed, "the shared-secret connection stays");
    let again = p.open_client(c, loopback());
    assert_eq!(
        p.connect_error(again).unwrap().details.unwrap()["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
}

#[test]
fn rotation_issues_a_new_token_and_invalidates_the_old() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let id = p.open_client(device_cli(Some("t"), 7, &["operator.read"]), loopback());
    let old = p.hello(id).unwrap()["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    let a = admin(&mut p);
    let dev = DeviceKey::from_seed([7; 32]).id();
    let r = p
        .call(
            a,
            "device.token.rotate",
            Some(json!({"deviceId": dev, "role": "operator"})),
        )
        .unwrap();
    let new = r["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(r["tokenDelivery"], "in-band");
    let mut c = device_cli(None, 7, &["operator.read"]);
    c.device_token = Some(old);
    let id = p.open_client(c.clone(), loopback());
    assert!(p.connect_error(id).is_some());
    c.device_token = Some(new);
    let id = p.open_client(c, loopback());
    assert!(p.hello(id).is_some());
}

/// Connect with `connect` params edited after signing.
fn tampered(
    p: &mut Sim,
    c: ClientConfig,
    edit: impl Fn(&mut serde_json::Value, &str, i64),
) -> clawgate_core::frame::ErrorShape {
    let mut c = c;
    c.manual_connect = true;
    let id = p.open_client(c.clone(), loopback());
    let (nonce, ts) = p
        .events(id)
        .into_iter()
        .find_map(|e| match e {
            Event::Challenge { nonce, ts } => Some((nonce, ts)),
            _ => None,
        })
        .expect("challenge");
    let mut params = c.connect_params(&nonce, ts);
    edit(&mut params, &nonce, ts);
    p.peer(id).client.as_mut().unwrap().send_connect(params);
    p.drive();
    assert_eq!(p.close_of(id).map(|c| c.0), Some(Some(1008)));
    p.connect_error(id).expect("connect refused")
}

fn code_and_reason(e: &clawgate_core::frame::ErrorShape) -> (String, String) {
    let d = e.details.clone().unwrap();
    (
        d["code"].as_str().unwrap().to_string(),
        d["reason"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn device_proof_failures_have_upstream_codes() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let base = device_cli(Some("t"), 8, &["operator.read"]);
    let e = tampered(&mut p, base.clone(), |v, _, _| {
        v["device"]["nonce"] = json!("stale-nonce")
    });
    assert_eq!(e.message, "device nonce mismatch");
    assert_eq!(
        code_and_reason(&e),
        (
            "DEVICE_AUTH_NONCE_MISMATCH".into(),
            "device-nonce-mismatch".into()
        )
    );
    let e = tampered(&mut p, base.clone(), |v, _, _| {
        v["device"]["id"] = json!("ab".repeat(32))
    });
    assert_eq!(
        code_and_reason(&e),
        (
            "DEVICE_AUTH_DEVICE_ID_MISMATCH".into(),
            "device-id-mismatch".into()
        )
    );
    // The client signs its scopes; asking for other scopes breaks the signature.
    let e = tampered(&mut p, base.clone(), |v, _, _| {
        v["scopes"] = json!(["operator.admin"])
    });
    assert_eq!(
        code_and_reason(&e),
        (
            "DEVICE_AUTH_SIGNATURE_INVALID".into(),
            "device-signature".into()
        )
    );
    let e = tampered(&mut p, base.clone(), |v, _, _| {
        v["scopes"] = json!([]);
    });
    assert_eq!(e.message, "device signature invalid");
    let stale = base.clone();
    let e = tampered(&mut p, stale, |v, nonce, ts| {
        let key = DeviceKey::from_seed([8; 32]);
        let scopes = vec!["operator.read".to_string()];
        let fields = clawgate_core::device::SignedFields {
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes: &scopes,
            token: "t",
            platform: std::env::consts::OS,
            device_family: "",
        };
        let proof = key.prove(&fields, ts - 120_001, nonce);
        v["device"]["signedAt"] = json!(proof.signed_at);
        v["device"]["signature"] = json!(proof.signature);
    });
    assert_eq!(
        code_and_reason(&e),
        (
            "DEVICE_AUTH_SIGNATURE_EXPIRED".into(),
            "device-signature-stale".into()
        )
    );
    let e = tampered(&mut p, base, |v, _, _| v["device"]["nonce"] = json!(" "));
    assert_eq!(
        code_and_reason(&e),
        (
            "DEVICE_AUTH_NONCE_REQUIRED".into(),
            "device-nonce-missing".into()
        )
    );
}

#[test]
fn store_snapshots_reload_to_the_same_state_and_never_lose_an_approved_device() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    for seed in 10..14 {
        let id = p.open_client(device_cli(Some("t"), seed, &["operator.read"]), loopback());
        assert!(p.hello(id).is_some());
    }
    let reloaded = p.transcript.persisted.last().unwrap().clone();
    assert_eq!(reloaded.devices, p.gw.store().devices);
    assert_eq!(reloaded.pending, p.gw.store().pending);
    // The store after every batch contains every device approved before it: a crash between
    // any two writes (each batch is one transaction) loses nothing approved earlier.
    let mut seen = std::collections::BTreeSet::new();
    for s in &p.transcript.persisted {
        for d in &seen {
            assert!(s.devices.contains_key(d), "snapshot lost {d}");
        }
        seen.extend(s.devices.keys().cloned());
    }
    assert_eq!(seen.len(), 4);
    // A gateway started from the snapshot accepts the devices' tokens.
    let token = reloaded.devices.values().next().unwrap().tokens["operator"]
        .token
        .clone();
    let dev_seed = (10..14)
        .find(|s| {
            reloaded.devices.values().next().unwrap().device_id
                == DeviceKey::from_seed([*s; 32]).id()
        })
        .unwrap();
    let mut p2 = Sim::new(
        Instant::now(),
        Config::local_default().with_token("t"),
        reloaded,
    );
    let mut c = device_cli(None, dev_seed, &["operator.read"]);
    c.device_token = Some(token);
    let id = p2.open_client(c, remote());
    assert_eq!(p2.hello(id).unwrap()["auth"]["method"], "device-token");
}
