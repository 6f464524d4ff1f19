//! Turning connection and request failures into messages that say what went wrong and what
//! to set, and into upstream's `--json` error shapes:
//! `{"ok":false,"error":{"type":"gateway_request_error",…}}`,
//! `{"ok":false,"error":{"type":"gateway_transport_error",…},"gateway":{"url","urlSource"}}` and
//! `{"ok":false,"error":{"type":"gateway_credentials_required",…}}`.

use clawgate_core::frame::ErrorShape;
use serde_json::{Value, json};

use super::credentials::UrlSource;
use super::target::Target;
use super::{Exit, Failure};
use clawgate_host::session::{CallError, Close, ConnectError};

/// `details.code` of a gateway error, if any.
pub fn detail_code(e: &ErrorShape) -> Option<&str> {
    e.details
        .as_ref()
        .and_then(|d| d.get("code"))
        .and_then(Value::as_str)
}

/// Upstream's `gateway_request_error` document.
pub fn request_error_json(e: &ErrorShape) -> Value {
    let mut err = json!({"type": "gateway_request_error", "code": e.code, "message": e.message});
    if let Some(d) = &e.details {
        err["details"] = d.clone();
    }
    err["retryable"] = json!(e.retryable.unwrap_or(false));
    if let Some(ms) = e.retry_after_ms {
        err["retryAfterMs"] = json!(ms);
    }
    json!({"ok": false, "error": err})
}

/// Upstream's `gateway_transport_error` document.
pub fn transport_error_json(
    target: &Target,
    kind: &str,
    message: &str,
    reason: Option<&str>,
    timeout_ms: Option<u64>,
) -> Value {
    let mut err = json!({"type": "gateway_transport_error", "kind": kind, "message": message});
    if let Some(r) = reason {
        err["reason"] = json!(r);
    }
    if let Some(t) = timeout_ms {
        err["timeoutMs"] = json!(t);
    }
    json!({"ok": false, "error": err, "gateway": {"url": target.url.to_string(), "urlSource": target.source.as_str()}})
}

/// A close as text: `code 1008: reason`, or `no close frame`.
pub fn describe_close(c: &Close) -> String {
    match (c.code, c.reason.is_empty()) {
        (Some(code), true) => format!("code {code}"),
        (Some(code), false) => format!("code {code}: {}", c.reason),
        (None, true) => "no close frame".into(),
        (None, false) => c.reason.clone(),
    }
}

/// Details codes that mean "this gateway wants a secret and got none".
const SECRET_MISSING: &[&str] = &[
    "DEVICE_IDENTITY_REQUIRED",
    "AUTH_TOKEN_MISSING",
    "AUTH_PASSWORD_MISSING",
    "AUTH_UNAUTHORIZED",
];

/// Whether a refusal means credentials are missing, for a target that sent none.
fn credentials_missing(target: &Target, e: &ErrorShape) -> bool {
    !target.credentials.any() && detail_code(e).is_some_and(|c| SECRET_MISSING.contains(&c))
}

