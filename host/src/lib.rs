//! clawgate-host: what every clawgate shell shares and that is not a reactor. It owns the files,
//! the clock, the signals and the threads beside the loop, and nothing else: every protocol
//! decision is [`clawgate_core`]'s.
//!
//! A shell's `gateway run` is:
//!
//! ```text
//! let started = startup::start(args)?;      // flags, config (exit 78), state dir, lock,
//!                                           // pairing store + its writer thread, log file,
//!                                           // signals, listener
//! // then its own loop over started.listener, generic over the [`Host`] trait:
//! //   wake on host.signals() and on host.inbox() (worker threads), feed the core, drain
//! //   gateway.poll_output() through shell::absorb (logs, persistence), act on
//! //   Transmit/Close/Timeout itself, and once gateway.is_draining() wind down with
//! //   shell::WindDown (stop announcing, flush for at most sockets::SHUTDOWN_GRACE, wait for
//! //   the workers, say "stopped") and exit 0.
//! ```
#![deny(unsafe_code)]

pub mod allocator;
pub mod code_pages;
pub mod config_file;
pub mod discovery;
pub mod entropy;
pub mod exec_worker;
pub mod file_worker;
mod happy_eyeballs;
mod http_conn;
pub mod http_loop;
pub mod http_pool;
pub mod listen;
pub mod lock;
pub mod logging;
mod lookup;
pub mod machine;
pub mod paths;
pub mod process_worker;
pub mod rlimit;
pub mod run_args;
pub mod session;
pub mod settings;
pub mod shell;
pub mod signals;
pub mod skills;
pub mod sockets;
pub mod startup;
pub mod store;
pub mod tailnet;
mod tls;
pub mod ui_root;
pub mod url;
mod wait;
pub mod worker;
mod ws_conn;

pub use shell::Host;
pub use worker::{WorkerQueue, WorkerSender};
