//! Protocol frames: the JSON envelopes of requests, responses and events, and the
//! error shape every failure uses.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this gateway speaks.
pub const PROTOCOL_VERSION: u64 = 4;

/// Error codes of the `error.code` field (upstream `ErrorCodes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The device is not paired, or no device identity was given.
    NotPaired,
    /// The request or its params are invalid, or auth failed.
    InvalidRequest,
    /// A scope is missing.
    Forbidden,
    /// The target is unavailable (node gone, timeout, starting).
    Unavailable,
}

/// The `error` object of a failed response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorShape {
    /// Machine-readable class of the failure.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Structured details (`details.code` and friends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether the same request may succeed later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// How long to wait before retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    /// An error with a code and a message and nothing else.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    /// The same error with `details` set.
    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `INVALID_REQUEST` with a message.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

/// A frame the gateway sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OutFrame {
    /// A response to a request.
    Res {
        /// The request id being answered.
        id: String,
        /// Whether the request succeeded.
        ok: bool,
        /// The result, on success; on failure, what some methods (`agent`) report beside the error.
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        /// The error, on failure.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorShape>,
    },
    /// An event.
    Event {
        /// The event name.
        event: String,
        /// The event body.
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        /// Per-connection sequence number, on broadcasts only.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// State versions, on presence and health broadcasts.
        #[serde(rename = "stateVersion", skip_serializing_if = "Option::is_none")]
        state_version: Option<Value>,
    },
}

impl OutFrame {
    /// A successful response.
    pub fn ok(id: impl Into<String>, payload: Value) -> Self {
        OutFrame::Res {
            id: id.into(),
            ok: true,
            payload: Some(payload),
            error: None,
        }
    }

    /// A failed response.
    pub fn err(id: impl Into<String>, error: ErrorShape) -> Self {
        Self::failed(id, error, None)
    }

    /// A failed response that carries a payload beside its error, as upstream's final `agent`
    /// answer does (`{"ok":false,"payload":{runId,status:"error",…},"error":{…}}`).
    pub fn failed(id: impl Into<String>, error: ErrorShape, payload: Option<Value>) -> Self {
        OutFrame::Res {
            id: id.into(),
            ok: false,
            payload,
            error: Some(error),
        }
    }

    /// An event sent to one connection (no `seq`).
    pub fn direct(event: impl Into<String>, payload: Value) -> Self {
        OutFrame::Event {
            event: event.into(),
            payload: Some(payload),
            seq: None,
            state_version: None,
        }
    }

    /// The text of [`OutFrame::ok`] whose payload `write` appends as JSON text (about
    /// `capacity` bytes), for answers assembled from pieces serialised once.
    pub(crate) fn ok_text(id: &str, capacity: usize, write: impl FnOnce(&mut String)) -> String {
        const HEAD: &str = r#"{"type":"res","id":"#;
        const MID: &str = r#","ok":true,"payload":"#;
        // The id's quotes and the closing brace: the text is allocated once, not grown (and
        // copied) by its last byte.
        let mut text = String::with_capacity(HEAD.len() + id.len() + MID.len() + capacity + 3);
        text.push_str(HEAD);
        push_json_str(&mut text, id);
        text.push_str(MID);
        write(&mut text);
        text.push('}');
        text
    }

    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Append `s` as a JSON string, as serde_json writes it: its plain runs as they are (found
/// eight bytes at a time), `"` and `\\` after a backslash, `\\b \\f \\n \\r \\t` in short form and
/// any other control character as `\\u00xx`. A text with a newline in it (a system prompt,
/// a channel message's context block) went through serde_json's serialiser, ~4,000
/// instructions a text.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    loop {
        let plain = crate::json_plain::plain_len(rest.as_bytes());
        let (run, tail) = rest.split_at_checked(plain).unwrap_or((rest, ""));
        out.push_str(run);
        let mut chars = tail.chars();
        let Some(c) = chars.next() else { break };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // A control character (plain_len stops at nothing else): two hex digits.
            c => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c);
                out.push_str("\\u00");
                for d in [b >> 4, b & 0xf] {
                    out.push(char::from(HEX.get(d as usize).copied().unwrap_or(b'0')));
                }
            }
        }
        rest = chars.as_str();
    }
    out.push('"');
}

/// A broadcast event serialised once: every recipient's frame is the same text but for its
/// own `seq`, so a broadcast to n connections serialises the payload once, not n times.
/// Renders exactly what [`OutFrame::Event`] with `seq: Some(..)` serialises to.
#[derive(Clone, Debug)]
pub struct SeqEvent {
    /// Everything up to the `seq` value.
    head: String,
    /// Everything after it.
    tail: String,
}

