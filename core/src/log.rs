//! Log records the core emits (`Output::Log`) and the in-memory ring that `logs.tail` reads.

use core::net::IpAddr;
use std::collections::VecDeque;
use std::fmt::Write as _;

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
    /// Append the record as one line of text, without its newline:
    /// `<unix ms> <level> [conn=<id> ]<message>`.
    pub fn write_line(&self, out: &mut String) {
        // Pushed piece by piece: the host writes a line for every record, three a handshake.
        crate::dates::push_padded(out, self.ts_ms, 1);
        out.push(' ');
        out.push_str(self.level.as_str());
        out.push(' ');
        if let Some(c) = self.conn {
            out.push_str("conn=");
            crate::dates::push_padded(out, c.0, 1);
            out.push(' ');
        }
        out.push_str(&self.message);
    }

    /// The record as one line of text (see [`LogRecord::write_line`]).
    pub fn line(&self) -> String {
        let mut out = String::new();
        self.write_line(&mut out);
        out
    }

    /// The length of [`LogRecord::json_line`], found without writing it.
    pub fn json_line_len(&self) -> usize {
        const FIXED: usize = r#"{"level":"","message":"","subsystem":"","time":""}"#.len();
        let conn = self.conn.map_or(0, |c| "conn= ".len() + digits(c.0));
        let time = if self.ts_ms < YEAR_10000_MS {
            24
        } else {
            crate::dates::iso_time(self.ts_ms).len()
        };
        FIXED
            + self.level.as_str().len()
            + conn
            + escaped_len(&self.message)
            + subsystem(self.conn).len()
            + time
    }

    /// The record as one JSON line in the fields upstream's file log lines carry and its Control
    /// UI and `openclaw logs` parse: `time` (ISO 8601), `level`, `subsystem` and `message`
    /// (with the text line's `conn=<id> ` in front when it concerns a connection). Written
    /// straight into one buffer, keys in the order a JSON object value writes them (sorted).
    pub fn json_line(&self) -> String {
        let mut out = Vec::with_capacity(96 + self.message.len());
        out.extend_from_slice(b"{\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        // Serialising a string to a `Vec` cannot fail.
        let _ = match self.conn {
            Some(c) => {
                serde_json::to_writer(&mut out, &format_args!("conn={} {}", c.0, self.message))
            }
            None => serde_json::to_writer(&mut out, &self.message),
        };
        out.extend_from_slice(b",\"subsystem\":\"");
        out.extend_from_slice(subsystem(self.conn).as_bytes());
        out.extend_from_slice(b"\",\"time\":\"");
        out.extend_from_slice(crate::dates::iso_time(self.ts_ms).as_bytes());
        out.extend_from_slice(b"\"}");
        // Every piece is UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Append `ip` as its `Display` writes it. An IPv4 address (what every handshake logs) is
/// written digit by digit: a log line is built with pushes, not `format!`.
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        // Writing to a `String` cannot fail.
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// Append `items` as `{:?}` writes a list of strings (`["a", "b"]`). A string of printable
/// ASCII without quotes or backslashes (every scope name) is written as it is; any other is
/// left to `Debug`, which escapes it.
pub(crate) fn push_debug_strs(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let plain = item
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if plain {
            out.push('"');
            out.push_str(item);
            out.push('"');
        } else {
            // Writing to a `String` cannot fail.
            let _ = write!(out, "{item:?}");
        }
    }
    out.push(']');
}

/// The subsystem a record is logged under in its JSON line: upstream's names, `gateway/ws` for
/// what concerns one connection, `gateway` for the rest.
fn subsystem(conn: Option<ConnId>) -> &'static str {
    match conn {
        Some(_) => "gateway/ws",
        None => "gateway",
    }
}

/// A JSON line as a JSON string, as `serde_json` writes it. The line's own strings have their
/// control characters escaped, so only its quotes and backslashes need escaping here.
fn quote_json_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 8 + 2);
    out.push('"');
    let mut rest = line;
    while let Some(i) = rest.find(['"', '\\']) {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        out.push('\\');
        out.push_str(&after[..1]);
        rest = &after[1..];
    }
    out.push_str(rest);
    out.push('"');
    out
}

/// One kept line: where it ends in the log as a whole, its record, and its JSON line as a
/// JSON string (quoted and escaped), written the first time a tail reads it (most lines are
/// never read) and kept, so an answer copies it and never escapes it again.
#[derive(Debug)]
struct Kept {
    end: u64,
    record: LogRecord,
    quoted: std::cell::OnceCell<Box<str>>,
}

impl Kept {
    fn quoted(&self) -> &str {
        self.quoted
            .get_or_init(|| quote_json_line(&self.record.json_line()).into_boxed_str())
    }
}

/// Unix ms of 10000-01-01: before it, a JSON line's `time` has its 24 bytes.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

