//! Work the core wants done that is not a socket write. It leaves as [`Output::Work`] with a
//! [`WorkId`]; the host does it off the event-loop thread and hands the outcome back with
//! [`Gateway::handle_work_result`] and the same id. Requests and results are plain data, so a
//! test or a fuzzer can answer them without threads.
//!
//! [`Output::Work`]: crate::Output::Work
//! [`Gateway::handle_work_result`]: crate::Gateway::handle_work_result

use crate::model::HttpRequest;
use crate::persist::{HistoryPage, HistoryQuery, StoreChange};

/// Names one piece of work, unique for the gateway's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkId(pub u64);

/// What the core asks the host to do.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Work {
    /// Commit these changes to the durable store in one transaction, in the order the batches
    /// were asked for. A host that fails a batch must fail every later batch until one that
    /// starts with [`StoreChange::ClearPairing`] (the core's rewrite after a failure), so what
    /// is on disk is always a prefix of what the core asked for. A host may commit several
    /// batches in one transaction (all of them or none) and report them together.
    Store {
        /// The changes, in order.
        changes: Vec<StoreChange>,
        /// The next batch is expected at once: a gated channel turn's message, its model
        /// request already out, whose answer the core processes while this batch is in
        /// flight. A host may wait a short bound for the next batch before committing this
        /// one, and commit both in one transaction (one sync instead of two in series);
        /// any other batch it commits at once.
        linger: bool,
    },
    /// Perform this HTTP request off the loop (a model provider's stream, later a channel's
    /// API) and stream the response back with this work's id: one [`WorkResult::HttpHead`],
    /// then [`WorkResult::HttpBody`] chunks as they arrive (transfer framing removed), then
    /// exactly one [`WorkResult::HttpEnd`]. A failure before the head is just the end.
    Http(HttpRequest),
    /// Stop the [`Work::Http`] with this id if it is still running; its `HttpEnd` (an error
    /// saying it was cancelled) still comes, unless it had already ended.
    Cancel(WorkId),
    /// Read part of a session's transcript from the durable store, after every
    /// [`Work::Store`] batch asked for before it (the store's writer does both, in order), and
    /// answer with [`WorkResult::History`].
    ReadHistory(HistoryQuery),
    /// Read part of a file under a directory (a Control UI asset): one
    /// [`WorkResult::File`] answers it.
    ReadFile(FileRead),
    /// Open an outbound WebSocket client connection (a channel's socket), named by this
    /// work's id from now on: [`WorkResult::WsOpened`], then [`WorkResult::WsText`] per text
    /// message, then exactly one [`WorkResult::WsClosed`] (a failure before the open is just
    /// that end).
    WsOpen(WsOpen),
    /// Send a text frame on the socket opened by the [`Work::WsOpen`] with id `socket`
    /// (ignored once it is closed).
    WsSend {
        /// The socket's [`Work::WsOpen`] id.
        socket: WorkId,
        /// The frame's text.
        text: String,
    },
    /// Close the socket opened by the [`Work::WsOpen`] with id `socket` with this code; its
    /// [`WorkResult::WsClosed`] still comes, unless it had already ended.
    WsClose {
        /// The socket's [`Work::WsOpen`] id.
        socket: WorkId,
        /// The close code sent.
        code: u16,
    },
    /// Run a shell command on the gateway host (the `exec` tool, once policy allowed it):
    /// one [`WorkResult::Exec`] answers it. [`Work::Cancel`] with this id kills it.
    Exec(ExecRequest),
    /// Describe the machine the gateway runs on (`system.info`): one
    /// [`WorkResult::Machine`] answers it.
    DescribeMachine,
    /// Start a child process (an MCP stdio server) that lives until it exits or a
    /// [`Work::Cancel`] with this id kills it: each line it writes to stdout comes back as a
    /// [`WorkResult::ProcessLine`] with this id (without the newline; a line over the
    /// host's bound is cut), its stderr goes to the log, and exactly one
    /// [`WorkResult::ProcessExited`] ends it (a failure to start included).
    Spawn(ProcessSpec),
    /// Write `line` and a newline to the stdin of the [`Work::Spawn`] `process`. No result: a
    /// failed write shows as the process's exit.
    WriteLine {
        /// The id of the [`Work::Spawn`].
        process: WorkId,
        /// The bytes, without the newline.
        line: Vec<u8>,
    },
    /// Change `openclaw.json` (read it, apply the edit, write it back atomically, off the
    /// event loop): one [`WorkResult::ConfigEdited`] answers it.
    EditConfig(crate::config::edit::ConfigEdit),
}

