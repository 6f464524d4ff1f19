//! The `exec` tool: shell commands on the gateway host. `tools.exec.mode` decides (deny,
//! clawgate's default; allowlist; ask; full), a session's `permissionMode` can only tighten
//! it, and only the gateway's owner (an operator's turn, or a channel sender listed in
//! `commands.ownerAllowFrom`) may run anything. `ask` sends `exec.approval.requested` to the
//! operators who may approve (`operator.approvals` or admin), posts the request to the chat
//! a channel turn came from (where the owner answers `/approve <id> <decision>`), and takes
//! the first answer within `tools.exec.approvalTimeoutSeconds`; with no operator connected
//! and no chat it is denied at once. `allow-always` keeps a grant in the store (durable
//! before the command runs): the same command in the same directory then runs without
//! asking. The command runs on a host worker ([`Work::Exec`]) with its time and output
//! bounds. Every command is logged with its decision.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};

use crate::channels::inbound::{Inbound, Target};
use crate::config::tools::ExecMode;
use crate::frame::ErrorShape;
use crate::gateway::{Gateway, Output, Timer};
use crate::log::Level;
use crate::methods::{Call, Reply};
use crate::work::{ExecOutput, ExecRequest, Work, WorkId};

use super::approvals::{self, ApproveCommand, Grants};
use super::{CallContext, CallId, ToolCall, ToolOutcome};
use crate::methods::params::{self, FromParams, Kind, optional, required};

/// A command waiting for an operator.
#[derive(Debug)]
struct Approval {
    /// The id operators answer (`exec.approval.resolve`).
    id: String,
    call: CallId,
    request: ExecRequest,
    expires_at: Instant,
    /// What `exec.approval.requested` announced, as `exec.approval.list` lists it.
    listing: serde_json::Value,
    /// The chat the turn came from, which was told and may answer.
    chat: Option<Target>,
}

/// Who settled an approval.
enum Settled {
    /// An operator over `exec.approval.resolve` (their name).
    Operator(Option<String>),
    /// The owner from the chat (`<channel>:<sender>`); the chat is answered by the caller.
    Chat(String),
    /// Nobody: it ended unanswered, for this reason (told to the turn).
    Ended(String),
}

/// Commands waiting for approval or running.
#[derive(Debug, Default)]
pub(crate) struct ExecState {
    /// Approvals by serial (the serial names their timers).
    approvals: HashMap<u64, Approval>,
    next_approval: u64,
    /// Commands running, by their work.
    running: HashMap<WorkId, CallId>,
    /// The last approvals settled (id, decision), newest last: a second answer is told.
    resolved: VecDeque<(String, String)>,
    /// Commands allowed always, waiting for their grant to be durable before they run.
    granting: HashMap<CallId, ExecRequest>,
    /// The `allow-always` grants.
    pub(crate) grants: Grants,
}

impl ExecState {
    /// The serial of approval `id`.
    fn serial_of(&self, id: &str) -> Option<u64> {
        self.approvals
            .iter()
            .find(|(_, a)| a.id == id)
            .map(|(k, _)| *k)
    }

    /// The approvals waiting, oldest first, as `exec.approval.requested` announced them.
    pub(crate) fn pending(&self) -> Vec<serde_json::Value> {
        let mut serials: Vec<&u64> = self.approvals.keys().collect();
        crate::sorting::sort(&mut serials);
        serials
            .into_iter()
            .filter_map(|k| self.approvals.get(k))
            .map(|a| a.listing.clone())
            .collect()
    }

    /// Whether `work` is a command's.
    pub(crate) fn owns(&self, work: WorkId) -> bool {
        self.running.contains_key(&work)
    }

    /// Whether approval `id` was settled lately.
    fn was_resolved(&self, id: &str) -> bool {
        self.resolved.iter().any(|(r, _)| r == id)
    }

    fn remember(&mut self, id: String, decision: &str) {
        if self.resolved.len() >= approvals::RESOLVED_KEPT {
            self.resolved.pop_front();
        }
        self.resolved.push_back((id, decision.to_string()));
    }
}

/// Upstream's answer to a second resolution of one approval.
const ALREADY_RESOLVED: &str = "approval already resolved";
/// Upstream's answer to an approval id it does not know.
const UNKNOWN_APPROVAL: &str = "unknown or expired approval id";

/// What policy says about one command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run it.
    Allow,
    /// Ask an operator first.
    Ask,
    /// Refuse it, saying why (naming the key that decides).
    Deny(String),
}

