//! Configuration as data: the parsed `openclaw.json`, the environment and the command-line
//! flags resolved into one [`Config`], with every limit a named field of [`Limits`] and the
//! start-up refusals reported as a typed [`ConfigError`].

use core::net::{IpAddr, Ipv4Addr};
use core::time::Duration;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::auth::Secret;
use crate::ip_range::IpRange;

pub mod edit;
pub mod known;
mod providers;
pub mod tools;

pub use providers::{AgentIdentity, DEFAULT_MAX_TOKENS, substitute_env};

/// The default gateway port.
pub const DEFAULT_PORT: u16 = 18789;

/// The least default of `agents.defaults.maxConcurrent` (upstream's).
pub const MIN_DEFAULT_CONCURRENT_RUNS: usize = 8;

/// The default of `agents.defaults.maxConcurrent` on a machine that runs `parallelism`
/// threads at once: max(8, parallelism × 4), as upstream.
pub fn default_concurrent_runs(parallelism: usize) -> usize {
    parallelism
        .saturating_mul(4)
        .max(MIN_DEFAULT_CONCURRENT_RUNS)
}

/// Every limit the gateway enforces, with its default in one place.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest WebSocket message after `hello-ok` (`policy.maxPayload`).
    pub max_payload: usize,
    /// Unsent bytes a connection may hold before it is closed as a slow consumer.
    pub max_buffered_bytes: usize,
    /// Unsent bytes all connections together may hold; past it the connection holding the
    /// most is closed as a slow consumer (`gateway.maxBufferedBytesTotal`).
    pub max_buffered_bytes_total: usize,
    /// Unsent bytes past which a connection is a slow consumer: droppable broadcasts
    /// (upstream's `dropIfSlow` events) skip it, and its input is not read until it catches up.
    pub slow_consumer_bytes: usize,
    /// Frames read from one connection before the others get a turn.
    pub max_frames_per_turn: usize,
    /// Bytes of answers one connection's frames may queue before the others get a turn.
    pub max_turn_output_bytes: usize,
    /// Largest frame before `hello-ok`; larger closes 1009.
    pub max_preauth_payload: usize,
    /// Largest HTTP request head.
    pub max_head_bytes: usize,
    /// Largest body of a request to a route that takes one (a webhook's POST), upstream's
    /// 1 MiB webhook limit; a larger `Content-Length` is answered 413.
    pub max_http_body_bytes: usize,
    /// How long after its head a request's body may take to arrive before it is cut with a
    /// 408 (upstream's 30 s webhook body timeout).
    pub http_body_timeout: Duration,
    /// Largest body of a `POST /tools/invoke` (upstream's 2 MB); a larger `Content-Length`
    /// is answered 413.
    pub tools_invoke_max_body_bytes: usize,
    /// How long a turn's model request (or a `POST /tools/invoke`) waits for tool providers
    /// still starting (an MCP server initializing) before going on without them.
    pub tools_start_wait: Duration,
    /// Bytes of a Control UI file read and sent at a time; the next piece is read once the
    /// connection has at most this many bytes unsent.
    pub ui_chunk_bytes: usize,
    /// Largest Control UI `index.html` served (it is read whole to be rewritten).
    pub ui_max_html_bytes: usize,
    /// Frames a client may send before `hello-ok`.
    pub max_pending_handshake_frames: usize,
    /// Open sockets at once.
    pub max_connections: usize,
    /// Unauthenticated sockets per client address.
    pub max_preauth_per_ip: usize,
    /// Time from open to `hello-ok` before the socket is closed 1000.
    pub handshake_timeout: Duration,
    /// Interval of `tick` events.
    pub tick_interval: Duration,
    /// Failed shared-secret attempts per window before lockout.
    pub auth_max_attempts: u32,
    /// Window over which failed attempts are counted.
    pub auth_window: Duration,
    /// Lockout after too many failures.
    pub auth_lockout: Duration,
    /// Whether local connections are exempt from the lockout.
    pub auth_exempt_loopback: bool,
    /// Longest delay before answering a failed shared secret from a local address.
    pub local_auth_penalty_max: Duration,
    /// Allowed clock skew of a device signature.
    pub device_signature_skew: Duration,
    /// Lifetime of a pending pairing request.
    pub pairing_request_ttl: Duration,
    /// Lifetime of an idempotency key.
    pub dedupe_ttl: Duration,
    /// Idempotency keys remembered at most.
    pub dedupe_max: usize,
    /// Timeout of `node.invoke` when the caller gives none.
    pub node_invoke_default_timeout: Duration,
    /// Log records kept in memory for `logs.tail`.
    pub log_ring_records: usize,
    /// Consecutive unauthorized-role calls before the socket is closed.
    pub max_unauthorized_calls: u32,
    /// Agent runs in progress at once, over every session (`agents.defaults.maxConcurrent`,
    /// upstream's default max(8, CPU parallelism × 4)); more wait in a global queue, oldest
    /// first.
    pub max_concurrent_runs: usize,
    /// Runs waiting at once (in a session's lane or for one of `max_concurrent_runs`); a
    /// message that would wait past it is refused.
    pub max_waiting_runs: usize,
    /// `agent.wait` calls waiting at once; more are refused.
    pub max_agent_waits: usize,
    /// Outcomes of ended runs kept for `agent.wait` on a run that already ended.
    pub max_ended_runs: usize,
    /// Sessions one connection may watch with `sessions.messages.subscribe`.
    pub max_session_subscriptions: usize,
    /// Most recent transcript messages sent to the model with a turn: the window of a
    /// session the gateway keeps in memory (see `max_loaded_windows`; the rest of a
    /// transcript is read from the store).
    pub max_model_messages: usize,
    /// Bytes (JSON) of those recent messages a session keeps at most; older ones leave the
    /// window first (the newest message always stays).
    pub max_window_bytes: usize,
    /// Model windows (each at most `max_model_messages` and `max_window_bytes`) kept in
    /// memory, the most recently used sessions'; a session whose run is in progress keeps
    /// its window past the bound, and any other reads its window back from the store when a
    /// turn needs it.
    pub max_loaded_windows: usize,
    /// Bytes of messages one `chat.history` answer carries at most (upstream's 6 MiB); older
    /// messages past it are left for the next page.
    pub max_history_bytes: usize,
    /// A message longer than this comes back from `chat.history` as a placeholder (upstream's
    /// 128 KiB).
    pub max_history_message_bytes: usize,
    /// `chat.history` reads waiting for the store at once; more are refused.
    pub max_history_reads: usize,
    /// Runs waiting in one session's lane at once (`messages.queue.cap`, upstream's 20); a
    /// message past it is refused.
    pub max_queued_runs: usize,
    /// A queued run starts once its lane is free and this long has passed since the last
    /// message joined the queue (upstream's built-in 500 ms debounce).
    pub queue_debounce: Duration,
    /// Bytes of a model provider's error body kept to classify and report it.
    pub max_error_body_bytes: usize,
    /// At most one `chat` delta per run per this interval (upstream's `LIVE_TEXT_PACING_MS`).
    pub live_text_pacing: Duration,
    /// How long a model request may wait for its response head and first body bytes (from the
    /// request, connecting included) before the run fails; a provider's `timeoutSeconds`
    /// replaces it.
    pub model_first_byte_timeout: Duration,
    /// How long a model's response may go without a byte (upstream's cloud idle watchdog);
    /// a provider's `timeoutSeconds` replaces it.
    pub model_idle_timeout: Duration,
    /// Both timeouts above for a self-hosted provider (a loopback or private `baseUrl`),
    /// upstream's longer idle watchdog for local models.
    pub model_self_hosted_timeout: Duration,
    /// Retries of one model request answered 429 or 5xx before the turn sent any text.
    pub model_max_retries: u32,
    /// The first retry's delay before jitter; it doubles with each retry.
    pub model_retry_base_delay: Duration,
    /// The longest delay between two retries (before a longer `Retry-After`).
    pub model_retry_max_delay: Duration,
    /// No retry starts later than this after the first failure, nor waits past it.
    pub model_retry_window: Duration,
    /// How long one tool call may take before the turn is told it timed out
    /// (`tools.timeoutSeconds`).
    pub tool_timeout: Duration,
    /// Bytes of one tool result the model sees at most; the rest is cut with a marker
    /// (`tools.maxResultBytes`).
    pub tool_result_max_bytes: usize,
    /// Model requests one turn may make while the model keeps calling tools
    /// (`tools.maxRounds`); the turn ends with an error past it.
    pub tool_max_rounds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 25 * 1024 * 1024,
            max_buffered_bytes: 50 * 1024 * 1024,
            max_buffered_bytes_total: 64 * 1024 * 1024,
            slow_consumer_bytes: 1024 * 1024,
            max_frames_per_turn: 8,
            max_turn_output_bytes: 16 * 1024,
            max_preauth_payload: 64 * 1024,
            max_head_bytes: 8 * 1024,
            max_http_body_bytes: 1024 * 1024,
            http_body_timeout: Duration::from_secs(30),
            tools_invoke_max_body_bytes: 2 * 1024 * 1024,
            tools_start_wait: Duration::from_secs(30),
            ui_chunk_bytes: 64 * 1024,
            ui_max_html_bytes: 2 * 1024 * 1024,
            max_pending_handshake_frames: 15,
            max_connections: 10_000,
            max_preauth_per_ip: 32,
            handshake_timeout: Duration::from_millis(15_000),
            tick_interval: Duration::from_millis(30_000),
            auth_max_attempts: 10,
            auth_window: Duration::from_millis(60_000),
            auth_lockout: Duration::from_millis(300_000),
            auth_exempt_loopback: true,
            local_auth_penalty_max: Duration::from_millis(5_000),
            device_signature_skew: Duration::from_millis(120_000),
            pairing_request_ttl: Duration::from_millis(300_000),
            dedupe_ttl: Duration::from_millis(300_000),
            dedupe_max: 1000,
            node_invoke_default_timeout: Duration::from_millis(30_000),
            log_ring_records: 1000,
            max_unauthorized_calls: 10,
            max_concurrent_runs: MIN_DEFAULT_CONCURRENT_RUNS,
            max_waiting_runs: 256,
            max_agent_waits: 256,
            max_ended_runs: 256,
            max_session_subscriptions: 256,
            max_model_messages: 200,
            max_window_bytes: 1024 * 1024,
            max_loaded_windows: 16,
            max_history_bytes: 6 * 1024 * 1024,
            max_history_message_bytes: 128 * 1024,
            max_history_reads: 64,
            max_queued_runs: 20,
            queue_debounce: Duration::from_millis(500),
            max_error_body_bytes: 64 * 1024,
            live_text_pacing: Duration::from_millis(75),
            model_first_byte_timeout: Duration::from_secs(120),
            model_idle_timeout: Duration::from_secs(120),
            model_self_hosted_timeout: Duration::from_secs(300),
            model_max_retries: 8,
            model_retry_base_delay: Duration::from_secs(1),
            model_retry_max_delay: Duration::from_secs(30),
            model_retry_window: Duration::from_secs(90),
            tool_timeout: Duration::from_secs(120),
            tool_result_max_bytes: 64 * 1024,
            tool_max_rounds: 16,
        }
    }
}

