//! Telegram inside the gateway, over real sockets: a fake Bot API ([`FakeTelegram`]) and a
//! fake model. The shared channel stories ([`super::channel_story`]) with Telegram's own
//! details (HTML parse mode, typing, long-poll offsets, `getMe`/`deleteWebhook`, the
//! transcript); a long answer cut into chunks; approvals across a kill -9; the pairing CLI;
//! an unknown key refused; a missing token; SIGHUP; a mentioned group; `send` once per key;
//! a `bindings[]` entry choosing the session, whose turn streams to the operators watching it
//! and to nobody else; an exec approval asked in the chat, refused to a stranger, answered by
//! the owner's `/approve`, its `allow-always` grant surviving a kill -9; a conversation's
//! long polls, sends and model turns over kept-alive connections.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clawgate_core::client::Event;
use clawgate_core::fuzzing::sim::page_texts;
use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::fake_telegram::FakeTelegram;
use clawgate_tests::harness::{Options, Shell, Ws};
use serde_json::{Value, json};

use super::agent::assert_frames_valid;
use super::channel_story::{self as story, Story, Transport, admin, assert_result_valid};

const BOT_TOKEN: &str = "123456:test-token";

fn options(model: &FakeModel, tg: &FakeTelegram, telegram_extra: &str) -> Options {
    options_with(model, tg, "", telegram_extra)
}

fn options_with(model: &FakeModel, tg: &FakeTelegram, root: &str, telegram_extra: &str) -> Options {
    Options::new().token("t0ken").config(&format!(
        "{{ {} {root} channels: {{ telegram: {{ {} {telegram_extra} }} }} }}",
        model.config_members(),
        tg.config_members(BOT_TOKEN)
    ))
}

/// The code of a pairing message.
fn pairing_code(text: &str) -> String {
    let start = text.find("<pre><code>").expect("a code block") + "<pre><code>".len();
    text[start..start + 8].to_string()
}

/// Telegram user `n` is `200 + n`, and their DM chat has the same id.
fn user(n: u32) -> i64 {
    200 + i64::from(n)
}

impl Transport for FakeTelegram {
    const CHANNEL: &'static str = "telegram";
    const LABEL: &'static str = "Telegram";
    const TOKEN_KEY: &'static str = "channels.telegram.botToken";
    const REFUSED: &'static str = "401";
    const TOKEN_CHECK: &'static str = "getMe";

    fn start() -> Self {
        FakeTelegram::start(BOT_TOKEN)
    }
    fn start_refusing_token() -> Self {
        FakeTelegram::start("999:the-real-one")
    }
    fn options_with(&self, model: &FakeModel, root: &str, members: &str) -> Options {
        options_with(model, self, root, members)
    }
    fn ready(&self) {
        self.wait_calls("getUpdates", 1);
    }
    fn sender(n: u32) -> String {
        user(n).to_string()
    }
    fn allow_entry(n: u32) -> String {
        format!("tg:{}", user(n))
    }
    fn dm_chat(n: u32) -> String {
        user(n).to_string()
    }
    fn send_dm(&self, n: u32, text: &str) {
        self.push_dm(user(n), "Mallory", text);
    }
    fn send_dm_twice(&self, n: u32, text: &str) {
        let msg = json!({
            "message_id": 7000 + n, "from": {"id": user(n), "is_bot": false, "first_name": "Owner"},
            "chat": {"id": user(n), "type": "private"}, "date": 1, "text": text,
        });
        self.push_message(msg.clone());
        self.push_message(msg);
    }
    fn sent(&self) -> Vec<(String, String)> {
        self.calls("sendMessage")
            .iter()
            .map(|b| {
                let text = b["text"].as_str().unwrap_or_default().to_string();
                (b["chat_id"].as_str().unwrap_or_default().to_string(), text)
            })
            .collect()
    }
    fn pairing_code(text: &str) -> String {
        pairing_code(text)
    }
    fn refuse_next_replies(&self) -> usize {
        self.fail_next(
            "sendMessage",
            429,
            &[],
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        );
        self.fail_next(
            "sendMessage",
            502,
            &[],
            json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
        );
        2
    }
}

