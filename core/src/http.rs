//! The HTTP side of the port: the upgrade request head (capped), and the plain routes
//! (`/health`, `/ready`, `/startup` and a JSON 404) answered on the same socket.

use serde_json::json;

use crate::upgrade_request::{self, UpgradeKey};

/// What a complete request head asks for.
#[derive(Debug)]
pub enum Head {
    /// A WebSocket upgrade.
    Upgrade(Box<Upgrade>),
    /// A plain HTTP request.
    Plain(Box<PlainRequest>),
}

/// A plain HTTP request: its method, its target and the headers the gateway decides on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlainRequest {
    /// Method (`GET`, `HEAD`, …).
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query without its `?`, if the target had one.
    pub query: Option<String>,
    /// `Host`.
    pub host: Option<String>,
    /// `Accept`.
    pub accept: Option<String>,
    /// `Accept-Encoding`.
    pub accept_encoding: Option<String>,
    /// `If-None-Match`.
    pub if_none_match: Option<String>,
    /// `Range`.
    pub range: Option<String>,
    /// `If-Range`.
    pub if_range: Option<String>,
    /// `Authorization` (the Control UI's config is read with the gateway's secret).
    pub authorization: Option<String>,
    /// Every header (names lowercase, values as sent), for a `POST` only: the routes that
    /// take a body read their own headers (a signature, an authorization) from here.
    pub headers: Vec<(String, String)>,
}

impl PlainRequest {
    /// The values of every header named `name` (lowercase), in order (a `POST`'s only).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The one value of header `name` (lowercase), if it was sent exactly once.
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let mut values = self.header_values(name);
        let first = values.next()?;
        values.next().is_none().then_some(first)
    }
}

/// A parsed upgrade request and the headers the gateway decides on.
#[derive(Debug)]
pub struct Upgrade {
    /// Its key, for the 101 answer.
    pub key: UpgradeKey,
    /// Request path.
    pub path: String,
    /// `Host`, if sent.
    pub host: Option<String>,
    /// `Origin`, if sent.
    pub origin: Option<String>,
    /// `Forwarded`.
    pub forwarded: Option<String>,
    /// `X-Forwarded-For`.
    pub x_forwarded_for: Option<String>,
    /// `X-Real-IP`.
    pub x_real_ip: Option<String>,
    /// `x-openclaw-scopes`: the scopes this connection may hold at most.
    pub scope_cap: Option<String>,
}

/// Why a request head is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head passed the size cap before it ended.
    #[error("request head too large")]
    TooLarge,
    /// Not HTTP/1.x.
    #[error("malformed request head")]
    Malformed,
    /// An upgrade request tungstenite will not accept (bad key or version).
    #[error("invalid websocket upgrade")]
    BadUpgrade,
}

/// The most header lines a request head may have (more answer 431, as a head over the size
/// cap does).
const MAX_HEADERS: usize = 64;

/// Try to parse a request head from the bytes received so far. `Ok(None)` means more bytes are
/// needed; on success returns the head and its length (bytes after it belong to the WebSocket).
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Head, usize)>, HeadError> {
    // Left uninitialised: the parser writes the headers it finds (64 empty ones would be
    // written first otherwise, on every head).
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > max_head {
        return Err(HeadError::TooLarge);
    }
    let method = req.method.unwrap_or("");
    let raw_path = req.path.unwrap_or("/");
    let (path, query) = match raw_path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (raw_path.to_string(), None),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| text(h.value))
    };
    let seen = upgrade_request::UpgradeHeaders::of(req.headers);
    if !seen.wants_websocket() || method != "GET" {
        let headers = if method == "POST" {
            req.headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect()
        } else {
            Vec::new()
        };
        let plain = PlainRequest {
            method: method.to_string(),
            path,
            query,
            host: header("host"),
            accept: header("accept"),
            accept_encoding: header("accept-encoding"),
            if_none_match: header("if-none-match"),
            authorization: header("authorization"),
            range: header("range"),
            if_range: header("if-range"),
            headers,
        };
        return Ok(Some((Head::Plain(Box::new(plain)), len)));
    }
    let key = upgrade_request::check(&req, &seen).ok_or(HeadError::BadUpgrade)?;
    let up = Upgrade {
        key,
        path,
        host: seen.host.and_then(text),
        origin: seen.origin.and_then(text),
        forwarded: seen.forwarded.and_then(text),
        x_forwarded_for: seen.x_forwarded_for.and_then(text),
        x_real_ip: seen.x_real_ip.and_then(text),
        scope_cap: seen.scope_cap.and_then(text),
    };
    Ok(Some((Head::Upgrade(Box::new(up)), len)))
}

/// A header value as text, if it is UTF-8.
fn text(value: &[u8]) -> Option<String> {
    std::str::from_utf8(value).ok().map(str::to_string)
}

/// The gateway's readiness for the plain probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepting connections.
    Ready,
    /// Shutting down.
    Draining,
}

/// Whether `path` is one of the probes (`/health`, `/ready`, `/startup` and their `z` forms).
pub fn is_probe(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/healthz" | "/ready" | "/readyz" | "/startup" | "/startupz"
    )
}

