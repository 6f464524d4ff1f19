//! Browsing for gateways: what `clawgate gateway discover` finds, as [`Beacon`]s.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use clawgate_core::mdns::browser::{Browser, Found};
use clawgate_core::mdns::wire::MAX_PACKET;
use serde_json::{Map, Value, json};

use super::responder::DiscoveryError;
use super::socket::{MdnsSocket, interface_addresses};

/// The longest browse: a day, so that no timeout can overflow the clock.
const MAX_BROWSE: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the query is sent again while browsing (a lost packet costs a second, not all).
const QUERY_EVERY: Duration = Duration::from_secs(1);

/// One gateway found on the network: its SRV, A/AAAA and TXT records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// The service instance name, unescaped (`pi5 (OpenClaw)`).
    pub instance_name: String,
    /// The SRV target host without the final dot (`pi5.local`).
    pub host: String,
    /// The SRV port.
    pub port: u16,
    /// The host's addresses from A/AAAA records, sorted.
    pub addresses: Vec<IpAddr>,
    /// The TXT record.
    pub txt: BTreeMap<String, String>,
}

impl Beacon {
    /// The TXT `displayName`, else the instance name.
    pub fn display_name(&self) -> &str {
        self.txt
            .get("displayName")
            .map_or(&self.instance_name, String::as_str)
    }

    /// Where to connect, from SRV port and the best A/AAAA address (never from TXT):
    /// `ws://<addr>:<port>`. `None` when only IPv6 link-local addresses (unusable without a
    /// scope) are known.
    pub fn ws_url(&self) -> Option<String> {
        let best = self
            .addresses
            .iter()
            .filter_map(|a| rank(a).map(|r| (r, a)))
            .min()?
            .1;
        Some(match best {
            IpAddr::V4(a) => format!("ws://{a}:{}", self.port),
            IpAddr::V6(a) => format!("ws://[{a}]:{}", self.port),
        })
    }

    /// The beacon as upstream's `gateway discover --json` shows one.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("instanceName".into(), json!(self.instance_name));
        out.insert("domain".into(), json!("local."));
        out.insert("displayName".into(), json!(self.display_name()));
        out.insert("host".into(), json!(self.host));
        out.insert("port".into(), json!(self.port));
        for key in ["lanHost", "tailnetDns", "cliPath", "role", "transport"] {
            if let Some(v) = self.txt.get(key) {
                out.insert(key.into(), json!(v));
            }
        }
        for key in ["gatewayPort", "sshPort"] {
            if let Some(n) = self.txt.get(key).and_then(|v| v.parse::<u16>().ok()) {
                out.insert(key.into(), json!(n));
            }
        }
        if let Some(tls) = self.txt.get("gatewayTls") {
            out.insert(
                "gatewayTls".into(),
                json!(matches!(
                    tls.to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes"
                )),
            );
        }
        if let Some(url) = self.ws_url() {
            out.insert("wsUrl".into(), json!(url));
        }
        out.insert("txt".into(), json!(self.txt));
        Value::Object(out)
    }
}

/// The result of a browse as upstream prints it, `{"timeoutMs", "count", "beacons": [...]}`:
/// the whole of `gateway discover --json`, and the `discovery` object of `gateway probe`.
pub fn beacons_json(timeout_ms: u64, beacons: &[Beacon]) -> Value {
    json!({
        "timeoutMs": timeout_ms,
        "count": beacons.len(),
        "beacons": beacons.iter().map(Beacon::to_json).collect::<Vec<_>>(),
    })
}

/// Preference among a host's addresses for `wsUrl`, lower first; `None`: not usable.
fn rank(addr: &IpAddr) -> Option<u8> {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => Some(3),
        IpAddr::V4(a) if a.is_link_local() => Some(1),
        IpAddr::V4(_) => Some(0),
        IpAddr::V6(a) if a.is_loopback() => Some(4),
        IpAddr::V6(a) if a.is_unicast_link_local() => None,
        IpAddr::V6(_) => Some(2),
    }
}

