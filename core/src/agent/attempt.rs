//! One run's model requests: sending one (the turn in its provider's API), the first-byte and
//! idle deadlines while it runs, and the retries of a request answered 429 or 5xx before the
//! turn sent any text: exponential backoff with jitter, at least the provider's
//! `Retry-After`, at most [`Limits::model_max_retries`] of them within
//! [`Limits::model_retry_window`]. Each retry is announced as upstream does: an `agent`
//! `run_status` `retrying` event with the attempt, the delay and the reason, and a `chat`
//! `status` `starting_model` (without upstream's `retry` member, which its published schema
//! does not allow).
//!
//! [`Limits::model_max_retries`]: crate::config::Limits::model_max_retries
//! [`Limits::model_retry_window`]: crate::config::Limits::model_retry_window

use core::time::Duration;
use std::time::Instant;

use serde_json::json;

use crate::config::{Limits, ModelRoute};
use crate::gateway::{Gateway, Output, Timer};
use crate::log::Level;
use crate::model::openai::{ErrorKind, Message, ProviderError, StreamLimits};
use crate::work::{Work, WorkId};

use super::Failure;
use super::prompt::system_prompt;
use super::run::Response;

/// A run's request bookkeeping: how many retries, since when, and the live deadline.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// Retries made so far.
    retries: u32,
    /// When the first retryable failure came.
    first_failure: Option<Instant>,
    /// The live request must show progress by then.
    deadline: Option<Instant>,
    /// A deadline timer is pending.
    armed: bool,
}

impl Attempts {
    /// A new model request of the same turn (after a tool round): a fresh retry budget.
    pub(crate) fn reset(&mut self) {
        self.retries = 0;
        self.first_failure = None;
        self.deadline = None;
    }
}

/// The first-byte and idle timeouts of `route`.
fn timeouts(limits: &Limits, route: &ModelRoute) -> (Duration, Duration) {
    match route.timeout {
        Some(t) => (t, t),
        None if route.self_hosted => (
            limits.model_self_hosted_timeout,
            limits.model_self_hosted_timeout,
        ),
        None => (limits.model_first_byte_timeout, limits.model_idle_timeout),
    }
}

/// Why a refusal may be retried, in upstream's words; `None` when it may not.
fn retry_reason(e: &ProviderError) -> Option<&'static str> {
    let overloaded = e
        .error_type
        .iter()
        .chain([&e.message_preview])
        .any(|t| t.to_ascii_lowercase().contains("overloaded"));
    match (e.status, e.kind) {
        (_, ErrorKind::RateLimit) if overloaded => Some("overloaded"),
        (Some(429), _) | (None, ErrorKind::RateLimit) => Some("rate_limit"),
        (Some(s), _) if s >= 500 => Some("server_error"),
        _ => None,
    }
}

impl Gateway {
    /// Send run `serial`'s model request (its first or a retry): the system prompt and the
    /// session's recent transcript in the route's API, with a first-byte deadline.
    pub(crate) fn send_model_request(&mut self, now: Instant, serial: u64, route: &ModelRoute) {
        // A turn needs the tools: servers that start lazily start now, and the request
        // waits (bounded) for those still starting.
        self.warm_up_tools(now);
        if self.tools_starting() {
            self.wait_for_tools(now, crate::tools::settle::Waiter::Run(serial));
            return;
        }
        self.request_model(now, serial, route);
    }

    /// [`Gateway::send_model_request`] once the tools are known.
    pub(crate) fn request_model(&mut self, now: Instant, serial: u64, route: &ModelRoute) {
        let Some(key) = self.agent.runs.get(&serial).map(|r| r.session_key.clone()) else {
            return;
        };
        if !self.window_ready(serial, &key) {
            return;
        }
        let system = system_prompt(&self.config.identity, route, &self.config.skills);
        // A channel message's turn: who sent it (upstream's conversation info block), in the
        // user's role just before the message it describes and in this request only, so the
        // system prompt stays the same turn after turn (a provider's prompt cache keeps the
        // prefix) and the stored transcript keeps what was said.
        let info = self
            .agent
            .runs
            .get(&serial)
            .filter(|r| r.origin.is_none())
            .and_then(|r| self.channel_message_of(&r.run_id))
            .map(|m| Message::User(m.conversation_info()));
        let ctx = self.run_call_context(serial, &key);
        let tools = self.offered_tools(&ctx);
        let window = self.turn_window(&key);
        let mut messages: Vec<&Message> = window.iter().map(|m| &**m).collect();
        if let Some(info) = &info {
            let at = messages
                .iter()
                .rposition(|m| matches!(m, Message::User(_)))
                .unwrap_or(messages.len());
            messages.insert(at, info);
        }
        let request = route.turn_request(Some(&system), &messages, tools);
        let (first_byte, _) = timeouts(&self.config.limits, route);
        let id = self.next_work_id();
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        run.work = Some(id);
        run.response = Response::Awaiting;
        run.stream = route.turn_stream(StreamLimits::default());
        run.attempts.deadline = Some(now + first_byte);
        self.agent.by_work.insert(id, serial);
        self.arm_model_deadline(serial);
        self.out.push_back(Output::Work {
            id,
            work: Work::Http(request),
        });
    }

    /// Run `serial`'s response moved: its next byte is due within the idle timeout.
    pub(crate) fn model_progress(&mut self, now: Instant, serial: u64) {
        let Some(route) = self.config.model.as_ref() else {
            return;
        };
        let (_, idle) = timeouts(&self.config.limits, route);
        if let Some(run) = self.agent.runs.get_mut(&serial) {
            run.attempts.deadline = Some(now + idle);
        }
    }