/// How clients prove they may connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No shared secret: only local connections are accepted.
    None,
    /// A shared token.
    Token,
    /// A shared password.
    Password,
}

impl AuthMode {
    /// The mode's name as used in config and `hello-ok`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Token => "token",
            AuthMode::Password => "password",
        }
    }
}

/// Whether and how the gateway advertises itself over mDNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdnsMode {
    /// Never advertise.
    Off,
    /// Advertise the required TXT keys.
    Minimal,
    /// Advertise everything upstream does.
    Full,
}

/// Which wire API a model provider speaks (`models.providers.<id>.api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelApi {
    /// `openai-completions`: `POST {baseUrl}/chat/completions`, bearer key.
    OpenAiCompletions,
    /// `anthropic-messages`: `POST {baseUrl}/v1/messages`, `x-api-key`.
    AnthropicMessages,
}

impl ModelApi {
    /// The config name of an API, if clawgate speaks it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "openai-completions" => Some(ModelApi::OpenAiCompletions),
            "anthropic-messages" => Some(ModelApi::AnthropicMessages),
            _ => None,
        }
    }

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelApi::OpenAiCompletions => "openai-completions",
            ModelApi::AnthropicMessages => "anthropic-messages",
        }
    }
}

/// The model the agent's turns go to: its primary `"<provider>/<model>"` resolved against
/// `models.providers` (see [`providers`] for every key read).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRoute {
    /// The provider's id (the key under `models.providers`).
    pub provider: String,
    /// The model id sent to the provider.
    pub model: String,
    /// The provider's `baseUrl`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The provider's `apiKey`, else its usual environment variable's value.
    pub api_key: Option<Secret>,
    /// The wire API.
    pub api: ModelApi,
    /// Where the key is set, for error messages: `models.providers.<id>.apiKey (or VAR)`.
    pub key_hint: String,
    /// `headers` of the provider, then of the model entry (which wins), values resolved.
    pub headers: Vec<(String, Secret)>,
    /// `authHeader`: send the key in the API's auth header (default true).
    pub auth_header: bool,
    /// `max_tokens` for APIs that require it (the model's `maxTokens`, capped as upstream).
    pub max_tokens: u32,
    /// `timeoutSeconds`: replaces the first-byte and idle timeouts for this provider.
    pub timeout: Option<Duration>,
    /// The `baseUrl` is on this machine or a private network (longer default idle timeout).
    pub self_hosted: bool,
}

