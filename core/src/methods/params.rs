//! Typed method params, read from the request's `params` against a table of their properties
//! (name, what it holds, whether it may be left out), so every failure is phrased as upstream's
//! validator phrases it (`invalid params: at /nodeId: must be string`). One reader serves every
//! params type: a serde derive compiled a visitor of 1-7 KB for each of them.

use core::fmt;

use serde_json::{Map, Value};

use crate::frame::ErrorShape;

/// Params a method handler takes, read from the request's `params` (`null` counts as `{}`), or
/// the `INVALID_REQUEST` error upstream gives.
pub(crate) trait FromParams: Sized {
    /// Read `params`.
    fn from_params(params: Value) -> Result<Self, ErrorShape>;
}

/// Params read by their handler itself: as they came, `null` as `{}`.
impl FromParams for Value {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        Ok(match params {
            Value::Null => Value::Object(Map::new()),
            other => other,
        })
    }
}

/// What a property of a params object holds (the schema's type of it).
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// Anything, accepted and not read.
    Ignored,
    /// Any value (`null` counts as left out when the property is optional).
    Any,
    /// Any value, `null` included, kept as it is.
    AnyOrNull,
    /// A string.
    Str,
    /// A string of at least one character.
    NonEmpty,
    /// `true` or `false`.
    Bool,
    /// A non-negative integer.
    U64,
    /// An integer from the first bound to the second, both included.
    Bounded(u64, u64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// An array (of anything).
    Array,
    /// An object (of anything).
    Object,
    /// An array of strings of at least one character.
    NonEmptyList,
    /// An object with these properties (and no others).
    Table(&'static [Field]),
}

/// Whether a property may be left out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// It must be there.
    Required,
    /// It may be left out, and `null` counts as left out (but for [`Kind::AnyOrNull`]).
    Optional,
}

/// One property of a params object: its name, what it holds, whether it may be left out.
pub(crate) struct Field {
    name: &'static str,
    kind: Kind,
    need: Need,
}

/// A property that must be there.
pub(crate) const fn required(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        need: Need::Required,
    }
}

/// A property that may be left out or `null`.
pub(crate) const fn optional(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        need: Need::Optional,
    }
}

/// A params object's checked properties, taken by name.
pub(crate) struct Props {
    fields: &'static [Field],
    values: Vec<Option<Value>>,
}

/// Check `params` against `fields`: unexpected properties first (in the object's order), then
/// each property in the object's order, then the missing ones in `fields`' order, as upstream's
/// validator reports them.
pub(crate) fn read(params: Value, fields: &'static [Field]) -> Result<Props, ErrorShape> {
    check(params, fields, "", false).map_err(|e| ErrorShape::invalid(e.to_string()))
}

/// [`read`], with properties other than `fields` accepted and not read.
pub(crate) fn read_open(params: Value, fields: &'static [Field]) -> Result<Props, ErrorShape> {
    check(params, fields, "", true).map_err(|e| ErrorShape::invalid(e.to_string()))
}

/// `params` as an object (`null` counts as `{}`).
pub(crate) fn object(params: Value) -> Result<Map<String, Value>, ErrorShape> {
    as_object(params, "").map_err(|e| ErrorShape::invalid(e.to_string()))
}

fn as_object(value: Value, path: &str) -> Result<Map<String, Value>, ParamsError> {
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(obj) => Ok(obj),
        _ => Err(ParamsError::new(Problem::Type("object"), path)),
    }
}

/// The object at `path` checked against `fields` (`open`: other properties allowed).
fn check(
    value: Value,
    fields: &'static [Field],
    path: &str,
    open: bool,
) -> Result<Props, ParamsError> {
    let obj = as_object(value, path)?;
    let unexpected = |k: &&String| !open && !fields.iter().any(|f| f.name == k.as_str());
    if let Some(k) = obj.keys().find(unexpected) {
        return Err(ParamsError::new(Problem::Unexpected(k.clone()), path));
    }
    let mut values: Vec<Option<Value>> = fields.iter().map(|_| None).collect();
    for (key, value) in obj {
        let Some(i) = fields.iter().position(|f| f.name == key) else {
            continue; // an open object's other property
        };
        let (Some(field), Some(slot)) = (fields.get(i), values.get_mut(i)) else {
            continue;
        };
        let absent = field.need == Need::Optional
            && value.is_null()
            && !matches!(field.kind, Kind::AnyOrNull);
        if absent {
            continue;
        }
        holds(field.kind, &value, &|| {
            format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
        })?;
        *slot = Some(value);
    }
    for (field, value) in fields.iter().zip(&values) {
        if field.need == Need::Required && value.is_none() {
            return Err(ParamsError::new(Problem::Missing(field.name), path));
        }
    }
    Ok(Props { fields, values })
}

