//! clawgate: the shell around [`clawgate_core`]. It owns the files, the sockets, the clock and
//! the signals, and nothing else: every protocol decision is the core's.
#![forbid(unsafe_code)]

pub mod discovery;
pub mod entropy;
pub mod lock;
pub mod paths;
pub mod settings;
pub mod store;
