//! Starting the gateway binaries and talking to them over real sockets.
//!
//! [`Shell`] names the two binaries; [`Options`] describes how to start one (flags,
//! environment, config file) and [`Options::start`] returns a running [`Gateway`] that is
//! killed when dropped. [`Ws`] is a WebSocket session: clawgate-host's blocking [`Session`]
//! (the one the CLI uses), which drives the core's own sans-IO client; [`raw`] speaks through async-tungstenite on smol
//! for frames the real client would never send. [`both!`](crate::both) runs a case against
//! every shell, so a difference between them is a failing test named after the shell.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::frame::ErrorShape;
use clawgate_host::session::{self, ConnectError, ReadErrors, Session};
use clawgate_host::url::GatewayUrl;
use serde_json::Value;

pub use crate::tempdir::TempDir;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Run the named case functions (each `fn(Shell)`) once per shell, as tests named
/// `mio_shell::<case>` and `smol_shell::<case>`.
#[macro_export]
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod mio_shell {
            $( #[test] fn $case() { super::$case($crate::harness::Shell::Mio) } )*
        }
        mod smol_shell {
            $( #[test] fn $case() { super::$case($crate::harness::Shell::Smol) } )*
        }
    };
}

/// One of the gateway binaries under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// `clawgate`, the mio event loop.
    Mio,
    /// `clawgate-smol`, the smol executor.
    Smol,
}

impl Shell {
    /// Every shell.
    pub const ALL: [Shell; 2] = [Shell::Mio, Shell::Smol];

    /// The binary's file name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Shell::Mio => "clawgate",
            Shell::Smol => "clawgate-smol",
        }
    }

    /// The built binary: in `$CLAWGATE_TEST_BIN_DIR` when set (scripts/test.sh puts the
    /// binaries as shipped there), else in `$CARGO_TARGET_DIR` (else the workspace's `target`),
    /// profile `$CLAWGATE_TEST_PROFILE` (else `debug`). Panics with what to run when it is
    /// missing.
    pub fn binary(self) -> PathBuf {
        let profile = std::env::var("CLAWGATE_TEST_PROFILE").unwrap_or_else(|_| "debug".into());
        let dir = std::env::var_os("CLAWGATE_TEST_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join("..")
                            .join("target")
                    })
                    .join(&profile)
            });
        let path = dir.join(self.binary_name());
        let flag = match profile.as_str() {
            "debug" => String::new(),
            "release" => " --release".into(),
            other => format!(" --profile {other}"),
        };
        assert!(
            path.is_file(),
            "{} not found: run scripts/test.sh{flag} (it builds the binaries as shipped, then \
             tests them), or build them first with `cargo build{flag}`",
            path.display()
        );
        path
    }
}

/// How to start a gateway: extra flags, environment and an optional config file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    port: Option<u16>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    netns: Option<String>,
}

impl Options {
    /// Defaults: `gateway run --port <free>` in local mode with a private `HOME`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Token mode with `token` (`--token`).
    pub fn token(self, token: &str) -> Self {
        self.arg("--token").arg(token)
    }

    /// An extra command-line argument.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// An environment variable for the gateway process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Run the gateway in the network namespace `ns` (`ip netns exec`); its readiness is
    /// probed from inside it.
    pub fn netns(mut self, ns: &crate::netns::Netns) -> Self {
        self.netns = Some(ns.name().to_string());
        self
    }

