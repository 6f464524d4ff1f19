//! The driver's deadline ([`Alarm`]), which the wait of [`crate::run`]'s thread
//! ([`block_on`](crate::wait::block_on)) honours by itself.
//!
//! An async-io [`Timer`] lives in the reactor, which async-io's own thread waits on while
//! this one sleeps: a deadline costs that thread's wake-up and then this one's, and every
//! new deadline wakes that thread once more to take it in (async-io notifies its reactor
//! for each timer it inserts). At idle, deadlines are most of what happens (the core's
//! tick, the HTTP loop's kept connections, the log's flush): measured over 31 s of Telegram
//! polling, 26 wake-ups with the timer, 14 of them the async-io thread's. Under `block_on`
//! the alarm is no timer at all: its instant is left where the waiting thread finds it, and
//! the thread waits only until then. Anywhere else (an embedding program's executor) it
//! falls back to a [`Timer`], armed again only for an earlier instant.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use smol::Timer;

use crate::wait::wake_by;

/// The driver's one deadline: [`Alarm::ring`] is ready once the instant last
/// [`set`](Alarm::set) has come.
pub(crate) struct Alarm {
    at: Instant,
    /// The fallback outside [`block_on`](crate::wait::block_on), and the instant it is armed for (`None` once it
    /// rang).
    timer: Option<(Timer, Option<Instant>)>,
}

impl Alarm {
    /// An alarm for `at`.
    pub(crate) fn new(at: Instant) -> Self {
        Self { at, timer: None }
    }

    /// Ring at `at` instead.
    pub(crate) fn set(&mut self, at: Instant) {
        self.at = at;
    }

    /// Ready once the alarm's instant has come.
    pub(crate) fn ring(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_ring(cx))
    }

    fn poll_ring(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        loop {
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            if wake_by(at) {
                return Poll::Pending;
            }
            // Armed again only for an earlier instant, or once it rang: each arming wakes
            // async-io's thread (and the core's deadline moves on nearly every turn under
            // load). A timer armed too early rings for nothing and is armed again here.
            let (timer, armed) = self.timer.get_or_insert_with(|| (Timer::at(at), Some(at)));
            if armed.is_none_or(|armed| at < armed) {
                timer.set_at(at);
                *armed = Some(at);
            }
            match Pin::new(timer).poll(cx) {
                Poll::Ready(_) => *armed = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::block_on;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// How long a test waits for an alarm that should ring within milliseconds.
    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn rings_under_block_on_without_a_timer() {
        let start = Instant::now();
        let mut alarm = Alarm::new(start + Duration::from_millis(30));
        block_on(alarm.ring()).expect("wait");
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(alarm.timer.is_none(), "the alarm armed an async-io timer");
    }

    #[test]
    fn rings_through_a_timer_under_another_executor() {
        let (done, rang) = mpsc::channel();
        let start = Instant::now();
        thread::spawn(move || {
            let mut alarm = Alarm::new(start + Duration::from_millis(30));
            smol::future::block_on(alarm.ring());
            let _ = done.send(alarm.timer.is_some());
        });
        assert_eq!(rang.recv_timeout(PATIENCE), Ok(true));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_timer_that_rang_early_is_armed_again() {
        let (done, rang) = mpsc::channel();
        let start = Instant::now();
        thread::spawn(move || {
            let mut alarm = Alarm::new(start + Duration::from_millis(10));
            smol::future::block_on(async {
                // Armed for 10 ms, then moved on to 40 ms before it rings.
                assert!(smol::future::poll_once(alarm.ring()).await.is_none());
                alarm.set(start + Duration::from_millis(40));
                alarm.ring().await;
            });
            let _ = done.send(start.elapsed());
        });
        let took = rang.recv_timeout(PATIENCE).expect("the alarm rang");
        assert!(took >= Duration::from_millis(40), "rang after {took:?}");
    }

    #[test]
    fn a_timer_moved_earlier_rings_earlier() {
        let (done, rang) = mpsc::channel();
        let start = Instant::now();
        thread::spawn(move || {
            let mut alarm = Alarm::new(start + Duration::from_secs(60));
            smol::future::block_on(async {
                assert!(smol::future::poll_once(alarm.ring()).await.is_none());
                alarm.set(start + Duration::from_millis(20));
                alarm.ring().await;
            });
            let _ = done.send(start.elapsed());
        });
        let took = rang.recv_timeout(PATIENCE).expect("the alarm rang");
        assert!(took >= Duration::from_millis(20), "rang after {took:?}");
    }
}
