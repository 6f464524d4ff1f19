//! The keyed rows: every row the core keys by one string and puts or deletes whole (chat
//! sessions, the channels' DM pairing, inbound queue, outbox and poll offsets, exec
//! allow-always grants), in one table ordered by kind, then key (schema 7). A channel turn's
//! commit puts its session's row, its inbound row, its reply's outbox row and the poll offset:
//! each kind in a table of its own, that was a page written per table; in one b-tree, with the
//! kinds numbered so those rows sort side by side (the newest inbound rows, then the outbox, the
//! offsets, the sessions), they share a page, written once.

use clawgate_core::persist::ChannelRowKind;

/// A chat session's kind (the last: a gateway's few sessions share the page of the newest
/// inbound rows, the outbox and the offsets).
pub(crate) const SESSION: i64 = 7;

/// Insert or replace a row: `?1` its kind, `?2` its key, `?3` the row.
pub(crate) const PUT: &str = "INSERT OR REPLACE INTO keyed (kind, key, row) VALUES (?1, ?2, ?3)";
/// Delete the row of kind `?1` and key `?2`.
pub(crate) const DELETE: &str = "DELETE FROM keyed WHERE kind = ?1 AND key = ?2";
/// Every row of kind `?1` (key and row), by key.
pub(crate) const LOAD: &str = "SELECT key, row FROM keyed WHERE kind = ?1 ORDER BY key";

/// The stored kind of a channel row (the numbers are in the database: never renumber one).
pub(crate) fn channel(kind: ChannelRowKind) -> i64 {
    match kind {
        ChannelRowKind::PairingRequest => 1,
        ChannelRowKind::PairingApproval => 2,
        ChannelRowKind::ExecGrant => 3,
        ChannelRowKind::Ingress => 4,
        ChannelRowKind::Outbox => 5,
        ChannelRowKind::Offset => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_number_and_a_turns_rows_sort_side_by_side() {
        let mut numbers: Vec<i64> = ChannelRowKind::ALL.map(channel).to_vec();
        numbers.push(SESSION);
        let mut distinct = numbers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), numbers.len());
        // Inbound rows, then the outbox, the offsets, the sessions: nothing between them.
        let turn = [
            channel(ChannelRowKind::Ingress),
            channel(ChannelRowKind::Outbox),
            channel(ChannelRowKind::Offset),
            SESSION,
        ];
        assert!(turn.windows(2).all(|w| w[1] == w[0] + 1), "{turn:?}");
        assert_eq!(distinct.last(), Some(&SESSION));
    }
}