    /// Write `text` as the gateway's `openclaw.json`.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_string());
        self
    }

    /// Start `shell` and wait (bounded) until `/readyz` answers 200.
    pub fn start(&self, shell: Shell) -> Gateway {
        // A port taken between probing and binding makes the gateway exit 1: try again.
        let mut last = String::new();
        for _ in 0..3 {
            match self.try_start(shell) {
                Ok(gw) => return gw,
                Err(why) => last = why,
            }
        }
        panic!("{shell:?} gateway did not start: {last}");
    }

    /// Kill `gw` with SIGKILL (nothing flushed, no handler runs) and start `shell` again on
    /// the same state directory and port, waiting (bounded) until `/readyz` answers 200.
    pub fn crash_and_restart(&self, shell: Shell, gw: Gateway) -> Gateway {
        self.crash_and_restart_after(shell, gw, |_| {})
    }

    /// [`Options::crash_and_restart`], running `between` (given the state directory) while
    /// no gateway runs.
    pub fn crash_and_restart_after(
        &self,
        shell: Shell,
        gw: Gateway,
        between: impl FnOnce(&Path),
    ) -> Gateway {
        let (dir, port) = (Rc::clone(&gw.dir), gw.port);
        drop(gw); // SIGKILL, and reaped
        between(&dir.state());
        let mut last = String::new();
        for _ in 0..3 {
            match self.spawn_in(shell, dir.clone(), port).and_then(ready) {
                Ok(gw) => return gw,
                Err(why) => last = why,
            }
        }
        panic!("{shell:?} gateway did not restart: {last}");
    }

    fn try_start(&self, shell: Shell) -> Result<Gateway, String> {
        ready(self.spawn(shell)?)
    }

    /// Start `shell` expecting it to exit (a refused start-up): its exit code (`None` if
    /// killed by a signal, or still running after `timeout` and killed) and its stderr.
    pub fn run_to_exit(&self, shell: Shell, timeout: Duration) -> (Option<i32>, String) {
        let mut gw = self.spawn(shell).unwrap_or_else(|e| panic!("{e}"));
        let code = gw.wait_exit(timeout).and_then(|s| s.code());
        (code, gw.stderr())
    }

    fn spawn(&self, shell: Shell) -> Result<Gateway, String> {
        let dir = Rc::new(TempDir::new(shell.binary_name()));
        let state = dir.state();
        std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
        if let Some(text) = &self.config {
            std::fs::write(state.join("openclaw.json"), text).map_err(|e| e.to_string())?;
        }
        self.spawn_in(shell, dir, self.port.unwrap_or_else(free_port))
    }

    /// Start `shell` on an existing directory (its `state/` and a fresh `stderr.log`).
    fn spawn_in(&self, shell: Shell, dir: Rc<TempDir>, port: u16) -> Result<Gateway, String> {
        let state = dir.state();
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(shell.binary());
                c
            }
            None => Command::new(shell.binary()),
        };
        let child = command
            .args(["gateway", "run", "--port", &port.to_string()])
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("OPENCLAW_STATE_DIR", &state)
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", shell.binary().display()))?;
        Ok(Gateway {
            child,
            port,
            stderr_path,
            dir,
            netns: self.netns.clone(),
        })
    }
}

/// Wait (bounded) until a spawned gateway answers `/readyz` with 200.
fn ready(mut gw: Gateway) -> Result<Gateway, String> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = gw.child.try_wait() {
            return Err(format!("exited with {status}: {}", gw.stderr()));
        }
        let probe = || http_get(gw.port, "/readyz").is_ok_and(|r| r.status == 200);
        let ready = match &gw.netns {
            Some(ns) => crate::netns::within(ns, probe),
            None => probe(),
        };
        if ready {
            return Ok(gw);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("/readyz not 200 within {WAIT:?}: {}", gw.stderr()))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A running gateway process; killed on drop.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    port: u16,
    stderr_path: PathBuf,
    /// Shared with the next process when it is restarted on the same state.
    dir: Rc<TempDir>,
    /// The network namespace it runs in, if not this process's.
    netns: Option<String>,
}

impl Gateway {
    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait (bounded) until its stderr contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send it SIGTERM with `kill`.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Send it a signal by name (`TERM`, `HUP`) with `kill`.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {} failed", self.child.id());
    }

    /// Its config file (`$OPENCLAW_STATE_DIR/openclaw.json`), whether written yet or not.
    pub fn config_path(&self) -> PathBuf {
        self.dir.config()
    }

    /// Wait (bounded) for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A CLI client config (`cli`/`cli`, `operator.read`) for this gateway.
    pub fn cli(&self) -> ClientConfig {
        ClientConfig::cli(&format!("127.0.0.1:{}", self.port))
    }

    /// Open a WebSocket session driven by the core's client.
    pub fn ws(&self, config: ClientConfig) -> Ws {
        Ws::connect(self.port, config)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines as (lowercase name, value).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl HttpResponse {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parse a whole response as read until EOF.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Self {
            status,
            headers,
            body: body.to_string(),
        })
    }
}

/// `GET path` on the gateway, reading until it closes.
pub fn http_get(port: u16, path: &str) -> io::Result<HttpResponse> {
    http_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
}

