//! Telegram's transport fallback, as upstream's (`resolveTelegramTransport`,
//! `extensions/telegram/src/fetch.ts`): a Bot API request that fails at the transport
//! (a connect timeout, an unreachable network or host, the server closing the connection;
//! never an HTTP or API error) is tried again at once on the next of three transport
//! attempts, and later requests start there (sticky):
//! 1. the account's own dialing (`network.autoSelectFamily`, `dnsResultOrder`);
//! 2. IPv4 only: the first IPv4 address, `ipv4first`, no race;
//! 3. the same with [`API_HOSTNAME`] pinned to [`FALLBACK_IPS`] (its TLS name and `Host`
//!    stay the name's; another `apiRoot` host is looked up as in 2).
//!
//! An attempt that fails [`FAILURE_THRESHOLD`] times in a row cools down for
//! [`INITIAL_COOLDOWN`], doubling up to [`MAX_COOLDOWN`] (a success resets it): a request
//! skips a cooling attempt, and fails without a try when every attempt left is cooling. After
//! [`PROBE_AFTER_SUCCESSES`] successes on a fallback attempt, or while it cools down, the next
//! request starts from the primary again (a probe); a success there goes back to it.
//!
//! The fallback is off, as upstream's, when `dnsResultOrder` is set to something other than
//! `ipv4first` (by the config or [`DNS_RESULT_ORDER_ENV`](crate::channels::config::DNS_RESULT_ORDER_ENV)):
//! only attempt 1 exists then. (Upstream also turns it off through an explicit proxy;
//! clawgate refuses `proxy`.) A pure state machine: time comes in, log lines go out.

use core::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::log::Level;
use crate::model::{Dialing, Pinned};
use crate::work::{HttpError, HttpErrorKind};

/// The Bot API's host name, the one attempt 3 pins.
pub const API_HOSTNAME: &str = "api.telegram.org";
/// The addresses attempt 3 connects to for [`API_HOSTNAME`] (upstream's
/// `TELEGRAM_FALLBACK_IPS`).
pub const FALLBACK_IPS: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::new(149, 154, 167, 220))];
/// Successes in a row on a fallback attempt before the primary is probed again.
pub const PROBE_AFTER_SUCCESSES: u32 = 5;
/// Transport failures in a row that make an attempt cool down.
pub const FAILURE_THRESHOLD: u32 = 5;
/// An attempt's first cooldown; it doubles each time, up to [`MAX_COOLDOWN`].
pub const INITIAL_COOLDOWN: Duration = Duration::from_secs(10);
/// The longest cooldown.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);

/// Whether a failure of this kind moves a request to the next attempt (upstream's
/// `ETIMEDOUT`, `ENETDOWN`, `ENETUNREACH`, `EHOSTUNREACH`, `UND_ERR_CONNECT_TIMEOUT`,
/// `UND_ERR_SOCKET`).
pub fn falls_back(kind: HttpErrorKind) -> bool {
    matches!(
        kind,
        HttpErrorKind::TimedOut | HttpErrorKind::Unreachable | HttpErrorKind::Closed
    )
}

/// One attempt's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Health {
    /// Transport failures in a row.
    failures: u32,
    /// Its next cooldown.
    cooldown: Duration,
    /// Cooling down until then.
    until: Option<Instant>,
}

impl Health {
    const FRESH: Health = Health {
        failures: 0,
        cooldown: INITIAL_COOLDOWN,
        until: None,
    };

    /// What is left of its cooldown at `now`.
    fn cooling(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

/// A log line the transport asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub text: String,
}

impl Note {
    fn new(level: Level, text: impl Into<String>) -> Self {
        Note {
            level,
            text: text.into(),
        }
    }
}

/// Where a request goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try it on this attempt (`0`, `1`, `2`).
    Try(usize),
    /// Report this failure (no attempt left, or the failure does not fall back).
    Fail(String),
}

/// A request under way: where it started and the attempt it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tried {
    /// The attempt it started on.
    pub start: usize,
    /// The attempt it is on.
    pub attempt: usize,
}

/// One account's transport attempts and their state (see the module doc).
#[derive(Clone, Debug)]
pub struct Transport {
    /// The attempts' dialings: the account's own, then (when allowed) the fallbacks.
    attempts: Vec<Dialing>,
    health: Vec<Health>,
    /// Where requests start.
    sticky: usize,
    /// Successes in a row on the sticky fallback attempt.
    sticky_successes: u32,
    /// The next request probes the primary.
    probe_due: bool,
}

impl Transport {
    /// The attempts of an account dialling as `primary`; the fallbacks only when `fallback`.
    pub fn new(primary: Dialing, fallback: bool) -> Self {
        let mut attempts = vec![primary];
        if fallback {
            let ipv4 = Dialing {
                race: false,
                ipv4_first: true,
                ipv4_only: true,
                attempt_delay: primary.attempt_delay,
                pinned: None,
            };
            let pinned = Dialing {
                pinned: Some(Pinned {
                    host: API_HOSTNAME,
                    addrs: &FALLBACK_IPS,
                }),
                ..ipv4
            };
            attempts.extend([ipv4, pinned]);
        }
        Transport {
            health: vec![Health::FRESH; attempts.len()],
            attempts,
            sticky: 0,
            sticky_successes: 0,
            probe_due: false,
        }
    }

    /// Whether there is an attempt to fall back to.
    pub fn has_fallback(&self) -> bool {
        self.attempts.len() > 1
    }