/// What to do about a refused `connect`.
pub fn auth_hint(target: &Target, e: &ErrorShape) -> Option<String> {
    let source = |t: &Option<super::credentials::Chosen>| t.as_ref().map_or("(none)", |c| c.source);
    let set_keys = match target.source {
        UrlSource::CliFlag => "pass --token (or --password) with the gateway's secret",
        UrlSource::Env => {
            "set OPENCLAW_GATEWAY_TOKEN (or OPENCLAW_GATEWAY_PASSWORD) alongside OPENCLAW_GATEWAY_URL"
        }
        UrlSource::RemoteConfig => {
            "set gateway.remote.token (or OPENCLAW_GATEWAY_TOKEN, or pass --token) to the remote gateway's token"
        }
        UrlSource::Local => {
            "set gateway.remote.token (or OPENCLAW_GATEWAY_TOKEN, or pass --token) to the gateway's gateway.auth.token; `clawgate doctor --generate-gateway-token` writes one token under both keys"
        }
    };
    Some(match detail_code(e)? {
        "AUTH_TOKEN_MISMATCH" => format!(
            "the token from {} is not the gateway's gateway.auth.token: {set_keys}",
            source(&target.credentials.token)
        ),
        "AUTH_PASSWORD_MISMATCH" => format!(
            "the password from {} is not the gateway's gateway.auth.password: pass --password, or set OPENCLAW_GATEWAY_PASSWORD or gateway.remote.password",
            source(&target.credentials.password)
        ),
        c if SECRET_MISSING.contains(&c) && !target.credentials.any() => {
            format!("the gateway requires a token or password and none was sent: {set_keys}")
        }
        "DEVICE_IDENTITY_REQUIRED" if !target.url.is_loopback() => {
            "connections from another machine need a signed device identity: use `clawgate gateway call` or the other clawgate commands (they sign with this machine's identity), or tunnel to the gateway's loopback port (ssh -L 18789:127.0.0.1:18789 <host>)".into()
        }
        "PAIRING_REQUIRED" => {
            let d = e.details.as_ref();
            let id = d.and_then(|d| d.get("requestId")).and_then(Value::as_str).unwrap_or("<requestId>");
            let device = d.and_then(|d| d.get("deviceId")).and_then(Value::as_str).unwrap_or("this machine");
            format!(
                "approve this machine's device ({device}) once, on the gateway host: clawgate devices approve {id}; then run the command again"
            )
        }
        "AUTH_RATE_LIMITED" => format!(
            "too many failed attempts from this address; wait {} s and check the secret",
            e.retry_after_ms.unwrap_or(0).div_ceil(1000)
        ),
        "AUTH_REQUIRED" => "the gateway runs without auth and accepts only local connections: run the command on the gateway host, or configure gateway.auth.token on the gateway".into(),
        "PROTOCOL_MISMATCH" => "the gateway speaks another protocol version: update clawgate or the gateway".into(),
        "MISSING_SCOPE" if !target.url.is_loopback() => {
            "from another machine the scopes are those approved for this machine's device: check them with `clawgate devices list` on the gateway host".into()
        }
        "MISSING_SCOPE" => "the connection lacks that scope: is the gateway's auth mode what you expect (`clawgate doctor`)?".into(),
        _ => return None,
    })
}

