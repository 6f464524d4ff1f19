//! The readiness of the clients' sockets (the listener and every accepted socket): an
//! `epoll` of the shell's own ([`Poller`]), each socket registered once, edge-triggered, for
//! reading and writing ([`Registered`]). The driver watches the poller's descriptor as it
//! watches the HTTP loop's (under [`crate::run`] its thread waits on it in its one
//! `poll(2)`; under another executor async-io's reactor watches it) and, when it is readable,
//! [`Poller::dispatch`]es: the socket tasks whose socket became ready are woken, on the
//! driver's thread.
//!
//! Why not async-io's `Async`: its reactor runs on its own thread while this one waits in
//! `poll(2)`, so every client request woke that thread first, which re-armed its one-shot
//! registration, woke this one through the wake-up descriptor and re-armed its timer: two
//! wake-ups, a hand-off between threads and half a dozen system calls per request, and one
//! more `epoll_ctl` on this thread each time a read found the socket empty. Measured,
//! `node.invoke` round trips (two client requests each): clawgate-smol 102 µs p50 against
//! mio's 67 µs.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use rustix::event::Timespec;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};

/// Readiness events taken from the poller per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;

/// The clients' poller: the sockets registered with it, by key.
pub(crate) struct Poller {
    epoll: OwnedFd,
    sources: Mutex<HashMap<u64, Weak<Source>>>,
    /// Keys are never used twice: a late event of a closed socket finds nothing.
    next_key: AtomicU64,
}

/// What one registered socket's tasks wait for, per direction.
#[derive(Default)]
struct Source {
    read: Mutex<Direction>,
    write: Mutex<Direction>,
}

/// One direction of a socket: whether it became ready since a task last found it would
/// block, and the task waiting for it.
#[derive(Default)]
struct Direction {
    ready: bool,
    waiting: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Direction {
    /// Mark it ready and wake its task (outside the lock).
    fn raise(m: &Mutex<Direction>) {
        let waiting = {
            let mut d = lock(m);
            d.ready = true;
            d.waiting.take()
        };
        if let Some(w) = waiting {
            w.wake();
        }
    }

    /// Ready once the socket became ready since the last call said it was (and takes it).
    fn poll(m: &Mutex<Direction>, cx: &mut Context<'_>) -> Poll<()> {
        let mut d = lock(m);
        if std::mem::take(&mut d.ready) {
            Poll::Ready(())
        } else {
            d.waiting = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Poller {
    /// A poller with no sockets.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            epoll: epoll::create(CreateFlags::CLOEXEC)?,
            sources: Mutex::default(),
            next_key: AtomicU64::new(0),
        })
    }

    /// A second descriptor of the poller, readable when a registered socket is ready.
    pub(crate) fn fd(&self) -> io::Result<OwnedFd> {
        self.epoll.try_clone()
    }

    /// Wake the tasks of every socket that became ready since the last call. Never blocks.
    pub(crate) fn dispatch(&self) {
        let none = Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        };
        let mut taken = [none; EVENTS_PER_WAIT];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            let events = match epoll::wait(&self.epoll, &mut taken, Some(&zero)) {
                Ok(n) => taken.get(..n).unwrap_or_default(),
                Err(rustix::io::Errno::INTR) => continue,
                // Nothing to take (the poller itself failed): the sockets' own calls meet
                // their errors.
                Err(_) => return,
            };
            let sources = lock(&self.sources);
            for event in events.iter() {
                let Event { flags, data } = *event;
                let Some(source) = sources.get(&data.u64()).and_then(Weak::upgrade) else {
                    continue;
                };
                let failed = flags.intersects(EventFlags::ERR | EventFlags::HUP);
                if failed || flags.intersects(EventFlags::IN | EventFlags::RDHUP) {
                    Direction::raise(&source.read);
                }
                if failed || flags.contains(EventFlags::OUT) {
                    Direction::raise(&source.write);
                }
            }
            if events.len() < EVENTS_PER_WAIT {
                return;
            }
        }
    }
}

/// A socket registered with a [`Poller`]: its operations are tried at once and, when they
/// would block, retried once the poller says the socket became ready.
pub(crate) struct Registered<T: AsFd> {
    io: T,
    source: Arc<Source>,
    key: u64,
    poller: Arc<Poller>,
}

impl<T: AsFd> Registered<T> {
    /// Register `io` (non-blocking already) with `poller`.
    pub(crate) fn new(io: T, poller: &Arc<Poller>) -> io::Result<Self> {
        let key = poller.next_key.fetch_add(1, Ordering::Relaxed);
        let source = Arc::new(Source::default());
        lock(&poller.sources).insert(key, Arc::downgrade(&source));
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        if let Err(e) = epoll::add(&poller.epoll, &io, EventData::new_u64(key), flags) {
            lock(&poller.sources).remove(&key);
            return Err(e.into());
        }
        Ok(Self {
            io,
            source,
            key,
            poller: poller.clone(),
        })
    }

    /// The socket.
    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }

    /// `op` on the socket, until it does not fail with `WouldBlock` (or `Interrupted`),
    /// waiting for readability between tries.
    pub(crate) async fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.until_done(&self.source.read, op).await
    }

    /// `op` on the socket, until it does not fail with `WouldBlock` (or `Interrupted`),
    /// waiting for writability between tries.
    pub(crate) async fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.until_done(&self.source.write, op).await
    }

    async fn until_done<R>(
        &self,
        direction: &Mutex<Direction>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // An event that came after the try (edge-triggered: any bytes or room
                    // that came since) was recorded, or wakes this wait.
                    std::future::poll_fn(|cx| Direction::poll(direction, cx)).await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }
}

impl<T: AsFd> Drop for Registered<T> {
    /// Forget the socket; closing it takes it out of the `epoll`.
    fn drop(&mut self) {
        lock(&self.poller.sources).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A read that would block waits; bytes arriving wake it at the next dispatch, and the
    /// retried read takes them; a dispatch with nothing new wakes nobody.
    #[test]
    fn a_blocked_read_is_woken_by_the_bytes_that_arrive() {
        let poller = Arc::new(Poller::new().expect("poller"));
        let (mut peer, ours) = UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let socket = Registered::new(ours, &poller).expect("register");
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut read = Box::pin(socket.read_with(|mut s| {
            let mut buf = [0u8; 8];
            s.read(&mut buf)
                .map(|n| buf.get(..n).unwrap_or_default().to_vec())
        }));
        // The registration's first event (writable) leaves the read waiting.
        poller.dispatch();
        assert!(read.as_mut().poll(&mut cx).is_pending());
        poller.dispatch();
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "woken with nothing new");
        peer.write_all(b"hi").expect("write");
        poller.dispatch();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        match read.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(bytes)) => assert_eq!(bytes, b"hi"),
            other => panic!("read: {other:?}"),
        }
    }

    /// A socket dropped before its event is dispatched is forgotten: the event finds nothing.
    #[test]
    fn a_dropped_socket_is_forgotten() {
        let poller = Arc::new(Poller::new().expect("poller"));
        let (mut peer, ours) = UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let socket = Registered::new(ours, &poller).expect("register");
        peer.write_all(b"x").expect("write");
        drop(socket);
        assert!(lock(&poller.sources).is_empty());
        poller.dispatch();
    }
}
