//! HTTP/1.1 for a client, sans-IO: [`encode_request`] turns an [`HttpRequest`] into the bytes
//! a worker writes, and [`ResponseParser`] turns the bytes it reads, in whatever pieces the
//! network gives, into the response head and the body with its transfer framing removed
//! (`Transfer-Encoding: chunked` with extensions and trailers, `Content-Length`, or read until
//! the connection closes). The same bytes give the same head and body however they are cut.
//!
//! Nothing is buffered without bound: the head (and the trailers) may take at most
//! [`ResponseLimits::max_head_bytes`], a chunk-size line at most
//! [`ResponseLimits::max_chunk_line_bytes`]; body bytes are handed out as they arrive.
//! The request says `Connection: keep-alive`: after a response whose framing ended it,
//! [`ResponseParser::reusable`] tells the worker whether the connection may carry the next
//! request; a response without framing ends where the connection does.

use super::HttpRequest;
use super::json_text::push_u64;

/// The default of [`ResponseLimits::max_head_bytes`]: 64 KiB.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
/// The default of [`ResponseLimits::max_chunk_line_bytes`]: 4 KiB.
pub const DEFAULT_MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// The most header lines a response head may have.
pub const MAX_HEADERS: usize = 96;

/// How much one response may make the parser hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    /// The largest head (status line and headers, the blank line included), and the largest
    /// trailer section of a chunked body.
    pub max_head_bytes: usize,
    /// The longest chunk-size line (size and extensions), its line ending included.
    pub max_chunk_line_bytes: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_chunk_line_bytes: DEFAULT_MAX_CHUNK_LINE_BYTES,
        }
    }
}

/// Why a response was refused. The parser stays stopped: every later call returns it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head did not end within [`ResponseLimits::max_head_bytes`].
    #[error("response head larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The head has more than [`MAX_HEADERS`] header lines.
    #[error("more than {limit} response headers")]
    TooManyHeaders {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The head is not HTTP/1.x.
    #[error("malformed response head: {0}")]
    BadHead(httparse::Error),
    /// `Content-Length` is not one decimal number (or several differing ones).
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A chunk-size line does not start with a hexadecimal size that fits in 64 bits.
    #[error("invalid chunk size")]
    BadChunkSize,
    /// A chunk-size line was longer than [`ResponseLimits::max_chunk_line_bytes`].
    #[error("chunk size line longer than {limit} bytes")]
    ChunkLineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A chunk's data is not followed by a line ending.
    #[error("chunk data not followed by CRLF")]
    BadChunkEnd,
    /// The trailers were larger than [`ResponseLimits::max_head_bytes`].
    #[error("trailers larger than {limit} bytes")]
    TrailersTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The connection ended before the head did.
    #[error("connection closed before the response head")]
    NoHead,
    /// The connection ended before the body its framing announced.
    #[error("connection closed before the end of the response body")]
    Truncated,
}

/// What the parser found in the bytes fed to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseEvent {
    /// The final head (interim `1xx` heads are skipped).
    Head {
        /// The status code.
        status: u16,
        /// Header names (lowercase) and values, in order.
        headers: Vec<(String, String)>,
    },
    /// The next body bytes, framing removed; never empty.
    Body(Vec<u8>),
}

/// Where the parser is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting the head in `buf`.
    Head,
    /// `n` more body bytes (`Content-Length`).
    Length(u64),
    /// Body bytes until the connection closes.
    UntilClose,
    /// Collecting a chunk-size line in `buf`.
    ChunkSize,
    /// `n` more bytes of the current chunk.
    ChunkData(u64),
    /// The line ending after a chunk's data; `true` once its CR was seen.
    ChunkEnd(bool),
    /// Collecting trailer lines in `buf` (`held` bytes of trailers so far).
    Trailers(usize),
    /// The body is complete; later bytes are ignored.
    Done,
    /// Stopped by this error.
    Failed(ResponseError),
}

