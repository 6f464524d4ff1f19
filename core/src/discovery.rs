//! What the gateway advertises over mDNS/DNS-SD, decided from the configuration alone.
//!
//! [`advert`] answers "advertise what, if anything?": nothing when discovery is off or the
//! gateway listens on loopback only, else one `_openclaw-gw._tcp.local.` service with upstream's
//! TXT keys. The shells run the responder; they never decide what goes into it.
//!
//! TXT keys are hints, not routing: a client dials the address from SRV + A/AAAA. clawgate has no
//! TLS, so `gatewayTls*` never appear; it has no canvas host, so neither does `canvasPort`. Full
//! mode adds `sshPort` (upstream's default, 22). Upstream's `cliPath` (where the `openclaw` CLI
//! lives, for SSH fallbacks) and `tailnetDns` (a MagicDNS name) are left out: clawgate has no such
//! CLI to point at and no MagicDNS name in its configuration.

use std::net::IpAddr;

use crate::config::{Config, MdnsMode};

/// The DNS-SD service type of an OpenClaw gateway, fully qualified.
pub const SERVICE_TYPE: &str = "_openclaw-gw._tcp.local.";

/// Host label used when the machine's name is not a valid DNS label (upstream's fallback).
pub const FALLBACK_HOST_LABEL: &str = "openclaw";

/// Instance name used when the machine has no name at all.
const FALLBACK_INSTANCE: &str = "OpenClaw";

/// Suffix upstream appends to a machine name that does not already say "OpenClaw".
const INSTANCE_SUFFIX: &str = " (OpenClaw)";

/// A DNS label is at most 63 bytes (RFC 1035 §2.3.4; RFC 6763 §4.1.1 for instance names).
const MAX_LABEL_BYTES: usize = 63;

/// SSH port advertised in full mode, as upstream does when none is configured.
const DEFAULT_SSH_PORT: u16 = 22;

/// One DNS-SD service to advertise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Fully qualified service type, [`SERVICE_TYPE`].
    pub service_type: String,
    /// Instance name, one DNS label of at most 63 bytes, e.g. `pi5 (OpenClaw)`.
    pub instance_name: String,
    /// Host label of the SRV target, without `.local.`: a valid DNS label.
    pub host_label: String,
    /// Gateway port (WebSocket and HTTP).
    pub port: u16,
    /// The one address to advertise, or `None` for every interface's (a wildcard bind).
    pub address: Option<IpAddr>,
    /// TXT record as ordered key/value pairs.
    pub txt: Vec<(String, String)>,
}

impl Advert {
    /// The SRV target host, `<host_label>.local.`.
    pub fn host_name(&self) -> String {
        format!("{}.local.", self.host_label)
    }

