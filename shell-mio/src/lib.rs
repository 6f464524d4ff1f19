//! clawgate: the shell around [`clawgate_core`]. It owns the files, the sockets, the clock and
//! the signals, and nothing else: every protocol decision is the core's.
//!
//! Everything here but [`event_loop`] is independent of the reactor, so every shell starts,
//! logs, persists and handles signals the same way. A shell's `gateway run` is:
//!
//! ```text
//! let started = startup::start(args)?;      // flags, config (exit 78), state dir, lock,
//!                                           // pairing store, log file, signals, listener
//! // then its own loop over started.listener and started.host.signals().reader():
//! //   feed the core, drain gateway.poll_output() through host.absorb(output)
//! //   (logs, persistence), act on Transmit/Close/Timeout itself, call
//! //   host.on_signals(&mut gateway, now) when the signal socket is readable, and once
//! //   gateway.is_draining() flush for at most sockets::SHUTDOWN_GRACE and exit 0.
//! ```
#![forbid(unsafe_code)]

pub mod discovery;
pub mod entropy;
pub mod event_loop;
pub mod listen;
pub mod lock;
pub mod logging;
pub mod paths;
pub mod rlimit;
pub mod run;
pub mod run_args;
pub mod settings;
pub mod signals;
pub mod sockets;
pub mod startup;
pub mod store;
pub mod tailnet;
