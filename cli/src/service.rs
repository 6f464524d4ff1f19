//! `clawgate gateway install|start|stop|restart|uninstall|status`: the gateway as a systemd
//! **user** service (`~/.config/systemd/user/clawgate-gateway.service`), driven with
//! `systemctl --user`. Where there is no systemd or no user session bus, the commands say so
//! and what to do instead, rather than fail obscurely.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::args::{self, QUERY};
use super::output::print_json;
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use super::{Exit, Failure, Outcome, report, scopes};
use clawgate_host::session::Session;

/// The unit's name.
pub const UNIT: &str = "clawgate-gateway.service";
/// How long one `systemctl` call may take.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// Environment variables the unit carries over from the installing shell.
const CARRIED_ENV: &[&str] = &[
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_GATEWAY_PORT",
];

const INSTEAD: &str = "run `clawgate gateway run` under your own supervisor (runit, s6, supervisord, a container's init) instead";

/// Path of the user unit: `$XDG_CONFIG_HOME/systemd/user/…`, else `~/.config/systemd/user/…`.
pub fn unit_path(env: &BTreeMap<String, String>) -> PathBuf {
    let base = match env.get("XDG_CONFIG_HOME").filter(|s| !s.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            PathBuf::from(env.get("HOME").cloned().unwrap_or_else(|| ".".into())).join(".config")
        }
    };
    base.join("systemd").join("user").join(UNIT)
}

/// Quote a value for a unit file when it needs it.
fn quote(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// The unit file's text for the binary at `exe`.
pub fn unit_text(exe: &Path, env: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "[Unit]\nDescription=clawgate gateway (OpenClaw-compatible)\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\n",
    );
    s.push_str(&format!(
        "ExecStart={} gateway run\n",
        quote(&exe.display().to_string())
    ));
    s.push_str("Restart=on-failure\nRestartSec=2\n# Exit 78: the configuration was refused; restarting will not help.\nRestartPreventExitStatus=78\n");
    for key in CARRIED_ENV {
        if let Some(v) = env.get(*key).filter(|v| !v.is_empty()) {
            s.push_str(&format!("Environment={}\n", quote(&format!("{key}={v}"))));
        }
    }
    s.push_str("\n[Install]\nWantedBy=default.target\n");
    s
}

/// Why `systemctl --user` cannot be used here.
#[derive(Debug)]
pub enum Unavailable {
    /// No `systemctl` binary.
    NoSystemctl,
    /// `systemctl --user` cannot reach a user manager (no session bus).
    NoUserBus(String),
}

impl Unavailable {
    fn failure(&self) -> Failure {
        Failure::failed(match self {
            Unavailable::NoSystemctl => format!(
                "systemd's `systemctl` was not found: this machine does not run systemd (or it is not on PATH); {INSTEAD}"
            ),
            Unavailable::NoUserBus(e) => format!(
                "`systemctl --user` cannot reach a user service manager ({e}): there is no systemd user session here (common over plain su/sudo, in containers and cron). Log in normally, or enable lingering with `loginctl enable-linger $USER`, or {INSTEAD}"
            ),
        })
    }
}

/// What `systemctl` printed and how it ended.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run `systemctl --user <args>` with a time limit.
fn systemctl(args: &[&str]) -> Result<Ran, Unavailable> {
    let child = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unavailable::NoSystemctl),
        Err(e) => return Err(Unavailable::NoUserBus(e.to_string())),
    };
    let deadline = Instant::now() + SYSTEMCTL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Unavailable::NoUserBus(format!(
                    "systemctl --user {} did not finish in {} s",
                    args.join(" "),
                    SYSTEMCTL_TIMEOUT.as_secs()
                )));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Unavailable::NoUserBus(e.to_string()))?;
    Ok(Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Check that a user service manager answers.
fn require_user_manager() -> Result<(), Unavailable> {
    let r = systemctl(&["show-environment"])?;
    if r.ok {
        Ok(())
    } else {
        Err(Unavailable::NoUserBus(first_line(&r.stderr)))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("no answer").to_string()
}

/// Run a `systemctl --user` step that must succeed.
fn step(args: &[&str]) -> Outcome {
    let r = systemctl(args).map_err(|u| u.failure())?;
    if r.ok {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "`systemctl --user {}` failed: {}\nsee `journalctl --user -u {UNIT}` for the service's own messages",
            args.join(" "),
            first_line(&r.stderr)
        )))
    }
}

