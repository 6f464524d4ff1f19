//! clawgate: the shell around [`clawgate_core`]. It owns the files, the sockets, the clock and
//! the signals, and nothing else: every protocol decision is the core's.
//!
//! Everything here but [`event_loop`] is independent of the reactor, so every shell starts,
//! logs, persists and handles signals the same way.
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
pub mod startup;
pub mod store;
