//! `gateway run` as a black box, for both shells (`mio_shell::<case>`, `smol_shell::<case>`):
//! the real binary on a free loopback port, driven over real sockets with the sans-IO client
//! and raw HTTP, stopped and reloaded with signals; its exit codes and log lines. Build the
//! binaries first (`scripts/test.sh` does).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};

use clawgate_tests::both;
use clawgate_tests::fake_api::poll_for;
use clawgate_tests::harness::{Shell, TempDir, WAIT as PATIENCE, Ws, free_port};

/// A running `clawgate gateway run`, its stderr collected line by line.
struct Gateway {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    port: u16,
}

fn spawn(shell: Shell, dir: &TempDir, port: u16, args: &[&str], env: &[(&str, &str)]) -> Gateway {
    let port_text = port.to_string();
    let all: Vec<&str> = ["--port", port_text.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    spawn_with(Command::new(shell.binary()), dir, port, &all, env)
}

/// Spawn with at most `n` open files (soft and hard), as a small `ulimit -n` would.
fn spawn_with_file_limit(shell: Shell, n: u32, dir: &TempDir, port: u16) -> Gateway {
    let mut sh = Command::new("sh");
    sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")]);
    sh.arg(shell.binary());
    spawn_with(sh, dir, port, &["--port", &port.to_string()], &[])
}

fn spawn_with(
    mut cmd: Command,
    dir: &TempDir,
    port: u16,
    args: &[&str],
    env: &[(&str, &str)],
) -> Gateway {
    cmd.args(["gateway", "run"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.home())
        .env("OPENCLAW_STATE_DIR", dir.state())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut r = std::io::BufReader::new(stderr);
        while std::io::BufRead::read_line(&mut r, &mut text).is_ok_and(|n| n > 0) {
            if tx.send(std::mem::take(&mut text)).is_err() {
                break;
            }
        }
    });
    Gateway {
        child,
        lines,
        seen: Vec::new(),
        port,
    }
}

