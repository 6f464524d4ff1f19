//! When bytes reached a fake's socket, as the kernel saw it: `SO_TIMESTAMPNS` on a TCP
//! socket makes each `recvmsg` carry the receive time of the last segment it took bytes
//! from (Linux stamps a segment when the loopback device hands it to the receive path, in
//! the sender's write). A latency measured to that stamp does not count the time the bytes
//! waited for the fake's thread to wake and read them, which a stamp taken after the read
//! does (a cross-CPU wake-up, or a stall of the load generator's process).
//!
//! The kernel stamps on `CLOCK_REALTIME`; [`ClockPair`] carries a stamp onto the
//! `Instant` (`CLOCK_MONOTONIC`) clock the rest of the bench measures with, reading both
//! clocks together just after the `recvmsg` that brought the stamp.

#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Tries at reading the two clocks together; the narrowest bracket wins.
const CLOCK_TRIES: usize = 3;

/// When a request reached a fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// When the segment that completed it reached the fake's socket (the kernel's receive
    /// stamp, on this process's `Instant` clock); `None` when the kernel gave no stamp.
    pub kernel: Option<Instant>,
    /// When the fake's thread had read it whole (woken, its bytes copied out), before its
    /// body was parsed: what the fakes stamped before kernel stamps.
    pub read: Instant,
}

impl Arrival {
    /// The kernel's stamp, or when it was read where there is none (the later of the two,
    /// so the gateway's side of a measurement is never shortened by the fallback).
    pub fn at(&self) -> Instant {
        self.kernel.unwrap_or(self.read)
    }
}

/// The realtime and monotonic clocks read together.
#[derive(Clone, Copy, Debug)]
pub struct ClockPair {
    /// The monotonic reading: the middle of the two taken around `real`.
    mono: Instant,
    /// The realtime reading.
    real: SystemTime,
}

impl ClockPair {
    /// Read the realtime clock between two monotonic readings, [`CLOCK_TRIES`] times, and
    /// keep the try whose monotonic readings were closest (its pair is off by at most half
    /// their distance, tens of ns, unless the thread was preempted in every try).
    pub fn sample() -> ClockPair {
        let mut best: Option<(Duration, ClockPair)> = None;
        for _ in 0..CLOCK_TRIES {
            let before = Instant::now();
            let real = SystemTime::now();
            let after = Instant::now();
            let width = after - before;
            if best.is_none_or(|(w, _)| width < w) {
                let mono = before + width / 2;
                best = Some((width, ClockPair { mono, real }));
            }
        }
        best.map_or_else(
            || ClockPair::at(Instant::now(), SystemTime::now()),
            |(_, p)| p,
        )
    }

    /// A pair of readings taken at the same moment.
    pub fn at(mono: Instant, real: SystemTime) -> ClockPair {
        ClockPair { mono, real }
    }

    /// The realtime instant `real` on the monotonic clock: as far from this pair's
    /// monotonic reading as `real` is from its realtime one. `None` if out of `Instant`'s
    /// range.
    pub fn to_instant(&self, real: SystemTime) -> Option<Instant> {
        match self.real.duration_since(real) {
            Ok(before) => self.mono.checked_sub(before),
            Err(after) => self.mono.checked_add(after.duration()),
        }
    }
}

/// A TCP stream whose reads record when the bytes they return reached the socket.
#[derive(Debug)]
pub struct StampedStream {
    stream: TcpStream,
    /// The kernel's stamp of the last read that returned bytes, on the `Instant` clock.
    arrived: Option<Instant>,
}

impl StampedStream {
    /// `stream`, with the kernel asked to stamp what arrives on it.
    pub fn new(stream: TcpStream) -> io::Result<StampedStream> {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, and a pointer to an int of the size given.
        let r = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of_val(&on) as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(StampedStream {
            stream,
            arrived: None,
        })
    }

    /// When the bytes of the last read that returned any reached the socket: the kernel's
    /// stamp of the last segment that read took bytes from. `None` before any read, or when
    /// the kernel did not stamp it (the first segments after timestamps are first enabled
    /// on the machine may go unstamped).
    pub fn arrived(&self) -> Option<Instant> {
        self.arrived
    }

    /// The stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for StampedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, stamp) = recv_stamped(&self.stream, buf)?;
        if n > 0 {
            let pair = ClockPair::sample();
            self.arrived = stamp.and_then(|s| pair.to_instant(s));
        }
        Ok(n)
    }
}

impl Write for StampedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// What a stream can say about when its last read's bytes arrived.
pub trait Arrivals {
    /// See [`StampedStream::arrived`].
    fn arrived(&self) -> Option<Instant>;
}

impl Arrivals for StampedStream {
    fn arrived(&self) -> Option<Instant> {
        self.arrived
    }
}

/// A plain stream keeps no stamps.
impl Arrivals for TcpStream {
    fn arrived(&self) -> Option<Instant> {
        None
    }
}

