//! Durable state as typed row changes. The core keeps its pairing store in memory; what must
//! survive a crash leaves as a batch of [`StoreChange`]s (rows to put or delete), the host
//! writes the batch in one transaction and acknowledges it, and only then does the protocol
//! say "ok" where it promises durability. At start the rows come back through
//! [`PairingStore::from_rows`], the loader the fuzzers drive.

use std::sync::Arc;

use serde_json::Value;

use crate::pairing::{PairedDevice, PairingStore, PendingRequest, STORE_VERSION, StoreError};

/// One row change of the durable store.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreChange {
    /// Insert or replace a paired device, keyed by its device id.
    PutDevice(PairedDevice),
    /// Delete a paired device.
    DeleteDevice(String),
    /// Insert or replace a pending request, keyed by its request id.
    PutPending(PendingRequest),
    /// Delete a pending request.
    DeletePending(String),
    /// Delete every pairing row: the batch that follows a failed write rewrites them all.
    ClearPairing,
    /// Insert or replace a chat session's row (its key, and the session as JSON).
    PutSession {
        /// `agent:<agentId>:<rest>`.
        key: String,
        /// The session, as the core encodes it.
        row: RowText,
    },
    /// Append one message to a session's transcript at position `seq` (from 1; a put of the
    /// same position replaces it, so replaying a batch after a failed write is idempotent).
    AppendMessage {
        /// The session's key.
        session_key: String,
        /// The message's position in the transcript.
        seq: u64,
        /// The message, as `chat.history` shows it.
        message: RowText,
    },
    /// Delete one session's row and its transcript (`sessions.delete`, and `sessions.reset`
    /// before the new session's row).
    DeleteSession {
        /// The session's key.
        key: String,
    },
    /// Insert or replace a channel row (pairing, ingress queue, outbox, poll offset).
    PutChannelRow {
        /// Which table.
        kind: ChannelRowKind,
        /// Its key in that table.
        key: String,
        /// The row, as the core encodes it.
        row: RowText,
    },
    /// Delete a channel row.
    DeleteChannelRow {
        /// Which table.
        kind: ChannelRowKind,
        /// Its key.
        key: String,
    },
    /// Insert or replace a message waiting in its session's lane (pending input), keyed by
    /// its run's id: it is answered "started" only once this is durable.
    PutPendingInput {
        /// The run's id.
        run_id: String,
        /// The pending input, as the core encodes it.
        row: RowText,
    },
    /// Delete a pending input: its run started (its message is in the transcript, in the
    /// same batch) or was aborted.
    DeletePendingInput(String),
}

/// A row's JSON text, encoded once where the core makes the row and bound as it is by the
/// store. Shared, not owned: the batch kept for a replay after a failed write
/// ([`crate::durable`]) holds the same text, so keeping it is a reference count (a row as a
/// `Value` was a deep copy there, ~44 k instructions a channel turn, and ~33 k more to
/// drop it), and the store writer encodes nothing before its sync.
#[derive(Clone, PartialEq, Eq)]
pub struct RowText(Arc<str>);

/// The text as it is, unescaped: a batch's `Debug` shows its rows as JSON.
impl core::fmt::Debug for RowText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RowText({})", self.0)
    }
}

impl RowText {
    /// `row`'s compact JSON text, what `row.to_string()` gives ([`push_row_text`]).
    pub fn of_value(row: &Value) -> Self {
        let mut text = String::new();
        push_row_text(&mut text, row);
        Self(text.into())
    }

