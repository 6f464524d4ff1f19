//! Telegram through the simulated gateway, with a fake Bot API and a fake model as plain
//! functions over the held HTTP requests: the pairing and routing decisions, the offset
//! confirmed only once the updates are durable, the watchdog, backoff on 429 and 401.

use core::time::Duration;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use clawgate_core::Level;
use clawgate_core::channels::DELIVERY_RECORD_DELAY;
use clawgate_core::channels::config::TELEGRAM_ATTEMPT_DELAY;
use clawgate_core::channels::pairing::ChannelPairing;
use clawgate_core::client::Event;
use clawgate_core::config::{ConfigInput, RunFlags};
use clawgate_core::fuzzing::sim::*;
use clawgate_core::model::{Dialing, HttpRequest, Pinned};
use clawgate_core::persist::{ChannelRowKind, StoreChange};
use clawgate_core::{Config, ConnId, HttpError, HttpErrorKind, Output, Work, WorkId, WorkResult};
use serde_json::{Value, json};

const API: &str = "http://api.telegram.test";

fn config(telegram: &str, session: &str) -> Config {
    let text = format!(
        r#"{{ gateway: {{ auth: {{ token: "t" }} }},
             models: {{ providers: {{ fake: {{ baseUrl: "http://model.test/v1", api: "openai-completions" }} }} }},
             agents: {{ defaults: {{ model: "fake/fake-1" }} }},
             channels: {{ telegram: {{ botToken: "1:abc", apiRoot: "{API}", {telegram} }} }},
             {session} }}"#
    );
    Config::resolve(&ConfigInput {
        file_text: Some(text),
        flags: RunFlags::default(),
        ..Default::default()
    })
    .expect("config")
}

/// The fake Bot API and model: updates to hand out, what was sent, the model's answers.
#[derive(Default)]
struct Fakes {
    updates: VecDeque<Value>,
    next_update: i64,
    /// (method, body) of every Bot API call, in order.
    calls: Vec<(String, Value)>,
    model_calls: usize,
    /// Answer the next getUpdates with this status and body instead.
    poll_failure: Option<(u16, Value)>,
    /// Leave polls unanswered even with updates waiting.
    stall_polls: bool,
    /// Leave model requests unanswered.
    hold_model: bool,
    /// Answer model requests with this HTTP error status.
    model_error: Option<u16>,
    /// Answer every sendMessage with this status and body.
    send_failure: Option<(u16, Value)>,
    /// Leave sendMessage calls unanswered.
    hold_sends: bool,
    /// Have the model call `exec` with this command first in each turn.
    exec_command: Option<&'static str>,
}

impl Fakes {
    fn dm(&mut self, from: i64, text: &str) -> i64 {
        self.next_update += 1;
        let id = self.next_update;
        self.updates.push_back(json!({"update_id": id, "message": {
            "message_id": id * 10, "from": {"id": from, "is_bot": false, "first_name": "M"},
            "chat": {"id": from, "type": "private"}, "date": 1, "text": text}}));
        id
    }

    fn sent(&self, method: &str) -> Vec<&Value> {
        self.calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, b)| b)
            .collect()
    }

    /// The answer to a held request, or `None` to leave it held (a long poll with nothing).
    fn answer(&mut self, req: &HttpRequest) -> Option<Vec<WorkResult>> {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if req.url.starts_with("http://model.test") {
            if self.hold_model {
                return None;
            }
            self.model_calls += 1;
            if let Some(status) = self.model_error {
                let e = json!({"error": {"message": "upstream exploded", "type": "server_error"}});
                return Some(vec![
                    WorkResult::HttpHead {
                        status,
                        headers: vec![],
                    },
                    WorkResult::HttpBody(e.to_string().into_bytes()),
                    WorkResult::HttpEnd(Ok(())),
                ]);
            }
            if let Some(command) = self.exec_command
                && body["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .is_some_and(|m| m["role"] == "user")
            {
                return Some(openai_tool_call_answer(
                    "exec",
                    &json!({"command": command}),
                ));
            }
            return Some(openai_text_answer(&format!(
                "echo {}",
                last_message_text(req)
            )));
        }
        let method = req.url.rsplit('/').next().unwrap_or_default().to_string();
        assert!(
            req.url.starts_with(&format!("{API}/bot1:abc/")),
            "{}",
            req.url
        );
        let reply = |status: u16, v: Value| {
            Some(vec![
                WorkResult::HttpHead {
                    status,
                    headers: vec![],
                },
                WorkResult::HttpBody(v.to_string().into_bytes()),
                WorkResult::HttpEnd(Ok(())),
            ])
        };
        if method == "getUpdates" {
            if let Some((status, v)) = self.poll_failure.take() {
                self.calls.push((method, body));
                return reply(status, v);
            }
            let offset = body["offset"].as_i64().unwrap_or(0);
            self.updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if self.updates.is_empty() || self.stall_polls {
                return None;
            }
            self.calls.push((method, body));
            return reply(
                200,
                json!({"ok": true, "result": self.updates.iter().collect::<Vec<_>>()}),
            );
        }
        if method == "sendMessage" && self.hold_sends {
            return None;
        }
        self.calls.push((method.clone(), body));
        if method == "sendMessage"
            && let Some((status, v)) = self.send_failure.clone()
        {
            return reply(status, v);
        }
        let result = match method.as_str() {
            "getMe" => json!({"id": 9, "is_bot": true, "username": "bot"}),
            "sendMessage" => json!({"message_id": 1}),
            _ => json!(true),
        };
        reply(200, json!({"ok": true, "result": result}))
    }
}

/// Answer every held request the fakes can answer until nothing moves; the polls left held.
fn pump(p: &mut Sim, f: &mut Fakes) -> Vec<(WorkId, HttpRequest)> {
    loop {
        let held: Vec<(WorkId, HttpRequest)> = p.held_http().to_vec();
        let mut moved = false;
        for (id, req) in held {
            if let Some(results) = f.answer(&req) {
                moved = true;
                for r in results {
                    p.http_result(id, r);
                }
            }
        }
        if !moved {
            return p.held_http().to_vec();
        }
    }
}

fn start(telegram: &str, session: &str) -> (Sim, Fakes) {
    let mut p = Sim::started_holding_http(Instant::now(), config(telegram, session));
    let mut f = Fakes::default();
    pump(&mut p, &mut f);
    (p, f)
}

fn admin(p: &mut Sim) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.admin".into()];
    let id = p.open_client(c, loopback());
    p.events(id);
    id
}

/// An admin operator subscribed to the messages of the main session (its events so far
/// drained), and that session's key.
fn watching_main(p: &mut Sim) -> (ConnId, &'static str) {
    let op = admin(p);
    let key = "agent:main:main";
    p.call(op, "sessions.messages.subscribe", Some(json!({"key": key})))
        .unwrap();
    p.events(op);
    (op, key)
}

fn held_polls(p: &Sim) -> Vec<Value> {
    p.held_http()
        .iter()
        .filter(|(_, r)| r.url.ends_with("/getUpdates"))
        .map(|(_, r)| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[test]
fn start_up_is_get_me_delete_webhook_then_one_long_poll() {
    let (p, f) = start("", "");
    let methods: Vec<&str> = f.calls.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["getMe", "deleteWebhook"]);
    assert_eq!(
        held_polls(&p),
        [json!({"timeout": 30, "limit": 100, "allowed_updates": ["message"], "offset": 0})]
    );
}

/// The dialing of the held long poll.
fn poll_dialing(p: &Sim) -> Vec<Dialing> {
    p.held_http()
        .iter()
        .filter(|(_, r)| r.url.ends_with("/getUpdates"))
        .map(|(_, r)| r.dialing)
        .collect()
}

#[test]
fn the_accounts_network_settings_ride_on_its_bot_api_requests() {
    let raced = Dialing {
        race: true,
        ipv4_first: false,
        ipv4_only: false,
        attempt_delay: Some(TELEGRAM_ATTEMPT_DELAY),
        pinned: None,
    };
    let (p, _) = start("", "");
    assert_eq!(poll_dialing(&p), [raced]);
    let (p, _) = start(
        r#"network: { autoSelectFamily: false, dnsResultOrder: "ipv4first" }"#,
        "",
    );
    let first_ipv4_only = Dialing {
        race: false,
        ipv4_first: true,
        ..raced
    };
    assert_eq!(poll_dialing(&p), [first_ipv4_only]);
}

/// The held long poll's id.
fn held_poll(p: &Sim) -> WorkId {
    let polls: Vec<WorkId> = p
        .held_http()
        .iter()
        .filter(|(_, r)| r.url.ends_with("/getUpdates"))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(polls.len(), 1, "one poll held");
    polls[0]
}

/// Upstream's fallback address of the Bot API.
const TELEGRAM_IP: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::new(149, 154, 167, 220))];

fn failed(kind: HttpErrorKind) -> WorkResult {
    WorkResult::HttpEnd(Err(HttpError::new(
        kind,
        format!("cannot connect: {kind:?}"),
    )))
}

