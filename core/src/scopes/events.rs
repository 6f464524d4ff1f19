//! The events table: what clawgate advertises it sends, and the scope each broadcast event
//! needs (upstream `EVENT_SCOPE_GUARDS`; unknown events fail closed).

use super::{ADMIN, APPROVALS, PAIRING, QUESTIONS, READ, Role, TALK, WRITE, satisfied};

/// Events clawgate may send, as advertised in `hello-ok.features.events`.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "shutdown",
    "presence",
    "node.invoke.request",
    "node.invoke.cancel",
    "node.invoke.progress",
    "node.pair.requested",
    "node.pair.resolved",
    "device.pair.requested",
    "device.pair.resolved",
    "chat",
    "agent",
    "sessions.changed",
    "session.message",
];

/// The scope a broadcast event needs, `Some("")` for unrestricted ones, `None` when unknown
/// (unknown events fail closed).
pub fn event_scope(event: &str) -> Option<&'static str> {
    Some(match event {
        "tick" | "health" | "heartbeat" | "shutdown" | "gateway.suspension"
        | "update.available" => "",
        "agent"
        | "chat"
        | "presence"
        | "cron"
        | "config.changed"
        | "sessions.changed"
        | "node.presence"
        | "node.hostStats"
        | "node.runnerInventory.changed"
        | "talk.event"
        | "skills.changed"
        | "plugins.changed"
        | "models.snapshot"
        | "chat.metadata.changed"
        | "users.prefs.changed"
        | "portal.changed"
        | "progressCard.changed"
        | "mentions.changed"
        | "ui.command"
        | "plugins.controlUi.changed"
        | "controlUi.sessionPullRequests.changed" => READ,
        "session.approval" => APPROVALS,
        e if e.starts_with("session.") || e.starts_with("task") || e.starts_with("voicewake.") => {
            READ
        }
        e if e.starts_with("device.pair.") || e.starts_with("node.pair.") => PAIRING,
        e if e.starts_with("exec.approval.")
            || e.starts_with("plugin.approval.")
            || e.starts_with("openclaw.approval.") =>
        {
            APPROVALS
        }
        e if e.starts_with("question.") => QUESTIONS,
        "talk.mode" | "talk.voice.change" => TALK,
        "terminal.data" | "terminal.exit" | "update.run.changed" | "plugins.install.progress" => {
            ADMIN
        }
        e if e.starts_with("plugin.") => WRITE,
        _ => return None,
    })
}

/// Whether a connection with this role and these scopes may receive a broadcast event.
pub fn may_receive(role: Role, granted: &[String], event: &str) -> bool {
    match event_scope(event) {
        Some("") => true,
        Some(scope) => role == Role::Operator && satisfied(granted, scope),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fail_closed() {
        assert!(may_receive(Role::Node, &[], "tick"));
        assert!(!may_receive(Role::Operator, &[], "presence"));
        assert!(may_receive(Role::Operator, &[READ.to_string()], "presence"));
        assert!(!may_receive(
            Role::Operator,
            &[READ.to_string()],
            "device.pair.requested"
        ));
        assert!(may_receive(
            Role::Operator,
            &[PAIRING.to_string()],
            "device.pair.requested"
        ));
        assert!(!may_receive(
            Role::Operator,
            &[ADMIN.to_string()],
            "made.up.event"
        ));
    }

    #[test]
    fn advertised_broadcasts_have_a_scope() {
        for e in [
            "tick",
            "shutdown",
            "presence",
            "node.pair.requested",
            "device.pair.resolved",
        ] {
            assert!(EVENTS.contains(&e) && event_scope(e).is_some(), "{e}");
        }
    }
}
