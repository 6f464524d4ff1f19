//! The responder's decisions for one advertised service: probe, announce, answer, rename on a
//! conflict, say goodbye. The host owns the socket and the clock; this only reads and writes
//! packets (RFC 6762 §8 and §10, RFC 6763 §12).
//!
//! ```text
//! let mut r = Responder::new(service, now);
//! loop {
//!     while let Some(packet) = r.poll(now) { multicast(packet) }   // probes, announcements
//!     wait for a packet or r.next_deadline();
//!     if let Some(reply) = r.handle_packet(now, &bytes, legacy) { send(reply) }
//! }
//! multicast(r.goodbye());
//! ```

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::wire::{Message, Name, Question, RData, Record, rtype};
use crate::discovery::Advert;

/// Probes sent before a name is claimed, and the time between them (RFC 6762 §8.1).
const PROBES: u8 = 3;
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Announcements sent once the name is claimed, the first two a second apart (§8.3).
const ANNOUNCEMENTS: u8 = 2;
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Time to live of host records (SRV, A, AAAA) and of the others (PTR, TXT), §10.
const HOST_TTL: u32 = 120;
const OTHER_TTL: u32 = 4500;
/// Addresses advertised at most.
pub const MAX_ADDRESSES: usize = 32;
/// Renames tried before giving up on finding a free instance name.
const MAX_RENAMES: u32 = 100;
/// The DNS-SD meta-query name (RFC 6763 §9).
const SERVICES: &str = "_services._dns-sd._udp.local";

/// Where the responder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Probing for the name; `sent` probes so far.
    Probing { sent: u8 },
    /// Announcing; `sent` announcements so far.
    Announcing { sent: u8 },
    /// Answering queries only.
    Running,
}

/// Why the responder stopped claiming names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponderError {
    /// Every renamed instance was taken too.
    #[error("no free instance name after {MAX_RENAMES} renames")]
    NoFreeName,
    /// The service does not fit the wire format (a label or TXT entry too long).
    #[error("the service's names or TXT entries are out of DNS bounds")]
    OutOfBounds,
}

/// A reply to a packet: where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To the multicast group.
    Multicast(Vec<u8>),
    /// Back to the sender only (a legacy query from a port other than 5353).
    Unicast(Vec<u8>),
}

/// One service's responder.
#[derive(Debug)]
pub struct Responder {
    advert: Advert,
    addresses: Vec<IpAddr>,
    instance: String,
    renames: u32,
    phase: Phase,
    due: Instant,
    renamed: Option<String>,
    failed: Option<ResponderError>,
}

impl Responder {
    /// A responder for `advert` at `addresses` (at most [`MAX_ADDRESSES`] are kept), probing
    /// from `now`. Fails when the advert does not fit the wire format.
    pub fn new(advert: Advert, addresses: &[IpAddr], now: Instant) -> Result<Self, ResponderError> {
        let responder = Self {
            instance: advert.instance_name.clone(),
            addresses: addresses.iter().copied().take(MAX_ADDRESSES).collect(),
            advert,
            renames: 0,
            phase: Phase::Probing { sent: 0 },
            due: now,
            renamed: None,
            failed: None,
        };
        match responder.records(HOST_TTL, OTHER_TTL).encode() {
            Some(_) => Ok(responder),
            None => Err(ResponderError::OutOfBounds),
        }
    }

    /// The instance name now claimed (after any renames).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The new instance name if a conflict renamed it since the last call.
    pub fn take_renamed(&mut self) -> Option<String> {
        self.renamed.take()
    }

    /// Why the responder gave up, if it did.
    pub fn failed(&self) -> Option<ResponderError> {
        self.failed
    }

