//! Shared-secret auth, locality, origin, proxies, rate limits and scopes.

use std::time::{Duration, Instant};

use clawgate_core::Config;
use clawgate_core::client::Event;
use clawgate_core::fuzzing::sim::*;
use serde_json::json;

#[test]
fn password_mode_accepts_the_password_in_either_field() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_password("pw"));
    let mut c = cli(None);
    c.password = Some("pw".into());
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["method"], "password");
    let id = p.open_client(cli(Some("pw")), loopback());
    assert!(p.hello(id).is_some(), "the secret may arrive in auth.token");
    let mut c = cli(None);
    c.password = Some("wrong".into());
    let id = p.open_client(c, loopback());
    p.settle();
    let e = p.connect_error(id).unwrap();
    assert_eq!(e.details.unwrap()["code"], "AUTH_PASSWORD_MISMATCH");
    assert_eq!(p.close_of(id).unwrap().0, Some(1008));
}

#[test]
fn mode_none_refuses_remote_connections() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), remote());
    let e = p.connect_error(id).unwrap();
    assert_eq!(
        e.message,
        "unauthorized: gateway auth required for non-local connections"
    );
    assert_eq!(e.details.unwrap()["code"], "AUTH_REQUIRED");
    assert_eq!(p.close_of(id).unwrap().0, Some(1008));
}

#[test]
fn mode_none_local_non_cli_client_gets_no_scopes() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let mut c = cli(None);
    c.client.id = "test".into();
    c.client.mode = "test".into();
    c.scopes = vec!["operator.admin".into()];
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["scopes"], json!([]));
}

#[test]
fn foreign_origin_is_refused_and_allowed_origin_passes() {
    let mut cfg = Config::local_default();
    cfg.allowed_origins = vec!["https://ui.example.com".into()];
    let mut p = Sim::started(Instant::now(), cfg);
    let mut c = cli(None);
    c.origin = Some("https://evil.example".into());
    let id = p.open_client(c, loopback());
    let e = p.connect_error(id).unwrap();
    assert_eq!(e.details.unwrap()["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED");
    assert_eq!(p.close_of(id).unwrap().0, Some(1008));
    // An allowed but non-loopback origin is not local: mode none refuses it.
    let mut c = cli(None);
    c.origin = Some("https://ui.example.com".into());
    let id = p.open_client(c, loopback());
    assert_eq!(
        p.connect_error(id).unwrap().details.unwrap()["code"],
        "AUTH_REQUIRED"
    );
    // A loopback origin is local, but a browser-origin cli keeps no scopes.
    let mut c = cli(None);
    c.origin = Some("http://localhost:5173".into());
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["scopes"], json!([]));
}

#[test]
fn a_page_served_on_a_lan_address_connects_back_to_its_own_origin() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let lan = std::net::SocketAddr::from(([192, 168, 1, 30], 50_000));
    let mut c = cli(Some("t"));
    c.host = "192.168.1.20:18789".into();
    c.origin = Some("http://192.168.1.20:18789".into());
    let id = p.open_client(c, lan);
    assert!(
        p.hello(id).is_some(),
        "the page's own LAN origin is refused"
    );
    // The same page's socket to another host's name is a foreign origin.
    let mut c = cli(Some("t"));
    c.host = "192.168.1.21:18789".into();
    c.origin = Some("http://192.168.1.20:18789".into());
    let id = p.open_client(c, lan);
    assert_eq!(
        p.connect_error(id).unwrap().details.unwrap()["code"],
        "CONTROL_UI_ORIGIN_NOT_ALLOWED"
    );
}

#[test]
fn forwarding_headers_from_untrusted_peer_get_403() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_raw_sending(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n", loopback());
    let raw = String::from_utf8_lossy(p.sent(id)).into_owned();
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.contains("proxy_attribution_required") && raw.contains("gateway.trustedProxies"));
    assert!(p.peer(id).closed);
}

