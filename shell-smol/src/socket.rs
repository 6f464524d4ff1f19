//! The two tasks of one socket and the driver's handle on them: a reader that hands each chunk
//! it reads to the driver and waits for a permit before reading the next (so a flood waits in
//! the socket while the core works through what it has), and a writer that writes what the
//! socket would not take at once and reports how much went out. The driver writes directly
//! while nothing waits for the writer ([`Socket::send`]), so a broadcast to many sockets costs
//! one write each, not a channel hop, a task wake-up and a report back. When the core closes
//! the connection, the handle's [`Socket::close`] lets the writer flush and half-close, and
//! releases the socket as soon as both tasks are done (the peer's EOF seen), or after the
//! close grace at most.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clawgate_core::ConnId;
use clawgate_host::sockets::{CLOSE_GRACE, write_until_blocked};
use smol::channel::{Receiver, Sender};
use smol::io::AsyncWriteExt;
use smol::net::{Shutdown, TcpStream};
use smol::{Async, Executor, Timer, future};

use crate::driver::Event;

/// Bytes asked of the socket per read; the core buffers frames itself.
const READ_CHUNK: usize = 4096;
/// Bytes the writer writes per wake-up (whole chunks: the last may pass it) before it reports
/// them and lets the other tasks run.
const WRITER_BATCH: usize = 64 * 1024;

/// Held by both tasks of a socket: `_all` (every socket's, for shutdown) and `_own` (this
/// socket's, for its close) see their channels close once every task has ended.
struct Alive {
    _all: Sender<()>,
    _own: Sender<()>,
}

/// The driver's handle on one socket's tasks.
pub(crate) struct Socket {
    /// Chunks for the writer; a clone of its receiving end, to discard them.
    queue: Sender<Vec<u8>>,
    queued: Receiver<Vec<u8>>,
    /// One permit lets the reader read one more chunk.
    permits: Sender<()>,
    /// Chunks handed to the writer and not yet all written (queued or being written): while
    /// there are any, new bytes go behind them.
    backlog: Arc<AtomicUsize>,
    /// Closes when both tasks have ended.
    ended: Receiver<()>,
    stream: TcpStream,
    /// The same socket, for the driver's own non-blocking writes.
    direct: Arc<Async<std::net::TcpStream>>,
}

impl Socket {
    /// Start the reader and writer of `stream` for connection `id`; `all` is the shutdown
    /// token every socket's tasks hold.
    pub(crate) fn spawn(
        ex: &Executor<'_>,
        id: ConnId,
        stream: TcpStream,
        events: Sender<Event>,
        all: &Sender<()>,
    ) -> Self {
        let (queue, queued) = smol::channel::unbounded();
        let (permits, permitted) = smol::channel::bounded(1);
        let (own, ended) = smol::channel::bounded(1);
        let alive = Arc::new(Alive {
            _all: all.clone(),
            _own: own,
        });
        let backlog = Arc::new(AtomicUsize::new(0));
        let reader = read_side(id, stream.clone(), events.clone(), permitted, alive.clone());
        let writer = write_side(
            id,
            stream.clone(),
            queued.clone(),
            backlog.clone(),
            events,
            alive,
        );
        ex.spawn(reader).detach();
        ex.spawn(writer).detach();
        Self {
            queue,
            queued,
            permits,
            backlog,
            ended,
            direct: stream.clone().into(),
            stream,
        }
    }

