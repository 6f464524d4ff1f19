//! Entry points for the fuzzers in `fuzz/` and for the tests that replay their corpora, and
//! the in-memory harness ([`sim::Sim`]) they and the core's tests share. Compiled only with
//! the `fuzzing` feature: none of this is the gateway's API.
//!
//! Each function takes the raw input and checks invariants with `assert!`, so a panic here
//! is a finding whether it came from the gateway or from an invariant. Time is a fake clock
//! started at the `Instant` the caller hands in; randomness is a fixed-seed generator; so an
//! input always replays the same run.

pub mod connect_tree;
pub mod discord_dispatch;
pub mod http_response;
pub mod mcp_message;
pub mod mdns;
pub mod model_stream;
pub mod request_envelope;
pub mod sim;
pub mod slack_envelope;
pub mod stream;
pub mod telegram_updates;
pub mod ws_read;

use core::time::Duration;
use std::time::Instant;

use serde_json::{Value, json};

use crate::client::{ClientConfig, Event};
use crate::connect_fields::ConnectFields;
use crate::device::DeviceKey;
use crate::handshake::{ConnectParams, ParamsError};
use crate::http::{self, Head};
use crate::pairing::PendingKind;
use crate::persist::{RowKind, diff};
use crate::scopes::Role;
use crate::{Config, Limits, PairingStore, handshake};

pub use sim::{SeqEntropy, Sim, T0_MS, Transcript, cli, loopback, remote};

/// The shared secret of token-mode fuzz gateways.
pub const TOKEN: &str = "fuzz-token";

/// The configuration of a fuzz gateway: mode `none` or token mode, default or small limits.
pub fn fuzz_config(token: bool, small_limits: bool) -> Config {
    let mut c = Config::local_default();
    if token {
        c = c.with_token(TOKEN);
    }
    if small_limits {
        c.limits.max_payload = 64 * 1024;
        c.limits.max_buffered_bytes = 32 * 1024;
        c.limits.max_preauth_per_ip = 2;
        c.limits.max_connections = 4;
        c.limits.dedupe_max = 4;
        c.limits.log_ring_records = 8;
    }
    c
}

/// The HTTP request head parser on any bytes: a complete head parses the same alone, and its
/// first half only asks for more bytes (a head cut by the network is never refused). A
/// `POST`'s body length is either within the body limit or refused with a 4xx. An upgrade is
/// taken and answered exactly when tungstenite's own server handshake takes it, with its bytes.
pub fn http_head(data: &[u8]) {
    let cap = Limits::default().max_head_bytes;
    match http::parse_head(data, cap) {
        Ok(Some((head, len))) => {
            assert!(
                len <= data.len() && len <= cap,
                "head length {len} out of bounds"
            );
            let again = http::parse_head(data.get(..len).unwrap_or(data), cap);
            assert!(
                matches!(again, Ok(Some((_, l))) if l == len),
                "the head alone does not parse the same"
            );
            let half = http::parse_head(data.get(..len / 2).unwrap_or_default(), cap);
            assert!(matches!(half, Ok(None)), "half a head gives {half:?}");
            let response = match head {
                Head::Upgrade(up) => {
                    let answer = crate::upgrade_request::switching_protocols(&up.key);
                    let theirs = tungstenite_answer(data.get(..len).unwrap_or(data));
                    assert_eq!(Some(&answer), theirs.as_ref(), "not tungstenite's answer");
                    answer
                }
                Head::Plain(req) => {
                    let max = Limits::default().max_http_body_bytes;
                    match crate::http_post::body_length(&req, max) {
                        Ok(n) => assert!(req.method == "POST" && n <= max, "length {n}"),
                        Err(e) => assert!((400..500).contains(&e.status()), "{e}"),
                    }
                    http::plain_response(&req.method, &req.path, http::Phase::Ready, 0, "fuzz")
                }
            };
            assert!(response.starts_with(b"HTTP/1.1 "), "not an HTTP response");
        }
        Ok(None) => assert!(
            data.len() < cap,
            "{} bytes without a head or an error",
            data.len()
        ),
        Err(e) => {
            assert!(
                http::bad_head(e).starts_with(b"HTTP/1.1 4"),
                "not a 4xx for {e}"
            );
            if e == http::HeadError::BadUpgrade {
                assert!(tungstenite_answer(data).is_none(), "tungstenite takes it");
            }
        }
    }
}

