//! Transcripts live in the store, not in the core: memory stays bounded however long a
//! transcript grows, and `chat.history` pages are read back from the (simulated) store with
//! upstream's paging: `limit`, `offset`/`nextOffset`, `hasMore`, and a `deltaCursor`.

use std::time::Instant;

use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, ConnId};
use serde_json::json;

/// The window of recent messages the core keeps per session in these tests.
const WINDOW: usize = 20;

fn config() -> Config {
    let mut c = fake_model_config();
    c.limits.max_model_messages = WINDOW;
    c
}

/// A fake model that answers every request with "re: <the last user message>".
fn echo(p: &mut Sim) {
    p.set_http(|req| openai_text_answer(&format!("re: {}", last_message_text(req))));
}

fn operator(p: &mut Sim) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let id = p.open_client(c, loopback());
    p.events(id);
    id
}

/// chat.sends `from..to` on the main session, each answered: two messages each.
fn chat(p: &mut Sim, op: ConnId, from: usize, to: usize) {
    for i in from..to {
        let params = json!({"sessionKey": "main", "message": format!("u{i}"), "idempotencyKey": format!("k{i}")});
        p.call(op, "chat.send", Some(params)).unwrap();
        p.events(op);
    }
}

#[test]
fn memory_held_stays_bounded_after_thousands_of_messages() {
    let mut p = Sim::started(Instant::now(), config());
    echo(&mut p);
    let op = operator(&mut p);
    chat(&mut p, op, 0, 50);
    let early = p.gw.held_messages();
    chat(&mut p, op, 50, 1_500);
    let held = p.gw.held_messages();
    assert_eq!(held.sessions, 1);
    assert_eq!(
        (held.messages, early.messages),
        (WINDOW, WINDOW),
        "no growth from 100 to 3000 messages"
    );
    // The numbers grew from 49 to 1499: two more digits in each text and in each user's
    // idempotency key and answer's run id (4 per message on average), nothing more.
    assert!(held.bytes <= early.bytes + 4 * WINDOW, "{held:?} {early:?}");
    assert_eq!(held.unacked_changes, 0, "every batch is on disk");
    assert_eq!(p.sessions.transcripts["agent:main:main"].len(), 3_000);
    // The model still gets the recent turns: the window, ending with the new message.
    let page = p.chat_history(op, json!({"sessionKey": "main", "limit": 2}));
    assert_eq!(page_texts(&page), ["u1499", "re: u1499"]);
    assert_eq!(page["totalMessages"], 3_000);

    // A restart loads no window (a turn reads it: core/tests/windows.rs), and history still
    // reaches the first message.
    let mut q = Sim::started(Instant::now(), config());
    q.sessions = p.sessions.clone();
    q.gw.restore_sessions(p.sessions.stored(1));
    let restarted = q.gw.held_messages();
    assert_eq!(
        (restarted.sessions, restarted.windows, restarted.messages),
        (1, 0, 0)
    );

    // The byte bound holds the window too: long messages leave it sooner.
    let mut cfg = config();
    cfg.limits.max_window_bytes = 4096;
    let mut r = Sim::started(Instant::now(), cfg);
    echo(&mut r);
    let op2 = operator(&mut r);
    for i in 0..20 {
        let long = json!({"sessionKey": "main", "message": format!("{i}{}", "x".repeat(1000)), "idempotencyKey": format!("l{i}")});
        r.call(op2, "chat.send", Some(long)).unwrap();
        r.events(op2);
    }
    let bounded = r.gw.held_messages();
    assert!(
        bounded.bytes <= 4096 && bounded.messages < WINDOW,
        "{bounded:?}"
    );
    let op = operator(&mut q);
    let first = q.chat_history(
        op,
        json!({"sessionKey": "main", "offset": 2_999, "limit": 5}),
    );
    assert_eq!(page_texts(&first), ["u0"]);
    assert_eq!(first["hasMore"], false);
}

