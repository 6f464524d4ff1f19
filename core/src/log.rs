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

/// A ring line (one of [`LogRecord::line`]'s) as upstream's JSON log line, which the Control
/// UI's Logs view parses: `time` (ISO 8601), `level` and `message` (the connection, if any,
/// stays in front of the message). A line of another shape is kept whole as the message.
pub fn json_line(line: &str) -> String {
    let parsed = line.split_once(' ').and_then(|(ts, rest)| {
        let ms = ts.parse::<u64>().ok()?;
        let (level, message) = rest.split_once(' ')?;
        matches!(level, "error" | "warn" | "info" | "debug" | "trace")
            .then_some((ms, level, message))
    });
    let message = |m: &str| serde_json::to_string(m).unwrap_or_default();
    match parsed {
        Some((ms, level, rest)) => format!(
            "{{\"time\":\"{}\",\"level\":\"{level}\",\"message\":{}}}",
            crate::dates::iso_time(ms),
            message(rest)
        ),
        None => format!("{{\"message\":{}}}", message(line)),
    }
}

/// The last records at `Info` or above, for `logs.tail`. Each line remembers the byte offset
/// where it ends in the log as a whole, so a client can follow with a cursor.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<Kept>,
    cap: usize,
    bytes: u64,
}

/// One kept line: where it ends in the log as a whole, its text, and its [`json_line`] once a
/// `logs.tail` has served it (kept, so a flood of tails converts each line once).
#[derive(Debug)]
struct Kept {
    end: u64,
    line: String,
    served: Option<String>,
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
        self.lines.push_back(Kept {
            end: self.bytes,
            line,
            served: None,
        });
    }

    /// Lines after `cursor` (all kept lines when `None`), the newest `limit` of them as
    /// [`json_line`]s, within `max_bytes` of those. The cursor counts the plain lines' bytes.
    pub fn tail(&mut self, cursor: Option<u64>, limit: usize, max_bytes: usize) -> Tail {
        let oldest_start = self
            .lines
            .front()
            .map_or(self.bytes, |k| k.end - k.line.len() as u64 - 1);
        let reset = cursor.is_some_and(|c| c < oldest_start || c > self.bytes);
        let from = cursor.filter(|_| !reset).unwrap_or(0);
        let first = self.lines.partition_point(|k| k.end <= from);
        let in_range = self.lines.len() - first;
        let mut out = Vec::new();
        let mut used = 0usize;
        for k in self.lines.range_mut(first..).rev().take(limit) {
            let served = k.served.get_or_insert_with(|| json_line(&k.line));
            if used + served.len() + 1 > max_bytes {
                break;
            }
            used += served.len() + 1;
            out.push(served.clone());
        }
        out.reverse();
        Tail {
            truncated: out.len() < in_range,
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
        // The ring keeps plain lines and serves them converted.
        let served =
            |lines: &[&str]| -> Vec<String> { lines.iter().map(|l| json_line(l)).collect() };
        let mut r = LogRing::new(3);
        r.push("a".into());
        r.push("bb".into());
        let t = r.tail(None, 10, 1000);
        assert_eq!(t.lines, served(&["a", "bb"]));
        assert_eq!(t.cursor, 5);
        r.push("ccc".into());
        let t2 = r.tail(Some(t.cursor), 10, 1000);
        assert_eq!(t2.lines, served(&["ccc"]));
        assert!(!t2.reset);
        r.push("d".into());
        r.push("e".into());
        let t3 = r.tail(Some(t.cursor), 10, 1000);
        assert!(!t3.reset, "everything after the cursor is still kept");
        assert_eq!(t3.lines, served(&["ccc", "d", "e"]));
        r.push("f".into());
        let t3 = r.tail(Some(t.cursor), 10, 1000);
        assert!(t3.reset, "ccc fell out of the ring");
        assert_eq!(t3.lines, served(&["d", "e", "f"]));
        let t4 = r.tail(None, 2, 1000);
        assert_eq!(t4.lines, served(&["e", "f"]));
        assert!(t4.truncated);
    }

    #[test]
    fn lines_are_served_as_upstreams_json() {
        let rec = LogRecord {
            level: Level::Warn,
            ts_ms: 1_764_982_800_123,
            conn: Some(ConnId(7)),
            message: "refused \"x\"".into(),
        };
        let line = json_line(&rec.line());
        assert_eq!(
            line,
            r#"{"time":"2025-12-06T01:00:00.123Z","level":"warn","message":"conn=7 refused \"x\""}"#
        );
        assert_eq!(json_line("odd"), r#"{"message":"odd"}"#);
        assert_eq!(json_line("12 loud x"), r#"{"message":"12 loud x"}"#);
        // The byte budget is the served lines': a line that does not fit is left out.
        let mut r = LogRing::new(4);
        r.push(rec.line());
        r.push(rec.line());
        let t = r.tail(None, 10, line.len() + 1);
        assert_eq!(t.lines, vec![line]);
        assert!(t.truncated);
    }
}