/// tungstenite's server handshake answer to the upgrade request at the start of `head`, if
/// it takes it: what the hand-written check and answer are held to.
fn tungstenite_answer(head: &[u8]) -> Option<Vec<u8>> {
    use tungstenite::handshake::machine::TryParse;
    use tungstenite::handshake::server::{Request, create_response, write_response};
    let (_, request) = Request::try_parse(head).ok()??;
    let response = create_response(&request).ok()?;
    let mut out = Vec::new();
    write_response(&mut out, &response).ok()?;
    Some(out)
}

/// `connect` params: parsed alone, then sent as the first frame of a loopback and of a remote
/// connection to a token-mode gateway.
pub fn connect_params(start: Instant, data: &[u8]) {
    if let Some(decision) = connect_params_read(data) {
        match decision {
            Ok(p) => {
                if !handshake::protocol_ok(&p) {
                    let e = handshake::protocol_mismatch(&p);
                    assert_eq!(
                        e.details.as_ref().and_then(|d| d.get("code")),
                        Some(&json!("PROTOCOL_MISMATCH"))
                    );
                }
            }
            Err(e) => assert!(!e.to_error().message.is_empty()),
        }
    }
    let mut frame = br#"{"type":"req","id":"c1","method":"connect","params":"#.to_vec();
    frame.extend_from_slice(data);
    frame.push(b'}');
    let bytes = [stream::upgrade_head(0), stream::client_text_frame(&frame)].concat();
    let mut sim = Sim::new(start, fuzz_config(true, false), PairingStore::default());
    for peer in [loopback(), remote()] {
        let id = sim.open_raw(peer);
        sim.input(id, &bytes);
    }
    sim.advance(Duration::from_secs(16));
}

/// `connect` params, if `data` is JSON, read from their text as the gateway reads them and
/// from their JSON tree, each validated: both decide what the validation over the tree
/// ([`connect_tree`]) decided, the same params or the same error. Returns that decision.
pub fn connect_params_read(data: &[u8]) -> Option<Result<ConnectParams, ParamsError>> {
    let tree = serde_json::from_slice::<Value>(data).ok()?;
    let expected = connect_tree::parse_connect(&tree);
    let text = std::str::from_utf8(data).expect("JSON text is UTF-8");
    let fields: ConnectFields<'_> =
        serde_json::from_str(text).expect("any JSON value reads as connect fields");
    assert_eq!(
        handshake::connect_params(&fields),
        expected,
        "read from the text"
    );
    assert_eq!(
        handshake::parse_connect(&tree),
        expected,
        "read from the tree"
    );
    Some(expected)
}

/// A whole gateway's byte stream: connections, chunking and time as the script says
/// (see [`stream`]). Returns what the gateway did.
pub fn connection_stream(start: Instant, data: &[u8]) -> Transcript {
    stream::run(start, data)
}

/// The device key of the fuzz node.
fn node_key() -> DeviceKey {
    DeviceKey::from_seed([7; 32])
}

/// A local CLI operator with every scope it may ask for.
pub fn operator_client() -> ClientConfig {
    let mut c = ClientConfig::cli("127.0.0.1:18789");
    c.token = Some(TOKEN.into());
    c.scopes = [
        "operator.admin",
        "operator.read",
        "operator.write",
        "operator.pairing",
    ]
    .map(String::from)
    .to_vec();
    c
}

/// A node host with a signed device, declaring `system.which` and `system.run`.
pub fn node_client() -> ClientConfig {
    let mut c = ClientConfig::cli("127.0.0.1:18789");
    c.token = Some(TOKEN.into());
    c.client.id = "node-host".into();
    c.client.mode = "node".into();
    c.client.display_name = Some("fuzz-node".into());
    c.role = Role::Node;
    c.scopes = Vec::new();
    c.caps = vec!["system".into()];
    c.commands = vec!["system.which".into(), "system.run".into()];
    c.device = Some(node_key());
    c
}

