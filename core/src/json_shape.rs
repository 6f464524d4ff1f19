//! Reading JSON straight from its text into types that take any value by its shape (no
//! `serde_json::Value` tree): a type says what it makes of a string, an integer, a boolean,
//! an array or an object, and everything else becomes its [`Shape::other`]. Reading such a
//! type never fails on well-formed JSON. Used by the `connect` params ([`crate::connect_fields`])
//! and Telegram's `getUpdates` result ([`crate::channels::telegram::api`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A captured type made from each shape of JSON value; a shape it does not take is
/// [`Shape::other`] (its contents read and dropped).
pub(crate) trait Shape<'de>: Sized {
    /// What any shape not taken below becomes.
    fn other() -> Self;

    /// A string.
    fn string(_: Cow<'de, str>) -> Self {
        Self::other()
    }

    /// An integer in `0..=u64::MAX`.
    fn uint(_: u64) -> Self {
        Self::other()
    }

    /// A negative integer in `i64` (a non-negative one is a [`Shape::uint`], as
    /// `serde_json::Number` keeps it).
    fn negative(_: i64) -> Self {
        Self::other()
    }

    /// A boolean.
    fn boolean() -> Self {
        Self::other()
    }

    /// An array.
    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::other())
    }

    /// An object.
    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::other())
    }
}

/// Reads any JSON value as a `T`.
pub(crate) struct ShapeVisitor<T>(pub(crate) PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::boolean())
    }

    fn visit_u64<E>(self, n: u64) -> Result<T, E> {
        Ok(T::uint(n))
    }

    fn visit_i64<E>(self, n: i64) -> Result<T, E> {
        // As `serde_json::Number` keeps it: a non-negative `i64` is an unsigned integer.
        Ok(u64::try_from(n).map_or_else(|_| T::negative(n), T::uint))
    }

    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<T, E> {
        Ok(T::string(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<T, E> {
        Ok(T::string(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<T, E> {
        Ok(T::string(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::map(map)
    }
}

/// A map key: JSON keys are strings, borrowed from the text unless they had escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Shape<'de> for Key<'de> {
    fn other() -> Self {
        Key(Cow::Borrowed(""))
    }

    fn string(s: Cow<'de, str>) -> Self {
        Key(s)
    }
}

/// `Deserialize` for captured types: any JSON value, by its shape.
macro_rules! deserialize_by_shape {
    ($($ty:ty $(where $t:ident: $bound:ident)?),* $(,)?) => {$(
        impl<'de $(, $t: $bound<'de>)?> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::json_shape::ShapeVisitor(std::marker::PhantomData))
            }
        }
    )*};
}
pub(crate) use deserialize_by_shape;

deserialize_by_shape!(Key<'de>);
