//! Reading sessions and watching them: `sessions.list` (upstream's `SessionRow`s, filtered and
//! paged), `sessions.describe` (one row), `sessions.subscribe` (every session's `sessions.changed` and `session.message`,
//! with the list when it is given list params), `sessions.messages.subscribe` /
//! `sessions.messages.unsubscribe` (one session's `session.message`).

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::Gateway;
use crate::methods::params::{self, Bounded, FromParams, Kind, NonEmpty, optional, required};
use crate::methods::{Call, Reply};

use super::AGENT_ID;
use super::session::{ChatSession, canonical_key, text_of};
use super::subscribers::TooMany;

/// `sessions.list` params (upstream's `SessionsListParams`; `sessions.subscribe` takes them
/// too). The filters clawgate has no data for (owners, people, spawn trees) are accepted and
/// match every session.
#[derive(Default, PartialEq)]
pub(crate) struct SessionsList {
    limit: Option<Bounded<1, { u64::MAX }>>,
    offset: Option<Bounded<0, { u64::MAX }>>,
    active_minutes: Option<Bounded<1, { u64::MAX }>>,
    include_last_message: Option<bool>,
    include_derived_titles: Option<bool>,
    label: Option<NonEmpty>,
    agent_id: Option<NonEmpty>,
    search: Option<String>,
    archived: Option<Value>,
    sort_by: Option<Value>,
    board_face: Option<Value>,
    _require_last_interaction: Option<bool>,
    _include_global: Option<bool>,
    _include_unknown: Option<bool>,
    _configured_agents_only: Option<bool>,
    _creator_id: Option<NonEmpty>,
    _owner_id: Option<NonEmpty>,
    _owner_first: Option<bool>,
    _involving_me: Option<bool>,
    _involving_profile_id: Option<NonEmpty>,
    _include_people: Option<bool>,
    _spawned_by: Option<NonEmpty>,
}

impl FromParams for SessionsList {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("limit", Kind::Bounded(1, u64::MAX)),
            optional("offset", Kind::Bounded(0, u64::MAX)),
            optional("activeMinutes", Kind::Bounded(1, u64::MAX)),
            optional("includeLastMessage", Kind::Bool),
            optional("includeDerivedTitles", Kind::Bool),
            optional("label", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("search", Kind::Str),
            optional("archived", Kind::Any),
            optional("sortBy", Kind::Any),
            optional("boardFace", Kind::Any),
            optional("requireLastInteraction", Kind::Bool),
            optional("includeGlobal", Kind::Bool),
            optional("includeUnknown", Kind::Bool),
            optional("configuredAgentsOnly", Kind::Bool),
            optional("creatorId", Kind::NonEmpty),
            optional("ownerId", Kind::NonEmpty),
            optional("ownerFirst", Kind::Bool),
            optional("involvingMe", Kind::Bool),
            optional("involvingProfileId", Kind::NonEmpty),
            optional("includePeople", Kind::Bool),
            optional("spawnedBy", Kind::NonEmpty),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            limit: p.bounded("limit"),
            offset: p.bounded("offset"),
            active_minutes: p.bounded("activeMinutes"),
            include_last_message: p.bool("includeLastMessage"),
            include_derived_titles: p.bool("includeDerivedTitles"),
            label: p.non_empty("label"),
            agent_id: p.non_empty("agentId"),
            search: p.string("search"),
            archived: p.take("archived"),
            sort_by: p.take("sortBy"),
            board_face: p.take("boardFace"),
            _require_last_interaction: p.bool("requireLastInteraction"),
            _include_global: p.bool("includeGlobal"),
            _include_unknown: p.bool("includeUnknown"),
            _configured_agents_only: p.bool("configuredAgentsOnly"),
            _creator_id: p.non_empty("creatorId"),
            _owner_id: p.non_empty("ownerId"),
            _owner_first: p.bool("ownerFirst"),
            _involving_me: p.bool("involvingMe"),
            _involving_profile_id: p.non_empty("involvingProfileId"),
            _include_people: p.bool("includePeople"),
            _spawned_by: p.non_empty("spawnedBy"),
        })
    }
}

