//! RSS with many stored sessions, at two transcript lengths, on a gateway with the agent and
//! Telegram (polling a fake Bot API) configured: each session is made by one agent turn (the
//! fake model answers at once) and grown with `chat.inject` (an assistant note appended to its
//! transcript, no model call), pipelined. If the gateway held whole transcripts in memory, the
//! second figure would grow with their length.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clawgate_tests::fake_model::FakeModel;
use clawgate_tests::fake_telegram::FakeTelegram;
use serde_json::json;

use crate::error::BenchError;
use crate::feed::Feed;
use crate::pool::Pool;
use crate::procs::{Launch, Server, await_steady_threads, settled_rss_kib};
use crate::scenario::agent::{chat_state, connect, failed, send};
use crate::scenario::channels;
use crate::wire::{GatewayWire, Note};

/// Requests in flight at once while transcripts are filled.
const WINDOW: usize = 64;
/// Longest wait for the gateway to come to rest before its RSS is taken.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// How many sessions, and the two lengths their transcripts are measured at.
#[derive(Clone, Copy, Debug)]
pub struct TranscriptPlan {
    /// Sessions.
    pub sessions: usize,
    /// Messages per session at the first measurement (at least 2: the turn's two).
    pub short: usize,
    /// Messages per session at the second.
    pub long: usize,
    /// Longest the whole fill may take.
    pub limit: Duration,
}

/// What one gateway measured.
#[derive(Clone, Debug, Default)]
pub struct TranscriptFigures {
    /// RSS with `short` messages in each session, KiB.
    pub rss_short_kib: u64,
    /// RSS with `long` messages in each session, KiB.
    pub rss_long_kib: u64,
    /// The anonymous part of `rss_long_kib` (`RssAnon`), KiB.
    pub rss_long_anon_kib: u64,
    /// Messages appended per second while filling (each one durable before its answer).
    pub appends_per_sec: f64,
}

fn session(i: usize) -> String {
    format!("agent:main:bench-store-{i}")
}

/// One turn on each of `sessions` sessions at once; waits for every `final`.
fn seed(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    key: usize,
    sessions: usize,
    deadline: Instant,
) -> Result<(), BenchError> {
    for i in 0..sessions {
        send(pool, key, &session(i), "seed", &format!("bench-store-{i}"));
    }
    let mut ended = 0;
    while ended < sessions {
        let a = feed.next(pool, deadline, "the seeding turns' finals")?;
        if let Some(why) = failed(&a.note) {
            return Err(BenchError::Protocol(why));
        }
        if matches!(chat_state(&a.note), Some((_, "final"))) {
            ended += 1;
        }
    }
    Ok(())
}

/// `per_session` notes appended to each of `sessions` sessions, [`WINDOW`] in flight.
fn inject(
    pool: &mut Pool<GatewayWire>,
    feed: &mut Feed,
    key: usize,
    sessions: usize,
    per_session: usize,
    deadline: Instant,
) -> Result<usize, BenchError> {
    let total = sessions * per_session;
    let (mut sent, mut done) = (0usize, 0usize);
    let mut waiting: HashSet<String> = HashSet::new();
    while done < total {
        while sent < total && waiting.len() < WINDOW {
            let params = json!({
                "sessionKey": session(sent % sessions),
                "message": format!("stored note {sent}: a line of text as long as a short answer."),
            });
            if let Some(id) = pool.with(key, |w| w.request("chat.inject", params)) {
                waiting.insert(id);
            }
            sent += 1;
        }
        let a = feed.next(pool, deadline, "chat.inject answers")?;
        match a.note {
            Note::Response { id, result } if waiting.remove(&id) => {
                result.map_err(|e| BenchError::Protocol(format!("chat.inject: {e}")))?;
                done += 1;
            }
            Note::Closed(why) => return Err(BenchError::Protocol(why)),
            _ => {}
        }
    }
    Ok(total)
}

/// The RSS of `server` at rest, KiB: once its threads have not changed for
/// [`channels::STEADY`] (the fill's short-lived threads have exited), at most [`SETTLE_LIMIT`].
fn settled_rss(server: &Server) -> u64 {
    await_steady_threads(server, channels::STEADY, SETTLE_LIMIT);
    settled_rss_kib(server, Duration::ZERO)
}

/// Everything [`TranscriptFigures`] holds, for the gateway `launch` starts.
pub fn measure(
    name: &str,
    launch: &Launch,
    plan: &TranscriptPlan,
) -> Result<TranscriptFigures, BenchError> {
    let model = FakeModel::echo();
    let tg = FakeTelegram::start(super::channels::BOT_TOKEN);
    let config = super::channels::config(&model, &tg, plan.sessions);
    let mut server = Server::spawn_channels(name, launch, &config, &[])?;
    let addr = server.addr;
    super::agent::await_ready(&mut server)?;
    let deadline = Instant::now() + plan.limit;
    let (mut pool, mut feed, key) = connect(addr)?;
    seed(&mut pool, &mut feed, key, plan.sessions, deadline)?;
    let t0 = Instant::now();
    let mut appended = inject(
        &mut pool,
        &mut feed,
        key,
        plan.sessions,
        plan.short.saturating_sub(2),
        deadline,
    )?;
    let mut fill_time = t0.elapsed();
    let rss_short_kib = settled_rss(&server);
    let t1 = Instant::now();
    appended += inject(
        &mut pool,
        &mut feed,
        key,
        plan.sessions,
        plan.long.saturating_sub(plan.short.max(2)),
        deadline,
    )?;
    fill_time += t1.elapsed();
    let rss_long_kib = settled_rss(&server);
    let rss_long_anon_kib = server.rss_anon_kib();
    server.check_alive()?;
    pool.close_all();
    Ok(TranscriptFigures {
        rss_short_kib,
        rss_long_kib,
        rss_long_anon_kib,
        appends_per_sec: appended as f64 / fill_time.as_secs_f64().max(1e-9),
    })
}
