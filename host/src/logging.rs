//! The gateway's log: one line per event on stderr and appended to the log file in the state
//! directory (created 0600 in a 0700 directory) so that `clawgate logs -f` can follow it.
//! Lines have the core's format: `<unix ms> <level> [conn=<id>] <message>`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clawgate_core::{Level, LogRecord};

use crate::run_args::RunArgs;

/// The level in force: `--verbose` (trace), else `--log-level`, else `RUST_LOG`, else info.
pub fn level(args: &RunArgs, env: &BTreeMap<String, String>) -> Level {
    if args.verbose {
        return Level::Trace;
    }
    args.log_level
        .or_else(|| env.get("RUST_LOG").and_then(|v| rust_log_level(v)))
        .unwrap_or(Level::Info)
}

/// The level a `RUST_LOG` value sets for clawgate: a directive for a `clawgate…` target
/// (`clawgate=trace`) wins over a bare level (`debug`), as in `env_logger`; among equals the
/// last one wins.
pub fn rust_log_level(value: &str) -> Option<Level> {
    // (target, level) per directive; a bare level has no target.
    let directives: Vec<(Option<&str>, &str)> = value
        .split(',')
        .map(|d| match d.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level),
            None => (None, d),
        })
        .collect();
    let last = |applies: &dyn Fn(Option<&str>) -> bool| {
        directives
            .iter()
            .rev()
            .filter(|(target, _)| applies(*target))
            .find_map(|(_, level)| Level::parse(level))
    };
    last(&|t| t.is_some_and(|t| t.starts_with("clawgate"))).or_else(|| last(&|t| t.is_none()))
}

/// The milliseconds since the Unix epoch now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lines held back at most before they are written, in bytes.
const BATCH_BYTES: usize = 16 * 1024;
/// Longest an info (or lower) line is held back before it is written.
pub const LOG_DELAY: Duration = Duration::from_millis(50);

/// Writes records at or above a level to stderr and to the log file. Info and lower lines are
/// gathered and written together once the oldest has waited [`LOG_DELAY`]
/// ([`Logger::flush_due`], when the event loop is about to wait), so a busy gateway costs two
/// `write(2)`s per batch of lines, not per line or per turn of its loop; warnings and errors
/// are written at once, with what is held back before them.
#[derive(Debug)]
pub struct Logger {
    level: Level,
    file: Option<File>,
    pending: String,
    /// When the oldest line held back was recorded.
    pending_since: Option<Instant>,
}

impl Logger {
    /// A logger at `level` that writes to stderr only.
    pub fn stderr(level: Level) -> Self {
        Self {
            level,
            file: None,
            pending: String::new(),
            pending_since: None,
        }
    }

    /// Also append every line to `path` (its directory is created 0700, the file 0600).
    pub fn open_file(&mut self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            crate::store::ensure_private_dir(dir)?;
        }
        self.file = Some(
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)?,
        );
        Ok(())
    }

    /// The most detailed level written.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Whether records at `level` are written.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Write a record from the core, if its level is enabled.
    pub fn record(&mut self, rec: &LogRecord) {
        if !self.enabled(rec.level) {
            return;
        }
        rec.write_line(&mut self.pending);
        self.pending.push('\n');
        if rec.level <= Level::Warn || self.pending.len() >= BATCH_BYTES {
            self.flush();
        } else if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
    }

    /// Write the lines held back.
    pub fn flush(&mut self) {
        self.pending_since = None;
        if self.pending.is_empty() {
            return;
        }
        // The buffer is kept (up to a batch) for the next lines instead of grown again.
        let mut text = std::mem::take(&mut self.pending);
        self.write_text(&text);
        text.clear();
        self.pending = text;
    }

    /// Write the lines held back if the oldest has waited [`LOG_DELAY`] at `now`; otherwise
    /// when it will have (`None` when nothing is held back).
    pub fn flush_due(&mut self, now: Instant) -> Option<Instant> {
        let due = self.pending_since? + LOG_DELAY;
        if now < due {
            return Some(due);
        }
        self.flush();
        None
    }

    /// Write a record of the shell's own (start, bind, signals, IO trouble).
    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.record(&own_record(level, message.into()));
    }

    /// A logger for another thread, writing to the same places at the same level.
    pub fn sink(&self) -> LogSink {
        LogSink {
            level: self.level,
            file: self.file.as_ref().and_then(|f| f.try_clone().ok()),
        }
    }

    fn write_text(&mut self, text: &str) {
        if let Err(e) = write_text(text, self.file.as_ref()) {
            // Say it once on stderr and stop writing the file rather than fail every line.
            let _ = writeln!(
                io::stderr().lock(),
                "{} warn log file write failed, writing to stderr only: {e}",
                unix_ms()
            );
            self.file = None;
        }
    }
}

