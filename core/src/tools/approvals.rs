//! Exec approvals beyond the operators' WS methods: the `/approve` command a chat sends
//! (parsed as upstream's `commands-approve`), the pending-approval message posted to the chat
//! a turn came from (upstream's `buildExecApprovalPendingReplyPayload` text), who may
//! approve from a chat (a sender listed in `commands.ownerAllowFrom`), and the persistent
//! `allow-always` grants (upstream's generated allowlist entries: `source: "allow-always"`,
//! bound to the exact command text and working directory), kept in the store.

use std::collections::BTreeMap;

use crate::digest::sha256_hex;
use serde_json::{Value, json};

use crate::persist::{ChannelRowKind, RowText, StoreChange};

/// Resolutions remembered after the fact, so a late second answer is told the request was
/// already resolved rather than that it never existed.
pub(crate) const RESOLVED_KEPT: usize = 64;

/// Upstream's answer to a malformed `/approve`.
pub(crate) const USAGE: &str =
    "Usage: /approve <id> <decision> (see the pending approval message for available decisions)";

/// What a chat message asks of the approvals, when it is an `/approve` command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ApproveCommand {
    /// Resolve approval `id` with `decision` (`allow-once`, `allow-always` or `deny`).
    Resolve {
        /// The approval's id as the pending message gave it.
        id: String,
        /// The canonical decision.
        decision: &'static str,
    },
    /// `/approve` without an id and a decision: answered with [`USAGE`].
    Usage,
}

/// A decision word as upstream accepts it (its aliases included).
fn decision(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().as_str() {
        "allow" | "once" | "allow-once" | "allowonce" => Some("allow-once"),
        "always" | "allow-always" | "allowalways" => Some("allow-always"),
        "deny" | "reject" | "block" => Some("deny"),
        _ => None,
    }
}

/// `text` as an `/approve` command (`/approve <id> <decision>` or `/approve <decision> <id>`,
/// `/approve@bot` too); `None` when it is not one.
pub(crate) fn parse_approve(text: &str) -> Option<ApproveCommand> {
    let rest = text.trim().strip_prefix('/')?;
    let (command, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = command.split_once('@').map_or(command, |(n, _)| n);
    if !name.eq_ignore_ascii_case("approve") {
        return None;
    }
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let resolve = |id: String, decision: &'static str| ApproveCommand::Resolve { id, decision };
    Some(match tokens.as_slice() {
        [first, second, more @ ..] => match (decision(first), decision(second)) {
            (Some(d), _) => {
                let id: Vec<&str> = std::iter::once(*second)
                    .chain(more.iter().copied())
                    .collect();
                resolve(id.join(" "), d)
            }
            (None, Some(d)) => resolve((*first).to_string(), d),
            (None, None) => ApproveCommand::Usage,
        },
        _ => ApproveCommand::Usage,
    })
}

/// `text` in a fenced block, as upstream's `formatFencedCodeBlock` (a fence longer than any
/// backtick run inside).
fn fenced(text: &str, language: &str) -> String {
    let longest = text
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}{language}\n{text}\n{fence}")
}

/// Seconds as upstream's `formatExecApprovalExpiresIn` writes them (`45s`, `2m 30s`, `1h`).
fn expires_in(total: u64) -> String {
    if total < 60 {
        return format!("{total}s");
    }
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if hours == 0 && minutes < 5 && seconds > 0 {
        parts.push(format!("{seconds}s"));
    }
    parts.join(" ")
}

/// The message posted to the chat a turn came from when its command needs approval.
pub(crate) fn pending_text(
    id: &str,
    command: &str,
    cwd: Option<&str>,
    expires_secs: u64,
) -> String {
    let line = |d: &str| format!("/approve {id} {d}");
    let mut info = vec!["Host: gateway".to_string()];
    if let Some(cwd) = cwd {
        info.push(format!("CWD: {cwd}"));
    }
    info.push(format!("Expires in: {}", expires_in(expires_secs)));
    info.push(format!("Full id: `{id}`"));
    [
        "Approval required.".to_string(),
        "Run:".into(),
        fenced(&line("allow-once"), "txt"),
        "Pending command:".into(),
        fenced(command, "sh"),
        "Other options:".into(),
        fenced(
            &format!("{}\n{}", line("allow-always"), line("deny")),
            "txt",
        ),
        info.join("\n"),
    ]
    .join("\n\n")
}

/// Whether `sender` of `channel` is the gateway's owner: listed in `commands.ownerAllowFrom`
/// in a form that channel's upstream plugin reads as that user (a wildcard names no owner).
pub(crate) fn is_owner(owner_allow_from: &[String], channel: &str, sender: &str) -> bool {
    let sender = match channel {
        "slack" => sender.to_ascii_uppercase(),
        _ => sender.to_string(),
    };
    owner_allow_from
        .iter()
        .any(|entry| owner_id(channel, entry.trim()).is_some_and(|id| id == sender))
}