impl Gateway {
    /// Wait for a stderr line containing `needle`; panics with what was seen otherwise.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no line with {needle:?}; stderr so far:\n{}",
                    self.seen.concat()
                ),
            }
        }
    }

    /// All of stderr up to the process's exit (call after it exited).
    fn stderr_to_end(&mut self) -> String {
        while let Ok(l) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(l);
        }
        self.seen.concat()
    }

    fn started(mut self) -> Self {
        self.wait_line(&format!("listening on ws://127.0.0.1:{}", self.port));
        self
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("gateway did not exit; stderr:\n{}", self.seen.concat());
    }

    fn connect(&self, token: Option<&str>) -> Ws {
        let mut cfg = self.cli();
        cfg.token = token.map(str::to_string);
        Ws::connect(self.port, cfg)
    }

    fn connect_with_password(&self, password: &str) -> Ws {
        let mut cfg = self.cli();
        cfg.password = Some(password.to_string());
        Ws::connect(self.port, cfg)
    }

    fn cli(&self) -> ClientConfig {
        ClientConfig::cli(&format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send a raw HTTP request and read the whole answer (the gateway closes after it).
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn write_config(dir: &TempDir, text: &str) {
    std::fs::create_dir_all(dir.state()).unwrap();
    std::fs::write(dir.state().join("openclaw.json"), text).unwrap();
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn no_config_serves_local_mode_and_logs_to_a_private_file(shell: Shell) {
    let dir = TempDir::new("run");
    let mut gw = spawn(shell, &dir, free_port(), &[], &[]).started();
    gw.wait_line("auth mode none, bind loopback");
    let hello = gw.connect(None).hello().expect("hello-ok");
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    let log = std::fs::read_to_string(clawgate_host::paths::log_file(&dir.state())).unwrap();
    assert!(
        log.contains(&format!("listening on ws://127.0.0.1:{}", gw.port)),
        "{log}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&clawgate_host::paths::log_file(&dir.state())), 0o600);
    assert_eq!(mode(&dir.state()), 0o700);
}

fn lan_without_secret_exits_78_before_listening(shell: Shell) {
    let dir = TempDir::new("run");
    let port = free_port();
    let mut gw = spawn(shell, &dir, port, &["--bind", "lan"], &[]);
    let status = gw.wait_exit();
    assert_eq!(status.code(), Some(78));
    assert_eq!(
        gw.stderr_to_end(),
        "Refusing to bind gateway to lan without auth.\n"
    );
    assert!(!listening(port));
    assert!(
        !clawgate_host::paths::lock_file(&dir.state()).exists(),
        "nothing is set up before the configuration is accepted"
    );
}

fn refused_secrets_exit_78_with_the_reason(shell: Shell) {
    for (args, reason) in [
        (&["--token", "changeme"][..], "--token is a placeholder"),
        (
            &["--auth", "password"][..],
            "auth mode password needs a secret",
        ),
    ] {
        let dir = TempDir::new("run");
        let port = free_port();
        let mut gw = spawn(shell, &dir, port, args, &[]);
        assert_eq!(gw.wait_exit().code(), Some(78), "{args:?}");
        let err = gw.stderr_to_end();
        assert!(err.starts_with(reason), "{args:?}: {err}");
        assert!(!listening(port));
    }
}

fn password_file_sets_password_mode(shell: Shell) {
    let dir = TempDir::new("run");
    let file = dir.path().join("pw");
    std::fs::write(&file, "pass-from-a-file\n").unwrap();
    let gw = spawn(
        shell,
        &dir,
        free_port(),
        &["--password-file", file.to_str().unwrap()],
        &[],
    )
    .started();
    assert_eq!(gw.connect_with_password("not-it").closed().0, Some(1008));
    let hello = gw
        .connect_with_password("pass-from-a-file")
        .hello()
        .expect("hello-ok");
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["snapshot"]["authMode"], "password");
}

fn port_comes_from_the_environment_then_the_config_file(shell: Shell) {
    let bin = || Command::new(shell.binary());
    let dir = TempDir::new("run");
    let (env_port, file_port) = (free_port(), free_port());
    write_config(&dir, &format!("{{ gateway: {{ port: {file_port} }} }}"));
    let env_text = env_port.to_string();
    let gw = spawn_with(
        bin(),
        &dir,
        env_port,
        &[],
        &[("OPENCLAW_GATEWAY_PORT", &env_text)],
    )
    .started();
    assert!(!listening(file_port));
    drop(gw);
    let dir2 = TempDir::new("run");
    write_config(&dir2, &format!("{{ gateway: {{ port: {file_port} }} }}"));
    let gw = spawn_with(bin(), &dir2, file_port, &[], &[]).started();
    assert_eq!(
        gw.connect(None).hello().expect("hello-ok")["type"],
        "hello-ok"
    );
}

fn help_prints_usage_and_exits_0(shell: Shell) {
    let out = Command::new(shell.binary())
        .args(["gateway", "run", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Usage: clawgate gateway run"), "{text}");
    for flag in [
        "--port",
        "--bind",
        "--auth",
        "--token",
        "--password",
        "--password-file",
        "--verbose",
        "--allow-unconfigured",
        "--log-level",
    ] {
        assert!(text.contains(flag), "{flag} missing from help");
    }
}

fn usage_error_exits_2(shell: Shell) {
    let dir = TempDir::new("run");
    let mut gw = spawn(shell, &dir, free_port(), &["--no-such-flag"], &[]);
    assert_eq!(gw.wait_exit().code(), Some(2));
    assert!(gw.stderr_to_end().contains("--no-such-flag"));
}

fn token_mode_refuses_a_wrong_token_and_accepts_the_right_one(shell: Shell) {
    let dir = TempDir::new("run");
    let gw = spawn(
        shell,
        &dir,
        free_port(),
        &["--token", "correct-horse-battery"],
        &[],
    )
    .started();
    let mut bad = gw.connect(Some("wrong-horse"));
    let err = bad.hello().expect_err("a refused connect");
    assert_eq!(err.details.as_ref().unwrap()["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(bad.closed().0, Some(1008));
    assert_eq!(
        gw.connect(Some("correct-horse-battery"))
            .hello()
            .expect("hello-ok")["type"],
        "hello-ok"
    );
}

fn env_token_applies(shell: Shell) {
    let dir = TempDir::new("run");
    let gw = spawn(
        shell,
        &dir,
        free_port(),
        &[],
        &[("OPENCLAW_GATEWAY_TOKEN", "from-the-environment")],
    )
    .started();
    assert_eq!(gw.connect(Some("wrong")).closed().0, Some(1008));
    assert_eq!(
        gw.connect(Some("from-the-environment"))
            .hello()
            .expect("hello-ok")["type"],
        "hello-ok"
    );
}

fn health_and_ready_over_http(shell: Shell) {
    let dir = TempDir::new("run");
    let gw = spawn(shell, &dir, free_port(), &[], &[]).started();
    let health = http_get(gw.port, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.ends_with(r#"{"ok":true,"status":"live"}"#),
        "{health}"
    );
    let ready = http_get(gw.port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains(r#""ready":true"#), "{ready}");
    assert!(http_get(gw.port, "/api/nope").starts_with("HTTP/1.1 404"));
}

fn silent_socket_is_closed_1000_after_the_handshake_timeout(shell: Shell) {
    let dir = TempDir::new("run");
    let gw = spawn(
        shell,
        &dir,
        free_port(),
        &[],
        &[("OPENCLAW_HANDSHAKE_TIMEOUT_MS", "300")],
    )
    .started();
    // A client that sends the upgrade and then nothing: no `connect` on the challenge.
    let mut cfg = gw.cli();
    cfg.manual_connect = true;
    let mut c = Ws::connect(gw.port, cfg);
    let started = Instant::now();
    assert_eq!(c.closed(), (Some(1000), String::new()));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

fn sigterm_sends_shutdown_closes_1012_and_exits_0(shell: Shell) {
    let dir = TempDir::new("run");
    let mut gw = spawn(shell, &dir, free_port(), &[], &[]).started();
    let mut c = gw.connect(None);
    c.hello().expect("hello-ok");
    gw.signal("TERM");
    let reason = c.expect("the shutdown event", |e| match e {
        Event::Event { event, payload, .. } if event == "shutdown" => {
            Some(payload["reason"].clone())
        }
        _ => None,
    });
    assert_eq!(reason, "gateway stopping");
    assert_eq!(c.closed(), (Some(1012), "service restart".into()));
    assert_eq!(gw.wait_exit().code(), Some(0));
    assert!(gw.stderr_to_end().contains("info stopped"));
    assert!(!listening(gw.port));
}

fn sigint_exits_0_with_a_silent_client_still_connected(shell: Shell) {
    let dir = TempDir::new("run");
    let mut gw = spawn(shell, &dir, free_port(), &[], &[]).started();
    // This client never reads nor closes: shutdown must not wait for it beyond its grace.
    let _idle = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    gw.signal("INT");
    assert_eq!(gw.wait_exit().code(), Some(0));
}

fn sighup_reload_closes_old_token_connections_4001_and_accepts_the_new_token(shell: Shell) {
    let dir = TempDir::new("run");
    write_config(
        &dir,
        "{ gateway: { auth: { token: 'first-token-value' } } } // json5",
    );
    let mut gw = spawn(shell, &dir, free_port(), &[], &[]).started();
    let mut old = gw.connect(Some("first-token-value"));
    old.hello().expect("hello-ok");
    write_config(
        &dir,
        r#"{"gateway": {"auth": {"token": "second-token-value"}}}"#,
    );
    gw.signal("HUP");
    assert_eq!(old.closed(), (Some(4001), "gateway auth changed".into()));
    gw.wait_line("config reloaded");
    assert_eq!(
        gw.connect(Some("second-token-value"))
            .hello()
            .expect("hello-ok")["type"],
        "hello-ok"
    );
    assert_eq!(gw.connect(Some("first-token-value")).closed().0, Some(1008));
}

fn sighup_with_a_broken_config_keeps_the_running_one(shell: Shell) {
    let dir = TempDir::new("run");
    write_config(
        &dir,
        r#"{"gateway": {"auth": {"token": "kept-token-value"}}}"#,
    );
    let mut gw = spawn(shell, &dir, free_port(), &[], &[]).started();
    let mut held = gw.connect(Some("kept-token-value"));
    held.hello().expect("hello-ok");
    write_config(&dir, "{ gateway: ");
    gw.signal("HUP");
    gw.wait_line("config reload refused");
    assert_eq!(
        gw.connect(Some("kept-token-value"))
            .hello()
            .expect("hello-ok")["type"],
        "hello-ok"
    );
    let ok = held.call("health", None).is_ok();
    assert!(ok, "the connection made before the reload still works");
}

fn a_second_instance_on_the_same_state_dir_refuses(shell: Shell) {
    let dir = TempDir::new("run");
    let _first = spawn(shell, &dir, free_port(), &[], &[]).started();
    let second_port = free_port();
    let mut second = spawn(shell, &dir, second_port, &[], &[]);
    assert_eq!(second.wait_exit().code(), Some(1));
    let err = second.stderr_to_end();
    assert!(err.contains("another clawgate gateway is running"), "{err}");
    assert!(!listening(second_port));
}

fn a_port_in_use_is_named_with_its_holder(shell: Shell) {
    let dir = TempDir::new("run");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut gw = spawn(shell, &dir, port, &[], &[]);
    assert_eq!(gw.wait_exit().code(), Some(1));
    let err = gw.stderr_to_end();
    assert!(
        err.contains(&format!(
            "port {port} is already in use (pid {}",
            std::process::id()
        )),
        "{err}"
    );
}

fn verbose_logs_frames_with_secrets_masked(shell: Shell) {
    let dir = TempDir::new("run");
    let mut gw = spawn(
        shell,
        &dir,
        free_port(),
        &["--verbose", "--token", "very-secret-token-value"],
        &[],
    )
    .started();
    gw.connect(Some("very-secret-token-value"))
        .hello()
        .expect("hello-ok");
    let line = gw.wait_line("frame in:");
    assert!(line.contains("\"connect\""), "{line}");
    let out = gw.wait_line("frame out:");
    assert!(out.contains("hello-ok"), "{out}");
    gw.signal("TERM");
    gw.wait_exit();
    let all = gw.stderr_to_end();
    assert!(
        !all.contains("very-secret-token-value"),
        "the token leaked into the log:\n{all}"
    );
    assert!(all.contains(" trace "), "{all}");
}

fn running_out_of_file_descriptors_pauses_accepting_and_recovers(shell: Shell) {
    let dir = TempDir::new("run");
    // A started gateway holds 20 descriptors on mio and 26 on clawgate-smol (its loop's, its
    // clients' and the HTTP loop's epolls among them), stdio and the log included: 28 leaves
    // room for the store's writer, and 30 sockets below run out of it on either shell.
    let mut gw = spawn_with_file_limit(shell, 28, &dir, free_port()).started();
    // Start-up's own file work first: at its first pause the store's writer makes the WAL
    // 4 MiB long, on a descriptor it opens, writes, syncs and closes. Freed while the loop is
    // starved, that descriptor would take one more connection and end the episode, and the
    // next refusal would warn again (rightly: a second episode).
    let wal = dir.state().join("state/clawgate.sqlite-wal");
    poll_for(Duration::from_secs(5), || {
        std::fs::metadata(&wal)
            .is_ok_and(|m| m.len() >= 4 << 20)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the store's writer never made its WAL long ({wal:?})"));
    // Its sync and close.
    std::thread::sleep(Duration::from_millis(300));
    // More sockets than descriptors left: the surplus waits in the backlog.
    let held: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.port)).unwrap())
        .collect();
    gw.wait_line("cannot accept connections");
    // Several back-off periods pass while starved: still one warning.
    std::thread::sleep(Duration::from_millis(600));
    while let Ok(l) = gw.lines.try_recv() {
        gw.seen.push(l);
    }
    let starved = gw
        .seen
        .concat()
        .matches("cannot accept connections")
        .count();
    assert_eq!(starved, 1, "warned once per episode, not once per attempt");
    drop(held);
    assert_eq!(
        gw.connect(None).hello().expect("hello-ok")["type"],
        "hello-ok",
        "accepting resumed once descriptors were free"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().code(), Some(0));
    assert!(gw.stderr_to_end().contains("accepting connections again"));
}

fn a_silently_paired_device_is_persisted_privately_and_survives_a_restart(shell: Shell) {
    let dir = TempDir::new("run");
    let port = free_port();
    let key = clawgate_core::device::DeviceKey::from_seed([7u8; 32]);
    let with_device = || {
        let mut cfg = ClientConfig::cli(&format!("127.0.0.1:{port}"));
        cfg.device = Some(clawgate_core::device::DeviceKey::from_seed([7u8; 32]));
        cfg.scopes = vec!["operator.read".into(), "operator.pairing".into()];
        cfg
    };
    let mut gw = spawn(shell, &dir, port, &[], &[]).started();
    let hello = Ws::connect(port, with_device()).hello().expect("hello-ok");
    assert!(hello["auth"]["deviceToken"].is_string(), "{hello}");
    // The store is written by a thread beside the loop; stopping at once must not lose what
    // it was given.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().code(), Some(0));
    let store = clawgate_store::db_path(&dir.state());
    let stored = clawgate_store::Db::open(&dir.state())
        .and_then(|mut db| db.load_pairing())
        .expect("the store opens");
    assert!(stored.devices.contains_key(&key.id()), "{stored:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(gw.stderr_to_end().contains("approved silently"));
    drop(gw);

    let mut gw = spawn(shell, &dir, port, &[], &[]).started();
    let mut again = Ws::connect(port, with_device());
    assert!(again.hello().expect("hello-ok")["auth"]["deviceToken"].is_string());
    let paired = again
        .call("device.pair.list", None)
        .expect("device.pair.list");
    assert!(paired.to_string().contains(&key.id()), "{paired}");
    gw.signal("TERM");
    gw.wait_exit();
    let log = gw.stderr_to_end();
    assert!(log.contains("hello 127.0.0.1"), "{log}");
    assert!(
        !log.contains("approved silently"),
        "the restarted gateway knew the device already:\n{log}"
    );
}

fn a_legacy_json_pairing_file_moves_into_the_store_and_its_tokens_keep_working(shell: Shell) {
    use clawgate_core::PairingStore;
    use clawgate_core::pairing::{DeviceToken, PairedDevice};
    let dir = TempDir::new("run");
    let port = free_port();
    let key = clawgate_core::device::DeviceKey::from_seed([9u8; 32]);
    let mut legacy = PairingStore::load(b"").expect("an empty store");
    let device = PairedDevice {
        device_id: key.id(),
        public_key: clawgate_core::device::b64url(&key.public_raw()),
        meta: Default::default(),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        tokens: [(
            "operator".to_string(),
            DeviceToken {
                token: "legacy-device-token-0123456789abcdefghijklmno".into(),
                scopes: vec!["operator.read".into()],
                issued_at_ms: 1,
            },
        )]
        .into(),
        node: None,
        created_at_ms: 1,
        approved_at_ms: 1,
    };
    legacy.devices.insert(key.id(), device);
    let json = clawgate_store::legacy_pairing_path(&dir.state());
    std::fs::create_dir_all(json.parent().unwrap()).unwrap();
    std::fs::write(&json, legacy.to_bytes()).unwrap();

    let mut gw = spawn(
        shell,
        &dir,
        port,
        &["--token", "correct-horse-battery"],
        &[],
    )
    .started();
    let mut cfg = ClientConfig::cli(&format!("127.0.0.1:{port}"));
    cfg.device = Some(clawgate_core::device::DeviceKey::from_seed([9u8; 32]));
    cfg.device_token = Some("legacy-device-token-0123456789abcdefghijklmno".into());
    let hello = Ws::connect(port, cfg)
        .hello()
        .expect("the legacy token works");
    assert_eq!(hello["auth"]["method"], "device-token");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().code(), Some(0));
    let log = gw.stderr_to_end();
    assert!(
        log.contains(&format!(
            "moved 1 paired device(s) and 0 pending request(s) from {}",
            json.display()
        )),
        "{log}"
    );
    assert!(!json.exists());
    assert!(std::path::PathBuf::from(format!("{}.migrated", json.display())).exists());
}

fn sighup_asking_for_another_port_says_it_needs_a_restart_and_keeps_serving(shell: Shell) {
    let bin = || Command::new(shell.binary());
    let dir = TempDir::new("run");
    let (first, second) = (free_port(), free_port());
    write_config(&dir, &format!("{{ gateway: {{ port: {first} }} }}"));
    let mut gw = spawn_with(bin(), &dir, first, &[], &[]).started();
    write_config(&dir, &format!("{{ gateway: {{ port: {second} }} }}"));
    gw.signal("HUP");
    gw.wait_line(&format!(
        "bind 127.0.0.1:{second} needs a restart; still listening on 127.0.0.1:{first}"
    ));
    assert_eq!(
        gw.connect(None).hello().expect("hello-ok")["type"],
        "hello-ok"
    );
    assert!(!listening(second));
}

fn port_0_takes_any_port_and_a_reload_keeps_it(shell: Shell) {
    let dir = TempDir::new("run");
    let bin = Command::new(shell.binary());
    let mut gw = spawn_with(bin, &dir, 0, &["--port", "0"], &[]);
    let line = gw.wait_line("listening on ws://127.0.0.1:");
    gw.port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(gw.port, 0);
    gw.signal("HUP");
    gw.wait_line("config reloaded");
    assert_eq!(
        gw.connect(None).hello().expect("hello-ok")["type"],
        "hello-ok"
    );
    gw.signal("TERM");
    gw.wait_exit();
    assert!(!gw.stderr_to_end().contains("needs a restart"));
}

both!(
    no_config_serves_local_mode_and_logs_to_a_private_file,
    lan_without_secret_exits_78_before_listening,
    refused_secrets_exit_78_with_the_reason,
    password_file_sets_password_mode,
    port_comes_from_the_environment_then_the_config_file,
    help_prints_usage_and_exits_0,
    usage_error_exits_2,
    token_mode_refuses_a_wrong_token_and_accepts_the_right_one,
    env_token_applies,
    health_and_ready_over_http,
    silent_socket_is_closed_1000_after_the_handshake_timeout,
    sigterm_sends_shutdown_closes_1012_and_exits_0,
    sigint_exits_0_with_a_silent_client_still_connected,
    sighup_reload_closes_old_token_connections_4001_and_accepts_the_new_token,
    sighup_with_a_broken_config_keeps_the_running_one,
    a_second_instance_on_the_same_state_dir_refuses,
    a_port_in_use_is_named_with_its_holder,
    verbose_logs_frames_with_secrets_masked,
    running_out_of_file_descriptors_pauses_accepting_and_recovers,
    a_silently_paired_device_is_persisted_privately_and_survives_a_restart,
    a_legacy_json_pairing_file_moves_into_the_store_and_its_tokens_keep_working,
    sighup_asking_for_another_port_says_it_needs_a_restart_and_keeps_serving,
    port_0_takes_any_port_and_a_reload_keeps_it,
);
