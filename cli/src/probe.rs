//! `clawgate gateway probe`: connect as upstream's probe client (`cli`, mode `probe`,
//! protocol 3–4, `operator.read`), pipeline `health`, `status`, `system-presence` and
//! `config.get`, and report reachability, RPC success, scope limits and the last close
//! separately, so a gateway that accepts sockets but answers nothing is never shown green.

use std::ffi::OsString;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_core::frame::ErrorShape;
use serde_json::{Value, json};

use super::args::{self, QUERY};
use super::credentials::{Flags, UrlSource};
use super::output::print_json;
use super::report::{self, describe_close, detail_code};
use super::rpc;
use super::target::{self, Target};
use super::{Exit, Failure, Outcome};
use clawgate_core::config::DEFAULT_PORT;
use clawgate_host::discovery::{Beacon, beacons_json};
use clawgate_host::session::{CallError, Close, ConnectError, Session};
use clawgate_host::url::GatewayUrl;

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
    /// The gateway answered: `hello-ok`, or a refusal of `connect`.
    pub reached: bool,
    /// `hello-ok` arrived (a refused `connect` still counts as reached, as upstream).
    pub connected: bool,
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
        } else if has(clawgate_core::scopes::READ) || (self.connected && self.rpc_ok) {
            "read_only"
        } else if self.connected {
            "connected_no_operator_scope"
        } else {
            "unknown"
        }
    }
}

fn close_json(c: &Option<Close>) -> Value {
    c.as_ref()
        .map_or(Value::Null, |c| json!({"code": c.code, "reason": c.reason}))
}