#[test]
fn a_transport_failure_goes_again_ipv4_only_then_to_the_pinned_address_and_stays_there() {
    let (mut p, mut f) = start("", "");
    let primary = poll_dialing(&p)[0];
    p.http_result(held_poll(&p), failed(HttpErrorKind::TimedOut));
    // At once, with no backoff: the same poll, IPv4 only.
    let ipv4 = Dialing {
        race: false,
        ipv4_first: true,
        ipv4_only: true,
        ..primary
    };
    assert_eq!(poll_dialing(&p), [ipv4]);
    p.http_result(held_poll(&p), failed(HttpErrorKind::Unreachable));
    let pinned = Dialing {
        pinned: Some(Pinned {
            host: "api.telegram.org",
            addrs: &TELEGRAM_IP,
        }),
        ..ipv4
    };
    assert_eq!(poll_dialing(&p), [pinned]);
    let warned = p.logs.iter().any(|l| {
        l.level == Level::Warn && l.message.contains("trying alternative Telegram API IP")
    });
    assert!(warned, "{:?}", p.logs);
    // The poll answers there: the next one starts there (sticky), and the account never
    // failed.
    f.dm(5, "hi");
    pump(&mut p, &mut f);
    assert_eq!(poll_dialing(&p), [pinned]);
    assert_eq!(
        f.sent("getUpdates").len(),
        1,
        "answered on the pinned address"
    );
    let op = admin(&mut p);
    let status = p.call(op, "channels.status", None).unwrap();
    assert_eq!(
        status["channelAccounts"]["telegram"][0]["lastError"],
        Value::Null
    );
    // Five answers on the fallback schedule a probe of the primary, said in the log as
    // upstream says it.
    for n in 0..5 {
        f.dm(6 + n, "again");
        pump(&mut p, &mut f);
    }
    let scheduled = p.logs.iter().any(|l| {
        l.level == Level::Debug
            && l.message
                .contains("fetch fallback: scheduling primary dispatcher recovery probe")
    });
    assert!(scheduled, "{:?}", p.logs);
}

#[test]
fn an_api_error_or_a_refused_connection_does_not_fall_back() {
    let (mut p, mut f) = start("", "");
    let primary = poll_dialing(&p)[0];
    f.poll_failure = Some((
        500,
        json!({"ok": false, "error_code": 500, "description": "x"}),
    ));
    pump(&mut p, &mut f);
    assert!(poll_dialing(&p).is_empty(), "waiting out the backoff");
    // The backoff: 1 s, then 2 s, each with up to half again of jitter.
    p.advance(Duration::from_millis(1500));
    assert_eq!(poll_dialing(&p), [primary]);
    p.http_result(held_poll(&p), failed(HttpErrorKind::Refused));
    assert!(poll_dialing(&p).is_empty(), "waiting out the backoff");
    p.advance(Duration::from_secs(3));
    assert_eq!(poll_dialing(&p), [primary]);
}

#[test]
fn new_network_settings_on_reload_start_the_transport_attempts_over() {
    let (mut p, _) = start("", "");
    let primary = poll_dialing(&p)[0];
    p.http_result(held_poll(&p), failed(HttpErrorKind::TimedOut));
    assert!(poll_dialing(&p)[0].ipv4_only, "on the IPv4-only fallback");
    p.reload(config("network: { autoSelectFamily: false }", ""));
    p.http_result(held_poll(&p), failed(HttpErrorKind::Refused));
    p.advance(Duration::from_millis(1500));
    let first_only = Dialing {
        race: false,
        ..primary
    };
    assert_eq!(poll_dialing(&p), [first_only]);
}

#[test]
fn with_dns_result_order_verbatim_there_is_no_fallback() {
    let (mut p, _) = start(r#"network: { dnsResultOrder: "verbatim" }"#, "");
    p.http_result(held_poll(&p), failed(HttpErrorKind::TimedOut));
    assert!(poll_dialing(&p).is_empty(), "the poll failed: backoff");
}

#[test]
fn an_unknown_dm_pairs_and_reaches_the_agent_only_after_approval() {
    let (mut p, mut f) = start("", "");
    let op = admin(&mut p);
    f.dm(222, "hello");
    pump(&mut p, &mut f);
    f.dm(222, "again");
    pump(&mut p, &mut f);
    let sent = f.sent("sendMessage");
    assert_eq!(sent.len(), 1, "one pairing message per request");
    let text = sent[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Your Telegram user id: 222\nPairing code:"),
        "{text}"
    );
    assert_eq!(f.model_calls, 0, "nothing reaches the agent");
    let list = p.call(op, "channels.pairing.list", None).unwrap();
    let rid = list["requests"][0]["requestId"].clone();
    assert_eq!(list["requests"][0]["expiresAt"].as_str().unwrap().len(), 24);
    let ok = p
        .call(op, "channels.pairing.approve", Some(json!({"channel": "telegram", "accountId": "default", "requestId": rid, "notify": true})))
        .unwrap();
    assert_eq!(ok["notification"], "sent");
    pump(&mut p, &mut f);
    f.dm(222, "now");
    pump(&mut p, &mut f);
    let sent = f.sent("sendMessage");
    assert_eq!(
        sent[1]["text"],
        "✅ OpenClaw access approved. Send a message to start chatting."
    );
    assert_eq!(sent[2]["text"], "echo now");
    assert_eq!(f.model_calls, 1);
    // A channel turn's events go to the session's subscribers, not to every operator.
    let events: Vec<Event> = p.events(op);
    assert!(
        !events.iter().any(
            |e| matches!(e, Event::Event { event, .. } if event == "chat" || event == "agent")
        ),
        "{events:?}"
    );
    let history = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn per_channel_peer_dms_get_their_own_session() {
    let (mut p, mut f) = start(
        r#"dmPolicy: "open", allowFrom: ["*"],"#,
        r#"session: { dmScope: "per-channel-peer" },"#,
    );
    let op = admin(&mut p);
    f.dm(222, "a");
    f.dm(333, "b");
    pump(&mut p, &mut f);
    for (peer, text) in [("222", "a"), ("333", "b")] {
        let key = format!("agent:main:telegram:direct:{peer}");
        let h = p.chat_history(op, json!({"sessionKey": &key}));
        assert_eq!(h["messages"][0]["content"][0]["text"], text);
    }
    let main = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert_eq!(main["messages"], json!([]));
}

#[test]
fn the_offset_is_confirmed_only_once_the_updates_are_durable() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    p.hold_store_writes(true);
    let id = f.dm(222, "x");
    pump(&mut p, &mut f);
    assert!(
        held_polls(&p).is_empty(),
        "no getUpdates before the batch is durable"
    );
    assert!(
        f.sent("sendMessage").is_empty(),
        "nothing is answered before it is durable"
    );
    p.write_store(true);
    pump(&mut p, &mut f);
    let polls = f.sent("getUpdates");
    assert_eq!(polls.len(), 1);
    assert_eq!(held_polls(&p)[0]["offset"], id + 1);
    // The batch that confirmed it held the message and the offset.
    let batch = p
        .batches
        .iter()
        .find(|b| b.iter().any(|c| format!("{c:?}").contains("Offset")))
        .unwrap();
    assert!(format!("{batch:?}").contains("Ingress"), "{batch:?}");
}

#[test]
fn a_returned_poll_leaves_no_watchdog_wake_up() {
    let (mut p, mut f) = start("", "");
    let t0 = p.now;
    p.advance(Duration::from_secs(20));
    // The long poll returns empty at 20 s; the next one starts.
    let (first, _) = p.held_http()[0].clone();
    let empty = json!({"ok": true, "result": []}).to_string().into_bytes();
    p.http_result(
        first,
        WorkResult::HttpHead {
            status: 200,
            headers: vec![],
        },
    );
    p.http_result(first, WorkResult::HttpBody(empty));
    p.http_result(first, WorkResult::HttpEnd(Ok(())));
    pump(&mut p, &mut f);
    assert_eq!(held_polls(&p).len(), 1, "the next poll");
    // Every instant the gateway asks to be woken at until the second poll's watchdog.
    let mut wakes = Vec::new();
    while let Output::Timeout(at) = p.gw.poll_output() {
        if at > t0 + Duration::from_secs(66) {
            break;
        }
        wakes.push(at.duration_since(t0).as_secs());
        p.advance(at.duration_since(p.now));
    }
    assert!(
        !wakes.contains(&45),
        "the first poll's watchdog (due at 45 s) was cancelled when it returned: {wakes:?}"
    );
    assert!(wakes.contains(&65), "the second poll's watchdog: {wakes:?}");
}

#[test]
fn a_stalled_poll_is_restarted_by_the_watchdog() {
    let (mut p, mut f) = start("", "");
    let first = p.held_http()[0].0;
    p.advance(Duration::from_secs(44));
    assert!(p.cancelled.is_empty());
    p.advance(Duration::from_secs(2));
    assert_eq!(p.cancelled, [first]);
    pump(&mut p, &mut f);
    assert_eq!(held_polls(&p).len(), 1, "a fresh poll");
    let op = admin(&mut p);
    let status = p.call(op, "channels.status", None).unwrap();
    let err = status["channelAccounts"]["telegram"][0]["lastError"]
        .as_str()
        .unwrap();
    assert!(err.contains("watchdog"), "{err}");
}

#[test]
fn a_429_waits_retry_after_and_a_401_stops_the_account() {
    let (mut p, mut f) = start("", "");
    f.poll_failure = Some((
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 7}}),
    ));
    f.dm(222, "x");
    f.stall_polls = true;
    pump(&mut p, &mut f);
    assert!(held_polls(&p).is_empty(), "waiting out retry_after");
    p.advance(Duration::from_secs(6));
    assert!(held_polls(&p).is_empty());
    p.advance(Duration::from_secs(6));
    assert_eq!(held_polls(&p).len(), 1);
    f.stall_polls = false;
    let (id, _) = p.held_http()[0].clone();
    f.calls.clear();
    let unauthorized = json!({"ok": false, "error_code": 401, "description": "Unauthorized"});
    p.http_result(
        id,
        WorkResult::HttpHead {
            status: 401,
            headers: vec![],
        },
    );
    p.http_result(
        id,
        WorkResult::HttpBody(unauthorized.to_string().into_bytes()),
    );
    p.http_result(id, WorkResult::HttpEnd(Ok(())));
    p.advance(Duration::from_secs(120));
    assert!(
        p.held_http().is_empty(),
        "a bad token stops the account: no retry"
    );
    let op = admin(&mut p);
    let status = p.call(op, "channels.status", None).unwrap();
    let account = &status["channelAccounts"]["telegram"][0];
    assert_eq!(account["running"], false);
    assert!(
        account["lastError"].as_str().unwrap().contains("401"),
        "{account}"
    );
    assert!(p.call(op, "health", None).is_ok());
}

