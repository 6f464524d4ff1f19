//! Slack's Web API as data: the calls clawgate makes (`auth.test`, `apps.connections.open`,
//! `chat.postMessage`, `users.info`) as [`HttpRequest`]s against the account's API base
//! (`https://slack.com/api/`, or `SLACK_API_URL` as upstream's plugin reads it), and their
//! answers decoded: the `{ok, error}` envelope, `Retry-After` on a 429, the bot's identity and
//! the Socket Mode URL. The decoders take arbitrary bytes.

use serde_json::{Value, json};

use crate::model::HttpRequest;

/// The Web API's base when `SLACK_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://slack.com/api/";
/// The environment variable upstream's plugin reads the Web API base from.
pub const API_URL_ENV: &str = "SLACK_API_URL";
/// Seconds to wait on a 429 without a usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// `error` values that mean the token is not (or no longer) good: the account stops.
const AUTH_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
];

/// The Web API method `method` called with `token` and a JSON body.
pub fn request(base: &str, token: &str, method: &str, body: &Value) -> HttpRequest {
    let json = "application/json; charset=utf-8";
    call(base, token, method, json, body.to_string().into_bytes())
}

fn call(base: &str, token: &str, method: &str, content_type: &str, body: Vec<u8>) -> HttpRequest {
    let sep = if base.ends_with('/') { "" } else { "/" };
    HttpRequest {
        method: "POST",
        url: format!("{base}{sep}{method}"),
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("Authorization".into(), format!("Bearer {token}")),
        ],
        body,
        // Conservative: only a send's failed write is sent again (see `HttpRequest`).
        idempotent: false,
        dialing: Default::default(),
    }
}

/// The Web API method `method` called with `token` and form arguments (how Slack's client
/// sends read methods such as `users.info`, which take no JSON body).
pub fn form_request(base: &str, token: &str, method: &str, args: &[(&str, &str)]) -> HttpRequest {
    let body: Vec<String> = args
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    let form = "application/x-www-form-urlencoded";
    call(base, token, method, form, body.join("&").into_bytes())
}

/// `s` as an `application/x-www-form-urlencoded` value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `chat.postMessage` body for one mrkdwn message, in the thread `thread_ts` if any.
pub fn post_message(channel: &str, text: &str, thread_ts: Option<&str>) -> Value {
    let mut body = json!({"channel": channel, "text": text, "mrkdwn": true});
    if let (Some(t), Some(o)) = (thread_ts, body.as_object_mut()) {
        o.insert("thread_ts".into(), json!(t));
    }
    body
}

/// Why a call failed, as Slack (or the transport) said.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `ok: false`: Slack's `error`.
    #[error("{0}")]
    Refused(String),
    /// HTTP 429: wait this many seconds (`Retry-After`).
    #[error("rate limited (retry after {0} s)")]
    RateLimited(u64),
    /// Another non-2xx status, or a body that is not the Web API's envelope.
    #[error("unreadable Web API answer (HTTP {status}): {reason}")]
    Unreadable {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// Whether the token is bad: the account stops instead of retrying.
    pub fn is_auth(&self) -> bool {
        matches!(self, ApiError::Refused(e) if AUTH_ERRORS.contains(&e.as_str()))
    }

    /// Whether retrying the same call cannot help (a refusal other than rate limiting).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ApiError::Refused(e) if e != "ratelimited")
    }

    /// Seconds to wait before retrying, when Slack said.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(s) => Some(*s),
            _ => None,
        }
    }
}

/// Decode an answer: its status, its headers (lowercase names) and its body.
pub fn decode(status: u16, headers: &[(String, String)], body: &[u8]) -> Result<Value, ApiError> {
    if status == 429 {
        let secs = headers
            .iter()
            .find(|(n, _)| n == "retry-after")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
        return Err(ApiError::RateLimited(secs));
    }
    let unreadable = |reason: String| ApiError::Unreadable { status, reason };
    let v: Value = serde_json::from_slice(body).map_err(|e| unreadable(e.to_string()))?;
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) if (200..300).contains(&status) => Ok(v),
        Some(false) => Err(ApiError::Refused(
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error")
                .to_string(),
        )),
        _ => Err(unreadable("no \"ok\" in the answer".into())),
    }
}

