//! The stories every channel transport tells the same way, written once against
//! [`Transport`] and run for Telegram, Slack and Discord (their files instantiate each story
//! on both shells and add what only their transport does): an unknown DM pairs, approval lets
//! the next DM through to the agent and back; the allowlist holds and a redelivered DM is
//! answered once; a turn cut by kill -9 is answered exactly once; a refused token stops the
//! account (error naming the key, no retry loop) while the gateway serves on; a 429 on the
//! reply is waited out and the reply delivered; a key upstream's schema does not know is
//! refused at start by name (exit 78) while upstream's own keys start; a `channels.logout` the
//! channel's upstream plugin does not support is refused and changes nothing; an exec approval
//! asked in the chat is refused to a stranger and answered by the owner's `/approve`, its
//! `allow-always` grant surviving a kill -9.

use std::ops::Deref;
use std::time::{Duration, Instant};

use clawgate_core::frame::ErrorCode;
use clawgate_tests::fake_api::{FakeApi, poll_for};
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Gateway, Options, Shell, WAIT, Ws, http_get};
use clawgate_tests::schema;
use serde_json::{Value, json};

/// A channel transport as the stories see it: a fake of its API, how a DM goes in, and what
/// the gateway sent back. Users are numbered; each transport maps a number to its ids.
pub trait Transport: Deref<Target = FakeApi> + Sized {
    /// The channel id (`telegram`).
    const CHANNEL: &'static str;
    /// The name the pairing message gives the transport (`Telegram`).
    const LABEL: &'static str;
    /// The config key a refused token is named by.
    const TOKEN_KEY: &'static str;
    /// What the account's error says when the token is refused (`401`).
    const REFUSED: &'static str;
    /// The call that checks the token at start (`getMe`).
    const TOKEN_CHECK: &'static str;

    /// A fake that accepts the gateway's token.
    fn start() -> Self;
    /// A fake that refuses the gateway's token.
    fn start_refusing_token() -> Self;
    /// Options starting a gateway with `model` and an account on this fake, `root` (JSON5
    /// members, each followed by a comma) added to the config's root and `members` to the
    /// channel's section.
    fn options_with(&self, model: &FakeModel, root: &str, members: &str) -> Options;
    /// [`Transport::options_with`] with nothing added to the root.
    fn options(&self, model: &FakeModel, members: &str) -> Options {
        self.options_with(model, "", members)
    }
    /// Wait until the gateway is connected to the fake (what is sent before may be lost).
    fn ready(&self);
    /// User `n`'s id as the channel writes it (and as `senderId` lists it).
    fn sender(n: u32) -> String;
    /// User `n` as an `allowFrom` entry.
    fn allow_entry(n: u32) -> String {
        Self::sender(n)
    }
    /// User `n` as a `commands.ownerAllowFrom` entry, in a form upstream's plugin accepts.
    fn owner_entry(n: u32) -> String {
        format!("{}:{}", Self::CHANNEL, Self::sender(n))
    }
    /// The chat in which user `n`'s DMs are answered.
    fn dm_chat(n: u32) -> String;
    /// Deliver a DM `text` from user `n`.
    fn send_dm(&self, n: u32, text: &str);
    /// Deliver one DM `text` from user `n` twice (the platform redelivering it).
    fn send_dm_twice(&self, n: u32, text: &str);
    /// Every message the gateway sent, refused attempts included: chat and text.
    fn sent(&self) -> Vec<(String, String)>;
    /// The pairing code in a pairing message.
    fn pairing_code(text: &str) -> String;
    /// Make the next reply attempts fail, the first with a 429 asking for a 1 s wait (and
    /// whatever else the transport retries); how many attempts are refused.
    fn refuse_next_replies(&self) -> usize;

    /// Wait (up to [`WAIT`]) until at least `n` messages were sent; all of them.
    fn wait_sent(&self, n: usize) -> Vec<(String, String)> {
        poll_for(WAIT, || {
            let sent = self.sent();
            (sent.len() >= n).then_some(sent)
        })
        .unwrap_or_else(|| panic!("wanted {n} messages; calls: {:?}", self.all_calls()))
    }
}

