//! The sessions surface over real sockets: `sessions.subscribe` and
//! `sessions.messages.subscribe`/`unsubscribe` with the `sessions.changed` and
//! `session.message` events they deliver, `sessions.list`/`describe`, `sessions.patch`/
//! `reset`/`delete` (durable across a kill -9), `sessions.send`/`abort`, `chat.inject`,
//! `models.list` and `agents.list`, their refused params and scopes. Every frame validates
//! against upstream's schema (results and session rows where it defines them).

use std::time::Duration;

use clawgate_core::client::Event;
use clawgate_core::frame::{ErrorCode, ErrorShape};
use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use clawgate_tests::schema;
use serde_json::{Value, json};

use super::agent::{assert_frames_valid, operator, options, run_events};

/// An operator holding `scopes`.
fn client(gw: &Gateway, scopes: &[&str]) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = scopes.iter().map(|s| s.to_string()).collect();
    let mut ws = gw.ws(cfg);
    ws.hello().expect("hello-ok");
    ws
}

fn admin(gw: &Gateway) -> Ws {
    client(gw, &["operator.admin"])
}

/// `method` answered ok; its result validates where upstream's schema defines it.
fn ok(ws: &mut Ws, method: &str, params: Value) -> Value {
    let v = ws
        .call(method, Some(params))
        .unwrap_or_else(|e| panic!("{method}: {e:?}"));
    if let Some(s) = schema::schema() {
        s.validate_result(method, &v)
            .unwrap_or_else(|e| panic!("{method} result: {e}\n{v}"));
    }
    v
}

/// `method` refused with `code` and a message containing `needle`.
fn refused(ws: &mut Ws, method: &str, params: Value, code: ErrorCode, needle: &str) -> ErrorShape {
    let e = ws
        .call(method, Some(params.clone()))
        .expect_err(&format!("{method} {params} is refused"));
    assert_eq!(e.code, code, "{method} {params}: {e:?}");
    assert!(e.message.contains(needle), "{method} {params}: {e:?}");
    e
}

/// Each row validates as upstream's `SessionRow`.
fn assert_rows(rows: &Value) {
    let Some(s) = schema::schema() else { return };
    for row in rows.as_array().expect("rows") {
        s.validate_at("/definitions/SessionRow", row)
            .unwrap_or_else(|e| panic!("{e}\n{row}"));
    }
}

/// Run a turn on `key` and wait for its end on `ws`.
fn turn(ws: &mut Ws, key: &str, message: &str, run_id: &str) {
    let params = json!({"sessionKey": key, "message": message, "idempotencyKey": run_id});
    ws.call("chat.send", Some(params)).expect("chat.send");
    let events = run_events(ws, run_id);
    assert_eq!(events.last().expect("events").1["state"], "final");
}

/// The session events (`sessions.changed`, `session.message`) `ws` got until the `chat`
/// final of `run_id`, which it must see (it holds read).
fn session_events_until_final(ws: &mut Ws, run_id: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    loop {
        let (event, payload) = ws.expect("session events and the final", |e| match e {
            Event::Event { event, payload, .. }
                if event.starts_with("session") || event == "chat" =>
            {
                Some((event.clone(), payload.clone()))
            }
            _ => None,
        });
        if event == "chat" {
            if payload["runId"] == run_id && payload["state"] == "final" {
                // The assistant's `session.message` follows the final: wait for it too.
                let last = ws.expect("the assistant's session.message", |e| match e {
                    Event::Event { event, payload, .. } if event == "session.message" => {
                        Some(payload.clone())
                    }
                    _ => None,
                });
                out.push(("session.message".into(), last));
                return out;
            }
            continue;
        }
        out.push((event, payload));
    }
}