    fn arm_model_deadline(&mut self, serial: u64) {
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        if let (Some(at), false) = (run.attempts.deadline, run.attempts.armed) {
            run.attempts.armed = true;
            self.schedule(at, Timer::ModelDeadline(serial));
        }
    }

    /// The deadline timer of run `serial` fired: time the request out if it made no progress
    /// since, else wait for its new deadline.
    pub(crate) fn model_deadline_due(&mut self, now: Instant, serial: u64) {
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return;
        };
        run.attempts.armed = false;
        let (Some(at), Some(work)) = (run.attempts.deadline, run.work) else {
            return;
        };
        if at > now {
            self.arm_model_deadline(serial);
            return;
        }
        let waiting_for_head = matches!(run.response, Response::Awaiting);
        let Some(route) = self.config.model.as_ref() else {
            return;
        };
        let (first_byte, idle) = timeouts(&self.config.limits, route);
        let message = if waiting_for_head {
            route.describe_timeout(first_byte, "first-byte")
        } else {
            route.describe_timeout(idle, "idle")
        };
        self.cancel_model_request(work);
        self.fail_run(now, serial, Failure::plain(message, "timeout"));
    }

    /// Stop the model request `work` and forget which run it served.
    pub(crate) fn cancel_model_request(&mut self, work: WorkId) {
        self.agent.by_work.remove(&work);
        self.cancel_work(work);
    }

    /// Run `serial`'s request was refused with `e`: schedule a retry and return true when
    /// the refusal is transient, the turn has sent no text, and the budget allows one.
    pub(crate) fn retry_model_request(
        &mut self,
        now: Instant,
        serial: u64,
        e: &ProviderError,
    ) -> bool {
        let Some(reason) = retry_reason(e) else {
            return false;
        };
        let limits = &self.config.limits;
        let (max, base, cap, window) = (
            limits.model_max_retries,
            limits.model_retry_base_delay,
            limits.model_retry_max_delay,
            limits.model_retry_window,
        );
        let mut random = [0u8; 2];
        self.entropy.fill(&mut random);
        let Some(run) = self.agent.runs.get_mut(&serial) else {
            return false;
        };
        let attempts = &mut run.attempts;
        if !run.text.is_empty() || attempts.retries >= max {
            return false;
        }
        let first = *attempts.first_failure.get_or_insert(now);
        let exponential = base
            .saturating_mul(1u32.checked_shl(attempts.retries).unwrap_or(u32::MAX))
            .min(cap);
        // Upstream's jitter: 0.5 to 1.5 times the exponential delay, capped.
        let jitter = 0.5 + f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX);
        let jittered = exponential.mul_f64(jitter).min(cap);
        let retry_after = Duration::from_secs(e.retry_after_secs.unwrap_or(0));
        let delay = jittered.max(retry_after);
        if now + delay > first + window {
            return false;
        }
        attempts.retries += 1;
        attempts.deadline = None;
        let attempt = attempts.retries;
        // An in-stream refusal leaves its request running; an ended one ignores the cancel.
        if let Some(w) = run.work.take() {
            self.cancel_model_request(w);
        }
        let delay_ms = delay.as_millis() as u64;
        let message = if reason == "rate_limit" || reason == "overloaded" {
            format!("Retrying… {}/{}", attempt + 1, max + 1)
        } else {
            format!(
                "Provider temporarily unavailable. Retrying in {}s ({attempt}/{max}).",
                delay_ms.div_ceil(1000)
            )
        };
        let data = json!({
            "phase": "retrying",
            "message": message,
            "retryAttempt": attempt,
            "maxRetries": max,
            "delayMs": delay_ms,
            "attempt": attempt + 1,
            "maxAttempts": max + 1,
            "reason": reason,
        });
        self.with_run(now, serial, |ev| ev.run_status("starting_model", |_| data));
        let origin = self.agent.runs.get(&serial).and_then(|r| r.origin);
        let route = self.config.model.as_ref().map(|r| r.describe_refusal(e));
        self.log(
            now,
            Level::Warn,
            origin,
            format!(
                "{}; retry {attempt}/{max} in {} ms",
                route.unwrap_or_default(),
                delay_ms
            ),
        );
        self.schedule(now + delay, Timer::ModelRetry(serial));
        true
    }

    /// The backoff of run `serial` is over: send its request again.
    pub(crate) fn model_retry_due(&mut self, now: Instant, serial: u64) {
        let waiting = self
            .agent
            .runs
            .get(&serial)
            .is_some_and(|r| r.work.is_none());
        if let (true, Some(route)) = (waiting, self.config.model.clone()) {
            self.send_model_request(now, serial, &route);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::openai::classify_http_error;

    #[test]
    fn which_refusals_are_retried() {
        let reason = |status, body: &[u8]| retry_reason(&classify_http_error(status, None, body));
        assert_eq!(reason(429, b"slow down"), Some("rate_limit"));
        assert_eq!(reason(500, b"oops"), Some("server_error"));
        assert_eq!(
            reason(
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            Some("overloaded")
        );
        assert_eq!(reason(400, b"bad request"), None);
        assert_eq!(reason(401, b"invalid api key"), None);
        assert_eq!(reason(404, b"no such model"), None);
    }

    #[test]
    fn timeouts_by_provider_class() {
        let limits = Limits::default();
        let mut r = ModelRoute::new("p", "m", "https://api.example.com/v1");
        assert_eq!(
            timeouts(&limits, &r),
            (Duration::from_secs(120), Duration::from_secs(120))
        );
        r.self_hosted = true;
        assert_eq!(timeouts(&limits, &r).1, Duration::from_secs(300));
        r.timeout = Some(Duration::from_secs(5));
        assert_eq!(
            timeouts(&limits, &r),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
    }
}
