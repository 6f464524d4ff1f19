//! The MCP client simulated: [`McpServers`] against a fake server that is a plain function,
//! over both transports (a stdio process's lines, Streamable HTTP's JSON and SSE answers),
//! with a fake clock: the lifecycle and pagination, a call, a hanging call timing out with
//! `notifications/cancelled`, a crash restarted after its backoff, a server that never starts
//! reported without stopping the others.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clawgate_core::tools::mcp::{CallError, CallResult, McpOutput, McpServers, ServerState};
use clawgate_core::{Work, WorkId, WorkResult};
use serde_json::{Value, json};

/// The fake server's answer to one message: `None` for nothing, `Some(None)` for a crash.
fn answer(m: &Value) -> Option<Option<Value>> {
    let id = m.get("id")?;
    let result = match m["method"].as_str()? {
        "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}}),
        "tools/list" if m["params"]["cursor"] == "2" => json!({"tools": [{"name": "crash"}]}),
        "tools/list" => {
            json!({"tools": [{"name": "echo", "description": "Echo"}, {"name": "hang"}], "nextCursor": "2"})
        }
        "tools/call" => match m["params"]["name"].as_str()? {
            "echo" => {
                json!({"content": [{"type": "text", "text": m["params"]["arguments"]["text"]}]})
            }
            "crash" => return Some(None),
            _ => return None,
        },
        _ => return None,
    };
    Some(Some(json!({"jsonrpc": "2.0", "id": id, "result": result})))
}

#[derive(Default)]
struct Seen {
    /// Messages the fake servers read.
    messages: Vec<Value>,
    /// Work cancelled.
    cancelled: Vec<WorkId>,
    /// Calls ended.
    done: Vec<(u64, Result<CallResult, CallError>)>,
    spawns: usize,
    /// Headers of each HTTP request: (session id, protocol version).
    http: Vec<(Option<String>, Option<String>)>,
}

struct Sim {
    servers: McpServers,
    now: Instant,
    live: HashSet<WorkId>,
    seen: Seen,
}

impl Sim {
    fn new(config: Value) -> Self {
        let config = clawgate_core::tools::mcp::config::resolve(&config).expect("config");
        Sim {
            servers: McpServers::new(&config, "test"),
            now: Instant::now(),
            live: HashSet::new(),
            seen: Seen::default(),
        }
    }

    fn result(&mut self, id: WorkId, r: WorkResult) {
        self.servers.handle_work_result(self.now, id, r);
    }

