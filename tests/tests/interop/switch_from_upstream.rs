//! Switching from upstream's gateway loses nothing (issue 20): the real `openclaw gateway run`
//! pairs a real `openclaw node run` node host and a signed operator device, then stops; clawgate
//! starts on the same state directory and port (mio, then smol) and, with no pairing step, the
//! node host reconnects and answers `node.invoke`, the device connects with its device token
//! alone, and `gateway.identity.get` shows upstream's identity. One upstream run serves all.

use std::process::Child;

use clawgate_core::device::DeviceKey;
use clawgate_tests::harness::free_port;

use super::*;

/// How long upstream may take to listen (measured 8–20 s here, more on a loaded machine).
const UPSTREAM_WAIT: Duration = Duration::from_secs(120);

/// How long upstream may take to stop cleanly.
const UPSTREAM_STOP: Duration = Duration::from_secs(30);

/// Upstream's own gateway in token mode on a loopback port, killed on drop.
struct Upstream {
    child: Option<Child>,
    home: Home,
    port: u16,
}

impl Upstream {
    fn start() -> Option<Self> {
        let home = Home::new()?;
        let port = free_port();
        let log = std::fs::File::create(home.out_file("gateway.log")).expect("gateway log");
        let child = home
            .command(&[
                "gateway",
                "run",
                "--port",
                &port.to_string(),
                "--bind",
                "loopback",
                "--auth",
                "token",
                "--token",
                TOKEN,
                "--allow-unconfigured",
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn openclaw gateway run");
        let up = Self {
            child: Some(child),
            home,
            port,
        };
        let deadline = Instant::now() + UPSTREAM_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "upstream did not listen within {UPSTREAM_WAIT:?}:\n{}",
                up.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(up)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.out_file("gateway.log")).unwrap_or_default()
    }

    /// The state directory (`OPENCLAW_STATE_DIR`).
    fn state(&self) -> PathBuf {
        self.home.0.path().join("state")
    }

    /// SIGTERM and wait for the clean exit that leaves the WAL beside the database.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(group) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + UPSTREAM_STOP;
        while child.try_wait().expect("wait upstream").is_none() {
            if Instant::now() > deadline {
                kill_group(&mut child);
                panic!(
                    "upstream did not stop within {UPSTREAM_STOP:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill_group(&mut child); // whatever it spawned
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// A CLI operator with a device key: `token` for pairing, or the device token alone after.
fn device_operator(
    key: &DeviceKey,
    token: Option<&str>,
    device_token: Option<&str>,
) -> ClientConfig {
    let mut c = admin();
    c.token = token.map(String::from);
    c.device_token = device_token.map(String::from);
    c.device = Some(key.clone());
    c
}

/// `hello` on `port`, retried while upstream is still starting (it listens before it is ready).
fn hello_when_ready(port: u16, config: &ClientConfig, log: impl Fn() -> String) -> (Ws, Value) {
    let deadline = Instant::now() + UPSTREAM_WAIT;
    loop {
        let mut ws = Ws::connect(port, config.clone());
        match ws.try_hello() {
            Some(Ok(hello)) => return (ws, hello),
            other => assert!(
                Instant::now() < deadline,
                "no hello-ok from port {port}: {other:?}\n{}",
                log()
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Invoke `system.which` on `node_id` and check it answers with the path of `ls`.
fn invoke_which(op: &mut Ws, node_id: &str, node: &NodeHost, log: impl Fn() -> String) {
    let invoke = json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["ls"]}, "idempotencyKey": format!("switch-{}", free_port()), "timeoutMs": 15000});
    let result = op.call("node.invoke", Some(invoke)).unwrap_or_else(|e| {
        panic!(
            "node.invoke failed: {e:?}\n--- node\n{}\n--- gateway\n{}",
            node.log(),
            log()
        )
    });
    assert_eq!(result["ok"], true, "{result}");
    let ls = result["payload"]["bins"]["ls"].as_str().unwrap_or_default();
    assert!(ls.ends_with("/ls"), "{result}");
}

#[test]
fn switching_from_upstream_keeps_the_node_the_device_and_the_identity() {
    let Some(mut up) = Upstream::start() else {
        return;
    };
    let up_log = || std::fs::read_to_string(up.home.out_file("gateway.log")).unwrap_or_default();

    // Upstream pairs a signed operator device (silently: local, with the shared token).
    let key = DeviceKey::from_seed([0x5a; 32]);
    let (mut op, hello) =
        hello_when_ready(up.port, &device_operator(&key, Some(TOKEN), None), up_log);
    let device_token = hello["auth"]["deviceToken"]
        .as_str()
        .unwrap_or_else(|| panic!("upstream issued no device token: {hello}"))
        .to_string();
    let identity = op
        .call("gateway.identity.get", Some(json!({})))
        .expect("upstream gateway.identity.get");

    // ... and the real node host, approved with its commands.
    let node = NodeHost::start_on(up.port).expect("installed");
    let listed = wait_for_node_of(&mut op, &node, up_log);
    let node_id = listed["nodeId"].as_str().expect("nodeId").to_string();
    let deadline = Instant::now() + NODE_WAIT;
    let request_id = loop {
        let pending = op
            .call("node.pair.list", Some(json!({})))
            .expect("node.pair.list");
        let found = pending["pending"].as_array().and_then(|p| {
            p.iter()
                .find(|r| r["nodeId"] == node_id.as_str())
                .and_then(|r| r["requestId"].as_str().map(String::from))
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no pending node request: {pending}\n{}",
            up_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    op.call("node.pair.approve", Some(json!({"requestId": request_id})))
        .unwrap_or_else(|e| panic!("upstream node.pair.approve: {e:?}\n{}", up_log()));
    invoke_which(&mut op, &node_id, &node, up_log);
    drop(op);
    up.stop();
    let state = up.state();
    assert!(
        state.join("state").join("openclaw.sqlite-wal").exists(),
        "upstream left its WAL"
    );

    for shell in [Shell::Mio, Shell::Smol] {
        let gw = Options::new()
            .token(TOKEN)
            .arg("--verbose")
            .port(up.port)
            .env("OPENCLAW_STATE_DIR", &state.display().to_string())
            .start(shell);
        if shell == Shell::Mio {
            // Info lines are written in batches: wait for the import's line.
            let imported = gw.wait_for_log("imported from upstream's", Duration::from_secs(5));
            let log = gw.stderr();
            assert!(imported && log.contains("1 node(s)"), "{log}");
        }
        let log = || frames(&gw);

        // The node host reconnects by itself and is still approved: it answers at once.
        let mut admin_ws = gw.ws(admin());
        admin_ws.hello().expect("admin hello-ok");
        let back = wait_for_node_of(&mut admin_ws, &node, log);
        assert_eq!(back["nodeId"], node_id.as_str(), "{back}");
        assert_eq!(back["approvalState"], "approved", "{back}");
        invoke_which(&mut admin_ws, &node_id, &node, log);

        // The operator device connects with its device token alone: no pairing step.
        let mut dev = gw.ws(device_operator(&key, None, Some(&device_token)));
        let hello = dev
            .hello()
            .unwrap_or_else(|e| panic!("{shell:?}: device token refused: {e:?}\n{}", log()));
        assert_eq!(hello["auth"]["role"], "operator", "{hello}");
        // Same gateway identity as upstream showed.
        let same = dev
            .call("gateway.identity.get", Some(json!({})))
            .expect("gateway.identity.get");
        assert_eq!(same, identity, "{shell:?}");

        for ws in [&admin_ws, &dev] {
            for text in schema::server_text_frames(ws.received()) {
                let frame: Value = serde_json::from_str(&text).expect("gateway frames are JSON");
                schema::validate_server_frame(&frame)
                    .unwrap_or_else(|e| panic!("{e}\n  frame: {text}"));
            }
        }
    }
}
