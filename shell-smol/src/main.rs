//! The `clawgate-smol` command: `clawgate-smol gateway run [flags]`, the gateway on smol.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clawgate::{entropy::OsEntropy, lock, paths, settings, store};
use clawgate_core::config::RunFlags;
use clawgate_core::{Gateway, Level, LogRecord};
use clawgate_smol::signals::{self, Signal};
use clawgate_smol::{Control, Host};

const USAGE: &str = "usage: clawgate-smol gateway run [--port P] [--bind loopback|lan|tailnet|auto|custom] \
[--auth none|token|password] [--token T] [--password P] [--password-file F] [--verbose] [--allow-unconfigured]";

/// Parsed `gateway run` arguments.
#[derive(Default)]
struct Args {
    flags: RunFlags,
    password_file: Option<PathBuf>,
    verbose: bool,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut a = Args::default();
    let mut words = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Long("port") => a.flags.port = Some(p.value()?.string()?),
            Long("bind") => a.flags.bind = Some(p.value()?.string()?),
            Long("auth") => a.flags.auth = Some(p.value()?.string()?),
            Long("token") => a.flags.token = Some(p.value()?.string()?),
            Long("password") => a.flags.password = Some(p.value()?.string()?),
            Long("password-file") => a.password_file = Some(p.value()?.into()),
            Long("verbose") => a.verbose = true,
            Long("allow-unconfigured") => {}
            Value(w) => words.push(w.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["gateway"] | ["gateway", "run"] => Ok(a),
        _ => Err(lexopt::Error::from(format!(
            "unknown command: {}",
            words.join(" ")
        ))),
    }
}

/// Writes the store and prints log lines at or above a level to stderr.
struct Shell {
    store_path: PathBuf,
    level: Level,
}

impl Host for Shell {
    fn persist(&mut self, bytes: &[u8]) {
        if let Err(e) = store::write_atomic(&self.store_path, bytes) {
            eprintln!("clawgate: cannot write {}: {e}", self.store_path.display());
        }
    }

    fn log(&mut self, record: &LogRecord) {
        if record.level <= self.level {
            eprintln!("{}", record.line());
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("clawgate-smol: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let resolve = || {
        settings::resolve(
            paths::env_map(),
            args.flags.clone(),
            args.password_file.as_deref(),
        )
    };
    let (config, sources) = match resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    let level = if args.verbose {
        Level::Trace
    } else {
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|s| Level::parse(&s))
            .unwrap_or(Level::Info)
    };
    let who = format!("pid {} port {}", std::process::id(), config.port);
    let _lock = match lock::acquire(&paths::lock_file(&sources.state_dir), &who) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::from(1);
        }
    };
    let store_path = paths::pairing_store(&sources.state_dir);
    let pairing = match store::load_pairing(&store_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::from(78);
        }
    };
    let listener = match std::net::TcpListener::bind((config.bind_host, config.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "clawgate: cannot listen on {}:{}: {e}",
                config.bind_host, config.port
            );
            return ExitCode::from(1);
        }
    };
    let signals = match signals::listen() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clawgate: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let gw = Gateway::new(
        config,
        Box::new(OsEntropy),
        pairing,
        Instant::now(),
        unix_ms(),
    );
    let (control_tx, control) = smol::channel::unbounded();
    let ex = smol::Executor::new();
    ex.spawn(async move {
        while let Ok(signal) = signals.recv().await {
            let order = match signal {
                Signal::Stop => Control::Shutdown,
                Signal::Reload => match resolve() {
                    Ok((config, _)) => Control::Reload(Box::new(config)),
                    Err(e) => {
                        eprintln!(
                            "clawgate: reload refused, keeping the running configuration: {e}"
                        );
                        continue;
                    }
                },
            };
            if control_tx.send(order).await.is_err() {
                return;
            }
        }
    })
    .detach();
    let served = smol::block_on(ex.run(clawgate_smol::serve(
        &ex,
        listener,
        gw,
        Shell { store_path, level },
        control,
    )));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawgate: {e}");
            ExitCode::from(1)
        }
    }
}
