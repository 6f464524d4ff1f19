//! A turn's tool rounds: when the model's answer calls tools, the assistant row with its
//! `toolCall` blocks goes to the transcript, each call runs through the router (an `agent`
//! `item` event with kind `tool` when it starts and when it ends, a `command_output` for
//! `exec`), and once every call has its outcome the `toolResult` rows follow and the model
//! is asked again, at most `tools.maxRounds` times per turn.

use std::time::Instant;

use serde_json::{Value, json};

use crate::model::openai::{Completion, ToolSpec};
use crate::tools::{CallContext, CallId, ToolCall, ToolContent, ToolEntry, ToolOutcome};

use super::Failure;
use super::session::{tool_call_message, tool_result_message};
use crate::gateway::Gateway;
use crate::tools::router::CallOwner;

/// One call of the round in progress.
#[derive(Debug)]
pub(crate) struct RoundCall {
    /// The call as the model made it.
    call: ToolCall,
    /// Its id in the router.
    id: CallId,
    /// When it started (Unix ms).
    started_at: u64,
    /// Its outcome, once it came.
    outcome: Option<ToolOutcome>,
}

/// The `item` event data of a tool call.
fn item(call: &ToolCall, phase: &str, status: &str) -> Value {
    json!({
        "itemId": format!("tool:{}", call.id),
        "toolCallId": call.id,
        "name": call.name,
        "kind": "tool",
        "phase": phase,
        "title": call.name,
        "status": status,
        "commandBearing": call.name == "exec",
    })
}

impl Gateway {
    /// Who a tool call of run `serial` (on session `key`) runs for: an operator's turn is the
    /// owner's; a channel message's turn is when its sender is listed in
    /// `commands.ownerAllowFrom`, and its chat is where approvals go.
    pub(crate) fn run_call_context(&self, serial: u64, key: &str) -> CallContext {
        let run = self.agent.runs.get(&serial);
        let inbound = run
            .filter(|r| r.origin.is_none())
            .and_then(|r| self.channel_message_of(&r.run_id));
        let owners = &self.config.channels.owner_allow_from;
        CallContext {
            session_key: Some(key.to_string()),
            owner: run.is_some_and(|r| r.origin.is_some())
                || inbound.is_some_and(|m| {
                    crate::tools::approvals::is_owner(owners, &m.channel, &m.sender.id)
                }),
            chat: inbound.map(crate::channels::inbound::Inbound::reply_target),
        }
    }

    /// The tools offered to a turn's model (none when the catalog is empty).
    pub(crate) fn offered_tools(&self, ctx: &CallContext) -> Vec<ToolSpec> {
        self.model_tools(ctx)
            .into_iter()
            .map(ToolEntry::into_spec)
            .collect()
    }