    /// When [`Responder::poll`] next has a packet, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.phase != Phase::Running && self.failed.is_none()).then_some(self.due)
    }

    /// The probe or announcement due at `now`, to multicast.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.due || self.failed.is_some() {
            return None;
        }
        match self.phase {
            Phase::Probing { sent } if sent < PROBES => {
                self.phase = Phase::Probing { sent: sent + 1 };
                self.due = now + PROBE_EVERY;
                self.probe().encode()
            }
            Phase::Probing { .. } => {
                self.phase = Phase::Announcing { sent: 1 };
                self.due = now + ANNOUNCE_EVERY;
                self.records(HOST_TTL, OTHER_TTL).encode()
            }
            Phase::Announcing { sent } => {
                self.phase = if sent + 1 < ANNOUNCEMENTS {
                    Phase::Announcing { sent: sent + 1 }
                } else {
                    Phase::Running
                };
                self.due = now + ANNOUNCE_EVERY;
                self.records(HOST_TTL, OTHER_TTL).encode()
            }
            Phase::Running => None,
        }
    }

    /// The goodbye: every record with a time to live of 0 (§10.1).
    pub fn goodbye(&self) -> Option<Vec<u8>> {
        if matches!(self.phase, Phase::Probing { .. }) || self.failed.is_some() {
            return None;
        }
        self.records(0, 0).encode()
    }

    /// Read one packet from the network; the reply to send, if any. `legacy`: it came from a
    /// port other than 5353, so an answer goes back to the sender only, with its id and
    /// questions (§6.7). Packets that do not parse are ignored.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8], legacy: bool) -> Option<Reply> {
        let message = Message::parse(packet).ok()?;
        if message.response {
            if self.conflicts(&message) {
                self.rename(now);
            }
            return None;
        }
        if matches!(self.phase, Phase::Probing { .. }) || self.failed.is_some() {
            return None;
        }
        let answers = self.answers(&message);
        if answers.answers.is_empty() {
            return None;
        }
        if legacy {
            let reply = Message {
                id: message.id,
                questions: message.questions,
                ..answers
            };
            return reply.encode().map(Reply::Unicast);
        }
        answers.encode().map(Reply::Multicast)
    }

    /// Whether `message` answers for our instance name with other data than ours.
    fn conflicts(&self, message: &Message) -> bool {
        let ours = self.records(HOST_TTL, OTHER_TTL);
        let fullname = self.fullname();
        message
            .answers
            .iter()
            .chain(&message.additional)
            .filter(|r| r.name == fullname && r.ttl > 0)
            .filter(|r| matches!(r.data.rtype(), rtype::SRV | rtype::TXT))
            .any(|r| {
                !ours
                    .additional
                    .iter()
                    .any(|o| o.name == r.name && o.data == r.data)
            })
    }

    /// Take the next instance name, `<name> (2)`, `(3)`, …, and probe for it.
    fn rename(&mut self, now: Instant) {
        self.renames += 1;
        if self.renames > MAX_RENAMES {
            self.failed = Some(ResponderError::NoFreeName);
            return;
        }
        let suffix = format!(" ({})", self.renames + 1);
        let base = &self.advert.instance_name;
        let mut end = base.len().min(63 - suffix.len());
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        self.instance = format!("{}{suffix}", &base[..end]);
        self.renamed = Some(self.instance.clone());
        self.phase = Phase::Probing { sent: 0 };
        self.due = now;
    }

    fn service_type(&self) -> Name {
        Name::parse(&self.advert.service_type)
    }

    fn fullname(&self) -> Name {
        self.service_type().prepend(&self.instance)
    }

    fn host(&self) -> Name {
        Name::parse(&self.advert.host_name())
    }

    /// A probe: a question for our instance name, with the records we propose (§8.1-8.2).
    fn probe(&self) -> Message {
        let records = self.records(HOST_TTL, OTHER_TTL);
        Message {
            questions: vec![Question {
                name: self.fullname(),
                qtype: rtype::ANY,
                unicast: true,
            }],
            authority: records
                .additional
                .into_iter()
                .filter(|r| r.name == self.fullname())
                .collect(),
            ..Message::default()
        }
    }

    /// Every record of the service: the PTR as the answer, the rest additional.
    fn records(&self, host_ttl: u32, other_ttl: u32) -> Message {
        let fullname = self.fullname();
        let host = self.host();
        let record = |name: &Name, ttl: u32, data: RData| Record {
            name: name.clone(),
            flush: !matches!(data, RData::Ptr(_)),
            ttl,
            data,
        };
        let txt = self
            .advert
            .txt
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect();
        let mut additional = vec![
            record(
                &fullname,
                host_ttl,
                RData::Srv {
                    priority: 0,
                    weight: 0,
                    port: self.advert.port,
                    target: host.clone(),
                },
            ),
            record(&fullname, other_ttl, RData::Txt(txt)),
        ];
        additional.extend(self.addresses.iter().map(|a| {
            let data = match a {
                IpAddr::V4(a) => RData::A(*a),
                IpAddr::V6(a) => RData::Aaaa(*a),
            };
            record(&host, host_ttl, data)
        }));
        Message {
            response: true,
            answers: vec![record(
                &self.service_type(),
                other_ttl,
                RData::Ptr(fullname),
            )],
            additional,
            ..Message::default()
        }
    }

    /// The answers to `query`'s questions, with the records that resolve them as additional
    /// ones; a PTR the asker already holds with over half its lifetime left is left out
    /// (known-answer suppression, §7.1).
    fn answers(&self, query: &Message) -> Message {
        let all = self.records(HOST_TTL, OTHER_TTL);
        let ptr = &all.answers[0];
        let mut out = Message {
            response: true,
            ..Message::default()
        };
        let known = |r: &Record| {
            query
                .answers
                .iter()
                .any(|k| k.name == r.name && k.data == r.data && k.ttl >= r.ttl / 2)
        };
        let services = Name::parse(SERVICES);
        for q in &query.questions {
            let any = q.qtype == rtype::ANY;
            if q.name == ptr.name && (any || q.qtype == rtype::PTR) && !known(ptr) {
                out.answers.push(ptr.clone());
            } else if q.name == services && (any || q.qtype == rtype::PTR) {
                out.answers.push(Record {
                    name: services.clone(),
                    flush: false,
                    ttl: OTHER_TTL,
                    data: RData::Ptr(ptr.name.clone()),
                });
            } else {
                out.answers.extend(
                    all.additional
                        .iter()
                        .filter(|r| r.name == q.name && (any || r.data.rtype() == q.qtype))
                        .filter(|r| !out.answers.contains(r))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        if out.answers.iter().any(|r| r.data.rtype() == rtype::PTR) {
            out.additional = all
                .additional
                .into_iter()
                .filter(|r| !out.answers.contains(r))
                .collect();
        }
        out
    }
}
