//! The handshake over real sockets: the challenge, `hello-ok`, every failure row of upstream
//! §3.2 with its close code, malformed first frames, the pre-auth size limit and timeout.

use std::time::{Duration, Instant};

use clawgate_core::client::Event;
use clawgate_core::device::DeviceKey;
use clawgate_core::frame::ErrorCode;
use clawgate_tests::both;
use clawgate_tests::harness::raw::{self, Next, challenged, connect_frame};
use clawgate_tests::harness::{Options, Shell};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token-for-tests";
const MISMATCH: &str = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";

fn challenge(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let mut ws = raw::connect(gw.port()).await;
        let frame = raw::next_json(&mut ws).await;
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["event"], "connect.challenge");
        assert!(
            frame.get("seq").is_none(),
            "a direct send carries no seq: {frame}"
        );
        let nonce = frame["payload"]["nonce"].as_str().expect("nonce");
        assert_eq!(nonce.len(), 36, "a UUID: {nonce}");
        assert!(
            frame["payload"]["ts"]
                .as_u64()
                .is_some_and(|ts| ts > 1_700_000_000_000),
            "{frame}"
        );
    });
}

fn hello_ok_fields(shell: Shell) {
    let gw = Options::new().token(TOKEN).start(shell);
    let mut cfg = gw.cli();
    cfg.token = Some(TOKEN.into());
    cfg.scopes = vec!["operator.read".into(), "operator.write".into()];
    let mut ws = gw.ws(cfg);
    let hello = ws.hello().expect("hello-ok");
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    assert!(
        hello["server"]["version"].is_string()
            && hello["server"]["connId"]
                .as_str()
                .is_some_and(|c| c.len() == 36),
        "{hello}"
    );
    let methods = hello["features"]["methods"].as_array().expect("methods");
    for m in [
        "health",
        "status",
        "system-presence",
        "config.get",
        "logs.tail",
        "node.list",
        "node.invoke",
    ] {
        assert!(
            methods.iter().any(|x| x == m),
            "{m} missing from features.methods"
        );
    }
    assert!(
        hello["features"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "tick"))
    );
    let snap = &hello["snapshot"];
    assert!(
        snap["presence"].is_array() && snap["health"].is_object() && snap["uptimeMs"].is_u64(),
        "{snap}"
    );
    assert!(
        snap["stateVersion"]["presence"].is_u64() && snap["stateVersion"]["health"].is_u64(),
        "{snap}"
    );
    assert_eq!(hello["auth"]["role"], "operator");
    assert_eq!(hello["auth"]["method"], "token");
    // A local cli/cli client keeps what it asked for.
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert_eq!(
        hello["policy"],
        json!({"maxPayload": 26_214_400, "maxBufferedBytes": 52_428_800, "tickIntervalMs": 30_000})
    );
    assert!(ws.call("health", None).is_ok());
    // Params are checked against upstream's schema: unknown properties are refused.
    let err = ws
        .call("config.get", Some(json!({"bogusField": 1})))
        .expect_err("unknown property refused");
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(
        err.message,
        "invalid params: at root: unexpected property 'bogusField'"
    );
}

fn no_token_no_device(shell: Shell) {
    let gw = Options::new().token(TOKEN).start(shell);
    let mut ws = gw.ws(gw.cli());
    let err = ws.hello().expect_err("refused");
    assert_eq!(err.code, ErrorCode::NotPaired);
    assert_eq!(err.message, "device identity required");
    assert_eq!(
        err.details.as_ref().map(|d| d["code"].clone()),
        Some(json!("DEVICE_IDENTITY_REQUIRED"))
    );
    assert_eq!(ws.closed(), (Some(1008), "device identity required".into()));
}

