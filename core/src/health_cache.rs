//! The `health` snapshot, serialised once and answered from cache, as upstream answers
//! `health` from its cached snapshot: rebuilt when it is older than [`MAX_AGE_MS`] or after
//! anything that may change it (a work result, a timer, a reload, an HTTP request with a
//! body, a method that is not a read) marked it stale. Its version is upstream's
//! `stateVersion.health`: 1 at start, one more for each snapshot taken that says something
//! the last one did not (upstream counts every snapshot it takes, about one a minute; a
//! retake here that differs only in `ts` is the same state).

use serde_json::Value;
use serde_json::value::RawValue;

/// Oldest a cached snapshot may be when it is answered, ms (its `ts` says when it was taken).
pub(crate) const MAX_AGE_MS: u64 = 1000;

/// The serialised `health` payload and the Unix ms it was taken at.
pub(crate) struct HealthCache {
    /// When the payload was taken; `None` once something marked it stale.
    taken_at: Option<u64>,
    payload: Box<RawValue>,
    /// The payload without its `ts`: what a retake is compared with.
    content: String,
    version: u64,
}

impl Default for HealthCache {
    fn default() -> Self {
        Self {
            taken_at: None,
            payload: RawValue::NULL.to_owned(),
            content: String::new(),
            version: 1,
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

    /// Keep `payload`, taken at `at_ms`, serialised; whether it says something the last one
    /// did not (its `ts` aside), and so moved the version.
    pub(crate) fn store(&mut self, at_ms: u64, payload: &Value) -> bool {
        // Serialising a `Value` cannot fail (every map key is a string); were it to, the
        // snapshot stays stale and is rebuilt by the next reader.
        let Ok(text) = serde_json::value::to_raw_value(payload) else {
            return false;
        };
        self.payload = text;
        self.taken_at = Some(at_ms);
        let mut content = payload.clone();
        if let Some(fields) = content.as_object_mut() {
            fields.remove("ts");
        }
        let content = content.to_string();
        if content == self.content {
            return false;
        }
        self.content = content;
        self.version += 1;
        true
    }

    /// `stateVersion.health`.
    pub(crate) fn version(&self) -> u64 {
        self.version
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
        assert!(c.store(1000, &serde_json::json!({"ts": 1000})));
        assert_eq!(c.payload().get(), r#"{"ts":1000}"#);
        assert!(c.is_fresh(1000));
        assert!(c.is_fresh(1000 + MAX_AGE_MS - 1));
        assert!(!c.is_fresh(1000 + MAX_AGE_MS), "too old");
        assert!(!c.is_fresh(999), "the clock went back");
        c.invalidate();
        assert!(!c.is_fresh(1000));
    }

    #[test]
    fn the_version_moves_when_the_snapshot_says_something_new() {
        let mut c = HealthCache::default();
        assert_eq!(c.version(), 1, "upstream's start");
        assert!(c.store(1000, &serde_json::json!({"ts": 1000, "ok": true})));
        assert_eq!(c.version(), 2, "the first snapshot");
        assert!(!c.store(3000, &serde_json::json!({"ts": 3000, "ok": true})));
        assert_eq!(c.version(), 2, "only retaken");
        assert_eq!(
            c.payload().get(),
            r#"{"ok":true,"ts":3000}"#,
            "yet answered anew"
        );
        assert!(c.store(4000, &serde_json::json!({"ts": 4000, "ok": false})));
        assert_eq!(c.version(), 3);
    }
}