/// Check a client's observations: the gateway never sends what a client cannot parse.
fn assert_well_formed(events: &[Event]) {
    for e in events {
        assert!(
            !matches!(e, Event::ProtocolError(_)),
            "gateway sent a malformed frame: {e:?}"
        );
    }
}

/// Frames after `hello-ok`: an admin operator and a node are connected to a token-mode
/// gateway, then the input is read line by line. A line starting with `o` or `n` is a text
/// frame from the operator or the node (the rest of the line); `t<ms>` advances the clock;
/// `O`/`N` end the operator's or node's socket; `s` shuts the gateway down. Any other line is
/// an operator frame as it stands. Returns what the gateway did.
pub fn frames_after_hello(start: Instant, data: &[u8]) -> Transcript {
    let mut sim = Sim::new(start, fuzz_config(true, false), PairingStore::default());
    let op = sim.open_client(operator_client(), loopback());
    let node = sim.open_client(node_client(), loopback());
    for id in [op, node] {
        let events = sim.events(id);
        assert!(
            events.iter().any(|e| matches!(e, Event::Hello(_))),
            "no hello-ok: {events:?}"
        );
    }
    for line in data.split(|b| *b == b'\n') {
        let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
        match line.split_first() {
            Some((b'o', rest)) => sim.send_text(op, text(rest)),
            Some((b'n', rest)) => sim.send_text(node, text(rest)),
            Some((b't', rest)) => {
                let ms = text(rest)
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(1_000)
                    .min(3_600_000);
                sim.advance(Duration::from_millis(ms));
            }
            Some((b'O', _)) => sim.eof(op),
            Some((b'N', _)) => sim.eof(node),
            Some((b's', _)) => sim.shutdown(),
            _ => sim.send_text(op, text(line)),
        }
        for id in [op, node] {
            assert_well_formed(&sim.events(id));
        }
    }
    sim.transcript
}

/// The pairing-store loaders: any bytes. Input starting with `{` is a legacy JSON file (what
/// the host migrates once); anything else is database rows, one per line, `d` (paired device)
/// or `p` (pending request) then the row's JSON. A store that loads must survive a round trip
/// through its row encoding, serve the pairing lists of a running gateway, and end with the
/// rows the gateway wrote equal to the store it holds.
pub fn pairing_store(start: Instant, data: &[u8]) {
    let loaded = if data.first() == Some(&b'{') {
        PairingStore::load(data)
    } else {
        PairingStore::from_rows(data.split(|b| *b == b'\n').filter_map(|line| {
            let (kind, row) = line.split_first()?;
            let kind = match kind {
                b'd' => RowKind::Device,
                b'p' => RowKind::Pending,
                _ => return None,
            };
            Some((kind, row))
        }))
    };
    let Ok(store) = loaded else {
        return;
    };
    let rows: Vec<(RowKind, String)> = diff(&PairingStore::default(), &store, false)
        .iter()
        .filter_map(|c| c.encoded().map(|(kind, _, row)| (kind, row)))
        .collect();
    let again = PairingStore::from_rows(rows.iter().map(|(k, r)| (*k, r.as_bytes())));
    let again = again.unwrap_or_else(|e| panic!("stored rows do not load back: {e}"));
    assert_eq!(
        (&again.devices, &again.pending),
        (&store.devices, &store.pending),
        "store does not survive a round trip through its rows"
    );
    let _ = (
        store.list(PendingKind::Device),
        store.list(PendingKind::Node),
    );
    let mut sim = Sim::new(start, fuzz_config(false, false), store);
    let op = sim.open_client(operator_client(), loopback());
    let node = sim.open_client(node_client(), loopback());
    for method in [
        "device.pair.list",
        "node.pair.list",
        "node.list",
        "system-presence",
        "status",
    ] {
        let frame = json!({"type": "req", "id": method, "method": method, "params": {}});
        sim.send_text(op, frame.to_string());
    }
    sim.advance(Duration::from_secs(301));
    for id in [op, node] {
        assert_well_formed(&sim.events(id));
    }
    assert_eq!(
        (&sim.disk.devices, &sim.disk.pending),
        (&sim.gw.store().devices, &sim.gw.store().pending),
        "the rows written differ from the gateway's store"
    );
}
