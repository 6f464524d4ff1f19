//! The agent's model and identity as upstream configures them: `models.providers.<id>{baseUrl,
//! api, apiKey, headers, authHeader, maxTokens, timeoutSeconds, models[]}`, the agent's primary
//! model (`agents.entries.main.model`, the legacy `agents.list[]` entry, else
//! `agents.defaults.model`), its `identity`, `${VAR}` substitution in config strings and the API
//! key read from the provider's usual environment variable when the config has none.

use core::net::IpAddr;
use core::time::Duration;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ConfigError, ModelApi, ModelRoute, at};
use crate::auth::Secret;
use crate::model::http1::Target;

/// Upstream's largest default `max_tokens` taken from a model's `maxTokens`.
const MAX_TOKENS_CAP: u64 = 32_000;
/// Upstream's `max_tokens` when nothing says otherwise (`ANTHROPIC_MESSAGES_DEFAULT_MAX_TOKENS`).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// A model's `contextWindow` divided by this bounds the default `max_tokens`.
const CONTEXT_DIVISOR: u64 = 4;

/// What upstream knows about a provider id without configuration: its API, its `baseUrl`
/// when it has a public one, and the environment variables its key is read from, in order.
struct Known {
    id: &'static str,
    api: ModelApi,
    base_url: Option<&'static str>,
    env: &'static [&'static str],
}

/// Upstream's bundled providers' key variables (their plugin manifests' `envVars`) and the
/// public endpoints of the three whose API clawgate speaks natively.
const KNOWN: &[Known] = &[
    Known {
        id: "openai",
        api: ModelApi::OpenAiCompletions,
        base_url: Some("https://api.openai.com/v1"),
        env: &["OPENAI_API_KEY"],
    },
    Known {
        id: "anthropic",
        api: ModelApi::AnthropicMessages,
        base_url: Some("https://api.anthropic.com"),
        env: &["ANTHROPIC_API_KEY"],
    },
    Known {
        id: "openrouter",
        api: ModelApi::OpenAiCompletions,
        base_url: Some("https://openrouter.ai/api/v1"),
        env: &["OPENROUTER_API_KEY"],
    },
    known_compatible("groq", &["GROQ_API_KEY"]),
    known_compatible("mistral", &["MISTRAL_API_KEY"]),
    known_compatible("deepseek", &["DEEPSEEK_API_KEY"]),
    known_compatible("xai", &["XAI_API_KEY"]),
    known_compatible("together", &["TOGETHER_API_KEY"]),
    known_compatible("nvidia", &["NVIDIA_API_KEY"]),
    known_compatible("litellm", &["LITELLM_API_KEY"]),
    known_compatible("vllm", &["VLLM_API_KEY"]),
    known_compatible("sglang", &["SGLANG_API_KEY"]),
    known_compatible("ollama", &["OLLAMA_API_KEY"]),
    known_compatible("lmstudio", &["LM_API_TOKEN"]),
    known_compatible("huggingface", &["HUGGINGFACE_HUB_TOKEN", "HF_TOKEN"]),
];

const fn known_compatible(id: &'static str, env: &'static [&'static str]) -> Known {
    Known {
        id,
        api: ModelApi::OpenAiCompletions,
        base_url: None,
        env,
    }
}

fn known(id: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.id == id)
}

/// Replace `${VAR}` in every string of `v` with the variable's value, as upstream does: only
/// names matching `[A-Z_][A-Z0-9_]*`, a missing or empty variable stays as written, and
/// `$${VAR}` is a literal `${VAR}`.
pub fn substitute_env(v: &mut Value, env: &BTreeMap<String, String>) {
    match v {
        Value::String(s) if s.contains("${") => *s = substitute(s, env),
        Value::Array(items) => items.iter_mut().for_each(|i| substitute_env(i, env)),
        Value::Object(m) => m.values_mut().for_each(|i| substitute_env(i, env)),
        _ => {}
    }
}

