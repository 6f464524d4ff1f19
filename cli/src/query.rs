//! `clawgate gateway health` and `clawgate gateway call <method> [--params JSON]`.

use std::ffi::OsString;

use serde_json::Value;

use super::args::{self, Opt, QUERY};
use super::output::print_json;
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use super::{Failure, Outcome, scopes};

const HEALTH_USAGE: &str = "clawgate gateway health [--url ws://HOST:PORT] [--token T | --password P] [--timeout MS] [--json]";
const CALL_USAGE: &str = "clawgate gateway call <method> [--params JSON] [--url ws://HOST:PORT] [--token T | --password P] [--timeout MS] [--json]";

/// Parse a `--params` value: a JSON document.
pub fn parse_params(text: Option<&str>) -> Result<Option<Value>, Failure> {
    text.map(|t| {
        serde_json::from_str(t)
            .map_err(|e| Failure::usage(format!("--params is not valid JSON: {e}")))
    })
    .transpose()
}

/// `gateway health`.
pub fn health(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, QUERY, &[])?;
    p.expect_positionals(0, HEALTH_USAGE)?;
    let open = rpc::open(&p, scopes::for_method("health"), DEFAULT_TIMEOUT_MS)?;
    let (url, latency) = (open.target.url.to_string(), open.hello.latency);
    let version = open
        .hello
        .payload
        .pointer("/server/version")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let auth_mode = ["/snapshot/authMode", "/auth/method"]
        .iter()
        .find_map(|p| open.hello.payload.pointer(p).and_then(Value::as_str))
        .unwrap_or("?")
        .to_string();
    let payload = open.call_once("health", None)?;
    let ok = payload.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if p.switch("json") {
        print_json(&payload);
    } else {
        say!(
            "Gateway {} at {url} (hello in {} ms)",
            if ok { "healthy" } else { "UNHEALTHY" },
            latency.as_millis()
        );
        say!("version {version} · auth {auth_mode}");
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "the gateway at {url} reports ok:false"
        )))
    }
}

/// `gateway call <method>`.
pub fn call(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(argv, QUERY, &[Opt::value("params")])?;
    p.expect_positionals(1, CALL_USAGE)?;
    let method = p
        .positionals
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let params =
        parse_params(p.value("params"))?.or_else(|| Some(Value::Object(Default::default())));
    let payload = rpc::call(&p, method, params, DEFAULT_TIMEOUT_MS)?;
    print_json(&payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_json() {
        assert_eq!(
            parse_params(Some(r#"{"a":1}"#)).unwrap(),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(parse_params(None).unwrap(), None);
        assert_eq!(
            parse_params(Some("{a")).unwrap_err().exit,
            crate::Exit::Usage
        );
    }
}
