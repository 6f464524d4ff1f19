//! The durable inbound queue: every message is a row before the offset that confirms it is
//! requested, deduplicated by its message key, and served in per-chat lanes (one turn at a
//! time per chat, in arrival order). A served message stays as a small `done` row so a
//! redelivery is still recognised; the oldest of those are pruned past a bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::inbound::{ChatKind, Inbound};
use super::row_key::row_key;
use crate::model::json_text::Object;
use crate::persist::{ChannelRowKind, RowText, StoreChange};

/// `done` rows kept for deduplication (per gateway): the newest this many always are.
pub const MAX_DONE_ROWS: usize = 2_000;
/// `done` rows past [`MAX_DONE_ROWS`] pruned at once: the oldest go when this many are over,
/// not one a message. Pruning one a message wrote the page of the oldest rows in every
/// commit, one more page of a channel turn's three or four (store simulation, 600 turns past
/// the bound: 5.8 -> 4.7 WAL frames a commit).
pub const PRUNE_BATCH: usize = 16;

/// Where a queued message is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum State {
    /// Committed, not served yet.
    Queued,
    /// Its turn runs (its user message is in the transcript).
    Running {
        /// The run's id.
        run_id: String,
    },
    /// Served (answered, paired or dropped).
    Done,
}

/// One queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Arrival order.
    pub seq: u64,
    /// The message.
    pub inbound: Inbound,
    /// Where it is.
    #[serde(flatten)]
    pub state: State,
    /// Its sender's name was looked up (found or not) since it was loaded: it goes on as it
    /// is. Not stored: after a restart the lookup runs again.
    #[serde(skip)]
    pub named: bool,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Ingress {
    /// Messages not served yet (queued or running), by seq: what a turn looks for, few.
    open: BTreeMap<u64, Event>,
    /// Served messages kept for deduplication (at most [`MAX_DONE_ROWS`]), by seq: never
    /// walked, only pruned from the oldest.
    served: BTreeMap<u64, Event>,
    /// Dedupe key → seq.
    seen: HashMap<String, u64>,
    busy: BTreeSet<String>,
    next_seq: u64,
}

impl Ingress {
    /// Whether a message with this dedupe key was received already.
    pub fn has_seen(&self, key: &str) -> bool {
        self.seen.contains_key(key)
    }

    /// Queue a new message (the caller checked it is not a duplicate).
    pub fn push(&mut self, inbound: Inbound, changes: &mut Vec<StoreChange>) {
        self.record(inbound, State::Queued, changes);
    }

    /// Record a new message answered at once, outside its lane (a command such as
    /// `/approve`): served from the start, kept so a redelivery is still recognised.
    pub fn push_served(&mut self, inbound: Inbound, changes: &mut Vec<StoreChange>) {
        self.record(inbound, State::Done, changes);
        self.prune(changes);
    }

    fn record(&mut self, inbound: Inbound, state: State, changes: &mut Vec<StoreChange>) {
        self.next_seq += 1;
        let ev = Event {
            seq: self.next_seq,
            inbound,
            state,
            named: false,
        };
        self.seen.insert(ev.inbound.dedupe_key(), ev.seq);
        changes.push(put(&ev));
        self.keep(ev);
    }

    /// Keep `ev` with the open or the served messages, by its state.
    fn keep(&mut self, ev: Event) {
        match ev.state {
            State::Done => self.served.insert(ev.seq, ev),
            State::Queued | State::Running { .. } => self.open.insert(ev.seq, ev),
        };
    }

    /// The next queued message whose lane is free (taken once [`Ingress::running`] or
    /// [`Ingress::hold`] makes its lane busy).
    pub fn next_ready(&self) -> Option<Event> {
        self.ready().cloned()
    }

    /// Whether a queued message's lane is free: [`Ingress::next_ready`] has one to give.
    pub fn has_ready(&self) -> bool {
        self.ready().is_some()
    }

    fn ready(&self) -> Option<&Event> {
        self.open
            .values()
            .find(|e| e.state == State::Queued && !self.busy.contains(&e.inbound.lane()))
    }