/// The length of `s` as `serde_json` writes it in a JSON string (without the quotes): its
/// quote, backslash and control characters escaped (`\n` or `\u001f`), the rest as is.
fn escaped_len(s: &str) -> usize {
    // Most messages have nothing to escape: checked eight bytes at a time, and the
    // byte-by-byte sum runs only for the others (the ring counts every line's length).
    if crate::json_plain::plain_len(s.as_bytes()) == s.len() {
        return s.len();
    }
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// Decimal digits of `n`.
fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The last records at `Info` or above, as JSON lines, for `logs.tail`. The log as a whole is
/// counted in bytes (each line plus a newline, as in a file) so a client can follow with a
/// cursor, as it follows upstream's log file.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<Kept>,
    /// Where the oldest kept line starts.
    oldest: u64,
    cap: usize,
    bytes: u64,
}

/// The answer to a `logs.tail`, its lines borrowed from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail<'a> {
    /// Lines, oldest first, each a JSON string (quoted and escaped).
    pub quoted: Vec<&'a str>,
    /// Bytes logged so far: the cursor to continue from.
    pub cursor: u64,
    /// Some lines logged after where reading started are left out (the ring, `maxBytes` or
    /// `limit`).
    pub truncated: bool,
    /// The cursor given is past the log's end, or lines after it are left out: the client
    /// starts over.
    pub reset: bool,
    /// Bytes after the cursor given that the answer leaves out, when it does.
    pub skipped: Option<u64>,
}