impl ModelRoute {
    /// An OpenAI-compatible route with no key, no headers and the defaults.
    pub fn new(provider: &str, model: &str, base_url: &str) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            base_url: base_url.into(),
            api_key: None,
            api: ModelApi::OpenAiCompletions,
            key_hint: format!("models.providers.{provider}.apiKey"),
            headers: Vec::new(),
            auth_header: true,
            max_tokens: DEFAULT_MAX_TOKENS,
            timeout: None,
            self_hosted: false,
        }
    }
}

/// Where the Control UI's files come from (`gateway.controlUi.root`, else an installed
/// `openclaw` package the host found).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UiRoot {
    /// `gateway.controlUi.root`.
    Configured(String),
    /// The `dist/control-ui` folder of an installed `openclaw` package.
    Installed(String),
    /// Neither: a built-in page says where to point `gateway.controlUi.root`.
    Missing,
}

impl UiRoot {
    /// The folder, if there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            UiRoot::Configured(p) | UiRoot::Installed(p) => Some(p),
            UiRoot::Missing => None,
        }
    }
}

/// The Control UI served on the gateway's port (`gateway.controlUi`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlUi {
    /// `gateway.controlUi.enabled` (default true).
    pub enabled: bool,
    /// `gateway.controlUi.basePath`, normalized: empty, or `/` and segments without a
    /// trailing `/`.
    pub base_path: String,
    /// Where its files are.
    pub root: UiRoot,
}

impl Default for ControlUi {
    fn default() -> Self {
        Self {
            enabled: true,
            base_path: String::new(),
            root: UiRoot::Missing,
        }
    }
}