/// Probe `target` before `deadline`.
pub fn probe(target: &Target, deadline: Instant) -> Finding {
    let started = Instant::now();
    let mut cfg = rpc::client_config(target, "probe", vec![clawgate_core::scopes::READ.into()]);
    cfg.client.version = "dev".into();
    cfg.min_protocol = 3;
    let mut f = Finding {
        server: json!({"version": null, "connId": null}),
        ..Finding::default()
    };
    let (mut session, hello) = match Session::connect(&target.url, cfg, deadline) {
        Ok(connected) => connected,
        Err(e) => {
            note_connect_error(&mut f, target, e, started);
            return f;
        }
    };
    f.reached = true;
    f.connected = true;
    f.latency_ms = Some(hello.latency.as_millis() as u64);
    f.role = hello
        .payload
        .pointer("/auth/role")
        .and_then(Value::as_str)
        .map(str::to_string);
    f.scopes = hello
        .payload
        .pointer("/auth/scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let server = hello.payload.get("server").cloned().unwrap_or(Value::Null);
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
    f.close = match &end {
        Some(CallError::Closed(c)) => Some(c.clone()),
        _ => None,
    };
    session.close();
    f
}

fn note_connect_error(f: &mut Finding, target: &Target, e: ConnectError, started: Instant) {
    match e {
        ConnectError::Refused { error, close } => {
            f.reached = true;
            f.latency_ms = Some(started.elapsed().as_millis() as u64);
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

/// The id and kind upstream gives a target.
fn target_id(t: &Target) -> &'static str {
    match t.source {
        UrlSource::CliFlag | UrlSource::Env => "explicit",
        UrlSource::RemoteConfig => "configRemote",
        UrlSource::Local => "localLoopback",
    }
}

/// Capabilities from best to worst, as upstream ranks them.
const CAPABILITY_RANK: &[&str] = &[
    "admin_capable",
    "write_capable",
    "read_only",
    "connected_no_operator_scope",
    "pairing_pending",
    "unknown",
];

/// The best capability any target offers.
fn best_capability(probed: &[(Target, Finding)]) -> &'static str {
    CAPABILITY_RANK
        .iter()
        .find(|c| probed.iter().any(|(_, f)| f.capability() == **c))
        .copied()
        .unwrap_or("unknown")
}

/// Upstream's warnings over all targets.
fn warnings(probed: &[(Target, Finding)]) -> Vec<Value> {
    let mut w = Vec::new();
    if probed.iter().all(|(_, f)| !f.reached) {
        let errors: Vec<String> = probed
            .iter()
            .map(|(t, f)| format!("{}: {}", t.url, f.error.as_deref().unwrap_or("unreachable")))
            .collect();
        let ids: Vec<&str> = probed.iter().map(|(t, _)| target_id(t)).collect();
        w.push(json!({"code": "no_gateway_reachable", "message": format!("No gateway answered ({})", errors.join("; ")), "targetIds": ids}));
    }
    for (t, f) in probed.iter().filter(|(_, f)| f.reached && !f.rpc_ok) {
        w.push(if f.scope_limited {
            json!({"code": "probe_scope_limited", "message": "Read-probe diagnostics are limited by gateway scopes (missing operator.read). Connection succeeded, but read-only status calls are incomplete. Hint: pair device identity or use credentials with operator.read.", "targetIds": [target_id(t)]})
        } else {
            let detail = f.error.as_deref().map(|e| format!(": {e}")).unwrap_or_else(|| ".".into());
            json!({"code": "probe_detail_failed", "message": format!("Gateway accepted the WebSocket connection, but follow-up read diagnostics failed{detail}"), "targetIds": [target_id(t)]})
        });
    }
    w
}

/// One target's entry of the JSON document.
fn target_json(t: &Target, f: &Finding) -> Value {
    json!({
        "id": target_id(t),
        "kind": target_id(t),
        "url": t.url.to_string(),
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
        "self": null,
        "config": null,
        "health": f.health,
        "summary": f.status,
        "presence": f.presence,
    })
}

/// The probe's JSON document, in upstream's shape.
pub fn to_json(
    probed: &[(Target, Finding)],
    local_url: &str,
    discovery: Value,
    timeout_ms: u64,
    duration: Duration,
    ts: u64,
) -> Value {
    let primary = probed
        .iter()
        .find(|(_, f)| f.reached)
        .map(|(t, _)| target_id(t));
    json!({
        "ok": primary.is_some(),
        "degraded": probed.iter().any(|(_, f)| f.reached && !f.rpc_ok),
        "capability": best_capability(probed),
        "ts": ts,
        "durationMs": duration.as_millis() as u64,
        "timeoutMs": timeout_ms,
        "primaryTargetId": primary,
        "warnings": warnings(probed),
        "network": {"localLoopbackUrl": local_url, "localTailnetUrl": null, "tailnetIPv4": null},
        "discovery": discovery,
        "targets": probed.iter().map(|(t, f)| target_json(t, f)).collect::<Vec<_>>(),
    })
}

fn print_human(probed: &[(Target, Finding)], timeout_ms: u64) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let reachable = probed.iter().any(|(_, f)| f.reached);
    say!("Gateway probe");
    say!("Reachable: {}", yes_no(reachable));
    say!("Capability: {}", best_capability(probed).replace('_', "-"));
    say!("Probe budget: {timeout_ms}ms");
    for (t, f) in probed {
        say!();
        say!("{} {} ({})", target_id(t), t.url, t.source.as_str());
        match (f.connected, f.latency_ms) {
            (true, Some(ms)) => say!("  Reachable: yes (hello in {ms} ms)"),
            (false, Some(ms)) => {
                say!("  Reachable: yes, but it refused the connection ({ms} ms)")
            }
            _ => say!("  Reachable: no"),
        }
        let rpc = if f.rpc_ok {
            "ok".to_string()
        } else {
            format!("failed: {}", f.error.as_deref().unwrap_or("unknown"))
        };
        say!("  RPC: {rpc}");
        say!("  Scope-limited: {}", yes_no(f.scope_limited));
        say!(
            "  Last close: {}",
            f.close
                .as_ref()
                .map_or_else(|| "none".to_string(), describe_close)
        );
        if let Some(v) = f.server.get("version").and_then(Value::as_str) {
            let conn = f
                .server
                .get("connId")
                .and_then(Value::as_str)
                .unwrap_or("?");
            say!("  Server: version {v}, connId {conn}");
        }
        if let Some(h) = f
            .connect_error
            .as_ref()
            .and_then(|e| report::auth_hint(t, e))
        {
            say!("  Hint: {h}");
        }
    }
    let w = warnings(probed);
    if !w.is_empty() {
        say!();
        for w in w {
            say!(
                "Warning: {}",
                w.get("message").and_then(Value::as_str).unwrap_or("")
            );
        }
    }
}

/// How long a probe browses mDNS for gateways, at most, as upstream.
const DISCOVERY_BUDGET_MS: u64 = 1_200;

/// Whether mDNS is switched off (`OPENCLAW_DISABLE_BONJOUR`): then a probe does not browse.
fn bonjour_disabled(env: &std::collections::BTreeMap<String, String>) -> bool {
    env.get("OPENCLAW_DISABLE_BONJOUR")
        .is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Gateways announced over mDNS within `ms` (none when `ms` is 0 or browsing fails).
fn browse(ms: u64) -> Vec<Beacon> {
    if ms == 0 {
        return Vec::new();
    }
    clawgate_host::discovery::browse(Duration::from_millis(ms)).unwrap_or_default()
}

/// Budget of the local loopback target when it is not the one asked for, as upstream.
const LOCAL_BUDGET: Duration = Duration::from_millis(800);

/// `gateway probe`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, QUERY, &[])?;
    p.expect_positionals(0, USAGE)?;
    let timeout_ms = p.millis("timeout")?.unwrap_or(DEFAULT_TIMEOUT_MS);
    let primary = rpc::resolve_target(&p)?;
    let flags = Flags {
        token: p.value("token"),
        password: p.value("password"),
    };
    let env = clawgate_host::paths::env_map();
    let local = target::local(flags, &env).ok();
    let local_url = local.as_ref().map_or_else(
        || GatewayUrl::local(DEFAULT_PORT).to_string(),
        |t| t.url.to_string(),
    );
    let started = Instant::now();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let deadline = started + Duration::from_millis(timeout_ms);
    let mut targets = vec![(primary, deadline)];
    if let Some(l) = local.filter(|l| targets.iter().all(|(t, _)| t.url != l.url)) {
        targets.push((l, deadline.min(started + LOCAL_BUDGET)));
    }
    let browse_ms = if bonjour_disabled(&env) {
        0
    } else {
        timeout_ms.min(DISCOVERY_BUDGET_MS)
    };
    // Probe the targets and browse at once, as upstream does, so the budget is not spent twice.
    let (found, probed) = std::thread::scope(|s| {
        let browsing = s.spawn(move || browse(browse_ms));
        let handles: Vec<_> = targets
            .iter()
            .map(|(t, d)| s.spawn(move || probe(t, *d)))
            .collect();
        let probed = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>();
        (browsing.join().unwrap_or_default(), probed)
    });
    let probed: Vec<(Target, Finding)> = probed
        .into_iter()
        .zip(targets)
        .map(|(f, (t, _))| (t, f))
        .collect();
    if p.switch("json") {
        let discovery = beacons_json(browse_ms, &found);
        print_json(&to_json(
            &probed,
            &local_url,
            discovery,
            timeout_ms,
            started.elapsed(),
            ts,
        ));
    } else {
        print_human(&probed, timeout_ms);
        if browse_ms > 0 {
            say!();
            say!(
                "Discovery (this machine, {browse_ms} ms): {} gateway(s) via mDNS",
                found.len()
            );
            for b in &found {
                say!("  {} {}", b.display_name(), b.ws_url().unwrap_or_default());
            }
        }
    }
    if probed.iter().any(|(_, f)| f.reached) {
        Ok(())
    } else {
        let urls: Vec<String> = probed.iter().map(|(t, _)| t.url.to_string()).collect();
        Err(Failure::new(
            Exit::Failed,
            format!("no gateway reachable at {}", urls.join(" or ")),
        ))
    }
}