impl<C> Arrivals for rustls::StreamOwned<C, StampedStream> {
    fn arrived(&self) -> Option<Instant> {
        self.sock.arrived
    }
}

/// One `recvmsg` into `buf`: the bytes read, and the `SCM_TIMESTAMPNS` stamp that came with
/// them, if one did.
fn recv_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a few control messages; u64s keep it aligned for `cmsghdr`.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both live for the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &raw mut msg, 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let mut stamp = None;
    // SAFETY: the CMSG_* walk stays inside `msg.msg_controllen` bytes of `control`, which
    // the kernel filled; the data is read unaligned, as a timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = libc::CMSG_DATA(cmsg)
                    .cast::<libc::timespec>()
                    .read_unaligned();
                stamp = timespec_time(&ts);
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n, stamp))
}

/// A realtime `timespec` as a `SystemTime`; `None` for a negative or malformed one.
fn timespec_time(ts: &libc::timespec) -> Option<SystemTime> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn a_stamp_moves_by_the_realtime_distance() {
        let mono = Instant::now();
        let real = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let pair = ClockPair::at(mono, real);
        let ms = Duration::from_millis(3);
        assert_eq!(pair.to_instant(real - ms), Some(mono - ms));
        assert_eq!(pair.to_instant(real + ms), Some(mono + ms));
        assert_eq!(pair.to_instant(real), Some(mono));
    }

    #[test]
    fn a_sampled_pair_carries_now_onto_now() {
        let pair = ClockPair::sample();
        let before = Instant::now();
        let real = SystemTime::now();
        let after = Instant::now();
        let at = pair.to_instant(real).expect("in range");
        // Off by no more than the two clocks' readings' spread, plus slack for a stall.
        let slack = Duration::from_millis(1);
        assert!(
            at + slack >= before && at <= after + slack,
            "{at:?} not near {before:?}..{after:?}"
        );
    }

    #[test]
    fn timespecs_out_of_range_are_refused() {
        let ts = |s, n| libc::timespec {
            tv_sec: s,
            tv_nsec: n,
        };
        assert_eq!(
            timespec_time(&ts(2, 5)),
            Some(UNIX_EPOCH + Duration::new(2, 5))
        );
        assert_eq!(timespec_time(&ts(-1, 0)), None);
        assert_eq!(timespec_time(&ts(1, 1_000_000_000)), None);
    }

    /// A loopback pair: the reader's stamp is when the bytes arrived, not when it read them.
    #[test]
    fn the_stamp_predates_a_late_read_by_about_the_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            // A first message brings the machine's timestamping up (the kernel may enable
            // it for everyone a little after the first socket asks).
            c.write_all(b"warm").unwrap();
            thread::sleep(Duration::from_millis(20));
            let sent = Instant::now();
            c.write_all(b"hello").unwrap();
            tx.send((sent, Instant::now())).unwrap();
            thread::sleep(Duration::from_millis(500));
        });
        let (conn, _) = listener.accept().unwrap();
        let mut s = StampedStream::new(conn).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        let (sent, done) = rx.recv().unwrap();
        let wait = Duration::from_millis(100);
        thread::sleep(wait);
        let read = Instant::now();
        assert_eq!(s.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        let stamp = s.arrived().expect("the kernel stamped the segment");
        // Within the write call that sent it (slack for the clock conversion)...
        let slack = Duration::from_millis(1);
        assert!(
            stamp + slack >= sent && stamp <= done + slack,
            "stamp {stamp:?} outside the write {sent:?}..{done:?}"
        );
        // ...so before the read by at least the reader's wait.
        let early = read - stamp;
        assert!(
            early + slack >= wait,
            "the stamp predates the read by only {early:?}"
        );
        writer.join().unwrap();
    }

    /// A read that takes two segments at once carries the later one's stamp: the moment
    /// the message it completes was all there.
    #[test]
    fn a_read_of_two_segments_carries_the_last_ones_stamp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            c.write_all(b"warm").unwrap();
            thread::sleep(Duration::from_millis(20));
            c.write_all(b"hel").unwrap();
            let first = Instant::now();
            thread::sleep(Duration::from_millis(30));
            let second = Instant::now();
            c.write_all(b"lo").unwrap();
            tx.send((first, second, Instant::now())).unwrap();
            thread::sleep(Duration::from_millis(500));
        });
        let (conn, _) = listener.accept().unwrap();
        let mut s = StampedStream::new(conn).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        let (first, second, done) = rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        assert_eq!(s.read(&mut buf).unwrap(), 5, "both segments in one read");
        assert_eq!(&buf[..5], b"hello");
        let stamp = s.arrived().expect("the kernel stamped the segments");
        let slack = Duration::from_millis(1);
        assert!(
            stamp > first + Duration::from_millis(20) && stamp + slack >= second,
            "stamp {stamp:?} is not the second segment's ({first:?}, {second:?})"
        );
        // Not the read's own time, 20 ms later.
        assert!(
            stamp <= done + slack,
            "stamp {stamp:?} after the write ({done:?})"
        );
        writer.join().unwrap();
    }
}