/// The program a shell command starts with (its first word, without a path).
fn program(command: &str) -> &str {
    let first = command.split_whitespace().next().unwrap_or_default();
    first.rsplit('/').next().unwrap_or(first)
}

/// Whether `command` is one program from `safe_bins` with plain arguments: no chaining,
/// pipes, substitutions or redirections.
fn on_allowlist(command: &str, safe_bins: &[String]) -> bool {
    let plain = !command.contains([';', '&', '|', '`', '$', '>', '<', '\n', '(', ')']);
    let first = command.split_whitespace().next().unwrap_or_default();
    plain && safe_bins.iter().any(|b| b == first)
}

/// The policy decision for `command` under `mode`.
pub(crate) fn decide(mode: ExecMode, safe_bins: &[String], command: &str) -> Decision {
    match mode {
        ExecMode::Deny => Decision::Deny(
            "exec is disabled on this gateway: tools.exec.mode is \"deny\" (clawgate's default); the owner can set it to allowlist, ask or full".into(),
        ),
        ExecMode::Full => Decision::Allow,
        _ if on_allowlist(command, safe_bins) => Decision::Allow,
        ExecMode::Allowlist => Decision::Deny(format!(
            "{:?} is not allowed: tools.exec.mode is \"allowlist\" and tools.exec.safeBins does not list it (no chaining, pipes or redirections)",
            program(command)
        )),
        ExecMode::Ask => Decision::Ask,
    }
}

/// The exec mode a session's `permissionMode` allows at most.
fn session_cap(permission_mode: Option<&str>) -> ExecMode {
    match permission_mode {
        Some("read-only") => ExecMode::Deny,
        Some("guarded" | "workspace") => ExecMode::Ask,
        _ => ExecMode::Full,
    }
}

/// `exec.approval.resolve` params.
pub(crate) struct ResolveParams {
    id: String,
    decision: String,
    _reviewer: Option<serde_json::Value>,
    _grant_expires_in_days: Option<u64>,
}

impl FromParams for ResolveParams {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("id", Kind::Str),
            required("decision", Kind::Str),
            optional("reviewer", Kind::Any),
            optional("grantExpiresInDays", Kind::U64),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            id: p.text("id"),
            decision: p.text("decision"),
            _reviewer: p.take("reviewer"),
            _grant_expires_in_days: p.u64("grantExpiresInDays"),
        })
    }
}

impl Gateway {
    /// The exec mode in force for a turn of `session_key`: the config's, tightened by the
    /// session's `permissionMode`.
    fn exec_mode(&self, session_key: Option<&str>) -> ExecMode {
        let permission = session_key.and_then(|k| self.session_override(k, "permissionMode"));
        self.config
            .tools
            .exec
            .mode
            .min(session_cap(permission.as_deref()))
    }

    /// Whether an operator who may approve commands is connected.
    fn approver_connected(&self) -> bool {
        self.conns.values().filter_map(|c| c.session()).any(|s| {
            s.role == crate::scopes::Role::Operator
                && crate::scopes::satisfied(&s.scopes, crate::scopes::APPROVALS)
        })
    }

    /// Start an `exec` call: refuse it, ask, or run it.
    pub(crate) fn start_exec_call(
        &mut self,
        now: Instant,
        id: CallId,
        call: &ToolCall,
        ctx: &CallContext,
    ) {
        let Some(command) = call.str_arg("command").filter(|c| !c.trim().is_empty()) else {
            self.finish_tool_call(now, id, ToolOutcome::error("command required"));
            return;
        };
        let exec = &self.config.tools.exec;
        let timeout = call
            .arguments
            .get("timeoutSeconds")
            .and_then(serde_json::Value::as_u64)
            .map_or(exec.timeout, |s| {
                core::time::Duration::from_secs(s).min(exec.timeout)
            });
        let request = ExecRequest {
            command: command.to_string(),
            cwd: call.str_arg("workdir").map(str::to_string),
            timeout,
            max_output_bytes: exec.max_output_bytes,
        };
        let mode = self.exec_mode(ctx.session_key.as_deref());
        let decision = if ctx.owner {
            decide(mode, &exec.safe_bins, command)
        } else {
            Decision::Deny(
                "exec is only for the gateway's owner: a channel sender not listed in commands.ownerAllowFrom can never run a command"
                    .into(),
            )
        };
        let granted = ctx.owner
            && matches!(mode, ExecMode::Allowlist | ExecMode::Ask)
            && decision != Decision::Allow
            && self
                .tools
                .exec
                .grants
                .allows(command, request.cwd.as_deref());
        match decision {
            _ if granted => {
                self.exec_log(now, command, "allowed by an allow-always grant");
                self.run_exec(id, request);
            }
            Decision::Allow => {
                self.exec_log(now, command, "allowed by tools.exec.mode");
                self.run_exec(id, request);
            }
            Decision::Deny(why) => {
                self.exec_log(now, command, &format!("denied: {why}"));
                self.finish_tool_call(now, id, ToolOutcome::error(why));
            }
            Decision::Ask if ctx.chat.is_none() && !self.approver_connected() => {
                let why = "exec needs an operator's approval (tools.exec.mode is \"ask\") and no operator with operator.approvals is connected: denied";
                self.exec_log(now, command, why);
                self.finish_tool_call(now, id, ToolOutcome::error(why));
            }
            Decision::Ask => self.ask_approval(now, id, request, ctx),
        }
    }

