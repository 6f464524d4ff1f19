//! How every shell treats its sockets, so that they behave alike: grace periods for closing
//! and shutting down, and the back-off when the process runs out of descriptors
//! ([`AcceptThrottle`]).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use clawgate_core::Level;

/// How long a connection the core closed may take to flush and see the peer's EOF before it
/// is dropped (upstream's `WEBSOCKET_CLOSE_GRACE_MS`).
pub const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// How long shutdown waits for the sockets to flush before the process exits; with
/// [`crate::startup::MDNS_STOP_GRACE`] a stop stays under one second.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(600);

/// Pause of accepting after the process ran out of file descriptors or memory.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The local address of a socket accepted by a listener bound to `bound`: that address, unless
/// the listener is bound to all of them, when the kernel is asked (`ask`, a `getsockname`).
pub fn accepted_local(
    bound: SocketAddr,
    ask: impl FnOnce() -> io::Result<SocketAddr>,
) -> SocketAddr {
    if bound.ip().is_unspecified() {
        ask().unwrap_or(bound)
    } else {
        bound
    }
}

/// Write `buf` to a non-blocking socket until it is all written or the socket would block;
/// the number of bytes written, or the error that ended the socket.
pub fn write_until_blocked(stream: &mut impl Write, buf: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while let Some(rest) = buf.get(sent..).filter(|r| !r.is_empty()) {
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Accept failures that retrying at once cannot fix (no descriptors or memory left): pause
/// accepting for [`ACCEPT_BACKOFF`] rather than spin.
pub fn out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let errno = Errno::from_io_error(e);
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .into_iter()
        .any(|x| errno == Some(x))
}

/// What to do after an accept failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try the next one at once.
    Retry,
    /// Stop accepting for [`ACCEPT_BACKOFF`]: retrying at once would spin.
    Pause,
}

/// The accept back-off both loops share: a failure for want of resources pauses accepting and
/// is warned about once per episode; the first accept after it says accepting resumed.
#[derive(Debug, Default)]
pub struct AcceptThrottle {
    /// Accepting failed for want of resources and has not succeeded since.
    starved: bool,
}

impl AcceptThrottle {
    /// An accept succeeded: the line to log if it ends a starved episode.
    pub fn accepted(&mut self) -> Option<(Level, String)> {
        std::mem::take(&mut self.starved)
            .then(|| (Level::Info, "accepting connections again".to_string()))
    }

    /// An accept failed with `e` (not `WouldBlock`): what to do, and the line to log if any.
    pub fn failed(&mut self, e: &io::Error) -> (AfterFailure, Option<(Level, String)>) {
        if !out_of_resources(e) {
            let line = (Level::Debug, format!("accept failed: {e}"));
            return (AfterFailure::Retry, Some(line));
        }
        let first = !std::mem::replace(&mut self.starved, true);
        let line = first.then(|| {
            let message = format!("cannot accept connections: {e}; pausing accepts");
            (Level::Warn, message)
        });
        (AfterFailure::Pause, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_is_out_of_resources() {
        assert!(out_of_resources(&io::Error::from_raw_os_error(
            rustix::io::Errno::MFILE.raw_os_error()
        )));
        assert!(!out_of_resources(&io::Error::from_raw_os_error(
            rustix::io::Errno::CONNABORTED.raw_os_error()
        )));
        assert!(!out_of_resources(&io::Error::other("not an OS error")));
    }

    #[test]
    fn a_starved_episode_is_warned_once_and_its_end_said() {
        let mut throttle = AcceptThrottle::default();
        assert_eq!(throttle.accepted(), None);
        let mfile = || io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let (after, line) = throttle.failed(&mfile());
        assert_eq!(after, AfterFailure::Pause);
        assert_eq!(line.map(|l| l.0), Some(Level::Warn));
        assert_eq!(throttle.failed(&mfile()), (AfterFailure::Pause, None));
        let reset = io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert_eq!(throttle.failed(&reset).0, AfterFailure::Retry);
        assert_eq!(throttle.accepted().map(|l| l.0), Some(Level::Info));
        assert_eq!(throttle.accepted(), None);
    }

    #[test]
    fn a_full_socket_takes_part_and_the_rest_is_left_without_an_error() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nonblocking");
        let big = vec![7u8; 16 << 20];
        let sent = write_until_blocked(&mut a, &big).expect("no error");
        assert!(sent > 0 && sent < big.len(), "{sent}");
        drop(b);
        assert!(write_until_blocked(&mut a, b"more").is_err());
    }

    #[test]
    fn accepted_sockets_ask_the_kernel_only_behind_a_wildcard_listener() {
        let one: SocketAddr = "127.0.0.1:18789".parse().expect("addr");
        let all: SocketAddr = "0.0.0.0:18789".parse().expect("addr");
        let asked: SocketAddr = "10.0.0.2:18789".parse().expect("addr");
        assert_eq!(accepted_local(one, || panic!("asked")), one);
        assert_eq!(accepted_local(all, || Ok(asked)), asked);
        assert_eq!(
            accepted_local(all, || Err(io::ErrorKind::Other.into())),
            all
        );
    }
}
