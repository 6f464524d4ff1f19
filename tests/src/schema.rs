//! Upstream's machine-readable frame schema and validation against it.
//!
//! The schema is `protocol.schema.json` of `@openclaw/gateway-protocol@2026.9.1` (draft 7, 877
//! `definitions`), installed by `scripts/interop-deps.sh`. Every frame the gateway sends must be
//! a `ResponseFrame` or an `EventFrame`; payloads are checked against their definition where
//! upstream has one: `HelloOk` for `hello-ok`, the error details by `details.code`, events by
//! TypeBox naming (`tick` → `TickEvent`), results by method (`logs.tail` → `LogsTailResult`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::deps;

/// Additions of the 2026.9.6 server over the published 2026.9.1 schema, patched in here and
/// nowhere else (upstream-protocol.md §11: 2026.9.6's own bundled schema allows them).
/// Each entry: the JSON pointer of a `properties` object, the property, its schema.
fn upstream_additions() -> Vec<(&'static str, &'static str, Value)> {
    let name = json!({"type": "string", "minLength": 1});
    vec![
        (
            "/definitions/HelloOk/properties/auth/properties",
            "method",
            name.clone(),
        ),
        (
            "/definitions/HelloOk/properties",
            "controlUiLinkReaders",
            json!({"type": "array"}),
        ),
        (
            "/definitions/PresenceEntry/properties",
            "clientId",
            name.clone(),
        ),
        (
            "/definitions/HelloOk/properties/snapshot/properties/presence/items/properties",
            "clientId",
            name.clone(),
        ),
        (
            "/definitions/Snapshot/properties/presence/items/properties",
            "clientId",
            name,
        ),
    ]
}

/// Where a payload's schema lives: a JSON pointer into the schema document.
const HEALTH: &str = "/definitions/HelloOk/properties/snapshot/properties/health";

/// The loaded, patched schema and the validators compiled from it so far.
pub struct Schema {
    doc: Value,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Schema {
    /// Load and patch the schema from `text`.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut doc: Value =
            serde_json::from_str(text).map_err(|e| format!("schema is not JSON: {e}"))?;
        for (pointer, prop, schema) in upstream_additions() {
            let props = doc.pointer_mut(pointer).and_then(Value::as_object_mut);
            let props = props.ok_or_else(|| format!("schema has no {pointer} to patch"))?;
            props.insert(prop.to_string(), schema);
        }
        Ok(Self {
            doc,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the document has something at `pointer`.
    pub fn has(&self, pointer: &str) -> bool {
        self.doc.pointer(pointer).is_some()
    }

    /// Validate `value` against the schema at `pointer` (e.g. `/definitions/HelloOk`).
    pub fn validate_at(&self, pointer: &str, value: &Value) -> Result<(), String> {
        let validator = self.validator(pointer)?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{pointer}: {}", errors.join("; ")))
        }
    }

    fn validator(&self, pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = compiled.get(pointer) {
            return Ok(v.clone());
        }
        if !self.has(pointer) {
            return Err(format!("schema has nothing at {pointer}"));
        }
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": self.doc["definitions"],
            "allOf": [{"$ref": format!("#{pointer}")}],
        });
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&root)
            .map_err(|e| format!("cannot compile {pointer}: {e}"))?;
        let v = Arc::new(v);
        compiled.insert(pointer.to_string(), v.clone());
        Ok(v)
    }

    /// The definition for a name if upstream has one.
    fn definition(&self, name: &str) -> Option<String> {
        let pointer = format!("/definitions/{name}");
        self.has(&pointer).then_some(pointer)
    }

    /// Validate a frame the gateway sent: its envelope, and its payload where upstream's
    /// schema defines it.
    pub fn validate_server_frame(&self, frame: &Value) -> Result<(), String> {
        match frame.get("type").and_then(Value::as_str) {
            Some("res") => {
                self.validate_at("/definitions/ResponseFrame", frame)?;
                if let Some(err) = frame.get("error") {
                    self.validate_error(err)?;
                }
                match frame.get("payload") {
                    Some(p) if p.get("type").and_then(Value::as_str) == Some("hello-ok") => {
                        self.validate_at("/definitions/HelloOk", p)
                    }
                    _ => Ok(()),
                }
            }
            Some("event") => {
                self.validate_at("/definitions/EventFrame", frame)?;
                let event = frame["event"].as_str().unwrap_or_default();
                self.validate_event(event, frame.get("payload").unwrap_or(&Value::Null))
            }
            other => Err(format!(
                "a gateway never sends a frame of type {other:?}: {frame}"
            )),
        }
    }

    /// Validate the `error` of a failed response, and its `details` by `details.code`
    /// (`MISSING_SCOPE` → `MissingScopeErrorDetails`, …).
    pub fn validate_error(&self, err: &Value) -> Result<(), String> {
        self.validate_at("/definitions/ErrorShape", err)?;
        let Some(code) = err.pointer("/details/code").and_then(Value::as_str) else {
            return Ok(());
        };
        match self.definition(&format!("{}ErrorDetails", pascal(code, '_'))) {
            Some(pointer) => self.validate_at(&pointer, &err["details"]),
            None => Ok(()),
        }
    }

    /// Validate an event payload: `health` as the hello snapshot's health, `presence` as a
    /// list of `PresenceEntry`, others by TypeBox naming (`node.invoke.request` →
    /// `NodeInvokeRequestEvent`) where defined.
    pub fn validate_event(&self, event: &str, payload: &Value) -> Result<(), String> {
        match event {
            "health" => self.validate_at(HEALTH, payload),
            "presence" => {
                let entries = payload.get("presence").and_then(Value::as_array);
                let entries = entries
                    .ok_or_else(|| format!("presence event without a presence list: {payload}"))?;
                entries
                    .iter()
                    .try_for_each(|e| self.validate_at("/definitions/PresenceEntry", e))
            }
            _ => match self.definition(&format!("{}Event", pascal(event, '.'))) {
                Some(pointer) => self.validate_at(&pointer, payload),
                None => Ok(()),
            },
        }
    }

    /// Validate the payload of a successful response to `method`: `health` as the hello
    /// snapshot's health, `system-presence` as a list of `PresenceEntry`, others by TypeBox
    /// naming (`logs.tail` → `LogsTailResult`) where defined.
    pub fn validate_result(&self, method: &str, payload: &Value) -> Result<(), String> {
        match method {
            "health" => self.validate_at(HEALTH, payload),
            "system-presence" => {
                let entries = payload
                    .as_array()
                    .ok_or_else(|| format!("system-presence is not a list: {payload}"))?;
                entries
                    .iter()
                    .try_for_each(|e| self.validate_at("/definitions/PresenceEntry", e))
            }
            _ => match self.definition(&format!("{}Result", pascal(method, '.'))) {
                Some(pointer) => self.validate_at(&pointer, payload),
                None => Ok(()),
            },
        }
    }
}

