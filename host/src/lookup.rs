//! Host-name lookups for the loop's HTTP client ([`crate::http_loop`]), off the loop: a
//! lookup (`getaddrinfo`, blocking) runs on a short-lived `clawgate-dns` thread, which for
//! an `https://` request also loads the TLS roots the first time ([`crate::tls`]), and hands
//! the answer back through a waker on the loop's poller ([`Lookups::answers`]).
//!
//! Requests that need the same name while its lookup runs (or waits for a thread) share it:
//! one thread, and every request waiting on it gets its answer. At most
//! [`lookup_threads`](crate::http_loop::HttpLimits::lookup_threads) run at once; lookups
//! beyond that wait their turn in the order they were asked, while each request's own
//! deadline keeps counting (the loop ends a request past it and
//! [`forgets`](Lookups::forget) it; a waiting lookup nobody needs any more is dropped).
//!
//! A running lookup nobody needs any more (its requests past the lookup timeout: a resolver
//! that hangs) gives its thread's place to the next lookup: its thread still runs until the
//! resolver gives up, and its answer goes to whoever asked for the same name meanwhile (no
//! second thread for it). At most `lookup_threads` of these abandoned threads are left
//! running besides the `lookup_threads` that hold a place, so never more than twice
//! `lookup_threads` in all: past that, an abandoned lookup keeps its place until it ends. An
//! answer is not kept once handed out: Node's `fetch` (undici) keeps none either (its DNS
//! cache is an opt-in interceptor), and the keep-alive pool ([`crate::http_pool`]) already
//! spares most requests a lookup.
//!
//! The threads are not joined: one still running at shutdown finds nobody to answer, ends by
//! itself, and the process exits without waiting for it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};

use clawgate_core::{HttpError, HttpErrorKind};
use mio::Waker;

use crate::http_loop::LookupFn;
use crate::tls;

/// The stack of a lookup thread (the C library's resolver runs on it).
const STACK_BYTES: usize = 512 * 1024;
/// The name of a lookup thread (as `/proc/self/task/*/comm` shows it).
pub(crate) const THREAD_NAME: &str = "clawgate-dns";

/// The system's resolver (`getaddrinfo`): the addresses of `host`, in its order, or why
/// there are none. Blocking.
pub(crate) fn system(host: &str) -> Result<Vec<IpAddr>, String> {
    let addrs: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// Why a lookup gave no addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The name did not resolve: the resolver's reason.
    Name(String),
    /// The TLS roots could not be loaded: the error.
    Tls(String),
    /// No thread could be started for it: the reason.
    NoThread(String),
}

impl LookupError {
    /// The error of a request to `name` (`host:port`) that waited on this lookup.
    pub(crate) fn error(&self, name: &str) -> HttpError {
        match self {
            LookupError::Name(why) => HttpError::new(
                HttpErrorKind::Lookup,
                format!("cannot resolve {name}: {why}"),
            ),
            LookupError::Tls(error) => HttpError::new(HttpErrorKind::Other, error.clone()),
            LookupError::NoThread(why) => HttpError::new(
                HttpErrorKind::Other,
                format!("cannot resolve {name}: no thread: {why}"),
            ),
        }
    }
}

/// A lookup's answer: the addresses, or why there are none.
pub(crate) type Answer = Result<Vec<IpAddr>, LookupError>;

/// A lookup's answer, as its thread sends it.
type Answered = (Key, Answer);

/// What a lookup is for: the name, and whether its thread also loads the TLS roots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    host: String,
    tls: bool,
}

/// Where a lookup asked for is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// Waiting for a thread.
    Queued,
    /// On a thread that holds one of the `limit` places.
    Running,
    /// On a thread that gave its place up, nobody needing it when it did.
    Abandoned,
}

/// A lookup asked for: the requests waiting on it, and where it is.
struct Pending {
    tickets: Vec<u64>,
    run: Run,
}

