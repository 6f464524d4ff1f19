//! Many client connections on one mio poll loop: connect, feed what arrives to each
//! connection's [`Wire`], write what it wants written, and report its [`Note`]s with the time
//! they were read.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::wire::{Note, Wire};

/// A note and when its bytes were read.
#[derive(Debug)]
pub struct Arrival {
    /// The connection.
    pub key: usize,
    /// When the bytes that produced it were read.
    pub at: Instant,
    /// What happened.
    pub note: Note,
}

struct Slot<W> {
    stream: TcpStream,
    wire: W,
    out: Vec<u8>,
    connected: bool,
    dead: bool,
}

/// A set of client connections to one address, driven by [`Pool::pump`].
pub struct Pool<W> {
    poll: Poll,
    events: Events,
    slots: Vec<Option<Slot<W>>>,
    free: Vec<usize>,
    live: usize,
    buf: Vec<u8>,
    target: SocketAddr,
}

impl<W: Wire> Pool<W> {
    /// An empty pool that connects to `target`.
    pub fn new(target: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            buf: vec![0; 64 * 1024],
            target,
        })
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Start a connection driven by `wire`; returns its key.
    pub fn open(&mut self, wire: W) -> io::Result<usize> {
        let mut stream = TcpStream::connect(self.target)?;
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if let Some(slot) = self.slots.get_mut(key) {
            *slot = Some(Slot {
                stream,
                wire,
                out: Vec::new(),
                connected: false,
                dead: false,
            });
        }
        self.live += 1;
        Ok(key)
    }

    /// Drop a connection (the socket is closed without a WebSocket close frame).
    pub fn close(&mut self, key: usize) {
        if let Some(mut slot) = self.slots.get_mut(key).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut slot.stream);
            self.free.push(key);
            self.live -= 1;
        }
    }

    /// Drop every connection.
    pub fn close_all(&mut self) {
        for key in 0..self.slots.len() {
            self.close(key);
        }
    }

    /// Act on a connection's wire (send a request), then write what it produced.
    pub fn with<R>(&mut self, key: usize, f: impl FnOnce(&mut W) -> R) -> Option<R> {
        let slot = self.slots.get_mut(key)?.as_mut()?;
        let r = f(&mut slot.wire);
        flush(slot);
        Some(r)
    }

    /// Wait up to `timeout` for socket readiness, handle it, and append what happened to
    /// `notes`. A connection that ended reports [`Note::Closed`] once and stays until closed.
    pub fn pump(&mut self, timeout: Duration, notes: &mut Vec<Arrival>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            r => r?,
        }
        for ev in self.events.iter() {
            let key = ev.token().0;
            let Some(slot) = self.slots.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            if slot.dead {
                continue;
            }
            if !slot.connected && (ev.is_writable() || ev.is_error()) {
                match slot.stream.take_error() {
                    Ok(None) if slot.stream.peer_addr().is_ok() => slot.connected = true,
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => {
                        slot.dead = true;
                        slot.wire.handle_eof();
                        notes.push(Arrival {
                            key,
                            at: Instant::now(),
                            note: Note::Closed(format!("connect: {e}")),
                        });
                        continue;
                    }
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                let mut eof = false;
                loop {
                    match slot.stream.read(&mut self.buf) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            slot.wire.handle_input(self.buf.get(..n).unwrap_or(&[]));
                            // A short read emptied the socket; with edge-triggered readiness
                            // the next arrival raises a new event, so skip the extra read
                            // that would only say `WouldBlock` (unless EOF is already known).
                            if n < self.buf.len() && !ev.is_read_closed() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            eof = true;
                            break;
                        }
                    }
                }
                if eof {
                    slot.dead = true;
                    slot.wire.handle_eof();
                }
                let at = Instant::now();
                while let Some(note) = slot.wire.poll_note() {
                    notes.push(Arrival { key, at, note });
                }
            }
            flush(slot);
        }
        Ok(())
    }
}

/// Move the wire's bytes to the socket as far as it takes them.
fn flush<W: Wire>(slot: &mut Slot<W>) {
    if let Some(data) = slot.wire.poll_transmit() {
        slot.out.extend_from_slice(&data);
    }
    if !slot.connected || slot.dead {
        return;
    }
    let mut written = 0;
    while written < slot.out.len() {
        match slot.stream.write(slot.out.get(written..).unwrap_or(&[])) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    slot.out.drain(..written);
}
