//! `node.invoke` round trips (operator → server → node → server → operator, each hop starting
//! when the one before it has arrived): through the gateway, and through the bare baseline's
//! relay of the same frames ([`crate::bare`]). Both are timed with the load generator and the
//! server on one CPU ([`OneCpu`]), so every hop is a context switch and not a wake-up of
//! another CPU, whose cost is the host's and not the server's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_core::device::DeviceKey;
use clawgate_core::scopes::{self, Role};
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::feed::Feed;
use crate::one_cpu::OneCpu;
use crate::pool::Pool;
use crate::procs::TOKEN;
use crate::stats::Percentiles;
use crate::wire::{GatewayWire, Note, Wire};

/// The command the benchmark's node declares and answers.
pub const COMMAND: &str = "bench.echo";
/// Longest wait for one step of the set-up or one invoke.
const STEP: Duration = Duration::from_secs(15);

/// The benchmark's node at `host`: `node-host`/`node` with the bench token, declaring
/// [`COMMAND`], signed with `key`.
pub fn node_config(host: &str, key: DeviceKey) -> ClientConfig {
    let mut cfg = ClientConfig::cli(host);
    cfg.token = Some(TOKEN.into());
    cfg.client.id = "node-host".into();
    cfg.client.mode = "node".into();
    cfg.role = Role::Node;
    cfg.scopes = Vec::new();
    cfg.commands = vec![COMMAND.into()];
    cfg.device = Some(key);
    cfg
}

/// The benchmark's operator at `host`: `cli` with the bench token, admin (for `node.invoke`
/// and the node's approval).
pub fn operator_config(host: &str) -> ClientConfig {
    let mut cfg = ClientConfig::cli(host);
    cfg.token = Some(TOKEN.into());
    cfg.scopes = vec![scopes::ADMIN.into(), scopes::PAIRING.into()];
    cfg
}

/// The node's `node.invoke.result` params for the `node.invoke.request` payload `request`:
/// its params echoed.
pub fn echo(request: &Value) -> Value {
    json!({
        "id": request.get("id").cloned().unwrap_or(Value::Null),
        "nodeId": request.get("nodeId").cloned().unwrap_or(Value::Null),
        "ok": true,
        "payloadJSON": request.get("paramsJSON").and_then(Value::as_str).unwrap_or("null"),
    })
}

/// Round trips of `count` `node.invoke` calls through the gateway at `addr` (at most `limit`
/// in all), after pairing a node and approving its commands with an admin operator; `server`
/// is the gateway's process.
pub fn gateway(
    addr: SocketAddr,
    server: u32,
    count: usize,
    limit: Duration,
) -> Result<Percentiles, BenchError> {
    let (mut pool, mut feed, peers) = open_pair(addr)?;
    let list = call(&mut pool, &mut feed, &peers, "node.pair.list", json!({}))?;
    let pending = list
        .get("pending")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for p in pending {
        if let Some(rid) = p.get("requestId").and_then(Value::as_str) {
            let approve = json!({"requestId": rid});
            call(&mut pool, &mut feed, &peers, "node.pair.approve", approve)?;
        }
    }
    timed(&mut pool, &mut feed, &peers, server, count, limit)
}

/// The same round trips through the bare baseline's relay at `addr` (process `server`): it
/// forwards the operator's `node.invoke` to the node as the gateway's captured event and the
/// node's result back as the gateway's captured answer, with no pairing and no checks.
pub fn bare(
    addr: SocketAddr,
    server: u32,
    count: usize,
    limit: Duration,
) -> Result<Percentiles, BenchError> {
    let (mut pool, mut feed, peers) = open_pair(addr)?;
    timed(&mut pool, &mut feed, &peers, server, count, limit)
}

/// The operator's and the node's connections, and the node's id.
struct Peers {
    op: usize,
    node: usize,
    node_id: String,
}

/// A node (with a fresh device key) and an admin operator connected to `addr`, both ready.
fn open_pair(addr: SocketAddr) -> Result<(Pool<GatewayWire>, Feed, Peers), BenchError> {
    let host = addr.to_string();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| BenchError::Protocol(format!("entropy: {e}")))?;
    let key = DeviceKey::from_seed(seed);
    let node_id = key.id();
    let mut pool: Pool<GatewayWire> = super::pool(addr)?;
    let mut feed = Feed::default();
    let node_wire = GatewayWire::new(node_config(&host, key), super::ws_key(1));
    let node = open_ready(&mut pool, &mut feed, node_wire)?;
    let op_wire = GatewayWire::new(operator_config(&host), super::ws_key(2));
    let op = open_ready(&mut pool, &mut feed, op_wire)?;
    Ok((pool, feed, Peers { op, node, node_id }))
}

/// `count` sequential `node.invoke` calls (at most `limit` in all), the load generator and
/// process `server` on one CPU meanwhile.
fn timed(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    peers: &Peers,
    server: u32,
    count: usize,
    limit: Duration,
) -> Result<Percentiles, BenchError> {
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let run = data_encoding::HEXLOWER.encode(&nonce);
    let pinned = OneCpu::pin(server)?;
    let end = Instant::now() + limit;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        if Instant::now() >= end {
            break;
        }
        let t = Instant::now();
        let params = json!({"nodeId": &peers.node_id, "command": COMMAND, "params": {"i": i},
            "idempotencyKey": format!("bench-{run}-{i}"), "timeoutMs": 10_000});
        call(pool, feed, peers, "node.invoke", params)?;
        samples.push(t.elapsed());
    }
    drop(pinned);
    pool.close_all();
    Ok(Percentiles::of(&samples))
}

/// Open one connection and wait until it is ready.
fn open_ready<W: Wire>(pool: &mut Pool<W>, feed: &mut Feed, wire: W) -> Result<usize, BenchError> {
    let key = pool
        .open(wire)
        .map_err(|e| BenchError::Protocol(format!("connect: {e}")))?;
    let deadline = Instant::now() + STEP;
    loop {
        let a = feed.next(pool, deadline, "handshake")?;
        match a.note {
            Note::Ready if a.key == key => return Ok(key),
            Note::Closed(why) if a.key == key => return Err(BenchError::Protocol(why)),
            _ => {}
        }
    }
}

/// Send `method` on the operator's connection and wait for the answer to that request,
/// answering any `node.invoke.request` that reaches the node meanwhile ([`echo`]).
fn call(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    peers: &Peers,
    method: &str,
    params: Value,
) -> Result<Value, BenchError> {
    let id = pool
        .with(peers.op, |w| w.request(method, params))
        .ok_or_else(|| BenchError::Protocol("operator connection gone".into()))?;
    let deadline = Instant::now() + STEP;
    loop {
        let a = feed.next(pool, deadline, method)?;
        match a.note {
            Note::Response { id: got, result } if a.key == peers.op && got == id => {
                return result.map_err(|e| BenchError::Protocol(format!("{method}: {e}")));
            }
            Note::Event { event, payload }
                if a.key == peers.node && event == "node.invoke.request" =>
            {
                pool.with(peers.node, |w| {
                    w.request("node.invoke.result", echo(&payload))
                });
            }
            Note::Closed(why) => return Err(BenchError::Protocol(format!("{method}: {why}"))),
            _ => {}
        }
    }
}
