//! Black-box tests of the clawgate binaries: a harness that starts either shell on a free
//! loopback port, and upstream's frame schema to validate what the gateway sends.
//! [`fake_model`] is a fake model provider (OpenAI or Anthropic API, HTTP or HTTPS with
//! [`fake_tls`]) for the agent tests; [`fake_telegram`] a fake Telegram Bot API for the channel
//! tests; [`upstream_db`] a synthetic upstream OpenClaw state database for the import tests;
//! [`netns`] network namespaces for remote peers; [`threads`] counts this process's threads'
//! wake-ups; [`rx_stamp`] reads the kernel's arrival stamps the fakes time requests by; [`profiled`]
//! starts a gateway for the examples that profile it.

pub mod deps;
pub mod fake_api;
pub mod fake_discord;
pub mod fake_mcp;
pub mod fake_model;
pub mod fake_slack;
pub mod fake_telegram;
pub mod fake_tls;
pub mod harness;
pub mod netns;
pub mod profiled;
mod request_body;
pub mod rx_stamp;
pub mod schema;
pub mod tempdir;
pub mod threads;
pub mod upstream_db;