fn wrong_token(shell: Shell) {
    let gw = Options::new().token(TOKEN).start(shell);
    let mut cfg = gw.cli();
    cfg.token = Some("not-the-token".into());
    let mut ws = gw.ws(cfg);
    let err = ws.hello().expect_err("refused");
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.message, MISMATCH);
    assert_eq!(
        err.details,
        Some(
            json!({"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch", "canRetryWithDeviceToken": false, "recommendedNextStep": "update_auth_credentials"})
        )
    );
    assert_eq!(ws.closed(), (Some(1008), MISMATCH.into()));
}

fn wrong_token_probe_mode(shell: Shell) {
    let gw = Options::new().token(TOKEN).start(shell);
    let mut cfg = gw.cli();
    cfg.client.mode = "probe".into();
    cfg.token = Some("not-the-token".into());
    let mut ws = gw.ws(cfg);
    let msg = "unauthorized: gateway token mismatch (provide gateway auth token)";
    assert_eq!(ws.hello().expect_err("refused").message, msg);
    assert_eq!(ws.closed(), (Some(1008), msg.into()));
}

fn device_without_token(shell: Shell) {
    let gw = Options::new().token(TOKEN).start(shell);
    let mut cfg = gw.cli();
    cfg.device = Some(DeviceKey::from_seed([7; 32]));
    let mut ws = gw.ws(cfg);
    let err = ws.hello().expect_err("refused");
    let msg = "unauthorized: gateway token missing (use this gateway's gateway.auth.token or pair the device)";
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.message, msg);
    let details = err.details.expect("details");
    assert_eq!(
        (&details["code"], &details["authReason"]),
        (&json!("AUTH_TOKEN_MISSING"), &json!("token_missing"))
    );
    assert_eq!(details["recommendedNextStep"], "update_auth_configuration");
    assert_eq!(ws.closed(), (Some(1008), msg.into()));
}

fn protocol_mismatch(shell: Shell) {
    let gw = Options::new().start(shell);
    let mut cfg = gw.cli();
    (cfg.min_protocol, cfg.max_protocol) = (3, 3);
    let mut ws = gw.ws(cfg);
    let err = ws.hello().expect_err("refused");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::InvalidRequest, "protocol mismatch")
    );
    assert_eq!(
        err.details,
        Some(
            json!({"code": "PROTOCOL_MISMATCH", "clientMinProtocol": 3, "clientMaxProtocol": 3, "expectedProtocol": 4, "minimumProbeProtocol": 3})
        )
    );
    assert_eq!(ws.closed(), (Some(1002), "protocol mismatch".into()));
}

fn handshake_timeout(shell: Shell) {
    let gw = Options::new()
        .env("OPENCLAW_HANDSHAKE_TIMEOUT_MS", "300")
        .start(shell);
    smol::block_on(async {
        let opened = Instant::now();
        let (mut ws, _) = challenged(gw.port()).await;
        assert_eq!(raw::next(&mut ws).await, Next::Close(1000, String::new()));
        assert!(
            opened.elapsed() >= Duration::from_millis(250),
            "closed before the timeout: {:?}",
            opened.elapsed()
        );
    });
}

fn invalid_connect_params(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let (mut ws, ch) = challenged(gw.port()).await;
        let mut frame = connect_frame(gw.port(), &ch);
        frame["params"]["bogusField"] = json!(1);
        raw::send(&mut ws, frame.to_string()).await;
        let res = raw::next_json(&mut ws).await;
        let msg = "invalid connect params: at root: unexpected property 'bogusField'";
        assert_eq!(
            (&res["id"], &res["ok"], &res["error"]["code"]),
            (&json!("c1"), &json!(false), &json!("INVALID_REQUEST"))
        );
        assert_eq!(res["error"]["message"], msg);
        assert_eq!(raw::next(&mut ws).await, Next::Close(1008, msg.into()));
    });
}