/// What a story leaves for the transport's own checks.
pub struct Story<T> {
    /// The gateway, still running.
    pub gw: Gateway,
    /// The fake API.
    pub fake: T,
    /// The fake model (the gateway's provider, so kept alive with it).
    pub model: FakeModel,
}

/// `dmPolicy: "open"` for everyone.
pub const OPEN: &str = r#"dmPolicy: "open", allowFrom: ["*"],"#;

/// An operator connection with `operator.admin`.
pub fn admin(gw: &Gateway) -> Ws {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = vec!["operator.admin".into()];
    let mut ws = gw.ws(cfg);
    ws.hello().expect("admin hello-ok");
    ws
}

/// Panic unless `payload` validates as the result of `method` in upstream's schema.
pub fn assert_result_valid(method: &str, payload: &Value) {
    if let Some(s) = schema::schema() {
        s.validate_result(method, payload)
            .unwrap_or_else(|e| panic!("{method} result does not validate: {e}\n{payload}"));
    }
}

/// The first account of `channel` in `channels.status` once `done` holds (the status
/// validated against the schema).
pub fn account_when(ws: &mut Ws, channel: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ws.call("channels.status", None).expect("channels.status");
        let account = status["channelAccounts"][channel][0].clone();
        if done(&account) {
            assert_result_valid("channels.status", &status);
            return account;
        }
        assert!(Instant::now() < deadline, "never reached: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the model was asked at least once.
fn wait_model_asked(model: &FakeModel) {
    poll_for(Duration::from_secs(10), || {
        (!model.requests().is_empty()).then_some(())
    })
    .expect("the model was never asked");
}

/// An unknown DM gets one pairing message in its DM (a second DM no second code) and nothing
/// reaches the agent; approval by RPC lets the next DM through to a turn whose answer comes
/// back in the DM; `channels.status` and `health` show the account running.
pub fn unknown_dm_pairs_then_approved_dm_is_answered<T: Transport>(shell: Shell) -> Story<T> {
    let model = FakeModel::echo();
    let fake = T::start();
    let gw = fake.options(&model, "").start(shell);
    fake.ready();
    fake.send_dm(1, "hello?");
    let sent = fake.wait_sent(1);
    assert_eq!(
        sent[0].0,
        T::dm_chat(1),
        "the pairing message goes to the DM"
    );
    let text = &sent[0].1;
    let intro = format!(
        "OpenClaw: access not configured.\n\nYour {} user id: {}\nPairing code:",
        T::LABEL,
        T::sender(1)
    );
    assert!(text.starts_with(&intro), "{text}");
    let code = T::pairing_code(text);
    assert!(
        code.len() == 8
            && code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && !code.contains(['0', 'O', '1', 'I']),
        "{code}"
    );
    fake.send_dm(1, "hello again");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.sent().len(), 1, "one pairing message per request");
    assert!(
        model.requests().is_empty(),
        "nothing reaches the agent before approval"
    );

    let mut ws = admin(&gw);
    let list = ws
        .call(
            "channels.pairing.list",
            Some(json!({"channel": T::CHANNEL})),
        )
        .expect("channels.pairing.list");
    let requests = list["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 1, "{list}");
    assert_eq!(requests[0]["senderId"], T::sender(1), "{list}");
    assert!(requests[0].get("code").is_none(), "the code is not exposed");
    assert_eq!(
        list["limits"],
        json!({"pendingPerAccount": 3, "ttlMs": 3_600_000})
    );
    ws.call(
        "channels.pairing.approve",
        Some(json!({"channel": T::CHANNEL, "accountId": "default", "requestId": requests[0]["requestId"]})),
    )
    .expect("channels.pairing.approve");

    fake.send_dm(1, "what is 2+2?");
    let sent = fake.wait_sent(2);
    assert_eq!(
        sent[1],
        (T::dm_chat(1), "Echo from fake LLM: what is 2+2?".into())
    );
    assert_eq!(model.requests().len(), 1);
    let account = account_when(&mut ws, T::CHANNEL, |a| a["running"] == true);
    assert!(account["lastInboundAt"].is_u64(), "{account}");
    let health = ws.call("health", None).expect("health");
    assert_eq!(health["channelOrder"], json!([T::CHANNEL]));
    assert_eq!(health["channels"][T::CHANNEL]["running"], true);
    Story { gw, fake, model }
}

/// With `dmPolicy: "allowlist"` a stranger gets nothing, and the listed user's DM delivered
/// twice is answered once.
pub fn the_allowlist_holds_and_a_redelivered_dm_is_answered_once<T: Transport>(
    shell: Shell,
) -> Story<T> {
    let model = FakeModel::echo();
    let fake = T::start();
    let members = format!(
        r#"dmPolicy: "allowlist", allowFrom: ["{}"],"#,
        T::allow_entry(1)
    );
    let gw = fake.options(&model, &members).start(shell);
    fake.ready();
    fake.send_dm(2, "let me in");
    fake.send_dm_twice(1, "once");
    fake.wait_sent(1);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        fake.sent(),
        [(T::dm_chat(1), "Echo from fake LLM: once".to_string())],
        "answered once, the stranger not at all"
    );
    assert_eq!(model.requests().len(), 1);
    Story { gw, fake, model }
}

/// A turn running when the gateway is killed (-9) is answered exactly once after restart.
pub fn a_turn_cut_by_kill_9_is_answered_exactly_once<T: Transport>(shell: Shell) -> Story<T> {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["Echo: ", &said]).with_delay(Duration::from_millis(400))
    });
    let fake = T::start();
    let opts = fake.options(&model, OPEN);
    let gw = opts.start(shell);
    fake.ready();
    let mut ws = admin(&gw);
    fake.send_dm(7, "survive this");
    wait_model_asked(&model);
    // The model request leaves beside the batch storing the message, not after its commit.
    // An answer is held until every batch issued before it is durable: once `health` is
    // answered the message is on disk, and the turn is still running (the model answers
    // 400 ms after it was asked). A transport that never redelivers (Discord's Gateway after
    // a fresh Identify) has only the store to bring the message back.
    ws.call("health", None).expect("health");
    let gw = opts.crash_and_restart(shell, gw);
    fake.wait_sent(1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        fake.sent(),
        [(T::dm_chat(7), "Echo: survive this".to_string())],
        "answered exactly once"
    );
    Story { gw, fake, model }
}