/// upstream's `normalizeControlUiBasePath`: trimmed, no leading or trailing `/` runs, then
/// one leading `/` (empty stays empty).
pub fn normalize_base_path(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The resolved configuration of a running gateway.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub bind_host: IpAddr,
    /// Port to listen on.
    pub port: u16,
    /// The bind as the user named it (`loopback`, `lan`, …), for messages.
    pub bind_label: String,
    /// Auth mode in force.
    pub auth_mode: AuthMode,
    /// The shared secret of token or password mode.
    pub secret: Option<Secret>,
    /// Proxies whose forwarding headers are believed (`gateway.trustedProxies`: addresses
    /// and CIDR ranges).
    pub trusted_proxies: Vec<IpRange>,
    /// Entries of `gateway.trustedProxies` that are not an address or a range, each said
    /// with its key: as upstream's, they match no peer; the gateway warns of them.
    pub trusted_proxy_warnings: Vec<String>,
    /// Believe a trusted proxy's `X-Real-IP` when it sends no `X-Forwarded-For`
    /// (`gateway.allowRealIpFallback`, default false).
    pub allow_real_ip_fallback: bool,
    /// Browser origins allowed besides loopback ones (`scheme://host:port`).
    pub allowed_origins: Vec<String>,
    /// Let a Control UI without a device identity connect with the shared secret
    /// (`gateway.controlUi.allowInsecureAuth`).
    pub allow_insecure_control_ui: bool,
    /// The Control UI (`gateway.controlUi`).
    pub control_ui: ControlUi,
    /// Approve new devices on local connections without asking.
    pub auto_approve_local: bool,
    /// Node commands always allowed.
    pub node_commands_allow: Vec<String>,
    /// Node commands never allowed.
    pub node_commands_deny: Vec<String>,
    /// mDNS advertising.
    pub mdns: MdnsMode,
    /// Every limit.
    pub limits: Limits,
    /// Path of the config file, reported in `hello-ok`.
    pub config_path: String,
    /// State directory, reported in `hello-ok`.
    pub state_dir: String,
    /// Host name, for presence.
    pub host_name: String,
    /// Host label to advertise over mDNS instead of the host name (`OPENCLAW_MDNS_HOSTNAME`).
    pub mdns_host_name: Option<String>,
    /// Server version string.
    pub version: String,
    /// The parsed config file (`Null` when there is none), for `config.get` (redacted there).
    pub file: Value,
    /// Log every frame in and out (secrets masked) at trace level (`--verbose`; needs
    /// `log_level` at trace).
    pub log_frames: bool,
    /// The most detailed level the host writes: records below it are never formatted (info
    /// records are still kept for `logs.tail`).
    pub log_level: crate::log::Level,
    /// The agent's model; `None` runs the agent offline (every turn fails with a message
    /// naming the keys to set).
    pub model: Option<ModelRoute>,
    /// The agent's `identity`, for its system prompt.
    pub identity: AgentIdentity,
    /// Channels (`channels.telegram`), `session.dmScope`, `commands.ownerAllowFrom`.
    pub channels: crate::channels::config::ChannelsConfig,
    /// What a message does when its session already has a run (`messages.queue.mode`), unless
    /// the call names a `queueMode`.
    pub queue_mode: QueueMode,
    /// `tools.*`: tool search and the gateway host's `exec`.
    pub tools: tools::ToolsConfig,
    /// The MCP servers (`mcp.servers`).
    pub mcp: crate::tools::mcp::McpConfig,
    /// The skills the host found ([`crate::tools::skills::roots`]), by precedence.
    pub skills: Vec<crate::tools::skills::Skill>,
}

/// What a message does when its session already has a run in progress (upstream's queue
/// modes). Runs of one session never overlap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueMode {
    /// Steer the message into the active run. A turn here is one model request, which has no
    /// point to take a message in, so (as upstream does for a runtime that cannot steer) the
    /// message waits for the active run to end.
    #[default]
    Steer,
    /// Run the message after the active run ends.
    Followup,
    /// Coalesce the messages queued meanwhile into one later turn.
    Collect,
    /// Abort the active run (and drop what is queued), then run this message.
    Interrupt,
}

impl QueueMode {
    /// The mode's name, as `messages.queue.mode` and `queueMode` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueMode::Steer => "steer",
            QueueMode::Followup => "followup",
            QueueMode::Collect => "collect",
            QueueMode::Interrupt => "interrupt",
        }
    }
}

impl<'de> Deserialize<'de> for QueueMode {
    /// One of `steer`, `followup`, `collect`, `interrupt` (worded as upstream's validator
    /// words any other value).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = QueueMode;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<QueueMode, E> {
                match s {
                    "steer" => Ok(QueueMode::Steer),
                    "followup" => Ok(QueueMode::Followup),
                    "collect" => Ok(QueueMode::Collect),
                    "interrupt" => Ok(QueueMode::Interrupt),
                    _ => Err(E::custom("equal to one of the allowed values")),
                }
            }
        }
        d.deserialize_str(V)
    }
}

impl Config {
    /// A local-mode configuration with every default: loopback, no auth.
    pub fn local_default() -> Self {
        Self {
            bind_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            bind_label: "loopback".into(),
            auth_mode: AuthMode::None,
            secret: None,
            trusted_proxies: Vec::new(),
            trusted_proxy_warnings: Vec::new(),
            allow_real_ip_fallback: false,
            allowed_origins: Vec::new(),
            allow_insecure_control_ui: false,
            control_ui: ControlUi::default(),
            auto_approve_local: true,
            node_commands_allow: Vec::new(),
            node_commands_deny: Vec::new(),
            mdns: MdnsMode::Minimal,
            limits: Limits::default(),
            config_path: String::new(),
            state_dir: String::new(),
            host_name: "localhost".into(),
            mdns_host_name: None,
            version: env!("CARGO_PKG_VERSION").into(),
            file: Value::Null,
            log_frames: false,
            log_level: crate::log::Level::Debug,
            model: None,
            identity: AgentIdentity::default(),
            channels: Default::default(),
            queue_mode: QueueMode::Steer,
            tools: Default::default(),
            mcp: Default::default(),
            skills: Vec::new(),
        }
    }

