//! The router inside the gateway: the catalog over every source, a call handed to the code
//! that runs it with its deadline, the work a provider asked for sent and answered, and each
//! outcome (bounded) delivered to whoever waits for it.

use std::time::Instant;

use serde_json::json;

use crate::gateway::{Gateway, Output, Timer};
use crate::work::{Work, WorkId, WorkResult};

use super::builtin;
use super::provider::{CallContext, CallId, ProviderIo};
use super::router::{CallOwner, Handler, Pending};
use super::{Availability, ToolCall, ToolEntry, ToolOutcome, ToolSource};

/// How much longer than its approval wait and its own timeout an `exec` call may take
/// before the router gives up on it (the worker kills it at its timeout).
const EXEC_GRACE: core::time::Duration = core::time::Duration::from_secs(5);

impl Gateway {
    /// Add a source of tools (an MCP client, the skills): its tools join the catalog.
    pub fn add_tool_provider(&mut self, provider: Box<dyn super::ToolProvider>) {
        self.tools.add_provider(provider);
    }

    /// Tool calls in flight (for embedders and tests).
    pub fn tool_calls_in_flight(&self) -> usize {
        self.tools.calls_in_flight()
    }

    /// Every tool the gateway knows now, ready or not, in a stable order: the built-in
    /// ones, then each provider's.
    pub(crate) fn tool_catalog(&self) -> Vec<ToolEntry> {
        let mut all: Vec<ToolEntry> = self.tools.built_in.always.to_vec();
        for p in &self.tools.providers {
            all.extend(p.tools());
        }
        all
    }

    /// The catalog's entry for the tool `name`, ready or not.
    pub(crate) fn catalog_entry(&self, name: &str) -> Option<ToolEntry> {
        self.tool_catalog().into_iter().find(|t| t.name == name)
    }

    /// The tools behind search: ready ones that are not built in.
    fn deferred_tools(&self) -> Vec<ToolEntry> {
        self.tool_catalog()
            .into_iter()
            .filter(|t| t.is_ready() && !builtin::is_direct(t))
            .collect()
    }

    /// The tools a turn's model is offered: every ready tool, or with `tools.toolSearch` the
    /// built-in ones and the search trio standing in for the rest.
    pub(crate) fn model_tools(&self, _ctx: &CallContext) -> Vec<ToolEntry> {
        let ready = self.tool_catalog().into_iter().filter(ToolEntry::is_ready);
        if !self.config.tools.tool_search {
            return ready.collect();
        }
        let (direct, deferred): (Vec<ToolEntry>, Vec<ToolEntry>) =
            ready.partition(builtin::is_direct);
        let mut offered = direct;
        if !deferred.is_empty() {
            offered.extend(self.tools.built_in.search.iter().cloned());
        }
        offered
    }

    /// What is broken in the providers (an MCP server that failed to start), as `health`'s
    /// `plugins.errors` entries: the MCP entries the catalog shows unavailable.
    /// Only the MCP providers are asked: building every schema of the catalog on each
    /// `health` (and each `hello-ok`'s snapshot) was most of its cost.
    pub(crate) fn tool_problems(&self) -> Vec<serde_json::Value> {
        self.tools
            .providers
            .iter()
            .filter(|p| p.source() == ToolSource::Mcp)
            .flat_map(|p| p.tools())
            .filter(|t| t.source == ToolSource::Mcp)
            .filter_map(|t| {
                let Availability::Unavailable(error) = t.availability else {
                    return None;
                };
                let id = format!("mcp:{}", t.origin.as_deref().unwrap_or(&t.name));
                Some(json!({"id": id, "origin": "mcp", "activated": false, "failurePhase": "start", "error": error}))
            })
            .collect()
    }

    /// Which code runs the tool `name`, if it is ready.
    fn handler_of(&self, name: &str) -> Option<Handler> {
        match name {
            builtin::NODES => return Some(Handler::Nodes),
            builtin::EXEC => return Some(Handler::Exec),
            builtin::TOOL_SEARCH | builtin::TOOL_DESCRIBE => return Some(Handler::Search),
            _ => {}
        }
        self.tools
            .providers
            .iter()
            .position(|p| p.tools().iter().any(|t| t.name == name && t.is_ready()))
            .map(Handler::Provider)
    }