#[test]
fn typing_repeats_while_the_turn_runs_and_a_failed_turn_says_so() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.hold_model = true;
    f.dm(222, "slow");
    pump(&mut p, &mut f);
    assert_eq!(f.sent("sendChatAction").len(), 1);
    p.advance(Duration::from_secs(5));
    pump(&mut p, &mut f);
    p.advance(Duration::from_secs(5));
    pump(&mut p, &mut f);
    assert_eq!(
        f.sent("sendChatAction").len(),
        3,
        "every 5 s while the turn runs"
    );
    f.hold_model = false;
    // A 400: a 5xx would be retried first.
    f.model_error = Some(400);
    pump(&mut p, &mut f);
    let text = f.sent("sendMessage")[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.starts_with("⚠️ Agent failed before reply: "), "{text}");
    p.advance(Duration::from_secs(10));
    pump(&mut p, &mut f);
    assert_eq!(
        f.sent("sendChatAction").len(),
        3,
        "no typing after the turn"
    );
}

#[test]
fn a_reply_that_keeps_failing_is_kept_as_undelivered() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.send_failure = Some((
        502,
        json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
    ));
    f.dm(222, "hi");
    pump(&mut p, &mut f);
    for _ in 0..6 {
        p.advance(Duration::from_secs(60));
        pump(&mut p, &mut f);
    }
    assert_eq!(f.sent("sendMessage").len(), 5, "five attempts, then kept");
    let op = admin(&mut p);
    let status = p.call(op, "channels.status", None).unwrap();
    let account = &status["channelAccounts"]["telegram"][0];
    assert_eq!(account["undeliveredReplies"][0]["to"], "222", "{account}");
    assert!(
        account["undeliveredReplies"][0]["error"]
            .as_str()
            .unwrap()
            .contains("502")
    );
}

#[test]
fn a_reply_held_while_its_account_was_stopped_is_sent_once() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.hold_model = true;
    f.dm(222, "hi");
    pump(&mut p, &mut f);
    let op = admin(&mut p);
    let stop = json!({"channel": "telegram"});
    p.call(op, "channels.stop", Some(stop.clone())).unwrap();
    // The answer comes while the account is stopped; every store batch meanwhile passes
    // over the waiting reply.
    f.hold_model = false;
    pump(&mut p, &mut f);
    for _ in 0..3 {
        p.advance(Duration::from_secs(5));
        pump(&mut p, &mut f);
    }
    assert!(f.sent("sendMessage").is_empty(), "not while stopped");
    f.hold_sends = true;
    p.call(op, "channels.start", Some(stop)).unwrap();
    pump(&mut p, &mut f);
    for _ in 0..4 {
        p.advance(Duration::from_secs(30));
        pump(&mut p, &mut f);
    }
    let sends = |p: &Sim| {
        p.held_http()
            .iter()
            .filter(|(_, r)| r.url.ends_with("/sendMessage"))
            .count()
    };
    assert_eq!(
        sends(&p),
        1,
        "one send in flight, whatever timers were armed"
    );
    f.hold_sends = false;
    pump(&mut p, &mut f);
    p.advance(Duration::from_secs(120));
    pump(&mut p, &mut f);
    assert_eq!(f.sent("sendMessage").len(), 1, "the reply went out once");
    assert_eq!(sends(&p), 0);
}

#[test]
fn a_proxy_is_refused_for_its_account_only() {
    let (mut p, f) = start(r#"proxy: "http://proxy.test:3128","#, "");
    assert!(f.calls.is_empty(), "the account never starts");
    let op = admin(&mut p);
    let status = p.call(op, "channels.status", None).unwrap();
    let err = status["channelAccounts"]["telegram"][0]["lastError"]
        .as_str()
        .unwrap();
    assert!(err.contains("channels.telegram.proxy"), "{err}");
    assert!(p.call(op, "health", None).is_ok());
}

#[test]
fn polling_waits_while_too_many_messages_are_unserved() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.hold_model = true;
    for i in 0..600 {
        f.dm(1000 + i, "x");
    }
    pump(&mut p, &mut f);
    assert!(held_polls(&p).is_empty(), "600 unserved: no poll");
    f.hold_model = false;
    // One session (agent:main:main): its queued turns start after the lane's debounce.
    for _ in 0..600 {
        pump(&mut p, &mut f);
        if f.model_calls == 600 {
            break;
        }
        p.advance(Duration::from_secs(1));
    }
    assert_eq!(f.model_calls, 600);
    assert_eq!(f.sent("sendMessage").len(), 600);
    assert_eq!(held_polls(&p).len(), 1, "polling resumed");
}

#[test]
fn a_failed_write_does_not_leave_a_chat_stuck() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.dm(222, "first");
    pump(&mut p, &mut f);
    assert_eq!(f.sent("sendMessage").len(), 1);
    p.hold_store_writes(true);
    f.dm(222, "second");
    pump(&mut p, &mut f);
    // The model answered while the message's batch was in flight: the turn's batch is
    // queued behind it.
    assert!(p.write_next_batch(), "the update batch");
    pump(&mut p, &mut f);
    p.write_store(false); // the turn's batch fails; the turn ran anyway
    pump(&mut p, &mut f);
    assert_eq!(f.model_calls, 2);
    assert_eq!(
        f.sent("sendMessage").len(),
        1,
        "no reply from a failed batch"
    );
    p.hold_store_writes(false);
    p.write_store(true);
    // The tick's rewrite, with the answer and its outbox row: the reply leaves once durable.
    p.advance(Duration::from_secs(31));
    pump(&mut p, &mut f);
    let sent = f.sent("sendMessage");
    assert_eq!(sent.last().unwrap()["text"], "echo second", "{sent:?}");
    f.dm(222, "third");
    pump(&mut p, &mut f);
    assert_eq!(
        f.sent("sendMessage").last().unwrap()["text"],
        "echo third",
        "the lane is free"
    );
}