/// `gateway install|start|stop|restart|uninstall`.
pub fn manage(action: &str, argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, &[], &[])?;
    p.expect_positionals(0, &format!("clawgate gateway {action}"))?;
    let env = clawgate_host::paths::env_map();
    let unit = unit_path(&env);
    require_user_manager().map_err(|u| u.failure())?;
    match action {
        "install" => {
            let exe = std::env::current_exe()
                .map_err(|e| Failure::failed(format!("cannot find this program's path: {e}")))?;
            clawgate_host::store::write_atomic(&unit, unit_text(&exe, &env).as_bytes())
                .map_err(|e| Failure::failed(format!("cannot write {}: {e}", unit.display())))?;
            step(&["daemon-reload"])?;
            step(&["enable", "--now", UNIT])?;
            say!("Installed and started {} ({})", UNIT, unit.display());
            say!(
                "It starts at login; to keep it running without a login session: loginctl enable-linger $USER"
            );
        }
        "uninstall" => {
            if unit.exists() {
                step(&["disable", "--now", UNIT])?;
                std::fs::remove_file(&unit).map_err(|e| {
                    Failure::failed(format!("cannot remove {}: {e}", unit.display()))
                })?;
                step(&["daemon-reload"])?;
                say!("Stopped, disabled and removed {}", unit.display());
            } else {
                say!(
                    "{UNIT} is not installed ({} does not exist)",
                    unit.display()
                );
            }
        }
        verb => {
            if !unit.exists() {
                return Err(Failure::failed(format!(
                    "{UNIT} is not installed ({} does not exist): run `clawgate gateway install` first",
                    unit.display()
                )));
            }
            step(&[verb, UNIT])?;
            say!("{verb}: done ({UNIT})");
        }
    }
    Ok(())
}

/// The service part of `gateway status`.
fn service_status(env: &BTreeMap<String, String>) -> Value {
    let unit = unit_path(env);
    let installed = unit.exists();
    let mut v = json!({"unit": unit.display().to_string(), "installed": installed});
    match require_user_manager() {
        Err(u) => {
            v["manager"] = Value::Null;
            v["error"] = json!(u.failure().message);
        }
        Ok(()) => {
            v["manager"] = json!("systemd --user");
            for (key, verb) in [("enabled", "is-enabled"), ("active", "is-active")] {
                v[key] = json!(
                    systemctl(&[verb, UNIT])
                        .map(|r| r.stdout)
                        .unwrap_or_default()
                );
            }
        }
    }
    v
}

/// The socket part: can a TCP connection be opened to the gateway's address?
fn socket_status(host: &str, port: u16, timeout: Duration) -> Value {
    let addrs: Vec<_> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return json!({"reachable": false, "error": e.to_string()}),
    };
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return json!({"reachable": true, "error": null}),
            Err(e) => last = e.to_string(),
        }
    }
    json!({"reachable": false, "error": last})
}

