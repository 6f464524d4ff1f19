//! `clawgate nodes list|pending|approve|invoke`: the nodes connected to the gateway, their
//! pairing, and running a command on one (`node.invoke` with a fresh idempotency key).

use std::ffi::OsString;

use serde_json::{Value, json};

use super::Outcome;
use super::args::{self, Opt, QUERY};
use super::devices::show;
use super::output::{count_list, field, list, print_json, short_id, table};
use super::query::parse_params;
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use clawgate_core::scopes::{PAIRING, READ};

/// Usage of the group.
pub const USAGE: &[&str] = &[
    "clawgate nodes list [QUERY FLAGS]",
    "clawgate nodes status [QUERY FLAGS]",
    "clawgate nodes pending [QUERY FLAGS]",
    "clawgate nodes approve <requestId> [QUERY FLAGS]",
    "clawgate nodes invoke --node <nodeId> --command <cmd> [--params JSON] [--invoke-timeout MS] [QUERY FLAGS]",
];

/// Extra time the whole command gets beyond `--invoke-timeout`, for connecting and answering.
const INVOKE_SLACK_MS: u64 = 5_000;

/// `nodes <sub> …`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let (sub, rest) = args::subcommand(argv);
    let extra = [
        Opt::value("node"),
        Opt::value("command"),
        Opt::value("params"),
        Opt::value("invoke-timeout"),
    ];
    let p = args::parse(rest, QUERY, &extra)?;
    match sub.as_str() {
        "list" => {
            p.expect_positionals(0, USAGE[0])?;
            let mut open = rpc::open(&p, vec![PAIRING.into(), READ.into()], DEFAULT_TIMEOUT_MS)?;
            let pairing = open.call("node.pair.list", Some(json!({})));
            let live = pairing
                .as_ref()
                .ok()
                .map(|_| open.call("node.list", Some(json!({}))));
            open.session.close();
            let v = merged_list(&pairing?, &live.transpose()?.unwrap_or(Value::Null));
            show(&p, &v, print_list)
        }
        "status" => {
            p.expect_positionals(0, USAGE[1])?;
            let v = rpc::call(&p, "node.list", Some(json!({})), DEFAULT_TIMEOUT_MS)?;
            show(&p, &v, print_nodes)
        }
        "pending" => {
            p.expect_positionals(0, USAGE[2])?;
            let v = rpc::call(&p, "node.pair.list", Some(json!({})), DEFAULT_TIMEOUT_MS)?;
            let pending = v.get("pending").cloned().unwrap_or_else(|| json!([]));
            show(&p, &pending, print_pending)
        }
        "approve" => {
            p.expect_positionals(1, USAGE[3])?;
            let id = p.positionals.first().cloned().unwrap_or_default();
            let v = rpc::call(
                &p,
                "node.pair.approve",
                Some(json!({"requestId": id})),
                DEFAULT_TIMEOUT_MS,
            )?;
            show(&p, &v, |v| {
                let node = v.get("node").cloned().unwrap_or(Value::Null);
                say!(
                    "Approved request {id}: node {} ({}), commands {}",
                    field(&node, "nodeId"),
                    field(&node, "displayName"),
                    count_list(&node, "commands")
                );
            })
        }
        "invoke" => {
            p.expect_positionals(0, USAGE[4])?;
            let mut params = json!({
                "nodeId": p.required("node", USAGE[4])?,
                "command": p.required("command", USAGE[4])?,
                "idempotencyKey": idempotency_key(),
            });
            if let Some(v) = parse_params(p.value("params"))? {
                params["params"] = v;
            }
            let invoke_ms = p.millis("invoke-timeout")?;
            if let Some(ms) = invoke_ms {
                params["timeoutMs"] = json!(ms);
            }
            let overall = invoke_ms.map_or(DEFAULT_TIMEOUT_MS, |ms| {
                DEFAULT_TIMEOUT_MS.max(ms.saturating_add(INVOKE_SLACK_MS))
            });
            let v = rpc::call(&p, "node.invoke", Some(params), overall)?;
            show(&p, &v, |v| print_json(v.get("payload").unwrap_or(v)))
        }
        other => Err(args::bad_subcommand("nodes", other, USAGE)),
    }
}