/// The lookups of one loop (see the module doc).
pub(crate) struct Lookups {
    lookup: LookupFn,
    waker: Arc<Waker>,
    /// Where threads send their answers (a thread that could not start: at once).
    answers: (mpsc::Sender<Answered>, mpsc::Receiver<Answered>),
    /// Every lookup running or waiting for a thread (a running one may have nobody waiting:
    /// a request that asks for it meanwhile still shares it).
    pending: HashMap<Key, Pending>,
    /// The lookups waiting for a thread, in the order asked.
    queued: VecDeque<Key>,
    /// Threads started whose answer has not come yet, holding a place.
    threads: usize,
    /// Threads started whose answer has not come yet, their place given up.
    abandoned: usize,
    /// How many may hold a place at once (and how many more may run abandoned).
    limit: usize,
}

impl Lookups {
    /// Lookups performed by `lookup` on at most `limit` threads at once, waking the poller
    /// with `waker` when an answer comes.
    pub(crate) fn new(lookup: LookupFn, waker: Arc<Waker>, limit: usize) -> Self {
        Lookups {
            lookup,
            waker,
            answers: mpsc::channel(),
            pending: HashMap::new(),
            queued: VecDeque::new(),
            threads: 0,
            abandoned: 0,
            limit,
        }
    }

    /// Look `host` up for the request `ticket`, also loading the TLS roots when `tls`: with
    /// a lookup of it already asked for, or on a thread of its own when one is free, or
    /// else once one is. The answer comes from [`Lookups::answers`].
    pub(crate) fn ask(&mut self, host: &str, tls: bool, ticket: u64) {
        let key = Key {
            host: host.to_owned(),
            tls,
        };
        match self.pending.entry(key) {
            Entry::Occupied(mut e) => e.get_mut().tickets.push(ticket),
            Entry::Vacant(e) => {
                self.queued.push_back(e.key().clone());
                e.insert(Pending {
                    tickets: vec![ticket],
                    run: Run::Queued,
                });
                self.start_queued();
            }
        }
    }

    /// The request `ticket` waits no more (cancelled, or past its deadline). A lookup that
    /// nobody needs any more is dropped if it waits for a thread, and gives its thread's
    /// place to the next one if it runs (while fewer than `limit` run abandoned): that one
    /// starts at the next [`Lookups::answers`] (the waker is woken for it) or
    /// [`Lookups::ask`].
    pub(crate) fn forget(&mut self, ticket: u64) {
        let Some((key, pending)) = self
            .pending
            .iter_mut()
            .find(|(_, p)| p.tickets.contains(&ticket))
        else {
            return;
        };
        pending.tickets.retain(|t| *t != ticket);
        if !pending.tickets.is_empty() {
            return;
        }
        match pending.run {
            Run::Queued => {
                let key = key.clone();
                self.pending.remove(&key);
                self.queued.retain(|k| *k != key);
            }
            Run::Running if self.abandoned < self.limit => {
                pending.run = Run::Abandoned;
                self.abandoned += 1;
                self.threads = self.threads.saturating_sub(1);
                // The next lookup starts at the loop's next turn ([`Lookups::answers`],
                // woken now), once every request that this turn ends is forgotten: none
                // starts for a request about to end with it.
                if !self.queued.is_empty() {
                    let _ = self.waker.wake();
                }
            }
            Run::Running | Run::Abandoned => {}
        }
    }

    /// The answers that came since the last call, one per waiting request (`ticket`,
    /// answer); the lookups that waited for the threads that ended start.
    pub(crate) fn answers(&mut self) -> Vec<(u64, Answer)> {
        let mut out = Vec::new();
        while let Ok((key, answer)) = self.answers.1.try_recv() {
            // Every thread's lookup stays pending until its answer comes.
            let Some(pending) = self.pending.remove(&key) else {
                continue;
            };
            match pending.run {
                Run::Abandoned => self.abandoned = self.abandoned.saturating_sub(1),
                Run::Queued | Run::Running => self.threads = self.threads.saturating_sub(1),
            }
            out.extend(pending.tickets.into_iter().map(|t| (t, answer.clone())));
        }
        self.start_queued();
        out
    }

    /// Forget every request and waiting lookup (shutdown); running threads end by themselves,
    /// answering nobody.
    pub(crate) fn clear(&mut self) {
        self.pending.retain(|_, p| p.run != Run::Queued);
        for p in self.pending.values_mut() {
            p.tickets.clear();
        }
        self.queued.clear();
    }

