//! The model side over real sockets, both APIs: a fake Anthropic provider answering through
//! the same agent (its key from `ANTHROPIC_API_KEY`), its error status, a stream dropped
//! mid-answer on either API, a 429 retried before the answer, a silent provider timed out
//! by `timeoutSeconds`, and HTTPS to a local fake whose certificate a test CA signed
//! (trusted through `SSL_CERT_FILE`, refused without it). Every frame validates against
//! upstream's schema.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clawgate_tests::both;
use clawgate_tests::fake_model::{API_KEY, FakeApi, FakeModel, Reply};
use clawgate_tests::fake_tls::TestCa;
use clawgate_tests::harness::{Options, Shell};
use serde_json::Value;

use super::agent::{assert_frames_valid, chat_send, history_texts, operator, run_events};

/// A token-mode gateway whose model is `members` (from [`FakeModel::provider_config`]).
fn options(members: &str) -> Options {
    Options::new()
        .token("t0ken")
        .config(&format!("{{ {members} }}"))
}

/// Send `message` on a fresh connection and return the run's terminal `chat` payload.
fn one_turn(gw: &clawgate_tests::harness::Gateway, message: &str, key: &str) -> Value {
    let mut ws = operator(gw);
    chat_send(&mut ws, message, key);
    let events = run_events(&mut ws, key);
    assert_frames_valid(&ws);
    events.last().expect("events").1.clone()
}

fn anthropic_answers_with_its_key_from_the_environment(shell: Shell) {
    let model = FakeModel::with(FakeApi::Anthropic, None, |req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::anthropic_text(&["Claude", " heard: ", &said])
    });
    let gw = options(&model.provider_config("anthropic", "maxTokens: 1000"))
        .env("ANTHROPIC_API_KEY", "sk-ant-from-env")
        .start(shell);
    let last = one_turn(&gw, "hello claude", "k-ant-1");
    assert_eq!(last["state"], "final", "{last}");
    assert_eq!(
        last["message"]["content"][0]["text"],
        "Claude heard: hello claude"
    );
    let req = &model.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("sk-ant-from-env"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.json["stream"], true);
    assert_eq!(req.json["max_tokens"], 1000);
    assert!(
        req.json["system"][0]["text"]
            .as_str()
            .is_some_and(|s| s.contains("Current model identity: anthropic/fake-1")),
        "{}",
        req.json
    );
}

fn anthropic_error_status_names_the_key_to_fix(shell: Shell) {
    let model = FakeModel::with(FakeApi::Anthropic, None, |_| {
        Reply::anthropic_error(401, "authentication_error", "invalid x-api-key")
    });
    let gw = options(&model.provider_config("anthropic", "apiKey: \"sk-wrong\"")).start(shell);
    let last = one_turn(&gw, "hello", "k-ant-401");
    assert_eq!(last["state"], "error", "{last}");
    assert_eq!(last["errorDetail"]["httpStatus"], 401);
    assert_eq!(
        last["errorMessage"],
        "model provider \"anthropic\" answered HTTP 401 (auth): invalid x-api-key; check models.providers.anthropic.apiKey (or ANTHROPIC_API_KEY)"
    );
    assert_eq!(model.requests()[0].header("x-api-key"), Some("sk-wrong"));
}

