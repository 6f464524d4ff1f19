//! The agent's tools.

pub mod mcp;