    /// The same configuration in token mode with `token`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.auth_mode = AuthMode::Token;
        self.secret = Some(Secret::new(token));
        self
    }

    /// The same configuration in password mode with `password`.
    pub fn with_password(mut self, password: &str) -> Self {
        self.auth_mode = AuthMode::Password;
        self.secret = Some(Secret::new(password));
        self
    }

    /// Resolve flags, environment and config file into a configuration, or refuse to start.
    pub fn resolve(input: &ConfigInput) -> Result<Self, ConfigError> {
        let mut file = match &input.file_text {
            Some(text) => parse_file(text).map_err(|message| ConfigError::Parse {
                path: input.config_path.clone(),
                message,
            })?,
            None => Value::Null,
        };
        substitute_env(&mut file, &input.env);
        let gw = file.get("gateway").cloned().unwrap_or(Value::Null);
        let env = |k: &str| {
            input
                .env
                .get(k)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let mut cfg = Self::local_default();
        cfg.config_path = input.config_path.clone();
        cfg.state_dir = input.state_dir.clone();
        cfg.host_name = if input.host_name.is_empty() {
            "localhost".into()
        } else {
            input.host_name.clone()
        };
        cfg.file = file.clone();

        cfg.port = match (
            &input.flags.port,
            env("OPENCLAW_GATEWAY_PORT"),
            gw.get("port"),
        ) {
            (Some(p), _, _) => parse_port(p, "--port")?,
            (None, Some(p), _) => parse_port(p, "OPENCLAW_GATEWAY_PORT")?,
            (None, None, Some(v)) => parse_port(&json_scalar(v), "gateway.port")?,
            _ => DEFAULT_PORT,
        };

        let bind = input
            .flags
            .bind
            .clone()
            .or_else(|| str_at(&gw, &["bind"]))
            .unwrap_or_else(|| "loopback".into());
        cfg.bind_host = match bind.as_str() {
            "loopback" | "auto" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "lan" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "tailnet" => input.tailnet_ip.ok_or(ConfigError::NoTailnetAddress)?,
            "custom" => {
                let host = str_at(&gw, &["customBindHost"]).ok_or(ConfigError::Invalid {
                    key: "gateway.customBindHost",
                    message: "required when gateway.bind is custom".into(),
                })?;
                host.parse().map_err(|_| ConfigError::Invalid {
                    key: "gateway.customBindHost",
                    message: format!("not an IP address: {host}"),
                })?
            }
            other => {
                return Err(ConfigError::Invalid {
                    key: "gateway.bind",
                    message: format!(
                        "unknown bind '{other}' (loopback, lan, tailnet, auto, custom)"
                    ),
                });
            }
        };
        cfg.bind_label = bind;

        let token = pick_secret(&[
            (input.flags.token.as_deref(), "--token"),
            (env("OPENCLAW_GATEWAY_TOKEN"), "OPENCLAW_GATEWAY_TOKEN"),
            (
                str_at(&gw, &["auth", "token"]).as_deref(),
                "gateway.auth.token",
            ),
        ])?;
        let password = pick_secret(&[
            (input.flags.password.as_deref(), "--password"),
            (
                input.flags.password_file_text.as_deref().map(str::trim_end),
                "--password-file",
            ),
            (
                env("OPENCLAW_GATEWAY_PASSWORD"),
                "OPENCLAW_GATEWAY_PASSWORD",
            ),
            (
                str_at(&gw, &["auth", "password"]).as_deref(),
                "gateway.auth.password",
            ),
        ])?;
        let mode = input
            .flags
            .auth
            .clone()
            .or_else(|| str_at(&gw, &["auth", "mode"]));
        cfg.auth_mode = match mode.as_deref() {
            Some("none") => AuthMode::None,
            Some("token") => AuthMode::Token,
            Some("password") => AuthMode::Password,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "gateway.auth.mode",
                    message: format!("unknown auth mode '{other}' (none, token, password)"),
                });
            }
            None if token.is_some() => AuthMode::Token,
            None if password.is_some() => AuthMode::Password,
            None => AuthMode::None,
        };
        cfg.secret = match cfg.auth_mode {
            AuthMode::None => None,
            AuthMode::Token => Some(token.ok_or(ConfigError::MissingSecret {
                mode: "token",
                key: "gateway.auth.token",
            })?),
            AuthMode::Password => Some(password.ok_or(ConfigError::MissingSecret {
                mode: "password",
                key: "gateway.auth.password",
            })?),
        };
        if cfg.secret.is_none() && !cfg.bind_host.is_loopback() {
            return Err(ConfigError::RefuseBindWithoutAuth {
                bind: cfg.bind_label.clone(),
            });
        }

        (cfg.trusted_proxies, cfg.trusted_proxy_warnings) = trusted_proxies(&gw);
        if let Some(Value::Bool(b)) = at(&gw, &["allowRealIpFallback"]) {
            cfg.allow_real_ip_fallback = *b;
        }
        cfg.allowed_origins = str_list(&gw, &["controlUi", "allowedOrigins"]);
        cfg.node_commands_allow = str_list(&gw, &["nodes", "commands", "allow"]);
        cfg.node_commands_deny = str_list(&gw, &["nodes", "commands", "deny"]);
        if let Some(Value::Bool(b)) = at(&gw, &["controlUi", "allowInsecureAuth"]) {
            cfg.allow_insecure_control_ui = *b;
        }
        if let Some(Value::Bool(b)) = at(&gw, &["controlUi", "enabled"]) {
            cfg.control_ui.enabled = *b;
        }
        if let Some(p) = str_at(&gw, &["controlUi", "basePath"]) {
            cfg.control_ui.base_path = normalize_base_path(&p);
        }
        if let Some(root) = str_at(&gw, &["controlUi", "root"]).filter(|r| !r.trim().is_empty()) {
            cfg.control_ui.root = UiRoot::Configured(root);
        }
        if let Some(Value::Bool(b)) = at(&gw, &["nodes", "pairing", "autoApproveLocal"]) {
            cfg.auto_approve_local = *b;
        }
        cfg.mdns = match str_at(&file, &["discovery", "mdns", "mode"]).as_deref() {
            Some("off") => MdnsMode::Off,
            Some("full") => MdnsMode::Full,
            _ => MdnsMode::Minimal,
        };
        if env("OPENCLAW_DISABLE_BONJOUR").is_some_and(|v| v != "0" && v != "false") {
            cfg.mdns = MdnsMode::Off;
        }
        cfg.mdns_host_name = env("OPENCLAW_MDNS_HOSTNAME").map(str::to_string);
        let limits = &mut cfg.limits;
        if let Some(ms) = env("OPENCLAW_HANDSHAKE_TIMEOUT_MS") {
            limits.handshake_timeout =
                Duration::from_millis(parse_num(ms, "OPENCLAW_HANDSHAKE_TIMEOUT_MS")?);
        }
        if let Some(n) = env("OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP") {
            limits.max_preauth_per_ip =
                parse_num(n, "OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP")? as usize;
        }
        if let Some(n) = num_at(&gw, &["maxConnections"], "gateway.maxConnections")? {
            limits.max_connections = n as usize;
        }
        if let Some(n) = num_at(&gw, &["maxPayloadBytes"], "gateway.maxPayloadBytes")? {
            limits.max_payload = n as usize;
        }
        if let Some(n) = num_at(&gw, &["maxBufferedBytes"], "gateway.maxBufferedBytes")? {
            limits.max_buffered_bytes = n as usize;
        }
        if let Some(n) = num_at(
            &gw,
            &["maxBufferedBytesTotal"],
            "gateway.maxBufferedBytesTotal",
        )? {
            limits.max_buffered_bytes_total = n as usize;
        }
        if let Some(n) = num_at(&gw, &["tickIntervalMs"], "gateway.tickIntervalMs")? {
            limits.tick_interval = Duration::from_millis(n.max(1));
        }
        let rl = ["auth", "rateLimit"];
        if let Some(n) = num_at(
            &gw,
            &[rl[0], rl[1], "maxAttempts"],
            "gateway.auth.rateLimit.maxAttempts",
        )? {
            limits.auth_max_attempts = n as u32;
        }
        if let Some(n) = num_at(
            &gw,
            &[rl[0], rl[1], "windowMs"],
            "gateway.auth.rateLimit.windowMs",
        )? {
            limits.auth_window = Duration::from_millis(n);
        }
        if let Some(n) = num_at(
            &gw,
            &[rl[0], rl[1], "lockoutMs"],
            "gateway.auth.rateLimit.lockoutMs",
        )? {
            limits.auth_lockout = Duration::from_millis(n);
        }
        if let Some(Value::Bool(b)) = at(&gw, &[rl[0], rl[1], "exemptLoopback"]) {
            limits.auth_exempt_loopback = *b;
        }
        cfg.model = providers::model_route(&file, &input.env)?;
        cfg.identity = providers::agent_identity(&file);
        let sources = crate::channels::config::Sources {
            env: &input.env,
            files: &input.secret_files,
        };
        cfg.channels = crate::channels::config::resolve(&file, &sources)?;
        cfg.mcp = crate::tools::mcp::config::resolve(&file)?;
        let queue = at(&file, &["messages", "queue"])
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(mode) = at(&queue, &["mode"]).filter(|v| !v.is_null()) {
            cfg.queue_mode = QueueMode::deserialize(mode).map_err(|_| ConfigError::Invalid {
                key: "messages.queue.mode",
                message: format!("must be one of steer, followup, collect, interrupt; got {mode}"),
            })?;
        }
        cfg.tools = tools::resolve(&file, &mut cfg.limits)?;
        cfg.limits.max_concurrent_runs = default_concurrent_runs(input.cpu_parallelism);
        let key = "agents.defaults.maxConcurrent";
        if let Some(n) = num_at(&file, &["agents", "defaults", "maxConcurrent"], key)? {
            if n < 1 {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("must be at least 1, got {n}"),
                });
            }
            cfg.limits.max_concurrent_runs = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = num_at(&queue, &["cap"], "messages.queue.cap")? {
            // Upstream ignores a cap below 1.
            if n >= 1 {
                cfg.limits.max_queued_runs = n as usize;
            }
        }
        Ok(cfg)
    }
}