/// An incremental HTTP/1.1 response parser (see the module doc).
#[derive(Clone, Debug)]
pub struct ResponseParser {
    limits: ResponseLimits,
    /// A `HEAD` request: the response has no body whatever its headers say.
    head_request: bool,
    state: State,
    buf: Vec<u8>,
    /// The final head allows another request on the connection: HTTP/1.1, no
    /// `Connection: close`, a body delimited by its framing.
    persistent: bool,
    /// Bytes came after the end of the response.
    overrun: bool,
}

impl ResponseParser {
    /// A parser for the response to a request with `method`.
    pub fn new(limits: ResponseLimits, method: &str) -> Self {
        ResponseParser {
            limits,
            head_request: method.eq_ignore_ascii_case("HEAD"),
            state: State::Head,
            buf: Vec::new(),
            persistent: false,
            overrun: false,
        }
    }

    /// Whether the response is complete: its framing said where the body ends and it has.
    /// A read-until-close body is complete only after [`ResponseParser::finish`].
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the connection may carry another request: the response is complete by its
    /// framing (`Content-Length`, the last chunk, or no body), the server spoke HTTP/1.1
    /// without `Connection: close`, and no byte came after the response. A body read until
    /// the connection closed, HTTP/1.0, an error or a truncated body is never reusable.
    pub fn reusable(&self) -> bool {
        self.state == State::Done && self.persistent && !self.overrun
    }

