//! `clawgate doctor [--generate-gateway-token]`: find what would stop the gateway or its
//! clients from working — a config file that does not parse or would be refused, a token
//! under `gateway.auth.token` that differs from the one clients send, files readable by
//! others, a non-loopback bind without auth, a port already taken — one line each, with what
//! to do; say what an import from upstream's state database would bring and which keys of
//! the config file clawgate ignores; and write one fresh token under both keys.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clawgate_core::config::{RunFlags, parse_file, str_at};
use clawgate_core::{Config, ConfigError};
use clawgate_host::settings::{self, SettingsError};
use serde_json::{Value, json};

use super::args::{self, Opt};
use super::{Exit, Failure, Outcome};

const USAGE: &str = "clawgate doctor [--generate-gateway-token]";

/// One problem and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

fn finding(problem: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// `doctor`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, &[Opt::switch("generate-gateway-token")], &[])?;
    p.expect_positionals(0, USAGE)?;
    let env = clawgate_host::paths::env_map();
    if p.switch("generate-gateway-token") {
        let path = clawgate_host::paths::config_path(&env);
        let written = generate_token(&path)?;
        print_generated(&path, &written);
        return Ok(());
    }
    let (findings, notes) = check(&env);
    for n in &notes {
        say!("ok   {n}");
    }
    for n in super::upstream::doctor_notes(&env) {
        say!("note {n}");
    }
    for f in &findings {
        say!("FIX  {}\n     → {}", f.problem, f.fix);
    }
    if findings.is_empty() {
        say!("No problems found.");
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "{} problem(s) need fixing (see above)",
            findings.len()
        )))
    }
}

/// What the `exec` tool may run, and why clawgate's default differs from upstream's.
fn exec_note(mode: clawgate_core::config::tools::ExecMode) -> String {
    use clawgate_core::config::tools::ExecMode;
    match mode {
        ExecMode::Deny => "tools.exec.mode is \"deny\" (clawgate's default; upstream's is \"full\"): the agent cannot run commands on this host".into(),
        other => format!("tools.exec.mode is \"{}\": the agent may run commands on this host (only for operator turns)", other.as_str()),
    }
}

/// Run every check; returns the problems and the lines of what was checked and found fine.
pub fn check(env: &BTreeMap<String, String>) -> (Vec<Finding>, Vec<String>) {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let config_path = clawgate_host::paths::config_path(env);
    let state_dir = clawgate_host::paths::state_dir(env);
    let file = match settings::read_config_text(&config_path) {
        Err(e) => {
            findings.push(finding(
                e.to_string(),
                "make the file readable by the user who runs clawgate",
            ));
            Value::Null
        }
        Ok(None) => {
            notes.push(format!(
                "no config file at {} (local mode: loopback, no auth)",
                config_path.display()
            ));
            Value::Null
        }
        Ok(Some(text)) => match parse_file(&text) {
            Ok(v) => {
                notes.push(format!("config file {} parses", config_path.display()));
                v
            }
            Err(e) => {
                findings.push(finding(
                    format!("config file {} is not valid JSON5: {e}", config_path.display()),
                    "fix the syntax (JSON5 allows comments and trailing commas) or move the file aside",
                ));
                Value::Null
            }
        },
    };
    findings.extend(secret_mismatches(env, &file));
    findings.extend(permissions(&config_path, &state_dir));
    match settings::resolve(env.clone(), RunFlags::default(), None) {
        Ok((config, _)) => {
            notes.push(format!("the gateway would start: bind {} ({}), port {}, auth {}", config.bind_label, config.bind_host, config.port, config.auth_mode.as_str()));
            notes.push(exec_note(config.tools.exec.mode));
            match port_check(&config) {
                PortState::Free => notes.push(format!("port {} on {} is free", config.port, config.bind_host)),
                PortState::Gateway => notes.push(format!("a gateway is already running on port {}", config.port)),
                PortState::Taken(e) => findings.push(finding(
                    format!("port {} on {} is taken by something that is not a gateway ({e})", config.port, config.bind_host),
                    "stop that program, or pick another port with gateway.port or OPENCLAW_GATEWAY_PORT",
                )),
            }
        }
        // A file that does not parse is reported above already.
        Err(SettingsError::Config(ConfigError::Parse { .. })) => {}
        Err(SettingsError::Config(e @ ConfigError::RefuseBindWithoutAuth { .. })) => findings.push(finding(
            format!("the gateway would refuse to start: {e}"),
            "set a token (`clawgate doctor --generate-gateway-token`) or bind to loopback (gateway.bind: \"loopback\")",
        )),
        Err(e) => findings.push(finding(format!("the gateway would refuse to start (exit 78): {e}"), "fix the named key or flag")),
    }
    (findings, notes)
}

