//! Slack inside the gateway, over real sockets, against a fake Slack ([`FakeSlack`]: Web API
//! and Socket Mode) and a fake model. Socket Mode: `auth.test`, `apps.connections.open`, one
//! socket and `hello`; an unknown DM gets one pairing message and nothing reaches the agent;
//! approval lets the next DM through to a turn whose answer comes back with
//! `chat.postMessage` in the DM's thread; every envelope is acknowledged; a redelivered
//! event is answered once; after `disconnect` a fresh URL is asked for and what arrived
//! meanwhile is answered once; `invalid_auth` stops the account with the error while the
//! gateway serves on; a 429 on the reply waits its `Retry-After`. HTTP mode: Events API POSTs
//! on the gateway's own port at `webhookPath`, each verified with the signing secret before
//! anything else is read: a signed `url_verification` is answered with its challenge, a signed
//! event with an empty 200 (and answered by the agent), a bad signature or a timestamp older
//! than five minutes with an empty 401, and a body over the limit with a 413 before it is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawgate_core::channels::slack::verify::sign;
use clawgate_tests::both;
use clawgate_tests::fake_api::poll_for;
use clawgate_tests::fake_model::{FakeApi, FakeModel};
use clawgate_tests::fake_slack::FakeSlack;
use clawgate_tests::harness::{HttpResponse, Options, Shell, WAIT, http_request};
use serde_json::json;

use super::channel_story::{self as story, Story, Transport};

const SECRET: &str = "test-signing-secret";

fn socket_mode(model: &FakeModel, slack: &FakeSlack, members: &str) -> Options {
    socket_mode_with(model, slack, "", members)
}

fn socket_mode_with(model: &FakeModel, slack: &FakeSlack, root: &str, members: &str) -> Options {
    Options::new()
        .token("t0ken")
        .env("SLACK_API_URL", &slack.api_url())
        .config(&format!(
            r#"{{ {} {root} channels: {{ slack: {{ botToken: "xoxb-test", appToken: "xapp-1-test", {members} }} }} }}"#,
            model.config_members()
        ))
}

impl Transport for FakeSlack {
    const CHANNEL: &'static str = "slack";
    const LABEL: &'static str = "Slack";
    const TOKEN_KEY: &'static str = "channels.slack.botToken";
    const REFUSED: &'static str = "invalid_auth";
    const TOKEN_CHECK: &'static str = "auth.test";

    fn start() -> Self {
        FakeSlack::start()
    }
    fn start_refusing_token() -> Self {
        let slack = FakeSlack::start();
        slack.fail_next(
            "auth.test",
            200,
            &[],
            json!({"ok": false, "error": "invalid_auth"}),
        );
        slack
    }
    fn options_with(&self, model: &FakeModel, root: &str, members: &str) -> Options {
        socket_mode_with(model, self, root, members)
    }
    fn ready(&self) {
        self.wait_calls("apps.connections.open", 1);
    }
    fn sender(n: u32) -> String {
        format!("U{n}")
    }
    fn owner_entry(n: u32) -> String {
        format!("user:{}", Self::sender(n))
    }
    fn dm_chat(n: u32) -> String {
        format!("DU{n}")
    }
    fn send_dm(&self, n: u32, text: &str) {
        self.push_dm(&Self::sender(n), text, None);
    }
    fn send_dm_twice(&self, n: u32, text: &str) {
        let event = json!({"type": "message", "channel": Self::dm_chat(n), "channel_type": "im",
            "user": Self::sender(n), "text": text, "ts": format!("1795500000.{n:06}")});
        let first = self.push_event(event.clone());
        self.wait_ack(&first);
        let again = self.push_event(event);
        self.wait_ack(&again);
    }
    fn sent(&self) -> Vec<(String, String)> {
        self.calls("chat.postMessage")
            .iter()
            .map(|b| {
                let text = b["text"].as_str().unwrap_or_default().to_string();
                (b["channel"].as_str().unwrap_or_default().to_string(), text)
            })
            .collect()
    }
    fn pairing_code(text: &str) -> String {
        let start = text.find("```\n").expect("a code block") + "```\n".len();
        text[start..start + 8].to_string()
    }
    fn refuse_next_replies(&self) -> usize {
        self.fail_next(
            "chat.postMessage",
            429,
            &[("Retry-After", "1")],
            json!({"ok": false, "error": "ratelimited"}),
        );
        1
    }
}

