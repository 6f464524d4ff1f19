//! Connection attempts as RFC 8305 ("Happy Eyeballs") and Node's `net.connect` with
//! `autoSelectFamily` (on by default since Node 20; `fetch` connects through it) make them:
//! the resolved addresses interleaved by family ([`interleave`]), one attempt started, and
//! the next one [`attempt_delay`](HttpLimits::attempt_delay) (250 ms) later when it has not
//! connected by then, or at once when it failed; the first to connect wins and the others
//! are closed at once. Each attempt ends at the connect timeout, and all of them at the open
//! timeout. Node gives an attempt up when it starts the next one (all but the last); here
//! the earlier ones go on, as RFC 8305 §5 has it, so a path slower than the delay (a
//! satellite link, a congested mobile one) still connects.
//!
//! A [`Race`] never waits: [`Race::advance`] looks at its sockets and at the time and says
//! which attempt won, or that it waits (for a socket to become writable, or until
//! [`Race::deadline`]). The loop's HTTP client ([`crate::http_conn`]) waits on its poller,
//! with the attempts' sockets registered (a WebSocket's too); the CLI's client
//! ([`crate::session`]) in poll(2) ([`Race::finish`]). A lost race is a [`RaceError`]: each attempt's [`io::Error`] kept, so
//! a caller can tell a refusal from a timeout by its kind, and its text the one error the
//! loop reports.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clawgate_core::HttpErrorKind;
use clawgate_core::model::Dialing;

use crate::http_conn::{connect_error, kind_of};
use crate::http_loop::HttpLimits;
use crate::wait;

/// The addresses in the order to try them: IPv6 and IPv4 alternating, starting with the
/// family of the first (the resolver's preference), each family in the resolver's order,
/// every address once (RFC 8305 §4, as Node orders them).
pub(crate) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let mut families: [Vec<SocketAddr>; 2] = [Vec::new(), Vec::new()];
    for addr in addrs {
        let [preferred, other] = &mut families;
        let family = if addr.is_ipv6() == first_v6 {
            preferred
        } else {
            other
        };
        if !family.contains(addr) {
            family.push(*addr);
        }
    }
    let [preferred, other] = families;
    let mut order = Vec::with_capacity(preferred.len() + other.len());
    let (mut preferred, mut other) = (preferred.into_iter(), other.into_iter());
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return order,
            (a, b) => order.extend(a.into_iter().chain(b)),
        }
    }
}

/// The addresses of a host a fresh connection tries, in the resolver's order `ips`, as
/// `dialing` says: only IPv4 ones when asked (Node's `family: 4`), IPv4 ones first when
/// asked (each family keeping its order, as `dns.lookup`'s `ipv4first`), then all of them,
/// raced, or only the first (Node's `autoSelectFamily: false`: `dns.lookup` without `all`
/// answers one address, and `net.connect` tries that one until its connect timeout).
pub(crate) fn dialed(mut ips: Vec<IpAddr>, dialing: &Dialing) -> Vec<IpAddr> {
    if dialing.ipv4_only {
        ips.retain(IpAddr::is_ipv4);
    }
    if dialing.ipv4_first {
        ips.sort_by_key(IpAddr::is_ipv6);
    }
    if !dialing.race {
        ips.truncate(1);
    }
    ips
}

/// One connection attempt: a non-blocking socket connecting to `addr`.
pub(crate) struct Attempt {
    /// Where it connects.
    pub(crate) addr: SocketAddr,
    /// Its socket (non-blocking).
    pub(crate) socket: TcpStream,
    /// When it is given up: its connect timeout, or the open timeout if sooner.
    until: Instant,
    /// Whether it is registered with the loop's poller (its owner's to say and to undo).
    pub(crate) watched: bool,
}

/// Whether `socket`'s connect is done: `None` while it goes on, else how it ended.
fn connected(socket: &TcpStream) -> Option<io::Result<()>> {
    match socket.take_error() {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match socket.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        },
    }
}

