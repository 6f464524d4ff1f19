//! SIGTERM, SIGINT and SIGHUP as flags plus a self-pipe that wakes the event loop. The read
//! end is a plain nonblocking socket, so any reactor (mio, smol) can wait on it.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Signals that arrived since the last [`Signals::take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// SIGTERM or SIGINT: shut down.
    pub terminate: bool,
    /// SIGHUP: reload the configuration.
    pub reload: bool,
}

/// The installed handlers and the read end of their wake-up pipe.
#[derive(Debug)]
pub struct Signals {
    reader: UnixStream,
    terminate: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Install the handlers. From now on these signals no longer kill the process.
    pub fn install() -> io::Result<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        let terminate = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (SIGTERM, &terminate),
            (SIGINT, &terminate),
            (SIGHUP, &reload),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        Ok(Self {
            reader,
            terminate,
            reload,
        })
    }

    /// The socket that becomes readable when a signal arrives.
    pub fn reader(&self) -> &UnixStream {
        &self.reader
    }

    /// What arrived since the last call; empties the wake-up pipe.
    pub fn take(&self) -> Pending {
        let mut buf = [0u8; 64];
        // Each signal writes one byte; a bounded number of reads empties any burst.
        for _ in 0..64 {
            match (&self.reader).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Pending {
            terminate: self.terminate.swap(false, Ordering::SeqCst),
            reload: self.reload.swap(false, Ordering::SeqCst),
        }
    }
}

impl AsRawFd for Signals {
    fn as_raw_fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }
}