    /// How many bytes the parser holds (a partial head, chunk line or trailers).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Feed the next bytes; what they complete is appended to `out` (body bytes of one call
    /// in one [`ResponseEvent::Body`]).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<ResponseEvent>,
    ) -> Result<(), ResponseError> {
        let mut body = Vec::new();
        while !data.is_empty() {
            if let Err(e) = self.step(&mut data, &mut body, out) {
                self.state = State::Failed(e);
                self.buf = Vec::new();
                break;
            }
        }
        if !body.is_empty() {
            out.push(ResponseEvent::Body(body));
        }
        match self.state {
            State::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The connection closed: `Ok` when that ends the response, else why it is incomplete.
    pub fn finish(&mut self) -> Result<(), ResponseError> {
        let end = match self.state {
            State::Done | State::UntilClose => Ok(()),
            State::Head => Err(ResponseError::NoHead),
            State::Failed(e) => Err(e),
            _ => Err(ResponseError::Truncated),
        };
        self.state = match end {
            Ok(()) => State::Done,
            Err(e) => State::Failed(e),
        };
        self.buf = Vec::new();
        end
    }

    /// Consume some of `data` in the current state.
    fn step(
        &mut self,
        data: &mut &[u8],
        body: &mut Vec<u8>,
        out: &mut Vec<ResponseEvent>,
    ) -> Result<(), ResponseError> {
        match self.state {
            State::Failed(e) => Err(e),
            State::Done => {
                self.overrun = true;
                *data = &[];
                Ok(())
            }
            State::Head => self.head(data, out),
            State::UntilClose => {
                body.extend_from_slice(data);
                *data = &[];
                Ok(())
            }
            State::Length(n) | State::ChunkData(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                let (now, rest) = data.split_at(take);
                body.extend_from_slice(now);
                *data = rest;
                let left = n - take as u64;
                self.state = match (self.state, left) {
                    (State::Length(_), 0) => State::Done,
                    (State::Length(_), _) => State::Length(left),
                    (_, 0) => State::ChunkEnd(false),
                    _ => State::ChunkData(left),
                };
                Ok(())
            }
            State::ChunkEnd(cr) => {
                let Some((&b, rest)) = data.split_first() else {
                    return Ok(());
                };
                *data = rest;
                self.state = match (cr, b) {
                    (false, b'\r') => State::ChunkEnd(true),
                    (_, b'\n') => State::ChunkSize,
                    _ => return Err(ResponseError::BadChunkEnd),
                };
                Ok(())
            }
            State::ChunkSize => {
                let limit = self.limits.max_chunk_line_bytes;
                let Some(line) = self.line(data, limit) else {
                    return if self.buf.len() >= limit {
                        Err(ResponseError::ChunkLineTooLong { limit })
                    } else {
                        Ok(())
                    };
                };
                let size = chunk_size(&line)?;
                self.state = if size == 0 {
                    State::Trailers(0)
                } else {
                    State::ChunkData(size)
                };
                Ok(())
            }
            State::Trailers(held) => {
                let limit = self.limits.max_head_bytes;
                let room = limit.saturating_sub(held);
                let Some(line) = self.line(data, room) else {
                    return if self.buf.len() >= room {
                        Err(ResponseError::TrailersTooLarge { limit })
                    } else {
                        Ok(())
                    };
                };
                let blank = line.iter().all(|&b| b == b'\r' || b == b'\n');
                self.state = if blank {
                    State::Done
                } else {
                    State::Trailers(held + line.len())
                };
                Ok(())
            }
        }
    }

    /// Take bytes of `data` into `buf` up to and including the next LF, at most `limit` held:
    /// the whole line once it is there (and `buf` empty again).
    fn line(&mut self, data: &mut &[u8], limit: usize) -> Option<Vec<u8>> {
        let room = limit.saturating_sub(self.buf.len());
        let window = data.get(..room.min(data.len())).unwrap_or_default();
        match window.iter().position(|&b| b == b'\n') {
            Some(at) => {
                self.buf
                    .extend_from_slice(window.get(..=at).unwrap_or_default());
                *data = data.get(at + 1..).unwrap_or_default();
                Some(std::mem::take(&mut self.buf))
            }
            None => {
                self.buf.extend_from_slice(window);
                *data = data.get(window.len()..).unwrap_or_default();
                None
            }
        }
    }

    /// Collect the head; once it is complete, choose the body's framing and go on with the
    /// bytes after it.
    fn head(
        &mut self,
        data: &mut &[u8],
        out: &mut Vec<ResponseEvent>,
    ) -> Result<(), ResponseError> {
        if self.buf.is_empty() {
            // Empty lines before a status line are skipped (RFC 9112 §2.2), unbuffered.
            let lead = data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            *data = data.get(lead..).unwrap_or_default();
            if data.is_empty() {
                return Ok(());
            }
        }
        let limit = self.limits.max_head_bytes;
        let before = self.buf.len();
        let room = limit.saturating_sub(before);
        let take = room.min(data.len());
        self.buf
            .extend_from_slice(data.get(..take).unwrap_or_default());
        // Only a blank line can end a head: parse once one may be there, so the bytes up to
        // it decide alone (the empty lines before a head were dropped above).
        let from = before.saturating_sub(3);
        let tail = self.buf.get(from..).unwrap_or_default();
        let ended =
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
        if !ended {
            *data = data.get(take..).unwrap_or_default();
            return if self.buf.len() >= limit {
                Err(ResponseError::HeadTooLarge { limit })
            } else {
                Ok(())
            };
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let len = match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                *data = data.get(take..).unwrap_or_default();
                return if self.buf.len() >= limit {
                    Err(ResponseError::HeadTooLarge { limit })
                } else {
                    Ok(())
                };
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ResponseError::TooManyHeaders { limit: MAX_HEADERS });
            }
            Err(e) => return Err(ResponseError::BadHead(e)),
        };
        let status = response.code.unwrap_or_default();
        let http11 = response.version == Some(1);
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        // The bytes of `data` past the head are parsed next, in the new state.
        let used = len.saturating_sub(before);
        *data = data.get(used..).unwrap_or_default();
        self.buf = Vec::new();
        if (100..200).contains(&status) && status != 101 {
            return Ok(());
        }
        self.state = self.framing(status, &headers)?;
        let closes = headers.iter().any(|(n, v)| {
            n == "connection" && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        });
        self.persistent = http11 && !closes && status != 101 && self.state != State::UntilClose;
        out.push(ResponseEvent::Head { status, headers });
        Ok(())
    }

    /// How the body of a response with this final head is delimited (RFC 9112 §6.3).
    fn framing(&self, status: u16, headers: &[(String, String)]) -> Result<State, ResponseError> {
        if self.head_request || status == 204 || status == 304 || status == 101 {
            return Ok(State::Done);
        }
        let values = |name: &'static str| {
            headers
                .iter()
                .filter(move |(n, _)| n == name)
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        if let Some(last) = values("transfer-encoding").next_back() {
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                State::ChunkSize
            } else {
                State::UntilClose
            });
        }
        let mut length = None;
        for v in values("content-length") {
            let n = v
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or(ResponseError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::BadContentLength);
            }
            length = Some(n);
        }
        Ok(match length {
            Some(0) => State::Done,
            Some(n) => State::Length(n),
            None => State::UntilClose,
        })
    }
}

