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

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

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
}