/// The attempts to connect to one host (see the module doc).
pub(crate) struct Race {
    /// `host:port`, for errors.
    name: String,
    /// The addresses not tried yet, in order.
    waiting: VecDeque<SocketAddr>,
    /// The attempts under way, oldest first.
    attempts: Vec<Attempt>,
    /// Attempts that ended while registered with a poller, for their owner to take out of it
    /// ([`Race::take_ended`]) before they close.
    ended: Vec<Attempt>,
    /// Every address tried that did not connect, and why, in the order they ended.
    failures: Vec<(SocketAddr, io::Error)>,
    /// When the next address is tried if no attempt has connected by then.
    next_start: Instant,
    /// The open timeout.
    by: Instant,
    connect_timeout: Duration,
    attempt_delay: Duration,
}

impl Race {
    /// The attempts to connect to `addrs` (the resolver's order) of `name` (`host:port`),
    /// ordered by [`interleave`]; none starts before the first [`advance`](Self::advance),
    /// and all end `by` then.
    pub(crate) fn new(
        addrs: &[SocketAddr],
        name: String,
        limits: &HttpLimits,
        by: Instant,
    ) -> Self {
        Race {
            name,
            waiting: interleave(addrs).into(),
            attempts: Vec::new(),
            ended: Vec::new(),
            failures: Vec::new(),
            next_start: by,
            by,
            connect_timeout: limits.connect_timeout,
            attempt_delay: limits.attempt_delay,
        }
    }

    /// Look at every attempt at `now`: the first connected wins (`Some`: the others are
    /// [`losers`](Self::into_losers)); one that failed or timed out ends, and the next
    /// address is tried when one ended or the current attempt went the attempt delay
    /// without connecting. `None`: it waits (for a socket, or until
    /// [`deadline`](Self::deadline)); `Err` when every address failed or the open timeout
    /// passed: the error names each address tried and why.
    pub(crate) fn advance(&mut self, now: Instant) -> Result<Option<Attempt>, RaceError> {
        loop {
            let mut winner = None;
            for attempt in std::mem::take(&mut self.attempts) {
                match connected(&attempt.socket) {
                    Some(Ok(())) if winner.is_none() => winner = Some(attempt),
                    Some(Err(e)) => self.end(attempt, e, now),
                    None if now >= attempt.until => self.end(attempt, timed_out(), now),
                    _ => self.attempts.push(attempt),
                }
            }
            if winner.is_some() {
                return Ok(winner);
            }
            if now >= self.by {
                for attempt in std::mem::take(&mut self.attempts) {
                    self.end(attempt, timed_out(), now);
                }
                return Err(self.lost(true));
            }
            let mut started = false;
            while self.attempts.is_empty() || now >= self.next_start {
                let Some(addr) = self.waiting.pop_front() else {
                    break;
                };
                match mio::net::TcpStream::connect(addr) {
                    Ok(socket) => {
                        self.attempts.push(Attempt {
                            addr,
                            socket: socket.into(),
                            until: self.by.min(now + self.connect_timeout),
                            watched: false,
                        });
                        self.next_start = now + self.attempt_delay;
                        started = true;
                    }
                    Err(e) => self.failures.push((addr, e)),
                }
            }
            if self.attempts.is_empty() {
                return Err(self.lost(false));
            }
            if !started {
                return Ok(None);
            }
            // A fresh attempt may be connected already (a loopback one is): look again.
        }
    }

    /// `attempt` did not connect (`why`): it is closed, or kept for its owner to take out
    /// of its poller first; the next address is tried at once.
    fn end(&mut self, attempt: Attempt, why: io::Error, now: Instant) {
        self.failures.push((attempt.addr, why));
        self.next_start = now;
        if attempt.watched {
            self.ended.push(attempt);
        }
    }

