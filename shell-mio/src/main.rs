//! The `clawgate` command: `gateway run` (the default) runs the gateway; every other command
//! is a client of a running gateway or of its files, in [`cli`].
#![forbid(unsafe_code)]

use clawgate_cli as cli;

use std::ffi::OsString;

use cli::{Exit, finish};

const USAGE: &str = "usage:
  clawgate [gateway [run]] [--port P] [--bind B] [--auth none|token|password] [--token T] [--password P] ...
  clawgate gateway health|status|probe [--url ws://HOST:PORT] [--token T | --password P] [--timeout MS] [--json]
  clawgate gateway call <method> [--params JSON] [QUERY FLAGS]
  clawgate gateway install|start|stop|restart|uninstall
  clawgate gateway discover [--timeout MS] [--json]
  clawgate gateway import-upstream [--dry-run]
  clawgate devices list|approve <requestId>|reject <requestId>|revoke|rotate --device ID --role ROLE [QUERY FLAGS]
  clawgate nodes list|status|pending|approve <requestId>|invoke --node ID --command CMD [--params JSON] [QUERY FLAGS]
  clawgate pairing list [<channel>] [--account A] [--json] | approve [<channel>] <code> [--account A] [--notify]
  clawgate doctor [--generate-gateway-token]
  clawgate logs [-f] [-n N]
QUERY FLAGS: --url ws://HOST:PORT --token T --password P --timeout MS --json
exit codes: 0 ok, 1 request failed, 2 usage, 78 configuration refused";

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(dispatch(args));
}

/// Split off the first argument as a string.
fn split(mut args: Vec<OsString>) -> (Option<String>, Vec<OsString>) {
    if args.is_empty() {
        return (None, args);
    }
    let first = args.remove(0).to_string_lossy().into_owned();
    (Some(first), args)
}

fn dispatch(args: Vec<OsString>) -> i32 {
    let all = args.clone();
    let (first, rest) = split(args);
    match first.as_deref() {
        None => run_gateway(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Exit::Ok as i32
        }
        Some("-V" | "--version") => {
            println!("clawgate {}", env!("CARGO_PKG_VERSION"));
            Exit::Ok as i32
        }
        Some("gateway") => gateway(rest),
        Some(group @ ("devices" | "nodes" | "pairing" | "doctor" | "logs"))
            if cli::args::wants_help(&rest) =>
        {
            help_for(group)
        }
        Some("devices") => finish(cli::devices::run(rest)),
        Some("nodes") => finish(cli::nodes::run(rest)),
        Some("pairing") => finish(cli::pairing::run(rest)),
        Some("doctor") => finish(cli::doctor::run(rest)),
        Some("logs") => finish(cli::logs::run(rest)),
        // `clawgate --port 1234` runs the gateway, as `clawgate gateway --port 1234` does.
        Some(flag) if flag.starts_with('-') => run_gateway(all),
        Some(other) => finish(Err(cli::Failure::usage(format!(
            "unknown command {other:?}\n{USAGE}"
        )))),
    }
}

fn gateway(args: Vec<OsString>) -> i32 {
    let all = args.clone();
    let (sub, rest) = split(args);
    let Some(sub) = sub else {
        return run_gateway(rest);
    };
    if sub != "run" && sub != "discover" && cli::args::wants_help(&rest) {
        return help_for("gateway");
    }
    match sub.as_str() {
        "-h" | "--help" | "help" => {
            help_for("gateway");
            println!("the gateway's own options: clawgate gateway run --help");
            Exit::Ok as i32
        }
        "run" => run_gateway(rest),
        "discover" => discover(rest),
        "import-upstream" => finish(cli::upstream::run(rest)),
        "health" => finish(cli::query::health(rest)),
        "call" => finish(cli::query::call(rest)),
        "probe" => finish(cli::probe::run(rest)),
        "status" => finish(cli::service::status(rest)),
        "install" | "start" | "stop" | "restart" | "uninstall" => {
            finish(cli::service::manage(&sub, rest))
        }
        flag if flag.starts_with('-') => run_gateway(all),
        other => finish(Err(cli::Failure::usage(format!(
            "unknown gateway command {other:?}\n{USAGE}"
        )))),
    }
}

fn help_for(group: &str) -> i32 {
    for line in USAGE.lines().filter(|l| {
        l.contains(&format!("clawgate {group}")) || l.starts_with("QUERY") || l.starts_with("exit")
    }) {
        println!("{line}");
    }
    Exit::Ok as i32
}

/// `clawgate gateway run …`: the gateway itself.
fn run_gateway(args: Vec<OsString>) -> i32 {
    clawgate::run::main(args)
}

/// `clawgate gateway discover …`: find gateways over mDNS.
fn discover(args: Vec<OsString>) -> i32 {
    clawgate_host::discovery::discover_main(args)
}
