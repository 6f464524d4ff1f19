//! The Bot API as data: the requests clawgate makes (`getMe`, `deleteWebhook`, `getUpdates`,
//! `sendMessage`, `sendChatAction`) as [`HttpRequest`]s, and their answers decoded: the
//! `{ok, result | error_code, description, parameters.retry_after}` envelope, the bot's
//! identity, and updates normalised into the channels' [`Inbound`] message. The decoders take
//! arbitrary bytes (the fuzzers feed them).

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use crate::channels::inbound::{ChatKind, Inbound, Sender};
use crate::frame::push_json_str;
use crate::model::HttpRequest;
use crate::model::json_text::{Object, push_array};

/// Seconds a `getUpdates` long poll waits for updates.
pub const POLL_TIMEOUT_SECS: u64 = 30;
/// Updates one `getUpdates` returns at most.
pub const POLL_LIMIT: u64 = 100;
/// The update kinds asked for (only messages are served).
pub const ALLOWED_UPDATES: &[&str] = &["message"];

/// The Bot API methods that change nothing on the server: `getUpdates` with the same offset
/// answers the same updates (only a higher offset confirms them), `getMe` is a read.
const READS: &[&str] = &["getUpdates", "getMe"];

/// A Bot API call `method` with a JSON body (its text), for the account's `apiRoot` and token.
pub fn request(api_root: &str, token: &str, method: &str, body: String) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url: format!("{api_root}/bot{token}/{method}"),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into_bytes(),
        idempotent: READS.contains(&method),
        dialing: Default::default(),
    }
}

/// Room for a body's JSON besides its texts.
const BODY_ROOM: usize = 96;

/// The `getUpdates` body for the next `offset`.
pub fn get_updates(offset: i64) -> String {
    let mut out = String::with_capacity(BODY_ROOM);
    let mut body = Object::new(&mut out);
    push_array(body.key("allowed_updates"), ALLOWED_UPDATES, |u, out| {
        push_json_str(out, u)
    });
    body.u64("limit", POLL_LIMIT)
        .i64("offset", offset)
        .u64("timeout", POLL_TIMEOUT_SECS)
        .end();
    out
}

/// The `sendMessage` body for one HTML message.
pub fn send_message(chat_id: &str, html: &str, thread: Option<&str>) -> String {
    let mut out = String::with_capacity(BODY_ROOM + chat_id.len() + html.len());
    Object::new(&mut out)
        .str("chat_id", chat_id)
        .opt_i64("message_thread_id", thread_id(thread))
        .str("parse_mode", "HTML")
        .str("text", html)
        .end();
    out
}

/// The `sendChatAction` body showing typing in a chat (and thread).
pub fn typing(chat_id: &str, thread: Option<&str>) -> String {
    let mut out = String::with_capacity(BODY_ROOM + chat_id.len());
    Object::new(&mut out)
        .str("action", "typing")
        .str("chat_id", chat_id)
        .opt_i64("message_thread_id", thread_id(thread))
        .end();
    out
}

/// A thread (topic) as the Bot API's `message_thread_id`, when it is a number.
fn thread_id(thread: Option<&str>) -> Option<i64> {
    thread.and_then(|t| t.parse::<i64>().ok())
}

/// Why a call failed, as the Bot API (or the transport) said.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `ok: false` (or a non-2xx status): Telegram's code and description.
    #[error("{code} {description}")]
    Refused {
        /// `error_code` (else the HTTP status).
        code: u16,
        /// `description`.
        description: String,
        /// `parameters.retry_after`, seconds, on 429.
        retry_after: Option<u64>,
    },
    /// The body is not the Bot API's envelope.
    #[error("unreadable Bot API answer (HTTP {status}): {reason}")]
    Unreadable {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// Whether retrying cannot help (a bad token, a chat that does not exist or blocked us).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ApiError::Refused {
                code: 400 | 401 | 403 | 404,
                ..
            }
        )
    }
}

/// The answer's envelope, its `result` read as `R` (a `Value`, or skipped).
#[derive(Deserialize)]
struct Envelope<R> {
    ok: bool,
    #[serde(default)]
    result: R,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// The `result` of a call that answered `status` with `body`, or why it failed.
pub fn result(status: u16, body: &[u8]) -> Result<Value, ApiError> {
    envelope(status, body)
}

/// Whether a call whose `result` nobody reads (`sendMessage` delivering a reply,
/// `sendChatAction`) succeeded, or why not: [`result`] without building the `result`'s tree
/// (a sent message's, ~7,000 instructions a reply).
pub fn accepted(status: u16, body: &[u8]) -> Result<(), ApiError> {
    envelope::<IgnoredAny>(status, body).map(drop)
}

fn envelope<R: DeserializeOwned + Default>(status: u16, body: &[u8]) -> Result<R, ApiError> {
    let env: Envelope<R> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return Err(if (200..300).contains(&status) {
                ApiError::Unreadable {
                    status,
                    reason: e.to_string(),
                }
            } else {
                ApiError::Refused {
                    code: status,
                    description: String::from_utf8_lossy(body.get(..200).unwrap_or(body))
                        .into_owned(),
                    retry_after: None,
                }
            });
        }
    };
    let success = (200..300).contains(&status);
    if env.ok && success {
        return Ok(env.result);
    }
    if success && env.error_code.is_none() {
        // A refusal without its code on a 2xx is not the Bot API's envelope.
        return Err(ApiError::Unreadable {
            status,
            reason: "ok: false without an error_code".into(),
        });
    }
    Err(ApiError::Refused {
        code: env.error_code.unwrap_or(status),
        description: env.description.unwrap_or_default(),
        retry_after: env.parameters.and_then(|p| p.retry_after),
    })
}

