//! Where a client command connects and with which secrets: `--url`, else
//! `OPENCLAW_GATEWAY_URL`, else `gateway.remote.url` when `gateway.mode` is `remote`, else the
//! local gateway at `ws://127.0.0.1:<port>` (`OPENCLAW_GATEWAY_PORT` > `gateway.port` > 18789).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clawgate_core::config::{DEFAULT_PORT, parse_file, str_at};
use serde_json::Value;

use super::credentials::{self, Credentials, Flags, UrlSource};
use super::{Exit, Failure};
use clawgate_host::url::GatewayUrl;

/// A gateway to talk to.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its URL.
    pub url: GatewayUrl,
    /// Where the URL came from.
    pub source: UrlSource,
    /// The secrets to send.
    pub credentials: Credentials,
    /// The config file consulted (for messages).
    pub config_path: PathBuf,
}

/// The config file as JSON (`Null` when it does not exist).
pub fn load_config(path: &std::path::Path) -> Result<Value, Failure> {
    let text = clawgate_host::settings::read_config_text(path)
        .map_err(|e| Failure::new(Exit::Config, e.to_string()))?;
    match text {
        None => Ok(Value::Null),
        Some(t) => parse_file(&t).map_err(|e| {
            Failure::new(
                Exit::Config,
                format!(
                    "config file {} is not valid JSON5: {e}; fix it or move it aside",
                    path.display()
                ),
            )
        }),
    }
}

/// The port of the local gateway: `OPENCLAW_GATEWAY_PORT` > `gateway.port` > 18789.
pub fn local_port(env: &BTreeMap<String, String>, file: &Value) -> Result<u16, Failure> {
    let bad = |key: &str, v: &str| {
        Failure::new(Exit::Config, format!("{key} is not a port number: {v:?}"))
    };
    if let Some(p) = env
        .get("OPENCLAW_GATEWAY_PORT")
        .filter(|p| !p.trim().is_empty())
    {
        return p
            .trim()
            .parse()
            .map_err(|_| bad("OPENCLAW_GATEWAY_PORT", p));
    }
    match file.get("gateway").and_then(|g| g.get("port")) {
        None | Some(Value::Null) => Ok(DEFAULT_PORT),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| bad("gateway.port", &n.to_string())),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad("gateway.port", s)),
        Some(other) => Err(bad("gateway.port", &other.to_string())),
    }
}

/// Resolve the target of a command from its `--url/--token/--password`, the environment and
/// the config file. A config file that cannot be parsed is a configuration failure (exit 78)
/// unless `--url` makes it irrelevant.
pub fn resolve(
    url_flag: Option<&str>,
    flags: Flags<'_>,
    env: &BTreeMap<String, String>,
) -> Result<Target, Failure> {
    let config_path = clawgate_host::paths::config_path(env);
    let file = match load_config(&config_path) {
        Ok(f) => f,
        Err(_) if url_flag.is_some() => Value::Null,
        Err(e) => return Err(e),
    };
    let remote_url = (str_at(&file, &["gateway", "mode"]).as_deref() == Some("remote"))
        .then(|| str_at(&file, &["gateway", "remote", "url"]))
        .flatten();
    let env_url = env
        .get("OPENCLAW_GATEWAY_URL")
        .filter(|u| !u.trim().is_empty())
        .cloned();
    let (url, source) = match (url_flag, env_url, remote_url) {
        (Some(u), _, _) => (parse_url(u, "--url")?, UrlSource::CliFlag),
        (None, Some(u), _) => (parse_url(&u, "OPENCLAW_GATEWAY_URL")?, UrlSource::Env),
        (None, None, Some(u)) => (
            parse_url(&u, "gateway.remote.url")?,
            UrlSource::RemoteConfig,
        ),
        (None, None, None) => (GatewayUrl::local(local_port(env, &file)?), UrlSource::Local),
    };
    let credentials = credentials::resolve(source, flags, env, &file);
    Ok(Target {
        url,
        source,
        credentials,
        config_path,
    })
}