fn approve_first_request(ws: &mut Ws) -> Value {
    let list = ws
        .call(
            "channels.pairing.list",
            Some(json!({"channel": "telegram"})),
        )
        .expect("channels.pairing.list");
    let request = list["requests"][0].clone();
    ws.call(
        "channels.pairing.approve",
        Some(json!({"channel": "telegram", "accountId": "default", "requestId": request["requestId"]})),
    )
    .expect("channels.pairing.approve");
    list
}

fn unknown_dm_pairs_then_approved_dm_gets_the_agents_reply(shell: Shell) {
    let Story {
        gw,
        fake: tg,
        model: _model,
    } = story::unknown_dm_pairs_then_approved_dm_is_answered::<FakeTelegram>(shell);
    let sent = tg.calls("sendMessage");
    assert_eq!(sent[0]["parse_mode"], "HTML");
    let typing = tg.wait_calls("sendChatAction", 1);
    assert_eq!(typing[0], json!({"chat_id": "201", "action": "typing"}));

    let polls = tg.calls("getUpdates");
    assert_eq!(polls[0]["timeout"], 30);
    let offsets: Vec<i64> = polls
        .iter()
        .map(|p| p["offset"].as_i64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert_eq!(tg.calls("getMe").len(), 1);
    assert_eq!(
        tg.calls("deleteWebhook")[0],
        json!({"drop_pending_updates": false})
    );

    let mut ws = admin(&gw);
    let history = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .expect("chat.history");
    let texts = page_texts(&history);
    assert_eq!(texts, ["what is 2+2?", "Echo from fake LLM: what is 2+2?"]);

    let account = story::account_when(&mut ws, "telegram", |a| a["connected"] == true);
    assert_eq!(account["running"], true);
    assert!(account["lastPollAt"].is_u64(), "{account}");
}

fn a_long_reply_is_cut_on_paragraphs_under_the_limit(shell: Shell) {
    let paragraph = |i: usize| format!("Paragraph {i}: {}", "lorem ipsum ".repeat(40).trim_end());
    let long: Vec<String> = (0..19).map(paragraph).collect();
    let long = long.join("\n\n");
    assert!(long.len() > 9_000);
    let answer = long.clone();
    let model = FakeModel::start(move |_| Reply::text(&[&answer]));
    let tg = FakeTelegram::start(BOT_TOKEN);
    let _gw = options(&model, &tg, story::OPEN).start(shell);
    tg.push_dm(333, "Open", "write a lot");
    let sent = tg.wait_calls("sendMessage", 3);
    std::thread::sleep(Duration::from_millis(200));
    let sent = tg.calls("sendMessage").len().max(sent.len());
    let bodies = tg.calls("sendMessage");
    assert_eq!(sent, 3, "9,000+ characters in three messages");
    for b in &bodies {
        let t = b["text"].as_str().unwrap();
        assert!(t.encode_utf16().count() <= 4000, "{}", t.len());
        assert!(
            t.starts_with("Paragraph ") && t.ends_with("ipsum"),
            "cut at paragraph ends"
        );
    }
    let joined: Vec<&str> = bodies.iter().map(|b| b["text"].as_str().unwrap()).collect();
    assert_eq!(joined.join("\n\n"), long);
}

/// Keep-alive: the long polls, typing actions and replies of a conversation go over at most
/// four connections (one poll in flight; the next message's typing action and reply may
/// overlap the last reply, whose answer the fake is still writing when it has recorded it),
/// and its model turns over one, where one connection per request would be a dozen and three.
fn a_conversation_keeps_its_connections_alive(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let _gw = options(&model, &tg, story::OPEN).start(shell);
    for i in 1..=3 {
        tg.push_dm(333, "Open", &format!("question {i}"));
        tg.wait_calls("sendMessage", i);
        std::thread::sleep(Duration::from_millis(50));
    }
    let calls = tg.all_calls();
    let polls = calls.iter().filter(|c| c.name == "getUpdates").count();
    assert!(calls.len() >= 8 && polls >= 4, "{} calls", calls.len());
    assert!(
        tg.connections() <= 4,
        "{} connections for {} calls",
        tg.connections(),
        calls.len()
    );
    assert_eq!(model.requests().len(), 3);
    assert_eq!(
        model.connections(),
        1,
        "the model's turns on one connection"
    );
}

fn a_redelivered_message_is_answered_once_and_the_allowlist_holds(shell: Shell) {
    story::the_allowlist_holds_and_a_redelivered_dm_is_answered_once::<FakeTelegram>(shell);
}

fn approvals_survive_a_restart(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let opts = options(&model, &tg, "");
    let gw = opts.start(shell);
    tg.push_dm(222, "Mallory", "hi");
    tg.wait_calls("sendMessage", 1);
    approve_first_request(&mut admin(&gw));
    let gw = opts.crash_and_restart(shell, gw);
    tg.push_dm(222, "Mallory", "after restart");
    let sent = tg.wait_calls("sendMessage", 2);
    assert_eq!(sent[1]["text"], "Echo from fake LLM: after restart");
    drop(gw);
}

fn the_owner_approves_a_command_from_the_chat_and_allow_always_survives_a_restart(shell: Shell) {
    story::the_owner_approves_from_the_chat_and_allow_always_survives_kill_9::<FakeTelegram>(
        shell,
        |tg, text| tg.send_dm(1, text),
    );
}

fn a_turn_cut_by_kill_9_is_answered_exactly_once(shell: Shell) {
    story::a_turn_cut_by_kill_9_is_answered_exactly_once::<FakeTelegram>(shell);
}

fn a_bad_token_stops_the_account_and_the_gateway_serves_on(shell: Shell) {
    let Story {
        fake: tg,
        gw: _gw,
        model: _model,
    } = story::a_refused_token_stops_the_account_and_the_gateway_serves_on::<FakeTelegram>(shell);
    assert!(
        tg.calls("getUpdates").is_empty(),
        "no poll on a refused token"
    );
}

fn a_429_on_the_reply_waits_retry_after_then_delivers(shell: Shell) {
    let Story {
        fake: tg,
        model,
        gw: _gw,
    } = story::a_429_on_the_reply_is_waited_out_then_delivered::<FakeTelegram>(shell);
    assert_eq!(
        tg.calls("sendMessage").len(),
        3,
        "a 429, a 502, then delivered"
    );
    assert_eq!(model.requests().len(), 1, "one turn, its reply retried");
}

/// `clawgate pairing <args>` on the state directory `state` (and the gateway on `port`, if it
/// runs): exit code and stdout.
fn pairing_cli(state: &Path, port: u16, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(Shell::Mio.binary())
        .arg("pairing")
        .args(args)
        .env_clear()
        .env("HOME", state.parent().unwrap())
        .env("OPENCLAW_STATE_DIR", state)
        .env("OPENCLAW_GATEWAY_PORT", port.to_string())
        .env("OPENCLAW_GATEWAY_TOKEN", "t0ken")
        .output()
        .expect("run clawgate pairing");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "clawgate pairing {args:?}: {stdout}{stderr}"
    );
    (out.status.code(), stdout)
}

