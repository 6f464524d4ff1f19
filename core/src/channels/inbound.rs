//! The channel interface every transport fills in: an inbound message normalised (which
//! channel and account, which chat and thread, who sent it, its text and ids), where a reply
//! goes, the access decision and the session it lands in. Telegram is the first transport;
//! Slack and Discord fill in the same [`Inbound`] and read the same [`Target`].

use serde::{Deserialize, Serialize};

use super::config::{AccessPolicy, DmPolicy, GroupPolicy};
use crate::frame::push_json_str;

/// The kind of conversation a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    /// A direct message with one person.
    Direct,
    /// A group, supergroup or channel room.
    Group,
}

/// Who sent a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The transport's user id (Telegram's numeric id as a string, Slack `U…`, Discord
    /// snowflake).
    pub id: String,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A handle (`mallory`, without `@`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Discord's tag: `username#discriminator` for a legacy discriminator, else the
    /// username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// One inbound message, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// `telegram`, `slack`, `discord`.
    pub channel: String,
    /// The account it arrived on.
    pub account: String,
    /// The chat (peer or room) id.
    pub chat_id: String,
    /// Direct or group.
    pub kind: ChatKind,
    /// A thread or topic inside the chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The sender.
    pub sender: Sender,
    /// The text.
    pub text: String,
    /// The transport's message id (deduplication).
    pub message_id: String,
    /// The transport's event id (Telegram `update_id`, Slack `event_id`).
    pub event_id: String,
    /// Whether the bot was addressed (always for DMs).
    pub mentioned: bool,
    /// The key of the group rule that applies when it is not the chat's (a Discord guild's
    /// channels share the guild's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Inbound {
    /// Where the reply to this message goes.
    pub fn reply_target(&self) -> Target {
        Target {
            channel: self.channel.clone(),
            account: self.account.clone(),
            to: self.chat_id.clone(),
            thread: self.thread.clone(),
        }
    }

    /// The lane it is served in: messages of one chat (and thread) in arrival order.
    pub fn lane(&self) -> String {
        // `join` sizes the string once; `format!` grows it (~1.4k instructions a lane).
        let (channel, account, chat) = (&self.channel, &self.account, &self.chat_id);
        match &self.thread {
            Some(t) => [channel, account, chat, t].map(String::as_str).join(":"),
            None => [channel, account, chat].map(String::as_str).join(":"),
        }
    }

    /// The key that identifies the message across redeliveries.
    pub fn dedupe_key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.channel, self.account, self.chat_id, self.message_id
        )
    }

    /// Upstream's per-turn context block for this message: its chat, its id and who sent it
    /// (id, and the name, handle and tag the transport gave), as JSON under upstream's label
    /// for human-authored values the model is not to take as instructions.
    pub fn conversation_info(&self) -> String {
        // serde_json's pretty form of {chat_id, message_id, sender: {id, name?, tag?,
        // username?}} (members sorted, two-space indent), written out.
        let mut out = String::with_capacity(160 + self.chat_id.len() + self.message_id.len());
        out.push_str("Conversation info (untrusted metadata):\n```json\n{\n  \"chat_id\": ");
        push_json_str(&mut out, &self.chat_id);
        out.push_str(",\n  \"message_id\": ");
        push_json_str(&mut out, &self.message_id);
        out.push_str(",\n  \"sender\": {\n    \"id\": ");
        push_json_str(&mut out, &self.sender.id);
        let s = &self.sender;
        for (k, v) in [
            ("name", &s.name),
            ("tag", &s.tag),
            ("username", &s.username),
        ] {
            if let Some(v) = v {
                out.push_str(",\n    \"");
                out.push_str(k);
                out.push_str("\": ");
                push_json_str(&mut out, v);
            }
        }
        out.push_str("\n  }\n}\n```");
        out
    }

    /// The peer a session key or a binding names: a DM's sender (Telegram's private chat id
    /// is the user's; Discord's DM channel is not), a group's chat.
    pub fn peer(&self) -> &str {
        match self.kind {
            ChatKind::Direct => &self.sender.id,
            ChatKind::Group => &self.chat_id,
        }
    }
}

/// Where an outbound message goes: a chat of an account of a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The channel.
    pub channel: String,
    /// The account.
    pub account: String,
    /// The chat id.
    pub to: String,
    /// A thread or topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

impl Target {
    /// Whether `other` is the same chat of the same account, in whichever thread.
    pub fn same_chat(&self, other: &Target) -> bool {
        (&self.channel, &self.account, &self.to) == (&other.channel, &other.account, &other.to)
    }
}

