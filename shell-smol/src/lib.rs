//! clawgate-smol: the [`clawgate_core`] gateway driven by a smol executor, for programs that
//! already run one or want to embed the gateway in one.
//!
//! One driver task owns the [`Gateway`]; every socket gets a reader task that hands its
//! bytes to the driver and a writer task that writes what the core transmits, the sockets'
//! readiness coming from a poller of the shell's own that the driver dispatches. The driver
//! sleeps until the core's next deadline (under [`run`], its thread waits in `poll(2)` until
//! then, on the clients' poller, the signal pipe and the HTTP loop's poller too; under
//! another executor, on a [`smol::Timer`], with async-io watching those), and wakes for the
//! clients' sockets, signals, the HTTP loop and what worker threads send. No protocol decision lives here: bytes in, bytes out, exactly as
//! the core says. Start-up, logging, persistence, signals and workers are
//! [`clawgate_host`]'s, shared with the mio shell.
//!
//! Embedding: hand [`serve`] a listener, a gateway and a [`Host`], and stop it with
//! [`Control::Shutdown`]:
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::os::unix::net::UnixStream;
//! use std::time::Instant;
//! use clawgate_core::{Config, Gateway, LogRecord, PairingStore, Work, WorkId, WorkResult};
//! use clawgate_host::{Host, WorkerQueue};
//! use clawgate_smol::Control;
//!
//! #[derive(Default)]
//! struct Quiet(WorkerQueue<Infallible>);
//! impl Host for Quiet {
//!     type Input = Infallible;
//!     fn log(&mut self, _record: &LogRecord) {}
//!     fn flush_log(&mut self) {}
//!     // No disk: store batches are acknowledged at once (a real host writes them on a
//!     // thread and reports through its inbox).
//!     fn work(&mut self, _id: WorkId, _work: Work) -> Option<WorkResult> {
//!         Some(WorkResult::Stored(Ok(())))
//!     }
//!     fn signals(&self) -> Option<&UnixStream> { None }
//!     fn on_signals(&mut self, _gw: &mut Gateway, _now: Instant) {}
//!     fn inbox(&self) -> &WorkerQueue<Infallible> { &self.0 }
//!     fn on_worker_input(&mut self, _gw: &mut Gateway, _now: Instant, input: Infallible) {
//!         match input {}
//!     }
//!     fn on_draining(&mut self) {}
//!     fn on_stopped(&mut self) {}
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = std::net::TcpListener::bind("127.0.0.1:18789")?;
//! let entropy = Box::new(clawgate_host::entropy::OsEntropy::default());
//! let gw = Gateway::new(Config::local_default(), entropy, PairingStore::default(), Instant::now(), clawgate_host::logging::unix_ms());
//! let (stop, control) = smol::channel::unbounded::<Control>(); // stop.send(Control::Shutdown)
//! let ex = smol::Executor::new();
//! let mut host = Quiet::default();
//! smol::block_on(ex.run(clawgate_smol::serve(&ex, listener, gw, &mut host, control)))
//! # }
//! ```
#![forbid(unsafe_code)]

mod alarm;
mod clients;
mod driver;
mod readiness;
mod socket;
mod wait;

use clawgate_core::Level;
use clawgate_host::shell::note;
use clawgate_host::startup::{EXIT_FAILURE, Started};

pub use clawgate_host::Host;
pub use driver::{Control, serve};

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
    // Not `smol::block_on`: with it this thread and async-io's own thread take turns at the
    // reactor, and each time this one holds it the other backs off in ten timed sleeps
    // (50 µs to 10 ms) before it blocks: about a dozen wake-ups per event, the bulk of an idle
    // gateway's. Here this thread waits in `poll(2)` on what the driver awaits (the clients'
    // and the HTTP loop's pollers, the signal pipe, its deadline) and wakes for it itself, and
    // async-io's thread alone waits on the reactor (the socket tasks' few timers) and wakes
    // this one when a task is ready (see `wait`).
    match wait::block_on(ex.run(serve(&ex, listener, gateway, &mut host, control))).and_then(|r| r)
    {
        Ok(()) => 0,
        Err(e) => {
            note(&mut host, Level::Error, format!("event loop failed: {e}"));
            EXIT_FAILURE
        }
    }
}
