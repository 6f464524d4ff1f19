//! mDNS/DNS-SD without sockets: the DNS message codec ([`wire`]), the responder that keeps one
//! [`Advert`](crate::discovery::Advert) on the network ([`responder`]), the browser behind
//! `gateway discover` ([`browser`]) and the reader of the kernel's interface list that says
//! where to multicast ([`netlink`]). The host sends and receives the packets.

pub mod browser;
pub mod netlink;
pub mod responder;
pub mod wire;

/// The mDNS port.
pub const PORT: u16 = 5353;
/// The IPv4 mDNS group.
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 251);
