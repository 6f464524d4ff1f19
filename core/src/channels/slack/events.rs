//! Slack's inbound wire formats, sans-IO: the Events API body (what HTTP mode receives and
//! what a Socket Mode `events_api` envelope carries as its `payload`) and the Socket Mode
//! frames around it (`hello`, `disconnect`, envelopes). A user's message (`message` or
//! `app_mention`) becomes the channels' [`Inbound`]; everything else is recognised and
//! ignored.

use serde::Deserialize;
use serde_json::Value;

use crate::channels::inbound::{ChatKind, Inbound, Sender};

/// Why a body is not an Events API payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not the expected shape.
    #[error("malformed Slack payload: {0}")]
    Malformed(String),
}

/// What an Events API body asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// `url_verification`: answer with this challenge.
    UrlVerification(String),
    /// A user's message.
    Message(Box<SlackMessage>),
    /// Anything else (another event type, a bot's own message, an edit): why it is ignored.
    Ignored(String),
}

/// A user's message, as Slack sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackMessage {
    /// The envelope's `event_id`.
    pub event_id: String,
    /// The channel (`D…` for a DM).
    pub channel: String,
    /// `im`, `channel`, `group` or `mpim`.
    pub channel_type: Option<String>,
    /// The sender (`U…`).
    pub user: String,
    /// The text (mrkdwn).
    pub text: String,
    /// The message's `ts` (its id).
    pub ts: String,
    /// The thread's parent `ts`, when posted in a thread.
    pub thread_ts: Option<String>,
    /// Whether it came as `app_mention`.
    pub app_mention: bool,
}

impl SlackMessage {
    /// The channels' form of it, for `account`; `bot_user_id` (from `auth.test`) recognises a
    /// mention written into a channel message.
    pub fn into_inbound(self, account: &str, bot_user_id: Option<&str>) -> Inbound {
        let direct = self.channel_type.as_deref() == Some("im")
            || (self.channel_type.is_none() && self.channel.starts_with('D'));
        let mentioned = direct
            || self.app_mention
            || bot_user_id.is_some_and(|b| self.text.contains(&format!("<@{b}>")));
        Inbound {
            channel: "slack".into(),
            account: account.into(),
            chat_id: self.channel,
            kind: if direct {
                ChatKind::Direct
            } else {
                ChatKind::Group
            },
            thread: self.thread_ts,
            sender: Sender {
                id: self.user,
                name: None,
                username: None,
                tag: None,
            },
            text: self.text,
            message_id: self.ts,
            event_id: self.event_id,
            mentioned,
            group: None,
        }
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type")]
    kind: Option<String>,
    challenge: Option<String>,
    event_id: Option<String>,
    event: Option<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    subtype: Option<String>,
    channel: Option<String>,
    channel_type: Option<String>,
    user: Option<String>,
    bot_id: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
}

/// Subtypes that are still a user's new message.
const MESSAGE_SUBTYPES: &[&str] = &["thread_broadcast", "file_share"];

/// Parse an Events API body.
pub fn parse_callback(body: &[u8]) -> Result<Callback, EventError> {
    let b: Body = serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    callback(b)
}

fn callback(b: Body) -> Result<Callback, EventError> {
    match b.kind.as_deref() {
        Some("url_verification") => {
            let c = b.challenge.ok_or_else(|| {
                EventError::Malformed("url_verification without challenge".into())
            })?;
            Ok(Callback::UrlVerification(c))
        }
        Some("event_callback") => {
            let Some(e) = b.event else {
                return Err(EventError::Malformed("event_callback without event".into()));
            };
            Ok(message(b.event_id.unwrap_or_default(), e))
        }
        other => Ok(Callback::Ignored(format!(
            "payload type {}",
            other.unwrap_or("(none)")
        ))),
    }
}

fn message(event_id: String, e: Event) -> Callback {
    let kind = e.kind.as_deref().unwrap_or_default();
    if kind != "message" && kind != "app_mention" {
        return Callback::Ignored(format!("event type {kind}"));
    }
    if let Some(s) = e
        .subtype
        .as_deref()
        .filter(|s| !MESSAGE_SUBTYPES.contains(s))
    {
        return Callback::Ignored(format!("message subtype {s}"));
    }
    if e.bot_id.is_some() {
        return Callback::Ignored("a bot's message".into());
    }
    let (Some(channel), Some(user), Some(ts)) = (e.channel, e.user, e.ts) else {
        return Callback::Ignored("message without channel, user or ts".into());
    };
    Callback::Message(Box::new(SlackMessage {
        event_id,
        channel,
        channel_type: e.channel_type,
        user,
        text: e.text.unwrap_or_default(),
        ts,
        thread_ts: e.thread_ts,
        app_mention: kind == "app_mention",
    }))
}

/// A Socket Mode frame from Slack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketFrame {
    /// The connection is ready.
    Hello,
    /// Slack will close this connection: open a new one (`reason`, e.g. `refresh_requested`).
    Disconnect(String),
    /// An envelope to acknowledge by its id; an `events_api` one carries its callback.
    Envelope {
        /// The id to acknowledge with.
        envelope_id: String,
        /// The `events_api` payload, or why there is none to act on.
        callback: Callback,
    },
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: Option<String>,
    envelope_id: Option<String>,
    reason: Option<String>,
    payload: Option<Value>,
}

