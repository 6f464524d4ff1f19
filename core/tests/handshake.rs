//! Handshake and auth: every row of upstream §3.2 through an in-memory pair.

use std::time::{Duration, Instant};

use clawgate_core::Config;
use clawgate_core::fuzzing::sim::*;
use serde_json::json;

#[test]
fn local_cli_in_mode_none_gets_hello_with_requested_scopes() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), loopback());
    let hello = p.hello(id).expect("hello-ok");
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]));
    assert_eq!(hello["policy"]["tickIntervalMs"], 30000);
    assert!(
        hello["features"]["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "health")
    );
}

#[test]
fn wrong_token_is_refused_with_1008() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("secret"));
    let id = p.open_client(cli(Some("nope")), loopback());
    p.settle();
    let err = p.connect_error(id).expect("connect failed");
    assert_eq!(
        err.message,
        "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"
    );
    assert_eq!(err.details.as_ref().unwrap()["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(p.close_of(id), Some((Some(1008), err.message.clone())));
}

#[test]
fn no_token_no_device_is_device_identity_required() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("secret"));
    let id = p.open_client(cli(None), loopback());
    let err = p.connect_error(id).unwrap();
    assert_eq!(err.message, "device identity required");
    assert_eq!(
        p.close_of(id),
        Some((Some(1008), "device identity required".into()))
    );
}

#[test]
fn silent_socket_closes_1000_after_handshake_timeout() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_raw_sending(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", loopback());
    p.advance(Duration::from_millis(14_999));
    assert!(!p.peer(id).closed);
    p.advance(Duration::from_millis(2));
    assert!(p.peer(id).closed);
}

#[test]
fn probe_mode_without_device_gets_empty_scopes_and_health_works() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let mut c = cli(Some("t"));
    c.client.mode = "probe".into();
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["scopes"], json!([]));
    p.events(id);
    assert!(p.call(id, "health", None).is_ok());
    let e = p.call(id, "status", None).unwrap_err();
    assert_eq!(e.message, "missing scope: operator.read");
}

/// Records below the host's level never leave the core (nor are formatted); info records still
/// reach the ring `logs.tail` reads.
#[test]
fn records_below_the_log_level_stay_in_the_core_but_info_reaches_logs_tail() {
    let mut quiet = Config::local_default();
    quiet.log_level = clawgate_core::Level::Warn;
    let mut p = Sim::started(Instant::now(), quiet);
    let id = p.open_client(cli(None), loopback());
    assert!(p.hello(id).is_some());
    assert!(
        p.logs.iter().all(|r| r.level <= clawgate_core::Level::Warn),
        "{:?}",
        p.logs
    );
    let tail = p.call(id, "logs.tail", Some(json!({}))).expect("logs.tail");
    let lines = tail["lines"].as_array().expect("lines");
    assert!(
        lines.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.contains("websocket open from"))),
        "{tail}"
    );

    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), loopback());
    assert!(p.hello(id).is_some());
    assert!(
        p.logs
            .iter()
            .any(|r| r.level == clawgate_core::Level::Debug && r.message.starts_with("accepted ")),
        "{:?}",
        p.logs
    );
}

#[test]
fn a_reloaded_configuration_reaches_the_next_hello() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let before = p.open_client(cli(None), loopback());
    let hello = p.hello(before).expect("hello-ok");
    assert_eq!(hello["policy"]["tickIntervalMs"], 30000);
    assert_eq!(hello["snapshot"]["authMode"], "none");
    let mut config = Config::local_default().with_token("secret");
    config.limits.tick_interval = Duration::from_millis(2000);
    config.limits.max_payload = 1 << 20;
    config.state_dir = "/var/lib/clawgate".into();
    p.reload(config);
    let after = p.open_client(cli(Some("secret")), loopback());
    let hello = p.hello(after).expect("hello-ok after the reload");
    assert_eq!(hello["policy"]["tickIntervalMs"], 2000);
    assert_eq!(hello["policy"]["maxPayload"], 1 << 20);
    assert_eq!(hello["snapshot"]["authMode"], "token");
    assert_eq!(hello["snapshot"]["stateDir"], "/var/lib/clawgate");
}