/// Browse `_openclaw-gw._tcp.local.` on every interface that can multicast for `timeout` (at
/// most a day), asking again every second; the gateways still present at the end, ordered by
/// instance name.
pub fn browse(timeout: Duration) -> Result<Vec<Beacon>, DiscoveryError> {
    let interfaces = interface_addresses().map_err(DiscoveryError::Start)?;
    let socket = MdnsSocket::open(&interfaces).map_err(DiscoveryError::Start)?;
    let query = Browser::query();
    socket.multicast(&query).map_err(DiscoveryError::Start)?;
    let start = Instant::now();
    let deadline = start + timeout.min(MAX_BROWSE);
    let mut next_query = start + QUERY_EVERY;
    let mut browser = Browser::default();
    let mut buf = [0; MAX_PACKET];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let now = Instant::now();
        if now >= next_query {
            // Best effort: the first query went out, so the interfaces were usable.
            let _ = socket.multicast(&query);
            next_query = now + QUERY_EVERY;
        }
        let timeout = left.min(next_query.saturating_duration_since(now));
        let ready = socket
            .wait(None, Some(timeout))
            .map_err(DiscoveryError::Runtime)?;
        if ready.socket
            && let Some((n, _)) = socket.try_recv(&mut buf).map_err(DiscoveryError::Runtime)?
        {
            browser.handle_packet(&buf[..n]);
        }
    }
    Ok(browser.found().into_iter().map(Beacon::from).collect())
}

impl From<Found> for Beacon {
    fn from(found: Found) -> Self {
        Self {
            instance_name: found.instance_name,
            host: found.host,
            port: found.port,
            addresses: found.addresses,
            txt: clawgate_core::sorting::map_of(found.txt),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn beacon(addresses: Vec<IpAddr>) -> Beacon {
        Beacon {
            instance_name: "pi5 (OpenClaw)".into(),
            host: "pi5.local".into(),
            port: 18789,
            addresses,
            txt: [
                ("displayName", "pi5"),
                ("lanHost", "pi5.local"),
                ("gatewayPort", "18789"),
                ("role", "gateway"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    #[test]
    fn ws_url_prefers_a_lan_ipv4_address() {
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6("2001:db8::5".parse().expect("literal"));
        assert_eq!(
            beacon(vec![lo, v6, lan]).ws_url().as_deref(),
            Some("ws://192.168.1.20:18789")
        );
        assert_eq!(
            beacon(vec![lo, v6]).ws_url().as_deref(),
            Some("ws://[2001:db8::5]:18789")
        );
        assert_eq!(
            beacon(vec![lo]).ws_url().as_deref(),
            Some("ws://127.0.0.1:18789")
        );
        let link_local = IpAddr::V6("fe80::1".parse().expect("literal"));
        assert_eq!(beacon(vec![link_local]).ws_url(), None);
        assert_eq!(
            beacon(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)])
                .ws_url()
                .as_deref(),
            Some("ws://[::1]:18789")
        );
    }

    #[test]
    fn json_is_upstream_shaped_and_takes_the_url_from_srv_not_txt() {
        let mut b = beacon(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))]);
        b.txt.insert("gatewayPort".into(), "1".into());
        let v = b.to_json();
        assert_eq!(v["instanceName"], "pi5 (OpenClaw)");
        assert_eq!(v["displayName"], "pi5");
        assert_eq!(v["host"], "pi5.local");
        assert_eq!(v["port"], 18789);
        assert_eq!(v["lanHost"], "pi5.local");
        assert_eq!(v["gatewayPort"], 1);
        assert_eq!(v["role"], "gateway");
        assert_eq!(v["wsUrl"], "ws://10.0.0.9:18789");
        assert_eq!(v["txt"]["displayName"], "pi5");
        assert!(v.get("sshPort").is_none() && v.get("gatewayTls").is_none());
    }

    #[test]
    fn display_name_falls_back_to_the_instance() {
        let mut b = beacon(vec![]);
        b.txt.clear();
        assert_eq!(b.display_name(), "pi5 (OpenClaw)");
        assert!(b.to_json().get("wsUrl").is_none());
    }
}
