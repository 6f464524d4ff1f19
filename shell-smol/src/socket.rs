//! The two tasks of one socket: a reader that hands every byte it reads to the driver, and a
//! writer that writes what the core transmits and reports how much went out. Both share the
//! socket's `_alive` token, dropped when both have ended: shutdown waits for all of them.

use std::io::Read;
use std::sync::Arc;

use clawgate_core::ConnId;
use smol::Async;
use smol::channel::{Receiver, Sender};
use smol::io::AsyncWriteExt;
use smol::net::{Shutdown, TcpStream};

use crate::driver::Event;

/// Bytes asked of the socket per read; the core buffers frames itself.
const READ_CHUNK: usize = 4096;

/// Read until EOF or an error, forwarding every chunk; then report the end.
///
/// The read buffer lives on the stack only while a read runs (inside `read_with`, once the
/// socket is readable), not in the task: an idle connection holds no buffer of its own.
pub(crate) async fn read_side(
    id: ConnId,
    stream: TcpStream,
    events: Sender<Event>,
    _alive: Arc<Sender<()>>,
) {
    let stream: Arc<Async<std::net::TcpStream>> = stream.into();
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
                if events.send(Event::Data(id, chunk)).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(_) => break,
        }
    }
    let _ = events.send(Event::Eof(id)).await;
}

/// Write every queued chunk in order, reporting each to the driver. When the driver drops
/// the queue (the core closed the connection), the rest is flushed and the write half shut,
/// so the peer sees the close frame and then EOF.
pub(crate) async fn write_side(
    id: ConnId,
    mut stream: TcpStream,
    queue: Receiver<Vec<u8>>,
    events: Sender<Event>,
    _alive: Arc<Sender<()>>,
) {
    while let Ok(chunk) = queue.recv().await {
        if stream.write_all(&chunk).await.is_err() {
            // The reader sees the same failure and reports the end.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if events.send(Event::Written(id, chunk.len())).await.is_err() {
            return;
        }
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown(Shutdown::Write);
}
