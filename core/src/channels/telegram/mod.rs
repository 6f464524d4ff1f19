//! Telegram over the Bot API (long polling), sans-IO: [`api`] builds the calls and decodes
//! their answers, [`format`] renders and cuts replies, [`account`] holds one bot's transport
//! state, [`driver`] is what Telegram supplies to the transport-generic `channels`.

pub mod account;
pub mod api;
pub mod driver;
pub mod format;
pub mod transport;
