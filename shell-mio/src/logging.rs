//! The gateway's log: one line per event on stderr and appended to the log file in the state
//! directory (created 0600 in a 0700 directory) so that `clawgate logs -f` can follow it.
//! Lines have the core's format: `<unix ms> <level> [conn=<id>] <message>`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

/// The level a `RUST_LOG` value sets for clawgate: a bare level (`debug`) or a directive for a
/// `clawgate…` target (`clawgate=trace`); the last one that applies wins.
pub fn rust_log_level(value: &str) -> Option<Level> {
    value
        .split(',')
        .rev()
        .find_map(|directive| match directive.split_once('=') {
            None => Level::parse(directive),
            Some((target, level)) if target.trim().starts_with("clawgate") => Level::parse(level),
            Some(_) => None,
        })
}

/// The milliseconds since the Unix epoch now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes records at or above a level to stderr and to the log file.
#[derive(Debug)]
pub struct Logger {
    level: Level,
    file: Option<File>,
}

impl Logger {
    /// A logger at `level` that writes to stderr only.
    pub fn stderr(level: Level) -> Self {
        Self { level, file: None }
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

    /// Whether records at `level` are written.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Write a record from the core, if its level is enabled.
    pub fn record(&mut self, rec: &LogRecord) {
        if self.enabled(rec.level) {
            self.write_line(&rec.line());
        }
    }

    /// Write a record of the shell's own (start, bind, signals, IO trouble).
    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        let rec = LogRecord {
            level,
            ts_ms: unix_ms(),
            conn: None,
            message: message.into(),
        };
        self.record(&rec);
    }

    fn write_line(&mut self, line: &str) {
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        let _ = io::stderr().lock().write_all(text.as_bytes());
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(text.as_bytes())
        {
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
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(" info kept\n") && !text.contains("dropped"),
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
