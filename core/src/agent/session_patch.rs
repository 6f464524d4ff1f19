//! `sessions.patch`: the fields of upstream's `SessionsPatchParams` that clawgate stores (and
//! shows in the session's row), each checked as upstream checks it; the fields for features
//! clawgate does not have are refused by name. Every field is checked before any is stored.

use std::time::Instant;

use serde_json::{Map, Value};

use crate::frame::ErrorShape;
use crate::gateway::Gateway;
use crate::methods::params::{self, FromParams};
use crate::methods::{Call, Reply};

use super::AGENT_ID;
use super::session::canonical_key;
use super::subscribers::Change;

/// `sessions.patch` params, kept as JSON: each field is checked against [`PATCH_FIELDS`].
pub(crate) struct SessionsPatch(Map<String, Value>);

impl FromParams for SessionsPatch {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        params::object(params).map(SessionsPatch)
    }
}

/// What a `sessions.patch` field holds.
#[derive(Clone, Copy)]
enum Kind {
    /// A string of 1 to `max` characters, or null.
    Text(usize),
    /// A string, or null.
    AnyText,
    /// A boolean (null not allowed).
    Bool,
    /// One of these strings, or null when `nullable`.
    OneOf(&'static [&'static str], bool),
    /// `true`, `false`, `"auto"` or null.
    FastMode,
    /// A configured `provider/model` (or a model of the default provider), or null.
    Model,
}

/// The `sessions.patch` fields clawgate stores (and shows in the session's row).
const PATCH_FIELDS: &[(&str, Kind)] = &[
    ("label", Kind::Text(512)),
    ("icon", Kind::AnyText),
    ("color", Kind::AnyText),
    ("category", Kind::Text(512)),
    ("boardFace", Kind::OneOf(&["chat", "dashboard"], false)),
    ("pinned", Kind::Bool),
    ("archived", Kind::Bool),
    ("unread", Kind::Bool),
    (
        "thinkingLevel",
        Kind::OneOf(&["off", "minimal", "low", "medium", "high", "xhigh"], true),
    ),
    ("fastMode", Kind::FastMode),
    ("verboseLevel", Kind::OneOf(&["on", "off", "full"], true)),
    (
        "reasoningLevel",
        Kind::OneOf(&["on", "off", "stream"], true),
    ),
    (
        "responseUsage",
        Kind::OneOf(&["off", "tokens", "full", "on"], true),
    ),
    ("model", Kind::Model),
    ("sendPolicy", Kind::OneOf(&["allow", "deny"], true)),
    ("groupActivation", Kind::OneOf(&["mention", "always"], true)),
    (
        "permissionMode",
        Kind::OneOf(&["read-only", "guarded", "workspace", "full"], true),
    ),
];

/// Fields of upstream's `SessionsPatchParams` that name the target or guard the change.
const PATCH_ENVELOPE: &[&str] = &[
    "key",
    "agentId",
    "expectedSessionId",
    "expectedLifecycleRevision",
    "expectedPermissionMode",
    "expectedToolOverrides",
    "expectedMarkedUnreadAt",
];

/// Fields of upstream's `SessionsPatchParams` for features clawgate does not have (exec
/// hosts, permission modes, tool policy, context windows, agent status notes): refused by
/// name rather than stored and ignored.
const PATCH_UNSUPPORTED: &[&str] = &[
    "statusNote",
    "attention",
    "ttlMinutes",
    "contextWindow",
    "toolOverrides",
    "traceLevel",
    "elevatedLevel",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "completionOwnerSessionKey",
    "inheritedToolPolicyVersion",
    "inheritedToolAllow",
    "inheritedToolDeny",
];

