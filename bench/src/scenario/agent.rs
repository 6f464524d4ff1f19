//! Agent turns through a gateway whose model is a fake OpenAI-compatible provider running in
//! this process: the latency the gateway adds between the model's bytes and the client's
//! `chat` events, and the gateway's RSS while many sessions stream at once.
//!
//! The fake records when it flushed each part of each answer ([`FakeModel::write_times`]) and
//! the load generator records when each `chat` event was read, on the same clock: the
//! difference is what the gateway (HTTP client, SSE and JSON decoding, pacing, WebSocket
//! framing, the loopback hops) adds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_core::scopes;
use clawgate_tests::fake_model::{FakeModel, MODEL, RecordedRequest, Reply};
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::feed::Feed;
use crate::pool::Pool;
use crate::procs::{Server, TOKEN};
use crate::stats::Percentiles;
use crate::wire::{GatewayWire, Note};

/// Text parts of each answer.
const PARTS: usize = 8;
/// Pause before each part of a latency turn's answer.
const GAP: Duration = Duration::from_millis(20);
/// Pause before each part of an answer in the concurrent run (so every stream stays open
/// while the RSS is sampled).
const SLOW_GAP: Duration = Duration::from_millis(250);
/// Longest wait for one turn.
const TURN_LIMIT: Duration = Duration::from_secs(120);

/// What one gateway measured.
#[derive(Clone, Debug, Default)]
pub struct AgentFigures {
    /// Model's first text part flushed → first `chat` delta read by the client.
    pub first_delta: Percentiles,
    /// Model's last byte flushed → `chat` final read by the client.
    pub last_to_final: Percentiles,
    /// `chat.send` written → `chat` final read (the whole turn, the fake's pauses included).
    pub turn: Percentiles,
    /// RSS before the concurrent run, KiB.
    pub rss_before_kib: u64,
    /// Highest RSS sampled while the sessions streamed, KiB.
    pub rss_peak_kib: u64,
    /// Longest wait from the first `chat.send` to the last `final` of the concurrent run.
    pub concurrent_elapsed: Duration,
}

/// What every message of the agent runs carries, so a model shared with a channel run (see
/// [`reply`]) knows the request is an agent turn's.
const MARK: &str = "bench-agent";
/// The message of a concurrent run's turns: the fake answers it slowly.
const SLOW: &str = "bench-agent: slow answer please";