/// The bot's identity from `getMe`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Me {
    /// The bot's user id.
    pub id: i64,
    /// Its `@username`, without the `@`.
    #[serde(default)]
    pub username: Option<String>,
}

/// The bot's identity from a `getMe` result.
pub fn me(result: Value) -> Result<Me, ApiError> {
    serde_json::from_value(result).map_err(|e| ApiError::Unreadable {
        status: 200,
        reason: format!("getMe: {e}"),
    })
}

/// The `message_id` of a `sendMessage` result.
pub fn sent_message_id(result: &Value) -> Option<i64> {
    result.get("message_id").and_then(Value::as_i64)
}

/// One update: its id, and the message it carries when it is one clawgate serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// `update_id`.
    pub update_id: i64,
    /// The message, normalised; `None` for updates that are not served (they are confirmed
    /// and dropped).
    pub message: Option<Inbound>,
}

#[derive(Deserialize)]
struct RawUpdate {
    #[serde(default)]
    message: Option<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    message_id: i64,
    chat: RawChat,
    #[serde(default)]
    from: Option<RawUser>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    entities: Vec<RawEntity>,
    #[serde(default)]
    message_thread_id: Option<i64>,
    #[serde(default)]
    is_topic_message: Option<bool>,
    #[serde(default)]
    reply_to_message: Option<Box<RawReply>>,
}

#[derive(Deserialize)]
struct RawReply {
    #[serde(default)]
    from: Option<RawUser>,
}

#[derive(Deserialize)]
struct RawChat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct RawUser {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct RawEntity {
    #[serde(rename = "type")]
    kind: String,
    offset: usize,
    length: usize,
}

/// The updates of a `getUpdates` answer (`status`, `body`), normalised for `account`; `me`
/// decides what counts as a mention. An update that does not decode as a message is kept
/// with `message: None` (so its id is still confirmed); one without an `update_id` fails
/// the whole answer.
pub fn updates(status: u16, body: &[u8], account: &str, me: &Me) -> Result<Vec<Update>, ApiError> {
    let result = result(status, body)?;
    let Value::Array(items) = result else {
        return Err(ApiError::Unreadable {
            status,
            reason: "getUpdates result is not a list".into(),
        });
    };
    items
        .into_iter()
        .map(|item| {
            let update_id = item
                .get("update_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::Unreadable {
                    status,
                    reason: "an update has no update_id".into(),
                })?;
            let message = serde_json::from_value::<RawUpdate>(item)
                .ok()
                .and_then(|u| u.message)
                .and_then(|m| normalize(m, account, me, update_id));
            Ok(Update { update_id, message })
        })
        .collect()
}

fn normalize(m: RawMessage, account: &str, me: &Me, update_id: i64) -> Option<Inbound> {
    let kind = match m.chat.kind.as_str() {
        "private" => ChatKind::Direct,
        "group" | "supergroup" => ChatKind::Group,
        _ => return None,
    };
    let from = m.from?;
    if from.is_bot {
        return None;
    }
    let text = m.text.or(m.caption)?;
    let mentioned = kind == ChatKind::Direct
        || mentions(&text, &m.entities, me)
        || m.reply_to_message
            .and_then(|r| r.from)
            .is_some_and(|u| u.id == me.id);
    let name = match (from.first_name, from.last_name) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    };
    let thread = match (kind, m.is_topic_message) {
        (ChatKind::Group, Some(true)) => m.message_thread_id.map(|t| t.to_string()),
        _ => None,
    };
    Some(Inbound {
        channel: "telegram".into(),
        account: account.to_string(),
        chat_id: m.chat.id.to_string(),
        kind,
        thread,
        sender: Sender {
            id: from.id.to_string(),
            name,
            username: from.username,
            tag: None,
        },
        text,
        message_id: m.message_id.to_string(),
        event_id: update_id.to_string(),
        mentioned,
        group: None,
    })
}

