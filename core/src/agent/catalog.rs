//! What the config offers: `models.list` (the models of `models.providers.*.models[]`, and
//! the `agents.defaults.model.primary` one), `agents.list` (`agents.list[]`, or the default
//! `main` agent) and `agent.identity.get` (the agent's configured `identity`), in upstream's
//! result shapes.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::frame::ErrorShape;
use crate::gateway::Gateway;
use crate::methods::params::{self, FromParams, Kind, NonEmpty, optional};
use crate::methods::{Call, NoParams, Reply};

use super::AGENT_ID;

/// `models.list` params (upstream's `ModelsListParams`).
pub(crate) struct ModelsList {
    _agent_id: Option<NonEmpty>,
    session_key: Option<NonEmpty>,
    auth_profile_id: Option<NonEmpty>,
    provider: Option<NonEmpty>,
    _include_details: Option<bool>,
    _include_provider_capabilities: Option<bool>,
    _include_default_models: Option<bool>,
    prepared_only: Option<bool>,
    refresh: Option<bool>,
    view: Option<Value>,
}

impl FromParams for ModelsList {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("agentId", Kind::NonEmpty),
            optional("sessionKey", Kind::NonEmpty),
            optional("authProfileId", Kind::NonEmpty),
            optional("provider", Kind::NonEmpty),
            optional("includeDetails", Kind::Bool),
            optional("includeProviderCapabilities", Kind::Bool),
            optional("includeDefaultModels", Kind::Bool),
            optional("preparedOnly", Kind::Bool),
            optional("refresh", Kind::Bool),
            optional("view", Kind::Any),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            _agent_id: p.non_empty("agentId"),
            session_key: p.non_empty("sessionKey"),
            auth_profile_id: p.non_empty("authProfileId"),
            provider: p.non_empty("provider"),
            _include_details: p.bool("includeDetails"),
            _include_provider_capabilities: p.bool("includeProviderCapabilities"),
            _include_default_models: p.bool("includeDefaultModels"),
            prepared_only: p.bool("preparedOnly"),
            refresh: p.bool("refresh"),
            view: p.take("view"),
        })
    }
}

/// `agent.identity.get` params (upstream's `AgentIdentityParams`).
pub(crate) struct AgentIdentityGet {
    agent_id: Option<NonEmpty>,
    session_key: Option<String>,
}

impl FromParams for AgentIdentityGet {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("agentId", Kind::NonEmpty),
            optional("sessionKey", Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            agent_id: p.non_empty("agentId"),
            session_key: p.string("sessionKey"),
        })
    }
}

/// The assistant's name and avatar as the UI shows them.
pub(crate) struct AssistantIdentity<'a> {
    /// Its name.
    pub(crate) name: &'a str,
    /// Where the name came from (`agent` or `default`).
    pub(crate) name_source: &'static str,
    /// Its avatar (an emoji or a letter).
    pub(crate) avatar: &'a str,
}

/// The name an agent without a configured one shows (upstream's `DEFAULT_ASSISTANT_IDENTITY`).
const DEFAULT_NAME: &str = "Assistant";
/// The avatar an agent without a configured one shows.
const DEFAULT_AVATAR: &str = "A";

/// The `input` kinds upstream's `ModelChoice` allows.
const INPUTS: &[&str] = &["text", "image", "audio", "video", "document"];

/// The fields of an `agents.list[]` entry's `identity` that upstream shows.
const IDENTITY_FIELDS: &[&str] = &["name", "theme", "emoji", "avatar", "avatarUrl"];

/// A non-empty string at `v`.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// One `ModelChoice` from a provider's `models[]` entry (`id`, and `name`, `contextWindow`,
/// `reasoning`, `input` where the config gives them).
fn model_choice(provider: &str, id: &str, entry: &Value) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), json!(text(entry.get("name")).unwrap_or(id)));
    m.insert("provider".into(), json!(provider));
    if let Some(n) = entry
        .get("contextWindow")
        .and_then(Value::as_u64)
        .filter(|n| *n >= 1)
    {
        m.insert("contextWindow".into(), json!(n));
    }
    if let Some(b) = entry.get("reasoning").and_then(Value::as_bool) {
        m.insert("reasoning".into(), json!(b));
    }
    if let Some(input) = entry.get("input").and_then(Value::as_array) {
        let kinds: Vec<&str> = input
            .iter()
            .filter_map(Value::as_str)
            .filter(|k| INPUTS.contains(k))
            .collect();
        m.insert("input".into(), json!(kinds));
    }
    Value::Object(m)
}

