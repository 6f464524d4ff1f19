//! Slack senders' names, as upstream's plugin resolves them: `users.info` with the bot
//! token, the profile's `display_name`, else `real_name`, else the account's `name`. A name is
//! looked up only for a message that needs one (it reaches the agent, asks for pairing, or
//! could match a name in an allowlist under `dangerouslyAllowNameMatching`), and kept per
//! account in a least-recently-used cache of upstream's size (no expiry, like upstream's);
//! failures are not kept. A message waits for its sender's lookup at most [`LOOKUP_WAIT`]
//! (its lane held, nothing else): it was committed and acknowledged before, so a slow, failing
//! or rate-limited `users.info` only means it goes on without a name. A 429 pauses lookups
//! for its `Retry-After`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::work::WorkId;

/// Names kept per account at most (upstream's `SLACK_USER_CACHE_MAX_ENTRIES`).
pub const MAX_CACHED_USERS: usize = 2048;
/// How long a message waits for its sender's `users.info` before it goes on without a name.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(3);
/// `users.info` calls in flight per account at most; past it, messages go on without a name.
pub const MAX_LOOKUPS: usize = 16;

/// One `users.info` in flight.
#[derive(Debug)]
pub struct Lookup {
    /// The call.
    pub call: WorkId,
    /// Its [`LOOKUP_WAIT`] timer.
    pub timer: u64,
    /// The queued messages (their ingress seqs) waiting for it.
    pub waiting: Vec<u64>,
}

/// What a message's sender name needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// It is known (the user may have no name at all).
    Known(Option<String>),
    /// A lookup for this user is in flight: the message joined it.
    Joined,
    /// No lookup for it: one may start (unless [`Users::paused`]).
    Start,
    /// Too many lookups in flight: go on without a name.
    Skip,
}

/// One account's names and lookups.
#[derive(Debug, Default)]
pub struct Users {
    /// User id → (name, last use).
    names: HashMap<String, (Option<String>, u64)>,
    uses: u64,
    lookups: HashMap<String, Lookup>,
    paused_until: Option<Instant>,
}

impl Users {
    /// What message `seq` from `user` needs (it joins a lookup in flight).
    pub fn need(&mut self, user: &str, seq: u64) -> Need {
        self.uses += 1;
        if let Some((name, used)) = self.names.get_mut(user) {
            *used = self.uses;
            return Need::Known(name.clone());
        }
        if let Some(l) = self.lookups.get_mut(user) {
            l.waiting.push(seq);
            return Need::Joined;
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            return Need::Skip;
        }
        Need::Start
    }

    /// Whether lookups wait out a 429 at `now`.
    pub fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// A lookup for `user` started, with message `seq` waiting for it.
    pub fn started(&mut self, user: &str, call: WorkId, timer: u64, seq: u64) {
        let waiting = vec![seq];
        self.lookups.insert(
            user.to_string(),
            Lookup {
                call,
                timer,
                waiting,
            },
        );
    }

    /// The lookup for `user` is over (answered, failed or timed out): what waited for it.
    pub fn finish(&mut self, user: &str) -> Option<Lookup> {
        self.lookups.remove(user)
    }

    /// The lookup for `user` that is call `call`, if still in flight.
    pub fn in_flight(&self, user: &str) -> Option<&Lookup> {
        self.lookups.get(user)
    }

    /// `users.info` answered for `user`: keep its name, the least recently used one going
    /// when full.
    pub fn remember(&mut self, user: &str, name: Option<String>) {
        self.uses += 1;
        if self.names.len() >= MAX_CACHED_USERS && !self.names.contains_key(user) {
            let oldest = self
                .names
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(u, _)| u.clone());
            if let Some(u) = oldest {
                self.names.remove(&u);
            }
        }
        self.names.insert(user.to_string(), (name, self.uses));
    }

    /// Slack rate-limited `users.info`: no lookups until `until`.
    pub fn pause(&mut self, until: Instant) {
        self.paused_until = Some(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_joined_and_bounded() {
        let mut u = Users::default();
        assert_eq!(u.need("U1", 1), Need::Start);
        u.started("U1", WorkId(7), 1, 1);
        assert_eq!(u.need("U1", 2), Need::Joined);
        assert_eq!(u.in_flight("U1").map(|l| l.call), Some(WorkId(7)));
        assert_eq!(u.finish("U1").map(|l| l.waiting), Some(vec![1, 2]));
        u.remember("U1", Some("Alice".into()));
        assert_eq!(u.need("U1", 3), Need::Known(Some("Alice".into())));
        u.remember("U2", None);
        for i in 0..MAX_CACHED_USERS - 2 {
            u.remember(&format!("X{i}"), None);
        }
        assert_eq!(u.need("U1", 4), Need::Known(Some("Alice".into())));
        u.remember("X-last", None);
        assert_eq!(u.names.len(), MAX_CACHED_USERS);
        assert_eq!(u.need("U2", 5), Need::Start, "the least recently used went");
        assert_eq!(u.need("U1", 6), Need::Known(Some("Alice".into())));
        for i in 0..MAX_LOOKUPS {
            u.started(&format!("L{i}"), WorkId(100 + i as u64), 0, 0);
        }
        assert_eq!(u.need("U3", 7), Need::Skip);
    }
}
