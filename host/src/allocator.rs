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
//! - an exiting worker thread's stack handed back ([`release_stack`]): glibc keeps the stack
//!   of every thread that ended, for a thread started later, up to 40 MiB of them, and the
//!   16 KiB below the exit path's frame stay resident in each (when HTTP still ran on worker
//!   threads, the benchmark's 100 turns at once left 28-80 of them, 24 KiB each, up to 1.9 MiB
//!   of its RSS; the WebSocket and lookup threads that remain can be as many); released, each
//!   keeps 8 KiB (the thread's descriptor, TLS and first frames).
//!
//! Elsewhere (musl, other systems) all three are no-ops.
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

/// What a thread's exit path may use below the frame that calls [`release_stack`]: Rust's
/// thread-local destructors, glibc's thread teardown. A page it touches again is only
/// zero-filled anew.
const EXIT_PATH_BYTES: usize = 512;

/// Return to the kernel the calling thread's stack pages below its current frame (less
/// [`EXIT_PATH_BYTES`]): a worker thread's last call, so the stack glibc keeps for reuse
/// holds only its top pages. Whether any pages were returned.
pub fn release_stack() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Some((bottom, _)) = stack_bounds() else {
            return false;
        };
        let here = std::hint::black_box(0u8);
        let frame = std::ptr::from_ref(&here) as usize;
        // SAFETY: sysconf only reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let start = bottom.next_multiple_of(page);
        let end = frame.saturating_sub(EXIT_PATH_BYTES) & !(page - 1);
        if end <= start {
            return false;
        }
        // SAFETY: [start, end) lies in this thread's own stack, below its current frame and
        // the exit path's room: no live data is there (the stack grows down), and a page
        // touched again afterwards is zero-filled, as a fresh stack page is.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) == 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The calling thread's stack: its lowest address and its size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills the zeroed attribute object for this thread (which is
    // destroyed after); pthread_attr_getstack reads it.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        got.then_some((addr as usize, size))
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

    /// Pages of `[start, start + len)` resident in memory.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn resident_pages(start: usize, len: usize) -> usize {
        let mut pages = vec![0u8; len.div_ceil(4096)];
        // SAFETY: mincore writes one byte per page of the range into `pages`, which has one
        // per page; the range is this thread's mapped stack.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, len, pages.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        pages.iter().filter(|p| **p & 1 == 1).count()
    }

    /// Touches `depth` frames of 4 KiB each, below the caller's.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn dig(depth: usize) -> u8 {
        let frame = std::hint::black_box([depth as u8; 4096]);
        if depth == 0 {
            frame[0]
        } else {
            dig(depth - 1).wrapping_add(std::hint::black_box(frame)[4095])
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_released_stack_keeps_only_its_top_pages() {
        let (before, after) = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                std::hint::black_box(dig(32));
                let (bottom, size) = stack_bounds().expect("stack bounds");
                let before = resident_pages(bottom, size);
                assert!(release_stack(), "pages returned");
                (before, resident_pages(bottom, size))
            })
            .expect("thread")
            .join()
            .expect("joined");
        assert!(before >= 32, "the dig touched its frames: {before} pages");
        // Left: the frames above this one (the thread's start) and the exit path's room.
        assert!(
            after <= 8,
            "{after} pages resident of {before} after the release"
        );
    }

    /// An instant to count from (the host may read the clock; this keeps the tests exact).
    fn test_instant() -> Instant {
        Instant::now()
    }
}
