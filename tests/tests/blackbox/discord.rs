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
use clawgate_tests::harness::{Options, Shell};
use serde_json::json;

use super::channel_story::{self as story, Story, Transport, admin};

const TOKEN: &str = "discord-test-token";
const USER: &str = "400000000000000042";
const DM: &str = "500000000000000050";

fn options(model: &FakeModel, dc: &FakeDiscord, token: &str, extra: &str) -> Options {
    options_with(model, dc, token, "", extra)
}

fn options_with(
    model: &FakeModel,
    dc: &FakeDiscord,
    token: &str,
    root: &str,
    extra: &str,
) -> Options {
    Options::new()
        .token("t0ken")
        .env("DISCORD_API_URL", &dc.api_url())
        .config(&format!(
            "{{ {} {root} channels: {{ discord: {{ token: \"{token}\", {extra} }} }} }}",
            model.config_members(),
        ))
}

/// Wait until the fake has a live session (READY or RESUMED sent).
fn live(dc: &FakeDiscord) {
    dc.wait(|d| d.is_live().then_some(()))
        .expect("the gateway never got a live Discord session");
}

impl Transport for FakeDiscord {
    const CHANNEL: &'static str = "discord";
    const LABEL: &'static str = "Discord";
    const TOKEN_KEY: &'static str = "channels.discord.token";
    const REFUSED: &'static str = "401";
    const TOKEN_CHECK: &'static str = "/gateway/bot";

    fn start() -> Self {
        FakeDiscord::start(TOKEN)
    }
    fn start_refusing_token() -> Self {
        FakeDiscord::start("another-bots-token")
    }
    fn options_with(&self, model: &FakeModel, root: &str, members: &str) -> Options {
        options_with(model, self, TOKEN, root, members)
    }
    fn ready(&self) {
        live(self);
    }
    fn sender(n: u32) -> String {
        (400_000_000_000_000_000u64 + u64::from(n)).to_string()
    }
    fn dm_chat(n: u32) -> String {
        (500_000_000_000_000_000u64 + u64::from(n)).to_string()
    }
    fn send_dm(&self, n: u32, text: &str) {
        self.push_dm(&Self::sender(n), &Self::dm_chat(n), text);
    }
    fn send_dm_twice(&self, n: u32, text: &str) {
        let id = self.push_dm(&Self::sender(n), &Self::dm_chat(n), text);
        self.dispatch_message(json!({
            "id": id, "channel_id": Self::dm_chat(n), "type": 0, "content": text,
            "author": {"id": Self::sender(n), "username": "mallory"}, "mentions": [],
        }));
    }
    fn sent(&self) -> Vec<(String, String)> {
        self.messages()
    }
    fn pairing_code(text: &str) -> String {
        text[text.find("```\n").expect("a code block") + 4..][..8].to_string()
    }
    fn refuse_next_replies(&self) -> usize {
        self.fail_next(
            "/messages",
            429,
            &[("Retry-After", "1"), ("X-RateLimit-Scope", "user")],
            json!({"message": "You are being rate limited.", "retry_after": 1.0, "global": false}),
        );
        1
    }
}

fn unknown_dm_pairs_then_approved_dm_gets_the_agents_reply(shell: Shell) {
    let Story {
        gw,
        fake: dc,
        model: _model,
    } = story::unknown_dm_pairs_then_approved_dm_is_answered::<FakeDiscord>(shell);
    assert_eq!(dc.identifies(), [TOKEN]);
    assert_eq!(
        dc.all_calls()[0].name,
        "/gateway/bot",
        "the Gateway URL first"
    );
    let mut ws = admin(&gw);
    let calls = dc.all_calls();
    let typing = calls.iter().position(|c| c.name.ends_with("/typing"));
    let reply = calls.iter().rposition(|c| c.name.ends_with("/messages"));
    assert!(
        typing.is_some() && typing < reply,
        "typing before the reply: {calls:?}"
    );
    assert_eq!(
        calls[typing.unwrap()].name,
        format!("/channels/{}/typing", FakeDiscord::dm_chat(1))
    );

    let account = story::account_when(&mut ws, "discord", |a| a["connected"] == true);
    assert_eq!(account["running"], true);
    assert_eq!(account["mode"], "gateway");
    assert!(account["lastOutboundAt"].is_u64(), "{account}");
}

fn the_owner_approves_a_command_from_the_dm_and_allow_always_survives_a_restart(shell: Shell) {
    story::the_owner_approves_from_the_chat_and_allow_always_survives_kill_9::<FakeDiscord>(
        shell,
        |dc, text| dc.send_dm(1, text),
    );
}

fn the_allowlist_holds_and_a_message_dispatched_twice_is_answered_once(shell: Shell) {
    story::the_allowlist_holds_and_a_redelivered_dm_is_answered_once::<FakeDiscord>(shell);
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
    story::a_turn_cut_by_kill_9_is_answered_exactly_once::<FakeDiscord>(shell);
}

