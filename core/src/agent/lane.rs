//! Per-session lanes: runs of one session never overlap. A lane holds the run in progress
//! (from its admission, before its model request, to its end) and the runs waiting behind it,
//! oldest first. A lane with neither is forgotten, so lanes cost nothing for idle sessions.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The lanes of every session with a run in progress or waiting.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    lanes: HashMap<String, Lane>,
}

/// One session's lane.
#[derive(Debug, Default)]
struct Lane {
    /// The run holding the lane.
    active: Option<u64>,
    /// Runs waiting, oldest first.
    queued: VecDeque<u64>,
    /// When the last run joined the queue (the debounce counts from it).
    last_queued: Option<Instant>,
}

/// What a lane does next ([`Lanes::next`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing: a run holds the lane, or none waits.
    Idle,
    /// Queued runs wait for the debounce: look again at this instant.
    At(Instant),
    /// These runs left the queue and the first holds the lane now: one run, or (collect) the
    /// first with the ones folded into it.
    Start(Vec<u64>),
}

impl Lanes {
    /// The run holding the lane of `key`, if any.
    pub(crate) fn active(&self, key: &str) -> Option<u64> {
        self.lanes.get(key).and_then(|l| l.active)
    }

    /// Runs waiting in the lane of `key`.
    pub(crate) fn queued(&self, key: &str) -> usize {
        self.lanes.get(key).map_or(0, |l| l.queued.len())
    }

    /// Run `serial` takes the free lane of `key`; `false` (nothing changes) when it is held.
    pub(crate) fn occupy(&mut self, key: &str, serial: u64) -> bool {
        let lane = self.lanes.entry(key.to_string()).or_default();
        if lane.active.is_some() {
            return false;
        }
        lane.active = Some(serial);
        true
    }

    /// Run `serial` waits at the back of the lane of `key`.
    pub(crate) fn enqueue(&mut self, key: &str, serial: u64, now: Instant) {
        let lane = self.lanes.entry(key.to_string()).or_default();
        lane.queued.push_back(serial);
        lane.last_queued = Some(now);
    }

    /// Every run waiting in the lane of `key`, taken out, oldest first.
    pub(crate) fn take_queued(&mut self, key: &str) -> Vec<u64> {
        let taken = self
            .lanes
            .get_mut(key)
            .map(|l| l.queued.drain(..).collect())
            .unwrap_or_default();
        self.forget_if_empty(key);
        taken
    }

    /// Take run `serial` out of the queue of `key`; whether it was there.
    pub(crate) fn dequeue(&mut self, key: &str, serial: u64) -> bool {
        let Some(lane) = self.lanes.get_mut(key) else {
            return false;
        };
        let before = lane.queued.len();
        lane.queued.retain(|s| *s != serial);
        let found = lane.queued.len() < before;
        self.forget_if_empty(key);
        found
    }

    /// Run `serial` ended: the lane of `key` is free if it held it.
    pub(crate) fn release(&mut self, key: &str, serial: u64) {
        if let Some(lane) = self.lanes.get_mut(key)
            && lane.active == Some(serial)
        {
            lane.active = None;
        }
        self.forget_if_empty(key);
    }

    /// What the lane of `key` does at `now`: start its oldest run once it is free and
    /// `debounce` has passed since the last one joined (with `collect` true of the oldest,
    /// the collect runs right behind it start with it as one turn).
    pub(crate) fn next(
        &mut self,
        key: &str,
        now: Instant,
        debounce: Duration,
        collect: impl Fn(u64) -> bool,
    ) -> Next {
        let Some(lane) = self.lanes.get_mut(key) else {
            return Next::Idle;
        };
        if lane.active.is_some() || lane.queued.is_empty() {
            return Next::Idle;
        }
        if let Some(due) = lane.last_queued.and_then(|t| t.checked_add(debounce))
            && now < due
        {
            return Next::At(due);
        }
        let Some(first) = lane.queued.pop_front() else {
            return Next::Idle;
        };
        let mut batch = vec![first];
        if collect(first) {
            while let Some(&s) = lane.queued.front().filter(|s| collect(**s)) {
                lane.queued.pop_front();
                batch.push(s);
            }
        }
        lane.active = Some(first);
        Next::Start(batch)
    }

    /// The sessions whose lane is free with runs waiting (their debounce may not be over).
    pub(crate) fn waiting(&self) -> Vec<String> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.active.is_none() && !l.queued.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forget every lane (the gateway is stopping).
    pub(crate) fn clear(&mut self) {
        self.lanes.clear();
    }

    fn forget_if_empty(&mut self, key: &str) {
        if self
            .lanes
            .get(key)
            .is_some_and(|l| l.active.is_none() && l.queued.is_empty())
        {
            self.lanes.remove(key);
        }
    }
}
