//! Idle HTTP/1.1 connections the loop ([`crate::http_loop`]) keeps for the next request to
//! the same origin (keep-alive): a Telegram long poll, its `sendMessage`s and a model provider's turns then
//! skip the DNS lookup, the TCP connect and the TLS handshake.
//!
//! - Keyed by [`Origin`]: scheme, host and port; for `https://` the host is also the TLS
//!   server name, so a TLS session is only reused for the name it was verified for (it stays
//!   with its socket).
//! - Bounded: at most [`KeepAlive::per_origin`] idle connections per origin and
//!   [`KeepAlive::total`] in all (the oldest go first), each for at most its lifetime:
//!   [`KeepAlive::lifetime`], or less when the server's `Keep-Alive: timeout=N` says so
//!   (N − 2 s, as undici does).
//! - Expired connections are closed when the loop sweeps the pool at its
//!   [`ConnectionPool::next_expiry`], and all of them when the loop shuts down.
//! - A connection is only taken if it looks alive: a non-blocking peek finds neither an EOF
//!   (the server closed it while idle) nor bytes nobody asked for.
//!
//! Upstream's client (Node's undici 8) keeps idle sockets 4 s unless the server's
//! `Keep-Alive` hint says otherwise (less 2 s, at most 600 s), with no per-origin bound.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use clawgate_core::model::Dialing;
use clawgate_core::model::http1::{Scheme, Target};
use rustix::io::Errno;
use rustix::net::RecvFlags;

use crate::tls::Stream;

/// The default of [`KeepAlive::per_origin`].
pub const IDLE_PER_ORIGIN: usize = 4;
/// The default of [`KeepAlive::total`].
pub const IDLE_TOTAL: usize = 16;
/// The default of [`KeepAlive::lifetime`]: 30 s, below common servers' idle timeouts (nginx
/// 75 s, a Node server 5 s but it says so in `Keep-Alive`).
pub const IDLE_LIFETIME: Duration = Duration::from_secs(30);
/// What is taken off a server's `Keep-Alive: timeout=N` hint (undici's
/// `keepAliveTimeoutThreshold`): the connection is not offered again too close to the moment
/// the server closes it.
const HINT_MARGIN: Duration = Duration::from_secs(2);

/// How many idle connections are kept, and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle connections kept per origin.
    pub per_origin: usize,
    /// Idle connections kept in all.
    pub total: usize,
    /// How long an idle connection is kept at most.
    pub lifetime: Duration,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            per_origin: IDLE_PER_ORIGIN,
            total: IDLE_TOTAL,
            lifetime: IDLE_LIFETIME,
        }
    }
}

/// Where a connection goes: requests to the same origin may share it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
    /// How its connections were dialled: a request dialled otherwise (IPv4 only, to a
    /// pinned address) does not take them, as upstream's Telegram transport attempts each
    /// keep a pool of their own.
    dialing: Dialing,
}

impl Origin {
    /// The origin of `target`, dialled as `dialing` says.
    pub(crate) fn of(target: &Target, dialing: Dialing) -> Self {
        Origin {
            scheme: target.scheme,
            host: target.host.clone(),
            port: target.port,
            dialing,
        }
    }
}

/// A connection between requests: its stream and the handle a cancel shuts down.
pub(crate) struct Connection {
    /// The byte stream (TLS session included).
    pub(crate) stream: Stream,
    /// A second handle on its socket.
    pub(crate) socket: TcpStream,
}

struct Idle {
    origin: Origin,
    conn: Connection,
    until: Instant,
}

/// The idle connections (see the module doc).
pub(crate) struct ConnectionPool {
    limits: KeepAlive,
    /// In return order, oldest first.
    idle: Vec<Idle>,
}

impl ConnectionPool {
    /// An empty pool.
    pub(crate) fn new(limits: KeepAlive) -> Self {
        ConnectionPool {
            limits,
            idle: Vec::new(),
        }
    }

    /// The most recently returned live connection to `origin`, if any; stale ones found on
    /// the way and expired ones are closed.
    pub(crate) fn checkout(&mut self, origin: &Origin, now: Instant) -> Option<Connection> {
        drop(expire(&mut self.idle, now));
        loop {
            let at = self.idle.iter().rposition(|i| i.origin == *origin)?;
            let found = self.idle.remove(at).conn;
            if looks_alive(&found.socket) {
                return Some(found);
            }
        }
    }

    /// Keep `conn` for the next request to `origin`, for the pool's lifetime or the server's
    /// `keep_alive` hint (the `Keep-Alive` header's value), whichever is shorter.
    pub(crate) fn checkin(
        &mut self,
        origin: Origin,
        conn: Connection,
        keep_alive: Option<&str>,
        now: Instant,
    ) {
        let lifetime = keep_alive
            .and_then(hinted_timeout)
            .map_or(self.limits.lifetime, |t| {
                t.saturating_sub(HINT_MARGIN).min(self.limits.lifetime)
            });
        if lifetime.is_zero() || self.limits.per_origin == 0 || self.limits.total == 0 {
            return;
        }
        let idle = &mut self.idle;
        drop(expire(idle, now));
        let same = idle.iter().filter(|i| i.origin == origin).count();
        // Oldest first: the vector is in return order.
        if same >= self.limits.per_origin
            && let Some(at) = idle.iter().position(|i| i.origin == origin)
        {
            idle.remove(at);
        }
        if idle.len() >= self.limits.total {
            idle.remove(0);
        }
        idle.push(Idle {
            origin,
            conn,
            until: now + lifetime,
        });
    }

    /// Close the expired connections, or all of them with `all`.
    pub(crate) fn sweep(&mut self, now: Instant, all: bool) {
        if all {
            self.idle.clear();
        } else {
            drop(expire(&mut self.idle, now));
        }
    }

    /// When the first kept connection expires.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.idle.iter().map(|i| i.until).min()
    }

    /// How many idle connections are kept.
    pub(crate) fn len(&self) -> usize {
        self.idle.len()
    }
}

/// Take the connections expired at `now` out of `idle` (closed when the caller drops them).
fn expire(idle: &mut Vec<Idle>, now: Instant) -> Vec<Idle> {
    let (gone, kept) = std::mem::take(idle)
        .into_iter()
        .partition(|i| i.until <= now);
    *idle = kept;
    gone
}

/// Whether an idle socket is still open with nothing unread: a peek that would block. An EOF
/// (the server closed it), a reset, or bytes before any request (an early `408`, a TLS alert)
/// mean it cannot carry a request.
fn looks_alive(socket: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        rustix::net::recv(socket, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Err(Errno::AGAIN)
    )
}

/// The `timeout=N` of a `Keep-Alive` header value (`timeout=5, max=100`).
fn hinted_timeout(value: &str) -> Option<Duration> {
    value.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keep_alive_hint_is_read_as_undici_does() {
        assert_eq!(
            hinted_timeout("timeout=5, max=100"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            hinted_timeout("max=3, Timeout = 7"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(hinted_timeout("max=3"), None);
        assert_eq!(hinted_timeout("timeout=soon"), None);
    }
}
