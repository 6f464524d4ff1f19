//! Browsing for gateways: what `clawgate gateway discover` finds, as [`Beacon`]s.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use clawgate_core::discovery::SERVICE_TYPE;
use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};
use serde_json::{Map, Value, json};

use super::responder::DiscoveryError;

/// The longest browse: a day, so that no timeout can overflow the clock.
const MAX_BROWSE: Duration = Duration::from_secs(24 * 60 * 60);

/// How long to wait for the browsing daemon to shut down after the timeout.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

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
    /// A beacon from `mdns-sd`'s resolution of one instance.
    pub fn from_resolved(service: &ResolvedService) -> Self {
        let suffix = format!(".{}", service.ty_domain);
        let escaped = service
            .fullname
            .strip_suffix(&suffix)
            .unwrap_or(&service.fullname);
        let mut addresses: Vec<IpAddr> = service
            .get_addresses()
            .iter()
            .map(|a| a.to_ip_addr())
            .collect();
        clawgate_core::sorting::sort(&mut addresses);
        addresses.dedup();
        Self {
            instance_name: unescape_label(escaped),
            host: service.host.trim_end_matches('.').to_string(),
            port: service.port,
            addresses,
            txt: service
                .txt_properties
                .iter()
                .map(|p| (p.key().to_string(), p.val_str().to_string()))
                .collect(),
        }
    }

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

/// Undo DNS-SD label escaping: `\.` → `.`, `\\` → `\`, `\DDD` → the byte DDD.
fn unescape_label(label: &str) -> String {
    let mut bytes = Vec::with_capacity(label.len());
    let mut rest = label.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let digits = rest.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
        match digits.and_then(|d| std::str::from_utf8(d).ok()?.parse::<u8>().ok()) {
            Some(byte) => {
                bytes.push(byte);
                rest = rest.get(3..).unwrap_or_default();
            }
            None => {
                if let Some((&next, tail)) = rest.split_first() {
                    bytes.push(next);
                    rest = tail;
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Browse `_openclaw-gw._tcp.local.` on every interface for `timeout` (at most a day); the
/// gateways still present at the end, ordered by instance name.
pub fn browse(timeout: Duration) -> Result<Vec<Beacon>, DiscoveryError> {
    let daemon = ServiceDaemon::new().map_err(DiscoveryError::Start)?;
    let found = daemon
        .browse(SERVICE_TYPE)
        .map_err(DiscoveryError::Start)
        .map(|events| {
            let deadline = Instant::now() + timeout.min(MAX_BROWSE);
            let mut found = BTreeMap::new();
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match events.recv_timeout(left) {
                    Ok(ServiceEvent::ServiceResolved(service)) => {
                        found.insert(service.fullname.clone(), Beacon::from_resolved(&service));
                    }
                    Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                        found.remove(&fullname);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            found
        });
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(SHUTDOWN_WAIT);
    }
    let mut beacons: Vec<Beacon> = found?.into_values().collect();
    clawgate_core::sorting::sort_by(&mut beacons, |a, b| a.instance_name.cmp(&b.instance_name));
    Ok(beacons)
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

    #[test]
    fn labels_are_unescaped() {
        assert_eq!(unescape_label(r"a\.b"), "a.b");
        assert_eq!(unescape_label(r"a\\b"), r"a\b");
        assert_eq!(unescape_label(r"pi5\032(OpenClaw)"), "pi5 (OpenClaw)");
        assert_eq!(unescape_label(r"trailing\"), "trailing");
        assert_eq!(unescape_label(r"\999x"), "999x");
    }
}
