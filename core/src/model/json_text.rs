//! JSON text written straight into a `String`, as serde_json writes it compactly, for the
//! request bodies of a channel hop (a model turn's, a Bot API call's): serde_json's
//! serialiser costs several hundred instructions per object member (three writes through
//! `io::Write` per string), a body written here a few dozen.

use serde_json::{Map, Value};

use crate::frame::push_json_str;

/// `v` as serde_json's compact text (what `v.to_string()` gives), written by
/// [`push_json_value`]: a request body built as a `Value` (a Bot API call's), a transcript
/// message's encoding.
pub(crate) fn to_text(v: &Value) -> String {
    let mut out = String::new();
    push_json_value(&mut out, v);
    out
}

/// Append `items` as a JSON array, each written by `push`.
pub(crate) fn push_array<T>(out: &mut String, items: &[T], push: impl Fn(&T, &mut String)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push(item, out);
    }
    out.push(']');
}

/// Append `v` as serde_json writes it compactly: object members in the map's (sorted)
/// order, strings escaped alike, numbers in serde_json's own notation. A schema written
/// through serde_json's serialiser cost ~600 instructions per member (callgrind).
pub(crate) fn push_json_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // `Number`'s text is what serde_json writes for it.
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_json_str(out, s),
        Value::Array(items) => push_array(out, items, |v, out| push_json_value(out, v)),
        Value::Object(map) => push_json_object(out, map),
    }
}

/// Append `map` as [`push_json_value`] writes it as a `Value::Object`.
pub(crate) fn push_json_object(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_json_value(out, v);
    }
    out.push('}');
}

/// Append `n` in decimal, as serde_json writes an unsigned number.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        // `rest % 10` is a digit: the cast keeps it.
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(digits.get(at..).unwrap_or_default()).unwrap_or_default());
}

/// A JSON object written member by member, as serde_json writes a `Value` object: the
/// caller gives the members in sorted order (a `Value` object's), keys that need no escaping.
/// What a row or body built as a `Value` only to be encoded is written with instead (a
/// `json!` of a struct cost ~1,000 instructions a member to build, encode and drop).
pub(crate) struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    /// Open an object in `out`.
    pub(crate) fn new(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    /// Start member `key`: the buffer to write its value into.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// Member `key`, a string.
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_json_str(self.key(key), value);
        self
    }

    /// Member `key`, a string, left out when `None`.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    /// Member `key`, a string or `null`.
    pub(crate) fn str_or_null(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    /// Member `key`, an unsigned number.
    pub(crate) fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        push_u64(self.key(key), value);
        self
    }

    /// Member `key`, a signed number.
    pub(crate) fn i64(&mut self, key: &str, value: i64) -> &mut Self {
        let out = self.key(key);
        if value < 0 {
            out.push('-');
        }
        push_u64(out, value.unsigned_abs());
        self
    }

    /// Member `key`, a signed number, left out when `None`.
    pub(crate) fn opt_i64(&mut self, key: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.i64(key, v);
        }
        self
    }

    /// Member `key`, `true` or `false`.
    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// Close the object.
    pub(crate) fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// Any text for a row or body encoder's identity test: plain, arbitrary, or made of the
    /// characters JSON escapes (and a few that it could but serde_json does not).
    pub(crate) fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z0-9 ]{0,12}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}\u{7f}é😀<>/]{0,8}"
        ]
    }

    /// A schema with every kind of JSON value in it.
    pub(crate) fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["a", "\u{1f}\\"],
            "properties": {
                "n": {"minimum": -3, "maximum": 18_446_744_073_709_551_615_u64, "multipleOf": 0.1},
                "f": {"default": [1.5e300, -0.0, 2.0, 1e-7, 123_456_789.125]},
                "b": {"default": true, "x": false, "y": null, "e": [], "o": {}},
                "é ✓ 😀": {"enum": ["\t", "\u{7f}", "</script>"]},
            },
            "additionalProperties": false,
        })
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let message = json!({"role": "assistant", "content": [{"type": "text", "text": "Echo: \"hi\"\n"}],
            "timestamp": 1_765_000_000_000_u64, "__openclaw": {"id": "u-1", "runId": "r-1"}});
        let mut values = vec![
            schema(),
            message,
            Value::Null,
            json!([]),
            json!({}),
            json!(""),
        ];
        if let Value::Object(m) = schema() {
            values.extend(m.into_iter().map(|(_, v)| v));
        }
        for v in values {
            assert_eq!(to_text(&v), v.to_string(), "{v}");
        }
    }

    #[test]
    fn numbers_and_objects_are_written_as_serde_json_writes_them() {
        for n in [0, 7, 10, 99, 100, 1_765_000_000_000, u64::MAX / 7, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, json!(n).to_string());
        }
        let mut out = String::new();
        Object::new(&mut out)
            .bool("a", true)
            .opt_str("b", None)
            .str_or_null("bb", None)
            .opt_str("c", Some("\"q\"\n"))
            .u64("d", 42)
            .i64("d1", i64::MIN)
            .opt_i64("d2", Some(-7))
            .opt_i64("d3", None)
            .i64("d4", 0)
            .str("e", "é")
            .bool("f", false)
            .end();
        let v = json!({"a": true, "bb": null, "c": "\"q\"\n", "d": 42, "d1": i64::MIN, "d2": -7, "d4": 0, "e": "é", "f": false});
        assert_eq!(out, v.to_string());
        let mut empty = String::new();
        Object::new(&mut empty).end();
        assert_eq!(empty, "{}");
    }
}