    /// When [`advance`](Self::advance) is due without readiness: the next attempt's start,
    /// an attempt's timeout, or the open timeout, whichever comes first.
    pub(crate) fn deadline(&self) -> Instant {
        let next = (!self.waiting.is_empty()).then_some(self.next_start);
        let attempts = self.attempts.iter().map(|a| a.until);
        attempts.chain(next).fold(self.by, Instant::min)
    }

    /// The attempts under way, to register their sockets with a poller.
    pub(crate) fn attempts_mut(&mut self) -> &mut [Attempt] {
        &mut self.attempts
    }

    /// The attempts that ended while registered, to take out of the poller (they close when
    /// dropped).
    pub(crate) fn take_ended(&mut self) -> Vec<Attempt> {
        std::mem::take(&mut self.ended)
    }

    /// The attempts left once one won: those under way and those ended but still registered.
    pub(crate) fn into_losers(self) -> impl Iterator<Item = Attempt> {
        self.attempts.into_iter().chain(self.ended)
    }

    /// Run the race to its end on this thread, waiting in poll(2) on the attempts' sockets
    /// (blocking: never on the loop); `cancelled` is asked after each wait. The winner's
    /// socket is left non-blocking; the losers are closed.
    pub(crate) fn finish(mut self, cancelled: impl Fn() -> bool) -> Result<Attempt, RaceError> {
        loop {
            let now = Instant::now();
            if let Some(winner) = self.advance(now)? {
                return Ok(winner);
            }
            if cancelled() {
                return Err(RaceError::Cancelled);
            }
            let sockets: Vec<&TcpStream> = self.attempts.iter().map(|a| &a.socket).collect();
            let timeout = self.deadline().saturating_duration_since(now);
            if let Err(source) = wait::writable_any(&sockets, timeout) {
                return Err(RaceError::Wait {
                    name: std::mem::take(&mut self.name),
                    source,
                });
            }
        }
    }

    /// The error of a race every attempt lost (`open_timeout`: the open timeout passed),
    /// its failures taken.
    fn lost(&mut self, open_timeout: bool) -> RaceError {
        let name = std::mem::take(&mut self.name);
        if self.failures.is_empty() && self.waiting.is_empty() {
            return RaceError::NoAddresses { name };
        }
        RaceError::Lost {
            name,
            failures: std::mem::take(&mut self.failures),
            untried: std::mem::take(&mut self.waiting).into(),
            open_timeout,
        }
    }
}

/// Why a race found no connection. Its text names the host, and for a lost race every
/// address tried and why.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RaceError {
    /// There was no address to try.
    #[error("cannot resolve {name}: no addresses")]
    NoAddresses {
        /// `host:port`.
        name: String,
    },
    /// Every attempt failed, or the open timeout passed first.
    #[error("{}", lost_text(.name, .failures, .untried))]
    Lost {
        /// `host:port`.
        name: String,
        /// Every address tried and why it did not connect (an attempt the open timeout or
        /// its connect timeout ended: [`io::ErrorKind::TimedOut`]), in the order they ended.
        failures: Vec<(SocketAddr, io::Error)>,
        /// The addresses the open timeout left untried.
        untried: Vec<SocketAddr>,
        /// Whether the open timeout ended it (else every address failed before).
        open_timeout: bool,
    },
    /// Its owner cancelled it.
    #[error("{}", crate::http_loop::CANCELLED)]
    Cancelled,
    /// Waiting on the attempts' sockets failed.
    #[error("cannot connect to {name}: {source}")]
    Wait {
        /// `host:port`.
        name: String,
        /// poll(2)'s error.
        source: io::Error,
    },
}

