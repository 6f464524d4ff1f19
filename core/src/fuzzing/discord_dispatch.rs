//! One Discord Gateway message (arbitrary text): parsed, and a `MESSAGE_CREATE` normalised
//! into a message whose ids, lanes and sessions are well formed and whose text, cut as a
//! reply would be, never makes a Discord message over 2,000 units. The REST answer decoder
//! gets the same bytes as a body.

use crate::channels::Answer;
use crate::channels::bindings;
use crate::channels::chunk::units;
use crate::channels::config::{DmScope, GroupScope};
use crate::channels::discord::format::{self, DISCORD_MAX_TEXT};
use crate::channels::discord::gateway::{self, Event, Me};
use crate::channels::discord::rest;

/// Check the payload parser, the normaliser and the chunker on one input; whether it
/// parsed.
pub fn run(data: &[u8]) -> bool {
    let me = Me {
        id: "900".into(),
        username: Some("bot".into()),
    };
    for status in [200, 429] {
        let _ = rest::result(Ok(Answer {
            status,
            headers: &[],
            body: data,
        }));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(payload) = gateway::parse(text) else {
        return false;
    };
    if let Event::Message(d) = payload.event
        && let Some(m) = gateway::message(d, "default", &me)
    {
        assert!(!m.chat_id.is_empty() && !m.sender.id.is_empty() && !m.message_id.is_empty());
        assert_ne!(m.sender.id, me.id, "the bot's own messages are not served");
        assert!(m.dedupe_key().ends_with(&m.message_id));
        assert!(
            bindings::route(&[], &m, DmScope::PerChannelPeer, GroupScope::PerGroup)
                .session_key(&m)
                .starts_with("agent:main:discord:")
        );
        for chunk in format::chunks(&m.text, DISCORD_MAX_TEXT) {
            assert!(
                units(&chunk) <= DISCORD_MAX_TEXT,
                "a chunk of {} units",
                units(&chunk)
            );
        }
    }
    true
}
