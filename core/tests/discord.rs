//! Discord's Gateway through the simulated gateway, with the test playing Discord on the
//! held REST call and the socket work: Identify with the intents, heartbeats carrying the
//! sequence, a missed ACK resumed, op 7 resumed after the pause, and a 4004 close stopping
//! the account without a reconnect loop. Timers run on the fake clock.

use core::time::Duration;
use std::time::Instant;

use clawgate_core::config::{ConfigInput, ModelRoute, RunFlags};
use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, ConnId, Work, WorkId, WorkResult};
use serde_json::{Value, json};

fn config() -> Config {
    let text = r#"{ gateway: { auth: { token: "t" } },
        channels: { discord: { token: "tok", dmPolicy: "open", allowFrom: ["*"] } } }"#;
    Config::resolve(&ConfigInput {
        file_text: Some(text.into()),
        flags: RunFlags::default(),
        ..Default::default()
    })
    .expect("config")
}

/// [`config`] with an agent whose model is at `http://model.test` (its requests are held too).
fn config_with_model() -> Config {
    let mut cfg = config();
    cfg.model = Some(ModelRoute::new("fake", "fake-1", "http://model.test/v1"));
    cfg
}

fn answer(p: &mut Sim, id: WorkId, status: u16, body: Value) {
    answer_with(p, id, status, &[], body);
}

/// Answer held request `id` with `status`, `headers` and `body`.
fn answer_with(p: &mut Sim, id: WorkId, status: u16, headers: &[(&str, &str)], body: Value) {
    let headers = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    p.http_result(id, WorkResult::HttpHead { status, headers });
    p.http_result(id, WorkResult::HttpBody(body.to_string().into_bytes()));
    p.http_result(id, WorkResult::HttpEnd(Ok(())));
}

/// The sockets opened so far: id and URL.
fn opened(p: &Sim) -> Vec<(WorkId, String)> {
    p.sockets
        .iter()
        .filter_map(|(id, w)| match w {
            Work::WsOpen(o) => Some((*id, o.url.clone())),
            _ => None,
        })
        .collect()
}

