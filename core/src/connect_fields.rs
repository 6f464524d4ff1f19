//! The `connect` params as they arrive, read straight from the frame's text (no JSON tree):
//! each key [`crate::handshake`]'s validation looks at, as a borrowed string, an integer or
//! "something else", and where an object holds a key it does not allow, the first such key.
//! The validation then decides from these what it decided from the tree: as in the tree, a
//! repeated key counts with its last value, and "first" means first in sorted order (the
//! order in which the tree's map lists its keys).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::{Deserialize, IgnoredAny, MapAccess, SeqAccess};
use serde_json::Value;

use crate::frame::Params;
use crate::json_shape::{Key, Shape, deserialize_by_shape};

/// A JSON value as the validation sees it.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum Scalar<'a> {
    /// A string, borrowed from the text unless it had escapes.
    Str(Cow<'a, str>),
    /// An integer in `0..=u64::MAX` (what `Value::as_u64` reads).
    UInt(u64),
    /// `true` or `false`.
    Bool,
    /// `null`, a negative or fractional number, an array or an object.
    #[default]
    Other,
}

/// A JSON object read as fields `T`, or something that is not an object.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum Obj<'a, T> {
    /// Not an object.
    #[default]
    NotObject,
    /// An object.
    Object {
        /// The keys `T` reads.
        fields: T,
        /// The first key, in sorted order, that `T` does not allow.
        unexpected: Option<Cow<'a, str>>,
    },
}

/// A JSON array of values, or something that is not an array.
#[derive(Debug, PartialEq)]
pub(crate) enum List<'a> {
    /// Not an array.
    NotArray,
    /// An array.
    Array(Vec<Scalar<'a>>),
}

/// `params.permissions`: whether each key's (last) value is a boolean, or not an object.
#[derive(Debug, PartialEq)]
pub(crate) enum Permissions<'a> {
    /// Not an object.
    NotObject,
    /// Each key, sorted, and whether its value is a boolean.
    Object(BTreeMap<Cow<'a, str>, bool>),
}

/// The `connect` params: [`RootFields`] when they are an object.
pub(crate) type ConnectFields<'a> = Obj<'a, RootFields<'a>>;

impl<'a> Params<'a> for ConnectFields<'a> {
    fn from_tree(tree: Value) -> Self {
        // Every JSON value reads as `ConnectFields`: reading a tree cannot fail.
        Self::deserialize(tree).unwrap_or_default()
    }
}

/// The keys of the params object.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RootFields<'a> {
    /// `minProtocol`.
    pub(crate) min_protocol: Option<Scalar<'a>>,
    /// `maxProtocol`.
    pub(crate) max_protocol: Option<Scalar<'a>>,
    /// `client`.
    pub(crate) client: Option<Obj<'a, Flat<'a, ClientKeys>>>,
    /// `caps`.
    pub(crate) caps: Option<List<'a>>,
    /// `commands`.
    pub(crate) commands: Option<List<'a>>,
    /// `permissions`.
    pub(crate) permissions: Option<Permissions<'a>>,
    /// `pathEnv`.
    pub(crate) path_env: Option<Scalar<'a>>,
    /// `role`.
    pub(crate) role: Option<Scalar<'a>>,
    /// `scopes`.
    pub(crate) scopes: Option<List<'a>>,
    /// `device`.
    pub(crate) device: Option<Obj<'a, Flat<'a, DeviceKeys>>>,
    /// `auth`.
    pub(crate) auth: Option<Obj<'a, Flat<'a, AuthKeys>>>,
    /// `locale`.
    pub(crate) locale: Option<Scalar<'a>>,
    /// `userAgent`.
    pub(crate) user_agent: Option<Scalar<'a>>,
    /// `modelCatalog`.
    pub(crate) model_catalog: Option<Obj<'a, Flat<'a, CatalogKeys>>>,
}

/// The keys an object of plain values may have.
pub(crate) trait KeyList {
    /// Every allowed key; at most [`MAX_FLAT_KEYS`].
    const KEYS: &'static [&'static str];
}

/// The most keys a [`KeyList`] has (`client`'s).
const MAX_FLAT_KEYS: usize = 10;

/// An object whose allowed keys, those of `K`, all hold plain values.
#[derive(Debug, PartialEq)]
pub(crate) struct Flat<'a, K> {
    /// By the key's place in `K::KEYS`.
    values: [Option<Scalar<'a>>; MAX_FLAT_KEYS],
    keys: PhantomData<K>,
}

impl<K> Default for Flat<'_, K> {
    fn default() -> Self {
        Self {
            values: Default::default(),
            keys: PhantomData,
        }
    }
}