/// Answer a plain HTTP request (`/health`, `/ready`, `/startup` and their `z` forms).
pub fn plain_response(
    method: &str,
    path: &str,
    phase: Phase,
    uptime_ms: u64,
    version: &str,
) -> Vec<u8> {
    if method != "GET" && method != "HEAD" {
        return response(
            405,
            "Method Not Allowed",
            &json!({"error": {"message": "Method Not Allowed", "type": "method_not_allowed"}})
                .to_string(),
            method == "HEAD",
        );
    }
    let head_only = method == "HEAD";
    let ready = phase == Phase::Ready;
    let (status, body) = match path {
        "/health" | "/healthz" => (200, json!({"ok": true, "status": "live"})),
        "/ready" | "/readyz" if ready => (
            200,
            json!({"ready": true, "failing": [], "uptimeMs": uptime_ms}),
        ),
        "/ready" | "/readyz" => (
            503,
            json!({"ready": false, "failing": ["draining"], "uptimeMs": uptime_ms}),
        ),
        "/startup" | "/startupz" if ready => (
            200,
            json!({"ok": true, "status": "started", "version": version, "uptimeMs": uptime_ms}),
        ),
        "/startup" | "/startupz" => (
            503,
            json!({"ok": false, "status": "draining", "version": version, "uptimeMs": uptime_ms}),
        ),
        _ => (
            404,
            json!({"error": {"message": "Not Found", "type": "not_found"}}),
        ),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    response(status, reason, &body.to_string(), head_only)
}

/// A `403` refusing forwarding headers from an untrusted peer.
pub fn proxy_refused() -> Vec<u8> {
    let body = json!({"error": {"type": "forbidden", "code": "proxy_attribution_required",
        "message": "forwarding headers from an untrusted proxy; add the proxy's address to gateway.trustedProxies"}});
    response(403, "Forbidden", &body.to_string(), false)
}

/// A `503` refusing another unauthenticated socket from the same address.
pub fn too_many_preauth() -> Vec<u8> {
    text_response(
        503,
        "Service Unavailable",
        "Too many unauthenticated sockets",
    )
}

/// A `503` refusing a socket over `gateway.maxConnections`.
pub fn too_many_connections() -> Vec<u8> {
    text_response(503, "Service Unavailable", "Too many connections")
}

/// A `400` for a malformed head, or `431` for one over the cap.
pub fn bad_head(err: HeadError) -> Vec<u8> {
    match err {
        HeadError::TooLarge => text_response(
            431,
            "Request Header Fields Too Large",
            "Request header too large",
        ),
        HeadError::Malformed | HeadError::BadUpgrade => {
            text_response(400, "Bad Request", "Bad Request")
        }
    }
}

/// The reason phrase of the statuses the gateway answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A whole response that closes the connection: `status`, then `body` with its
/// `Content-Type` (no type for an empty body).
pub fn answer(status: u16, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    answer_with(status, content_type, &[], body)
}

/// [`answer`] with `headers` (`Retry-After`, say) after the `Content-Type`.
pub fn answer_with(
    status: u16,
    content_type: Option<&str>,
    headers: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    if let Some(t) = content_type {
        out.push_str(&format!("Content-Type: {t}\r\n"));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn text_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{body}",
        body.len(),
        SECURITY_HEADERS
    )
    .into_bytes()
}

const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nCache-Control: no-store\r\n";

fn response(status: u16, reason: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        body.len(),
        SECURITY_HEADERS
    );
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_head_waits_and_oversized_head_fails() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n", 8192),
            Ok(None)
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(
            parse_head(big.as_bytes(), 8192).unwrap_err(),
            HeadError::TooLarge
        );
        let lines = |n: usize| {
            let mut h = "GET / HTTP/1.1\r\n".to_string();
            for i in 0..n {
                h.push_str(&format!("X-{i}: v\r\n"));
            }
            h + "\r\n"
        };
        assert!(matches!(
            parse_head(lines(MAX_HEADERS).as_bytes(), 8192),
            Ok(Some(_))
        ));
        assert_eq!(
            parse_head(lines(MAX_HEADERS + 1).as_bytes(), 8192).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn plain_routes() {
        let r = String::from_utf8(plain_response("GET", "/healthz", Phase::Ready, 5, "v")).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK"));
        assert!(r.ends_with(r#"{"ok":true,"status":"live"}"#));
        assert!(r.contains("X-Content-Type-Options: nosniff"));
        let r =
            String::from_utf8(plain_response("GET", "/ready", Phase::Draining, 5, "v")).unwrap();
        assert!(r.starts_with("HTTP/1.1 503"));
        let r = String::from_utf8(plain_response("HEAD", "/nope", Phase::Ready, 5, "v")).unwrap();
        assert!(r.starts_with("HTTP/1.1 404") && r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn upgrade_is_recognised() {
        let req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost:3000\r\n\r\nrest";
        let (head, len) = parse_head(req, 8192).unwrap().unwrap();
        assert_eq!(&req[len..], b"rest");
        let Head::Upgrade(up) = head else {
            panic!("not an upgrade")
        };
        assert_eq!(up.origin.as_deref(), Some("http://localhost:3000"));
        let resp = String::from_utf8(upgrade_request::switching_protocols(&up.key)).unwrap();
        assert!(resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }
}