    fn exec_log(&mut self, now: Instant, command: &str, decision: &str) {
        self.log(
            now,
            Level::Info,
            None,
            format!("exec {command:?}: {decision}"),
        );
    }

    fn run_exec(&mut self, id: CallId, request: ExecRequest) {
        let work = self.next_work_id();
        self.tools.exec.running.insert(work, id);
        self.out.push_back(Output::Work {
            id: work,
            work: Work::Exec(request),
        });
    }

    fn ask_approval(&mut self, now: Instant, id: CallId, request: ExecRequest, ctx: &CallContext) {
        let approval_id = self.uuid();
        let wait = self.config.tools.exec.approval_timeout;
        let created = self.unix_ms(now);
        let payload = json!({
            "approvalKind": "exec",
            "id": approval_id,
            "request": {
                "command": request.command,
                "cwd": request.cwd,
                "host": "gateway",
                "agentId": crate::agent::AGENT_ID,
                "sessionKey": ctx.session_key,
            },
            "createdAtMs": created,
            "expiresAtMs": created + wait.as_millis() as u64,
        });
        self.exec_log(
            now,
            &request.command,
            &format!("approval {approval_id} requested"),
        );
        if let Some(chat) = &ctx.chat {
            let text = approvals::pending_text(
                &approval_id,
                &request.command,
                request.cwd.as_deref(),
                wait.as_secs(),
            );
            self.post_to_chat(now, chat, &text);
        }
        self.tools.exec.next_approval += 1;
        let serial = self.tools.exec.next_approval;
        self.tools.exec.approvals.insert(
            serial,
            Approval {
                id: approval_id,
                call: id,
                request,
                expires_at: now + wait,
                listing: payload.clone(),
                chat: ctx.chat.clone(),
            },
        );
        self.schedule(now + wait, Timer::ExecApproval(serial));
        self.broadcast(now, "exec.approval.requested", &payload, None);
    }

    /// An approval's time ran out: the command is denied and the turn told.
    pub(crate) fn exec_approval_due(&mut self, now: Instant, serial: u64) {
        let due = self
            .tools
            .exec
            .approvals
            .get(&serial)
            .is_some_and(|a| a.expires_at <= now);
        if due {
            let secs = self.config.tools.exec.approval_timeout.as_secs();
            self.settle_approval(now, serial, "deny", Settled::Ended(format!(
                "no operator answered the approval request within {secs} s (tools.exec.approvalTimeoutSeconds): denied"
            )));
        }
    }

    /// `exec.approval.list`: the commands waiting for an operator, as announced.
    pub(crate) fn exec_approval_list(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        _: crate::methods::NoParams,
    ) -> Reply {
        Reply::Now(Ok(serde_json::Value::from(self.tools.exec.pending())))
    }

    /// `exec.approval.resolve`: allow (`allow-once`, `allow-always`) or `deny` a command.
    pub(crate) fn exec_approval_resolve(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: ResolveParams,
    ) -> Reply {
        if !matches!(p.decision.as_str(), "allow-once" | "allow-always" | "deny") {
            return Reply::Now(Err(ErrorShape::invalid("invalid decision")));
        }
        let Some(serial) = self.tools.exec.serial_of(&p.id) else {
            return Reply::Now(Err(self.unresolvable(&p.id)));
        };
        let by = self
            .conns
            .get(&call.conn)
            .and_then(|c| c.session())
            .map(|s| {
                s.client
                    .display_name
                    .clone()
                    .unwrap_or_else(|| s.client.id.clone())
            });
        self.settle_approval(now, serial, &p.decision, Settled::Operator(by));
        Reply::Now(Ok(json!({"ok": true})))
    }