/// Whether a `mention` entity names the bot. Entity offsets count UTF-16 units.
fn mentions(text: &str, entities: &[RawEntity], me: &Me) -> bool {
    let Some(user) = me.username.as_deref() else {
        return false;
    };
    let units: Vec<u16> = text.encode_utf16().collect();
    entities.iter().filter(|e| e.kind == "mention").any(|e| {
        let end = e.offset.saturating_add(e.length);
        units
            .get(e.offset..end)
            .map(String::from_utf16_lossy)
            .is_some_and(|m| m.trim_start_matches('@').eq_ignore_ascii_case(user))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::model::json_text::tests::text;

    /// A thread as a channel gives it: a number (Telegram's topics), or any text.
    fn thread() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            text()
        ])
    }

    proptest! {
        /// The bodies written out are byte for byte the text of the `Value`s they were built
        /// as before.
        #[test]
        fn bodies_are_the_text_of_their_values(
            offset in any::<i64>(),
            chat_id in text(),
            html in text(),
            thread in thread(),
        ) {
            let old = json!({
                "timeout": POLL_TIMEOUT_SECS,
                "limit": POLL_LIMIT,
                "allowed_updates": ALLOWED_UPDATES,
                "offset": offset,
            });
            prop_assert_eq!(get_updates(offset), old.to_string());
            let id = thread.as_deref().and_then(|t| t.parse::<i64>().ok());
            let mut old = json!({"chat_id": chat_id, "text": html, "parse_mode": "HTML"});
            if let Some(t) = id {
                old["message_thread_id"] = json!(t);
            }
            prop_assert_eq!(send_message(&chat_id, &html, thread.as_deref()), old.to_string());
            let mut old = json!({"chat_id": chat_id, "action": "typing"});
            if let Some(t) = id {
                old["message_thread_id"] = json!(t);
            }
            prop_assert_eq!(typing(&chat_id, thread.as_deref()), old.to_string());
        }
    }

    fn me() -> Me {
        Me {
            id: 999,
            username: Some("clawbot".into()),
        }
    }

    #[test]
    fn updates_normalise_dms_groups_and_mentions() {
        let body = br#"{"ok":true,"result":[
          {"update_id":10,"message":{"message_id":504,"from":{"id":222,"is_bot":false,"first_name":"Mallory","username":"mallory"},"chat":{"id":222,"type":"private"},"date":1,"text":"hi"}},
          {"update_id":11,"message":{"message_id":7,"from":{"id":222,"is_bot":false,"first_name":"M"},"chat":{"id":-100,"type":"supergroup"},"date":1,"text":"\ud83d\ude00 @clawbot go","entities":[{"type":"mention","offset":3,"length":8}]}},
          {"update_id":12,"edited_message":{"message_id":1}},
          {"update_id":13,"message":{"message_id":8,"from":{"id":5,"is_bot":false},"chat":{"id":-100,"type":"group"},"text":"no mention"}}
        ]}"#;
        let u = updates(200, body, "default", &me()).unwrap();
        assert_eq!(u.len(), 4);
        let dm = u[0].message.as_ref().unwrap();
        assert_eq!(
            (dm.kind, dm.chat_id.as_str(), dm.sender.id.as_str()),
            (ChatKind::Direct, "222", "222")
        );
        assert_eq!(dm.sender.username.as_deref(), Some("mallory"));
        assert_eq!(
            (dm.message_id.as_str(), dm.event_id.as_str()),
            ("504", "10")
        );
        assert!(u[1].message.as_ref().unwrap().mentioned);
        assert_eq!(u[2].message, None);
        assert!(!u[3].message.as_ref().unwrap().mentioned);
    }

    #[test]
    fn errors_carry_code_description_and_retry_after() {
        let e = result(429, br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#).unwrap_err();
        assert_eq!(
            e,
            ApiError::Refused {
                code: 429,
                description: "Too Many Requests: retry after 3".into(),
                retry_after: Some(3)
            }
        );
        let e = result(
            401,
            br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
        )
        .unwrap_err();
        assert!(e.is_permanent());
        assert!(matches!(
            result(502, b"<html>bad gateway"),
            Err(ApiError::Refused { code: 502, .. })
        ));
        assert!(matches!(
            result(200, b"nope"),
            Err(ApiError::Unreadable { .. })
        ));
        assert!(updates(200, br#"{"ok":true,"result":[{"message":{}}]}"#, "a", &me()).is_err());
    }

    #[test]
    fn an_answer_whose_result_is_skipped_decides_as_one_read() {
        let answers: [(u16, &[u8]); 7] = [
            (200, br#"{"ok":true,"result":{"message_id":5,"chat":{"id":1},"text":"hi"}}"#),
            (200, br#"{"ok":true}"#),
            (429, br#"{"ok":false,"error_code":429,"description":"slow","parameters":{"retry_after":3}}"#),
            (400, br#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#),
            (200, br#"{"ok":false,"description":"no code"}"#),
            (502, b"<html>bad gateway"),
            (200, br#"{"ok":true,"result":{"a":[1,2"#),
        ];
        for (status, body) in answers {
            assert_eq!(
                accepted(status, body),
                result(status, body).map(drop),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn requests_name_the_method_under_the_token() {
        let r = request("http://127.0.0.1:9", "1:abc", "getUpdates", get_updates(11));
        assert_eq!(r.url, "http://127.0.0.1:9/bot1:abc/getUpdates");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["offset"], 11);
        assert_eq!(body["timeout"], 30);
        assert!(
            !format!("{r:?}").contains("1:abc"),
            "the token never reaches a log"
        );
    }
}
