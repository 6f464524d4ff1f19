//! The tool router: how the agent reaches node commands, MCP servers, skills and local
//! commands.
//!
//! - [`catalog`]: a tool as the model and operators see it ([`ToolEntry`]);
//! - [`call`]: a call ([`ToolCall`]) and its outcome ([`ToolOutcome`]), cut to
//!   `tools.maxResultBytes` with a marker;
//! - [`provider`]: the interface a source of tools implements ([`ToolProvider`]): its tools,
//!   and calls started now and answered later through the core's work and results;
//! - `router`: the calls in flight and the providers' work ([`ToolRouter`]);
//! - `dispatch`: the router inside the gateway (start, deadline, deliver);
//! - `methods`: `tools.catalog`, `tools.effective`, `tools.invoke`;
//! - `http_invoke`: `POST /tools/invoke`;
//! - `settle`: a turn or an invocation waiting for providers still starting;
//! - `exec` and `approvals`: the `exec` tool, its approvals (operators and the chat a turn
//!   came from) and its persistent `allow-always` grants.

pub(crate) mod approvals;
mod builtin;
pub mod call;
pub mod catalog;
mod dispatch;
mod exec;
pub(crate) mod http_invoke;
pub mod mcp;
mod methods;
mod nodes;
pub mod provider;
pub(crate) mod router;
pub(crate) mod settle;
pub mod skills;

pub use call::{TRUNCATED_MARKER, ToolCall, ToolContent, ToolOutcome};
pub use catalog::{Availability, ToolEntry, ToolSource};
pub use provider::{CallContext, CallId, ProviderIo, ToolProvider};
pub use router::ToolRouter;
