//! Close codes, limits, timers, shutdown and reload.

use std::time::{Duration, Instant};

use clawgate_core::Config;
use clawgate_core::client::Event;
use clawgate_core::fuzzing::sim::*;
use serde_json::json;

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn first_frame(p: &mut Sim, text: &str) -> clawgate_core::ConnId {
    let mut c = cli(None);
    c.manual_connect = true;
    let id = p.open_client(c, loopback());
    p.peer(id)
        .client
        .as_mut()
        .unwrap()
        .send_text(text.to_string());
    p.drive();
    id
}

#[test]
fn non_json_first_frame_closes_1000() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = first_frame(&mut p, "hello?");
    assert_eq!(p.close_of(id), Some((Some(1000), String::new())));
}

#[test]
fn first_request_must_be_connect() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = first_frame(&mut p, r#"{"type":"req","id":"1","method":"health"}"#);
    let msg = "invalid handshake: first request must be connect";
    assert_eq!(p.close_of(id), Some((Some(1008), msg.into())));
    assert!(
        p.events(id)
            .iter()
            .any(|e| matches!(e, Event::Response { result: Err(err), .. } if err.message == msg))
    );
}

#[test]
fn invalid_connect_params_close_1008_with_the_message() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = first_frame(
        &mut p,
        r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"},"bogusField":1}}"#,
    );
    let msg = "invalid connect params: at root: unexpected property 'bogusField'";
    assert_eq!(p.close_of(id), Some((Some(1008), msg.into())));
    let id = first_frame(
        &mut p,
        r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"},"role":"root"}}"#,
    );
    assert_eq!(p.close_of(id), Some((Some(1008), "invalid role".into())));
}

#[test]
fn protocol_mismatch_closes_1002_with_details() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let mut c = cli(None);
    c.min_protocol = 5;
    c.max_protocol = 5;
    let id = p.open_client(c, loopback());
    let e = p.connect_error(id).unwrap();
    assert_eq!(e.message, "protocol mismatch");
    assert_eq!(
        e.details.unwrap(),
        json!({"code":"PROTOCOL_MISMATCH","clientMinProtocol":5,"clientMaxProtocol":5,"expectedProtocol":4,"minimumProbeProtocol":3})
    );
    assert_eq!(
        p.close_of(id),
        Some((Some(1002), "protocol mismatch".into()))
    );
}

#[test]
fn preauth_frame_over_64k_closes_1009_and_64k_exactly_is_parsed() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    // Exactly 65,536 bytes of text: parsed (and refused as not JSON, 1000).
    let id = first_frame(&mut p, &"x".repeat(65_536));
    assert_eq!(p.close_of(id), Some((Some(1000), String::new())));
    let id = first_frame(&mut p, &"x".repeat(65_537));
    assert_eq!(p.close_of(id), Some((Some(1009), String::new())));
}

#[test]
fn sixteen_prehello_frames_close_1008() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    // Binary frames do not decide the handshake but count against the budget.
    let mut raw = Vec::new();
    for _ in 0..16 {
        raw.extend_from_slice(&[0x82, 0x81, 0, 0, 0, 0, 0]);
    }
    let id2 = p.open_raw_sending(UPGRADE, loopback());
    p.gw.handle_input(p.now, id2, &raw);
    p.drive();
    let bytes = p.sent(id2);
    let needle = b"too many pending handshake frames";
    assert!(bytes.windows(needle.len()).any(|w| w == needle));
    assert!(p.peer(id2).closed);
}

#[test]
fn thirty_third_preauth_socket_gets_503() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    for _ in 0..32 {
        let id = p.open_raw_sending(UPGRADE, loopback());
        assert!(String::from_utf8_lossy(p.sent(id)).starts_with("HTTP/1.1 101"));
    }
    let id = p.open_raw_sending(UPGRADE, loopback());
    let raw = String::from_utf8_lossy(p.sent(id)).into_owned();
    assert!(
        raw.starts_with("HTTP/1.1 503") && raw.ends_with("Too many unauthenticated sockets"),
        "{raw}"
    );
    // Another address has its own budget.
    let id = p.open_raw_sending(UPGRADE, remote());
    assert!(String::from_utf8_lossy(p.sent(id)).starts_with("HTTP/1.1 101"));
}

#[test]
fn max_connections_is_enforced() {
    let mut cfg = Config::local_default();
    cfg.limits.max_connections = 2;
    let mut p = Sim::started(Instant::now(), cfg);
    p.open_raw_sending(UPGRADE, loopback());
    p.open_raw_sending(UPGRADE, loopback());
    let id = p.open_raw_sending(UPGRADE, loopback());
    assert!(String::from_utf8_lossy(p.sent(id)).starts_with("HTTP/1.1 503"));
}

#[test]
fn oversized_head_gets_431() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    let id = p.open_raw_sending(head.as_bytes(), loopback());
    assert!(String::from_utf8_lossy(p.sent(id)).starts_with("HTTP/1.1 431"));
    assert!(p.peer(id).closed);
}

