//! The two tasks of one socket and the driver's handle on them: a reader that hands each chunk
//! it reads to the driver and waits for a permit before reading the next (so a flood waits in
//! the socket while the core works through what it has), and a writer that writes what the
//! socket would not take at once and reports how much went out. The driver gathers the frames
//! the core transmits to a socket in one turn ([`Socket::queue`]) and writes them together,
//! directly, while nothing waits for the writer ([`Socket::flush`]): one `writev` per socket
//! and turn, not one write per frame, and a broadcast to many sockets costs one write each,
//! not a channel hop, a task wake-up and a report back. The three share one
//! small state ([`Shared`]): no channel per socket. When the core closes the connection, the
//! driver drops the handle: the writer flushes and half-closes, and the socket closes as soon
//! as the reader has seen the peer's EOF, or after the close grace at most.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use std::net::{Shutdown, TcpStream};

use clawgate_core::ConnId;
use clawgate_host::sockets::CLOSE_GRACE;
use smol::channel::Sender;
use smol::{Executor, Timer, future};

use crate::clients::Registered;
use crate::driver::Event;

/// Bytes asked of the socket per read; the core buffers frames itself.
const READ_CHUNK: usize = 4096;

thread_local! {
    /// The buffer every reader task on this thread reads into (the read runs inside
    /// `read_with`'s closure, without a wait, so it is never borrowed twice). A buffer made
    /// for each read was zero-filled each time, a read that found nothing included: measured
    /// with callgrind, 4.6 k of the 14.9 k instructions a `health` request cost.
    static READ_BUFFER: RefCell<[u8; READ_CHUNK]> = const { RefCell::new([0; READ_CHUNK]) };
}
/// Bytes the writer writes per wake-up (whole chunks: the last may pass it) before it reports
/// them and lets the other tasks run.
const WRITER_BATCH: usize = 64 * 1024;
/// Bytes of frames the driver gathers for one socket before it writes them without waiting
/// for the end of its turn (the core counts them unsent until then).
pub(crate) const GATHER_LIMIT: usize = 64 * 1024;

/// What the driver's handle and a socket's two tasks share: one small allocation per
/// connection, where three channels (a writer queue, a permit, an end signal) took about
/// 2 KiB. Everything runs on the one executor thread, so the lock is never contended.
#[derive(Default)]
struct Shared(Mutex<State>);

#[derive(Default)]
struct State {
    /// Chunks for the writer, in order.
    queue: VecDeque<Vec<u8>>,
    /// The writer has taken a chunk from the queue and not finished writing it: while it
    /// has, or the queue holds any, new bytes go behind them.
    writing: bool,
    /// The reader may forward one more chunk.
    permit: bool,
    /// The driver let go of the socket: the writer flushes and half-closes, the reader
    /// forwards nothing more.
    released: bool,
    /// The reader met the peer's EOF (or an error) and ended: closing the socket needs no
    /// shutdown and no wait.
    peer_done: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the state, then wake what `change` took out of it (outside the lock).
    fn update(&self, change: impl FnOnce(&mut State) -> Option<Waker>) {
        let woken = change(&mut self.lock());
        if let Some(w) = woken {
            w.wake();
        }
    }