/// `sessions.describe` params.
pub(crate) struct SessionsDescribe {
    key: NonEmpty,
    include_derived_titles: Option<bool>,
    include_last_message: Option<bool>,
}

impl FromParams for SessionsDescribe {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("key", Kind::NonEmpty),
            optional("includeDerivedTitles", Kind::Bool),
            optional("includeLastMessage", Kind::Bool),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.required_non_empty("key"),
            include_derived_titles: p.bool("includeDerivedTitles"),
            include_last_message: p.bool("includeLastMessage"),
        })
    }
}

/// `sessions.messages.subscribe` params.
pub(crate) struct MessagesSubscribe {
    key: NonEmpty,
    agent_id: Option<NonEmpty>,
    include_approvals: Option<bool>,
}

impl FromParams for MessagesSubscribe {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("key", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
            optional("includeApprovals", Kind::Bool),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.required_non_empty("key"),
            agent_id: p.non_empty("agentId"),
            include_approvals: p.bool("includeApprovals"),
        })
    }
}

/// `sessions.messages.unsubscribe` params.
pub(crate) struct MessagesUnsubscribe {
    key: NonEmpty,
    agent_id: Option<NonEmpty>,
}

impl FromParams for MessagesUnsubscribe {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("key", Kind::NonEmpty),
            optional("agentId", Kind::NonEmpty),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            key: p.required_non_empty("key"),
            agent_id: p.non_empty("agentId"),
        })
    }
}

/// Rows `sessions.list` returns when no `limit` is given (upstream's default).
const DEFAULT_LIST_LIMIT: u64 = 100;

/// Characters of the last message `includeLastMessage` shows.
const PREVIEW_CHARS: usize = 240;

/// Which sessions `archived` selects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Archived {
    Live,
    Only,
    All,
}

/// An `enum`-like string param: `value` must be one of `allowed`, phrased as the params
/// validator phrases it.
fn one_of(field: &str, value: &Value, allowed: &[&Value]) -> Result<(), ErrorShape> {
    if allowed.contains(&value) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
    Err(ErrorShape::invalid(format!(
        "invalid params: at /{field}: must be one of {}",
        list.join(", ")
    )))
}

impl SessionsList {
    fn archived(&self) -> Result<Archived, ErrorShape> {
        match &self.archived {
            None | Some(Value::Bool(false)) => Ok(Archived::Live),
            Some(Value::Bool(true)) => Ok(Archived::Only),
            Some(v) => {
                one_of("archived", v, &[&json!(true), &json!(false), &json!("all")])?;
                Ok(Archived::All)
            }
        }
    }

    fn check_enums(&self) -> Result<(), ErrorShape> {
        if let Some(v) = &self.sort_by {
            one_of(
                "sortBy",
                v,
                &[&json!("updatedAt"), &json!("lastInteractionAt")],
            )?;
        }
        if let Some(v) = &self.board_face {
            one_of("boardFace", v, &[&json!("chat"), &json!("dashboard")])?;
        }
        Ok(())
    }
}

/// Check an explicit `agentId`: clawgate runs the `main` agent only.
pub(crate) fn check_agent(agent_id: Option<&NonEmpty>) -> Result<(), ErrorShape> {
    match agent_id {
        Some(a) if a.0 != AGENT_ID => {
            Err(ErrorShape::invalid(format!("Unknown agent id \"{}\"", a.0)))
        }
        _ => Ok(()),
    }
}

/// The model a session runs on: its `model` override (`provider/model`), else the default.
fn session_model(s: &ChatSession, default: Option<(&str, &str)>) -> Option<(String, String)> {
    match s.overrides.get("model").and_then(Value::as_str) {
        Some(m) => match m.split_once('/') {
            Some((p, m)) => Some((p.to_string(), m.to_string())),
            None => default.map(|(p, _)| (p.to_string(), m.to_string())),
        },
        None => default.map(|(p, m)| (p.to_string(), m.to_string())),
    }
}