impl SeqEvent {
    /// The frame of `event` with `payload` and, when given, `stateVersion`.
    pub fn new(event: &str, payload: &Value, state_version: Option<&Value>) -> Self {
        // Serialising a `str` or a `Value` cannot fail: every map key is a string.
        let mut head = String::from(r#"{"type":"event","event":"#);
        head.push_str(&serde_json::to_string(event).unwrap_or_default());
        head.push_str(r#","payload":"#);
        head.push_str(&serde_json::to_string(payload).unwrap_or_default());
        head.push_str(r#","seq":"#);
        let tail = match state_version {
            Some(sv) => format!(r#","stateVersion":{sv}}}"#),
            None => "}".to_string(),
        };
        Self { head, tail }
    }

    /// The frame text for the recipient whose sequence number this is.
    pub fn with_seq(&self, seq: u64) -> String {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(self.head.len() + 20 + self.tail.len());
        text.push_str(&self.head);
        // Writing to a `String` cannot fail.
        let _ = write!(text, "{seq}");
        text.push_str(&self.tail);
        text
    }
}

/// A request frame received from a peer, validated against upstream's `RequestFrame`, its
/// params read as `P`. Its `id` and `method` borrow the frame's text where they are written
/// without escapes (the common case: no allocation for either).
#[derive(Clone, Debug, PartialEq)]
pub struct Request<'a, P = Value> {
    /// Request id, echoed in the response.
    pub id: Cow<'a, str>,
    /// Method name.
    pub method: Cow<'a, str>,
    /// Params; `P::default()` (`Null` for a tree) when omitted.
    pub params: P,
}

/// What a request's params are read as: their JSON tree, or a type read straight from the
/// frame's text.
pub(crate) trait Params<'a>: Deserialize<'a> + Default {
    /// The params read from the JSON tree of the whole frame (see [`parse_request_as`]).
    fn from_tree(tree: Value) -> Self;
}

impl Params<'_> for Value {
    fn from_tree(tree: Value) -> Self {
        tree
    }
}

/// Why an inbound text frame is not a usable request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// The text is not JSON at all.
    #[error("frame is not JSON")]
    NotJson,
    /// JSON, but not a valid request frame; `id` is what to answer to.
    #[error("invalid request frame: {problem}")]
    Invalid {
        /// The request id if one could be read, else `"invalid"`.
        id: String,
        /// What was wrong.
        problem: InvalidFrame,
    },
}

/// What is wrong with a request frame; displays in upstream's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFrame {
    /// The frame is not a JSON object.
    #[error("at root: must be object")]
    NotObject,
    /// A key the request schema does not allow.
    #[error("at root: unexpected property '{0}'")]
    UnexpectedProperty(String),
    /// `type` is not `"req"`.
    #[error("at /type: must be equal to constant")]
    NotRequest,
    /// No usable `id`.
    #[error("at root: must have required property 'id'")]
    MissingId,
    /// `method` is not a non-empty string.
    #[error("at /method: must be non-empty string")]
    BadMethod,
    /// No `method`.
    #[error("at root: must have required property 'method'")]
    MissingMethod,
    /// `traceparent` is not a string of at most 128 characters.
    #[error("at /traceparent: must be string of at most 128 characters")]
    BadTraceparent,
}

const REQUEST_KEYS: &[&str] = &[
    "type",
    "id",
    "method",
    "params",
    "traceparent",
    "expectedProfileId",
];

/// The envelope of a request frame with no optional keys but `params`, read straight from the
/// text (no JSON tree for the envelope): the case of [`parse_request_by_serde`] the envelope's
/// scan leaves to it for an escape in a string or a key. Anything else (a
/// missing, extra or repeated key, `traceparent`) is read by the full validation instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a, P> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(default = "Option::default")]
    params: Option<P>,
}

impl<'a, P: Default> Envelope<'a, P> {
    /// The request, if the envelope is a valid one.
    fn into_request(self) -> Option<Request<'a, P>> {
        if self.kind != "req" || self.id.is_empty() || self.method.is_empty() {
            return None;
        }
        Some(Request {
            id: self.id,
            method: self.method,
            params: self.params.unwrap_or_default(),
        })
    }
}

/// Parse one inbound text frame as a request.
pub fn parse_request(text: &str) -> Result<Request<'_>, FrameError> {
    parse_request_as(text)
}

