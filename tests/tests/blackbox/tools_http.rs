//! `POST /tools/invoke` over real sockets on both shells, as upstream's: the bearer auth
//! matrix (token and password; refused without, with a wrong one or another scheme, before
//! the body is read; the failed-auth lockout answered 429 with `Retry-After`), upstream's HTTP
//! deny list (`exec` and `nodes` 404 even when the config would run them, `gateway.tools.allow`
//! and `gateway.tools.deny`), an MCP tool and a node command invoked over HTTP, and bad bodies
//! (not JSON, no tool, no length, too large).

use std::time::Duration;

use clawgate_core::client::Event;
use clawgate_tests::both;
use clawgate_tests::harness::{Gateway, HttpResponse, Options, Shell, http_request};
use serde_json::{Value, json};

use super::pairing::{admin, paired_node};

const FAKE_MCP: &str = env!("CARGO_BIN_EXE_fake-mcp");

/// A gateway with the stdio fake MCP server `local` and `extra` members in its config.
fn start(shell: Shell, options: Options, extra: &str) -> Gateway {
    options
        .config(&format!(
            r#"{{ "mcp": {{ "servers": {{ "local": {{ "command": {} }} }} }} {extra} }}"#,
            json!(FAKE_MCP)
        ))
        .start(shell)
}

/// `POST /tools/invoke` with `headers` (whole lines) and `body`.
fn post(gw: &Gateway, headers: &str, body: &str) -> HttpResponse {
    let port = gw.port();
    let request = format!(
        "POST /tools/invoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_request(port, &request).expect("an HTTP answer")
}

/// `<method> /tools/invoke` with `headers` (whole lines) and no body.
fn head_only(port: u16, method: &str, headers: &str) -> HttpResponse {
    let request =
        format!("{method} /tools/invoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n");
    http_request(port, &request).expect("an HTTP answer")
}

fn bearer(secret: &str) -> String {
    format!("Authorization: Bearer {secret}\r\n")
}

fn json_of(r: &HttpResponse) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8"),
        "{r:?}"
    );
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// Invoke `local__echo` (the first call waits for the server, which it starts).
fn echo(gw: &Gateway, auth: &str, text: &str) -> HttpResponse {
    post(
        gw,
        auth,
        &json!({"tool": "local__echo", "args": {"text": text}}).to_string(),
    )
}

fn the_bearer_token_is_operator_access_and_nothing_else_is(shell: Shell) {
    let gw = start(shell, Options::new().token("t0ken"), "");
    let unauthorized = json!({"error": {"message": "Unauthorized", "type": "unauthorized"}});
    for headers in [
        String::new(),
        bearer("wrong"),
        "Authorization: Basic dDBrZW4=\r\n".to_string(),
        "Authorization: t0ken\r\n".to_string(),
    ] {
        let r = post(
            &gw,
            &headers,
            r#"{"tool":"local__echo","args":{"text":"x"}}"#,
        );
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert_eq!(json_of(&r), unauthorized);
    }
    // Refused before the body is read: no length needed, no size too large.
    let port = gw.port();
    let r = head_only(port, "POST", "Content-Length: 99999999\r\n");
    assert_eq!(r.status, 401, "{r:?}");
    let ok = echo(&gw, &bearer("t0ken"), "over HTTP");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        json_of(&ok),
        json!({"ok": true, "result": "echo: over HTTP"})
    );
    assert_eq!(head_only(port, "GET", "").status, 405);
    assert!(gw.wait_for_log("POST /tools/invoke: local__echo", Duration::from_secs(5)));
}

fn a_password_works_and_failures_lock_the_address_out(shell: Shell) {
    let gw = start(
        shell,
        Options::new(),
        r#", "gateway": { "auth": { "mode": "password", "password": "pa55",
              "rateLimit": { "maxAttempts": 2, "exemptLoopback": false } } }"#,
    );
    let ok = echo(&gw, &bearer("pa55"), "pw");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(json_of(&ok)["result"], "echo: pw");
    let body = r#"{"tool":"local__echo","args":{"text":"x"}}"#;
    assert_eq!(post(&gw, &bearer("nope"), body).status, 401);
    assert_eq!(post(&gw, &bearer("nope"), body).status, 401);
    // Locked out now, even with the right password, as on the WebSocket.
    let locked = post(&gw, &bearer("pa55"), body);
    assert_eq!(locked.status, 429, "{locked:?}");
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(json_of(&locked)["error"]["type"], "rate_limited");
}

