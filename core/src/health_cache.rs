//! The `health` snapshot, serialised once and answered from cache, as upstream answers
//! `health` from its cached snapshot: rebuilt when it is older than [`MAX_AGE_MS`] or after
//! anything that may change it (a work result, a timer, a reload, an HTTP request with a
//! body, a method that is not a read) marked it stale.

use serde_json::Value;
use serde_json::value::RawValue;

/// Oldest a cached snapshot may be when it is answered, ms (its `ts` says when it was taken).
pub(crate) const MAX_AGE_MS: u64 = 1000;

/// The serialised `health` payload and the Unix ms it was taken at.
pub(crate) struct HealthCache {
    /// When the payload was taken; `None` once something marked it stale.
    taken_at: Option<u64>,
    payload: Box<RawValue>,
}

impl Default for HealthCache {
    fn default() -> Self {
        Self {
            taken_at: None,
            payload: RawValue::NULL.to_owned(),
        }
    }
}

impl HealthCache {
    /// Something the snapshot is made of may have changed: the next reader rebuilds it.
    pub(crate) fn invalidate(&mut self) {
        self.taken_at = None;
    }

    /// Whether the cached payload may be answered at `now_ms`.
    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        self.taken_at
            .and_then(|at| now_ms.checked_sub(at))
            .is_some_and(|age| age < MAX_AGE_MS)
    }

    /// Keep `payload`, taken at `at_ms`, serialised.
    pub(crate) fn store(&mut self, at_ms: u64, payload: &Value) {
        // Serialising a `Value` cannot fail (every map key is a string); were it to, the
        // snapshot stays stale and is rebuilt by the next reader.
        if let Ok(text) = serde_json::value::to_raw_value(payload) {
            self.payload = text;
            self.taken_at = Some(at_ms);
        }
    }

    /// The payload last stored.
    pub(crate) fn payload(&self) -> &RawValue {
        &self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_until_max_age_or_invalidated() {
        let mut c = HealthCache::default();
        assert!(!c.is_fresh(5));
        c.store(1000, &serde_json::json!({"ts": 1000}));
        assert_eq!(c.payload().get(), r#"{"ts":1000}"#);
        assert!(c.is_fresh(1000));
        assert!(c.is_fresh(1000 + MAX_AGE_MS - 1));
        assert!(!c.is_fresh(1000 + MAX_AGE_MS), "too old");
        assert!(!c.is_fresh(999), "the clock went back");
        c.invalidate();
        assert!(!c.is_fresh(1000));
    }
}