    /// The value of TXT key `key`, if present.
    pub fn txt_value(&self, key: &str) -> Option<&str> {
        self.txt
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What to advertise for `config`: `None` when mDNS is off or the bind is loopback.
///
/// `config.port` is advertised as it is: with `--port 0`, hand in a copy that carries the port
/// the listener actually got.
pub fn advert(config: &Config) -> Option<Advert> {
    if config.mdns == MdnsMode::Off || config.bind_host.is_loopback() {
        return None;
    }
    let host_label = host_label(
        config
            .mdns_host_name
            .as_deref()
            .unwrap_or(&config.host_name),
    );
    let machine = config.host_name.trim();
    let display_name = if machine.is_empty() {
        FALLBACK_INSTANCE
    } else {
        machine
    };
    let port = config.port.to_string();
    let mut txt = vec![
        pair("role", "gateway"),
        pair("displayName", display_name),
        pair("lanHost", &format!("{host_label}.local")),
        pair("gatewayPort", &port),
        pair("transport", "gateway"),
        pair("gatewayDirectReachable", "1"),
    ];
    if config.mdns == MdnsMode::Full {
        txt.push(pair("sshPort", &DEFAULT_SSH_PORT.to_string()));
    }
    Some(Advert {
        service_type: SERVICE_TYPE.into(),
        instance_name: instance_name(display_name),
        host_label,
        port: config.port,
        address: (!config.bind_host.is_unspecified()).then_some(config.bind_host),
        txt,
    })
}

fn pair(key: &str, value: &str) -> (String, String) {
    (key.into(), value.into())
}

/// Upstream's instance name: the machine name, suffixed ` (OpenClaw)` unless it already says
/// so, cut to one DNS label at a character boundary.
fn instance_name(machine: &str) -> String {
    let full = if machine.to_ascii_lowercase().contains("openclaw") {
        machine.to_string()
    } else {
        format!("{machine}{INSTANCE_SUFFIX}")
    };
    let end = (0..=full.len().min(MAX_LABEL_BYTES))
        .rev()
        .find(|&i| full.is_char_boundary(i))
        .unwrap_or(0);
    full.get(..end).unwrap_or_default().trim_end().to_string()
}

/// The first label of `name` without a trailing `.local`, when it is a valid DNS label;
/// else [`FALLBACK_HOST_LABEL`].
fn host_label(name: &str) -> String {
    let name = name.trim().trim_end_matches('.');
    let stem = name
        .to_ascii_lowercase()
        .strip_suffix(".local")
        .map_or(name.len(), str::len);
    let name = name.get(..stem).unwrap_or(name);
    let first = name.split('.').next().unwrap_or_default();
    if is_dns_label(first) {
        first.to_string()
    } else {
        FALLBACK_HOST_LABEL.to_string()
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_BYTES
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::config::{ConfigInput, RunFlags};

    fn lan(mode: MdnsMode) -> Config {
        let mut c = Config::local_default().with_token("t");
        c.bind_host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        c.port = 18790;
        c.host_name = "pi5".into();
        c.mdns = mode;
        c
    }

    fn keys(a: &Advert) -> Vec<&str> {
        a.txt.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn loopback_binds_advertise_nothing() {
        for host in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let mut c = lan(MdnsMode::Full);
            c.bind_host = host;
            assert_eq!(advert(&c), None, "{host}");
        }
        assert_eq!(advert(&Config::local_default()), None);
    }

    #[test]
    fn mode_off_advertises_nothing() {
        assert_eq!(advert(&lan(MdnsMode::Off)), None);
    }

    #[test]
    fn minimal_mode_has_the_upstream_keys() {
        let a = advert(&lan(MdnsMode::Minimal)).expect("lan bind advertises");
        assert_eq!(a.service_type, "_openclaw-gw._tcp.local.");
        assert_eq!(a.instance_name, "pi5 (OpenClaw)");
        assert_eq!(a.host_label, "pi5");
        assert_eq!(a.host_name(), "pi5.local.");
        assert_eq!(a.port, 18790);
        assert_eq!(a.address, None);
        assert_eq!(
            keys(&a),
            [
                "role",
                "displayName",
                "lanHost",
                "gatewayPort",
                "transport",
                "gatewayDirectReachable"
            ]
        );
        assert_eq!(a.txt_value("role"), Some("gateway"));
        assert_eq!(a.txt_value("displayName"), Some("pi5"));
        assert_eq!(a.txt_value("lanHost"), Some("pi5.local"));
        assert_eq!(a.txt_value("gatewayPort"), Some("18790"));
        assert_eq!(a.txt_value("transport"), Some("gateway"));
        assert_eq!(a.txt_value("gatewayDirectReachable"), Some("1"));
        assert!(
            a.txt.iter().all(|(k, _)| !k.starts_with("gatewayTls")),
            "no TLS, no TLS keys"
        );
    }

    #[test]
    fn full_mode_adds_ssh_port() {
        let a = advert(&lan(MdnsMode::Full)).expect("lan bind advertises");
        assert_eq!(a.txt_value("sshPort"), Some("22"));
        assert_eq!(a.txt_value("cliPath"), None);
        assert_eq!(
            advert(&lan(MdnsMode::Minimal))
                .and_then(|a| a.txt_value("sshPort").map(str::to_string)),
            None
        );
    }

    #[test]
    fn a_specific_bind_advertises_that_address_only() {
        let mut c = lan(MdnsMode::Minimal);
        c.bind_host = IpAddr::V4(Ipv4Addr::new(100, 64, 1, 2));
        assert_eq!(advert(&c).and_then(|a| a.address), Some(c.bind_host));
        c.bind_host = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert_eq!(advert(&c).map(|a| a.address), Some(None));
    }

    #[test]
    fn host_label_is_the_first_valid_dns_label() {
        assert_eq!(host_label("Mac.localdomain"), "Mac");
        assert_eq!(host_label("studio.local"), "studio");
        assert_eq!(host_label("studio.LOCAL."), "studio");
        assert_eq!(host_label("my_host"), FALLBACK_HOST_LABEL);
        assert_eq!(host_label("has space"), FALLBACK_HOST_LABEL);
        assert_eq!(host_label("-dash"), FALLBACK_HOST_LABEL);
        assert_eq!(host_label(""), FALLBACK_HOST_LABEL);
        assert_eq!(host_label(&"a".repeat(64)), FALLBACK_HOST_LABEL);
        assert_eq!(host_label(&"a".repeat(63)), "a".repeat(63));
    }

    #[test]
    fn mdns_host_name_overrides_the_label_not_the_display_name() {
        let mut c = lan(MdnsMode::Minimal);
        c.mdns_host_name = Some("gw-kitchen".into());
        let a = advert(&c).expect("advertises");
        assert_eq!(a.host_label, "gw-kitchen");
        assert_eq!(a.txt_value("lanHost"), Some("gw-kitchen.local"));
        assert_eq!(a.txt_value("displayName"), Some("pi5"));
    }

    #[test]
    fn resolved_from_flags_env_and_file() {
        let resolve = |env: &[(&str, &str)], file: Option<&str>| {
            let input = ConfigInput {
                file_text: file.map(str::to_string),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                flags: RunFlags {
                    bind: Some("lan".into()),
                    token: Some("s3cret-token".into()),
                    ..RunFlags::default()
                },
                host_name: "pi5".into(),
                ..ConfigInput::default()
            };
            advert(&Config::resolve(&input).expect("valid config"))
        };
        let a = resolve(&[("OPENCLAW_MDNS_HOSTNAME", "kitchen")], None).expect("lan advertises");
        assert_eq!(a.host_label, "kitchen");
        assert_eq!(resolve(&[("OPENCLAW_DISABLE_BONJOUR", "1")], None), None);
        assert_eq!(
            resolve(&[], Some(r#"{discovery: {mdns: {mode: "off"}}}"#)),
            None
        );
        let full =
            resolve(&[], Some(r#"{discovery: {mdns: {mode: "full"}}}"#)).expect("full advertises");
        assert_eq!(full.txt_value("sshPort"), Some("22"));
    }

    #[test]
    fn instance_names_fit_one_label() {
        assert_eq!(instance_name("my openclaw box"), "my openclaw box");
        assert_eq!(instance_name("OpenClaw"), "OpenClaw");
        let long = instance_name(&"é".repeat(40));
        assert!(
            long.len() <= MAX_LABEL_BYTES && long.starts_with('é'),
            "{long}"
        );
        let mut c = lan(MdnsMode::Minimal);
        c.host_name = "  ".into();
        let a = advert(&c).expect("advertises");
        assert_eq!(a.instance_name, "OpenClaw");
        assert_eq!(a.host_label, FALLBACK_HOST_LABEL);
    }
}
