//! `clawgate pairing list|approve <channel> …`: channel DM pairing, as upstream's
//! `openclaw pairing`. Both read the state directory's store directly, so they work whether or
//! not the gateway runs. An approval goes through the running gateway when there is one
//! (`channels.pairing.approve`, so it takes effect at once), else into the store itself; the
//! first approval also records the sender as `commands.ownerAllowFrom` in `openclaw.json`.

use std::ffi::OsString;
use std::path::Path;

use clawgate_core::channels::account::Kind;
use clawgate_core::channels::inbound::Target;
use clawgate_core::channels::outbox::Outbox;
use clawgate_core::channels::pairing::{APPROVED_MESSAGE, ChannelPairing, PairingRequest};
use clawgate_core::config::edit::ConfigEdit;
use clawgate_core::dates::iso_time;
use clawgate_core::persist::ChannelRowKind;
use clawgate_host::lock::{self, LockError};
use clawgate_host::paths;
use clawgate_store::Db;
use serde_json::{Map, Value, json};

use super::args::{self, Opt, Parsed, QUERY};
use super::output::print_json;
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use super::{Failure, Outcome};

/// Usage of the group.
pub const USAGE: &[&str] = &[
    "clawgate pairing list [<channel>] [--channel C] [--account A] [--json]",
    "clawgate pairing approve [<channel>] <code> [--channel C] [--account A] [--notify] [QUERY FLAGS]",
];

/// The channels that pair DM senders (every channel clawgate runs; the first is the default).
fn channels() -> Vec<&'static str> {
    Kind::ALL.iter().map(|k| k.id()).collect()
}

/// `pairing <sub> …`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let (sub, rest) = args::subcommand(argv);
    let p = args::parse(
        rest,
        QUERY,
        &[
            Opt::value("channel"),
            Opt::value("account"),
            Opt::switch("notify"),
        ],
    )?;
    let env = paths::env_map();
    let state_dir = paths::state_dir(&env);
    match sub.as_str() {
        "list" => {
            let channel = channel(&p, 1, USAGE[0])?;
            list(&p, &state_dir, &channel)
        }
        "approve" => {
            let channel = channel(&p, 2, USAGE[1])?;
            let code = p.positionals.last().cloned().unwrap_or_default();
            approve(&p, &state_dir, &paths::config_path(&env), &channel, &code)
        }
        other => Err(args::bad_subcommand("pairing", other, USAGE)),
    }
}

/// The channel: `--channel`, else the first of `max` positionals when there are `max`, else
/// the only pairing channel.
fn channel(p: &Parsed, max: usize, usage: &str) -> Result<String, Failure> {
    if p.positionals.len() > max || (max == 2 && p.positionals.is_empty()) {
        return Err(Failure::usage(format!("usage: {usage}")));
    }
    let positional = (p.positionals.len() == max).then(|| p.positionals[0].clone());
    let channel = match (p.value("channel"), positional) {
        (Some(c), Some(pc)) if c != pc => {
            return Err(Failure::usage(format!(
                "Conflicting pairing channels: \"{c}\" and \"{pc}\". Pass the channel either positionally or with --channel."
            )));
        }
        (Some(c), _) => c.to_string(),
        (None, Some(pc)) => pc,
        (None, None) => Kind::Telegram.id().to_string(),
    };
    if !channels().contains(&channel.as_str()) {
        return Err(Failure::usage(format!(
            "channel {channel:?} does not support pairing (supported: {})",
            channels().join(", ")
        )));
    }
    if p.value("account").is_some_and(|a| a.trim().is_empty()) {
        return Err(Failure::usage("--account must not be blank"));
    }
    Ok(channel)
}

/// The store's pairing requests and approvals, and its outbox.
fn load(state_dir: &Path) -> Result<(Db, ChannelPairing, Outbox), Failure> {
    let failed =
        |e: clawgate_store::DbError| Failure::failed(format!("cannot read the store: {e}"));
    let mut db = Db::open(state_dir).map_err(failed)?;
    let mut pairing = ChannelPairing::default();
    let mut outbox = Outbox::default();
    for r in db.load_channel_rows().map_err(failed)? {
        match r.kind {
            ChannelRowKind::PairingRequest | ChannelRowKind::PairingApproval => {
                pairing.restore(r.kind, r.row);
            }
            ChannelRowKind::Outbox => {
                outbox.restore(r.row);
            }
            ChannelRowKind::Ingress | ChannelRowKind::Offset | ChannelRowKind::ExecGrant => {}
        }
    }
    Ok((db, pairing, outbox))
}