#[test]
fn channel_messages_queue_as_followups_even_under_collect() {
    let (mut p, mut f) = start(
        r#"dmPolicy: "open", allowFrom: ["*"],"#,
        r#"messages: { queue: { mode: "collect" } },"#,
    );
    f.hold_model = true;
    f.dm(222, "a");
    f.dm(333, "b");
    f.dm(444, "c");
    pump(&mut p, &mut f);
    f.hold_model = false;
    for _ in 0..10 {
        pump(&mut p, &mut f);
        p.advance(Duration::from_secs(1));
    }
    let mut replies: Vec<(String, String)> = f
        .sent("sendMessage")
        .iter()
        .map(|b| {
            (
                b["chat_id"].as_str().unwrap().to_string(),
                b["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    replies.sort();
    assert_eq!(
        replies,
        [
            ("222".to_string(), "echo a".to_string()),
            ("333".to_string(), "echo b".to_string()),
            ("444".to_string(), "echo c".to_string()),
        ],
        "one turn per message, each answered in its own chat"
    );
    assert_eq!(f.model_calls, 3);
}

/// One step of the world, atomic: the oldest held store batch written, or one held request
/// answered (`http_first` says which goes first when both can), or, when neither can, the
/// delivery records' delay passed and the batch it issued written; false when nothing can move.
fn step(p: &mut Sim, f: &mut Fakes, http_first: bool) -> bool {
    if !http_first && p.write_next_batch() {
        return true;
    }
    for (id, req) in p.held_http().to_vec() {
        if let Some(results) = f.answer(&req) {
            for r in results {
                p.http_result(id, r);
            }
            return true;
        }
    }
    if http_first && p.write_next_batch() {
        return true;
    }
    p.advance(DELIVERY_RECORD_DELAY);
    p.write_next_batch()
}

/// The pairing code in a pairing message.
fn code_in(text: &str) -> String {
    let start = text.find("<pre><code>").expect("a code block") + "<pre><code>".len();
    text[start..start + 8].to_string()
}

/// The codes of the pairing messages sent so far, in order.
fn pairing_codes(f: &Fakes) -> Vec<String> {
    f.sent("sendMessage")
        .iter()
        .filter_map(|b| b["text"].as_str())
        .filter(|t| t.contains("Pairing code:"))
        .map(code_in)
        .collect()
}

/// Whether the simulated disk holds an outbox row (a message not recorded as delivered).
fn outbox_on_disk(p: &Sim) -> bool {
    p.sessions
        .channel_rows
        .keys()
        .any(|(kind, _)| *kind == ChannelRowKind::Outbox)
}

/// Approve every pairing request on the disk as `clawgate pairing approve` does while no
/// gateway runs (the request row goes, the approval row comes); whether there was one.
fn approve_on_disk(p: &mut Sim) -> bool {
    let mut pairing = ChannelPairing::default();
    let rows = p.sessions.stored_channel_rows();
    for r in &rows {
        pairing.restore(r.kind, r.row.clone());
    }
    let ids: Vec<String> = pairing.requests().map(|r| r.request_id.clone()).collect();
    let mut changes = Vec::new();
    for id in &ids {
        pairing.approve(id, 0, &mut changes);
    }
    for c in changes {
        match c {
            StoreChange::PutChannelRow { kind, key, row } => {
                p.sessions.channel_rows.insert((kind, key), row.to_value());
            }
            StoreChange::DeleteChannelRow { kind, key } => {
                p.sessions.channel_rows.remove(&(kind, key));
            }
            _ => {}
        }
    }
    !ids.is_empty()
}

/// An unknown DM, the gateway killed after each step of its handling (every store batch
/// written and every request answered is a step, in two orders), restarted from what the
/// disk holds, the update redelivered while its offset was not durable: one pending code
/// for the sender, and one pairing message, except when the kill fell between Telegram
/// accepting that message and the store recording it (the outbox row still on disk): then
/// the message goes once more, with the same code. If the request is approved while the
/// gateway is down, the message not yet recorded as sent is not sent again.
#[test]
fn a_kill_at_any_point_leaves_one_pairing_code_and_one_message() {
    let run = |kill_at: Option<usize>, http_first: bool, approve_while_down: bool| {
        let (mut p, mut f) = start("", "");
        p.hold_store_writes(true);
        f.dm(222, "hi");
        let mut steps = 0;
        while kill_at != Some(steps) && step(&mut p, &mut f, http_first) {
            steps += 1;
        }
        let Some(at) = kill_at else {
            return steps;
        };
        let sent_before = pairing_codes(&f).len();
        let unrecorded = sent_before == 1 && outbox_on_disk(&p);
        let approved = approve_while_down && approve_on_disk(&mut p);
        let mut p = p.crash_and_restart(config("", ""));
        while step(&mut p, &mut f, http_first) {}
        let codes = pairing_codes(&f);
        let why = format!(
            "killed after step {at} (http first: {http_first}, approved: {approved}): {codes:?}"
        );
        assert!(codes.iter().all(|c| *c == codes[0]), "one code: {why}");
        let op = admin(&mut p);
        let list = p.call(op, "channels.pairing.list", None).unwrap();
        let pending = list["requests"].as_array().unwrap();
        if approved {
            assert!(pending.is_empty(), "{why}");
            assert_eq!(
                codes.len(),
                sent_before,
                "no stale code after the approval: {why}"
            );
        } else {
            assert_eq!(pending.len(), 1, "one pending request: {why}");
            let on_disk: Vec<&Value> = p
                .sessions
                .channel_rows
                .iter()
                .filter(|((kind, _), _)| *kind == ChannelRowKind::PairingRequest)
                .map(|(_, row)| row)
                .collect();
            assert_eq!(on_disk.len(), 1, "{why}");
            assert_eq!(on_disk[0]["code"], codes[0].as_str(), "{why}");
            let expected = if unrecorded { 2 } else { 1 };
            assert_eq!(codes.len(), expected, "{why}");
        }
        assert_eq!(f.model_calls, 0, "{why}");
        steps
    };
    for http_first in [false, true] {
        let total = run(None, http_first, false);
        assert!(total >= 4, "{total} steps");
        for at in 0..=total {
            run(Some(at), http_first, false);
            run(Some(at), http_first, true);
        }
    }
}

/// A gateway under `tools.exec.mode: "ask"` whose Telegram DMs are open to 222 (the owner,
/// in `commands.ownerAllowFrom`) and 333, with a model that runs `command` in each turn.
fn asking(command: &'static str) -> (Sim, Fakes) {
    let (p, mut f) = start(OPEN_TO_TWO, ASK_OWNER_222);
    f.exec_command = Some(command);
    (p, f)
}

const OPEN_TO_TWO: &str = r#"dmPolicy: "allowlist", allowFrom: ["222", "333"]"#;
const ASK_OWNER_222: &str = r#"commands: { ownerAllowFrom: ["telegram:222"] },
    tools: { exec: { mode: "ask", approvalTimeoutSeconds: 10 } }"#;

/// The texts sent to chat `chat`, in order.
fn texts_to(f: &Fakes, chat: i64) -> Vec<String> {
    let chat = chat.to_string();
    f.sent("sendMessage")
        .into_iter()
        .filter(|b| b["chat_id"] == chat.as_str())
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The id of the approval the chat was asked for (the last pending message's).
fn asked_id(f: &Fakes, chat: i64) -> String {
    let texts = texts_to(f, chat);
    let asked = texts
        .iter()
        .rev()
        .find(|t| t.contains("Approval required."))
        .expect("an approval message");
    let at = asked.find("/approve ").expect("the command to answer") + "/approve ".len();
    let id = asked[at..].split_whitespace().next().unwrap().to_string();
    assert!(
        asked.contains(&format!("/approve {id} allow-always")),
        "{asked}"
    );
    assert!(asked.contains(&format!("/approve {id} deny")), "{asked}");
    assert!(asked.contains("uname -s"), "the command is shown: {asked}");
    id
}

fn ran(code: i32, output: &str) -> Result<clawgate_core::ExecOutput, String> {
    Ok(clawgate_core::ExecOutput {
        exit_code: Some(code),
        output: output.into(),
        truncated: false,
        timed_out: false,
        duration_ms: 1,
    })
}

#[test]
fn the_owner_approves_from_the_chat_and_a_stranger_cannot() {
    let (mut p, mut f) = asking("uname -s");
    f.dm(333, "which os");
    pump(&mut p, &mut f);
    assert!(
        p.execs.is_empty(),
        "a sender who is not the owner runs nothing"
    );
    assert!(
        texts_to(&f, 333)
            .iter()
            .all(|t| !t.contains("Approval required."))
    );

    f.dm(222, "which os");
    pump(&mut p, &mut f);
    let id = asked_id(&f, 222);
    assert!(p.execs.is_empty(), "nothing runs before the answer");
    let model_calls = f.model_calls;

    // A stranger's /approve: refused as upstream refuses it, nothing runs.
    f.dm(333, &format!("/approve {id} allow-once"));
    pump(&mut p, &mut f);
    assert_eq!(
        texts_to(&f, 333).last().unwrap(),
        "❌ You are not authorized to approve exec requests on Telegram."
    );
    assert!(p.execs.is_empty());

    // A malformed one from the owner: the usage.
    f.dm(222, "/approve");
    pump(&mut p, &mut f);
    let usage = texts_to(&f, 222).last().unwrap().clone();
    assert!(
        usage.starts_with("Usage: /approve &lt;id&gt; &lt;decision&gt;"),
        "{usage}"
    );

    f.dm(222, &format!("/approve {id} allow-once"));
    pump(&mut p, &mut f);
    assert_eq!(
        texts_to(&f, 222).last().unwrap(),
        &format!("✅ Approval allow-once submitted for {id}.")
    );
    assert_eq!(f.model_calls, model_calls, "an /approve is no agent turn");
    let (work, request) = p.execs[0].clone();
    assert_eq!(request.command, "uname -s");
    p.exec_result(work, ran(0, "Linux\n"));
    pump(&mut p, &mut f);
    let reply = texts_to(&f, 222).last().unwrap().clone();
    assert!(
        reply.contains("Linux"),
        "the turn's reply comes back: {reply}"
    );
    for line in [
        "/approve from telegram:333 refused: not in commands.ownerAllowFrom",
        "approved (allow-once) by Chat approval (telegram:222)",
        "exec \"uname -s\": denied: exec is only for the gateway's owner",
    ] {
        assert!(p.logs.iter().any(|l| l.message.contains(line)), "{line}");
    }
}

#[test]
fn an_unanswered_approval_tells_the_chat_and_the_turn() {
    let (mut p, mut f) = asking("uname -s");
    let op = admin(&mut p);
    f.dm(222, "which os");
    pump(&mut p, &mut f);
    let id = asked_id(&f, 222);
    p.advance(Duration::from_secs(11));
    pump(&mut p, &mut f);
    assert!(p.execs.is_empty());
    let texts = texts_to(&f, 222);
    let expired = format!("⏱️ Exec approval expired. ID: {id}");
    let at = texts.iter().position(|t| *t == expired).expect(&expired);
    assert!(
        texts[at + 1..]
            .iter()
            .any(|t| t.contains("tools.exec.approvalTimeoutSeconds")),
        "the turn was told and its reply came back: {texts:?}"
    );
    let h = p.chat_history(op, json!({"sessionKey": "agent:main:main"}));
    assert!(h.to_string().contains("within 10 s"), "{h}");
    f.dm(222, &format!("/approve {id} allow-once"));
    pump(&mut p, &mut f);
    assert_eq!(
        texts_to(&f, 222).last().unwrap(),
        "❌ Failed to submit approval: approval already resolved"
    );
    assert!(p.execs.is_empty());
}

#[test]
fn the_operator_and_the_chat_resolve_one_approval_once() {
    for operator_first in [true, false] {
        let (mut p, mut f) = asking("uname -s");
        let op = admin(&mut p);
        f.dm(222, "which os");
        pump(&mut p, &mut f);
        let id = asked_id(&f, 222);
        let resolve = |p: &mut Sim| {
            p.call(
                op,
                "exec.approval.resolve",
                Some(json!({"id": id, "decision": "allow-once"})),
            )
        };
        let chat = format!("/approve {id} allow-once");
        if operator_first {
            assert_eq!(resolve(&mut p).unwrap(), json!({"ok": true}));
            f.dm(222, &chat);
            pump(&mut p, &mut f);
            let texts = texts_to(&f, 222);
            assert!(
                texts.contains(&format!(
                    "✅ Exec approval allow-once. Resolved by cli. ID: {id}"
                )),
                "{texts:?}"
            );
            assert_eq!(
                texts.last().unwrap(),
                "❌ Failed to submit approval: approval already resolved"
            );
        } else {
            f.dm(222, &chat);
            pump(&mut p, &mut f);
            let e = resolve(&mut p).unwrap_err();
            assert_eq!(e.message, "approval already resolved");
        }
        assert_eq!(p.execs.len(), 1, "it runs once");
    }
}

#[test]
fn allow_always_from_the_chat_is_durable_before_it_runs_and_survives_a_restart() {
    let (mut p, mut f) = asking("uname -s");
    f.dm(222, "which os");
    pump(&mut p, &mut f);
    let id = asked_id(&f, 222);
    p.hold_store_writes(true);
    f.dm(222, &format!("/approve {id} allow-always"));
    pump(&mut p, &mut f);
    assert!(p.execs.is_empty(), "not before the grant is durable");
    p.write_store(true);
    p.hold_store_writes(false);
    assert_eq!(p.execs.len(), 1);
    let (work, _) = p.execs[0].clone();
    p.exec_result(work, ran(0, "Linux\n"));
    pump(&mut p, &mut f);

    let mut p = p.crash_and_restart(config(OPEN_TO_TWO, ASK_OWNER_222));
    let mut f = Fakes {
        exec_command: Some("uname -s"),
        next_update: 100,
        ..Fakes::default()
    };
    pump(&mut p, &mut f);
    let op = admin(&mut p);
    let snapshot = p.call(op, "exec.approvals.get", Some(json!({}))).unwrap();
    assert_eq!(snapshot["exists"], true);
    let entry = &snapshot["file"]["agents"]["main"]["allowlist"][0];
    assert_eq!(entry["source"], "allow-always");
    assert!(entry["pattern"].as_str().unwrap().starts_with("=command:"));
    f.dm(222, "which os again");
    pump(&mut p, &mut f);
    assert_eq!(p.execs.len(), 1, "runs without asking");
    assert!(
        texts_to(&f, 222)
            .iter()
            .all(|t| !t.contains("Approval required."))
    );
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("allowed by an allow-always grant"))
    );
    // Another command still asks.
    f.exec_command = Some("uname -a");
    let (work, _) = p.execs[0].clone();
    p.exec_result(work, ran(0, "Linux\n"));
    pump(&mut p, &mut f);
    f.dm(222, "and all of it");
    pump(&mut p, &mut f);
    assert!(p.execs.is_empty());
    assert!(
        texts_to(&f, 222)
            .last()
            .unwrap()
            .contains("Approval required.")
    );
}

/// Only a turn started alone lingers: a poll that brings messages from two chats starts two
/// turns at once, and neither batch is flagged (the second follows the first at once, and the
/// poll's offset waits for both); two messages of one chat start one turn now, which does.
#[test]
fn only_a_turn_started_alone_lingers() {
    let flags = |dms: &[(i64, &str)]| {
        let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
        p.hold_store_writes(true);
        f.hold_model = true;
        for (from, text) in dms {
            f.dm(*from, text);
        }
        pump(&mut p, &mut f);
        let held: Vec<(String, bool)> = p
            .held_batches()
            .iter()
            .map(|(c, linger)| (format!("{c:?}"), *linger))
            .collect();
        held
    };
    let burst = flags(&[(222, "from a"), (333, "from b")]);
    assert_eq!(burst.len(), 2, "a batch for each turn: {burst:?}");
    assert!(burst[0].0.contains("\"from a\"") && burst[1].0.contains("\"from b\""));
    assert!(
        burst.iter().all(|(_, linger)| !linger),
        "no turn of the burst lingers: {burst:?}"
    );
    let one_chat = flags(&[(222, "first"), (222, "second")]);
    assert_eq!(
        one_chat.len(),
        1,
        "one turn at a time in a chat: {one_chat:?}"
    );
    assert!(one_chat[0].0.contains("\"first\""));
    assert!(one_chat[0].1, "the chat's one turn lingers");
}

/// The message's turn asks the model in the step that queues the batch storing the message
/// (flagged to linger: its answer's batch is due at once). The model answering before that
/// batch is durable is processed at once: the turn ends, and the answer, the message served
/// and the reply's outbox row go in the next batch, queued behind the first while it is in
/// flight; but nothing shows (no reply, no event for the session's watchers) until the first
/// is durable, and the reply leaves only once the second is too, so a reply the user saw is
/// in the transcript after a crash. The turn ended while gated: what it held plays out when
/// the gate opens.
#[test]
fn the_answer_is_stored_behind_the_message_and_the_reply_waits_for_both() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    let (op, _) = watching_main(&mut p);
    p.hold_store_writes(true);
    let before = p.batches.len();
    f.dm(222, "early");
    pump(&mut p, &mut f);
    assert_eq!(f.model_calls, 1, "the model request left beside the commit");
    assert!(
        f.sent("sendMessage").is_empty(),
        "no reply before the commit"
    );
    assert!(held_polls(&p).is_empty(), "no offset before the commit");
    let held: Vec<(String, bool)> = p
        .held_batches()
        .iter()
        .map(|(c, linger)| (format!("{c:?}"), *linger))
        .collect();
    assert_eq!(
        held.len(),
        2,
        "the answer's batch is queued behind: {held:?}"
    );
    for part in ["Ingress", "Offset", "\"early\""] {
        assert!(held[0].0.contains(part), "{part} in the message's batch");
    }
    for part in ["echo early", "Outbox", "done"] {
        assert!(held[1].0.contains(part), "{part} in the answer's batch");
    }
    assert_eq!(
        (held[0].1, held[1].1),
        (true, false),
        "only the message's batch lingers"
    );
    let shown = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::Event { event, .. } if event == "chat" || event == "agent"))
    };
    assert!(!shown(&p.events(op)), "the turn shows nothing yet");
    assert!(p.write_next_batch(), "the message's batch");
    assert_eq!(p.batches.len(), before + 1);
    let events = p.events(op);
    assert!(shown(&events), "the turn's events once it is durable");
    let finals = events
        .iter()
        .filter(|e| matches!(e, Event::Event { event, payload, .. } if event == "chat" && payload["state"] == "final"))
        .count();
    assert_eq!(finals, 1, "the turn that ended while gated shows its end");
    assert!(
        f.sent("sendMessage").is_empty(),
        "no reply before the batch recording it is durable"
    );
    assert!(p.write_next_batch(), "the turn's batch");
    pump(&mut p, &mut f);
    let texts: Vec<&Value> = f.sent("sendMessage").iter().map(|b| &b["text"]).collect();
    assert_eq!(texts, [&json!("echo early")]);
}

