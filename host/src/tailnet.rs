//! The machine's tailnet address, for `--bind tailnet`: a local IPv4 address in Tailscale's
//! CGNAT range 100.64.0.0/10, read from the kernel's `/proc/net/fib_trie`.

use std::net::{IpAddr, Ipv4Addr};

/// The first local address in 100.64.0.0/10, if the machine has one.
pub fn tailnet_ipv4() -> Option<IpAddr> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    local_addresses(&trie)
        .into_iter()
        .find(is_tailnet)
        .map(IpAddr::V4)
}

/// Whether `ip` is in 100.64.0.0/10.
fn is_tailnet(ip: &Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 100 && (b & 0xc0) == 64
}

/// The host addresses of the machine in a `fib_trie` dump: an address line (`|-- 1.2.3.4`)
/// followed by `/32 host LOCAL`.
fn local_addresses(trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(ip) = last.take()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 100.64.0.0/10 2 0 2
        |-- 100.101.7.9
           /32 host LOCAL
        |-- 100.127.255.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 100.128.0.1
        /32 host LOCAL
";

    #[test]
    fn finds_local_addresses_and_the_tailnet_one() {
        assert_eq!(
            local_addresses(TRIE),
            vec![
                Ipv4Addr::new(100, 101, 7, 9),
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::new(100, 128, 0, 1)
            ]
        );
        let tailnet: Vec<Ipv4Addr> = local_addresses(TRIE)
            .into_iter()
            .filter(is_tailnet)
            .collect();
        assert_eq!(
            tailnet,
            vec![Ipv4Addr::new(100, 101, 7, 9)],
            "100.128.0.1 is outside 100.64.0.0/10"
        );
    }
}
