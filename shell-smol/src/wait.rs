//! The wait of [`crate::run`]'s thread ([`block_on`]): between two polls of the gateway it
//! sleeps in one `poll(2)` on the descriptors the driver awaits ([`Watched`]: the clients' and
//! the HTTP loop's pollers, the signal pipe), a wake-up descriptor the other threads' wakers write, and the
//! earliest instant an [`Alarm`](crate::alarm::Alarm) asked for.
//!
//! Why not park and leave those descriptors to async-io's thread: every answer the HTTP loop
//! reads (a model's delta, a channel's update, an API's reply) then woke async-io's thread
//! first, which re-armed its registration and woke this one: two wake-ups and a hand-off
//! between threads per event, on the path of every agent and channel hop (and twice that
//! many system calls). Waiting on them itself, this thread wakes for them alone, as the mio
//! shell's loop does; the clients' sockets likewise ([`crate::clients`]). async-io's thread
//! keeps the socket tasks' few timers and wakes this one through the wake-up descriptor, as a
//! worker thread does.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};

/// What the future polled last asked [`block_on`] to wait for.
#[derive(Default)]
struct Wanted {
    /// The earliest instant to poll again by (`None`: no deadline).
    due: Option<Instant>,
    /// Descriptors whose readiness polls again.
    fds: Vec<Arc<Watched>>,
}

thread_local! {
    /// Inside [`block_on`] on this thread: what the current poll asked to wait for. `None`
    /// outside.
    static WANTED: RefCell<Option<Wanted>> = const { RefCell::new(None) };
}

/// Ask the [`block_on`] running on this thread to poll again by `at`; `false` when none runs.
pub(crate) fn wake_by(at: Instant) -> bool {
    WANTED.with_borrow_mut(|wanted| match wanted {
        Some(w) => {
            w.due = Some(w.due.map_or(at, |due| due.min(at)));
            true
        }
        None => false,
    })
}

/// Ask the [`block_on`] running on this thread to poll again once `watched` is readable
/// (and mark it [`Watched::take_ready`]); `false` when none runs.
pub(crate) fn watch(watched: &Arc<Watched>) -> bool {
    WANTED.with_borrow_mut(|wanted| match wanted {
        Some(w) => {
            w.fds.push(watched.clone());
            true
        }
        None => false,
    })
}

/// A descriptor [`block_on`] waits on while a future awaits it, and whether it was seen
/// readable since the future last looked.
pub(crate) struct Watched {
    fd: OwnedFd,
    ready: AtomicBool,
}

impl Watched {
    /// Watch `fd`.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self {
            fd,
            ready: AtomicBool::new(false),
        }
    }

    /// Whether the descriptor was seen readable (or failed) since the last call.
    pub(crate) fn take_ready(&self) -> bool {
        self.ready.swap(false, Ordering::SeqCst)
    }
}

impl AsFd for Watched {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Run `future` to completion on this thread, waiting between polls until it is woken, a
/// descriptor it awaits ([`watch`]) is readable, or the earliest instant it asked for
/// ([`wake_by`]) has come. Fails only when the wait itself fails.
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> io::Result<T> {
    let mut future = pin!(future);
    let alert = Arc::new(Alert {
        fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        woken: AtomicBool::new(false),
        sleeping: AtomicBool::new(false),
    });
    let waker = Waker::from(alert.clone());
    let mut cx = Context::from_waker(&waker);
    let outside = WANTED.take();
    let mut wanted = Wanted::default();
    let result = loop {
        wanted.due = None;
        wanted.fds.clear();
        WANTED.set(Some(wanted));
        alert.woken.store(false, Ordering::SeqCst);
        let polled = future.as_mut().poll(&mut cx);
        wanted = WANTED.take().unwrap_or_default();
        if let Poll::Ready(output) = polled {
            break Ok(output);
        }
        if let Err(e) = alert.wait(&wanted) {
            break Err(e);
        }
    };
    WANTED.set(outside);
    result
}

/// The waker of [`block_on`]: writes its wake-up descriptor once per poll at most, and only
/// while the thread sleeps on it.
struct Alert {
    fd: OwnedFd,
    /// Woken since the last poll began.
    woken: AtomicBool,
    /// In (or about to enter) `poll(2)`.
    sleeping: AtomicBool,
}

impl Alert {
    /// Sleep until woken, a descriptor of `wanted` is readable, or its instant has come.
    fn wait(&self, wanted: &Wanted) -> io::Result<()> {
        // Announced before `woken` is read: a waker that ran before sees `woken` read true
        // here, one that runs after sees `sleeping` and writes the descriptor.
        self.sleeping.store(true, Ordering::SeqCst);
        if self.woken.load(Ordering::SeqCst) {
            self.sleeping.store(false, Ordering::SeqCst);
            return Ok(());
        }
        let timeout = match wanted.due {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // A deadline past the range of a `timespec` is no deadline.
                Timespec::try_from(left).ok()
            }
            None => None,
        };
        if timeout.is_some_and(|t| t.tv_sec == 0 && t.tv_nsec == 0) {
            self.sleeping.store(false, Ordering::SeqCst);
            return Ok(());
        }
        let mut fds = Vec::with_capacity(1 + wanted.fds.len());
        fds.push(PollFd::new(&self.fd, PollFlags::IN));
        fds.extend(wanted.fds.iter().map(|w| PollFd::new(&w.fd, PollFlags::IN)));
        let polled = poll(&mut fds, timeout.as_ref());
        self.sleeping.store(false, Ordering::SeqCst);
        match polled {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let mut seen = fds.iter().map(|p| !p.revents().is_empty());
        if seen.next() == Some(true) {
            // Emptied: only a later wake-up makes it readable again.
            let _ = rustix::io::read(&self.fd, &mut [0u8; 8]);
        }
        for (w, readable) in wanted.fds.iter().zip(seen) {
            if readable {
                w.ready.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

impl Wake for Alert {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst) && self.sleeping.load(Ordering::SeqCst) {
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::thread;
    use std::time::Duration;

    /// How long a test waits for what should come within milliseconds.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Until `watched` is readable, under [`block_on`].
    async fn readable(watched: &Arc<Watched>) {
        std::future::poll_fn(|_| {
            if watched.take_ready() {
                Poll::Ready(())
            } else {
                assert!(watch(watched), "no block_on runs");
                Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn a_watched_descriptor_wakes_the_wait() {
        let (mut tx, rx) = UnixStream::pair().expect("pair");
        let watched = Arc::new(Watched::new(rx.into()));
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.write_all(b"x").expect("write");
            tx
        });
        let start = Instant::now();
        block_on(readable(&watched)).expect("wait");
        assert!(start.elapsed() < PATIENCE);
        writer.join().expect("writer");
    }

    #[test]
    fn a_wake_up_from_another_thread_polls_again() {
        let (tx, rx) = smol::channel::bounded::<u8>(1);
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.send_blocking(7).expect("send");
        });
        assert_eq!(block_on(rx.recv()).expect("wait"), Ok(7));
        sender.join().expect("sender");
    }

    #[test]
    fn the_instant_asked_for_polls_again() {
        let start = Instant::now();
        let at = start + Duration::from_millis(30);
        block_on(std::future::poll_fn(|_| {
            if Instant::now() >= at {
                Poll::Ready(())
            } else {
                assert!(wake_by(at));
                Poll::Pending
            }
        }))
        .expect("wait");
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn nothing_is_asked_outside_block_on() {
        let (_tx, rx) = UnixStream::pair().expect("pair");
        assert!(!wake_by(Instant::now()));
        assert!(!watch(&Arc::new(Watched::new(rx.into()))));
    }
}
