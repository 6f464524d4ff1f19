//! clawgate-smol: the [`clawgate_core`] gateway driven by a smol executor, for programs that
//! already run one or want to embed the gateway in one.
//!
//! One driver task owns the [`Gateway`]; every socket gets a reader task that hands its
//! bytes to the driver and a writer task that writes what the core transmits. The driver
//! sleeps on a [`smol::Timer`] until the core's next deadline. No protocol decision lives
//! here: bytes in, bytes out, exactly as the core says. Start-up, logging, persistence and
//! signals are the `clawgate` crate's, shared with the mio shell.
//!
//! Embedding: hand [`serve`] a listener, a gateway and a [`Host`], and stop it with
//! [`Control::Shutdown`]:
//!
//! ```no_run
//! use std::time::Instant;
//! use clawgate_core::{Config, Gateway, LogRecord, PairingStore};
//! use clawgate_smol::{Control, Host};
//!
//! struct Quiet;
//! impl Host for Quiet {
//!     fn log(&mut self, _record: &LogRecord) {}
//!     fn persist(&mut self, _snapshot: Vec<u8>) {}
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = std::net::TcpListener::bind("127.0.0.1:18789")?;
//! let entropy = Box::new(clawgate::entropy::OsEntropy::default());
//! let gw = Gateway::new(Config::local_default(), entropy, PairingStore::default(), Instant::now(), clawgate::logging::unix_ms());
//! let (stop, control) = smol::channel::unbounded::<Control>(); // stop.send(Control::Shutdown)
//! let ex = smol::Executor::new();
//! smol::block_on(ex.run(clawgate_smol::serve(&ex, listener, gw, Quiet, control)))
//! # }
//! ```
#![forbid(unsafe_code)]

mod driver;
mod socket;

use std::os::unix::net::UnixStream;
use std::time::Instant;

use clawgate::startup::{self, EXIT_FAILURE, Started};
use clawgate_core::{Gateway, Level, LogRecord, Output};

pub use driver::{Control, serve};

/// What the embedding program provides besides the sockets: a log, durable storage and,
/// optionally, signals.
pub trait Host {
    /// Record a log line (from the core, or the shell's own).
    fn log(&mut self, record: &LogRecord);
    /// Write this pairing-store snapshot durably.
    fn persist(&mut self, snapshot: Vec<u8>);
    /// A socket that becomes readable when signals arrive, if the host handles signals.
    fn signals(&self) -> Option<&UnixStream> {
        None
    }
    /// The signal socket became readable: act on the gateway (shut down, reload).
    fn on_signals(&mut self, _gw: &mut Gateway, _now: Instant) {}
    /// The gateway started draining: stop what announces it (mDNS).
    fn on_draining(&mut self) {}
    /// The driver is about to wait: write out any log lines held back.
    fn flush_log(&mut self) {}
}

/// The `clawgate` shell's host: its logger, pairing store and signal handlers.
impl Host for startup::Host {
    fn log(&mut self, record: &LogRecord) {
        self.logger().record(record);
    }

    fn flush_log(&mut self) {
        self.logger().flush();
    }

    fn persist(&mut self, snapshot: Vec<u8>) {
        let _ = self.absorb(Output::Persist(snapshot));
    }

    fn signals(&self) -> Option<&UnixStream> {
        Some(startup::Host::signals(self).reader())
    }

    fn on_signals(&mut self, gw: &mut Gateway, now: Instant) {
        startup::Host::on_signals(self, gw, now);
    }

    fn on_draining(&mut self) {
        self.stop_advertising();
    }
}

/// Serve a started gateway on a smol executor until a signal stops it; returns the exit
/// status (0 after a clean shutdown, 1 when serving failed).
pub fn run(started: Started) -> i32 {
    let Started {
        gateway,
        listener,
        mut host,
        ..
    } = started;
    // No embedding program here: the signals are the only way to stop.
    let (_no_orders, control) = smol::channel::bounded(1);
    let ex = smol::Executor::new();
    match smol::block_on(ex.run(serve(&ex, listener, gateway, &mut host, control))) {
        Ok(()) => 0,
        Err(e) => {
            host.logger()
                .log(Level::Error, format!("event loop failed: {e}"));
            EXIT_FAILURE
        }
    }
}

impl<H: Host + ?Sized> Host for &mut H {
    fn log(&mut self, record: &LogRecord) {
        (**self).log(record);
    }

    fn persist(&mut self, snapshot: Vec<u8>) {
        (**self).persist(snapshot);
    }

    fn signals(&self) -> Option<&UnixStream> {
        (**self).signals()
    }

    fn on_signals(&mut self, gw: &mut Gateway, now: Instant) {
        (**self).on_signals(gw, now);
    }

    fn on_draining(&mut self) {
        (**self).on_draining();
    }
}
