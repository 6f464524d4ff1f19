//! Slack inside the gateway, over real sockets. HTTP mode: Events API POSTs on the gateway's
//! own port at `webhookPath`, each verified with the signing secret before anything else is
//! read: a signed `url_verification` is answered with its challenge, a signed event with an
//! empty 200, a bad signature or a timestamp older than five minutes with an empty 401, and a
//! body over the limit with a 413 before it is read.

use std::time::{SystemTime, UNIX_EPOCH};

use clawgate_core::channels::slack::verify::sign;
use clawgate_tests::both;
use clawgate_tests::harness::{HttpResponse, Options, Shell, http_request};
use serde_json::json;

const SECRET: &str = "test-signing-secret";

fn http_mode(extra: &str) -> Options {
    Options::new().token("t0ken").config(&format!(
        r#"{{ channels: {{ slack: {{ mode: "http", botToken: "xoxb-test", signingSecret: "{SECRET}" {extra} }} }} }}"#
    ))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// POST `body` to `path`, signed as Slack signs (with `secret`), timestamped `age` seconds ago.
fn post_signed(port: u16, path: &str, body: &str, secret: &str, age: u64) -> HttpResponse {
    let ts = (now_secs() - age).to_string();
    let sig = sign(secret.as_bytes(), &ts, body.as_bytes());
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_request(port, &req).expect("an HTTP answer")
}

fn dm_event(ts: &str) -> String {
    json!({"type": "event_callback", "team_id": "T1", "event_id": format!("Ev{ts}"),
        "event": {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1",
            "text": "hello", "ts": ts}})
    .to_string()
}

fn http_mode_answers_signed_requests_and_refuses_the_rest(shell: Shell) {
    let gw = http_mode("").start(shell);
    let port = gw.port();
    let challenge =
        json!({"type": "url_verification", "challenge": "ch-42", "token": "x"}).to_string();
    let r = post_signed(port, "/slack/events", &challenge, SECRET, 0);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
        json!({"challenge": "ch-42"})
    );
    let r = post_signed(port, "/slack/events", &dm_event("1.0001"), SECRET, 0);
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    let r = post_signed(port, "/slack/events", &challenge, "not-the-secret", 0);
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, ""),
        "bad signature: {r:?}"
    );
    let r = post_signed(port, "/slack/events", &challenge, SECRET, 6 * 60);
    assert_eq!((r.status, r.body.as_str()), (401, ""), "stale: {r:?}");
    // Unsigned junk is refused on its signature, never parsed.
    let r = http_request(
        port,
        &format!("POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 3\r\n\r\n{{{{{{"),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    // The body is bounded before it is read.
    let r = http_request(
        port,
        &format!(
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024 + 1
        ),
    )
    .unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    let r = http_request(
        port,
        &format!("POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(r.status, 411, "{r:?}");
    let r = http_request(
        port,
        &format!(
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    )
    .unwrap();
    assert_eq!(r.status, 411, "{r:?}");
    // The gateway serves on.
    let r = clawgate_tests::harness::http_get(port, "/health").unwrap();
    assert_eq!(r.status, 200);
}

fn a_custom_webhook_path_is_the_route(shell: Shell) {
    let gw = http_mode(r#", webhookPath: "hooks/slack""#).start(shell);
    let port = gw.port();
    let challenge = json!({"type": "url_verification", "challenge": "c"}).to_string();
    let r = post_signed(port, "/hooks/slack", &challenge, SECRET, 0);
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_signed(port, "/slack/events", &challenge, SECRET, 0);
    assert_ne!(r.status, 200, "the default path is not a route now: {r:?}");
}

fn http_mode_without_a_signing_secret_is_refused_by_name(shell: Shell) {
    let (code, stderr) = Options::new()
        .token("t0ken")
        .config(r#"{ channels: { slack: { mode: "http", botToken: "xoxb-test" } } }"#)
        .run_to_exit(shell, std::time::Duration::from_secs(20));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("channels.slack.signingSecret"), "{stderr}");
}

both!(
    http_mode_answers_signed_requests_and_refuses_the_rest,
    a_custom_webhook_path_is_the_route,
    http_mode_without_a_signing_secret_is_refused_by_name,
);
