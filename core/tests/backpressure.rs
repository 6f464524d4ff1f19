//! Clients that do not keep up or send too much at once: the gateway-wide budget of unsent
//! bytes, droppable broadcasts skipping a slow consumer, the per-turn frame quota.

use std::time::{Duration, Instant};

use clawgate_core::client::Event;
use clawgate_core::device::DeviceKey;
use clawgate_core::fuzzing::sim::*;
use clawgate_core::scopes::Role;
use clawgate_core::{Config, ConnId, Output};

/// Bytes sent to the still-open peers of `ids` (none of them acknowledges a write, so all of
/// it is unsent as far as the gateway knows).
fn unsent_of_open(p: &mut Sim, ids: &[ConnId]) -> usize {
    let open: Vec<ConnId> = ids
        .iter()
        .copied()
        .filter(|id| !p.peer(*id).closed)
        .collect();
    open.iter().map(|id| p.sent(*id).len()).sum()
}

#[test]
fn the_budget_cuts_the_biggest_queue_and_nobody_else_notices() {
    const BUDGET: usize = 256 * 1024;
    let mut cfg = Config::local_default();
    cfg.limits.max_buffered_bytes_total = BUDGET;
    let mut p = Sim::started(Instant::now(), cfg);
    let legit = p.open_client(cli(None), loopback());
    assert!(p.hello(legit).is_some());
    let floods: Vec<ConnId> = (0..3)
        .map(|_| {
            let id = p.open_client(cli(None), loopback());
            assert!(p.hello(id).is_some());
            p.toggle_acks(id);
            id
        })
        .collect();
    // What a flooder was sent before it stopped reading is not counted against it below.
    let before: usize = floods.iter().map(|id| p.sent(*id).len()).sum();
    let mut cut = Vec::new();
    for round in 0..2_000 {
        for &id in &floods {
            if !p.peer(id).closed {
                p.request(id, "status", None);
            }
        }
        let unsent = unsent_of_open(&mut p, &floods);
        assert!(
            unsent <= BUDGET + before,
            "round {round}: {unsent} bytes unsent, over the budget"
        );
        cut = floods
            .iter()
            .copied()
            .filter(|id| p.peer(*id).closed)
            .collect();
        if cut.len() == floods.len() {
            break;
        }
    }
    assert!(!cut.is_empty(), "no flooder was cut");
    for id in &cut {
        assert_eq!(
            p.close_of(*id),
            Some((Some(1008), "slow consumer".into())),
            "a cut flooder is told why"
        );
    }
    assert!(p.close_of(legit).is_none(), "the legitimate client was cut");
    assert!(p.call(legit, "health", None).is_ok());
    assert!(
        p.logs
            .iter()
            .any(|l| l.message.contains("gateway.maxBufferedBytesTotal")),
        "the cut is logged with the limit's name"
    );
}

#[test]
fn droppable_broadcasts_skip_a_slow_consumer_and_its_seq_shows_the_gap() {
    let mut cfg = Config::local_default().with_token("t");
    cfg.limits.slow_consumer_bytes = 1024;
    let mut p = Sim::started(Instant::now(), cfg);
    let slow = p.open_client(cli(Some("t")), loopback());
    let quick = p.open_client(cli(Some("t")), loopback());
    assert!(p.hello(slow).is_some() && p.hello(quick).is_some());
    p.toggle_acks(slow);
    // More than the threshold queued for it and never written.
    for _ in 0..4 {
        p.request(slow, "status", None);
    }
    p.events(slow);
    p.events(quick);
    assert!(
        !p.gw.wants_input(slow),
        "a client that does not read gets no more work done"
    );
    assert!(p.gw.wants_input(quick));
    // A node connects: `presence` is broadcast, with dropIfSlow.
    let mut node = cli(Some("t"));
    node.client.id = "node-host".into();
    node.client.mode = "node".into();
    node.role = Role::Node;
    node.scopes = vec![];
    node.device = Some(DeviceKey::from_seed([7; 32]));
    let node = p.open_client(node, loopback());
    assert!(p.hello(node).is_some());
    let presence = |events: &[Event]| {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Event { event, seq, .. } if event == "presence" => *seq,
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let quick_events = p.events(quick);
    let slow_events = p.events(slow);
    assert_eq!(presence(&quick_events).len(), 1, "{quick_events:?}");
    assert!(presence(&slow_events).is_empty(), "{slow_events:?}");
    // A tick is not droppable: it still reaches the slow consumer, one seq later.
    p.advance(Duration::from_secs(30));
    let ticks = |events: Vec<Event>| {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Event { event, seq, .. } if event == "tick" => seq,
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let quick_tick = ticks(p.events(quick));
    let slow_tick = ticks(p.events(slow));
    assert_eq!(quick_tick.len(), 1);
    assert_eq!(
        slow_tick, quick_tick,
        "the skipped presence still took a seq"
    );
}

#[test]
fn a_burst_is_answered_one_quota_per_turn() {
    let mut cfg = Config::local_default();
    cfg.limits.max_frames_per_turn = 8;
    let mut p = Sim::started(Instant::now(), cfg);
    let burst = p.open_client(cli(None), loopback());
    let other = p.open_client(cli(None), loopback());
    assert!(p.hello(burst).is_some() && p.hello(other).is_some());
    let mut bytes = Vec::new();
    for _ in 0..20 {
        let c = p.peer(burst).client.as_mut().unwrap();
        c.request("health", None);
        bytes.extend(c.poll_transmit().unwrap());
    }
    let answered = |p: &mut Sim| {
        let mut n = 0;
        loop {
            match p.gw.poll_output() {
                Output::Transmit { conn, .. } if conn == burst => n += 1,
                Output::Timeout(at) => return (n, at),
                _ => {}
            }
        }
    };
    p.gw.handle_input(p.now, burst, &bytes);
    let (first, due) = answered(&mut p);
    assert_eq!(first, 8, "one quota answered in the first turn");
    assert!(due <= p.now, "the rest is due at once");
    assert!(!p.gw.wants_input(burst), "the shell holds off reading more");
    assert!(p.gw.wants_input(other));
    // New bytes of a waiting connection wait for its turn too.
    let c = p.peer(burst).client.as_mut().unwrap();
    c.request("health", None);
    let more = c.poll_transmit().unwrap();
    p.gw.handle_input(p.now, burst, &more);
    assert_eq!(answered(&mut p).0, 0);
    p.gw.handle_timeout(p.now);
    assert_eq!(answered(&mut p).0, 8);
    p.gw.handle_timeout(p.now);
    assert_eq!(answered(&mut p).0, 5, "the last of the burst");
    assert!(p.gw.wants_input(burst));
}
