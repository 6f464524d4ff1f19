//! The MCP client: servers named in `mcp.servers` lend the agent their tools, named
//! `<server>__<tool>`. Sans-IO like the rest of the core: [`jsonrpc`] parses and builds the
//! messages, [`session`] is one server's lifecycle, [`servers`] runs every server over its
//! transport (processes and HTTP requests are the host's work), [`config`] reads the keys.

pub mod config;
pub mod jsonrpc;
mod provider;
pub mod servers;
pub mod session;

pub use config::{McpConfig, McpLimits, ServerConfig, ToolFilter, Transport};
pub use servers::{McpOutput, McpServers, McpTool, ServerState, ServerStatus};
pub use session::{CallError, CallResult};
