//! Which shared secret a client command sends, and from where: the token trap, closed.
//!
//! Upstream clients read `gateway.remote.token` while the gateway checks `gateway.auth.token`.
//! clawgate reads, highest first, `--token`, `OPENCLAW_GATEWAY_TOKEN`, `gateway.remote.token`,
//! `gateway.auth.token` (passwords likewise), and says by key name when two configured values
//! differ. A secret from the config file or the environment is never sent to a URL the user
//! typed: with `--url` only `--token`/`--password` count.

use std::collections::BTreeMap;

use clawgate_core::config::str_at;
use serde_json::Value;

/// Where the gateway URL came from; it decides which secret sources may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlSource {
    /// `--url`: only the command-line secrets.
    CliFlag,
    /// `OPENCLAW_GATEWAY_URL`: command line and environment.
    Env,
    /// `gateway.remote.url` with `gateway.mode: "remote"`: command line, environment, `gateway.remote.*`.
    RemoteConfig,
    /// The local gateway on loopback: every source.
    Local,
}

impl UrlSource {
    /// The name upstream reports as `gateway.urlSource`.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlSource::CliFlag => "cli --url",
            UrlSource::Env => "env OPENCLAW_GATEWAY_URL",
            UrlSource::RemoteConfig => "config gateway.remote.url",
            UrlSource::Local => "local loopback",
        }
    }
}

/// A secret and the flag, variable or key it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The secret.
    pub value: String,
    /// `--token`, `OPENCLAW_GATEWAY_TOKEN`, `gateway.remote.token`, …
    pub source: &'static str,
}

/// The secrets a command will send, with warnings about disagreeing sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `auth.token`.
    pub token: Option<Chosen>,
    /// `auth.password`.
    pub password: Option<Chosen>,
    /// One line per pair of configured values that differ.
    pub warnings: Vec<String>,
}

impl Credentials {
    /// Whether any secret will be sent.
    pub fn any(&self) -> bool {
        self.token.is_some() || self.password.is_some()
    }
}

/// The command-line secrets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags<'a> {
    /// `--token`.
    pub token: Option<&'a str>,
    /// `--password`.
    pub password: Option<&'a str>,
}

/// One kind of secret: its sources in order of precedence.
struct Kind {
    flag: &'static str,
    env: &'static str,
    remote_key: &'static str,
    auth_key: &'static str,
    field: &'static str,
}

const TOKEN: Kind = Kind {
    flag: "--token",
    env: "OPENCLAW_GATEWAY_TOKEN",
    remote_key: "gateway.remote.token",
    auth_key: "gateway.auth.token",
    field: "token",
};
const PASSWORD: Kind = Kind {
    flag: "--password",
    env: "OPENCLAW_GATEWAY_PASSWORD",
    remote_key: "gateway.remote.password",
    auth_key: "gateway.auth.password",
    field: "password",
};

/// Resolve the secrets for a URL from `source`, given the flags, the environment and the
/// parsed config file (`Null` when there is none).
pub fn resolve(
    source: UrlSource,
    flags: Flags<'_>,
    env: &BTreeMap<String, String>,
    file: &Value,
) -> Credentials {
    let mut warnings = Vec::new();
    let token = pick(&TOKEN, flags.token, source, env, file, &mut warnings);
    let password = pick(&PASSWORD, flags.password, source, env, file, &mut warnings);
    Credentials {
        token,
        password,
        warnings,
    }
}

