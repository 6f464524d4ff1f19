//! Address ranges as `gateway.trustedProxies` lists them: one address (`10.0.0.1`, `::1`,
//! `[::1]`) or a CIDR range (`10.0.0.0/8`, `::1/128`), matched as upstream's `isIpInCidr`
//! does: IPv4-mapped IPv6 addresses count as their IPv4 address on both sides (a mapped
//! range's prefix loses its 96 mapping bits), and an IPv4 range never holds an IPv6 address
//! or the other way round.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use crate::auth::canonical;

/// One address, or every address sharing a prefix with a base address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    /// The address as written.
    base: IpAddr,
    /// The prefix length in bits; `None` for a single address.
    prefix: Option<u8>,
}

/// Why an entry is not an address range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR range")]
pub struct IpRangeError(String);

impl IpRange {
    /// The range holding only `ip`.
    pub fn single(ip: IpAddr) -> Self {
        IpRange {
            base: ip,
            prefix: None,
        }
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (ip, base) = (canonical(ip), canonical(self.base));
        let Some(prefix) = self.prefix else {
            return ip == base;
        };
        match (ip, base) {
            (IpAddr::V4(ip), IpAddr::V4(base)) => {
                let bits = if self.base.is_ipv6() {
                    prefix.saturating_sub(96)
                } else {
                    prefix
                };
                same_prefix(u32::from(ip).into(), u32::from(base).into(), bits, 32)
            }
            (IpAddr::V6(ip), IpAddr::V6(base)) => {
                same_prefix(u128::from(ip), u128::from(base), prefix, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `bits` of two `width`-bit numbers (in the low bits of each) agree.
fn same_prefix(a: u128, b: u128, bits: u8, width: u32) -> bool {
    let shift = width.saturating_sub(u32::from(bits));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    /// An address (IPv6 possibly in brackets) or `address/prefix`, surrounding spaces
    /// ignored; a prefix past the address's width is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpRangeError(s.to_string());
        let t = s.trim();
        let Some((addr, bits)) = t.split_once('/') else {
            let bare = t
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or(t);
            return bare.parse().map(IpRange::single).map_err(|_| err());
        };
        let base: IpAddr = addr.parse().map_err(|_| err())?;
        let width = if base.is_ipv4() { 32 } else { 128 };
        let prefix = Some(bits)
            .filter(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|b| b.parse::<u8>().ok())
            .filter(|p| *p <= width)
            .ok_or_else(err)?;
        Ok(IpRange {
            base,
            prefix: Some(prefix),
        })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.base),
            None => write!(f, "{}", self.base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> IpRange {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_match_exactly_and_mapped_addresses_as_ipv4() {
        assert!(range("10.0.0.1").contains(ip("10.0.0.1")));
        assert!(!range("10.0.0.1").contains(ip("10.0.0.2")));
        assert!(range(" [::1] ").contains(ip("::1")));
        assert!(!range("::1").contains(ip("127.0.0.1")));
        assert!(range("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
        assert!(range("10.0.0.1").contains(ip("::ffff:10.0.0.1")));
        assert_eq!(range("10.0.0.1"), IpRange::single(ip("10.0.0.1")));
    }

    #[test]
    fn cidr_ranges_hold_their_prefix() {
        let eight = range("10.0.0.0/8");
        assert!(eight.contains(ip("10.255.3.4")));
        assert!(eight.contains(ip("::ffff:10.1.2.3")));
        assert!(!eight.contains(ip("11.0.0.1")));
        assert!(
            !eight.contains(ip("::a00:1")),
            "an IPv6 address is not in an IPv4 range"
        );
        // The base need not be the network's first address.
        assert!(range("192.168.1.77/24").contains(ip("192.168.1.1")));
        assert!(!range("192.168.1.77/24").contains(ip("192.168.2.1")));
        assert!(range("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!range("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(range("203.0.113.9/32").contains(ip("203.0.113.9")));
        assert!(!range("203.0.113.9/32").contains(ip("203.0.113.8")));
        assert!(range("::1/128").contains(ip("::1")));
        assert!(!range("::1/128").contains(ip("::2")));
        let doc = range("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        assert!(range("::/0").contains(ip("fe80::1")));
        assert!(
            !range("::/0").contains(ip("10.0.0.1")),
            "IPv4 is not in ::/0"
        );
        // A mapped range counts its IPv4 bits only.
        let mapped = range("::ffff:10.0.0.0/104");
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert_eq!(eight.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn what_is_not_a_range_is_refused() {
        for bad in [
            "",
            "proxy.example",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "[::1]/128",
            "010.0.0.1",
            "1.2.3.4.5",
        ] {
            let e = bad.parse::<IpRange>().expect_err(bad);
            assert!(
                e.to_string().contains("not an IP address or a CIDR range"),
                "{e}"
            );
        }
    }
}
