//! The `clawgate` command.
#![forbid(unsafe_code)]

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // `clawgate`, `clawgate gateway` and `clawgate gateway run …` run the gateway.
    let rest = match args.first().and_then(|a| a.to_str()) {
        None => Vec::new(),
        Some("gateway") => match args.get(1).and_then(|a| a.to_str()) {
            None => Vec::new(),
            Some("run") => args.get(2..).unwrap_or_default().to_vec(),
            Some(_) => usage(),
        },
        Some(_) => usage(),
    };
    std::process::exit(clawgate::run::main(rest));
}

fn usage() -> ! {
    eprintln!("clawgate: usage: clawgate [gateway run [options]]");
    std::process::exit(2);
}
