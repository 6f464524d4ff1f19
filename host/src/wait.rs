//! How the host's socket threads (mDNS) sleep: in poll(2) on their socket
//! and on a [`Wake`] their owner writes to, with a deadline only when they have one, so a thread
//! with nothing to do costs no wake-ups.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};

/// An eventfd: another thread writes to it to wake one that waits in [`wait`] (to hand it work
/// or to stop it). A write before the wait is not lost: the wait returns at once.
#[derive(Debug)]
pub(crate) struct Wake(OwnedFd);

impl Wake {
    /// A fresh wake-up, not yet written.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Wake(eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?))
    }

    /// Wake the thread that waits on this (now, or at its next wait).
    pub(crate) fn wake(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Forget the wake-ups so far (the eventfd's count back to zero).
    fn clear(&self) {
        let _ = rustix::io::read(&self.0, &mut [0u8; 8]);
    }
}

/// What ended a [`wait`]; neither when the deadline passed or a signal interrupted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The socket is ready for the interest asked for, or has an error or hang-up to report.
    pub(crate) socket: bool,
    /// The [`Wake`] was written (and is cleared).
    pub(crate) woken: bool,
}

/// Wait until `socket` is ready for `interest`, `wake` (if any) is written, or `timeout` (`None`:
/// no limit) has passed.
pub(crate) fn wait(
    socket: impl AsFd,
    interest: PollFlags,
    wake: Option<&Wake>,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let timeout = timeout.map(timespec);
    let on_socket = PollFd::new(&socket, interest);
    let (mut alone, mut with_wake);
    let fds: &mut [PollFd<'_>] = match wake {
        Some(w) => {
            with_wake = [on_socket, PollFd::new(&w.0, PollFlags::IN)];
            &mut with_wake
        }
        None => {
            alone = [on_socket];
            &mut alone
        }
    };
    match poll(fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Ready::default()),
        Err(e) => return Err(e.into()),
    }
    let ready = Ready {
        socket: !fds[0].revents().is_empty(),
        woken: fds.get(1).is_some_and(|w| !w.revents().is_empty()),
    };
    if ready.woken
        && let Some(w) = wake
    {
        w.clear();
    }
    Ok(ready)
}

/// Wait until one of `sockets` is writable or has an error or hang-up to report (a connect
/// ended), or `timeout` has passed, or a signal interrupted the wait.
pub(crate) fn writable_any(sockets: &[impl AsFd], timeout: Duration) -> io::Result<()> {
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|s| PollFd::new(s, PollFlags::OUT))
        .collect();
    match poll(&mut fds, Some(&timespec(timeout))) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `t` as poll(2) takes it (a duration too long for it: the longest it takes).
fn timespec(t: Duration) -> Timespec {
    Timespec::try_from(t).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Instant;

    use super::*;

    fn quiet_socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    #[test]
    fn a_wake_written_before_the_wait_ends_it_at_once_and_is_cleared() {
        let (socket, wake) = (quiet_socket(), Wake::new().expect("eventfd"));
        wake.wake();
        let woke = wait(&socket, PollFlags::IN, Some(&wake), None).expect("wait");
        assert_eq!(
            woke,
            Ready {
                socket: false,
                woken: true
            }
        );
        let start = Instant::now();
        let again = wait(
            &socket,
            PollFlags::IN,
            Some(&wake),
            Some(Duration::from_millis(30)),
        )
        .expect("wait");
        assert_eq!(again, Ready::default(), "the wake-up was cleared");
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_datagram_ends_the_wait_as_the_socket() {
        let socket = quiet_socket();
        let to = socket.local_addr().expect("address");
        quiet_socket().send_to(b"x", to).expect("send");
        let ready = wait(&socket, PollFlags::IN, None, Some(Duration::from_secs(10)));
        assert_eq!(
            ready.expect("wait"),
            Ready {
                socket: true,
                woken: false
            }
        );
    }
}
