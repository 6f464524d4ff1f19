//! Shared secrets, the locality rule, the Origin check and the auth-failure rate limiter.

use core::net::IpAddr;
use core::time::Duration;
use std::collections::HashMap;
use std::time::Instant;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ip_range::IpRange;

/// A shared secret. Compared in constant time on SHA-256 digests, so neither the content
/// nor the length leaks through timing; never printed.
#[derive(Clone)]
pub struct Secret {
    value: String,
    digest: [u8; 32],
}

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: &str) -> Self {
        Self {
            value: value.to_string(),
            digest: Sha256::digest(value.as_bytes()).into(),
        }
    }

    /// Whether `candidate` equals the secret, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        d.ct_eq(&self.digest).into()
    }

    /// The secret itself, for clients that must send it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.digest.ct_eq(&other.digest).into()
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The authority (`host[:port]`) and the host name of an `http(s)://` origin; `None` for
/// anything else (a path, user info, a bad port, `null`).
fn origin_parts(origin: &str) -> Option<(&str, &str)> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return None;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || valid_port(port) => h,
            _ => return None,
        }
    } else {
        match rest.split_once(':') {
            Some((h, port)) if valid_port(&format!(":{port}")) => h,
            Some(_) => return None,
            None => rest,
        }
    };
    Some((rest, host))
}

/// Whether `origin` (an `Origin` header value) is a loopback origin:
/// `http(s)://localhost|127.x.x.x|[::1]` on any port.
pub fn is_loopback_origin(origin: &str) -> bool {
    origin_parts(origin).is_some_and(|(_, host)| is_loopback_name(host))
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// upstream's `isTrustedSameOriginHost`: a host a page may be served from and connect back
/// to (loopback, a private, link-local or CGNAT address, a `.local` or tailnet `.ts.net` name).
fn is_trusted_same_origin_host(host: &str) -> bool {
    if is_loopback_name(host) {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        Ok(IpAddr::V6(v6)) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        Err(_) => {
            let name = host.to_ascii_lowercase();
            name.ends_with(".local") || name.ends_with(".ts.net")
        }
    }
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':')
        .is_some_and(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a browser origin may open a socket (upstream's `checkBrowserOrigin`): listed in
/// `gateway.controlUi.allowedOrigins` (or `*` is), a loopback origin, or the page's own
/// origin — `Origin` names the `Host` the upgrade was sent to — when that host is one a
/// Control UI is served from on a LAN or tailnet (a private address, `.local`, `.ts.net`).
pub fn origin_allowed(origin: &str, request_host: Option<&str>, allowed: &[String]) -> bool {
    let trimmed = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(trimmed))
    {
        return true;
    }
    let Some((authority, host)) = origin_parts(origin) else {
        return false;
    };
    if is_loopback_name(host) {
        return true;
    }
    request_host.is_some_and(|h| h.trim().eq_ignore_ascii_case(authority))
        && is_trusted_same_origin_host(host)
}

/// A connection is local only when its (forwarded) client address is loopback and any
/// `Origin` is a loopback origin.
pub fn is_local(client_ip: IpAddr, origin: Option<&str>) -> bool {
    is_loopback(client_ip) && origin.is_none_or(is_loopback_origin)
}

/// Loopback, counting IPv4-mapped IPv6 loopback too.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// The forwarding headers of an upgrade request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// The addresses `X-Forwarded-For` names, left (original client) to right (last hop).
    pub chain: Vec<IpAddr>,
    /// The address `X-Real-IP` names.
    pub real_ip: Option<IpAddr>,
    /// Whether any forwarding header (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) was present.
    pub present: bool,
}

/// Why forwarding headers were not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Forwarding headers from a peer that is not a trusted proxy.
    #[error(
        "proxy_attribution_required: forwarding headers from an untrusted peer; list the proxy in gateway.trustedProxies"
    )]
    Untrusted,
    /// A trusted proxy named no remote client (none, or only loopback and proxy hops).
    #[error(
        "proxy_attribution_required: the trusted proxy named no remote client; make it overwrite X-Forwarded-For"
    )]
    NoClient,
}