fn a_dropped_stream_ends_the_run_with_an_error_on_either_api(shell: Shell) {
    for api in [FakeApi::OpenAi, FakeApi::Anthropic] {
        let model = FakeModel::with(api, None, move |_| {
            let reply = match api {
                FakeApi::OpenAi => Reply::text(&["half ", "an answer"]),
                FakeApi::Anthropic => Reply::anthropic_text(&["half ", "an answer"]),
            };
            // Cut after the text: no finish, no end marker, no last chunk.
            reply.dropped(3)
        });
        let gw =
            options(&model.provider_config("fake", &format!("apiKey: \"{API_KEY}\""))).start(shell);
        let key = format!("k-drop-{}", api.name());
        let last = one_turn(&gw, "hello", &key);
        assert_eq!(last["state"], "error", "{api:?}: {last}");
        assert!(
            last["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("broke off") || m.contains("ended early")),
            "{api:?}: {last}"
        );
        let mut ws = operator(&gw);
        assert_eq!(
            history_texts(&mut ws)
                .last()
                .map(|(r, t)| (r.as_str(), t.as_str())),
            Some(("assistant", "half an answer")),
            "{api:?}: the partial answer is kept"
        );
    }
}

fn a_429_is_retried_before_the_answer(shell: Shell) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let model = FakeModel::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::error(429, "Rate limit reached").with_header("Retry-After", "0"),
        _ => Reply::text(&["after", " a retry"]),
    });
    let gw = options(&model.config_members()).start(shell);
    let mut ws = operator(&gw);
    chat_send(&mut ws, "hello", "k-429-retry");
    let events = run_events(&mut ws, "k-429-retry");
    let (_, last) = events.last().expect("events");
    assert_eq!(last["state"], "final", "{events:?}");
    assert_eq!(last["message"]["content"][0]["text"], "after a retry");
    let retrying = events
        .iter()
        .find(|(e, p)| e == "agent" && p["data"]["phase"] == "retrying")
        .map(|(_, p)| p["data"].clone())
        .expect("a retrying run_status");
    assert_eq!(retrying["attempt"], 2);
    assert_eq!(retrying["maxAttempts"], 9);
    assert_eq!(retrying["reason"], "rate_limit");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_frames_valid(&ws);
}

fn a_silent_provider_times_out_naming_timeout_seconds(shell: Shell) {
    let model =
        FakeModel::start(|_| Reply::text(&["never seen"]).with_delay(Duration::from_secs(5)));
    let members = model.provider_config("fake", "timeoutSeconds: 1");
    let gw = options(&members).start(shell);
    let last = one_turn(&gw, "hello", "k-silent");
    assert_eq!(last["state"], "error", "{last}");
    assert_eq!(last["errorKind"], "timeout");
    assert!(
        last["errorMessage"].as_str().is_some_and(|m| m.contains(
            "sent nothing for 1 s (idle timeout); raise models.providers.fake.timeoutSeconds"
        )),
        "{last}"
    );
}

fn https_to_a_provider_whose_ca_is_trusted_and_a_clear_error_when_not(shell: Shell) {
    let ca = TestCa::new("clawgate test CA");
    let model = FakeModel::with(FakeApi::OpenAi, Some(ca.server.clone()), |_| {
        Reply::text(&["over ", "TLS"])
    });
    assert!(model.base_url().starts_with("https://127.0.0.1:"));
    let members = model.config_members();
    let gw = options(&members)
        .env("SSL_CERT_FILE", &ca.ca_path())
        .start(shell);
    let last = one_turn(&gw, "hello", "k-tls-ok");
    assert_eq!(last["state"], "final", "{last}");
    assert_eq!(last["message"]["content"][0]["text"], "over TLS");
    assert_eq!(
        model.requests()[0].header("authorization"),
        Some("Bearer sk-test")
    );
    drop(gw);

    let other = TestCa::new("some other CA");
    let gw = options(&members)
        .env("SSL_CERT_FILE", &other.ca_path())
        .start(shell);
    let last = one_turn(&gw, "hello", "k-tls-bad");
    assert_eq!(last["state"], "error", "{last}");
    let message = last["errorMessage"].as_str().unwrap_or_default();
    let expected = format!(
        "model provider \"fake\" at {} cannot be reached: TLS handshake with {} failed: invalid peer certificate: UnknownIssuer",
        model.base_url(),
        model.addr()
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.ends_with("check models.providers.fake.baseUrl"),
        "{message}"
    );
    assert_eq!(
        model.requests().len(),
        1,
        "no request over an untrusted connection"
    );
}

both!(
    anthropic_answers_with_its_key_from_the_environment,
    anthropic_error_status_names_the_key_to_fix,
    a_dropped_stream_ends_the_run_with_an_error_on_either_api,
    a_429_is_retried_before_the_answer,
    a_silent_provider_times_out_naming_timeout_seconds,
    https_to_a_provider_whose_ca_is_trusted_and_a_clear_error_when_not
);
