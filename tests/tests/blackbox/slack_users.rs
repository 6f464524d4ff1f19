//! Slack senders' names over real sockets, on both shells, against the fake Slack's
//! `users.info` (bot token only) and the fake model: an unknown DM's pairing request carries
//! upstream's `{name, senderId}` in `channels.pairing.list` (validated against upstream's
//! schema); a DM that reaches the agent names its sender in the model's request; the name is
//! looked up once per sender, not per message; a sender `users.info` does not know is served
//! without a name.

use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeModel, RecordedRequest};
use clawgate_tests::fake_slack::FakeSlack;
use clawgate_tests::harness::Shell;
use serde_json::json;

use super::channel_story::{OPEN, Transport, admin, assert_result_valid};

fn alice() -> serde_json::Value {
    json!({"id": "U1", "name": "alice",
        "profile": {"display_name": "", "real_name": "Alice Liddell"}})
}

/// The conversation info block of a turn's model request: the user message just before the
/// one it describes (the system prompt does not carry it).
fn info_of(r: &RecordedRequest) -> String {
    let messages = r.json["messages"].as_array().cloned().unwrap_or_default();
    let system = &messages[0];
    assert!(
        system["role"] != "system"
            || !system["content"]
                .as_str()
                .unwrap_or_default()
                .contains("untrusted metadata"),
        "{system}"
    );
    let info = &messages[messages.len().saturating_sub(2)];
    assert_eq!(info["role"], "user", "{info}");
    let text = info["content"].as_str().unwrap_or_default().to_string();
    assert!(
        text.starts_with("Conversation info (untrusted metadata):"),
        "{text}"
    );
    text
}

fn pairing_request_names_the_sender(shell: Shell) {
    let model = FakeModel::echo();
    let slack = FakeSlack::start();
    slack.add_user("U1", alice());
    let gw = slack.options(&model, "").start(shell);
    slack.ready();
    slack.send_dm(1, "hello?");
    slack.wait_sent(1);
    let mut ws = admin(&gw);
    let list = ws
        .call("channels.pairing.list", Some(json!({"channel": "slack"})))
        .expect("channels.pairing.list");
    assert_result_valid("channels.pairing.list", &list);
    let requests = list["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 1, "{list}");
    assert_eq!(
        requests[0]["metadata"],
        json!({"name": "Alice Liddell", "senderId": "U1"}),
        "{list}"
    );
    assert_eq!(slack.looked_up(), ["U1"]);
    assert_eq!(slack.auth_headers("users.info"), ["Bearer xoxb-test"]);
    assert!(model.requests().is_empty());
}

fn the_agent_sees_the_name_looked_up_once(shell: Shell) {
    let model = FakeModel::echo();
    let slack = FakeSlack::start();
    slack.add_user("U1", alice());
    let gw = slack.options(&model, OPEN).start(shell);
    slack.ready();
    slack.send_dm(1, "first");
    slack.wait_sent(1);
    slack.send_dm(1, "second");
    let sent = slack.wait_sent(2);
    assert_eq!(sent[1], ("DU1".into(), "Echo from fake LLM: second".into()));
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        let info = info_of(r);
        assert!(
            info.contains("\"name\": \"Alice Liddell\"") && info.contains("\"id\": \"U1\""),
            "{info}"
        );
    }
    assert_eq!(slack.looked_up(), ["U1"], "kept after the first lookup");
    // A sender users.info does not know is answered all the same, without a name.
    slack.send_dm(2, "who am I?");
    let sent = slack.wait_sent(3);
    assert_eq!(
        sent[2],
        ("DU2".into(), "Echo from fake LLM: who am I?".into())
    );
    let info = info_of(&model.requests()[2]);
    assert!(
        info.contains("\"id\": \"U2\"") && !info.contains("\"name\""),
        "{info}"
    );
    drop(gw);
}

both!(
    pairing_request_names_the_sender,
    the_agent_sees_the_name_looked_up_once,
);
