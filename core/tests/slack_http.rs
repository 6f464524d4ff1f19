//! Requests with a body on the gateway's port, through the simulated gateway: the bounded
//! read (411, 413, chunked refused, 408 on a slow body), and Slack's Events API route on it
//! (signature checked first, `url_verification`, a message answered 200 only once its batch
//! is durable, a redelivery queued once).

use core::time::Duration;
use std::time::Instant;

use clawgate_core::channels::slack::verify::sign;
use clawgate_core::config::{ConfigInput, RunFlags};
use clawgate_core::fuzzing::sim::*;
use clawgate_core::persist::StoreChange;
use clawgate_core::{Config, ConnId};
use serde_json::json;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn config() -> Config {
    let text = format!(
        r#"{{ gateway: {{ auth: {{ token: "t" }} }},
             channels: {{ slack: {{ mode: "http", botToken: "xoxb-1", signingSecret: "{SECRET}" }} }} }}"#
    );
    Config::resolve(&ConfigInput {
        file_text: Some(text),
        flags: RunFlags::default(),
        ..Default::default()
    })
    .expect("config")
}

fn post(path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn signed(sim: &Sim, body: &[u8], age_secs: u64) -> Vec<u8> {
    let ts = (sim.unix_ms() / 1000 - age_secs).to_string();
    let sig = sign(SECRET.as_bytes(), &ts, body);
    post(
        "/slack/events",
        &[
            ("Content-Length", body.len().to_string()),
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
        ],
        body,
    )
}

fn response(sim: &Sim, id: ConnId) -> String {
    String::from_utf8_lossy(sim.sent(id)).into_owned()
}

fn status(sim: &Sim, id: ConnId) -> Option<u16> {
    response(sim, id).get(9..12).and_then(|s| s.parse().ok())
}

#[test]
fn body_is_bounded_before_it_is_read() {
    let mut sim = Sim::started_holding_http(Instant::now(), config());
    let no_len = sim.open_raw_sending(&post("/slack/events", &[], b""), remote());
    assert_eq!(status(&sim, no_len), Some(411));
    let chunked = sim.open_raw_sending(
        &post(
            "/slack/events",
            &[("Transfer-Encoding", "chunked".into())],
            b"1\r\na\r\n0\r\n\r\n",
        ),
        remote(),
    );
    assert_eq!(status(&sim, chunked), Some(411));
    let big = sim.open_raw_sending(
        &post(
            "/slack/events",
            &[("Content-Length", (1024 * 1024 + 1).to_string())],
            b"",
        ),
        remote(),
    );
    assert_eq!(status(&sim, big), Some(413));
    let get = sim.open_raw_sending(b"GET /slack/events HTTP/1.1\r\nHost: x\r\n\r\n", remote());
    assert_eq!(status(&sim, get), Some(405));
    // A body that stalls is cut by its own timer, not left to the handshake's.
    let slow = sim.open_raw_sending(
        &post(
            "/slack/events",
            &[("Content-Length", "10".into())],
            b"{\"a\"",
        ),
        remote(),
    );
    sim.advance(Duration::from_secs(29));
    assert_eq!(status(&sim, slow), None);
    assert!(!sim.peer(slow).closed);
    sim.advance(Duration::from_secs(2));
    assert_eq!(status(&sim, slow), Some(408));
    assert!(sim.peer(slow).closed);
    // Other paths keep their GET routes.
    let health = sim.open_raw_sending(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", remote());
    assert_eq!(status(&sim, health), Some(200));
}

#[test]
fn signature_is_checked_first() {
    let mut sim = Sim::started_holding_http(Instant::now(), config());
    let body = json!({"type": "url_verification", "challenge": "c-123"}).to_string();
    let ok = sim.open_raw_sending(&signed(&sim, body.as_bytes(), 0), remote());
    assert_eq!(status(&sim, ok), Some(200));
    assert!(response(&sim, ok).ends_with(r#"{"challenge":"c-123"}"#));
    // A body split across reads is read whole.
    let bytes = signed(&sim, body.as_bytes(), 0);
    let split = sim.open_raw_sending(&bytes[..bytes.len() - 5], remote());
    assert_eq!(status(&sim, split), None);
    sim.input(split, &bytes[bytes.len() - 5..]);
    assert_eq!(status(&sim, split), Some(200));
    let stale = sim.open_raw_sending(&signed(&sim, body.as_bytes(), 301), remote());
    assert_eq!(status(&sim, stale), Some(401));
    assert!(response(&sim, stale).ends_with("Content-Length: 0\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"));
    let mut tampered = signed(&sim, body.as_bytes(), 0);
    let last = tampered.len() - 3;
    tampered[last] = b'X';
    let bad = sim.open_raw_sending(&tampered, remote());
    assert_eq!(status(&sim, bad), Some(401));
    // Not even malformed JSON is looked at before the signature.
    let junk = post("/slack/events", &[("Content-Length", "3".into())], b"{{{");
    let unsigned = sim.open_raw_sending(&junk, remote());
    assert_eq!(status(&sim, unsigned), Some(401));
}

#[test]
fn message_is_answered_once_durable_and_queued_once() {
    let mut sim = Sim::started_holding_http(Instant::now(), config());
    let body = json!({"type": "event_callback", "event_id": "Ev1", "team_id": "T1",
        "event": {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1",
            "text": "hi", "ts": "1.000100"}})
    .to_string();
    sim.hold_store_writes(true);
    let first = sim.open_raw_sending(&signed(&sim, body.as_bytes(), 0), remote());
    assert_eq!(
        status(&sim, first),
        None,
        "answered before the batch is durable"
    );
    let again = sim.open_raw_sending(&signed(&sim, body.as_bytes(), 0), remote());
    assert_eq!(
        status(&sim, again),
        None,
        "a redelivery waits for the same batch"
    );
    sim.write_store(true);
    sim.hold_store_writes(false);
    assert_eq!(status(&sim, first), Some(200));
    assert_eq!(status(&sim, again), Some(200));
    let queued: usize = sim
        .batches
        .iter()
        .flatten()
        .filter(|c| {
            matches!(c, StoreChange::PutChannelRow { row, .. }
                if row.as_str().contains("1.000100") && row.as_str().contains("queued"))
        })
        .count();
    assert_eq!(queued, 1, "batches: {:?}", sim.batches);
}
