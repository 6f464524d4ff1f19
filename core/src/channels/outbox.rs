//! The outbox: replies and notices as rows, stored with the turn that produced them and
//! deleted once Telegram accepted every chunk. Messages to one chat leave in order, one at a
//! time; a failed chunk is retried with backoff, and after [`MAX_ATTEMPTS`] the message is
//! kept as undelivered (shown in `channels.status`, retried at the next start), never dropped.
//! A message leaves only once the batch that stores its row is acknowledged: a reply the user
//! saw is in the transcript after a crash.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::inbound::Target;
use super::row_key::row_key as key;
use crate::frame::push_json_str;
use crate::model::json_text::{Object, push_array};
use crate::persist::{ChannelRowKind, RowText, StoreChange};

/// Attempts of one chunk before its message is kept as undelivered.
pub const MAX_ATTEMPTS: u32 = 5;

/// One message (in chunks) to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Creation order.
    pub seq: u64,
    /// Where it goes.
    pub target: Target,
    /// The chunks, as sent (HTML).
    pub chunks: Vec<String>,
    /// Chunks Telegram accepted so far.
    pub next: usize,
    /// Failed attempts of the current chunk.
    pub attempts: u32,
    /// Given up on until the next start.
    #[serde(default)]
    pub undelivered: bool,
    /// The last failure.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: u64,
    /// The pairing request (its id) this message announces: it is not sent once that request
    /// is gone (approved, dismissed or expired), say approved while the gateway was down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<String>,
}

/// What a failed attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again (this was attempt `n`).
    Retry(u32),
    /// Kept as undelivered.
    Undelivered,
}

/// The outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    items: BTreeMap<u64, Delivery>,
    /// In flight or waiting out a backoff.
    busy: BTreeSet<u64>,
    /// Pushed and not known to be durable yet: not sent (nor anything after them in their
    /// chat) until [`Outbox::settle`].
    unsettled: BTreeSet<u64>,
    next_seq: u64,
}

fn put(d: &Delivery) -> StoreChange {
    StoreChange::PutChannelRow {
        kind: ChannelRowKind::Outbox,
        key: key(d.seq),
        row: row_text(d),
    }
}

/// Room for a delivery row's JSON besides its texts.
const ROW_ROOM: usize = 192;
/// Room for the JSON around one chunk.
const CHUNK_ROOM: usize = 3;

/// The row of `d`: `json!(d)`'s text, written out (members in the sorted order a `Value`
/// object keeps; a test holds the two equal). The `Value` round cost ~18,000 instructions a
/// reply.
fn row_text(d: &Delivery) -> RowText {
    let t = &d.target;
    let texts = [
        Some(&t.channel),
        Some(&t.account),
        Some(&t.to),
        t.thread.as_ref(),
        d.last_error.as_ref(),
        d.pairing.as_ref(),
    ];
    let chunks: usize = d.chunks.iter().map(|c| c.len() + CHUNK_ROOM).sum();
    let len: usize = texts.iter().flatten().map(|t| t.len()).sum();
    let mut out = String::with_capacity(ROW_ROOM + len + chunks);
    let mut row = Object::new(&mut out);
    row.u64("attempts", u64::from(d.attempts));
    push_array(row.key("chunks"), &d.chunks, |c, out| push_json_str(out, c));
    row.u64("createdAt", d.created_at);
    row.str_or_null("lastError", d.last_error.as_deref())
        .u64("next", d.next as u64)
        .opt_str("pairing", d.pairing.as_deref())
        .u64("seq", d.seq);
    Object::new(row.key("target"))
        .str("account", &t.account)
        .str("channel", &t.channel)
        .opt_str("thread", t.thread.as_deref())
        .str("to", &t.to)
        .end();
    row.bool("undelivered", d.undelivered).end();
    RowText::from_encoded(&out)
}

impl Outbox {
    /// Queue a message (announcing pairing request `pairing`, if any); its seq.
    pub fn push(
        &mut self,
        target: Target,
        chunks: Vec<String>,
        pairing: Option<String>,
        now_ms: u64,
        changes: &mut Vec<StoreChange>,
    ) -> u64 {
        self.next_seq += 1;
        let d = Delivery {
            seq: self.next_seq,
            target,
            chunks,
            next: 0,
            attempts: 0,
            undelivered: false,
            last_error: None,
            created_at: now_ms,
            pairing,
        };
        changes.push(put(&d));
        self.items.insert(d.seq, d);
        self.unsettled.insert(self.next_seq);
        self.next_seq
    }

    /// The newest message whose row is not known to be durable yet, if any.
    pub fn newest_unsettled(&self) -> Option<u64> {
        self.unsettled.last().copied()
    }

    /// The rows of messages up to `seq` are durable: they may send.
    pub fn settle(&mut self, seq: u64) {
        self.unsettled.retain(|s| *s > seq);
    }

    /// Drop the pairing messages not sent yet whose request is no longer `pending`.
    pub fn drop_stale_pairing(
        &mut self,
        pending: impl Fn(&str) -> bool,
        changes: &mut Vec<StoreChange>,
    ) {
        let (busy, unsettled) = (&self.busy, &self.unsettled);
        let stale: Vec<u64> = self
            .items
            .values()
            .filter(|d| d.next == 0 && !busy.contains(&d.seq) && !unsettled.contains(&d.seq))
            .filter(|d| d.pairing.as_deref().is_some_and(|id| !pending(id)))
            .map(|d| d.seq)
            .collect();
        for seq in stale {
            self.items.remove(&seq);
            changes.push(StoreChange::DeleteChannelRow {
                kind: ChannelRowKind::Outbox,
                key: key(seq),
            });
        }
    }

