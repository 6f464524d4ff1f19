//! Browsing for gateways: the query to send and what the answers say, kept within bounds.
//!
//! The host multicasts [`Browser::query`] now and then, feeds every packet it receives to
//! [`Browser::handle_packet`], and reads [`Browser::found`] at the end.

use std::net::IpAddr;

use super::wire::{Message, Name, Question, RData, Record, rtype};
use crate::discovery::SERVICE_TYPE;

/// Records of each kind kept at most; later ones are ignored.
pub const MAX_KEPT: usize = 256;

/// One gateway instance with its SRV, TXT and address records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The instance name (the first label of the PTR target), as text.
    pub instance_name: String,
    /// The SRV target host without the final dot (`pi5.local`).
    pub host: String,
    /// The SRV port.
    pub port: u16,
    /// The host's addresses from A/AAAA records, sorted, without repeats.
    pub addresses: Vec<IpAddr>,
    /// The TXT record's `key=value` strings, in order (`key` alone: an empty value).
    pub txt: Vec<(String, String)>,
}

/// What the answers heard so far say.
#[derive(Debug, Default)]
pub struct Browser {
    instances: Vec<Name>,
    services: Vec<(Name, Name, u16)>,
    texts: Vec<(Name, Vec<Vec<u8>>)>,
    addresses: Vec<(Name, IpAddr)>,
}

impl Browser {
    /// The query for gateways: a PTR question for [`SERVICE_TYPE`].
    pub fn query() -> Vec<u8> {
        let message = Message {
            questions: vec![Question {
                name: Name::parse(SERVICE_TYPE),
                qtype: rtype::PTR,
                unicast: false,
            }],
            ..Message::default()
        };
        message.encode().unwrap_or_default()
    }

    /// Read one packet; queries and packets that do not parse are ignored.
    pub fn handle_packet(&mut self, packet: &[u8]) {
        let Ok(message) = Message::parse(packet) else {
            return;
        };
        if !message.response {
            return;
        }
        let service_type = Name::parse(SERVICE_TYPE);
        for record in message.answers.into_iter().chain(message.additional) {
            self.learn(&service_type, record);
        }
    }

    fn learn(&mut self, service_type: &Name, record: Record) {
        let alive = record.ttl > 0;
        let name = record.name;
        match record.data {
            RData::Ptr(instance) if name == *service_type => {
                keep(&mut self.instances, instance, alive, |a, b| a == b);
            }
            RData::Srv { port, target, .. } => {
                keep(&mut self.services, (name, target, port), alive, |a, b| {
                    a.0 == b.0
                });
            }
            RData::Txt(strings) => {
                keep(&mut self.texts, (name, strings), alive, |a, b| a.0 == b.0);
            }
            RData::A(a) => keep(&mut self.addresses, (name, a.into()), alive, |a, b| a == b),
            RData::Aaaa(a) => keep(&mut self.addresses, (name, a.into()), alive, |a, b| a == b),
            _ => {}
        }
    }

    /// The instances with a known SRV record, ordered by instance name.
    pub fn found(&self) -> Vec<Found> {
        let mut found: Vec<Found> = self
            .instances
            .iter()
            .filter_map(|instance| {
                let (_, host, port) = self.services.iter().find(|s| s.0 == *instance)?;
                let mut addresses: Vec<IpAddr> = self
                    .addresses
                    .iter()
                    .filter(|(h, _)| h == host)
                    .map(|(_, a)| *a)
                    .collect();
                crate::sorting::sort(&mut addresses);
                addresses.dedup();
                let txt = self
                    .texts
                    .iter()
                    .find(|t| t.0 == *instance)
                    .map(|(_, strings)| strings.iter().map(|s| pair(s)).collect())
                    .unwrap_or_default();
                let (label, _) = instance.split_first()?;
                Some(Found {
                    instance_name: String::from_utf8_lossy(label).into_owned(),
                    host: host.to_text(),
                    port: *port,
                    addresses,
                    txt,
                })
            })
            .collect();
        crate::sorting::sort_by(&mut found, |a, b| a.instance_name.cmp(&b.instance_name));
        found
    }
}

/// Put `item` in `list` in place of the one `same` matches (or drop that one when `alive` is
/// false); a new item only while the list is under [`MAX_KEPT`].
fn keep<T>(list: &mut Vec<T>, item: T, alive: bool, same: impl Fn(&T, &T) -> bool) {
    let at = list.iter().position(|old| same(old, &item));
    match (at, alive) {
        (Some(i), true) => list[i] = item,
        (Some(i), false) => {
            list.remove(i);
        }
        (None, true) if list.len() < MAX_KEPT => list.push(item),
        (None, _) => {}
    }
}

/// A TXT string as key and value.
fn pair(s: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(s);
    match text.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (text.into_owned(), String::new()),
    }
}