/// The client address to attribute a connection to (upstream's ingress attribution): the
/// peer itself when it sent no forwarding header and is not a trusted proxy; for a trusted
/// proxy the right-most `X-Forwarded-For` hop that is neither loopback nor a trusted proxy
/// (what the client itself wrote further left is not believed), else `X-Real-IP` when
/// `real_ip_fallback`; a refusal otherwise. A forwarded address is never loopback, so a
/// connection through a proxy is never local.
pub fn client_address(
    peer: IpAddr,
    fwd: &Forwarding,
    trusted: &[IpRange],
    real_ip_fallback: bool,
) -> Result<IpAddr, ProxyError> {
    let peer = canonical(peer);
    if !fwd.present && is_loopback(peer) {
        return Ok(peer);
    }
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return if fwd.present {
            Err(ProxyError::Untrusted)
        } else {
            Ok(peer)
        };
    }
    let hop = fwd
        .chain
        .iter()
        .rev()
        .map(|ip| canonical(*ip))
        .find(|ip| !is_loopback(*ip) && !is_trusted(*ip));
    hop.or(fwd.real_ip.filter(|_| real_ip_fallback).map(canonical))
        .filter(|ip| !is_loopback(*ip))
        .ok_or(ProxyError::NoClient)
}

/// An IPv4-mapped IPv6 address as IPv4, anything else as it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Read the forwarding headers of an upgrade: the `X-Forwarded-For` chain and `X-Real-IP`
/// (unreadable entries skipped); `Forwarded` only counts as present, as upstream's.
pub fn parse_forwarded(
    forwarded: Option<&str>,
    xff: Option<&str>,
    real_ip: Option<&str>,
) -> Forwarding {
    Forwarding {
        chain: xff
            .map(|v| {
                v.split(',')
                    .filter_map(|s| parse_host_ip(s.trim()))
                    .collect()
            })
            .unwrap_or_default(),
        real_ip: real_ip.and_then(|s| parse_host_ip(s.trim())),
        present: forwarded.is_some() || xff.is_some() || real_ip.is_some(),
    }
}

fn parse_host_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(h, _)| h.parse().ok());
    }
    s.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

/// The kinds of credential whose failures are counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// The gateway's shared token or password.
    SharedSecret,
    /// A paired device's token.
    DeviceToken,
}

#[derive(Debug, Default)]
struct Bucket {
    failures: u32,
    window_start: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Counts failed attempts per client address and credential kind and locks an address out
/// after too many.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<(IpAddr, CredentialKind), Bucket>,
}

impl RateLimiter {
    /// If the address is locked out for this kind, how long is left.
    pub fn locked(&mut self, now: Instant, ip: IpAddr, kind: CredentialKind) -> Option<Duration> {
        let b = self.buckets.get(&(ip, kind))?;
        b.locked_until.filter(|t| *t > now).map(|t| t - now)
    }

    /// Record a failure; returns the lockout left if this failure triggered one.
    pub fn fail(
        &mut self,
        now: Instant,
        ip: IpAddr,
        kind: CredentialKind,
        max_attempts: u32,
        window: Duration,
        lockout: Duration,
    ) -> Option<Duration> {
        let b = self.buckets.entry((ip, kind)).or_default();
        if b.window_start
            .is_none_or(|s| now.saturating_duration_since(s) > window)
        {
            b.window_start = Some(now);
            b.failures = 0;
        }
        b.failures += 1;
        if b.failures >= max_attempts {
            b.locked_until = Some(now + lockout);
            b.failures = 0;
            b.window_start = None;
            return Some(lockout);
        }
        None
    }

    /// Forget buckets whose window and lockout are over.
    pub fn prune(&mut self, now: Instant, window: Duration) {
        self.buckets.retain(|_, b| {
            b.locked_until.is_some_and(|t| t > now)
                || b.window_start
                    .is_some_and(|s| now.saturating_duration_since(s) <= window)
        });
    }