/// The bot's identity from `auth.test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `user_id`: the bot user, as mentions name it (`<@U…>`).
    pub user_id: String,
    /// `team_id`.
    pub team_id: Option<String>,
}

/// The identity in an `auth.test` answer.
pub fn identity(v: &Value) -> Result<Identity, ApiError> {
    let user_id = v
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::Unreadable {
            status: 200,
            reason: "auth.test without user_id".into(),
        })?;
    Ok(Identity {
        user_id: user_id.to_string(),
        team_id: v.get("team_id").and_then(Value::as_str).map(str::to_string),
    })
}

/// The name upstream shows for a user in a `users.info` answer: the profile's
/// `display_name`, else its `real_name`, else the account's `name` (empty ones skipped);
/// `None` when it has none of them.
pub fn user_name(v: &Value) -> Option<String> {
    let user = v.get("user")?;
    let profile = user.get("profile");
    let field = |o: Option<&Value>, k: &str| {
        o.and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    field(profile, "display_name")
        .or_else(|| field(profile, "real_name"))
        .or_else(|| field(Some(user), "name"))
}

/// The WebSocket URL in an `apps.connections.open` answer.
pub fn socket_url(v: &Value) -> Result<String, ApiError> {
    v.get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("wss://") || u.starts_with("ws://"))
        .map(str::to_string)
        .ok_or_else(|| ApiError::Unreadable {
            status: 200,
            reason: "apps.connections.open without a ws(s) url".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_envelopes() {
        let r = request("http://127.0.0.1:9/api/", "xoxb-1", "auth.test", &json!({}));
        assert_eq!(r.url, "http://127.0.0.1:9/api/auth.test");
        assert_eq!(r.header("authorization"), Some("Bearer xoxb-1"));
        let r = request("http://x/api", "t", "chat.postMessage", &json!({}));
        assert_eq!(r.url, "http://x/api/chat.postMessage");
        assert_eq!(
            post_message("D1", "hi", Some("1.5")),
            json!({"channel": "D1", "text": "hi", "mrkdwn": true, "thread_ts": "1.5"})
        );
        let ok = decode(200, &[], br#"{"ok":true,"user_id":"UB","team_id":"T1"}"#).unwrap();
        assert_eq!(identity(&ok).unwrap().user_id, "UB");
        let bad = decode(200, &[], br#"{"ok":false,"error":"invalid_auth"}"#).unwrap_err();
        assert!(bad.is_auth() && bad.is_permanent());
        let limited = decode(429, &[("retry-after".into(), "3".into())], b"").unwrap_err();
        assert_eq!(limited.retry_after(), Some(3));
        assert!(!limited.is_permanent());
        assert!(decode(502, &[], b"<html>").is_err());
        assert!(socket_url(&json!({"ok": true, "url": "wss://x/link"})).is_ok());
        assert!(socket_url(&json!({"ok": true, "url": "http://x"})).is_err());
    }

    #[test]
    fn users_info_request_and_name_fallbacks() {
        let r = form_request("http://x/api/", "xoxb-1", "users.info", &[("user", "U1 &")]);
        assert_eq!(r.url, "http://x/api/users.info");
        assert_eq!(r.body, b"user=U1%20%26");
        assert_eq!(r.header("authorization"), Some("Bearer xoxb-1"));
        let named = |user: Value| user_name(&json!({"ok": true, "user": user}));
        let profile = json!({"display_name": "ali", "real_name": "Alice Liddell"});
        assert_eq!(
            named(json!({"name": "alice", "profile": profile})).as_deref(),
            Some("ali")
        );
        let profile = json!({"display_name": " ", "real_name": "Alice Liddell"});
        assert_eq!(
            named(json!({"name": "alice", "profile": profile})).as_deref(),
            Some("Alice Liddell")
        );
        assert_eq!(named(json!({"name": "alice"})).as_deref(), Some("alice"));
        assert_eq!(named(json!({"id": "U1"})), None);
        assert_eq!(user_name(&json!({"ok": true})), None);
    }
}
