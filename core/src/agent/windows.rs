//! The model windows held in memory: the [`Recent`] end of a transcript, for the sessions used
//! most recently, at most `maxLoadedWindows` of them (a session whose run is in progress stays
//! however many that makes). Another session's window is read from the store when a turn
//! needs it ([`Work::ReadHistory`]); the turn waits for the rows. Messages appended while the
//! read is out are kept and added to what it returns, so the window is the one a session that
//! never left memory would hold.
//!
//! [`Work::ReadHistory`]: crate::Work::ReadHistory

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use crate::gateway::{Gateway, Output};
use crate::log::Level;
use crate::model::openai::Message;
use crate::persist::{HistoryQuery, HistoryRange};
use crate::work::{Work, WorkId, WorkResult};

use super::session::{Recent, Window};
use super::{Failure, OFFLINE};

/// A session's window: in memory, or being read from the store.
#[derive(Debug)]
enum State {
    Loaded(Recent),
    /// Read `read` is out; `appended` came after it was asked for.
    Loading {
        read: WorkId,
        appended: Vec<(Option<Message>, usize)>,
    },
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// When it was last used, in uses of any window: the least recent leaves first.
    used: u64,
}

/// A window read from the store: its session and the runs whose turns wait for it.
#[derive(Debug)]
struct Read {
    key: String,
    waiting: Vec<u64>,
}

/// Windows by session key, in least-recently-used order, and the reads that load them.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    entries: HashMap<String, Entry>,
    reads: HashMap<WorkId, Read>,
    uses: u64,
}

/// Where a turn's window is.
pub(crate) enum Lookup {
    /// In memory ([`Windows::recent`]).
    Held,
    /// Being read: the turn waits for read `WorkId`.
    Loading(WorkId),
    /// Not in memory: read it from the store.
    Absent,
}

impl Windows {
    fn touch(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// The window of `key`, marked as used.
    pub(crate) fn lookup(&mut self, key: &str) -> Lookup {
        let used = self.touch();
        match self.entries.get_mut(key) {
            None => Lookup::Absent,
            Some(e) => {
                e.used = used;
                match &e.state {
                    State::Loaded(_) => Lookup::Held,
                    State::Loading { read, .. } => Lookup::Loading(*read),
                }
            }
        }
    }

    /// The window of `key`, if it is in memory (not marked as used: [`Windows::lookup`]).
    pub(crate) fn recent(&self, key: &str) -> Option<&Recent> {
        match &self.entries.get(key)?.state {
            State::Loaded(recent) => Some(recent),
            State::Loading { .. } => None,
        }
    }

    /// Session `key`'s window is empty (a new or reset session): hold it without a read.
    pub(crate) fn start_empty(&mut self, key: &str) {
        let used = self.touch();
        let state = State::Loaded(Recent::default());
        self.entries.insert(key.to_string(), Entry { state, used });
    }

    /// A message was appended to session `key` (`model`: as the model reads it; `size`: the
    /// length of its JSON text): a window in memory or being read keeps it (`window` bounds
    /// it); one that is neither will be read with it from the store.
    pub(crate) fn append(
        &mut self,
        key: &str,
        model: Option<Message>,
        size: usize,
        window: Window,
    ) {
        let used = self.touch();
        if let Some(e) = self.entries.get_mut(key) {
            e.used = used;
            match &mut e.state {
                State::Loaded(recent) => recent.keep_model(model, size, window),
                State::Loading { appended, .. } => appended.push((model, size)),
            }
        }
    }

    /// Read `read` will load session `key`'s window for run `serial`'s turn.
    pub(crate) fn start_read(&mut self, key: &str, read: WorkId, serial: u64) {
        let used = self.touch();
        let state = State::Loading {
            read,
            appended: Vec::new(),
        };
        self.entries.insert(key.to_string(), Entry { state, used });
        let waiting = vec![serial];
        let key = key.to_string();
        self.reads.insert(read, Read { key, waiting });
    }

    /// Run `serial`'s turn waits for read `read` too.
    pub(crate) fn wait(&mut self, read: WorkId, serial: u64) {
        if let Some(r) = self.reads.get_mut(&read) {
            r.waiting.push(serial);
        }
    }

    /// Whether `id` is a window read.
    pub(crate) fn is_read(&self, id: WorkId) -> bool {
        self.reads.contains_key(&id)
    }

    /// Read `read` returned `rows` (the window's tail, oldest first): hold them with what was
    /// appended since, within `window`. The session and the runs that waited, unless the read
    /// is unknown; a session reset or deleted meanwhile keeps nothing of it.
    pub(crate) fn loaded(
        &mut self,
        read: WorkId,
        rows: Vec<Value>,
        window: Window,
    ) -> Option<(String, Vec<u64>)> {
        let Read { key, waiting } = self.reads.remove(&read)?;
        if let Some(e) = self.entries.get_mut(&key)
            && let State::Loading { read: r, appended } = &mut e.state
            && *r == read
        {
            let mut recent = Recent::default();
            for m in rows {
                recent.keep(&m, window);
            }
            for (model, size) in appended.drain(..) {
                recent.keep_model(model, size, window);
            }
            e.state = State::Loaded(recent);
        }
        Some((key, waiting))
    }

    /// Read `read` failed: forget it; the session and the runs that waited.
    pub(crate) fn failed(&mut self, read: WorkId) -> Option<(String, Vec<u64>)> {
        let Read { key, waiting } = self.reads.remove(&read)?;
        if self
            .entries
            .get(&key)
            .is_some_and(|e| matches!(e.state, State::Loading { read: r, .. } if r == read))
        {
            self.entries.remove(&key);
        }
        Some((key, waiting))
    }

    /// Forget session `key`'s window (the session was reset or deleted).
    pub(crate) fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drop the least recently used windows in memory until at most `cap` are, keeping those
    /// `busy` names (a run of theirs is in progress).
    pub(crate) fn evict(&mut self, cap: usize, busy: impl Fn(&str) -> bool) {
        let loaded = |e: &Entry| matches!(e.state, State::Loaded(_));
        let mut held = self.entries.values().filter(|e| loaded(e)).count();
        while held > cap {
            let oldest = self
                .entries
                .iter()
                .filter(|(k, e)| loaded(e) && !busy(k))
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(key) = oldest else {
                return;
            };
            self.entries.remove(&key);
            held -= 1;
        }
    }

    /// Windows in memory, their messages, and the bytes of those messages' encodings.
    pub(crate) fn held(&self) -> (usize, usize, usize) {
        self.entries
            .values()
            .filter_map(|e| match &e.state {
                State::Loaded(r) => Some(r.held()),
                State::Loading { .. } => None,
            })
            .fold((0, 0, 0), |(w, n, b), (m, bytes)| (w + 1, n + m, b + bytes))
    }
}

/// Why a turn failed when its window could not be read.
const NOT_READ: &str =
    "the session's transcript could not be read from the gateway's store; see the gateway log";

impl Gateway {
    /// Whether the window run `serial`'s turn sends the model from session `key` is in
    /// memory ([`Gateway::turn_window`] gives it); `false` when it is being read from the
    /// store: the turn goes on when the rows are back ([`Gateway::on_window_read`]).
    pub(crate) fn window_ready(&mut self, serial: u64, key: &str) -> bool {
        let window = Window::of(&self.config.limits);
        if self.agent.sessions.get(key).is_none_or(|s| s.total == 0) {
            return true;
        }
        match self.agent.windows.lookup(key) {
            Lookup::Held => return true,
            Lookup::Loading(read) => {
                self.agent.windows.wait(read, serial);
                return false;
            }
            Lookup::Absent => {}
        }
        // Every change asked for so far reaches the store before the read.
        self.persist();
        let id = self.next_work_id();
        self.agent.windows.start_read(key, id, serial);
        let query = HistoryQuery {
            session_key: key.to_string(),
            range: HistoryRange::Tail {
                offset: 0,
                limit: u64::try_from(window.messages).unwrap_or(u64::MAX),
            },
            max_bytes: window.bytes,
            max_message_bytes: usize::MAX,
        };
        self.out.push_back(Output::Work {
            id,
            work: Work::ReadHistory(query),
        });
        false
    }