/// Parse one inbound text frame as a request whose params are read as `P`: the common
/// envelope by a scan of its top level ([`crate::envelope`]), anything else by serde.
pub(crate) fn parse_request_as<'a, P: Params<'a>>(
    text: &'a str,
) -> Result<Request<'a, P>, FrameError> {
    match crate::envelope::scan(text) {
        Some(req) => Ok(req),
        None => parse_request_by_serde(text),
    }
}

/// [`parse_request_as`] by serde alone: what the envelope's scan must agree with.
pub(crate) fn parse_request_by_serde<'a, P: Params<'a>>(
    text: &'a str,
) -> Result<Request<'a, P>, FrameError> {
    match plain_request(text) {
        Some(req) => Ok(req),
        None => validate_request(text).map(|r| Request {
            id: r.id,
            method: r.method,
            params: P::from_tree(r.params),
        }),
    }
}

/// The request, if `text` is a valid one with no optional key but `params`.
fn plain_request<'a, P: Params<'a>>(text: &'a str) -> Option<Request<'a, P>> {
    serde_json::from_str::<Envelope<'a, P>>(text)
        .ok()
        .and_then(Envelope::into_request)
}

/// Parse `text` as a request through its JSON tree, with upstream's answer to each problem.
fn validate_request(text: &str) -> Result<Request<'static>, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let Value::Object(mut obj) = value else {
        return Err(invalid("invalid", InvalidFrame::NotObject));
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "invalid".to_string(),
    };
    if let Some(key) = unexpected_key(&obj, REQUEST_KEYS) {
        return Err(invalid(
            &id,
            InvalidFrame::UnexpectedProperty(key.to_string()),
        ));
    }
    match obj.get("type") {
        Some(Value::String(t)) if t == "req" => {}
        _ => return Err(invalid(&id, InvalidFrame::NotRequest)),
    }
    if id == "invalid" && !matches!(obj.get("id"), Some(Value::String(s)) if s == "invalid") {
        return Err(invalid(&id, InvalidFrame::MissingId));
    }
    let method = match obj.get("method") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(invalid(&id, InvalidFrame::BadMethod)),
        None => {
            return Err(invalid(&id, InvalidFrame::MissingMethod));
        }
    };
    if let Some(tp) = obj.get("traceparent")
        && !matches!(tp, Value::String(s) if s.len() <= 128)
    {
        return Err(invalid(&id, InvalidFrame::BadTraceparent));
    }
    let params = obj.remove("params").unwrap_or(Value::Null);
    Ok(Request {
        id: id.into(),
        method: method.into(),
        params,
    })
}

fn invalid(id: &str, problem: InvalidFrame) -> FrameError {
    FrameError::Invalid {
        id: id.to_string(),
        problem,
    }
}

/// The first key of `obj` not in `allowed`, if any.
pub(crate) fn unexpected_key<'a>(obj: &'a Map<String, Value>, allowed: &[&str]) -> Option<&'a str> {
    obj.keys()
        .map(String::as_str)
        .find(|k| !allowed.contains(k))
}

