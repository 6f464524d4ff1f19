//! The client commands of `clawgate` as a black box: the real binary runs
//! `clawgate gateway run` on a free loopback port with a private HOME and state directory,
//! and the client commands talk to it as a user would.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use clawgate_tests::harness::{TempDir, WAIT as PATIENCE, free_port};

fn command(dir: &TempDir, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawgate"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.home())
        .env("OPENCLAW_STATE_DIR", dir.state())
        // No mDNS: these tests keep their traffic on loopback.
        .env("OPENCLAW_DISABLE_BONJOUR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// A running gateway, killed on drop.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `clawgate gateway run --port P <args>` and wait until it accepts connections.
fn gateway(dir: &TempDir, port: u16, args: &[&str], env: &[(&str, &str)]) -> Gateway {
    let child = command(dir, env)
        .args(["gateway", "run", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw = Gateway(child);
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "gateway did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw
}

/// Run a client command to its end.
fn run(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// `clawgate gateway probe --url <url> --token <token> --json`, the local gateway's port
/// (which a probe also tries) set to `local_port`.
fn probe(dir: &TempDir, url: &str, token: &str, local_port: &str) -> Output {
    run(
        dir,
        &["gateway", "probe", "--url", url, "--token", token, "--json"],
        &[("OPENCLAW_GATEWAY_PORT", local_port)],
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}")
}

#[test]
fn call_health_probe_and_lists_with_a_token() {
    let dir = TempDir::new("cli");
    let port = free_port();
    let _gw = gateway(&dir, port, &["--token", "tok-one-2345"], &[]);
    let u = url(port);

    let o = run(
        &dir,
        &[
            "gateway",
            "call",
            "health",
            "--url",
            &u,
            "--token",
            "tok-one-2345",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["ok"], true);

    let o = run(
        &dir,
        &["gateway", "health", "--url", &u, "--token", "tok-one-2345"],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("Gateway healthy at {u}")));

    let o = run(
        &dir,
        &[
            "gateway",
            "call",
            "status",
            "--params",
            "{}",
            "--url",
            &u,
            "--token",
            "tok-one-2345",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["authMode"], "token");

    // The probe client (mode probe, no device) is reachable but scope-limited, as upstream.
    // It also tries the local gateway's port, as upstream does: make that one nobody's.
    let unused = free_port().to_string();
    let o = probe(&dir, &u, "tok-one-2345", &unused);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let p = stdout_json(&o);
    assert_eq!(p["ok"], true);
    assert_eq!(p["primaryTargetId"], "explicit");
    assert_eq!(p["degraded"], true);
    assert_eq!(p["capability"], "connected_no_operator_scope");
    assert_eq!(p["timeoutMs"], 3000);
    let t = &p["targets"][0];
    assert_eq!(t["url"], u.as_str());
    assert_eq!(t["connect"]["ok"], true);
    assert_eq!(t["connect"]["rpcOk"], false);
    assert_eq!(t["connect"]["scopeLimited"], true);
    assert_eq!(t["auth"]["scopes"], serde_json::json!([]));
    assert_eq!(t["health"]["ok"], true, "health needs no scope");
    assert_eq!(p["warnings"][0]["code"], "probe_scope_limited");
    assert_eq!(
        p["discovery"],
        serde_json::json!({"timeoutMs": 0, "count": 0, "beacons": []})
    );
    let local = &p["targets"][1];
    assert_eq!(local["id"], "localLoopback");
    assert_eq!(local["url"], format!("ws://127.0.0.1:{unused}"));
    assert_eq!(local["connect"]["ok"], false);
    assert_eq!(local["connect"]["close"]["code"], 1006);

    // The log of a gateway elsewhere, over logs.tail.
    let o = run(
        &dir,
        &["logs", "--url", &u, "--token", "tok-one-2345", "-n", "2"],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("conn="), "{out}");

    let o = run(
        &dir,
        &[
            "devices",
            "list",
            "--url",
            &u,
            "--token",
            "tok-one-2345",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout_json(&o),
        serde_json::json!({"pending": [], "paired": []})
    );
    let o = run(
        &dir,
        &[
            "nodes",
            "list",
            "--url",
            &u,
            "--token",
            "tok-one-2345",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout_json(&o),
        serde_json::json!({"pending": [], "paired": []})
    );
    for (sub, want) in [
        ("status", serde_json::json!({"nodes": []})),
        ("pending", serde_json::json!([])),
    ] {
        let o = run(
            &dir,
            &[
                "nodes",
                sub,
                "--url",
                &u,
                "--token",
                "tok-one-2345",
                "--json",
            ],
            &[],
        );
        assert_eq!(code(&o), 0, "{sub}: {}", stderr(&o));
        let got = stdout_json(&o);
        match want.get("nodes") {
            Some(nodes) => assert_eq!(&got["nodes"], nodes),
            None => assert_eq!(got, want),
        }
    }
    let o = run(
        &dir,
        &[
            "nodes",
            "invoke",
            "--node",
            "nope",
            "--command",
            "system.which",
            "--url",
            &u,
            "--token",
            "tok-one-2345",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 1);
    assert_eq!(stdout_json(&o)["error"]["type"], "gateway_request_error");
    assert_eq!(stdout_json(&o)["error"]["code"], "UNAVAILABLE");
}

#[test]
fn wrong_or_missing_secrets_fail_clearly() {
    let dir = TempDir::new("cli");
    let port = free_port();
    let _gw = gateway(&dir, port, &["--token", "tok-right-678"], &[]);
    let u = url(port);

    // A refused probe is reachable but degraded, with the close that explains it (as upstream).
    let unused = free_port().to_string();
    let o = probe(&dir, &u, "tok-wrong", &unused);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let p = stdout_json(&o);
    assert_eq!(
        (p["ok"].clone(), p["degraded"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(p["capability"], "unknown");
    let c = &p["targets"][0]["connect"];
    assert_eq!(
        (c["ok"].clone(), c["rpcOk"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(c["close"]["code"], 1008);
    assert!(
        c["close"]["reason"]
            .as_str()
            .unwrap()
            .contains("token mismatch")
    );
    assert_eq!(p["warnings"][0]["code"], "probe_detail_failed");

    let o = run(
        &dir,
        &[
            "gateway",
            "call",
            "health",
            "--url",
            &u,
            "--token",
            "tok-wrong",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 1);
    let e = &stdout_json(&o)["error"];
    assert_eq!(e["type"], "gateway_request_error");
    assert_eq!(e["code"], "INVALID_REQUEST");
    assert_eq!(e["details"]["code"], "AUTH_TOKEN_MISMATCH");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("gateway token mismatch")
    );
    assert_eq!(e["retryable"], false);

    let o = run(
        &dir,
        &[
            "gateway",
            "call",
            "health",
            "--url",
            &u,
            "--token",
            "tok-wrong",
        ],
        &[],
    );
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("gateway token mismatch") && err.contains("hint: the token from --token"),
        "{err}"
    );

    // --url never borrows a configured secret, and says what it needs.
    let o = run(
        &dir,
        &["gateway", "call", "health", "--url", &u, "--json"],
        &[("OPENCLAW_GATEWAY_TOKEN", "tok-right-678")],
    );
    assert_eq!(code(&o), 1);
    let e = &stdout_json(&o)["error"];
    assert_eq!(e["type"], "gateway_credentials_required");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--url needs --token or --password"),
        "{e}"
    );
    let o = run(&dir, &["gateway", "health", "--url", &u], &[]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("--url needs --token or --password"),
        "{}",
        stderr(&o)
    );

    // Without --url, a missing secret names the keys to set.
    let o = run(
        &dir,
        &["gateway", "health"],
        &[("OPENCLAW_GATEWAY_PORT", &port.to_string())],
    );
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("set gateway.remote.token"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn url_without_secret_works_against_a_gateway_without_auth() {
    let dir = TempDir::new("cli");
    let port = free_port();
    let _gw = gateway(&dir, port, &[], &[]);
    let o = run(
        &dir,
        &["gateway", "call", "status", "--url", &url(port), "--json"],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["authMode"], "none");
}

#[test]
fn generated_token_is_used_by_gateway_and_clients_without_url() {
    let dir = TempDir::new("cli");
    let port = free_port();
    let port_env = [("OPENCLAW_GATEWAY_PORT", port.to_string())];
    let env: Vec<(&str, &str)> = port_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    std::fs::create_dir_all(dir.state()).unwrap();
    std::fs::write(dir.config(), "{ // mine\n agents: {defaults: {x: 1}}, gateway: {auth: {token: 'old-aaa-111'}, remote: {token: 'old-bbb-222'}} }").unwrap();
    std::fs::set_permissions(
        dir.config(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.state(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    let o = run(&dir, &["doctor"], &env);
    assert_eq!(code(&o), 1);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("gateway.remote.token differs from gateway.auth.token"),
        "{out}"
    );

    let o = run(&dir, &["doctor", "--generate-gateway-token"], &env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.config()).unwrap()).unwrap();
    let token = doc["gateway"]["auth"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 48);
    assert_eq!(doc["gateway"]["remote"]["token"], token.as_str());
    assert_eq!(doc["agents"]["defaults"]["x"], 1);
    let mode = std::fs::metadata(dir.config()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let _gw = gateway(&dir, port, &[], &env);
    let o = run(&dir, &["gateway", "call", "health", "--json"], &env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["ok"], true);
    assert!(
        stderr(&o).is_empty(),
        "no warnings expected: {}",
        stderr(&o)
    );

    let o = run(&dir, &["gateway", "status", "--json"], &env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout_json(&o);
    assert_eq!(s["rpc"]["ok"], true);
    assert_eq!(s["socket"]["reachable"], true);
    assert_eq!(s["service"]["installed"], false);
    assert_eq!(s["gateway"]["urlSource"], "local loopback");

    let o = run(&dir, &["doctor"], &env);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("a gateway is already running"));

    // Info lines reach the file in batches at most 50 ms old: give a loaded machine time.
    let mut o = run(&dir, &["logs", "-n", "1"], &env);
    for _ in 0..40 {
        if code(&o) != 0 || !o.stdout.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        o = run(&dir, &["logs", "-n", "1"], &env);
    }
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

#[test]
fn unreachable_and_silent_gateways() {
    let dir = TempDir::new("cli");
    let port = free_port();
    let u = url(port);
    let o = run(
        &dir,
        &[
            "gateway", "call", "health", "--url", &u, "--token", "t-123456", "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 1);
    let d = stdout_json(&o);
    assert_eq!(d["error"]["type"], "gateway_transport_error");
    assert_eq!(d["error"]["kind"], "closed");
    assert_eq!(
        d["error"]["message"],
        format!("Gateway not reachable at {u} (ECONNREFUSED).")
    );
    assert_eq!(d["gateway"]["urlSource"], "cli --url");

    let o = probe(&dir, &u, "t-123456", &port.to_string());
    assert_eq!(code(&o), 1);
    let p = stdout_json(&o);
    assert_eq!(p["ok"], false);
    assert_eq!(
        p["targets"].as_array().map(Vec::len),
        Some(1),
        "same URL probed once"
    );
    assert_eq!(p["warnings"][0]["code"], "no_gateway_reachable");
    assert_eq!(p["targets"][0]["connect"]["close"]["code"], 1006);

    // Something that accepts and never answers: the deadline holds.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let u = url(silent.local_addr().unwrap().port());
    let started = Instant::now();
    let o = run(
        &dir,
        &[
            "gateway",
            "call",
            "health",
            "--url",
            &u,
            "--token",
            "t-123456",
            "--timeout",
            "300",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 1);
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(stdout_json(&o)["error"]["kind"], "timeout");
    assert_eq!(stdout_json(&o)["error"]["timeoutMs"], 300);
}

#[test]
fn usage_errors_and_missing_log() {
    let dir = TempDir::new("cli");
    for args in [
        &["gateway", "call"][..],
        &["gateway", "health", "--bogus"],
        &["gateway", "health", "--url", "wss://gw:443"],
        &["gateway", "call", "x", "--params", "{nope"],
        &["devices", "revoke", "--device", "d"],
        &["nodes", "frobnicate"],
        &["frobnicate"],
        &["logs", "--json"],
        &["gateway", "health", "--timeout", "99999999999"],
    ] {
        let o = run(&dir, args, &[]);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
    let o = run(&dir, &["gateway", "health", "--url", "wss://gw:443"], &[]);
    assert!(stderr(&o).contains("TLS (wss://) is not supported"));
    let o = run(&dir, &["logs"], &[]);
    assert_eq!(code(&o), 1);
    let log = Path::new("logs").join("clawgate-gateway.log");
    assert!(
        stderr(&o).contains(&dir.state().join(log).display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn service_commands_without_systemd_say_what_to_do() {
    let dir = TempDir::new("cli");
    let empty = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    for action in ["install", "start", "stop", "restart", "uninstall"] {
        let o = command(&dir, &[])
            .env("PATH", &empty)
            .args(["gateway", action])
            .output()
            .unwrap();
        assert_eq!(code(&o), 1, "{action}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("`systemctl` was not found"), "{action}: {err}");
        assert!(err.contains("clawgate gateway run"), "{action}: {err}");
    }
    let unit = dir
        .home()
        .join(".config/systemd/user/clawgate-gateway.service");
    assert!(!unit.exists(), "nothing is written when systemd is absent");

    let port = free_port().to_string();
    let o = command(&dir, &[("OPENCLAW_GATEWAY_PORT", &port)])
        .env("PATH", &empty)
        .args(["gateway", "status", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    let s = stdout_json(&o);
    assert_eq!(s["service"]["manager"], Value::Null);
    assert!(
        s["service"]["error"]
            .as_str()
            .unwrap()
            .contains("systemctl")
    );
    assert_eq!(s["socket"]["reachable"], false);
    assert_eq!(s["rpc"]["ok"], false);
}

#[test]
fn logs_follow_survives_truncation_and_rotation() {
    use std::io::{BufRead, BufReader, Write};
    let dir = TempDir::new("cli");
    let logs = dir.state().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let path = logs.join("clawgate-gateway.log");
    std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
    let mut child = command(&dir, &[])
        .args(["logs", "-f", "-n", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(PATIENCE).expect("a line from logs -f");
    assert_eq!(next(), "two");
    assert_eq!(next(), "three");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"four\n")
        .unwrap();
    assert_eq!(next(), "four");
    // Truncated and rewritten: read again from the start.
    std::fs::write(&path, "").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"five\n")
        .unwrap();
    assert_eq!(next(), "five");
    // Rotated: a new file under the same name.
    std::fs::rename(&path, logs.join("clawgate-gateway.log.1")).unwrap();
    std::fs::write(&path, "six\n").unwrap();
    assert_eq!(next(), "six");
    let _ = child.kill();
    let _ = child.wait();
}

/// A device client driven over a real socket with the core's sans-IO client.
struct Peer {
    stream: std::net::TcpStream,
    client: clawgate_core::client::Client,
}

impl Peer {
    fn connect(port: u16, cfg: clawgate_core::client::ClientConfig) -> Self {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Self {
            stream,
            client: clawgate_core::client::Client::new(cfg, *b"fedcba9876543210"),
        }
    }

    /// `hello-ok`'s payload, or the error `connect` got.
    fn outcome(&mut self) -> Result<Value, clawgate_core::frame::ErrorShape> {
        use clawgate_core::client::Event;
        use std::io::{Read, Write};
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 16 * 1024];
        while Instant::now() < deadline {
            while let Some(bytes) = self.client.poll_transmit() {
                self.stream.write_all(&bytes).unwrap();
            }
            match self.client.poll_event() {
                Some(Event::Hello(v)) => return Ok(v),
                Some(Event::ConnectFailed(e)) => return Err(e),
                Some(Event::Closed { code, reason }) => panic!("closed {code:?} {reason}"),
                Some(_) => continue,
                None => {}
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.client.handle_eof(),
                Ok(n) => self.client.handle_input(buf.get(..n).unwrap_or_default()),
                Err(_) => {}
            }
        }
        panic!("no hello or refusal in time");
    }
}

fn device_config(
    port: u16,
    seed: u8,
    token: &str,
    node: bool,
) -> clawgate_core::client::ClientConfig {
    let mut cfg = clawgate_core::client::ClientConfig::cli(&format!("127.0.0.1:{port}"));
    cfg.token = Some(token.to_string());
    cfg.device = Some(clawgate_core::device::DeviceKey::from_seed([seed; 32]));
    if node {
        cfg.client.id = "node-host".into();
        cfg.client.mode = "node".into();
        cfg.role = clawgate_core::scopes::Role::Node;
        cfg.scopes = Vec::new();
        cfg.caps = vec!["system".into()];
        cfg.commands = vec!["system.which".into()];
    }
    cfg
}

#[test]
fn devices_and_nodes_approved_and_tokens_managed_from_the_cli() {
    let dir = TempDir::new("cli");
    let port = free_port();
    std::fs::create_dir_all(dir.state()).unwrap();
    std::fs::write(
        dir.config(),
        r#"{"gateway":{"auth":{"token":"tok-dev-4567"},"nodes":{"pairing":{"autoApproveLocal":false}}}}"#,
    )
    .unwrap();
    let _gw = gateway(&dir, port, &[], &[]);
    let u = url(port);
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", &u, "--token", "tok-dev-4567", "--json"]);
        let o = run(&dir, &all, &[]);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        stdout_json(&o)
    };

    // An operator device asks to pair; the CLI sees the request, approves it, rotates and
    // revokes its token.
    let err = Peer::connect(port, device_config(port, 7, "tok-dev-4567", false))
        .outcome()
        .unwrap_err();
    let details = err.details.unwrap();
    assert_eq!(details["code"], "PAIRING_REQUIRED");
    let request = details["requestId"].as_str().unwrap().to_string();
    let device = details["deviceId"].as_str().unwrap().to_string();
    let list = cli(&["devices", "list"]);
    assert_eq!(list["pending"][0]["requestId"], request.as_str());
    assert_eq!(list["pending"][0]["deviceId"], device.as_str());
    cli(&["devices", "approve", &request]);
    let list = cli(&["devices", "list"]);
    assert_eq!(list["pending"], serde_json::json!([]));
    assert_eq!(list["paired"][0]["deviceId"], device.as_str());
    let hello = Peer::connect(port, device_config(port, 7, "tok-dev-4567", false))
        .outcome()
        .unwrap();
    assert!(hello["auth"]["deviceToken"].is_string());
    let rotated = cli(&[
        "devices", "rotate", "--device", &device, "--role", "operator",
    ]);
    assert!(rotated["token"].as_str().is_some_and(|t| !t.is_empty()));
    let revoked = cli(&[
        "devices", "revoke", "--device", &device, "--role", "operator",
    ]);
    assert_eq!(revoked["deviceId"], device.as_str());

    // A request rejected from the CLI is gone.
    let err = Peer::connect(port, device_config(port, 8, "tok-dev-4567", false))
        .outcome()
        .unwrap_err();
    let other = err.details.unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    cli(&["devices", "reject", &other]);
    assert_eq!(cli(&["devices", "list"])["pending"], serde_json::json!([]));

    // A node: its device is approved, then its commands.
    let err = Peer::connect(port, device_config(port, 9, "tok-dev-4567", true))
        .outcome()
        .unwrap_err();
    let node_request = err.details.unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    cli(&["devices", "approve", &node_request]);
    let mut node = Peer::connect(port, device_config(port, 9, "tok-dev-4567", true));
    node.outcome().unwrap();
    let pending = cli(&["nodes", "pending"]);
    let commands_request = pending[0]["requestId"].as_str().unwrap().to_string();
    assert_eq!(pending[0]["commands"], serde_json::json!(["system.which"]));
    let approved = cli(&["nodes", "approve", &commands_request]);
    assert_eq!(approved["requestId"], commands_request.as_str());
    let list = cli(&["nodes", "list"]);
    assert_eq!(list["pending"], serde_json::json!([]));
    assert_eq!(list["paired"][0]["approvalState"], "approved");
    assert_eq!(list["paired"][0]["connected"], true);
    drop(node);
}

/// The bytes of upstream's database and its WAL in `state`.
fn upstream_files(state: &Path) -> Vec<Vec<u8>> {
    let db = clawgate_tests::upstream_db::path(state);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    [db, wal.into()]
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect()
}

#[test]
fn import_upstream_dry_run_writes_nothing_then_imports() {
    use clawgate_tests::upstream_db;
    let dir = TempDir::new("cli-import");
    let writer = upstream_db::create(&dir.state(), 18);
    let before = upstream_files(&dir.state());
    let ours = dir.state().join("state").join("clawgate.sqlite");

    let doctor = run(&dir, &["doctor"], &[]);
    let said = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(
        said.contains("2 paired device(s) (1 node(s), 2 device token(s)), 2 pending request(s), 1 channel approval(s)"),
        "{said}"
    );

    let dry = run(&dir, &["gateway", "import-upstream", "--dry-run"], &[]);
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert_eq!(code(&dry), 0, "{said}\n{}", stderr(&dry));
    assert!(said.contains("dry run: nothing written"), "{said}");
    assert!(said.contains(upstream_db::OPERATOR_ID), "{said}");
    assert!(!ours.exists(), "a dry run creates no database");
    assert_eq!(upstream_files(&dir.state()), before);

    let real = run(&dir, &["gateway", "import-upstream"], &[]);
    let said = String::from_utf8_lossy(&real.stdout).into_owned();
    assert_eq!(code(&real), 0, "{said}\n{}", stderr(&real));
    assert!(said.contains("Imported from"), "{said}");
    assert!(ours.exists());
    assert_eq!(
        upstream_files(&dir.state()),
        before,
        "upstream's files are only read"
    );

    // A gateway started on the same state directory has the imported devices.
    let port = free_port();
    let _gw = gateway(&dir, port, &[], &[]);
    let list = run(
        &dir,
        &["devices", "list", "--url", &url(port), "--json"],
        &[],
    );
    let devices = stdout_json(&list);
    assert!(
        devices.to_string().contains(upstream_db::OPERATOR_ID),
        "{devices}"
    );
    drop(writer);
}

#[test]
fn a_corrupt_upstream_database_is_reported_and_the_gateway_starts() {
    let dir = TempDir::new("cli-import-corrupt");
    let path = clawgate_tests::upstream_db::path(&dir.state());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let failed = run(&dir, &["gateway", "import-upstream"], &[]);
    assert_eq!(code(&failed), 1);
    assert!(
        stderr(&failed).contains(&path.display().to_string()),
        "{}",
        stderr(&failed)
    );
    let port = free_port();
    let _gw = gateway(&dir, port, &[], &[]);
    let health = run(
        &dir,
        &["gateway", "health", "--url", &url(port), "--json"],
        &[],
    );
    assert_eq!(code(&health), 0, "{}", stderr(&health));
    let log = std::fs::read_to_string(dir.state().join("logs").join("clawgate-gateway.log"))
        .unwrap_or_default();
    assert!(
        log.contains("upstream state not imported") && log.contains(&path.display().to_string()),
        "{log}"
    );
}
