//! The DNS message format as mDNS uses it (RFC 1035 §4, RFC 6762 §18): a bounded parser and
//! an encoder without name compression.
//!
//! Bounds: a packet is at most [`MAX_PACKET`] bytes, at most [`MAX_RECORDS`] questions and
//! records are read from one, a name is at most 255 bytes and follows at most
//! [`MAX_POINTERS`] compression pointers, each pointing before the one that led to it.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The largest mDNS packet read or written (RFC 6762 §17: 9,000 bytes with its headers).
pub const MAX_PACKET: usize = 9000;
/// Questions and records read from one packet; the rest are ignored.
pub const MAX_RECORDS: usize = 64;
/// Compression pointers followed in one name.
pub const MAX_POINTERS: usize = 16;
/// The longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// The longest label.
const MAX_LABEL: usize = 63;

/// Record types clawgate reads or writes.
pub mod rtype {
    /// An IPv4 address.
    pub const A: u16 = 1;
    /// A pointer (DNS-SD: service type → instance).
    pub const PTR: u16 = 12;
    /// Text (DNS-SD: the service's key=value pairs).
    pub const TXT: u16 = 16;
    /// An IPv6 address.
    pub const AAAA: u16 = 28;
    /// A service location (target host and port).
    pub const SRV: u16 = 33;
    /// Any type (queries only).
    pub const ANY: u16 = 255;
}

/// The Internet class.
const CLASS_IN: u16 = 1;
/// The top bit of a record's class: cache flush; of a question's: unicast reply wanted.
const TOP_BIT: u16 = 0x8000;
/// The header's response flag and authoritative-answer flag.
const FLAGS_RESPONSE: u16 = 0x8400;

/// Why a packet could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The packet is longer than [`MAX_PACKET`].
    #[error("packet over {MAX_PACKET} bytes")]
    TooLong,
    /// The packet ends inside a header, name or record.
    #[error("packet truncated")]
    Truncated,
    /// A name is malformed: too long, a bad label or a pointer loop.
    #[error("malformed name")]
    BadName,
    /// A record's data does not match its type.
    #[error("malformed record data")]
    BadData,
}

/// A domain name as its labels, compared without regard to ASCII case.
#[derive(Clone, Debug, Default, Eq)]
pub struct Name(pub Vec<Vec<u8>>);

impl Name {
    /// The name of dotted `text` (`pi5.local.`); labels cannot contain dots this way.
    pub fn parse(text: &str) -> Self {
        Name(
            text.split('.')
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect(),
        )
    }

    /// `label` in front of `self`.
    pub fn prepend(&self, label: &str) -> Self {
        let mut labels = Vec::with_capacity(self.0.len() + 1);
        labels.push(label.as_bytes().to_vec());
        labels.extend(self.0.iter().cloned());
        Name(labels)
    }

    /// The first label and the rest, if there is one.
    pub fn split_first(&self) -> Option<(&[u8], Name)> {
        let (first, rest) = self.0.split_first()?;
        Some((first, Name(rest.to_vec())))
    }

    /// The name as text, `a.b.local` (no final dot; dots inside labels are not escaped).
    pub fn to_text(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        parts.join(".")
    }

    fn wire_len(&self) -> usize {
        self.0.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

/// One question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: Name,
    /// The type asked for ([`rtype`]).
    pub qtype: u16,
    /// Whether a unicast reply was asked for (the QU bit).
    pub unicast: bool,
}

/// A record's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A pointer to a name.
    Ptr(Name),
    /// A service's host and port.
    Srv {
        /// Priority (0 here).
        priority: u16,
        /// Weight (0 here).
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: Name,
    },
    /// Text strings, each at most 255 bytes.
    Txt(Vec<Vec<u8>>),
    /// Any other type, data not kept.
    Other(u16),
}

impl RData {
    /// The record type of this data.
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => rtype::A,
            RData::Aaaa(_) => rtype::AAAA,
            RData::Ptr(_) => rtype::PTR,
            RData::Srv { .. } => rtype::SRV,
            RData::Txt(_) => rtype::TXT,
            RData::Other(t) => *t,
        }
    }
}

/// One resource record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's owner name.
    pub name: Name,
    /// Whether the cache-flush bit is set (a unique record).
    pub flush: bool,
    /// Time to live in seconds; 0 says goodbye.
    pub ttl: u32,
    /// The data.
    pub data: RData,
}

/// A DNS message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The id (0 in multicast; a legacy query's id is echoed).
    pub id: u16,
    /// A response (QR set) rather than a query.
    pub response: bool,
    /// The questions.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (a probe's proposed records).
    pub authority: Vec<Record>,
    /// The additional section.
    pub additional: Vec<Record>,
}