fn the_pairing_cli_lists_and_approves_with_and_without_a_running_gateway(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let opts = options(&model, &tg, "");
    let gw = opts.start(shell);
    let state = gw.config_path().parent().unwrap().to_path_buf();
    tg.push_dm(222, "Mallory", "hi");
    let code = pairing_code(tg.wait_calls("sendMessage", 1)[0]["text"].as_str().unwrap());
    let (_, out) = pairing_cli(&state, gw.port(), &["list", "telegram", "--json"]);
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(listed["channel"], "telegram");
    assert_eq!(listed["requests"][0]["id"], "222");
    assert_eq!(listed["requests"][0]["code"], code.as_str());
    assert_eq!(listed["requests"][0]["meta"]["accountId"], "default");
    // The gateway runs: the approval goes through it and applies at once.
    let (_, out) = pairing_cli(&state, gw.port(), &["approve", "telegram", &code]);
    assert!(out.contains("Approved telegram sender 222."), "{out}");
    assert!(
        out.contains("Command owner configured telegram:222"),
        "{out}"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(gw.config_path()).unwrap()).unwrap();
    assert_eq!(
        config["commands"]["ownerAllowFrom"],
        json!(["telegram:222"])
    );
    assert!(
        config["channels"]["telegram"]["botToken"].is_string(),
        "the rest is kept"
    );
    tg.push_dm(222, "Mallory", "am I in?");
    assert_eq!(
        tg.wait_calls("sendMessage", 2)[1]["text"],
        "Echo from fake LLM: am I in?"
    );

    // Another sender, approved while no gateway runs: the store has it at the next start.
    tg.push_dm(333, "Ola", "me too");
    let code = pairing_code(tg.wait_calls("sendMessage", 3)[2]["text"].as_str().unwrap());
    let port = gw.port();
    let gw = opts.crash_and_restart_after(shell, gw, |state| {
        let (_, out) = pairing_cli(state, port, &["approve", &code, "--notify"]);
        assert!(out.contains("Approved telegram sender 333."), "{out}");
        assert!(
            !out.contains("Command owner"),
            "only the first approval bootstraps: {out}"
        );
        let (_, out) = pairing_cli(state, port, &["list", "--json"]);
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["requests"],
            json!([])
        );
    });
    let sent = tg.wait_calls("sendMessage", 4);
    assert_eq!(
        sent[3]["text"],
        "✅ OpenClaw access approved. Send a message to start chatting."
    );
    tg.push_dm(333, "Ola", "hello");
    assert_eq!(
        tg.wait_calls("sendMessage", 5)[4]["text"],
        "Echo from fake LLM: hello"
    );
    drop(gw);
}

