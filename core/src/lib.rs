//! # clawgate-core
//!
//! The OpenClaw Gateway protocol (v4) as a sans-IO state machine: it parses the HTTP
//! upgrade and WebSocket frames, runs the `connect.challenge` → `connect` → `hello-ok`
//! handshake, decides auth and scopes, routes requests and events between operators and
//! nodes, and picks close codes. It never touches a socket, a file, a clock or a thread.
//!
//! ## The run loop
//!
//! A shell owns the sockets and the clock and drives one [`Gateway`]:
//!
//! ```text
//! let mut gw = Gateway::new(config, entropy, store, now, unix_ms);
//! loop {
//!     // 1. Feed what happened:   gw.accept(now, peer, local)        → ConnId
//!     //                           gw.handle_input(now, conn, &bytes)
//!     //                           gw.handle_written(now, conn, n)
//!     //                           gw.handle_closed(now, conn)
//!     //                           gw.handle_timeout(now)
//!     // 2. Drain until Timeout:   match gw.poll_output() {
//!     //     Output::Transmit { conn, data } => write data to conn,
//!     //     Output::Close { conn }          => flush, then drop conn,
//!     //     Output::Persist(bytes)          => write the pairing store atomically,
//!     //     Output::Log(record)             => print it,
//!     //     Output::Timeout(deadline)       => break, and sleep until deadline or IO }
//! }
//! ```
//!
//! Time enters as an [`Instant`](std::time::Instant) with every input, randomness through the
//! [`Entropy`] the shell hands in, persistent state as a [`PairingStore`] snapshot at start and
//! as [`Output::Persist`] afterwards. So a test can run a gateway and a [`client::Client`]
//! against each other in memory with a fake clock and exercise every timeout in microseconds.
//!
//! Modules, one per concern: [`http`] (upgrade and plain routes), [`frame`] (envelopes),
//! [`handshake`] (`connect` params and failure frames), [`auth`] (secrets, locality, rate
//! limits), [`device`] (Ed25519 proofs), [`pairing`] (the store), [`scopes`] (method table and
//! authorization), [`config`] (resolution and limits), [`discovery`] (what to advertise over
//! mDNS), [`client`] (the other side).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admission;
pub mod auth;
pub mod client;
pub mod config;
mod conn;
pub mod device;
pub mod discovery;
pub mod frame;
pub mod fuzzing;
mod gateway;
pub mod handshake;
mod hello;
pub mod http;
pub mod log;
pub mod mask;
mod methods;
pub mod model;
pub mod pairing;
pub mod persist;
mod route;
pub mod scopes;

pub use config::{Config, ConfigError, ConfigInput, Limits};
pub use conn::{AuthMethod, ConnId, MemIo};
pub use gateway::{Counts, Entropy, Gateway, MAX_CLOSE_REASON, Output};
pub use log::{Level, LogRecord};
pub use methods::{EVENTS, METHODS};
pub use pairing::PairingStore;
pub use route::Router;