impl RaceError {
    /// What kind of failure it is: a lost race the most telling of its attempts' (an
    /// unreachable network, else a timeout, else a refusal), as upstream collects the codes
    /// of every attempt.
    pub(crate) fn kind(&self) -> HttpErrorKind {
        match self {
            RaceError::NoAddresses { .. } => HttpErrorKind::Lookup,
            RaceError::Lost { open_timeout, .. } if *open_timeout => HttpErrorKind::TimedOut,
            RaceError::Lost { failures, .. } => {
                let kinds: Vec<HttpErrorKind> = failures
                    .iter()
                    .map(|(_, why)| kind_of(why, HttpErrorKind::Refused))
                    .collect();
                [HttpErrorKind::Unreachable, HttpErrorKind::TimedOut]
                    .into_iter()
                    .find(|k| kinds.contains(k))
                    .unwrap_or(HttpErrorKind::Refused)
            }
            RaceError::Cancelled => HttpErrorKind::Cancelled,
            RaceError::Wait { .. } => HttpErrorKind::Other,
        }
    }
}

/// The text of [`RaceError::Lost`]: the one failure as the loop words a failed connect, or
/// every address and why, and those left untried.
fn lost_text(name: &str, failures: &[(SocketAddr, io::Error)], untried: &[SocketAddr]) -> String {
    if let ([(addr, why)], []) = (failures, untried) {
        return connect_error(name, *addr, why);
    }
    let tried: Vec<String> = failures
        .iter()
        .map(|(addr, why)| format!("{addr}: {why}"))
        .collect();
    let mut text = format!("cannot connect to {name}: {}", tried.join("; "));
    if !untried.is_empty() {
        let left: Vec<String> = untried.iter().map(SocketAddr::to_string).collect();
        text.push_str(&format!(
            "; not tried within the open timeout: {}",
            left.join(", ")
        ));
    }
    text
}