#[test]
fn trusted_proxy_forwarding_a_remote_client_is_not_local() {
    let mut cfg = Config::local_default().with_token("t");
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let mut p = Sim::started(Instant::now(), cfg);
    let id = p.open_raw_sending(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n", loopback());
    let raw = String::from_utf8_lossy(p.sent(id)).into_owned();
    assert!(raw.starts_with("HTTP/1.1 101"), "{raw}");
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("203.0.113.5") && l.message.contains("local: false"))
    );
}

#[test]
fn remote_failures_lock_out_after_ten_and_device_bucket_is_separate() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("right"));
    for _ in 0..10 {
        let id = p.open_client(cli(Some("wrong")), remote());
        assert_eq!(
            p.connect_error(id).unwrap().details.unwrap()["code"],
            "AUTH_TOKEN_MISMATCH"
        );
    }
    let id = p.open_client(cli(Some("right")), remote());
    let e = p.connect_error(id).unwrap();
    assert_eq!(e.details.as_ref().unwrap()["code"], "AUTH_RATE_LIMITED");
    assert_eq!(e.retryable, Some(true));
    assert!(e.retry_after_ms.unwrap() > 0);
    assert_eq!(
        e.message,
        "unauthorized: too many failed authentication attempts (retry later)"
    );
    // Local connections are exempt.
    let id = p.open_client(cli(Some("right")), loopback());
    assert!(p.hello(id).is_some());
    // After the lockout the remote address is admitted again (to pairing, as it has no device here).
    p.advance(Duration::from_secs(301));
    let id = p.open_client(cli(Some("right")), remote());
    assert!(p.hello(id).is_some());
}

#[test]
fn scopes_authorize_methods_and_unknown_methods_come_after_the_scope_check() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.read".into()];
    let id = p.open_client(c, loopback());
    p.events(id);
    assert!(p.call(id, "status", None).is_ok());
    let e = p.call(id, "no.such", None).unwrap_err();
    assert_eq!(e.message, "missing scope: operator.admin");
    let e = p.call(id, "config.apply", None).unwrap_err();
    assert_eq!(e.details.unwrap()["missingScope"], "operator.admin");
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.admin".into()];
    let id = p.open_client(c, loopback());
    p.events(id);
    assert_eq!(
        p.call(id, "no.such", None).unwrap_err().message,
        "unknown method: no.such"
    );
    assert_eq!(
        p.call(id, "connect", None).unwrap_err().message,
        "connect is only valid as the first request"
    );
    assert!(
        !p.peer(id).closed,
        "a second connect leaves the socket open"
    );
}

#[test]
fn invalid_frames_after_hello_are_answered_and_non_json_is_ignored() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), loopback());
    p.events(id);
    p.peer(id)
        .client
        .as_mut()
        .unwrap()
        .send_text(r#"{"type":"req","id":"x1","method":"health","bogus":1}"#.into());
    p.peer(id)
        .client
        .as_mut()
        .unwrap()
        .send_text("not json".into());
    p.peer(id)
        .client
        .as_mut()
        .unwrap()
        .send_text(r#"{"type":"req","method":"health"}"#.into());
    p.drive();
    let evs = p.events(id);
    let errs: Vec<(String, String)> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Response {
                id,
                result: Err(err),
            } => Some((id.clone(), err.message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        errs,
        vec![
            (
                "x1".to_string(),
                "invalid request frame: at root: unexpected property 'bogus'".to_string()
            ),
            (
                "invalid".to_string(),
                "invalid request frame: at root: must have required property 'id'".to_string()
            ),
        ]
    );
    assert!(!p.peer(id).closed);
}

#[test]
fn control_ui_without_device_needs_a_secure_context() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let mut c = cli(Some("t"));
    c.client.id = "openclaw-control-ui".into();
    c.client.mode = "ui".into();
    let id = p.open_client(c.clone(), loopback());
    let e = p.connect_error(id).unwrap();
    assert_eq!(
        e.message,
        "control ui requires device identity (use HTTPS or localhost secure context)"
    );
    assert_eq!(
        e.details.unwrap()["code"],
        "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"
    );
    let mut cfg = Config::local_default().with_token("t");
    cfg.allow_insecure_control_ui = true;
    let mut p = Sim::started(Instant::now(), cfg);
    let id = p.open_client(c.clone(), loopback());
    assert!(p.hello(id).is_some());
    // Missing token from a Control UI with a device: the hint points at Control UI settings.
    c.token = None;
    c.device = Some(clawgate_core::device::DeviceKey::from_seed([3; 32]));
    let id = p.open_client(c, loopback());
    let e = p.connect_error(id).unwrap();
    assert_eq!(
        e.message,
        "unauthorized: gateway token missing (open the dashboard URL and paste the token in Control UI settings)"
    );
}

#[test]
fn node_without_device_and_wrong_token_is_told_it_needs_a_device() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let mut c = cli(Some("wrong"));
    c.client.id = "node-host".into();
    c.client.mode = "node".into();
    c.role = clawgate_core::scopes::Role::Node;
    let id = p.open_client(c, loopback());
    assert_eq!(
        p.connect_error(id).unwrap().message,
        "device identity required"
    );
}

