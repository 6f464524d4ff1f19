//! Discord's REST API as data: the calls clawgate makes (`GET /gateway/bot`,
//! `POST /channels/{id}/messages`, `POST /channels/{id}/typing`) as [`HttpRequest`]s, their
//! answers decoded into a result or a [`Failure`] (401 is a bad token; a 429's
//! `retry_after`), and the rate limits the answers announce: per-route buckets from the
//! `X-RateLimit-*` headers and global 429s ([`Limits`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::channels::{Answer, Failure};
use crate::model::HttpRequest;

/// The `User-Agent` Discord asks bots to send.
const USER_AGENT: &str = "DiscordBot (https://github.com/clawgate/clawgate, 0.1)";

fn request(method: &'static str, url: String, token: &str, body: Option<&Value>) -> HttpRequest {
    let mut headers = vec![
        ("Authorization".into(), format!("Bot {token}")),
        ("User-Agent".into(), USER_AGENT.to_string()),
    ];
    let body = match body {
        Some(b) => {
            headers.push(("Content-Type".into(), "application/json".into()));
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    HttpRequest {
        method,
        url,
        headers,
        body,
        idempotent: method == "GET",
        dialing: Default::default(),
    }
}

/// `GET /gateway/bot`.
pub fn gateway_bot(api: &str, token: &str) -> HttpRequest {
    request("GET", format!("{api}/gateway/bot"), token, None)
}

/// `POST /channels/{channel}/messages` with `content`.
pub fn create_message(api: &str, token: &str, channel: &str, content: &str) -> HttpRequest {
    let body = json!({"content": content, "allowed_mentions": {"parse": []}});
    request(
        "POST",
        format!("{api}/channels/{channel}/messages"),
        token,
        Some(&body),
    )
}

/// `POST /channels/{channel}/typing`.
pub fn typing(api: &str, token: &str, channel: &str) -> HttpRequest {
    request(
        "POST",
        format!("{api}/channels/{channel}/typing"),
        token,
        Some(&json!({})),
    )
}

fn header<'a>(answer: &Answer<'a>, name: &str) -> Option<&'a str> {
    answer
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn seconds(s: &str) -> Option<Duration> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| Duration::from_secs_f64(f.min(3600.0)))
}

/// An answer decoded: its JSON (`null` for an empty 2xx body), or why the call failed.
pub(crate) fn result(answer: Result<Answer<'_>, String>) -> Result<Value, Failure> {
    let a = answer.map_err(Failure::Transport)?;
    let body: Option<Value> = serde_json::from_slice(a.body).ok();
    if (200..300).contains(&a.status) {
        return match body {
            Some(v) => Ok(v),
            None if a.body.iter().all(u8::is_ascii_whitespace) => Ok(Value::Null),
            None => Err(Failure::Transport(format!(
                "unreadable Discord answer (HTTP {})",
                a.status
            ))),
        };
    }
    let description = body
        .as_ref()
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .map_or_else(
            || String::from_utf8_lossy(a.body.get(..200).unwrap_or(a.body)).into_owned(),
            str::to_string,
        );
    let retry_after = body
        .as_ref()
        .and_then(|b| b.get("retry_after"))
        .and_then(Value::as_f64)
        .and_then(|f| seconds(&f.to_string()))
        .or_else(|| header(&a, "retry-after").and_then(seconds));
    Err(Failure::Refused {
        code: a.status,
        description,
        retry_after,
        auth: a.status == 401,
        permanent: matches!(a.status, 400 | 401 | 403 | 404),
    })
}

/// The Gateway URL of a `GET /gateway/bot` result.
pub fn gateway_url(result: &Value) -> Option<String> {
    result
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
}

/// The rate limits the answers announced: routes (a channel's messages) whose bucket is
/// empty until a time, and a global stop.
#[derive(Debug, Default)]
pub struct Limits {
    routes: HashMap<String, Instant>,
    global: Option<Instant>,
}

impl Limits {
    /// Note what `answer` (to a call on `route`, at `now`) says about the limits.
    pub(crate) fn note(&mut self, now: Instant, route: &str, answer: &Answer<'_>) {
        let reset = header(answer, "x-ratelimit-reset-after").and_then(seconds);
        let empty = header(answer, "x-ratelimit-remaining").is_some_and(|r| r.trim() == "0");
        let global = header(answer, "x-ratelimit-global").is_some_and(|g| g == "true")
            || header(answer, "x-ratelimit-scope").is_some_and(|s| s == "global");
        let retry = header(answer, "retry-after").and_then(seconds);
        if answer.status == 429 && global {
            if let Some(wait) = retry.or(reset) {
                self.global = Some(now + wait);
            }
        } else if let (true, Some(wait)) = (empty || answer.status == 429, reset.or(retry)) {
            self.routes.insert(route.to_string(), now + wait);
        }
        self.routes.retain(|_, until| *until > now);
    }

    /// Until when a call on `route` must wait, if it must.
    pub fn blocked(&self, now: Instant, route: &str) -> Option<Instant> {
        let route = self.routes.get(route).copied().filter(|u| *u > now);
        let global = self.global.filter(|u| *u > now);
        route.max(global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<'a>(status: u16, headers: &'a [(String, String)], body: &'a [u8]) -> Answer<'a> {
        Answer {
            status,
            headers,
            body,
        }
    }

    #[test]
    fn answers_decode_and_name_bad_tokens_and_waits() {
        let ok = answer(200, &[], br#"{"url":"wss://g"}"#);
        assert_eq!(
            gateway_url(&result(Ok(ok)).unwrap()).as_deref(),
            Some("wss://g")
        );
        assert_eq!(result(Ok(answer(204, &[], b""))).unwrap(), Value::Null);
        let e = result(Ok(answer(
            401,
            &[],
            br#"{"message":"401: Unauthorized","code":0}"#,
        )))
        .unwrap_err();
        assert!(
            matches!(
                e,
                Failure::Refused {
                    auth: true,
                    code: 401,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = result(Ok(answer(
            429,
            &[],
            br#"{"message":"You are being rate limited.","retry_after":1.5,"global":false}"#,
        )))
        .unwrap_err();
        assert!(
            matches!(e, Failure::Refused { retry_after: Some(d), auth: false, .. } if d == Duration::from_millis(1500))
        );
    }
}
