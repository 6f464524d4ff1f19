//! `bindings[]`: which agent, and with which session scopes, a channel message lands in
//! (upstream's route bindings, `docs/channels/channel-routing.md`, `resolveAgentRoute`).
//! clawgate runs one agent, `main`: a binding naming another agent is refused at start-up
//! (naming the key) rather than answered by the wrong agent, so what bindings choose here is
//! the session scopes.
//!
//! A binding `{agentId, match: {channel, accountId?, peer?: {kind, id}}, session?: {dmScope?,
//! groupScope?}}` applies to the messages of its channel, on its account (`accountId` absent
//! means the default account, `"*"` any account). The first matching binding wins, by
//! precedence: an exact peer (`peer.kind` + `peer.id`), then a peer wildcard (`peer.id: "*"`
//! for a kind), then an account binding, then a channel-wide one (`accountId: "*"`); within a
//! tier the configuration's order. A binding that also names a `guildId`, `teamId` or
//! `roles` matches only transports that carry them (none of clawgate's so far). With no
//! match the message goes to the default agent with the global `session.dmScope` and
//! `session.groupScope`. `type: "acp"` bindings (ACP harness sessions) are not route
//! bindings and are ignored here, as upstream's router does.

use serde_json::{Map, Value};

use super::config::{DmScope, GroupScope, dm_scope_named, group_scope_named, invalid, object};
use super::inbound::{ChatKind, Inbound};
use crate::config::ConfigError;
use crate::gateway::Gateway;

/// The one agent clawgate runs, which every message goes to.
const AGENT: &str = "main";

/// Which accounts a binding applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Accounts {
    /// `accountId: "*"`.
    Any,
    /// One account (the default one when `accountId` is absent).
    One(String),
}

/// Which peers a binding applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Peer {
    /// No `peer`: any.
    Unset,
    /// `peer: {kind, id: "*"}`: every peer of a kind.
    AnyOf(ChatKind),
    /// `peer: {kind, id}`.
    Exact(ChatKind, String),
}

/// One route binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    channel: String,
    accounts: Accounts,
    peer: Peer,
    /// It names a `guildId`, `teamId` or `roles` (a Discord or Slack scope).
    scoped: bool,
    dm_scope: Option<DmScope>,
    group_scope: Option<GroupScope>,
}

/// Where a message lands: the scopes its session key is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// How DMs are keyed.
    pub dm_scope: DmScope,
    /// How groups are keyed.
    pub group_scope: GroupScope,
}

impl Route {
    /// The session key of `m` on this route (upstream-agent.md §5): DMs by `dm_scope`,
    /// groups by `group_scope`, Telegram topics inside their group's key.
    pub fn session_key(&self, m: &Inbound) -> String {
        let (agent, ch, acc, peer) = (AGENT, &m.channel, &m.account, m.peer());
        match m.kind {
            ChatKind::Direct => match self.dm_scope {
                DmScope::Main => format!("agent:{agent}:main"),
                DmScope::PerPeer => format!("agent:{agent}:direct:{peer}"),
                DmScope::PerChannelPeer => format!("agent:{agent}:{ch}:direct:{peer}"),
                DmScope::PerAccountChannelPeer => {
                    format!("agent:{agent}:{ch}:{acc}:direct:{peer}")
                }
            },
            ChatKind::Group => match (self.group_scope, &m.thread) {
                (GroupScope::Main, _) => format!("agent:{agent}:main"),
                (GroupScope::PerGroup, Some(t)) => {
                    format!("agent:{agent}:{ch}:group:{peer}:topic:{t}")
                }
                (GroupScope::PerGroup, None) => format!("agent:{agent}:{ch}:group:{peer}"),
            },
        }
    }
}

/// How well a binding matches a message; the lowest tier wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    ExactPeer,
    PeerWildcard,
    Account,
    Channel,
}

impl Binding {
    /// The tier at which this binding matches `m`, if it does.
    fn matches(&self, m: &Inbound) -> Option<Tier> {
        if self.scoped || !self.channel.eq_ignore_ascii_case(&m.channel) {
            return None;
        }
        if let Accounts::One(a) = &self.accounts
            && *a != m.account
        {
            return None;
        }
        match &self.peer {
            Peer::Exact(kind, id) => (*kind == m.kind && id == m.peer()).then_some(Tier::ExactPeer),
            Peer::AnyOf(kind) => (*kind == m.kind).then_some(Tier::PeerWildcard),
            Peer::Unset => Some(match self.accounts {
                Accounts::One(_) => Tier::Account,
                Accounts::Any => Tier::Channel,
            }),
        }
    }
}

/// The route of `m` under `bindings`, with the global scopes when no binding says otherwise.
pub fn route(
    bindings: &[Binding],
    m: &Inbound,
    dm_scope: DmScope,
    group_scope: GroupScope,
) -> Route {
    let best = bindings
        .iter()
        .filter_map(|b| b.matches(m).map(|tier| (tier, b)))
        .min_by_key(|(tier, _)| *tier)
        .map(|(_, b)| b);
    Route {
        dm_scope: best.and_then(|b| b.dm_scope).unwrap_or(dm_scope),
        group_scope: best.and_then(|b| b.group_scope).unwrap_or(group_scope),
    }
}