/// The watchers of a session see a turn that ran while its message's batch was in flight as
/// they see one that ran after it: the same events in the same order, the answer's
/// `session.message` after its `chat` final. A second message of the chat, queued behind the
/// first and started once the first ended (while still gated), has its `session.message`
/// after the first's answer, not ahead of it.
#[test]
fn a_gated_turn_shows_its_events_in_order_and_the_next_message_after_them() {
    let watched = |hold: bool| {
        let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
        let (op, _) = watching_main(&mut p);
        p.hold_store_writes(hold);
        f.dm(222, "one");
        f.dm(222, "two");
        pump(&mut p, &mut f);
        // The second message's turn waits for the lane's debounce.
        p.advance(Duration::from_secs(5));
        pump(&mut p, &mut f);
        p.hold_store_writes(false);
        p.write_store(true);
        pump(&mut p, &mut f);
        let seen: Vec<String> = p
            .events(op)
            .into_iter()
            .filter_map(|e| match e {
                Event::Event { event, payload, .. } => Some(format!(
                    "{event} {} {} {} {}",
                    payload["runId"].as_str().unwrap_or_default(),
                    payload["state"]
                        .as_str()
                        .or(payload["stream"].as_str())
                        .unwrap_or_default(),
                    payload["data"]["phase"].as_str().unwrap_or_default(),
                    payload["messageSeq"],
                )),
                _ => None,
            })
            .collect();
        assert_eq!(f.sent("sendMessage").len(), 2);
        seen
    };
    let gated = watched(true);
    assert_eq!(gated, watched(false));
    let seqs: Vec<&str> = gated
        .iter()
        .filter(|e| e.starts_with("session.message"))
        .filter_map(|e| e.rsplit(' ').next())
        .collect();
    assert_eq!(seqs, ["1", "2", "3", "4"], "{gated:#?}");
}

