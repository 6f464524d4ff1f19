//! A blocking connection for the WebSocket worker threads ([`crate::ws_worker`]): resolve the
//! host, race connections to its addresses as the loop does ([`crate::happy_eyeballs`]:
//! non-blocking connects, waited on in poll(2)) and, for `https://` (a
//! `wss://` URL), complete the TLS handshake ([`crate::tls`]), the server's certificate
//! checked against the system's roots, all within the open timeout ([`HttpLimits`], as the
//! loop's requests do: [`crate::http_conn`]); then set the idle timeout on the socket. A
//! [`Running`] lets the loop stop it from another thread: a cancel shuts the socket down, so
//! a blocked read or write returns at once. (The gateway's HTTP requests connect on the loop
//! instead, never blocking: [`crate::http_conn`].)

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use clawgate_core::model::http1::{Scheme, Target};

use crate::happy_eyeballs::{Attempt, Race};
use crate::http_conn::{handshake_timeout_error, resolve};
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
    let by = Instant::now() + limits.open_timeout;
    let name = format!("{}:{}", target.host, target.port);
    let addrs = resolve(&target.host, target.port, &name)?;
    let race = Race::new(&addrs, name.clone(), limits, by);
    let Attempt { addr, socket, .. } = race
        .finish(|| running.is_cancelled())
        .map_err(|e| e.to_string())?;
    let setup = |s: &TcpStream| {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.try_clone()
    };
    let handle = setup(&socket).map_err(|e| format!("{name} ({addr}): {e}"))?;
    running.attach(handle)?;
    let stream = match target.scheme {
        Scheme::Http => Stream::Plain(socket),
        Scheme::Https => {
            let late = || handshake_timeout_error(&name, limits);
            let session = tls::connect(&target.host, &name, socket, by, late);
            if running.is_cancelled() {
                return Err(CANCELLED.into());
            }
            session?
        }
    };
    let idle = |s: &TcpStream| {
        s.set_read_timeout(Some(limits.idle_timeout))?;
        s.set_write_timeout(Some(limits.idle_timeout))
    };
    idle(stream.tcp()).map_err(|e| format!("{name} ({addr}): {e}"))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use clawgate_tests::fake_tls::trickle_handshake;

    use super::*;

    #[test]
    fn a_handshake_that_trickles_bytes_ends_at_the_open_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        trickle_handshake(listener);
        let limits = HttpLimits {
            idle_timeout: Duration::from_millis(200),
            open_timeout: Duration::from_millis(800),
            ..HttpLimits::default()
        };
        let target = Target::parse(&format!("https://{addr}/")).unwrap();
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        std::thread::spawn(move || {
            let opened = open(&target, &limits, &Running::default());
            let _ = tx.send(opened.err());
        });
        let error = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("an end in time");
        assert_eq!(
            error.as_deref(),
            Some(&*format!(
                "TLS handshake with {addr} failed: not done within 0.8 s (open timeout)"
            ))
        );
        assert!(started.elapsed() >= Duration::from_millis(800));
    }
}