/// Truncate a close reason to at most `max` bytes on a UTF-8 boundary.
pub(crate) fn truncate_reason(reason: &str, max: usize) -> &str {
    if reason.len() <= max {
        return reason;
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_event_renders_what_the_event_frame_serialises() {
        let payload =
            serde_json::json!({"ts": 17, "text": "quote \" and \u{e9}", "z": [1, {"a": null}]});
        let sv = serde_json::json!({"presence": 3, "health": 9});
        for (event, state_version) in [("tick", None), ("presence", Some(&sv)), ("a\"b", None)] {
            let template = SeqEvent::new(event, &payload, state_version);
            for seq in [0, 1, 42, u64::MAX] {
                let frame = OutFrame::Event {
                    event: event.to_string(),
                    payload: Some(payload.clone()),
                    seq: Some(seq),
                    state_version: state_version.cloned(),
                };
                assert_eq!(template.with_seq(seq), frame.to_text());
            }
        }
    }

    #[test]
    fn ok_text_is_what_ok_serialises_to() {
        let payload = serde_json::json!({"lines": ["{\"a\":1}"], "n": 2});
        let id = "req \"7\"";
        assert_eq!(
            OutFrame::ok_text(id, 0, |t| t.push_str(&payload.to_string())),
            OutFrame::ok(id, payload).to_text()
        );
    }

    #[test]
    fn ok_text_is_allocated_once() {
        let payload = r#"{"ok":true,"ts":1796646250902,"durationMs":0}"#;
        let text = OutFrame::ok_text(
            "2:0b5e1a9c-8d7f-4e21-9a3b-5c6d7e8f9a0b",
            payload.len(),
            |t| t.push_str(payload),
        );
        // A text that outgrew its first allocation would have twice the room it needs.
        assert_eq!(text.capacity(), text.len());
    }

    #[test]
    fn json_strings_are_what_serde_json_writes() {
        let mut all = String::new();
        for c in (0u32..0x80).filter_map(char::from_u32) {
            all.push(c);
        }
        for s in [
            "",
            "7",
            "abc-12:x",
            "é✓",
            "q\"7",
            "a\\b",
            "tab\tnl\n",
            "\u{7f}",
            &all,
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    proptest::proptest! {
        /// Any text, escapes anywhere in it, is written as serde_json writes it.
        #[test]
        fn any_json_string_is_what_serde_json_writes(s in crate::model::json_text::tests::text()) {
            let mut out = String::from("x");
            push_json_str(&mut out, &s);
            proptest::prop_assert_eq!(out, format!("x{}", serde_json::to_string(&s).unwrap()));
        }
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(100); // 200 bytes
        let t = truncate_reason(&s, 123);
        assert_eq!(t.len(), 122);
        assert!(t.chars().all(|c| c == 'é'));
        assert_eq!(truncate_reason("short", 123), "short");
    }

    #[test]
    fn plain_id_and_method_borrow_the_frame() {
        let text = r#"{"type":"req","id":"2:x","method":"health","params":{}}"#;
        let r = parse_request(text).unwrap();
        assert!(matches!(r.id, Cow::Borrowed("2:x")), "{:?}", r.id);
        assert!(
            matches!(r.method, Cow::Borrowed("health")),
            "{:?}",
            r.method
        );
        // An escaped id cannot be borrowed: it is decoded, as before.
        let r = parse_request(r#"{"type":"req","id":"a\"b","method":"health"}"#).unwrap();
        assert_eq!(r.id, "a\"b");
    }

    #[test]
    fn request_without_params_is_accepted() {
        let r = parse_request(r#"{"type":"req","id":"2:x","method":"health"}"#).unwrap();
        assert_eq!(r.method, "health");
        assert_eq!(r.params, Value::Null);
    }

    #[test]
    fn unexpected_property_names_the_key() {
        let e =
            parse_request(r#"{"type":"req","id":"x1","method":"health","bogus":1}"#).unwrap_err();
        assert_eq!(
            e,
            FrameError::Invalid {
                id: "x1".into(),
                problem: InvalidFrame::UnexpectedProperty("bogus".into())
            }
        );
    }

    #[test]
    fn missing_id_answers_to_invalid() {
        let e = parse_request(r#"{"type":"req","method":"health"}"#).unwrap_err();
        assert!(matches!(e, FrameError::Invalid { ref id, .. } if id == "invalid"));
        assert_eq!(parse_request("nope"), Err(FrameError::NotJson));
    }

    #[test]
    fn the_envelope_fast_path_reads_what_the_full_validation_reads() {
        let frames = [
            r#"{"type":"req","id":"1","method":"health"}"#,
            r#"{"type":"req","id":"1","method":"health","params":null}"#,
            r#"{"method":"chat.send","params":{"a":[1,2.5,"x"]},"id":"q\"7","type":"req"}"#,
            r#"{"type":"req","id":"1","method":"health","traceparent":null}"#,
            r#"{"type":"req","id":"1","method":"health","traceparent":"00-ab"}"#,
            r#"{"type":"req","id":"1","id":"2","method":"health"}"#,
            r#"{"type":"req","id":"","method":"health"}"#,
            r#"{"type":"req","id":"1","method":""}"#,
            r#"{"type":"res","id":"1","method":"health"}"#,
            r#"{"type":"req","id":7,"method":"health"}"#,
            r#"{"type":"req","id":"1","method":"health","x":1}"#,
        ];
        for text in frames {
            assert_eq!(parse_request(text), validate_request(text), "{text}");
        }
        for text in &frames[..3] {
            assert!(
                plain_request::<Value>(text).is_some(),
                "{text} takes the fast path"
            );
        }
        let r = parse_request(frames[2]).unwrap();
        assert_eq!((&*r.id, &*r.method), ("q\"7", "chat.send"));
        assert_eq!(
            parse_request(frames[3]),
            Err(invalid("1", InvalidFrame::BadTraceparent)),
            "a null traceparent is refused as before"
        );
    }

    #[test]
    fn event_frames_from_clients_are_invalid() {
        let e = parse_request(r#"{"type":"event","event":"x"}"#).unwrap_err();
        assert!(matches!(e, FrameError::Invalid { .. }));
    }
}
