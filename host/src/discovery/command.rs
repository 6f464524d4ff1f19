//! `clawgate gateway discover [--timeout <ms>] [--json]`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Duration;

use super::browse::{Beacon, beacons_json, browse};

/// Upstream's default browse time.
const DEFAULT_TIMEOUT_MS: u64 = 2000;

const USAGE: &str = "usage: clawgate gateway discover [--timeout <ms>] [--json]";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Help,
    Discover { timeout_ms: u64, json: bool },
}

/// Run `gateway discover` with `args`, the arguments after `discover`. Returns the exit code:
/// 0 when browsing ran (however many gateways it found), 1 when mDNS could not be used, 2 on a
/// usage error.
pub fn discover_main(args: Vec<OsString>) -> i32 {
    let (timeout_ms, as_json) = match parse(args) {
        Ok(Request::Help) => {
            println!("{USAGE}");
            return 0;
        }
        Ok(Request::Discover { timeout_ms, json }) => (timeout_ms, json),
        Err(e) => {
            eprintln!("clawgate gateway discover: {e}\n{USAGE}");
            return 2;
        }
    };
    match browse(Duration::from_millis(timeout_ms)) {
        Ok(beacons) if as_json => {
            println!("{}", beacons_json(timeout_ms, &beacons));
            0
        }
        Ok(beacons) => {
            print!("{}", report_text(timeout_ms, &beacons));
            0
        }
        Err(e) => {
            eprintln!("clawgate gateway discover: {e}");
            1
        }
    }
}

fn parse(args: Vec<OsString>) -> Result<Request, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut timeout_ms = DEFAULT_TIMEOUT_MS;
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("timeout") => timeout_ms = parser.value()?.parse()?,
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Request::Help),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Request::Discover { timeout_ms, json })
}

fn report_text(timeout_ms: u64, beacons: &[Beacon]) -> String {
    let mut out = match beacons.len() {
        0 => format!("No gateways found on the local network ({timeout_ms} ms).\n"),
        1 => format!("Found 1 gateway ({timeout_ms} ms):\n"),
        n => format!("Found {n} gateways ({timeout_ms} ms):\n"),
    };
    for b in beacons {
        let url = b.ws_url().unwrap_or_else(|| "(no usable address)".into());
        let txt: Vec<String> = b.txt.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "- {}  {url}", b.display_name());
        let _ = writeln!(out, "    instance: {}", b.instance_name);
        let _ = writeln!(out, "    host: {}  port: {}", b.host, b.port);
        let _ = writeln!(out, "    txt: {}", txt.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use serde_json::json;

    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_parse() {
        assert_eq!(
            parse(args(&[])).ok(),
            Some(Request::Discover {
                timeout_ms: 2000,
                json: false
            })
        );
        assert_eq!(
            parse(args(&["--timeout", "500", "--json"])).ok(),
            Some(Request::Discover {
                timeout_ms: 500,
                json: true
            })
        );
        assert_eq!(
            parse(args(&["--timeout=750"])).ok(),
            Some(Request::Discover {
                timeout_ms: 750,
                json: false
            })
        );
        assert_eq!(parse(args(&["--help"])).ok(), Some(Request::Help));
    }

    #[test]
    fn usage_errors_exit_2_before_any_browsing() {
        for bad in [
            &["--timeout"][..],
            &["--timeout", "soon"],
            &["--timeout", "-5"],
            &["--bogus"],
            &["extra"],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?}");
            assert_eq!(discover_main(args(bad)), 2, "{bad:?}");
        }
    }

    #[test]
    fn reports_zero_and_some() {
        let none = beacons_json(2000, &[]);
        assert_eq!(none, json!({"timeoutMs": 2000, "count": 0, "beacons": []}));
        assert!(report_text(2000, &[]).starts_with("No gateways found"));
        let b = Beacon {
            instance_name: "pi5 (OpenClaw)".into(),
            host: "pi5.local".into(),
            port: 18789,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))],
            txt: [("displayName".to_string(), "pi5".to_string())]
                .into_iter()
                .collect(),
        };
        let some = beacons_json(1500, std::slice::from_ref(&b));
        assert_eq!(some["count"], 1);
        assert_eq!(some["beacons"][0]["wsUrl"], "ws://192.168.1.20:18789");
        let text = report_text(1500, &[b]);
        assert!(
            text.starts_with("Found 1 gateway (1500 ms):\n- pi5  ws://192.168.1.20:18789\n"),
            "{text}"
        );
    }
}