    /// Start the waiting lookups while threads are free.
    fn start_queued(&mut self) {
        while self.threads < self.limit {
            let Some(key) = self.queued.pop_front() else {
                return;
            };
            self.spawn(key);
        }
    }

    /// Start `key`'s lookup on a thread; one that cannot start answers at once with why.
    fn spawn(&mut self, key: Key) {
        if let Some(p) = self.pending.get_mut(&key) {
            p.run = Run::Running;
        }
        self.threads += 1;
        let (lookup, tx, waker) = (
            self.lookup.clone(),
            self.answers.0.clone(),
            self.waker.clone(),
        );
        let asked = key.clone();
        let started = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                // An address answers itself (a pinned name's, asked only to load TLS).
                let answer = match asked.host.parse::<IpAddr>() {
                    Ok(ip) => Ok(vec![ip]),
                    Err(_) => lookup(&asked.host).map_err(LookupError::Name),
                }
                .and_then(|addrs| {
                    if asked.tls {
                        tls::config().map_err(LookupError::Tls)?;
                    }
                    Ok(addrs)
                });
                // The loop may be gone (shut down): nobody waits then.
                if tx.send((asked, answer)).is_ok() {
                    let _ = waker.wake();
                }
                drop((tx, waker, lookup));
                // A burst of lookups runs as many threads at once; glibc keeps their stacks
                // for later threads: with their pages returned.
                crate::allocator::release_stack();
            });
        if let Err(e) = started {
            // Answered as if its thread had ended at once.
            let _ = self
                .answers
                .0
                .send((key, Err(LookupError::NoThread(e.to_string()))));
            let _ = self.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    use mio::{Events, Poll, Token};

    use super::*;

    /// The lookup threads allowed at once.
    const LIMIT: usize = 4;

    /// A resolver that holds every lookup until [`Gate::open`], counting the lookups started
    /// and the most running at once; `name.N` resolves to `10.0.0.N`.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
        started: AtomicUsize,
        running: AtomicUsize,
        most: AtomicUsize,
    }

    impl Gate {
        fn lookup(gate: &Arc<Gate>) -> LookupFn {
            let gate = gate.clone();
            Arc::new(move |host: &str| {
                gate.started.fetch_add(1, Ordering::SeqCst);
                let now = gate.running.fetch_add(1, Ordering::SeqCst) + 1;
                gate.most.fetch_max(now, Ordering::SeqCst);
                let mut open = gate.open.lock().unwrap();
                while !*open {
                    open = gate.opened.wait(open).unwrap();
                }
                drop(open);
                gate.running.fetch_sub(1, Ordering::SeqCst);
                let n: u8 = host
                    .strip_prefix("name.")
                    .and_then(|n| n.parse().ok())
                    .ok_or("unknown name")?;
                Ok(vec![IpAddr::from([10, 0, 0, n])])
            })
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }

        /// Wait until `n` lookups started (a few seconds at most).
        fn wait_started(&self, n: usize) {
            for _ in 0..500 {
                if self.started.load(Ordering::SeqCst) >= n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{n} lookups did not start");
        }
    }

    fn lookups(gate: &Arc<Gate>) -> (Lookups, Poll) {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        (Lookups::new(Gate::lookup(gate), waker, LIMIT), poll)
    }

    /// Every answer until `n` came (waiting on the waker).
    fn collect(lookups: &mut Lookups, poll: &mut Poll, n: usize) -> HashMap<u64, Answer> {
        let mut events = Events::with_capacity(4);
        let mut got = HashMap::new();
        while got.len() < n {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(!events.is_empty(), "no answer in time: {got:?}");
            got.extend(lookups.answers());
        }
        got
    }

    #[test]
    fn requests_for_one_name_share_one_lookup() {
        let gate = Arc::new(Gate::default());
        let (mut lookups, mut poll) = lookups(&gate);
        lookups.ask("name.1", false, 1);
        lookups.ask("name.1", false, 2);
        lookups.ask("name.2", false, 3);
        gate.wait_started(2);
        lookups.ask("name.1", false, 4);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(gate.started.load(Ordering::SeqCst), 2);
        gate.open();
        let got = collect(&mut lookups, &mut poll, 4);
        let one = Ok(vec![IpAddr::from([10, 0, 0, 1])]);
        assert_eq!((&got[&1], &got[&2], &got[&4]), (&one, &one, &one));
        assert_eq!(got[&3], Ok(vec![IpAddr::from([10, 0, 0, 2])]));
        assert_eq!(gate.started.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn no_more_than_the_limit_run_at_once_and_every_name_is_answered() {
        let gate = Arc::new(Gate::default());
        let (mut lookups, mut poll) = lookups(&gate);
        for n in 1..=50 {
            lookups.ask(&format!("name.{n}"), false, n);
        }
        gate.wait_started(LIMIT);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(gate.started.load(Ordering::SeqCst), LIMIT);
        gate.open();
        let got = collect(&mut lookups, &mut poll, 50);
        for n in 1..=50u8 {
            assert_eq!(got[&u64::from(n)], Ok(vec![IpAddr::from([10, 0, 0, n])]));
        }
        assert_eq!(gate.started.load(Ordering::SeqCst), 50);
        assert_eq!(gate.most.load(Ordering::SeqCst), LIMIT);
    }

    #[test]
    fn a_waiting_lookup_nobody_needs_is_dropped() {
        let gate = Arc::new(Gate::default());
        let (mut lookups, mut poll) = lookups(&gate);
        for n in 1..=LIMIT as u64 {
            lookups.ask(&format!("name.{n}"), false, n);
        }
        lookups.ask("name.77", false, 77);
        lookups.ask("name.78", false, 78);
        lookups.forget(77);
        gate.open();
        let got = collect(&mut lookups, &mut poll, LIMIT + 1);
        assert!(!got.contains_key(&77));
        assert!(got[&78].is_ok());
        assert_eq!(
            gate.started.load(Ordering::SeqCst),
            LIMIT + 1,
            "name.77 never looked up"
        );
    }

    /// Running lookups nobody needs give their places up, up to `LIMIT` of them: the next
    /// lookups start while they still hang, a request for an abandoned lookup's name shares
    /// it, and past `LIMIT` abandoned a lookup nobody needs keeps its place (never more than
    /// twice `LIMIT` threads).
    #[test]
    fn a_running_lookup_nobody_needs_gives_its_place_up_within_a_bound() {
        let gate = Arc::new(Gate::default());
        let (mut lookups, mut poll) = lookups(&gate);
        let limit = LIMIT as u64;
        for n in 1..=limit {
            lookups.ask(&format!("name.{n}"), false, n);
        }
        lookups.ask("name.5", false, 5);
        gate.wait_started(LIMIT);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(gate.started.load(Ordering::SeqCst), LIMIT, "name.5 waits");
        for n in 1..=limit {
            lookups.forget(n);
        }
        // The loop is woken to start it (on its next turn, as it takes the answers).
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the waker was woken");
        assert!(lookups.answers().is_empty());
        gate.wait_started(LIMIT + 1);
        lookups.ask("name.1", false, 6);
        for n in 6..=8 {
            lookups.ask(&format!("name.{n}"), false, 100 + n);
        }
        gate.wait_started(2 * LIMIT);
        for ticket in [5, 106, 107, 108] {
            lookups.forget(ticket);
        }
        lookups.ask("name.9", false, 109);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            gate.started.load(Ordering::SeqCst),
            2 * LIMIT,
            "name.1 shared, name.9 waits: {LIMIT} abandoned already"
        );
        gate.open();
        let got = collect(&mut lookups, &mut poll, 2);
        assert_eq!(got[&6], Ok(vec![IpAddr::from([10, 0, 0, 1])]));
        assert_eq!(got[&109], Ok(vec![IpAddr::from([10, 0, 0, 9])]));
        assert_eq!(got.len(), 2, "the forgotten requests get nothing: {got:?}");
        assert_eq!(gate.most.load(Ordering::SeqCst), 2 * LIMIT);
    }

    #[test]
    fn a_lookup_in_flight_when_the_loop_is_gone_ends_quietly() {
        let gate = Arc::new(Gate::default());
        let (mut lookups, poll) = lookups(&gate);
        lookups.ask("name.1", false, 1);
        gate.wait_started(1);
        drop((lookups, poll));
        gate.open();
        // The thread found nobody to answer and ended: the resolver it held is released.
        for _ in 0..500 {
            if Arc::strong_count(&gate) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the lookup thread did not end");
    }
}
