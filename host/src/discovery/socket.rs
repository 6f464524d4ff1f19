//! The sockets under mDNS: the kernel's interface list (an rtnetlink dump, read by
//! [`clawgate_core::mdns::netlink`]) and one UDP socket on port 5353 that has joined the IPv4
//! group on each chosen interface and multicasts through each of them in turn.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use clawgate_core::mdns::netlink::{self, Dump, Entry};
use clawgate_core::mdns::wire::MAX_PACKET;
use clawgate_core::mdns::{GROUP_V4, PORT};
use rustix::event::PollFlags;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, sockopt};

use crate::wait::{Ready, Wake, wait};

/// How long the kernel may take to answer one dump.
const NETLINK_WAIT: Duration = Duration::from_secs(1);
/// Datagrams of one dump read at most (each holds many entries).
const MAX_DATAGRAMS: usize = 64;

/// The addresses of interfaces that are up and can multicast, with their interface indexes.
pub(super) fn interface_addresses() -> io::Result<Vec<(u32, IpAddr)>> {
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(NETLINK_WAIT))?;
    let mut entries = Vec::new();
    let mut buf = vec![0; 32 * 1024];
    for (seq, dump) in [(1, Dump::Links), (2, Dump::Addresses)] {
        rustix::net::send(&fd, &netlink::request(dump, seq), SendFlags::empty())?;
        let mut done = false;
        for _ in 0..MAX_DATAGRAMS {
            let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
            for entry in netlink::decode(&buf[..n.min(buf.len())]) {
                match entry {
                    Entry::Done => done = true,
                    Entry::Error(errno) => {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    entry => entries.push(entry),
                }
            }
            if done {
                break;
            }
        }
    }
    Ok(netlink::multicast_addresses(&entries))
}

/// A UDP socket on the mDNS port, in the IPv4 group on some interfaces; it never blocks: its
/// thread waits for it in [`MdnsSocket::wait`].
pub(super) struct MdnsSocket {
    socket: UdpSocket,
    /// One IPv4 address and index per interface joined.
    interfaces: Vec<(u32, Ipv4Addr)>,
}

impl MdnsSocket {
    /// Bind port 5353 (shared with other responders) and join the group on the interfaces of
    /// `addresses`' IPv4 ones, once per interface. Fails when none is left to join.
    pub(super) fn open(addresses: &[(u32, IpAddr)]) -> io::Result<Self> {
        let mut interfaces: Vec<(u32, Ipv4Addr)> = Vec::new();
        for (index, address) in addresses {
            if let IpAddr::V4(a) = address
                && !interfaces.iter().any(|(i, _)| i == index)
            {
                interfaces.push((*index, *a));
            }
        }
        if interfaces.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no IPv4 interface that is up and can multicast",
            ));
        }
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
        sockopt::set_socket_reuseaddr(&fd, true)?;
        sockopt::set_socket_reuseport(&fd, true)?;
        rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT))?;
        for (index, address) in &interfaces {
            sockopt::set_ip_add_membership_with_ifindex(&fd, &GROUP_V4, address, *index)?;
        }
        let socket = UdpSocket::from(fd);
        socket.set_nonblocking(true)?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(255)?;
        Ok(Self { socket, interfaces })
    }

    /// Send `packet` to the group through every joined interface; the first error, after
    /// trying them all.
    pub(super) fn multicast(&self, packet: &[u8]) -> io::Result<()> {
        let mut result = Ok(());
        for (index, address) in &self.interfaces {
            let sent =
                sockopt::set_ip_multicast_if_with_ifindex(&self.socket, &GROUP_V4, address, *index)
                    .map_err(io::Error::from)
                    .and_then(|()| self.send_to(packet, (GROUP_V4, PORT).into()));
            if let (Err(e), Ok(())) = (sent, &result) {
                result = Err(e);
            }
        }
        result
    }

    /// Send `packet` to `to` alone.
    pub(super) fn unicast(&self, packet: &[u8], to: SocketAddr) -> io::Result<()> {
        self.send_to(packet, to)
    }

    /// Send one datagram. One the socket has no room for now is dropped, as a congested network
    /// would drop it (mDNS repeats what matters): the socket does not block.
    fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<()> {
        match self.socket.send_to(packet, to) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Wait until a packet has come, `stop` (if any) is written, or `timeout` (`None`: no limit)
    /// has passed: in poll(2), so that a quiet network costs no wake-ups.
    pub(super) fn wait(&self, stop: Option<&Wake>, timeout: Option<Duration>) -> io::Result<Ready> {
        wait(&self.socket, PollFlags::IN, stop, timeout)
    }

    /// A packet that has come, its length and sender; `None` when none is waiting.
    pub(super) fn try_recv(
        &self,
        buf: &mut [u8; MAX_PACKET],
    ) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.socket.recv_from(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