/// The payloads sent on `socket`.
fn sent(p: &Sim, socket: WorkId) -> Vec<Value> {
    p.sockets
        .iter()
        .filter_map(|(_, w)| match w {
            Work::WsSend { socket: s, text } if *s == socket => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

fn closed(p: &Sim, socket: WorkId) -> Option<u16> {
    p.sockets.iter().find_map(|(_, w)| match w {
        Work::WsClose { socket: s, code } if *s == socket => Some(*code),
        _ => None,
    })
}

fn text(p: &mut Sim, socket: WorkId, v: Value) {
    p.socket_result(socket, WorkResult::WsText(v.to_string()));
}

/// Started, `GET /gateway/bot` answered, the socket open, Hello (1 s) and READY (seq 1) in.
fn ready() -> (Sim, WorkId) {
    ready_with(config())
}

/// [`ready`] with `config`.
fn ready_with(config: Config) -> (Sim, WorkId) {
    let mut p = Sim::started_holding_http(Instant::now(), config);
    let (id, req) = p.held_http()[0].clone();
    assert_eq!(req.url, "https://discord.com/api/v10/gateway/bot");
    assert_eq!(req.header("authorization"), Some("Bot tok"));
    answer(&mut p, id, 200, json!({"url": "wss://gateway.discord.gg"}));
    let (socket, url) = opened(&p)[0].clone();
    assert_eq!(url, "wss://gateway.discord.gg/?v=10&encoding=json");
    p.socket_result(socket, WorkResult::WsOpened);
    text(
        &mut p,
        socket,
        json!({"op": 10, "d": {"heartbeat_interval": 1000}}),
    );
    let identify = &sent(&p, socket)[0];
    assert_eq!(
        (identify["op"].as_u64(), identify["d"]["intents"].as_u64()),
        (Some(2), Some(46601))
    );
    assert_eq!(identify["d"]["token"], "tok");
    text(
        &mut p,
        socket,
        json!({"op": 0, "t": "READY", "s": 1, "d": {
        "session_id": "sess", "resume_gateway_url": "wss://resume.discord.gg",
        "user": {"id": "900", "username": "claw"}}}),
    );
    (p, socket)
}

fn admin(p: &mut Sim) -> ConnId {
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.admin".into()];
    let id = p.open_client(c, loopback());
    p.events(id);
    id
}

/// The account's `lastError`, once `channels.status` shows it stopped.
fn stopped_error(p: &mut Sim) -> String {
    let op = admin(p);
    let status = p.call(op, "channels.status", None).unwrap();
    let account = &status["channelAccounts"]["discord"][0];
    assert_eq!(account["running"], false, "{account}");
    account["lastError"].as_str().unwrap().to_string()
}

#[test]
fn heartbeats_carry_the_sequence_and_a_missed_ack_resumes() {
    let (mut p, socket) = ready();
    p.advance(Duration::from_millis(1000));
    let beats: Vec<Value> = sent(&p, socket)
        .into_iter()
        .filter(|v| v["op"] == 1)
        .collect();
    assert_eq!(
        beats,
        [json!({"op": 1, "d": 1})],
        "the first beat within one interval"
    );
    text(&mut p, socket, json!({"op": 11}));
    p.advance(Duration::from_millis(1000));
    assert_eq!(sent(&p, socket).iter().filter(|v| v["op"] == 1).count(), 2);
    // No ACK for the second beat: the third interval closes the socket and resumes.
    p.advance(Duration::from_millis(1000));
    assert_eq!(closed(&p, socket), Some(4000));
    p.advance(Duration::from_secs(2));
    assert_eq!(
        resume(&mut p),
        json!({"op": 6, "d": {"token": "tok", "session_id": "sess", "seq": 1}})
    );
}

/// The second socket opened (on the resume URL) with Hello in: the first payload sent on it.
fn resume(p: &mut Sim) -> Value {
    let (second, url) = opened(p)[1].clone();
    assert_eq!(url, "wss://resume.discord.gg/?v=10&encoding=json");
    p.socket_result(second, WorkResult::WsOpened);
    text(
        p,
        second,
        json!({"op": 10, "d": {"heartbeat_interval": 1000}}),
    );
    sent(p, second)[0].clone()
}

#[test]
fn op_7_resumes_after_the_pause() {
    let (mut p, socket) = ready();
    text(&mut p, socket, json!({"op": 7, "d": null}));
    assert_eq!(closed(&p, socket), Some(4000));
    p.advance(Duration::from_millis(1900));
    assert_eq!(opened(&p).len(), 1, "not before 2 s");
    p.advance(Duration::from_millis(200));
    assert_eq!(opened(&p).len(), 2);
}

#[test]
fn a_4004_close_stops_the_account_without_reconnecting() {
    let (mut p, socket) = ready();
    p.socket_result(
        socket,
        WorkResult::WsClosed {
            code: Some(4004),
            reason: "Authentication failed.".into(),
        },
    );
    p.advance(Duration::from_secs(120));
    assert_eq!(opened(&p).len(), 1, "no reconnect loop");
    assert!(p.held_http().is_empty(), "no new GET /gateway/bot");
    let err = stopped_error(&mut p);
    assert!(
        err.contains("4004") && err.contains("channels.discord.token"),
        "{err}"
    );
}

#[test]
fn no_ready_within_30_s_restarts_and_a_4014_stops_with_its_reason() {
    let mut p = Sim::started_holding_http(Instant::now(), config());
    let (id, _) = p.held_http()[0].clone();
    answer(&mut p, id, 200, json!({"url": "wss://gateway.discord.gg"}));
    let (socket, _) = opened(&p)[0].clone();
    p.socket_result(socket, WorkResult::WsOpened);
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 45000}});
    text(&mut p, socket, hello.clone());
    p.advance(Duration::from_secs(29));
    assert_eq!(closed(&p, socket), None);
    p.advance(Duration::from_secs(2));
    assert_eq!(closed(&p, socket), Some(4000), "no READY in 30 s");
    p.advance(Duration::from_secs(2));
    let (second, _) = opened(&p)[1].clone();
    p.socket_result(second, WorkResult::WsOpened);
    text(&mut p, second, hello);
    assert_eq!(sent(&p, second)[0]["op"], 2, "a fresh Identify");
    p.socket_result(
        second,
        WorkResult::WsClosed {
            code: Some(4014),
            reason: "Disallowed intent(s).".into(),
        },
    );
    p.advance(Duration::from_secs(120));
    assert_eq!(opened(&p).len(), 2, "no reconnect after 4014");
    let err = stopped_error(&mut p);
    assert!(
        err.contains("4014") && err.contains("disallowed intents"),
        "{err}"
    );
}

