//! The MCP servers inside the [`Gateway`]: their work results and timers in, their work,
//! logs and call outcomes out. The router calls [`Gateway::mcp_need`] before it offers the
//! catalog and [`Gateway::mcp_call`] for a `<server>__<tool>` call.

use std::time::Instant;

use serde_json::{Value, json};

use super::servers::{McpOutput, McpServers};
use super::session::{CallError, CallResult};
use crate::gateway::{Gateway, Output, Timer};
use crate::work::{WorkId, WorkResult};

impl Gateway {
    /// Run `f` on the MCP servers with a source of fresh work ids, then act on what they
    /// queued.
    fn with_mcp<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut McpServers, &mut dyn FnMut() -> WorkId) -> R,
    ) -> R {
        let mut next = self.last_work_id();
        let r = f(&mut self.mcp, &mut || {
            next += 1;
            WorkId(next)
        });
        self.set_last_work_id(next);
        self.drain_mcp(now);
        r
    }

    /// The catalog is needed: start the servers not started. Returns whether one is still
    /// starting; [`Gateway::mcp_settled`] is called once none is.
    pub(crate) fn mcp_need(&mut self, now: Instant) -> bool {
        self.with_mcp(now, |m, ids| m.need(now, ids))
    }

    /// Call the MCP tool `name` for the router's call `call`; the outcome reaches
    /// [`Gateway::mcp_call_done`], or is returned at once when the call cannot start.
    pub(crate) fn mcp_call(
        &mut self,
        now: Instant,
        call: u64,
        name: &str,
        arguments: Value,
    ) -> Result<(), CallError> {
        self.with_mcp(now, |m, ids| m.call(now, call, name, arguments, ids))
    }

    /// Give up the MCP call `call`.
    pub(crate) fn mcp_cancel(&mut self, now: Instant, call: u64) {
        self.with_mcp(now, |m, ids| m.cancel(now, call, ids))
    }

    /// A result of work the MCP servers own.
    pub(crate) fn on_mcp_work(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        self.with_mcp(now, |m, ids| m.handle_work_result(now, id, result, ids))
    }

    /// The MCP timer fired.
    pub(crate) fn mcp_timeout(&mut self, now: Instant) {
        self.mcp_timer = None;
        self.with_mcp(now, |m, ids| m.handle_timeout(now, ids))
    }

    /// Stop every MCP server (shutdown, or a reload that changed `mcp`), then use `config`'s.
    pub(crate) fn mcp_reconfigure(&mut self, now: Instant) {
        if self.config.mcp == *self.mcp.config() {
            return;
        }
        self.with_mcp(now, |m, ids| m.stop_all(ids));
        self.mcp = McpServers::new(&self.config.mcp, &self.config.version);
    }

    /// Stop every MCP server.
    pub(crate) fn mcp_stop(&mut self, now: Instant) {
        self.with_mcp(now, |m, ids| m.stop_all(ids));
    }

    fn drain_mcp(&mut self, now: Instant) {
        while let Some(output) = self.mcp.poll() {
            match output {
                McpOutput::Work(id, work) => self.out.push_back(Output::Work { id, work }),
                McpOutput::Log(level, message) => self.log(now, level, None, message),
                McpOutput::CallDone { call, outcome } => self.mcp_call_done(now, call, outcome),
                McpOutput::Settled => self.mcp_settled(now),
            }
        }
        if let Some(at) = self.mcp.next_deadline()
            && self.mcp_timer.is_none_or(|t| at < t)
        {
            self.mcp_timer = Some(at);
            self.schedule(at, Timer::Mcp);
        }
    }

    /// The servers' state for `health` and `tools.catalog`.
    pub(crate) fn mcp_status(&self) -> Value {
        let servers: Vec<Value> = self
            .mcp
            .statuses()
            .into_iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "transport": s.transport,
                    "status": s.state.as_str(),
                    "tools": s.tools,
                    "error": s.error,
                    "restarts": s.restarts,
                })
            })
            .collect();
        json!({ "servers": servers })
    }

    /// An MCP call ended: hand the outcome to the tool router.
    fn mcp_call_done(&mut self, now: Instant, call: u64, outcome: Result<CallResult, CallError>) {
        // Until the router lands: the outcome is only logged.
        let level = crate::log::Level::Debug;
        self.log(
            now,
            level,
            None,
            format!("mcp: call {call} ended: {outcome:?}"),
        );
    }

    /// Every MCP server that was starting is ready or broken.
    fn mcp_settled(&mut self, now: Instant) {
        self.log(
            now,
            crate::log::Level::Debug,
            None,
            "mcp: servers settled".into(),
        );
    }
}