    /// Ready with `true` once the reader may forward its next chunk, `false` once the driver
    /// let go of the socket.
    fn poll_permit(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut st = self.lock();
        if st.released {
            Poll::Ready(false)
        } else if std::mem::take(&mut st.permit) {
            Poll::Ready(true)
        } else {
            st.reader = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// The writer's next chunk (`first`: it waits for one), or `None` when there is none now
    /// (`first`: when the driver let go and all is written).
    fn poll_chunk(&self, cx: &mut Context<'_>, first: bool) -> Poll<Option<Vec<u8>>> {
        let mut st = self.lock();
        if let Some(chunk) = st.queue.pop_front() {
            st.writing = true;
            if st.queue.is_empty() {
                // Give the memory of a burst back.
                st.queue = VecDeque::new();
            }
            Poll::Ready(Some(chunk))
        } else if !first || st.released {
            Poll::Ready(None)
        } else {
            st.writer = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// The writer's wait, at the end, for the reader to meet the peer's EOF.
    fn poll_peer_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.peer_done {
            Poll::Ready(())
        } else {
            st.writer = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// The driver's handle on one socket's tasks. Dropping it lets go of the socket (the core closed
/// the connection): the writer flushes what it has and half-closes, the reader reads on
/// (without forwarding) until the peer's EOF, and the socket closes when both are done, or is
/// cut off after [`CLOSE_GRACE`]. A peer that closed first costs no shutdown and no wait.
pub(crate) struct Socket {
    shared: Arc<Shared>,
    /// The socket, for the driver's own non-blocking writes.
    direct: Arc<Registered<TcpStream>>,
    /// Frames the core transmitted this turn, not yet written or queued for the writer.
    gathered: Gathered,
}

/// The frames gathered for one socket in one turn, in order: the first held apart, so the
/// usual turn (one frame) costs no list of them.
#[derive(Default)]
struct Gathered {
    first: Vec<u8>,
    more: Vec<Vec<u8>>,
    bytes: usize,
}

impl Gathered {
    fn is_empty(&self) -> bool {
        self.first.is_empty() && self.more.is_empty()
    }

    /// Every frame, in order.
    fn into_frames(self) -> impl Iterator<Item = Vec<u8>> {
        std::iter::once(self.first)
            .chain(self.more)
            .filter(|f| !f.is_empty())
    }
}

impl Socket {
    /// Start the reader and writer of `stream` for connection `id`; `all` is the shutdown
    /// token every socket's tasks hold.
    pub(crate) fn spawn(
        ex: &Executor<'_>,
        id: ConnId,
        stream: Registered<TcpStream>,
        events: Sender<Event>,
        all: &Sender<()>,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        let direct = Arc::new(stream);
        let reader = read_side(
            id,
            direct.clone(),
            events.clone(),
            shared.clone(),
            all.clone(),
        );
        let writer = write_side(id, direct.clone(), events, shared.clone(), all.clone());
        ex.spawn(reader).detach();
        ex.spawn(writer).detach();
        Self {
            shared,
            direct,
            gathered: Gathered::default(),
        }
    }

    /// Gather a frame for [`Socket::flush`]; `true` when it is the first since the last flush
    /// (the driver then remembers to flush this socket).
    pub(crate) fn queue(&mut self, data: Vec<u8>) -> bool {
        let g = &mut self.gathered;
        let first = g.is_empty();
        g.bytes += data.len();
        if g.first.is_empty() {
            g.first = data;
        } else {
            g.more.push(data);
        }
        first
    }

    /// Bytes gathered and not yet flushed.
    pub(crate) fn gathered_bytes(&self) -> usize {
        self.gathered.bytes
    }

    /// Send the gathered frames after whatever the writer still has: written here at once, in
    /// one vectored write, when nothing waits for the writer, and what the socket does not take
    /// is queued for the writer. Returns the bytes written here; the writer reports the rest as
    /// [`Event::Written`] (or, when the socket failed, the end as [`Event::Eof`]).
    ///
    /// `budget` is what the driver may still write itself this turn, in bytes: once it is
    /// spent, frames go to the writer, which writes them in its own turn, so one turn of the
    /// driver never copies more than about that into the kernel (a flood of large answers does
    /// not hold up the next client's `hello-ok` behind it).
    pub(crate) fn flush(&mut self, budget: &mut usize) -> usize {
        let gathered = std::mem::take(&mut self.gathered);
        if gathered.is_empty() {
            return 0;
        }
        let mut sent = 0;
        self.shared.update(|st| {
            if *budget > 0 && st.queue.is_empty() && !st.writing {
                // A failed socket: the writer meets the same error and reports the end.
                let mut socket = self.direct.get_ref();
                sent = if gathered.more.is_empty() {
                    write_until_blocked(&mut socket, &mut [IoSlice::new(&gathered.first)])
                } else {
                    let mut slices: Vec<IoSlice<'_>> = std::iter::once(&gathered.first)
                        .chain(&gathered.more)
                        .map(|f| IoSlice::new(f))
                        .collect();
                    write_until_blocked(&mut socket, &mut slices)
                }
                .unwrap_or(0);
                *budget = budget.saturating_sub(sent);
            }
            if sent == gathered.bytes {
                return None;
            }
            // Unbounded: the core caps each connection's unsent bytes and all of them together.
            let mut skip = sent;
            for frame in gathered.into_frames() {
                if skip >= frame.len() {
                    skip -= frame.len();
                    continue;
                }
                st.queue.push_back(match std::mem::take(&mut skip) {
                    0 => frame,
                    from => frame.get(from..).unwrap_or_default().to_vec(),
                });
            }
            st.writer.take()
        });
        sent
    }

    /// Let the reader forward its next chunk.
    pub(crate) fn permit(&self) {
        self.shared.update(|st| {
            st.permit = true;
            st.reader.take()
        });
    }

    /// Throw away the frames not written yet: those gathered and the chunks the writer has not
    /// started on.
    pub(crate) fn discard(&mut self) {
        self.gathered = Gathered::default();
        self.shared.lock().queue = VecDeque::new();
    }
}

impl Drop for Socket {
    /// Let go of the socket: frames still gathered go to the writer, which flushes them; wake
    /// both tasks to see it.
    fn drop(&mut self) {
        let gathered = std::mem::take(&mut self.gathered);
        let (reader, writer) = {
            let mut st = self.shared.lock();
            st.queue.extend(gathered.into_frames());
            st.released = true;
            (st.reader.take(), st.writer.take())
        };
        reader.into_iter().chain(writer).for_each(Waker::wake);
    }
}

/// Write `frames`, in order, to a non-blocking socket until all are written or it would block,
/// in one vectored write (`writev`) while the socket takes everything; the number of bytes
/// written, or the error that ended the socket.
fn write_until_blocked(stream: &mut impl Write, frames: &mut [IoSlice<'_>]) -> io::Result<usize> {
    let mut rest = frames;
    let mut sent = 0;
    // Empty frames, if any, need no write.
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match stream.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                sent += n;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Read until EOF or an error, forwarding every chunk while the driver holds the socket and
/// waiting for a permit after each; then report the end.
///
/// The read buffer is the thread's ([`READ_BUFFER`]), not the task's: an idle connection
/// holds no buffer of its own, and none is zero-filled per read.
async fn read_side(
    id: ConnId,
    stream: Arc<Registered<TcpStream>>,
    events: Sender<Event>,
    shared: Arc<Shared>,
    _all: Sender<()>,
) {
    let mut forwarding = true;
    // Each read is tried before waiting for readiness (`read_with`): once the driver permits
    // it, the peer's next message is usually there already.
    loop {
        let read = stream
            .read_with(|s| {
                READ_BUFFER.with_borrow_mut(|buf| {
                    let n = (&*s).read(buf)?;
                    Ok(buf.get(..n).unwrap_or_default().to_vec())
                })
            })
            .await;
        match read {
            Ok(chunk) if !chunk.is_empty() => {
                if forwarding {
                    forwarding = events.send(Event::Data(id, chunk)).await.is_ok()
                        && poll_fn(|cx| shared.poll_permit(cx)).await;
                }
            }
            Ok(_) | Err(_) => break,
        }
    }
    shared.update(|st| {
        st.peer_done = true;
        st.writer.take()
    });
    if forwarding {
        let _ = events.send(Event::Eof(id)).await;
    }
}

/// Write every queued chunk in order and report what went out to the driver, once per batch:
/// a wake-up takes what is queued, up to [`WRITER_BATCH`] bytes, before the report and the
/// next wait (one driver event for many frames, and a bounded turn, so the other tasks run
/// between batches). When the driver lets go of the socket (the core closed the connection),
/// the rest is flushed and the write half shut, so the peer sees the close frame and then EOF.
async fn write_side(
    id: ConnId,
    stream: Arc<Registered<TcpStream>>,
    events: Sender<Event>,
    shared: Arc<Shared>,
    _all: Sender<()>,
) {
    while let Some(first) = poll_fn(|cx| shared.poll_chunk(cx, true)).await {
        let mut batch = 0;
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            let written = write_all(&stream, &chunk).await;
            shared.lock().writing = false;
            if written.is_err() {
                // Report the end here too: the reader may be waiting for a permit, not reading.
                let _ = stream.get_ref().shutdown(Shutdown::Both);
                let _ = events.send(Event::Eof(id)).await;
                return;
            }
            batch += chunk.len();
            if batch < WRITER_BATCH {
                next = poll_fn(|cx| shared.poll_chunk(cx, false)).await;
            }
        }
        if events.send(Event::Written(id, batch)).await.is_err() {
            return;
        }
    }
    if shared.lock().peer_done {
        return;
    }
    // The peer sees the close frame, then EOF; the socket closes once the reader has met the
    // peer's EOF in turn, or is cut off after the close grace.
    let _ = stream.get_ref().shutdown(Shutdown::Write);
    let done = future::or(
        async {
            poll_fn(|cx| shared.poll_peer_done(cx)).await;
            true
        },
        async {
            Timer::after(CLOSE_GRACE).await;
            false
        },
    )
    .await;
    if !done {
        let _ = stream.get_ref().shutdown(Shutdown::Both);
    }
}

/// Write all of `chunk`, waiting for room whenever the socket is full.
async fn write_all(stream: &Registered<TcpStream>, chunk: &[u8]) -> io::Result<()> {
    let mut rest = chunk;
    while !rest.is_empty() {
        let n = stream.write_with(|mut s| s.write(rest)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = rest.get(n..).unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Poller;
    use crate::readiness::Readiness;

    /// A socket that takes at most `room` bytes, and counts the calls.
    struct Counted {
        taken: Vec<u8>,
        room: usize,
        calls: usize,
    }

    impl Write for Counted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.room);
                self.taken
                    .extend_from_slice(b.get(..take).unwrap_or_default());
                self.room -= take;
                n += take;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frames() -> [IoSlice<'static>; 4] {
        [&b"first"[..], &b""[..], &b"second"[..], &b"3"[..]].map(IoSlice::new)
    }

    #[test]
    fn the_frames_of_a_turn_go_out_in_one_write() {
        let mut socket = Counted {
            taken: Vec::new(),
            room: usize::MAX,
            calls: 0,
        };
        assert_eq!(
            write_until_blocked(&mut socket, &mut frames()).ok(),
            Some(12)
        );
        assert_eq!(socket.calls, 1, "one write for three frames");
        assert_eq!(socket.taken, b"firstsecond3");
    }

    #[test]
    fn a_full_socket_takes_part_and_says_how_much() {
        let mut socket = Counted {
            taken: Vec::new(),
            room: 7,
            calls: 0,
        };
        assert_eq!(
            write_until_blocked(&mut socket, &mut frames()).ok(),
            Some(7)
        );
        // The write that took 7 bytes, then the one that would block.
        assert_eq!(socket.calls, 2);
        assert_eq!(socket.taken, b"firstse");
    }

    /// Frames gathered in one turn reach the peer whole and in order when the socket takes
    /// only part of them: what the driver's write left, the writer writes.
    #[test]
    fn a_flush_the_socket_cannot_take_is_finished_by_the_writer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        // Larger together than loopback's buffers: the direct write stops inside a frame.
        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 3 << 20]).collect();
        let expected: Vec<u8> = frames.concat();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut client = client;
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .expect("timeout");
            let _ = client.read_to_end(&mut got);
            got
        });
        let ex = Executor::new();
        let (events, reports) = smol::channel::unbounded();
        let (all, _done) = smol::channel::bounded(1);
        server.set_nonblocking(true).expect("nonblocking");
        let poller = Arc::new(Poller::new().expect("poller"));
        let stream = Registered::new(server, &poller).expect("register");
        let mut socket = Socket::spawn(&ex, ConnId(1), stream, events, &all);
        assert!(
            socket.queue(frames[0].clone()),
            "the first frame of the turn"
        );
        assert!(!socket.queue(frames[1].clone()));
        assert!(!socket.queue(frames[2].clone()));
        let mut budget = usize::MAX;
        let direct = socket.flush(&mut budget);
        assert!(
            0 < direct && direct < expected.len(),
            "the direct write took {direct} of {} bytes",
            expected.len()
        );
        assert_eq!(socket.gathered_bytes(), 0);
        drop(socket);
        drop(all);
        // The driver's part: wake the writer as the socket drains.
        let mut clients = Readiness::new(poller.fd().expect("fd")).expect("watch");
        let _dispatch = ex.spawn(async move {
            loop {
                clients.ready().await;
                poller.dispatch();
            }
        });
        smol::block_on(ex.run(async {
            let mut written = direct;
            while let Ok(event) = reports.recv().await {
                if let Event::Written(_, n) = event {
                    written += n;
                }
                if written == expected.len() {
                    break;
                }
            }
        }));
        drop(ex);
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived out of order");
    }
}