/// A watcher hears a channel turn live, as upstream's `sessions.messages.subscribe`
/// stream: what the turn does after it subscribed, not what it did before, even when that
/// was held back by the turn's gate (events no one heard were never built). Subscribing while
/// the turn waits for its model (its message's batch still in flight), it hears the rest of
/// the turn whole: the same events, with the same `seq`s, as a watcher there from the start.
#[test]
fn a_watcher_who_subscribes_during_a_gated_turn_hears_the_rest_of_it() {
    let heard = |late: bool| {
        let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
        let op = admin(&mut p);
        let subscribe = |p: &mut Sim| {
            // Its answer waits for the batches in flight; the subscription holds at once.
            let params = json!({"key": "agent:main:main"});
            p.request(op, "sessions.messages.subscribe", Some(params));
        };
        if !late {
            subscribe(&mut p);
        }
        p.hold_store_writes(true);
        f.hold_model = true;
        f.dm(222, "one");
        pump(&mut p, &mut f);
        assert!(
            p.held_http()
                .iter()
                .any(|(_, r)| r.url.starts_with("http://model.test"))
        );
        if late {
            subscribe(&mut p);
        }
        f.hold_model = false;
        pump(&mut p, &mut f);
        assert!(!shown_to(&mut p, op), "the gated turn shows nothing yet");
        p.hold_store_writes(false);
        p.write_store(true);
        pump(&mut p, &mut f);
        assert_eq!(f.sent("sendMessage").len(), 1);
        turn_events(&mut p, op)
    };
    let whole = heard(false);
    let rest = heard(true);
    assert!(
        whole.iter().any(|e| e.starts_with("agent lifecycle start")),
        "{whole:#?}"
    );
    assert_eq!(
        rest.first().map(String::as_str),
        Some("agent assistant  5"),
        "the late watcher's stream starts with the answer's text: {rest:#?}"
    );
    assert!(whole.ends_with(&rest), "{whole:#?}\n{rest:#?}");
    assert!(
        rest.iter().any(|e| e.starts_with("chat final")),
        "{rest:#?}"
    );
}

/// Whether `op` was sent any `chat` or `agent` event since it was last asked.
fn shown_to(p: &mut Sim, op: ConnId) -> bool {
    !turn_events(p, op).is_empty()
}

/// The `chat` and `agent` events sent to `op` since it was last asked, as
/// `"{event} {state or stream} {phase} {seq}"`.
fn turn_events(p: &mut Sim, op: ConnId) -> Vec<String> {
    p.events(op)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event { event, payload, .. } if event == "chat" || event == "agent" => {
                Some(format!(
                    "{event} {} {} {}",
                    payload["state"]
                        .as_str()
                        .or(payload["stream"].as_str())
                        .unwrap_or_default(),
                    payload["data"]["phase"].as_str().unwrap_or_default(),
                    payload["seq"],
                ))
            }
            _ => None,
        })
        .collect()
}

/// A failed write of the message's batch delivers nothing: no reply and no offset while the
/// store fails (the turn's answer waits with its rows), and once the rewrite that follows
/// is durable the message is answered once.
#[test]
fn a_failed_message_batch_delivers_nothing_until_it_is_rewritten() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    p.hold_store_writes(true);
    f.dm(222, "lost");
    pump(&mut p, &mut f);
    p.write_store(false);
    pump(&mut p, &mut f);
    p.write_store(false);
    pump(&mut p, &mut f);
    assert!(
        f.sent("sendMessage").is_empty(),
        "nothing sent from a failed batch"
    );
    assert!(held_polls(&p).is_empty(), "no offset confirmed");
    p.hold_store_writes(false);
    p.advance(Duration::from_secs(31));
    pump(&mut p, &mut f);
    let texts: Vec<&Value> = f.sent("sendMessage").iter().map(|b| &b["text"]).collect();
    assert_eq!(
        texts,
        [&json!("echo lost")],
        "answered once after the rewrite"
    );
    p.advance(DELIVERY_RECORD_DELAY);
    assert!(recorded_as_answered(&p));
}

/// A reply's delivery record (its outbox row deleted) is no batch of its own: it rides with
/// the next message's batch, whose commit then waits for one fsync, not two; with no next
/// batch it is written alone once [`DELIVERY_RECORD_DELAY`] has passed.
#[test]
fn a_delivery_record_rides_with_the_next_batch_or_goes_alone_after_its_delay() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    let has_outbox_delete = |batch: &[StoreChange]| {
        batch.iter().any(|c| {
            matches!(c, StoreChange::DeleteChannelRow { kind, .. } if *kind == ChannelRowKind::Outbox)
        })
    };
    f.dm(222, "one");
    pump(&mut p, &mut f);
    assert_eq!(f.sent("sendMessage").len(), 1);
    assert!(outbox_on_disk(&p), "the record waits for a batch");
    let before = p.batches.len();
    f.dm(222, "two");
    pump(&mut p, &mut f);
    assert_eq!(f.sent("sendMessage").len(), 2);
    let message_batch = &p.batches[before];
    assert!(
        has_outbox_delete(message_batch),
        "the first reply's record rides with the second message's batch: {message_batch:?}"
    );
    assert!(outbox_on_disk(&p), "the second reply's record waits");
    let before = p.batches.len();
    p.advance(DELIVERY_RECORD_DELAY - Duration::from_millis(1));
    assert_eq!(p.batches.len(), before, "nothing before the delay");
    p.advance(Duration::from_millis(1));
    assert_eq!(p.batches.len(), before + 1, "the record alone after it");
    assert!(has_outbox_delete(&p.batches[before]));
    assert!(recorded_as_answered(&p));
}

/// Whether the simulated disk holds a served message and no outbox row: the reply is
/// recorded as delivered.
fn recorded_as_answered(p: &Sim) -> bool {
    let served = p
        .sessions
        .channel_rows
        .iter()
        .any(|((kind, _), row)| *kind == ChannelRowKind::Ingress && row["state"] == "done");
    served && !outbox_on_disk(p)
}

/// Whether the simulated disk holds the answer "echo hi" in a transcript.
fn answer_on_disk(p: &Sim) -> bool {
    p.sessions
        .transcripts
        .values()
        .flat_map(|t| t.values())
        .any(|m| m.to_string().contains("echo hi"))
}

/// Whether the simulated disk holds the message's queue row.
fn ingress_on_disk(p: &Sim) -> bool {
    p.sessions
        .channel_rows
        .keys()
        .any(|(kind, _)| *kind == ChannelRowKind::Ingress)
}

/// [`step`] as the store's writer runs with a model that answers at once: held requests are
/// answered first, and the held batches are written in one transaction (the message's
/// batch, flagged to linger, with the answer's batch queued behind it).
fn step_merged(p: &mut Sim, f: &mut Fakes) -> bool {
    for (id, req) in p.held_http().to_vec() {
        if let Some(results) = f.answer(&req) {
            for r in results {
                p.http_result(id, r);
            }
            return true;
        }
    }
    if p.write_together(true) {
        return true;
    }
    p.advance(DELIVERY_RECORD_DELAY);
    p.write_together(true)
}

/// How the kill simulation orders its steps.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Batches written one by one, before requests are answered.
    WritesFirst,
    /// Batches written one by one, after requests are answered.
    HttpFirst,
    /// Requests answered first, the held batches written in one transaction.
    Merged,
}

impl Order {
    fn step(self, p: &mut Sim, f: &mut Fakes) -> bool {
        match self {
            Order::WritesFirst => step(p, f, false),
            Order::HttpFirst => step(p, f, true),
            Order::Merged => step_merged(p, f),
        }
    }
}