    /// Start `call` for `owner`; its outcome comes back through
    /// [`Gateway::finish_tool_call`], at the latest when the tool timeout passes.
    pub(crate) fn start_tool_call(
        &mut self,
        now: Instant,
        call: ToolCall,
        ctx: CallContext,
        owner: CallOwner,
    ) -> CallId {
        let id = self.tools.next_call();
        let call = if call.name == builtin::TOOL_CALL {
            match builtin::unwrap_call(&call) {
                Ok(inner) => inner,
                Err(outcome) => {
                    self.deliver_tool_outcome(now, id, &owner, &call.name, outcome);
                    return id;
                }
            }
        } else {
            call
        };
        let Some(handler) = self.handler_of(&call.name) else {
            let outcome = ToolOutcome::error(format!("Tool not found: {}", call.name));
            self.deliver_tool_outcome(now, id, &owner, &call.name, outcome);
            return id;
        };
        let exec = &self.config.tools.exec;
        let deadline = match handler {
            // A command may wait for its approval, then run its own time.
            Handler::Exec => now + exec.approval_timeout + exec.timeout + EXEC_GRACE,
            _ => now + self.config.limits.tool_timeout,
        };
        self.tools.calls.insert(
            id,
            Pending {
                owner,
                handler,
                name: call.name.clone(),
                deadline,
            },
        );
        self.schedule(deadline, Timer::ToolCall(id));
        match handler {
            Handler::Provider(index) => {
                let mut io = ProviderIo::default();
                if let Some(p) = self.tools.providers.get_mut(index) {
                    p.start(now, id, &call, &ctx, &mut io);
                }
                self.drain_provider(now, index, io);
            }
            Handler::Search => {
                let deferred = self.deferred_tools();
                let outcome = if call.name == builtin::TOOL_SEARCH {
                    builtin::search(&call, &deferred)
                } else {
                    builtin::describe(&call, &deferred)
                };
                self.finish_tool_call(now, id, outcome);
            }
            Handler::Nodes => self.start_nodes_call(now, id, &call),
            Handler::Exec => self.start_exec_call(now, id, &call, &ctx),
        }
        id
    }

    /// Carry out what provider `index` asked for.
    pub(crate) fn drain_provider(&mut self, now: Instant, index: usize, io: ProviderIo) {
        for (token, work) in io.work {
            // A line for a provider's process names the process by the provider's token.
            let work = match work {
                Work::WriteLine { process, line } => {
                    match self.tools.tokens.get(&(index, process.0)) {
                        Some(id) => Work::WriteLine { process: *id, line },
                        None => continue,
                    }
                }
                other => other,
            };
            let id = self.next_work_id();
            self.tools.work.insert(id, (index, token));
            self.tools.tokens.insert((index, token), id);
            self.out.push_back(Output::Work { id, work });
        }
        for token in io.cancel {
            if let Some(id) = self.tools.tokens.remove(&(index, token)) {
                self.tools.work.remove(&id);
                self.cancel_work(id);
            }
        }
        for (level, line) in io.logs {
            self.log(now, level, None, line);
        }
        if io.catalog_changed {
            let count = self
                .tools
                .providers
                .get(index)
                .map_or(0, |p| p.tools().len());
            let line = format!("tool provider {index} changed its catalog ({count} tools)");
            self.log(now, crate::log::Level::Info, None, line);
        }
        if let Some(at) = io.wake_at {
            let earlier = self.tools.wakes.get(&index).is_none_or(|w| at < *w);
            if earlier {
                self.tools.wakes.insert(index, at);
                self.schedule(at, Timer::ToolProvider(index));
            }
        }
        for (call, outcome) in io.done {
            self.finish_tool_call(now, call, outcome);
        }
        self.tools_maybe_settled(now);
    }

    /// A turn is about to call its model: let lazily started providers start.
    pub(crate) fn warm_up_tools(&mut self, now: Instant) {
        for index in 0..self.tools.providers.len() {
            let mut io = ProviderIo::default();
            if let Some(p) = self.tools.providers.get_mut(index) {
                p.warm_up(now, &mut io);
            }
            self.drain_provider(now, index, io);
        }
    }