impl Message {
    /// Read `packet`, keeping at most [`MAX_RECORDS`] questions and records in all.
    pub fn parse(packet: &[u8]) -> Result<Self, WireError> {
        if packet.len() > MAX_PACKET {
            return Err(WireError::TooLong);
        }
        let mut r = Reader { packet, at: 0 };
        let id = r.u16()?;
        let flags = r.u16()?;
        let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
        let mut budget = MAX_RECORDS;
        let mut message = Message {
            id,
            response: flags & 0x8000 != 0,
            ..Message::default()
        };
        for _ in 0..usize::from(counts[0]).min(budget) {
            let name = r.name()?;
            let qtype = r.u16()?;
            let class = r.u16()?;
            message.questions.push(Question {
                name,
                qtype,
                unicast: class & TOP_BIT != 0,
            });
        }
        budget -= message.questions.len();
        for (count, section) in counts[1..].iter().zip(0..) {
            for _ in 0..usize::from(*count).min(budget) {
                let Some(record) = r.record()? else { continue };
                budget -= 1;
                match section {
                    0 => message.answers.push(record),
                    1 => message.authority.push(record),
                    _ => message.additional.push(record),
                }
            }
        }
        Ok(message)
    }

    /// The packet for this message, or `None` when it would be over [`MAX_PACKET`] or hold
    /// a name or text string out of bounds.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        put16(&mut out, self.id);
        put16(&mut out, if self.response { FLAGS_RESPONSE } else { 0 });
        for n in [
            self.questions.len(),
            self.answers.len(),
            self.authority.len(),
            self.additional.len(),
        ] {
            put16(&mut out, u16::try_from(n).ok()?);
        }
        for q in &self.questions {
            put_name(&mut out, &q.name)?;
            put16(&mut out, q.qtype);
            put16(&mut out, CLASS_IN | if q.unicast { TOP_BIT } else { 0 });
        }
        for record in self
            .answers
            .iter()
            .chain(&self.authority)
            .chain(&self.additional)
        {
            put_record(&mut out, record)?;
        }
        (out.len() <= MAX_PACKET).then_some(out)
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &Name) -> Option<()> {
    if name.wire_len() > MAX_NAME {
        return None;
    }
    for label in &name.0 {
        if label.is_empty() || label.len() > MAX_LABEL {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    Some(())
}

fn put_record(out: &mut Vec<u8>, record: &Record) -> Option<()> {
    put_name(out, &record.name)?;
    put16(out, record.data.rtype());
    put16(out, CLASS_IN | if record.flush { TOP_BIT } else { 0 });
    out.extend_from_slice(&record.ttl.to_be_bytes());
    let length_at = out.len();
    put16(out, 0);
    match &record.data {
        RData::A(a) => out.extend_from_slice(&a.octets()),
        RData::Aaaa(a) => out.extend_from_slice(&a.octets()),
        RData::Ptr(name) => put_name(out, name)?,
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            for v in [*priority, *weight, *port] {
                put16(out, v);
            }
            put_name(out, target)?;
        }
        RData::Txt(strings) if strings.is_empty() => out.push(0),
        RData::Txt(strings) => {
            for s in strings {
                out.push(u8::try_from(s.len()).ok()?);
                out.extend_from_slice(s);
            }
        }
        RData::Other(_) => return None,
    }
    let length = u16::try_from(out.len() - length_at - 2).ok()?;
    out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
    Some(())
}

/// A cursor over a packet.
struct Reader<'a> {
    packet: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Truncated)?;
        let bytes = self.packet.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the cursor; the cursor moves past its first pointer or its end.
    fn name(&mut self) -> Result<Name, WireError> {
        let mut labels = Vec::new();
        let mut length = 1;
        let mut at = self.at;
        let mut resume = None;
        let mut pointers = 0;
        loop {
            let len = *self.packet.get(at).ok_or(WireError::Truncated)?;
            match len {
                0 => {
                    self.at = resume.unwrap_or(at + 1);
                    return Ok(Name(labels));
                }
                1..=63 => {
                    let label = self
                        .packet
                        .get(at + 1..at + 1 + usize::from(len))
                        .ok_or(WireError::Truncated)?;
                    length += label.len() + 1;
                    if length > MAX_NAME {
                        return Err(WireError::BadName);
                    }
                    labels.push(label.to_vec());
                    at += 1 + usize::from(len);
                }
                0xC0..=0xFF => {
                    let low = *self.packet.get(at + 1).ok_or(WireError::Truncated)?;
                    let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                    pointers += 1;
                    if target >= at || pointers > MAX_POINTERS {
                        return Err(WireError::BadName);
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err(WireError::BadName),
            }
        }
    }

    /// A record at the cursor; `None` for a class other than IN (skipped).
    fn record(&mut self) -> Result<Option<Record>, WireError> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let length = usize::from(self.u16()?);
        let start = self.at;
        let end = start + length;
        if end > self.packet.len() {
            return Err(WireError::Truncated);
        }
        let data = match rtype {
            rtype::A => RData::A(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.take(length)?).map_err(|_| WireError::BadData)?,
            )),
            rtype::AAAA => RData::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.take(length)?).map_err(|_| WireError::BadData)?,
            )),
            rtype::PTR => RData::Ptr(self.name()?),
            rtype::SRV => RData::Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            },
            rtype::TXT => {
                let mut strings = Vec::new();
                while self.at < end {
                    let len = usize::from(self.take(1)?[0]);
                    let s = self.take(len)?;
                    if !s.is_empty() {
                        strings.push(s.to_vec());
                    }
                }
                RData::Txt(strings)
            }
            other => RData::Other(other),
        };
        if self.at > end {
            return Err(WireError::BadData);
        }
        self.at = end;
        Ok((class & !TOP_BIT == CLASS_IN).then_some(Record {
            name,
            flush: class & TOP_BIT != 0,
            ttl,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let instance = Name::parse("pi5 (OpenClaw)._openclaw-gw._tcp.local.");
        Message {
            id: 0,
            response: true,
            questions: vec![],
            answers: vec![Record {
                name: Name::parse("_openclaw-gw._tcp.local"),
                flush: false,
                ttl: 4500,
                data: RData::Ptr(instance.clone()),
            }],
            authority: vec![],
            additional: vec![
                Record {
                    name: instance.clone(),
                    flush: true,
                    ttl: 120,
                    data: RData::Srv {
                        priority: 0,
                        weight: 0,
                        port: 18789,
                        target: Name::parse("pi5.local"),
                    },
                },
                Record {
                    name: instance,
                    flush: true,
                    ttl: 4500,
                    data: RData::Txt(vec![b"role=gateway".to_vec()]),
                },
                Record {
                    name: Name::parse("pi5.local"),
                    flush: true,
                    ttl: 120,
                    data: RData::A(Ipv4Addr::new(192, 0, 2, 7)),
                },
                Record {
                    name: Name::parse("pi5.local"),
                    flush: true,
                    ttl: 120,
                    data: RData::Aaaa("2001:db8::7".parse().expect("literal")),
                },
            ],
        }
    }

    #[test]
    fn a_message_reads_back() {
        let m = sample();
        let bytes = m.encode().expect("fits");
        assert_eq!(Message::parse(&bytes), Ok(m));
    }

    #[test]
    fn names_compare_without_case() {
        assert_eq!(Name::parse("PI5.Local."), Name::parse("pi5.local"));
        assert_ne!(Name::parse("pi5.local"), Name::parse("pi6.local"));
    }

    #[test]
    fn compressed_names_are_followed_backwards_only() {
        // Header, then a question `a.local` and a second question pointing at it.
        let mut p = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(b"\x01a\x05local\x00\x00\x0c\x00\x01");
        p.extend_from_slice(b"\x01b\xc0\x0c\x00\x0c\x00\x01");
        let m = Message::parse(&p).expect("valid");
        assert_eq!(m.questions[1].name, Name::parse("b.a.local"));
        // A pointer to itself is refused, not followed forever.
        let mut looped = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(b"\xc0\x0c\x00\x0c\x00\x01");
        assert_eq!(Message::parse(&looped), Err(WireError::BadName));
    }

    #[test]
    fn bounds_hold() {
        assert_eq!(
            Message::parse(&vec![0; MAX_PACKET + 1]),
            Err(WireError::TooLong)
        );
        assert_eq!(Message::parse(&[0; 5]), Err(WireError::Truncated));
        let mut m = sample();
        m.additional[1].data = RData::Txt(vec![vec![b'x'; 256]]);
        assert_eq!(m.encode(), None);
        // A header claiming 65,535 questions reads at most MAX_RECORDS before running out.
        let mut many = vec![0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        for _ in 0..MAX_RECORDS + 5 {
            many.extend_from_slice(b"\x00\x00\x01\x00\x01");
        }
        assert_eq!(
            Message::parse(&many).map(|m| m.questions.len()),
            Ok(MAX_RECORDS)
        );
    }
}