    /// The messages a turn sends the model from session `key` (none when its window is not
    /// in memory: [`Gateway::window_ready`] first), borrowed where they are held.
    pub(crate) fn turn_window(&self, key: &str) -> Vec<Cow<'_, Message>> {
        if self.agent.sessions.get(key).is_none_or(|s| s.total == 0) {
            return Vec::new();
        }
        self.agent
            .windows
            .recent(key)
            .map(|r| r.to_model(self.config.limits.max_model_messages))
            .unwrap_or_default()
    }

    /// Whether `id` is the read of a model window.
    pub(crate) fn is_window_read(&self, id: WorkId) -> bool {
        self.agent.windows.is_read(id)
    }

    /// The rows of window read `id` came back: the turns that waited for them send their
    /// model requests. If the store could not read them, those turns fail.
    pub(crate) fn on_window_read(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let window = Window::of(&self.config.limits);
        let page = match result {
            WorkResult::History(Ok(page)) => page,
            other => {
                let Some((key, waiting)) = self.agent.windows.failed(id) else {
                    return;
                };
                let why = match other {
                    WorkResult::History(Err(e)) => e,
                    _ => "this host keeps no transcripts".to_string(),
                };
                let line = format!("the model window of {key} could not be read: {why}");
                self.log(now, Level::Error, None, line);
                for serial in waiting {
                    self.fail_run(now, serial, Failure::plain(NOT_READ.into(), "unknown"));
                }
                return;
            }
        };
        let rows = page.rows.into_iter().map(|r| r.message).collect();
        let Some((_, waiting)) = self.agent.windows.loaded(id, rows, window) else {
            return;
        };
        for serial in waiting {
            match self.config.model.clone() {
                Some(route) => self.send_model_request(now, serial, &route),
                None => self.fail_run(now, serial, Failure::plain(OFFLINE.into(), "unknown")),
            }
        }
        self.agent
            .evict_windows(self.config.limits.max_loaded_windows);
    }
}
