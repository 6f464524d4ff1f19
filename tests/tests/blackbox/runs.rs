//! The run engine over real sockets: two `chat.send`s on one session run one after the other
//! (the second waits in the session's lane and sees the first's answer), and `chat.history`
//! pages over a 250-message transcript read from the store, before and after a kill -9.

use std::time::Duration;

use clawgate_core::fuzzing::sim::page_texts;
use clawgate_tests::both;
use clawgate_tests::fake_model::{FakeModel, Reply};
use clawgate_tests::harness::{Shell, Ws};
use clawgate_tests::schema::{self, server_text_frames};
use serde_json::{Value, json};

use super::agent::{assert_frames_valid, chat_send, operator, options, run_events};

fn two_chat_sends_on_one_session_are_answered_in_order(shell: Shell) {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        // Slow enough that the second message arrives while the first run streams.
        Reply::text(&["re: ", &said]).with_delay(Duration::from_millis(100))
    });
    let gw = options(Some(&model)).start(shell);
    let mut ws = operator(&gw);
    assert_eq!(chat_send(&mut ws, "first", "k-lane-1")["status"], "started");
    assert_eq!(
        chat_send(&mut ws, "second", "k-lane-2")["status"],
        "started"
    );
    let last = run_events(&mut ws, "k-lane-2");
    assert_eq!(last.last().unwrap().1["state"], "final", "{last:?}");

    assert_ran_one_after_the_other(&ws, "k-lane-1", "k-lane-2");

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let second: Vec<Value> = requests[1].json["messages"].as_array().unwrap().clone();
    let said: Vec<&str> = second
        .iter()
        .filter(|m| m["role"] != "system")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(said, ["first", "re: first", "second"], "the turns in order");
    let history = ws
        .call("chat.history", Some(json!({"sessionKey": "main"})))
        .unwrap();
    let texts = page_texts(&history);
    assert_eq!(texts, ["first", "re: first", "second", "re: second"]);
    assert_frames_valid(&ws);
}

/// Every `chat` and `agent` event of run `first` came before any of run `second`'s.
pub(super) fn assert_ran_one_after_the_other(ws: &Ws, first: &str, second: &str) {
    let runs: Vec<String> = server_text_frames(ws.received())
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|f| f["event"] == "chat" || f["event"] == "agent")
        .filter_map(|f| f["payload"]["runId"].as_str().map(str::to_string))
        .collect();
    let first_of_second = runs.iter().position(|r| r == second).unwrap();
    let last_of_first = runs.iter().rposition(|r| r == first).unwrap();
    assert!(last_of_first < first_of_second, "runs overlapped: {runs:?}");
}

/// Every message of the session, paging back from the newest 100 at a time.
fn all_pages(ws: &mut Ws) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut offset = 0;
    loop {
        let page = ws
            .call(
                "chat.history",
                Some(json!({"sessionKey": "main", "limit": 100, "offset": offset})),
            )
            .unwrap();
        assert_eq!(page["totalMessages"], 250, "{page}");
        let mut texts: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"][0]["text"].as_str().unwrap().to_string())
            .collect();
        texts.append(&mut out);
        out = texts;
        match page["nextOffset"].as_u64() {
            Some(next) => {
                assert_eq!(page["hasMore"], true);
                offset = next;
            }
            None => {
                assert_eq!(page["hasMore"], false);
                return out;
            }
        }
    }
}

fn history_pages_across_250_messages_and_after_a_restart(shell: Shell) {
    let model = FakeModel::start(|req| {
        let said = req.last_user_text().unwrap_or_default();
        Reply::text(&["re: ", &said])
    });
    let opts = options(Some(&model));
    let gw = opts.start(shell);
    let mut ws = operator(&gw);
    for i in 0..125 {
        let key = format!("k-page-{i}");
        chat_send(&mut ws, &format!("m{i}"), &key);
        run_events(&mut ws, &key);
    }
    let want: Vec<String> = (0..125)
        .flat_map(|i| [format!("m{i}"), format!("re: m{i}")])
        .collect();
    assert_eq!(all_pages(&mut ws), want);
    let tail = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "main", "limit": 1000})),
        )
        .unwrap();
    assert_eq!(tail["messages"].as_array().unwrap().len(), 250);
    assert_eq!(tail["hasMore"], false);
    let too_many = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "main", "limit": 1001})),
        )
        .unwrap_err();
    assert!(too_many.message.contains("/limit"), "{too_many:?}");
    let cursor = tail["deltaCursor"].clone();
    drop(ws);

    // After a crash, start-up loads only a window of each transcript; pages still reach the
    // first message, and a new turn sees the recent ones.
    let gw = opts.crash_and_restart(shell, gw);
    let mut ws = operator(&gw);
    assert_eq!(all_pages(&mut ws), want, "history after kill -9");
    chat_send(&mut ws, "after", "k-page-after");
    run_events(&mut ws, "k-page-after");
    // The cursor taken before the crash catches up on what came after it.
    let delta = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "main", "cursor": cursor})),
        )
        .unwrap();
    assert_eq!(delta["kind"], "delta", "{delta}");
    let texts = page_texts(&delta);
    assert_eq!(texts, ["after", "re: after"]);
    let stale = ws
        .call(
            "chat.history",
            Some(json!({"sessionKey": "main", "cursor": "stale:9"})),
        )
        .unwrap();
    if let Some(s) = schema::schema() {
        for result in [&delta, &stale] {
            let pointer = "/definitions/ChatHistoryCursorResult";
            s.validate_at(pointer, result)
                .unwrap_or_else(|e| panic!("{e}: {result}"));
        }
    }
    let last = model.requests().pop().unwrap();
    let sent: Vec<&Value> = last.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user" || m["role"] == "assistant")
        .collect();
    assert_eq!(sent.len(), 200, "the window the model reads");
    assert_eq!(sent[sent.len() - 2]["content"], "re: m124");
    assert_frames_valid(&ws);
}

both!(
    two_chat_sends_on_one_session_are_answered_in_order,
    history_pages_across_250_messages_and_after_a_restart
);