/// An allowed DM, the gateway killed after each step of its handling (every store batch
/// written and every request answered, the model's answer before or after the commit, or
/// the message's batch and the answer's in one transaction: killed before it, with both
/// uncommitted, and after it), restarted from what the disk holds: the reply never left
/// before the message and the answer were on disk, and the message is answered once, or
/// twice only when the kill fell between Telegram accepting the reply and the store
/// recording it.
#[test]
fn a_kill_at_any_point_answers_a_message_once() {
    let open = r#"dmPolicy: "open", allowFrom: ["*"],"#;
    let replies = |f: &Fakes| {
        f.sent("sendMessage")
            .iter()
            .filter(|b| b["text"] == "echo hi")
            .count()
    };
    let run = |kill_at: Option<usize>, order: Order| {
        let (mut p, mut f) = start(open, "");
        p.hold_store_writes(true);
        f.dm(222, "hi");
        let mut steps = 0;
        let mut merged = false;
        while kill_at != Some(steps) && order.step(&mut p, &mut f) {
            steps += 1;
            let held = p.held_batches();
            merged |= held.len() == 2 && held[0].1;
            assert!(
                replies(&f) == 0 || (ingress_on_disk(&p) && answer_on_disk(&p)),
                "a reply before its message and its answer were durable (step {steps}, {order:?})"
            );
        }
        let Some(at) = kill_at else {
            assert_eq!(replies(&f), 1);
            return (steps, merged);
        };
        let unrecorded = replies(&f) == 1 && !recorded_as_answered(&p);
        let mut p = p.crash_and_restart(config(open, ""));
        while order.step(&mut p, &mut f) {}
        let why = format!("killed after step {at} ({order:?})");
        let expected = if unrecorded { 2 } else { 1 };
        assert_eq!(replies(&f), expected, "{why}");
        (steps, merged)
    };
    for order in [Order::WritesFirst, Order::HttpFirst, Order::Merged] {
        let (total, merged) = run(None, order);
        assert!(total >= 4, "{total} steps");
        if !matches!(order, Order::WritesFirst) {
            assert!(
                merged,
                "the answer's batch queued behind the message's ({order:?})"
            );
        }
        for at in 0..=total {
            run(Some(at), order);
        }
    }
}

/// The message's batch and the answer's fail together (one transaction): nothing is sent
/// and no offset confirmed while the store fails; the rewrite that follows carries both,
/// and once it is durable the message is answered exactly once.
#[test]
fn a_failed_merged_transaction_ends_in_one_reply_after_the_rewrite() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    p.hold_store_writes(true);
    f.dm(222, "lost");
    pump(&mut p, &mut f);
    assert_eq!(
        p.held_batches().len(),
        2,
        "the answer's batch behind the message's"
    );
    assert!(p.write_together(false));
    pump(&mut p, &mut f);
    assert!(
        f.sent("sendMessage").is_empty(),
        "nothing sent from a failed transaction"
    );
    assert!(held_polls(&p).is_empty(), "no offset confirmed");
    assert_eq!(f.model_calls, 1, "the turn is not run again");
    p.hold_store_writes(false);
    p.advance(Duration::from_secs(31));
    pump(&mut p, &mut f);
    p.advance(Duration::from_secs(31));
    pump(&mut p, &mut f);
    let texts: Vec<&Value> = f.sent("sendMessage").iter().map(|b| &b["text"]).collect();
    assert_eq!(
        texts,
        [&json!("echo lost")],
        "answered once after the rewrite"
    );
    assert_eq!(f.model_calls, 1);
    p.advance(DELIVERY_RECORD_DELAY);
    assert!(recorded_as_answered(&p));
    assert!(answer_on_disk_text(&p, "echo lost"));
}

/// The message's batch fails before the model answers: the gate opens (the turn goes on),
/// and the answer that comes after it goes in the rewrite, which carries the message's rows
/// again; the message is answered once, after the rewrite is durable.
#[test]
fn a_message_batch_failing_before_the_answer_is_answered_once_after_the_rewrite() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    p.hold_store_writes(true);
    f.hold_model = true;
    f.dm(222, "slow");
    pump(&mut p, &mut f);
    assert_eq!(p.held_batches().len(), 1, "the message's batch alone");
    p.write_store(false);
    f.hold_model = false;
    pump(&mut p, &mut f);
    let held = p.held_batches();
    assert_eq!(held.len(), 1, "the answer's batch");
    assert_eq!(
        held[0].0.first(),
        Some(&StoreChange::ClearPairing),
        "the rewrite, with the message's rows again"
    );
    assert!(format!("{:?}", held[0].0).contains("\"slow\""));
    p.hold_store_writes(false);
    p.write_store(true);
    pump(&mut p, &mut f);
    assert_eq!(texts_to(&f, 222), ["echo slow"]);
    assert_eq!(f.model_calls, 1);
}

/// Whether the simulated disk holds `text` in a transcript.
fn answer_on_disk_text(p: &Sim, text: &str) -> bool {
    p.sessions
        .transcripts
        .values()
        .flat_map(|t| t.values())
        .any(|m| m.to_string().contains(text))
}

/// A turn whose model fails while its message's batch is in flight ends then: its failure
/// notice is stored behind the message, its error events wait for the message's batch, and
/// the notice is sent once, after both batches.
#[test]
fn a_turn_failing_while_gated_shows_its_error_after_the_commit_and_says_so_once() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    let (op, _) = watching_main(&mut p);
    p.hold_store_writes(true);
    f.model_error = Some(400);
    f.dm(222, "fails");
    pump(&mut p, &mut f);
    let held = p.held_batches();
    assert_eq!(held.len(), 2, "the failure's batch behind the message's");
    assert!(format!("{:?}", held[1].0).contains("Agent failed before reply"));
    let errors = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Event { event, payload, .. } if event == "chat" && payload["state"] == "error"))
            .count()
    };
    assert_eq!(errors(&p.events(op)), 0, "nothing shows before the commit");
    assert!(p.write_next_batch());
    assert_eq!(
        errors(&p.events(op)),
        2,
        "the error and the notice, after it"
    );
    assert!(f.sent("sendMessage").is_empty());
    assert!(p.write_next_batch());
    pump(&mut p, &mut f);
    let texts: Vec<String> = texts_to(&f, 222);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with("⚠️ Agent failed before reply: "),
        "{texts:?}"
    );
}

/// `chat.abort` of a turn whose message's batch is in flight: the turn ends at once (its
/// request cancelled), but its events, the abort's among them, wait for the batch and play
/// out in order; the abort is answered after it.
#[test]
fn an_aborted_gated_turn_shows_its_start_then_its_abort_after_the_commit() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    let (op, key) = watching_main(&mut p);
    p.hold_store_writes(true);
    f.hold_model = true;
    f.dm(222, "stop me");
    pump(&mut p, &mut f);
    let rid = p.request(op, "chat.abort", Some(json!({"sessionKey": key})));
    assert_eq!(p.cancelled.len(), 1, "the model request is cancelled");
    let states = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Event { event, payload, .. } if event == "chat" => {
                    Some(payload["state"].as_str().unwrap_or_default().to_string())
                }
                Event::Response { id, .. } if *id == rid => Some("answered".into()),
                _ => None,
            })
            .collect()
    };
    assert!(
        states(&p.events(op)).is_empty(),
        "nothing before the commit"
    );
    p.hold_store_writes(false);
    p.write_store(true);
    let seen = states(&p.events(op));
    let status = seen.iter().position(|s| s == "status");
    let aborted = seen.iter().position(|s| s == "aborted");
    let answered = seen.iter().position(|s| s == "answered");
    assert!(
        status.is_some() && status < aborted && aborted < answered,
        "{seen:?}"
    );
    pump(&mut p, &mut f);
    assert!(f.sent("sendMessage").is_empty(), "nothing to reply");
}

/// A model answer calling a tool that comes while the message's batch is in flight starts
/// nothing until the batch is durable: the command runs (it acts outside the gateway) once
/// the gate opens.
#[test]
fn a_gated_turn_runs_its_tools_only_after_the_commit() {
    let (mut p, mut f) = start(
        OPEN_TO_TWO,
        r#"commands: { ownerAllowFrom: ["telegram:222"] }, tools: { exec: { mode: "full" } }"#,
    );
    f.exec_command = Some("uname -s");
    p.hold_store_writes(true);
    f.dm(222, "which os");
    pump(&mut p, &mut f);
    assert_eq!(f.model_calls, 1);
    assert!(p.execs.is_empty(), "no command before the commit");
    assert_eq!(p.held_batches().len(), 1, "the tool round has not started");
    assert!(p.write_next_batch());
    assert_eq!(
        p.execs.len(),
        1,
        "the command runs once the message is durable"
    );
}

/// The `health` events an operator received: each payload with its `stateVersion.health`.
fn health_events(p: &mut Sim, op: ConnId) -> Vec<(Value, u64)> {
    p.events(op)
        .into_iter()
        .filter_map(|e| match e {
            Event::Event {
                event,
                payload,
                state_version: Some(sv),
                ..
            } if event == "health" => Some((payload, sv["health"].as_u64()?)),
            _ => None,
        })
        .collect()
}