    /// The model answered run `serial` with tool calls: start a round and return true, or
    /// return false when it called none (the turn is complete).
    pub(crate) fn start_tool_round(
        &mut self,
        now: Instant,
        serial: u64,
        done: &Completion,
    ) -> bool {
        if done.tool_calls.is_empty() {
            return false;
        }
        let ts = self.unix_ms(now);
        let max = self.config.limits.tool_max_rounds;
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return true;
        };
        if let Some(w) = run.work.take() {
            self.agent.by_work.remove(&w);
        }
        run.attempts.reset();
        run.round += 1;
        if run.round >= max {
            let message = format!(
                "the model kept calling tools: stopped after {max} model requests (tools.maxRounds)"
            );
            self.fail_run(now, serial, Failure::plain(message, "unknown"));
            return true;
        }
        let calls: Vec<ToolCall> = done
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let id = if c.id.is_empty() {
                    format!("call_{}_{i}", run.round)
                } else {
                    c.id.clone()
                };
                ToolCall::from_model(&id, &c.name, &c.arguments)
            })
            .collect();
        let text = std::mem::take(&mut run.text);
        let key = run.session_key.clone();
        let run_id = run.run_id.clone();
        let row = tool_call_message(&text, &calls, ts);
        self.with_run(now, serial, |ev| {
            ev.flush_agent_text();
            ev.flush_chat_text();
            ev.run.next_message();
            for c in &calls {
                ev.agent("item", |_| {
                    let mut data = item(c, "start", "running");
                    data["startedAt"] = json!(ts);
                    data
                });
            }
        });
        self.append(&key, row, ts, Some(&run_id));
        self.persist();
        let ctx = self.run_call_context(serial, &key);
        let mut ended = Vec::new();
        for call in calls {
            let id = self.start_tool_call(now, call.clone(), ctx.clone(), CallOwner::Run(serial));
            let Some(run) = self.agent.runs.get_mut(&serial) else {
                return true;
            };
            // A call answered at once (an unknown tool, a refusal) already ended.
            if let Some(o) = run.early.remove(&id) {
                ended.push((id, o));
            }
            run.calls.push(RoundCall {
                call,
                id,
                started_at: ts,
                outcome: None,
            });
        }
        for (id, o) in ended {
            self.run_tool_done(now, serial, id, o);
        }
        true
    }

    /// Call `id` of run `serial` ended with `outcome` (already bounded).
    pub(crate) fn run_tool_done(
        &mut self,
        now: Instant,
        serial: u64,
        id: CallId,
        outcome: ToolOutcome,
    ) {
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        let Some(rc) = run.calls.iter_mut().find(|c| c.id == id) else {
            // Not registered yet: the call ended while it was being started.
            run.early.insert(id, outcome);
            return;
        };
        let call = rc.call.clone();
        let started_at = rc.started_at;
        rc.outcome = Some(outcome.clone());
        let ts = self.unix_ms(now);
        self.with_run(now, serial, |ev| {
            let status = if outcome.is_error {
                "failed"
            } else {
                "completed"
            };
            ev.agent("item", |_| {
                let mut data = item(&call, "end", status);
                data["startedAt"] = json!(started_at);
                data["endedAt"] = json!(ts);
                if outcome.is_error {
                    data["error"] = json!(outcome.as_text());
                }
                data
            });
            if call.name == "exec" {
                ev.agent("command_output", |_| {
                    command_output(&call, &outcome, status)
                });
            }
        });
        self.tool_round_settled(now, serial);
    }

    /// When every call of run `serial`'s round has its outcome: the result rows, then the
    /// model again.
    fn tool_round_settled(&mut self, now: Instant, serial: u64) {
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        if run.calls.iter().any(|c| c.outcome.is_none()) {
            return;
        }
        let calls = std::mem::take(&mut run.calls);
        let key = run.session_key.clone();
        let run_id = run.run_id.clone();
        let ts = self.unix_ms(now);
        for c in calls {
            if let Some(o) = &c.outcome {
                self.append(&key, tool_result_message(&c.call, o, ts), ts, Some(&run_id));
            }
        }
        self.persist();
        if let Some(route) = self.config.model.clone() {
            self.send_model_request(now, serial, &route);
        }
    }

    /// Run `serial` ended while its calls ran: stop them (their outcomes are dropped).
    pub(crate) fn stop_run_tools(&mut self, now: Instant, serial: u64) {
        for id in self.tools.calls_of(&CallOwner::Run(serial)) {
            self.stop_tool_call(now, id);
            self.tools.calls.remove(&id);
        }
    }
}

/// The `command_output` end event of an `exec` call: its output, status, and exit code.
fn command_output(call: &ToolCall, outcome: &ToolOutcome, status: &str) -> Value {
    let mut data = json!({
        "itemId": format!("command:{}", call.id),
        "phase": "end",
        "title": format!("{} command", call.name),
        "toolCallId": call.id,
        "name": call.name,
        "status": status,
    });
    match &outcome.content {
        ToolContent::Json(v) => {
            for k in ["exitCode", "durationMs", "cwd"] {
                if let Some(x) = v.get(k) {
                    data[k] = x.clone();
                }
            }
            if let Some(out) = v.get("output") {
                data["output"] = out.clone();
            }
        }
        ToolContent::Text(t) => data["output"] = json!(t),
    }
    data
}
