//! The channel hops' samples message by message, as CSV files, when [`VAR`] names a
//! directory: `<gateway>-<step>.csv` there, one row a timed message, so the slow ones can be
//! looked at leg by leg and lined up with a trace of the gateway (by their wall-clock time).
//! Unset, nothing is written and nothing else changes: the rows are built from the samples
//! the figures are computed from, after the run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use crate::scenario::channels::HopSample;

/// The variable naming the directory the samples go to.
pub const VAR: &str = "CLAWGATE_BENCH_SAMPLES";

/// The header of each file: every duration in µs; `at_unix_us` the event's write on the
/// wall clock; the legs to the kernel's arrival stamps, `_read` to when the fakes' threads
/// read them; `model` the fake model's own time (request arrived → answer's end written).
const HEADER: &str =
    "n,at_unix_us,hop,net,first,model,second,hop_read,net_read,first_read,second_read,unstamped\n";

/// The CSV text of `samples`, numbered from 0 in the order they were timed.
fn csv(samples: &[HopSample]) -> String {
    let us = |d: Duration| d.as_micros().to_string();
    let opt = |d: Option<Duration>| d.map(us).unwrap_or_default();
    let mut out = String::from(HEADER);
    for (n, s) in samples.iter().enumerate() {
        let at = s.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let model = s
            .first
            .zip(s.second)
            .map(|((f, _), (l, _))| s.hop.saturating_sub(f + l));
        let _ = writeln!(
            out,
            "{n},{},{},{},{},{},{},{},{},{},{},{}",
            us(at),
            us(s.hop),
            opt(s.net),
            opt(s.first.map(|l| l.0)),
            opt(model),
            opt(s.second.map(|l| l.0)),
            us(s.hop_read),
            opt(s.net_read),
            opt(s.first.map(|l| l.1)),
            opt(s.second.map(|l| l.1)),
            u8::from(s.unstamped),
        );
    }
    out
}

/// Write `samples` of `step` on `gateway` to [`VAR`]'s directory, if it is set; a failure
/// is said on stderr (the figures stand without the file).
pub fn dump(gateway: &str, step: &str, samples: &[HopSample]) {
    let Some(dir) = std::env::var_os(VAR).map(PathBuf::from) else {
        return;
    };
    let slug = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    let path = dir.join(format!("{}-{}.csv", slug(gateway), slug(step)));
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, csv(samples)));
    match written {
        Ok(()) => eprintln!("   samples: {}", path.display()),
        Err(e) => eprintln!("   samples: {} not written: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use clawgate_tests::rx_stamp::Arrival;

    use super::*;

    #[test]
    fn a_row_carries_the_hop_and_its_legs_in_microseconds() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let arrival = |kernel, read| Arrival {
            kernel: Some(ms(kernel)),
            read: ms(read),
        };
        // Written at 0, model request arrived at 1 (read at 2), answered by 3, reply arrived
        // at 5 (read at 7).
        let s = HopSample::of(t0, arrival(5, 7), Some((arrival(1, 2), ms(3))));
        let text = csv(&[s]);
        let row: Vec<&str> = text.lines().nth(1).unwrap_or_default().split(',').collect();
        assert_eq!(text.lines().next(), Some(HEADER.trim_end()));
        let cols = [&row[..1], &row[2..]].concat();
        assert_eq!(
            cols,
            [
                "0", "5000", "3000", "1000", "2000", "2000", "7000", "6000", "2000", "4000", "0"
            ]
        );
    }
}