/// Everything the gateway's configuration is resolved from. The shell reads the files and
/// the environment and hands them in as data.
#[derive(Clone, Debug, Default)]
pub struct ConfigInput {
    /// Text of the config file, if it exists.
    pub file_text: Option<String>,
    /// Path of the config file (for messages and `hello-ok`).
    pub config_path: String,
    /// State directory.
    pub state_dir: String,
    /// The process environment.
    pub env: BTreeMap<String, String>,
    /// Command-line flags of `gateway run`.
    pub flags: RunFlags,
    /// The machine's tailnet address, if it has one.
    pub tailnet_ip: Option<IpAddr>,
    /// The machine's host name.
    pub host_name: String,
    /// The files the config names for secrets (`channels.telegram.tokenFile`), read by the
    /// shell: path → text, or why it could not be read.
    pub secret_files: BTreeMap<String, Result<String, String>>,
    /// Threads the machine runs at once (the default of `agents.defaults.maxConcurrent`
    /// follows it); 0 when unknown.
    pub cpu_parallelism: usize,
}

/// Flags of `gateway run` that affect configuration.
#[derive(Clone, Debug, Default)]
pub struct RunFlags {
    /// `--port`.
    pub port: Option<String>,
    /// `--bind`.
    pub bind: Option<String>,
    /// `--auth`.
    pub auth: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// Contents of the file named by `--password-file`.
    pub password_file_text: Option<String>,
}

