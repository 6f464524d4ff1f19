//! The Discord Gateway's payloads as data: what clawgate sends (Identify, Resume,
//! Heartbeat) and what arrives (`{op, d, s, t}`) parsed into [`Event`]s, with
//! `MESSAGE_CREATE` normalised into the channels' [`Inbound`]. The parser takes arbitrary
//! text (the fuzzers feed it) and never panics.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::channels::inbound::{ChatKind, Inbound, Sender};

/// Guilds, guild messages and reactions, direct messages and reactions, message content,
/// guild expressions: the intents upstream identifies with.
pub const INTENTS: u64 = 46601;
/// The Gateway version and encoding asked for in the socket's URL.
pub const QUERY: &str = "v=10&encoding=json";

/// The bot's identity from READY.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Me {
    /// Its user id (a snowflake).
    pub id: String,
    /// Its username.
    pub username: Option<String>,
}

/// What a Gateway payload says.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// op 10: heartbeat every this many milliseconds.
    Hello {
        /// `heartbeat_interval`.
        interval_ms: u64,
    },
    /// op 11.
    HeartbeatAck,
    /// op 1: the Gateway asks for a heartbeat now.
    HeartbeatRequest,
    /// op 7: reconnect and resume.
    Reconnect,
    /// op 9: the session is invalid; `resumable` says whether Resume may still work.
    InvalidSession {
        /// `d`.
        resumable: bool,
    },
    /// op 0 READY: the session to resume later and the bot's identity.
    Ready {
        /// `session_id`.
        session_id: String,
        /// `resume_gateway_url`.
        resume_url: Option<String>,
        /// The bot.
        me: Me,
    },
    /// op 0 RESUMED.
    Resumed,
    /// op 0 MESSAGE_CREATE, its raw `d` (normalised by [`message`] with the bot's identity).
    Message(Value),
    /// Any other dispatch or op.
    Other,
}

/// A parsed payload: its sequence number (dispatches) and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    /// `s`.
    pub seq: Option<u64>,
    /// What it says.
    pub event: Event,
}

/// Why a payload could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not `{op, …}`.
    #[error("unreadable Gateway payload: {0}")]
    Unreadable(String),
    /// A known op or dispatch without the fields it needs.
    #[error("Gateway payload op {op} {kind} lacks {field}")]
    Missing {
        /// The op.
        op: u64,
        /// The dispatch type, if any.
        kind: String,
        /// What is missing.
        field: &'static str,
    },
}

#[derive(Deserialize)]
struct Raw {
    op: u64,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

/// Parse one Gateway text message.
pub fn parse(text: &str) -> Result<Payload, ParseError> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| ParseError::Unreadable(e.to_string()))?;
    let kind = raw.t.clone().unwrap_or_default();
    let missing = |field| ParseError::Missing {
        op: raw.op,
        kind: kind.clone(),
        field,
    };
    let event = match raw.op {
        10 => Event::Hello {
            interval_ms: raw
                .d
                .get("heartbeat_interval")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
                .ok_or_else(|| missing("heartbeat_interval"))?,
        },
        11 => Event::HeartbeatAck,
        1 => Event::HeartbeatRequest,
        7 => Event::Reconnect,
        9 => Event::InvalidSession {
            resumable: raw.d.as_bool().unwrap_or(false),
        },
        0 => match kind.as_str() {
            "READY" => {
                let user = raw.d.get("user").ok_or_else(|| missing("user"))?;
                Event::Ready {
                    session_id: raw
                        .d
                        .get("session_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing("session_id"))?
                        .to_string(),
                    resume_url: raw
                        .d
                        .get("resume_gateway_url")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    me: Me {
                        id: snowflake(user.get("id")).ok_or_else(|| missing("user.id"))?,
                        username: user
                            .get("username")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    },
                }
            }
            "RESUMED" => Event::Resumed,
            "MESSAGE_CREATE" => Event::Message(raw.d),
            _ => Event::Other,
        },
        _ => Event::Other,
    };
    Ok(Payload { seq: raw.s, event })
}