fn first_frame_not_connect(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let (mut ws, _) = challenged(gw.port()).await;
        raw::send(
            &mut ws,
            json!({"type": "req", "id": "h1", "method": "health"}).to_string(),
        )
        .await;
        let res = raw::next_json(&mut ws).await;
        let msg = "invalid handshake: first request must be connect";
        assert_eq!(
            (&res["id"], &res["error"]["code"], &res["error"]["message"]),
            (&json!("h1"), &json!("INVALID_REQUEST"), &json!(msg))
        );
        assert_eq!(raw::next(&mut ws).await, Next::Close(1008, msg.into()));
    });
}

fn non_json_first_frame(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let (mut ws, _) = challenged(gw.port()).await;
        raw::send(&mut ws, "hello there".into()).await;
        assert_eq!(raw::next(&mut ws).await, Next::Close(1000, String::new()));
    });
}

/// A `connect` frame padded with JSON whitespace to exactly `len` bytes.
fn padded_connect(port: u16, challenge: &Value, len: usize) -> String {
    let mut text = connect_frame(port, challenge).to_string();
    assert!(text.len() < len);
    text.insert_str(text.len() - 1, &" ".repeat(len - text.len()));
    assert_eq!(text.len(), len);
    text
}

fn preauth_frame_over_64k_closes_1009(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let (mut ws, ch) = challenged(gw.port()).await;
        raw::send(&mut ws, padded_connect(gw.port(), &ch, 65_537)).await;
        assert_eq!(raw::next(&mut ws).await, Next::Close(1009, String::new()));
    });
}

fn preauth_frame_of_64k_is_parsed(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let (mut ws, ch) = challenged(gw.port()).await;
        raw::send(&mut ws, padded_connect(gw.port(), &ch, 65_536)).await;
        let res = raw::next_json(&mut ws).await;
        assert_eq!(
            (&res["ok"], &res["payload"]["type"]),
            (&json!(true), &json!("hello-ok")),
            "{res}"
        );
    });
}

fn scopes_empty_without_paired_device(shell: Shell) {
    let gw = Options::new().token(TOKEN).start(shell);
    let mut cfg = gw.cli();
    cfg.client.id = "test".into();
    cfg.client.mode = "test".into();
    cfg.token = Some(TOKEN.into());
    cfg.scopes = vec!["operator.admin".into()];
    let mut ws = gw.ws(cfg);
    let hello = ws.hello().expect("hello-ok");
    assert_eq!(hello["auth"]["scopes"], json!([]));
    assert!(ws.call("health", None).is_ok(), "health needs no scope");
    let err = ws
        .call("status", None)
        .expect_err("status needs operator.read");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::Forbidden, "missing scope: operator.read")
    );
    assert_eq!(
        err.details.as_ref().map(|d| d["code"].clone()),
        Some(json!("MISSING_SCOPE"))
    );
}

/// After `hello-ok` the gateway's own clock drives `tick` broadcasts, each with the next `seq`.
fn ticks_follow_the_configured_interval(shell: Shell) {
    let gw = Options::new()
        .config(r#"{gateway: {tickIntervalMs: 200}}"#)
        .start(shell);
    let mut ws = gw.ws(gw.cli());
    let hello = ws.hello().expect("hello-ok");
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let (seq, ts) = ws.expect("a tick", |e| match e {
            Event::Event {
                event,
                seq,
                payload,
                ..
            } if event == "tick" => Some((*seq, payload["ts"].as_u64())),
            _ => None,
        });
        assert!(ts.is_some(), "tick without ts");
        seqs.push(seq.expect("a tick is a broadcast with a seq"));
    }
    assert_eq!(seqs[1], seqs[0] + 1, "{seqs:?}");
}

both!(
    challenge,
    ticks_follow_the_configured_interval,
    hello_ok_fields,
    no_token_no_device,
    wrong_token,
    wrong_token_probe_mode,
    device_without_token,
    protocol_mismatch,
    handshake_timeout,
    invalid_connect_params,
    first_frame_not_connect,
    non_json_first_frame,
    preauth_frame_over_64k_closes_1009,
    preauth_frame_of_64k_is_parsed,
    scopes_empty_without_paired_device,
);