impl Gateway {
    /// The session channel message `m` lands in, under the configured bindings and scopes.
    pub(crate) fn channel_session_key(&self, m: &Inbound) -> String {
        let c = &self.config.channels;
        route(&c.bindings, m, c.dm_scope, c.group_scope).session_key(m)
    }
}

/// The account a binding without `accountId` applies to (upstream's `normalizeAccountId("")`).
const DEFAULT_ACCOUNT: &str = "default";

fn text<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty())),
        Some(v) => Err(invalid(
            format!("{at}.{key}"),
            format!("must be a string, got {v}"),
        )),
    }
}

fn peer_kind(kind: &str, at: &str) -> Result<ChatKind, ConfigError> {
    match kind.to_ascii_lowercase().as_str() {
        "direct" | "dm" => Ok(ChatKind::Direct),
        "group" | "channel" => Ok(ChatKind::Group),
        other => Err(invalid(
            format!("{at}.kind"),
            format!("must be one of direct, group, channel; got {other:?}"),
        )),
    }
}

fn peer(match_: &Map<String, Value>, at: &str) -> Result<Peer, ConfigError> {
    let Some(p) = match_.get("peer").filter(|p| !p.is_null()) else {
        return Ok(Peer::Unset);
    };
    let at = format!("{at}.peer");
    let p = object(p, &at)?;
    let kind = text(p, "kind", &at)?.ok_or_else(|| invalid(format!("{at}.kind"), "is required"))?;
    let kind = peer_kind(kind, &at)?;
    let id = match p.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        _ => text(p, "id", &at)?
            .ok_or_else(|| invalid(format!("{at}.id"), "is required"))?
            .to_string(),
    };
    Ok(if id == "*" {
        Peer::AnyOf(kind)
    } else {
        Peer::Exact(kind, id)
    })
}

fn binding(b: &Value, at: &str) -> Result<Option<Binding>, ConfigError> {
    let b = object(b, at)?;
    if text(b, "type", at)?.is_some_and(|t| t != "route") {
        return Ok(None);
    }
    let agent_at = format!("{at}.agentId");
    let agent = text(b, "agentId", at)?.ok_or_else(|| invalid(&agent_at, "is required"))?;
    if !agent.eq_ignore_ascii_case(AGENT) {
        return Err(invalid(
            agent_at,
            format!("clawgate runs the agent \"{AGENT}\" only, not {agent:?}"),
        ));
    }
    let m_at = format!("{at}.match");
    let m = object(
        b.get("match")
            .ok_or_else(|| invalid(&m_at, "is required"))?,
        &m_at,
    )?;
    let channel = text(m, "channel", &m_at)?
        .ok_or_else(|| invalid(format!("{m_at}.channel"), "is required"))?
        .to_ascii_lowercase();
    let accounts = match text(m, "accountId", &m_at)? {
        Some("*") => Accounts::Any,
        Some(a) => Accounts::One(a.to_string()),
        None => Accounts::One(DEFAULT_ACCOUNT.to_string()),
    };
    let scoped = ["guildId", "teamId", "roles"]
        .iter()
        .any(|k| m.get(*k).is_some_and(|v| !v.is_null()));
    let (mut dm, mut group) = (None, None);
    if let Some(s) = b.get("session").filter(|s| !s.is_null()) {
        let s_at = format!("{at}.session");
        let s = object(s, &s_at)?;
        if let Some(v) = text(s, "dmScope", &s_at)? {
            dm = Some(dm_scope_named(v, &format!("{s_at}.dmScope"))?);
        }
        if let Some(v) = text(s, "groupScope", &s_at)? {
            group = Some(group_scope_named(v, &format!("{s_at}.groupScope"))?);
        }
    }
    Ok(Some(Binding {
        channel,
        accounts,
        peer: peer(m, &m_at)?,
        scoped,
        dm_scope: dm,
        group_scope: group,
    }))
}

