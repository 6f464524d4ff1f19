//! The ways a benchmark run can fail.

use std::io;

/// A benchmark step that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A socket, file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A bounded wait ran out.
    #[error("{0}: timed out")]
    Timeout(String),
    /// A server process exited while it was being measured.
    #[error("{0} exited early")]
    ServerExited(String),
    /// The peer answered something the benchmark cannot go on with.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The gateway lacks what the step needs (upstream without a channel's plugin).
    #[error("{0}")]
    Unavailable(String),
    /// The command line was wrong.
    #[error("usage: {0}")]
    Usage(String),
}

/// Attach a context to an I/O result.
pub trait Context<T> {
    /// Map an I/O error into [`BenchError::Io`] with `context`.
    fn context(self, context: impl Into<String>) -> Result<T, BenchError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T, BenchError> {
        self.map_err(|source| BenchError::Io {
            context: context.into(),
            source,
        })
    }
}
