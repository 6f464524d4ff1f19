//! The interface every source of tools offers the router: its tools, and calls started now
//! and answered later. A provider is sans-IO: what it needs done leaves as [`Work`] through
//! [`ProviderIo`] (the router gives it a [`WorkId`] and hands the [`WorkResult`] back under
//! the provider's own token), and a call ends when the provider pushes its outcome.
//!
//! [`WorkId`]: crate::work::WorkId

use std::time::Instant;

use crate::log::Level;
use crate::work::{Work, WorkResult};

use super::{ToolCall, ToolEntry, ToolOutcome, ToolSource};

/// Names one tool call in the router, unique for the gateway's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Who a call runs for: what policy needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// The session the turn belongs to (`None` for a direct `tools.invoke`).
    pub session_key: Option<String>,
    /// The turn came from the gateway's owner (an operator, or a channel sender listed in
    /// `commands.ownerAllowFrom`); only then may commands run.
    pub owner: bool,
    /// The chat a channel turn came from: an approval is posted there and may be answered
    /// there (`/approve`).
    pub chat: Option<crate::channels::inbound::Target>,
}

/// What a provider asks for while it handles calls; the router drains it after each call
/// into the provider.
#[derive(Debug, Default)]
pub struct ProviderIo {
    /// Work to do, under the provider's own token.
    pub work: Vec<(u64, Work)>,
    /// Work to stop, by the provider's token.
    pub cancel: Vec<u64>,
    /// Calls that ended.
    pub done: Vec<(CallId, ToolOutcome)>,
    /// Log lines.
    pub logs: Vec<(Level, String)>,
    /// Call the provider's [`ToolProvider::timeout`] at this time (the earliest asked wins).
    pub wake_at: Option<Instant>,
    /// The provider's catalog changed (an MCP server listed new tools, or failed); the
    /// gateway logs it, and the next turn is offered the new catalog.
    pub catalog_changed: bool,
}

impl ProviderIo {
    /// Ask for `work` under `token`.
    pub fn submit(&mut self, token: u64, work: Work) {
        self.work.push((token, work));
    }

    /// End `call` with `outcome`.
    pub fn finish(&mut self, call: CallId, outcome: ToolOutcome) {
        self.done.push((call, outcome));
    }

    /// Be woken at `at` (or earlier, if something else asked).
    pub fn wake(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Log `line` at `level`.
    pub fn log(&mut self, level: Level, line: impl Into<String>) {
        self.logs.push((level, line.into()));
    }
}

/// A source of tools the router dispatches to (MCP servers, skills).
pub trait ToolProvider: std::fmt::Debug + Send {
    /// What kind of source it is.
    fn source(&self) -> ToolSource;

    /// The tools it offers now, ready or not (an unavailable one says why).
    fn tools(&self) -> Vec<ToolEntry>;

    /// Start `call` of one of its tools; answer through `io` now or later.
    fn start(
        &mut self,
        now: Instant,
        id: CallId,
        call: &ToolCall,
        ctx: &CallContext,
        io: &mut ProviderIo,
    );

    /// Work it asked for under `token` answered (HTTP results stream in several pieces).
    fn work_result(&mut self, now: Instant, token: u64, result: WorkResult, io: &mut ProviderIo);

    /// The router gave up on `id` (its time ran out, or its turn was aborted): stop it; its
    /// outcome, if one still comes, is ignored.
    fn cancel(&mut self, now: Instant, id: CallId, io: &mut ProviderIo);

    /// The time asked for with [`ProviderIo::wake`] came.
    fn timeout(&mut self, _now: Instant, _io: &mut ProviderIo) {}

    /// A turn is about to be offered the catalog: a provider that starts lazily (an MCP
    /// server) may start now.
    fn warm_up(&mut self, _now: Instant, _io: &mut ProviderIo) {}

    /// Whether some of its tools are still coming (a server initializing or listing): a
    /// turn's model request waits for them, within a bound.
    fn starting(&self) -> bool {
        false
    }
}