/// Send a raw request head and read the response until EOF.
pub fn http_request(port: u16, request: &str) -> io::Result<HttpResponse> {
    let raw = http_raw(port, request)?;
    HttpResponse::parse(&raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// Send raw bytes and return everything the gateway answers until it closes.
pub fn http_raw(port: u16, request: &str) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

/// A WebSocket session for tests: the shared blocking [`Session`] recording every byte it
/// receives and taking a failed socket for its end, every wait bounded by [`WAIT`]. The
/// session's own methods ([`Session::client`], [`Session::flush`], [`Session::next_event`],
/// [`Session::received`], [`Session::stream`]) are reached through `Deref`.
pub struct Ws(Session);

impl Deref for Ws {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}

impl DerefMut for Ws {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.0
    }
}

impl Ws {
    /// Connect to the gateway on `port` and send the upgrade request.
    pub fn connect(port: u16, config: ClientConfig) -> Self {
        Self::try_connect(port, config).expect("connect to gateway")
    }

    /// [`Ws::connect`], or the error when the gateway cannot be reached.
    pub fn try_connect(port: u16, config: ClientConfig) -> Result<Self, ConnectError> {
        Self::try_dial(&GatewayUrl::local(port), config)
    }

    /// Connect to the gateway at `url` (from this thread's network namespace) and send the
    /// upgrade request; `config.host` is sent as it is.
    pub fn try_dial(url: &GatewayUrl, config: ClientConfig) -> Result<Self, ConnectError> {
        let options = session::Options {
            record: true,
            errors: ReadErrors::AsEof,
        };
        Session::dial(url, config, options, Instant::now() + WAIT).map(Self)
    }

    /// Events until one matches `pick`; panics after [`WAIT`] with what came instead.
    pub fn expect<T>(&mut self, what: &str, pick: impl FnMut(&Event) -> Option<T>) -> T {
        let mut seen = Vec::new();
        self.first(pick, &mut seen)
            .unwrap_or_else(|| panic!("expected {what}, got {seen:?}"))
    }

    /// The first event that matches `pick`, or `None` when the connection ends or [`WAIT`]
    /// passes first; the events that did not match are pushed to `seen`.
    pub fn first<T>(
        &mut self,
        pick: impl FnMut(&Event) -> Option<T>,
        seen: &mut Vec<Event>,
    ) -> Option<T> {
        self.0.first_before(Instant::now() + WAIT, pick, seen)
    }

    /// [`Ws::call`], or `None` when the connection ends before the response.
    pub fn try_call(
        &mut self,
        method: &str,
        params: Option<Value>,
    ) -> Option<Result<Value, ErrorShape>> {
        let rid = self.client().request(method, params);
        self.flush();
        let pick = |e: &Event| match e {
            Event::Response { id, result } if *id == rid => Some(result.clone()),
            _ => None,
        };
        self.first(pick, &mut Vec::new())
    }

    /// [`Ws::hello`], or `None` when the connection ends before the outcome.
    pub fn try_hello(&mut self) -> Option<Result<Value, ErrorShape>> {
        self.first(hello_outcome, &mut Vec::new())
    }

    /// The outcome of `connect`: the `hello-ok` payload or the error.
    pub fn hello(&mut self) -> Result<Value, ErrorShape> {
        self.expect("hello-ok or a connect error", hello_outcome)
    }

    /// Call `method` and wait for its response.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, ErrorShape> {
        self.try_call(method, params)
            .unwrap_or_else(|| panic!("expected the response to {method}"))
    }

    /// The close code and reason the server sent (`None` code: EOF without a close frame).
    pub fn closed(&mut self) -> (Option<u16>, String) {
        self.expect("the connection to close", |e| match e {
            Event::Closed { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
    }
}

/// The handshake's outcome, if `e` is it.
fn hello_outcome(e: &Event) -> Option<Result<Value, ErrorShape>> {
    match e {
        Event::Hello(v) => Some(Ok(v.clone())),
        Event::ConnectFailed(err) => Some(Err(err.clone())),
        _ => None,
    }
}

/// A WebSocket client that is not ours (async-tungstenite on smol), for raw frames.
pub mod raw {
    use std::time::Duration;

    use async_tungstenite::WebSocketStream;
    use async_tungstenite::tungstenite::protocol::WebSocketConfig;
    use async_tungstenite::tungstenite::{Error, Message};
    use clawgate_core::client::ClientConfig;
    use serde_json::{Value, json};
    use smol::net::TcpStream;
    use smol::stream::StreamExt;

    use super::WAIT;

    /// An open WebSocket from async-tungstenite.
    pub type Socket = WebSocketStream<TcpStream>;

    /// What the server did next.
    #[derive(Debug, PartialEq)]
    pub enum Next {
        /// A text frame.
        Text(String),
        /// A close frame: code and reason.
        Close(u16, String),
        /// The stream ended or failed without a close frame.
        Gone,
        /// Nothing within the wait.
        Silent,
    }

    /// Open a WebSocket to the gateway on `port` (any message size allowed client-side).
    pub async fn try_connect(port: u16) -> Result<Socket, Error> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let cfg = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let url = format!("ws://127.0.0.1:{port}/");
        let (ws, _) = async_tungstenite::client_async_with_config(url, tcp, Some(cfg)).await?;
        Ok(ws)
    }

    /// [`try_connect`], panicking on failure.
    pub async fn connect(port: u16) -> Socket {
        try_connect(port).await.expect("websocket upgrade")
    }

    /// The next text or close from the server, waiting at most `timeout`.
    pub async fn next_within(ws: &mut Socket, timeout: Duration) -> Next {
        let read = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => return Next::Text(t.to_string()),
                    Some(Ok(Message::Close(f))) => {
                        return f.map_or(Next::Close(1005, String::new()), |f| {
                            Next::Close(f.code.into(), f.reason.to_string())
                        });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Next::Gone,
                }
            }
        };
        smol::future::or(read, async {
            smol::Timer::after(timeout).await;
            Next::Silent
        })
        .await
    }

    /// The next text or close from the server within [`WAIT`].
    pub async fn next(ws: &mut Socket) -> Next {
        next_within(ws, WAIT).await
    }

    /// Send one text frame.
    pub async fn send(ws: &mut Socket, text: String) {
        ws.send(Message::text(text)).await.expect("send frame");
    }

    /// The next text frame as JSON; panics on anything else.
    pub async fn next_json(ws: &mut Socket) -> Value {
        match next(ws).await {
            Next::Text(t) => {
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Open a socket and read the `connect.challenge`; returns the socket and its payload.
    pub async fn challenged(port: u16) -> (Socket, Value) {
        let mut ws = connect(port).await;
        let frame = next_json(&mut ws).await;
        assert_eq!(frame["event"], "connect.challenge", "{frame}");
        (ws, frame["payload"].clone())
    }

    /// Upgrade over `tcp` (sent to `host`, with the extra request `headers`), then answer the
    /// challenge with `config`'s `connect` (id `c1`): the server's answer to it, or the HTTP
    /// status of a refused upgrade.
    pub fn connect_over(
        tcp: std::net::TcpStream,
        host: &str,
        headers: &[(&str, &str)],
        config: &ClientConfig,
    ) -> Result<Value, u16> {
        use async_tungstenite::tungstenite::client::IntoClientRequest;
        use async_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        smol::block_on(async {
            let mut request = format!("ws://{host}/")
                .into_client_request()
                .expect("request");
            for (name, value) in headers {
                request.headers_mut().insert(
                    HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    HeaderValue::from_str(value).expect("header value"),
                );
            }
            let tcp = TcpStream::try_from(tcp).expect("async socket");
            let mut ws = match async_tungstenite::client_async(request, tcp).await {
                Ok((ws, _)) => ws,
                Err(Error::Http(response)) => return Err(response.status().as_u16()),
                Err(e) => panic!("upgrade: {e}"),
            };
            let challenge = next_json(&mut ws).await;
            let params = config.connect_params(
                challenge["payload"]["nonce"].as_str().unwrap_or(""),
                challenge["payload"]["ts"].as_i64().unwrap_or(0),
            );
            let frame = json!({"type": "req", "id": "c1", "method": "connect", "params": params});
            send(&mut ws, frame.to_string()).await;
            Ok(next_json(&mut ws).await)
        })
    }

    /// A valid `connect` request (id `c1`) from a local CLI client answering `challenge`.
    pub fn connect_frame(port: u16, challenge: &Value) -> Value {
        let cfg = ClientConfig::cli(&format!("127.0.0.1:{port}"));
        let params = cfg.connect_params(
            challenge["nonce"].as_str().unwrap_or(""),
            challenge["ts"].as_i64().unwrap_or(0),
        );
        json!({"type": "req", "id": "c1", "method": "connect", "params": params})
    }
}

/// Accept connections on `listener` on a thread named `name`, serving each on its own
/// thread with `serve`, until `stopped` says so (checked at each connection: whoever stops
/// it connects once to wake it). The fakes' listeners.
pub fn accept_each(
    listener: std::net::TcpListener,
    name: &str,
    stopped: impl Fn() -> bool + Send + 'static,
    serve: impl Fn(std::net::TcpStream) + Clone + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let conn_name = format!("{name}-conn");
    std::thread::Builder::new()
        .name(format!("{name}-accept"))
        .spawn(move || {
            for conn in listener.incoming() {
                if stopped() {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let serve = serve.clone();
                let _ = std::thread::Builder::new()
                    .name(conn_name.clone())
                    .spawn(move || serve(conn));
            }
        })
        .expect("spawn an acceptor")
}