fn now_ms() -> u64 {
    clawgate_host::logging::unix_ms()
}

/// The live requests of `channel` (and `--account`), oldest first.
fn requests<'a>(pairing: &'a ChannelPairing, p: &Parsed, channel: &str) -> Vec<&'a PairingRequest> {
    let now = now_ms();
    pairing
        .requests()
        .filter(|r| r.channel == channel && r.expires_at > now)
        .filter(|r| p.value("account").is_none_or(|a| a == r.account_id))
        .collect()
}

/// A request as upstream's `pairing list --json` shows it.
fn shown(r: &PairingRequest) -> Value {
    let mut meta = Map::new();
    if let Value::Object(m) = &r.metadata {
        meta.extend(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    meta.insert("accountId".into(), json!(r.account_id));
    json!({
        "id": r.sender_id,
        "code": r.code,
        "createdAt": iso_time(r.created_at),
        "lastSeenAt": iso_time(r.last_seen_at),
        "meta": meta,
    })
}

fn list(p: &Parsed, state_dir: &Path, channel: &str) -> Outcome {
    let (_db, pairing, _) = load(state_dir)?;
    let found = requests(&pairing, p, channel);
    if p.switch("json") {
        print_json(
            &json!({"channel": channel, "requests": found.iter().map(|r| shown(r)).collect::<Vec<_>>()}),
        );
        return Ok(());
    }
    if found.is_empty() {
        say!("No pending {channel} pairing requests.");
        return Ok(());
    }
    say!("Pairing requests ({})", found.len());
    say!(
        "{:<10}  {:<14}  {:<10}  REQUESTED",
        "CODE",
        "USER ID",
        "ACCOUNT"
    );
    for r in found {
        say!(
            "{:<10}  {:<14}  {:<10}  {}",
            r.code,
            r.sender_id,
            r.account_id,
            iso_time(r.created_at)
        );
    }
    Ok(())
}

fn approve(p: &Parsed, state_dir: &Path, config_path: &Path, channel: &str, code: &str) -> Outcome {
    let (mut db, mut pairing, mut outbox) = load(state_dir)?;
    let Some(request) = requests(&pairing, p, channel)
        .into_iter()
        .find(|r| r.code.eq_ignore_ascii_case(code.trim()))
        .cloned()
    else {
        return Err(Failure::failed(format!(
            "No pending pairing request found for code \"{code}\". Run `clawgate pairing list --channel {channel}` to list pending requests."
        )));
    };
    let notify = p.switch("notify");
    match lock::acquire(&paths::lock_file(state_dir), "clawgate pairing approve") {
        Ok(_held) => {
            // No gateway runs on this state directory: write the approval into the store.
            let now = now_ms();
            let mut changes = Vec::new();
            pairing.approve(&request.request_id, now, &mut changes);
            if notify {
                let target = Target {
                    channel: request.channel.clone(),
                    account: request.account_id.clone(),
                    to: request.chat_id.clone(),
                    thread: None,
                };
                outbox.push(
                    target,
                    vec![APPROVED_MESSAGE.into()],
                    None,
                    now,
                    &mut changes,
                );
            }
            db.apply(&changes)
                .map_err(|e| Failure::failed(format!("cannot write the store: {e}")))?;
        }
        Err(LockError::Held(_)) => {
            // The running gateway approves it, so it takes effect at once.
            let params = json!({
                "channel": channel, "accountId": request.account_id,
                "requestId": request.request_id, "notify": notify,
            });
            let scopes = vec![clawgate_core::scopes::PAIRING.to_string()];
            rpc::open(p, scopes, DEFAULT_TIMEOUT_MS)?
                .call_once("channels.pairing.approve", Some(params))?;
        }
        Err(LockError::Io(e)) => {
            return Err(Failure::failed(format!(
                "cannot check whether the gateway runs: {e}"
            )));
        }
    }
    say!("Approved {channel} sender {}.", request.sender_id);
    let owner = format!("{channel}:{}", request.sender_id);
    if bootstrap_owner(config_path, &owner)? {
        say!("Command owner configured {owner} (commands.ownerAllowFrom was empty).");
    }
    Ok(())
}

/// Record `owner` as `commands.ownerAllowFrom` when it is empty; whether it was written.
fn bootstrap_owner(config_path: &Path, owner: &str) -> Result<bool, Failure> {
    let change = ConfigEdit::BootstrapOwner(owner.to_string());
    clawgate_host::config_file::edit(config_path, &change)
        .map(|e| e.changed)
        .map_err(Failure::failed)
}
