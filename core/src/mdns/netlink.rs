//! Which addresses to advertise and multicast on, from the kernel's rtnetlink dumps
//! (`RTM_GETLINK`, `RTM_GETADDR`, netlink(7), rtnetlink(7)): the requests to send and a bounded
//! reader of the answers. The host sends the requests on a `NETLINK_ROUTE` socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which dump to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    /// Every interface, with its flags.
    Links,
    /// Every address, with its interface.
    Addresses,
}

/// One entry of a dump's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An interface: its index and `IFF_*` flags.
    Link {
        /// Interface index.
        index: u32,
        /// `IFF_*` flags.
        flags: u32,
    },
    /// An address on an interface.
    Address {
        /// Interface index.
        index: u32,
        /// The address.
        address: IpAddr,
    },
    /// The dump is complete.
    Done,
    /// The kernel refused the request (a negative errno), or the answer was malformed (0).
    Error(i32),
}

/// Interfaces kept at most, and addresses.
pub const MAX_ENTRIES: usize = 256;

const HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 0x1;
const IFF_MULTICAST: u32 = 0x1000;

/// The request for `dump`, numbered `seq`.
pub fn request(dump: Dump, seq: u32) -> Vec<u8> {
    let (kind, body) = match dump {
        // struct ifinfomsg, all families.
        Dump::Links => (RTM_GETLINK, 16),
        // struct ifaddrmsg, all families.
        Dump::Addresses => (RTM_GETADDR, 8),
    };
    let len = (HEADER + body) as u32;
    let mut out = Vec::with_capacity(HEADER + body);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.resize(HEADER + body, 0);
    out
}

/// The entries of one datagram of a dump's answer. A malformed message ends the datagram
/// with [`Entry::Error`]`(0)`.
pub fn decode(datagram: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut rest = datagram;
    while rest.len() >= HEADER {
        let len = u32_at(rest, 0) as usize;
        let kind = u16_at(rest, 4);
        let Some(message) = rest.get(HEADER..len).filter(|_| len >= HEADER) else {
            entries.push(Entry::Error(0));
            break;
        };
        match kind {
            NLMSG_DONE => entries.push(Entry::Done),
            NLMSG_ERROR => entries.push(Entry::Error(i32_at(message, 0).min(0))),
            RTM_NEWLINK if message.len() >= 16 => entries.push(Entry::Link {
                index: u32_at(message, 4),
                flags: u32_at(message, 8),
            }),
            RTM_NEWADDR if message.len() >= 8 => {
                if let Some(address) = address(message) {
                    entries.push(Entry::Address {
                        index: u32_at(message, 4),
                        address,
                    });
                }
            }
            _ => {}
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    entries
}

/// The address of one `RTM_NEWADDR` body: IPv4's local address (`IFA_LOCAL`, else
/// `IFA_ADDRESS`), IPv6's `IFA_ADDRESS`.
fn address(message: &[u8]) -> Option<IpAddr> {
    let family = message[0];
    let mut attributes = message.get(8..)?;
    let mut found = None;
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0));
        let kind = u16_at(attributes, 2);
        let data = attributes.get(4..len.max(4))?;
        let address = match (family, data.len()) {
            (AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
            (AF_INET6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        match kind {
            IFA_LOCAL if family == AF_INET && !address.is_unspecified() => return Some(address),
            IFA_ADDRESS if !address.is_unspecified() => found = Some(address),
            _ => {}
        }
        if len < 4 {
            return None;
        }
        attributes = attributes
            .get(len.next_multiple_of(4)..)
            .unwrap_or_default();
    }
    found
}

/// The addresses of interfaces that are up and can multicast, with their interface's index,
/// in dump order, at most [`MAX_ENTRIES`].
pub fn multicast_addresses(entries: &[Entry]) -> Vec<(u32, IpAddr)> {
    let usable = |index: u32| {
        entries.iter().any(|e| {
            matches!(e, Entry::Link { index: i, flags }
                if *i == index && flags & (IFF_UP | IFF_MULTICAST) == IFF_UP | IFF_MULTICAST)
        })
    };
    let mut out = Vec::new();
    for entry in entries {
        if let Entry::Address { index, address } = entry
            && usable(*index)
            && !out.iter().any(|(_, a)| a == address)
            && out.len() < MAX_ENTRIES
        {
            out.push((*index, *address));
        }
    }
    out
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    b.get(at..at + 4)
        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = (HEADER + body.len()) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn link(index: u32, flags: u32) -> Vec<u8> {
        let mut body = vec![0; 4];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&[0; 4]);
        message(RTM_NEWLINK, &body)
    }

    fn addr(index: u32, family: u8, kind: u16, data: &[u8]) -> Vec<u8> {
        let mut body = vec![family, 24, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(data);
        message(RTM_NEWADDR, &body)
    }

    #[test]
    fn addresses_of_multicast_interfaces_are_chosen() {
        let mut dump = link(1, IFF_UP | 0x8);
        dump.extend(link(2, IFF_UP | IFF_MULTICAST));
        dump.extend(message(NLMSG_DONE, &[0; 4]));
        let mut addrs = addr(1, AF_INET, IFA_LOCAL, &[127, 0, 0, 1]);
        addrs.extend(addr(2, AF_INET, IFA_LOCAL, &[192, 168, 1, 5]));
        let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        addrs.extend(addr(2, AF_INET6, IFA_ADDRESS, &v6));
        let mut entries = decode(&dump);
        assert_eq!(entries.last(), Some(&Entry::Done));
        entries.extend(decode(&addrs));
        assert_eq!(
            multicast_addresses(&entries),
            [
                (2, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5))),
                (2, IpAddr::V6(Ipv6Addr::from(v6)))
            ]
        );
    }

    #[test]
    fn errors_and_garbage_end_the_datagram() {
        let refused = message(NLMSG_ERROR, &(-1i32).to_ne_bytes());
        assert_eq!(decode(&refused), [Entry::Error(-1)]);
        let mut short = link(1, 0);
        short[0] = 200;
        assert_eq!(decode(&short), [Entry::Error(0)]);
        assert_eq!(request(Dump::Links, 7).len(), 32);
        assert_eq!(request(Dump::Addresses, 7).len(), 24);
    }
}
