//! How every shell treats its sockets, so that they behave alike: grace periods for closing
//! and shutting down, and the back-off when the process runs out of descriptors.

use std::io;
use std::time::Duration;

/// How long a connection the core closed may take to flush and see the peer's EOF before it
/// is dropped (upstream's `WEBSOCKET_CLOSE_GRACE_MS`).
pub const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// How long shutdown waits for the sockets to flush before the process exits; with
/// [`crate::startup::MDNS_STOP_GRACE`] a stop stays under one second.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(600);

/// Pause of accepting after the process ran out of file descriptors or memory.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept failures that retrying at once cannot fix (no descriptors or memory left): pause
/// accepting for [`ACCEPT_BACKOFF`] rather than spin.
pub fn out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let errno = Errno::from_io_error(e);
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .into_iter()
        .any(|x| errno == Some(x))
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
}
