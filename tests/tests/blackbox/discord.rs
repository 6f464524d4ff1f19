//! Discord inside the gateway, over real sockets: a fake Discord ([`FakeDiscord`]: REST and
//! the Gateway WebSocket on one port, reached through `DISCORD_API_URL`) and a fake model.
//! An unknown DM gets one pairing code in its DM channel; approval lets the next DM through
//! to a turn whose answer is posted there after a typing call; the allowlist; the same
//! message dispatched twice answered once; op 7 and a dropped socket resumed with the
//! session and sequence without losing a message; op 9 answered with a fresh Identify; a
//! turn cut by kill -9 answered once; a 4004 close and a 401 stop the account; a 429 on the
//! reply waits and delivers; long replies cut under 2,000 at words.

use std::time::{Duration, Instant};

use clawgate_tests::both;
use clawgate_tests::fake_discord::FakeDiscord;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use clawgate_tests::schema;
use serde_json::{Value, json};

const TOKEN: &str = "discord-test-token";
const USER: &str = "400000000000000042";
const DM: &str = "500000000000000050";

fn options(model: &FakeModel, dc: &FakeDiscord, token: &str, extra: &str) -> Options {
    Options::new()
        .token("t0ken")
        .env("DISCORD_API_URL", &dc.api_url())
        .config(&format!(
            "{{ {} channels: {{ discord: {{ token: \"{token}\", {extra} }} }} }}",
            model.config_members(),
        ))
}

fn admin(gw: &Gateway) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = vec!["operator.admin".into()];
    let mut ws = gw.ws(cfg);
    ws.hello().expect("admin hello-ok");
    ws
}

fn assert_result_valid(method: &str, payload: &Value) {
    if let Some(s) = schema::schema() {
        s.validate_result(method, payload)
            .unwrap_or_else(|e| panic!("{method} result does not validate: {e}\n{payload}"));
    }
}

/// Wait until the fake has a live session (READY or RESUMED sent).
fn live(dc: &FakeDiscord) {
    dc.wait(|d| d.is_live().then_some(()))
        .expect("the gateway never got a live Discord session");
}

/// The account's `channels.status` snapshot once `done` holds.
fn account_when(ws: &mut Ws, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ws.call("channels.status", None).expect("channels.status");
        let account = status["channelAccounts"]["discord"][0].clone();
        if done(&account) {
            assert_result_valid("channels.status", &status);
            return account;
        }
        assert!(Instant::now() < deadline, "never reached: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unknown_dm_pairs_then_approved_dm_gets_the_agents_reply(shell: Shell) {
    let model = FakeModel::echo();
    let dc = FakeDiscord::start(TOKEN);
    let gw = options(&model, &dc, TOKEN, "").start(shell);
    live(&dc);
    assert_eq!(dc.identifies(), [TOKEN]);
    assert_eq!(dc.calls()[0].path, "/gateway/bot", "the Gateway URL first");
    dc.push_dm(USER, DM, "hello?");
    let sent = dc.wait_messages(1);
    assert_eq!(sent[0].0, DM, "the pairing message goes to the DM channel");
    let text = &sent[0].1;
    assert!(
        text.starts_with(&format!(
            "OpenClaw: access not configured.\n\nYour Discord user id: {USER}\nPairing code:\n\n```\n"
        )),
        "{text}"
    );
    let code = &text[text.find("```\n").unwrap() + 4..][..8];
    dc.push_dm(USER, DM, "hello again");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dc.messages().len(), 1, "one pairing message per request");
    assert!(
        model.requests().is_empty(),
        "nothing reaches the agent before approval"
    );

    let mut ws = admin(&gw);
    let list = ws
        .call("channels.pairing.list", Some(json!({"channel": "discord"})))
        .expect("channels.pairing.list");
    assert_eq!(list["requests"][0]["senderId"], USER, "{list}");
    assert_eq!(list["requests"][0]["senderLabel"], "discordUserId");
    ws.call(
        "channels.pairing.approve",
        Some(json!({"channel": "discord", "accountId": "default", "requestId": list["requests"][0]["requestId"]})),
    )
    .expect("channels.pairing.approve");
    assert_eq!(code.len(), 8);

    dc.push_dm(USER, DM, "what is 2+2?");
    let sent = dc.wait_messages(2);
    assert_eq!(
        sent[1],
        (
            DM.to_string(),
            "Echo from fake LLM: what is 2+2?".to_string()
        )
    );
    let calls = dc.calls();
    let typing = calls.iter().position(|c| c.path.ends_with("/typing"));
    let reply = calls.iter().rposition(|c| c.path.ends_with("/messages"));
    assert!(
        typing.is_some() && typing < reply,
        "typing before the reply: {calls:?}"
    );
    assert_eq!(
        calls[typing.unwrap()].path,
        format!("/channels/{DM}/typing")
    );

    let account = account_when(&mut ws, |a| a["connected"] == true);
    assert_eq!(account["running"], true);
    assert_eq!(account["mode"], "gateway");
    assert!(
        account["lastInboundAt"].is_u64() && account["lastOutboundAt"].is_u64(),
        "{account}"
    );
    let health = ws.call("health", None).expect("health");
    assert_eq!(health["channelOrder"], json!(["discord"]));
    assert_eq!(health["channels"]["discord"]["running"], true);
}