/// `gateway status`: service, socket and RPC, reported separately.
pub fn status(argv: Vec<OsString>) -> Outcome {
    let usage = "clawgate gateway status [--url ws://HOST:PORT] [--token T | --password P] [--timeout MS] [--json]";
    let p = args::parse(argv, QUERY, &[])?;
    p.expect_positionals(0, usage)?;
    let timeout_ms = p.millis("timeout")?.unwrap_or(DEFAULT_TIMEOUT_MS);
    let env = clawgate_host::paths::env_map();
    let target = rpc::resolve_target(&p)?;
    let service = service_status(&env);
    let socket = socket_status(
        &target.url.host,
        target.url.port,
        Duration::from_millis(timeout_ms.min(3_000)),
    );
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let cfg = rpc::client_config(&target, "cli", scopes::for_method("health"));
    let rpc_status = match Session::connect(&target.url, cfg, deadline) {
        Err(e) => {
            json!({"ok": false, "error": report::connect_failure(&target, &e, timeout_ms, false).message})
        }
        Ok((mut s, hello)) => {
            let latency = hello.latency.as_millis() as u64;
            let version = hello
                .payload
                .pointer("/server/version")
                .cloned()
                .unwrap_or(Value::Null);
            let r = s.call("health", None);
            s.close();
            match r {
                Ok(h) => {
                    json!({"ok": h.get("ok").and_then(Value::as_bool).unwrap_or(false), "latencyMs": latency, "version": version, "error": null})
                }
                Err(e) => {
                    json!({"ok": false, "latencyMs": latency, "version": version, "error": report::call_failure(&target, "health", &e, timeout_ms, false).message})
                }
            }
        }
    };
    let ok = rpc_status["ok"].as_bool().unwrap_or(false);
    let doc = json!({
        "ok": ok,
        "gateway": {"url": target.url.to_string(), "urlSource": target.source.as_str()},
        "service": service,
        "socket": socket,
        "rpc": rpc_status,
    });
    if p.switch("json") {
        print_json(&doc);
    } else {
        print_status(&doc);
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Failed,
            format!("the gateway at {} does not answer RPC", target.url),
        ))
    }
}

fn print_status(doc: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let svc = &doc["service"];
    let service_line = if svc["manager"].is_null() {
        format!("unknown: {}", s(&svc["error"]))
    } else if svc["installed"].as_bool() == Some(true) {
        format!("installed, {} ({})", s(&svc["active"]), s(&svc["enabled"]))
    } else {
        "not installed (`clawgate gateway install`)".to_string()
    };
    say!("Service: {service_line}");
    say!("  unit {}", s(&svc["unit"]));
    let url = s(&doc["gateway"]["url"]);
    match doc["socket"]["reachable"].as_bool() {
        Some(true) => say!("Socket:  {url} accepts connections"),
        _ => say!(
            "Socket:  {url} refuses connections ({})",
            s(&doc["socket"]["error"])
        ),
    }
    let rpc = &doc["rpc"];
    if rpc["ok"].as_bool() == Some(true) {
        say!(
            "RPC:     health ok in {} ms (version {})",
            rpc["latencyMs"],
            s(&rpc["version"])
        );
    } else {
        say!("RPC:     failed: {}", s(&rpc["error"]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_this_binary_and_carries_the_state_dir() {
        let mut env = BTreeMap::new();
        env.insert("HOME".to_string(), "/home/u".to_string());
        assert_eq!(
            unit_path(&env),
            PathBuf::from("/home/u/.config/systemd/user/clawgate-gateway.service")
        );
        env.insert("XDG_CONFIG_HOME".to_string(), "/x".to_string());
        assert_eq!(
            unit_path(&env),
            PathBuf::from("/x/systemd/user/clawgate-gateway.service")
        );
        env.insert(
            "OPENCLAW_STATE_DIR".to_string(),
            "/srv/claw state".to_string(),
        );
        let text = unit_text(Path::new("/opt/clawgate/bin/clawgate"), &env);
        assert!(
            text.contains("\nExecStart=/opt/clawgate/bin/clawgate gateway run\n"),
            "{text}"
        );
        assert!(text.contains("\nRestart=on-failure\n"));
        assert!(
            text.contains("\nEnvironment=\"OPENCLAW_STATE_DIR=/srv/claw state\"\n"),
            "{text}"
        );
        assert!(!text.contains("OPENCLAW_CONFIG_PATH"));
        assert!(text.contains("WantedBy=default.target"));
        assert!(
            unit_text(Path::new("/a b/clawgate"), &env)
                .contains("ExecStart=\"/a b/clawgate\" gateway run")
        );
    }
}