fn unknown_dm_pairs_then_approved_dm_is_answered_in_its_thread(shell: Shell) {
    let Story {
        gw,
        fake: slack,
        model: _model,
    } = story::unknown_dm_pairs_then_approved_dm_is_answered::<FakeSlack>(shell);
    assert_eq!(slack.auth_headers("auth.test"), ["Bearer xoxb-test"]);
    assert_eq!(
        slack.auth_headers("apps.connections.open"),
        ["Bearer xapp-1-test"]
    );
    let sent = slack.calls("chat.postMessage");
    assert!(
        sent[0].get("thread_ts").is_none(),
        "the pairing message is top level: {sent:?}"
    );
    // A DM posted in a thread is answered in that thread.
    slack.push_dm("U1", "in a thread", Some("1795500000.000100"));
    let sent = slack.wait_calls("chat.postMessage", 3);
    assert_eq!(sent[2]["channel"], "DU1");
    assert_eq!(sent[2]["thread_ts"], "1795500000.000100", "{sent:?}");
    assert_eq!(sent[2]["text"], "Echo from fake LLM: in a thread");
    let account = story::account_when(&mut story::admin(&gw), "slack", |a| a["running"] == true);
    assert_eq!(account["mode"], "socket", "{account}");
    slack.check_acks();
}

/// The thread the approval story's turns come from.
const THREAD: &str = "1795500000.000042";

fn the_owner_approves_a_command_in_its_thread_and_allow_always_survives_a_restart(shell: Shell) {
    let Story {
        fake: slack,
        gw: _gw,
        model: _model,
    } = story::the_owner_approves_from_the_chat_and_allow_always_survives_kill_9::<FakeSlack>(
        shell,
        |slack, text| {
            slack.push_dm(&FakeSlack::sender(1), text, Some(THREAD));
        },
    );
    let to_owner: Vec<_> = slack
        .calls("chat.postMessage")
        .into_iter()
        .filter(|b| b["channel"] == FakeSlack::dm_chat(1))
        .collect();
    assert!(to_owner.len() >= 4, "{to_owner:?}");
    assert!(
        to_owner.iter().all(|b| b["thread_ts"] == THREAD),
        "the approval, its answer and the replies stay in the thread: {to_owner:?}"
    );
    slack.check_acks();
}