/// A [`Work::WsOpen`]: where to connect and what to send in the upgrade.
#[derive(Clone, PartialEq, Eq)]
pub struct WsOpen {
    /// `wss://` (TLS through rustls) or `ws://` (loopback addresses only).
    pub url: String,
    /// Extra upgrade request headers.
    pub headers: Vec<(String, String)>,
    /// The largest message read; a larger one closes the socket.
    pub max_message: usize,
}

impl std::fmt::Debug for WsOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may carry tokens: only their names reach a log.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WsOpen")
            .field("url", &self.url)
            .field("headers", &names)
            .field("max_message", &self.max_message)
            .finish()
    }
}

/// A [`Work::Exec`]: `sh -c command` in its own process group, stdin empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The shell command.
    pub command: String,
    /// The working directory (the gateway's own when `None`).
    pub cwd: Option<String>,
    /// Kill the process group after this long.
    pub timeout: core::time::Duration,
    /// Keep at most this many bytes of output (stdout then stderr); the rest is read and
    /// dropped.
    pub max_output_bytes: usize,
}

/// What a [`Work::Exec`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (`None` when a signal ended it).
    pub exit_code: Option<i32>,
    /// Standard output then standard error, lossily decoded, at most the bound.
    pub output: String,
    /// Output past the bound was dropped.
    pub truncated: bool,
    /// It was killed at its timeout.
    pub timed_out: bool,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

/// What a [`Work::DescribeMachine`] found; what the host could not read stays empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// The host name.
    pub hostname: String,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The gateway's process id.
    pub pid: u32,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// The CPU's model name.
    pub cpu_model: Option<String>,
    /// The 1, 5 and 15 minute load averages, in thousandths.
    pub load_milli: Option<[u64; 3]>,
    /// Total memory in bytes.
    pub memory_total_bytes: u64,
    /// Memory available to new work, in bytes.
    pub memory_free_bytes: u64,
}

/// A [`Work::Spawn`]: what to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program (looked up on `PATH` when it has no `/`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables added to the gateway's own.
    pub env: Vec<(String, String)>,
    /// The working directory (the gateway's own when `None`).
    pub cwd: Option<String>,
}

/// A [`Work::ReadFile`]: the first of `candidates` that is a regular file inside `root` once
/// symlinks are resolved, read from `offset`. A candidate that is missing, not a regular
/// file, or resolves outside `root` is skipped as if absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRead {
    /// The directory every file must stay inside.
    pub root: String,
    /// Paths relative to `root` (`/`-separated, without `.` or `..` segments), in order of
    /// preference.
    pub candidates: Vec<String>,
    /// Where to start reading.
    pub offset: u64,
    /// Read at most this many bytes (fewer only at the end of the file).
    pub max_len: usize,
}

/// What a [`Work::ReadFile`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChunk {
    /// Which of the candidates was read.
    pub index: usize,
    /// The file's size in bytes.
    pub size: u64,
    /// Its modification time, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// The bytes from the requested offset (empty at or past the end).
    pub data: Vec<u8>,
}

/// Why a [`Work::Http`] failed: what kind of failure (for the rules that depend on it, such
/// as Telegram's transport fallback) and its text (for the user and the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    /// What kind of failure.
    pub kind: HttpErrorKind,
    /// What happened, naming the host.
    pub message: String,
}

impl HttpError {
    /// A failure of this kind, saying `message`.
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        HttpError {
            kind,
            message: message.into(),
        }
    }
}