/// A DM from user `from` in channel `channel` arrives with sequence `seq`, and the model's
/// request for it is answered.
fn dm_answered(p: &mut Sim, socket: WorkId, seq: u64, (from, channel): (&str, &str)) {
    let d = json!({"id": format!("m{seq}"), "channel_id": channel, "content": "hi",
        "author": {"id": from, "username": "u"}});
    text(
        p,
        socket,
        json!({"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": d}),
    );
    let model: Vec<WorkId> = p
        .held_http()
        .iter()
        .filter(|(_, r)| r.url.starts_with("http://model.test"))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(model.len(), 1, "one model request for the DM");
    p.http_results(model[0], openai_text_answer("reply"));
}

/// The held `POST /channels/{channel}/messages` requests.
fn deliveries(p: &Sim, channel: &str) -> Vec<WorkId> {
    let url = format!("https://discord.com/api/v10/channels/{channel}/messages");
    p.held_http()
        .iter()
        .filter(|(_, r)| r.method == "POST" && r.url == url)
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn an_empty_bucket_and_a_global_429_hold_deliveries_until_they_reset() {
    let ms = Duration::from_millis;
    let (mut p, socket) = ready_with(config_with_model());
    dm_answered(&mut p, socket, 2, ("1", "c1"));
    let first = deliveries(&p, "c1");
    assert_eq!(first.len(), 1, "the reply goes out");
    let empty = [
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset-after", "2"),
    ];
    answer_with(&mut p, first[0], 200, &empty, json!({"id": "r1"}));
    let t0 = p.now;
    // c1's bucket is empty for 2 s; c2's is its own.
    dm_answered(&mut p, socket, 3, ("1", "c1"));
    dm_answered(&mut p, socket, 4, ("2", "c2"));
    assert!(deliveries(&p, "c1").is_empty(), "c1 waits for its bucket");
    let c2 = deliveries(&p, "c2");
    assert_eq!(c2.len(), 1, "c2 is not held back");
    p.advance(Duration::from_secs(2) - ms(1));
    assert!(deliveries(&p, "c1").is_empty(), "not before the reset");
    p.advance(ms(1));
    assert_eq!(p.now, t0 + Duration::from_secs(2));
    let held = deliveries(&p, "c1");
    assert_eq!(
        held.len(),
        1,
        "the held reply goes out when the bucket resets"
    );
    answer(&mut p, held[0], 200, json!({"id": "r2"}));

    // A global 429 on c2 holds every route for its retry-after, then the send is retried.
    let global = [("x-ratelimit-global", "true"), ("retry-after", "5")];
    let limited =
        json!({"message": "You are being rate limited.", "retry_after": 5, "global": true});
    answer_with(&mut p, c2[0], 429, &global, limited);
    let t1 = p.now;
    dm_answered(&mut p, socket, 5, ("9", "c9"));
    assert!(
        deliveries(&p, "c9").is_empty(),
        "c9 waits for the global limit"
    );
    assert!(deliveries(&p, "c2").is_empty());
    p.advance(Duration::from_secs(5) - ms(1));
    assert!(deliveries(&p, "c9").is_empty() && deliveries(&p, "c2").is_empty());
    p.advance(ms(1));
    assert_eq!(p.now, t1 + Duration::from_secs(5));
    assert_eq!(
        deliveries(&p, "c2").len(),
        1,
        "the 429'd reply is sent again"
    );
    assert_eq!(deliveries(&p, "c9").len(), 1, "the held reply goes out");
}

/// A `MESSAGE_CREATE` DM `n` (sequence `seq`) from one sender.
fn dm(seq: u64, n: u64) -> Value {
    json!({"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": {
        "id": format!("{}", 1000 + n), "channel_id": "500", "type": 0, "content": format!("m{n}"),
        "author": {"id": "42", "username": "mallory"}, "mentions": []}})
}

#[test]
fn a_burst_past_the_unserved_bound_holds_the_socket_and_resumes_once_served() {
    let (mut p, socket) = ready_with(config_with_model());
    let bound = clawgate_core::channels::MAX_UNSERVED as u64;
    // The model call is held, so every message waits behind the first turn.
    for n in 0..bound {
        text(&mut p, socket, dm(2 + n, n));
    }
    assert_eq!(closed(&p, socket), Some(4000), "held at the bound");
    let op = admin(&mut p);
    let status = p.call(op, "channels.status", None).unwrap();
    let account = &status["channelAccounts"]["discord"][0];
    assert_eq!(
        (
            &account["lifecycle"],
            &account["connected"],
            &account["running"]
        ),
        (&json!("held"), &json!(false), &json!(true)),
        "{account}"
    );
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("500 messages wait for a turn")),
        "a log line says why"
    );
    // What still comes on the closing socket is not read: Discord replays it on Resume.
    text(&mut p, socket, dm(2 + bound, bound));
    p.advance(Duration::from_secs(60));
    assert_eq!(opened(&p).len(), 1, "no reconnect while the queue is full");
    // The turns end (the model refuses each at once, not to be retried): the queue drains
    // and the session resumes from the last sequence read.
    for _ in 0..10_000 {
        if opened(&p).len() > 1 {
            break;
        }
        match p.held_http().first().cloned() {
            Some((id, req)) if req.url.contains("/channels/") => {
                answer(&mut p, id, 200, json!({"id": "1", "channel_id": "500"}))
            }
            Some((id, _)) => answer(&mut p, id, 400, json!({"error": "no"})),
            None => p.advance(Duration::from_secs(1)),
        }
    }
    assert_eq!(opened(&p).len(), 2, "resumed once the queue drained");
    assert_eq!(
        resume(&mut p),
        json!({"op": 6, "d": {"token": "tok", "session_id": "sess", "seq": 1 + bound}})
    );
}

/// Discord's messages take the same path as every transport's: the turn asks the model while
/// the batch storing the message is written (flagged to linger), the answer that comes
/// meanwhile is processed at once and its batch queued behind it, and the reply waits for
/// both batches.
#[test]
fn a_dm_asks_the_model_beside_its_commit_and_is_answered_after_it() {
    let (mut p, socket) = ready_with(config_with_model());
    p.hold_store_writes(true);
    // The model's request is there (and answered) while the message's batch is held.
    dm_answered(&mut p, socket, 2, ("1", "c1"));
    assert!(
        deliveries(&p, "c1").is_empty(),
        "no reply before the commit"
    );
    let flags: Vec<bool> = p.held_batches().iter().map(|(_, l)| *l).collect();
    assert_eq!(
        flags,
        [true, false],
        "the message's batch, then the answer's"
    );
    assert!(p.write_next_batch());
    assert!(
        deliveries(&p, "c1").is_empty(),
        "no reply before the answer's batch is durable"
    );
    assert!(p.write_next_batch());
    assert_eq!(
        deliveries(&p, "c1").len(),
        1,
        "the reply once the message is durable"
    );
}
