//! The two tasks of one socket and the driver's handle on them: a reader that hands each chunk
//! it reads to the driver and waits for a permit before reading the next (so a flood waits in
//! the socket while the core works through what it has), and a writer for what the socket
//! could not take at once. The driver writes a frame straight to the socket when nothing is
//! waiting for it (no task wake-up, no channel hop: a broadcast to 10,000 sockets is 10,000
//! `write`s from the driver, as in the mio shell) and hands the writer only the rest; the
//! writer reports what it wrote once per batch of chunks. When the core closes the
//! connection, the handle's [`Socket::close`] lets the writer flush and half-close, and
//! releases the socket as soon as both tasks are done (the peer's EOF seen), or after the
//! close grace at most.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clawgate_core::ConnId;
use clawgate_host::sockets::CLOSE_GRACE;
use smol::channel::{Receiver, Sender};
use smol::io::AsyncWriteExt;
use smol::net::{Shutdown, TcpStream};
use smol::{Async, Executor, Timer, future};

use crate::driver::Event;

/// Bytes asked of the socket per read; the core buffers frames itself.
const READ_CHUNK: usize = 4096;

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
    /// Bytes handed to the writer and not yet written by it: while any are, new bytes go
    /// behind them; when none are, the driver writes straight to the socket.
    backlog: Arc<AtomicUsize>,
    /// The socket, for the driver's own writes.
    direct: Arc<Async<std::net::TcpStream>>,
    /// One permit lets the reader read one more chunk.
    permits: Sender<()>,
    /// Closes when both tasks have ended.
    ended: Receiver<()>,
    stream: TcpStream,
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
        let writer = Writer {
            id,
            stream: stream.clone(),
            queue: queued.clone(),
            backlog: backlog.clone(),
            events,
            _alive: alive,
        };
        ex.spawn(reader).detach();
        ex.spawn(writer.run()).detach();
        Self {
            queue,
            queued,
            backlog,
            direct: stream.clone().into(),
            permits,
            ended,
            stream,
        }
    }

    /// Send `data` after whatever is waiting: written at once when nothing is (as much as the
    /// socket takes), the rest handed to the writer, which reports it when written. Returns the
    /// bytes written here.
    pub(crate) fn send(&self, data: Vec<u8>) -> usize {
        let written = if self.backlog.load(Ordering::Acquire) == 0 {
            write_now(&self.direct, &data)
        } else {
            0
        };
        if written < data.len() {
            let rest = if written == 0 {
                data
            } else {
                data.get(written..).unwrap_or_default().to_vec()
            };
            self.backlog.fetch_add(rest.len(), Ordering::AcqRel);
            // Unbounded: the core caps each connection's unsent bytes and all of them together.
            let _ = self.queue.try_send(rest);
        }
        written
    }

    /// Let the reader read its next chunk.
    pub(crate) fn permit(&self) {
        let _ = self.permits.try_send(());
    }

    /// Throw away the chunks the writer has not started on.
    pub(crate) fn discard(&self) {
        while let Ok(chunk) = self.queued.try_recv() {
            self.backlog.fetch_sub(chunk.len(), Ordering::AcqRel);
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

/// Write `data` to the non-blocking socket until it is all written or the socket is full; the
/// bytes written. An error writes nothing more here: the writer meets it again on the rest and
/// reports the end.
fn write_now(stream: &Async<std::net::TcpStream>, data: &[u8]) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        match (&*stream.get_ref()).write(data.get(sent..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sent
}

/// The task that writes what the socket could not take at once.
struct Writer {
    id: ConnId,
    stream: TcpStream,
    queue: Receiver<Vec<u8>>,
    backlog: Arc<AtomicUsize>,
    events: Sender<Event>,
    _alive: Arc<Alive>,
}

impl Writer {
    /// Write every queued chunk in order; after each batch (what was queued when it woke),
    /// report the bytes to the driver once. When the driver drops the queue (the core closed
    /// the connection), the rest is flushed and the write half shut, so the peer sees the
    /// close frame and then EOF.
    async fn run(mut self) {
        while let Ok(first) = self.queue.recv().await {
            let mut chunk = Some(first);
            let mut batch = 0;
            while let Some(c) = chunk.take() {
                if self.stream.write_all(&c).await.is_err() {
                    // Report the end here too: the reader may be waiting for a permit.
                    let _ = self.stream.shutdown(Shutdown::Both);
                    let _ = self.events.send(Event::Eof(self.id)).await;
                    return;
                }
                self.backlog.fetch_sub(c.len(), Ordering::AcqRel);
                batch += c.len();
                chunk = self.queue.try_recv().ok();
            }
            if self
                .events
                .send(Event::Written(self.id, batch))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = self.stream.flush().await;
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