/// A refused token stops the account with an error naming the key, is not tried again, and
/// the gateway serves on (each transport checks it made no further progress).
pub fn a_refused_token_stops_the_account_and_the_gateway_serves_on<T: Transport>(
    shell: Shell,
) -> Story<T> {
    let model = FakeModel::echo();
    let fake = T::start_refusing_token();
    let gw = fake.options(&model, "").start(shell);
    let mut ws = admin(&gw);
    let account = account_when(&mut ws, T::CHANNEL, |a| {
        a["running"] == false && a["lastError"].is_string()
    });
    let err = account["lastError"].as_str().unwrap();
    assert!(
        err.contains(T::REFUSED) && err.contains(T::TOKEN_KEY),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fake.calls(T::TOKEN_CHECK).len(),
        1,
        "the token checked once, no retry loop: {:?}",
        fake.all_calls()
    );
    assert!(ws.call("health", None).is_ok());
    assert_eq!(http_get(gw.port(), "/health").unwrap().status, 200);
    Story { gw, fake, model }
}

/// A reply refused with a 429 is sent again after the wait it asks for, the same message.
pub fn a_429_on_the_reply_is_waited_out_then_delivered<T: Transport>(shell: Shell) -> Story<T> {
    let model = FakeModel::echo();
    let fake = T::start();
    let gw = fake.options(&model, OPEN).start(shell);
    fake.ready();
    let refused = fake.refuse_next_replies();
    let asked = Instant::now();
    fake.send_dm(5, "rate me");
    let sent = fake.wait_sent(refused + 1);
    assert!(
        asked.elapsed() >= Duration::from_millis(950),
        "waited the 429 out: {:?}",
        asked.elapsed()
    );
    let reply = (T::dm_chat(5), "Echo from fake LLM: rate me".to_string());
    assert!(sent.iter().all(|s| *s == reply), "{sent:?}");
    Story { gw, fake, model }
}

