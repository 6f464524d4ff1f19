//! Plain HTTP requests that carry a body (`POST`) on the gateway's port: the table of routes
//! that take one (by path, built from the configuration), the bounded read of the body, and
//! the hand-off to the route's handler, which answers when it is ready (after a store commit,
//! say) with `Gateway::answer_post`.
//!
//! The body is bounded before a byte of it is kept: `Content-Length` is required (411 without
//! it), at most [`Limits::max_http_body_bytes`](crate::Limits::max_http_body_bytes) (413 over
//! it), a `Transfer-Encoding` (chunked) is refused with 411, and a body that has not arrived
//! [`Limits::http_body_timeout`](crate::Limits::http_body_timeout) after its head is cut with
//! a 408. Bytes past the body are not read: one request per connection.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::channels::slack::config::webhooks as slack_webhooks;
use crate::config::Config;
use crate::conn::{ConnId, State};
use crate::gateway::{Gateway, Timer};
use crate::http::{self, PlainRequest};
use crate::log::Level;

/// What a route that takes a body does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PostRoute {
    /// Slack's Events API in HTTP mode, for this account.
    SlackEvents {
        /// The Slack account id.
        account: String,
    },
    /// `POST /tools/invoke`: one tool run for an operator (bearer auth before the body).
    ToolsInvoke,
}

impl PostRoute {
    /// The largest body it takes.
    fn max_body(&self, limits: &crate::Limits) -> usize {
        match self {
            PostRoute::SlackEvents { .. } => limits.max_http_body_bytes,
            PostRoute::ToolsInvoke => limits.tools_invoke_max_body_bytes,
        }
    }

    /// The content type and body of a refusal of its body (413, 408, 411): plain text, or
    /// for `/tools/invoke` upstream's JSON error.
    fn body_refusal(&self, message: &str) -> (&'static str, Vec<u8>) {
        match self {
            PostRoute::SlackEvents { .. } => (TEXT, message.as_bytes().to_vec()),
            PostRoute::ToolsInvoke => {
                let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}});
                (JSON, body.to_string().into_bytes())
            }
        }
    }
}

/// The routes that take a body, by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PostRoutes {
    by_path: BTreeMap<String, PostRoute>,
}

impl PostRoutes {
    /// The routes the configuration asks for. A path claimed twice keeps its first owner (as
    /// upstream's Slack route registry does).
    pub(crate) fn from_config(config: &Config) -> Self {
        let mut by_path = BTreeMap::new();
        by_path.insert(
            crate::tools::http_invoke::PATH.to_string(),
            PostRoute::ToolsInvoke,
        );
        for (path, account) in slack_webhooks(&config.channels.slack) {
            by_path
                .entry(path)
                .or_insert(PostRoute::SlackEvents { account });
        }
        PostRoutes { by_path }
    }

    /// The route at `path`, if one takes a body there.
    pub(crate) fn get(&self, path: &str) -> Option<&PostRoute> {
        self.by_path.get(path)
    }
}

/// Why a request's body is refused before it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// No `Content-Length`.
    #[error("Content-Length required")]
    LengthRequired,
    /// A `Transfer-Encoding` (chunked) body: only a `Content-Length` is accepted.
    #[error("chunked bodies are not accepted; send a Content-Length")]
    Chunked,
    /// A `Content-Length` that is not one decimal number.
    #[error("malformed Content-Length")]
    BadLength,
    /// A `Content-Length` over the limit.
    #[error("Payload Too Large")]
    TooLarge,
}

impl BodyError {
    /// The status that answers it.
    pub fn status(self) -> u16 {
        match self {
            BodyError::LengthRequired | BodyError::Chunked => 411,
            BodyError::BadLength => 400,
            BodyError::TooLarge => 413,
        }
    }
}

/// The length of the body a `POST` head announces, if it is at most `max` bytes.
pub fn body_length(req: &PlainRequest, max: usize) -> Result<usize, BodyError> {
    if req.header_values("transfer-encoding").next().is_some() {
        return Err(BodyError::Chunked);
    }
    let mut values = req.header_values("content-length");
    let first = values.next().ok_or(BodyError::LengthRequired)?;
    if values.next().is_some() {
        return Err(BodyError::BadLength);
    }
    let digits = first.trim();
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BodyError::BadLength);
    }
    let n: u64 = digits.parse().map_err(|_| BodyError::BadLength)?;
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(BodyError::TooLarge),
    }
}

/// A body being read: the request, its route and the bytes so far.
#[derive(Debug)]
pub(crate) struct BodyRead {
    pub(crate) req: PlainRequest,
    pub(crate) route: PostRoute,
    want: usize,
    pub(crate) body: Vec<u8>,
}

impl BodyRead {
    /// Keep the bytes that belong to the body; whether it is now whole.
    fn push(&mut self, data: &[u8]) -> bool {
        let room = self.want.saturating_sub(self.body.len());
        self.body
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        self.body.len() >= self.want
    }
}

impl Gateway {
    /// The route taking a body at `path`, if any.
    pub(crate) fn post_route(&self, path: &str) -> Option<PostRoute> {
        self.post_routes.get(path).cloned()
    }

