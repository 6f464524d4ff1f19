//! An incremental Server-Sent Events decoder (WHATWG HTML, "Parsing an event stream").
//!
//! Bytes arrive in whatever chunks the network gives: a chunk may end inside a UTF-8 sequence,
//! between the CR and the LF of a CRLF, or inside the leading byte-order mark. Lines end in LF,
//! CR or CRLF; a leading BOM is skipped; `data:` lines are joined with `\n`; `event:`, `id:` and
//! `retry:` are honoured; comment lines (`:` first) are ignored; a blank line dispatches the
//! event. The same bytes give the same events however they are chunked.
//!
//! Nothing is buffered without bound: a line longer than [`SseLimits::max_line_bytes`] or an
//! event larger than [`SseLimits::max_event_bytes`] stops the decoder with an [`SseError`], and
//! [`SseDecoder::buffered_bytes`] never exceeds [`SseLimits::max_buffered_bytes`].

use std::borrow::Cow;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The default of [`SseLimits::max_line_bytes`]: 256 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024;
/// The default of [`SseLimits::max_event_bytes`]: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// How much one stream may make the decoder hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseLimits {
    /// The longest line, in bytes, its terminator not counted.
    pub max_line_bytes: usize,
    /// The most bytes of one event's data, type and id together.
    pub max_event_bytes: usize,
}

impl Default for SseLimits {
    fn default() -> Self {
        SseLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

impl SseLimits {
    /// The most bytes a decoder with these limits ever holds: a partial line and an event.
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_line_bytes.saturating_add(self.max_event_bytes)
    }
}

/// Why a stream was refused. The decoder stays stopped: every later call returns the same error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line was longer than [`SseLimits::max_line_bytes`].
    #[error("SSE line longer than {limit} bytes")]
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An event's data, type and id were larger than [`SseLimits::max_event_bytes`].
    #[error("SSE event larger than {limit} bytes")]
    EventTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
}

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: the last `event:` value, or `"message"` when there was none.
    pub event: Cow<'static, str>,
    /// The `data:` lines joined with `\n`; never empty (an event without data is not dispatched).
    pub data: String,
    /// The last event ID seen on the stream so far (it carries over between events), or "".
    pub last_event_id: String,
}

/// How a stream ended, from [`SseDecoder::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseEnd {
    /// At an event boundary: nothing was pending.
    Clean,
    /// Inside a line or an event, which was discarded as the spec requires.
    Partial,
}

/// The incremental decoder: feed it bytes with [`feed`](Self::feed), collect the events.
#[derive(Clone, Debug)]
pub struct SseDecoder {
    limits: SseLimits,
    /// How many bytes of the BOM have been matched at the start; `None` once past the start.
    bom_matched: Option<usize>,
    /// The previous byte was a CR, so a LF now is the rest of a CRLF.
    after_cr: bool,
    line: Vec<u8>,
    event_type: String,
    data: String,
    last_event_id: String,
    retry_ms: Option<u64>,
    failed: Option<SseError>,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new(limits: SseLimits) -> Self {
        SseDecoder {
            limits,
            bom_matched: Some(0),
            after_cr: false,
            line: Vec::new(),
            event_type: String::new(),
            data: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            failed: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> SseLimits {
        self.limits
    }

    /// The reconnection time the stream asked for with `retry:`, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// The bytes held for a partial line and a partial event; at most
    /// [`SseLimits::max_buffered_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.event_bytes()
    }

    /// Decode `chunk`, appending every event it completes to `out`. On an error the events
    /// before the offending line are in `out`, and the decoder refuses everything after.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.feed_inner(chunk, out);
        if let Err(e) = result {
            self.failed = Some(e);
            self.line = Vec::new();
            self.data = String::new();
        }
        result
    }

