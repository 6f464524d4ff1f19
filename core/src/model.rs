//! The model backend's wire formats, sans-IO: what the gateway sends a model provider and how
//! it reads the answer. A host worker performs the HTTP exchange ([`HttpRequest`] out, status
//! and body bytes back); these modules build the request and decode the reply, so the fuzzers
//! and the in-memory simulations reach every byte of it.
//!
//! - [`http1`]: HTTP/1.1 for the worker: the request's bytes, and a response parser that
//!   removes the body's transfer framing, in any chunking;
//! - [`sse`]: an incremental Server-Sent Events decoder with bounded buffering;
//! - [`openai`]: OpenAI-compatible `POST {baseUrl}/chat/completions` with `stream: true`
//!   (`api: "openai-completions"`): the request body, the streamed chunks as typed events, and
//!   non-2xx answers classified as upstream's `errorKind` does;
//! - [`anthropic`]: Anthropic's `POST {baseUrl}/v1/messages` (`api: "anthropic-messages"`),
//!   its event stream decoded to the same events;
//! - [`stream`]: what both streams share (events, completion, SSE framing, tool calls);
//! - [`backend`]: the one interface the agent uses: a route's request, its decoder, and its
//!   failures worded with the config key that fixes them.

pub mod anthropic;
pub mod backend;
pub mod http1;
pub(crate) mod json_text;
pub mod openai;
pub mod sse;
pub mod stream;

use std::borrow::Cow;

/// An HTTP request for a host worker to perform. Its `Debug` output hides header values that
/// carry credentials (`Authorization`, `api-key`, `x-api-key`), so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, e.g. `"POST"`.
    pub method: &'static str,
    /// The absolute URL, e.g. `http://127.0.0.1:8000/v1/chat/completions`.
    pub url: String,
    /// Header names and values, in order (names are fixed words or come from the config).
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// Whether sending it twice has the effect of sending it once (a read such as a `GET` or
    /// Telegram's `getUpdates`): a worker may send it again on a fresh connection when a
    /// reused one fails after the request was written but before any answer. A request that
    /// is not (a `sendMessage`, a model turn) is sent again only when writing it failed, so
    /// the server cannot have received all of it.
    pub idempotent: bool,
    /// Which of the host's addresses its connection tries, and how.
    pub dialing: Dialing,
}

/// Which of the addresses a request's host resolves to a fresh connection tries, as Node's
/// `net.connect` options `autoSelectFamily` and `autoSelectFamilyAttemptTimeout` and
/// `dns.lookup`'s `order` decide it (upstream sets them for Telegram:
/// `channels.telegram.network`). The default races every address in the resolver's order,
/// the next one the host's attempt delay (250 ms) after the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialing {
    /// `autoSelectFamily`: race the addresses, IPv6 and IPv4 interleaved (`true`), or try
    /// the first one only, what `dns.lookup` without `all` answers (`false`).
    pub race: bool,
    /// `dnsResultOrder: "ipv4first"`: IPv4 addresses before IPv6 ones, each family in the
    /// resolver's order (`false`: the resolver's order, Node's `verbatim`).
    pub ipv4_first: bool,
    /// `family: 4`: only the host's IPv4 addresses are tried.
    pub ipv4_only: bool,
    /// `autoSelectFamilyAttemptTimeout`: how long an attempt goes without connecting before
    /// the next address is tried beside it, when not the host's default.
    pub attempt_delay: Option<std::time::Duration>,
    /// Addresses that stand for one host name instead of what it resolves to (upstream's
    /// pinned lookup): a connection to that name goes to them, unlooked-up, while its TLS
    /// server name, certificate check and `Host` stay the name's.
    pub pinned: Option<Pinned>,
}

/// A host name's pinned addresses (see [`Dialing::pinned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The host name (lowercase, no trailing dot).
    pub host: &'static str,
    /// Its addresses, in the order to try them.
    pub addrs: &'static [core::net::IpAddr],
}

impl Dialing {
    /// The addresses pinned for `host` (any case, a trailing dot ignored), if it is the
    /// pinned name.
    pub fn pinned_for(&self, host: &str) -> Option<&'static [core::net::IpAddr]> {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.pinned
            .filter(|p| p.host.eq_ignore_ascii_case(host))
            .map(|p| p.addrs)
    }
}

impl Default for Dialing {
    fn default() -> Self {
        Dialing {
            race: true,
            ipv4_first: false,
            ipv4_only: false,
            attempt_delay: None,
            pinned: None,
        }
    }
}

impl HttpRequest {
    /// The value of the header `name` (ASCII case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_credential_header(name: &str) -> bool {
    ["authorization", "api-key", "x-api-key"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// `url` with a Bot API token (`/bot<token>/`) replaced, so a URL can be logged.
pub fn redacted_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(at) = url.find("/bot") else {
        return url.into();
    };
    let rest = url.get(at + 4..).unwrap_or_default();
    let end = rest.find('/').unwrap_or(rest.len());
    if end == 0 {
        return url.into();
    }
    let tail = rest.get(end..).unwrap_or_default();
    format!("{}/bot<redacted>{tail}", url.get(..at).unwrap_or_default()).into()
}

impl core::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if is_credential_header(n) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_ref(), v)
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let r = HttpRequest {
            method: "POST",
            url: "http://x/v1".into(),
            headers: vec![("Authorization".into(), "Bearer sk-secret".into())],
            body: b"{}".to_vec(),
            idempotent: false,
            dialing: Default::default(),
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert_eq!(r.header("authorization"), Some("Bearer sk-secret"));
    }
}