/// The local gateway on loopback (`ws://127.0.0.1:<port>`), whatever `--url` or the
/// environment name: the second target a probe always checks, as upstream's does.
pub fn local(flags: Flags<'_>, env: &BTreeMap<String, String>) -> Result<Target, Failure> {
    let config_path = clawgate_host::paths::config_path(env);
    let file = load_config(&config_path)?;
    let url = GatewayUrl::local(local_port(env, &file)?);
    let credentials = credentials::resolve(UrlSource::Local, flags, env, &file);
    Ok(Target {
        url,
        source: UrlSource::Local,
        credentials,
        config_path,
    })
}

fn parse_url(s: &str, from: &str) -> Result<GatewayUrl, Failure> {
    let exit = if from == "--url" {
        Exit::Usage
    } else {
        Exit::Config
    };
    GatewayUrl::parse(s).map_err(|e| Failure::new(exit, format!("{from}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_port_precedence() {
        let file = json!({"gateway": {"port": 1111}});
        let mut env = BTreeMap::new();
        assert_eq!(local_port(&env, &Value::Null).unwrap(), 18789);
        assert_eq!(local_port(&env, &file).unwrap(), 1111);
        assert_eq!(
            local_port(&env, &json!({"gateway": {"port": "2222"}})).unwrap(),
            2222
        );
        env.insert("OPENCLAW_GATEWAY_PORT".to_string(), "3333".to_string());
        assert_eq!(local_port(&env, &file).unwrap(), 3333);
        env.insert("OPENCLAW_GATEWAY_PORT".to_string(), "x".to_string());
        assert_eq!(local_port(&env, &file).unwrap_err().exit, Exit::Config);
        assert_eq!(
            local_port(&BTreeMap::new(), &json!({"gateway": {"port": 70000}}))
                .unwrap_err()
                .exit,
            Exit::Config
        );
    }

    #[test]
    fn url_sources() {
        let dir = clawgate_tests::tempdir::TempDir::new("target");
        let mut env = BTreeMap::new();
        env.insert(
            "OPENCLAW_STATE_DIR".to_string(),
            dir.path().display().to_string(),
        );
        let t = resolve(None, Flags::default(), &env).unwrap();
        assert_eq!(
            (t.url.to_string().as_str(), t.source),
            ("ws://127.0.0.1:18789", UrlSource::Local)
        );
        std::fs::write(
            dir.path().join("openclaw.json"),
            r#"{gateway: {mode: "remote", remote: {url: "ws://10.1.2.3:9", token: "R"}}}"#,
        )
        .unwrap();
        let t = resolve(None, Flags::default(), &env).unwrap();
        assert_eq!(
            (t.url.to_string().as_str(), t.source),
            ("ws://10.1.2.3:9", UrlSource::RemoteConfig)
        );
        assert_eq!(
            t.credentials.token.map(|c| c.source),
            Some("gateway.remote.token")
        );
        env.insert(
            "OPENCLAW_GATEWAY_URL".to_string(),
            "ws://127.0.0.1:5".to_string(),
        );
        assert_eq!(
            resolve(None, Flags::default(), &env).unwrap().source,
            UrlSource::Env
        );
        let t = resolve(Some("ws://127.0.0.1:7"), Flags::default(), &env).unwrap();
        assert_eq!(t.source, UrlSource::CliFlag);
        assert!(!t.credentials.any());
        assert_eq!(
            resolve(Some("wss://x:1"), Flags::default(), &env)
                .unwrap_err()
                .exit,
            Exit::Usage
        );
        std::fs::write(dir.path().join("openclaw.json"), "{gateway:").unwrap();
        env.remove("OPENCLAW_GATEWAY_URL");
        assert_eq!(
            resolve(None, Flags::default(), &env).unwrap_err().exit,
            Exit::Config
        );
        assert!(resolve(Some("ws://127.0.0.1:7"), Flags::default(), &env).is_ok());
    }
}