/// A key upstream's schema does not know stops the start (exit 78) naming it, at the root and
/// in an account; a section using only upstream's keys (some clawgate reads past) starts.
pub fn an_unknown_key_is_refused_by_name<T: Transport>(shell: Shell, upstream_only: &str) {
    let (model, fake) = (FakeModel::echo(), T::start());
    for (members, key) in [
        (
            "bogusKey: true,",
            format!("channels.{}.bogusKey", T::CHANNEL),
        ),
        (
            "accounts: { work: { enabled: false, bogusKey: true } },",
            format!("channels.{}.accounts.work.bogusKey", T::CHANNEL),
        ),
    ] {
        let (code, stderr) = fake
            .options(&model, members)
            .run_to_exit(shell, Duration::from_secs(10));
        assert_eq!(code, Some(78), "{stderr}");
        assert!(stderr.contains(&key), "{key}: {stderr}");
    }
    let gw = fake.options(&model, upstream_only).start(shell);
    fake.ready();
    assert_eq!(http_get(gw.port(), "/health").unwrap().status, 200);
}

/// `channels.logout` on a channel whose upstream plugin has no logout (Slack's and Discord's
/// have none) is refused as upstream refuses it, for any account: `openclaw.json` is left as it
/// was and the account runs on, answering DMs.
pub fn a_logout_without_upstream_support_is_refused_and_changes_nothing<T: Transport>(
    shell: Shell,
) -> Story<T> {
    let model = FakeModel::echo();
    let fake = T::start();
    let gw = fake.options(&model, OPEN).start(shell);
    fake.ready();
    let before = std::fs::read(gw.config_path()).expect("openclaw.json");
    let mut ws = admin(&gw);
    let refusal = format!("channel {} does not support logout", T::CHANNEL);
    for params in [
        json!({"channel": T::CHANNEL}),
        json!({"channel": T::CHANNEL, "accountId": "default"}),
        json!({"channel": T::CHANNEL, "accountId": "nosuch"}),
    ] {
        let err = ws
            .call("channels.logout", Some(params.clone()))
            .expect_err("refused");
        assert_eq!(err.code, ErrorCode::InvalidRequest, "{params}");
        assert_eq!(err.message, refusal, "{params}");
    }
    let after = std::fs::read(gw.config_path()).expect("openclaw.json");
    assert_eq!(after, before, "openclaw.json is left as it was");
    let account = account_when(&mut ws, T::CHANNEL, |a| a["running"] == true);
    assert!(account["lastError"].is_null(), "{account}");
    fake.send_dm(1, "still there?");
    assert_eq!(
        fake.wait_sent(1),
        [(
            T::dm_chat(1),
            "Echo from fake LLM: still there?".to_string()
        )]
    );
    Story { gw, fake, model }
}

/// The approval story's command (the fake model asks to run it once per turn).
pub const APPROVED_COMMAND: &str = "echo clawgate-approved";

/// The approval id in a pending-approval message (from its first `/approve` line).
pub fn approval_id(text: &str) -> String {
    let at = text.find("/approve ").expect("the command to answer") + "/approve ".len();
    text[at..].split_whitespace().next().unwrap().to_string()
}

/// The messages sent to user `n`'s DM so far, in order.
fn texts_to<T: Transport>(fake: &T, n: u32) -> Vec<String> {
    let chat = T::dm_chat(n);
    fake.sent()
        .into_iter()
        .filter(|(to, _)| *to == chat)
        .map(|(_, text)| text)
        .collect()
}

/// Wait (up to [`WAIT`]) until user `n`'s DM holds a message `done` accepts; its messages.
fn wait_texts_to<T: Transport>(fake: &T, n: u32, done: impl Fn(&str) -> bool) -> Vec<String> {
    poll_for(WAIT, || {
        let texts = texts_to(fake, n);
        texts.iter().any(|t| done(t)).then_some(texts)
    })
    .unwrap_or_else(|| panic!("never came to DM {n}: {:?}", fake.sent()))
}

