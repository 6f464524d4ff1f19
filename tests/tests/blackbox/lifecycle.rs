//! Start-up refusals with their exit codes, and shutdown on SIGTERM.

use std::time::Duration;

use clawgate_core::client::Event;
use clawgate_tests::both;
use clawgate_tests::harness::raw::{self, Next};
use clawgate_tests::harness::{Options, Shell, WAIT};

fn shutdown_on_sigterm(shell: Shell) {
    let mut gw = Options::new().start(shell);
    let mut authed = gw.ws(gw.cli());
    authed.hello().expect("hello-ok");
    let (mut preauth, _) = smol::block_on(raw::challenged(gw.port()));
    gw.terminate();
    let seq = authed.expect("the shutdown event", |e| match e {
        Event::Event { event, seq, .. } if event == "shutdown" => Some(*seq),
        _ => None,
    });
    assert!(
        seq.is_some_and(|s| s >= 1),
        "shutdown is a broadcast with a seq: {seq:?}"
    );
    assert_eq!(authed.closed(), (Some(1012), "service restart".into()));
    // A socket still in its handshake gets only the close.
    assert_eq!(
        smol::block_on(raw::next(&mut preauth)),
        Next::Close(1012, "service restart".into())
    );
    let status = gw.wait_exit(WAIT).expect("exited after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", gw.stderr());
    let log = gw.stderr();
    assert!(
        log.contains("signal received, shutting down") && log.contains("stopped"),
        "{log}"
    );
}

/// SIGHUP re-reads the config file: a rotated token closes the sessions that rest on the old
/// one (4001) and admits the new one.
fn reload_on_sighup(shell: Shell) {
    let gw = Options::new()
        .config(r#"{gateway: {auth: {token: "first-token"}}}"#)
        .start(shell);
    let mut cfg = gw.cli();
    cfg.token = Some("first-token".into());
    let mut old = gw.ws(cfg.clone());
    old.hello().expect("hello-ok with the first token");
    std::fs::write(
        gw.config_path(),
        r#"{gateway: {auth: {token: "second-token"}}}"#,
    )
    .expect("rewrite config");
    gw.signal("HUP");
    assert_eq!(old.closed(), (Some(4001), "gateway auth changed".into()));
    cfg.token = Some("second-token".into());
    assert!(
        gw.ws(cfg).hello().is_ok(),
        "the new token is refused: {}",
        gw.stderr()
    );
}

fn lan_bind_without_auth_exits_78(shell: Shell) {
    let (code, stderr) = Options::new()
        .arg("--bind")
        .arg("lan")
        .run_to_exit(shell, Duration::from_secs(10));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("Refusing to bind gateway to lan without auth."),
        "{stderr}"
    );
}

fn placeholder_token_exits_78(shell: Shell) {
    let (code, stderr) = Options::new()
        .token("undefined")
        .run_to_exit(shell, Duration::from_secs(10));
    assert_eq!(code, Some(78), "{stderr}");
}

fn unknown_flag_exits_2(shell: Shell) {
    let (code, stderr) = Options::new()
        .arg("--no-such-flag")
        .run_to_exit(shell, Duration::from_secs(10));
    assert_eq!(code, Some(2), "{stderr}");
}

fn help_exits_0(shell: Shell) {
    let (code, stderr) = Options::new()
        .arg("--help")
        .run_to_exit(shell, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
}

/// A second gateway on the same state directory is refused by the instance lock.
fn lock_held_exits_1(shell: Shell) {
    let first = Options::new().start(shell);
    let state = first
        .config_path()
        .parent()
        .expect("state dir")
        .to_string_lossy()
        .into_owned();
    let (code, stderr) = Options::new()
        .env("OPENCLAW_STATE_DIR", &state)
        .run_to_exit(shell, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("another clawgate gateway is running"),
        "{stderr}"
    );
    // The first one is untouched.
    assert!(first.ws(first.cli()).hello().is_ok());
}

fn port_in_use_exits_1(shell: Shell) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let (code, stderr) = Options::new()
        .port(port)
        .run_to_exit(shell, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{stderr}");
}

both!(
    shutdown_on_sigterm,
    reload_on_sighup,
    lan_bind_without_auth_exits_78,
    placeholder_token_exits_78,
    unknown_flag_exits_2,
    help_exits_0,
    lock_held_exits_1,
    port_in_use_exits_1,
);
