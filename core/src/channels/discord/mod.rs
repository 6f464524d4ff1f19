//! Discord over its Gateway WebSocket and REST API, sans-IO: [`gateway`] builds and parses
//! the Gateway's payloads (Hello, Identify, Resume, heartbeats, dispatches) and normalises
//! `MESSAGE_CREATE` into the channels' `Inbound`, [`rest`] builds the REST calls and decodes
//! their answers and rate limits, [`format`] cuts replies, [`account`] holds one bot's
//! connection state, [`config`] reads `channels.discord`, and [`driver`] is what Discord
//! supplies to the transport-generic `channels`.

pub mod account;
pub mod config;
pub mod driver;
pub mod format;
pub mod gateway;
pub mod rest;