    /// Number of tracked buckets (for tests and memory bounds).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins() {
        for o in [
            "http://localhost",
            "http://localhost:5173",
            "https://127.0.0.1:1",
            "http://[::1]:8080",
            "http://127.9.9.9",
        ] {
            assert!(is_loopback_origin(o), "{o}");
        }
        for o in [
            "http://evil.com",
            "http://localhost.evil.com",
            "http://127.0.0.1.evil.com",
            "null",
            "file://",
            "http://localhost:x",
            "http://user@localhost",
        ] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }

    #[test]
    fn same_origin_pages_on_lan_and_tailnet_hosts() {
        let none: &[String] = &[];
        for (origin, host) in [
            ("http://192.168.1.20:18789", "192.168.1.20:18789"),
            ("http://10.0.0.5:18789", "10.0.0.5:18789"),
            ("http://100.101.102.103:18789", "100.101.102.103:18789"),
            ("https://box.tail1234.ts.net", "box.tail1234.ts.net"),
            ("http://pi.local:18789", "PI.local:18789"),
            ("http://[fd00::1]:18789", "[fd00::1]:18789"),
        ] {
            assert!(origin_allowed(origin, Some(host), none), "{origin}");
        }
        for (origin, host) in [
            // Not the host the page was loaded from.
            ("http://192.168.1.21:18789", "192.168.1.20:18789"),
            ("http://192.168.1.20:18789", "192.168.1.20:18790"),
            // The page's own origin, but a public host: only the allowlist admits it.
            ("http://203.0.113.7:18789", "203.0.113.7:18789"),
            ("https://gateway.example.com", "gateway.example.com"),
            ("null", "null"),
        ] {
            assert!(!origin_allowed(origin, Some(host), none), "{origin}");
        }
        assert!(!origin_allowed("http://192.168.1.20:18789", None, none));
        let listed = ["https://gateway.example.com".to_string()];
        assert!(origin_allowed(
            "https://gateway.example.com/",
            None,
            &listed
        ));
        assert!(origin_allowed("http://evil.com", None, &["*".to_string()]));
    }

    #[test]
    fn secret_compares_by_value() {
        let s = Secret::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abcd"));
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn forwarding_is_believed_from_trusted_proxies_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let one = IpRange::single;
        let lo = ip("127.0.0.1");
        let proxy = ip("10.0.0.1");
        let fwd = parse_forwarded(None, Some("203.0.113.9, 10.0.0.1"), None);
        assert_eq!(
            client_address(lo, &fwd, &[], false),
            Err(ProxyError::Untrusted)
        );
        assert_eq!(
            client_address(proxy, &fwd, &[one(lo)], false),
            Err(ProxyError::Untrusted)
        );
        // The right-most hop that is not a trusted proxy is the client: what the client
        // wrote itself further left is not believed.
        assert_eq!(
            client_address(lo, &fwd, &[one(lo)], false),
            Ok(ip("10.0.0.1"))
        );
        assert_eq!(
            client_address(lo, &fwd, &[one(lo), one(proxy)], false),
            Ok(ip("203.0.113.9"))
        );
        // A range trusts every proxy in it.
        let tens: IpRange = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            client_address(lo, &fwd, &[one(lo), tens], false),
            Ok(ip("203.0.113.9"))
        );
        let spoof = parse_forwarded(None, Some("198.51.100.1, 203.0.113.9"), None);
        assert_eq!(
            client_address(proxy, &spoof, &[one(proxy)], false),
            Ok(ip("203.0.113.9"))
        );
        // A loopback client through a proxy is never local: refused.
        let local = parse_forwarded(None, Some("127.0.0.1"), None);
        assert_eq!(
            client_address(proxy, &local, &[one(proxy)], false),
            Err(ProxyError::NoClient)
        );
        let none = parse_forwarded(Some("for=192.0.2.1"), None, Some("192.0.2.7"));
        assert_eq!(
            client_address(proxy, &none, &[one(proxy)], false),
            Err(ProxyError::NoClient)
        );
        assert_eq!(
            client_address(proxy, &none, &[one(proxy)], true),
            Ok(ip("192.0.2.7"))
        );
        // No headers: the peer itself, loopback or not; a trusted remote proxy without them
        // names no client.
        let bare = Forwarding::default();
        assert_eq!(client_address(lo, &bare, &[one(lo)], false), Ok(lo));
        assert_eq!(
            client_address(ip("192.0.2.3"), &bare, &[], false),
            Ok(ip("192.0.2.3"))
        );
        assert_eq!(
            client_address(proxy, &bare, &[one(proxy)], false),
            Err(ProxyError::NoClient)
        );
        let mapped = parse_forwarded(None, Some("[::ffff:203.0.113.5]:443"), None);
        assert_eq!(
            client_address(lo, &mapped, &[one(lo)], false),
            Ok(ip("203.0.113.5"))
        );
    }
}
