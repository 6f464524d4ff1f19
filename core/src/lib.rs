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
//!     // 0. On every wake:        gw.handle_wall_clock(now, unix_ms)   (cheap; wall time)
//!     // 1. Feed what happened:   gw.accept(now, peer, local)        → ConnId
//!     //                           gw.handle_input(now, conn, &bytes)  (while gw.wants_input(conn);
//!     //                                        else leave the bytes in the socket and ask again
//!     //                                        after the next drain)
//!     //                           gw.handle_written(now, conn, n)     (mandatory, see below)
//!     //                           gw.handle_closed(now, conn)
//!     //                           gw.handle_timeout(now)
//!     //                           gw.handle_work_result(now, id, result)  (from a worker)
//!     // 2. Drain until Timeout:   match gw.poll_output() {
//!     //     Output::Transmit { conn, data } => write data to conn,
//!     //     Output::Close { conn }          => flush, then drop conn,
//!     //     Output::Discard { conn }        => drop conn's queued bytes not yet started,
//!     //     Output::Work { id, work }       => do it off the loop thread (Work::Store: commit
//!     //                                        the batch), report it with the same id,
//!     //     Output::Log(record)             => print it,
//!     //     Output::Timeout(deadline)       => break, and sleep until deadline or IO,
//!     //     other                           => log it: Output is #[non_exhaustive] }
//! }
//! ```
//!
//! **`handle_written` is mandatory.** The core counts each connection's bytes handed out in
//! `Transmit` and not yet reported written, and closes a connection whose count passes
//! `maxBufferedBytes` as a slow consumer (1008). A shell that never calls `handle_written`
//! sees every busy connection closed once it has been sent that many bytes in total.
//!
//! Time enters as an [`Instant`](std::time::Instant) with every input and wall-clock time
//! as [`Gateway::handle_wall_clock`] readings (wall time is the latest reading plus the
//! monotonic time since it, so a suspend or a clock step is seen at the next wake);
//! randomness through the [`Entropy`] the shell hands in; persistent state as a
//! [`PairingStore`] loaded at start and as typed row changes ([`persist::StoreChange`]) in
//! [`Work::Store`] batches afterwards. An answer that depends on a batch (an approval, a
//! rotated token, a `hello-ok` carrying a new device token) is held until the host reports
//! the batch durable, so "ok" never runs ahead of the disk. So a test can run
//! a gateway and a [`client::Client`] against each other in memory with a fake clock and
//! exercise every timeout in microseconds (the `fuzzing` feature's `fuzzing::sim::Sim` does).
//!
//! Modules, one per concern: [`http`] (upgrade and plain routes), [`frame`] (envelopes),
//! [`handshake`] (`connect` params and failure frames), [`auth`] (secrets, locality, rate
//! limits), [`device`] (Ed25519 proofs), [`pairing`] (the store), [`persist`] (its row
//! changes), [`work`] (work for the host and its results), [`scopes`] (authorization
//! and the events table), [`config`] (resolution and limits), [`discovery`] (what to advertise
//! over mDNS), [`mdns`] (its packets), [`client`] (the other side), [`dates`] (times as the wire writes them). Inside:
//! the method registry (`methods`), close reasons (`close`), routing (`route`), held answers
//! (`durable`) and the connection phases the gateway composes, and the Control UI's static files (`control_ui`: routing, headers and
//! bounded file reads through [`Work::ReadFile`]). [`channels`] runs Telegram inside the
//! gateway (the Bot API over [`Work::Http`], a durable inbound queue, DM pairing, replies).
//! [`model`] holds the sans-IO codecs of model providers (SSE, OpenAI
//! chat completions) the agent will use.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod admission;
mod agent;
pub mod auth;
mod backpressure;
pub mod channels;
pub mod client;
mod close;
pub mod config;
mod conn;
mod connect;
mod connect_fields;
mod control_ui;
pub mod dates;
pub mod device;
mod digest;
pub mod discovery;
mod durable;
mod envelope;
pub mod frame;
mod frame_tally;
mod frames;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod gateway;
pub mod handshake;
mod health_cache;
mod hello;
pub mod http;
mod http_auth;
pub mod http_post;
pub mod ip_range;
mod json_plain;
mod json_shape;
pub mod log;
pub mod mask;
pub mod mdns;
mod methods;
pub mod model;
pub mod pairing;
pub mod persist;
mod route;
pub mod scopes;
pub mod sorting;
pub mod tools;
mod upgrade;
pub mod upgrade_request;
pub mod work;

pub use agent::HeldMessages;
pub use config::{Config, ConfigError, ConfigInput, Limits};
pub use conn::{AuthMethod, ConnId, ConnIdHasher, ConnMap, MemIo};
pub use gateway::{Counts, Entropy, Gateway, MAX_CLOSE_REASON, Output};
pub use log::{Level, LogRecord};
pub use methods::METHODS;
pub use pairing::PairingStore;
pub use route::Router;
pub use scopes::EVENTS;
pub use work::{
    ExecOutput, ExecRequest, FileChunk, FileError, FileRead, HttpError, HttpErrorKind, MachineInfo,
    ProcessSpec, Work, WorkId, WorkResult, WsOpen,
};
