//! `clawgate nodes list|pending|approve|invoke`: the nodes connected to the gateway, their
//! pairing, and running a command on one (`node.invoke` with a fresh idempotency key).

use std::ffi::OsString;

use serde_json::{Value, json};

use super::args::{self, Opt, QUERY};
use super::devices::show;
use super::output::{field, print_json, short_id, table};
use super::query::parse_params;
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use super::{Failure, Outcome};

/// Usage of the group.
pub const USAGE: &[&str] = &[
    "clawgate nodes list [QUERY FLAGS]",
    "clawgate nodes pending [QUERY FLAGS]",
    "clawgate nodes approve <requestId> [QUERY FLAGS]",
    "clawgate nodes invoke --node <nodeId> --command <cmd> [--params JSON] [--invoke-timeout MS] [QUERY FLAGS]",
];

/// Extra time the whole command gets beyond `--invoke-timeout`, for connecting and answering.
const INVOKE_SLACK_MS: u64 = 5_000;

/// `nodes <sub> …`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let mut it = argv.into_iter();
    let sub = it
        .next()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default();
    let extra = [
        Opt::value("node"),
        Opt::value("command"),
        Opt::value("params"),
        Opt::value("invoke-timeout"),
    ];
    let p = args::parse(it.collect(), QUERY, &extra)?;
    match sub.as_str() {
        "list" => {
            p.expect_positionals(0, USAGE[0])?;
            let v = rpc::call(&p, "node.list", Some(json!({})), DEFAULT_TIMEOUT_MS)?;
            show(&p, &v, print_nodes)
        }
        "pending" => {
            p.expect_positionals(0, USAGE[1])?;
            let v = rpc::call(&p, "node.pair.list", Some(json!({})), DEFAULT_TIMEOUT_MS)?;
            show(&p, &v, print_pending)
        }
        "approve" => {
            p.expect_positionals(1, USAGE[2])?;
            let id = p.positionals.first().cloned().unwrap_or_default();
            let v = rpc::call(
                &p,
                "node.pair.approve",
                Some(json!({"requestId": id})),
                DEFAULT_TIMEOUT_MS,
            )?;
            show(&p, &v, |v| {
                let node = v.get("node").cloned().unwrap_or(Value::Null);
                println!(
                    "Approved request {id}: node {} ({}), commands {}",
                    field(&node, "nodeId"),
                    field(&node, "displayName"),
                    field(&node, "commands")
                );
            })
        }
        "invoke" => {
            p.expect_positionals(0, USAGE[3])?;
            let mut params = json!({
                "nodeId": p.required("node", USAGE[3])?,
                "command": p.required("command", USAGE[3])?,
                "idempotencyKey": idempotency_key(),
            });
            if let Some(v) = parse_params(p.value("params"))? {
                params["params"] = v;
            }
            let invoke_ms = p.number("invoke-timeout")?;
            if let Some(ms) = invoke_ms {
                params["timeoutMs"] = json!(ms);
            }
            let overall = invoke_ms.map_or(DEFAULT_TIMEOUT_MS, |ms| {
                DEFAULT_TIMEOUT_MS.max(ms + INVOKE_SLACK_MS)
            });
            let v = rpc::call(&p, "node.invoke", Some(params), overall)?;
            show(&p, &v, |v| print_json(v.get("payload").unwrap_or(v)))
        }
        "" => Err(Failure::usage(format!(
            "nodes needs a subcommand\nusage:\n  {}",
            USAGE.join("\n  ")
        ))),
        other => Err(Failure::usage(format!(
            "unknown nodes subcommand {other:?}\nusage:\n  {}",
            USAGE.join("\n  ")
        ))),
    }
}

/// A fresh idempotency key: 16 random bytes, hex.
fn idempotency_key() -> String {
    clawgate::entropy::random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn print_nodes(v: &Value) {
    let nodes = v
        .get("nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!("Nodes ({}):", nodes.len());
    if nodes.is_empty() {
        return;
    }
    let mut rows = vec![
        [
            "NODE",
            "NAME",
            "PLATFORM",
            "CONNECTED",
            "APPROVAL",
            "COMMANDS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(nodes.iter().map(|n| {
        vec![
            short_id(&field(n, "nodeId")),
            field(n, "displayName"),
            field(n, "platform"),
            field(n, "connected"),
            field(n, "approvalState"),
            field(n, "commands"),
        ]
    }));
    table(&rows);
}

fn print_pending(v: &Value) {
    let pending = v
        .get("pending")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!("Pending node approvals ({}):", pending.len());
    if pending.is_empty() {
        return;
    }
    let mut rows = vec![
        ["REQUEST", "NODE", "NAME", "COMMANDS", "NEEDS"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(pending.iter().map(|r| {
        vec![
            field(r, "requestId"),
            short_id(&field(r, "nodeId")),
            field(r, "displayName"),
            field(r, "commands"),
            field(r, "requiredApproveScopes"),
        ]
    }));
    table(&rows);
    println!("Approve with: clawgate nodes approve <REQUEST>");
}

#[cfg(test)]
mod tests {
    #[test]
    fn idempotency_keys_are_fresh_hex() {
        let (a, b) = (super::idempotency_key(), super::idempotency_key());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
