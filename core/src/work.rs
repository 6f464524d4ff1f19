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
    /// is on disk is always a prefix of what the core asked for.
    Store(Vec<StoreChange>),
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
    /// was cancelled (the error, for the user and the log).
    HttpEnd(Result<(), String>),
    /// The outcome of a [`Work::ReadFile`].
    File(Result<FileChunk, FileError>),
    /// What a [`Work::ReadHistory`] found, or why the store could not read it.
    History(Result<HistoryPage, String>),
    /// A line a [`Work::Spawn`] process wrote to stdout.
    ProcessLine(Vec<u8>),
    /// The [`Work::Spawn`] process exited, was killed, or could not start (how, for the log).
    ProcessExited(String),
}