/// Under `tools.exec.mode: "ask"` the owner's (user 1, listed in `commands.ownerAllowFrom` as
/// [`Transport::owner_entry`]) turn posts upstream's pending-approval message, with its
/// `/approve` lines, where the turn came from; user 2, let in by `allowFrom` but no owner, is
/// refused with upstream's text and nothing runs; the owner's `/approve <id> allow-always`
/// runs the command and the turn's reply comes back there; after a kill -9 the grant holds
/// (`exec.approvals.get` lists it) and the same command runs without asking. `say` delivers
/// user 1's messages to the conversation under test (a DM, or a thread of one).
pub fn the_owner_approves_from_the_chat_and_allow_always_survives_kill_9<T: Transport>(
    shell: Shell,
    say: impl Fn(&T, &str),
) -> Story<T> {
    let model = super::tools::exec_model(
        clawgate_tests::fake_model::FakeApi::OpenAi,
        APPROVED_COMMAND,
    );
    let fake = T::start();
    let root = format!(
        r#"commands: {{ ownerAllowFrom: ["{}"] }}, tools: {{ exec: {{ mode: "ask", approvalTimeoutSeconds: 60 }} }},"#,
        T::owner_entry(1)
    );
    let members = format!(
        r#"dmPolicy: "allowlist", allowFrom: ["{}", "{}"],"#,
        T::allow_entry(1),
        T::allow_entry(2)
    );
    let opts = fake.options_with(&model, &root, &members);
    let gw = opts.start(shell);
    fake.ready();
    say(&fake, "run it");
    let texts = wait_texts_to(&fake, 1, |t| t.starts_with("Approval required."));
    let asked = &texts[0];
    assert!(asked.contains(APPROVED_COMMAND), "{asked}");
    let id = approval_id(asked);
    for decision in ["allow-once", "allow-always", "deny"] {
        assert!(
            asked.contains(&format!("/approve {id} {decision}")),
            "{asked}"
        );
    }

    fake.send_dm(2, &format!("/approve {id} allow-always"));
    let refusal = format!(
        "❌ You are not authorized to approve exec requests on {}.",
        T::LABEL
    );
    assert_eq!(wait_texts_to(&fake, 2, |_| true), [refusal]);
    let refused = format!("/approve from {}:{} refused", T::CHANNEL, T::sender(2));
    assert!(gw.wait_for_log(&refused, Duration::from_secs(5)));
    assert_eq!(model.requests().len(), 1, "nothing ran, no turn started");

    say(&fake, &format!("/approve {id} allow-always"));
    let texts = wait_texts_to(&fake, 1, |t| t.starts_with("tool said: "));
    assert!(
        texts.contains(&format!("✅ Approval allow-always submitted for {id}.")),
        "{texts:?}"
    );
    let reply = texts.iter().find(|t| t.starts_with("tool said: ")).unwrap();
    assert!(reply.contains("clawgate-approved"), "{reply}");
    let by = format!(
        "approved (allow-always) by Chat approval ({}:{})",
        T::CHANNEL,
        T::sender(1)
    );
    assert!(gw.wait_for_log(&by, Duration::from_secs(5)));

    let before = fake.sent().len();
    let gw = opts.crash_and_restart(shell, gw);
    fake.ready();
    let mut ws = admin(&gw);
    let snapshot = ws
        .call("exec.approvals.get", Some(json!({})))
        .expect("exec.approvals.get");
    assert_result_valid("exec.approvals.get", &snapshot);
    assert_eq!(
        snapshot["file"]["agents"]["main"]["allowlist"][0]["source"],
        "allow-always"
    );
    say(&fake, "run it again");
    let sent = fake.wait_sent(before + 1);
    let last = &sent.last().unwrap();
    assert_eq!(last.0, T::dm_chat(1), "{sent:?}");
    assert!(
        last.1.starts_with("tool said: ") && last.1.contains("clawgate-approved"),
        "{sent:?}"
    );
    let asked = texts_to(&fake, 1)
        .iter()
        .filter(|t| t.starts_with("Approval required."))
        .count();
    assert_eq!(asked, 1, "no second approval asked");
    assert!(gw.wait_for_log("allowed by an allow-always grant", Duration::from_secs(5)));
    Story { gw, fake, model }
}
