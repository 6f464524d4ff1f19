//! Slack's inbound wire formats on any bytes: a Socket Mode frame, an Events API body and a
//! `users.info` answer. Whatever parses as a user's message becomes an `Inbound` whose ids,
//! lane and dedupe key are well formed; an envelope always carries the id its ack needs; a
//! user's name is never empty and always one of the fields upstream reads it from.

use crate::channels::bindings;
use crate::channels::config::{DmScope, GroupScope};
use crate::channels::slack::api;
use crate::channels::slack::events::{self, Callback, SocketFrame};

/// Check both parsers on one input; whether a message came out.
pub fn run(data: &[u8]) -> bool {
    let mut found = false;
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(frame) = events::parse_socket_frame(text)
        && let SocketFrame::Envelope {
            envelope_id,
            callback,
        } = frame
    {
        let ack = events::ack(&envelope_id);
        let back: serde_json::Value = serde_json::from_str(&ack).unwrap_or_default();
        assert_eq!(back["envelope_id"].as_str(), Some(envelope_id.as_str()));
        found |= check(callback);
    }
    if let Ok(callback) = events::parse_callback(data) {
        found |= check(callback);
    }
    if let Ok(v) = api::decode(200, &[], data)
        && let Some(name) = api::user_name(&v)
    {
        assert!(!name.is_empty() && name.trim() == name);
        let user = &v["user"];
        let from = [
            &user["profile"]["display_name"],
            &user["profile"]["real_name"],
            &user["name"],
        ];
        assert!(
            from.iter()
                .any(|f| f.as_str().map(str::trim) == Some(name.as_str()))
        );
        found = true;
    }
    found
}

fn check(callback: Callback) -> bool {
    let Callback::Message(m) = callback else {
        return false;
    };
    let i = m.into_inbound("default", Some("UBOT"));
    assert_eq!(i.channel, "slack");
    assert!(i.dedupe_key().ends_with(&i.message_id));
    assert!(i.lane().starts_with("slack:default:"));
    assert!(
        bindings::route(&[], &i, DmScope::PerChannelPeer, GroupScope::PerGroup)
            .session_key(&i)
            .starts_with("agent:main:")
    );
    true
}