/// The route bindings of a parsed config file (`bindings[]`), in order.
pub(crate) fn resolve(file: &Value) -> Result<Vec<Binding>, ConfigError> {
    match file.get("bindings") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for (i, b) in list.iter().enumerate() {
                out.extend(binding(b, &format!("bindings.{i}"))?);
            }
            Ok(out)
        }
        Some(v) => Err(invalid("bindings", format!("must be an array, got {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::inbound::Sender;
    use serde_json::json;

    fn msg(kind: ChatKind, account: &str, chat: &str, thread: Option<&str>) -> Inbound {
        Inbound {
            channel: "telegram".into(),
            account: account.into(),
            chat_id: chat.into(),
            kind,
            thread: thread.map(str::to_string),
            // A Telegram DM's chat is its sender's id.
            sender: Sender {
                id: match kind {
                    ChatKind::Direct => chat.into(),
                    ChatKind::Group => "222".into(),
                },
                name: None,
                username: None,
                tag: None,
            },
            text: "hi".into(),
            message_id: "1".into(),
            event_id: "1".into(),
            mentioned: true,
            group: None,
        }
    }

    fn key(bindings: &Value, m: &Inbound) -> String {
        let b = resolve(&json!({ "bindings": bindings })).unwrap();
        route(&b, m, DmScope::Main, GroupScope::PerGroup).session_key(m)
    }

    #[test]
    fn without_bindings_the_global_scopes_apply() {
        let dm = msg(ChatKind::Direct, "default", "222", None);
        assert_eq!(key(&json!([]), &dm), "agent:main:main");
        let scoped = |dm_scope| route(&[], &dm, dm_scope, GroupScope::Main).session_key(&dm);
        assert_eq!(scoped(DmScope::PerPeer), "agent:main:direct:222");
        assert_eq!(
            scoped(DmScope::PerChannelPeer),
            "agent:main:telegram:direct:222"
        );
        assert_eq!(
            scoped(DmScope::PerAccountChannelPeer),
            "agent:main:telegram:default:direct:222"
        );
        let group = msg(ChatKind::Group, "default", "-100", None);
        assert_eq!(key(&json!([]), &group), "agent:main:telegram:group:-100");
        let topic = msg(ChatKind::Group, "default", "-100", Some("7"));
        assert_eq!(
            key(&json!([]), &topic),
            "agent:main:telegram:group:-100:topic:7"
        );
    }

    #[test]
    fn an_exact_peer_beats_a_wildcard_an_account_and_a_channel_binding() {
        let bindings = json!([
            {"agentId": "main", "match": {"channel": "telegram", "accountId": "*"},
             "session": {"dmScope": "per-account-channel-peer"}},
            {"agentId": "main", "match": {"channel": "telegram"},
             "session": {"groupScope": "main"}},
            {"agentId": "main", "match": {"channel": "telegram", "peer": {"kind": "direct", "id": "*"}},
             "session": {"dmScope": "per-peer"}},
            {"agentId": "Main", "match": {"channel": "Telegram", "peer": {"kind": "dm", "id": 222}},
             "session": {"dmScope": "per-channel-peer"}},
        ]);
        let alice = msg(ChatKind::Direct, "default", "222", None);
        assert_eq!(key(&bindings, &alice), "agent:main:telegram:direct:222");
        let bob = msg(ChatKind::Direct, "default", "333", None);
        assert_eq!(key(&bindings, &bob), "agent:main:direct:333");
        let group = msg(ChatKind::Group, "default", "-100", None);
        assert_eq!(key(&bindings, &group), "agent:main:main");
        let other_account = msg(ChatKind::Direct, "work", "444", None);
        assert_eq!(
            key(&bindings, &other_account),
            "agent:main:telegram:work:direct:444"
        );
    }

    #[test]
    fn within_a_tier_the_first_binding_wins_and_others_do_not_apply() {
        let bindings = json!([
            {"agentId": "main", "match": {"channel": "telegram", "accountId": "work"},
             "session": {"groupScope": "main"}},
            {"agentId": "main", "match": {"channel": "telegram", "accountId": "work"},
             "session": {"groupScope": "per-group"}},
            {"agentId": "main", "match": {"channel": "slack", "accountId": "*"},
             "session": {"dmScope": "per-peer"}},
            {"agentId": "main", "match": {"channel": "telegram", "accountId": "*", "guildId": "9"},
             "session": {"dmScope": "per-peer"}},
            {"type": "acp", "agentId": "codex", "match": {"channel": "telegram", "accountId": "*"}},
        ]);
        let group = msg(ChatKind::Group, "work", "-100", None);
        assert_eq!(key(&bindings, &group), "agent:main:main");
        let elsewhere = msg(ChatKind::Direct, "default", "222", None);
        assert_eq!(key(&bindings, &elsewhere), "agent:main:main");
    }

    #[test]
    fn malformed_bindings_name_their_key() {
        let e = |b: Value| resolve(&json!({ "bindings": b })).unwrap_err().to_string();
        assert!(e(json!({})).contains("bindings"));
        assert!(e(json!([{"match": {"channel": "telegram"}}])).contains("bindings.0.agentId"));
        assert!(e(json!([{"agentId": "main"}])).contains("bindings.0.match"));
        let other = json!([{"agentId": "work", "match": {"channel": "telegram"}}]);
        assert!(e(other).contains("bindings.0.agentId"));
        let bad_kind = json!([{"agentId": "main", "match": {"channel": "telegram", "peer": {"kind": "x", "id": "1"}}}]);
        assert!(e(bad_kind).contains("bindings.0.match.peer.kind"));
        let bad_scope = json!([{"agentId": "main", "match": {"channel": "telegram"}, "session": {"dmScope": "nope"}}]);
        assert!(e(bad_scope).contains("bindings.0.session.dmScope"));
    }
}