/// `gateway.auth.*` against `gateway.remote.*` and the environment.
fn secret_mismatches(env: &BTreeMap<String, String>, file: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    // In remote mode gateway.remote.* belongs to another gateway: it may differ.
    let remote_mode = str_at(file, &["gateway", "mode"]).as_deref() == Some("remote");
    for (field, env_key) in [
        ("token", "OPENCLAW_GATEWAY_TOKEN"),
        ("password", "OPENCLAW_GATEWAY_PASSWORD"),
    ] {
        let Some(server) = str_at(file, &["gateway", "auth", field]) else {
            continue;
        };
        let auth_key = format!("gateway.auth.{field}");
        if !remote_mode && str_at(file, &["gateway", "remote", field]).is_some_and(|r| r != server)
        {
            out.push(finding(
                format!("gateway.remote.{field} differs from {auth_key}: clients on this machine send gateway.remote.{field} and the gateway refuses it"),
                "make them equal, or run `clawgate doctor --generate-gateway-token` to write one fresh token under both keys",
            ));
        }
        if env
            .get(env_key)
            .is_some_and(|v| !v.is_empty() && *v != server)
        {
            out.push(finding(
                format!("{env_key} is set and differs from {auth_key}: it overrides the config for both the gateway and its clients"),
                format!("unset {env_key}, or make it equal to {auth_key}"),
            ));
        }
    }
    out
}

/// Files and directories readable by others.
fn permissions(config_path: &Path, state_dir: &Path) -> Vec<Finding> {
    let pairing = clawgate_store::db_path(state_dir);
    let mut checks: Vec<(PathBuf, u32)> = vec![
        (config_path.to_path_buf(), 0o600),
        (state_dir.to_path_buf(), 0o700),
        (pairing.clone(), 0o600),
    ];
    if let Some(dir) = pairing.parent() {
        checks.push((dir.to_path_buf(), 0o700));
    }
    checks
        .into_iter()
        .filter_map(|(path, want)| {
            let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| {
                finding(
                    format!(
                        "{} is mode {mode:04o}: others can read it (secrets, pairing tokens)",
                        path.display()
                    ),
                    format!("chmod {want:o} {}", path.display()),
                )
            })
        })
        .collect()
}

/// Whether the gateway's port can be bound.
enum PortState {
    Free,
    Gateway,
    Taken(std::io::Error),
}

fn port_check(config: &Config) -> PortState {
    let addr = SocketAddr::new(config.bind_host, config.port);
    match TcpListener::bind(addr) {
        Ok(_) => PortState::Free,
        Err(_) if answers_as_gateway(config) => PortState::Gateway,
        Err(e) => PortState::Taken(e),
    }
}

/// Whether something on the gateway's port answers `GET /healthz` as a gateway does.
fn answers_as_gateway(config: &Config) -> bool {
    let host = if config.bind_host.is_unspecified() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        config.bind_host
    };
    let timeout = Duration::from_millis(1_000);
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::new(host, config.port), timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}:{}\r\nConnection: close\r\n\r\n",
        config.port
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    text.starts_with("HTTP/1.1 200") && text.contains("\"live\"")
}

/// What `--generate-gateway-token` wrote.
#[derive(Debug)]
pub struct Generated {
    /// The new token.
    pub token: String,
    /// Whether the old file used JSON5 syntax (comments, unquoted keys), which a JSON rewrite drops.
    pub dropped_comments: bool,
    /// Whether `gateway.remote.token` was written too (not in remote mode, where it belongs to
    /// another gateway).
    pub wrote_remote: bool,
}