/// Whether `value` is what `kind` asks for, and what is wrong where when it is not (`path`
/// makes its JSON pointer, only for an error or a nested object).
fn holds(kind: Kind, value: &Value, path: &dyn Fn() -> String) -> Result<(), ParamsError> {
    let problem = match (kind, value) {
        (Kind::Ignored | Kind::Any | Kind::AnyOrNull, _) => return Ok(()),
        (Kind::Str, Value::String(_)) => return Ok(()),
        (Kind::NonEmpty, Value::String(s)) if s.is_empty() => Problem::Empty,
        (Kind::NonEmpty, Value::String(_)) => return Ok(()),
        (Kind::OneOf(names), Value::String(s)) if names.contains(&s.as_str()) => return Ok(()),
        (Kind::OneOf(_), Value::String(_)) => {
            Problem::Expected("equal to one of the allowed values".into())
        }
        (Kind::Str | Kind::NonEmpty | Kind::OneOf(_), _) => Problem::Type("string"),
        (Kind::Bool, Value::Bool(_)) => return Ok(()),
        (Kind::Bool, _) => Problem::Type("boolean"),
        (Kind::U64, v) if v.is_u64() => return Ok(()),
        (Kind::U64, _) => Problem::Type("integer"),
        (Kind::Bounded(lo, hi), v) if v.as_u64().is_some_and(|n| (lo..=hi).contains(&n)) => {
            return Ok(());
        }
        (Kind::Bounded(lo, hi), _) => Problem::Expected(format!("an integer from {lo} to {hi}")),
        (Kind::Array, Value::Array(_)) => return Ok(()),
        (Kind::Object, Value::Object(_)) => return Ok(()),
        (Kind::NonEmptyList, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                holds(Kind::NonEmpty, item, &|| format!("{}/{i}", path()))?;
            }
            return Ok(());
        }
        (Kind::Array | Kind::NonEmptyList, _) => Problem::Type("array"),
        (Kind::Table(fields), Value::Object(_)) => {
            return check(value.clone(), fields, &path(), false).map(|_| ());
        }
        (Kind::Object | Kind::Table(_), _) => Problem::Type("object"),
    };
    Err(ParamsError::new(problem, &path()))
}

