//! Spawn → first ready handshake: connect attempts from the moment the process starts; and
//! how much of the binary's code the started server keeps resident.

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

/// The binary's code resident at idle above which the report warns that the hot-functions list
/// is stale, KiB: with a fresh list an idle gateway keeps 0.5-1.0 MiB of its code, with a stale
/// one 1.9 MiB or more (`host/link/hot-functions.txt`).
pub const STALE_CODE_KIB: u64 = 1126;

/// The warning for a gateway whose median resident code at idle is `kib`, if above
/// [`STALE_CODE_KIB`].
pub fn stale_list_warning(kib: f64) -> Option<String> {
    (kib > STALE_CODE_KIB as f64).then(|| {
        format!(
            "binary's code resident at idle {:.2} MiB (over {:.1}): hot-functions list stale: rerun scripts/hot-functions.sh (--fast)",
            kib / 1024.0,
            STALE_CODE_KIB as f64 / 1024.0
        )
    })
}

/// KiB of process `pid`'s own executable resident as code: the `Rss` of its executable
/// mappings of the file `/proc/PID/exe` names (`/proc/PID/smaps`); `None` if unreadable.
pub fn resident_code_kib(pid: u32) -> Option<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(code_kib(&smaps, &exe.to_string_lossy()))
}

/// The `Rss` sum, KiB, of the executable mappings of `path` in the text of a `smaps` file.
fn code_kib(smaps: &str, path: &str) -> u64 {
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [range, perms, _, _, _, rest @ ..] if range.contains('-') && perms.len() == 4 => {
                inside = perms.contains('x') && rest.join(" ") == path;
            }
            ["Rss:", n, ..] if inside => kib += n.parse::<u64>().unwrap_or(0),
            _ => {}
        }
    }
    kib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_counts_only_the_executable_mappings_of_the_binary() {
        let smaps = "\
55d0c0000000-55d0c007b000 r--p 00000000 fe:00 42 /opt/clawgate
Rss:                 460 kB
55d0c007c000-55d0c03f3000 r-xp 0007b000 fe:00 42 /opt/clawgate
Size:               3548 kB
Rss:                 988 kB
7f0000000000-7f0000100000 r-xp 00028000 fe:00 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1060 kB
7f0000200000-7f0000201000 rw-p 00000000 00:00 0
Rss:                   4 kB
";
        assert_eq!(code_kib(smaps, "/opt/clawgate"), 988);
        assert_eq!(code_kib(smaps, "/opt/other"), 0);
    }

    #[test]
    fn only_a_list_over_the_mark_is_stale() {
        assert!(stale_list_warning(900.0).is_none());
        let w = stale_list_warning(1900.0).expect("a warning");
        assert!(w.contains("1.86 MiB") && w.contains("hot-functions"), "{w}");
    }
}