fn the_allowlist_holds_and_a_message_dispatched_twice_is_answered_once(shell: Shell) {
    let model = FakeModel::echo();
    let dc = FakeDiscord::start(TOKEN);
    let _gw = options(
        &model,
        &dc,
        TOKEN,
        &format!(r#"dmPolicy: "allowlist", allowFrom: ["{USER}"],"#),
    )
    .start(shell);
    live(&dc);
    dc.push_dm("400000000000000099", "500000000000000099", "let me in");
    let id = dc.push_dm(USER, DM, "once");
    dc.dispatch_message(json!({
        "id": id, "channel_id": DM, "type": 0, "content": "once",
        "author": {"id": USER, "username": "mallory"}, "mentions": [],
    }));
    let sent = dc.wait_messages(1);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        dc.messages(),
        sent,
        "answered once, the stranger not at all"
    );
    assert_eq!(
        sent[0],
        (DM.to_string(), "Echo from fake LLM: once".to_string())
    );
    assert_eq!(model.requests().len(), 1);
}

fn reconnects_resume_without_losing_a_message(shell: Shell) {
    let model = FakeModel::echo();
    let dc = FakeDiscord::start_with(TOKEN, 500);
    let _gw = options(&model, &dc, TOKEN, r#"dmPolicy: "open", allowFrom: ["*"],"#).start(shell);
    live(&dc);
    dc.push_dm(USER, DM, "first");
    dc.wait_messages(1);
    // Heartbeats carry the last sequence.
    let beats = dc
        .wait(|d| {
            let b = d.heartbeats();
            b.iter()
                .any(|s| s.as_u64().is_some_and(|n| n >= 2))
                .then_some(b)
        })
        .expect("heartbeats with the sequence");
    assert!(!beats.is_empty());

    // op 7: resumed about 2 s later with the session and the last sequence.
    let asked = Instant::now();
    dc.reconnect();
    let resumes = dc
        .wait(|d| (!d.resumes().is_empty()).then(|| d.resumes()))
        .expect("a Resume");
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(resumes[0].0, "session-1");
    assert!(resumes[0].1.is_some_and(|s| s >= 2), "{resumes:?}");
    live(&dc);

    // A dropped socket: what is dispatched meanwhile is replayed by the Resume, answered once.
    dc.drop_socket();
    std::thread::sleep(Duration::from_millis(50));
    dc.push_dm(USER, DM, "while away");
    let sent = dc.wait_messages(2);
    assert_eq!(sent[1].1, "Echo from fake LLM: while away");
    assert_eq!(dc.resumes().len(), 2, "{:?}", dc.resumes());
    assert_eq!(dc.identifies().len(), 1, "resumed, not identified again");

    // op 9 (not resumable): a fresh Identify.
    dc.invalidate_session();
    dc.wait(|d| (d.identifies().len() == 2).then_some(()))
        .expect("a fresh Identify after op 9");
    live(&dc);
    dc.push_dm(USER, DM, "new session");
    let sent = dc.wait_messages(3);
    assert_eq!(sent[2].1, "Echo from fake LLM: new session");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dc.messages().len(), 3, "every message answered once");
}

