//! The tool router through the simulated gateway: a provider's tools in `tools.catalog`, a
//! `tools.invoke` answered after the provider's work comes back, the result bound, the
//! per-call deadline, and an unknown tool.

use core::time::Duration;
use std::time::Instant;

use clawgate_core::fuzzing::sim::*;
use clawgate_core::model::HttpRequest;
use clawgate_core::tools::{
    Availability, CallContext, CallId, ProviderIo, TRUNCATED_MARKER, ToolCall, ToolEntry,
    ToolOutcome, ToolProvider, ToolSource,
};
use clawgate_core::{Config, ConnId, Work, WorkResult};
use serde_json::{Value, json};

/// A provider whose `echo` answers after one HTTP request, `big` answers 1 MiB at once,
/// `hang` never answers, and `broken` is unavailable.
#[derive(Debug, Default)]
struct Fake {
    waiting: Vec<(u64, CallId, String)>,
    cancelled: std::sync::Arc<std::sync::atomic::AtomicU32>,
    next: u64,
}

impl ToolProvider for Fake {
    fn source(&self) -> ToolSource {
        ToolSource::Mcp
    }

    fn tools(&self) -> Vec<ToolEntry> {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}});
        let mut broken = ToolEntry::new(
            "fake__broken",
            "Fails to start.",
            schema.clone(),
            ToolSource::Mcp,
        );
        broken.availability = Availability::Unavailable("server exited with status 1".into());
        ["fake__echo", "fake__big", "fake__hang"]
            .into_iter()
            .map(|n| {
                let mut t = ToolEntry::new(n, "A fake tool.", schema.clone(), ToolSource::Mcp);
                t.origin = Some("fake".into());
                t
            })
            .chain([broken])
            .collect()
    }

    fn start(
        &mut self,
        _: Instant,
        id: CallId,
        call: &ToolCall,
        _: &CallContext,
        io: &mut ProviderIo,
    ) {
        match call.name.as_str() {
            "fake__echo" => {
                self.next += 1;
                let text = call.str_arg("text").unwrap_or_default().to_string();
                self.waiting.push((self.next, id, text));
                let req = HttpRequest {
                    method: "POST",
                    url: "http://127.0.0.1:9/mcp".into(),
                    headers: vec![],
                    body: vec![],
                };
                io.submit(self.next, Work::Http(req));
            }
            "fake__big" => io.finish(id, ToolOutcome::text("x".repeat(1 << 20))),
            _ => {}
        }
    }

    fn work_result(&mut self, _: Instant, token: u64, result: WorkResult, io: &mut ProviderIo) {
        if let WorkResult::HttpEnd(_) = result
            && let Some(i) = self.waiting.iter().position(|w| w.0 == token)
        {
            let (_, id, text) = self.waiting.remove(i);
            io.finish(id, ToolOutcome::json(json!({"echo": text})));
        }
    }

    fn cancel(&mut self, _: Instant, _: CallId, _: &mut ProviderIo) {
        self.cancelled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn setup() -> (Sim, ConnId, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let mut config: Config = Config::local_default().with_token("t");
    config.limits.tool_timeout = Duration::from_secs(5);
    let mut p = Sim::started(Instant::now(), config);
    let fake = Fake::default();
    let cancelled = fake.cancelled.clone();
    p.gw.add_tool_provider(Box::new(fake));
    p.set_http(|_| vec![WorkResult::HttpEnd(Ok(()))]);
    let mut c = cli(Some("t"));
    c.scopes = vec!["operator.write".into(), "operator.read".into()];
    let op = p.open_client(c, loopback());
    p.events(op);
    (p, op, cancelled)
}

fn invoke(p: &mut Sim, op: ConnId, name: &str, args: Value) -> Value {
    p.call(
        op,
        "tools.invoke",
        Some(json!({"name": name, "args": args})),
    )
    .expect("tools.invoke answers ok")
}

#[test]
fn a_provider_tool_answers_through_the_work_flow() {
    let (mut p, op, _) = setup();
    let r = invoke(&mut p, op, "fake__echo", json!({"text": "hi"}));
    assert_eq!(
        r,
        json!({"ok": true, "toolName": "fake__echo", "output": {"echo": "hi"}})
    );
}

#[test]
fn unknown_and_unavailable_tools() {
    let (mut p, op, _) = setup();
    let r = invoke(&mut p, op, "nope", json!({}));
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "not_found");
    let r = invoke(&mut p, op, "fake__broken", json!({}));
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server exited")
    );
}

#[test]
fn an_oversized_result_is_cut_with_a_marker() {
    let (mut p, op, _) = setup();
    let r = invoke(&mut p, op, "fake__big", json!({}));
    let out = r["output"].as_str().unwrap();
    assert!(out.ends_with(TRUNCATED_MARKER));
    assert_eq!(out.len(), 64 * 1024 + TRUNCATED_MARKER.len());
}

#[test]
fn a_hanging_tool_times_out_and_is_cancelled() {
    let (mut p, op, cancelled) = setup();
    let req = p.request(op, "tools.invoke", Some(json!({"name": "fake__hang"})));
    assert!(p.events(op).is_empty(), "no answer before the deadline");
    p.advance(Duration::from_secs(6));
    let r = p
        .events(op)
        .into_iter()
        .find_map(|e| match e {
            clawgate_core::client::Event::Response { id, result } if id == req => result.ok(),
            _ => None,
        })
        .expect("answered at the deadline");
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 5 s (tools.timeoutSeconds)")
    );
    assert_eq!(cancelled.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn the_catalog_lists_every_tool_with_its_availability() {
    let (mut p, op, _) = setup();
    let c = p.call(op, "tools.catalog", Some(json!({}))).unwrap();
    let tools: Vec<&Value> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tools"].as_array().unwrap())
        .collect();
    let broken = tools.iter().find(|t| t["id"] == "fake__broken").unwrap();
    assert!(
        broken["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("unavailable"))
    );
    assert!(
        broken["description"]
            .as_str()
            .unwrap()
            .contains("server exited")
    );
    let e = p
        .call(
            op,
            "tools.effective",
            Some(json!({"sessionKey": "agent:main:main"})),
        )
        .unwrap();
    let mcp = e["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "mcp")
        .unwrap();
    assert_eq!(mcp["tools"].as_array().unwrap().len(), 3);
    assert_eq!(mcp["tools"][0]["mcpServer"], "fake");
    assert_eq!(mcp["tools"][0]["mcpToolName"], "echo");
}
