//! clawgate: the mio shell around [`clawgate_core`]. Start-up, files, logging, signals and
//! worker threads are [`clawgate_host`]'s, shared with the smol shell; this crate is the
//! reactor only: [`event_loop`] accepts, reads, feeds the core, drains its outputs and writes,
//! generic over the [`clawgate_host::Host`] trait, and [`run`] is `gateway run`:
//!
//! ```text
//! let started = startup::start(args)?;      // clawgate_host: everything that can refuse
//! event_loop::run(started)                  // until a signal stops it; exit 0
//! ```
#![forbid(unsafe_code)]

pub mod event_loop;
pub mod run;
