//! The MCP servers as one of the router's [`ToolProvider`]s: their tools join the catalog
//! (a server that is not ready shows as one unavailable entry with its reason), a call of
//! `<server>__<tool>` goes to its server, and the servers' work, logs and outcomes go out
//! through [`ProviderIo`].

use std::time::Instant;

use serde_json::json;

use super::servers::{McpOutput, McpServers, ServerState};
use crate::tools::{
    Availability, CallContext, CallId, ProviderIo, ToolCall, ToolEntry, ToolOutcome, ToolProvider,
    ToolSource,
};
use crate::work::{WorkId, WorkResult};

impl McpServers {
    /// Hand what the servers queued to the router.
    fn drain(&mut self, io: &mut ProviderIo) {
        while let Some(output) = self.poll() {
            match output {
                McpOutput::Work(token, work) => io.submit(token.0, work),
                McpOutput::Cancel(token) => io.cancel.push(token.0),
                McpOutput::CallDone { call, outcome } => {
                    let outcome = match outcome {
                        Ok(r) if r.is_error => ToolOutcome::error(r.text),
                        Ok(r) => ToolOutcome::text(r.text),
                        Err(e) => ToolOutcome::error(e.to_string()),
                    };
                    io.finish(CallId(call), outcome);
                }
                McpOutput::Log(level, line) => io.log(level, line),
                McpOutput::CatalogChanged => io.catalog_changed = true,
            }
        }
        if let Some(at) = self.next_deadline() {
            io.wake(at);
        }
    }
}

impl ToolProvider for McpServers {
    fn source(&self) -> ToolSource {
        ToolSource::Mcp
    }

    fn tools(&self) -> Vec<ToolEntry> {
        let mut entries: Vec<ToolEntry> = self
            .catalog()
            .into_iter()
            .map(|t| ToolEntry {
                name: t.name,
                description: t.description.unwrap_or_default(),
                parameters: t.input_schema.into(),
                source: ToolSource::Mcp,
                origin: Some(t.server),
                availability: Availability::Ready,
            })
            .collect();
        for s in self.statuses() {
            let why = match (s.state, &s.error) {
                (ServerState::Ready, _) => continue,
                (_, Some(error)) => format!("MCP server {} failed: {error}", s.name),
                (ServerState::Starting, None) => format!("MCP server {} is starting", s.name),
                _ => format!("MCP server {} starts when a turn needs it", s.name),
            };
            entries.push(ToolEntry {
                name: s.name.clone(),
                description: format!("MCP server {} ({})", s.name, s.transport),
                parameters: json!({"type": "object"}).into(),
                source: ToolSource::Mcp,
                origin: Some(s.name),
                availability: Availability::Unavailable(why),
            });
        }
        entries
    }

    fn start(
        &mut self,
        now: Instant,
        id: CallId,
        call: &ToolCall,
        _: &CallContext,
        io: &mut ProviderIo,
    ) {
        if let Err(e) = self.call(now, id.0, &call.name, call.arguments.clone()) {
            io.finish(id, ToolOutcome::error(e.to_string()));
        }
        self.drain(io);
    }

    fn work_result(&mut self, now: Instant, token: u64, result: WorkResult, io: &mut ProviderIo) {
        self.handle_work_result(now, WorkId(token), result);
        self.drain(io);
    }

    fn cancel(&mut self, now: Instant, id: CallId, io: &mut ProviderIo) {
        McpServers::cancel(self, now, id.0);
        self.drain(io);
    }

    fn timeout(&mut self, now: Instant, io: &mut ProviderIo) {
        self.handle_timeout(now);
        self.drain(io);
    }

    fn warm_up(&mut self, now: Instant, io: &mut ProviderIo) {
        self.need(now);
        self.drain(io);
    }

    fn starting(&self) -> bool {
        self.statuses()
            .iter()
            .any(|s| s.state == ServerState::Starting)
    }
}
