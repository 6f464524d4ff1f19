//! The global cap on runs in progress (`agents.defaults.maxConcurrent`): a run that holds its
//! session's lane takes one of the slots to start its turn, or waits for one, oldest first.
//! A slot is given back when its run ends; a waiting run that is aborted leaves the queue.

use std::collections::{BTreeSet, VecDeque};

/// The runs in progress and the runs waiting for a slot.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Runs holding a slot.
    running: BTreeSet<u64>,
    /// Runs waiting for a slot, oldest first.
    waiting: VecDeque<u64>,
}

impl Admission {
    /// Run `serial` asks for a slot when at most `cap` are taken: `true` when it has one,
    /// else it waits at the back of the queue.
    pub(crate) fn try_start(&mut self, serial: u64, cap: usize) -> bool {
        if self.waiting.is_empty() && self.running.len() < cap {
            self.running.insert(serial);
            true
        } else {
            self.waiting.push_back(serial);
            false
        }
    }

    /// Run `serial` ended or left: its slot, or its place in the queue, is free.
    pub(crate) fn release(&mut self, serial: u64) {
        self.running.remove(&serial);
        self.waiting.retain(|s| *s != serial);
    }

    /// The oldest waiting run, which takes a slot now if one of `cap` is free.
    pub(crate) fn next(&mut self, cap: usize) -> Option<u64> {
        if self.running.len() >= cap {
            return None;
        }
        let serial = self.waiting.pop_front()?;
        self.running.insert(serial);
        Some(serial)
    }

    /// Whether run `serial` waits for a slot.
    pub(crate) fn is_waiting(&self, serial: u64) -> bool {
        self.waiting.contains(&serial)
    }

    /// Runs holding a slot.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Forget every run (the gateway is stopping).
    pub(crate) fn clear(&mut self) {
        self.running.clear();
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_past_the_cap_wait_in_order_and_leave_when_aborted() {
        let mut a = Admission::default();
        assert!(a.try_start(1, 2));
        assert!(a.try_start(2, 2));
        assert!(!a.try_start(3, 2));
        assert!(!a.try_start(4, 2));
        assert!(!a.try_start(5, 2));
        assert!(a.is_waiting(3));
        assert_eq!(a.next(2), None, "both slots taken");
        a.release(4);
        assert!(!a.is_waiting(4), "an aborted waiter leaves");
        a.release(1);
        assert_eq!(a.next(2), Some(3), "oldest first");
        assert_eq!(a.next(2), None);
        a.release(2);
        a.release(3);
        assert_eq!(a.next(2), Some(5));
        assert_eq!(a.running(), 1);
        assert!(a.try_start(6, 2), "a free slot and nobody waiting");
    }

    #[test]
    fn a_newcomer_does_not_overtake_the_queue() {
        let mut a = Admission::default();
        assert!(a.try_start(1, 1));
        assert!(!a.try_start(2, 1));
        a.release(1);
        assert!(!a.try_start(3, 1), "2 was first");
        assert_eq!(a.next(1), Some(2));
    }
}
