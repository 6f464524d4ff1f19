//! mDNS/DNS-SD for the shells: advertise the gateway, best effort, and find gateways.
//!
//! What to advertise is the core's decision ([`clawgate_core::discovery::advert`]); this module
//! only puts it on the network, on a thread of its own, so that no failure of multicast can delay
//! or stop the gateway. Nothing here depends on mio, so the smol shell uses it as it is.
//!
//! ```text
//! let _mdns = advert(&config).map(|a| spawn_advertiser(a, |line| log_warn(line)));
//! // ... run the gateway; dropping _mdns unregisters within a few seconds at most.
//! ```

mod advertiser;
mod browse;
mod command;
mod responder;
mod socket;

pub use advertiser::{AdvertiserHandle, RetryPolicy, spawn_advertiser, spawn_advertiser_with};
pub use browse::{Beacon, beacons_json, browse};
pub use command::discover_main;
pub use responder::{DiscoveryError, Health, MdnsResponder, Responder};