/// Why an attempt not connected by its timeout ended.
fn timed_out() -> io::Error {
    io::Error::from(io::ErrorKind::TimedOut)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    use super::*;

    fn v4(n: u8) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, n), 443))
    }

    fn v6(n: u16) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n), 443))
    }

    #[test]
    fn families_alternate_from_the_first_ones_each_in_the_resolvers_order() {
        let resolved = [v6(1), v6(2), v6(3), v4(1), v4(2)];
        assert_eq!(interleave(&resolved), [v6(1), v4(1), v6(2), v4(2), v6(3)]);
        let resolved = [v4(9), v4(1), v6(5)];
        assert_eq!(interleave(&resolved), [v4(9), v6(5), v4(1)]);
        assert_eq!(interleave(&[v4(1), v4(2)]), [v4(1), v4(2)]);
        assert_eq!(interleave(&[]), []);
    }

    #[test]
    fn a_lost_race_is_the_most_telling_kind_of_its_attempts() {
        let lost = |kinds: &[io::ErrorKind], open_timeout: bool| {
            let failures = kinds.iter().map(|k| (v4(1), io::Error::from(*k))).collect();
            let e = RaceError::Lost {
                name: "x:80".into(),
                failures,
                untried: Vec::new(),
                open_timeout,
            };
            e.kind()
        };
        use io::ErrorKind as K;
        assert_eq!(lost(&[K::ConnectionRefused], false), HttpErrorKind::Refused);
        let refused_then_timed_out = [K::ConnectionRefused, K::TimedOut];
        assert_eq!(
            lost(&refused_then_timed_out, false),
            HttpErrorKind::TimedOut
        );
        let unreachable = [K::TimedOut, K::HostUnreachable];
        assert_eq!(lost(&unreachable, false), HttpErrorKind::Unreachable);
        assert_eq!(lost(&[K::NetworkDown], false), HttpErrorKind::Unreachable);
        assert_eq!(lost(&[K::ConnectionRefused], true), HttpErrorKind::TimedOut);
        let none = RaceError::NoAddresses {
            name: "x:80".into(),
        };
        assert_eq!(none.kind(), HttpErrorKind::Lookup);
    }

    #[test]
    fn dialing_puts_ipv4_first_and_without_the_race_keeps_the_first_address() {
        let resolved: Vec<IpAddr> = [v6(1), v4(1), v6(2), v4(2)]
            .iter()
            .map(SocketAddr::ip)
            .collect();
        let ip = |a: SocketAddr| a.ip();
        let raced = Dialing::default();
        assert_eq!(dialed(resolved.clone(), &raced), resolved);
        let ipv4_first = Dialing {
            ipv4_first: true,
            ..raced
        };
        assert_eq!(
            dialed(resolved.clone(), &ipv4_first),
            [ip(v4(1)), ip(v4(2)), ip(v6(1)), ip(v6(2))]
        );
        let first_only = Dialing {
            race: false,
            ..raced
        };
        assert_eq!(dialed(resolved.clone(), &first_only), [ip(v6(1))]);
        let first_v4 = Dialing {
            race: false,
            ..ipv4_first
        };
        assert_eq!(dialed(resolved.clone(), &first_v4), [ip(v4(1))]);
        let ipv4_only = Dialing {
            ipv4_only: true,
            ..raced
        };
        assert_eq!(dialed(resolved, &ipv4_only), [ip(v4(1)), ip(v4(2))]);
        assert!(dialed(vec![ip(v6(1))], &ipv4_only).is_empty());
        assert!(dialed(Vec::new(), &first_v4).is_empty());
    }

    #[test]
    fn an_address_given_twice_is_tried_once() {
        let resolved = [v6(1), v4(1), v6(1), v4(2), v4(1)];
        assert_eq!(interleave(&resolved), [v6(1), v4(1), v4(2)]);
    }

    /// An address that refuses connections (a port just closed).
    pub(crate) fn refusing() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// An address bound at `at` that never answers, and what keeps it so: a listener whose
    /// accept queue (one connection at a backlog of 0) is full, so the kernel drops further
    /// SYNs.
    pub(crate) fn black_hole(at: &str) -> (SocketAddr, (TcpListener, TcpStream)) {
        let hole = TcpListener::bind(at).unwrap();
        rustix::net::listen(&hole, 0).unwrap();
        let addr = hole.local_addr().unwrap();
        let queued = TcpStream::connect(addr).unwrap();
        (addr, (hole, queued))
    }

    #[test]
    fn the_blocking_race_connects_past_an_address_that_never_answers() {
        let (hole, _held) = black_hole("127.0.0.2:0");
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let limits = HttpLimits::default();
        let addrs = [hole, good.local_addr().unwrap()];
        let started = Instant::now();
        let race = Race::new(
            &addrs,
            "x:80".into(),
            &limits,
            started + limits.open_timeout,
        );
        let winner = race.finish(|| false).expect("the second address answers");
        let took = started.elapsed();
        assert_eq!(winner.addr, addrs[1]);
        assert!(took >= limits.attempt_delay, "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn when_every_address_refuses_the_error_names_each_and_why() {
        let (first, second) = (refusing(), refusing());
        let by = Instant::now() + Duration::from_secs(5);
        let race = Race::new(&[first, second], "x:80".into(), &HttpLimits::default(), by);
        let error = race.finish(|| false).err().expect("refused").to_string();
        let why = io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string();
        assert_eq!(
            error,
            format!("cannot connect to x:80: {first}: {why}; {second}: {why}")
        );
    }

    #[test]
    fn one_address_refused_keeps_the_short_error() {
        let addr = refusing();
        let by = Instant::now() + Duration::from_secs(5);
        let race = Race::new(&[addr], "x:80".into(), &HttpLimits::default(), by);
        let error = race.finish(|| false).err().expect("refused").to_string();
        let why = io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string();
        assert_eq!(error, format!("cannot connect to x:80 ({addr}): {why}"));
    }

    #[test]
    fn no_addresses_is_a_lookup_error() {
        let by = Instant::now() + Duration::from_secs(5);
        let race = Race::new(&[], "x:80".into(), &HttpLimits::default(), by);
        let error = race.finish(|| false).err().expect("nothing to try");
        assert_eq!(error.to_string(), "cannot resolve x:80: no addresses");
    }
}