/// Parse a Socket Mode text frame.
pub fn parse_socket_frame(text: &str) -> Result<SocketFrame, EventError> {
    let f: Frame = serde_json::from_str(text).map_err(|e| EventError::Malformed(e.to_string()))?;
    let kind = f.kind.unwrap_or_default();
    match kind.as_str() {
        "hello" => return Ok(SocketFrame::Hello),
        "disconnect" => return Ok(SocketFrame::Disconnect(f.reason.unwrap_or_default())),
        _ => {}
    }
    let envelope_id = f
        .envelope_id
        .ok_or_else(|| EventError::Malformed(format!("{kind} frame without envelope_id")))?;
    let callback = match (kind.as_str(), f.payload) {
        ("events_api", Some(p)) => {
            let b: Body =
                serde_json::from_value(p).map_err(|e| EventError::Malformed(e.to_string()))?;
            callback(b)?
        }
        _ => Callback::Ignored(format!("envelope type {kind}")),
    };
    Ok(SocketFrame::Envelope {
        envelope_id,
        callback,
    })
}

/// The acknowledgement of an envelope.
pub fn ack(envelope_id: &str) -> String {
    serde_json::json!({ "envelope_id": envelope_id }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dm(text: &str, thread: Option<&str>) -> Value {
        json!({"type": "event_callback", "event_id": "Ev1", "team_id": "T1",
            "event": {"type": "message", "channel": "D1", "channel_type": "im",
                "user": "U1", "text": text, "ts": "1.000100", "thread_ts": thread}})
    }

    #[test]
    fn url_verification_and_dm() {
        let c = parse_callback(br#"{"type":"url_verification","challenge":"abc","token":"t"}"#);
        assert_eq!(c, Ok(Callback::UrlVerification("abc".into())));
        let Ok(Callback::Message(m)) = parse_callback(dm("hi", Some("0.5")).to_string().as_bytes())
        else {
            panic!("not a message")
        };
        let i = m.into_inbound("default", Some("UBOT"));
        assert_eq!(i.kind, ChatKind::Direct);
        assert_eq!(i.thread.as_deref(), Some("0.5"));
        assert_eq!(i.dedupe_key(), "slack:default:D1:1.000100");
        assert!(i.mentioned);
    }

    #[test]
    fn bots_edits_and_other_events_are_ignored() {
        let mut b = dm("hi", None);
        b["event"]["bot_id"] = json!("B1");
        assert!(matches!(
            parse_callback(b.to_string().as_bytes()),
            Ok(Callback::Ignored(_))
        ));
        b["event"]["bot_id"] = Value::Null;
        b["event"]["subtype"] = json!("message_changed");
        assert!(matches!(
            parse_callback(b.to_string().as_bytes()),
            Ok(Callback::Ignored(_))
        ));
        assert!(parse_callback(b"[1]").is_err());
    }

    #[test]
    fn channel_mentions() {
        let mut b = dm("hey <@UBOT> there", None);
        b["event"]["channel"] = json!("C1");
        b["event"]["channel_type"] = json!("channel");
        let Ok(Callback::Message(m)) = parse_callback(b.to_string().as_bytes()) else {
            panic!()
        };
        let i = m.clone().into_inbound("a", Some("UBOT"));
        assert!(i.mentioned && i.kind == ChatKind::Group);
        assert!(!m.into_inbound("a", Some("UOTHER")).mentioned);
    }

    #[test]
    fn socket_frames() {
        assert_eq!(
            parse_socket_frame(r#"{"type":"hello","num_connections":1}"#),
            Ok(SocketFrame::Hello)
        );
        assert_eq!(
            parse_socket_frame(r#"{"type":"disconnect","reason":"refresh_requested"}"#),
            Ok(SocketFrame::Disconnect("refresh_requested".into()))
        );
        let f = json!({"type": "events_api", "envelope_id": "E1", "payload": dm("x", None)});
        let Ok(SocketFrame::Envelope {
            envelope_id,
            callback: Callback::Message(_),
        }) = parse_socket_frame(&f.to_string())
        else {
            panic!()
        };
        assert_eq!(ack(&envelope_id), r#"{"envelope_id":"E1"}"#);
        assert!(parse_socket_frame(r#"{"type":"events_api"}"#).is_err());
    }
}