/// `stateVersion.health` moves as upstream's does: each health snapshot that says something
/// new (upstream: each one it takes) gets the next version and goes to every operator as a
/// `health` event carrying it, and the next `hello-ok` has it in `snapshot.stateVersion`. A
/// snapshot retaken with nothing new (only its `ts`) keeps the version and sends nothing; the
/// tick retakes it, so a change nobody asked `health` about still reaches the operators.
#[test]
fn the_health_version_moves_with_each_new_health_snapshot() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    // An operator's id and the `stateVersion.health` of its `hello-ok`.
    let join = |p: &mut Sim| {
        let mut c = cli(Some("t"));
        c.scopes = vec!["operator.admin".into()];
        let id = p.open_client(c, loopback());
        let hello = p.hello(id).expect("hello-ok");
        p.events(id);
        (
            id,
            hello["snapshot"]["stateVersion"]["health"]
                .as_u64()
                .unwrap(),
        )
    };
    let (watcher, first) = join(&mut p);
    assert!(
        first >= 2,
        "the first snapshot counts (upstream starts at 1)"
    );
    // Retaken after a second with nothing new: the same version, no event.
    p.advance(Duration::from_millis(1500));
    let (op, version) = join(&mut p);
    assert_eq!(version, first);
    p.call(op, "health", None).unwrap();
    assert!(health_events(&mut p, watcher).is_empty());
    // The channel stops: the next snapshot says so, with the next version, to everyone.
    let stop = json!({"channel": "telegram"});
    p.call(op, "channels.stop", Some(stop.clone())).unwrap();
    let stopped = p.call(op, "health", None).unwrap();
    assert_eq!(stopped["channels"]["telegram"]["running"], false);
    let seen = health_events(&mut p, watcher);
    assert_eq!(seen, [(stopped, first + 1)]);
    let (_, version) = join(&mut p);
    assert_eq!(version, first + 1);
    // Started again, and nobody asks: the tick takes the snapshot and sends it.
    p.call(op, "channels.start", Some(stop)).unwrap();
    pump(&mut p, &mut f);
    p.events(watcher);
    p.advance(Duration::from_secs(30));
    let seen = health_events(&mut p, watcher);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0["channels"]["telegram"]["running"], true);
    assert_eq!(seen[0].1, first + 2);
}

/// `health` is answered from its snapshot; a change (the channel stopped, started) or a
/// second's age retakes it.
#[test]
fn health_is_answered_from_its_snapshot_until_something_changes_it() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    let op = admin(&mut p);
    let running = |h: &Value| h["channels"]["telegram"]["running"].clone();
    let first = p.call(op, "health", None).unwrap();
    assert_eq!(running(&first), true, "{first}");
    assert_eq!(
        p.call(op, "health", None).unwrap(),
        first,
        "the same snapshot"
    );
    // The clock stands still: only the change itself can make the next answer differ.
    let stop = json!({"channel": "telegram"});
    p.call(op, "channels.stop", Some(stop.clone())).unwrap();
    let stopped = p.call(op, "health", None).unwrap();
    assert_eq!(running(&stopped), false, "{stopped}");
    p.call(op, "channels.start", Some(stop)).unwrap();
    pump(&mut p, &mut f);
    let again = p.call(op, "health", None).unwrap();
    assert_eq!(running(&again), true, "{again}");
    let ts = again["ts"].as_u64().unwrap();
    p.advance(Duration::from_millis(1500));
    let later = p.call(op, "health", None).unwrap();
    assert!(
        later["ts"].as_u64().unwrap() >= ts + 1500,
        "at most a second old: {later}"
    );
}

/// A gateway stopping stores the delivery records still waiting for a batch: a clean stop
/// never sends a reply twice.
#[test]
fn a_stop_stores_the_waiting_delivery_records() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.dm(222, "one");
    pump(&mut p, &mut f);
    assert_eq!(f.sent("sendMessage").len(), 1);
    assert!(outbox_on_disk(&p), "the record waits for a batch");
    p.shutdown();
    assert!(recorded_as_answered(&p), "written at the stop");
}

/// The outputs of one step: everything the gateway wants done after `results` of held
/// request `id`, in order, until it asks to sleep (undriven: nothing is acted on).
fn step_outputs(p: &mut Sim, id: WorkId, results: Vec<WorkResult>) -> Vec<Output> {
    let mut outputs = Vec::new();
    for result in results {
        p.gw.handle_work_result(p.now, id, result);
        loop {
            match p.gw.poll_output() {
                Output::Timeout(_) => break,
                output => outputs.push(output),
            }
        }
    }
    outputs
}

/// The poll's answer carrying a message starts its turn gated: the model request is the
/// step's first piece of work, ahead of the batch that stores the message (whose hand-off to
/// the writer thread would otherwise delay it) and of the typing call.
#[test]
fn the_model_request_leaves_first_in_the_step_that_reads_the_message() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    f.dm(222, "first");
    let (poll, _) = p
        .held_http()
        .iter()
        .find(|(_, r)| r.url.ends_with("/getUpdates"))
        .cloned()
        .expect("a held poll");
    let answer = json!({"ok": true, "result": f.updates.iter().collect::<Vec<_>>()});
    let results = vec![
        WorkResult::HttpHead {
            status: 200,
            headers: vec![],
        },
        WorkResult::HttpBody(answer.to_string().into_bytes()),
        WorkResult::HttpEnd(Ok(())),
    ];
    let work: Vec<String> = step_outputs(&mut p, poll, results)
        .into_iter()
        .filter_map(|o| match o {
            Output::Work {
                work: Work::Http(r),
                ..
            } => Some(r.url),
            Output::Work { work, .. } => Some(format!("{work:?}").chars().take(5).collect()),
            _ => None,
        })
        .collect();
    assert!(
        work.first()
            .is_some_and(|w| w.starts_with("http://model.test")),
        "{work:?}"
    );
    assert!(
        work.iter().any(|w| w == "Store"),
        "the message's batch: {work:?}"
    );
}

/// The model answers at once, while the message's batch is being written: the message's and
/// the answer's batches commit in one transaction, reported in order, and the reply the
/// second releases is issued before the next `getUpdates` the first released (the poll goes
/// behind it, not in front of it).
#[test]
fn a_reply_committed_with_its_message_leaves_before_the_next_poll() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    p.hold_store_writes(true);
    f.dm(222, "early");
    pump(&mut p, &mut f);
    assert_eq!(f.model_calls, 1, "the model answered beside the commit");
    let flags: Vec<bool> = p.held_batches().iter().map(|(_, l)| *l).collect();
    assert_eq!(
        flags,
        [true, false],
        "the message's batch, then the answer's"
    );
    assert!(p.write_together(true));
    let held = |method: &str| p.held_calls(method).first().map(|(id, _)| *id);
    let (reply, poll) = (held("/sendMessage"), held("/getUpdates"));
    let (Some(reply), Some(poll)) = (reply, poll) else {
        panic!("a held reply and a held poll: {reply:?}, {poll:?}");
    };
    assert!(
        reply < poll,
        "the reply ({reply:?}) is issued before the next poll ({poll:?})"
    );
}

/// The model has not answered when the message's batch is durable: the next poll goes at
/// once, not held for the answer (nothing else is in flight).
#[test]
fn a_message_whose_answer_is_not_in_flight_polls_again_at_once() {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    p.hold_store_writes(true);
    f.hold_model = true;
    let id = f.dm(222, "slow");
    pump(&mut p, &mut f);
    assert!(held_polls(&p).is_empty(), "no poll before the commit");
    p.write_store(true);
    assert_eq!(held_polls(&p).len(), 1, "polled again once durable");
    assert_eq!(held_polls(&p)[0]["offset"], id + 1);
}

/// What a message of a one-chat conversation writes to the store, as the changes' debug text:
/// the batches written from its update's arrival to its reply's delivery.
fn writes_per_message(messages: usize) -> Vec<Vec<String>> {
    let (mut p, mut f) = start(r#"dmPolicy: "open", allowFrom: ["*"],"#, "");
    (0..messages)
        .map(|i| {
            let before = p.batches.len();
            f.dm(222, &format!("hello {i:03}"));
            pump(&mut p, &mut f);
            assert!(answer_on_disk_text(&p, &format!("echo hello {i:03}")));
            p.batches[before..]
                .iter()
                .flatten()
                .map(|c| format!("{c:?}"))
                .collect()
        })
        .collect()
}

/// A message's store writes do not grow with its session: the hundredth message of a chat
/// writes as many rows as the tenth, of the same sizes but for its numbers' extra digits (the
/// transcript is appended to, never rewritten; no row carries the window, a copy of the
/// transcript or anything else that grows with it).
#[test]
fn the_hundredth_message_of_a_chat_writes_what_the_tenth_did() {
    let writes = writes_per_message(100);
    let (tenth, hundredth) = (&writes[9], &writes[99]);
    assert_eq!(hundredth.len(), tenth.len(), "{tenth:#?}\n{hundredth:#?}");
    for (early, late) in tenth.iter().zip(hundredth) {
        // The same change to the same row (a session, a channel row's kind), in the same order.
        assert_eq!(late.split(',').next(), early.split(',').next());
        // Update and message ids, transcript seqs and offsets gain a digit between them.
        assert!(late.len() <= early.len() + DIGITS_GAINED, "{early}\n{late}");
    }
}

/// At most the digits a change's numbers gain from the tenth message to the hundredth.
const DIGITS_GAINED: usize = 4;