/// A fresh idempotency key: 16 random bytes, hex.
fn idempotency_key() -> String {
    clawgate_host::entropy::random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn print_nodes(v: &Value) {
    let nodes = list(v, "nodes");
    say!("Nodes ({}):", nodes.len());
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
            count_list(n, "commands"),
        ]
    }));
    table(&rows);
}

/// Upstream's `nodes list`: pending requests, and paired nodes merged with their live view
/// from `node.list` (live fields win; the pairing's `createdAtMs` stays; tokens never shown).
pub fn merged_list(pairing: &Value, live: &Value) -> Value {
    let paired = list(pairing, "paired");
    let id = |n: &Value| n.get("nodeId").and_then(Value::as_str).map(str::to_string);
    let mut rows = Vec::new();
    let mut seen = Vec::new();
    for effective in list(live, "nodes") {
        let stored = paired
            .iter()
            .find(|p| id(p).is_some() && id(p) == id(&effective));
        if stored.is_none() && effective.get("paired") != Some(&Value::Bool(true)) {
            continue;
        }
        let mut row = stored.cloned().unwrap_or_else(|| json!({}));
        if let (Some(row), Some(live)) = (row.as_object_mut(), effective.as_object()) {
            let created = row.get("createdAtMs").cloned();
            row.extend(live.clone());
            match created {
                Some(c) => row.insert("createdAtMs".into(), c),
                None => row.remove("createdAtMs"),
            };
        }
        seen.extend(id(&effective));
        rows.push(row);
    }
    rows.extend(
        paired
            .into_iter()
            .filter(|p| id(p).is_none_or(|i| !seen.contains(&i))),
    );
    for r in rows.iter_mut().filter_map(Value::as_object_mut) {
        r.remove("token");
    }
    json!({"pending": list(pairing, "pending"), "paired": rows})
}

fn print_list(v: &Value) {
    print_pending(v.get("pending").unwrap_or(&Value::Null));
    let paired = v.get("paired").cloned().unwrap_or(Value::Null);
    print_nodes(&json!({"nodes": paired}));
}

fn print_pending(pending: &Value) {
    let pending = pending.as_array().cloned().unwrap_or_default();
    say!("Pending node approvals ({}):", pending.len());
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
            count_list(r, "commands"),
            field(r, "requiredApproveScopes"),
        ]
    }));
    table(&rows);
    say!("Approve with: clawgate nodes approve <REQUEST>");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn list_merges_paired_and_live_views_as_upstream() {
        let pairing = json!({
            "pending": [{"requestId": "r1", "nodeId": "n3"}],
            "paired": [
                {"nodeId": "n1", "displayName": "old", "createdAtMs": 5, "token": "secret"},
                {"nodeId": "n2", "displayName": "offline", "createdAtMs": 6},
            ],
        });
        let live = json!({"ts": 1, "nodes": [
            {"nodeId": "n1", "displayName": "new", "connected": true, "createdAtMs": 99},
            {"nodeId": "n3", "connected": true, "paired": false},
            {"nodeId": "n4", "connected": false, "paired": true},
        ]});
        let v = super::merged_list(&pairing, &live);
        assert_eq!(v["pending"], pairing["pending"]);
        assert_eq!(
            v["paired"],
            json!([
                {"nodeId": "n1", "displayName": "new", "connected": true, "createdAtMs": 5},
                {"nodeId": "n4", "connected": false, "paired": true},
                {"nodeId": "n2", "displayName": "offline", "createdAtMs": 6},
            ])
        );
        assert_eq!(
            super::merged_list(&pairing, &serde_json::Value::Null)["paired"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn idempotency_keys_are_fresh_hex() {
        let (a, b) = (super::idempotency_key(), super::idempotency_key());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
