//! `clawgate gateway probe`: connect as upstream's probe client (`cli`, mode `probe`,
//! protocol 3–4, `operator.read`), pipeline `health`, `status`, `system-presence` and
//! `config.get`, and report reachability, RPC success, scope limits and the last close
//! separately, so a gateway that accepts sockets but answers nothing is never shown green.

use std::ffi::OsString;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_core::frame::ErrorShape;
use serde_json::{Value, json};

use super::args::{self, QUERY};
use super::connection::{CallError, Close, ConnectError, Session};
use super::credentials::UrlSource;
use super::output::print_json;
use super::report::{self, describe_close, detail_code};
use super::rpc;
use super::target::Target;
use super::{Exit, Failure, Outcome};

/// Default overall timeout of a probe.
pub const DEFAULT_TIMEOUT_MS: u64 = 3_000;

const USAGE: &str = "clawgate gateway probe [--url ws://HOST:PORT] [--token T | --password P] [--timeout MS] [--json]";

/// The methods a probe pipelines after `hello-ok`, and their params.
const PROBE_CALLS: &[(&str, Option<&str>)] = &[
    ("health", None),
    ("status", None),
    ("system-presence", None),
    ("config.get", Some("{}")),
];

/// What one probe found.
#[derive(Debug, Default)]
pub struct Finding {
    /// `hello-ok` arrived.
    pub reached: bool,
    /// Every pipelined call succeeded.
    pub rpc_ok: bool,
    /// A call failed for want of `operator.read`.
    pub scope_limited: bool,
    /// Time to `hello-ok`.
    pub latency_ms: Option<u64>,
    /// The first error, as text.
    pub error: Option<String>,
    /// The connect error's details, if `connect` was refused.
    pub connect_error: Option<ErrorShape>,
    /// The last close seen.
    pub close: Option<Close>,
    /// `hello-ok.auth.role` and `.scopes`.
    pub role: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `hello-ok.server`.
    pub server: Value,
    /// Results of the pipelined calls (`null` where they failed).
    pub health: Value,
    /// `status` result.
    pub status: Value,
    /// `system-presence` result.
    pub presence: Value,
}

impl Finding {
    /// Upstream's capability summary.
    pub fn capability(&self) -> &'static str {
        let has = |s: &str| self.scopes.iter().any(|g| g == s);
        if self.connect_error.as_ref().and_then(detail_code) == Some("PAIRING_REQUIRED") {
            "pairing_pending"
        } else if has(clawgate_core::scopes::ADMIN) {
            "admin_capable"
        } else if has(clawgate_core::scopes::WRITE) {
            "write_capable"
        } else if has(clawgate_core::scopes::READ) || (self.reached && self.rpc_ok) {
            "read_only"
        } else if self.reached {
            "connected_no_operator_scope"
        } else {
            "unknown"
        }
    }

    /// Upstream's warnings for this finding.
    pub fn warnings(&self, target_id: &str) -> Vec<Value> {
        let mut w = Vec::new();
        if !self.reached {
            w.push(json!({"code": "no_gateway_reachable", "message": format!("No gateway answered: {}", self.error.as_deref().unwrap_or("unreachable")), "targetIds": [target_id]}));
        } else if self.scope_limited {
            w.push(json!({"code": "probe_scope_limited", "message": "Read-probe diagnostics are limited by gateway scopes (missing operator.read). Connection succeeded, but read-only status calls are incomplete. Hint: pair device identity or use credentials with operator.read.", "targetIds": [target_id]}));
        } else if !self.rpc_ok {
            let detail = self
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_else(|| ".".into());
            w.push(json!({"code": "probe_detail_failed", "message": format!("Gateway accepted the WebSocket connection, but follow-up read diagnostics failed{detail}"), "targetIds": [target_id]}));
        }
        w
    }
}

fn close_json(c: &Option<Close>) -> Value {
    c.as_ref()
        .map_or(Value::Null, |c| json!({"code": c.code, "reason": c.reason}))
}

/// Probe `target` before `deadline`.
pub fn probe(target: &Target, deadline: Instant) -> Finding {
    let mut cfg = rpc::client_config(target, "probe", vec![clawgate_core::scopes::READ.into()]);
    cfg.client.version = "dev".into();
    cfg.min_protocol = 3;
    let mut f = Finding {
        health: Value::Null,
        status: Value::Null,
        presence: Value::Null,
        server: Value::Null,
        ..Default::default()
    };
    let mut session = match Session::connect(&target.url, cfg, deadline) {
        Ok(s) => s,
        Err(e) => {
            note_connect_error(&mut f, target, e);
            return f;
        }
    };
    f.reached = true;
    f.latency_ms = Some(session.latency.as_millis() as u64);
    f.role = session
        .hello
        .pointer("/auth/role")
        .and_then(Value::as_str)
        .map(str::to_string);
    f.scopes = session
        .hello
        .pointer("/auth/scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let server = session.hello.get("server").cloned().unwrap_or(Value::Null);
    f.server = json!({"version": server.get("version"), "connId": server.get("connId")});
    let ids: Vec<String> = PROBE_CALLS
        .iter()
        .map(|(m, p)| session.send(m, p.and_then(|p| serde_json::from_str(p).ok())))
        .collect();
    let (mut got, end) = session.collect(&ids);
    let mut results = ids.iter().map(|id| got.remove(id));
    let mut next = || results.next().flatten();
    let mut errors = Vec::new();
    let take = |r: Option<Result<Value, ErrorShape>>, errors: &mut Vec<ErrorShape>| match r {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            errors.push(e);
            Value::Null
        }
        None => Value::Null,
    };
    f.health = take(next(), &mut errors);
    f.status = take(next(), &mut errors);
    f.presence = take(next(), &mut errors);
    take(next(), &mut errors);
    f.scope_limited = errors.iter().any(|e| {
        e.details
            .as_ref()
            .and_then(|d| d.get("missingScope"))
            .and_then(Value::as_str)
            == Some(clawgate_core::scopes::READ)
    });
    f.rpc_ok = errors.is_empty() && end.is_none();
    f.error = errors.first().map(|e| e.message.clone()).or_else(|| {
        end.as_ref().map(|e| match e {
            CallError::Timeout => "timeout".into(),
            CallError::Closed(c) => format!("gateway closed ({})", describe_close(c)),
            CallError::Protocol(p) => p.clone(),
            CallError::Request(e) => e.message.clone(),
        })
    });
    f.close = session.close.clone();
    session.close();
    f
}

