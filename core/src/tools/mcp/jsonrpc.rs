//! JSON-RPC 2.0 as MCP speaks it: one message per line on stdio, one per POST body or SSE
//! event over Streamable HTTP. [`parse`] takes untrusted bytes (bounded, typed errors, never
//! a panic: the `mcp_message` fuzz target is the judge); the `encode_*` functions build what
//! the client sends. Batches (allowed by 2025-03-26, removed by 2025-06-18) are refused.

use serde_json::{Map, Value, json};

/// The default bound on one message: 4 MiB (a tool result larger than the agent may keep is
/// truncated later; this bound keeps a runaway server from growing memory).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// JSON-RPC's "method not found", sent to a server request the client does not serve.
pub const METHOD_NOT_FOUND: i64 = -32601;

/// A request id as the peer sent it. The client only sends numbers; a server's own
/// requests may use strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestId {
    /// A numeric id.
    Num(i64),
    /// A string id.
    Str(String),
}

impl RequestId {
    fn to_json(&self) -> Value {
        match self {
            RequestId::Num(n) => json!(n),
            RequestId::Str(s) => json!(s),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// The message.
    pub message: String,
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request expecting a response.
    Request {
        /// Its id.
        id: RequestId,
        /// The method.
        method: String,
        /// Its params (`Null` when absent).
        params: Value,
    },
    /// A notification (no id, no response).
    Notification {
        /// The method.
        method: String,
        /// Its params (`Null` when absent).
        params: Value,
    },
    /// A response to one of our requests.
    Response {
        /// The id of the request it answers.
        id: RequestId,
        /// The result, or the error.
        outcome: Result<Value, RpcError>,
    },
}

/// Why bytes are not a JSON-RPC message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than the bound.
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// A JSON array (a batch).
    #[error("batches are not supported")]
    Batch,
    /// JSON but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// `jsonrpc` is not `"2.0"`.
    #[error("jsonrpc is not \"2.0\"")]
    Version,
    /// The id is neither a number nor a string.
    #[error("bad id")]
    Id,
    /// Neither a method nor a result or error.
    #[error("neither a request nor a response")]
    Shape,
    /// An error object without an integer code or a string message.
    #[error("bad error object")]
    ErrorObject,
}

/// Parse one message of at most `max` bytes.
pub fn parse(bytes: &[u8], max: usize) -> Result<Message, ParseError> {
    if bytes.len() > max {
        return Err(ParseError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let mut obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(ParseError::Batch),
        _ => return Err(ParseError::NotObject),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::Version);
    }
    let id = match obj.remove("id") {
        None => None,
        Some(Value::Number(n)) => Some(RequestId::Num(n.as_i64().ok_or(ParseError::Id)?)),
        Some(Value::String(s)) => Some(RequestId::Str(s)),
        // A response to a request the peer could not read carries a null id.
        Some(Value::Null) if obj.contains_key("error") => Some(RequestId::Num(-1)),
        Some(_) => return Err(ParseError::Id),
    };
    let params = obj.remove("params").unwrap_or(Value::Null);
    if let Some(method) = obj.remove("method") {
        let Value::String(method) = method else {
            return Err(ParseError::Shape);
        };
        return Ok(match id {
            Some(id) => Message::Request { id, method, params },
            None => Message::Notification { method, params },
        });
    }
    let id = id.ok_or(ParseError::Shape)?;
    let outcome = match (obj.remove("result"), obj.remove("error")) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(rpc_error(error)?),
        _ => return Err(ParseError::Shape),
    };
    Ok(Message::Response { id, outcome })
}

fn rpc_error(error: Value) -> Result<RpcError, ParseError> {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error.get("message").and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => Ok(RpcError {
            code,
            message: message.to_string(),
        }),
        _ => Err(ParseError::ErrorObject),
    }
}

fn object(pairs: Vec<(&str, Value)>) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("jsonrpc".into(), json!("2.0"));
    for (k, v) in pairs {
        map.insert(k.into(), v);
    }
    Value::Object(map).to_string().into_bytes()
}

/// A request from the client (params left out when `Null`).
pub fn encode_request(id: i64, method: &str, params: Value) -> Vec<u8> {
    let mut pairs = vec![("id", json!(id)), ("method", json!(method))];
    if !params.is_null() {
        pairs.push(("params", params));
    }
    object(pairs)
}

/// A notification from the client (params left out when `Null`).
pub fn encode_notification(method: &str, params: Value) -> Vec<u8> {
    let mut pairs = vec![("method", json!(method))];
    if !params.is_null() {
        pairs.push(("params", params));
    }
    object(pairs)
}

/// The client's answer to a server request: a result, or an error.
pub fn encode_response(id: &RequestId, outcome: Result<Value, RpcError>) -> Vec<u8> {
    let body = match outcome {
        Ok(result) => ("result", result),
        Err(e) => ("error", json!({"code": e.code, "message": e.message})),
    };
    object(vec![("id", id.to_json()), body])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Message, ParseError> {
        parse(s.as_bytes(), MAX_MESSAGE_BYTES)
    }

    #[test]
    fn the_three_shapes_parse() {
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}"#),
            Ok(Message::Response {
                id: RequestId::Num(3),
                outcome: Ok(json!({"tools": []}))
            })
        );
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#),
            Ok(Message::Request {
                id: RequestId::Str("a".into()),
                method: "ping".into(),
                params: Value::Null
            })
        );
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#),
            Ok(Message::Notification {
                method: "notifications/tools/list_changed".into(),
                params: Value::Null
            })
        );
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"bad"}}"#),
            Ok(Message::Response {
                id: RequestId::Num(4),
                outcome: Err(RpcError {
                    code: -32602,
                    message: "bad".into()
                })
            })
        );
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert_eq!(p("[]"), Err(ParseError::Batch));
        assert_eq!(p("3"), Err(ParseError::NotObject));
        assert_eq!(p(r#"{"id":1,"result":1}"#), Err(ParseError::Version));
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","id":1.5,"result":1}"#),
            Err(ParseError::Id)
        );
        assert_eq!(p(r#"{"jsonrpc":"2.0","id":1}"#), Err(ParseError::Shape));
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#),
            Err(ParseError::Shape)
        );
        assert_eq!(
            p(r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#),
            Err(ParseError::ErrorObject)
        );
        assert!(matches!(p("{"), Err(ParseError::Json(_))));
        assert_eq!(
            parse(b"{}", 1),
            Err(ParseError::TooLarge { len: 2, max: 1 })
        );
    }

    #[test]
    fn what_the_client_sends_parses_back() {
        let req = encode_request(7, "tools/list", json!({"cursor": "c"}));
        assert_eq!(
            parse(&req, MAX_MESSAGE_BYTES),
            Ok(Message::Request {
                id: RequestId::Num(7),
                method: "tools/list".into(),
                params: json!({"cursor": "c"})
            })
        );
        let note = encode_notification("notifications/initialized", Value::Null);
        assert_eq!(
            String::from_utf8(note).unwrap(),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        );
        let resp = encode_response(&RequestId::Str("s".into()), Ok(json!({})));
        assert!(matches!(
            parse(&resp, MAX_MESSAGE_BYTES),
            Ok(Message::Response { .. })
        ));
    }
}