/// Write one fresh token (24 random bytes, hex) under `gateway.auth.token` and
/// `gateway.remote.token`, with `gateway.auth.mode: "token"`, keeping every other key. In
/// remote mode (`gateway.mode: "remote"`) `gateway.remote.token` is another gateway's and is
/// left alone.
pub fn generate_token(path: &Path) -> Result<Generated, Failure> {
    let refuse = |m: String| Failure::new(Exit::Config, m);
    let text = settings::read_config_text(path).map_err(|e| refuse(e.to_string()))?;
    let mut doc = match &text {
        None => json!({}),
        Some(t) => parse_file(t).map_err(|e| {
            refuse(format!(
                "config file {} is not valid JSON5: {e}; fix it first (nothing was written)",
                path.display()
            ))
        })?,
    };
    let token: String = clawgate_host::entropy::random_bytes::<24>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let wrote_remote = str_at(&doc, &["gateway", "mode"]).as_deref() != Some("remote");
    set_token(&mut doc, &token, wrote_remote).map_err(|k| {
        refuse(format!(
            "{k} in {} is not an object; fix it first (nothing was written)",
            path.display()
        ))
    })?;
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| refuse(e.to_string()))?;
    bytes.push(b'\n');
    clawgate_host::store::write_atomic(path, &bytes)
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
    let dropped_comments =
        text.is_some_and(|t| !t.trim().is_empty() && serde_json::from_str::<Value>(&t).is_err());
    Ok(Generated {
        token,
        dropped_comments,
        wrote_remote,
    })
}

/// Set the token keys in `doc` (`gateway.remote.token` too when `remote`); on failure, names
/// the key that is in the way.
fn set_token(doc: &mut Value, token: &str, remote: bool) -> Result<(), String> {
    let auth = object_path(doc, &["gateway", "auth"])?;
    auth.insert("mode".into(), json!("token"));
    auth.insert("token".into(), json!(token));
    if remote {
        object_path(doc, &["gateway", "remote"])?.insert("token".into(), json!(token));
    }
    Ok(())
}

/// The object at `path` in `v`, creating missing (or null) ones; `Err` names the first key
/// on the way that holds something else.
fn object_path<'a>(
    v: &'a mut Value,
    path: &[&str],
) -> Result<&'a mut serde_json::Map<String, Value>, String> {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        let name = || path.get(..=i).unwrap_or_default().join(".");
        let obj = cur.as_object_mut().ok_or_else(|| {
            if i == 0 {
                "the top level".to_string()
            } else {
                path.get(..i).unwrap_or_default().join(".")
            }
        })?;
        let child = obj.entry(key.to_string()).or_insert_with(|| json!({}));
        if child.is_null() {
            *child = json!({});
        }
        if !child.is_object() {
            return Err(name());
        }
        cur = child;
    }
    cur.as_object_mut().ok_or_else(|| path.join("."))
}

