//! The mDNS targets: one packet from the network, read by the codec, a claimed responder and a
//! browser; and one datagram of the kernel's rtnetlink answer.
//!
//! Checked: a packet that parses keeps within the codec's bounds, and if it encodes again it
//! reads back the same; a responder's reply parses and fits a packet; the browser keeps within
//! its bounds; netlink entries are bounded by the datagram's size and the chosen addresses are
//! unique.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::Config;
use crate::discovery::advert;
use crate::mdns::browser::{Browser, MAX_KEPT};
use crate::mdns::netlink::{decode, multicast_addresses};
use crate::mdns::responder::{Reply, Responder};
use crate::mdns::wire::{MAX_PACKET, MAX_RECORDS, Message};

/// Feed `data` (the first byte: bit 0 marks it a legacy query) as a packet; returns how many
/// gateways the browser found.
pub fn packet(data: &[u8], t0: Instant) -> usize {
    let (legacy, packet) = match data.split_first() {
        Some((flags, rest)) => (flags & 1 == 1, rest),
        None => (false, data),
    };
    if let Ok(message) = Message::parse(packet) {
        let records = message.answers.len() + message.authority.len() + message.additional.len();
        assert!(message.questions.len() + records <= MAX_RECORDS);
        if let Some(bytes) = message.encode() {
            assert_eq!(Message::parse(&bytes).as_ref(), Ok(&message));
        }
    }
    let mut config = Config::local_default().with_token("t");
    config.bind_host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    config.host_name = "fuzz".into();
    let advert = advert(&config).expect("a LAN bind advertises");
    let addresses = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))];
    let mut responder = Responder::new(advert, &addresses, t0).expect("the advert fits");
    let mut now = t0;
    while let Some(due) = responder.next_deadline() {
        now = now.max(due);
        while responder.poll(now).is_some() {}
    }
    let now = now + Duration::from_millis(1);
    if let Some(Reply::Multicast(p) | Reply::Unicast(p)) =
        responder.handle_packet(now, packet, legacy)
    {
        assert!(p.len() <= MAX_PACKET);
        assert!(Message::parse(&p).is_ok_and(|m| m.response));
    }
    let mut browser = Browser::default();
    browser.handle_packet(packet);
    browser.handle_packet(packet);
    let found = browser.found();
    assert!(found.len() <= MAX_KEPT);
    found.len()
}

/// Read `data` as one rtnetlink datagram; returns the addresses chosen.
pub fn netlink(data: &[u8]) -> usize {
    let entries = decode(data);
    assert!(entries.len() <= data.len() / 16 + 1);
    let chosen = multicast_addresses(&entries);
    for (i, (_, a)) in chosen.iter().enumerate() {
        assert!(!chosen[..i].iter().any(|(_, b)| a == b));
    }
    chosen.len()
}