fn pick(
    kind: &Kind,
    flag: Option<&str>,
    source: UrlSource,
    env: &BTreeMap<String, String>,
    file: &Value,
    warnings: &mut Vec<String>,
) -> Option<Chosen> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    if let Some(v) = non_empty(flag.map(str::to_string)) {
        return Some(Chosen {
            value: v,
            source: kind.flag,
        });
    }
    let mut configured: Vec<(&'static str, String)> = Vec::new();
    if source != UrlSource::CliFlag {
        configured.extend(non_empty(env.get(kind.env).cloned()).map(|v| (kind.env, v)));
    }
    if matches!(source, UrlSource::RemoteConfig | UrlSource::Local) {
        configured.extend(
            non_empty(str_at(file, &["gateway", "remote", kind.field]))
                .map(|v| (kind.remote_key, v)),
        );
    }
    if source == UrlSource::Local {
        configured.extend(
            non_empty(str_at(file, &["gateway", "auth", kind.field])).map(|v| (kind.auth_key, v)),
        );
    }
    let (first_source, first_value) = configured.first()?.clone();
    for (other, value) in configured.iter().skip(1) {
        if *value != first_value {
            warnings.push(format!(
                "{first_source} and {other} differ; using {first_source}. The gateway checks {}: make them equal, or run `clawgate doctor --generate-gateway-token` to write one token under both keys",
                kind.auth_key
            ));
        }
    }
    Some(Chosen {
        value: first_value,
        source: first_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn token(c: &Credentials) -> Option<(&str, &str)> {
        c.token.as_ref().map(|t| (t.value.as_str(), t.source))
    }

    #[test]
    fn precedence_flag_env_remote_auth() {
        let file = json!({"gateway": {"remote": {"token": "R"}, "auth": {"token": "A"}}});
        let e = env(&[("OPENCLAW_GATEWAY_TOKEN", "E")]);
        let f = Flags {
            token: Some("F"),
            password: None,
        };
        assert_eq!(
            token(&resolve(UrlSource::Local, f, &e, &file)),
            Some(("F", "--token"))
        );
        assert_eq!(
            token(&resolve(UrlSource::Local, Flags::default(), &e, &file)),
            Some(("E", "OPENCLAW_GATEWAY_TOKEN"))
        );
        assert_eq!(
            token(&resolve(
                UrlSource::Local,
                Flags::default(),
                &env(&[]),
                &file
            )),
            Some(("R", "gateway.remote.token"))
        );
        let only_auth = json!({"gateway": {"auth": {"token": "A"}}});
        assert_eq!(
            token(&resolve(
                UrlSource::Local,
                Flags::default(),
                &env(&[]),
                &only_auth
            )),
            Some(("A", "gateway.auth.token"))
        );
        let blank = json!({"gateway": {"remote": {"token": "  "}, "auth": {"token": "A"}}});
        assert_eq!(
            token(&resolve(
                UrlSource::Local,
                Flags {
                    token: Some(""),
                    password: None
                },
                &env(&[]),
                &blank
            )),
            Some(("A", "gateway.auth.token"))
        );
    }

    #[test]
    fn explicit_url_uses_only_flags() {
        let file = json!({"gateway": {"remote": {"token": "R", "password": "RP"}, "auth": {"token": "A"}}});
        let e = env(&[
            ("OPENCLAW_GATEWAY_TOKEN", "E"),
            ("OPENCLAW_GATEWAY_PASSWORD", "EP"),
        ]);
        let c = resolve(UrlSource::CliFlag, Flags::default(), &e, &file);
        assert!(!c.any());
        assert!(c.warnings.is_empty());
        let c = resolve(
            UrlSource::CliFlag,
            Flags {
                token: None,
                password: Some("P"),
            },
            &e,
            &file,
        );
        assert_eq!(
            c.password.map(|p| (p.value, p.source)),
            Some(("P".to_string(), "--password"))
        );
        assert!(c.token.is_none());
    }

    #[test]
    fn env_url_allows_env_and_remote_url_skips_local_auth_key() {
        let file = json!({"gateway": {"remote": {"token": "R"}, "auth": {"token": "A"}}});
        let e = env(&[("OPENCLAW_GATEWAY_TOKEN", "E")]);
        assert_eq!(
            token(&resolve(UrlSource::Env, Flags::default(), &e, &file)),
            Some(("E", "OPENCLAW_GATEWAY_TOKEN"))
        );
        assert!(
            resolve(UrlSource::Env, Flags::default(), &env(&[]), &file)
                .token
                .is_none()
        );
        let c = resolve(UrlSource::RemoteConfig, Flags::default(), &env(&[]), &file);
        assert_eq!(token(&c), Some(("R", "gateway.remote.token")));
        assert!(
            c.warnings.is_empty(),
            "gateway.auth.token belongs to the local gateway: {:?}",
            c.warnings
        );
        let only_auth = json!({"gateway": {"auth": {"token": "A"}}});
        assert!(
            resolve(
                UrlSource::RemoteConfig,
                Flags::default(),
                &env(&[]),
                &only_auth
            )
            .token
            .is_none()
        );
    }

    #[test]
    fn differing_configured_values_are_named() {
        let file = json!({"gateway": {"remote": {"token": "R"}, "auth": {"token": "A", "password": "AP"}, }});
        let c = resolve(UrlSource::Local, Flags::default(), &env(&[]), &file);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with(
            "gateway.remote.token and gateway.auth.token differ; using gateway.remote.token"
        ));
        assert_eq!(
            c.password.as_ref().map(|p| p.source),
            Some("gateway.auth.password")
        );
        let same = json!({"gateway": {"remote": {"token": "A"}, "auth": {"token": "A"}}});
        assert!(
            resolve(
                UrlSource::Local,
                Flags::default(),
                &env(&[("OPENCLAW_GATEWAY_TOKEN", "A")]),
                &same
            )
            .warnings
            .is_empty()
        );
        let c = resolve(
            UrlSource::Local,
            Flags::default(),
            &env(&[("OPENCLAW_GATEWAY_TOKEN", "E")]),
            &same,
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings
                .iter()
                .all(|w| w.starts_with("OPENCLAW_GATEWAY_TOKEN and gateway."))
        );
        // A flag overrides everything, so configured disagreements are beside the point.
        assert!(
            resolve(
                UrlSource::Local,
                Flags {
                    token: Some("F"),
                    password: None
                },
                &env(&[]),
                &file
            )
            .warnings
            .is_empty()
        );
    }
}
