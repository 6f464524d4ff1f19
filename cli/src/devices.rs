//! `clawgate devices list|approve|reject|revoke|rotate`: the gateway's device pairing, over
//! `device.pair.*` and `device.token.*`.

use std::ffi::OsString;

use serde_json::{Value, json};

use super::args::{self, Opt, Parsed, QUERY};
use super::output::{field, list, print_json, short_id, table};
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use super::{Outcome, scopes};
use clawgate_core::scopes::ADMIN;

/// Usage of the group.
pub const USAGE: &[&str] = &[
    "clawgate devices list [QUERY FLAGS]",
    "clawgate devices approve <requestId> [QUERY FLAGS]",
    "clawgate devices reject <requestId> [QUERY FLAGS]",
    "clawgate devices revoke --device <deviceId> --role <role> [QUERY FLAGS]",
    "clawgate devices rotate --device <deviceId> --role <role> [QUERY FLAGS]",
];

/// `devices <sub> …`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let (sub, rest) = args::subcommand(argv);
    let p = args::parse(rest, QUERY, &[Opt::value("device"), Opt::value("role")])?;
    match sub.as_str() {
        "list" => {
            p.expect_positionals(0, USAGE[0])?;
            let v = rpc::call(&p, "device.pair.list", Some(json!({})), DEFAULT_TIMEOUT_MS)?;
            show(&p, &v, print_list)
        }
        "approve" | "reject" => {
            let usage = if sub == "approve" { USAGE[1] } else { USAGE[2] };
            p.expect_positionals(1, usage)?;
            let id = p.positionals.first().cloned().unwrap_or_default();
            let v = rpc::call(
                &p,
                &format!("device.pair.{sub}"),
                Some(json!({"requestId": id})),
                DEFAULT_TIMEOUT_MS,
            )?;
            show(&p, &v, |v| {
                let device = v
                    .get("device")
                    .map_or_else(|| field(v, "deviceId"), |d| field(d, "deviceId"));
                say!(
                    "{} request {id} (device {device})",
                    if sub == "approve" {
                        "Approved"
                    } else {
                        "Rejected"
                    }
                );
            })
        }
        "revoke" | "rotate" => {
            let usage = if sub == "revoke" { USAGE[3] } else { USAGE[4] };
            p.expect_positionals(0, usage)?;
            let role = p.required("role", usage)?;
            let params = json!({"deviceId": p.required("device", usage)?, "role": role});
            let method = format!("device.token.{sub}");
            // Tokens of roles other than operator (a node's) need admin too, as upstream.
            let mut wanted = scopes::for_method(&method);
            if role != "operator" {
                wanted.push(ADMIN.into());
            }
            let v = rpc::open(&p, wanted, DEFAULT_TIMEOUT_MS)?.call_once(&method, Some(params))?;
            show(&p, &v, |v| match sub.as_str() {
                "revoke" => say!(
                    "Revoked the {} token of device {}",
                    field(v, "role"),
                    field(v, "deviceId")
                ),
                _ => say!(
                    "Rotated the {} token of device {}: {}",
                    field(v, "role"),
                    field(v, "deviceId"),
                    field(v, "token")
                ),
            })
        }
        other => Err(args::bad_subcommand("devices", other, USAGE)),
    }
}

/// Print `v` as JSON under `--json`, else with `human`.
pub fn show(p: &Parsed, v: &Value, human: impl FnOnce(&Value)) -> Outcome {
    if p.switch("json") {
        print_json(v)
    } else {
        human(v)
    }
    Ok(())
}

fn print_list(v: &Value) {
    let pending = list(v, "pending");
    let paired = list(v, "paired");
    say!("Pending ({}):", pending.len());
    if !pending.is_empty() {
        let mut rows = vec![
            [
                "REQUEST", "DEVICE", "CLIENT", "PLATFORM", "ROLES", "SCOPES", "FROM",
            ]
            .map(String::from)
            .to_vec(),
        ];
        rows.extend(pending.iter().map(|r| {
            vec![
                field(r, "requestId"),
                short_id(&field(r, "deviceId")),
                format!("{}/{}", field(r, "clientId"), field(r, "clientMode")),
                field(r, "platform"),
                field(r, "roles"),
                field(r, "scopes"),
                field(r, "remoteIp"),
            ]
        }));
        table(&rows);
        say!("Approve with: clawgate devices approve <REQUEST>");
    }
    say!("Paired ({}):", paired.len());
    if !paired.is_empty() {
        let mut rows = vec![
            ["DEVICE", "NAME", "CLIENT", "ROLES", "SCOPES"]
                .map(String::from)
                .to_vec(),
        ];
        rows.extend(paired.iter().map(|d| {
            vec![
                field(d, "deviceId"),
                field(d, "displayName"),
                format!("{}/{}", field(d, "clientId"), field(d, "clientMode")),
                field(d, "roles"),
                field(d, "scopes"),
            ]
        }));
        table(&rows);
    }
}
