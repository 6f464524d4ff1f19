//! `chat.history`: pages of a transcript read from the store, off the loop thread. The call
//! asks the host for a [`Work::ReadHistory`] and is answered when the rows come back.
//! Paging is upstream's: a tail page skips the `offset` newest messages and returns up to
//! `limit` (at most 1000) older ones, with `hasMore`, `nextOffset` and `totalMessages`; a tail
//! page also carries a `deltaCursor`, which a later call passes back as `cursor` to get only
//! the messages after it (`{kind:"delta"}`), or `{kind:"reset"}` when the cursor is stale or
//! too far behind. Answers are bounded in bytes (`maxHistoryBytes`), and a message over
//! `maxHistoryMessageBytes` is replaced by a placeholder.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::conn::ConnId;
use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::{Gateway, Output};
use crate::log::Level;
use crate::methods::params::{self, Bounded, FromParams, Kind, NonEmpty, optional, required};
use crate::methods::{Call, Reply};
use crate::persist::{HistoryPage, HistoryQuery, HistoryRange, HistoryRow};
use crate::work::{Work, WorkId, WorkResult};

use super::session::canonical_key;

/// `chat.history` params (upstream's `ChatHistoryParams`). `agentId`, `pendingBefore`,
/// `inputRunIds`, `messageId`, `sessionId` and `maxChars` are accepted and not acted on;
/// `maxBytes` lowers the answer's byte bound.
pub(crate) struct ChatHistory {
    session_key: NonEmpty,
    limit: Option<Bounded<1, MAX_HISTORY_LIMIT>>,
    offset: Option<u64>,
    cursor: Option<String>,
    max_bytes: Option<u64>,
    message_id: Option<Value>,
}

impl FromParams for ChatHistory {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("sessionKey", Kind::NonEmpty),
            optional("limit", Kind::Bounded(1, MAX_HISTORY_LIMIT)),
            optional("offset", Kind::U64),
            optional("cursor", Kind::Str),
            optional("agentId", Kind::Ignored),
            optional("maxBytes", Kind::U64),
            optional("pendingBefore", Kind::Ignored),
            optional("inputRunIds", Kind::Ignored),
            optional("messageId", Kind::Any),
            optional("sessionId", Kind::Ignored),
            optional("maxChars", Kind::Ignored),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            session_key: p.required_non_empty("sessionKey"),
            limit: p.bounded("limit"),
            offset: p.u64("offset"),
            cursor: p.string("cursor"),
            max_bytes: p.u64("maxBytes"),
            message_id: p.take("messageId"),
        })
    }
}

/// Messages a page returns when no `limit` is given (upstream's 200).
const DEFAULT_HISTORY_LIMIT: u64 = 200;
/// The largest `limit` (upstream's `CHAT_HISTORY_MAX_ENTRIES`).
const MAX_HISTORY_LIMIT: u64 = 1000;
/// A catch-up past this many messages resets to a tail fetch (upstream's 200 events).
const DELTA_MAX_MESSAGES: u64 = 200;
/// A catch-up past this many bytes resets to a tail fetch (upstream's 1 MB).
const DELTA_MAX_BYTES: usize = 1_000_000;
/// The smallest `maxBytes` upstream's schema takes.
const MIN_MAX_BYTES: u64 = 1024;
/// What stands in for a message too large to show (upstream's wording).
const OVERSIZED: &str = "[chat.history omitted: message too large]";

/// A `chat.history` call waiting for its rows.
#[derive(Debug)]
pub(crate) struct PendingRead {
    conn: ConnId,
    req_id: String,
    session_key: String,
    session_id: String,
    /// The `offset` asked for, if any (a tail page).
    offset: Option<u64>,
    /// A catch-up after this position (a `cursor`'s), else a tail page.
    after: Option<u64>,
}

/// The `chat.history` calls waiting for the store, by read.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    pending: HashMap<WorkId, PendingRead>,
}

impl Reads {
    /// A connection closed: its reads have nobody to answer.
    pub(crate) fn conn_gone(&mut self, conn: ConnId) {
        self.pending.retain(|_, r| r.conn != conn);
    }
}

/// The delta cursor of session `session_id` at position `seq`.
fn cursor(session_id: &str, seq: u64) -> String {
    format!("{session_id}:{seq}")
}