fn roles(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(e, _)| e == "session.message")
        .map(|(_, p)| {
            p["message"]["role"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn subscribers_hear_changes_and_messages(shell: Shell) {
    let model = FakeModel::echo();
    let gw = options(Some(&model)).start(shell);
    let mut all = client(&gw, &["operator.read"]);
    let mut one = client(&gw, &["operator.read"]);
    let mut writer = operator(&gw);
    assert_eq!(
        ok(&mut all, "sessions.subscribe", json!({})),
        json!({"subscribed": true})
    );
    assert_eq!(
        ok(
            &mut one,
            "sessions.messages.subscribe",
            json!({"key": "side"})
        ),
        json!({"subscribed": true, "key": "agent:main:side"})
    );
    turn(&mut writer, "agent:main:side", "hello side", "k-sub-1");

    let seen = session_events_until_final(&mut all, "k-sub-1");
    let created = seen
        .iter()
        .find(|(e, _)| e == "sessions.changed")
        .expect("sessions.changed");
    assert_eq!(created.1["reason"], "create", "{seen:?}");
    assert_eq!(created.1["sessionKey"], "agent:main:side");
    assert_eq!(created.1["session"]["key"], "agent:main:side");
    assert_eq!(roles(&seen), ["user", "assistant"], "{seen:?}");
    let assistant = &seen.last().expect("events").1;
    assert_eq!(assistant["runId"], "k-sub-1");
    assert_eq!(assistant["messageSeq"], 2);
    assert_eq!(assistant["message"]["__openclaw"]["seq"], 2);
    assert_eq!(
        assistant["message"]["content"][0]["text"],
        "Echo from fake LLM: hello side"
    );

    let seen = session_events_until_final(&mut one, "k-sub-1");
    assert_eq!(roles(&seen), ["user", "assistant"], "{seen:?}");
    assert!(
        seen.iter().all(|(e, _)| e != "sessions.changed"),
        "a message subscriber hears messages only: {seen:?}"
    );

    // Another session's messages reach the `sessions.subscribe` connection only.
    turn(&mut writer, "agent:main:other", "elsewhere", "k-sub-2");
    assert_eq!(
        roles(&session_events_until_final(&mut all, "k-sub-2")),
        ["user", "assistant"]
    );
    assert_eq!(
        ok(
            &mut one,
            "sessions.messages.unsubscribe",
            json!({"key": "agent:main:side"})
        ),
        json!({"subscribed": false, "key": "agent:main:side"})
    );
    turn(&mut writer, "agent:main:side", "again", "k-sub-3");
    assert_eq!(
        roles(&session_events_until_final(&mut all, "k-sub-3")),
        ["user", "assistant"]
    );
    // `one` still sees the run's chat events (it holds read) but no session.message.
    let mut between = Vec::new();
    one.first(
        |e| match e {
            Event::Event { event, payload, .. }
                if event == "chat"
                    && payload["runId"] == "k-sub-3"
                    && payload["state"] == "final" =>
            {
                Some(())
            }
            _ => None,
        },
        &mut between,
    )
    .expect("the final");
    std::thread::sleep(Duration::from_millis(200));
    let pinged = one.call("health", None).expect("health");
    assert_eq!(pinged["ok"], true);
    let messages = schema::server_text_frames(one.received())
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|f| f["event"] == "session.message")
        .count();
    assert_eq!(
        messages, 2,
        "the user and assistant rows of the one turn while subscribed"
    );

    // A patch is announced with the changed row.
    let mut w = admin(&gw);
    ok(
        &mut w,
        "sessions.patch",
        json!({"key": "agent:main:side", "label": "Side quest"}),
    );
    let changed = all.expect("sessions.changed for the patch", |e| match e {
        Event::Event { event, payload, .. }
            if event == "sessions.changed" && payload["reason"] == "patch" =>
        {
            Some(payload.clone())
        }
        _ => None,
    });
    assert_eq!(changed["session"]["label"], "Side quest");
    for ws in [&all, &one, &writer] {
        assert_frames_valid(ws);
    }
}

fn list_patch_reset_delete(shell: Shell) {
    let model = FakeModel::echo();
    let opts = options(Some(&model));
    let gw = opts.start(shell);
    let mut w = operator(&gw);
    turn(&mut w, "agent:main:main", "first", "k-l-1");
    turn(&mut w, "agent:main:work", "second", "k-l-2");

    let list = ok(&mut w, "sessions.list", json!({}));
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(
        list["sessions"][0]["key"], "agent:main:work",
        "newest first"
    );
    assert_eq!(list["defaults"]["model"], "fake-1");
    assert_rows(&list["sessions"]);
    let page = ok(
        &mut w,
        "sessions.list",
        json!({"limit": 1, "includeLastMessage": true}),
    );
    assert_eq!(
        (page["count"].as_u64(), page["hasMore"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(page["nextOffset"], 1);
    assert_eq!(
        page["sessions"][0]["lastMessagePreview"],
        "Echo from fake LLM: second"
    );
    let found = ok(&mut w, "sessions.list", json!({"search": "WORK"}));
    assert_eq!(found["count"], 1);
    let described = ok(&mut w, "sessions.describe", json!({"key": "work"}));
    assert_eq!(described["session"]["key"], "agent:main:work");
    assert_eq!(
        ok(&mut w, "sessions.describe", json!({"key": "nope"})),
        json!({"session": null})
    );
    refused(
        &mut w,
        "sessions.list",
        json!({"limit": 0}),
        ErrorCode::InvalidRequest,
        "at /limit",
    );
    refused(
        &mut w,
        "sessions.list",
        json!({"bogus": 1}),
        ErrorCode::InvalidRequest,
        "unexpected property 'bogus'",
    );
    refused(
        &mut w,
        "sessions.list",
        json!({"sortBy": "name"}),
        ErrorCode::InvalidRequest,
        "at /sortBy",
    );

    // Patch: what upstream accepts is stored and shown; what it refuses is refused.
    let patched = ok(
        &mut w,
        "sessions.patch",
        json!({"key": "agent:main:work", "label": "Work", "thinkingLevel": "high", "model": "fake/fake-1"}),
    );
    assert_eq!(patched["ok"], true);
    assert_eq!(patched["entry"]["label"], "Work");
    assert_eq!(patched["entry"]["thinkingLevel"], "high");
    assert_eq!(
        patched["resolved"],
        json!({"modelProvider": "fake", "model": "fake-1"})
    );
    let labelled = ok(&mut w, "sessions.list", json!({"label": "Work"}));
    assert_eq!(labelled["sessions"][0]["key"], "agent:main:work");
    for (params, needle) in [
        (
            json!({"key": "work", "thinkingLevel": "max"}),
            "invalid thinkingLevel",
        ),
        (
            json!({"key": "work", "model": "other/x"}),
            "model not allowed: other/x",
        ),
        (
            json!({"key": "main", "label": "Work"}),
            "label already in use: Work",
        ),
        (
            json!({"key": "work", "pinned": "yes"}),
            "at /pinned: must be boolean",
        ),
        (json!({"label": "x"}), "required property 'key'"),
    ] {
        refused(
            &mut w,
            "sessions.patch",
            params,
            ErrorCode::InvalidRequest,
            needle,
        );
    }
    // Fields beyond a writer's need admin (the scope check comes first), then are checked.
    let mut a = admin(&gw);
    for (params, needle) in [
        (
            json!({"key": "work", "execHost": "gateway"}),
            "execHost is not supported",
        ),
        (
            json!({"key": "work", "nope": 1}),
            "unexpected property 'nope'",
        ),
    ] {
        refused(
            &mut a,
            "sessions.patch",
            params,
            ErrorCode::InvalidRequest,
            needle,
        );
    }

    // Reset: a new session id, an empty transcript, the label kept.
    let before = ok(
        &mut w,
        "chat.history",
        json!({"sessionKey": "agent:main:work"}),
    );
    let reset = ok(
        &mut a,
        "sessions.reset",
        json!({"key": "work", "reason": "new"}),
    );
    assert_eq!(reset["key"], "agent:main:work");
    assert_ne!(reset["entry"]["sessionId"], before["sessionId"]);
    assert_eq!(reset["entry"]["label"], "Work");
    let after = ok(
        &mut w,
        "chat.history",
        json!({"sessionKey": "agent:main:work"}),
    );
    assert_eq!(after["messages"], json!([]), "{after}");
    refused(
        &mut a,
        "sessions.reset",
        json!({"key": "work", "reason": "later"}),
        ErrorCode::InvalidRequest,
        "at /reason",
    );

    // Delete: gone with its transcript; the main session stays.
    ok(
        &mut w,
        "sessions.patch",
        json!({"key": "agent:main:old", "archived": true}),
    );
    let deleted = ok(
        &mut a,
        "sessions.delete",
        json!({"key": "agent:main:old", "archivedOnly": true}),
    );
    assert_eq!(
        deleted,
        json!({"ok": true, "key": "agent:main:old", "deleted": true, "archived": []})
    );
    refused(
        &mut a,
        "sessions.delete",
        json!({"key": "main"}),
        ErrorCode::InvalidRequest,
        "Cannot delete the main session (agent:main:main).",
    );
    refused(
        &mut a,
        "sessions.delete",
        json!({"key": "work", "archivedOnly": true}),
        ErrorCode::InvalidRequest,
        "is not archived",
    );
    let gone = ok(&mut a, "sessions.delete", json!({"key": "work"}));
    assert_eq!(gone["deleted"], true);
    let again = ok(&mut a, "sessions.delete", json!({"key": "work"}));
    assert_eq!(again["deleted"], false);
    for ws in [&w, &a] {
        assert_frames_valid(ws);
    }

    // Every change was durable before its "ok": a kill -9 keeps them.
    let gw = opts.crash_and_restart(shell, gw);
    let mut w = operator(&gw);
    let list = ok(&mut w, "sessions.list", json!({"archived": "all"}));
    let keys: Vec<&str> = list["sessions"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    assert_eq!(keys, ["agent:main:main"], "{list}");
    let history = ok(
        &mut w,
        "chat.history",
        json!({"sessionKey": "agent:main:work"}),
    );
    assert_eq!(history["messages"], json!([]));
}

fn send_abort_and_inject(shell: Shell) {
    let model = FakeModel::start(|req| match req.last_user_text().as_deref() {
        Some("slow") => Reply::text(&["a", "b", "c"]).with_delay(Duration::from_secs(2)),
        _ => Reply::text(&["sent ", "ok"]),
    });
    let gw = options(Some(&model)).start(shell);
    let mut w = operator(&gw);
    let started = ok(
        &mut w,
        "sessions.send",
        json!({"key": "s", "message": "hi", "idempotencyKey": "k-ss-1"}),
    );
    assert_eq!(started, json!({"runId": "k-ss-1", "status": "started"}));
    let events = run_events(&mut w, "k-ss-1");
    assert_eq!(
        events.last().expect("events").1["message"]["content"][0]["text"],
        "sent ok"
    );
    let unnamed = ok(
        &mut w,
        "sessions.send",
        json!({"key": "s", "message": "again"}),
    );
    let run_id = unnamed["runId"]
        .as_str()
        .expect("a generated runId")
        .to_string();
    run_events(&mut w, &run_id);

    ok(
        &mut w,
        "sessions.send",
        json!({"key": "s", "message": "slow", "idempotencyKey": "k-ss-slow"}),
    );
    let aborted = ok(&mut w, "sessions.abort", json!({"key": "agent:main:s"}));
    assert_eq!(
        aborted,
        json!({"ok": true, "abortedRunId": "k-ss-slow", "status": "aborted"})
    );
    // The run's `aborted` chat event left before the answer (the call read past it).
    let aborted_event = schema::server_text_frames(w.received())
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .any(|f| {
            f["event"] == "chat"
                && f["payload"]["runId"] == "k-ss-slow"
                && f["payload"]["state"] == "aborted"
        });
    assert!(aborted_event, "no aborted chat event for the run");
    assert_eq!(
        ok(&mut w, "sessions.abort", json!({"runId": "k-ss-slow"})),
        json!({"ok": true, "abortedRunId": null, "status": "no-active-run"})
    );
    refused(
        &mut w,
        "sessions.abort",
        json!({}),
        ErrorCode::InvalidRequest,
        "key required",
    );
    refused(
        &mut w,
        "sessions.send",
        json!({"key": "s"}),
        ErrorCode::InvalidRequest,
        "required property 'message'",
    );
    refused(
        &mut w,
        "sessions.send",
        json!({"key": "s", "message": "x", "agentId": "ops"}),
        ErrorCode::InvalidRequest,
        "Unknown agent id \"ops\"",
    );

    let mut a = admin(&gw);
    let injected = ok(
        &mut a,
        "chat.inject",
        json!({"sessionKey": "s", "message": "note", "label": "sys"}),
    );
    assert_eq!(injected["ok"], true);
    let id = injected["messageId"].as_str().expect("messageId");
    // The `final` chat event left before the answer (the call read past it).
    let chat = schema::server_text_frames(a.received())
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .find(|f| f["event"] == "chat" && f["payload"]["state"] == "final")
        .map(|f| f["payload"].clone())
        .expect("the injected final");
    assert_eq!(chat["runId"], format!("inject-{id}"));
    assert_eq!(chat["message"]["content"][0]["text"], "[sys]\n\nnote");
    let history = ok(
        &mut a,
        "chat.history",
        json!({"sessionKey": "agent:main:s"}),
    );
    let last = history["messages"]
        .as_array()
        .and_then(|m| m.last())
        .expect("messages");
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"][0]["text"], "[sys]\n\nnote");
    refused(
        &mut a,
        "chat.inject",
        json!({"sessionKey": "none", "message": "x"}),
        ErrorCode::InvalidRequest,
        "session not found",
    );
    refused(
        &mut a,
        "chat.inject",
        json!({"sessionKey": "s", "message": ""}),
        ErrorCode::InvalidRequest,
        "at /message",
    );
    let long = "l".repeat(101);
    refused(
        &mut a,
        "chat.inject",
        json!({"sessionKey": "s", "message": "x", "label": long}),
        ErrorCode::InvalidRequest,
        "more than 100 characters",
    );
    for ws in [&w, &a] {
        assert_frames_valid(ws);
    }
}

fn scopes_are_upstreams(shell: Shell) {
    let gw = options(None).start(shell);
    let mut none = client(&gw, &[]);
    let mut read = client(&gw, &["operator.read"]);
    let mut write = operator(&gw);
    let missing = |ws: &mut Ws, method: &str, params: Value, scope: &str| {
        let e = refused(ws, method, params, ErrorCode::Forbidden, "missing scope");
        assert_eq!(e.message, format!("missing scope: {scope}"), "{method}");
    };
    for method in [
        "sessions.list",
        "sessions.subscribe",
        "models.list",
        "agents.list",
    ] {
        missing(&mut none, method, json!({}), "operator.read");
    }
    missing(
        &mut none,
        "sessions.messages.subscribe",
        json!({"key": "k"}),
        "operator.read",
    );
    missing(
        &mut read,
        "sessions.send",
        json!({"key": "k", "message": "m"}),
        "operator.write",
    );
    missing(
        &mut read,
        "sessions.abort",
        json!({"key": "k"}),
        "operator.write",
    );
    missing(
        &mut read,
        "sessions.patch",
        json!({"key": "k", "label": "l"}),
        "operator.write",
    );
    missing(
        &mut write,
        "sessions.patch",
        json!({"key": "k", "execHost": "gateway"}),
        "operator.admin",
    );
    missing(
        &mut write,
        "sessions.reset",
        json!({"key": "k"}),
        "operator.admin",
    );
    missing(
        &mut write,
        "sessions.delete",
        json!({"key": "k"}),
        "operator.admin",
    );
    missing(
        &mut write,
        "chat.inject",
        json!({"sessionKey": "k", "message": "m"}),
        "operator.admin",
    );
    // Deleting an archived session only is a writer's call.
    let e = refused(
        &mut write,
        "sessions.delete",
        json!({"key": "k", "archivedOnly": true}),
        ErrorCode::InvalidRequest,
        "",
    );
    assert!(e.message.contains("not archived"), "{e:?}");
    for ws in [&none, &read, &write] {
        assert_frames_valid(ws);
    }
}

fn models_and_agents_come_from_the_config(shell: Shell) {
    let config = r#"{
        models: { providers: {
            local: { baseUrl: "http://127.0.0.1:9/v1", api: "openai-completions",
                     models: [{ id: "llama", name: "Llama 3", contextWindow: 8192, input: ["text"] }, { id: "qwen" }] },
        } },
        agents: {
            defaults: { model: { primary: "local/llama" } },
            list: [{ id: "main", name: "Main", identity: { name: "Claw", emoji: "🦀" } },
                   { id: "ops", default: true, model: "local/qwen" }],
        },
    }"#;
    let gw = Options::new().token("t0ken").config(config).start(shell);
    let mut r = client(&gw, &["operator.read"]);
    let models = ok(&mut r, "models.list", json!({}));
    assert_eq!(
        models,
        json!({"models": [
            {"id": "llama", "name": "Llama 3", "provider": "local", "contextWindow": 8192, "input": ["text"]},
            {"id": "qwen", "name": "qwen", "provider": "local"},
        ]})
    );
    refused(
        &mut r,
        "models.list",
        json!({"view": "mine"}),
        ErrorCode::InvalidRequest,
        "at /view",
    );
    refused(
        &mut r,
        "models.list",
        json!({"preparedOnly": true, "refresh": true}),
        ErrorCode::InvalidRequest,
        "invalid params",
    );
    let agents = ok(&mut r, "agents.list", json!({}));
    assert_eq!(agents["defaultId"], "ops");
    assert_eq!(agents["mainKey"], "main");
    assert_eq!(
        agents["agents"],
        json!([
            {"id": "main", "name": "Main", "identity": {"name": "Claw", "emoji": "🦀"},
             "model": {"primary": "local/llama"}},
            {"id": "ops", "model": {"primary": "local/qwen"}},
        ])
    );
    refused(
        &mut r,
        "agents.list",
        json!({"x": 1}),
        ErrorCode::InvalidRequest,
        "unexpected property 'x'",
    );

    let plain = options(None).start(shell);
    let mut r2 = client(&plain, &["operator.read"]);
    assert_eq!(ok(&mut r2, "models.list", json!({})), json!({"models": []}));
    let agents = ok(&mut r2, "agents.list", json!({}));
    assert_eq!(
        agents,
        json!({"defaultId": "main", "mainKey": "main", "scope": "per-sender", "agents": [{"id": "main"}]})
    );
    for ws in [&r, &r2] {
        assert_frames_valid(ws);
    }
}

both!(
    subscribers_hear_changes_and_messages,
    list_patch_reset_delete,
    send_abort_and_inject,
    scopes_are_upstreams,
    models_and_agents_come_from_the_config
);
