//! The store writer: one thread the host owns that writes the pairing store's snapshots in the
//! order the core produced them, each with [`store::write_atomic`] (temp file, fsync, rename,
//! fsync of the directory), so no fsync ever runs on the event-loop thread. A failed write is
//! reported back to the loop through a [`WorkerSender`]; [`StoreWriter::finish`] (or dropping
//! the writer) waits until everything queued is written.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::store;
use crate::worker::WorkerSender;

/// A snapshot that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write pairing store {}: {source}", path.display())]
pub struct WriteFailed {
    /// The store file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The snapshots waiting for the thread, and whether more may come. (A mutex and a condition
/// variable rather than `std::sync::mpsc`: the same order and wake-ups in less code.)
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<(VecDeque<Vec<u8>>, bool)>,
    ready: Condvar,
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, (VecDeque<Vec<u8>>, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next snapshot, waiting for one; `None` once closed and empty.
    fn next(&self) -> Option<Vec<u8>> {
        let mut state = self.state();
        loop {
            if let Some(snapshot) = state.0.pop_front() {
                return Some(snapshot);
            }
            if state.1 {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The handle of the writer thread: queue snapshots with [`StoreWriter::write`].
#[derive(Debug)]
pub struct StoreWriter {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Start the thread that writes snapshots to `path`; failures go to `report`.
    pub fn spawn<T>(path: PathBuf, report: WorkerSender<T>) -> io::Result<Self>
    where
        T: From<WriteFailed> + Send + 'static,
    {
        let queue = Arc::new(Queue::default());
        let snapshots = queue.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Some(snapshot) = snapshots.next() {
                    if let Err(source) = store::write_atomic(&path, &snapshot) {
                        let path = path.clone();
                        report.send(T::from(WriteFailed { path, source }));
                    }
                }
            })?;
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }

    /// Queue `snapshot` to be written after those queued before it.
    pub fn write(&self, snapshot: Vec<u8>) {
        self.queue.state().0.push_back(snapshot);
        self.queue.ready.notify_one();
    }

    /// Wait until every queued snapshot is written, and end the thread.
    pub fn finish(&mut self) {
        self.queue.state().1 = true;
        self.queue.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::WorkerQueue;
    use clawgate_tests::tempdir::TempDir;

    #[test]
    fn writes_in_order_and_finish_waits_for_the_queue() {
        let dir = TempDir::new("store-writer");
        let path = dir.path().join("pairing.json");
        let failures = WorkerQueue::<WriteFailed>::new();
        let mut writer = StoreWriter::spawn(path.clone(), failures.sender()).unwrap();
        for n in 0..20 {
            writer.write(format!("snapshot {n}").into_bytes());
        }
        writer.finish();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "snapshot 19");
        assert!(failures.take().is_empty());
    }

    #[test]
    fn a_failed_write_is_reported_to_the_loop() {
        let dir = TempDir::new("store-writer-fails");
        // A directory where the file should be: the rename fails.
        let path = dir.path().join("pairing.json");
        std::fs::create_dir_all(path.join("in-the-way")).unwrap();
        let failures = WorkerQueue::<WriteFailed>::new();
        let mut writer = StoreWriter::spawn(path.clone(), failures.sender()).unwrap();
        writer.write(b"{}".to_vec());
        writer.finish();
        let failed: Vec<_> = failures.take().into_iter().collect();
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0]
                .to_string()
                .starts_with(&format!("cannot write pairing store {}: ", path.display())),
            "{}",
            failed[0]
        );
    }
}
