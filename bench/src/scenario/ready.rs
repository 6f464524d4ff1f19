//! Spawn → first ready handshake: connect attempts from the moment the process starts.

use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::feed::Feed;
use crate::procs::Server;
use crate::wire::{Note, Wire};

/// Time from `server`'s spawn to its first completed handshake, retrying every `retry`, for at
/// most `limit`.
pub fn time_to_ready<W: Wire>(
    server: &mut Server,
    dial: &mut impl FnMut() -> W,
    limit: Duration,
    retry: Duration,
) -> Result<Duration, BenchError> {
    let mut pool = super::pool(server.addr)?;
    let mut feed = Feed::default();
    let end = server.spawned + limit;
    while Instant::now() < end {
        server.check_alive()?;
        let Ok(key) = pool.open(dial()) else {
            std::thread::sleep(retry);
            continue;
        };
        let attempt_end = end.min(Instant::now() + Duration::from_secs(5));
        loop {
            match feed.next(&mut pool, attempt_end, "first handshake") {
                Ok(a) if a.key == key && a.note == Note::Ready => {
                    pool.close(key);
                    return Ok(a.at - server.spawned);
                }
                Ok(a) if a.key == key && matches!(a.note, Note::Closed(_)) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        pool.close(key);
        feed.clear();
        std::thread::sleep(retry);
    }
    Err(BenchError::Timeout("first handshake after spawn".into()))
}
