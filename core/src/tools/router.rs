//! The tool router's state: the providers, the calls in flight (who waits for each and
//! until when), and which piece of work belongs to which provider. The gateway composes it
//! ([`Gateway`](crate::Gateway) dispatches calls and delivers outcomes in `tools::dispatch`).

use std::collections::HashMap;
use std::time::Instant;

use crate::conn::ConnId;
use crate::work::WorkId;

use super::provider::{CallId, ToolProvider};

/// Who waits for a call's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallOwner {
    /// A `tools.invoke` request: the outcome is its response.
    Invoke {
        /// The caller.
        conn: ConnId,
        /// Its request id.
        req: String,
    },
}

/// Which code runs a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    /// A provider, by index.
    Provider(usize),
}

/// One call in flight.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Who waits.
    pub(crate) owner: CallOwner,
    /// Which code runs it.
    pub(crate) handler: Handler,
    /// The tool's name (for logs).
    pub(crate) name: String,
    /// When it is given up.
    pub(crate) deadline: Instant,
}

/// The providers and the calls in flight.
#[derive(Debug, Default)]
pub struct ToolRouter {
    /// The sources of tools beyond the built-in ones.
    pub(crate) providers: Vec<Box<dyn ToolProvider>>,
    /// Calls in flight.
    pub(crate) calls: HashMap<CallId, Pending>,
    /// Work asked for by a provider: its index and token.
    pub(crate) work: HashMap<WorkId, (usize, u64)>,
    /// The same, the other way (to cancel a provider's work by its token).
    pub(crate) tokens: HashMap<(usize, u64), WorkId>,
    /// The earliest wake-up each provider asked for.
    pub(crate) wakes: HashMap<usize, Instant>,
    next_call: u64,
}

impl ToolRouter {
    /// Add a source of tools.
    pub fn add_provider(&mut self, p: Box<dyn ToolProvider>) {
        self.providers.push(p);
    }

    /// A new call id.
    pub(crate) fn next_call(&mut self) -> CallId {
        self.next_call += 1;
        CallId(self.next_call)
    }

    /// Whether `work` belongs to a provider.
    pub(crate) fn owns(&self, work: WorkId) -> bool {
        self.work.contains_key(&work)
    }

    /// Calls in flight.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }
}
