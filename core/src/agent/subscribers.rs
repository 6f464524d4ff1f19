//! Who receives session events: the one registry of `sessions.subscribe` (every session's
//! `sessions.changed` and `session.message`) and `sessions.messages.subscribe {key}` (one
//! session's `session.message`). Code that changes a session calls
//! [`Gateway::session_changed`] or [`Gateway::message_appended`]; the registry decides who
//! hears of it. A connection that closes leaves the registry ([`Subscribers::conn_gone`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::{Value, json};

use crate::conn::ConnId;
use crate::gateway::Gateway;

/// The subscriptions of every connection.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    /// Connections that called `sessions.subscribe`.
    sessions: BTreeSet<ConnId>,
    /// Per session key, the connections watching its messages.
    messages: BTreeMap<String, BTreeSet<ConnId>>,
    /// Per connection, the session keys it watches (the reverse of `messages`).
    by_conn: BTreeMap<ConnId, BTreeSet<String>>,
}

/// A connection watches as many sessions as it may already (`maxSessionSubscriptions`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooMany;

impl Subscribers {
    /// `conn` receives every session's changes and messages.
    pub(crate) fn subscribe_sessions(&mut self, conn: ConnId) {
        self.sessions.insert(conn);
    }

    /// `conn` receives the messages of session `key`; at most `max` keys per connection.
    pub(crate) fn subscribe_messages(
        &mut self,
        conn: ConnId,
        key: &str,
        max: usize,
    ) -> Result<(), TooMany> {
        let keys = self.by_conn.entry(conn).or_default();
        if !keys.contains(key) && keys.len() >= max {
            if keys.is_empty() {
                self.by_conn.remove(&conn);
            }
            return Err(TooMany);
        }
        keys.insert(key.to_string());
        self.messages
            .entry(key.to_string())
            .or_default()
            .insert(conn);
        Ok(())
    }

    /// `conn` no longer receives the messages of session `key` (a no-op when it did not).
    pub(crate) fn unsubscribe_messages(&mut self, conn: ConnId, key: &str) {
        if let Some(keys) = self.by_conn.get_mut(&conn) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        self.drop_watcher(key, conn);
    }

    /// A connection closed: it leaves every subscription.
    pub(crate) fn conn_gone(&mut self, conn: ConnId) {
        self.sessions.remove(&conn);
        for key in self.by_conn.remove(&conn).unwrap_or_default() {
            self.drop_watcher(&key, conn);
        }
    }

    fn drop_watcher(&mut self, key: &str, conn: ConnId) {
        if let Some(conns) = self.messages.get_mut(key) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.messages.remove(key);
            }
        }
    }

    /// Who hears that a session changed: the `sessions.subscribe` connections.
    pub(crate) fn changes_audience(&self) -> BTreeSet<ConnId> {
        self.sessions.clone()
    }

    /// Who watches session `key` with `sessions.messages.subscribe` (and so hears its
    /// channel runs' `chat` and `agent` events).
    pub(crate) fn watchers(&self, key: &str) -> BTreeSet<ConnId> {
        self.messages.get(key).cloned().unwrap_or_default()
    }

    /// Whether a run's events reach anyone: an operator's run's go to every operator; a
    /// channel's run's only to the connections watching its session ([`Self::watchers`]).
    pub(crate) fn hear(&self, run: &super::run::Run) -> bool {
        run.origin.is_some() || self.watched(&run.session_key)
    }

    /// Whether a connection watches session `key`'s messages (`sessions.messages.subscribe`).
    fn watched(&self, key: &str) -> bool {
        self.messages.get(key).is_some_and(|c| !c.is_empty())
    }

    /// Whether anyone hears of a message appended to session `key` (whether
    /// [`Self::message_audience`] is not empty), without building that audience.
    pub(crate) fn hears_messages(&self, key: &str) -> bool {
        !self.sessions.is_empty() || self.watched(key)
    }

    /// Who hears of a message appended to session `key`: the `sessions.subscribe`
    /// connections and those watching `key`.
    pub(crate) fn message_audience(&self, key: &str) -> BTreeSet<ConnId> {
        let mut out = self.sessions.clone();
        out.extend(self.messages.get(key).into_iter().flatten().copied());
        out
    }
}

/// Why `sessions.changed` is sent (upstream's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A session was created by its first message.
    Create,
    /// `sessions.patch` changed its fields.
    Patch,
    /// `sessions.reset` gave it a new session id (`reason: "new"` or `"reset"`).
    Reset(&'static str),
    /// `sessions.delete` removed it.
    Delete,
    /// `sessions.abort` stopped its runs.
    Abort,
}

impl Change {
    fn reason(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Patch => "patch",
            Change::Reset(reason) => reason,
            Change::Delete => "delete",
            Change::Abort => "abort",
        }
    }
}