    /// The end of the stream: a partial line or event is discarded (it was never dispatched).
    pub fn finish(&mut self) -> Result<SseEnd, SseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let partial = matches!(self.bom_matched, Some(n) if n > 0)
            || !self.line.is_empty()
            || !self.data.is_empty()
            || !self.event_type.is_empty();
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        Ok(if partial {
            SseEnd::Partial
        } else {
            SseEnd::Clean
        })
    }

    fn feed_inner(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = self.skip_bom(chunk)?;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(tail) = rest.strip_prefix(b"\n") {
                    rest = tail;
                    continue;
                }
            }
            match crate::json_plain::line_end(rest) {
                None => {
                    self.push_line_bytes(rest)?;
                    rest = &[];
                }
                Some(at) => {
                    let (text, tail) = rest.split_at(at);
                    self.after_cr = tail.first() == Some(&b'\r');
                    rest = tail.get(1..).unwrap_or_default();
                    if self.line.is_empty() {
                        // A whole line in this chunk: read where it is, not copied first.
                        self.check_line(text.len())?;
                        self.process_line(text, out)?;
                    } else {
                        self.push_line_bytes(text)?;
                        let line = core::mem::take(&mut self.line);
                        self.process_line(&line, out)?;
                        self.line = line;
                        self.line.clear();
                    }
                }
            }
        }
        Ok(())
    }

    /// Consume the BOM's bytes at the very start; a mismatch puts the matched ones back.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], SseError> {
        let Some(mut matched) = self.bom_matched else {
            return Ok(chunk);
        };
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            if BOM.get(matched) != Some(&b) {
                break;
            }
            matched += 1;
            rest = tail;
            if matched == BOM.len() {
                self.bom_matched = None;
                return Ok(rest);
            }
        }
        if rest.is_empty() {
            self.bom_matched = Some(matched);
        } else {
            self.bom_matched = None;
            self.push_line_bytes(BOM.get(..matched).unwrap_or_default())?;
        }
        Ok(rest)
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.check_line(self.line.len().saturating_add(bytes.len()))?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Refuse a line of `len` bytes if it is longer than the limit.
    fn check_line(&self, len: usize) -> Result<(), SseError> {
        let limit = self.limits.max_line_bytes;
        if len > limit {
            return Err(SseError::LineTooLong { limit });
        }
        Ok(())
    }

    fn event_bytes(&self) -> usize {
        self.data.len() + self.event_type.len() + self.last_event_id.len()
    }

    /// Make room for `add` more event bytes after `remove` are dropped, or refuse.
    fn reserve_event(&self, remove: usize, add: usize) -> Result<(), SseError> {
        let limit = self.limits.max_event_bytes;
        if self
            .event_bytes()
            .saturating_sub(remove)
            .saturating_add(add)
            > limit
        {
            return Err(SseError::EventTooLarge { limit });
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => {
                let (name, value) = line.split_at(at);
                let value = value.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // `str::from_utf8` checks ASCII a word at a time; the lossy decoder walks byte by
        // byte (~10 instructions a byte, callgrind). Same text either way.
        let value = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match name {
            b"event" => {
                self.reserve_event(self.event_type.len(), value.len())?;
                self.event_type = value.into_owned();
            }
            b"data" => {
                self.reserve_event(0, value.len() + 1)?;
                // The line and its `\n` in one allocation (most events have one line).
                self.data.reserve(value.len() + 1);
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => {
                self.reserve_event(self.last_event_id.len(), value.len())?;
                self.last_event_id = value.into_owned();
            }
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Too many digits for a u64 is ignored like any other malformed value.
                if let Ok(ms) = value.parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event_type = core::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return;
        }
        let mut data = core::mem::take(&mut self.data);
        data.pop();
        out.push(SseEvent {
            event: if event_type.is_empty() {
                Cow::Borrowed("message")
            } else {
                Cow::Owned(event_type)
            },
            data,
            last_event_id: self.last_event_id.clone(),
        });
    }
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new(SseLimits::default())
    }
}

/// Decode a whole stream at once: the events, then the error that stopped it, if any.
pub fn decode_all(limits: SseLimits, bytes: &[u8]) -> (Vec<SseEvent>, Option<SseError>) {
    let mut d = SseDecoder::new(limits);
    let mut out = Vec::new();
    let err = d.feed(bytes, &mut out).err();
    (out, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::model_stream::split;
    use proptest::prelude::*;

    fn ev(event: &str, data: &str, id: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned().into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    fn whole(bytes: &[u8]) -> Vec<SseEvent> {
        let (events, err) = decode_all(SseLimits::default(), bytes);
        assert_eq!(err, None);
        events
    }

    fn chunked(
        limits: SseLimits,
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Vec<SseEvent>, Option<SseError>) {
        let mut d = SseDecoder::new(limits);
        let mut out = Vec::new();
        for part in split(bytes, cuts) {
            if let Err(e) = d.feed(part, &mut out) {
                return (out, Some(e));
            }
            assert!(d.buffered_bytes() <= limits.max_buffered_bytes());
        }
        (out, None)
    }

    #[test]
    fn openai_stream() {
        let s = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            whole(s),
            vec![
                ev("message", "{\"a\":1}", ""),
                ev("message", "{\"b\":2}", ""),
                ev("message", "[DONE]", ""),
            ]
        );
    }

    #[test]
    fn line_endings_lf_cr_crlf_mixed() {
        let s = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r";
        assert_eq!(
            whole(s),
            vec![ev("message", "a\nb\nc", ""), ev("message", "d", "")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let s = b"data: a\r\n\r\ndata: b\r\n\r\n";
        for cut in 0..=s.len() {
            let (events, err) = chunked(SseLimits::default(), s, &[cut]);
            assert_eq!(err, None);
            assert_eq!(
                events,
                vec![ev("message", "a", ""), ev("message", "b", "")],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn leading_bom_is_skipped_once_even_split() {
        let s = b"\xEF\xBB\xBFdata: x\n\n\xEF\xBB\xBFdata: y\n\n";
        for cut in 0..5 {
            let (events, _) = chunked(SseLimits::default(), s, &[cut, cut + 1]);
            assert_eq!(events.first(), Some(&ev("message", "x", "")));
            // A second BOM is not at the start: it is part of the field name, so ignored.
            assert_eq!(events.len(), 1);
        }
    }

    #[test]
    fn partial_bom_is_line_content() {
        let s = b"\xEF\xBBdata: x\n\n";
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for b in s {
            d.feed(&[*b], &mut out).expect("feed");
        }
        assert_eq!(out, vec![]);
        assert_eq!(decode_all(SseLimits::default(), s).0, vec![]);
    }

    #[test]
    fn fields_comments_and_defaults() {
        let s = b": keep-alive\nevent: delta\nid: 7\nretry: 1500\ndata\ndata:no-space\ndata:  two\nunknown: x\n\n";
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        d.feed(s, &mut out).expect("feed");
        assert_eq!(out, vec![ev("delta", "\nno-space\n two", "7")]);
        assert_eq!(d.retry_ms(), Some(1500));
    }

    #[test]
    fn id_carries_over_and_bad_retry_is_ignored() {
        let s = b"id: 1\ndata: a\n\nretry: 12x\nretry: 99999999999999999999999\ndata: b\n\nid\ndata: c\n\n";
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        d.feed(s, &mut out).expect("feed");
        assert_eq!(
            out,
            vec![
                ev("message", "a", "1"),
                ev("message", "b", "1"),
                ev("message", "c", "")
            ]
        );
        assert_eq!(d.retry_ms(), None);
    }

    #[test]
    fn id_with_nul_is_ignored_and_event_without_data_is_dropped() {
        let s = b"id: 5\n\nid: a\0b\nevent: x\n\ndata: z\n\n";
        assert_eq!(whole(s), vec![ev("message", "z", "5")]);
    }

    #[test]
    fn utf8_split_inside_a_sequence() {
        let s = "data: héllo 🦀\n\n".as_bytes();
        for cut in 0..=s.len() {
            let (events, _) = chunked(SseLimits::default(), s, &[cut]);
            assert_eq!(events, vec![ev("message", "héllo 🦀", "")]);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            whole(b"data: a\xFFb\n\n"),
            vec![ev("message", "a\u{FFFD}b", "")]
        );
    }

    #[test]
    fn finish_reports_partial_events() {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        d.feed(b"data: a\n\n", &mut out).expect("feed");
        assert_eq!(d.finish(), Ok(SseEnd::Clean));
        d.feed(b"data: b\n", &mut out).expect("feed");
        assert_eq!(d.finish(), Ok(SseEnd::Partial));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn long_line_is_refused_however_it_arrives() {
        let limits = SseLimits {
            max_line_bytes: 16,
            max_event_bytes: 64,
        };
        let s = b"data: ok\n\ndata: 0123456789abcdef\n\ndata: later\n\n";
        let expected = (
            vec![ev("message", "ok", "")],
            Some(SseError::LineTooLong { limit: 16 }),
        );
        for cut in 0..=s.len() {
            assert_eq!(chunked(limits, s, &[cut]), expected, "cut {cut}");
        }
        let mut d = SseDecoder::new(limits);
        let mut out = Vec::new();
        assert!(d.feed(s, &mut out).is_err());
        assert_eq!(
            d.feed(b"data: x\n\n", &mut out),
            expected.1.map_or(Ok(()), Err)
        );
        assert_eq!(d.finish(), Err(SseError::LineTooLong { limit: 16 }));
    }

    #[test]
    fn line_at_the_limit_is_fine() {
        let limits = SseLimits {
            max_line_bytes: 8,
            max_event_bytes: 64,
        };
        assert_eq!(
            decode_all(limits, b"data: ab\n\n").0,
            vec![ev("message", "ab", "")]
        );
    }

    #[test]
    fn large_event_is_refused() {
        let limits = SseLimits {
            max_line_bytes: 16,
            max_event_bytes: 9,
        };
        let s = b"data: 1234\ndata: 5678\n\n";
        assert_eq!(
            decode_all(limits, s),
            (vec![], Some(SseError::EventTooLarge { limit: 9 }))
        );
        let s = b"data: 1234\ndata: 567\n\n";
        assert_eq!(
            decode_all(limits, s).0,
            vec![ev("message", "1234\n567", "")]
        );
    }

    fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"event: e".to_vec()),
            Just(b"id: 9".to_vec()),
            Just(b"retry: 10".to_vec()),
            Just(b": c".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(BOM.to_vec()),
            Just("é🦀".as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_events(
            s in stream_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            small in any::<bool>(),
        ) {
            let limits = if small {
                SseLimits { max_line_bytes: 12, max_event_bytes: 24 }
            } else {
                SseLimits::default()
            };
            prop_assert_eq!(chunked(limits, &s, &cuts), decode_all(limits, &s));
        }
    }
}
