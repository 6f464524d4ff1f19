//! The advertiser: one thread that keeps an [`Advert`] on the network, best effort.
//!
//! It never touches the event loop's thread, so it can neither delay start-up nor stall a
//! connection. A failure (no multicast, an interface gone, the responder dying) is logged once
//! per outage; repeats are counted and retried with exponential backoff; the line that ends an
//! outage says how many attempts failed. Dropping the [`AdvertiserHandle`] unregisters and ends
//! the thread within [`RetryPolicy::shutdown_grace`].

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use clawgate_core::discovery::Advert;

use super::responder::{DiscoveryError, Health, MdnsResponder, Responder};

/// When the advertiser retries, checks and gives up waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry; it doubles with every failure in a row.
    pub first_retry: Duration,
    /// The longest delay between retries.
    pub max_retry: Duration,
    /// How often a registration's health is checked.
    pub health_every: Duration,
    /// How long dropping the handle waits for the thread to unregister and end.
    pub shutdown_grace: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(300),
            health_every: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// The running advertiser. Dropping it (or [`AdvertiserHandle::shutdown`]) unregisters the
/// service and ends the thread.
#[derive(Debug)]
pub struct AdvertiserHandle {
    stop: Option<Sender<()>>,
    /// Disconnects when the thread ends, however it ends.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    grace: Duration,
}

impl AdvertiserHandle {
    /// Unregister and end the thread, waiting at most the policy's `shutdown_grace`. Returns
    /// whether the thread ended in time; if not, it is left to finish on its own.
    pub fn shutdown(mut self) -> bool {
        self.stop_within_grace()
    }

    fn stop_within_grace(&mut self) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        drop(self.stop.take());
        match self.done.recv_timeout(self.grace) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => thread.join().is_ok(),
        }
    }
}

impl Drop for AdvertiserHandle {
    fn drop(&mut self) {
        self.stop_within_grace();
    }
}

/// Advertise `advert` over mDNS with [`MdnsResponder`] on a thread of its own, with the default
/// [`RetryPolicy`]. Returns at once; `log` receives the few lines worth a user's attention.
pub fn spawn_advertiser(advert: Advert, log: impl Fn(String) + Send + 'static) -> AdvertiserHandle {
    spawn_advertiser_with(MdnsResponder::new(), advert, log, RetryPolicy::default())
}

/// [`spawn_advertiser`] with any [`Responder`] and [`RetryPolicy`]: the seam for tests and for
/// other responders.
pub fn spawn_advertiser_with<R: Responder + Send + 'static>(
    responder: R,
    advert: Advert,
    log: impl Fn(String) + Send + 'static,
    policy: RetryPolicy,
) -> AdvertiserHandle {
    // Shared with the thread only so that a failure to spawn it can still be logged.
    let log = Arc::new(Mutex::new(log));
    let (stop_tx, stop_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let worker_log = Arc::clone(&log);
    let spawned = thread::Builder::new()
        .name("clawgate-mdns".into())
        .spawn(move || {
            let _done = done_tx;
            let log = |line: String| say(&worker_log, line);
            // A last line of defence only: nothing in the worker is meant to panic, and in a
            // `panic = "abort"` build this catches nothing.
            let run = panic::catch_unwind(AssertUnwindSafe(|| {
                let worker = Worker {
                    responder,
                    advert: &advert,
                    log: &log,
                    policy: &policy,
                    stop: &stop_rx,
                    backoff: Backoff::new(&policy),
                    outage: Outage::default(),
                };
                worker.run();
            }));
            if let Err(payload) = run {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log(format!(
                    "mDNS: {}; not advertising any more",
                    DiscoveryError::Panicked(what)
                ));
            }
        });
    let thread = match spawned {
        Ok(thread) => Some(thread),
        Err(e) => {
            let line = format!("mDNS: cannot start the advertiser thread ({e}); not advertising");
            say(&log, line);
            None
        }
    };
    AdvertiserHandle {
        stop: Some(stop_tx),
        done: done_rx,
        thread,
        grace: policy.shutdown_grace,
    }
}

/// Hand `line` to the shared log.
fn say<F: Fn(String)>(log: &Mutex<F>, line: String) {
    (log.lock().unwrap_or_else(PoisonError::into_inner))(line);
}

/// The advertiser thread's state.
struct Worker<'a, R> {
    responder: R,
    advert: &'a Advert,
    log: &'a dyn Fn(String),
    policy: &'a RetryPolicy,
    stop: &'a Receiver<()>,
    backoff: Backoff,
    outage: Outage,
}

