//! The independent client's side of the gateway protocol, written from the protocol spec and
//! not from the bench's client: the frames it sends (shaped as the real `openclaw gateway
//! probe` sends them: ids `N:<uuid>`, `client.id` `cli` in mode `probe`, protocol 3 to 4, a
//! `deviceFamily` and an `instanceId`, `params:{}` on `health`) and what it makes of each
//! frame it reads (parsed whole with `serde_json`, as a JavaScript client's `JSON.parse`).

use serde_json::{Value, json};

/// A frame the client read, as far as the measurements care.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// The `connect.challenge` event, with its nonce.
    Challenge {
        /// The nonce a signed device would sign.
        nonce: String,
    },
    /// A response to request `id`.
    Response {
        /// The request id it answers.
        id: String,
        /// `Ok(payload type)` (`hello-ok` for a `connect`, none for `health`), or the error
        /// message.
        result: Result<Option<String>, String>,
    },
    /// Any other event (`tick`, `presence`, ...).
    Event {
        /// Its name.
        name: String,
    },
}

/// Why a frame could not be read as a gateway frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A JSON object without the members a frame of its type has.
    #[error("unexpected frame: {0}")]
    Unexpected(String),
}

/// Read one text frame the gateway sent.
pub fn parse(text: &str) -> Result<Frame, ParseError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let unexpected = || ParseError::Unexpected(text.chars().take(120).collect());
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    match s("/type") {
        Some("event") => {
            let name = s("/event").ok_or_else(unexpected)?;
            if name == "connect.challenge" {
                let nonce = s("/payload/nonce").ok_or_else(unexpected)?;
                return Ok(Frame::Challenge {
                    nonce: nonce.into(),
                });
            }
            Ok(Frame::Event { name: name.into() })
        }
        Some("res") => {
            let id = s("/id").ok_or_else(unexpected)?.to_string();
            let result = match v.get("ok").and_then(Value::as_bool) {
                Some(true) => Ok(s("/payload/type").map(String::from)),
                Some(false) => Err(s("/error/message").unwrap_or("no message").to_string()),
                None => return Err(unexpected()),
            };
            Ok(Frame::Response { id, result })
        }
        _ => Err(unexpected()),
    }
}

/// What identifies one client thread's requests: a UUID-shaped text of its own, so request
/// ids are `N:<uuid>` as the real CLI's.
#[derive(Clone, Debug)]
pub struct Ids {
    uuid: String,
    next: u64,
}

impl Ids {
    /// Ids around `seed` (16 bytes, laid out as a UUID).
    pub fn new(seed: [u8; 16]) -> Self {
        let hex = data_encoding::HEXLOWER.encode(&seed);
        let uuid = [
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..],
        ]
        .join("-");
        Self { uuid, next: 0 }
    }

    /// The next request id.
    pub fn next(&mut self) -> String {
        self.next += 1;
        format!("{}:{}", self.next, self.uuid)
    }

    /// The UUID, used as the client's `instanceId`.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// The `connect` request with id `id`: token auth, no device, as `openclaw gateway probe`.
pub fn connect(id: &str, token: &str, instance: &str) -> String {
    json!({
        "type": "req",
        "id": id,
        "method": "connect",
        "params": {
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": {
                "id": "cli",
                "version": "dev",
                "platform": "linux",
                "deviceFamily": "Linux",
                "mode": "probe",
                "instanceId": instance,
            },
            "caps": [],
            "auth": {"token": token},
            "role": "operator",
            "scopes": ["operator.read"],
        },
    })
    .to_string()
}

/// The `health` request with id `id`.
pub fn health(id: &str) -> String {
    json!({"type": "req", "id": id, "method": "health", "params": {}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_gives_its_nonce() {
        let f = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":5}}"#;
        assert_eq!(
            parse(f),
            Ok(Frame::Challenge {
                nonce: "n-1".into()
            })
        );
        let no_nonce = r#"{"type":"event","event":"connect.challenge","payload":{}}"#;
        assert!(matches!(parse(no_nonce), Err(ParseError::Unexpected(_))));
    }

    #[test]
    fn responses_carry_their_id_and_payload_type_or_error() {
        let hello =
            r#"{"type":"res","id":"1:u","ok":true,"payload":{"type":"hello-ok","protocol":4}}"#;
        assert_eq!(
            parse(hello),
            Ok(Frame::Response {
                id: "1:u".into(),
                result: Ok(Some("hello-ok".into()))
            })
        );
        let health = r#"{"type":"res","id":"2:u","ok":true,"payload":{"ok":true,"ts":1}}"#;
        assert_eq!(
            parse(health),
            Ok(Frame::Response {
                id: "2:u".into(),
                result: Ok(None)
            })
        );
        let refused = r#"{"type":"res","id":"1:u","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized"}}"#;
        assert_eq!(
            parse(refused),
            Ok(Frame::Response {
                id: "1:u".into(),
                result: Err("unauthorized".into())
            })
        );
    }

    #[test]
    fn events_and_garbage() {
        let tick = r#"{"type":"event","event":"tick","payload":{"ts":1}}"#;
        assert_eq!(
            parse(tick),
            Ok(Frame::Event {
                name: "tick".into()
            })
        );
        assert!(matches!(parse("nope"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse("[1]"), Err(ParseError::Unexpected(_))));
        assert!(matches!(
            parse(r#"{"type":"res","id":"1"}"#),
            Err(ParseError::Unexpected(_))
        ));
    }

    #[test]
    fn ids_count_up_around_a_uuid() {
        let mut ids = Ids::new([0xab; 16]);
        assert_eq!(ids.uuid(), "abababab-abab-abab-abab-abababababab");
        assert_eq!(ids.next(), "1:abababab-abab-abab-abab-abababababab");
        assert!(ids.next().starts_with("2:"));
    }

    #[test]
    fn requests_are_what_the_cli_sends() {
        let c: Value = serde_json::from_str(&connect("1:x", "tok", "inst")).unwrap();
        assert_eq!(c["type"], "req");
        assert_eq!(c["id"], "1:x");
        assert_eq!(c["method"], "connect");
        assert_eq!(c.pointer("/params/auth/token"), Some(&json!("tok")));
        assert_eq!(c.pointer("/params/client/mode"), Some(&json!("probe")));
        assert_eq!(c.pointer("/params/client/instanceId"), Some(&json!("inst")));
        let h: Value = serde_json::from_str(&health("2:x")).unwrap();
        assert_eq!(
            h,
            json!({"type":"req","id":"2:x","method":"health","params":{}})
        );
    }
}
