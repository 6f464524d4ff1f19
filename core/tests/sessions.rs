//! The sessions surface through the simulated gateway: who receives `session.message` and
//! `sessions.changed`, the per-connection subscription limit, and session changes answered only
//! once their store batch is durable.

use std::time::Instant;

use clawgate_core::client::Event;
use clawgate_core::config::ModelRoute;
use clawgate_core::frame::ErrorCode;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::persist::StoreChange;
use clawgate_core::{Config, ConnId};
use serde_json::{Value, json};

fn config() -> Config {
    let mut c = Config::local_default().with_token("t");
    c.model = Some(ModelRoute::new("fake", "fake-1", "http://127.0.0.1:9/v1"));
    c
}

fn operator(p: &mut Sim, scopes: &[&str]) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    let id = p.open_client(c, loopback());
    p.events(id);
    id
}

/// The session events a client received: (`event`, payload).
fn session_events(p: &mut Sim, id: ConnId) -> Vec<(String, Value)> {
    p.events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. } if event.starts_with("session") => {
                Some((event, payload))
            }
            _ => None,
        })
        .collect()
}

fn send(p: &mut Sim, id: ConnId, key: &str, run_id: &str) {
    let params = json!({"sessionKey": key, "message": "hi", "idempotencyKey": run_id});
    p.call(id, "chat.send", Some(params)).expect("chat.send");
}

#[test]
fn messages_reach_the_session_s_watchers_and_session_subscribers_only() {
    let mut p = Sim::started(Instant::now(), config());
    p.set_http(|_| openai_text_answer("ok"));
    let writer = operator(&mut p, &["operator.write"]);
    let all = operator(&mut p, &["operator.read"]);
    let one = operator(&mut p, &["operator.read"]);
    let none = operator(&mut p, &["operator.read"]);
    p.call(all, "sessions.subscribe", Some(json!({})))
        .expect("subscribe");
    p.call(
        one,
        "sessions.messages.subscribe",
        Some(json!({"key": "a"})),
    )
    .expect("subscribe a");
    send(&mut p, writer, "agent:main:a", "k-1");
    send(&mut p, writer, "agent:main:b", "k-2");

    let got = session_events(&mut p, all);
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|(e, v)| {
            let what = v["reason"]
                .as_str()
                .or(v["message"]["role"].as_str())
                .unwrap_or("?");
            (e.as_str(), what)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("sessions.changed", "create"),
            ("session.message", "user"),
            ("session.message", "assistant"),
            ("sessions.changed", "create"),
            ("session.message", "user"),
            ("session.message", "assistant"),
        ]
    );
    let got = session_events(&mut p, one);
    let keys: Vec<&str> = got
        .iter()
        .filter_map(|(_, v)| v["sessionKey"].as_str())
        .collect();
    assert_eq!(keys, ["agent:main:a", "agent:main:a"], "{got:?}");
    assert_eq!(got[1].1["runId"], "k-1");
    assert_eq!(got[1].1["messageSeq"], 2);
    assert!(session_events(&mut p, none).is_empty());

    p.call(
        one,
        "sessions.messages.unsubscribe",
        Some(json!({"key": "agent:main:a"})),
    )
    .expect("unsubscribe");
    send(&mut p, writer, "agent:main:a", "k-3");
    assert!(session_events(&mut p, one).is_empty());
}

#[test]
fn a_connection_watches_at_most_max_session_subscriptions() {
    let mut c = config();
    c.limits.max_session_subscriptions = 2;
    let mut p = Sim::started(Instant::now(), c);
    let r = operator(&mut p, &["operator.read"]);
    let sub = |p: &mut Sim, key: &str| {
        p.call(r, "sessions.messages.subscribe", Some(json!({"key": key})))
    };
    sub(&mut p, "a").expect("a");
    sub(&mut p, "b").expect("b");
    sub(&mut p, "a").expect("a again takes no new slot");
    let e = sub(&mut p, "c").expect_err("a third session");
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("at most 2"), "{e:?}");
    p.call(
        r,
        "sessions.messages.unsubscribe",
        Some(json!({"key": "b"})),
    )
    .expect("unsubscribe");
    sub(&mut p, "c").expect("a freed slot");
}

#[test]
fn patch_reset_and_delete_answer_once_durable() {
    let mut p = Sim::started(Instant::now(), config());
    p.set_http(|_| openai_text_answer("ok"));
    let admin = operator(&mut p, &["operator.admin"]);
    send(&mut p, admin, "agent:main:w", "k-1");
    p.hold_store_writes(true);
    for (method, params) in [
        ("sessions.patch", json!({"key": "w", "label": "L"})),
        ("sessions.reset", json!({"key": "w"})),
        ("sessions.delete", json!({"key": "w"})),
    ] {
        let rid = p.request(admin, method, Some(params));
        let answered = |p: &mut Sim| {
            p.events(admin).into_iter().find_map(|e| match e {
                Event::Response { id, result } if id == rid => Some(result),
                _ => None,
            })
        };
        assert!(
            answered(&mut p).is_none(),
            "{method} answered before its write"
        );
        p.write_store(true);
        let ok = answered(&mut p).expect("answered once written");
        assert_eq!(ok.expect("ok")["ok"], true, "{method}");
    }
    let last = p.batches.last().cloned().unwrap_or_default();
    assert_eq!(
        last,
        [StoreChange::DeleteSession {
            key: "agent:main:w".into()
        }]
    );
    // A failed write fails the answer that waited for it.
    let rid = p.request(
        admin,
        "sessions.patch",
        Some(json!({"key": "x", "label": "X"})),
    );
    p.write_store(false);
    let failed = p.events(admin).into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == rid => Some(result),
        _ => None,
    });
    let e = failed.expect("answered").expect_err("the write failed");
    assert_eq!(e.code, ErrorCode::Unavailable);
}
