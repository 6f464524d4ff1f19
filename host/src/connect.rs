//! A blocking connection for the WebSocket worker threads ([`crate::ws_worker`]): resolve the
//! host, connect to each address in turn within the connect timeout, set the idle timeout
//! on the socket and, for `https://` (a `wss://` URL), complete the TLS handshake
//! ([`crate::tls`]), the server's certificate checked against the system's roots. A
//! [`Running`] lets the loop stop it from another thread: a cancel shuts the socket down, so
//! a blocked read or write returns at once. (The gateway's HTTP requests connect on the loop
//! instead, never blocking: [`crate::http_conn`].)

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use clawgate_core::model::http1::{Scheme, Target};

use crate::http_conn::{connect_error, idle_error, resolve};
use crate::http_loop::{CANCELLED, HttpLimits};
use crate::tls::{self, Stream};

/// A connection (or socket) in use on a worker thread: how to stop it.
#[derive(Default)]
pub(crate) struct Running {
    cancelled: AtomicBool,
    /// A handle on its socket once connected, to shut it down.
    socket: Mutex<Option<TcpStream>>,
}

impl Running {
    /// Stop it: its socket is shut down so a blocked read returns.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.socket).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Register its socket so a cancel can shut it down; fails when it was cancelled already
    /// (a cancel that came before found no socket).
    fn attach(&self, socket: TcpStream) -> Result<(), String> {
        *lock(&self.socket) = Some(socket);
        if self.is_cancelled() {
            return Err(CANCELLED.into());
        }
        Ok(())
    }

    /// Whether it was stopped.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked left consistent data behind (every update is one statement).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connected byte stream to `target`, with the idle timeout set and registered with
/// `running` so a cancel can shut it down; for `https://` a TLS session over it, its
/// handshake done. Blocking: never on the loop.
pub(crate) fn open(
    target: &Target,
    limits: &HttpLimits,
    running: &Running,
) -> Result<Stream, String> {
    let name = format!("{}:{}", target.host, target.port);
    let addrs = resolve(&target.host, target.port, &name)?;
    let mut last = None;
    for addr in addrs {
        if running.is_cancelled() {
            return Err(CANCELLED.into());
        }
        match TcpStream::connect_timeout(&addr, limits.connect_timeout) {
            Ok(stream) => {
                let setup = |s: &TcpStream| {
                    s.set_read_timeout(Some(limits.idle_timeout))?;
                    s.set_write_timeout(Some(limits.idle_timeout))?;
                    s.set_nodelay(true)?;
                    s.try_clone()
                };
                let handle = setup(&stream).map_err(|e| format!("{name} ({addr}): {e}"))?;
                running.attach(handle)?;
                return match target.scheme {
                    Scheme::Http => Ok(Stream::Plain(stream)),
                    Scheme::Https => {
                        let idle = || idle_error(&name, limits);
                        let session = tls::connect(&target.host, &name, stream, idle);
                        if running.is_cancelled() {
                            return Err(CANCELLED.into());
                        }
                        session
                    }
                };
            }
            Err(e) => last = Some(connect_error(&name, addr, &e)),
        }
    }
    Err(last.unwrap_or_else(|| CANCELLED.into()))
}