fn note_connect_error(f: &mut Finding, target: &Target, e: ConnectError) {
    match e {
        ConnectError::Refused { error, close } => {
            f.error = Some(error.message.clone());
            f.close = close;
            f.connect_error = Some(error);
        }
        ConnectError::Unreachable { reason, code } => {
            f.error = Some(match code {
                Some(c) => format!("connect {c} {}", target.url.host_header()),
                None => reason,
            });
            f.close = Some(Close {
                code: Some(1006),
                reason: String::new(),
            });
        }
        ConnectError::Timeout => f.error = Some("timeout".into()),
        ConnectError::Http { status, body } => {
            f.error = Some(format!("HTTP {status}: {}", body.trim()))
        }
        ConnectError::Closed(c) => {
            f.error = Some(format!("gateway closed ({})", describe_close(&c)));
            f.close = Some(c);
        }
        ConnectError::Protocol(p) => f.error = Some(p),
    }
}

/// The probe's JSON document, in upstream's shape.
pub fn to_json(
    target: &Target,
    f: &Finding,
    timeout_ms: u64,
    duration: Duration,
    ts: u64,
) -> Value {
    let (id, kind) = match target.source {
        UrlSource::CliFlag | UrlSource::Env => ("explicit", "explicit"),
        UrlSource::RemoteConfig => ("configRemote", "configRemote"),
        UrlSource::Local => ("localLoopback", "localLoopback"),
    };
    json!({
        "ok": f.reached,
        "degraded": f.reached && !f.rpc_ok,
        "capability": f.capability(),
        "ts": ts,
        "durationMs": duration.as_millis() as u64,
        "timeoutMs": timeout_ms,
        "primaryTargetId": if f.reached { Value::from(id) } else { Value::Null },
        "warnings": f.warnings(id),
        "targets": [{
            "id": id,
            "kind": kind,
            "url": target.url.to_string(),
            "active": true,
            "tunnel": null,
            "connect": {
                "ok": f.reached,
                "rpcOk": f.rpc_ok,
                "scopeLimited": f.scope_limited,
                "latencyMs": f.latency_ms,
                "error": f.error,
                "close": close_json(&f.close),
            },
            "auth": {"role": f.role, "scopes": f.scopes, "capability": f.capability()},
            "server": f.server,
            "health": f.health,
            "summary": f.status,
            "presence": f.presence,
        }],
    })
}

fn print_human(target: &Target, f: &Finding, timeout_ms: u64) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("Gateway probe: {} ({})", target.url, target.source.as_str());
    match f.latency_ms {
        Some(ms) => println!("Reachable: yes (hello in {ms} ms)"),
        None => println!("Reachable: no"),
    }
    println!(
        "RPC: {}",
        if f.rpc_ok {
            "ok".to_string()
        } else {
            format!("failed: {}", f.error.as_deref().unwrap_or("unknown"))
        }
    );
    println!("Scope-limited: {}", yes_no(f.scope_limited));
    println!("Capability: {}", f.capability().replace('_', "-"));
    println!(
        "Last close: {}",
        f.close
            .as_ref()
            .map_or_else(|| "none".to_string(), describe_close)
    );
    if let Some(v) = f.server.get("version").and_then(Value::as_str) {
        println!(
            "Server: version {v}, connId {}",
            f.server
                .get("connId")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
    }
    println!("Probe budget: {timeout_ms}ms");
    for w in f.warnings("") {
        println!(
            "Warning: {}",
            w.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    if let Some(h) = f
        .connect_error
        .as_ref()
        .and_then(|e| report::auth_hint(target, e))
    {
        println!("Hint: {h}");
    }
}

/// `gateway probe`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, QUERY, &[])?;
    p.expect_positionals(0, USAGE)?;
    let timeout_ms = p.number("timeout")?.unwrap_or(DEFAULT_TIMEOUT_MS);
    let target = rpc::resolve_target(&p)?;
    let started = Instant::now();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let finding = probe(&target, started + Duration::from_millis(timeout_ms));
    if p.switch("json") {
        print_json(&to_json(
            &target,
            &finding,
            timeout_ms,
            started.elapsed(),
            ts,
        ));
    } else {
        print_human(&target, &finding, timeout_ms);
    }
    if finding.reached {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Failed,
            format!("no gateway reachable at {}", target.url),
        ))
    }
}
