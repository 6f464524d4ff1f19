//! A Bot API `getUpdates` answer: the first byte picks the HTTP status (`'0'` 200, `'1'` 429,
//! `'2'` 401, `'3'` 502, by its value modulo 4), the rest is the body (also read as the
//! answer of a call whose result is skipped, which succeeds when it does, and as a tree: when
//! that is a list of items with ids, the updates read from the text have the same ids).
//! Whatever decodes is normalised into messages whose ids, lanes and sessions are well formed,
//! and whose text, rendered and cut as a reply would be, never makes a Telegram message over
//! 4096 units.

use crate::channels::bindings;
use crate::channels::config::{DmScope, GroupScope, TELEGRAM_MAX_TEXT};
use crate::channels::telegram::api::{self, ApiError, Me};
use crate::channels::telegram::format;
use serde_json::Value;

/// Texts longer than this are cut with the default limit only (small limits on long texts
/// are slow, not more interesting).
const SMALL_LIMIT_TEXT: usize = 2_000;

/// Check the update decoder and the reply formatter on one input; the decoded updates' count.
pub fn run(data: &[u8]) -> usize {
    let Some((selector, body)) = data.split_first() else {
        return 0;
    };
    let status = [200, 429, 401, 502][usize::from(*selector % 4)];
    let me = Me {
        id: 9,
        username: Some("bot".into()),
    };
    let tree = api::result(status, body);
    // A call whose result nobody reads succeeds whenever one whose result is read would.
    if tree.is_ok() {
        assert!(api::accepted(status, body).is_ok(), "accepted as a result");
    }
    let decoded = api::updates(status, body, "default", &me);
    // The tree's ids, when every item has one: `updates`, reading the text, finds them too.
    let ids = tree.ok().and_then(|t| {
        t.as_array()?
            .iter()
            .map(|item| item.get("update_id").and_then(Value::as_i64))
            .collect::<Option<Vec<i64>>>()
    });
    if let Some(ids) = ids {
        let read = decoded
            .as_ref()
            .map(|u| u.iter().map(|u| u.update_id).collect::<Vec<_>>());
        assert_eq!(read.as_ref(), Ok(&ids), "the tree's update ids");
    }
    if let Err(ApiError::Refused { code, .. }) = &decoded {
        assert!(
            status != 200 || *code != 200,
            "an ok answer is not a refusal"
        );
    }
    let Ok(updates) = decoded else {
        return 0;
    };
    assert_eq!(status, 200, "only a 2xx answer decodes");
    for u in &updates {
        let Some(m) = &u.message else { continue };
        assert_eq!(m.event_id, u.update_id.to_string());
        assert!(!m.chat_id.is_empty() && !m.sender.id.is_empty() && !m.message_id.is_empty());
        assert!(m.dedupe_key().ends_with(&m.message_id));
        assert!(
            bindings::route(&[], m, DmScope::PerChannelPeer, GroupScope::PerGroup)
                .session_key(m)
                .starts_with("agent:main:")
        );
        check_chunks(&m.text);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        check_chunks(text);
    }
    updates.len()
}

fn check_chunks(text: &str) {
    let limits: &[usize] = if text.len() <= SMALL_LIMIT_TEXT {
        &[7, 64, 4000]
    } else {
        &[4000]
    };
    for limit in limits {
        for chunk in format::chunks(text, *limit) {
            let units = chunk.encode_utf16().count();
            assert!(units <= TELEGRAM_MAX_TEXT, "a chunk of {units} units");
        }
    }
}