/// The size of a chunk-size line (`1a;ext=v\r\n`).
fn chunk_size(line: &[u8]) -> Result<u64, ResponseError> {
    let digits: &[u8] = line
        .split(|&b| matches!(b, b';' | b'\r' | b'\n' | b' ' | b'\t'))
        .next()
        .unwrap_or_default();
    if digits.is_empty() || digits.len() > 16 {
        return Err(ResponseError::BadChunkSize);
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = char::from(b)
            .to_digit(16)
            .ok_or(ResponseError::BadChunkSize)?;
        Ok((n << 4) | u64::from(d))
    })
}

/// Whether a request goes over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

/// Where a request goes, from its absolute URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The host to resolve: a name or an address (an IPv6 literal without its brackets).
    pub host: String,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// The request target: path and query, at least `/`; no fragment.
    pub path_and_query: String,
}

/// Why a request cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The URL is neither `http://` nor `https://`.
    #[error("unsupported URL scheme in {0:?} (http:// or https:// expected)")]
    Scheme(String),
    /// The URL's authority is empty, has user info, or its port is not a number.
    #[error("invalid host or port in URL {0:?}")]
    Authority(String),
    /// The URL or a header has a control character (which would split the request).
    #[error("control character in {0}")]
    ControlCharacter(String),
}

