//! The gateway's own Ed25519 identity (what `gateway.identity.get` shows), one `meta` row:
//! created once at the first start, or imported from upstream so clients see the same gateway.

use clawgate_core::device::DeviceKey;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::db::{Db, DbError, sqlite};

/// The `meta` key of the identity.
const KEY: &str = "gateway_identity";

/// The identity as stored: the key's seed and when it was created.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    /// The Ed25519 seed (the private key).
    pub seed: [u8; 32],
    /// When it was created (upstream's `created_at_ms` for an imported one).
    pub created_at_ms: u64,
}

impl StoredIdentity {
    /// The key pair.
    pub fn key(&self) -> DeviceKey {
        DeviceKey::from_seed(self.seed)
    }

    fn to_json(&self) -> Value {
        json!({
            "deviceId": self.key().id(),
            "seed": data_encoding::HEXLOWER.encode(&self.seed),
            "createdAtMs": self.created_at_ms,
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        let seed = v.get("seed")?.as_str()?;
        let seed = data_encoding::HEXLOWER.decode(seed.as_bytes()).ok()?;
        Some(Self {
            seed: seed.try_into().ok()?,
            created_at_ms: v.get("createdAtMs")?.as_u64()?,
        })
    }
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredIdentity({})", self.key().id())
    }
}

/// Write `id` inside the caller's transaction.
pub(crate) fn put(tx: &Connection, id: &StoredIdentity) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![KEY, id.to_json().to_string()],
    )
    .map(|_| ())
}

impl Db {
    /// The gateway's identity, if one was stored.
    pub fn gateway_identity(&self) -> Result<Option<StoredIdentity>, DbError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [KEY], |r| r.get(0))
            .optional()
            .map_err(|e| sqlite(&self.path, e))?;
        let Some(text) = text else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .ok()
            .as_ref()
            .and_then(StoredIdentity::from_json)
            .map(Some)
            .ok_or_else(|| DbError::Row {
                path: self.path.clone(),
                source: clawgate_core::pairing::StoreError::Invalid(format!(
                    "meta row {KEY:?} is not an identity"
                )),
            })
    }

    /// The gateway's identity, stored now from `seed` at `now_ms` when there is none yet.
    pub fn gateway_identity_or_create(
        &mut self,
        seed: [u8; 32],
        now_ms: u64,
    ) -> Result<StoredIdentity, DbError> {
        if let Some(id) = self.gateway_identity()? {
            return Ok(id);
        }
        let id = StoredIdentity {
            seed,
            created_at_ms: now_ms,
        };
        self.commit(&[], |tx| put(tx, &id))?;
        Ok(id)
    }
}
