//! The seam between the advertiser's retry loop and whatever answers mDNS queries: the
//! [`Responder`] trait, and [`MdnsSd`], its implementation on the `mdns-sd` crate.

use std::time::Duration;

use clawgate_core::discovery::Advert;
use mdns_sd::{DaemonEvent, DaemonStatus, IfKind, Receiver, ServiceDaemon, ServiceInfo};

/// How long to wait for the `mdns-sd` daemon to answer a status query, an unregister (which
/// sends the goodbye packets) or a shutdown. Bounds [`Responder::health`] and
/// [`Responder::unregister`].
const DAEMON_REPLY_WAIT: Duration = Duration::from_millis(800);

/// Why advertising failed. Each one is retried by the advertiser with backoff.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The responder could not be started (no sockets, no threads).
    #[error("mDNS responder could not start: {0}")]
    Start(#[source] mdns_sd::Error),
    /// The service description was refused (a name or TXT entry out of bounds).
    #[error("mDNS service refused: {0}")]
    Service(#[source] mdns_sd::Error),
    /// The responder reported a failure while running (no multicast, an interface gone).
    #[error("mDNS responder failed: {0}")]
    Runtime(#[source] mdns_sd::Error),
    /// The responder stopped or stopped answering.
    #[error("mDNS responder stopped")]
    Stopped,
    /// The advertiser's worker panicked; it logs this and gives up.
    #[error("mDNS advertiser failed internally: {0}")]
    Panicked(String),
}

/// What a healthy responder has to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Advertising as registered.
    Ok,
    /// Advertising, under a new instance or host name after a conflict with another host.
    Renamed(String),
}

/// Something that can put an [`Advert`] on the network and take it off again.
///
/// The advertiser calls these from its own thread only; none of them may block for long.
pub trait Responder {
    /// Start advertising `advert`. Replaces any earlier registration.
    fn register(&mut self, advert: &Advert) -> Result<(), DiscoveryError>;
    /// Whether the registration is still being answered.
    fn health(&mut self) -> Result<Health, DiscoveryError>;
    /// Stop advertising (send goodbyes where possible). Never fails: best effort, bounded.
    fn unregister(&mut self);
}

/// A [`Responder`] on `mdns-sd`: its own daemon thread and sockets per registration, so a
/// daemon that died is replaced whole on the next [`Responder::register`].
#[derive(Default)]
pub struct MdnsSd {
    running: Option<Running>,
}

struct Running {
    daemon: ServiceDaemon,
    events: Receiver<DaemonEvent>,
    fullname: String,
    service_type: String,
}

impl MdnsSd {
    /// A responder with nothing registered yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Responder for MdnsSd {
    fn register(&mut self, advert: &Advert) -> Result<(), DiscoveryError> {
        self.unregister();
        let info = service_info(advert).map_err(DiscoveryError::Service)?;
        let fullname = info.get_fullname().to_string();
        let daemon = ServiceDaemon::new().map_err(DiscoveryError::Start)?;
        let running = Running {
            events: daemon.monitor().map_err(DiscoveryError::Start)?,
            daemon,
            fullname,
            service_type: advert.service_type.clone(),
        };
        let registered = restrict_interfaces(&running.daemon, advert)
            .and_then(|()| running.daemon.register(info))
            .map_err(DiscoveryError::Service);
        self.running = Some(running);
        registered
    }

    fn health(&mut self) -> Result<Health, DiscoveryError> {
        let running = self.running.as_ref().ok_or(DiscoveryError::Stopped)?;
        let mut health = Health::Ok;
        while let Ok(event) = running.events.try_recv() {
            match event {
                DaemonEvent::Error(e) => return Err(DiscoveryError::Runtime(e)),
                DaemonEvent::NameChange(change) => {
                    let suffix = format!(".{}", running.service_type);
                    let name = change
                        .new_name
                        .strip_suffix(&suffix)
                        .unwrap_or(&change.new_name);
                    health = Health::Renamed(name.to_string());
                }
                _ => {}
            }
        }
        let status = running
            .daemon
            .status()
            .map_err(|_| DiscoveryError::Stopped)?;
        match status.recv_timeout(DAEMON_REPLY_WAIT) {
            Ok(DaemonStatus::Running) => Ok(health),
            _ => Err(DiscoveryError::Stopped),
        }
    }

    fn unregister(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        if let Ok(done) = running.daemon.unregister(&running.fullname) {
            let _ = done.recv_timeout(DAEMON_REPLY_WAIT);
        }
        if let Ok(done) = running.daemon.shutdown() {
            let _ = done.recv_timeout(DAEMON_REPLY_WAIT);
        }
    }
}

impl Drop for MdnsSd {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The `mdns-sd` service for `advert`: its one address, or every interface's when it has none.
fn service_info(advert: &Advert) -> Result<ServiceInfo, mdns_sd::Error> {
    let address = advert.address.map(|a| a.to_string()).unwrap_or_default();
    let info = ServiceInfo::new(
        &advert.service_type,
        &advert.instance_name,
        &advert.host_name(),
        address.as_str(),
        advert.port,
        advert.txt.as_slice(),
    )?;
    Ok(match advert.address {
        Some(address) => {
            let mut info = info;
            info.set_interfaces(vec![IfKind::Addr(address)]);
            info
        }
        None => info.enable_addr_auto(),
    })
}

/// A gateway bound to one address answers on that address's interface only.
fn restrict_interfaces(daemon: &ServiceDaemon, advert: &Advert) -> Result<(), mdns_sd::Error> {
    match advert.address {
        Some(address) => {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Addr(address))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use clawgate_core::discovery::SERVICE_TYPE;

    use super::*;

    fn advert(address: Option<IpAddr>) -> Advert {
        Advert {
            service_type: SERVICE_TYPE.into(),
            instance_name: "pi5 (OpenClaw)".into(),
            host_label: "pi5".into(),
            port: 18789,
            address,
            txt: vec![
                ("role".into(), "gateway".into()),
                ("gatewayPort".into(), "18789".into()),
            ],
        }
    }

    #[test]
    fn a_wildcard_bind_follows_every_interface() {
        let info = service_info(&advert(None)).expect("valid service");
        assert!(info.is_addr_auto());
        assert_eq!(
            info.get_fullname(),
            "pi5 (OpenClaw)._openclaw-gw._tcp.local."
        );
        assert_eq!(info.get_hostname(), "pi5.local.");
        assert_eq!(info.get_property_val_str("role"), Some("gateway"));
        assert!(info.get_addresses_v4().is_empty());
    }

    #[test]
    fn a_specific_bind_advertises_its_address() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let info = service_info(&advert(Some(ip))).expect("valid service");
        assert!(!info.is_addr_auto());
        assert_eq!(
            info.get_addresses_v4()
                .into_iter()
                .copied()
                .collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 0, 2, 7)]
        );
    }

    #[test]
    fn an_oversized_txt_entry_is_an_error_not_a_panic() {
        let mut a = advert(None);
        a.txt.push(("displayName".into(), "x".repeat(300)));
        assert!(service_info(&a).is_err());
    }

    #[test]
    fn health_without_registration_is_stopped() {
        assert!(matches!(
            MdnsSd::new().health(),
            Err(DiscoveryError::Stopped)
        ));
    }
}
