//! "ok" never runs ahead of the store: answers and `hello-ok` wait for the store batch that
//! records what they say; a failed write answers with an error and is rewritten on the tick.

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::device::DeviceKey;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, ConnId};
use serde_json::json;
use std::time::Instant;

fn device_cli(token: Option<&str>, seed: u8, scopes: &[&str]) -> ClientConfig {
    let mut c = cli(token);
    c.device = Some(DeviceKey::from_seed([seed; 32]));
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    c
}

fn response(p: &mut Sim, conn: ConnId, rid: &str) -> Option<Result<serde_json::Value, String>> {
    p.events(conn).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result.map_err(|e| e.message)),
        _ => None,
    })
}

/// A gateway with an admin and a pending remote device; returns (sim, admin, request id).
fn pending_device() -> (Sim, ConnId, String) {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let admin = p.open_client(
        device_cli(Some("t"), 200, &["operator.admin", "operator.pairing"]),
        loopback(),
    );
    assert!(p.hello(admin).is_some());
    p.events(admin);
    let dev = p.open_client(device_cli(Some("t"), 3, &["operator.read"]), remote());
    let rid = p.connect_error(dev).unwrap().details.unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    (p, admin, rid)
}

/// [`pending_device`], then the admin approves it while store writes are held; returns the
/// approval's request id.
fn approval_with_writes_held() -> (Sim, ConnId, String) {
    let (mut p, admin, rid) = pending_device();
    p.hold_store_writes(true);
    let req = p.request(
        admin,
        "device.pair.approve",
        Some(json!({"requestId": rid})),
    );
    (p, admin, req)
}

#[test]
fn an_approval_is_answered_only_once_it_is_written() {
    let (mut p, admin, req) = approval_with_writes_held();
    assert_eq!(
        response(&mut p, admin, &req),
        None,
        "answered before the write"
    );
    // A read meanwhile waits too: it would show what is not on disk yet.
    let list = p.request(admin, "device.pair.list", None);
    assert_eq!(response(&mut p, admin, &list), None);
    let dev = DeviceKey::from_seed([3; 32]).id();
    assert!(!p.disk.devices.contains_key(&dev));
    p.write_store(true);
    let events = p.events(admin);
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Response { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [req.as_str(), list.as_str()],
        "answers keep their order"
    );
    assert!(p.disk.devices.contains_key(&dev));
}

#[test]
fn a_failed_write_answers_an_error_and_the_tick_rewrites_the_store() {
    let (mut p, admin, req) = approval_with_writes_held();
    p.write_store(false);
    let err = response(&mut p, admin, &req).unwrap().unwrap_err();
    assert!(err.contains("could not be saved"), "{err}");
    assert!(
        p.logs
            .iter()
            .any(|r| r.message.contains("store write failed"))
    );
    p.hold_store_writes(false);
    p.advance(Config::local_default().limits.tick_interval);
    let id = DeviceKey::from_seed([3; 32]).id();
    assert!(
        p.disk.devices.contains_key(&id),
        "the rewrite after the failure keeps the in-memory state"
    );
    assert_eq!(p.disk.devices, p.gw.store().devices);
}

#[test]
fn a_silently_paired_device_gets_hello_ok_only_once_its_token_is_written() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    p.hold_store_writes(true);
    let id = p.open_client(device_cli(Some("t"), 1, &["operator.read"]), loopback());
    assert_eq!(p.hello(id), None, "hello-ok before the device is written");
    assert_eq!(p.gw.counts().authenticated, 0);
    p.write_store(true);
    let hello = p.hello(id).expect("hello-ok once written");
    let token = hello["auth"]["deviceToken"].as_str().unwrap();
    let stored = &p.disk.devices[&DeviceKey::from_seed([1; 32]).id()];
    assert_eq!(stored.tokens["operator"].token, token);
}

#[test]
fn a_silent_pairing_that_cannot_be_written_is_refused() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    p.hold_store_writes(true);
    let id = p.open_client(device_cli(Some("t"), 1, &["operator.read"]), loopback());
    p.write_store(false);
    assert_eq!(p.hello(id), None);
    let err = p.connect_error(id).expect("a connect error");
    assert!(
        err.message.contains("could not be saved"),
        "{}",
        err.message
    );
    assert_eq!(
        p.close_of(id),
        Some((Some(1011), "store unavailable".into()))
    );
}
