//! Plain HTTP on the gateway port: the probes, their headers, unknown paths, and the
//! per-address budget of unauthenticated sockets.

use clawgate_tests::both;
use clawgate_tests::harness::raw::{self, Next};
use clawgate_tests::harness::{HttpResponse, Options, Shell, http_get, http_raw, http_request};
use serde_json::{Value, json};

fn json_body(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {r:?}"))
}

fn assert_probe_headers(r: &HttpResponse) {
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
}

fn probes(shell: Shell) {
    let gw = Options::new().start(shell);
    for path in ["/health", "/healthz"] {
        let r = http_get(gw.port(), path).expect(path);
        assert_eq!(r.status, 200, "{path}");
        assert_probe_headers(&r);
        assert_eq!(
            json_body(&r),
            json!({"ok": true, "status": "live"}),
            "{path}"
        );
    }
    for path in ["/ready", "/readyz"] {
        let r = http_get(gw.port(), path).expect(path);
        assert_eq!(r.status, 200, "{path}");
        assert_probe_headers(&r);
        let body = json_body(&r);
        assert_eq!(
            (&body["ready"], &body["failing"]),
            (&json!(true), &json!([])),
            "{path}"
        );
    }
    let r = http_get(gw.port(), "/startupz").expect("/startupz");
    assert_eq!(
        (r.status, json_body(&r)["status"].clone()),
        (200, json!("started"))
    );
    let r = http_get(gw.port(), "/api/no/such/page").expect("404");
    assert_eq!(r.status, 404);
    assert_probe_headers(&r);
    let head = http_request(
        gw.port(),
        &format!(
            "HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            gw.port()
        ),
    )
    .expect("HEAD");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}

fn preauth_socket_budget(shell: Shell) {
    let gw = Options::new().start(shell);
    smol::block_on(async {
        let mut held = Vec::new();
        for _ in 0..32 {
            let mut ws = raw::connect(gw.port()).await;
            assert!(
                matches!(raw::next(&mut ws).await, Next::Text(_)),
                "challenge"
            );
            held.push(ws);
        }
        let upgrade = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            gw.port()
        );
        let r = http_request(gw.port(), &upgrade).expect("33rd upgrade");
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.body, "Too many unauthenticated sockets");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{r:?}"
        );
        // One socket fewer and the next upgrade is served.
        drop(held.pop());
        let mut served = false;
        for _ in 0..50 {
            if raw::try_connect(gw.port()).await.is_ok() {
                served = true;
                break;
            }
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
        }
        assert!(served, "an upgrade after a socket closed was still refused");
    });
}

both!(probes, preauth_socket_budget);

/// Plain HTTP answers carry no time or randomness, so both shells must send the same bytes.
#[test]
fn http_answers_are_byte_identical_across_shells() {
    let requests = [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /api/no/such/page HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "this is not HTTP\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    ];
    let answers: Vec<Vec<Vec<u8>>> = Shell::ALL
        .iter()
        .map(|&shell| {
            let gw = Options::new().start(shell);
            requests
                .iter()
                .map(|r| http_raw(gw.port(), r).expect("answer"))
                .collect()
        })
        .collect();
    for (i, request) in requests.iter().enumerate() {
        let (mio, smol) = (&answers[0][i], &answers[1][i]);
        assert!(!mio.is_empty(), "no answer to {request:?}");
        assert_eq!(
            String::from_utf8_lossy(mio),
            String::from_utf8_lossy(smol),
            "{request:?}"
        );
    }
}
