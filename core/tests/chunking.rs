//! Properties of the whole gateway under arbitrary input: how bytes are cut into reads never
//! changes what it does, and no input sequence makes it panic.

use std::time::Instant;

use clawgate_core::fuzzing::{self, TOKEN, stream::Op, stream::client_text_frame};
use proptest::prelude::*;
use serde_json::json;

/// One thing a client may send after its upgrade head.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let connect = |token: Option<&str>, mode: &str| {
        let mut p = json!({"minProtocol": 3, "maxProtocol": 4, "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": mode}, "role": "operator", "scopes": ["operator.admin"]});
        if let Some(t) = token {
            p["auth"] = json!({"token": t});
        }
        json!({"type": "req", "id": "1:c", "method": "connect", "params": p}).to_string()
    };
    let req = |id: &str, method: &str| {
        json!({"type": "req", "id": id, "method": method, "params": {}}).to_string()
    };
    prop_oneof![
        Just(connect(Some(TOKEN), "cli")),
        Just(connect(Some(TOKEN), "probe")),
        Just(connect(None, "cli")),
        Just(connect(Some("wrong"), "cli")),
        Just(req("2", "health")),
        Just(req("3", "status")),
        Just(req("4", "system-presence")),
        Just(req("5", "node.list")),
        Just(req("6", "nosuch.method")),
        Just(r#"{"type":"req","id":"7","method":"health","bogus":1}"#.to_string()),
        Just("not json".to_string()),
        "[ -~]{0,40}",
    ]
    .prop_map(|t| client_text_frame(t.as_bytes()))
}

/// A session: per connection, whether it is remote and what it sends.
fn session() -> impl Strategy<Value = (u8, Vec<(bool, Vec<u8>)>)> {
    let conn = (any::<bool>(), prop::collection::vec(frame(), 0..6))
        .prop_map(|(remote, frames)| (remote, frames.concat()));
    (0u8..4, prop::collection::vec(conn, 1..4))
}

/// The script for a session, each connection's bytes cut at `cuts` (cycled), with a
/// second of clock between connections.
fn script(setup: u8, conns: &[(bool, Vec<u8>)], cuts: &[usize]) -> Vec<u8> {
    let mut ops = Vec::new();
    let mut sizes = cuts.iter().copied().cycle();
    for (k, (remote, bytes)) in conns.iter().enumerate() {
        ops.push(Op::Open {
            remote: *remote,
            variant: 0,
        });
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) =
                rest.split_at(sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len()));
            ops.push(Op::Data {
                conn: k as u8,
                bytes: chunk.to_vec(),
            });
            rest = tail;
        }
        ops.push(Op::Advance { tens_of_ms: 100 });
    }
    fuzzing::stream::encode(setup, &ops)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunking_never_changes_the_outputs(
        (setup, conns) in session(),
        cuts in prop::collection::vec(1usize..40, 1..8),
    ) {
        let whole = fuzzing::connection_stream(Instant::now(), &script(setup, &conns, &[usize::MAX]));
        let cut = fuzzing::connection_stream(Instant::now(), &script(setup, &conns, &cuts));
        prop_assert_eq!(whole, cut);
    }

    #[test]
    fn no_stream_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzzing::connection_stream(Instant::now(), &data);
    }

    #[test]
    fn no_frame_sequence_panics(lines in prop::collection::vec("[onNOts]?[ -~]{0,60}", 0..12)) {
        fuzzing::frames_after_hello(Instant::now(), lines.join("\n").as_bytes());
    }
}