/// The user `entry` of `commands.ownerAllowFrom` names on `channel`: upstream's Slack
/// (`normalizeSlackApproverId`) and Discord (`resolveDiscordCommandOwnerEntries`,
/// `normalizeDiscordApproverId`) readings, otherwise `<channel>:<id>` or the bare id; `None`
/// for a wildcard, another channel's entry or no user.
fn owner_id(channel: &str, entry: &str) -> Option<String> {
    match channel {
        "slack" => slack_owner(entry),
        "discord" => discord_owner(entry),
        _ => match entry.split_once(':') {
            Some((c, id)) => c.eq_ignore_ascii_case(channel).then(|| id.to_string()),
            None => (entry != "*").then(|| entry.to_string()),
        },
    }
}

/// A Slack user as upstream reads an approver: `U123`, `user:U123`, `slack:U123`, `<@U123>`
/// or `@U123`, any case; a user id starts with `U` or `W`.
fn slack_owner(entry: &str) -> Option<String> {
    let id = if let Some(inner) = entry.strip_prefix("<@").and_then(|e| e.strip_suffix('>')) {
        inner
    } else if let Some(id) = ["user:", "slack:", "@"]
        .iter()
        .find_map(|p| entry.strip_prefix(p))
    {
        id.trim()
    } else {
        entry
    };
    let id = id.to_ascii_uppercase();
    let mut chars = id.chars();
    let user = matches!(chars.next(), Some('U' | 'W')) && chars.all(|c| c.is_ascii_alphanumeric());
    user.then_some(id)
}

/// A Discord user as upstream reads a command owner: a snowflake, `discord:<id>`,
/// `user:<id>`, `<@id>`, `<@!id>` or `@id` (`discord:user:<id>` and other channels' entries
/// are skipped, as upstream skips them).
fn discord_owner(entry: &str) -> Option<String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(entry) {
        return Some(entry.to_string());
    }
    let mention = entry
        .strip_prefix("<@")
        .and_then(|e| e.strip_suffix('>'))
        .map(|e| e.strip_prefix('!').unwrap_or(e));
    let id = match mention {
        Some(id) => id,
        None => ["user:", "discord:"]
            .iter()
            .find_map(|p| entry.strip_prefix(p))
            .filter(|id| !id.starts_with("user:") && !id.starts_with("channel:"))
            .map(str::trim)
            .or_else(|| entry.strip_prefix('@'))?,
    };
    digits(id).then(|| id.to_string())
}

/// The `allow-always` grants: upstream's generated allowlist entries for agent `main`, one
/// per exact command text and working directory, with the store changes not yet written.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    /// Entry by its key ([`grant_key`]).
    entries: BTreeMap<String, Value>,
    unsaved: Vec<StoreChange>,
}

/// The key a grant is stored and matched under: upstream's cwd-bound argv pattern
/// (`sha256:cwd-argv:v1:`) over the argv the command runs as (`sh -c <command>`).
fn grant_key(command: &str, cwd: Option<&str>) -> String {
    let cwd = cwd.unwrap_or_default();
    let args = ["-c", command.trim()];
    let argv: String = args.iter().map(|a| format!("{}\0{a}\0", a.len())).collect();
    let subject = format!("{}\0{cwd}\0{}\0{argv}", cwd.len(), args.len());
    format!("sha256:cwd-argv:v1:{}", sha256_hex(subject.as_bytes()))
}

impl Grants {
    /// Whether `command` in `cwd` was allowed always.
    pub(crate) fn allows(&self, command: &str, cwd: Option<&str>) -> bool {
        self.entries.contains_key(&grant_key(command, cwd))
    }

    /// Allow `command` in `cwd` always, from now (`now_ms`), under entry id `id`.
    pub(crate) fn add(&mut self, command: &str, cwd: Option<&str>, id: String, now_ms: u64) {
        let key = grant_key(command, cwd);
        let digest = sha256_hex(command.trim().as_bytes());
        let entry = json!({
            "id": id,
            "pattern": format!("=command:{}", digest.get(..16).unwrap_or(&digest)),
            "argPattern": key,
            "source": "allow-always",
            "lastUsedAt": now_ms,
        });
        self.unsaved.push(StoreChange::PutChannelRow {
            kind: ChannelRowKind::ExecGrant,
            key: key.clone(),
            row: RowText::of_value(&entry),
        });
        self.entries.insert(key, entry);
    }

    /// Load a stored grant; `false` when it does not decode.
    pub(crate) fn restore(&mut self, key: String, row: Value) -> bool {
        let ok = row["source"] == "allow-always" && row["argPattern"] == key.as_str();
        if ok {
            self.entries.insert(key, row);
        }
        ok
    }

    /// The grants as upstream's approvals document lists them (`agents.main.allowlist`).
    pub(crate) fn allowlist(&self) -> Vec<Value> {
        self.entries.values().cloned().collect()
    }

