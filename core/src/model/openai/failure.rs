//! A provider's refusal, from a non-2xx status and its body or from an in-stream
//! `{"error":{…}}`, classified as upstream's `errorKind` / `failoverReason` do.

use serde_json::Value;

/// The longest provider message kept, in characters (upstream's
/// `errorDetail.providerErrorMessagePreview` is at most 300).
pub const PREVIEW_CHARS: usize = 300;

/// The longest provider error `type` or `code` kept, in characters.
const LABEL_CHARS: usize = 100;

/// What went wrong, as far as retrying and reporting care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Throttled or out of quota (HTTP 429, "rate limit", "quota", "overloaded"): retry later.
    RateLimit,
    /// The key was refused (HTTP 401/403, "invalid api key").
    Auth,
    /// The transcript does not fit the model's context window.
    ContextLength,
    /// The provider or a proxy timed out (HTTP 408/504, "timed out").
    Timeout,
    /// Anything else.
    Unknown,
}

impl ErrorKind {
    /// The wire name: `rate_limit`, `auth`, `context_length`, `timeout`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Auth => "auth",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unknown => "unknown",
        }
    }

    /// The `errorKind` of a `chat` `error` event, whose schema has no `auth`
    /// (`refusal|timeout|rate_limit|context_length|unknown`).
    pub fn chat_error_kind(self) -> &'static str {
        match self {
            ErrorKind::Auth => "unknown",
            other => other.as_str(),
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::RateLimit | ErrorKind::Timeout)
    }
}

impl core::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider's error, every text field bounded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("model provider error ({kind}{}): {message_preview}", status.map(|s| format!(", HTTP {s}")).unwrap_or_default())]
pub struct ProviderError {
    /// The HTTP status; `None` for an error that arrived inside a 200 stream.
    pub status: Option<u16>,
    /// The classification.
    pub kind: ErrorKind,
    /// The provider's message (`error.message`, else the body), whitespace folded, at most
    /// [`PREVIEW_CHARS`] characters.
    pub message_preview: String,
    /// `error.type`, e.g. `invalid_request_error` (at most 100 characters).
    pub error_type: Option<String>,
    /// `error.code`, e.g. `context_length_exceeded` (a number becomes its text).
    pub code: Option<String>,
    /// `Retry-After` in seconds, when the header held a whole number.
    pub retry_after_secs: Option<u64>,
}

/// A non-2xx answer: `status`, the `Retry-After` header's value if any, and the body (usually
/// OpenAI's `{"error":{"message","type","code"}}`, but any bytes are accepted).
pub fn classify_http_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
    let text = String::from_utf8_lossy(body);
    let json = serde_json::from_str::<Value>(&text).ok();
    let error = json.as_ref().map(|v| v.get("error").unwrap_or(v));
    let mut e = from_error_value(Some(status), error, &text);
    e.retry_after_secs = retry_after.and_then(|v| v.trim().parse().ok());
    e
}

/// An in-stream error: the value of the chunk's `error` member (an object or a string).
pub(crate) fn from_stream_error(error: &Value) -> ProviderError {
    from_error_value(None, Some(error), "")
}