    /// A head for a route that takes a body: check the method and the length, then read the
    /// body (`rest` is what came after the head).
    pub(crate) fn on_post_head(
        &mut self,
        now: Instant,
        id: ConnId,
        req: PlainRequest,
        route: PostRoute,
        rest: &[u8],
    ) {
        self.log(
            now,
            Level::Debug,
            Some(id),
            format!("http {} {}", req.method, req.path),
        );
        if req.method != "POST" {
            self.answer_post(now, id, 405, Some(TEXT), b"Method Not Allowed");
            return;
        }
        if self.is_draining() {
            self.answer_post(now, id, 503, Some(TEXT), b"Service Unavailable");
            return;
        }
        if route == PostRoute::ToolsInvoke
            && let Err(refusal) = self.http_operator_auth(now, id, &req)
        {
            self.log(
                now,
                Level::Info,
                Some(id),
                format!("refused POST {}: {}", req.path, refusal.status),
            );
            self.transmit(
                id,
                http::answer_with(
                    refusal.status,
                    Some(JSON),
                    &refusal.headers,
                    refusal.body.to_string().as_bytes(),
                ),
            );
            self.forget(now, id);
            return;
        }
        let want = match body_length(&req, route.max_body(&self.config.limits)) {
            Ok(n) => n,
            Err(e) => {
                self.log(
                    now,
                    Level::Info,
                    Some(id),
                    format!("refused POST {}: {e}", req.path),
                );
                let (kind, body) = route.body_refusal(&e.to_string());
                self.answer_post(now, id, e.status(), Some(kind), &body);
                return;
            }
        };
        let read = BodyRead {
            req,
            route,
            want,
            body: Vec::with_capacity(want.min(64 * 1024)),
        };
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::Body(Box::new(read));
        }
        self.schedule(
            now + self.config.limits.http_body_timeout,
            Timer::HttpBody(id),
        );
        self.read_body(now, id, rest);
    }

    /// More bytes of a body.
    pub(crate) fn read_body(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let State::Body(read) = &mut c.state else {
            return;
        };
        if !read.push(data) {
            return;
        }
        let State::Body(read) = std::mem::replace(&mut c.state, State::Answering) else {
            return;
        };
        let BodyRead {
            req, route, body, ..
        } = *read;
        // A route with a body (a channel's webhook, say) may change what `health` reports.
        self.health_cache.invalidate();
        match route {
            PostRoute::SlackEvents { account } => {
                self.slack_http_request(now, id, &account, &req, &body)
            }
            PostRoute::ToolsInvoke => self.tools_invoke_http(now, id, &body),
        }
    }

    /// The body timer of `id` fired: a body still arriving is cut with a 408.
    pub(crate) fn body_expired(&mut self, now: Instant, id: ConnId) {
        let Some(State::Body(read)) = self.conns.get(&id).map(|c| &c.state) else {
            return;
        };
        let (kind, body) = read.route.body_refusal("Request body timeout");
        self.log(now, Level::Info, Some(id), "request body timeout".into());
        self.answer_post(now, id, 408, Some(kind), &body);
    }

    /// Answer a request with a body (or refused before it) and close the connection.
    pub(crate) fn answer_post(
        &mut self,
        now: Instant,
        id: ConnId,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        self.transmit(id, http::answer(status, content_type, body));
        self.forget(now, id);
    }
}

/// The content type of the plain-text refusals.
const TEXT: &str = "text/plain; charset=utf-8";
/// The content type of JSON answers.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> PlainRequest {
        PlainRequest {
            method: "POST".into(),
            path: "/x".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn length_is_required_bounded_and_single() {
        assert_eq!(body_length(&post(&[]), 10), Err(BodyError::LengthRequired));
        assert_eq!(body_length(&post(&[("content-length", "10")]), 10), Ok(10));
        assert_eq!(
            body_length(&post(&[("content-length", "11")]), 10),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            body_length(&post(&[("content-length", "99999999999999999999")]), 10),
            Err(BodyError::BadLength)
        );
        assert_eq!(
            body_length(&post(&[("content-length", "+1")]), 10),
            Err(BodyError::BadLength)
        );
        assert_eq!(
            body_length(
                &post(&[("content-length", "1"), ("content-length", "1")]),
                10
            ),
            Err(BodyError::BadLength)
        );
        assert_eq!(
            body_length(
                &post(&[("content-length", "1"), ("transfer-encoding", "chunked")]),
                10
            ),
            Err(BodyError::Chunked)
        );
        assert_eq!(BodyError::TooLarge.status(), 413);
        assert_eq!(BodyError::Chunked.status(), 411);
    }

    #[test]
    fn body_keeps_only_its_bytes() {
        let mut r = BodyRead {
            req: post(&[]),
            route: PostRoute::SlackEvents {
                account: "default".into(),
            },
            want: 4,
            body: Vec::new(),
        };
        assert!(!r.push(b"ab"));
        assert!(r.push(b"cdef"));
        assert_eq!(r.body, b"abcd");
    }
}