#[test]
fn hello_snapshot_reports_config_path_and_state_dir() {
    let mut cfg = Config::local_default();
    cfg.config_path = "/home/me/.openclaw/openclaw.json".into();
    cfg.state_dir = "/home/me/.openclaw".into();
    let mut p = Sim::started(Instant::now(), cfg);
    let id = p.open_client(cli(None), loopback());
    let snap = p.hello(id).unwrap()["snapshot"].clone();
    assert_eq!(snap["configPath"], "/home/me/.openclaw/openclaw.json");
    assert_eq!(snap["stateDir"], "/home/me/.openclaw");
    assert_eq!(snap["authMode"], "none");
    // Omitting scopes never grants anything.
    let mut c = cli(None);
    c.scopes = vec![];
    let id = p.open_client(c, loopback());
    assert_eq!(p.hello(id).unwrap()["auth"]["scopes"], json!([]));
    p.events(id);
    assert!(p.call(id, "health", None).is_ok());
    assert!(p.call(id, "system-presence", None).is_err());
}

#[test]
fn device_token_lockout_does_not_lock_the_shared_secret() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    for _ in 0..10 {
        let mut c = cli(None);
        c.device = Some(clawgate_core::device::DeviceKey::from_seed([9; 32]));
        c.device_token = Some("bad".into());
        let id = p.open_client(c, remote());
        assert!(p.connect_error(id).is_some());
    }
    let mut c = cli(None);
    c.device = Some(clawgate_core::device::DeviceKey::from_seed([9; 32]));
    c.device_token = Some("bad".into());
    let id = p.open_client(c, remote());
    assert_eq!(
        p.connect_error(id).unwrap().details.unwrap()["code"],
        "AUTH_RATE_LIMITED"
    );
    let id = p.open_client(cli(Some("t")), remote());
    assert!(
        p.hello(id).is_some(),
        "the shared-secret bucket is separate"
    );
}

#[test]
fn local_failures_are_answered_after_a_doubling_penalty() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    for expected_ms in [250u64, 500, 1000, 2000, 4000, 5000, 5000] {
        let id = p.open_client(cli(Some("wrong")), loopback());
        p.advance(Duration::from_millis(expected_ms - 1));
        assert!(
            p.connect_error(id).is_none(),
            "answered before {expected_ms} ms"
        );
        // Frames sent meanwhile are ignored, not taken as a second connect.
        p.peer(id).client.as_mut().unwrap().request("health", None);
        p.drive();
        p.advance(Duration::from_millis(1));
        assert!(
            p.connect_error(id).is_some(),
            "not answered at {expected_ms} ms"
        );
        assert_eq!(p.close_of(id).unwrap().0, Some(1008));
    }
    // A success in between does not reset it, and device-signature failures are not delayed.
    let ok = p.open_client(cli(Some("t")), loopback());
    assert!(p.hello(ok).is_some());
    let id = p.open_client(cli(Some("wrong")), loopback());
    p.advance(Duration::from_millis(4999));
    assert!(p.connect_error(id).is_none());
    p.advance(Duration::from_millis(1));
    assert!(p.connect_error(id).is_some());
    let id = p.open_client(cli(None), loopback());
    assert!(
        p.connect_error(id).is_some(),
        "a missing secret is answered at once"
    );
}

