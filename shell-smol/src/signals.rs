//! Unix signals for an async program: a thread blocks on `signal-hook`'s iterator and
//! forwards each signal to a channel the driver side awaits.

use std::io;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smol::channel::Receiver;

/// What a signal asks of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: shut down.
    Stop,
    /// SIGHUP: reload the configuration.
    Reload,
}

/// Start listening for SIGTERM, SIGINT and SIGHUP; they arrive on the returned channel.
pub fn listen() -> io::Result<Receiver<Signal>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = smol::channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let signal = if sig == SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Stop
                };
                if tx.send_blocking(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