    /// Message `seq` waits for its sender's name: its lane is held (in memory only) until
    /// [`Ingress::named`].
    pub fn hold(&mut self, seq: u64) {
        if let Some(ev) = self.open.get(&seq) {
            self.busy.insert(ev.inbound.lane());
        }
    }

    /// Message `seq`'s sender name lookup is over, with `name` if one was found: it goes on,
    /// its lane free again if [`Ingress::hold`] held it.
    pub fn named(&mut self, seq: u64, name: Option<String>) {
        if let Some(ev) = self.open.get_mut(&seq) {
            if ev.named || ev.state != State::Queued {
                return;
            }
            ev.named = true;
            if name.is_some() {
                ev.inbound.sender.name = name;
            }
            self.busy.remove(&ev.inbound.lane());
        }
    }

    /// Message `seq` is served: done, lane free.
    pub fn done(&mut self, seq: u64, changes: &mut Vec<StoreChange>) {
        if let Some(mut ev) = self.open.remove(&seq) {
            self.busy.remove(&ev.inbound.lane());
            ev.state = State::Done;
            changes.push(put(&ev));
            self.served.insert(seq, ev);
        }
        self.prune(changes);
    }

    /// Message `seq`'s turn started as `run_id`; its lane is busy until [`Ingress::done`].
    pub fn running(&mut self, seq: u64, run_id: &str, changes: &mut Vec<StoreChange>) {
        if let Some(ev) = self.open.get_mut(&seq) {
            self.busy.insert(ev.inbound.lane());
            ev.state = State::Running {
                run_id: run_id.to_string(),
            };
            changes.push(put(ev));
        }
    }

    /// The message whose turn is `run_id`.
    pub fn by_run(&self, run_id: &str) -> Option<&Event> {
        self.open
            .values()
            .find(|e| matches!(&e.state, State::Running { run_id: r } if r == run_id))
    }

    /// Messages whose turn is running (restarted after a crash).
    pub fn running_events(&self) -> Vec<Event> {
        self.open
            .values()
            .filter(|e| matches!(e.state, State::Running { .. }))
            .cloned()
            .collect()
    }

    /// Messages not served yet.
    pub fn pending(&self) -> usize {
        self.open.len()
    }

    /// Forget the oldest served messages past [`MAX_DONE_ROWS`], once [`PRUNE_BATCH`] are over.
    fn prune(&mut self, changes: &mut Vec<StoreChange>) {
        let over = self.served.len().saturating_sub(MAX_DONE_ROWS);
        if over < PRUNE_BATCH {
            return;
        }
        for _ in 0..over {
            let Some((seq, ev)) = self.served.pop_first() else {
                break;
            };
            self.seen.remove(&ev.inbound.dedupe_key());
            changes.push(StoreChange::DeleteChannelRow {
                kind: ChannelRowKind::Ingress,
                key: row_key(seq),
            });
        }
    }

    /// Load a stored row; `false` when it does not decode. A running turn's lane is busy.
    pub fn restore(&mut self, row: serde_json::Value) -> bool {
        let Ok(ev) = serde_json::from_value::<Event>(row) else {
            return false;
        };
        self.next_seq = self.next_seq.max(ev.seq);
        self.seen.insert(ev.inbound.dedupe_key(), ev.seq);
        if matches!(ev.state, State::Running { .. }) {
            self.busy.insert(ev.inbound.lane());
        }
        self.keep(ev);
        true
    }
}

fn put(ev: &Event) -> StoreChange {
    StoreChange::PutChannelRow {
        kind: ChannelRowKind::Ingress,
        key: row_key(ev.seq),
        row: row_text(ev),
    }
}

/// Room for an event row's JSON besides its texts.
const ROW_ROOM: usize = 224;