fn an_unknown_telegram_key_is_refused_by_name(shell: Shell) {
    story::an_unknown_key_is_refused_by_name::<FakeTelegram>(
        shell,
        r#"linkPreview: false, groups: { "-1001": { requireMention: true, topics: {} } },"#,
    );
}

fn a_missing_token_is_named_and_the_gateway_serves_on(shell: Shell) {
    let gw = Options::new()
        .token("t0ken")
        .config(r#"{ channels: { telegram: { dmPolicy: "pairing" } } }"#)
        .start(shell);
    assert!(
        gw.wait_for_log(
            "channels.telegram.botToken is not set",
            Duration::from_secs(5)
        ),
        "{}",
        gw.stderr()
    );
    let mut ws = admin(&gw);
    let status = ws.call("channels.status", None).expect("channels.status");
    assert_result_valid("channels.status", &status);
    let account = &status["channelAccounts"]["telegram"][0];
    assert_eq!(
        (account["configured"].clone(), account["running"].clone()),
        (json!(false), json!(false))
    );
    assert!(
        account["lastError"]
            .as_str()
            .unwrap()
            .contains("channels.telegram.botToken"),
        "{account}"
    );
    assert!(ws.call("health", None).is_ok());
}

fn sighup_applies_a_new_allow_list_at_once(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw = options(&model, &tg, r#"dmPolicy: "allowlist", allowFrom: ["111"],"#).start(shell);
    tg.push_dm(222, "Later", "not yet");
    tg.wait_calls("getUpdates", 2);
    assert!(gw.wait_for_log("dropped: sender not in allowFrom", Duration::from_secs(5)));
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(
        gw.config_path(),
        config.replace(r#"allowFrom: ["111"]"#, r#"allowFrom: ["111", "222"]"#),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(gw.wait_for_log("config reloaded", Duration::from_secs(5)));
    tg.push_dm(222, "Later", "now?");
    let sent = tg.wait_calls("sendMessage", 1);
    assert_eq!(sent[0]["text"], "Echo from fake LLM: now?");
    assert_eq!(tg.calls("getMe").len(), 1, "the account kept running");
}

fn a_listed_group_is_answered_when_the_bot_is_mentioned(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw = options(
        &model,
        &tg,
        r#"groups: { "-1001": { requireMention: true } },"#,
    )
    .start(shell);
    let group = |chat: i64, id: i64, text: &str, mention: bool| {
        let mut m = json!({
            "message_id": id, "from": {"id": 222, "is_bot": false, "first_name": "M"},
            "chat": {"id": chat, "type": "supergroup", "title": "G"}, "date": 1, "text": text,
        });
        if mention {
            m["entities"] = json!([{"type": "mention", "offset": 0, "length": 8}]);
        }
        m
    };
    tg.push_message(group(-1001, 1, "just chatting", false));
    tg.push_message(group(-2002, 2, "@clawbot other group", true));
    tg.push_message(group(-1001, 3, "@clawbot hi all", true));
    let sent = tg.wait_calls("sendMessage", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tg.calls("sendMessage").len(), 1, "{sent:?}");
    assert_eq!(sent[0]["chat_id"], "-1001");
    assert_eq!(sent[0]["text"], "Echo from fake LLM: @clawbot hi all");
    assert_eq!(
        model.requests().len(),
        1,
        "no pairing and no turn for the others"
    );
    let history = admin(&gw)
        .call(
            "chat.history",
            Some(json!({"sessionKey": "agent:main:telegram:group:-1001"})),
        )
        .expect("chat.history");
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        2,
        "{history}"
    );
}

fn send_delivers_once_per_idempotency_key(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw = options(&model, &tg, "").start(shell);
    tg.wait_calls("getUpdates", 1);
    let mut ws = admin(&gw);
    let params = json!({"to": "telegram:222", "channel": "telegram", "message": "direct send via RPC", "idempotencyKey": "k-send-1"});
    let first = ws.call("send", Some(params.clone())).expect("send");
    assert_result_valid("send", &first);
    assert_eq!(first["runId"], "k-send-1");
    assert_eq!(first["channel"], "telegram");
    assert!(first["messageId"].is_string(), "{first}");
    let again = ws.call("send", Some(params)).expect("send again");
    assert_eq!(again, first);
    let sent = tg.calls("sendMessage");
    assert_eq!(
        sent,
        [json!({"chat_id": "222", "text": "direct send via RPC", "parse_mode": "HTML"})]
    );
}

/// The `(event, payload)` pairs of the event frames `ws` receives until `done` holds for them.
fn events_until(
    ws: &mut Ws,
    what: &str,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    while !done(&seen) {
        seen.push(ws.expect(what, |e| match e {
            Event::Event { event, payload, .. } => Some((event.clone(), payload.clone())),
            _ => None,
        }));
    }
    seen
}

/// The events a connection received before the answer to one more request (so every event
/// sent before that answer is counted).
fn events_so_far(ws: &mut Ws) -> Vec<String> {
    let mut seen = Vec::new();
    let rid = ws.client().request("health", None);
    ws.flush();
    ws.first(
        |e| matches!(e, Event::Response { id, .. } if *id == rid).then_some(()),
        &mut seen,
    );
    seen.into_iter()
        .filter_map(|e| match e {
            Event::Event { event, .. } if event != "tick" && event != "health" => Some(event),
            _ => None,
        })
        .collect()
}

fn a_bound_dm_streams_to_its_watchers_only(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let binding = r#"bindings: [{ agentId: "main", session: { dmScope: "per-channel-peer" },
        match: { channel: "telegram", peer: { kind: "direct", id: "111" } } }],"#;
    let gw = Options::new()
        .token("t0ken")
        .config(&format!(
            "{{ {} {binding} channels: {{ telegram: {{ {} dmPolicy: \"allowlist\", allowFrom: [\"111\"] }} }} }}",
            model.config_members(),
            tg.config_members(BOT_TOKEN)
        ))
        .start(shell);
    let key = "agent:main:telegram:direct:111";
    let mut watcher = admin(&gw);
    watcher
        .call("sessions.messages.subscribe", Some(json!({"key": key})))
        .expect("sessions.messages.subscribe");
    let mut lister = admin(&gw);
    lister
        .call("sessions.subscribe", Some(json!({})))
        .expect("sessions.subscribe");
    let mut other = admin(&gw);
    tg.push_dm(111, "Owner", "hello bound");
    let sent = tg.wait_calls("sendMessage", 1);
    assert_eq!(sent[0]["text"], "Echo from fake LLM: hello bound");

    // The watcher sees the turn as it happens: the user's message, the run's stream and its
    // final, and the answer's session.message naming the run.
    let answered = |seen: &[(String, Value)]| {
        let final_seen = seen
            .iter()
            .any(|(e, p)| e == "chat" && p["state"] == "final");
        let answer = seen
            .iter()
            .any(|(e, p)| e == "session.message" && p["message"]["role"] == "assistant");
        final_seen && answer
    };
    let seen = events_until(&mut watcher, "the bound turn's events", answered);
    let chat: Vec<&Value> = seen
        .iter()
        .filter(|(e, _)| e == "chat")
        .map(|(_, p)| p)
        .collect();
    assert!(chat.iter().all(|p| p["sessionKey"] == key), "{seen:?}");
    assert!(chat.iter().any(|p| p["state"] == "delta"), "{seen:?}");
    let final_ = chat.iter().find(|p| p["state"] == "final").expect("final");
    assert_eq!(
        final_["message"]["content"][0]["text"],
        "Echo from fake LLM: hello bound"
    );
    assert!(
        seen.iter()
            .any(|(e, p)| e == "agent" && p["stream"] == "lifecycle"),
        "{seen:?}"
    );
    let answer = seen
        .iter()
        .find(|(e, p)| e == "session.message" && p["message"]["role"] == "assistant")
        .map(|(_, p)| p)
        .expect("the answer");
    assert_eq!(answer["runId"], final_["runId"]);
    assert_eq!(answer["message"]["__openclaw"]["runId"], final_["runId"]);
    assert_frames_valid(&watcher);

    // sessions.subscribe hears the messages, not the stream; an operator that subscribed to
    // nothing hears nothing of a channel's turn.
    let seen = events_until(&mut lister, "the bound turn's messages", |seen| {
        seen.iter()
            .any(|(e, p)| e == "session.message" && p["message"]["role"] == "assistant")
    });
    assert!(
        seen.iter().all(|(e, _)| e != "chat" && e != "agent"),
        "{seen:?}"
    );
    let heard = events_so_far(&mut other);
    assert!(
        heard
            .iter()
            .all(|e| e != "chat" && e != "agent" && e != "session.message"),
        "{heard:?}"
    );
    let history = other
        .call("chat.history", Some(json!({"sessionKey": key})))
        .expect("chat.history");
    assert_eq!(
        history["messages"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    assert_eq!(history["sessionInfo"]["lastRunId"], final_["runId"]);
    assert_eq!(history["sessionInfo"]["status"], "done");
}

fn logout_removes_the_token_from_the_config_and_stops_the_account(shell: Shell) {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(BOT_TOKEN);
    let gw = options(&model, &tg, r#"dmPolicy: "open", allowFrom: ["*"],"#).start(shell);
    tg.wait_calls("getUpdates", 1);
    let mut ws = admin(&gw);
    let err = ws
        .call("channels.logout", Some(json!({"channel": "nosuch"})))
        .expect_err("an unknown channel");
    assert_eq!(err.message, "invalid channels.logout channel");
    let out = ws
        .call("channels.logout", Some(json!({"channel": "telegram"})))
        .expect("channels.logout");
    assert_eq!(
        out,
        json!({"channel": "telegram", "accountId": "default", "cleared": true, "envToken": false, "loggedOut": true})
    );
    // The file is rewritten as JSON without the token; everything else is kept.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(gw.config_path()).unwrap()).unwrap();
    let section = &config["channels"]["telegram"];
    assert!(section.get("botToken").is_none(), "{config}");
    assert_eq!(section["dmPolicy"], "open");
    assert_eq!(section["apiRoot"], tg.api_root().as_str());
    assert!(config["models"]["providers"].is_object(), "{config}");
    let status = ws.call("channels.status", None).expect("channels.status");
    assert_result_valid("channels.status", &status);
    assert_eq!(status["channelAccounts"]["telegram"][0]["running"], false);
    // Nothing polls any more, and a start has no token to start with.
    let polls = tg.calls("getUpdates").len();
    ws.call("channels.start", Some(json!({"channel": "telegram"})))
        .expect("channels.start");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tg.calls("getUpdates").len(), polls);
    let status = ws.call("channels.status", None).expect("channels.status");
    let err = status["channelAccounts"]["telegram"][0]["lastError"].clone();
    assert!(
        err.as_str().is_some_and(|e| e.contains("botToken")),
        "{status}"
    );
    assert!(ws.call("health", None).is_ok());
}

both!(
    a_conversation_keeps_its_connections_alive,
    the_owner_approves_a_command_from_the_chat_and_allow_always_survives_a_restart,
    logout_removes_the_token_from_the_config_and_stops_the_account,
    a_bound_dm_streams_to_its_watchers_only,
    unknown_dm_pairs_then_approved_dm_gets_the_agents_reply,
    a_long_reply_is_cut_on_paragraphs_under_the_limit,
    a_redelivered_message_is_answered_once_and_the_allowlist_holds,
    approvals_survive_a_restart,
    a_turn_cut_by_kill_9_is_answered_exactly_once,
    a_bad_token_stops_the_account_and_the_gateway_serves_on,
    a_429_on_the_reply_waits_retry_after_then_delivers,
    the_pairing_cli_lists_and_approves_with_and_without_a_running_gateway,
    an_unknown_telegram_key_is_refused_by_name,
    a_missing_token_is_named_and_the_gateway_serves_on,
    sighup_applies_a_new_allow_list_at_once,
    a_listed_group_is_answered_when_the_bot_is_mentioned,
    send_delivers_once_per_idempotency_key,
);