/// A failed connection attempt as a failure (exit 1).
pub fn connect_failure(
    target: &Target,
    err: &ConnectError,
    timeout_ms: u64,
    json_mode: bool,
) -> Failure {
    let url = &target.url;
    let (message, json) = match err {
        ConnectError::Refused { error, .. }
            if target.source == UrlSource::CliFlag && credentials_missing(target, error) =>
        {
            let m = format!(
                "gateway url override requires explicit credentials: --url needs --token or --password (the gateway at {url} refused the connection: {}). For the local gateway, drop --url to use the configured token.",
                error.message
            );
            (
                m.clone(),
                json!({"ok": false, "error": {"type": "gateway_credentials_required", "message": m}}),
            )
        }
        ConnectError::Refused { error, close } => {
            let mut m = format!(
                "the gateway at {url} refused the connection: {}",
                error.message
            );
            match close {
                // The reason repeats the message (truncated): the code is what is new.
                Some(Close {
                    code: Some(code),
                    reason,
                }) if error.message.starts_with(reason.as_str()) => {
                    m.push_str(&format!(" (closed with code {code})"));
                }
                Some(c) => m.push_str(&format!(" (closed with {})", describe_close(c))),
                None => {}
            }
            if let Some(h) = auth_hint(target, error) {
                m.push_str(&format!("\nhint: {h}"));
                if matches!(target.source, UrlSource::Local | UrlSource::RemoteConfig) {
                    let missing = if target.config_path.exists() {
                        ""
                    } else {
                        " (does not exist)"
                    };
                    m.push_str(&format!(
                        "\nconfig file: {}{missing}",
                        target.config_path.display()
                    ));
                }
            }
            (m, request_error_json(error))
        }
        ConnectError::Unreachable { reason, code } => {
            let head = format!(
                "Gateway not reachable at {url}{}.",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            );
            let reason = match code {
                Some(c) => format!("connect {c} {}", url.host_header()),
                None => reason.clone(),
            };
            let m = format!(
                "{head}\nStart it with `clawgate gateway run` (or `clawgate gateway start` for the service) and check `clawgate gateway status`."
            );
            (
                m,
                transport_error_json(target, "closed", &head, Some(&reason), None),
            )
        }
        ConnectError::Timeout => {
            let head = format!("gateway timeout after {timeout_ms}ms");
            let m = format!(
                "{head}: no hello from {url}; is a gateway (and not something else) listening there? Raise --timeout if it is busy."
            );
            (
                m,
                transport_error_json(target, "timeout", &head, None, Some(timeout_ms)),
            )
        }
        ConnectError::Http { status, body } => {
            let mut m = format!(
                "the gateway at {url} refused the WebSocket upgrade: HTTP {status} {}",
                body.trim()
            );
            if body.contains("proxy_attribution_required") {
                m.push_str("\nhint: a proxy header came from an address that is not in the gateway's gateway.trustedProxies");
            }
            (
                m.clone(),
                transport_error_json(target, "closed", &m, Some(&format!("HTTP {status}")), None),
            )
        }
        ConnectError::Closed(c) => {
            let head = format!(
                "gateway closed the connection before hello ({})",
                describe_close(c)
            );
            let m = format!("{head}; is {url} a clawgate/OpenClaw gateway?");
            (
                m,
                transport_error_json(target, "closed", &head, Some(&c.reason), None),
            )
        }
        ConnectError::Protocol(p) => {
            let m = format!("{url} does not speak the gateway protocol: {p}");
            (
                m.clone(),
                transport_error_json(target, "closed", &m, Some(p), None),
            )
        }
    };
    let f = Failure::new(Exit::Failed, message);
    if json_mode { f.with_json(json) } else { f }
}

/// A failed request as a failure (exit 1).
pub fn call_failure(
    target: &Target,
    method: &str,
    err: &CallError,
    timeout_ms: u64,
    json_mode: bool,
) -> Failure {
    let (message, json) = match err {
        CallError::Request(e) => {
            let mut m = format!("{method} failed: {} {}", code_name(e), e.message);
            if let Some(h) = auth_hint(target, e) {
                m.push_str(&format!("\nhint: {h}"));
            }
            (m, request_error_json(e))
        }
        CallError::Closed(c) => {
            let head = format!(
                "gateway closed the connection during {method} ({})",
                describe_close(c)
            );
            let hint = match c.code {
                Some(4001) => {
                    "; the gateway's secret or this client's token changed: check the token and retry"
                }
                Some(1012) => "; the gateway is restarting: retry shortly",
                _ => "",
            };
            (
                format!("{head}{hint}"),
                transport_error_json(target, "closed", &head, Some(&c.reason), None),
            )
        }
        CallError::Timeout => {
            let head = format!("gateway timeout after {timeout_ms}ms");
            (
                format!("{head} waiting for {method}; raise --timeout"),
                transport_error_json(target, "timeout", &head, None, Some(timeout_ms)),
            )
        }
        CallError::Protocol(p) => {
            let m = format!("the gateway broke the protocol during {method}: {p}");
            (
                m.clone(),
                transport_error_json(target, "closed", &m, Some(p), None),
            )
        }
    };
    let f = Failure::new(Exit::Failed, message);
    if json_mode { f.with_json(json) } else { f }
}

/// The wire name of an error code (`INVALID_REQUEST`).
pub fn code_name(e: &ErrorShape) -> String {
    serde_json::to_value(e.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
