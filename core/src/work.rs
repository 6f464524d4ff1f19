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
    /// What a [`Work::ReadHistory`] found, or why the store could not read it.
    History(Result<HistoryPage, String>),
}