    /// Text already encoded as a row's JSON (the caller's promise: it is stored as given).
    pub(crate) fn from_encoded(text: &str) -> Self {
        Self(text.into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The row decoded (for a reader of a batch: a simulated store, a test).
    pub fn to_value(&self) -> Value {
        // Every row is encoded from a `Value` or as JSON text, so it decodes.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// The tables of the channels' durable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelRowKind {
    /// A pending DM pairing request.
    PairingRequest,
    /// An approved DM sender.
    PairingApproval,
    /// An inbound message committed before its offset was confirmed.
    Ingress,
    /// A reply or notice waiting to be delivered (or kept as undelivered).
    Outbox,
    /// An account's next poll offset.
    Offset,
    /// An exec `allow-always` grant (not a channel's: it shares the channels' key/row tables
    /// and their load at start), keyed by the command and directory it is bound to.
    ExecGrant,
}

impl ChannelRowKind {
    /// Every kind, in load order.
    pub const ALL: [ChannelRowKind; 6] = [
        ChannelRowKind::PairingRequest,
        ChannelRowKind::PairingApproval,
        ChannelRowKind::Ingress,
        ChannelRowKind::Outbox,
        ChannelRowKind::Offset,
        ChannelRowKind::ExecGrant,
    ];

    /// The name of this kind's rows (the store's table of them up to its schema 6; since
    /// then one table holds every kind).
    pub fn table(self) -> &'static str {
        match self {
            ChannelRowKind::PairingRequest => "channel_pairing_requests",
            ChannelRowKind::PairingApproval => "channel_pairing_approvals",
            ChannelRowKind::Ingress => "channel_ingress",
            ChannelRowKind::Outbox => "channel_outbox",
            ChannelRowKind::Offset => "channel_offsets",
            ChannelRowKind::ExecGrant => "exec_allow_always",
        }
    }
}

/// A channel row as the store gives it back at start.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredChannelRow {
    /// Its table.
    pub kind: ChannelRowKind,
    /// Its key.
    pub key: String,
    /// The row.
    pub row: Value,
}

/// A message waiting in its session's lane as the store gives it back at start: its run's
/// id and the row the core wrote with [`StoreChange::PutPendingInput`].
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPendingInput {
    /// The run's id (the call's idempotency key).
    pub run_id: String,
    /// The pending input, as the core encodes it.
    pub row: Value,
}

/// A chat session as the store gives it back at start: its row and only the recent end of
/// its transcript (the whole transcript stays in the store).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSession {
    /// The session's key.
    pub key: String,
    /// The session, as the core encoded it in [`StoreChange::PutSession`].
    pub row: Value,
    /// Its most recent messages, in `seq` order (the core keeps at most `maxModelMessages`).
    pub messages: Vec<Value>,
    /// The `seq` of its last message: how many the transcript holds.
    pub total: u64,
}

/// Which part of a transcript a [`HistoryQuery`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryRange {
    /// The newest messages: skip the `offset` newest, then up to `limit` older ones.
    Tail {
        /// Newest messages to skip (a page further back).
        offset: u64,
        /// Messages to return at most.
        limit: u64,
    },
    /// The messages after position `seq` (a delta cursor's catch-up), up to `limit`.
    After {
        /// The last position the reader has.
        seq: u64,
        /// Messages to return at most.
        limit: u64,
    },
}

/// A read of one session's transcript from the store ([`crate::Work::ReadHistory`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The session's key.
    pub session_key: String,
    /// Which messages.
    pub range: HistoryRange,
    /// Stop adding messages (newest first for a tail, oldest first after a position) once
    /// their encodings would pass this many bytes; the first always comes.
    pub max_bytes: usize,
    /// A message whose encoding is longer comes back without its body.
    pub max_message_bytes: usize,
}

/// One transcript row a [`HistoryQuery`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    /// Its position in the transcript (from 1).
    pub seq: u64,
    /// The message (`null` when `oversized`).
    pub message: Value,
    /// The message is longer than the query's `max_message_bytes`.
    pub oversized: bool,
}

/// What a [`HistoryQuery`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The rows, oldest first.
    pub rows: Vec<HistoryRow>,
    /// The position of the transcript's last message (0 when it has none).
    pub total: u64,
}

/// The kind of a stored row, so the host can route it to its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// A [`PairedDevice`].
    Device,
    /// A [`PendingRequest`].
    Pending,
}