/// What kind of failure ended a [`Work::Http`] (Node's error codes in brackets: what
/// upstream's rules look at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The host name did not resolve (`ENOTFOUND`, `EAI_AGAIN`).
    Lookup,
    /// Opening the connection (the lookup, connecting, the TLS handshake) did not end in
    /// time, or an address's attempt timed out (`UND_ERR_CONNECT_TIMEOUT`, `ETIMEDOUT`).
    TimedOut,
    /// The network or the host cannot be reached, or the network is down (`ENETUNREACH`,
    /// `EHOSTUNREACH`, `ENETDOWN`).
    Unreachable,
    /// Every address refused the connection, or failed for a reason not above
    /// (`ECONNREFUSED`).
    Refused,
    /// The TLS handshake failed (a certificate not valid for the name, an alert).
    Tls,
    /// The server closed the connection before the response ended (undici's
    /// `UND_ERR_SOCKET`, "other side closed").
    Closed,
    /// The open connection was reset or broke (`ECONNRESET`, `EPIPE`).
    Reset,
    /// No byte came within the idle timeout (`UND_ERR_HEADERS_TIMEOUT`,
    /// `UND_ERR_BODY_TIMEOUT`).
    IdleTimeout,
    /// The response broke HTTP/1.1 or a limit.
    Protocol,
    /// The request was cancelled.
    Cancelled,
    /// The request could not be made (its URL, no thread, another local failure).
    Other,
}

/// Why a [`Work::ReadFile`] read nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// No candidate is a regular file inside the root.
    #[error("not found")]
    NotFound,
    /// Reading failed (the OS error, for the log).
    #[error("read failed: {0}")]
    Io(String),
}

impl WorkResult {
    /// Whether this is the last result of its work (an HTTP head or body piece, or a
    /// process's line, is not).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            WorkResult::HttpHead { .. } | WorkResult::HttpBody(_) | WorkResult::ProcessLine(_)
        )
    }
}

/// The outcome of a piece of [`Work`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkResult {
    /// The [`Work::Store`] batch is durable (`Ok`), or nothing of it was written (the error,
    /// for the log).
    Stored(Result<(), String>),
    /// The status and headers of a [`Work::Http`] response.
    HttpHead {
        /// The HTTP status code.
        status: u16,
        /// Header names (lowercase) and values, in order.
        headers: Vec<(String, String)>,
    },
    /// The next bytes of a [`Work::Http`] response body.
    HttpBody(Vec<u8>),
    /// The [`Work::Http`] is over: the body ended (`Ok`), or the request failed, timed out or
    /// was cancelled (what kind of failure, and its text for the user and the log).
    HttpEnd(Result<(), HttpError>),
    /// The outcome of a [`Work::ReadFile`].
    File(Result<FileChunk, FileError>),
    /// What a [`Work::ReadHistory`] found, or why the store could not read it.
    History(Result<HistoryPage, String>),
    /// The [`Work::WsOpen`]'s upgrade succeeded.
    WsOpened,
    /// A text message arrived on the socket (binary messages are not passed on).
    WsText(String),
    /// The socket is over: the peer's close frame (`code`, `reason`), or `code: None` when it
    /// failed, could not be opened or was closed by a [`Work::WsClose`] (`reason` says which).
    WsClosed {
        /// The peer's close code, when it sent one.
        code: Option<u16>,
        /// The close reason, or what went wrong.
        reason: String,
    },
    /// What a [`Work::Exec`] did, or why it could not start (or was cancelled).
    Exec(Result<ExecOutput, String>),
    /// What a [`Work::DescribeMachine`] found.
    Machine(MachineInfo),
    /// A line a [`Work::Spawn`] process wrote to stdout.
    ProcessLine(Vec<u8>),
    /// The [`Work::Spawn`] process exited, was killed, or could not start (how, for the log).
    ProcessExited(String),
    /// What a [`Work::EditConfig`] did to the file, or why it could not.
    ConfigEdited(Result<crate::config::edit::Edited, String>),
}