impl<R: Responder> Worker<'_, R> {
    /// Register, watch, and on failure unregister, wait and register again, until told to
    /// stop. Leaves nothing registered when it returns.
    fn run(mut self) {
        loop {
            let failure = match self.responder.register(self.advert) {
                Ok(()) => {
                    if self.outage.is_clear() {
                        (self.log)(format!("mDNS: advertising {}", describe(self.advert)));
                    }
                    match self.watch() {
                        Some(failure) => failure,
                        None => break,
                    }
                }
                Err(failure) => failure,
            };
            self.responder.unregister();
            let delay = self.backoff.next_delay();
            if let Some(line) = self.outage.failed(&failure, self.advert, self.policy) {
                (self.log)(line);
            }
            if stop_requested(self.stop, delay) {
                return;
            }
        }
        self.responder.unregister();
    }

    /// Check the registration's health until it fails (its error) or a stop is requested
    /// (`None`).
    fn watch(&mut self) -> Option<DiscoveryError> {
        loop {
            if stop_requested(self.stop, self.policy.health_every) {
                return None;
            }
            match self.responder.health() {
                Ok(health) => {
                    self.backoff.reset();
                    if let Some(line) = self.outage.recovered(self.advert) {
                        (self.log)(line);
                    }
                    if let Health::Renamed(name) = health {
                        (self.log)(format!(
                            "mDNS: name conflict on the network; now advertising as {name:?}"
                        ));
                    }
                }
                Err(failure) => return Some(failure),
            }
        }
    }
}

/// Wait up to `wait`; true when the handle asked to stop or is gone.
fn stop_requested(stop: &Receiver<()>, wait: Duration) -> bool {
    !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
}

fn describe(advert: &Advert) -> String {
    format!(
        "{:?} ({} port {})",
        advert.instance_name, advert.service_type, advert.port
    )
}

/// Exponential backoff from `first_retry` to `max_retry`.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    fn new(policy: &RetryPolicy) -> Self {
        let first = policy.first_retry.min(policy.max_retry);
        Self {
            next: first,
            first,
            max: policy.max_retry,
        }
    }

    /// The delay to wait now; the next one is twice as long, up to the cap.
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Failures in a row: the first one is worth a line, the rest only a count.
#[derive(Debug, Default)]
struct Outage {
    failures: u64,
}

impl Outage {
    fn is_clear(&self) -> bool {
        self.failures == 0
    }

    /// Count a failure; the line to log if it is the first of this outage.
    fn failed(
        &mut self,
        failure: &DiscoveryError,
        advert: &Advert,
        policy: &RetryPolicy,
    ) -> Option<String> {
        self.failures += 1;
        (self.failures == 1).then(|| {
            format!(
                "mDNS: cannot advertise {} ({failure}); the gateway keeps serving; retrying in the \
                 background every {:?} to {:?} without logging each failure",
                describe(advert),
                policy.first_retry,
                policy.max_retry,
            )
        })
    }

    /// End the outage; the line to log if there was one.
    fn recovered(&mut self, advert: &Advert) -> Option<String> {
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then(|| {
            let plural = if failures == 1 { "" } else { "s" };
            format!(
                "mDNS: advertising {} after {failures} failed attempt{plural}",
                describe(advert)
            )
        })
    }
}

#[cfg(test)]
mod tests;