impl Gateway {
    /// `sessions.patch`: check every field, then store them all (or none).
    pub(crate) fn sessions_patch(&mut self, now: Instant, _: &Call<'_>, p: SessionsPatch) -> Reply {
        let fields = p.0;
        let key = match check_patch(&fields) {
            Ok(key) => canonical_key(&key),
            Err(e) => return Reply::Now(Err(e)),
        };
        let expected = fields.get("expectedSessionId").and_then(Value::as_str);
        if let Some(expected) = expected
            && self
                .agent
                .sessions
                .get(&key)
                .is_none_or(|s| s.id != expected)
        {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "Session {key} changed before the patch. Retry."
            ))));
        }
        let mut changes = Map::new();
        for (name, value) in &fields {
            let Some((_, kind)) = PATCH_FIELDS.iter().find(|(f, _)| f == name) else {
                continue;
            };
            match self.check_patch_value(&key, name, *kind, value) {
                Ok(v) => {
                    changes.insert(name.clone(), v);
                }
                Err(e) => return Reply::Now(Err(e)),
            }
        }
        let ts = self.unix_ms(now);
        self.ensure_session(&key, ts);
        if let Some(s) = self.agent.sessions.get_mut(&key) {
            for (name, value) in changes {
                if value.is_null() {
                    s.overrides.remove(&name);
                } else {
                    s.overrides.insert(name, value);
                }
            }
        }
        self.agent.save_row(&key);
        self.persist();
        self.session_changed(now, &key, Change::Patch);
        Reply::Now(Ok(self.entry_answer(&key)))
    }

    /// One stored field's value, checked as upstream checks it.
    fn check_patch_value(
        &self,
        key: &str,
        name: &str,
        kind: Kind,
        value: &Value,
    ) -> Result<Value, ErrorShape> {
        let type_error =
            |t: &str| ErrorShape::invalid(format!("invalid params: at /{name}: must be {t}"));
        match (kind, value) {
            (Kind::Bool, Value::Bool(_)) => Ok(value.clone()),
            (Kind::Bool, _) => Err(type_error("boolean")),
            (_, Value::Null) if !matches!(kind, Kind::OneOf(_, false)) => Ok(Value::Null),
            (Kind::AnyText, Value::String(_)) => Ok(value.clone()),
            (Kind::Text(max), Value::String(s)) => {
                let len = s.chars().count();
                if len == 0 {
                    return Err(type_error("a string of at least 1 character"));
                }
                if len > max {
                    return Err(ErrorShape::invalid(format!(
                        "invalid {name}: too long (max {max})"
                    )));
                }
                if name == "label" && self.label_in_use(key, s) {
                    return Err(ErrorShape::invalid(format!("label already in use: {s}")));
                }
                Ok(value.clone())
            }
            (Kind::OneOf(allowed, _), Value::String(s)) if allowed.contains(&s.as_str()) => {
                Ok(value.clone())
            }
            (Kind::OneOf(allowed, _), _) => Err(ErrorShape::invalid(format!(
                "invalid {name} (use {})",
                allowed.join("|")
            ))),
            (Kind::FastMode, Value::Bool(_)) => Ok(value.clone()),
            (Kind::FastMode, Value::String(s)) if s == "auto" => Ok(value.clone()),
            (Kind::FastMode, _) => Err(ErrorShape::invalid(
                "invalid fastMode (use true, false, or \"auto\")",
            )),
            (Kind::Model, Value::String(raw)) => self.allowed_model(raw.trim()).map(Value::from),
            (Kind::Text(_) | Kind::AnyText | Kind::Model, _) => Err(type_error("string")),
        }
    }

    /// Whether another session already has label `label`.
    fn label_in_use(&self, key: &str, label: &str) -> bool {
        self.agent.sessions.iter().any(|(k, s)| {
            k != key && s.overrides.get("label").and_then(Value::as_str) == Some(label)
        })
    }

    /// `raw` as a configured `provider/model`, or the error upstream gives.
    fn allowed_model(&self, raw: &str) -> Result<String, ErrorShape> {
        if raw.is_empty() {
            return Err(ErrorShape::invalid("invalid model: empty"));
        }
        let (provider, model) = match raw.split_once('/') {
            Some((p, m)) => (p.to_string(), m.to_string()),
            None => match self.default_model() {
                Some((p, _)) => (p.to_string(), raw.to_string()),
                None => return Err(ErrorShape::invalid(format!("model not allowed: {raw}"))),
            },
        };
        let known = self
            .configured_models()
            .iter()
            .any(|(p, m, _)| *p == provider && *m == model);
        if known {
            Ok(format!("{provider}/{model}"))
        } else {
            Err(ErrorShape::invalid(format!("model not allowed: {raw}")))
        }
    }
}

/// Check the shape of `sessions.patch` params as upstream's closed schema does; the key.
fn check_patch(fields: &Map<String, Value>) -> Result<String, ErrorShape> {
    let known = |k: &str| {
        PATCH_ENVELOPE.contains(&k)
            || PATCH_UNSUPPORTED.contains(&k)
            || PATCH_FIELDS.iter().any(|(f, _)| *f == k)
    };
    if let Some(k) = fields.keys().find(|k| !known(k)) {
        return Err(ErrorShape::invalid(format!(
            "invalid params: at root: unexpected property '{k}'"
        )));
    }
    let key = match fields.get("key") {
        None => {
            return Err(ErrorShape::invalid(
                "invalid params: at root: must have required property 'key'",
            ));
        }
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(Value::String(_)) => {
            return Err(ErrorShape::invalid(
                "invalid params: at /key: must NOT have fewer than 1 characters",
            ));
        }
        Some(_) => {
            return Err(ErrorShape::invalid(
                "invalid params: at /key: must be string",
            ));
        }
    };
    match fields.get("agentId") {
        None => {}
        Some(Value::String(a)) if a == AGENT_ID => {}
        Some(Value::String(a)) => {
            return Err(ErrorShape::invalid(format!("Unknown agent id \"{a}\"")));
        }
        Some(_) => {
            return Err(ErrorShape::invalid(
                "invalid params: at /agentId: must be string",
            ));
        }
    }
    if let Some(k) = fields
        .keys()
        .find(|k| PATCH_UNSUPPORTED.contains(&k.as_str()))
    {
        return Err(ErrorShape::invalid(format!(
            "{k} is not supported by this gateway"
        )));
    }
    Ok(key)
}
