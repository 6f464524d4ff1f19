//! Black-box tests of the clawgate binaries: a harness that starts either shell on a free
//! loopback port, and upstream's frame schema to validate what the gateway sends.
//! [`fake_model`] is a fake OpenAI-compatible model provider for the agent tests;
//! [`fake_telegram`] a fake Telegram Bot API for the channel tests.

pub mod deps;
pub mod fake_model;
pub mod fake_telegram;
pub mod harness;
pub mod schema;
pub mod tempdir;
