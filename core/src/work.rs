//! Work the core wants done that is not a socket write. It leaves as [`Output::Work`] with a
//! [`WorkId`]; the host does it off the event-loop thread and hands the outcome back with
//! [`Gateway::handle_work_result`] and the same id. Requests and results are plain data, so a
//! test or a fuzzer can answer them without threads.
//!
//! [`Output::Work`]: crate::Output::Work
//! [`Gateway::handle_work_result`]: crate::Gateway::handle_work_result

use crate::persist::StoreChange;

/// Names one piece of work, unique for the gateway's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkId(pub u64);

/// What the core asks the host to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Work {
    /// Commit these changes to the durable store in one transaction, in the order the batches
    /// were asked for. A host that fails a batch must fail every later batch until one that
    /// starts with [`StoreChange::ClearPairing`] (the core's rewrite after a failure), so what
    /// is on disk is always a prefix of what the core asked for.
    Store(Vec<StoreChange>),
}

/// The outcome of a piece of [`Work`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkResult {
    /// The [`Work::Store`] batch is durable (`Ok`), or nothing of it was written (the error,
    /// for the log).
    Stored(Result<(), String>),
}