/// TypeBox naming: `node.pair.list` → `NodePairList`, `MISSING_SCOPE` → `MissingScope`,
/// `system-presence` → `SystemPresence`.
pub fn pascal(name: &str, sep: char) -> String {
    name.split([sep, '-'])
        .map(|part| {
            let lower = if sep == '_' {
                part.to_ascii_lowercase()
            } else {
                part.to_string()
            };
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The schema installed by `scripts/interop-deps.sh`. `None` (with a loud message, once) when
/// it is missing outside CI; under `CI=true` a missing schema is a panic.
pub fn schema() -> Option<&'static Schema> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let path = deps::schema_file();
            deps::available("schema", std::slice::from_ref(&path)).then_some(())?;
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some(Schema::from_text(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .as_ref()
}

/// Validate a frame the gateway sent against upstream's schema (see [`Schema::validate_server_frame`]).
/// Without the schema outside CI this checks nothing (and says so once on stderr).
pub fn validate_server_frame(frame: &Value) -> Result<(), String> {
    schema().map_or(Ok(()), |s| s.validate_server_frame(frame))
}

/// Text frames in a server-to-client byte stream: the HTTP response head is skipped, then
/// unmasked WebSocket frames are read until the bytes run out. Control frames are skipped;
/// a close frame ends the stream.
pub fn server_text_frames(bytes: &[u8]) -> Vec<String> {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4);
    let mut rest = bytes.get(head_end..).unwrap_or_default();
    let mut texts = Vec::new();
    let mut message = Vec::new();
    while let [b0, b1, tail @ ..] = rest {
        let (len, tail) = match b1 & 0x7f {
            126 if tail.len() >= 2 => (
                usize::from(u16::from_be_bytes([tail[0], tail[1]])),
                &tail[2..],
            ),
            127 if tail.len() >= 8 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&tail[..8]);
                (u64::from_be_bytes(n) as usize, &tail[8..])
            }
            n @ 0..=125 => (usize::from(n), tail),
            _ => break,
        };
        let Some(payload) = tail.get(..len) else {
            break;
        };
        match b0 & 0x0f {
            0x8 => break,
            0x1 | 0x0 => {
                message.extend_from_slice(payload);
                if b0 & 0x80 != 0 {
                    texts.push(String::from_utf8_lossy(&message).into_owned());
                    message.clear();
                }
            }
            _ => {}
        }
        rest = &tail[len..];
    }
    texts
}