    fn pump(&mut self) {
        while let Some(out) = self.servers.poll() {
            match out {
                McpOutput::Work(id, Work::Spawn(spec)) => {
                    self.seen.spawns += 1;
                    if spec.command == "missing" {
                        self.result(id, WorkResult::ProcessExited("cannot start".into()));
                    } else {
                        self.live.insert(id);
                    }
                }
                McpOutput::Work(_, Work::WriteLine { process, line }) => {
                    // A line queued before its process died goes nowhere, as on a host.
                    if !self.live.contains(&process) {
                        continue;
                    }
                    let m: Value = serde_json::from_slice(&line).expect("JSON line");
                    self.seen.messages.push(m.clone());
                    match answer(&m) {
                        Some(Some(reply)) => {
                            let line = reply.to_string().into_bytes();
                            self.result(process, WorkResult::ProcessLine(line));
                        }
                        Some(None) => {
                            self.live.remove(&process);
                            self.result(process, WorkResult::ProcessExited("exit 3".into()));
                        }
                        None => {}
                    }
                }
                McpOutput::Work(id, Work::Http(req)) => {
                    let m: Value = serde_json::from_slice(&req.body).expect("JSON body");
                    assert_eq!(
                        req.header("accept"),
                        Some("application/json, text/event-stream")
                    );
                    self.seen.http.push((
                        req.header("mcp-session-id").map(str::to_string),
                        req.header("mcp-protocol-version").map(str::to_string),
                    ));
                    self.seen.messages.push(m.clone());
                    let (status, kind, body) = match answer(&m) {
                        Some(Some(reply)) if m["method"] == "tools/call" => (
                            200,
                            "text/event-stream",
                            format!("event: message\ndata: {reply}\n\n"),
                        ),
                        Some(Some(reply)) => (200, "application/json", reply.to_string()),
                        _ => (202, "application/json", String::new()),
                    };
                    let mut headers = vec![("content-type".to_string(), kind.to_string())];
                    if m["method"] == "initialize" {
                        headers.push(("mcp-session-id".into(), "s-1".into()));
                    }
                    self.result(id, WorkResult::HttpHead { status, headers });
                    // SSE split in two pieces: the decoder joins them.
                    let (a, b) = body.split_at(body.len() / 2);
                    self.result(id, WorkResult::HttpBody(a.as_bytes().to_vec()));
                    self.result(id, WorkResult::HttpBody(b.as_bytes().to_vec()));
                    self.result(id, WorkResult::HttpEnd(Ok(())));
                }
                McpOutput::Work(_, other) => panic!("unexpected work {other:?}"),
                McpOutput::Cancel(id) => {
                    self.live.remove(&id);
                    self.seen.cancelled.push(id);
                }
                McpOutput::CallDone { call, outcome } => self.seen.done.push((call, outcome)),
                McpOutput::Log(..) | McpOutput::CatalogChanged => {}
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.servers.next_deadline().is_some_and(|d| d <= self.now) {
            self.servers.handle_timeout(self.now);
        }
        self.pump();
    }

    fn state(&self, name: &str) -> ServerState {
        self.servers
            .statuses()
            .into_iter()
            .find(|s| s.name == name)
            .expect("server")
            .state
    }
}

fn names(sim: &Sim) -> Vec<String> {
    sim.servers.catalog().into_iter().map(|t| t.name).collect()
}

#[test]
fn both_transports_list_every_page_and_answer_calls() {
    let mut sim = Sim::new(json!({"mcp": {"servers": {
        "local": {"command": "fake"},
        "remote": {"url": "http://127.0.0.1:1/mcp", "toolFilter": {"exclude": ["crash"]}},
    }}}));
    assert_eq!(
        sim.state("local"),
        ServerState::Idle,
        "lazy: nothing started yet"
    );
    sim.servers.need(sim.now);
    sim.pump();
    assert_eq!(sim.state("local"), ServerState::Ready);
    assert_eq!(sim.state("remote"), ServerState::Ready);
    assert_eq!(
        names(&sim),
        [
            "local__echo",
            "local__hang",
            "local__crash",
            "remote__echo",
            "remote__hang"
        ]
    );
    let initialized = sim
        .seen
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/initialized")
        .count();
    assert_eq!(initialized, 2);
    // HTTP: no session id on initialize, the server's on every later request, with the
    // negotiated version.
    assert_eq!(sim.seen.http[0], (None, None));
    assert!(
        sim.seen.http[1..]
            .iter()
            .all(|h| *h == (Some("s-1".into()), Some("2025-06-18".into())))
    );

    for (call, name) in [(1, "local__echo"), (2, "remote__echo")] {
        sim.servers
            .call(sim.now, call, name, json!({"text": "hi"}))
            .expect("call starts");
    }
    sim.pump();
    let ok = |text: &str| {
        Ok(CallResult {
            text: text.into(),
            is_error: false,
        })
    };
    assert_eq!(sim.seen.done, [(1, ok("hi")), (2, ok("hi"))]);
    assert_eq!(
        sim.servers.call(sim.now, 3, "remote__crash", json!({})),
        Err(CallError::NotFound("remote__crash".into())),
        "filtered out"
    );
}

#[test]
fn a_hanging_call_times_out_and_the_server_is_told() {
    let mut sim = Sim::new(json!({"mcp": {"servers": {
        "local": {"command": "fake", "requestTimeoutMs": 1000},
    }}}));
    sim.servers.need(sim.now);
    sim.pump();
    sim.servers
        .call(sim.now, 7, "local__hang", json!({}))
        .unwrap();
    sim.pump();
    sim.advance(Duration::from_millis(999));
    assert!(sim.seen.done.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.seen.done, [(7, Err(CallError::Timeout(1000)))]);
    let last = sim.seen.messages.last().unwrap();
    assert_eq!(last["method"], "notifications/cancelled");
    assert_eq!(
        sim.state("local"),
        ServerState::Ready,
        "a slow tool is no crash"
    );
}

#[test]
fn a_crash_is_reported_and_restarted_after_its_backoff() {
    let mut sim = Sim::new(json!({"mcp": {"servers": {
        "local": {"command": "fake"},
        "broken": {"command": "missing"},
    }}}));
    sim.servers.need(sim.now);
    sim.pump();
    assert_eq!(sim.state("broken"), ServerState::Broken);
    assert_eq!(
        sim.state("local"),
        ServerState::Ready,
        "the others are not taken down"
    );
    sim.servers
        .call(sim.now, 1, "local__echo", json!({"text": "a"}))
        .unwrap();
    sim.servers
        .call(sim.now, 2, "local__crash", json!({}))
        .unwrap();
    sim.pump();
    assert!(matches!(&sim.seen.done[1], (2, Err(CallError::Gone(why))) if why == "exit 3"));
    assert_eq!(sim.state("local"), ServerState::Broken);
    let status = &sim.servers.statuses()[1];
    assert_eq!(status.error.as_deref(), Some("exit 3"));
    assert!(matches!(
        sim.servers.call(sim.now, 3, "local__echo", json!({})),
        Err(CallError::Unavailable { .. })
    ));
    // 250 ms for the first failure, then twice as long each time.
    let spawns = sim.seen.spawns;
    sim.advance(Duration::from_millis(249));
    assert_eq!(sim.seen.spawns, spawns);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.seen.spawns, spawns + 2, "both restarted");
    assert_eq!(sim.state("local"), ServerState::Ready);
    let local = &sim.servers.statuses()[1];
    assert_eq!((local.restarts, local.error.clone()), (1, None));
    assert_eq!(sim.state("broken"), ServerState::Broken);
    sim.advance(Duration::from_millis(499));
    assert_eq!(sim.seen.spawns, spawns + 2);
    sim.advance(Duration::from_millis(1));
    assert_eq!(
        sim.seen.spawns,
        spawns + 3,
        "the broken one again after 500 ms"
    );
}

/// One [`Session`] on its own, the test playing the server: the lifecycle with every
/// `tools/list` page and the filter, calls answered, timed out and cancelled, `list_changed`,
/// server requests, and start-up failures. The clock is the test's.
mod session {
    use std::time::{Duration, Instant};

