//! glibc's allocator, fitted to a gateway whose threads are one event loop and a few worker
//! threads that come and go (HTTP requests, the store writer, file reads):
//! - at most [`ARENAS`] malloc arenas. glibc gives every new thread an arena of its own (up to
//!   eight per core), each holding on to the pages its thread freed: after 100 model requests
//!   at once a gateway kept 16 arenas and about 1 MiB in them. Worker threads allocate little,
//!   so one arena shared by all of them costs no measurable contention.
//! - freed memory returned after a burst ([`AfterBurst`]): once the loop has been quiet for
//!   [`QUIET`] after work, `malloc_trim` hands the free pages of every arena back to the
//!   kernel (1.1 MiB after the benchmark filled 100 stored transcripts). An idle gateway is
//!   never woken for it: the trim rides on a wake-up the loop has anyway, and asks for one of
//!   its own only after a burst of at least [`BURST`] work items.
//!
//! Elsewhere (musl, other systems) both are no-ops.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

/// Malloc arenas: the main one (the event loop's) and one every worker thread shares.
pub const ARENAS: i32 = 2;
/// How long the loop must have been quiet after work before freed memory is returned.
pub const QUIET: Duration = Duration::from_secs(1);
/// Work items (requests to workers, and their reports) since the last trim that make a burst:
/// the loop wakes [`QUIET`] after it to return what the burst freed. Fewer (a channel's long
/// poll, a single turn) wait for a wake-up the loop has anyway.
pub const BURST: usize = 64;

/// Limit glibc's malloc to [`ARENAS`] arenas; call before any thread is started (a thread
/// that has allocated keeps its arena). Whether the limit is in force.
pub fn limit_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a parameter of glibc's allocator; M_ARENA_MAX takes any
        // positive count.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Return the free pages of every arena to the kernel; whether any memory was returned.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the allocator's own locks; it never touches memory in use.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// When to return freed memory: [`QUIET`] after the last work, on the loop's way to sleep.
#[derive(Debug, Default)]
pub struct AfterBurst {
    /// Work items since the last trim.
    work: usize,
    /// When the loop last went to wait with new work counted.
    last_busy: Option<Instant>,
}

impl AfterBurst {
    /// Work went to a worker or came back from one: the quiet time starts again.
    pub fn work(&mut self) {
        self.work += 1;
        self.last_busy = None;
    }

    /// Start-up (migrations, the stored sessions read) counts as a burst.
    pub fn started(&mut self) {
        self.work = self.work.max(BURST);
    }

    /// The loop is about to wait at `now`: whether to trim now, and when to wake for it (only
    /// after a burst; `None` when nothing is owed or any wake-up will do).
    pub fn due(&mut self, now: Instant) -> (bool, Option<Instant>) {
        if self.work == 0 {
            return (false, None);
        }
        let since = *self.last_busy.get_or_insert(now);
        if now.saturating_duration_since(since) >= QUIET {
            *self = Self::default();
            return (true, None);
        }
        (false, (self.work >= BURST).then_some(since + QUIET))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_owed_without_work() {
        let mut t = AfterBurst::default();
        assert_eq!(t.due(test_instant()), (false, None));
    }

    #[test]
    fn a_burst_asks_to_wake_once_quiet_then_trims_once() {
        let t0 = test_instant();
        let mut t = AfterBurst::default();
        for _ in 0..BURST {
            t.work();
        }
        assert_eq!(t.due(t0), (false, Some(t0 + QUIET)));
        assert_eq!(t.due(t0 + QUIET / 2), (false, Some(t0 + QUIET)));
        assert_eq!(t.due(t0 + QUIET), (true, None));
        assert_eq!(t.due(t0 + QUIET * 5), (false, None));
    }

    #[test]
    fn a_little_work_waits_for_a_wake_up_the_loop_has_anyway() {
        let t0 = test_instant();
        let mut t = AfterBurst::default();
        t.work();
        assert_eq!(t.due(t0), (false, None));
        assert_eq!(t.due(t0 + QUIET * 30), (true, None));
    }

    #[test]
    fn work_in_between_restarts_the_quiet_time() {
        let t0 = test_instant();
        let mut t = AfterBurst::default();
        t.started();
        assert_eq!(t.due(t0), (false, Some(t0 + QUIET)));
        t.work();
        let t1 = t0 + QUIET / 2;
        assert_eq!(t.due(t1), (false, Some(t1 + QUIET)));
        assert_eq!(t.due(t0 + QUIET), (false, Some(t1 + QUIET)));
        assert_eq!(t.due(t1 + QUIET), (true, None));
    }

    /// An instant to count from (the host may read the clock; this keeps the tests exact).
    fn test_instant() -> Instant {
        Instant::now()
    }
}