/// One `AgentSummary` from an `agents.list[]` entry, or `None` without an `id`.
fn agent_summary(entry: &Value) -> Option<Value> {
    let id = text(entry.get("id"))?;
    let mut a = Map::new();
    a.insert("id".into(), json!(id));
    if let Some(name) = text(entry.get("name")) {
        a.insert("name".into(), json!(name));
    }
    if let Some(identity) = entry.get("identity").and_then(Value::as_object) {
        let shown: Map<String, Value> = crate::sorting::map_of(
            identity
                .iter()
                .filter(|(k, v)| IDENTITY_FIELDS.contains(&k.as_str()) && text(Some(v)).is_some())
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        a.insert("identity".into(), Value::Object(shown));
    }
    if let Some(ws) = text(entry.get("workspace")) {
        a.insert("workspace".into(), json!(ws));
    }
    let primary = match entry.get("model") {
        Some(Value::String(p)) => Some(p.as_str()),
        Some(m) => text(m.get("primary")),
        None => None,
    };
    if let Some(p) = primary.filter(|p| !p.is_empty()) {
        a.insert("model".into(), json!({"primary": p}));
    }
    Some(Value::Object(a))
}

impl Gateway {
    /// Every configured model as `(provider, model id, its models[] entry)`, in config order,
    /// with the default model first added if no provider lists it.
    pub(crate) fn configured_models(&self) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        let providers = self
            .config
            .file
            .pointer("/models/providers")
            .and_then(Value::as_object);
        for (provider, p) in providers.into_iter().flatten() {
            let models = p.get("models").and_then(Value::as_array);
            for entry in models.into_iter().flatten() {
                if let Some(id) = text(entry.get("id")) {
                    out.push((provider.clone(), id.to_string(), entry.clone()));
                }
            }
        }
        if let Some((provider, model)) = self.default_model()
            && !out.iter().any(|(p, m, _)| p == provider && m == model)
        {
            out.insert(0, (provider.to_string(), model.to_string(), Value::Null));
        }
        out
    }

    /// `models.list`: the configured models.
    pub(crate) fn models_list(&mut self, _: Instant, _: &Call<'_>, p: ModelsList) -> Reply {
        if (p.prepared_only == Some(true) && p.refresh == Some(true))
            || (p.session_key.is_some() && p.auth_profile_id.is_some())
        {
            return Reply::Now(Err(ErrorShape::invalid(
                "invalid params: at root: must NOT be valid",
            )));
        }
        if let Some(v) = &p.view {
            let views = ["default", "configured", "provider-config", "all"];
            if !v.as_str().is_some_and(|s| views.contains(&s)) {
                return Reply::Now(Err(ErrorShape::invalid(format!(
                    "invalid params: at /view: must be one of \"{}\"",
                    views.join("\", \"")
                ))));
            }
        }
        let models: Vec<Value> = self
            .configured_models()
            .iter()
            .filter(|(provider, _, _)| p.provider.as_ref().is_none_or(|want| want.0 == *provider))
            .map(|(provider, id, entry)| model_choice(provider, id, entry))
            .collect();
        Reply::Now(Ok(json!({"models": models})))
    }

    /// `models.authStatus`: each provider of a configured model, authenticated by the API
    /// key of its `models.providers` entry (`static`) or by nothing (`missing`). clawgate
    /// keeps no auth profiles (OAuth sign-ins), so none is listed.
    pub(crate) fn models_auth_status(
        &mut self,
        now: Instant,
        _: &Call<'_>,
        _: crate::methods::AnyParams,
    ) -> Reply {
        let mut names: Vec<String> = self
            .configured_models()
            .into_iter()
            .map(|(provider, _, _)| provider)
            .collect();
        crate::sorting::sort(&mut names);
        names.dedup();
        let providers: Vec<Value> = names
            .iter()
            .map(|provider| {
                let keyed = self
                    .config
                    .file
                    .pointer("/models/providers")
                    .and_then(|all| all.get(provider))
                    .and_then(|p| p.get("apiKey"))
                    .is_some_and(|k| !k.is_null() && k.as_str() != Some(""));
                json!({
                    "provider": provider,
                    "authProvider": provider,
                    "displayName": provider,
                    "status": if keyed { "static" } else { "missing" },
                    "profiles": [],
                })
            })
            .collect();
        Reply::Now(Ok(json!({"ts": self.unix_ms(now), "providers": providers})))
    }

    /// `agent.identity.get`: the name and avatar the UI shows for the agent of `agentId` or
    /// of `sessionKey` (`agent:<id>:…`): its `identity.name` (`nameSource: "agent"`) else
    /// upstream's default, its `identity.emoji` as avatar else `A`. clawgate reads no
    /// workspace `IDENTITY.md`.
    pub(crate) fn agent_identity_get(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        p: AgentIdentityGet,
    ) -> Reply {
        let from_key = match p.session_key.as_deref().map(str::trim) {
            Some(key) if key.starts_with("agent:") => match key.split(':').nth(1) {
                Some(id) if !id.is_empty() => Some(NonEmpty(id.to_string())),
                _ => {
                    return Reply::Now(Err(ErrorShape::invalid(format!(
                        "invalid agent.identity.get params: malformed session key \"{key}\""
                    ))));
                }
            },
            _ => None,
        };
        let agent = from_key.or(p.agent_id);
        if let Err(e) = super::sessions::check_agent(agent.as_ref()) {
            return Reply::Now(Err(e));
        }
        let identity = self.assistant_identity();
        let mut out = json!({
            "agentId": AGENT_ID,
            "name": identity.name,
            "nameSource": identity.name_source,
            "avatar": identity.avatar,
        });
        if let (Some(e), Value::Object(o)) = (&self.config.identity.emoji, &mut out) {
            o.insert("emoji".into(), json!(e));
        }
        Reply::Now(Ok(out))
    }

    /// The agent's name and avatar as the UI shows them (`identity`, else upstream's
    /// defaults).
    pub(crate) fn assistant_identity(&self) -> AssistantIdentity<'_> {
        let identity = &self.config.identity;
        let (name, name_source) = match &identity.name {
            Some(n) => (n.as_str(), "agent"),
            None => (DEFAULT_NAME, "default"),
        };
        AssistantIdentity {
            name,
            name_source,
            avatar: identity.emoji.as_deref().unwrap_or(DEFAULT_AVATAR),
        }
    }

    /// `agents.list`: the agents of `agents.list[]`, or the default `main` agent.
    pub(crate) fn agents_list(&mut self, _: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        let entries = self
            .config
            .file
            .pointer("/agents/list")
            .and_then(Value::as_array);
        let mut agents: Vec<Value> = entries
            .into_iter()
            .flatten()
            .filter_map(agent_summary)
            .collect();
        let default_entry = entries
            .into_iter()
            .flatten()
            .find(|e| e.get("default") == Some(&json!(true)));
        let mut default_id = default_entry
            .or_else(|| entries.and_then(|e| e.first()))
            .and_then(|e| text(e.get("id")))
            .unwrap_or(AGENT_ID)
            .to_string();
        if agents.is_empty() {
            agents.push(json!({"id": AGENT_ID}));
            default_id = AGENT_ID.to_string();
        }
        // An agent without a model of its own runs on the default one (upstream lists it, and
        // the Control UI asks for model setup when it is missing).
        let defaults = self.config.file.pointer("/agents/defaults/model");
        let primary = match defaults {
            Some(Value::String(p)) => Some(p.clone()),
            Some(m) => text(m.get("primary")).map(str::to_string),
            None => None,
        }
        .or_else(|| {
            let route = self.config.model.as_ref()?;
            Some(format!("{}/{}", route.provider, route.model))
        });
        if let Some(primary) = primary {
            for a in agents.iter_mut().filter(|a| a.get("model").is_none()) {
                a["model"] = json!({"primary": primary});
            }
        }
        Reply::Now(Ok(json!({
            "defaultId": default_id,
            "mainKey": "main",
            "scope": "per-sender",
            "agents": agents,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_entry_shows_the_fields_upstream_allows() {
        let entry = json!({"id": "m", "name": "M", "contextWindow": 8192, "reasoning": true,
            "input": ["text", "smell"], "cost": {"input": 1}});
        assert_eq!(
            model_choice("p", "m", &entry),
            json!({"id": "m", "name": "M", "provider": "p", "contextWindow": 8192,
                "reasoning": true, "input": ["text"]})
        );
        assert_eq!(
            model_choice("p", "m", &Value::Null),
            json!({"id": "m", "name": "m", "provider": "p"})
        );
    }

    #[test]
    fn an_agent_entry_shows_its_id_name_identity_and_model() {
        let entry = json!({"id": "w", "name": "Work", "default": true, "tools": {},
            "identity": {"name": "W", "emoji": "🛠", "bio": "x", "theme": ""},
            "model": {"primary": "p/m", "fallbacks": []}});
        assert_eq!(
            agent_summary(&entry),
            Some(
                json!({"id": "w", "name": "Work", "identity": {"name": "W", "emoji": "🛠"},
                "model": {"primary": "p/m"}})
            )
        );
        assert_eq!(
            agent_summary(&json!({"id": "x", "model": "p/m"})),
            Some(json!({"id": "x", "model": {"primary": "p/m"}}))
        );
        assert_eq!(agent_summary(&json!({"name": "no id"})), None);
    }
}