    use clawgate_core::tools::mcp::jsonrpc::{METHOD_NOT_FOUND, parse};
    use clawgate_core::tools::mcp::session::{Session, SessionError, SessionEvent};
    use clawgate_core::tools::mcp::{CallError, CallResult, McpLimits, ToolFilter};
    use serde_json::{Value, json};

    fn sent(s: &mut Session) -> Vec<Value> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|o| serde_json::from_slice(&o.bytes).unwrap())
            .collect()
    }

    fn answer(s: &mut Session, now: Instant, id: &Value, result: Value) {
        let bytes = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        s.handle_message(now, parse(bytes.as_bytes(), 1 << 20).unwrap());
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn started(now: Instant, limits: McpLimits) -> Session {
        let mut s = Session::start(
            now,
            limits,
            ToolFilter {
                include: vec![],
                exclude: vec!["hidden".into()],
            },
            Duration::from_secs(5),
            Duration::from_secs(2),
            "test",
        );
        let init = sent(&mut s);
        assert_eq!(init[0]["method"], "initialize");
        assert_eq!(init[0]["params"]["protocolVersion"], "2025-06-18");
        answer(
            &mut s,
            now,
            &init[0]["id"],
            json!({"protocolVersion": "2025-03-26", "capabilities": {"tools": {"listChanged": true}}}),
        );
        let out = sent(&mut s);
        assert_eq!(out[0]["method"], "notifications/initialized");
        assert_eq!(out[1]["method"], "tools/list");
        assert!(out[1].get("params").is_none());
        answer(
            &mut s,
            now,
            &out[1]["id"],
            json!({"tools": [{"name": "echo", "description": "Echo", "inputSchema": {"type": "object", "properties": {"x": {}}}}, {"name": "hidden"}], "nextCursor": "p2"}),
        );
        let page2 = sent(&mut s);
        assert_eq!(page2[0]["params"]["cursor"], "p2");
        answer(
            &mut s,
            now,
            &page2[0]["id"],
            json!({"tools": [{"name": "slow"}]}),
        );
        assert_eq!(events(&mut s), vec![SessionEvent::Ready]);
        s
    }

    #[test]
    fn lifecycle_lists_every_page_and_filters() {
        let now = Instant::now();
        let s = started(now, McpLimits::default());
        assert_eq!(s.protocol_version(), Some("2025-03-26"));
        let names: Vec<_> = s.tools().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["echo", "slow"]);
        assert_eq!(s.tools()[0].input_schema["properties"]["x"], json!({}));
        assert_eq!(s.tools()[1].input_schema, json!({"type": "object"}));
    }

    #[test]
    fn calls_answer_time_out_and_are_cancelled() {
        let now = Instant::now();
        let mut s = started(now, McpLimits::default());
        s.call(now, 1, "echo", json!({"x": 1})).unwrap();
        s.call(now, 2, "slow", json!({})).unwrap();
        let out = sent(&mut s);
        assert_eq!(
            out[0]["params"],
            json!({"name": "echo", "arguments": {"x": 1}})
        );
        answer(
            &mut s,
            now,
            &out[0]["id"],
            json!({"content": [{"type": "text", "text": "hi"}, {"type": "image", "data": "…"}]}),
        );
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::CallDone {
                call: 1,
                outcome: Ok(CallResult {
                    text: "hi\n[image]".into(),
                    is_error: false,
                })
            }]
        );
        assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(2)));
        s.handle_timeout(now + Duration::from_secs(2));
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::CallDone {
                call: 2,
                outcome: Err(CallError::Timeout(2000))
            }]
        );
        let cancelled = sent(&mut s);
        assert_eq!(cancelled[0]["method"], "notifications/cancelled");
        assert_eq!(cancelled[0]["params"]["requestId"], out[1]["id"]);
        // A late answer to the given-up call is dropped.
        answer(&mut s, now, &out[1]["id"], json!({"content": []}));
        assert!(events(&mut s).is_empty());
        s.call(now, 3, "echo", json!({})).unwrap();
        s.cancel(3, "aborted");
        assert_eq!(sent(&mut s)[1]["method"], "notifications/cancelled");
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn list_changed_relists_and_server_requests_are_answered() {
        let now = Instant::now();
        let mut s = started(now, McpLimits::default());
        s.handle_message(
            now,
            parse(
                br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
                99,
            )
            .unwrap(),
        );
        let out = sent(&mut s);
        assert_eq!(out[0]["method"], "tools/list");
        answer(
            &mut s,
            now,
            &out[0]["id"],
            json!({"tools": [{"name": "new"}]}),
        );
        assert_eq!(events(&mut s), vec![SessionEvent::ToolsChanged]);
        assert_eq!(s.tools()[0].name, "new");
        s.handle_message(
            now,
            parse(br#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#, 99).unwrap(),
        );
        s.handle_message(
            now,
            parse(
                br#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage"}"#,
                99,
            )
            .unwrap(),
        );
        let out = sent(&mut s);
        assert_eq!(out[0], json!({"jsonrpc": "2.0", "id": "p", "result": {}}));
        assert_eq!(out[1]["error"]["code"], METHOD_NOT_FOUND);
    }

    fn bare(now: Instant) -> Session {
        Session::start(
            now,
            McpLimits::default(),
            ToolFilter::default(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            "t",
        )
    }

    #[test]
    fn start_up_failures_fail_the_session_and_calls_end_on_close() {
        let now = Instant::now();
        let mut s = bare(now);
        let init = sent(&mut s);
        answer(
            &mut s,
            now,
            &init[0]["id"],
            json!({"protocolVersion": "1999-01-01"}),
        );
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::Failed(SessionError::Version(
                "1999-01-01".into()
            ))]
        );
        let mut s = bare(now);
        s.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::Failed(SessionError::Timeout("initialize"))]
        );
        let mut s = started(now, McpLimits::default());
        s.call(now, 5, "echo", json!({})).unwrap();
        s.close("exited");
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::CallDone {
                call: 5,
                outcome: Err(CallError::Gone("exited".into()))
            }]
        );
        assert!(s.call(now, 6, "echo", json!({})).is_err());
    }
}
