//! Model windows in memory are bounded by `maxLoadedWindows`: a session whose window was
//! evicted (or never loaded, after a restart) reads it back from the (simulated) store before
//! its turn, and nothing on the wire changes: every model request, `chat.history` page and
//! `sessions.list` answer is the one a gateway that keeps every window in memory gives.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use clawgate_core::client::Event;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, ConnId};
use serde_json::{Value, json};

/// Messages per window in these tests.
const WINDOW: usize = 8;
/// Sessions, more than the smaller gateway's windows.
const SESSIONS: usize = 5;

fn config(loaded: usize) -> Config {
    let mut c = fake_model_config();
    c.limits.max_model_messages = WINDOW;
    c.limits.max_loaded_windows = loaded;
    c
}

/// A fake model that answers "re: <the last user message>" and records every request body.
fn echo(p: &mut Sim) -> Rc<RefCell<Vec<Value>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    p.set_http(move |req| {
        log.borrow_mut()
            .push(serde_json::from_slice(&req.body).unwrap());
        openai_text_answer(&format!("re: {}", last_message_text(req)))
    });
    seen
}

fn operator(p: &mut Sim) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = vec![
        "operator.write".into(),
        "operator.read".into(),
        "operator.admin".into(),
    ];
    let id = p.open_client(c, loopback());
    p.events(id);
    id
}

fn key(s: usize) -> String {
    format!("agent:main:s{s}")
}

/// One turn on session `s`, answered before this returns.
fn turn(p: &mut Sim, op: ConnId, s: usize, i: usize) {
    let params = json!({"sessionKey": key(s), "message": format!("s{s} u{i}"), "idempotencyKey": format!("k{s}-{i}")});
    p.call(op, "chat.send", Some(params)).unwrap();
    p.events(op);
}

/// The texts of the messages a model request carried.
fn texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What the wire shows of every session: its newest history page and the session list.
fn wire_view(p: &mut Sim, op: ConnId) -> Vec<Value> {
    let mut out = Vec::new();
    for s in 0..SESSIONS {
        out.push(p.chat_history(op, json!({"sessionKey": key(s)})));
    }
    out.push(p.call(op, "sessions.list", Some(json!({}))).unwrap());
    out
}

#[test]
fn evicted_windows_are_read_back_and_every_turn_sees_its_own_context() {
    let start = Instant::now();
    // One gateway keeps every window; the other at most two.
    let mut wide = Sim::started(start, config(64));
    let mut narrow = Sim::started(start, config(2));
    let (seen_wide, seen_narrow) = (echo(&mut wide), echo(&mut narrow));
    let (op_w, op_n) = (operator(&mut wide), operator(&mut narrow));
    // Round-robin over the sessions: each turn finds its window evicted by the others.
    for i in 0..7 {
        for s in 0..SESSIONS {
            turn(&mut wide, op_w, s, i);
            turn(&mut narrow, op_n, s, i);
            assert!(narrow.gw.held_messages().windows <= 2);
        }
    }
    assert_eq!(wide.gw.held_messages().windows, SESSIONS);
    let (wide_bodies, narrow_bodies) = (seen_wide.borrow(), seen_narrow.borrow());
    assert_eq!(narrow_bodies.len(), SESSIONS * 7);
    assert_eq!(*narrow_bodies, *wide_bodies, "identical model requests");
    // The last turn of session 3: its own window, the newest WINDOW messages of its
    // transcript (7 turns = 13 messages before the new one).
    let last_of_3 = &narrow_bodies[6 * SESSIONS + 3];
    let mut want: Vec<String> = Vec::new();
    for i in 0..7 {
        want.push(format!("s3 u{i}"));
        want.push(format!("re: s3 u{i}"));
    }
    want.pop();
    let want = want[want.len() - WINDOW..].to_vec();
    assert_eq!(texts(last_of_3), want);
    drop((wide_bodies, narrow_bodies));
    assert_eq!(wire_view(&mut narrow, op_n), wire_view(&mut wide, op_w));

    // A restart holds no window; the first turn of each session reads its own.
    let mut back = Sim::started(start, config(2));
    back.sessions = narrow.sessions.clone();
    back.gw.restore_sessions(narrow.sessions.stored(1));
    assert_eq!(back.gw.held_messages().windows, 0);
    assert_eq!(back.gw.held_messages().sessions, SESSIONS);
    let seen_back = echo(&mut back);
    let op_b = operator(&mut back);
    for s in 0..SESSIONS {
        turn(&mut back, op_b, s, 7);
        turn(&mut wide, op_w, s, 7);
    }
    let (b, w) = (seen_back.borrow(), seen_wide.borrow());
    assert_eq!(b[..], w[w.len() - SESSIONS..], "after a restart too");
    assert_eq!(back.gw.held_messages().windows, 2);
}

#[test]
fn messages_appended_while_a_window_is_read_are_in_it() {
    let start = Instant::now();
    let mut p = Sim::started(start, config(1));
    let seen = echo(&mut p);
    let op = operator(&mut p);
    turn(&mut p, op, 0, 0);
    turn(&mut p, op, 1, 0);
    // Session 0's window is out of memory; its next turn's read is held with the writes.
    p.hold_store_writes(true);
    let params = json!({"sessionKey": key(0), "message": "s0 u1", "idempotencyKey": "k0-1"});
    let send = p.request(op, "chat.send", Some(params));
    p.write_store(true);
    // The read is out (the turn waits for it); a note is appended meanwhile.
    let inject = p.request(
        op,
        "chat.inject",
        Some(json!({"sessionKey": key(0), "message": "a note"})),
    );
    p.hold_store_writes(false);
    p.write_store(true);
    p.events(op);
    assert!(!send.is_empty() && !inject.is_empty());
    let bodies = seen.borrow();
    let last = bodies.last().unwrap();
    assert_eq!(
        texts(last),
        ["s0 u0", "re: s0 u0", "s0 u1", "a note"],
        "the read's rows and the note appended after it"
    );
}

#[test]
fn a_failed_window_read_fails_the_turn() {
    let start = Instant::now();
    let mut p = Sim::started(start, config(1));
    echo(&mut p);
    let op = operator(&mut p);
    turn(&mut p, op, 0, 0);
    // After a restart the window is read from the store; a store that cannot read it fails
    // the turn, and no model request leaves.
    let mut q = Sim::started(start, config(1));
    q.gw.restore_sessions(p.sessions.stored(1));
    let seen = echo(&mut q);
    q.hold_store_writes(true);
    let op = operator(&mut q);
    let params = json!({"sessionKey": key(0), "message": "s0 u1", "idempotencyKey": "k0-1"});
    q.request(op, "chat.send", Some(params));
    q.write_store(true);
    assert_eq!(q.fail_reads("disk gone"), 1, "one window read");
    q.hold_store_writes(false);
    q.settle();
    let events = q.events(op);
    assert!(
        seen.borrow().is_empty(),
        "no model request without the window"
    );
    let failed = events.iter().any(|e| {
        matches!(e, Event::Event { event, payload, .. } if event == "chat"
            && payload["state"] == "error"
            && payload["errorMessage"].as_str().is_some_and(|m| m.contains("could not be read from the gateway's store")))
    });
    assert!(failed, "{events:?}");
}
