//! The `clawgate-smol` command: `clawgate-smol [gateway [run [options]]]`, the gateway on a
//! smol executor with the same flags, environment, files, logs, signals and exit codes as
//! `clawgate gateway run`.
#![forbid(unsafe_code)]

use std::ffi::OsString;

use clawgate_host::startup::{self, EXIT_USAGE};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let words: Vec<Option<&str>> = args.iter().take(2).map(|a| a.to_str()).collect();
    let rest = match words.as_slice() {
        [] | [Some("gateway")] => Vec::new(),
        [Some("gateway"), Some("run"), ..] => args.get(2..).unwrap_or_default().to_vec(),
        _ => {
            eprintln!("clawgate-smol: usage: clawgate-smol [gateway run [options]]");
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match startup::start(rest) {
        Ok(started) => clawgate_smol::run(started),
        Err(e) => {
            e.report();
            e.exit_code()
        }
    };
    std::process::exit(code);
}