impl StoreChange {
    /// The row's kind, key and JSON encoding, for a pairing put; `None` for anything else.
    pub fn encoded(&self) -> Option<(RowKind, &str, String)> {
        match self {
            StoreChange::PutDevice(d) => Some((
                RowKind::Device,
                &d.device_id,
                serde_json::to_string(d).unwrap_or_default(),
            )),
            StoreChange::PutPending(p) => Some((
                RowKind::Pending,
                &p.request_id,
                serde_json::to_string(p).unwrap_or_default(),
            )),
            _ => None,
        }
    }
}

/// Append `row`'s JSON text, what `row.to_string()` gives (serde_json's compact encoding),
/// to `out`: the text a [`StoreChange`]'s JSON column is stored as, written without
/// serde_json's serialiser (several hundred instructions per object member).
pub fn push_row_text(out: &mut String, row: &Value) {
    crate::model::json_text::push_json_value(out, row);
}

/// The changes that turn the durable copy `old` into `new`, in a stable order (deletes first,
/// then puts, each by key). With `full`, the batch clears every row and writes `new` whole.
pub fn diff(old: &PairingStore, new: &PairingStore, full: bool) -> Vec<StoreChange> {
    let mut out = Vec::new();
    if full {
        out.push(StoreChange::ClearPairing);
    } else {
        out.extend(
            old.devices
                .keys()
                .filter(|k| !new.devices.contains_key(*k))
                .map(|k| StoreChange::DeleteDevice(k.clone())),
        );
        out.extend(
            old.pending
                .keys()
                .filter(|k| !new.pending.contains_key(*k))
                .map(|k| StoreChange::DeletePending(k.clone())),
        );
    }
    out.extend(
        new.devices
            .iter()
            .filter(|(k, d)| full || old.devices.get(*k) != Some(*d))
            .map(|(_, d)| StoreChange::PutDevice(d.clone())),
    );
    out.extend(
        new.pending
            .iter()
            .filter(|(k, p)| full || old.pending.get(*k) != Some(*p))
            .map(|(_, p)| StoreChange::PutPending(p.clone())),
    );
    out
}

impl PairingStore {
    /// Rebuild the store from its durable rows (`kind`, JSON). A row that does not decode is
    /// an error naming its kind: the host reports it rather than dropping an approval.
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = (RowKind, &'a [u8])>,
    ) -> Result<Self, StoreError> {
        let mut store = PairingStore {
            version: STORE_VERSION,
            ..Default::default()
        };
        for (kind, bytes) in rows {
            match kind {
                RowKind::Device => {
                    let d: PairedDevice = serde_json::from_slice(bytes)
                        .map_err(|e| StoreError::Invalid(format!("paired device row: {e}")))?;
                    store.devices.insert(d.device_id.clone(), d);
                }
                RowKind::Pending => {
                    let p: PendingRequest = serde_json::from_slice(bytes)
                        .map_err(|e| StoreError::Invalid(format!("pending request row: {e}")))?;
                    store.pending.insert(p.request_id.clone(), p);
                }
            }
        }
        store.repair();
        Ok(store)
    }

    /// Apply a batch to this copy, as the host applies it to its rows.
    pub fn apply(&mut self, changes: &[StoreChange]) {
        for change in changes {
            match change {
                StoreChange::PutDevice(d) => {
                    self.devices.insert(d.device_id.clone(), d.clone());
                }
                StoreChange::DeleteDevice(id) => {
                    self.devices.remove(id);
                }
                StoreChange::PutPending(p) => {
                    self.pending.insert(p.request_id.clone(), p.clone());
                }
                StoreChange::DeletePending(id) => {
                    self.pending.remove(id);
                }
                StoreChange::ClearPairing => {
                    self.devices.clear();
                    self.pending.clear();
                }
                StoreChange::PutSession { .. }
                | StoreChange::AppendMessage { .. }
                | StoreChange::DeleteSession { .. }
                | StoreChange::PutChannelRow { .. }
                | StoreChange::DeleteChannelRow { .. }
                | StoreChange::PutPendingInput { .. }
                | StoreChange::DeletePendingInput(_) => {}
            }
        }
    }
}