/// Build the error from `error` (an object with `message`/`type`/`code`, or a string), falling
/// back to `raw` for the message.
fn from_error_value(status: Option<u16>, error: Option<&Value>, raw: &str) -> ProviderError {
    let field = |name: &str| error.and_then(|e| e.get(name));
    let label = |name: &str| {
        field(name).and_then(|v| match v {
            Value::String(s) => Some(fold(s, LABEL_CHARS)),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let message = field("message")
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str))
        .unwrap_or(raw);
    let message_preview = fold(message, PREVIEW_CHARS);
    let error_type = label("type");
    let code = label("code");
    let kind = classify(
        status,
        [
            error_type.as_deref(),
            code.as_deref(),
            Some(&message_preview),
        ],
    );
    ProviderError {
        status,
        kind,
        message_preview,
        error_type,
        code,
        retry_after_secs: None,
    }
}

/// Whitespace runs folded to one space, trimmed, cut to `max` characters.
fn fold(s: &str, max: usize) -> String {
    s.split_whitespace()
        .flat_map(|w| [" ", w])
        .skip(1)
        .flat_map(str::chars)
        .take(max)
        .collect()
}

const RATE_LIMIT: &[&str] = &[
    "rate limit",
    "rate_limit",
    "ratelimit",
    "too many requests",
    "quota",
    "resource_exhausted",
    "resource has been exhausted",
    "tokens per min",
    "requests per min",
    "overloaded",
];
const CONTEXT_LENGTH: &[&str] = &[
    "context_length",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "reduce the length",
];
const AUTH: &[&str] = &[
    "api key",
    "api_key",
    "apikey",
    "unauthorized",
    "authentication",
    "permission denied",
];
const TIMEOUT: &[&str] = &["timeout", "timed out", "deadline exceeded"];

/// Rate limits first: a throttled request must never read as a context overflow (upstream's
/// misclassification of Anthropic's rate limits taught that).
fn classify(status: Option<u16>, texts: [Option<&str>; 3]) -> ErrorKind {
    let haystack = texts
        .iter()
        .flatten()
        .map(|t| t.to_lowercase())
        .collect::<Vec<_>>()
        .join(" | ");
    let says = |needles: &[&str]| needles.iter().any(|n| haystack.contains(n));
    if status == Some(429) || says(RATE_LIMIT) {
        ErrorKind::RateLimit
    } else if matches!(status, Some(401 | 403)) {
        ErrorKind::Auth
    } else if status == Some(413) || says(CONTEXT_LENGTH) {
        ErrorKind::ContextLength
    } else if says(AUTH) {
        ErrorKind::Auth
    } else if matches!(status, Some(408 | 504)) || says(TIMEOUT) {
        ErrorKind::Timeout
    } else {
        ErrorKind::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_rate_limit_with_retry_after() {
        let body = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = classify_http_error(429, Some(" 2 "), body);
        assert_eq!(e.kind, ErrorKind::RateLimit);
        assert_eq!(e.status, Some(429));
        assert_eq!(e.retry_after_secs, Some(2));
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(e.error_type.as_deref(), Some("tokens"));
        assert!(
            e.message_preview
                .starts_with("Rate limit reached for gpt-4o")
        );
        assert!(e.kind.is_transient());
    }

    #[test]
    fn openai_invalid_key() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let e = classify_http_error(401, None, body);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.kind.chat_error_kind(), "unknown");
        assert_eq!(e.retry_after_secs, None);
    }

    #[test]
    fn openai_context_length_is_a_400() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = classify_http_error(400, None, body);
        assert_eq!(e.kind, ErrorKind::ContextLength);
        assert_eq!(e.kind.chat_error_kind(), "context_length");
    }

    #[test]
    fn rate_limit_wins_over_context_words() {
        let body = br#"{"error":{"message":"Too many tokens: rate limit exceeded"}}"#;
        assert_eq!(
            classify_http_error(400, None, body).kind,
            ErrorKind::RateLimit
        );
    }

    #[test]
    fn non_json_bodies_and_timeouts() {
        let e = classify_http_error(
            504,
            Some("soon"),
            b"<html>\n  <body>Gateway   Timeout</body></html>",
        );
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert_eq!(
            e.message_preview,
            "<html> <body>Gateway Timeout</body></html>"
        );
        assert_eq!(e.retry_after_secs, None);
        let e = classify_http_error(500, None, b"\xFF internal");
        assert_eq!(e.kind, ErrorKind::Unknown);
        assert_eq!(e.message_preview, "\u{FFFD} internal");
        let e = classify_http_error(
            502,
            None,
            br#"{"error":"upstream connect error","code":502}"#,
        );
        assert_eq!(e.message_preview, "upstream connect error");
        assert_eq!(e.kind, ErrorKind::Unknown);
    }

    #[test]
    fn preview_is_at_most_300_characters() {
        let body = format!(
            r#"{{"error":{{"message":"{}","code":{}}}}}"#,
            "é".repeat(1000),
            42
        );
        let e = classify_http_error(500, None, body.as_bytes());
        assert_eq!(e.message_preview.chars().count(), PREVIEW_CHARS);
        assert_eq!(e.code.as_deref(), Some("42"));
        let long_type = format!(r#"{{"error":{{"type":"{}"}}}}"#, "x".repeat(500));
        let e = classify_http_error(500, None, long_type.as_bytes());
        assert_eq!(e.error_type.map(|t| t.len()), Some(LABEL_CHARS));
    }

    #[test]
    fn display_names_kind_and_status() {
        let e = classify_http_error(429, None, br#"{"error":{"message":"slow down"}}"#);
        assert_eq!(
            e.to_string(),
            "model provider error (rate_limit, HTTP 429): slow down"
        );
    }
}