#[test]
fn slow_consumer_is_closed_1008() {
    let mut cfg = Config::local_default();
    cfg.limits.max_buffered_bytes = 64 * 1024;
    let mut p = Sim::started(Instant::now(), cfg);
    let id = p.open_client(cli(None), loopback());
    assert!(p.hello(id).is_some());
    // Stop acknowledging writes: the peer never reads. Send requests until the gateway gives up.
    let mut unsent: Vec<u8> = Vec::new();
    for _ in 0..1000 {
        p.peer(id)
            .client
            .as_mut()
            .unwrap()
            .request("system-presence", None);
        let bytes = p.peer(id).client.as_mut().unwrap().poll_transmit().unwrap();
        p.gw.handle_input(p.now, id, &bytes);
        loop {
            match p.gw.poll_output() {
                clawgate_core::Output::Transmit { data, .. } => unsent.extend_from_slice(&data),
                clawgate_core::Output::Close { .. } => {
                    // It buffered a good part of the budget first, and never let it pass the cap.
                    assert!(
                        unsent.len() > 32 * 1024,
                        "closed too early: {}",
                        unsent.len()
                    );
                    assert!(
                        unsent.len() <= 64 * 1024 + 32,
                        "buffered past the cap: {}",
                        unsent.len()
                    );
                    let reason = b"slow consumer";
                    let tail = &unsent[unsent.len() - 2 - reason.len()..];
                    assert_eq!(&tail[..2], &1008u16.to_be_bytes(), "close code 1008");
                    assert_eq!(&tail[2..], reason);
                    return;
                }
                clawgate_core::Output::Timeout(_) => break,
                _ => {}
            }
        }
    }
    panic!("never closed as a slow consumer");
}

#[test]
fn tick_every_interval_with_per_connection_seq() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), loopback());
    p.events(id);
    p.advance(Duration::from_secs(30));
    p.advance(Duration::from_secs(30));
    let ticks: Vec<Option<u64>> = p
        .events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event {
                event,
                seq,
                payload,
                ..
            } if event == "tick" => {
                assert!(payload["ts"].as_u64().unwrap() > T0_MS);
                Some(seq)
            }
            _ => None,
        })
        .collect();
    assert_eq!(ticks, vec![Some(1), Some(2)]);
}

#[test]
fn shutdown_sends_event_then_1012_and_preauth_gets_only_close() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), loopback());
    p.events(id);
    let pre = {
        let mut c = cli(None);
        c.manual_connect = true;
        p.open_client(c, loopback())
    };
    p.events(pre);
    p.gw.shutdown(p.now);
    p.drive();
    let evs = p.events(id);
    assert!(
        matches!(&evs[0], Event::Event { event, seq: Some(1), payload, .. } if event == "shutdown" && payload["reason"] == "gateway stopping")
    );
    assert!(evs.iter().any(
        |e| matches!(e, Event::Closed { code: Some(1012), reason } if reason == "service restart")
    ));
    let evs = p.events(pre);
    assert!(!evs.iter().any(|e| matches!(e, Event::Event { .. })));
    assert!(evs.iter().any(|e| matches!(
        e,
        Event::Closed {
            code: Some(1012),
            ..
        }
    )));
    // Readiness is 503 while draining.
    let id = p.open_raw_sending(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", loopback());
    assert!(String::from_utf8_lossy(p.sent(id)).starts_with("HTTP/1.1 503"));
}

#[test]
fn reload_with_a_new_token_closes_old_secret_holders_4001() {
    let mut p = Sim::started(Instant::now(), Config::local_default().with_token("old"));
    let old = p.open_client(cli(Some("old")), loopback());
    assert!(p.hello(old).is_some());
    p.gw.reload(p.now, Config::local_default().with_token("new"));
    p.drive();
    assert_eq!(
        p.close_of(old),
        Some((Some(4001), "gateway auth changed".into()))
    );
    let bad = p.open_client(cli(Some("old")), loopback());
    p.settle();
    assert!(p.connect_error(bad).is_some());
    let good = p.open_client(cli(Some("new")), loopback());
    assert!(p.hello(good).is_some());
    // Reloading the same secret keeps connections.
    p.gw.reload(p.now, Config::local_default().with_token("new"));
    p.drive();
    assert!(!p.peer(good).closed);
}

#[test]
fn http_routes_on_the_same_port() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    for (path, status) in [
        ("/health", "200"),
        ("/healthz", "200"),
        ("/ready", "200"),
        ("/readyz", "200"),
        ("/startupz", "200"),
        ("/api/nope", "404"),
        // Other paths are the Control UI's: without its files, the page naming the setting.
        ("/nope", "503"),
    ] {
        let id = p.open_raw_sending(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            loopback(),
        );
        let raw = String::from_utf8_lossy(p.sent(id)).into_owned();
        assert!(
            raw.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {raw}"
        );
        assert!(
            raw.contains("Cache-Control: no-store") && raw.contains("Referrer-Policy: no-referrer")
        );
    }
}

#[test]
fn wall_time_follows_the_latest_wall_clock_reading() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = p.open_client(cli(None), loopback());
    assert!(p.hello(id).is_some());
    let ts = p.call(id, "health", None).unwrap()["ts"].as_u64();
    assert_eq!(ts, Some(p.unix_ms()), "wall time from the reading at start");
    // A suspend or an NTP step: the wall clock moved an hour, the monotonic clock did not.
    let stepped = p.unix_ms() + 3_600_000;
    p.gw.handle_wall_clock(p.now, stepped);
    p.advance(Duration::from_millis(250));
    let ts = p.call(id, "health", None).unwrap()["ts"].as_u64();
    assert_eq!(
        ts,
        Some(stepped + 250),
        "the latest reading plus the time since it"
    );
}