fn a_turn_cut_by_kill_9_is_answered_exactly_once(shell: Shell) {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["Echo: ", &said]).with_delay(Duration::from_millis(400))
    });
    let dc = FakeDiscord::start(TOKEN);
    let opts = options(&model, &dc, TOKEN, r#"dmPolicy: "open", allowFrom: ["*"],"#);
    let gw = opts.start(shell);
    live(&dc);
    dc.push_dm(USER, DM, "survive this");
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.requests().is_empty() {
        assert!(Instant::now() < deadline, "the model was never asked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let gw = opts.crash_and_restart(shell, gw);
    dc.wait_messages(1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        dc.messages(),
        [(DM.to_string(), "Echo: survive this".to_string())],
        "answered exactly once"
    );
    drop(gw);
}

fn a_4004_close_stops_the_account_without_a_reconnect_loop(shell: Shell) {
    let model = FakeModel::echo();
    let dc = FakeDiscord::start(TOKEN);
    dc.refuse_identify();
    let gw = options(&model, &dc, TOKEN, "").start(shell);
    let mut ws = admin(&gw);
    let account = account_when(&mut ws, |a| {
        a["running"] == false && a["lastError"].is_string()
    });
    let err = account["lastError"].as_str().unwrap();
    assert!(
        err.contains("4004") && err.contains("channels.discord.token"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(dc.identifies().len(), 1, "no reconnect loop");
    assert_eq!(dc.connections(), 1);
    assert!(ws.call("health", None).is_ok());
}

fn a_bad_token_stops_the_account_and_the_gateway_serves_on(shell: Shell) {
    let model = FakeModel::echo();
    let dc = FakeDiscord::start(TOKEN);
    let gw = options(&model, &dc, "wrong-token", "").start(shell);
    let mut ws = admin(&gw);
    let account = account_when(&mut ws, |a| {
        a["running"] == false && a["lastError"].is_string()
    });
    let err = account["lastError"].as_str().unwrap();
    assert!(
        err.contains("401") && err.contains("channels.discord.token"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        dc.calls().len(),
        1,
        "no retry loop on a bad token: {:?}",
        dc.calls()
    );
    assert_eq!(dc.connections(), 0);
    assert!(ws.call("health", None).is_ok());
}

fn a_429_on_the_reply_waits_then_delivers_and_long_replies_cut_at_words(shell: Shell) {
    let long = (0..700)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let answer = long.clone();
    let model = FakeModel::start(move |_| Reply::text(&[&answer]));
    let dc = FakeDiscord::start(TOKEN);
    let _gw = options(&model, &dc, TOKEN, r#"dmPolicy: "open", allowFrom: ["*"],"#).start(shell);
    live(&dc);
    dc.fail_next(
        "/messages",
        429,
        &[("Retry-After", "1"), ("X-RateLimit-Scope", "user")],
        json!({"message": "You are being rate limited.", "retry_after": 1.0, "global": false}),
    );
    let asked = Instant::now();
    dc.push_dm(USER, DM, "write a lot");
    let sent = dc
        .wait(|d| {
            let m = d.messages();
            (m.len() >= 4).then_some(m)
        })
        .expect("the long reply after the 429");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "waited the 429 out"
    );
    let chunks: Vec<&str> = sent[1..].iter().map(|(_, t)| t.as_str()).collect();
    assert!(chunks.len() >= 3, "{}", chunks.len());
    assert!(chunks.iter().all(|c| c.encode_utf16().count() <= 2000));
    assert_eq!(
        chunks.join(" "),
        long,
        "cut between words, nothing lost or repeated"
    );
}

both!(
    unknown_dm_pairs_then_approved_dm_gets_the_agents_reply,
    the_allowlist_holds_and_a_message_dispatched_twice_is_answered_once,
    reconnects_resume_without_losing_a_message,
    a_turn_cut_by_kill_9_is_answered_exactly_once,
    a_bad_token_stops_the_account_and_the_gateway_serves_on,
    a_4004_close_stops_the_account_without_a_reconnect_loop,
    a_429_on_the_reply_waits_then_delivers_and_long_replies_cut_at_words,
);
