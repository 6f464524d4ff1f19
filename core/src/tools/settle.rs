//! Waiting for tool providers that are still starting (an MCP server spawned by the first
//! turn after gateway start, still initializing or listing): a turn's model request, or a
//! `POST /tools/invoke` naming a tool not known yet, waits until no provider is starting, at
//! most [`Limits::tools_start_wait`](crate::Limits::tools_start_wait). A server that fails
//! meanwhile is reported (catalog, `health`) and the wait ends without it.

use std::time::Instant;

use serde_json::{Map, Value};

use crate::conn::ConnId;
use crate::gateway::{Gateway, Timer};
use crate::log::Level;

/// What waits for the providers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Waiter {
    /// An agent run's model request (by serial).
    Run(u64),
    /// A `POST /tools/invoke` (its connection and body), looked up again once they settle.
    Http {
        /// The caller.
        conn: ConnId,
        /// The request's body.
        body: Map<String, Value>,
    },
}

impl Gateway {
    /// Whether a provider is still starting.
    pub(crate) fn tools_starting(&self) -> bool {
        self.tools.providers.iter().any(|p| p.starting())
    }

    /// Park `waiter` until no provider is starting (at most the start wait).
    pub(crate) fn wait_for_tools(&mut self, now: Instant, waiter: Waiter) {
        let deadline = now + self.config.limits.tools_start_wait;
        self.log(
            now,
            Level::Debug,
            None,
            "waiting for tool providers to start".into(),
        );
        self.tools.settling.push((waiter, deadline));
        self.schedule(deadline, Timer::ToolsSettle);
    }

    /// A provider moved: if none is starting any more, everything waiting goes on.
    pub(crate) fn tools_maybe_settled(&mut self, now: Instant) {
        if self.tools.settling.is_empty() || self.tools_starting() {
            return;
        }
        let waiting = std::mem::take(&mut self.tools.settling);
        for (waiter, _) in waiting {
            self.release_waiter(now, waiter);
        }
    }

    /// The start wait of some waiters ran out: they go on with the tools ready now.
    pub(crate) fn tools_settle_due(&mut self, now: Instant) {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tools.settling)
            .into_iter()
            .partition(|(_, deadline)| *deadline <= now);
        self.tools.settling = rest;
        for (waiter, _) in due {
            let secs = self.config.limits.tools_start_wait.as_secs();
            let line =
                format!("tool providers still starting after {secs} s; going on without them");
            self.log(now, Level::Warn, None, line);
            self.release_waiter(now, waiter);
        }
    }

    fn release_waiter(&mut self, now: Instant, waiter: Waiter) {
        match waiter {
            Waiter::Run(serial) => {
                if let Some(route) = self.config.model.clone() {
                    self.request_model(now, serial, &route);
                }
            }
            Waiter::Http { conn, body } => {
                if self.conns.contains_key(&conn) {
                    self.resume_http_invoke(now, conn, body);
                }
            }
        }
    }
}
