//! The common path of every command that calls the gateway: resolve the target, connect as
//! `cli`/`cli` with least-privilege scopes, call, and report failures.

use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use serde_json::Value;

use super::args::Parsed;
use super::credentials::Flags;
use super::output::warn;
use super::target::{self, Target};
use super::{Failure, identity, report, scopes};
use clawgate_host::session::{Hello, Session};

/// Default overall timeout of `call`, `health`, `status`, `devices` and `nodes`.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// A connection ready for requests, and what it is connected to.
pub struct Open {
    /// The session after `hello-ok`.
    pub session: Session,
    /// The `hello-ok` it began with.
    pub hello: Hello,
    /// The gateway it talks to.
    pub target: Target,
    /// The overall timeout in force.
    pub timeout_ms: u64,
    /// Whether failures are reported as JSON.
    pub json: bool,
}

/// Resolve the target from the command's flags and print credential warnings.
pub fn resolve_target(p: &Parsed) -> Result<Target, Failure> {
    let env = clawgate_host::paths::env_map();
    let flags = Flags {
        token: p.value("token"),
        password: p.value("password"),
    };
    let target = target::resolve(p.value("url"), flags, &env)?;
    for w in &target.credentials.warnings {
        warn(w);
    }
    Ok(target)
}

/// The client identity of a command: `cli`, in `mode`, with `scopes` and the target's secrets.
pub fn client_config(target: &Target, mode: &str, scopes: Vec<String>) -> ClientConfig {
    let mut cfg = ClientConfig::cli(&target.url.host_header());
    cfg.client.mode = mode.into();
    cfg.scopes = scopes;
    cfg.token = target.credentials.token.as_ref().map(|c| c.value.clone());
    cfg.password = target
        .credentials
        .password
        .as_ref()
        .map(|c| c.value.clone());
    cfg
}

/// Connect asking for `requested` scopes, within `--timeout` or `default_ms`.
pub fn open(p: &Parsed, requested: Vec<String>, default_ms: u64) -> Result<Open, Failure> {
    let timeout_ms = p.millis("timeout")?.unwrap_or(default_ms);
    let json = p.switch("json");
    let target = resolve_target(p)?;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut cfg = client_config(&target, "cli", requested.clone());
    // Off loopback a device-less client gets no scopes: sign with this machine's identity.
    if !target.url.is_loopback() {
        let state_dir = clawgate_host::paths::state_dir(&clawgate_host::paths::env_map());
        cfg.device = Some(identity::load_or_create(&identity::path(&state_dir))?);
    }
    let (session, hello) = Session::connect(&target.url, cfg, deadline)
        .map_err(|e| report::connect_failure(&target, &e, timeout_ms, json))?;
    let granted = hello
        .payload
        .pointer("/auth/scopes")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if granted == 0 {
        warn(&format!(
            "the gateway at {} granted this connection no scopes (asked for {}){}",
            target.url,
            requested.join(", "),
            if target.url.is_loopback() {
                ""
            } else {
                "; its scopes are those approved for this machine's device (`clawgate devices list` on the gateway host)"
            }
        ));
    }
    Ok(Open {
        session,
        hello,
        target,
        timeout_ms,
        json,
    })
}

impl Open {
    /// Call `method`; the connection stays open for more.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, Failure> {
        self.session
            .call(method, params)
            .map_err(|e| report::call_failure(&self.target, method, &e, self.timeout_ms, self.json))
    }

    /// Call `method` and close the connection.
    pub fn call_once(mut self, method: &str, params: Option<Value>) -> Result<Value, Failure> {
        let out = self.call(method, params);
        self.session.close();
        out
    }
}

/// Connect with the scopes `method` needs, call it with `params`, close: the whole of most
/// commands.
pub fn call(
    p: &Parsed,
    method: &str,
    params: Option<Value>,
    default_ms: u64,
) -> Result<Value, Failure> {
    let requested = scopes::for_call(method, params.as_ref().unwrap_or(&Value::Null));
    open(p, requested, default_ms)?.call_once(method, params)
}
