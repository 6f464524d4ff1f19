//! Embedding `clawgate-core` in the simplest runtime there is: blocking `std::net`, one
//! connection at a time, no threads. The core decides everything; this file only moves
//! bytes and sleeps until the core's next deadline.
//!
//! `cargo run -p clawgate-core --example blocking_server`, then connect a client to
//! `ws://127.0.0.1:18789` (`clawgate gateway call health --url ws://127.0.0.1:18789`).
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_core::{Config, Entropy, Gateway, Output, PairingStore, Work, WorkResult};

/// Randomness for nonces and tokens, from the kernel.
struct Urandom(File);

impl Entropy for Urandom {
    fn fill(&mut self, dest: &mut [u8]) {
        // Without randomness there are no safe nonces: stop rather than go on.
        if self.0.read_exact(dest).is_err() {
            std::process::abort();
        }
    }
}

/// A gateway with `config`, an empty pairing store and kernel randomness.
pub fn new_gateway(config: Config) -> io::Result<Gateway> {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let entropy = Box::new(Urandom(File::open("/dev/urandom")?));
    Ok(Gateway::new(
        config,
        entropy,
        PairingStore::default(),
        Instant::now(),
        unix_ms,
    ))
}

/// Serve one accepted socket until the core closes it or the peer goes away.
pub fn serve_one(gw: &mut Gateway, mut stream: TcpStream) -> io::Result<()> {
    let conn = gw.accept(Instant::now(), stream.peer_addr()?, stream.local_addr()?);
    let mut buf = [0u8; 4096];
    loop {
        // Drain the core: write what it transmits, stop when it closes, learn its deadline.
        let deadline = loop {
            match gw.poll_output() {
                Output::Transmit { conn: c, data } if c == conn => {
                    stream.write_all(&data)?;
                    gw.handle_written(Instant::now(), conn, data.len());
                }
                Output::Close { conn: c } if c == conn => return stream.flush(),
                Output::Log(record) => eprintln!("{}", record.line()),
                Output::Timeout(at) => break at,
                // This example keeps nothing on disk: every store batch is "written" at once.
                // A real program commits the batch on a worker thread and reports it then;
                // answers that depend on it (approvals, new device tokens) wait until it does.
                Output::Work {
                    id,
                    work: Work::Store { .. },
                } => gw.handle_work_result(Instant::now(), id, WorkResult::Stored(Ok(()))),
                _ => {}
            }
        };
        // Sleep in `read` until bytes arrive or the deadline passes.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut buf) {
            Ok(0) => gw.handle_closed(Instant::now(), conn),
            Ok(n) => gw.handle_input(Instant::now(), conn, &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                gw.handle_timeout(Instant::now())
            }
            Err(e) => {
                gw.handle_closed(Instant::now(), conn);
                return Err(e);
            }
        }
    }
}

fn main() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:18789")?;
    let mut gw = new_gateway(Config::local_default())?;
    for stream in listener.incoming() {
        if let Err(e) = serve_one(&mut gw, stream?) {
            eprintln!("connection failed: {e}");
        }
    }
    Ok(())
}