fn substitute(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        let escaped = rest[..at].ends_with('$');
        let (before, from) = rest.split_at(at);
        let name_end = from.find('}').filter(|&end| is_var_name(&from[2..end]));
        match name_end {
            Some(end) if escaped => {
                out.push_str(&before[..before.len() - 1]);
                out.push_str(&from[..=end]);
                rest = &from[end + 1..];
            }
            Some(end) => {
                out.push_str(before);
                match env.get(&from[2..end]).filter(|v| !v.is_empty()) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&from[..=end]),
                }
                rest = &from[end + 1..];
            }
            None => {
                out.push_str(before);
                out.push_str("${");
                rest = &from[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The agent `main`'s own entry: `agents.entries.main`, or the `agents.list[]` item with
/// `id: "main"` (upstream's legacy roster), or the only entry there is.
fn main_agent(file: &Value) -> Option<&Map<String, Value>> {
    if let Some(Value::Object(entries)) = at(file, &["agents", "entries"]) {
        let entry = entries.get("main").or_else(|| match entries.len() {
            1 => entries.values().next(),
            _ => None,
        });
        return entry.and_then(Value::as_object);
    }
    let Some(Value::Array(list)) = at(file, &["agents", "list"]) else {
        return None;
    };
    let by_id = list
        .iter()
        .find(|a| a.get("id").and_then(Value::as_str) == Some("main"));
    by_id
        .or_else(|| {
            list.iter()
                .find(|a| a.get("default") == Some(&Value::Bool(true)))
        })
        .or(match list.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .and_then(Value::as_object)
}

/// The agent's identity (`identity{name, theme, emoji}` of its entry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentIdentity {
    /// `identity.name`.
    pub name: Option<String>,
    /// `identity.theme`: the persona in a few words.
    pub theme: Option<String>,
    /// `identity.emoji`.
    pub emoji: Option<String>,
}

/// The identity of the agent `main`.
pub(super) fn agent_identity(file: &Value) -> AgentIdentity {
    let identity = main_agent(file).and_then(|a| a.get("identity"));
    let field = |k: &str| {
        identity
            .and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    AgentIdentity {
        name: field("name"),
        theme: field("theme"),
        emoji: field("emoji"),
    }
}

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::InvalidAt {
        key,
        message: message.into(),
    }
}

/// Every provider under `models.providers` checked, then the agent's primary model
/// (`"<provider>/<model>"`) resolved against them (or against a known provider with no entry).
pub(super) fn model_route(
    file: &Value,
    env: &BTreeMap<String, String>,
) -> Result<Option<ModelRoute>, ConfigError> {
    let providers = match at(file, &["models", "providers"]) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "models.providers",
                message: format!("must be an object of providers by id, got {other}"),
            });
        }
    };
    for (id, p) in &providers {
        check_provider(id, p)?;
    }
    let Some((key, primary)) = primary_model(file)? else {
        return Ok(None);
    };
    let Some((provider, model)) = primary
        .split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
    else {
        return Err(invalid(
            key,
            format!("must be \"<provider>/<model>\", got {primary:?}"),
        ));
    };
    let empty = Value::Object(Map::new());
    let p = match providers.get(provider) {
        Some(p) => p,
        None if known(provider).is_some_and(|k| k.base_url.is_some()) => &empty,
        None => {
            return Err(invalid(
                key,
                format!("names provider {provider:?}, which is not defined under models.providers"),
            ));
        }
    };
    route(provider, model, p, env).map(Some)
}

/// The primary model and the key it was read from: the agent's own `model` (a string or
/// `{primary}`), else `agents.defaults.model`.
fn primary_model(file: &Value) -> Result<Option<(String, String)>, ConfigError> {
    let own = main_agent(file)
        .and_then(|a| a.get("model"))
        .map(|m| (own_model_key(file), m));
    let defaults = at(file, &["agents", "defaults", "model"])
        .map(|m| ("agents.defaults.model".to_string(), m));
    let Some((key, value)) = own.or(defaults) else {
        return Ok(None);
    };
    let primary = format!("{key}.primary");
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some((primary, s.clone()))),
        Value::Object(m) => match m.get("primary") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some((primary, s.clone()))),
            Some(other) => Err(invalid(
                primary,
                format!("must be a \"<provider>/<model>\" string, got {other}"),
            )),
        },
        other => Err(invalid(
            key,
            format!("must be a \"<provider>/<model>\" string or {{primary}}, got {other}"),
        )),
    }
}

/// The config key of the agent's own `model`.
fn own_model_key(file: &Value) -> String {
    match at(file, &["agents", "entries"]) {
        Some(Value::Object(entries)) if entries.contains_key("main") => {
            "agents.entries.main.model".into()
        }
        Some(Value::Object(entries)) => {
            let id = entries.keys().next().map_or("main", String::as_str);
            format!("agents.entries.{id}.model")
        }
        _ => "agents.list[main].model".into(),
    }
}

