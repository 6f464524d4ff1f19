//! Typed method params: serde structs read from the request's `params` by a small deserializer
//! that knows where it is in the document, so every failure is phrased as upstream's validator
//! phrases it (`invalid params: at /nodeId: must be string`) and serde's own wording never
//! reaches a client. This is the one place serde errors become protocol errors.

use core::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::frame::ErrorShape;

/// Read `params` (`null` counts as `{}`) as `P`, or the `INVALID_REQUEST` error upstream gives.
pub(crate) fn parse<P: DeserializeOwned>(params: Value) -> Result<P, ErrorShape> {
    let root = match params {
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    P::deserialize(At {
        value: root,
        path: String::new(),
    })
    .map_err(|e| ErrorShape::invalid(e.to_string()))
}

/// What is wrong with params, and where.
#[derive(Debug)]
pub(crate) struct ParamsError {
    /// JSON pointer of the offending value; `None` until the value's deserializer names it.
    at: Option<String>,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    Unexpected(String),
    Missing(&'static str),
    Type(&'static str),
    Empty,
    /// A value that does not meet what a params type expects (its `expecting` text).
    Expected(String),
}

impl ParamsError {
    fn new(problem: Problem) -> Self {
        Self { at: None, problem }
    }

    /// Name the place of an error that has none yet (the innermost place wins).
    fn at(mut self, path: &str) -> Self {
        if self.at.is_none() {
            self.at = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at.as_deref() {
            None | Some("") => write!(f, "invalid params: at root: ")?,
            Some(path) => write!(f, "invalid params: at {path}: ")?,
        }
        match &self.problem {
            Problem::Unexpected(k) => write!(f, "unexpected property '{k}'"),
            Problem::Missing(k) => write!(f, "must have required property '{k}'"),
            Problem::Type(t) => write!(f, "must be {t}"),
            Problem::Empty => write!(f, "must NOT have fewer than 1 characters"),
            Problem::Expected(e) => write!(f, "must be {e}"),
        }
    }
}

impl std::error::Error for ParamsError {}

impl de::Error for ParamsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(Problem::Expected(msg.to_string()))
    }
    fn invalid_type(_: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(Problem::Expected(exp.to_string()))
    }
    fn invalid_value(_: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(Problem::Expected(exp.to_string()))
    }
    fn invalid_length(_: usize, _: &dyn de::Expected) -> Self {
        Self::new(Problem::Empty)
    }
    fn unknown_field(field: &str, _: &'static [&'static str]) -> Self {
        Self::new(Problem::Unexpected(field.to_string()))
    }
    fn missing_field(field: &'static str) -> Self {
        Self::new(Problem::Missing(field))
    }
}

/// A JSON value and its JSON pointer.
struct At {
    value: Value,
    path: String,
}

impl At {
    fn wrong_type(&self, expected: &'static str) -> ParamsError {
        ParamsError::new(Problem::Type(expected)).at(&self.path)
    }

    fn map<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        let mut entries = self.entries(fields)?;
        visitor
            .visit_map(&mut entries)
            .map_err(|e| e.at(&entries.path))
    }

    /// The properties of an object for a visitor; the part of [`At::map`] that does not depend
    /// on the visitor, so it is compiled once rather than once per params type.
    fn entries(self, fields: Option<&'static [&'static str]>) -> Result<Entries, ParamsError> {
        let obj = match self.value {
            Value::Object(obj) => obj,
            _ => return Err(self.wrong_type("object")),
        };
        // Unexpected properties first, in document order, as upstream reports them.
        if let Some(k) = fields.and_then(|f| obj.keys().find(|k| !f.contains(&k.as_str()))) {
            return Err(ParamsError::new(Problem::Unexpected(k.clone())).at(&self.path));
        }
        Ok(Entries {
            items: obj.into_iter(),
            value: None,
            path: self.path,
        })
    }
}

/// An object's properties, handed to a visitor one by one with their places.
///
/// Its `MapAccess` methods are never inlined: each instance (one per property type, one per
/// params type's property names) is compiled once and called from every params type, instead
/// of being copied into each params type's visitor.
struct Entries {
    items: serde_json::map::IntoIter,
    /// The value of the property whose key was handed out last.
    value: Option<At>,
    /// The object's own place.
    path: String,
}

impl Entries {
    /// The next property's key; its value waits in `self.value`.
    fn next_key(&mut self) -> Option<String> {
        let (key, value) = self.items.next()?;
        let escaped = key.replace('~', "~0").replace('/', "~1");
        self.value = Some(At {
            value,
            path: format!("{}/{escaped}", self.path),
        });
        Some(key)
    }

    /// The value of the property whose key was handed out last.
    fn next_value(&mut self) -> Result<At, ParamsError> {
        self.value
            .take()
            .ok_or_else(|| ParamsError::new(Problem::Expected("a value after its key".into())))
    }
}

impl<'de> de::MapAccess<'de> for Entries {
    type Error = ParamsError;