/// Why the gateway refuses to start. The shells exit 78 on every variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A non-loopback bind with no shared secret.
    #[error("Refusing to bind gateway to {bind} without auth.")]
    RefuseBindWithoutAuth {
        /// The bind as named by the user.
        bind: String,
    },
    /// The config file is not valid JSON5.
    #[error("config file {path} is not valid JSON5: {message}")]
    Parse {
        /// Path of the file.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A secret is blank or an obvious placeholder.
    #[error("{source_name} is a placeholder ({value:?}); set a real secret")]
    PlaceholderSecret {
        /// Where the secret came from (`--token`, `gateway.auth.token`, …).
        source_name: &'static str,
        /// The refused value.
        value: String,
    },
    /// The auth mode needs a secret that is not configured.
    #[error("auth mode {mode} needs a secret: set {key}, or pass it on the command line")]
    MissingSecret {
        /// The auth mode.
        mode: &'static str,
        /// The config key to set.
        key: &'static str,
    },
    /// `--bind tailnet` on a machine with no tailnet address.
    #[error("gateway.bind is tailnet but this machine has no tailnet (100.64.0.0/10) address")]
    NoTailnetAddress,
    /// A value under a key named at run time (`models.providers.<id>.api`) has the wrong form.
    #[error("{key}: {message}")]
    InvalidAt {
        /// The config key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value has the wrong form.
    #[error("{key}: {message}")]
    Invalid {
        /// The config key or flag.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

const PLACEHOLDERS: &[&str] = &[
    "undefined",
    "null",
    "none",
    "changeme",
    "change-me",
    "change_me",
    "your-token",
    "your_token",
    "yourtoken",
    "your-password",
    "your_password",
    "<token>",
    "<password>",
    "token",
    "password",
    "secret",
    "xxx",
    "todo",
    "replace-me",
    "replace_me",
    "example",
    "${openclaw_gateway_token}",
];

/// Whether a secret value is blank or a well-known placeholder.
pub fn is_placeholder_secret(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.is_empty() || PLACEHOLDERS.contains(&v.as_str()) || (v.starts_with('<') && v.ends_with('>'))
}

fn pick_secret(candidates: &[(Option<&str>, &'static str)]) -> Result<Option<Secret>, ConfigError> {
    for (value, source_name) in candidates {
        if let Some(v) = value {
            if is_placeholder_secret(v) {
                return Err(ConfigError::PlaceholderSecret {
                    source_name,
                    value: (*v).to_string(),
                });
            }
            return Ok(Some(Secret::new(v)));
        }
    }
    Ok(None)
}

/// Parse a config file's text (JSON5: comments and trailing commas allowed).
pub fn parse_file(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = json5::from_str(text).map_err(|e| e.to_string())?;
    if !v.is_object() {
        return Err("top level must be an object".into());
    }
    Ok(v)
}

/// The value at a key path of a JSON object.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The string at a key path, if it is a string.
pub fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path).and_then(Value::as_str).map(str::to_string)
}

/// `gateway.trustedProxies`: its address ranges, and for each entry that is not one a
/// warning naming its key (upstream reads past such entries: they match no peer).
fn trusted_proxies(gw: &Value) -> (Vec<IpRange>, Vec<String>) {
    let entries = match at(gw, &["trustedProxies"]) {
        Some(Value::Array(entries)) => entries.as_slice(),
        _ => &[],
    };
    let mut ranges = Vec::new();
    let mut warnings = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match json_scalar(entry).parse() {
            Ok(range) => ranges.push(range),
            Err(e) => warnings.push(format!(
                "gateway.trustedProxies[{i}]: {e}; it matches no proxy"
            )),
        }
    }
    (ranges, warnings)
}

/// The strings of the array at a key path (anything else in it skipped).
pub(crate) fn str_list(v: &Value, path: &[&str]) -> Vec<String> {
    match at(v, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn json_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn num_at(
    v: &Value,
    path: &[&str],
    key: &'static str,
) -> Result<Option<u64>, ConfigError> {
    match at(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_u64().map(Some).ok_or(ConfigError::Invalid {
            key,
            message: format!("must be a non-negative integer, got {n}"),
        }),
    }
}

fn parse_num(s: &str, key: &'static str) -> Result<u64, ConfigError> {
    s.trim().parse().map_err(|_| ConfigError::Invalid {
        key,
        message: format!("must be a non-negative integer, got {s:?}"),
    })
}

fn parse_port(s: &str, key: &'static str) -> Result<u16, ConfigError> {
    s.trim().parse().map_err(|_| ConfigError::Invalid {
        key,
        message: format!("not a port number: {s:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(file: Option<&str>, env: &[(&str, &str)], flags: RunFlags) -> ConfigInput {
        ConfigInput {
            file_text: file.map(str::to_string),
            config_path: "/x/openclaw.json".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags,
            ..Default::default()
        }
    }

    #[test]
    fn no_config_is_local_mode() {
        let c = Config::resolve(&input(None, &[], RunFlags::default())).unwrap();
        assert_eq!(c.port, 18789);
        assert!(c.bind_host.is_loopback());
        assert_eq!(c.auth_mode, AuthMode::None);
    }

    #[test]
    fn lan_without_secret_is_refused() {
        let flags = RunFlags {
            bind: Some("lan".into()),
            ..Default::default()
        };
        let e = Config::resolve(&input(None, &[], flags)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Refusing to bind gateway to lan without auth."
        );
    }

    #[test]
    fn port_precedence() {
        let file = Some(
            r#"{gateway: {port: 1111,}, // json5
        }"#,
        );
        let c = Config::resolve(&input(file, &[], RunFlags::default())).unwrap();
        assert_eq!(c.port, 1111);
        let c = Config::resolve(&input(
            file,
            &[("OPENCLAW_GATEWAY_PORT", "2222")],
            RunFlags::default(),
        ))
        .unwrap();
        assert_eq!(c.port, 2222);
        let flags = RunFlags {
            port: Some("3333".into()),
            ..Default::default()
        };
        let c = Config::resolve(&input(file, &[("OPENCLAW_GATEWAY_PORT", "2222")], flags)).unwrap();
        assert_eq!(c.port, 3333);
    }

    #[test]
    fn token_sources_and_placeholders() {
        let file = Some(r#"{"gateway":{"auth":{"token":"fromfile"}}}"#);
        let c = Config::resolve(&input(
            file,
            &[("OPENCLAW_GATEWAY_TOKEN", "fromenv")],
            RunFlags::default(),
        ))
        .unwrap();
        assert_eq!(c.auth_mode, AuthMode::Token);
        assert!(c.secret.as_ref().unwrap().matches("fromenv"));
        let flags = RunFlags {
            token: Some("undefined".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::resolve(&input(None, &[], flags)),
            Err(ConfigError::PlaceholderSecret {
                source_name: "--token",
                ..
            })
        ));
        let flags = RunFlags {
            auth: Some("token".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::resolve(&input(None, &[], flags)),
            Err(ConfigError::MissingSecret { .. })
        ));
    }

    #[test]
    fn bad_json5_names_the_file() {
        let e = Config::resolve(&input(Some("{gateway:"), &[], RunFlags::default())).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { ref path, .. } if path == "/x/openclaw.json"));
    }

    fn resolve(file: &str) -> Result<Config, ConfigError> {
        Config::resolve(&input(Some(file), &[], RunFlags::default()))
    }

    #[test]
    fn the_primary_model_resolves_against_its_provider() {
        let providers = r#""models":{"providers":{"fake":{"baseUrl":"http://127.0.0.1:9/v1","api":"openai-completions","apiKey":"sk-1","models":[{"id":"fake-1"}]}}}"#;
        let c = resolve(&format!(
            r#"{{{providers},"agents":{{"defaults":{{"model":{{"primary":"fake/fake-1"}}}}}}}}"#
        ))
        .unwrap();
        let m = c.model.unwrap();
        assert_eq!((m.provider.as_str(), m.model.as_str()), ("fake", "fake-1"));
        assert_eq!(m.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(
            m.api_key.map(|k| k.expose().to_string()).as_deref(),
            Some("sk-1")
        );
        let plain = resolve(&format!(
            r#"{{{providers},"agents":{{"defaults":{{"model":"fake/a/b"}}}}}}"#
        ));
        assert_eq!(plain.unwrap().model.unwrap().model, "a/b");
        assert_eq!(resolve(&format!("{{{providers}}}")).unwrap().model, None);
    }

    #[test]
    fn bad_model_config_names_the_key() {
        let e = resolve(r#"{"agents":{"defaults":{"model":{"primary":"nope/m"}}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agents.defaults.model.primary: names provider \"nope\""),
            "{e}"
        );
        let e = resolve(
            r#"{"models":{"providers":{"x":{"baseUrl":"http://u","api":"google-generative-ai"}}}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("models.providers.x.api: unsupported"),
            "{e}"
        );
        let e = resolve(r#"{"models":{"providers":{"x":{}}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("models.providers.x.baseUrl: required"),
            "{e}"
        );
        let e = resolve(r#"{"agents":{"defaults":{"model":"fake"}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agents.defaults.model.primary: must be"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_outside_gateway_are_ignored() {
        let file = Some(r#"{"agents":{"x":1},"models":[1,2],"gateway":{"port":4444}}"#);
        assert_eq!(
            Config::resolve(&input(file, &[], RunFlags::default()))
                .unwrap()
                .port,
            4444
        );
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_and_name_what_is_neither() {
        let c = resolve(
            r#"{"gateway":{"trustedProxies":["10.0.0.1", "172.16.0.0/12", "::1/128", "proxy.lan", "10.0.0.0/33", 7]}}"#,
        )
        .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.1", "172.16.0.0/12", "::1/128"]);
        assert_eq!(
            c.trusted_proxy_warnings,
            [
                "gateway.trustedProxies[3]: \"proxy.lan\" is not an IP address or a CIDR range; it matches no proxy",
                "gateway.trustedProxies[4]: \"10.0.0.0/33\" is not an IP address or a CIDR range; it matches no proxy",
                "gateway.trustedProxies[5]: \"7\" is not an IP address or a CIDR range; it matches no proxy",
            ]
        );
    }

    #[test]
    fn max_concurrent_defaults_to_the_cpus_and_comes_from_agents_defaults() {
        let mut i = input(Some("{}"), &[], RunFlags::default());
        i.cpu_parallelism = 4;
        assert_eq!(Config::resolve(&i).unwrap().limits.max_concurrent_runs, 16);
        i.cpu_parallelism = 0;
        assert_eq!(Config::resolve(&i).unwrap().limits.max_concurrent_runs, 8);
        let c = resolve(r#"{"agents":{"defaults":{"maxConcurrent":1}}}"#).unwrap();
        assert_eq!(c.limits.max_concurrent_runs, 1);
        let e = resolve(r#"{"agents":{"defaults":{"maxConcurrent":0}}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("agents.defaults.maxConcurrent"),
            "{e}"
        );
    }

    #[test]
    fn the_queue_mode_and_cap_come_from_messages_queue() {
        let c = resolve(r#"{"messages":{"queue":{"mode":"collect","cap":3}}}"#).unwrap();
        assert_eq!(c.queue_mode, QueueMode::Collect);
        assert_eq!(c.limits.max_queued_runs, 3);
        let c = resolve(r#"{"messages":{"queue":{"cap":0}}}"#).unwrap();
        assert_eq!(c.queue_mode, QueueMode::Steer, "upstream's default");
        assert_eq!(c.limits.max_queued_runs, 20, "a cap below 1 is ignored");
        let e = resolve(r#"{"messages":{"queue":{"mode":"later"}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("messages.queue.mode: must be one of")
        );
    }
}
