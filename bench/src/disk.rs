//! What the disk under the gateways' state directories costs for one durable commit: a 4 KiB
//! append followed by `fdatasync`, as SQLite's WAL commit under `synchronous=full` does. A
//! channel hop waits for two commits in a row (the message's, then the answer's), so this
//! figure reads beside the hop rows: the part of a hop no gateway code can remove.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Context};
use crate::stats::Percentiles;

/// Appends timed.
pub const SAMPLES: usize = 200;
/// Bytes per append (one SQLite page plus its WAL frame header, rounded).
const APPEND_BYTES: usize = 4096;

/// `SAMPLES` appends of [`APPEND_BYTES`] to a new file in `dir`, each followed by
/// `fdatasync`; the file is removed.
pub fn commit_latency(dir: &Path) -> Result<Percentiles, BenchError> {
    let path = dir.join(format!("clawgate-bench-fsync-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .context("create the fsync probe file")?;
    let page = [0x5au8; APPEND_BYTES];
    let mut samples: Vec<Duration> = Vec::with_capacity(SAMPLES);
    let timed = (0..SAMPLES).try_for_each(|_| {
        let t = Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        samples.push(t.elapsed());
        Ok::<(), std::io::Error>(())
    });
    let removed = std::fs::remove_file(&path);
    timed.context("append and fdatasync")?;
    removed.context("remove the fsync probe file")?;
    Ok(Percentiles::of(&samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_times_every_append_and_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("clawgate-bench-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = commit_latency(&dir).unwrap();
        assert_eq!(p.n, SAMPLES);
        assert!(p.p50 > 0.0 && p.p99 >= p.p50, "{p:?}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