/// What happens to an inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// It reaches the agent.
    Allow,
    /// An unknown DM sender under `dmPolicy: pairing`: a pairing request, nothing for the agent.
    Pair,
    /// Dropped, for this reason (logged).
    Drop(&'static str),
}

/// [`Access::Drop`]'s reason for a DM sender an allowlist does not name.
const NOT_IN_ALLOW_FROM: &str = "sender not in allowFrom";
/// [`Access::Drop`]'s reason for a group sender an allowlist does not name.
const NOT_IN_GROUP_ALLOW_FROM: &str = "sender not in groupAllowFrom";

impl Access {
    /// Whether the message is dropped because an allowlist does not name its sender: what
    /// the sender's name may change under upstream's `dangerouslyAllowNameMatching`.
    pub fn refuses_the_sender(self) -> bool {
        matches!(
            self,
            Access::Drop(NOT_IN_ALLOW_FROM | NOT_IN_GROUP_ALLOW_FROM)
        )
    }
}

/// Whether `list` lets `sender` in: by id, or (with `names`, upstream's
/// `dangerouslyAllowNameMatching`) by its name or the name's slug, case-insensitively.
fn listed(list: &[String], sender: &Sender, names: bool) -> bool {
    let name = sender
        .name
        .as_deref()
        .filter(|_| names)
        .map(|n| (n.trim().to_lowercase(), slug(n)))
        .filter(|(n, _)| !n.is_empty());
    list.iter().any(|a| {
        a == "*"
            || *a == sender.id
            || name
                .as_ref()
                .is_some_and(|(n, s)| a.to_lowercase() == *n || a.to_lowercase() == *s)
    })
}