impl LogRing {
    /// A ring keeping at most `cap` lines.
    pub fn new(cap: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            oldest: 0,
            cap,
            bytes: 0,
        }
    }

    /// Remember a record (its JSON line is counted now and written when a tail reads it).
    pub fn push(&mut self, record: &LogRecord) {
        self.bytes += record.json_line_len() as u64 + 1;
        if self.cap == 0 {
            self.oldest = self.bytes;
            return;
        }
        if self.lines.len() == self.cap
            && let Some(gone) = self.lines.pop_front()
        {
            self.oldest = gone.end;
        }
        self.lines.push_back(Kept {
            end: self.bytes,
            record: record.clone(),
            quoted: std::cell::OnceCell::new(),
        });
    }

    /// As upstream reads its log file: the lines wholly within the last `max_bytes` bytes
    /// after `cursor` (of the whole log when `None` or when the cursor is past its end), the
    /// newest `limit` of them. Lines the ring no longer keeps count as skipped, as those
    /// before the `max_bytes` window do.
    pub fn tail(&self, cursor: Option<u64>, limit: usize, max_bytes: u64) -> Tail<'_> {
        let size = self.bytes;
        // Where reading starts (as asked) and where the lines it may answer with start.
        let asked = cursor.filter(|c| *c <= size).unwrap_or(0);
        let from = asked.max(size.saturating_sub(max_bytes));
        let starts = std::iter::once(self.oldest).chain(self.lines.iter().map(|k| k.end));
        // The first kept line starting at or after `from` (one cut by it is left out).
        let (mut first, mut begins) = starts
            .enumerate()
            .find(|(i, start)| *start >= from || *i == self.lines.len())
            .unwrap_or((self.lines.len(), size));
        let skipped = begins - asked;
        let newest = self.lines.len().saturating_sub(limit);
        if first < newest {
            begins = self.lines[newest - 1].end;
            first = newest;
        }
        let past_end = cursor.is_some_and(|c| c > size);
        Tail {
            quoted: self.lines.range(first..).map(Kept::quoted).collect(),
            cursor: size,
            truncated: begins > asked,
            reset: past_end || (cursor.is_some() && skipped > 0),
            skipped: (cursor.is_some() && !past_end && skipped > 0).then_some(skipped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str) -> LogRecord {
        LogRecord {
            level: Level::Info,
            ts_ms: 1_764_979_200_123,
            conn: None,
            message: message.into(),
        }
    }

    /// The JSON lines the quoted strings hold.
    fn lines(t: &Tail<'_>) -> Vec<String> {
        t.quoted
            .iter()
            .map(|q| serde_json::from_str::<String>(q).expect("a JSON string"))
            .collect()
    }

    /// The messages of the lines of `t`.
    fn messages(t: &Tail<'_>) -> Vec<String> {
        lines(t)
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                v["message"].as_str().expect("message").to_string()
            })
            .collect()
    }

    #[test]
    fn lines_carry_upstreams_fields() {
        let mut rec = record("hello \"there\"");
        rec.conn = Some(ConnId(7));
        rec.level = Level::Warn;
        let v: serde_json::Value = serde_json::from_str(&rec.json_line()).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2025-12-06T00:00:00.123Z",
                "level": "warn",
                "subsystem": "gateway/ws",
                "message": "conn=7 hello \"there\"",
            })
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&record("x").json_line()).expect("JSON")["subsystem"],
            "gateway"
        );
    }

    #[test]
    fn json_line_len_is_the_length_of_the_line() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        for conn in [
            None,
            Some(ConnId(0)),
            Some(ConnId(9)),
            Some(ConnId(10)),
            Some(ConnId(u64::MAX)),
        ] {
            for level in [Level::Error, Level::Warn, Level::Info, Level::Debug] {
                for ts_ms in [
                    0,
                    1_764_979_200_123,
                    YEAR_10000_MS - 1,
                    YEAR_10000_MS,
                    300_000_000_000_000,
                ] {
                    for message in ["", "plain", every_ascii.as_str(), "é \u{1F980} \u{7f}"] {
                        let rec = LogRecord {
                            level,
                            ts_ms,
                            conn,
                            message: message.into(),
                        };
                        assert_eq!(rec.json_line_len(), rec.json_line().len(), "{rec:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_tail_writes_the_line_of_a_record_pushed_before() {
        let mut ring = LogRing::new(2);
        ring.push(&record("one"));
        ring.push(&record("two \"quoted\""));
        assert_eq!(
            lines(&ring.tail(None, 10, 1 << 20)),
            [
                record("one").json_line(),
                record("two \"quoted\"").json_line()
            ]
        );
        // Read again: the same lines.
        assert_eq!(
            messages(&ring.tail(None, 10, 1 << 20)),
            ["one", "two \"quoted\""]
        );
    }

    #[test]
    fn json_line_has_the_bytes_of_a_json_object() {
        for conn in [None, Some(ConnId(7))] {
            for message in [
                "plain",
                "quote \" backslash \\ tab \t nul \u{0} é \u{1F980}",
                "",
            ] {
                let mut rec = record(message);
                rec.conn = conn;
                let value = serde_json::json!({
                    "time": crate::dates::iso_time(rec.ts_ms),
                    "level": rec.level.as_str(),
                    "subsystem": subsystem(rec.conn),
                    "message": match conn {
                        Some(c) => format!("conn={} {message}", c.0),
                        None => message.to_string(),
                    },
                });
                assert_eq!(rec.json_line(), value.to_string());
                assert_eq!(
                    quote_json_line(&rec.json_line()),
                    serde_json::to_string(&rec.json_line()).expect("a string")
                );
            }
        }
    }

    #[test]
    fn text_line() {
        let mut rec = record("hi");
        let mut line = String::new();
        rec.write_line(&mut line);
        rec.conn = Some(ConnId(3));
        rec.write_line(&mut line);
        assert_eq!(line, "1764979200123 info hi1764979200123 info conn=3 hi");
        rec.ts_ms = 0;
        rec.conn = Some(ConnId(u64::MAX));
        assert_eq!(rec.line(), format!("0 info conn={} hi", u64::MAX));
        rec.conn = Some(ConnId(0));
        rec.level = Level::Error;
        assert_eq!(rec.line(), "0 error conn=0 hi");
    }

    #[test]
    fn cursor_follows_and_resets() {
        let mut r = LogRing::new(3);
        r.push(&record("a"));
        r.push(&record("bb"));
        let len = |m: &str| record(m).json_line().len() as u64 + 1;
        let t = r.tail(None, 10, 1_000_000);
        assert_eq!(messages(&t), vec!["a", "bb"]);
        assert_eq!(t.cursor, len("a") + len("bb"));
        assert!(!t.truncated && !t.reset && t.skipped.is_none());
        let first = t.cursor;
        r.push(&record("ccc"));
        let t2 = r.tail(Some(first), 10, 1_000_000);
        assert_eq!(messages(&t2), vec!["ccc"]);
        assert!(!t2.reset && !t2.truncated);
        r.push(&record("d"));
        r.push(&record("e"));
        let t3 = r.tail(Some(first), 10, 1_000_000);
        assert!(!t3.reset, "everything after the cursor is still kept");
        assert_eq!(messages(&t3), vec!["ccc", "d", "e"]);
        r.push(&record("f"));
        let t3 = r.tail(Some(first), 10, 1_000_000);
        assert!(t3.reset && t3.truncated, "ccc fell out of the ring");
        assert_eq!(t3.skipped, Some(len("ccc")));
        assert_eq!(messages(&t3), vec!["d", "e", "f"]);
        let t4 = r.tail(None, 2, 1_000_000);
        assert_eq!(messages(&t4), vec!["e", "f"]);
        assert!(t4.truncated && !t4.reset);
        let past = r.tail(Some(t4.cursor + 1), 10, 1_000_000);
        assert!(past.reset && past.skipped.is_none());
        assert_eq!(messages(&past), vec!["d", "e", "f"]);
    }

    #[test]
    fn max_bytes_keeps_whole_lines_from_the_end() {
        let mut r = LogRing::new(10);
        for m in ["one", "two", "three"] {
            r.push(&record(m));
        }
        let last = record("three").json_line().len() as u64 + 1;
        let t = r.tail(None, 10, last + 5);
        assert_eq!(
            messages(&t),
            vec!["three"],
            "a line cut by the window is left out"
        );
        assert!(t.truncated && !t.reset);
        let t = r.tail(Some(0), 10, last);
        assert_eq!(messages(&t), vec!["three"]);
        assert!(t.reset && t.truncated);
        assert_eq!(t.skipped, Some(t.cursor - last));
        assert!(r.tail(None, 10, last - 1).quoted.is_empty());
    }
}