#[test]
fn pages_walk_back_with_offsets_to_the_first_message() {
    let mut p = Sim::started(Instant::now(), config());
    echo(&mut p);
    let op = operator(&mut p);
    chat(&mut p, op, 0, 125);
    let tail = p.chat_history(op, json!({"sessionKey": "main", "limit": 100}));
    assert_eq!(tail["totalMessages"], 250);
    assert_eq!(tail["hasMore"], true);
    assert_eq!(tail["nextOffset"], 100);
    assert_eq!(
        tail.get("offset"),
        None,
        "a tail page asked without an offset"
    );
    assert!(tail["deltaCursor"].is_string());
    let mut seen: Vec<String> = page_texts(&tail);
    assert_eq!(seen.last().unwrap(), "re: u124");
    let mut next = tail["nextOffset"].as_u64();
    while let Some(offset) = next {
        let page = p.chat_history(
            op,
            json!({"sessionKey": "main", "limit": 100, "offset": offset}),
        );
        assert_eq!(page["offset"], offset);
        assert_eq!(
            page.get("deltaCursor"),
            None,
            "only the newest page has one"
        );
        let mut older = page_texts(&page);
        older.append(&mut seen);
        seen = older;
        next = page["nextOffset"].as_u64();
        assert_eq!(page["hasMore"], next.is_some());
    }
    let want: Vec<String> = (0..125)
        .flat_map(|i| [format!("u{i}"), format!("re: u{i}")])
        .collect();
    assert_eq!(seen, want, "every message once, in order");
    // A client's maxBytes lowers the bound: the newest that fit, the rest on later pages.
    let small = p.chat_history(
        op,
        json!({"sessionKey": "main", "limit": 100, "maxBytes": 1024}),
    );
    let n = page_texts(&small).len();
    assert!((1..20).contains(&n), "{n} messages in 1 KiB");
    assert_eq!(small["nextOffset"], n);
    assert_eq!(page_texts(&small).last().unwrap(), "re: u124");
    // Positions ride along for clients that page by them.
    assert_eq!(tail["messages"][0]["__openclaw"]["seq"], 151);
}

#[test]
fn a_delta_cursor_catches_up_or_resets() {
    let mut p = Sim::started(Instant::now(), config());
    echo(&mut p);
    let op = operator(&mut p);
    chat(&mut p, op, 0, 2);
    let tail = p.chat_history(op, json!({"sessionKey": "main"}));
    let cursor = tail["deltaCursor"].clone();
    let none = p.chat_history(op, json!({"sessionKey": "main", "cursor": cursor}));
    assert_eq!(none["kind"], "delta");
    assert_eq!(none["messages"], json!([]));
    assert_eq!(none["deltaCursor"], cursor);
    chat(&mut p, op, 2, 3);
    let delta = p.chat_history(op, json!({"sessionKey": "main", "cursor": cursor}));
    assert_eq!(delta["kind"], "delta");
    assert_eq!(page_texts(&delta), ["u2", "re: u2"]);
    assert_eq!(delta["sessionInfo"]["hasActiveRun"], false);
    // Too far behind (more than 200 messages): reset to a tail fetch.
    chat(&mut p, op, 3, 104);
    let behind = p.chat_history(
        op,
        json!({"sessionKey": "main", "cursor": delta["deltaCursor"]}),
    );
    assert_eq!(behind, json!({"kind": "reset"}));
    for bad in ["nope", "other-session:1", ""] {
        let r = p.chat_history(op, json!({"sessionKey": "main", "cursor": bad}));
        assert_eq!(r, json!({"kind": "reset"}), "{bad:?}");
    }
    let e = p
        .call(
            op,
            "chat.history",
            Some(json!({"sessionKey": "main", "cursor": "x", "offset": 1})),
        )
        .unwrap_err();
    assert_eq!(e.message, "cursor cannot be used with offset or messageId");
}

#[test]
fn the_limit_is_bounded_and_so_is_the_size_of_an_answer() {
    let mut cfg = config();
    cfg.limits.max_history_bytes = 600;
    cfg.limits.max_history_message_bytes = 300;
    let mut p = Sim::started(Instant::now(), cfg);
    echo(&mut p);
    let op = operator(&mut p);
    let e = p
        .call(
            op,
            "chat.history",
            Some(json!({"sessionKey": "main", "limit": 1001})),
        )
        .unwrap_err();
    assert!(e.message.starts_with("invalid params: at /limit"), "{e:?}");
    chat(&mut p, op, 0, 10);
    let long =
        json!({"sessionKey": "main", "message": "x".repeat(400), "idempotencyKey": "k-long"});
    p.call(op, "chat.send", Some(long)).unwrap();
    p.events(op);
    let page = p.chat_history(op, json!({"sessionKey": "main", "limit": 1000}));
    let got = page_texts(&page);
    assert_eq!(
        got[got.len() - 2],
        "[chat.history omitted: message too large]"
    );
    assert_eq!(
        page["messages"][got.len() - 2]["__openclaw"]["truncated"],
        true
    );
    assert!(got.len() < 22, "bounded by bytes: {}", got.len());
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["nextOffset"], got.len());
    let e = p
        .call(
            op,
            "chat.history",
            Some(json!({"sessionKey": "main", "maxBytes": 1000})),
        )
        .unwrap_err();
    assert_eq!(e.message, "invalid params: at /maxBytes: must be >= 1024");
    let empty = p.chat_history(op, json!({"sessionKey": "nobody"}));
    assert_eq!(empty["messages"], json!([]));
    assert_eq!(empty["totalMessages"], 0);
    assert_eq!(empty["hasMore"], false);
}