/// A message as a page shows it, with its `__openclaw.seq`; an oversized one (not even
/// loaded) as upstream's placeholder, an assistant row stamped `now_ms`.
fn shown(row: HistoryRow, now_ms: u64) -> Value {
    let mut meta = Map::new();
    meta.insert("seq".into(), json!(row.seq));
    let mut message = row.message;
    if row.oversized {
        meta.insert("truncated".into(), json!(true));
        meta.insert("reason".into(), json!("oversized"));
        message = json!({
            "role": "assistant",
            "content": [{"type": "text", "text": OVERSIZED}],
            "timestamp": now_ms,
        });
    }
    if let Value::Object(m) = &mut message {
        if let Some(Value::Object(existing)) = m.get("__openclaw") {
            for (k, v) in existing {
                meta.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        m.insert("__openclaw".into(), Value::Object(meta));
    }
    message
}

impl Gateway {
    /// `chat.history`: ask the store for a page (or a catch-up after `cursor`) and answer
    /// when it comes back.
    pub(crate) fn chat_history(&mut self, now: Instant, call: &Call<'_>, p: ChatHistory) -> Reply {
        if p.cursor.is_some() && (p.offset.is_some() || p.message_id.is_some()) {
            return Reply::Now(Err(ErrorShape::invalid(
                "cursor cannot be used with offset or messageId",
            )));
        }
        if p.max_bytes.is_some_and(|b| b < MIN_MAX_BYTES) {
            return Reply::Now(Err(ErrorShape::invalid(format!(
                "invalid params: at /maxBytes: must be >= {MIN_MAX_BYTES}"
            ))));
        }
        let key = canonical_key(&p.session_key.0);
        let limits = &self.config.limits;
        let asked = p
            .max_bytes
            .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
        let answer_bytes = limits.max_history_bytes.min(asked);
        let Some(session) = self.agent.sessions.get(&key) else {
            return Reply::Now(Ok(match p.cursor {
                Some(_) => json!({"kind": "reset"}),
                None => self.tail_page(now, &key, None, p.offset, HistoryPage::default()),
            }));
        };
        let (range, max_bytes, after) = match &p.cursor {
            Some(c) => {
                let at = c
                    .rsplit_once(':')
                    .filter(|(id, _)| *id == session.id)
                    .and_then(|(_, seq)| seq.parse::<u64>().ok())
                    .filter(|seq| *seq <= session.total);
                let Some(seq) = at else {
                    return Reply::Now(Ok(json!({"kind": "reset"})));
                };
                let limit = DELTA_MAX_MESSAGES + 1;
                let bytes = answer_bytes.min(DELTA_MAX_BYTES);
                (HistoryRange::After { seq, limit }, bytes, Some(seq))
            }
            None => {
                let limit = p.limit.map_or(DEFAULT_HISTORY_LIMIT, |l| l.0);
                let offset = p.offset.unwrap_or(0);
                let range = HistoryRange::Tail { offset, limit };
                (range, answer_bytes, None)
            }
        };
        if self.agent.reads.pending.len() >= limits.max_history_reads {
            let max = limits.max_history_reads;
            return Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!(
                    "too many chat.history reads in progress (at most {max}); try again shortly"
                ),
            )));
        }
        let query = HistoryQuery {
            session_key: key.clone(),
            range,
            max_bytes,
            max_message_bytes: limits.max_history_message_bytes,
        };
        let read = PendingRead {
            conn: call.conn,
            req_id: call.req_id.to_string(),
            session_key: key,
            session_id: session.id.clone(),
            offset: p.offset,
            after,
        };
        let id = self.next_work_id();
        self.agent.reads.pending.insert(id, read);
        self.out.push_back(Output::Work {
            id,
            work: Work::ReadHistory(query),
        });
        Reply::Later
    }

    /// Whether `id` is a `chat.history` read.
    pub(crate) fn is_history_read(&self, id: WorkId) -> bool {
        self.agent.reads.pending.contains_key(&id)
    }

    /// The rows of read `id` came back (or the store could not read them): answer its call.
    pub(crate) fn on_history(&mut self, now: Instant, id: WorkId, result: WorkResult) {
        let Some(read) = self.agent.reads.pending.remove(&id) else {
            return;
        };
        let page = match result {
            WorkResult::History(Ok(page)) => page,
            other => {
                let why = match other {
                    WorkResult::History(Err(e)) => e,
                    _ => "this host keeps no transcripts".to_string(),
                };
                self.log(
                    now,
                    Level::Error,
                    Some(read.conn),
                    format!("chat.history of {} failed: {why}", read.session_key),
                );
                let e = ErrorShape::new(
                    ErrorCode::Unavailable,
                    "chat history could not be read from the gateway's store; see the gateway log",
                );
                self.answer(now, read.conn, &read.req_id, Err(e));
                return;
            }
        };
        let answer = match read.after {
            Some(after) => self.delta_page(now, &read, after, page),
            None => {
                let id = Some(read.session_id.as_str());
                self.tail_page(now, &read.session_key, id, read.offset, page)
            }
        };
        self.answer(now, read.conn, &read.req_id, Ok(answer));
    }

    /// A tail page: the rows, `hasMore`/`nextOffset`/`totalMessages`, and on the newest page a
    /// `deltaCursor`.
    fn tail_page(
        &self,
        now: Instant,
        key: &str,
        session_id: Option<&str>,
        offset: Option<u64>,
        page: HistoryPage,
    ) -> Value {
        let skipped = offset.unwrap_or(0);
        let next = skipped.saturating_add(page.rows.len() as u64);
        let has_more = next < page.total;
        let newest = page.rows.last().map_or(page.total, |r| r.seq);
        let route = self.config.model.as_ref();
        let mut out = Map::new();
        out.insert("sessionKey".into(), json!(key));
        if let Some(id) = session_id {
            out.insert("sessionId".into(), json!(id));
            if skipped == 0 {
                out.insert("deltaCursor".into(), json!(cursor(id, newest)));
            }
        }
        let now_ms = self.unix_ms(now);
        let messages: Vec<Value> = page.rows.into_iter().map(|r| shown(r, now_ms)).collect();
        out.insert("messages".into(), Value::Array(messages));
        if let Some(o) = offset {
            out.insert("offset".into(), json!(o));
        }
        if has_more {
            out.insert("nextOffset".into(), json!(next));
        }
        out.insert("hasMore".into(), json!(has_more));
        out.insert("totalMessages".into(), json!(page.total));
        out.insert(
            "defaults".into(),
            json!({
                "modelProvider": route.map(|m| m.provider.as_str()),
                "model": route.map(|m| m.model.as_str()),
            }),
        );
        out.insert("sessionInfo".into(), self.session_info(key));
        if let Some(run) = self.in_flight_run(key) {
            out.insert("inFlightRun".into(), run);
        }
        Value::Object(out)
    }

    /// A catch-up: every message after the cursor, or `reset` when they do not fit in one
    /// answer or the session changed.
    fn delta_page(&self, now: Instant, read: &PendingRead, after: u64, page: HistoryPage) -> Value {
        let last = page.rows.last().map_or(after, |r| r.seq);
        let complete = page.rows.len() as u64 <= DELTA_MAX_MESSAGES && last == page.total;
        let same = self
            .agent
            .sessions
            .get(&read.session_key)
            .is_some_and(|s| s.id == read.session_id);
        if !complete || !same {
            return json!({"kind": "reset"});
        }
        let now_ms = self.unix_ms(now);
        let messages: Vec<Value> = page.rows.into_iter().map(|r| shown(r, now_ms)).collect();
        let mut out = json!({
            "kind": "delta",
            "messages": messages,
            "deltaCursor": cursor(&read.session_id, last),
            "sessionInfo": self.session_info(&read.session_key),
        });
        if let (Some(run), Value::Object(o)) = (self.in_flight_run(&read.session_key), &mut out) {
            o.insert("inFlightRun".into(), run);
        }
        out
    }

    /// What `chat.history` reports of a session: its row, whether a run is active and which
    /// (`activeRunIds`, `status`), and the run that answered last (`lastRunId`, from the
    /// newest answer's `__openclaw.runId`).
    fn session_info(&self, key: &str) -> Value {
        let session = self.agent.sessions.get(key);
        let mut info = match session {
            Some(s) => s.row_value(key),
            None => json!({"key": key}),
        };
        let active = self.in_flight_run(key);
        let last_run = session
            .and_then(|s| s.last())
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .and_then(|m| m.pointer("/__openclaw/runId").cloned());
        if let Value::Object(m) = &mut info {
            m.insert("hasActiveRun".into(), json!(active.is_some()));
            let ids: Vec<&Value> = active.iter().filter_map(|r| r.get("runId")).collect();
            m.insert("activeRunIds".into(), json!(ids));
            if active.is_some() {
                m.insert("status".into(), json!("running"));
            } else if last_run.is_some() {
                m.insert("status".into(), json!("done"));
            }
            if let Some(id) = last_run {
                m.insert("lastRunId".into(), id);
            }
        }
        info
    }

    /// The run answering session `key` now, as upstream's `inFlightRun`: its id, the text so
    /// far and when it started.
    fn in_flight_run(&self, key: &str) -> Option<Value> {
        let serial = self.agent.lanes.active(key)?;
        let run = self.agent.runs.get(&serial)?;
        Some(json!({"runId": run.run_id, "text": run.text, "startedAt": run.started_at}))
    }
}