/// A snowflake (a string, or a number some fakes send).
fn snowflake(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct RawMessage {
    id: Value,
    channel_id: Value,
    #[serde(default)]
    guild_id: Option<Value>,
    author: RawUser,
    #[serde(default)]
    member: Option<RawMember>,
    #[serde(default)]
    content: String,
    #[serde(default)]
    mentions: Vec<RawUser>,
    #[serde(default)]
    referenced_message: Option<Box<RawReferenced>>,
}

#[derive(Deserialize)]
struct RawUser {
    id: Value,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    global_name: Option<String>,
    #[serde(default)]
    discriminator: Option<String>,
    #[serde(default)]
    bot: bool,
}

/// A guild message's `member`: the author's nickname there.
#[derive(Deserialize)]
struct RawMember {
    #[serde(default)]
    nick: Option<String>,
}

impl RawUser {
    /// Upstream's `formatDiscordUserTag`: `username#discriminator` for a legacy
    /// discriminator (not `0`), else the username.
    fn tag(&self) -> Option<String> {
        match (
            self.username.as_ref(),
            self.discriminator.as_deref().map(str::trim),
        ) {
            (Some(u), Some(d)) if !d.is_empty() && d != "0" => Some(format!("{u}#{d}")),
            (u, _) => u.cloned(),
        }
    }
}

#[derive(Deserialize)]
struct RawReferenced {
    #[serde(default)]
    author: Option<RawUser>,
}

/// A `MESSAGE_CREATE`'s `d` as an inbound message of `account`; `None` for messages that
/// are not served (from bots, the bot's own, without text, unreadable).
pub fn message(d: Value, account: &str, me: &Me) -> Option<Inbound> {
    let m: RawMessage = serde_json::from_value(d).ok()?;
    let author = snowflake(Some(&m.author.id))?;
    if m.author.bot || author == me.id || m.content.trim().is_empty() {
        return None;
    }
    let guild = m.guild_id.as_ref().and_then(|g| snowflake(Some(g)));
    let kind = if guild.is_some() {
        ChatKind::Group
    } else {
        ChatKind::Direct
    };
    let names_me = |u: &RawUser| snowflake(Some(&u.id)).is_some_and(|id| id == me.id);
    let mentioned = kind == ChatKind::Direct
        || m.mentions.iter().any(names_me)
        || m.referenced_message
            .as_ref()
            .and_then(|r| r.author.as_ref())
            .is_some_and(names_me);
    let id = snowflake(Some(&m.id))?;
    Some(Inbound {
        channel: "discord".into(),
        account: account.to_string(),
        chat_id: snowflake(Some(&m.channel_id))?,
        kind,
        thread: None,
        // Upstream's display name: the guild nickname, else the global name, else the
        // username.
        sender: Sender {
            id: author,
            tag: m.author.tag(),
            name: m
                .member
                .and_then(|mb| mb.nick)
                .or(m.author.global_name)
                .or(m.author.username.clone()),
            username: m.author.username,
        },
        text: m.content,
        message_id: id.clone(),
        event_id: id,
        mentioned,
        group: guild,
    })
}

/// op 2 Identify.
pub fn identify(token: &str) -> String {
    json!({"op": 2, "d": {
        "token": token,
        "intents": INTENTS,
        "properties": {"os": "linux", "browser": "clawgate", "device": "clawgate"},
    }})
    .to_string()
}

/// op 6 Resume.
pub fn resume(token: &str, session_id: &str, seq: Option<u64>) -> String {
    json!({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}}).to_string()
}

/// op 1 Heartbeat carrying the last sequence number.
pub fn heartbeat(seq: Option<u64>) -> String {
    json!({"op": 1, "d": seq}).to_string()
}