impl Gateway {
    /// The provider and model of `agents.defaults.model.primary`, if configured.
    pub(crate) fn default_model(&self) -> Option<(&str, &str)> {
        self.config
            .model
            .as_ref()
            .map(|m| (m.provider.as_str(), m.model.as_str()))
    }

    /// Session `key` as upstream's `SessionRow`, if it exists.
    pub(crate) fn session_row(&self, key: &str) -> Option<Value> {
        let s = self.agent.sessions.get(key)?;
        Some(self.present(key, s, false))
    }

    fn present(&self, key: &str, s: &ChatSession, last_message: bool) -> Value {
        let mut row = Map::new();
        row.insert("key".into(), json!(key));
        row.insert("kind".into(), json!("direct"));
        row.insert("sessionId".into(), json!(s.id));
        row.insert("agentId".into(), json!(AGENT_ID));
        row.insert("classification".into(), json!("direct"));
        row.insert("chatType".into(), json!("direct"));
        row.insert("createdVia".into(), json!(s.created_via));
        row.insert("createdAt".into(), json!(s.created_at));
        row.insert("updatedAt".into(), json!(s.updated_at));
        for (k, v) in &s.overrides {
            if k != "model" {
                row.insert(k.clone(), v.clone());
            }
        }
        if let Some((provider, model)) = session_model(s, self.default_model()) {
            row.insert("modelProvider".into(), json!(provider));
            row.insert("model".into(), json!(model));
        }
        if self.agent.runs.values().any(|r| r.session_key == key) {
            row.insert("status".into(), json!("running"));
        }
        if last_message && let Some(m) = s.last() {
            let text: String = text_of(&m).chars().take(PREVIEW_CHARS).collect();
            row.insert("lastMessagePreview".into(), json!(text));
        }
        Value::Object(row)
    }

    /// The `defaults` of a session list: the configured model.
    fn list_defaults(&self) -> Value {
        let model = self.default_model();
        json!({
            "modelProvider": model.map(|m| m.0),
            "model": model.map(|m| m.1),
            "contextTokens": null,
        })
    }

