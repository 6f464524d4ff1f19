//! Log records the core emits (`Output::Log`) and the in-memory ring that `logs.tail` reads.

use std::collections::VecDeque;

use crate::ConnId;

/// Severity of a log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something was refused or degraded.
    Warn,
    /// Lifecycle events: start, accept, hello, close.
    Info,
    /// Details.
    Debug,
    /// Every frame in and out (`--verbose`), secrets masked.
    Trace,
}

impl Level {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// Parse a level name (`RUST_LOG` style).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }
}

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: Level,
    /// Unix time in milliseconds.
    pub ts_ms: u64,
    /// The connection it concerns, if any.
    pub conn: Option<ConnId>,
    /// The message.
    pub message: String,
}

impl LogRecord {
    /// The record as one line of text.
    pub fn line(&self) -> String {
        match self.conn {
            Some(c) => format!(
                "{} {} conn={} {}",
                self.ts_ms,
                self.level.as_str(),
                c.0,
                self.message
            ),
            None => format!("{} {} {}", self.ts_ms, self.level.as_str(), self.message),
        }
    }
}

/// The last records at `Info` or above, for `logs.tail`.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<String>,
    cap: usize,
    total: u64,
    bytes: u64,
}

impl LogRing {
    /// A ring keeping at most `cap` lines.
    pub fn new(cap: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            cap,
            total: 0,
            bytes: 0,
        }
    }

    /// Remember a line.
    pub fn push(&mut self, line: String) {
        self.total += 1;
        self.bytes += line.len() as u64 + 1;
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        if self.cap > 0 {
            self.lines.push_back(line);
        }
    }

    /// The last `limit` lines, newest last, within `max_bytes`; and the cursor (bytes logged so far).
    pub fn tail(&self, limit: usize, max_bytes: usize) -> (Vec<String>, u64, bool) {
        let mut out = Vec::new();
        let mut used = 0usize;
        for l in self.lines.iter().rev().take(limit) {
            if used + l.len() + 1 > max_bytes {
                break;
            }
            used += l.len() + 1;
            out.push(l.clone());
        }
        out.reverse();
        let truncated = out.len() < self.lines.len();
        (out, self.bytes, truncated)
    }
}
