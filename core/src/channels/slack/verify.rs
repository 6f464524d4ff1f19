//! Slack's request signing (HTTP mode): `X-Slack-Signature` is `v0=` and the hex HMAC-SHA256,
//! keyed with the signing secret, of `v0:{X-Slack-Request-Timestamp}:{body}`. Checked before
//! anything of the request is parsed, in constant time, and a timestamp more than five minutes
//! away from now is refused (a replay).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a request's timestamp may be from now (Slack's five minutes).
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request is not Slack's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `X-Slack-Request-Timestamp` or `X-Slack-Signature`.
    #[error("missing signature headers")]
    Missing,
    /// The timestamp is not a number of seconds.
    #[error("malformed timestamp")]
    BadTimestamp,
    /// The timestamp is more than five minutes from now.
    #[error("stale timestamp")]
    Stale,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
}

/// Check a request: its timestamp and signature headers, its raw body, the signing secret and
/// the time now (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(VerifyError::Missing);
    };
    let ts = ts.trim();
    if ts.is_empty() || ts.len() > 18 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    let secs: i64 = ts.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_secs - secs).abs() > MAX_SKEW_SECS {
        return Err(VerifyError::Stale);
    }
    let expected = sign(secret, ts, body);
    if expected.as_bytes().ct_eq(sig.trim().as_bytes()).into() {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The `X-Slack-Signature` value for a request (what Slack sends; the tests' fake signs with it).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes a key of any length.
        return String::new();
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("v0={}", data_encoding::HEXLOWER.encode(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slacks_documented_example() {
        // https://api.slack.com/authentication/verifying-requests-from-slack
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(secret, "1531420618", body), sig);
        assert_eq!(
            verify(secret, Some("1531420618"), Some(sig), body, 1531420618 + 10),
            Ok(())
        );
        assert_eq!(
            verify(
                secret,
                Some("1531420618"),
                Some(sig),
                body,
                1531420618 + 301
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(secret, Some("1531420618"), Some(sig), b"x", 1531420618),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(secret, None, Some(sig), body, 1531420618),
            Err(VerifyError::Missing)
        );
        assert_eq!(
            verify(secret, Some("-1"), Some(sig), body, 0),
            Err(VerifyError::BadTimestamp)
        );
    }
}
