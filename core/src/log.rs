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

/// The last records at `Info` or above, for `logs.tail`. Each line remembers the byte offset
/// where it ends in the log as a whole, so a client can follow with a cursor.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<(u64, String)>,
    cap: usize,
    bytes: u64,
}

/// The answer to a `logs.tail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    /// Lines, oldest first.
    pub lines: Vec<String>,
    /// Bytes logged so far: the cursor to continue from.
    pub cursor: u64,
    /// Some lines in range were left out (limit or size).
    pub truncated: bool,
    /// The cursor given is no longer (or not yet) in the ring: reading restarted.
    pub reset: bool,
}

impl LogRing {
    /// A ring keeping at most `cap` lines.
    pub fn new(cap: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            cap,
            bytes: 0,
        }
    }

    /// Remember a line.
    pub fn push(&mut self, line: String) {
        self.bytes += line.len() as u64 + 1;
        if self.cap == 0 {
            return;
        }
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back((self.bytes, line));
    }

    /// Lines after `cursor` (all kept lines when `None`), the newest `limit` of them within
    /// `max_bytes`.
    pub fn tail(&self, cursor: Option<u64>, limit: usize, max_bytes: usize) -> Tail {
        let oldest_start = self
            .lines
            .front()
            .map_or(self.bytes, |(end, l)| end - l.len() as u64 - 1);
        let reset = cursor.is_some_and(|c| c < oldest_start || c > self.bytes);
        let from = cursor.filter(|_| !reset).unwrap_or(0);
        let in_range: Vec<&String> = self
            .lines
            .iter()
            .filter(|(end, _)| *end > from)
            .map(|(_, l)| l)
            .collect();
        let mut out = Vec::new();
        let mut used = 0usize;
        for l in in_range.iter().rev().take(limit) {
            if used + l.len() + 1 > max_bytes {
                break;
            }
            used += l.len() + 1;
            out.push((*l).clone());
        }
        out.reverse();
        Tail {
            truncated: out.len() < in_range.len(),
            lines: out,
            cursor: self.bytes,
            reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_follows_and_resets() {
        let mut r = LogRing::new(3);
        r.push("a".into());
        r.push("bb".into());
        let t = r.tail(None, 10, 1000);
        assert_eq!(t.lines, vec!["a", "bb"]);
        assert_eq!(t.cursor, 5);
        r.push("ccc".into());
        let t2 = r.tail(Some(t.cursor), 10, 1000);
        assert_eq!(t2.lines, vec!["ccc"]);
        assert!(!t2.reset);
        r.push("d".into());
        r.push("e".into());
        let t3 = r.tail(Some(t.cursor), 10, 1000);
        assert!(!t3.reset, "everything after the cursor is still kept");
        assert_eq!(t3.lines, vec!["ccc", "d", "e"]);
        r.push("f".into());
        let t3 = r.tail(Some(t.cursor), 10, 1000);
        assert!(t3.reset, "ccc fell out of the ring");
        assert_eq!(t3.lines, vec!["d", "e", "f"]);
        let t4 = r.tail(None, 2, 1000);
        assert_eq!(t4.lines, vec!["e", "f"]);
        assert!(t4.truncated);
    }
}