/// A [`Logger`] for another thread (the mDNS advertiser): same level, same file.
#[derive(Debug)]
pub struct LogSink {
    level: Level,
    file: Option<File>,
}

impl LogSink {
    /// Write a line of the shell's own if its level is enabled; a failure to write is ignored.
    pub fn log(&self, level: Level, message: impl Into<String>) {
        if level <= self.level {
            let line = own_record(level, message.into()).line() + "\n";
            let _ = write_text(&line, self.file.as_ref());
        }
    }
}

fn own_record(level: Level, message: String) -> LogRecord {
    LogRecord {
        level,
        ts_ms: unix_ms(),
        conn: None,
        message,
    }
}

/// Write whole lines to stderr and, if given, to the log file (one append per call, so lines of
/// other writers never interleave inside a line); the error is the file's.
fn write_text(text: &str, file: Option<&File>) -> io::Result<()> {
    let _ = io::stderr().lock().write_all(text.as_bytes());
    match file {
        Some(mut f) => f.write_all(text.as_bytes()),
        None => Ok(()),
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_forms() {
        assert_eq!(rust_log_level("debug"), Some(Level::Debug));
        assert_eq!(
            rust_log_level("hyper=warn,clawgate=trace"),
            Some(Level::Trace)
        );
        assert_eq!(rust_log_level("clawgate_core=warn"), Some(Level::Warn));
        assert_eq!(rust_log_level("other=debug"), None);
        assert_eq!(rust_log_level("nonsense"), None);
        assert_eq!(rust_log_level("clawgate=debug,warn"), Some(Level::Debug));
        assert_eq!(rust_log_level("error,other=trace"), Some(Level::Error));
    }

    #[test]
    fn precedence() {
        let env: BTreeMap<String, String> = [("RUST_LOG".to_string(), "debug".to_string())].into();
        assert_eq!(level(&RunArgs::default(), &env), Level::Debug);
        assert_eq!(
            level(
                &RunArgs {
                    log_level: Some(Level::Warn),
                    ..Default::default()
                },
                &env
            ),
            Level::Warn
        );
        assert_eq!(
            level(
                &RunArgs {
                    verbose: true,
                    log_level: Some(Level::Warn),
                    ..Default::default()
                },
                &env
            ),
            Level::Trace
        );
        assert_eq!(level(&RunArgs::default(), &BTreeMap::new()), Level::Info);
    }

    #[test]
    fn file_is_private_and_filtered() {
        let dir = std::env::temp_dir().join(format!("clawgate-log-test-{}", std::process::id()));
        let path = dir.join("logs").join("g.log");
        let mut l = Logger::stderr(Level::Info);
        l.open_file(&path).unwrap();
        l.log(Level::Info, "kept");
        l.log(Level::Debug, "dropped");
        // Info lines wait for the flush before the loop sleeps; warnings go out at once.
        assert!(!std::fs::read_to_string(&path).unwrap().contains("kept"));
        l.log(Level::Warn, "urgent");
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains(" info kept\n")
        );
        l.log(Level::Info, "later");
        l.flush();
        let sink = l.sink();
        std::thread::spawn(move || {
            sink.log(Level::Info, "from another thread");
            sink.log(Level::Debug, "also dropped");
        })
        .join()
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(" info from another thread\n"), "{text}");
        assert!(
            text.contains(" info kept\n")
                && text.contains(" warn urgent\n")
                && text.contains(" info later\n")
                && !text.contains("dropped"),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