    #[inline(never)]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamsError> {
        match self.next_key() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    #[inline(never)]
    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ParamsError> {
        seed.deserialize(self.next_value()?)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The items of an array, each with its place; never inlined, as [`Entries`].
struct Items {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    /// The array's own place.
    path: String,
}

impl Items {
    fn new(items: Vec<Value>, path: String) -> Self {
        Items {
            items: items.into_iter().enumerate(),
            path,
        }
    }

    /// The next item, with its place.
    fn next_item(&mut self) -> Option<At> {
        let (i, value) = self.items.next()?;
        Some(At {
            value,
            path: format!("{}/{i}", self.path),
        })
    }
}

impl<'de> de::SeqAccess<'de> for Items {
    type Error = ParamsError;

    #[inline(never)]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ParamsError> {
        match self.next_item() {
            Some(at) => seed.deserialize(at).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

impl<'de> IntoDeserializer<'de, ParamsError> for At {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for At {
    type Error = ParamsError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        let At { value, path } = self;
        let result = match value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visitor.visit_seq(Items::new(items, path.clone())),
            value @ Value::Object(_) => return At { value, path }.map(None, visitor),
        };
        result.map_err(|e| e.at(&path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.value {
            Value::Bool(b) => visitor
                .visit_bool(b)
                .map_err(|e: ParamsError| e.at(&self.path)),
            _ => Err(self.wrong_type("boolean")),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.value.as_u64() {
            Some(n) => visitor
                .visit_u64(n)
                .map_err(|e: ParamsError| e.at(&self.path)),
            None => Err(self.wrong_type("integer")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.value {
            Value::String(s) => visitor
                .visit_string(s)
                .map_err(|e: ParamsError| e.at(&self.path)),
            _ => Err(self.wrong_type("string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.value {
            Value::Array(items) => visitor
                .visit_seq(Items::new(items, self.path.clone()))
                .map_err(|e| e.at(&self.path)),
            _ => Err(self.wrong_type("array")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        self.map(None, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        self.map(Some(fields), visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

/// A string of at least one character (`minLength: 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NonEmpty(pub(crate) String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NonEmpty, E> {
                self.visit_string(s.to_string())
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<NonEmpty, E> {
                if s.is_empty() {
                    Err(E::invalid_length(0, &self))
                } else {
                    Ok(NonEmpty(s))
                }
            }
        }
        d.deserialize_string(V)
    }
}

/// An integer from `LO` to `HI`, phrased as `logs.tail` phrases its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounded<const LO: u64, const HI: u64>(pub(crate) u64);

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Bounded<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const LO: u64, const HI: u64>;
        impl<const LO: u64, const HI: u64> Visitor<'_> for V<LO, HI> {
            type Value = Bounded<LO, HI>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer from {LO} to {HI}")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                if (LO..=HI).contains(&n) {
                    Ok(Bounded(n))
                } else {
                    Err(E::invalid_value(de::Unexpected::Unsigned(n), &self))
                }
            }
        }
        d.deserialize_any(V::<LO, HI>)
    }
}

/// Deserialize a field that may be any JSON value, `null` included, as `Some` when present
/// (with `#[serde(default)]` it is `None` only when absent).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct P {
        node_id: NonEmpty,
        #[serde(default)]
        limit: Option<Bounded<1, 5000>>,
        #[serde(default)]
        flag: Option<bool>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        code: NonEmpty,
    }

    fn msg(v: Value) -> String {
        parse::<P>(v).unwrap_err().message
    }

    #[test]
    fn phrases_failures_as_upstream() {
        assert_eq!(msg(json!([])), "invalid params: at root: must be object");
        assert_eq!(
            msg(json!({"nodeId": "n", "bogus": 1})),
            "invalid params: at root: unexpected property 'bogus'"
        );
        assert_eq!(
            msg(Value::Null),
            "invalid params: at root: must have required property 'nodeId'"
        );
        assert_eq!(
            msg(json!({"nodeId": ""})),
            "invalid params: at /nodeId: must NOT have fewer than 1 characters"
        );
        assert_eq!(
            msg(json!({"nodeId": 5})),
            "invalid params: at /nodeId: must be string"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "limit": 0})),
            "invalid params: at /limit: must be an integer from 1 to 5000"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "limit": "x"})),
            "invalid params: at /limit: must be an integer from 1 to 5000"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "flag": 1})),
            "invalid params: at /flag: must be boolean"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "inner": {"x": 1}})),
            "invalid params: at /inner: unexpected property 'x'"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "inner": {}})),
            "invalid params: at /inner: must have required property 'code'"
        );
        let p =
            parse::<P>(json!({"nodeId": "n", "limit": 7, "flag": true, "inner": {"code": "c"}}))
                .unwrap();
        assert_eq!((p.node_id.0.as_str(), p.limit.map(|b| b.0)), ("n", Some(7)));
        assert_eq!(
            (p.flag, p.inner.map(|i| i.code.0)),
            (Some(true), Some("c".into()))
        );
    }

    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let keys = prop::sample::select(vec![
            "nodeId",
            "command",
            "idempotencyKey",
            "params",
            "timeoutMs",
            "id",
            "ok",
            "payload",
            "payloadJSON",
            "error",
            "code",
            "message",
            "limit",
            "cursor",
            "maxBytes",
            "deviceId",
            "role",
            "scopes",
            "x",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever the params, parsing answers a value or an upstream-phrased error.
        #[test]
        fn any_params_parse_or_are_phrased(v in json()) {
            fn check<P: DeserializeOwned>(v: &Value) {
                if let Err(e) = parse::<P>(v.clone()) {
                    assert!(e.message.starts_with("invalid params: at "), "{}", e.message);
                }
            }
            check::<crate::route::NodeInvoke>(&v);
            check::<crate::route::NodeInvokeResult>(&v);
            check::<crate::route::NodeInvokeProgress>(&v);
            check::<crate::methods::views::LogsTail>(&v);
            check::<crate::methods::pairing::TokenRotate>(&v);
            check::<super::super::NoParams>(&v);
            check::<super::super::AnyParams>(&v);
        }
    }
}
