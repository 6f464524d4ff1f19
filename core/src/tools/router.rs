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
    /// An agent run (by serial): the outcome goes back to its model.
    Run(u64),
    /// A `tools.invoke` request: the outcome is its response.
    Invoke {
        /// The caller.
        conn: ConnId,
        /// Its request id.
        req: String,
    },
    /// A `POST /tools/invoke`: the outcome is its HTTP answer.
    Http {
        /// The caller.
        conn: ConnId,
    },
}

/// Which code runs a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    /// A provider, by index.
    Provider(usize),
    /// The `nodes` tool (a `node.invoke` for the call).
    Nodes,
    /// The `exec` tool.
    Exec,
    /// `tool_search` or `tool_describe` (answered at once).
    Search,
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
    /// `exec` approvals and commands.
    pub(crate) exec: super::exec::ExecState,
    /// The built-in tools' entries.
    pub(crate) built_in: super::builtin::BuiltIn,
    /// The earliest wake-up each provider asked for.
    pub(crate) wakes: HashMap<usize, Instant>,
    /// What waits for starting providers, and until when at most.
    pub(crate) settling: Vec<(super::settle::Waiter, Instant)>,
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
        self.work.contains_key(&work) || self.exec.owns(work)
    }

    /// Calls in flight.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// The calls `owner` waits for, oldest first.
    pub(crate) fn calls_of(&self, owner: &CallOwner) -> Vec<CallId> {
        let mut ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, p)| &p.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        crate::sorting::sort(&mut ids);
        ids
    }
}
