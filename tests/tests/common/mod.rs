//! Starting a gateway binary on a free loopback port and speaking to it with the core's
//! sans-IO client over a blocking socket, keeping every byte the gateway sent.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clawgate_core::client::{Client, ClientConfig, Event};
use clawgate_core::frame::ErrorShape;
use serde_json::Value;

/// The longest any single wait on a gateway may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// The two gateway binaries.
#[derive(Clone, Copy, Debug)]
pub enum Shell {
    /// `clawgate` (mio).
    Mio,
    /// `clawgate-smol`.
    Smol,
}

impl Shell {
    /// The built binary: `$CARGO_TARGET_DIR` (else the workspace's `target`), profile
    /// `$CLAWGATE_TEST_PROFILE` (else `debug`), as `scripts/test.sh` builds it.
    pub fn binary(self) -> PathBuf {
        let name = match self {
            Shell::Mio => "clawgate",
            Shell::Smol => "clawgate-smol",
        };
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let profile = std::env::var("CLAWGATE_TEST_PROFILE").unwrap_or_else(|_| "debug".into());
        let path = target.join(profile).join(name);
        assert!(
            path.is_file(),
            "{} not found: run `cargo build --workspace --bins` first",
            path.display()
        );
        path
    }
}

/// A private scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("clawgate-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A running gateway process, killed on drop.
pub struct Gateway {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Gateway {
    /// `gateway run --port <free> --token <token> --verbose` with a private HOME and state dir;
    /// returns once the port accepts connections.
    pub fn start(shell: Shell, token: &str) -> Self {
        let dir = TempDir::new("gw");
        let port = free_port();
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(shell.binary())
            .args([
                "gateway",
                "run",
                "--port",
                &port.to_string(),
                "--token",
                token,
                "--verbose",
            ])
            .env("HOME", dir.path())
            .env("OPENCLAW_STATE_DIR", dir.path().join("state"))
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {shell:?}: {e}"));
        let mut gw = Self { child, port, dir };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!(
                    "{shell:?} exited with {status} before listening:\n{}",
                    gw.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{shell:?} did not listen on {port} within {WAIT:?}:\n{}",
                gw.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gw
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Everything it logged so far (with `--verbose`, every frame in and out).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Ask it to stop (SIGTERM), as a service manager would.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket session: the core's client over a blocking socket. Every byte received is
/// kept in `received` for frame-level checks.
pub struct Wire {
    stream: TcpStream,
    client: Client,
    /// Bytes the gateway sent, in order.
    pub received: Vec<u8>,
}

impl Wire {
    /// Connect and send the upgrade (the client answers the challenge by itself).
    pub fn connect(port: u16, config: ClientConfig) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        static KEY: AtomicU64 = AtomicU64::new(1);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&KEY.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Self {
            stream,
            client: Client::new(config, key),
            received: Vec::new(),
        }
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(bytes) = self.client.poll_transmit() {
                let _ = self.stream.write_all(&bytes);
            }
            if let Some(e) = self.client.poll_event() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.client.handle_eof();
                    if let Some(e) = self.client.poll_event() {
                        return Some(e);
                    }
                    return None;
                }
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    self.client.handle_input(&buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.client.handle_eof(),
            }
        }
    }

    /// Wait for the first event `pick` accepts; panics after [`WAIT`].
    pub fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        while let Some(e) = self.next_event(deadline.saturating_duration_since(Instant::now())) {
            if let Some(t) = pick(&e) {
                return t;
            }
        }
        panic!("no {what} within {WAIT:?}");
    }

    /// `hello-ok`'s payload, or the error that refused the connect.
    pub fn hello(&mut self) -> Result<Value, ErrorShape> {
        self.expect("hello-ok or a connect failure", |e| match e {
            Event::Hello(v) => Some(Ok(v.clone())),
            Event::ConnectFailed(err) => Some(Err(err.clone())),
            _ => None,
        })
    }

    /// Send a request and wait for its response.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, ErrorShape> {
        let id = self.client.request(method, params);
        self.expect(&format!("response to {method}"), |e| match e {
            Event::Response { id: rid, result } if *rid == id => Some(result.clone()),
            _ => None,
        })
    }

    /// Send raw text as one frame.
    pub fn send_text(&mut self, text: &str) {
        self.client.send_text(text.to_string());
    }

    /// The close code and reason (or `None` code when the socket just ended).
    pub fn closed(&mut self) -> (Option<u16>, String) {
        self.expect("close", |e| match e {
            Event::Closed { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
    }
}