impl<'a, K: KeyList> Flat<'a, K> {
    /// The value of `key`, if the object has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Scalar<'a>> {
        let at = K::KEYS.iter().position(|k| *k == key)?;
        self.values.get(at)?.as_ref()
    }
}

/// `client`'s keys.
#[derive(Debug, PartialEq)]
pub(crate) struct ClientKeys;
impl KeyList for ClientKeys {
    const KEYS: &'static [&'static str] = &[
        "id",
        "displayName",
        "version",
        "buildId",
        "platform",
        "deviceFamily",
        "modelIdentifier",
        "timeZone",
        "mode",
        "instanceId",
    ];
}

/// `auth`'s keys.
#[derive(Debug, PartialEq)]
pub(crate) struct AuthKeys;
impl KeyList for AuthKeys {
    const KEYS: &'static [&'static str] = &[
        "token",
        "bootstrapToken",
        "deviceToken",
        "password",
        "approvalRuntimeToken",
        "agentRuntimeIdentityToken",
    ];
}

/// `device`'s keys.
#[derive(Debug, PartialEq)]
pub(crate) struct DeviceKeys;
impl KeyList for DeviceKeys {
    const KEYS: &'static [&'static str] = &["id", "publicKey", "signature", "signedAt", "nonce"];
}

/// `modelCatalog`'s keys in either of its shapes (which ones go together is the validation's).
#[derive(Debug, PartialEq)]
pub(crate) struct CatalogKeys;
impl KeyList for CatalogKeys {
    const KEYS: &'static [&'static str] = &["agentId", "shortId", "slugHint", "sessionKey"];
}

// Every key list fits a `Flat`.
const _: () = assert!(
    ClientKeys::KEYS.len() <= MAX_FLAT_KEYS
        && AuthKeys::KEYS.len() <= MAX_FLAT_KEYS
        && DeviceKeys::KEYS.len() <= MAX_FLAT_KEYS
        && CatalogKeys::KEYS.len() <= MAX_FLAT_KEYS
);

/// The keys of an object, read one by one.
trait Fields<'de>: Default {
    /// Read `key`'s value into `self` if `key` is allowed here; `false` (the value unread)
    /// if it is not.
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

impl<'de, K: KeyList> Fields<'de> for Flat<'de, K> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let Some(slot) = K::KEYS
            .iter()
            .position(|k| *k == key)
            .and_then(|at| self.values.get_mut(at))
        else {
            return Ok(false);
        };
        *slot = Some(map.next_value()?);
        Ok(true)
    }
}

impl<'de> Fields<'de> for RootFields<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "minProtocol" => self.min_protocol = Some(map.next_value()?),
            "maxProtocol" => self.max_protocol = Some(map.next_value()?),
            "client" => self.client = Some(map.next_value()?),
            "caps" => self.caps = Some(map.next_value()?),
            "commands" => self.commands = Some(map.next_value()?),
            "permissions" => self.permissions = Some(map.next_value()?),
            "pathEnv" => self.path_env = Some(map.next_value()?),
            "role" => self.role = Some(map.next_value()?),
            "scopes" => self.scopes = Some(map.next_value()?),
            "device" => self.device = Some(map.next_value()?),
            "auth" => self.auth = Some(map.next_value()?),
            "locale" => self.locale = Some(map.next_value()?),
            "userAgent" => self.user_agent = Some(map.next_value()?),
            "modelCatalog" => self.model_catalog = Some(map.next_value()?),
            // Allowed, and not looked at.
            "computerUse" | "workerRuns" => {
                map.next_value::<IgnoredAny>()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Shape<'de> for Scalar<'de> {
    fn other() -> Self {
        Scalar::Other
    }

    fn string(s: Cow<'de, str>) -> Self {
        Scalar::Str(s)
    }

    fn uint(n: u64) -> Self {
        Scalar::UInt(n)
    }

    fn boolean() -> Self {
        Scalar::Bool
    }
}

impl<'de, T: Fields<'de>> Shape<'de> for Obj<'de, T> {
    fn other() -> Self {
        Obj::NotObject
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut fields = T::default();
        let mut unexpected: Option<Cow<'de, str>> = None;
        while let Some(Key(key)) = map.next_key()? {
            if !fields.field(&key, &mut map)? {
                map.next_value::<IgnoredAny>()?;
                if unexpected.as_deref().is_none_or(|first| *key < *first) {
                    unexpected = Some(key);
                }
            }
        }
        Ok(Obj::Object { fields, unexpected })
    }
}

impl<'de> Shape<'de> for List<'de> {
    fn other() -> Self {
        List::NotArray
    }

    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List::Array(items))
    }
}