    /// Whether there is an attempt after `attempt` (a request on it keeps a copy to send
    /// there).
    pub fn has_after(&self, attempt: usize) -> bool {
        attempt + 1 < self.attempts.len()
    }

    /// How attempt `attempt` dials.
    pub fn dialing(&self, attempt: usize) -> Dialing {
        self.attempts.get(attempt).copied().unwrap_or_default()
    }

    /// The attempt requests start on now (sticky).
    pub fn sticky(&self) -> usize {
        self.sticky
    }

    /// Where a new request goes at `now`: the sticky attempt, or the primary when a probe is
    /// due (after successes, or while the sticky attempt cools down); cooling attempts
    /// skipped. With the request's start.
    pub fn begin(&mut self, now: Instant, notes: &mut Vec<Note>) -> (usize, Next) {
        let cooling = self
            .health
            .get(self.sticky)
            .and_then(|h| h.cooling(now))
            .is_some();
        let probe = self.sticky > 0 && (self.probe_due || cooling);
        let start = if probe { 0 } else { self.sticky };
        if probe {
            self.probe_due = false;
            notes.push(Note::new(
                Level::Debug,
                if cooling {
                    "fetch fallback: re-probing primary dispatcher while sticky fallback is cooling down"
                } else {
                    "fetch fallback: re-probing primary dispatcher after sticky fallback successes"
                },
            ));
        }
        (start, self.from(now, start, start, None, notes))
    }

    /// The request `tried` failed with `error` at `now`: the attempt to try it on next, or
    /// the failure to report.
    pub fn failed(
        &mut self,
        now: Instant,
        tried: Tried,
        error: &HttpError,
        notes: &mut Vec<Note>,
    ) -> Next {
        if !falls_back(error.kind) {
            return Next::Fail(error.message.clone());
        }
        if let Some(h) = self.health.get_mut(tried.attempt) {
            h.failures += 1;
            if h.failures >= FAILURE_THRESHOLD {
                let cooldown = h.cooldown.clamp(INITIAL_COOLDOWN, MAX_COOLDOWN);
                h.failures = 0;
                h.cooldown = (cooldown * 2).min(MAX_COOLDOWN);
                h.until = Some(now + cooldown);
                notes.push(Note::new(
                    Level::Warn,
                    format!(
                        "telegram transport attempt marked temporarily unhealthy for {}ms ({error})",
                        cooldown.as_millis()
                    ),
                ));
            }
        }
        self.from(
            now,
            tried.start,
            tried.attempt + 1,
            Some(&error.message),
            notes,
        )
    }

    /// The request `tried` got an answer (any HTTP status): its attempt is healthy; a fallback
    /// attempt's successes lead to a probe of the primary, a success before the sticky one
    /// goes back to it.
    pub fn succeeded(&mut self, tried: Tried, notes: &mut Vec<Note>) {
        let attempt = tried.attempt;
        if let Some(h) = self.health.get_mut(attempt) {
            *h = Health::FRESH;
        }
        if self.sticky == 0 {
            self.reset_probe();
        } else if attempt < self.sticky {
            notes.push(Note::new(
                Level::Debug,
                format!(
                    "fetch fallback: recovered from attempt {} to attempt {attempt}",
                    self.sticky
                ),
            ));
            self.sticky = attempt;
            self.reset_probe();
        } else if attempt == self.sticky {
            self.sticky_successes += 1;
            if self.sticky_successes >= PROBE_AFTER_SUCCESSES {
                self.sticky_successes = 0;
                self.probe_due = true;
                notes.push(Note::new(
                    Level::Debug,
                    "fetch fallback: scheduling primary dispatcher recovery probe",
                ));
            }
        }
    }

    /// The first attempt from `from` on that is not cooling down (those past `start`
    /// become sticky on the way, as upstream promotes them), or the failure to report:
    /// `last`, or the cooldown of the last one skipped.
    fn from(
        &mut self,
        now: Instant,
        start: usize,
        from: usize,
        last: Option<&str>,
        notes: &mut Vec<Note>,
    ) -> Next {
        let mut error = last.map(str::to_owned);
        for attempt in from..self.attempts.len() {
            if attempt > start {
                self.promote(attempt, error.as_deref(), notes);
            }
            match self.health.get(attempt).and_then(|h| h.cooling(now)) {
                Some(left) => {
                    error = Some(format!(
                        "Telegram transport attempts are cooling down; retry after {}ms",
                        left.as_millis()
                    ));
                }
                None => return Next::Try(attempt),
            }
        }
        Next::Fail(error.unwrap_or_default())
    }

    /// Make `attempt` the sticky one if it is past it, saying so as upstream does.
    fn promote(&mut self, attempt: usize, error: Option<&str>, notes: &mut Vec<Note>) {
        if attempt <= self.sticky || attempt >= self.attempts.len() {
            return;
        }
        let why = error.unwrap_or("none");
        let note = match attempt {
            1 => Note::new(
                Level::Debug,
                format!("fetch fallback: enabling sticky IPv4-only dispatcher ({why})"),
            ),
            _ => Note::new(
                Level::Warn,
                format!(
                    "fetch fallback: primary connection path failed; trying alternative Telegram API IP ({why})"
                ),
            ),
        };
        notes.push(note);
        self.sticky = attempt;
        self.reset_probe();
    }

    fn reset_probe(&mut self) {
        self.sticky_successes = 0;
        self.probe_due = false;
    }
}