    /// Work a provider or a command asked for answered.
    pub(crate) fn on_tool_work(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        if let WorkResult::Exec(r) = result {
            self.on_exec_result(now, id, r);
            return;
        }
        let Some(&(index, token)) = self.tools.work.get(&id) else {
            return;
        };
        if result.is_final() {
            self.tools.work.remove(&id);
            self.tools.tokens.remove(&(index, token));
        }
        let mut io = ProviderIo::default();
        if let Some(p) = self.tools.providers.get_mut(index) {
            p.work_result(now, token, result, &mut io);
        }
        self.drain_provider(now, index, io);
    }

    /// Provider `index`'s wake-up time may have come.
    pub(crate) fn tool_provider_due(&mut self, now: Instant, index: usize) {
        match self.tools.wakes.get(&index) {
            Some(at) if *at <= now => {
                self.tools.wakes.remove(&index);
            }
            _ => return,
        }
        let mut io = ProviderIo::default();
        if let Some(p) = self.tools.providers.get_mut(index) {
            p.timeout(now, &mut io);
        }
        self.drain_provider(now, index, io);
    }

    /// Call `id`'s deadline came: stop it and tell its owner.
    pub(crate) fn tool_call_due(&mut self, now: Instant, id: CallId) {
        let Some(p) = self.tools.calls.get(&id) else {
            return;
        };
        if p.deadline > now {
            return;
        }
        let secs = self.config.limits.tool_timeout.as_secs();
        let text = if p.handler == Handler::Exec {
            format!(
                "Tool {} took too long and was stopped (tools.exec.timeoutSeconds)",
                p.name
            )
        } else {
            format!(
                "Tool {} timed out after {secs} s (tools.timeoutSeconds)",
                p.name
            )
        };
        self.stop_tool_call(now, id);
        self.finish_tool_call(now, id, ToolOutcome::error(text));
    }

    /// Tell the code running call `id` to stop (it stays in flight until finished).
    pub(crate) fn stop_tool_call(&mut self, now: Instant, id: CallId) {
        let Some(p) = self.tools.calls.get(&id) else {
            return;
        };
        match p.handler {
            Handler::Provider(index) => {
                let mut io = ProviderIo::default();
                if let Some(p) = self.tools.providers.get_mut(index) {
                    p.cancel(now, id, &mut io);
                }
                // Outcomes the provider reports while cancelling are the call's end.
                self.drain_provider(now, index, io);
            }
            Handler::Nodes => self.cancel_tool_invoke(now, id),
            Handler::Exec => self.cancel_exec(now, id),
            Handler::Search => {}
        }
    }

    /// Call `id` ended with `outcome`: bound it and deliver it (once; later outcomes of a
    /// call already ended are ignored).
    pub(crate) fn finish_tool_call(&mut self, now: Instant, id: CallId, outcome: ToolOutcome) {
        let Some(p) = self.tools.calls.remove(&id) else {
            return;
        };
        self.deliver_tool_outcome(now, id, &p.owner, &p.name, outcome);
    }

    fn deliver_tool_outcome(
        &mut self,
        now: Instant,
        id: CallId,
        owner: &CallOwner,
        name: &str,
        outcome: ToolOutcome,
    ) {
        let outcome = outcome.bounded(self.config.limits.tool_result_max_bytes);
        match owner {
            CallOwner::Run(serial) => self.run_tool_done(now, *serial, id, outcome),
            CallOwner::Invoke { conn, req } => {
                let result = invoke_result(name, &outcome);
                self.respond(now, *conn, req, Ok(result), None);
            }
            CallOwner::Http { conn } => self.answer_http_invoke(now, *conn, &outcome),
        }
    }
}

/// A `tools.invoke` result for `outcome` (upstream's `ToolsInvokeResult`).
pub(crate) fn invoke_result(name: &str, outcome: &ToolOutcome) -> serde_json::Value {
    let output = match &outcome.content {
        super::ToolContent::Text(t) => json!(t),
        super::ToolContent::Json(v) => v.clone(),
    };
    if outcome.is_error {
        json!({"ok": false, "toolName": name, "error": {"code": "tool_error", "message": outcome.as_text()}})
    } else {
        json!({"ok": true, "toolName": name, "output": output})
    }
}
