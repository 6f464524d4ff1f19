//! The mDNS responder and browser decisions, over packets, with a caller's clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use clawgate_core::Config;
use clawgate_core::discovery::{Advert, SERVICE_TYPE};
use clawgate_core::mdns::browser::Browser;
use clawgate_core::mdns::responder::{Reply, Responder, ResponderError};
use clawgate_core::mdns::wire::{Message, Name, Question, RData, rtype};

/// What a gateway on every interface of host `pi5` advertises.
fn advert() -> Advert {
    let mut config = Config::local_default().with_token("t");
    config.bind_host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    config.host_name = "pi5".into();
    clawgate_core::discovery::advert(&config).expect("a LAN bind advertises")
}

fn addresses() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]
}

/// Run the probes and announcements; the packets sent.
fn start(r: &mut Responder, t0: Instant) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    let mut now = t0;
    while let Some(due) = r.next_deadline() {
        now = now.max(due);
        while let Some(p) = r.poll(now) {
            sent.push(p);
        }
    }
    sent
}

fn parse(p: &[u8]) -> Message {
    Message::parse(p).expect("packet parses")
}

fn query(name: &str, qtype: u16) -> Vec<u8> {
    Message {
        questions: vec![Question {
            name: Name::parse(name),
            qtype,
            unicast: false,
        }],
        ..Message::default()
    }
    .encode()
    .expect("fits")
}

#[test]
fn probes_three_times_then_announces_twice_and_says_goodbye() {
    let t0 = Instant::now();
    let mut r = Responder::new(advert(), &addresses(), t0).expect("fits");
    assert_eq!(r.goodbye(), None, "nothing claimed yet");
    let sent: Vec<Message> = start(&mut r, t0).iter().map(|p| parse(p)).collect();
    assert_eq!(sent.len(), 5);
    assert!(
        sent[..3]
            .iter()
            .all(|m| !m.response && m.authority.len() == 2)
    );
    assert!(sent[3..].iter().all(|m| m.response && m.answers.len() == 1));
    let RData::Txt(txt) = &sent[3].additional[1].data else {
        panic!("no TXT record");
    };
    assert_eq!(txt[0], b"role=gateway");
    assert_eq!(txt.len(), advert().txt.len());
    let goodbye = parse(&r.goodbye().expect("claimed"));
    assert!(
        goodbye
            .answers
            .iter()
            .chain(&goodbye.additional)
            .all(|r| r.ttl == 0)
    );
}

#[test]
fn answers_a_browse_with_everything_needed_to_connect() {
    let t0 = Instant::now();
    let mut r = Responder::new(advert(), &addresses(), t0).expect("fits");
    assert_eq!(
        r.handle_packet(t0, &query(SERVICE_TYPE, rtype::PTR), false),
        None,
        "silent while probing"
    );
    start(&mut r, t0);
    let Some(Reply::Multicast(p)) = r.handle_packet(t0, &query(SERVICE_TYPE, rtype::PTR), false)
    else {
        panic!("no multicast answer");
    };
    let m = parse(&p);
    assert_eq!(m.answers.len(), 1);
    let types: Vec<u16> = m.additional.iter().map(|r| r.data.rtype()).collect();
    assert_eq!(types, [rtype::SRV, rtype::TXT, rtype::A]);
    let Some(Reply::Unicast(p)) = r.handle_packet(t0, &query("pi5.local", rtype::A), true) else {
        panic!("no legacy answer");
    };
    let m = parse(&p);
    assert_eq!(m.questions.len(), 1);
    assert_eq!(m.answers[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 7)));
    assert_eq!(
        r.handle_packet(t0, &query("other.local", rtype::A), false),
        None
    );

    // A browser reading that answer finds the gateway.
    let mut b = Browser::default();
    assert!(!parse(&Browser::query()).response);
    let Some(Reply::Multicast(p)) = r.handle_packet(t0, &Browser::query(), false) else {
        panic!("no answer to the browser's query");
    };
    b.handle_packet(&p);
    let found = b.found();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_name, "pi5 (OpenClaw)");
    assert_eq!(found[0].host, "pi5.local");
    assert_eq!(found[0].port, 18789);
    assert_eq!(found[0].addresses, addresses());
    assert_eq!(found[0].txt, advert().txt);
    b.handle_packet(&r.goodbye().expect("claimed"));
    assert!(b.found().is_empty(), "a goodbye removes it");
}

#[test]
fn another_host_with_our_name_renames_us_once() {
    let t0 = Instant::now();
    let mut r = Responder::new(advert(), &addresses(), t0).expect("fits");
    r.poll(t0).expect("first probe");
    let mut twin = Responder::new(advert(), &addresses(), t0).expect("fits");
    let own = start(&mut twin, t0).pop().expect("an announcement");
    let mut theirs = advert();
    theirs.port = 1;
    let mut other = Responder::new(theirs, &addresses(), t0).expect("fits");
    let announcement = start(&mut other, t0).pop().expect("an announcement");
    assert_eq!(r.handle_packet(t0, &own, false), None);
    assert_eq!(r.take_renamed(), None, "the same records are no conflict");
    r.handle_packet(t0, &announcement, false);
    assert_eq!(r.take_renamed().as_deref(), Some("pi5 (OpenClaw) (2)"));
    assert_eq!(r.instance(), "pi5 (OpenClaw) (2)");
    assert_eq!(r.take_renamed(), None);
    r.handle_packet(t0, &announcement, false);
    assert_eq!(r.take_renamed(), None, "the new name does not conflict");
    assert_eq!(
        start(&mut r, t0).len(),
        5,
        "probes again under the new name"
    );
    assert_eq!(r.failed(), None);
}

#[test]
fn out_of_bounds_adverts_are_refused() {
    let mut a = advert();
    a.txt.push(("displayName".into(), "x".repeat(300)));
    assert_eq!(
        Responder::new(a, &addresses(), Instant::now()).err(),
        Some(ResponderError::OutOfBounds)
    );
}