fn exec_and_nodes_are_denied_over_http_unless_allowed(shell: Shell) {
    let gw = start(
        shell,
        Options::new().token("t0ken"),
        r#", "tools": { "exec": { "mode": "full" } }"#,
    );
    let auth = bearer("t0ken");
    for tool in ["exec", "nodes", "no_such_tool"] {
        let body = json!({"tool": tool, "args": {"command": "touch /tmp/clawgate-http-exec", "action": "status"}});
        let r = post(&gw, &auth, &body.to_string());
        assert_eq!(r.status, 404, "{tool}: {r:?}");
        assert_eq!(
            json_of(&r),
            json!({"ok": false, "error": {"type": "not_found", "message": format!("Tool not available: {tool}")}})
        );
    }
    assert!(!std::path::Path::new("/tmp/clawgate-http-exec").exists());
}

fn a_node_command_runs_over_http_when_allowed(shell: Shell) {
    let gw = start(
        shell,
        Options::new().token("t0ken"),
        r#", "gateway": { "tools": { "allow": ["nodes"], "deny": ["local__echo"] },
                          "nodes": { "pairing": { "autoApproveLocal": false } } }"#,
    );
    let mut admin = admin(&gw);
    let (mut node, node_id) = paired_node(&gw, &mut admin);
    let denied = post(
        &gw,
        &bearer("t0ken"),
        r#"{"tool":"local__echo","args":{"text":"x"}}"#,
    );
    assert_eq!(denied.status, 404, "gateway.tools.deny: {denied:?}");
    // `action` is merged into the arguments (the `nodes` schema has one).
    let body =
        json!({"tool": "nodes", "action": "which", "args": {"node": node_id, "bins": ["ls"]}});
    let port = gw.port();
    let caller = std::thread::spawn(move || {
        let request = format!(
            "POST /tools/invoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer t0ken\r\nContent-Length: {}\r\n\r\n{body}",
            body.to_string().len()
        );
        http_request(port, &request).expect("an HTTP answer")
    });
    let request: Value = node.expect("node.invoke.request", |e| match e {
        Event::Event { event, payload, .. } if event == "node.invoke.request" => {
            Some(payload.clone())
        }
        _ => None,
    });
    assert_eq!(request["command"], "system.which");
    assert_eq!(request["paramsJSON"], r#"{"bins":["ls"]}"#);
    let result = json!({"id": request["id"], "nodeId": node_id, "ok": true, "payloadJSON": r#"{"bins":{"ls":"/bin/ls"}}"#});
    node.call("node.invoke.result", Some(result)).expect("ack");
    let answer = caller.join().expect("the caller");
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = json_of(&answer);
    assert_eq!(answer["ok"], true);
    assert!(answer["result"].to_string().contains("/bin/ls"), "{answer}");
}

fn bad_bodies_are_refused_as_upstream_does(shell: Shell) {
    let gw = start(shell, Options::new().token("t0ken"), "");
    let auth = bearer("t0ken");
    let r = post(&gw, &auth, "{not json");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(json_of(&r)["error"]["type"], "invalid_request_error");
    for body in [
        "",
        "null",
        "[]",
        r#"{"args":{}}"#,
        r#"{"name":" ","tool":"local__echo"}"#,
    ] {
        let r = post(&gw, &auth, body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_eq!(
            json_of(&r),
            json!({"ok": false, "error": {"type": "invalid_request", "message": "tools.invoke requires name"}})
        );
    }
    let r = post(&gw, &auth, r#"{"tool":"local__echo","agentId":"other"}"#);
    assert_eq!(r.status, 400, "{r:?}");
    let port = gw.port();
    let too_large = head_only(port, "POST", &format!("{auth}Content-Length: 2097153\r\n"));
    assert_eq!(too_large.status, 413, "{too_large:?}");
    assert_eq!(
        json_of(&too_large)["error"]["type"],
        "invalid_request_error"
    );
    let no_length = head_only(port, "POST", &auth);
    assert_eq!(no_length.status, 411, "{no_length:?}");
    // A body just under the limit is read and answered.
    let padding = "x".repeat(2 * 1024 * 1024 - 100);
    let big = json!({"tool": "no_such_tool", "pad": padding}).to_string();
    assert_eq!(post(&gw, &auth, &big).status, 404);
}

both!(
    the_bearer_token_is_operator_access_and_nothing_else_is,
    a_password_works_and_failures_lock_the_address_out,
    exec_and_nodes_are_denied_over_http_unless_allowed,
    a_node_command_runs_over_http_when_allowed,
    bad_bodies_are_refused_as_upstream_does
);