fn check_provider(id: &str, p: &Value) -> Result<(), ConfigError> {
    let key = |field: &str| format!("models.providers.{id}.{field}");
    if !p.is_object() {
        return Err(invalid(
            format!("models.providers.{id}"),
            format!("must be an object, got {p}"),
        ));
    }
    api_of(p, &key("api"))?;
    match p.get("baseUrl") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) if known(id).is_some_and(|k| k.base_url.is_some()) => {}
        _ => {
            return Err(invalid(
                key("baseUrl"),
                "required: the provider's URL, e.g. \"http://127.0.0.1:8000/v1\"",
            ));
        }
    }
    if let Some(url) = p.get("baseUrl").and_then(Value::as_str)
        && let Err(e) = Target::parse(url)
    {
        return Err(invalid(key("baseUrl"), e.to_string()));
    }
    secret_of(p.get("apiKey"), &key("apiKey"), &BTreeMap::new())?;
    if let Some(headers) = p.get("headers").filter(|h| !h.is_null()) {
        let Value::Object(h) = headers else {
            return Err(invalid(
                key("headers"),
                "must be an object of header values",
            ));
        };
        for (name, value) in h {
            if !is_header_name(name) {
                return Err(invalid(key("headers"), format!("bad header name {name:?}")));
            }
            secret_of(
                Some(value),
                &key(&format!("headers.{name}")),
                &BTreeMap::new(),
            )?;
        }
    }
    for field in ["maxTokens", "timeoutSeconds"] {
        if p.get(field)
            .is_some_and(|v| !v.is_null() && v.as_f64().is_none_or(|n| n <= 0.0))
        {
            return Err(invalid(key(field), "must be a positive number"));
        }
    }
    if p.get("models")
        .is_some_and(|m| !m.is_null() && !m.is_array())
    {
        return Err(invalid(key("models"), "must be an array of {id, …}"));
    }
    Ok(())
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn api_of(p: &Value, key: &str) -> Result<Option<ModelApi>, ConfigError> {
    match p.get("api") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(a)) => ModelApi::parse(a).map(Some).ok_or_else(|| {
            invalid(
                key.to_string(),
                format!(
                    "unsupported api {a:?} (clawgate speaks \"{}\" and \"{}\")",
                    ModelApi::OpenAiCompletions.as_str(),
                    ModelApi::AnthropicMessages.as_str()
                ),
            )
        }),
        Some(other) => Err(invalid(
            key.to_string(),
            format!("must be a string, got {other}"),
        )),
    }
}

/// A secret input: a string (after `${VAR}` substitution; one still unresolved counts as
/// absent) or an env SecretRef `{source: "env", id: "VAR"}`.
fn secret_of(
    v: Option<&Value>,
    key: &str,
    env: &BTreeMap<String, String>,
) -> Result<Option<Secret>, ConfigError> {
    let value = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(r)) => match (r.get("source"), r.get("id")) {
            (Some(Value::String(source)), Some(Value::String(id))) if source == "env" => {
                env.get(id).cloned()
            }
            (Some(Value::String(source)), _) => {
                return Err(invalid(
                    key.to_string(),
                    format!(
                        "secret source {source:?} is not supported (use a string, \"${{VAR}}\" or {{source: \"env\", id: \"VAR\"}})"
                    ),
                ));
            }
            _ => return Err(invalid(key.to_string(), "a SecretRef needs source and id")),
        },
        Some(other) => {
            return Err(invalid(
                key.to_string(),
                format!("must be a string or a SecretRef, got {other}"),
            ));
        }
    };
    Ok(value
        .filter(|s| !s.trim().is_empty() && !has_unresolved_var(s))
        .map(|s| Secret::new(&s)))
}

fn has_unresolved_var(s: &str) -> bool {
    s.match_indices("${").any(|(at, _)| {
        s[at + 2..]
            .find('}')
            .is_some_and(|end| is_var_name(&s[at + 2..at + 2 + end]))
    })
}