    /// The `sessions.list` result for `p`.
    fn session_list(&self, now: Instant, p: &SessionsList) -> Result<Value, ErrorShape> {
        p.check_enums()?;
        let archived = p.archived()?;
        let now_ms = self.unix_ms(now);
        let since = p
            .active_minutes
            .map(|m| now_ms.saturating_sub(m.0.saturating_mul(60_000)));
        let search = p.search.as_ref().map(|s| s.to_lowercase());
        let other_agent = p.agent_id.as_ref().is_some_and(|a| a.0 != AGENT_ID);
        let mut found: Vec<(&String, &ChatSession)> = self
            .agent
            .sessions
            .iter()
            .filter(|_| !other_agent)
            .filter(|(_, s)| {
                let is_archived = s.overrides.get("archived") == Some(&json!(true));
                match archived {
                    Archived::Live => !is_archived,
                    Archived::Only => is_archived,
                    Archived::All => true,
                }
            })
            .filter(|(_, s)| since.is_none_or(|t| s.updated_at >= t))
            .filter(|(_, s)| {
                p.label
                    .as_ref()
                    .is_none_or(|l| s.overrides.get("label") == Some(&json!(l.0)))
            })
            .filter(|(k, s)| {
                search.as_ref().is_none_or(|q| {
                    let label = s.overrides.get("label").and_then(Value::as_str);
                    k.to_lowercase().contains(q)
                        || label.is_some_and(|l| l.to_lowercase().contains(q))
                })
            })
            .collect();
        crate::sorting::sort_by(&mut found, |a, b| {
            b.1.updated_at.cmp(&a.1.updated_at).then(a.0.cmp(b.0))
        });
        let total = found.len();
        let offset = usize::try_from(p.offset.map_or(0, |o| o.0)).unwrap_or(usize::MAX);
        let limit = p.limit.map_or(DEFAULT_LIST_LIMIT, |l| l.0);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let last = p.include_last_message == Some(true) || p.include_derived_titles == Some(true);
        let sessions: Vec<Value> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(k, s)| self.present(k, s, last))
            .collect();
        let end = offset.saturating_add(sessions.len());
        let mut out = json!({
            "ts": now_ms,
            "path": self.config.state_dir,
            "count": sessions.len(),
            "totalCount": total,
            "limitApplied": limit.min(total),
            "hasMore": end < total,
            "defaults": self.list_defaults(),
            "sessions": sessions,
        });
        if let Value::Object(o) = &mut out {
            if offset > 0 {
                o.insert("offset".into(), json!(offset));
            }
            if end < total {
                o.insert("nextOffset".into(), json!(end));
            }
        }
        Ok(out)
    }

    /// `sessions.list`.
    pub(crate) fn sessions_list(&mut self, now: Instant, _: &Call<'_>, p: SessionsList) -> Reply {
        Reply::Now(self.session_list(now, &p))
    }

    /// `sessions.describe`: one session's row, `null` when there is none.
    pub(crate) fn sessions_describe(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        p: SessionsDescribe,
    ) -> Reply {
        let key = canonical_key(&p.key.0);
        let last = p.include_last_message == Some(true) || p.include_derived_titles == Some(true);
        let session = self
            .agent
            .sessions
            .get(&key)
            .map(|s| self.present(&key, s, last));
        Reply::Now(Ok(json!({"session": session})))
    }

    /// `sessions.subscribe`: the caller receives session events from now on; with list
    /// params, the answer carries the list too.
    pub(crate) fn sessions_subscribe(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: SessionsList,
    ) -> Reply {
        if p == SessionsList::default() {
            self.agent.subscribers.subscribe_sessions(call.conn);
            return Reply::Now(Ok(json!({"subscribed": true})));
        }
        let list = match self.session_list(now, &p) {
            Ok(list) => list,
            Err(e) => return Reply::Now(Err(e)),
        };
        self.agent.subscribers.subscribe_sessions(call.conn);
        Reply::Now(Ok(json!({"subscribed": true, "list": list})))
    }

    /// `sessions.messages.subscribe`: the caller receives `session.message` for `key`.
    pub(crate) fn sessions_messages_subscribe(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: MessagesSubscribe,
    ) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        let key = canonical_key(&p.key.0);
        // clawgate has no operator approvals (it runs no exec host), so a replay asked for
        // (`includeApprovals`, only ever `true`) is upstream's snapshot with none pending.
        let replay = p.include_approvals.is_some().then(|| {
            json!({"sessionKey": key, "updatedAtMs": self.unix_ms(now), "approvals": [],
                   "truncated": false})
        });
        let max = self.config.limits.max_session_subscriptions;
        match self
            .agent
            .subscribers
            .subscribe_messages(call.conn, &key, max)
        {
            Ok(()) => {
                let mut answer = json!({"subscribed": true, "key": key});
                if let Some(replay) = replay {
                    answer["approvalReplay"] = replay;
                }
                Reply::Now(Ok(answer))
            }
            Err(TooMany) => Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("too many session subscriptions on this connection (at most {max})"),
            ))),
        }
    }

    /// `sessions.messages.unsubscribe`.
    pub(crate) fn sessions_messages_unsubscribe(
        &mut self,
        _: Instant,
        call: &Call<'_>,
        p: MessagesUnsubscribe,
    ) -> Reply {
        if let Err(e) = check_agent(p.agent_id.as_ref()) {
            return Reply::Now(Err(e));
        }
        let key = canonical_key(&p.key.0);
        self.agent.subscribers.unsubscribe_messages(call.conn, &key);
        Reply::Now(Ok(json!({"subscribed": false, "key": key})))
    }
}
