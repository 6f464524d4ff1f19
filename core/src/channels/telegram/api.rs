//! The Bot API as data: the requests clawgate makes (`getMe`, `deleteWebhook`, `getUpdates`,
//! `sendMessage`, `sendChatAction`) as [`HttpRequest`]s, and their answers decoded: the
//! `{ok, result | error_code, description, parameters.retry_after}` envelope, the bot's
//! identity, and updates normalised into the channels' [`Inbound`] message. The decoders take
//! arbitrary bytes (the fuzzers feed them).

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::channels::inbound::{ChatKind, Inbound, Sender};
use crate::frame::push_json_str;
use crate::json_shape::{Key, Shape, deserialize_by_shape};
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
        url: [api_root, "/bot", token, "/", method].concat(),
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

/// The answer's envelope, its `result` read as `R` (a `Value`, a `getUpdates` list, or
/// skipped).
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

fn envelope<'a, R: Deserialize<'a> + Default>(status: u16, body: &'a [u8]) -> Result<R, ApiError> {
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

/// A `getUpdates` result read straight from the answer's text: its items, or something that
/// is not a list.
#[derive(Default)]
enum UpdateList<'a> {
    /// `result` is missing, `null` or not an array.
    #[default]
    NotAList,
    /// The items, in order.
    Items(Vec<RawItem<'a>>),
}

/// One item of the list: its `update_id` when that is an integer in `i64` (what
/// `Value::as_i64` reads), and its `message`'s text, decoded on its own so that a message
/// that does not decode leaves the rest of the answer alone. As in a tree, a repeated key
/// counts with its last value.
struct RawItem<'a> {
    update_id: Option<i64>,
    message: Option<&'a RawValue>,
}

/// An `update_id`, when it is an integer in `i64`.
struct UpdateId(Option<i64>);

impl<'de> Shape<'de> for UpdateList<'de> {
    fn other() -> Self {
        UpdateList::NotAList
    }

    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(UpdateList::Items(items))
    }
}

impl<'de> Shape<'de> for RawItem<'de> {
    fn other() -> Self {
        RawItem {
            update_id: None,
            message: None,
        }
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut item = Self::other();
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "update_id" => item.update_id = map.next_value::<UpdateId>()?.0,
                "message" => item.message = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(item)
    }
}

impl Shape<'_> for UpdateId {
    fn other() -> Self {
        UpdateId(None)
    }

    fn uint(n: u64) -> Self {
        UpdateId(i64::try_from(n).ok())
    }

    fn negative(n: i64) -> Self {
        UpdateId(Some(n))
    }
}

