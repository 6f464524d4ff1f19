//! Limits under load: a consumer that never reads, and a thousand sessions at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_tests::both;
use clawgate_tests::harness::raw::{self, Socket};
use clawgate_tests::harness::{Options, Shell};
use serde_json::json;
use smol::lock::Semaphore;

/// A client that keeps asking for a large `config.get` and never reads is closed once the
/// gateway holds more than `gateway.maxBufferedBytes` for it.
fn slow_consumer(shell: Shell) {
    let padding = "x".repeat(200_000);
    let config = json!({"gateway": {"maxBufferedBytes": 262_144}, "notes": padding}).to_string();
    let gw = Options::new().config(&config).start(shell);
    let mut ws = gw.ws(gw.cli());
    let hello = ws.hello().expect("hello-ok");
    assert_eq!(hello["policy"]["maxBufferedBytes"], 262_144);
    ws.stream()
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    let started = Instant::now();
    for i in 0..2_000 {
        ws.client().request("config.get", Some(json!({})));
        ws.flush();
        if i % 50 == 49
            && (gw.stderr().contains("slow consumer")
                || started.elapsed() > Duration::from_secs(20))
        {
            break;
        }
    }
    assert!(
        gw.wait_for_log("slow consumer", Duration::from_secs(10)),
        "no slow-consumer close: {}",
        gw.stderr()
    );
    // Whatever was in flight may still arrive; then a 1008 close, or the socket simply ends.
    let (code, reason) = ws.closed();
    assert!(
        (code, reason.as_str()) == (Some(1008), "slow consumer") || code.is_none(),
        "unexpected close {code:?} {reason:?}"
    );
}

const SESSIONS: usize = 1_000;
/// Sockets in their handshake at once: below the per-address budget of 32.
const HANDSHAKING: usize = 16;

/// One session: challenge, `connect`, `hello-ok`, `health`; the socket stays open.
async fn session(port: u16, gate: &Semaphore) -> Socket {
    let handshaking = gate.acquire().await;
    let (mut ws, challenge) = raw::challenged(port).await;
    raw::send(&mut ws, raw::connect_frame(port, &challenge).to_string()).await;
    let hello = raw::next_json(&mut ws).await;
    assert_eq!(
        (&hello["ok"], &hello["payload"]["type"]),
        (&json!(true), &json!("hello-ok")),
        "{hello}"
    );
    drop(handshaking);
    raw::send(
        &mut ws,
        json!({"type": "req", "id": "h1", "method": "health"}).to_string(),
    )
    .await;
    loop {
        let frame = raw::next_json(&mut ws).await;
        if frame["type"] == "res" {
            assert_eq!(
                (&frame["id"], &frame["ok"]),
                (&json!("h1"), &json!(true)),
                "{frame}"
            );
            return ws;
        }
    }
}

fn thousand_concurrent_sessions(shell: Shell) {
    let gw = Options::new().start(shell);
    let port = gw.port();
    let gate = Arc::new(Semaphore::new(HANDSHAKING));
    let open = smol::block_on(async {
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|_| {
                let gate = gate.clone();
                smol::spawn(async move { session(port, &gate).await })
            })
            .collect();
        let all = async {
            let mut open = Vec::with_capacity(SESSIONS);
            for t in tasks {
                open.push(t.await);
            }
            Some(open)
        };
        smol::future::or(all, async {
            smol::Timer::after(Duration::from_secs(300)).await;
            None
        })
        .await
    });
    let open = open.expect("1,000 sessions did not complete within 300 s");
    assert_eq!(open.len(), SESSIONS);
    // All of them are open at once, and the gateway still answers.
    let mut probe = gw.ws(gw.cli());
    probe.hello().expect("hello-ok with 1,000 sessions open");
    let status = probe.call("status", None).expect("status");
    assert!(status.is_object(), "{status}");
    drop(open);
}

both!(slow_consumer, thousand_concurrent_sessions);
