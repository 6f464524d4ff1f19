//! What the gateway does when clients do not keep up or send too much at once: the
//! gateway-wide budget of unsent bytes (past it, the connection holding the most is cut as a
//! slow consumer, so nobody else notices), the events a slow consumer is skipped for rather
//! than queued behind (upstream's `dropIfSlow`), and the per-turn frame quota that keeps one
//! connection's burst from starving the others.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::Value;

use crate::close::CloseReason;
use crate::conn::ConnId;
use crate::gateway::{Gateway, Output};
use crate::log::Level;

/// Unsent bytes over all connections, and the connections waiting for another turn.
#[derive(Debug, Default)]
pub(crate) struct Backpressure {
    /// Bytes handed to the shell in `Transmit` and not yet reported written, summed over the
    /// connections the core knows (each one's share is its `Conn::unsent`).
    unsent: usize,
    /// Connections whose frame quota ran out with input possibly left, in turn order.
    backlog: VecDeque<ConnId>,
    /// When the backlog wants its next round (the instant a connection joined it).
    due: Option<Instant>,
}

impl Backpressure {
    /// The next round of the backlog, if one is waiting.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }
}

/// Whether upstream broadcasts `event` with `dropIfSlow`: a slow consumer misses it (its
/// `seq` still advances, so the gap shows) instead of having it queued.
pub(crate) fn drop_if_slow(event: &str, payload: &Value) -> bool {
    match event {
        "presence"
        | "device.pair.requested"
        | "node.pair.requested"
        | "sessions.changed"
        | "session.operation"
        | "session.tool" => true,
        "chat" => matches!(
            payload.get("state").and_then(Value::as_str),
            Some("delta" | "status")
        ),
        _ => false,
    }
}

impl Gateway {
    /// `n` more bytes were handed to the shell (already added to their connection's count).
    pub(crate) fn count_unsent(&mut self, n: usize) {
        self.pressure.unsent += n;
    }

    /// The shell wrote `n` bytes of `id`'s; a stalled connection that caught up gets its turn.
    pub(crate) fn count_written(&mut self, now: Instant, id: ConnId, n: usize) {
        if let Some(c) = self.conns.get_mut(&id) {
            let n = n.min(c.unsent);
            c.unsent -= n;
            self.pressure.unsent -= n;
            if c.backlogged && c.unsent <= self.config.limits.slow_consumer_bytes {
                self.pressure.due.get_or_insert(now);
            }
        }
    }

    /// A connection is gone with `unsent` bytes not written: they no longer count.
    pub(crate) fn release_unsent(&mut self, unsent: usize) {
        self.pressure.unsent = self.pressure.unsent.saturating_sub(unsent);
    }

    /// While the unsent bytes of all connections pass `maxBufferedBytesTotal`, cut the
    /// connection holding the most.
    pub(crate) fn enforce_budget(&mut self, now: Instant) {
        let budget = self.config.limits.max_buffered_bytes_total;
        while self.pressure.unsent > budget {
            let Some((&id, most)) = self
                .conns
                .iter()
                .map(|(id, c)| (id, c.unsent))
                .max_by_key(|&(id, unsent)| (unsent, core::cmp::Reverse(*id)))
            else {
                return;
            };
            if most == 0 {
                return;
            }
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!("slow consumer: {most} bytes unsent, over gateway.maxBufferedBytesTotal ({budget})"),
            );
            self.cut_slow_consumer(now, id);
        }
    }

    /// Close `id` as a slow consumer: what is queued for it is discarded (un-drained
    /// transmits here, the shell's queue by [`Output::Discard`]), then 1008 is attempted.
    pub(crate) fn cut_slow_consumer(&mut self, now: Instant, id: ConnId) {
        self.out
            .retain(|o| !matches!(o, Output::Transmit { conn, .. } if *conn == id));
        self.out.push_back(Output::Discard { conn: id });
        self.close_ws(now, id, CloseReason::SlowConsumer);
    }

    /// `id` used up its quota this turn: it gets another after the others, or, `stalled`
    /// (too much of its answers unsent), once the shell has written them.
    pub(crate) fn defer_input(&mut self, now: Instant, id: ConnId, stalled: bool) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !c.backlogged {
            c.backlogged = true;
            self.pressure.backlog.push_back(id);
        }
        if !stalled {
            self.pressure.due.get_or_insert(now);
        }
    }

    /// One round of the backlog: each waiting connection reads up to its quota again.
    pub(crate) fn backlog_round(&mut self, now: Instant) {
        if self.pressure.due.is_none_or(|due| due > now) {
            return;
        }
        self.pressure.due = None;
        let round = std::mem::take(&mut self.pressure.backlog);
        for id in round {
            if let Some(c) = self.conns.get_mut(&id) {
                c.backlogged = false;
                self.read_frames(now, id);
            }
        }
    }

    /// Whether the shell should read more from `id`: not while bytes already read wait for
    /// their turn, nor while more than `slowConsumerBytes` of its answers wait to be written
    /// (a client that does not read gets no more work done), so a flood waits in the socket,
    /// not in memory or on the CPU. Re-ask after every drain: either can change at any input.
    pub fn wants_input(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .is_none_or(|c| !c.backlogged && c.unsent <= self.config.limits.slow_consumer_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn droppable_events_follow_upstream() {
        assert!(drop_if_slow("presence", &json!({})));
        assert!(drop_if_slow("chat", &json!({"state": "delta"})));
        assert!(!drop_if_slow("chat", &json!({"state": "final"})));
        assert!(!drop_if_slow("tick", &json!({})));
        assert!(!drop_if_slow("agent", &json!({})));
    }
}
