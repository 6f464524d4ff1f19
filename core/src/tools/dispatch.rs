//! The router inside the gateway: the catalog over every source, a call handed to the code
//! that runs it with its deadline, the work a provider asked for sent and answered, and each
//! outcome (bounded) delivered to whoever waits for it.

use std::time::Instant;

use serde_json::json;

use crate::gateway::{Gateway, Output, Timer};
use crate::work::{Work, WorkId, WorkResult};

use super::provider::{CallContext, CallId, ProviderIo};
use super::router::{CallOwner, Handler, Pending};
use super::{ToolCall, ToolEntry, ToolOutcome};

impl Gateway {
    /// Add a source of tools (an MCP client, the skills): its tools join the catalog.
    pub fn add_tool_provider(&mut self, provider: Box<dyn super::ToolProvider>) {
        self.tools.add_provider(provider);
    }

    /// Every tool the gateway knows now, ready or not, in a stable order.
    pub(crate) fn tool_catalog(&self) -> Vec<ToolEntry> {
        let mut all: Vec<ToolEntry> = Vec::new();
        for p in &self.tools.providers {
            all.extend(p.tools());
        }
        all
    }

    /// A turn or an operator is about to see the catalog: providers that start lazily (MCP
    /// servers) start now.
    pub(crate) fn warm_up_tools(&mut self, now: Instant) {
        for index in 0..self.tools.providers.len() {
            let mut io = ProviderIo::default();
            if let Some(p) = self.tools.providers.get_mut(index) {
                p.warm_up(now, &mut io);
            }
            self.drain_provider(now, index, io);
        }
    }

    /// What is broken in the providers (an MCP server that failed), as `health`'s
    /// `plugins.errors` entries.
    pub(crate) fn tool_problems(&self) -> Vec<serde_json::Value> {
        self.tools
            .providers
            .iter()
            .flat_map(|p| {
                let origin = p.source().as_str();
                p.problems().into_iter().map(move |(id, error)| {
                    json!({"id": id, "origin": origin, "activated": false, "failurePhase": "start", "error": error})
                })
            })
            .collect()
    }

    /// Which code runs the tool `name`, if the catalog has it ready.
    fn handler_of(&self, name: &str) -> Option<Handler> {
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
        let Some(handler) = self.handler_of(&call.name) else {
            let outcome = ToolOutcome::error(format!("Tool not found: {}", call.name));
            self.deliver_tool_outcome(now, id, &owner, &call.name, outcome);
            return id;
        };
        let deadline = now + self.config.limits.tool_timeout;
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
    }

    /// Work a provider asked for answered.
    pub(crate) fn on_tool_work(&mut self, now: Instant, id: WorkId, result: WorkResult) {
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
        let text = format!(
            "Tool {} timed out after {secs} s (tools.timeoutSeconds)",
            p.name
        );
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
        _id: CallId,
        owner: &CallOwner,
        name: &str,
        outcome: ToolOutcome,
    ) {
        let outcome = outcome.bounded(self.config.limits.tool_result_max_bytes);
        match owner {
            CallOwner::Invoke { conn, req } => {
                let result = invoke_result(name, &outcome);
                self.respond(now, *conn, req, &Ok(result), None);
            }
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