    /// Messages that may send now: the oldest deliverable one of each chat not already busy.
    /// They are marked busy.
    pub fn take_ready(&mut self) -> Vec<Delivery> {
        let mut chats = BTreeSet::new();
        let mut out = Vec::new();
        for d in self.items.values().filter(|d| !d.undelivered) {
            let chat = (&d.target.channel, &d.target.account, &d.target.to);
            if !chats.insert(chat) {
                continue;
            }
            if !self.busy.contains(&d.seq) && !self.unsettled.contains(&d.seq) {
                out.push(d.clone());
            }
        }
        for d in &out {
            self.busy.insert(d.seq);
        }
        out
    }

    /// The message `seq`.
    pub fn get(&self, seq: u64) -> Option<&Delivery> {
        self.items.get(&seq)
    }

    /// Its current chunk was accepted. `true` when the message is complete (and deleted).
    pub fn accepted(&mut self, seq: u64, changes: &mut Vec<StoreChange>) -> bool {
        let Some(d) = self.items.get_mut(&seq) else {
            return true;
        };
        d.next += 1;
        d.attempts = 0;
        d.last_error = None;
        if d.next >= d.chunks.len() {
            self.items.remove(&seq);
            self.busy.remove(&seq);
            changes.push(StoreChange::DeleteChannelRow {
                kind: ChannelRowKind::Outbox,
                key: key(seq),
            });
            return true;
        }
        changes.push(put(d));
        false
    }

    /// Its current chunk failed; `permanent` failures give up at once.
    pub fn failed(
        &mut self,
        seq: u64,
        error: String,
        permanent: bool,
        changes: &mut Vec<StoreChange>,
    ) -> AfterFailure {
        let Some(d) = self.items.get_mut(&seq) else {
            return AfterFailure::Undelivered;
        };
        d.attempts += 1;
        d.last_error = Some(error);
        if permanent || d.attempts >= MAX_ATTEMPTS {
            d.undelivered = true;
            self.busy.remove(&seq);
            changes.push(put(d));
            return AfterFailure::Undelivered;
        }
        changes.push(put(d));
        AfterFailure::Retry(d.attempts)
    }

    /// Message `seq` may be tried again (its backoff is over, or its account stopped).
    pub fn release(&mut self, seq: u64) {
        self.busy.remove(&seq);
    }

    /// Messages kept as undelivered.
    pub fn undelivered(&self) -> impl Iterator<Item = &Delivery> {
        self.items.values().filter(|d| d.undelivered)
    }

    /// Messages waiting or being sent.
    pub fn pending(&self) -> usize {
        self.items.values().filter(|d| !d.undelivered).count()
    }

    /// Load a stored row; undelivered messages get a fresh set of attempts.
    pub fn restore(&mut self, row: serde_json::Value) -> bool {
        let Ok(mut d) = serde_json::from_value::<Delivery>(row) else {
            return false;
        };
        d.undelivered = false;
        d.attempts = 0;
        self.next_seq = self.next_seq.max(d.seq);
        self.items.insert(d.seq, d);
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::model::json_text::tests::text;

    fn to(chat: &str) -> Target {
        Target {
            channel: "telegram".into(),
            account: "default".into(),
            to: chat.into(),
            thread: None,
        }
    }

    #[test]
    fn one_message_per_chat_at_a_time_and_failures_are_kept() {
        let mut o = Outbox::default();
        let mut ch = Vec::new();
        let a = o.push(to("1"), vec!["a1".into(), "a2".into()], None, 0, &mut ch);
        let b = o.push(to("1"), vec!["b".into()], None, 0, &mut ch);
        let c = o.push(to("2"), vec!["c".into()], None, 0, &mut ch);
        assert!(
            o.take_ready().is_empty(),
            "nothing leaves before its row is durable"
        );
        o.settle(b);
        assert_eq!(o.newest_unsettled(), Some(c));
        o.settle(c);
        assert_eq!(o.newest_unsettled(), None);
        let ready: Vec<u64> = o.take_ready().iter().map(|d| d.seq).collect();
        assert_eq!(ready, [a, c]);
        assert!(o.take_ready().is_empty());
        assert!(!o.accepted(a, &mut ch));
        assert!(o.accepted(a, &mut ch));
        assert_eq!(
            o.take_ready().iter().map(|d| d.seq).collect::<Vec<_>>(),
            [b]
        );
        for n in 1..MAX_ATTEMPTS {
            assert_eq!(
                o.failed(c, "502".into(), false, &mut ch),
                AfterFailure::Retry(n)
            );
        }
        assert_eq!(
            o.failed(c, "502".into(), false, &mut ch),
            AfterFailure::Undelivered
        );
        assert_eq!(o.undelivered().count(), 1);
        let mut back = Outbox::default();
        for (_, row) in crate::channels::latest_rows(&ch) {
            assert!(back.restore(row));
        }
        assert_eq!(back.undelivered().count(), 0, "retried after a restart");
        assert_eq!(back.pending(), 2);
    }

    proptest! {
        /// The row written out is byte for byte the text of the delivery as a `Value`.
        #[test]
        fn the_row_is_the_text_of_the_delivery_as_a_value(
            (channel, account, to, thread) in (text(), text(), text(), proptest::option::of(text())),
            chunks in proptest::collection::vec(text(), 0..4),
            (seq, next, attempts, created_at) in (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>()),
            (undelivered, last_error, pairing) in (any::<bool>(), proptest::option::of(text()), proptest::option::of(text())),
        ) {
            let d = Delivery {
                seq,
                target: Target { channel, account, to, thread },
                chunks,
                next: next as usize,
                attempts,
                undelivered,
                last_error,
                created_at,
                pairing,
            };
            let row = row_text(&d);
            prop_assert_eq!(row.as_str(), json!(d).to_string());
        }
    }
}