fn print_generated(path: &Path, g: &Generated) {
    say!(
        "Wrote a new gateway token to {} (mode 0600)",
        path.display()
    );
    if g.wrote_remote {
        say!(
            "  under gateway.auth.token (what the gateway checks) and gateway.remote.token (what clients send),"
        );
    } else {
        say!(
            "  under gateway.auth.token (what this machine's gateway checks); gateway.remote.token was left alone:"
        );
        say!("  gateway.mode is \"remote\", so it holds the token of the remote gateway,");
    }
    say!("  with gateway.auth.mode = \"token\".");
    if g.dropped_comments {
        say!(
            "  Note: the file was rewritten as plain JSON; its comments and JSON5 syntax were not kept."
        );
    }
    say!("Token: {}", g.token);
    say!(
        "Restart the gateway to use it: `clawgate gateway restart` (service) or restart `clawgate gateway run`."
    );
    say!(
        "Clients on this machine read it from the config; elsewhere pass it: clawgate gateway health --url ws://<host>:<port> --token <token>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_tests::tempdir::TempDir;

    #[test]
    fn generated_token_goes_under_both_keys_and_keeps_the_rest() {
        let dir = TempDir::new("doctor");
        let path = dir.path().join("state").join("openclaw.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{ // mine\n agents: {x: 1}, gateway: {port: 1234, auth: {token: 'old', rateLimit: {maxAttempts: 3}}, remote: {url: 'ws://h:1'}},}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let g = generate_token(&path).unwrap();
        assert_eq!(g.token.len(), 48);
        assert!(g.token.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(g.dropped_comments);
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["gateway"]["auth"]["token"], g.token.as_str());
        assert_eq!(doc["gateway"]["remote"]["token"], g.token.as_str());
        assert_eq!(doc["gateway"]["auth"]["mode"], "token");
        assert_eq!(doc["gateway"]["auth"]["rateLimit"]["maxAttempts"], 3);
        assert_eq!(doc["gateway"]["remote"]["url"], "ws://h:1");
        assert_eq!(doc["gateway"]["port"], 1234);
        assert_eq!(doc["agents"]["x"], 1);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = generate_token(&path).unwrap();
        assert_ne!(again.token, g.token);
        assert!(!again.dropped_comments);
        assert!(again.wrote_remote);
        // Remote mode: gateway.remote.token is the remote gateway's, and stays.
        std::fs::write(
            &path,
            r#"{"gateway":{"mode":"remote","remote":{"url":"ws://10.0.0.2:1","token":"theirs"}}}"#,
        )
        .unwrap();
        let g = generate_token(&path).unwrap();
        assert!(!g.wrote_remote);
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["gateway"]["auth"]["token"], g.token.as_str());
        assert_eq!(doc["gateway"]["remote"]["token"], "theirs");
    }

    #[test]
    fn generate_token_creates_the_file_and_refuses_broken_ones() {
        let dir = TempDir::new("doctor-new");
        let path = dir.path().join("new").join("openclaw.json");
        generate_token(&path).unwrap();
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{gateway:").unwrap();
        assert_eq!(generate_token(&broken).unwrap_err().exit, Exit::Config);
        assert_eq!(std::fs::read_to_string(&broken).unwrap(), "{gateway:");
        let odd = dir.path().join("odd.json");
        std::fs::write(&odd, r#"{"gateway": {"auth": "x"}}"#).unwrap();
        assert!(
            generate_token(&odd)
                .unwrap_err()
                .message
                .contains("gateway.auth")
        );
    }

    fn env_for(dir: &Path) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("OPENCLAW_STATE_DIR".into(), dir.display().to_string());
        env.insert("HOME".into(), dir.display().to_string());
        // A port nobody uses in these tests, so the port check is about this configuration only.
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        env.insert("OPENCLAW_GATEWAY_PORT".into(), free.to_string());
        env
    }

    #[test]
    fn doctor_reports_mismatch_permissions_bind_and_port() {
        let dir = TempDir::new("doctor-check");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut env = env_for(&state);
        let cfg = state.join("openclaw.json");
        clawgate_host::store::write_atomic(
            &cfg,
            br#"{"gateway":{"auth":{"token":"aaaa1111"},"remote":{"token":"bbbb2222"}}}"#,
        )
        .unwrap();
        let (findings, _) = check(&env);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0]
                .problem
                .contains("gateway.remote.token differs from gateway.auth.token")
        );
        // In remote mode the remote token is another gateway's: no finding.
        clawgate_host::store::write_atomic(
            &cfg,
            br#"{"gateway":{"mode":"remote","auth":{"token":"aaaa1111"},"remote":{"token":"bbbb2222"}}}"#,
        )
        .unwrap();
        let (findings, _) = check(&env);
        assert!(findings.is_empty(), "{findings:?}");

        generate_token(&cfg).unwrap();
        let (findings, notes) = check(&env);
        assert!(findings.is_empty(), "{findings:?}");
        assert!(notes.iter().any(|n| n.contains("is free")), "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("tools.exec.mode is \"deny\" (clawgate's default")),
            "{notes:?}"
        );

        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (findings, _) = check(&env);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(
            findings
                .iter()
                .any(|f| f.fix == format!("chmod 600 {}", cfg.display()))
        );
        assert!(
            findings
                .iter()
                .any(|f| f.fix == format!("chmod 700 {}", state.display()))
        );
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();

        clawgate_host::store::write_atomic(&cfg, br#"{"gateway":{"bind":"lan"}}"#).unwrap();
        let (findings, _) = check(&env);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0]
                .problem
                .contains("Refusing to bind gateway to lan without auth.")
        );

        clawgate_host::store::write_atomic(&cfg, b"{}").unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        env.insert(
            "OPENCLAW_GATEWAY_PORT".into(),
            taken.local_addr().unwrap().port().to_string(),
        );
        let (findings, _) = check(&env);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].problem.contains("is taken"), "{findings:?}");

        std::fs::write(&cfg, "{oops").unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (findings, _) = check(&env);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].problem.contains("not valid JSON5"));
    }
}