/// An approval asked in a DM thread is answered by the owner's `/approve` at the DM's top
/// level: the answer is posted there, the turn's reply stays in the thread. A `/approve`
/// slash command envelope (upstream's Slack plugin registers no slash commands unless
/// `slashCommand` or native commands are turned on) is acknowledged and changes nothing.
fn a_top_level_approve_answers_a_thread_and_a_slash_command_is_only_acknowledged(shell: Shell) {
    let model = super::tools::exec_model(FakeApi::OpenAi, story::APPROVED_COMMAND);
    let slack = FakeSlack::start();
    let root = r#"commands: { ownerAllowFrom: ["slack:U1"] }, tools: { exec: { mode: "ask" } },"#;
    let _gw = socket_mode_with(&model, &slack, root, story::OPEN).start(shell);
    slack.ready();
    slack.push_dm("U1", "run it", Some(THREAD));
    let asked = slack.wait_calls("chat.postMessage", 1)[0].clone();
    assert_eq!(asked["thread_ts"], THREAD, "{asked}");
    let id = story::approval_id(asked["text"].as_str().unwrap());

    let envelope = slack.push_slash_command("U1", "/approve", &format!("{id} allow-once"));
    slack.wait_ack(&envelope);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slack.calls("chat.postMessage").len(), 1, "nothing answered");
    assert_eq!(model.requests().len(), 1, "nothing ran");

    slack.push_dm("U1", &format!("/approve {id} deny"), None);
    let sent = poll_for(WAIT, || {
        let sent = slack.calls("chat.postMessage");
        sent.iter()
            .any(|b| {
                b["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("tool said: "))
            })
            .then_some(sent)
    })
    .expect("the turn's reply");
    let submitted = format!("✅ Approval deny submitted for {id}.");
    let answer = sent.iter().find(|b| b["text"] == submitted.as_str());
    assert!(
        answer.is_some_and(|b| b.get("thread_ts").is_none()),
        "answered at the top level: {sent:?}"
    );
    let reply = sent
        .iter()
        .find(|b| {
            b["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("tool said: "))
        })
        .unwrap();
    assert_eq!(reply["thread_ts"], THREAD, "{reply}");
    assert!(
        !reply["text"]
            .as_str()
            .unwrap()
            .contains("clawgate-approved"),
        "denied, not run: {reply}"
    );
    slack.check_acks();
}

fn a_redelivered_event_and_a_disconnect_are_answered_once(shell: Shell) {
    let Story {
        fake: slack,
        gw: _gw,
        model: _model,
    } = story::the_allowlist_holds_and_a_redelivered_dm_is_answered_once::<FakeSlack>(shell);
    // Slack asks to reconnect; a message sent meanwhile is answered once, on the new socket.
    slack.disconnect();
    slack.wait_calls("apps.connections.open", 2);
    slack.send_dm(1, "after the reconnect");
    slack.wait_calls("chat.postMessage", 2);
    std::thread::sleep(Duration::from_millis(1500));
    let sent = slack.sent();
    assert_eq!(sent.len(), 2, "each answered once: {sent:?}");
    assert_eq!(sent[1].1, "Echo from fake LLM: after the reconnect");
    assert!(slack.sockets() >= 2);
    slack.check_acks();
}

fn a_turn_cut_by_kill_9_is_answered_exactly_once(shell: Shell) {
    let Story {
        fake: slack,
        gw: _gw,
        model: _model,
    } = story::a_turn_cut_by_kill_9_is_answered_exactly_once::<FakeSlack>(shell);
    slack.check_acks();
}

fn invalid_auth_stops_the_account_and_the_gateway_serves_on(shell: Shell) {
    let Story {
        fake: slack,
        gw: _gw,
        model: _model,
    } = story::a_refused_token_stops_the_account_and_the_gateway_serves_on::<FakeSlack>(shell);
    assert!(slack.calls("apps.connections.open").is_empty());
}

fn a_429_on_the_reply_waits_retry_after_then_delivers(shell: Shell) {
    let Story {
        fake: slack,
        gw: _gw,
        model: _model,
    } = story::a_429_on_the_reply_is_waited_out_then_delivered::<FakeSlack>(shell);
    let sent = slack.calls("chat.postMessage");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the same message again");
}

fn logout_is_refused_as_upstream_and_the_account_serves_on(shell: Shell) {
    let Story {
        fake,
        gw: _gw,
        model: _model,
    } = story::a_logout_without_upstream_support_is_refused_and_changes_nothing::<FakeSlack>(shell);
    fake.check_acks();
}

fn an_unknown_slack_key_is_refused_by_name(shell: Shell) {
    story::an_unknown_key_is_refused_by_name::<FakeSlack>(
        shell,
        r#"replyToMode: "off", unfurlLinks: false, channels: { C1: { requireMention: true, users: ["U1"] } },"#,
    );
}

fn a_listed_channel_is_answered_when_the_bot_is_mentioned(shell: Shell) {
    let model = FakeModel::echo();
    let slack = FakeSlack::start();
    let _gw = socket_mode(
        &model,
        &slack,
        r#"channels: { C1: { requireMention: true } },"#,
    )
    .start(shell);
    slack.ready();
    let in_channel = |channel: &str, ts: &str, text: &str| {
        slack.push_event(json!({"type": "message", "channel": channel,
            "channel_type": "channel", "user": "U3", "text": text, "ts": ts}))
    };
    in_channel("C1", "1795500000.000001", "just chatting");
    in_channel("C2", "1795500000.000002", "<@UBOT> an unlisted channel");
    in_channel("C1", "1795500000.000003", "<@UBOT> hi all");
    let sent = slack.wait_sent(1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(slack.sent(), sent, "only the mention in the listed channel");
    assert_eq!(sent[0].0, "C1");
    assert!(sent[0].1.ends_with("hi all"), "{sent:?}");
    assert_eq!(
        model.requests().len(),
        1,
        "no pairing and no turn for the others"
    );
    slack.check_acks();
}

fn http_mode(model: &FakeModel, slack: &FakeSlack, extra: &str) -> Options {
    Options::new()
        .token("t0ken")
        .env("SLACK_API_URL", &slack.api_url())
        .config(&format!(
            r#"{{ {} channels: {{ slack: {{ mode: "http", botToken: "xoxb-test", signingSecret: "{SECRET}" {extra} }} }} }}"#,
            model.config_members()
        ))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// POST `body` to `path`, signed as Slack signs (with `secret`), timestamped `age` seconds ago.
fn post_signed(port: u16, path: &str, body: &str, secret: &str, age: u64) -> HttpResponse {
    let ts = (now_secs() - age).to_string();
    let sig = sign(secret.as_bytes(), &ts, body.as_bytes());
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_request(port, &req).expect("an HTTP answer")
}

fn dm_event(ts: &str) -> String {
    json!({"type": "event_callback", "team_id": "T1", "event_id": format!("Ev{ts}"),
        "event": {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1",
            "text": "hello", "ts": ts}})
    .to_string()
}

fn http_mode_answers_signed_requests_and_refuses_the_rest(shell: Shell) {
    let (model, slack) = (FakeModel::echo(), FakeSlack::start());
    let gw = http_mode(&model, &slack, r#", dmPolicy: "open", allowFrom: ["*"]"#).start(shell);
    slack.wait_calls("auth.test", 1);
    let port = gw.port();
    let challenge =
        json!({"type": "url_verification", "challenge": "ch-42", "token": "x"}).to_string();
    let r = post_signed(port, "/slack/events", &challenge, SECRET, 0);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
        json!({"challenge": "ch-42"})
    );
    let r = post_signed(port, "/slack/events", &dm_event("1.0001"), SECRET, 0);
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    // Slack retries what it thinks was lost: the same event again is answered once.
    let r = post_signed(port, "/slack/events", &dm_event("1.0001"), SECRET, 0);
    assert_eq!(r.status, 200, "{r:?}");
    let sent = slack.wait_calls("chat.postMessage", 1);
    assert_eq!(sent[0]["channel"], "D1");
    assert!(
        sent[0]["text"].as_str().unwrap().contains("hello"),
        "{sent:?}"
    );
    let r = post_signed(port, "/slack/events", &challenge, "not-the-secret", 0);
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, ""),
        "bad signature: {r:?}"
    );
    let r = post_signed(port, "/slack/events", &challenge, SECRET, 6 * 60);
    assert_eq!((r.status, r.body.as_str()), (401, ""), "stale: {r:?}");
    // Unsigned junk is refused on its signature, never parsed.
    let r = http_request(
        port,
        &format!("POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 3\r\n\r\n{{{{{{"),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    // The body is bounded before it is read.
    let r = http_request(
        port,
        &format!(
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024 + 1
        ),
    )
    .unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    let r = http_request(
        port,
        &format!("POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(r.status, 411, "{r:?}");
    let r = http_request(
        port,
        &format!(
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    )
    .unwrap();
    assert_eq!(r.status, 411, "{r:?}");
    // The gateway serves on.
    let r = clawgate_tests::harness::http_get(port, "/health").unwrap();
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(slack.calls("chat.postMessage").len(), 1, "answered once");
    assert!(
        slack.calls("apps.connections.open").is_empty(),
        "no socket in HTTP mode"
    );
}

fn a_custom_webhook_path_is_the_route(shell: Shell) {
    let (model, slack) = (FakeModel::echo(), FakeSlack::start());
    let gw = http_mode(&model, &slack, r#", webhookPath: "hooks/slack""#).start(shell);
    let port = gw.port();
    let challenge = json!({"type": "url_verification", "challenge": "c"}).to_string();
    let r = post_signed(port, "/hooks/slack", &challenge, SECRET, 0);
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_signed(port, "/slack/events", &challenge, SECRET, 0);
    assert_ne!(r.status, 200, "the default path is not a route now: {r:?}");
}

fn http_mode_without_a_signing_secret_is_refused_by_name(shell: Shell) {
    let (code, stderr) = Options::new()
        .token("t0ken")
        .config(r#"{ channels: { slack: { mode: "http", botToken: "xoxb-test" } } }"#)
        .run_to_exit(shell, std::time::Duration::from_secs(20));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("channels.slack.signingSecret"), "{stderr}");
}

both!(
    a_top_level_approve_answers_a_thread_and_a_slash_command_is_only_acknowledged,
    the_owner_approves_a_command_in_its_thread_and_allow_always_survives_a_restart,
    logout_is_refused_as_upstream_and_the_account_serves_on,
    unknown_dm_pairs_then_approved_dm_is_answered_in_its_thread,
    a_redelivered_event_and_a_disconnect_are_answered_once,
    a_turn_cut_by_kill_9_is_answered_exactly_once,
    invalid_auth_stops_the_account_and_the_gateway_serves_on,
    a_429_on_the_reply_waits_retry_after_then_delivers,
    http_mode_answers_signed_requests_and_refuses_the_rest,
    a_custom_webhook_path_is_the_route,
    http_mode_without_a_signing_secret_is_refused_by_name,
    an_unknown_slack_key_is_refused_by_name,
    a_listed_channel_is_answered_when_the_bot_is_mentioned,
);