    /// The error for an approval id that is not pending: already resolved, or unknown.
    fn unresolvable(&self, id: &str) -> ErrorShape {
        if self.tools.exec.was_resolved(id) {
            ErrorShape::invalid(ALREADY_RESOLVED)
                .with_details(json!({"reason": "APPROVAL_ALREADY_RESOLVED"}))
        } else {
            ErrorShape::invalid(UNKNOWN_APPROVAL)
                .with_details(json!({"reason": "APPROVAL_NOT_FOUND"}))
        }
    }

    /// A chat message that is an `/approve` command (`m` passed the chat's access policy):
    /// only an owner may resolve, and only an approval asked in this chat (in any of its
    /// threads); the chat is answered as upstream answers it. Returns false when `m` is no
    /// such command.
    pub(crate) fn chat_approve(&mut self, now: Instant, m: &Inbound, label: &str) -> bool {
        let Some(command) = approvals::parse_approve(&m.text) else {
            return false;
        };
        let chat = m.reply_target();
        let who = format!("{}:{}", m.channel, m.sender.id);
        let owners = &self.config.channels.owner_allow_from;
        let reply = match command {
            ApproveCommand::Usage => approvals::USAGE.to_string(),
            ApproveCommand::Resolve { .. }
                if !approvals::is_owner(owners, &m.channel, &m.sender.id) =>
            {
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!("/approve from {who} refused: not in commands.ownerAllowFrom"),
                );
                format!("❌ You are not authorized to approve exec requests on {label}.")
            }
            ApproveCommand::Resolve { id, decision } => {
                let serial = self.tools.exec.serial_of(&id).filter(|k| {
                    self.tools
                        .exec
                        .approvals
                        .get(k)
                        .and_then(|a| a.chat.as_ref())
                        .is_some_and(|asked| asked.same_chat(&chat))
                });
                match serial {
                    Some(k) => {
                        self.settle_approval(now, k, decision, Settled::Chat(who));
                        format!("✅ Approval {decision} submitted for {id}.")
                    }
                    None => format!(
                        "❌ Failed to submit approval: {}",
                        self.unresolvable(&id).message
                    ),
                }
            }
        };
        self.post_to_chat(now, &chat, &reply);
        true
    }

    fn settle_approval(&mut self, now: Instant, serial: u64, decision: &str, by: Settled) {
        let Some(a) = self.tools.exec.approvals.remove(&serial) else {
            return;
        };
        self.tools.exec.remember(a.id.clone(), decision);
        let ts = self.unix_ms(now);
        let (resolved_by, chat_note) = match &by {
            Settled::Operator(name) => {
                let by = name
                    .as_ref()
                    .map(|n| format!(" Resolved by {n}."))
                    .unwrap_or_default();
                let note = format!("✅ Exec approval {decision}.{by} ID: {}", a.id);
                (name.clone(), Some(note))
            }
            Settled::Chat(who) => (Some(format!("Chat approval ({who})")), None),
            Settled::Ended(_) => {
                let note = format!("⏱️ Exec approval expired. ID: {}", a.id);
                (None, Some(note))
            }
        };
        let event = json!({
            "id": a.id,
            "decision": decision,
            "resolvedBy": resolved_by,
            "ts": ts,
            "request": {"command": a.request.command, "cwd": a.request.cwd, "host": "gateway"},
        });
        self.broadcast(now, "exec.approval.resolved", &event, None);
        if let (Some(chat), Some(note)) = (&a.chat, chat_note) {
            self.post_to_chat(now, chat, &note);
        }
        if decision == "deny" {
            let why = match by {
                Settled::Ended(why) => why,
                Settled::Operator(_) => "an operator denied the command".into(),
                Settled::Chat(_) => "the owner denied the command from the chat".into(),
            };
            self.exec_log(now, &a.request.command, &format!("denied: {why}"));
            self.finish_tool_call(now, a.call, ToolOutcome::error(why));
            return;
        }
        let who = resolved_by.unwrap_or_else(|| "an operator".into());
        self.exec_log(
            now,
            &a.request.command,
            &format!("approved ({decision}) by {who}"),
        );
        if !self.tools.calls.contains_key(&a.call) {
            return;
        }
        if decision == "allow-always" {
            let id = self.uuid();
            let (command, cwd) = (&a.request.command, a.request.cwd.as_deref());
            self.tools.exec.grants.add(command, cwd, id, ts);
            self.tools.exec.granting.insert(a.call, a.request);
            self.persist();
            self.run_exec_when_durable(now, a.call);
        } else {
            self.run_exec(a.call, a.request);
        }
    }

    /// A command allowed always, once its grant is durable (`durable`) or could not be saved.
    pub(crate) fn granted_exec(&mut self, now: Instant, call: CallId, durable: bool) {
        let Some(request) = self.tools.exec.granting.remove(&call) else {
            return;
        };
        if !self.tools.calls.contains_key(&call) {
            return;
        }
        if durable {
            self.run_exec(call, request);
        } else {
            let why = "the allow-always grant could not be saved to the gateway's store: the command did not run";
            self.exec_log(now, &request.command, why);
            self.finish_tool_call(now, call, ToolOutcome::error(why));
        }
    }

    /// A command ended.
    pub(crate) fn on_exec_result(
        &mut self,
        now: Instant,
        work: WorkId,
        result: Result<ExecOutput, String>,
    ) {
        let Some(id) = self.tools.exec.running.remove(&work) else {
            return;
        };
        let outcome = match result {
            Ok(out) => {
                let failed = out.timed_out || out.exit_code != Some(0);
                let mut output = out.output;
                if out.truncated {
                    output.push_str(super::TRUNCATED_MARKER);
                }
                let status = if out.timed_out {
                    "timed out (tools.exec.timeoutSeconds)"
                } else if failed {
                    "failed"
                } else {
                    "completed"
                };
                let v = json!({
                    "status": status,
                    "exitCode": out.exit_code,
                    "durationMs": out.duration_ms,
                    "output": output,
                });
                self.log(
                    now,
                    Level::Info,
                    None,
                    format!("exec ended: {status}, exit code {:?}", out.exit_code),
                );
                ToolOutcome {
                    is_error: failed,
                    ..ToolOutcome::json(v)
                }
            }
            Err(e) => ToolOutcome::error(format!("the command could not run: {e}")),
        };
        self.finish_tool_call(now, id, outcome);
    }

    /// Stop exec call `id`: withdraw its approval request or kill its command.
    pub(crate) fn cancel_exec(&mut self, now: Instant, id: CallId) {
        let approval = self
            .tools
            .exec
            .approvals
            .iter()
            .find(|(_, a)| a.call == id)
            .map(|(k, _)| *k);
        if let Some(k) = approval {
            self.settle_approval(
                now,
                k,
                "deny",
                Settled::Ended("the call ended first".into()),
            );
        }
        self.tools.exec.granting.remove(&id);
        let work = self
            .tools
            .exec
            .running
            .iter()
            .find(|(_, c)| **c == id)
            .map(|(w, _)| *w);
        if let Some(w) = work {
            self.tools.exec.running.remove(&w);
            self.cancel_work(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let bins = vec!["echo".to_string(), "/usr/bin/uname".to_string()];
        assert!(
            matches!(decide(ExecMode::Deny, &bins, "echo hi"), Decision::Deny(w) if w.contains("tools.exec.mode"))
        );
        assert_eq!(
            decide(ExecMode::Allowlist, &bins, "echo hi"),
            Decision::Allow
        );
        assert_eq!(
            decide(ExecMode::Allowlist, &bins, "/usr/bin/uname -a"),
            Decision::Allow
        );
        assert!(matches!(
            decide(ExecMode::Allowlist, &bins, "echo hi; rm -rf /"),
            Decision::Deny(_)
        ));
        assert!(matches!(
            decide(ExecMode::Allowlist, &bins, "/tmp/echo hi"),
            Decision::Deny(_)
        ));
        assert!(matches!(
            decide(ExecMode::Allowlist, &bins, "uname"),
            Decision::Deny(_)
        ));
        assert_eq!(decide(ExecMode::Ask, &bins, "echo $(id)"), Decision::Ask);
        assert_eq!(decide(ExecMode::Ask, &bins, "echo ok"), Decision::Allow);
        assert_eq!(
            decide(ExecMode::Full, &bins, "anything | at all"),
            Decision::Allow
        );
        assert_eq!(
            ExecMode::Full.min(session_cap(Some("read-only"))),
            ExecMode::Deny
        );
        assert_eq!(
            ExecMode::Deny.min(session_cap(Some("full"))),
            ExecMode::Deny,
            "a session only tightens"
        );
        assert_eq!(
            ExecMode::Full.min(session_cap(Some("guarded"))),
            ExecMode::Ask
        );
    }
}
