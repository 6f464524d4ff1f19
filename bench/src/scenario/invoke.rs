//! `node.invoke` through the gateway (operator → gateway → node → gateway → operator), and the
//! bare baseline's stand-in for the same two WebSocket hops: a canned answer on one
//! connection, then one on a second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_core::device::DeviceKey;
use clawgate_core::scopes::{self, Role};
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::feed::Feed;
use crate::pool::Pool;
use crate::procs::TOKEN;
use crate::stats::Percentiles;
use crate::wire::{GatewayWire, Note, Wire};

/// The command the benchmark's node declares and answers.
const COMMAND: &str = "bench.echo";
/// Longest wait for one step of the set-up or one invoke.
const STEP: Duration = Duration::from_secs(15);

/// Round trips of `count` `node.invoke` calls (at most `limit` in all), after pairing a node
/// and approving its commands with an admin operator.
pub fn gateway(addr: SocketAddr, count: usize, limit: Duration) -> Result<Percentiles, BenchError> {
    let host = addr.to_string();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| BenchError::Protocol(format!("entropy: {e}")))?;
    let key = DeviceKey::from_seed(seed);
    let node_id = key.id();
    let mut node_cfg = ClientConfig::cli(&host);
    node_cfg.token = Some(TOKEN.into());
    node_cfg.client.id = "node-host".into();
    node_cfg.client.mode = "node".into();
    node_cfg.role = Role::Node;
    node_cfg.scopes = Vec::new();
    node_cfg.commands = vec![COMMAND.into()];
    node_cfg.device = Some(key);
    let mut op_cfg = ClientConfig::cli(&host);
    op_cfg.token = Some(TOKEN.into());
    op_cfg.scopes = vec![scopes::ADMIN.into(), scopes::PAIRING.into()];

    let mut pool: Pool<GatewayWire> = super::pool(addr)?;
    let mut feed = Feed::default();
    let node = open_ready(
        &mut pool,
        &mut feed,
        GatewayWire::new(node_cfg, super::ws_key(1)),
    )?;
    let op = open_ready(
        &mut pool,
        &mut feed,
        GatewayWire::new(op_cfg, super::ws_key(2)),
    )?;

    let list = call(&mut pool, &mut feed, op, node, "node.pair.list", json!({}))?;
    let pending = list
        .get("pending")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for p in pending {
        if let Some(rid) = p.get("requestId").and_then(Value::as_str) {
            call(
                &mut pool,
                &mut feed,
                op,
                node,
                "node.pair.approve",
                json!({"requestId": rid}),
            )?;
        }
    }

    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let run = data_encoding::HEXLOWER.encode(&nonce);
    let end = Instant::now() + limit;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        if Instant::now() >= end {
            break;
        }
        let t = Instant::now();
        let params = json!({"nodeId": node_id, "command": COMMAND, "params": {"i": i},
            "idempotencyKey": format!("bench-{run}-{i}"), "timeoutMs": 10_000});
        call(&mut pool, &mut feed, op, node, "node.invoke", params)?;
        samples.push(t.elapsed());
    }
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

/// Send `method` on `op` and wait for its answer, answering any `node.invoke.request` that
/// reaches `node` meanwhile.
fn call(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    op: usize,
    node: usize,
    method: &str,
    params: Value,
) -> Result<Value, BenchError> {
    let id = pool
        .with(op, |w| w.request(method, params))
        .ok_or_else(|| BenchError::Protocol("operator connection gone".into()))?;
    let deadline = Instant::now() + STEP;
    loop {
        let a = feed.next(pool, deadline, method)?;
        match a.note {
            Note::Response { id: got, result } if a.key == op && got == id => {
                return result.map_err(|e| BenchError::Protocol(format!("{method}: {e}")));
            }
            Note::Event { event, payload } if a.key == node && event == "node.invoke.request" => {
                let answer = json!({
                    "id": payload.get("id").cloned().unwrap_or(Value::Null),
                    "nodeId": payload.get("nodeId").cloned().unwrap_or(Value::Null),
                    "ok": true,
                    "payloadJSON": payload.get("paramsJSON").and_then(Value::as_str).unwrap_or("null"),
                });
                pool.with(node, |w| w.request("node.invoke.result", answer));
            }
            Note::Closed(why) => return Err(BenchError::Protocol(format!("{method}: {why}"))),
            _ => {}
        }
    }
}

/// Round trips of `count` request pairs over two baseline connections (at most `limit`).
pub fn bare(addr: SocketAddr, count: usize, limit: Duration) -> Result<Percentiles, BenchError> {
    let host = addr.to_string();
    let mut pool: Pool<GatewayWire> = super::pool(addr)?;
    let mut feed = Feed::default();
    let a = open_ready(&mut pool, &mut feed, crate::run::gateway_wire(&host, 1))?;
    let b = open_ready(&mut pool, &mut feed, crate::run::gateway_wire(&host, 2))?;
    let end = Instant::now() + limit;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        if Instant::now() >= end {
            break;
        }
        let t = Instant::now();
        hop(&mut pool, &mut feed, a)?;
        hop(&mut pool, &mut feed, b)?;
        samples.push(t.elapsed());
    }
    pool.close_all();
    Ok(Percentiles::of(&samples))
}

/// One request on `key` and its answer.
fn hop(pool: &mut Pool<GatewayWire>, feed: &mut Feed, key: usize) -> Result<(), BenchError> {
    pool.with(key, |w| w.send_probe());
    let deadline = Instant::now() + STEP;
    loop {
        let a = feed.next(pool, deadline, "canned answer")?;
        match a.note {
            Note::Response { .. } if a.key == key => return Ok(()),
            Note::Closed(why) => return Err(BenchError::Protocol(why)),
            _ => {}
        }
    }
}