impl Props {
    /// The value of property `name`, if it was given (and not `null`, unless it may be).
    pub(crate) fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.fields.iter().position(|f| f.name == name);
        debug_assert!(i.is_some(), "{name} is not a property of these params");
        self.values.get_mut(i?)?.take()
    }

    /// A string property, if given.
    pub(crate) fn string(&mut self, name: &str) -> Option<String> {
        match self.take(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A required string property (checked by [`read`]).
    pub(crate) fn text(&mut self, name: &str) -> String {
        self.string(name).unwrap_or_default()
    }

    /// A non-empty string property, if given.
    pub(crate) fn non_empty(&mut self, name: &str) -> Option<NonEmpty> {
        self.string(name).map(NonEmpty)
    }

    /// A required non-empty string property (checked by [`read`]).
    pub(crate) fn required_non_empty(&mut self, name: &str) -> NonEmpty {
        NonEmpty(self.text(name))
    }

    /// A boolean property, if given.
    pub(crate) fn bool(&mut self, name: &str) -> Option<bool> {
        self.take(name).and_then(|v| v.as_bool())
    }

    /// An integer property, if given.
    pub(crate) fn u64(&mut self, name: &str) -> Option<u64> {
        self.take(name).and_then(|v| v.as_u64())
    }

    /// An array property, if given.
    pub(crate) fn array(&mut self, name: &str) -> Option<Vec<Value>> {
        match self.take(name) {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        }
    }

    /// An object property, if given.
    pub(crate) fn object(&mut self, name: &str) -> Option<Map<String, Value>> {
        match self.take(name) {
            Some(Value::Object(obj)) => Some(obj),
            _ => None,
        }
    }

    /// A [`Kind::Table`] property's properties, if given.
    pub(crate) fn table(&mut self, name: &str) -> Option<Props> {
        let Kind::Table(fields) = self.fields.iter().find(|f| f.name == name)?.kind else {
            return None;
        };
        let value = self.take(name)?;
        // Checked by `read` already: it cannot fail here.
        Some(check(value, fields, "", false).unwrap_or(Props {
            fields,
            values: Vec::new(),
        }))
    }

    /// A bounded integer property, if given (its bounds checked by [`read`] from its [`Kind`]).
    pub(crate) fn bounded<const LO: u64, const HI: u64>(
        &mut self,
        name: &str,
    ) -> Option<Bounded<LO, HI>> {
        debug_assert!(
            self.fields.iter().any(|f| f.name == name
                && matches!(f.kind, Kind::Bounded(lo, hi) if (lo, hi) == (LO, HI))),
            "{name}'s bounds differ from its type's"
        );
        self.u64(name).map(Bounded)
    }
}

/// What is wrong with params, and where.
#[derive(Debug)]
struct ParamsError {
    /// JSON pointer of the offending value (empty: the params themselves).
    at: String,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    Unexpected(String),
    Missing(&'static str),
    Type(&'static str),
    Empty,
    /// A value that does not meet what its property expects.
    Expected(String),
}

impl ParamsError {
    fn new(problem: Problem, at: &str) -> Self {
        Self {
            at: at.to_string(),
            problem,
        }
    }
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at.as_str() {
            "" => write!(f, "invalid params: at root: ")?,
            path => write!(f, "invalid params: at {path}: ")?,
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

/// A string of at least one character (`minLength: 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NonEmpty(pub(crate) String);

/// An integer from `LO` to `HI` (read from a [`Kind::Bounded`] property with the same bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounded<const LO: u64, const HI: u64>(pub(crate) u64);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A params type with one property of each kind that needs a check of its own.
    struct P {
        node_id: NonEmpty,
        limit: Option<Bounded<1, 5000>>,
        flag: Option<bool>,
        inner: Option<String>,
        kept: Option<Value>,
        plain: Option<Value>,
    }

    const INNER: &[Field] = &[required("code", Kind::NonEmpty)];

    impl FromParams for P {
        fn from_params(params: Value) -> Result<Self, ErrorShape> {
            const FIELDS: &[Field] = &[
                required("nodeId", Kind::NonEmpty),
                optional("limit", Kind::Bounded(1, 5000)),
                optional("flag", Kind::Bool),
                optional("inner", Kind::Table(INNER)),
                optional("kept", Kind::AnyOrNull),
                optional("plain", Kind::Any),
                optional("mode", Kind::OneOf(&["a", "b"])),
                optional("scopes", Kind::NonEmptyList),
                optional("list", Kind::Array),
                optional("map", Kind::Object),
                optional("n", Kind::U64),
                optional("x", Kind::Ignored),
            ];
            let mut p = read(params, FIELDS)?;
            Ok(P {
                node_id: p.required_non_empty("nodeId"),
                limit: p.bounded("limit"),
                flag: p.bool("flag"),
                inner: p
                    .table("inner")
                    .and_then(|mut t| t.non_empty("code"))
                    .map(|c| c.0),
                kept: p.take("kept"),
                plain: p.take("plain"),
            })
        }
    }

    fn msg(v: Value) -> String {
        match P::from_params(v) {
            Ok(_) => "ok".into(),
            Err(e) => e.message,
        }
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
            msg(json!({"nodeId": null})),
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
        assert_eq!(
            msg(json!({"nodeId": "n", "inner": 1})),
            "invalid params: at /inner: must be object"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "mode": "c"})),
            "invalid params: at /mode: must be equal to one of the allowed values"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "mode": 1})),
            "invalid params: at /mode: must be string"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "scopes": ["a", ""]})),
            "invalid params: at /scopes/1: must NOT have fewer than 1 characters"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "scopes": "a"})),
            "invalid params: at /scopes: must be array"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "list": {}})),
            "invalid params: at /list: must be array"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "map": []})),
            "invalid params: at /map: must be object"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "n": -1})),
            "invalid params: at /n: must be integer"
        );
        assert_eq!(
            msg(json!({"nodeId": "n", "a/b~": 1})),
            "invalid params: at root: unexpected property 'a/b~'"
        );
        // The first unexpected property in the object's order, before any other failure.
        assert_eq!(
            msg(json!({"zz": 1, "flag": 1, "yy": 1})),
            "invalid params: at root: unexpected property 'yy'"
        );
        // The first failing property in the object's order, before any missing one.
        assert_eq!(
            msg(json!({"flag": 1, "limit": 0})),
            "invalid params: at /flag: must be boolean"
        );
        let p = P::from_params(json!({"nodeId": "n", "limit": 7, "flag": true,
            "inner": {"code": "c"}, "kept": null, "plain": null, "x": [1], "mode": null}))
        .unwrap();
        assert_eq!((p.node_id.0.as_str(), p.limit.map(|b| b.0)), ("n", Some(7)));
        assert_eq!((p.flag, p.inner.as_deref()), (Some(true), Some("c")));
        // `null` is kept where the property is any value with `null` included, else absent.
        assert_eq!((p.kept, p.plain), (Some(Value::Null), None));
    }

    #[test]
    fn open_params_accept_other_properties() {
        const FIELDS: &[Field] = &[optional("limit", Kind::Bounded(1, 200))];
        let mut p = read_open(json!({"limit": 3, "other": 1}), FIELDS).unwrap();
        assert_eq!(p.bounded::<1, 200>("limit"), Some(Bounded(3)));
        let e = read_open(json!({"limit": 201, "other": 1}), FIELDS)
            .err()
            .unwrap();
        assert_eq!(
            e.message,
            "invalid params: at /limit: must be an integer from 1 to 200"
        );
        let e = read(json!({"limit": 3, "other": 1}), FIELDS).err().unwrap();
        assert_eq!(
            e.message,
            "invalid params: at root: unexpected property 'other'"
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
            fn check<P: FromParams>(v: &Value) {
                if let Err(e) = P::from_params(v.clone()) {
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
