//! Readiness of a descriptor the driver only watches (the signal pipe, the HTTP loop's
//! poller), taken as a hint: [`Readiness::ready`] is ready once the descriptor may have
//! become readable since it last was, and the driver then does the non-blocking work the
//! descriptor stands for, which finds nothing to do when the wake-up was early. Under
//! [`crate::run`] the thread waits on the descriptor itself ([`crate::wait`]); under another
//! executor async-io's reactor watches it. And a [`Flag`]: a wake-up other threads raise for
//! one waiting task (the worker threads' inputs).
//!
//! Why not async-io's own readiness ([`Async::readable`], [`Async::poll_readable`]): it
//! counts an event only from a reactor turn later than the one under way when the interest
//! was registered, and the interest is registered while async-io's thread waits in that
//! turn, so the event that ends it is discounted: the waiting task is woken, finds itself
//! not ready, registers again, and async-io's thread, woken at once by the descriptor (still
//! readable, nothing has read it), wakes it a second time. `poll_readable`, which registers
//! anew at each wake-up, can do so for ever, the two threads waking each other while the
//! descriptor stays readable (measured: 360 wake-ups in 10 ms). A `readable` future dropped
//! at the end of a driver turn (another wake came first) also took its interest along, to be
//! registered again the next turn (an `epoll_ctl` per turn).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use smol::Async;

use crate::wait::{Watched, watch};

/// One watched descriptor: waited on by [`crate::wait::block_on`] when it runs the driver,
/// else registered with async-io once and kept registered between turns.
pub(crate) struct Readiness {
    watched: Arc<Watched>,
    /// The descriptor in async-io's reactor, with no interest until a wait outside
    /// `block_on` asks for it.
    source: Async<Shared>,
    /// The waker async-io holds for the descriptor: it records the wake-up and passes it on
    /// to whoever waits.
    hint: Arc<Flag>,
}

/// The watched descriptor, as async-io's source.
struct Shared(Arc<Watched>);

impl AsFd for Shared {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A wake-up raised on any thread for one task: [`Flag::wait`] is ready once it was raised
/// since the last time it was.
#[derive(Default)]
pub(crate) struct Flag {
    raised: AtomicBool,
    waiting: Mutex<Option<Waker>>,
}

impl Flag {
    /// Raise the flag and wake whoever waits for it (outside the flag's lock: a waker that
    /// runs at once finds it free).
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = waiting {
            w.wake();
        }
    }

    /// Ready once the flag was raised since it was last taken (and takes it).
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_wait(cx))
    }

    fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.take() {
            return Poll::Ready(());
        }
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // Raised between the look and the waker's storing: `raise` found no waker.
        if self.take() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn take(&self) -> bool {
        self.raised.swap(false, Ordering::SeqCst)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.raise();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raise();
    }
}

impl Readiness {
    /// Watch `fd` (made non-blocking).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        let watched = Arc::new(Watched::new(fd));
        Ok(Self {
            source: Async::new(Shared(watched.clone()))?,
            watched,
            hint: Arc::default(),
        })
    }

    /// Ready once the descriptor may be readable (or failed).
    pub(crate) fn ready(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_ready(cx))
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.watched.take_ready() || self.hint.take() {
            return Poll::Ready(());
        }
        // Under `block_on`: its wait sees the descriptor readable and polls again.
        if watch(&self.watched) {
            return Poll::Pending;
        }
        *self
            .hint
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // The same waker each time (one `Arc`): async-io keeps its registration as it is.
        let hint = Waker::from(self.hint.clone());
        match self.source.poll_readable(&mut Context::from_waker(&hint)) {
            // An error: the work it stands for meets it.
            Poll::Ready(_) => {
                self.hint.take();
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// A watched pipe is seen readable after each write, with a driver that empties it each
    /// time, and each round wakes the waiting thread a bounded number of times.
    #[test]
    fn each_write_is_seen_once_emptied() {
        let (mut tx, rx) = UnixStream::pair().expect("pair");
        rx.set_nonblocking(true).expect("nonblocking");
        let mut drain = rx.try_clone().expect("clone");
        let (go, rounds) = mpsc::channel::<()>();
        let writer = thread::spawn(move || {
            for _ in rounds {
                thread::sleep(Duration::from_millis(5));
                tx.write_all(b"x").expect("write");
            }
        });
        let polls = smol::future::block_on(async {
            let mut watch = Readiness::new(rx.into()).expect("watch");
            let mut polls = 0;
            for _ in 0..20 {
                go.send(()).expect("round");
                // async-io's thread is back in its wait when the interest is registered, as
                // in the gateway (the write comes 5 ms later).
                thread::sleep(Duration::from_millis(1));
                std::future::poll_fn(|cx| {
                    polls += 1;
                    watch.poll_ready(cx)
                })
                .await;
                let mut buf = [0u8; 8];
                while drain.read(&mut buf).is_ok() {}
            }
            polls
        });
        drop(go);
        writer.join().expect("writer");
        // Two polls a round: pending, then ready. async-io's own readiness (`poll_readable`)
        // polls three times or more: the write ends the reactor turn the interest was
        // registered in (measured: 67-197 polls).
        assert!(polls <= 2 * 20 + 2, "{polls} polls for 20 writes");
    }

    /// Under [`crate::wait::block_on`] the thread waits on the descriptor itself: each write
    /// is seen, and async-io's reactor never holds a waker for it.
    #[test]
    fn under_block_on_async_io_does_not_watch() {
        let (mut tx, rx) = UnixStream::pair().expect("pair");
        rx.set_nonblocking(true).expect("nonblocking");
        let mut drain = rx.try_clone().expect("clone");
        let mut watch = Readiness::new(rx.into()).expect("watch");
        let (go, rounds) = mpsc::channel::<()>();
        let writer = thread::spawn(move || {
            for _ in rounds {
                thread::sleep(Duration::from_millis(5));
                tx.write_all(b"x").expect("write");
            }
        });
        crate::wait::block_on(async {
            for _ in 0..5 {
                // Nothing written yet: waiting, and nobody but the watch holds its waker.
                assert!(smol::future::poll_once(watch.ready()).await.is_none());
                assert_eq!(Arc::strong_count(&watch.hint), 1, "async-io holds a waker");
                go.send(()).expect("round");
                watch.ready().await;
                let mut buf = [0u8; 8];
                while drain.read(&mut buf).is_ok() {}
            }
        })
        .expect("wait");
        drop(go);
        writer.join().expect("writer");
    }

    /// A flag raised on another thread wakes the task waiting for it; one raised before the
    /// wait is not lost, and a wait takes it.
    #[test]
    fn a_raised_flag_is_seen_once() {
        let flag = Arc::new(Flag::default());
        flag.raise();
        assert!(smol::future::block_on(smol::future::poll_once(flag.wait())).is_some());
        assert!(smol::future::block_on(smol::future::poll_once(flag.wait())).is_none());
        let raiser = {
            let flag = flag.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                flag.raise();
            })
        };
        smol::future::block_on(flag.wait());
        raiser.join().expect("raiser");
    }
}