#[test]
fn parallel_local_failures_wait_their_turn() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let start = p.now;
    let ids: Vec<_> = (0..5)
        .map(|_| p.open_client(cli(Some("wrong")), loopback()))
        .collect();
    let mut answered = vec![None; ids.len()];
    while answered.iter().any(Option::is_none) && p.now - start < Duration::from_secs(14) {
        p.advance(Duration::from_millis(10));
        for (i, id) in ids.iter().enumerate() {
            if answered[i].is_none() && p.connect_error(*id).is_some() {
                answered[i] = Some(p.now - start);
            }
        }
    }
    let mut times: Vec<Duration> = answered.into_iter().map(Option::unwrap).collect();
    times.sort();
    // Sequential attempts are answered 250, 500, 1000, 2000, 4000 ms apart: so are these.
    let mut due = Duration::ZERO;
    for (t, penalty) in times.iter().zip([250, 500, 1000, 2000, 4000]) {
        due += Duration::from_millis(penalty);
        assert!(*t >= due, "answered at {t:?}, before {due:?}: {times:?}");
    }
    // A correct token from the address waits out the held refusals too, then gets in.
    let ok = p.open_client(cli(Some("t")), loopback());
    assert!(p.hello(ok).is_some());
}

#[test]
fn the_rate_limiter_locks_an_address_out_per_credential_kind() {
    use clawgate_core::auth::{CredentialKind, RateLimiter};
    use std::net::IpAddr;
    let mut rl = RateLimiter::default();
    let p = Sim::started(Instant::now(), Config::local_default());
    let t0 = p.now;
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let w = Duration::from_secs(60);
    let l = Duration::from_secs(300);
    for _ in 0..9 {
        assert!(
            rl.fail(t0, ip, CredentialKind::SharedSecret, 10, w, l)
                .is_none()
        );
    }
    assert_eq!(
        rl.fail(t0, ip, CredentialKind::SharedSecret, 10, w, l),
        Some(l)
    );
    assert!(rl.locked(t0, ip, CredentialKind::SharedSecret).is_some());
    assert!(rl.locked(t0, ip, CredentialKind::DeviceToken).is_none());
    assert!(
        rl.locked(t0 + l, ip, CredentialKind::SharedSecret)
            .is_none()
    );
    // A window that passed starts the count again.
    for _ in 0..9 {
        assert!(
            rl.fail(t0 + l + w + w, ip, CredentialKind::DeviceToken, 10, w, l)
                .is_none()
        );
    }
    assert!(
        rl.fail(
            t0 + l + w + w + w + w,
            ip,
            CredentialKind::DeviceToken,
            10,
            w,
            l
        )
        .is_none()
    );
}

#[test]
fn params_are_typed_and_refuse_unknown_properties() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("t"));
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.admin".into()];
    let id = p.open_client(c, loopback());
    p.events(id);
    assert!(p.call(id, "config.get", None).is_ok());
    assert!(
        p.call(id, "config.get", Some(serde_json::json!({})))
            .is_ok()
    );
    let e = p
        .call(id, "config.get", Some(serde_json::json!({"bogusField": 1})))
        .unwrap_err();
    assert_eq!(e.code, clawgate_core::frame::ErrorCode::InvalidRequest);
    assert_eq!(
        e.message,
        "invalid params: at root: unexpected property 'bogusField'"
    );
    let e = p
        .call(id, "node.describe", Some(serde_json::json!({"nodeId": 7})))
        .unwrap_err();
    assert_eq!(e.message, "invalid params: at /nodeId: must be string");
    let e = p
        .call(
            id,
            "device.pair.approve",
            Some(serde_json::json!({"requestId": ""})),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "invalid params: at /requestId: must NOT have fewer than 1 characters"
    );
    let e = p
        .call(id, "node.list", Some(serde_json::json!([])))
        .unwrap_err();
    assert_eq!(e.message, "invalid params: at root: must be object");
    assert!(
        p.call(id, "health", Some(serde_json::json!({"any": "thing"})))
            .is_ok(),
        "methods without a params schema take anything"
    );
}