    /// The store changes for the next batch.
    pub(crate) fn store_changes(&mut self) -> Vec<StoreChange> {
        std::mem::take(&mut self.unsaved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approve_commands_parse_as_upstream() {
        let r = |id: &str, decision| ApproveCommand::Resolve {
            id: id.into(),
            decision,
        };
        assert_eq!(
            parse_approve("/approve abc allow-once"),
            Some(r("abc", "allow-once"))
        );
        assert_eq!(
            parse_approve(" /approve@clawbot abc always "),
            Some(r("abc", "allow-always"))
        );
        assert_eq!(parse_approve("/approve deny abc"), Some(r("abc", "deny")));
        assert_eq!(parse_approve("/APPROVE abc Reject"), Some(r("abc", "deny")));
        assert_eq!(parse_approve("/approve"), Some(ApproveCommand::Usage));
        assert_eq!(parse_approve("/approve abc"), Some(ApproveCommand::Usage));
        assert_eq!(
            parse_approve("/approve abc maybe"),
            Some(ApproveCommand::Usage)
        );
        assert_eq!(parse_approve("approve abc allow-once"), None);
        assert_eq!(parse_approve("/approved abc allow-once"), None);
        assert_eq!(parse_approve("hello"), None);
    }

    #[test]
    fn the_pending_message_is_upstreams() {
        let text = pending_text("id-1", "ls -la", Some("/tmp"), 125);
        assert_eq!(
            text,
            "Approval required.\n\nRun:\n\n```txt\n/approve id-1 allow-once\n```\n\nPending command:\n\n```sh\nls -la\n```\n\nOther options:\n\n```txt\n/approve id-1 allow-always\n/approve id-1 deny\n```\n\nHost: gateway\nCWD: /tmp\nExpires in: 2m 5s\nFull id: `id-1`"
        );
        assert_eq!(fenced("a ``` b", "sh"), "````sh\na ``` b\n````");
        assert_eq!(expires_in(3600 + 60 * 7 + 3), "1h 7m");
    }

    #[test]
    fn slack_and_discord_owners_are_read_as_upstream_reads_them() {
        let owners = |entries: &[&str]| entries.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        for entry in [
            "U0ABC",
            "user:U0ABC",
            "slack:U0ABC",
            "<@U0ABC>",
            "@U0ABC",
            "u0abc",
        ] {
            assert!(is_owner(&owners(&[entry]), "slack", "U0ABC"), "{entry}");
        }
        for entry in [
            "*",
            "telegram:U0ABC",
            "channel:U0ABC",
            "C0ABC",
            "team:T1:user:U0ABC",
        ] {
            assert!(!is_owner(&owners(&[entry]), "slack", "U0ABC"), "{entry}");
        }
        let id = "400000000000000042";
        for entry in ["", "discord:", "user:", "<@", "<@!", "@"] {
            let entry = match entry {
                "<@" | "<@!" => format!("{entry}{id}>"),
                _ => format!("{entry}{id}"),
            };
            assert!(is_owner(&owners(&[&entry]), "discord", id), "{entry}");
        }
        for entry in [
            "*",
            "slack:400000000000000042",
            "discord:user:400000000000000042",
            "channel:400000000000000042",
            "Discord:400000000000000042",
        ] {
            assert!(!is_owner(&owners(&[entry]), "discord", id), "{entry}");
        }
    }

    #[test]
    fn owners_are_listed_by_channel_and_id() {
        let owners = vec!["telegram:42".to_string(), "7".to_string(), "*".to_string()];
        assert!(is_owner(&owners, "telegram", "42"));
        assert!(!is_owner(&owners, "slack", "42"));
        assert!(is_owner(&owners, "discord", "7"));
        assert!(!is_owner(&owners, "slack", "7"), "no Slack user id");
        assert!(
            !is_owner(&owners, "telegram", "43"),
            "a wildcard is no owner"
        );
    }

    #[test]
    fn grants_bind_the_command_and_directory_and_round_trip() {
        let mut g = Grants::default();
        g.add("uname -a", Some("/srv"), "g1".into(), 5);
        assert!(g.allows("uname -a", Some("/srv")));
        assert!(!g.allows("uname -a", None), "another directory");
        assert!(!g.allows("uname -s", Some("/srv")), "another command");
        let changes = g.store_changes();
        assert_eq!(changes.len(), 1);
        let StoreChange::PutChannelRow { key, row, .. } = changes[0].clone() else {
            panic!("{changes:?}")
        };
        let row = row.to_value();
        assert!(row["pattern"].as_str().unwrap().starts_with("=command:"));
        let mut back = Grants::default();
        assert!(back.restore(key, row));
        assert!(back.allows("uname -a", Some("/srv")));
        assert!(!back.restore("k".into(), json!({"source": "allow-always"})));
    }
}