    /// Send `data` after whatever the writer still has: written here at once when nothing
    /// waits for it, and what the socket does not take is queued for the writer. Returns the
    /// bytes written here; the writer reports the rest as [`Event::Written`] (or, when the
    /// socket failed, the end as [`Event::Eof`]).
    ///
    /// `budget` is what the driver may still write itself this turn, in bytes: once it is
    /// spent, frames go to the writer, which writes them in its own turn, so one turn of the
    /// driver never copies more than about that into the kernel (a flood of large answers does
    /// not hold up the next client's `hello-ok` behind it).
    pub(crate) fn send(&self, data: Vec<u8>, budget: &mut usize) -> usize {
        let sent = if *budget > 0 && self.backlog.load(Ordering::Acquire) == 0 {
            // A failed socket: the writer meets the same error and reports the end.
            write_until_blocked(&mut self.direct.get_ref(), &data).unwrap_or(0)
        } else {
            0
        };
        *budget = budget.saturating_sub(sent);
        if sent < data.len() {
            let rest = match sent {
                0 => data,
                _ => data.get(sent..).unwrap_or_default().to_vec(),
            };
            self.backlog.fetch_add(1, Ordering::AcqRel);
            // Unbounded: the core caps each connection's unsent bytes and all of them together.
            if self.queue.try_send(rest).is_err() {
                self.backlog.fetch_sub(1, Ordering::AcqRel);
            }
        }
        sent
    }

    /// Let the reader read its next chunk.
    pub(crate) fn permit(&self) {
        let _ = self.permits.try_send(());
    }

    /// Throw away the chunks the writer has not started on.
    pub(crate) fn discard(&self) {
        while self.queued.try_recv().is_ok() {
            self.backlog.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The core closed the connection: the writer flushes and half-closes, the reader reads
    /// on (without forwarding) until the peer's EOF; the socket is released when both are
    /// done, or cut off after [`CLOSE_GRACE`].
    pub(crate) fn close(self, ex: &Executor<'_>) {
        let Socket {
            queue,
            permits,
            ended,
            stream,
            ..
        } = self;
        drop((queue, permits));
        ex.spawn(async move {
            future::or(
                async {
                    let _ = ended.recv().await;
                },
                async {
                    Timer::after(CLOSE_GRACE).await;
                },
            )
            .await;
            let _ = stream.shutdown(Shutdown::Both);
        })
        .detach();
    }
}

/// Read until EOF or an error, forwarding every chunk while the connection is open and
/// waiting for a permit after each; then report the end.
///
/// The read buffer lives on the stack only while a read runs (inside `read_with`, once the
/// socket is readable), not in the task: an idle connection holds no buffer of its own.
async fn read_side(
    id: ConnId,
    stream: TcpStream,
    events: Sender<Event>,
    permits: Receiver<()>,
    _alive: Arc<Alive>,
) {
    let stream: Arc<Async<std::net::TcpStream>> = stream.into();
    let mut forwarding = true;
    loop {
        let read = stream
            .read_with(|s| {
                let mut buf = [0u8; READ_CHUNK];
                let n = (&*s).read(&mut buf)?;
                Ok(buf.get(..n).unwrap_or_default().to_vec())
            })
            .await;
        match read {
            Ok(chunk) if !chunk.is_empty() => {
                if forwarding {
                    forwarding = events.send(Event::Data(id, chunk)).await.is_ok()
                        && permits.recv().await.is_ok();
                }
            }
            Ok(_) | Err(_) => break,
        }
    }
    if forwarding {
        let _ = events.send(Event::Eof(id)).await;
    }
}

/// Write every queued chunk in order and report what went out to the driver, once per batch:
/// a wake-up takes what is queued, up to [`WRITER_BATCH`] bytes, before the report and the
/// next wait (one driver event for many frames, and a bounded turn, so the other tasks run
/// between batches). When the driver drops the queue (the core closed the connection), the
/// rest is flushed and the write half shut, so the peer sees the close frame and then EOF.
async fn write_side(
    id: ConnId,
    mut stream: TcpStream,
    queue: Receiver<Vec<u8>>,
    backlog: Arc<AtomicUsize>,
    events: Sender<Event>,
    _alive: Arc<Alive>,
) {
    while let Ok(first) = queue.recv().await {
        let mut batch = 0;
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            let written = stream.write_all(&chunk).await;
            backlog.fetch_sub(1, Ordering::AcqRel);
            if written.is_err() {
                // Report the end here too: the reader may be waiting for a permit, not reading.
                let _ = stream.shutdown(Shutdown::Both);
                let _ = events.send(Event::Eof(id)).await;
                return;
            }
            batch += chunk.len();
            if batch < WRITER_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if events.send(Event::Written(id, batch)).await.is_err() {
            return;
        }
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown(Shutdown::Write);
}