impl Target {
    /// Split an absolute `http(s)://host[:port]/path?query` URL.
    pub fn parse(url: &str) -> Result<Target, RequestError> {
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(RequestError::ControlCharacter("the URL".into()));
        }
        let (scheme, rest, default_port) = if let Some(rest) = strip_prefix_ci(url, "http://") {
            (Scheme::Http, rest, 80)
        } else if let Some(rest) = strip_prefix_ci(url, "https://") {
            (Scheme::Https, rest, 443)
        } else {
            return Err(RequestError::Scheme(url.into()));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let bad = || RequestError::Authority(url.into());
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => default_port,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let tail = tail.split('#').next().unwrap_or_default();
        let path_and_query = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        Ok(Target {
            scheme,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Headers the serializer writes itself; the request's own copies are left out.
const FRAMING_HEADERS: [&str; 4] = ["host", "content-length", "connection", "transfer-encoding"];

/// The bytes of `req` on the wire, for `target` (parsed from `req.url`): the request line,
/// `Host`, `Content-Length` (when there is a body or the method usually has one),
/// `Connection: keep-alive`, the request's headers, then the body. Written into one buffer
/// sized for it up front (the body is most of a model request's bytes).
pub fn encode_request(req: &HttpRequest, target: &Target) -> Result<Vec<u8>, RequestError> {
    let headers = || {
        req.headers
            .iter()
            .filter(|(name, _)| !FRAMING_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)))
    };
    let bad = |b: u8| b.is_ascii_control() && b != b'\t';
    let mut len = HEAD_ROOM + req.method.len() + target.path_and_query.len();
    len += target.authority.len() + req.body.len();
    for (name, value) in headers() {
        if name.bytes().any(|b| bad(b) || b == b':' || b == b' ') || value.bytes().any(bad) {
            return Err(RequestError::ControlCharacter(format!("header {name:?}")));
        }
        len += name.len() + value.len() + 4;
    }
    let bodiless = ["GET", "HEAD", "DELETE", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(req.method));
    let mut head = String::with_capacity(len);
    for part in [
        req.method,
        " ",
        target.path_and_query.as_str(),
        " HTTP/1.1\r\nHost: ",
    ] {
        head.push_str(part);
    }
    head.push_str(&target.authority);
    head.push_str("\r\n");
    if !req.body.is_empty() || !bodiless {
        head.push_str("Content-Length: ");
        push_u64(&mut head, req.body.len() as u64);
        head.push_str("\r\n");
    }
    head.push_str("Connection: keep-alive\r\n");
    for (name, value) in headers() {
        for part in [name.as_ref(), ": ", value.as_str(), "\r\n"] {
            head.push_str(part);
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&req.body);
    Ok(bytes)
}

/// Room for the head's fixed text: the request line's, `Host`, `Content-Length` with its
/// digits, `Connection: keep-alive` and the blank line.
const HEAD_ROOM: usize = 96;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The head and the whole body of `bytes` fed in `parts`, and how it ended.
    fn parse(
        parts: &[&[u8]],
        limits: ResponseLimits,
    ) -> (Vec<ResponseEvent>, Result<(), ResponseError>) {
        let mut p = ResponseParser::new(limits, "POST");
        let mut events = Vec::new();
        for part in parts {
            if let Err(e) = p.feed(part, &mut events) {
                return (merge(events), Err(e));
            }
            assert!(p.buffered_bytes() <= limits.max_head_bytes.max(limits.max_chunk_line_bytes));
        }
        let end = p.finish();
        (merge(events), end)
    }

    /// Body events joined into one, so outcomes compare whatever the cuts.
    fn merge(events: Vec<ResponseEvent>) -> Vec<ResponseEvent> {
        let mut out: Vec<ResponseEvent> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(ResponseEvent::Body(a)), ResponseEvent::Body(b)) => a.extend(b),
                (_, e) => out.push(e),
            }
        }
        out
    }

    fn body_of(events: &[ResponseEvent]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                ResponseEvent::Body(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                      5;name=\"v\"\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-Trailer: 1\r\n\r\nignored";
        let mut p = ResponseParser::new(ResponseLimits::default(), "GET");
        let mut events = Vec::new();
        p.feed(bytes, &mut events).unwrap();
        assert!(p.is_complete());
        assert!(
            matches!(&events[0], ResponseEvent::Head { status: 200, headers }
            if headers[0] == ("content-type".to_owned(), "text/event-stream".to_owned()))
        );
        assert_eq!(body_of(&events), b"hello abcdefghijklmnopqrstuvwxy");
        assert_eq!(p.finish(), Ok(()));
    }

    #[test]
    fn content_length_and_until_close_and_interim_heads() {
        let (ev, end) = parse(
            &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\ncontent-length: 3\r\n\r\nabcdef"],
            ResponseLimits::default(),
        );
        assert_eq!(end, Ok(()));
        assert!(matches!(ev[0], ResponseEvent::Head { status: 429, .. }));
        assert_eq!(body_of(&ev), b"abc");
        let (ev, end) = parse(
            &[b"HTTP/1.0 200 OK\n\nto the end", b" of it"],
            ResponseLimits::default(),
        );
        assert_eq!((body_of(&ev), end), (b"to the end of it".to_vec(), Ok(())));
        let (_, end) = parse(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"],
            ResponseLimits::default(),
        );
        assert_eq!(end, Err(ResponseError::Truncated));
        let (_, end) = parse(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"],
            ResponseLimits::default(),
        );
        assert_eq!(end, Err(ResponseError::BadContentLength));
        let (_, end) = parse(&[b"HTTP/1.1 200"], ResponseLimits::default());
        assert_eq!(end, Err(ResponseError::NoHead));
    }

    #[test]
    fn limits_and_malformed_input_are_typed_errors() {
        let small = ResponseLimits {
            max_head_bytes: 64,
            max_chunk_line_bytes: 8,
        };
        let (_, end) = parse(
            &[b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"],
            small,
        );
        assert_eq!(end, Err(ResponseError::HeadTooLarge { limit: 64 }));
        let (_, end) = parse(
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"1;aaaaaaaaa\r\n",
            ],
            small,
        );
        assert_eq!(end, Err(ResponseError::ChunkLineTooLong { limit: 8 }));
        let (_, end) = parse(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            small,
        );
        assert_eq!(end, Err(ResponseError::BadChunkSize));
        let (_, end) = parse(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab"],
            small,
        );
        assert_eq!(end, Err(ResponseError::BadChunkEnd));
        let (_, end) = parse(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"], small);
        assert_eq!(end, Err(ResponseError::TrailersTooLarge { limit: 64 }));
        let (_, end) = parse(&[b"SMTP 220 hi\r\n\r\n"], small);
        assert!(matches!(end, Err(ResponseError::BadHead(_))), "{end:?}");
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"a: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        let (_, end) = parse(&[&many], ResponseLimits::default());
        assert_eq!(
            end,
            Err(ResponseError::TooManyHeaders { limit: MAX_HEADERS })
        );
    }

    #[test]
    fn only_a_response_ended_by_its_framing_leaves_the_connection_reusable() {
        let reusable = |bytes: &[u8], method: &str| {
            let mut p = ResponseParser::new(ResponseLimits::default(), method);
            let _ = p.feed(bytes, &mut Vec::new());
            p.reusable()
        };
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(reusable(length, "POST"));
        assert!(!reusable(&length[..length.len() - 1], "POST"), "truncated");
        assert!(
            !reusable(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                "POST"
            ),
            "bytes after the response"
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert!(reusable(chunked, "POST"));
        assert!(
            !reusable(&chunked[..chunked.len() - 2], "POST"),
            "no last CRLF"
        );
        assert!(reusable(b"HTTP/1.1 204 No Content\r\n\r\n", "POST"));
        assert!(reusable(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            "HEAD"
        ));
        assert!(
            !reusable(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
                "POST"
            ),
            "the server closes"
        );
        assert!(
            !reusable(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "POST"),
            "HTTP/1.0"
        );
        let mut until_close = ResponseParser::new(ResponseLimits::default(), "POST");
        until_close
            .feed(b"HTTP/1.1 200 OK\r\n\r\nto the end", &mut Vec::new())
            .unwrap();
        assert_eq!(until_close.finish(), Ok(()));
        assert!(!until_close.reusable(), "a body read until close");
        assert!(
            !reusable(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "POST"),
            "an error"
        );
    }

    #[test]
    fn a_head_request_and_204_have_no_body() {
        let mut p = ResponseParser::new(ResponseLimits::default(), "HEAD");
        let mut ev = Vec::new();
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", &mut ev)
            .unwrap();
        assert!(p.is_complete());
        let (ev, end) = parse(
            &[b"HTTP/1.1 204 No Content\r\n\r\nxyz"],
            ResponseLimits::default(),
        );
        assert_eq!((body_of(&ev), end), (Vec::new(), Ok(())));
    }

    #[test]
    fn requests_carry_host_length_and_keep_alive() {
        let req = HttpRequest {
            method: "POST",
            url: "http://127.0.0.1:8000/v1/chat/completions?x=1#frag".into(),
            headers: vec![
                ("Authorization".into(), "Bearer k".into()),
                ("Connection".into(), "keep-alive".into()),
            ],
            body: b"{}".to_vec(),
            idempotent: false,
            dialing: Default::default(),
        };
        let target = Target::parse(&req.url).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 8000));
        let wire = String::from_utf8(encode_request(&req, &target).unwrap()).unwrap();
        assert_eq!(
            wire,
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 2\r\n\
             Connection: keep-alive\r\nAuthorization: Bearer k\r\n\r\n{}"
        );
        let v6 = Target::parse("https://[::1]?q").unwrap();
        assert_eq!(
            (
                v6.scheme,
                v6.host.as_str(),
                v6.port,
                v6.path_and_query.as_str(),
                v6.authority.as_str()
            ),
            (Scheme::Https, "::1", 443, "/?q", "[::1]")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://u@h/",
            "http://h:x/",
            "http://h/\r\nX: y",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let injected = HttpRequest {
            headers: vec![("X-A".into(), "v\r\nEvil: 1".into())],
            ..req
        };
        assert!(matches!(
            encode_request(&injected, &target),
            Err(RequestError::ControlCharacter(_))
        ));
    }

    /// The head as `encode_request` wrote it with `format!`, before it sized its buffer: the
    /// reference of `requests_are_the_bytes_format_wrote`.
    fn formatted(req: &HttpRequest, target: &Target) -> Result<Vec<u8>, RequestError> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            req.method, target.path_and_query, target.authority
        );
        let bodiless = ["GET", "HEAD", "DELETE", "OPTIONS"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(req.method));
        if !req.body.is_empty() || !bodiless {
            head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
        }
        head.push_str("Connection: keep-alive\r\n");
        for (name, value) in &req.headers {
            if FRAMING_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                continue;
            }
            let bad = |b: u8| b.is_ascii_control() && b != b'\t';
            if name.bytes().any(|b| bad(b) || b == b':' || b == b' ') || value.bytes().any(bad) {
                return Err(RequestError::ControlCharacter(format!("header {name:?}")));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&req.body);
        Ok(bytes)
    }

    proptest! {
        /// Requests are byte for byte what `format!` wrote, and refused alike.
        #[test]
        fn requests_are_the_bytes_format_wrote(
            method in proptest::sample::select(vec!["GET", "get", "POST", "DELETE", "PUT", "HEAD"]),
            url in proptest::sample::select(vec![
                "http://127.0.0.1:8000/v1/chat/completions?x=1",
                "https://api.telegram.org/bot1:a/getUpdates",
                "http://[::1]:9",
            ]),
            headers in proptest::collection::vec(
                (
                    prop_oneof![
                        "[A-Za-z-]{1,12}",
                        proptest::sample::select(vec!["Host", "content-length", "CONNECTION", "Transfer-Encoding", "X A", "X:A"]).prop_map(String::from),
                    ],
                    prop_oneof![4 => "[ -~\t]{0,40}", 1 => "[a\r\n\u{7f}é]{0,4}"],
                ),
                0..5,
            ),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let req = HttpRequest {
                method,
                url: url.into(),
                headers: headers.into_iter().map(|(n, v)| (n.into(), v)).collect(),
                body,
                idempotent: false,
                dialing: Default::default(),
            };
            let target = Target::parse(&req.url).unwrap();
            prop_assert_eq!(encode_request(&req, &target), formatted(&req, &target));
        }
    }

    /// A body in chunked framing, with the given chunk sizes (the rest in a last chunk).
    fn chunked(body: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        for &s in sizes.iter().chain([&body.len()]) {
            let (now, later) = rest.split_at(s.min(rest.len()));
            if !now.is_empty() {
                out.extend(format!("{:X}{}\r\n", now.len(), if ext { ";e=1" } else { "" }).bytes());
                out.extend_from_slice(now);
                out.extend_from_slice(b"\r\n");
            }
            rest = later;
        }
        out.extend_from_slice(b"0\r\nT: v\r\n\r\n");
        out
    }

    proptest! {
        /// However the bytes are cut, the events joined and the outcome are the same.
        #[test]
        fn chunking_does_not_change_the_outcome(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..40, 0..8),
            framing in 0u8..3,
            ext in any::<bool>(),
            truncate in proptest::option::of(0usize..400),
            cuts in proptest::collection::vec(any::<u16>(), 0..12),
        ) {
            let mut bytes = b"HTTP/1.1 200 OK\r\nX-A: b\r\n".to_vec();
            match framing {
                0 => {
                    bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    bytes.extend(chunked(&body, &sizes, ext));
                }
                1 => {
                    bytes.extend(format!("Content-Length: {}\r\n\r\n", body.len()).bytes());
                    bytes.extend_from_slice(&body);
                }
                _ => {
                    bytes.extend_from_slice(b"\r\n");
                    bytes.extend_from_slice(&body);
                }
            }
            if let Some(t) = truncate {
                bytes.truncate(t);
            }
            let parts = crate::fuzzing::model_stream::split(&bytes, &cuts.iter().map(|&c| usize::from(c)).collect::<Vec<_>>());
            let whole = parse(&[&bytes], ResponseLimits::default());
            let cut = parse(&parts, ResponseLimits::default());
            prop_assert_eq!(&cut, &whole);
            if truncate.is_none() {
                prop_assert_eq!(whole.1, Ok(()));
                prop_assert_eq!(body_of(&whole.0), body);
            }
        }
    }
}