/// The row of `ev`: `json!(ev)`'s text, written out (members in the sorted order a `Value`
/// object keeps; a test holds the two equal). Written three times a turn (queued, running,
/// done), the `Value` round cost ~26,000 instructions a row.
fn row_text(ev: &Event) -> RowText {
    let i = &ev.inbound;
    let s = &i.sender;
    let texts = [
        Some(&i.channel),
        Some(&i.account),
        Some(&i.chat_id),
        i.thread.as_ref(),
        Some(&s.id),
        s.name.as_ref(),
        s.username.as_ref(),
        s.tag.as_ref(),
        Some(&i.text),
        Some(&i.message_id),
        Some(&i.event_id),
        i.group.as_ref(),
    ];
    let run_id = match &ev.state {
        State::Running { run_id } => Some(run_id.as_str()),
        State::Queued | State::Done => None,
    };
    let len: usize = texts.iter().flatten().map(|t| t.len()).sum();
    let mut out = String::with_capacity(ROW_ROOM + len + run_id.map_or(0, str::len));
    let mut row = Object::new(&mut out);
    let inbound = row.key("inbound");
    let mut m = Object::new(inbound);
    m.str("account", &i.account)
        .str("channel", &i.channel)
        .str("chat_id", &i.chat_id)
        .str("event_id", &i.event_id)
        .opt_str("group", i.group.as_deref())
        .str(
            "kind",
            match i.kind {
                ChatKind::Direct => "direct",
                ChatKind::Group => "group",
            },
        )
        .bool("mentioned", i.mentioned)
        .str("message_id", &i.message_id);
    Object::new(m.key("sender"))
        .str("id", &s.id)
        .opt_str("name", s.name.as_deref())
        .opt_str("tag", s.tag.as_deref())
        .opt_str("username", s.username.as_deref())
        .end();
    m.str("text", &i.text)
        .opt_str("thread", i.thread.as_deref())
        .end();
    let state = match ev.state {
        State::Queued => "queued",
        State::Running { .. } => "running",
        State::Done => "done",
    };
    row.opt_str("run_id", run_id)
        .u64("seq", ev.seq)
        .str("state", state)
        .end();
    RowText::from_encoded(&out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::inbound::Sender;
    use super::*;
    use crate::model::json_text::tests::text;

    fn msg(chat: &str, id: &str) -> Inbound {
        Inbound {
            channel: "telegram".into(),
            account: "default".into(),
            chat_id: chat.into(),
            kind: ChatKind::Direct,
            thread: None,
            sender: Sender {
                id: chat.into(),
                name: None,
                username: None,
                tag: None,
            },
            text: "t".into(),
            message_id: id.into(),
            event_id: id.into(),
            mentioned: true,
            group: None,
        }
    }

    #[test]
    fn lanes_serve_one_message_per_chat_in_order_and_rows_round_trip() {
        let mut q = Ingress::default();
        let mut ch = Vec::new();
        q.push(msg("1", "a"), &mut ch);
        q.push(msg("1", "b"), &mut ch);
        q.push(msg("2", "c"), &mut ch);
        assert!(q.has_seen("telegram:default:1:a"));
        let first = q.next_ready().unwrap();
        q.running(first.seq, "r1", &mut ch);
        let second = q.next_ready().unwrap();
        assert_eq!(second.inbound.message_id, "c", "chat 1 is busy");
        q.running(second.seq, "r2", &mut ch);
        assert!(q.next_ready().is_none());
        assert_eq!(q.by_run("r1").unwrap().seq, first.seq);
        q.done(first.seq, &mut ch);
        assert_eq!(q.next_ready().unwrap().inbound.message_id, "b");
        let mut back = Ingress::default();
        for (_, row) in crate::channels::latest_rows(&ch) {
            assert!(back.restore(row));
        }
        assert_eq!(back.running_events().len(), 1);
        assert_eq!(back.next_ready().unwrap().inbound.message_id, "b");
        assert!(back.has_seen("telegram:default:1:a"));
    }

    #[test]
    fn the_oldest_served_rows_are_pruned_past_the_bound_and_open_ones_never() {
        let mut q = Ingress::default();
        let mut ch = Vec::new();
        q.push(msg("open", "waiting"), &mut ch);
        let open = q.next_ready().unwrap();
        q.running(open.seq, "o", &mut ch);
        for i in 0..MAX_DONE_ROWS + PRUNE_BATCH {
            q.push(msg("1", &i.to_string()), &mut ch);
            let ev = q.next_ready().unwrap();
            q.running(ev.seq, "r", &mut ch);
            assert_eq!(q.by_run("r").map(|e| e.seq), Some(ev.seq));
            q.done(ev.seq, &mut ch);
            assert!(q.by_run("r").is_none());
        }
        let deleted: Vec<&str> = ch
            .iter()
            .filter_map(|c| match c {
                StoreChange::DeleteChannelRow { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        let oldest: Vec<String> = (2..2 + PRUNE_BATCH as u64).map(row_key).collect();
        assert_eq!(deleted, oldest, "only the oldest served rows");
        assert!(!q.has_seen(&format!("telegram:default:1:{}", PRUNE_BATCH - 1)));
        assert!(q.has_seen(&format!("telegram:default:1:{PRUNE_BATCH}")));
        assert!(q.has_seen("telegram:default:open:waiting"));
        assert_eq!(q.pending(), 1);
        assert_eq!(q.served.len(), MAX_DONE_ROWS);
        assert_eq!(q.by_run("o").map(|e| e.seq), Some(open.seq));
    }

    #[test]
    fn done_rows_are_pruned_a_batch_at_a_time_down_to_the_bound() {
        let mut q = Ingress::default();
        let mut ch = Vec::new();
        // `n` messages more, each served at once.
        let serve = |q: &mut Ingress, n: usize, ch: &mut Vec<StoreChange>| {
            for _ in 0..n {
                q.push(msg("1", &format!("m{}", q.next_seq + 1)), ch);
                let ev = q.next_ready().unwrap();
                q.done(ev.seq, ch);
            }
        };
        let deletes = |ch: &[StoreChange]| {
            ch.iter()
                .filter(|c| matches!(c, StoreChange::DeleteChannelRow { .. }))
                .count()
        };
        serve(&mut q, MAX_DONE_ROWS + PRUNE_BATCH - 1, &mut ch);
        assert_eq!(deletes(&ch), 0, "fewer than a batch over the bound");
        assert!(q.has_seen("telegram:default:1:m1"));
        serve(&mut q, 1, &mut ch);
        assert_eq!(
            deletes(&ch),
            PRUNE_BATCH,
            "a batch over: the oldest batch at once"
        );
        assert!(!q.has_seen(&format!("telegram:default:1:m{PRUNE_BATCH}")));
        assert!(q.has_seen(&format!("telegram:default:1:m{}", PRUNE_BATCH + 1)));
        assert_eq!(q.served.len(), MAX_DONE_ROWS);
    }

    fn inbound() -> impl Strategy<Value = Inbound> {
        let sender = (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        )
            .prop_map(|(id, name, username, tag)| Sender {
                id,
                name,
                username,
                tag,
            });
        (
            (
                text(),
                text(),
                text(),
                any::<bool>(),
                proptest::option::of(text()),
            ),
            (sender, text(), text(), text(), any::<bool>()),
            proptest::option::of(text()),
        )
            .prop_map(
                |((channel, account, chat_id, group_chat, thread), rest, group)| {
                    let (sender, text, message_id, event_id, mentioned) = rest;
                    Inbound {
                        channel,
                        account,
                        chat_id,
                        kind: if group_chat {
                            ChatKind::Group
                        } else {
                            ChatKind::Direct
                        },
                        thread,
                        sender,
                        text,
                        message_id,
                        event_id,
                        mentioned,
                        group,
                    }
                },
            )
    }

    proptest! {
        /// The row written out is byte for byte the text of the event as a `Value`.
        #[test]
        fn the_row_is_the_text_of_the_event_as_a_value(
            inbound in inbound(),
            seq in any::<u64>(),
            state in prop_oneof![
                Just(State::Queued),
                Just(State::Done),
                text().prop_map(|run_id| State::Running { run_id }),
            ],
            named in any::<bool>(),
        ) {
            let ev = Event { seq, inbound, state, named };
            let row = row_text(&ev);
            prop_assert_eq!(row.as_str(), json!(ev).to_string());
        }
    }
}