fn a_4004_close_stops_the_account_without_a_reconnect_loop(shell: Shell) {
    let model = FakeModel::echo();
    let dc = FakeDiscord::start(TOKEN);
    dc.refuse_identify();
    let gw = options(&model, &dc, TOKEN, "").start(shell);
    let mut ws = admin(&gw);
    let account = story::account_when(&mut ws, "discord", |a| {
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
    let Story {
        fake: dc,
        gw: _gw,
        model: _model,
    } = story::a_refused_token_stops_the_account_and_the_gateway_serves_on::<FakeDiscord>(shell);
    assert_eq!(dc.connections(), 0, "no socket on a refused token");
}

fn a_429_on_the_reply_waits_then_delivers_and_long_replies_cut_at_words(shell: Shell) {
    let Story {
        fake: dc,
        gw: _gw,
        model: _model,
    } = story::a_429_on_the_reply_is_waited_out_then_delivered::<FakeDiscord>(shell);
    let long = (0..700)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    dc.send_dm(5, &long);
    let sent = dc.wait_sent(5);
    let chunks: Vec<&str> = sent[2..].iter().map(|(_, t)| t.as_str()).collect();
    assert!(chunks.len() >= 3, "{}", chunks.len());
    assert!(chunks.iter().all(|c| c.encode_utf16().count() <= 2000));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        dc.sent()[2..]
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        format!("Echo from fake LLM: {long}"),
        "cut between words, nothing lost or repeated"
    );
}

/// A burst past the unserved bound (500) while the model is stuck: the socket is closed and
/// the status says `held`, a log line says why; once the turns end the session is resumed,
/// Discord replays what came meanwhile, and every message is answered exactly once.
fn a_burst_past_the_unserved_bound_is_held_then_resumed_with_nothing_lost(shell: Shell) {
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = release.clone();
    let model = FakeModel::start(move |req| {
        while !gate.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Reply::text(&["Echo: ", &req.last_user_text().unwrap_or_default()])
    });
    let dc = FakeDiscord::start(TOKEN);
    let gw = options(&model, &dc, TOKEN, story::OPEN).start(shell);
    live(&dc);
    let burst = 560;
    for n in 0..burst {
        dc.push_dm(USER, DM, &format!("m{n}"));
    }
    assert!(
        gw.wait_for_log("500 messages wait for a turn", Duration::from_secs(20)),
        "a log line names the bound"
    );
    let mut ws = admin(&gw);
    let account = story::account_when(&mut ws, "discord", |a| a["lifecycle"] == "held");
    assert_eq!(account["connected"], false, "{account}");
    assert!(!dc.is_live(), "the socket is closed while held");
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = dc
        .wait_for(Duration::from_secs(60), |d| {
            let m = d.messages();
            (m.len() >= burst).then_some(m)
        })
        .unwrap_or_else(|| panic!("answered {} of {burst}", dc.messages().len()));
    std::thread::sleep(Duration::from_millis(500));
    let mut texts: Vec<String> = dc.messages().into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts.len(), sent.len(), "nothing answered twice");
    texts.sort();
    let mut want: Vec<String> = (0..burst).map(|n| format!("Echo: m{n}")).collect();
    want.sort();
    assert_eq!(texts, want, "every message answered once");
    assert!(
        dc.resumes().iter().all(|(s, _)| s == "session-1") && !dc.resumes().is_empty(),
        "resumed, not identified again: {:?}",
        dc.resumes()
    );
    assert_eq!(dc.identifies().len(), 1);
}

fn logout_is_refused_as_upstream_and_the_account_serves_on(shell: Shell) {
    let Story {
        fake: dc,
        gw: _gw,
        model: _model,
    } = story::a_logout_without_upstream_support_is_refused_and_changes_nothing::<FakeDiscord>(
        shell,
    );
    assert_eq!(dc.identifies().len(), 1, "the session was never restarted");
}

fn an_unknown_discord_key_is_refused_by_name(shell: Shell) {
    story::an_unknown_key_is_refused_by_name::<FakeDiscord>(
        shell,
        r#"intents: { presence: false }, suppressEmbeds: true, guilds: { "1": { slug: "g", roles: ["2"] } },"#,
    );
}

both!(
    the_owner_approves_a_command_from_the_dm_and_allow_always_survives_a_restart,
    logout_is_refused_as_upstream_and_the_account_serves_on,
    unknown_dm_pairs_then_approved_dm_gets_the_agents_reply,
    the_allowlist_holds_and_a_message_dispatched_twice_is_answered_once,
    reconnects_resume_without_losing_a_message,
    a_turn_cut_by_kill_9_is_answered_exactly_once,
    a_bad_token_stops_the_account_and_the_gateway_serves_on,
    a_4004_close_stops_the_account_without_a_reconnect_loop,
    a_429_on_the_reply_waits_then_delivers_and_long_replies_cut_at_words,
    an_unknown_discord_key_is_refused_by_name,
    a_burst_past_the_unserved_bound_is_held_then_resumed_with_nothing_lost,
);