/// The answer to an agent run's request: [`PARTS`] words, each after [`GAP`], or after
/// [`SLOW_GAP`] when the message is [`SLOW`]; `None` for a request of no agent run.
pub(crate) fn reply(req: &RecordedRequest) -> Option<Reply> {
    if !mentions(req, MARK) {
        return None;
    }
    let words: Vec<String> = (0..PARTS).map(|i| format!("word{i} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let slow = mentions(req, SLOW);
    Some(Reply::text(&words).with_delay(if slow { SLOW_GAP } else { GAP }))
}

/// A fake model answering every request as [`reply`] does an agent run's.
fn fake_model() -> FakeModel {
    FakeModel::start(|req| {
        reply(req).unwrap_or_else(|| Reply::text(&["not an agent run's request"]))
    })
}

/// Whether `text` is anywhere in the request's body.
fn mentions(req: &RecordedRequest, text: &str) -> bool {
    String::from_utf8_lossy(&req.body).contains(text)
}

/// The `openclaw.json` members that make `model` the agent's model, and let `sessions` runs
/// go at once.
pub(crate) fn config(model: &FakeModel, sessions: usize) -> Value {
    json!({
        "models": {"providers": {"fake": {
            "baseUrl": model.base_url(),
            "api": "openai-completions",
            "apiKey": "sk-bench",
            "models": [{"id": MODEL, "name": MODEL}],
        }}},
        "agents": {"defaults": {
            "model": {"primary": format!("fake/{MODEL}")},
            "maxConcurrent": sessions,
        }},
    })
}

/// An operator that may chat (`operator.admin` implies write and read).
pub(crate) fn operator(addr: SocketAddr, n: u64) -> GatewayWire {
    let mut cfg = ClientConfig::cli(&addr.to_string());
    cfg.token = Some(TOKEN.into());
    cfg.scopes = vec![scopes::ADMIN.into()];
    GatewayWire::new(cfg, super::ws_key(n))
}

/// Open one operator connection and wait for its `hello-ok`.
pub(crate) fn connect(addr: SocketAddr) -> Result<(Pool<GatewayWire>, Feed, usize), BenchError> {
    let mut pool = super::pool(addr)?;
    let mut feed = Feed::default();
    let key = pool
        .open(operator(addr, 1))
        .map_err(|e| BenchError::Protocol(format!("connect: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = feed.next(&mut pool, deadline, "operator hello")?;
        match a.note {
            Note::Ready => return Ok((pool, feed, key)),
            Note::Closed(why) => return Err(BenchError::Protocol(why)),
            _ => {}
        }
    }
}

/// Send `chat.send` for `text` on `session` with idempotency key `run`.
pub(crate) fn send(pool: &mut Pool<GatewayWire>, key: usize, session: &str, text: &str, run: &str) {
    pool.with(key, |w| {
        w.request(
            "chat.send",
            json!({"sessionKey": session, "message": text, "idempotencyKey": run}),
        )
    });
}

/// The `runId` and `state` of a `chat` event.
pub(crate) fn chat_state(note: &Note) -> Option<(&str, &str)> {
    let Note::Event { event, payload } = note else {
        return None;
    };
    if event != "chat" {
        return None;
    }
    Some((payload["runId"].as_str()?, payload["state"].as_str()?))
}

/// A refused `chat.send` or an `error`/`aborted` end, as an error.
pub(crate) fn failed(note: &Note) -> Option<String> {
    match note {
        Note::Response { result: Err(e), .. } => Some(format!("chat.send refused: {e}")),
        Note::Event { event, payload }
            if event == "chat"
                && matches!(payload["state"].as_str(), Some("error" | "aborted")) =>
        {
            Some(format!(
                "turn ended {}: {}",
                payload["state"], payload["errorMessage"]
            ))
        }
        Note::Closed(why) => Some(format!("connection closed: {why}")),
        _ => None,
    }
}

/// `turns` turns one after another on one session, timed against the fake's write times;
/// `tag` keeps their idempotency keys apart from another call's.
fn latency(
    addr: SocketAddr,
    model: &FakeModel,
    tag: &str,
    turns: usize,
) -> Result<(Percentiles, Percentiles, Percentiles), BenchError> {
    let (mut pool, mut feed, key) = connect(addr)?;
    let (mut first, mut last, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..turns {
        let before = model.requests().len();
        let text = format!("{MARK} {tag} turn {i}.");
        let run = format!("bench-{tag}-{i}");
        let sent = Instant::now();
        send(&mut pool, key, "agent:main:bench-latency", &text, &run);
        let deadline = sent + TURN_LIMIT;
        let mut delta_at = None;
        let final_at = loop {
            let a = feed.next(&mut pool, deadline, "a turn's final")?;
            if let Some(why) = failed(&a.note) {
                return Err(BenchError::Protocol(why));
            }
            match chat_state(&a.note) {
                Some((r, "delta")) if r == run => {
                    delta_at.get_or_insert(a.at);
                }
                Some((r, "final")) if r == run => break a.at,
                _ => {}
            }
        };
        let Some(delta_at) = delta_at else {
            return Err(BenchError::Protocol(format!("turn {i} had no chat delta")));
        };
        let requests = model.requests();
        let times = model.write_times();
        // Upstream adds its own user message after the person's, so look at the whole body.
        let Some(written) = (before..requests.len())
            .rfind(|&r| mentions(&requests[r], &text))
            .and_then(|r| times.get(r))
        else {
            return Err(BenchError::Protocol(format!(
                "turn {i}: the model saw no request with its text"
            )));
        };
        // Part 0 is the role chunk; part 1 the first text.
        let (Some(first_text), Some(end)) = (written.get(1), written.last()) else {
            return Err(BenchError::Protocol(format!(
                "turn {i}: the answer was cut short"
            )));
        };
        first.push(delta_at.saturating_duration_since(*first_text));
        last.push(final_at.saturating_duration_since(*end));
        whole.push(final_at - sent);
    }
    pool.close_all();
    Ok((
        Percentiles::of(&first),
        Percentiles::of(&last),
        Percentiles::of(&whole),
    ))
}

/// `sessions` turns at once, one per session, on one operator connection; the server's peak
/// RSS while they stream, KiB, and how long the last took to end.
fn concurrent(server: &Server, sessions: usize) -> Result<(u64, Duration), BenchError> {
    let (mut pool, mut feed, key) = connect(server.addr)?;
    let t0 = Instant::now();
    for i in 0..sessions {
        let run = format!("bench-concurrent-{i}");
        send(&mut pool, key, &format!("agent:main:bench-{i}"), SLOW, &run);
    }
    let deadline = t0 + TURN_LIMIT;
    let (mut ended, mut peak, mut next_sample) = (0usize, 0u64, Instant::now());
    while ended < sessions {
        if Instant::now() >= next_sample {
            peak = peak.max(server.rss_kib());
            next_sample += Duration::from_millis(50);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout(format!(
                "{sessions} concurrent turns ({ended} ended)"
            )));
        }
        feed.pump(&mut pool, Duration::from_millis(20))?;
        while let Some(a) = feed.pop() {
            if let Some(why) = failed(&a.note) {
                return Err(BenchError::Protocol(why));
            }
            if matches!(chat_state(&a.note), Some((_, "final"))) {
                ended += 1;
            }
        }
    }
    let elapsed = t0.elapsed();
    pool.close_all();
    Ok((peak, elapsed))
}

/// Wait (up to 240 s: upstream starts three gateways at once in the paths) until `server`
/// answers an operator's handshake.
pub(crate) fn await_ready(server: &mut Server) -> Result<(), BenchError> {
    let addr = server.addr;
    let mut n = 1u64;
    let mut dial = || {
        n += 1;
        operator(addr, n)
    };
    let limit = Duration::from_secs(240);
    super::ready::time_to_ready(server, &mut dial, limit, Duration::from_millis(20))?;
    Ok(())
}

/// A gateway started for the agent runs, with its fake model.
pub struct AgentRun {
    model: FakeModel,
    server: Server,
}

/// Start the gateway `launch` for the agent runs (`sessions` at once); not yet ready.
pub fn start(
    name: &str,
    launch: &crate::procs::Launch,
    sessions: usize,
) -> Result<AgentRun, BenchError> {
    let model = fake_model();
    let server = Server::spawn_with(name, launch, &config(&model, sessions))?;
    Ok(AgentRun { model, server })
}

impl AgentRun {
    /// Wait until the gateway answers an operator.
    pub fn ready(mut self) -> Result<Self, BenchError> {
        await_ready(&mut self.server)?;
        Ok(self)
    }

    /// Everything [`AgentFigures`] holds: `turns` timed, `sessions` at once.
    pub fn run(mut self, turns: usize, sessions: usize) -> Result<AgentFigures, BenchError> {
        run_on(&mut self.server, &self.model, turns, sessions)
    }
}

/// Everything [`AgentFigures`] holds, on a gateway already answering whose model is `model`
/// (answering as [`reply`] does): `turns` timed, `sessions` at once.
pub fn run_on(
    server: &mut Server,
    model: &FakeModel,
    turns: usize,
    sessions: usize,
) -> Result<AgentFigures, BenchError> {
    let addr = server.addr;
    // One warm-up turn (upstream prepares its workspace on the first).
    latency(addr, model, "warm-up", 1)?;
    let (first_delta, last_to_final, turn) = latency(addr, model, "latency", turns)?;
    let rss_before_kib = crate::procs::settled_rss_kib(server, Duration::from_secs(1));
    let (rss_peak_kib, concurrent_elapsed) = concurrent(server, sessions)?;
    server.check_alive()?;
    Ok(AgentFigures {
        first_delta,
        last_to_final,
        turn,
        rss_before_kib,
        rss_peak_kib,
        concurrent_elapsed,
    })
}

/// Everything [`AgentFigures`] holds, for the gateway `launch` starts.
pub fn measure(
    name: &str,
    launch: &crate::procs::Launch,
    turns: usize,
    sessions: usize,
) -> Result<AgentFigures, BenchError> {
    start(name, launch, sessions)?.ready()?.run(turns, sessions)
}
