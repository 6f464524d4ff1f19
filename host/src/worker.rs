//! Inputs from other threads: a [`WorkerQueue`] is how worker threads (the store writer, and
//! later channel pollers, model streams, MCP servers) feed the event loop. Senders are
//! `Clone + Send`; a send wakes the loop through the wake function the loop installed (a
//! `mio::Waker`, a smol channel), and the loop takes everything queued and hands each item to
//! [`Host::on_worker_input`](crate::Host::on_worker_input).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// How a worker wakes the loop; installed by the loop with [`WorkerQueue::set_wake`].
type Wake = Box<dyn Fn() + Send + Sync>;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    wake: OnceLock<Wake>,
}

impl<T> Shared<T> {
    fn items(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A worker that panicked while pushing left a whole queue behind: keep using it.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }
}

/// The loop's end of a queue of inputs from worker threads.
pub struct WorkerQueue<T> {
    shared: Arc<Shared<T>>,
}

/// A worker's end of a [`WorkerQueue`]: cheap to clone, sendable to any thread.
pub struct WorkerSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Default for WorkerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WorkerQueue<T> {
    /// An empty queue. Items sent before the loop installs its wake function wait for it.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                items: Mutex::new(VecDeque::new()),
                wake: OnceLock::new(),
            }),
        }
    }

    /// A sender for a worker thread.
    pub fn sender(&self) -> WorkerSender<T> {
        WorkerSender {
            shared: self.shared.clone(),
        }
    }

    /// Install how a send wakes the loop (once; later calls are ignored). Wakes at once if
    /// items are already waiting.
    pub fn set_wake(&self, wake: impl Fn() + Send + Sync + 'static) {
        if self.shared.wake.set(Box::new(wake)).is_ok() && !self.shared.items().is_empty() {
            self.shared.wake();
        }
    }

    /// Everything queued so far, in the order it was sent.
    pub fn take(&self) -> VecDeque<T> {
        std::mem::take(&mut *self.shared.items())
    }
}

impl<T> WorkerSender<T> {
    /// Queue `item` for the loop and wake it (only when the queue was empty: a loop that has
    /// items waiting is already woken, and takes them all at once).
    pub fn send(&self, item: T) {
        self.send_all(std::iter::once(item));
    }

    /// Queue `items` together and wake the loop once (only when the queue was empty): what a
    /// worker learned at once (an answer's head, body and end read together) reaches the
    /// loop in one wake-up, never split across two.
    pub fn send_all(&self, items: impl IntoIterator<Item = T>) {
        let woken = {
            let mut queue = self.shared.items();
            let was_empty = queue.is_empty();
            queue.extend(items);
            was_empty && !queue.is_empty()
        };
        if woken {
            self.shared.wake();
        }
    }
}

impl<T> Clone for WorkerSender<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for WorkerQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerQueue")
            .field("queued", &self.shared.items().len())
            .finish()
    }
}

impl<T> fmt::Debug for WorkerSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSender").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn items_arrive_in_order_and_wake_the_loop_once_per_batch() {
        let queue = WorkerQueue::new();
        let sender = queue.sender();
        sender.send(1);
        let wakes = Arc::new(AtomicUsize::new(0));
        let counted = wakes.clone();
        queue.set_wake(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "waiting items wake at once"
        );
        let from_thread = sender.clone();
        std::thread::spawn(move || from_thread.send(2))
            .join()
            .unwrap();
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "already woken for this batch"
        );
        assert_eq!(queue.take(), [1, 2]);
        sender.send(3);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(queue.take(), [3]);
        assert!(queue.take().is_empty());
        sender.send_all([4, 5, 6]);
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            3,
            "one wake for items sent together"
        );
        sender.send_all([]);
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            3,
            "nothing sent, nothing to wake for"
        );
        assert_eq!(queue.take(), [4, 5, 6]);
    }
}