/// The route of `provider/model` with provider entry `p` (already checked).
fn route(
    provider: &str,
    model: &str,
    p: &Value,
    env: &BTreeMap<String, String>,
) -> Result<ModelRoute, ConfigError> {
    let key = |field: &str| format!("models.providers.{provider}.{field}");
    let entry = p.get("models").and_then(Value::as_array).and_then(|ms| {
        ms.iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(model))
    });
    let from_model = |field: &str| entry.and_then(|m| m.get(field)).filter(|v| !v.is_null());
    let builtin = known(provider);
    let api = match from_model("api") {
        Some(_) => api_of(
            entry.unwrap_or(p),
            &format!("models.providers.{provider}.models[{model}].api"),
        )?,
        None => api_of(p, &key("api"))?,
    }
    .or(builtin.map(|k| k.api))
    .unwrap_or(ModelApi::OpenAiCompletions);
    let base_url = from_model("baseUrl")
        .or_else(|| p.get("baseUrl"))
        .and_then(Value::as_str)
        .or(builtin.and_then(|k| k.base_url))
        .unwrap_or_default()
        .to_string();
    let env_vars = builtin.map_or(&[][..], |k| k.env);
    let api_key = match secret_of(p.get("apiKey"), &key("apiKey"), env)? {
        Some(k) => Some(k),
        None => env_vars
            .iter()
            .find_map(|v| env.get(*v).filter(|s| !s.trim().is_empty()))
            .map(|s| Secret::new(s)),
    };
    let key_hint = match env_vars {
        [] => key("apiKey"),
        vars => format!("{} (or {})", key("apiKey"), vars.join(" / ")),
    };
    let mut headers = Vec::new();
    for source in [p.get("headers"), from_model("headers")]
        .into_iter()
        .flatten()
    {
        for (name, value) in source.as_object().into_iter().flatten() {
            let Some(value) = secret_of(Some(value), &key(&format!("headers.{name}")), env)? else {
                continue;
            };
            headers.retain(|(n, _): &(String, Secret)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value));
        }
    }
    let number = |v: Option<&Value>| v.and_then(Value::as_f64).filter(|n| *n > 0.0);
    let max_tokens = match (
        number(from_model("maxTokens")).or(number(p.get("maxTokens"))),
        number(from_model("contextWindow")),
    ) {
        (Some(n), _) => (n as u64).clamp(1, MAX_TOKENS_CAP) as u32,
        (None, Some(window)) => {
            ((window as u64) / CONTEXT_DIVISOR).clamp(1, u64::from(DEFAULT_MAX_TOKENS)) as u32
        }
        (None, None) => DEFAULT_MAX_TOKENS,
    };
    let timeout = number(p.get("timeoutSeconds")).map(Duration::from_secs_f64);
    let self_hosted = Target::parse(&base_url)
        .map(|t| is_self_hosted(&t.host))
        .unwrap_or(false);
    Ok(ModelRoute {
        provider: provider.to_string(),
        model: model.to_string(),
        base_url,
        api_key,
        api,
        key_hint,
        headers,
        auth_header: p.get("authHeader") != Some(&Value::Bool(false)),
        max_tokens,
        timeout,
        self_hosted,
    })
}

