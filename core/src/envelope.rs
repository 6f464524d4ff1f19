//! A request frame's envelope read by a scan of its top level, without serde: the common
//! request (`{"type":"req","id":…,"method":…,"params":…}`, keys in any order, `params` optional)
//! with its keys and its `type`, `id` and `method` written without escapes. Its params are read
//! by serde_json from where they start, as the serde envelope reads them. Anything else (an
//! escape, another or a repeated key, a value of the wrong kind, an empty `id`, anything that
//! is not JSON) is not read here: the serde path decides it, so the scan only ever gives what
//! the serde path gives.

use std::borrow::Cow;

use crate::frame::{Params, Request};
use crate::json_plain::plain_len;

/// serde_json's nesting limit counts the envelope's own object, which params read alone do
/// not: params with this many `{` or `[` (or more) are left to the serde path, whose limit
/// then decides them.
const PARAMS_BRACKETS_LEFT_TO_SERDE: usize = 127;

/// The request `text` holds, when the scan reads it with certainty; `None` otherwise.
pub(crate) fn scan<'a, P: Params<'a>>(text: &'a str) -> Option<Request<'a, P>> {
    let mut s = Scan { text, at: 0 };
    s.expect(b'{')?;
    let (mut kind, mut id, mut method, mut params) = (None, None, None, None);
    loop {
        let slot = match s.key()? {
            Key::Type => &mut kind,
            Key::Id => &mut id,
            Key::Method => &mut method,
            Key::Params => {
                s.expect(b':')?;
                if params.is_some() {
                    return None;
                }
                params = Some(s.params::<P>()?);
                if s.object_ends()? {
                    break;
                }
                continue;
            }
        };
        s.expect(b':')?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(s.plain_str()?);
        if s.object_ends()? {
            break;
        }
    }
    if s.skip_ws() != text.len() || kind? != "req" {
        return None;
    }
    let (id, method) = (id?, method?);
    if id.is_empty() || method.is_empty() {
        return None;
    }
    Some(Request {
        id: Cow::Borrowed(id),
        method: Cow::Borrowed(method),
        params: params.flatten().unwrap_or_default(),
    })
}

/// A key of the envelope.
#[derive(Clone, Copy)]
enum Key {
    Type,
    Id,
    Method,
    Params,
}

/// A position in the text being scanned.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    /// Skip JSON whitespace; the position after it.
    fn skip_ws(&mut self) -> usize {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.text.as_bytes().get(self.at) {
            self.at += 1;
        }
        self.at
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        let b = *self.text.as_bytes().get(self.skip_ws())?;
        self.at += 1;
        Some(b)
    }

    /// Consume `b` after whitespace.
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// The next member's key, if it is one of the envelope's written plainly (its closing
    /// quote ends it: no other key starts with one of them).
    fn key(&mut self) -> Option<Key> {
        let rest = self.text.as_bytes().get(self.skip_ws()..)?;
        // Told apart by the name's first letter; the quotes and name must all be there.
        let (name, key): (&[u8], Key) = match rest.get(1)? {
            b't' => (b"\"type\"", Key::Type),
            b'i' => (b"\"id\"", Key::Id),
            b'm' => (b"\"method\"", Key::Method),
            b'p' => (b"\"params\"", Key::Params),
            _ => return None,
        };
        if rest.get(..name.len())? != name {
            return None;
        }
        self.at += name.len();
        Some(key)
    }

    /// A string with no escapes (and no control character, which JSON refuses), borrowed.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = self.text.get(self.at..)?;
        let len = plain_len(rest.as_bytes());
        if rest.as_bytes().get(len) != Some(&b'"') {
            return None;
        }
        self.at += len + 1;
        rest.get(..len)
    }

    /// After a member: `true` at the object's `}`, `false` at a `,`.
    fn object_ends(&mut self) -> Option<bool> {
        match self.next()? {
            b'}' => Some(true),
            b',' => Some(false),
            _ => None,
        }
    }

    /// The params value, read by serde_json from here as the serde envelope reads it
    /// (`Option<P>`: `null` is none).
    fn params<P: Params<'a>>(&mut self) -> Option<Option<P>> {
        let rest = self.text.get(self.at..)?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Option<P>>();
        let value = values.next()?.ok()?;
        let raw = rest.get(..values.byte_offset())?;
        if raw.len() >= PARAMS_BRACKETS_LEFT_TO_SERDE
            && raw.bytes().filter(|b| matches!(b, b'{' | b'[')).count()
                >= PARAMS_BRACKETS_LEFT_TO_SERDE
        {
            return None;
        }
        self.at += raw.len();
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::frame::parse_request;

    fn scanned(text: &str) -> Option<Request<'_>> {
        scan::<Value>(text)
    }

    #[test]
    fn reads_the_common_request_and_borrows_its_strings() {
        let text = r#"{"id":"2:0b5e","method":"health","params":{},"type":"req"}"#;
        let r = scanned(text).expect("scanned");
        assert!(matches!(r.id, Cow::Borrowed("2:0b5e")));
        assert!(matches!(r.method, Cow::Borrowed("health")));
        assert_eq!(r.params, json!({}));
        assert_eq!(Ok(r), parse_request(text));
    }

    #[test]
    fn params_absent_or_null_are_null() {
        for text in [
            r#"{"type":"req","id":"1","method":"health"}"#,
            r#"{"type":"req","id":"1","method":"health","params":null}"#,
            r#"{"type":"req","params": null ,"id":"1","method":"health"}"#,
        ] {
            let r = scanned(text).expect(text);
            assert_eq!(r.params, Value::Null, "{text}");
            assert_eq!(Ok(r), parse_request(text), "{text}");
        }
    }

    #[test]
    fn whitespace_anywhere_json_allows_it() {
        let text = " \t\r\n{ \"type\" :\n\"req\" ,\"id\":\"7\",\r\"method\"\t:\"x.y\", \"params\" : [1, {\"a\" : null}] }\n ";
        let r = scanned(text).expect("scanned");
        assert_eq!((&*r.id, &*r.method), ("7", "x.y"));
        assert_eq!(r.params, json!([1, {"a": null}]));
        assert_eq!(Ok(r), parse_request(text));
        // Form feed and a no-break space are not JSON whitespace.
        for text in [
            "\u{c}{\"type\":\"req\",\"id\":\"7\",\"method\":\"x\"}",
            "{\"type\":\"req\",\"id\":\"7\",\"method\":\"x\"}\u{a0}",
        ] {
            assert!(scanned(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn escapes_are_left_to_serde() {
        for text in [
            r#"{"type":"req","id":"q\"7","method":"health"}"#,
            r#"{"type":"req","id":"\u0037","method":"health"}"#,
            r#"{"type":"req","id":"7","method":"heal\th"}"#,
            r#"{"typ\u0065":"req","id":"7","method":"health"}"#,
            r#"{"type":"r\u0065q","id":"7","method":"health"}"#,
        ] {
            assert!(scanned(text).is_none(), "{text}");
            assert!(parse_request(text).is_ok(), "{text}");
        }
        // A control character is not JSON at all.
        let text = "{\"type\":\"req\",\"id\":\"a\u{1}b\",\"method\":\"health\"}";
        assert!(scanned(text).is_none());
        assert_eq!(parse_request(text), Err(crate::frame::FrameError::NotJson));
    }

    #[test]
    fn repeated_unknown_or_missing_keys_are_left_to_serde() {
        for text in [
            r#"{"type":"req","id":"1","id":"2","method":"health"}"#,
            r#"{"type":"req","id":"1","method":"health","params":{},"params":{}}"#,
            r#"{"type":"req","id":"1","method":"health","traceparent":"00-ab"}"#,
            r#"{"type":"req","id":"1","method":"health","x":1}"#,
            r#"{"type":"req","method":"health"}"#,
            r#"{"type":"req","id":"1"}"#,
            r#"{"id":"1","method":"health"}"#,
            r#"{}"#,
        ] {
            assert!(scanned(text).is_none(), "{text}");
        }
    }

    #[test]
    fn wrong_values_and_non_objects_are_left_to_serde() {
        for text in [
            r#"{"type":"res","id":"1","method":"health"}"#,
            r#"{"type":"req","id":"","method":"health"}"#,
            r#"{"type":"req","id":"1","method":""}"#,
            r#"{"type":"req","id":7,"method":"health"}"#,
            r#"{"type":"req","id":"1","method":null}"#,
            r#"{"type":"req","id":"1","method":"health","params":}"#,
            r#"{"type":"req","id":"1","method":"health","params":{]}"#,
            r#"{"type":"req","id":"1","method":"health","params":tru}"#,
            r#"{"type":"req","id":"1","method":"health","params":1x}"#,
            r#"{"type":"req","id":"1","method":"health",}"#,
            r#"{"type":"req","id":"1","method":"health"}x"#,
            r#"{"type":"req","id":"1","method":"health""#,
            r#"{"type":"req","id":"1","method":"health"#,
            r#"["type","req"]"#,
            r#""req""#,
            "null",
            "",
            "nope",
        ] {
            assert!(scanned(text).is_none(), "{text}");
        }
    }

    #[test]
    fn params_of_any_kind_read_as_serde_reads_them() {
        for params in [
            "{}",
            "[]",
            "1",
            "-0.5e3",
            "true",
            "\"s\\u00e9\"",
            r#"{"a":[1,2.5,"x"],"b":{"c":null}}"#,
        ] {
            let text = format!(r#"{{"type":"req","id":"1","method":"m","params":{params}}}"#);
            let r = scanned(&text).expect(&text);
            assert_eq!(Ok(r), parse_request(&text), "{text}");
        }
    }

    #[test]
    fn deep_params_are_left_to_serde_s_nesting_limit() {
        // 127 levels of params are one too many inside the envelope (serde_json's limit is 128
        // levels in all), though they read alone.
        for depth in [125, 126, 127, 128] {
            let params = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!(r#"{{"type":"req","id":"1","method":"m","params":{params}}}"#);
            let r = scanned(&text);
            assert!(
                r.is_some() == (depth < PARAMS_BRACKETS_LEFT_TO_SERDE),
                "depth {depth}"
            );
            if let Some(r) = r {
                assert_eq!(Ok(r), parse_request(&text), "depth {depth}");
            }
        }
        let text = format!(
            r#"{{"type":"req","id":"1","method":"m","params":{}{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        assert_eq!(parse_request(&text), Err(crate::frame::FrameError::NotJson));
    }

    /// Keys a generated frame adds beside the envelope's: the serde path's optional ones,
    /// others, escaped spellings, the envelope's own again.
    const EXTRA_KEYS: &[&str] = &[
        "traceparent",
        "expectedProfileId",
        "x",
        "typ\\u0065",
        "",
        "Type",
        "id\\\"",
        "type",
        "id",
        "method",
        "params",
    ];

    /// Values a generated frame puts in place of a good one: strings with and without
    /// escapes, every other kind, and text that is not JSON.
    fn bad_values() -> Vec<String> {
        let mut v: Vec<String> = [
            r#""req""#,
            r#""res""#,
            r#""""#,
            r#""1""#,
            r#""q\"7""#,
            r#""\u0037""#,
            r#""a\\b""#,
            "\"a\u{1}b\"",
            r#""é✓""#,
            "null",
            "7",
            "-1.5e2",
            "1x",
            "true",
            "tru",
            "{}",
            "[]",
            r#"{"a":[1,{}],"b":"\n"}"#,
            r#"{"minProtocol":3,"maxProtocol":4,"client":{"id":"cli"}}"#,
            "[",
            "{]",
            r#""open"#,
            r#"{"a":1,}"#,
        ]
        .map(String::from)
        .to_vec();
        for depth in [126, 127] {
            v.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        }
        v
    }

    /// The envelope's keys and their good values.
    const GOOD: [(&str, &str); 4] = [
        ("type", r#""req""#),
        ("id", r#""2:0b5e-1a9c""#),
        ("method", r#""health""#),
        ("params", "{}"),
    ];
    // The first of each is the usual one, taken far more often than the others.
    const SPACES: &[&str] = &["", " ", "\n\t\r ", "\u{c}", "\u{a0}"];
    const COMMAS: &[&str] = &[",", ",,", ";", ""];
    const OPENS: &[&str] = &["{", "[", "", "{{"];
    const ENDS: &[&str] = &["}", "", "}}", "}x", "]", "}\u{0}"];

    /// `list[i]` for `i` in range, else the usual first entry.
    fn usual<'s>(list: &[&'s str], i: usize) -> &'s str {
        list.get(i).copied().unwrap_or(list[0])
    }

    /// A member of a generated frame: key, value, whitespace around the key and the colon,
    /// and the separator before it, each index mostly out of range (the usual entry).
    type Member = (usize, usize, usize, usize, usize);

    fn member() -> impl proptest::strategy::Strategy<Value = Member> {
        (0..40usize, 0..250usize, 0..50usize, 0..50usize, 0..60usize)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// The scan, with serde behind it, answers every frame exactly as serde alone does.
        #[test]
        fn the_scan_agrees_with_serde_on_generated_frames(
            order in proptest::strategy::Strategy::prop_shuffle(proptest::strategy::Just(vec![0usize, 1, 2, 3])),
            good in proptest::collection::vec(member(), 4),
            extra in proptest::collection::vec(member(), 0..3),
            with_extra in proptest::bool::weighted(0.3),
            places in proptest::collection::vec(0..6usize, 3),
            omit in 0..16usize,
            ends in (0..30usize, 0..60usize, 0..50usize),
        ) {
            let bad = bad_values();
            let mut members: Vec<(&str, String, &Member)> = order
                .iter()
                .filter(|&&k| k != omit)
                .map(|&k| {
                    let (key, value) = GOOD[k];
                    let m = &good[k];
                    let value = bad.get(m.1).cloned().unwrap_or_else(|| value.to_string());
                    (key, value, m)
                })
                .collect();
            for (m, at) in extra.iter().zip(&places).filter(|_| with_extra) {
                let key = EXTRA_KEYS[m.0 % EXTRA_KEYS.len()];
                let value = bad[m.1 % bad.len()].clone();
                members.insert((*at).min(members.len()), (key, value, m));
            }
            let (open, end, outer) = ends;
            let mut text = String::from(usual(SPACES, outer));
            text.push_str(usual(OPENS, open));
            for (i, (key, value, m)) in members.iter().enumerate() {
                let &(_, _, before, after, comma) = *m;
                if i > 0 {
                    text.push_str(usual(COMMAS, comma));
                }
                text.push_str(usual(SPACES, before));
                text.push('"');
                text.push_str(key);
                text.push('"');
                text.push_str(usual(SPACES, after));
                text.push(':');
                text.push_str(value);
            }
            text.push_str(usual(ENDS, end));
            text.push_str(usual(SPACES, outer));
            proptest::prop_assert_eq!(
                crate::frame::parse_request_as::<Value>(&text),
                crate::frame::parse_request_by_serde::<Value>(&text),
                "{}", text
            );
            proptest::prop_assert_eq!(
                crate::frame::parse_request_as::<crate::connect_fields::ConnectFields<'_>>(&text),
                crate::frame::parse_request_by_serde(&text),
                "{}", text
            );
        }
    }
    #[test]
    fn oversize_strings_are_read_whole() {
        let id = "i".repeat(100_000);
        let text = format!(r#"{{"type":"req","id":"{id}","method":"health","params":{{}}}}"#);
        let r = scanned(&text).expect("scanned");
        assert_eq!(r.id.len(), 100_000);
        assert_eq!(Ok(r), parse_request(&text));
    }
}
