//! The seam between an event loop (mio, smol) and the rest of the process: the [`Host`] trait
//! both loops are generic over, and the pieces of running that both loops share ([`absorb`],
//! [`note`], [`WindDown`]).

use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use clawgate_core::{Gateway, Level, LogRecord, Output, Work, WorkId, WorkResult};

use crate::logging::unix_ms;
use crate::sockets::SHUTDOWN_GRACE;
use crate::worker::WorkerQueue;

/// What an event loop needs besides its sockets: a log, durable storage, signals, and the
/// inputs worker threads send. Both shells' loops are generic over it, and there is no
/// forwarding impl (`&mut H`): a loop borrows its host, so no method can be lost on the way.
pub trait Host {
    /// What worker threads send the loop (a store write's outcome, later model deltas…).
    type Input: Send + 'static;

    /// Record a log line (from the core, or the shell's own).
    fn log(&mut self, record: &LogRecord);

    /// Write out every log line held back (the loop is stopping).
    fn flush_log(&mut self);

    /// The loop is about to wait: do the host's deferred work that is due (write out the log
    /// lines held back long enough; a host may also return memory a burst of work freed), and
    /// say when to wake for the rest (`None`: nothing is held back). A host that holds nothing
    /// back flushes here.
    fn before_wait(&mut self, _now: Instant) -> Option<Instant> {
        self.flush_log();
        None
    }

    /// The loop handed a socket `bytes` the core transmitted. Socket traffic is work too: a
    /// flood of large answers frees as much memory as a burst of worker jobs, and a host that
    /// returns freed memory after a burst counts it (the default ignores it).
    fn transmitted(&mut self, _bytes: usize) {}

    /// Start `work` off the loop thread and return `None`: its outcome comes back as a
    /// worker input, which [`Host::on_worker_input`] hands to [`Gateway::handle_work_result`]
    /// with `id` (or, for work the host performs on the loop's thread without blocking, from
    /// [`Host::on_sockets`]). A host that is done at once (one without a disk acknowledges a store batch
    /// here) returns the result instead. Work never answered holds the replies waiting on it.
    fn work(&mut self, id: WorkId, work: Work) -> Option<WorkResult>;

    /// A socket that becomes readable when signals arrive, if the host handles signals.
    fn signals(&self) -> Option<&UnixStream>;

    /// The signal socket became readable: act on the gateway (shut down, reload).
    fn on_signals(&mut self, gw: &mut Gateway, now: Instant);

    /// A descriptor that becomes readable when sockets the host drives on the loop's own
    /// thread (outbound HTTP that needs no blocking call) are ready, if it has any: the loop
    /// watches it and calls [`Host::on_sockets`].
    fn sockets(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// When [`Host::on_sockets`] is due without readiness (a timeout), if ever.
    fn sockets_due(&self) -> Option<Instant> {
        None
    }

    /// The descriptor of [`Host::sockets`] was readable or [`Host::sockets_due`] passed: move
    /// those sockets along, handing what they yield to `gw` (the loop then drains it).
    fn on_sockets(&mut self, _gw: &mut Gateway, _now: Instant) {}

    /// The queue worker threads feed; the loop installs its wake-up with
    /// [`WorkerQueue::set_wake`] and, when woken, hands every item to
    /// [`Host::on_worker_input`].
    fn inbox(&self) -> &WorkerQueue<Self::Input>;

    /// One input from a worker thread, in the order they were sent.
    fn on_worker_input(&mut self, gw: &mut Gateway, now: Instant, input: Self::Input);

    /// The gateway started draining: stop what announces it (mDNS).
    fn on_draining(&mut self);

    /// The loop is done: wait for the workers to finish what was queued (the store writer),
    /// and log what they reported.
    fn on_stopped(&mut self);
}

/// Act on the outputs every loop treats alike (`Log`, `Work`) and hand back the others.
pub fn absorb<H: Host + ?Sized>(
    host: &mut H,
    gw: &mut Gateway,
    now: Instant,
    output: Output,
) -> Option<Output> {
    match output {
        Output::Log(record) => host.log(&record),
        Output::Work { id, work } => {
            if let Some(done) = host.work(id, work) {
                gw.handle_work_result(now, id, done);
            }
        }
        other => return Some(other),
    }
    None
}

/// A log line of the shell's own.
pub fn note<H: Host + ?Sized>(host: &mut H, level: Level, message: impl Into<String>) {
    host.log(&LogRecord {
        level,
        ts_ms: unix_ms(),
        conn: None,
        message: message.into(),
    });
}

/// Take what the workers sent and hand it to the host, in order.
pub fn take_worker_inputs<H: Host + ?Sized>(host: &mut H, gw: &mut Gateway, now: Instant) {
    for input in host.inbox().take() {
        host.on_worker_input(gw, now, input);
    }
}

/// Stopping, once the gateway drains: the listener is closed, the sockets get
/// [`SHUTDOWN_GRACE`] to flush while the host stops announcing, then the workers finish and
/// the process says "stopped".
#[derive(Clone, Copy, Debug)]
pub struct WindDown {
    deadline: Instant,
}

impl WindDown {
    /// The gateway started draining at `now` (the loop has stopped listening).
    pub fn begin<H: Host + ?Sized>(host: &mut H, now: Instant) -> Self {
        // The goodbye frames are already queued: the sockets flush while mDNS unregisters.
        host.on_draining();
        Self {
            deadline: now + SHUTDOWN_GRACE,
        }
    }

    /// When the sockets stop getting a chance to flush.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the grace is over at `now`.
    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// The loop is done with its sockets, `unflushed` of them cut off: let the workers
    /// finish, and say so.
    pub fn finish<H: Host + ?Sized>(self, host: &mut H, unflushed: usize) {
        if unflushed > 0 {
            note(
                host,
                Level::Info,
                format!("exiting with {unflushed} socket(s) not flushed"),
            );
        }
        host.on_stopped();
        note(host, Level::Info, "stopped");
        host.flush_log();
    }
}