deserialize_by_shape!(UpdateList<'de>, RawItem<'de>, UpdateId);

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
///
/// Read in one pass over the text, each message's text then decoded on its own (no JSON
/// tree). What no one reads is checked for its syntax only, as serde skips a value: a number
/// out of `f64`'s range, a lone surrogate escape or nesting deeper than 128 there (and
/// invalid UTF-8 outside the messages) fails neither a message nor the answer; in a
/// message's field that is read, it makes that message `None`, as does a repeated key.
pub fn updates(status: u16, body: &[u8], account: &str, me: &Me) -> Result<Vec<Update>, ApiError> {
    let UpdateList::Items(items) = envelope::<UpdateList>(status, body)? else {
        return Err(ApiError::Unreadable {
            status,
            reason: "getUpdates result is not a list".into(),
        });
    };
    items
        .into_iter()
        .map(|item| {
            let update_id = item.update_id.ok_or_else(|| ApiError::Unreadable {
                status,
                reason: "an update has no update_id".into(),
            })?;
            let message = item
                .message
                .and_then(|m| serde_json::from_str::<RawMessage>(m.get()).ok())
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

    /// The tree read `updates` replaced: the answer parsed into a `Value`, each item then
    /// decoded from its subtree. The reference of `updates_read_as_their_tree_was`.
    fn tree_updates(status: u16, body: &[u8]) -> Result<Vec<Update>, ApiError> {
        #[derive(Deserialize)]
        struct TreeUpdate {
            #[serde(default)]
            message: Option<RawMessage>,
        }
        let Value::Array(items) = result(status, body)? else {
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
                let message = serde_json::from_value::<TreeUpdate>(item)
                    .ok()
                    .and_then(|u| u.message)
                    .and_then(|m| normalize(m, "acct", &me(), update_id));
                Ok(Update { update_id, message })
            })
            .collect()
    }

    /// A key's value as Telegram sends it mostly; else the key left out (`None`) or one of
    /// `odd` in its place.
    fn field(
        valid: impl Strategy<Value = Value> + 'static,
        odd: Vec<Value>,
    ) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            24 => valid.prop_map(Some),
            1 => Just(None),
            1 => proptest::sample::select(odd).prop_map(Some),
        ]
        .boxed()
    }

    /// Values of the wrong type for most keys.
    fn odd() -> Vec<Value> {
        vec![
            json!(null),
            json!(1.5),
            json!("7"),
            json!(true),
            json!([1]),
            json!({"a": 1}),
        ]
    }

    /// An object of the keys whose value is `Some`.
    fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
        let mut o = serde_json::Map::new();
        for (k, v) in fields {
            if let Some(v) = v {
                o.insert(k.to_string(), v);
            }
        }
        Value::Object(o)
    }

    /// An integer id: any `i64`, or above it.
    fn id() -> BoxedStrategy<Value> {
        prop_oneof![
            10 => any::<i64>().prop_map(Value::from),
            1 => (i64::MAX as u64..).prop_map(Value::from),
        ]
        .boxed()
    }

    /// A user (`from`), well formed or not.
    fn user() -> BoxedStrategy<Value> {
        let bot = prop_oneof![3 => Just(json!(false)), 1 => Just(json!(true))];
        let name = || field(text().prop_map(Value::from), odd());
        let username = prop_oneof![Just("clawbot".to_string()), text()].prop_map(Value::from);
        (
            field(id(), odd()),
            field(bot, odd()),
            name(),
            name(),
            field(username, odd()),
        )
            .prop_map(|(id, is_bot, first, last, username)| {
                object([
                    ("id", id),
                    ("is_bot", is_bot),
                    ("first_name", first),
                    ("last_name", last),
                    ("username", username),
                ])
            })
            .boxed()
    }

    /// A message, well formed or not: every key clawgate reads, each left out or of another
    /// type now and then, and the array form serde also reads a struct from.
    fn message() -> BoxedStrategy<Value> {
        let offset = || prop_oneof![6 => (0u64..12).prop_map(Value::from), 1 => id()];
        let entity = (
            field(
                proptest::sample::select(vec![json!("mention"), json!("bold")]),
                odd(),
            ),
            field(offset(), odd()),
            field(offset(), odd()),
        )
            .prop_map(|(kind, offset, length)| {
                object([("type", kind), ("offset", offset), ("length", length)])
            });
        let chat = (
            field(id(), odd()),
            field(
                proptest::sample::select(vec![
                    json!("private"),
                    json!("group"),
                    json!("supergroup"),
                    json!("channel"),
                ]),
                odd(),
            ),
        )
            .prop_map(|(id, kind)| {
                object([("id", id), ("type", kind), ("title", Some(json!("t")))])
            });
        let said = prop_oneof![
            3 => text(),
            1 => "@clawbot [a-z ]{0,6}|x @CLAWBOT|@other hi",
        ]
        .prop_map(Value::from);
        let reply = prop_oneof![
            (field(id(), odd())).prop_map(|id| json!({"from": object([("id", id)])})),
            Just(json!({"from": {"id": 999}})),
        ];
        let object = (
            (
                field(id(), odd()),
                field(chat, odd()),
                field(user(), odd()),
                field(said.clone(), odd()),
                field(said, odd()),
            ),
            (
                field(
                    proptest::collection::vec(entity, 0..3).prop_map(Value::from),
                    odd(),
                ),
                field(id(), odd()),
                field(any::<bool>().prop_map(Value::from), odd()),
                field(reply, odd()),
                field(any::<u32>().prop_map(Value::from), odd()),
            ),
        )
            .prop_map(
                |((id, chat, from, text, caption), (entities, thread, topic, reply, date))| {
                    object([
                        ("message_id", id),
                        ("chat", chat),
                        ("from", from),
                        ("text", text),
                        ("caption", caption),
                        ("entities", entities),
                        ("message_thread_id", thread),
                        ("is_topic_message", topic),
                        ("reply_to_message", reply),
                        ("date", date),
                    ])
                },
            );
        prop_oneof![
            12 => object,
            1 => (id(), text()).prop_map(|(id, t)| json!([id, {"id": 3, "type": "private"}, {"id": 3}, t])),
            1 => proptest::sample::select(odd()),
        ]
        .boxed()
    }

    /// An item of a `getUpdates` result, well formed or not.
    fn item() -> BoxedStrategy<Value> {
        let update = (
            field(id(), odd()),
            field(message(), odd()),
            field(message(), odd()),
        )
            .prop_map(|(id, message, edited)| {
                object([
                    ("update_id", id),
                    ("message", message),
                    ("edited_message", edited),
                ])
            });
        prop_oneof![20 => update, 1 => proptest::sample::select(odd())].boxed()
    }

    /// A `getUpdates` answer: its status and its body's text, an envelope well formed or not.
    fn answer() -> impl Strategy<Value = (u16, String)> {
        let updates = proptest::collection::vec(item(), 0..4).prop_map(Value::from);
        let ok = prop_oneof![4 => Just(json!(true)), 1 => Just(json!(false))];
        let code = proptest::sample::select(vec![json!(429), json!(400), json!(70_000)]);
        let parameters = prop_oneof![Just(json!({"retry_after": 3})), Just(json!({}))];
        (
            proptest::sample::select(vec![200u16, 200, 200, 204, 429, 502]),
            (field(ok, odd()), field(updates, odd())),
            (
                field(code, odd()),
                field(text().prop_map(Value::from), odd()),
                field(parameters, odd()),
            ),
        )
            .prop_map(|(status, (ok, result), (code, description, parameters))| {
                let envelope = object([
                    ("ok", ok),
                    ("result", result),
                    ("error_code", code),
                    ("description", description),
                    ("parameters", parameters),
                ]);
                (status, envelope.to_string())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// `updates` reads every answer as the tree read did: the same updates, messages and
        /// errors with the same texts; cut short anywhere, both refuse it the same way (the
        /// serde reason for a cut inside a message may be worded apart).
        #[test]
        fn updates_read_as_their_tree_was((status, body) in answer(), cut in any::<usize>()) {
            let read = |body: &[u8]| updates(status, body, "acct", &me());
            prop_assert_eq!(read(body.as_bytes()), tree_updates(status, body.as_bytes()));
            let short = body.as_bytes().get(..cut % (body.len() + 1)).unwrap_or_default();
            match (read(short), tree_updates(status, short)) {
                (
                    Err(ApiError::Unreadable { status: a, .. }),
                    Err(ApiError::Unreadable { status: b, .. }),
                ) => prop_assert_eq!(a, b),
                (new, old) => prop_assert_eq!(new, old),
            }
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
    fn a_message_a_tree_refused_is_dropped_not_the_answer() {
        let dm = r#"{"message_id":1,"from":{"id":1},"chat":{"id":1,"type":"private"}"#;
        let body = format!(
            r#"{{"ok":true,"result":[
              {{"update_id":1,"message":{dm},"text":"\ud800"}}}},
              {{"update_id":2,"message":{dm},"text":"a","date":1e400}}}},
              {{"update_id":3,"message":{dm},"text":"a","text":"b"}}}},
              {{"update_id":4,"edited_message":{{"date":1e400}}}},
              {{"update_id":5,"message":{dm},"text":"fine"}}}}
            ]}}"#
        );
        assert!(
            result(200, body.as_bytes()).is_err(),
            "a tree refuses it all"
        );
        let u = updates(200, body.as_bytes(), "a", &me()).unwrap();
        let read: Vec<_> = u
            .iter()
            .map(|u| (u.update_id, u.message.as_ref().map(|m| m.text.as_str())))
            .collect();
        assert_eq!(
            read,
            [
                (1, None),
                (2, Some("a")),
                (3, None),
                (4, None),
                (5, Some("fine"))
            ]
        );
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