impl Gateway {
    /// Session `key` changed: tell the `sessions.subscribe` connections, with the session's
    /// row unless it was deleted.
    pub(crate) fn session_changed(&mut self, now: Instant, key: &str, change: Change) {
        let audience = self.agent.subscribers.changes_audience();
        if audience.is_empty() {
            return;
        }
        let mut payload = json!({
            "sessionKey": key,
            "agentId": super::AGENT_ID,
            "reason": change.reason(),
            "ts": self.unix_ms(now),
        });
        if change != Change::Delete
            && let (Some(row), Value::Object(p)) = (self.session_row(key), &mut payload)
        {
            if let Some(id) = row.get("sessionId") {
                p.insert("sessionId".into(), id.clone());
            }
            p.insert("session".into(), row);
        }
        self.broadcast_to(now, "sessions.changed", &payload, &audience);
    }

    /// `message` was appended to session `key` at position `seq` (from 1), as part of run
    /// `run_id` if any: send it as `session.message` to the connections watching that
    /// session, with its id (`__openclaw.id`), position and run, which clients use to match it
    /// with the run's `chat` events. Any code that appends to a transcript (operator or
    /// channel turns) calls this after the append ([`Gateway::append_message`] does).
    pub(crate) fn message_appended(
        &mut self,
        now: Instant,
        key: &str,
        message: &Value,
        seq: u64,
        run_id: Option<&str>,
    ) {
        let audience = self.agent.subscribers.message_audience(key);
        if audience.is_empty() {
            return;
        }
        let mut message = message.clone();
        let id = message.pointer("/__openclaw/id").cloned();
        if let Some(Value::Object(meta)) = message.get_mut("__openclaw") {
            meta.insert("seq".into(), json!(seq));
        }
        let mut payload = json!({
            "sessionKey": key,
            "agentId": super::AGENT_ID,
            "message": message,
            "messageSeq": seq,
        });
        if let Value::Object(p) = &mut payload {
            if let Some(id) = id {
                p.insert("messageId".into(), id);
            }
            if let Some(run_id) = run_id {
                p.insert("runId".into(), json!(run_id));
            }
            if let Some(row) = self.session_row(key) {
                p.insert("session".into(), row);
            }
        }
        // While a run of the session is gated, its messages wait with its events.
        if let Some(payload) = self.agent.gates.hold_message(key, payload) {
            self.broadcast_to(now, "session.message", &payload, &audience);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ConnId = ConnId(1);
    const B: ConnId = ConnId(2);

    fn set(ids: &[ConnId]) -> BTreeSet<ConnId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn messages_reach_session_subscribers_and_the_key_s_watchers_only() {
        let mut s = Subscribers::default();
        s.subscribe_sessions(A);
        s.subscribe_messages(B, "agent:main:x", 4).unwrap();
        assert_eq!(s.changes_audience(), set(&[A]));
        assert_eq!(s.message_audience("agent:main:x"), set(&[A, B]));
        assert_eq!(s.message_audience("agent:main:y"), set(&[A]));
        assert!(s.hears_messages("agent:main:y"));
        assert_eq!(s.watchers("agent:main:x"), set(&[B]));
        assert!(s.watchers("agent:main:y").is_empty());
        s.unsubscribe_messages(B, "agent:main:x");
        assert_eq!(s.message_audience("agent:main:x"), set(&[A]));
        s.unsubscribe_messages(B, "agent:main:never");
        assert!(s.by_conn.is_empty() && s.messages.is_empty());
    }

    #[test]
    fn a_closed_connection_leaves_everything() {
        let mut s = Subscribers::default();
        s.subscribe_sessions(A);
        s.subscribe_messages(A, "k1", 4).unwrap();
        s.subscribe_messages(A, "k2", 4).unwrap();
        s.subscribe_messages(B, "k1", 4).unwrap();
        s.conn_gone(A);
        assert!(s.changes_audience().is_empty());
        assert_eq!(s.message_audience("k1"), set(&[B]));
        assert!(s.message_audience("k2").is_empty());
        assert!(s.hears_messages("k1"));
        assert!(!s.hears_messages("k2"));
        assert!(!s.messages.contains_key("k2"));
        s.conn_gone(B);
        assert!(s.messages.is_empty() && s.by_conn.is_empty());
    }

    #[test]
    fn a_connection_watches_at_most_max_sessions() {
        let mut s = Subscribers::default();
        s.subscribe_messages(A, "k1", 2).unwrap();
        s.subscribe_messages(A, "k2", 2).unwrap();
        s.subscribe_messages(A, "k1", 2).unwrap();
        assert_eq!(s.subscribe_messages(A, "k3", 2), Err(TooMany));
        assert_eq!(s.subscribe_messages(B, "k3", 0), Err(TooMany));
        assert!(!s.by_conn.contains_key(&B));
        assert!(s.message_audience("k3").is_empty());
        s.unsubscribe_messages(A, "k2");
        s.subscribe_messages(A, "k3", 2).unwrap();
        assert_eq!(s.message_audience("k3"), set(&[A]));
    }
}
