//! A gateway binary started for the examples that profile it (`tests/examples/*_hops.rs`):
//! under an optional profiler command line, in its own state directory, and stopped with
//! SIGTERM so the profiler writes its output as the gateway exits.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Start `bin gateway run` with token `t` (on a port taken from this process's id: nothing
/// connects to it), behind `prefix` (a profiler's command line, or empty), with `state` as its
/// state directory and `HOME`, and `env` set.
pub fn spawn(bin: &str, prefix: &[String], state: &Path, env: &[(&str, String)]) -> Child {
    let port = 20_000 + std::process::id() % 20_000;
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args([
        "gateway",
        "run",
        "--port",
        &port.to_string(),
        "--token",
        "t",
    ])
    .env("OPENCLAW_STATE_DIR", state)
    .env("HOME", state)
    .envs(env.iter().map(|(k, v)| (k, v)))
    .stdout(Stdio::null())
    .spawn()
    .expect("spawn the gateway")
}

/// Stop `gateway` with SIGTERM and wait for it.
pub fn stop(mut gateway: Child) {
    Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .expect("kill");
    gateway.wait().expect("wait for the gateway");
}