impl<'de> Shape<'de> for Permissions<'de> {
    fn other() -> Self {
        Permissions::NotObject
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut keys = BTreeMap::new();
        while let Some(Key(key)) = map.next_key()? {
            let is_bool = map.next_value::<Scalar<'de>>()? == Scalar::Bool;
            keys.insert(key, is_bool);
        }
        Ok(Permissions::Object(keys))
    }
}

deserialize_by_shape!(
    Scalar<'de>,
    List<'de>,
    Permissions<'de>,
    Obj<'de, T> where T: Fields,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> ConnectFields<'_> {
        serde_json::from_str(text).unwrap()
    }

    fn root<'f, 'a>(fields: &'f ConnectFields<'a>) -> (&'f RootFields<'a>, Option<&'f str>) {
        match fields {
            Obj::Object { fields, unexpected } => (fields, unexpected.as_deref()),
            Obj::NotObject => panic!("not an object"),
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let f = read(r#"{"role":"node","locale":"a\"b"}"#);
        let (r, _) = root(&f);
        assert!(matches!(r.role, Some(Scalar::Str(Cow::Borrowed("node")))));
        assert!(matches!(&r.locale, Some(Scalar::Str(Cow::Owned(s))) if s == "a\"b"));
    }

    #[test]
    fn numbers_are_unsigned_integers_or_other() {
        let f = read(r#"{"minProtocol":4,"maxProtocol":-1,"pathEnv":4.0,"locale":1e2}"#);
        let (r, _) = root(&f);
        assert_eq!(r.min_protocol, Some(Scalar::UInt(4)));
        assert_eq!(r.max_protocol, Some(Scalar::Other));
        assert_eq!(r.path_env, Some(Scalar::Other));
        assert_eq!(r.locale, Some(Scalar::Other));
    }

    #[test]
    fn the_first_unexpected_key_is_the_first_sorted_and_a_repeated_key_keeps_its_last_value() {
        let f = read(r#"{"zz":1,"role":"a","b":[{}],"computerUse":{"x":[1]},"role":"node"}"#);
        let (r, unexpected) = root(&f);
        assert_eq!(unexpected, Some("b"));
        assert_eq!(r.role, Some(Scalar::Str("node".into())));
    }

    #[test]
    fn nested_objects_lists_and_permissions() {
        let f = read(
            r#"{"client":{"id":"cli","q":1},"caps":["a",2],"scopes":"x","permissions":{"b":1,"a":true,"b":false},"auth":[]}"#,
        );
        let (r, _) = root(&f);
        let Some(Obj::Object { fields, unexpected }) = &r.client else {
            panic!("client is an object");
        };
        assert_eq!(fields.get("id"), Some(&Scalar::Str("cli".into())));
        assert_eq!(fields.get("mode"), None);
        assert_eq!(unexpected.as_deref(), Some("q"));
        assert_eq!(
            r.caps,
            Some(List::Array(vec![Scalar::Str("a".into()), Scalar::UInt(2)]))
        );
        assert_eq!(r.scopes, Some(List::NotArray));
        let Some(Permissions::Object(p)) = &r.permissions else {
            panic!("permissions is an object");
        };
        assert_eq!(
            p.iter().map(|(k, v)| (&**k, *v)).collect::<Vec<_>>(),
            [("a", true), ("b", true)]
        );
        assert_eq!(r.auth, Some(Obj::NotObject));
    }

    /// The params of a request frame.
    fn params_of(frame: &str) -> ConnectFields<'_> {
        crate::frame::parse_request_as::<ConnectFields<'_>>(frame)
            .unwrap()
            .params
    }

    #[test]
    fn a_frame_read_through_its_tree_gives_the_same_fields() {
        for params in [
            r#"{"minProtocol":4,"client":{"id":"cli","x":[]},"role":"node","role":7}"#,
            r#"{"caps":["a","b\u0041"],"permissions":{"b":1,"a":true},"auth":{"token":""}}"#,
            "[1,2]",
        ] {
            let plain =
                format!(r#"{{"type":"req","id":"1","method":"connect","params":{params}}}"#);
            // `traceparent` is read by the full validation, through the frame's tree.
            let traced = format!(
                r#"{{"type":"req","id":"1","method":"connect","traceparent":"00","params":{params}}}"#
            );
            assert_eq!(params_of(&plain), read(params), "{params}");
            assert_eq!(params_of(&traced), read(params), "{params}");
        }
        let none = r#"{"type":"req","id":"1","method":"connect"}"#;
        assert_eq!(params_of(none), Obj::NotObject);
    }

    #[test]
    fn what_is_not_an_object_is_read_whole() {
        for text in ["null", "[1,{\"a\":[]}]", "\"x\"", "7", "-7", "true"] {
            assert_eq!(read(text), Obj::NotObject, "{text}");
        }
    }
}
