//! MCP messages from a server: the input is newline-separated messages. Each is parsed
//! (never a panic, the size bound held), a request or notification the client builds parses
//! back as itself, and every message is fed to a [`Session`] that was answered `initialize`
//! as a real server would: whatever the server says, the session's tools stay within the
//! bound and every call it started ends at most once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::tools::mcp::jsonrpc::{self, Message, RequestId};
use crate::tools::mcp::session::{Session, SessionEvent};
use crate::tools::mcp::{McpLimits, ToolFilter};

/// The message bound the target uses (small, so the bound is reached).
const MAX: usize = 64 * 1024;

/// Check the parser and the session on one input, the session's clock starting at `now`;
/// the count of messages that parsed.
pub fn run(now: Instant, data: &[u8]) -> usize {
    let limits = McpLimits {
        max_message_bytes: MAX,
        max_tools: 8,
        max_list_pages: 4,
        ..McpLimits::default()
    };
    let mut session = Session::start(
        now,
        limits,
        ToolFilter::default(),
        Duration::from_secs(1),
        Duration::from_secs(1),
        "fuzz",
    );
    let init = json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}}});
    if let Ok(m) = jsonrpc::parse(init.to_string().as_bytes(), MAX) {
        session.handle_message(now, m);
    }
    let mut parsed = 0;
    let mut calls = 0u64;
    let mut ended: HashSet<u64> = HashSet::new();
    for line in data.split(|b| *b == b'\n') {
        let message = match jsonrpc::parse(line, MAX) {
            Ok(m) => m,
            Err(_) => continue,
        };
        parsed += 1;
        match &message {
            Message::Request {
                id: RequestId::Num(id),
                method,
                params,
            } => {
                let again = jsonrpc::encode_request(*id, method, params.clone());
                assert!(matches!(jsonrpc::parse(&again, usize::MAX), Ok(m) if m == message));
            }
            Message::Notification { method, params } => {
                let again = jsonrpc::encode_notification(method, params.clone());
                assert!(matches!(jsonrpc::parse(&again, usize::MAX), Ok(m) if m == message));
            }
            _ => {}
        }
        session.handle_message(now, message);
        if let Some(tool) = session.tools().first().map(|t| t.name.clone()) {
            calls += 1;
            let _ = session.call(now, calls, &tool, Value::Null);
        }
        drain(&mut session, &mut ended);
    }
    session.handle_timeout(now + Duration::from_secs(2));
    drain(&mut session, &mut ended);
    assert!(session.tools().len() <= limits.max_tools);
    assert!(session.next_deadline().is_none(), "everything expired");
    parsed
}

fn drain(session: &mut Session, ended: &mut HashSet<u64>) {
    while session.poll_transmit().is_some() {}
    while let Some(event) = session.poll_event() {
        if let SessionEvent::CallDone { call, .. } = event {
            assert!(ended.insert(call), "call {call} ended twice");
        }
    }
}