/// The socket URL for a Gateway base URL (`wss://gateway.discord.gg`).
pub fn socket_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    match base.split_once('?') {
        Some((b, _)) => format!("{}/?{QUERY}", b.trim_end_matches('/')),
        None => format!("{base}/?{QUERY}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Me {
        Me {
            id: "900".into(),
            username: Some("claw".into()),
        }
    }

    #[test]
    fn payloads_parse() {
        let p = parse(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#).unwrap();
        assert_eq!(p.event, Event::Hello { interval_ms: 41250 });
        let p = parse(r#"{"op":0,"s":1,"t":"READY","d":{"session_id":"abc","resume_gateway_url":"wss://r","user":{"id":"900","username":"claw"}}}"#).unwrap();
        assert_eq!(p.seq, Some(1));
        assert!(matches!(p.event, Event::Ready { ref session_id, .. } if session_id == "abc"));
        assert_eq!(
            parse(r#"{"op":9,"d":true}"#).unwrap().event,
            Event::InvalidSession { resumable: true }
        );
        assert_eq!(
            parse(r#"{"op":7,"d":null}"#).unwrap().event,
            Event::Reconnect
        );
        assert!(parse("nope").is_err());
        assert!(parse(r#"{"op":10,"d":{}}"#).is_err());
        assert!(parse(r#"{"op":0,"t":"READY","d":{"user":{}}}"#).is_err());
    }

    #[test]
    fn messages_normalise_dms_guilds_and_mentions() {
        let dm = json!({"id":"11","channel_id":"500","author":{"id":"42","username":"mallory","global_name":"Mallory"},"content":"hi"});
        let m = message(dm, "default", &me()).unwrap();
        assert_eq!(
            (m.kind, m.chat_id.as_str(), m.sender.id.as_str()),
            (ChatKind::Direct, "500", "42")
        );
        assert!(m.mentioned);
        let g = json!({"id":"12","channel_id":"600","guild_id":"700","author":{"id":"42"},"content":"<@900> go","mentions":[{"id":"900"}]});
        let m = message(g, "default", &me()).unwrap();
        assert_eq!((m.kind, m.group.as_deref()), (ChatKind::Group, Some("700")));
        assert!(m.mentioned);
        let unmentioned = json!({"id":"13","channel_id":"600","guild_id":"700","author":{"id":"42"},"content":"hey"});
        assert!(!message(unmentioned, "default", &me()).unwrap().mentioned);
        let bot =
            json!({"id":"14","channel_id":"500","author":{"id":"43","bot":true},"content":"hi"});
        assert_eq!(message(bot, "default", &me()), None);
        let own = json!({"id":"15","channel_id":"500","author":{"id":"900"},"content":"hi"});
        assert_eq!(message(own, "default", &me()), None);
    }

    #[test]
    fn sender_names_as_upstream_reads_them() {
        let names = |d: Value| {
            let s = message(d, "default", &me()).unwrap().sender;
            (s.name, s.username, s.tag)
        };
        let some = |s: &str| Some(s.to_string());
        let dm = json!({"id":"11","channel_id":"500","author":{"id":"42","username":"mallory","global_name":"Mallory","discriminator":"0"},"content":"hi"});
        assert_eq!(
            names(dm),
            (some("Mallory"), some("mallory"), some("mallory"))
        );
        let legacy = json!({"id":"11","channel_id":"500","author":{"id":"42","username":"old","discriminator":"1234"},"content":"hi"});
        assert_eq!(names(legacy), (some("old"), some("old"), some("old#1234")));
        let nick = json!({"id":"12","channel_id":"600","guild_id":"700","author":{"id":"42","username":"mallory","global_name":"Mallory"},"member":{"nick":"Mal"},"content":"<@900> go","mentions":[{"id":"900"}]});
        assert_eq!(names(nick), (some("Mal"), some("mallory"), some("mallory")));
        let sender = message(
            json!({"id":"16","channel_id":"500","author":{"id":"42","username":"mallory","global_name":"Mallory"},"content":"hi"}),
            "default",
            &me(),
        )
        .unwrap()
        .sender;
        assert_eq!(
            crate::channels::account::Kind::Discord.pairing_meta(&sender),
            json!({"tag": "mallory", "name": "mallory"})
        );
    }

    #[test]
    fn sent_payloads_carry_the_intents_and_the_sequence() {
        let v: Value = serde_json::from_str(&identify("t")).unwrap();
        assert_eq!(v["d"]["intents"], 46601);
        let v: Value = serde_json::from_str(&resume("t", "s", Some(7))).unwrap();
        assert_eq!(
            (v["op"].as_u64(), v["d"]["seq"].as_u64()),
            (Some(6), Some(7))
        );
        let v: Value = serde_json::from_str(&heartbeat(Some(3))).unwrap();
        assert_eq!(v, json!({"op": 1, "d": 3}));
        assert_eq!(
            socket_url("wss://g.example/"),
            "wss://g.example/?v=10&encoding=json"
        );
    }
}