/// Whether `host` is this machine or a private network (upstream's "self-hosted" provider
/// class, which gets the longer idle timeout).
fn is_self_hosted(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || v6.is_unicast_link_local()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution_follows_upstreams_rules() {
        let e = env(&[("BASE", "https://api.example.com"), ("EMPTY", "")]);
        assert_eq!(substitute("${BASE}/v1", &e), "https://api.example.com/v1");
        assert_eq!(substitute("$${BASE}/v1", &e), "${BASE}/v1");
        assert_eq!(substitute("${MISSING}", &e), "${MISSING}");
        assert_eq!(substitute("${EMPTY}", &e), "${EMPTY}");
        assert_eq!(substitute("${lower}", &e), "${lower}");
        assert_eq!(substitute("a ${ b", &e), "a ${ b");
        assert_eq!(substitute("${BASE}${BASE}", &e).len(), 2 * 23);
        let mut v = serde_json::json!({"a": ["${BASE}", {"b": "x${BASE}"}], "n": 1});
        substitute_env(&mut v, &e);
        assert_eq!(v["a"][1]["b"], "xhttps://api.example.com");
    }

    fn route_of(file: &str, vars: &[(&str, &str)]) -> Result<Option<ModelRoute>, ConfigError> {
        let mut v: Value = json5::from_str(file).unwrap();
        let e = env(vars);
        substitute_env(&mut v, &e);
        model_route(&v, &e)
    }

    #[test]
    fn anthropic_needs_no_entry_and_reads_its_key_from_the_environment() {
        let r = route_of(
            r#"{agents: {defaults: {model: "anthropic/claude-sonnet-4-5"}}}"#,
            &[("ANTHROPIC_API_KEY", "sk-ant-1")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.api, ModelApi::AnthropicMessages);
        assert_eq!(r.base_url, "https://api.anthropic.com");
        assert!(r.api_key.unwrap().matches("sk-ant-1"));
        assert_eq!(
            r.key_hint,
            "models.providers.anthropic.apiKey (or ANTHROPIC_API_KEY)"
        );
        assert_eq!(r.max_tokens, DEFAULT_MAX_TOKENS);
        assert!(!r.self_hosted);
    }

    #[test]
    fn config_keys_win_over_the_environment() {
        let file = r#"{
            models: {providers: {openai: {apiKey: "${MY_KEY}", timeoutSeconds: 7,
                headers: {"X-Org": "${ORG}", "X-Drop": "${UNSET}"},
                models: [{id: "m", maxTokens: 100000, headers: {"x-org": "model-org"}}]}}},
            agents: {defaults: {model: {primary: "openai/m"}}},
        }"#;
        let r = route_of(
            file,
            &[
                ("MY_KEY", "k-conf"),
                ("OPENAI_API_KEY", "k-env"),
                ("ORG", "o"),
            ],
        )
        .unwrap()
        .unwrap();
        assert!(r.api_key.unwrap().matches("k-conf"));
        assert_eq!(r.base_url, "https://api.openai.com/v1");
        assert_eq!(r.timeout, Some(Duration::from_secs(7)));
        assert_eq!(r.max_tokens, 32_000);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-org"]);
        assert!(r.headers[0].1.matches("model-org"));
        let unresolved = route_of(file, &[("OPENAI_API_KEY", "k-env")])
            .unwrap()
            .unwrap();
        assert!(
            unresolved.api_key.unwrap().matches("k-env"),
            "an unset ${{VAR}} falls back to the provider's variable"
        );
    }

    #[test]
    fn env_secret_refs_and_unsupported_sources() {
        let file = r#"{models: {providers: {local: {baseUrl: "http://127.0.0.1:1/v1",
            apiKey: {source: "env", provider: "default", id: "LOCAL_KEY"}}}},
            agents: {defaults: {model: "local/x"}}}"#;
        let r = route_of(file, &[("LOCAL_KEY", "lk")]).unwrap().unwrap();
        assert!(r.api_key.unwrap().matches("lk"));
        assert!(r.self_hosted);
        assert_eq!(r.key_hint, "models.providers.local.apiKey");
        let e = route_of(
            r#"{models: {providers: {x: {baseUrl: "http://h/v1", apiKey: {source: "file", id: "/k"}}}}}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("models.providers.x.apiKey: secret source \"file\""),
            "{e}"
        );
    }

    #[test]
    fn the_agents_own_entry_sets_model_and_identity() {
        let file = r#"{models: {providers: {a: {baseUrl: "http://10.0.0.2:8000/v1", api: "anthropic-messages",
              models: [{id: "m1", contextWindow: 8000}]}}},
            agents: {defaults: {model: "a/m0"},
              entries: {main: {model: {primary: "a/m1"}, identity: {name: " Samantha ", theme: "helpful sloth", emoji: "🦥"}}}}}"#;
        let r = route_of(file, &[]).unwrap().unwrap();
        assert_eq!(r.model, "m1");
        assert_eq!(r.max_tokens, 2000);
        assert!(r.self_hosted);
        let v: Value = json5::from_str(file).unwrap();
        assert_eq!(
            agent_identity(&v),
            AgentIdentity {
                name: Some("Samantha".into()),
                theme: Some("helpful sloth".into()),
                emoji: Some("🦥".into()),
            }
        );
        let legacy: Value = json5::from_str(
            r#"{agents: {list: [{id: "ops"}, {id: "main", identity: {name: "Max"}, model: "p/q"}]}}"#,
        )
        .unwrap();
        assert_eq!(agent_identity(&legacy).name.as_deref(), Some("Max"));
        let e = model_route(&legacy, &BTreeMap::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agents.list[main].model.primary: names provider \"p\""),
            "{e}"
        );
    }

    #[test]
    fn bad_provider_fields_name_their_key() {
        for (file, key) in [
            (
                r#"{models: {providers: {x: {baseUrl: "ftp://h"}}}}"#,
                "models.providers.x.baseUrl",
            ),
            (
                r#"{models: {providers: {x: {baseUrl: "http://h", headers: {"a b": "c"}}}}}"#,
                "models.providers.x.headers",
            ),
            (
                r#"{models: {providers: {x: {baseUrl: "http://h", timeoutSeconds: 0}}}}"#,
                "models.providers.x.timeoutSeconds",
            ),
            (
                r#"{models: {providers: {x: {baseUrl: "http://h", api: "google-gemini"}}}}"#,
                "models.providers.x.api",
            ),
            (r#"{models: {providers: {x: 3}}}"#, "models.providers.x"),
        ] {
            let e = route_of(file, &[]).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{key}: ")),
                "{file}: {e}"
            );
        }
    }

    #[test]
    fn self_hosted_hosts() {
        for h in [
            "127.0.0.1",
            "localhost",
            "192.168.1.4",
            "10.1.2.3",
            "fd00::1",
            "box.local",
        ] {
            assert!(is_self_hosted(h), "{h}");
        }
        for h in ["api.openai.com", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_self_hosted(h), "{h}");
        }
    }
}
