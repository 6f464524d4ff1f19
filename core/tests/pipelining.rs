//! Requests however their bytes arrive: several frames in one read, one frame over many reads,
//! a ping between requests. The gateway stops asking tungstenite for more once everything
//! received was read (see `frame_tally`): none of these may leave a request unanswered.

use std::time::Instant;

use clawgate_core::client::Event;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::{Config, ConnId};

/// A client past `hello-ok`.
fn ready(p: &mut Sim) -> ConnId {
    let id = p.open_client(cli(None), loopback());
    assert!(p.hello(id).is_some(), "hello-ok");
    p.events(id);
    id
}

/// The ids of the responses the client has received since the last look.
fn answered(p: &mut Sim, id: ConnId) -> Vec<String> {
    p.events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Response { id, result } => {
                assert!(result.is_ok(), "{result:?}");
                Some(id)
            }
            _ => None,
        })
        .collect()
}

/// `n` `health` requests written by the client and taken as its bytes, not yet sent.
fn requests(p: &mut Sim, id: ConnId, n: usize) -> (Vec<String>, Vec<u8>) {
    let client = p.peer(id).client.as_mut().expect("a client peer");
    let ids = (0..n).map(|_| client.request("health", None)).collect();
    let bytes = client.poll_transmit().expect("the requests' bytes");
    (ids, bytes)
}

#[test]
fn many_requests_in_one_read_are_all_answered_in_order() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = ready(&mut p);
    for n in [1, 2, 3, 20] {
        let (ids, bytes) = requests(&mut p, id, n);
        p.input(id, &bytes);
        assert_eq!(answered(&mut p, id), ids, "{n} in one read");
    }
}

#[test]
fn requests_split_at_every_size_are_all_answered() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = ready(&mut p);
    for step in [1, 2, 5, 7, 13, 64] {
        let (ids, bytes) = requests(&mut p, id, 3);
        for chunk in bytes.chunks(step) {
            p.input(id, chunk);
        }
        assert_eq!(answered(&mut p, id), ids, "reads of {step} bytes");
    }
}

#[test]
fn a_ping_after_a_request_is_answered_with_a_pong() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let id = ready(&mut p);
    let (ids, mut bytes) = requests(&mut p, id, 1);
    // A masked ping from the client, "hi", mask 0.
    let ping = [0x89, 0x82, 0, 0, 0, 0, b'h', b'i'];
    bytes.extend_from_slice(&ping);
    let before = p.sent(id).len();
    p.input(id, &bytes);
    assert_eq!(answered(&mut p, id), ids);
    let pong = [0x8a, 2, b'h', b'i'];
    assert!(
        p.sent(id)[before..].windows(pong.len()).any(|w| w == pong),
        "the pong went out with the answer"
    );
    // And a request after the ping, in a read of its own, is answered too.
    let (ids, bytes) = requests(&mut p, id, 1);
    p.input(id, &bytes);
    assert_eq!(answered(&mut p, id), ids);
}