/// Upstream's `normalizeHyphenSlug`: lower case, whitespace and anything but letters, marks,
/// digits and `#@._+-` as `-`, runs of `-` as one, no `-` or `.` at either end.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().to_lowercase().chars() {
        let keep = c.is_alphanumeric() || matches!(c, '#' | '@' | '.' | '_' | '+' | '-');
        let c = if keep { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    out.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// The access decision for `m` under `policy`; `approved` is whether the pairing store lets
/// the sender in (DMs under `pairing` only: approvals never widen other policies or groups).
pub fn decide(policy: &AccessPolicy, m: &Inbound, approved: bool) -> Access {
    let (sender, names) = (&m.sender, policy.name_matching);
    match m.kind {
        ChatKind::Direct => match policy.dm_policy {
            DmPolicy::Disabled => Access::Drop("dmPolicy is disabled"),
            DmPolicy::Open | DmPolicy::Allowlist if listed(&policy.allow_from, sender, names) => {
                Access::Allow
            }
            DmPolicy::Open | DmPolicy::Allowlist => Access::Drop(NOT_IN_ALLOW_FROM),
            DmPolicy::Pairing if approved || listed(&policy.allow_from, sender, names) => {
                Access::Allow
            }
            DmPolicy::Pairing => Access::Pair,
        },
        ChatKind::Group => {
            let rule = policy
                .groups
                .get(m.group.as_ref().unwrap_or(&m.chat_id))
                .or_else(|| policy.groups.get("*"));
            match policy.group_policy {
                GroupPolicy::Disabled => return Access::Drop("groupPolicy is disabled"),
                GroupPolicy::Allowlist if rule.is_none() => {
                    return Access::Drop("group not in groups");
                }
                _ => {}
            }
            let senders = policy
                .group_allow_from
                .as_ref()
                .unwrap_or(&policy.allow_from);
            if !senders.is_empty() && !listed(senders, sender, names) {
                return Access::Drop(NOT_IN_GROUP_ALLOW_FROM);
            }
            let require_mention = rule.and_then(|r| r.require_mention).unwrap_or(true);
            if require_mention && !m.mentioned {
                return Access::Drop("bot not mentioned");
            }
            Access::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::GroupRule;
    use super::*;
    use serde_json::{Map, Value, json};

    fn msg(kind: ChatKind, chat: &str, sender: &str, mentioned: bool) -> Inbound {
        Inbound {
            channel: "telegram".into(),
            account: "default".into(),
            chat_id: chat.into(),
            kind,
            thread: None,
            sender: Sender {
                id: sender.into(),
                name: None,
                username: None,
                tag: None,
            },
            text: "hi".into(),
            message_id: "1".into(),
            event_id: "1".into(),
            mentioned,
            group: None,
        }
    }

    #[test]
    fn dm_policies_and_pairing() {
        let mut p = AccessPolicy::default();
        let dm = msg(ChatKind::Direct, "222", "222", true);
        assert_eq!(decide(&p, &dm, false), Access::Pair);
        assert_eq!(decide(&p, &dm, true), Access::Allow);
        p.allow_from = vec!["222".into()];
        assert_eq!(decide(&p, &dm, false), Access::Allow);
        p.dm_policy = DmPolicy::Allowlist;
        p.allow_from = vec!["111".into()];
        assert_eq!(
            decide(&p, &dm, true),
            Access::Drop("sender not in allowFrom"),
            "approvals never widen allowlist"
        );
        p.dm_policy = DmPolicy::Open;
        p.allow_from = vec!["*".into()];
        assert_eq!(decide(&p, &dm, false), Access::Allow);
        p.dm_policy = DmPolicy::Disabled;
        assert!(matches!(decide(&p, &dm, true), Access::Drop(_)));
    }

    #[test]
    fn groups_need_listing_a_listed_sender_and_a_mention() {
        let mut p = AccessPolicy::default();
        let g = msg(ChatKind::Group, "-100", "5", true);
        assert_eq!(decide(&p, &g, true), Access::Drop("group not in groups"));
        p.groups.insert("-100".into(), GroupRule::default());
        assert_eq!(decide(&p, &g, false), Access::Allow);
        assert_eq!(
            decide(&p, &msg(ChatKind::Group, "-100", "5", false), false),
            Access::Drop("bot not mentioned")
        );
        p.groups.insert(
            "-100".into(),
            GroupRule {
                require_mention: Some(false),
            },
        );
        assert_eq!(
            decide(&p, &msg(ChatKind::Group, "-100", "5", false), false),
            Access::Allow
        );
        p.allow_from = vec!["111".into()];
        assert_eq!(
            decide(&p, &g, true),
            Access::Drop("sender not in groupAllowFrom")
        );
        p.group_allow_from = Some(vec!["5".into()]);
        assert_eq!(decide(&p, &g, false), Access::Allow);
    }

    #[test]
    fn names_match_only_with_name_matching() {
        let mut p = AccessPolicy {
            dm_policy: DmPolicy::Allowlist,
            allow_from: vec!["U9".into(), "ALICE-LIDDELL".into()],
            ..AccessPolicy::default()
        };
        let mut dm = msg(ChatKind::Direct, "D1", "U1", true);
        dm.sender.name = Some("Alice Liddell".into());
        assert_eq!(
            decide(&p, &dm, false),
            Access::Drop("sender not in allowFrom")
        );
        p.name_matching = true;
        assert_eq!(decide(&p, &dm, false), Access::Allow, "by the name's slug");
        p.allow_from = vec!["alice liddell".into()];
        assert_eq!(decide(&p, &dm, false), Access::Allow, "by the name");
        dm.sender.name = None;
        assert_eq!(
            decide(&p, &dm, false),
            Access::Drop("sender not in allowFrom")
        );
        assert_eq!(slug("  Ünïcode  Name!! "), "ünïcode-name");
        assert_eq!(slug("-.a b."), "a-b");
    }

    #[test]
    fn conversation_info_is_serde_s_pretty_json_of_the_chat_and_sender() {
        let serde_form = |m: &Inbound| {
            let mut sender = Map::new();
            sender.insert("id".into(), json!(m.sender.id));
            for (k, v) in [
                ("name", &m.sender.name),
                ("username", &m.sender.username),
                ("tag", &m.sender.tag),
            ] {
                if let Some(v) = v {
                    sender.insert(k.into(), json!(v));
                }
            }
            let info = json!({
                "chat_id": m.chat_id,
                "message_id": m.message_id,
                "sender": Value::Object(sender),
            });
            let pretty = serde_json::to_string_pretty(&info).unwrap();
            format!("Conversation info (untrusted metadata):\n```json\n{pretty}\n```")
        };
        let mut m = msg(ChatKind::Group, "-100\"7", "U\u{1}\\", true);
        assert_eq!(m.conversation_info(), serde_form(&m));
        m.sender.tag = Some("t#1".into());
        assert_eq!(m.conversation_info(), serde_form(&m));
        m.sender.username = Some("ü\n".into());
        assert_eq!(m.conversation_info(), serde_form(&m));
        m.sender.name = Some("</b>\u{2028}".into());
        m.message_id = String::new();
        assert_eq!(m.conversation_info(), serde_form(&m));
    }

    #[test]
    fn conversation_info_names_the_sender() {
        let mut m = msg(ChatKind::Direct, "D1", "U1", true);
        m.sender.name = Some("Alice".into());
        assert_eq!(
            m.conversation_info(),
            "Conversation info (untrusted metadata):\n```json\n{\n  \"chat_id\": \"D1\",\n  \"message_id\": \"1\",\n  \"sender\": {\n    \"id\": \"U1\",\n    \"name\": \"Alice\"\n  }\n}\n```"
        );
    }
}
