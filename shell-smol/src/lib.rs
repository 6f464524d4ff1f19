//! clawgate-smol: the [`clawgate_core`] gateway driven by a smol executor, for programs that
//! already run one or want to embed the gateway in one.
//!
//! One driver task owns the [`Gateway`](clawgate_core::Gateway); every socket gets a reader
//! task that feeds its bytes to the driver and a writer task that writes what the core
//! transmits. The driver sleeps on a [`smol::Timer`] until the core's next deadline. No
//! protocol decision lives here: bytes in, bytes out, exactly as the core says.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::time::{Instant, SystemTime, UNIX_EPOCH};
//! use clawgate_core::{Config, Gateway, PairingStore};
//! use clawgate_smol::{Control, Host};
//!
//! struct Quiet;
//! impl Host for Quiet {
//!     fn persist(&mut self, _store: &[u8]) {}
//!     fn log(&mut self, _record: &clawgate_core::LogRecord) {}
//! }
//!
//! let ex = smol::Executor::new();
//! let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
//! let gw = Gateway::new(Config::local_default(), Box::new(clawgate::entropy::OsEntropy), PairingStore::default(), Instant::now(), unix_ms);
//! let listener = std::net::TcpListener::bind("127.0.0.1:18789")?;
//! let (control, _stop) = smol::channel::unbounded::<Control>(); // send Control::Shutdown to stop
//! smol::block_on(ex.run(clawgate_smol::serve(&ex, listener, gw, Quiet, control)))
//! # }
//! ```
#![forbid(unsafe_code)]

mod driver;
pub mod signals;
mod socket;

pub use driver::{CLOSE_GRACE, Control, Host, serve};
