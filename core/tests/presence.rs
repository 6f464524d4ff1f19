//! Presence: who appears in `hello-ok.snapshot.presence` and `system-presence`.

use clawgate_core::Config;
use clawgate_core::fuzzing::sim::*;
use std::time::Instant;

fn presence_modes(hello: &serde_json::Value) -> Vec<String> {
    hello["snapshot"]["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mode"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn ephemeral_cli_probe_and_backend_clients_stay_out_of_presence() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    for mode in ["cli", "probe", "backend"] {
        let mut c = cli(None);
        c.client.mode = mode.into();
        let id = p.open_client(c, loopback());
        assert!(p.hello(id).is_some(), "{mode} connected");
    }
    let mut ui = cli(None);
    ui.client.id = "webchat".into();
    ui.client.mode = "webchat".into();
    let id = p.open_client(ui, loopback());
    assert_eq!(
        presence_modes(&p.hello(id).unwrap()),
        vec!["gateway", "webchat"]
    );
    let last = p.open_client(cli(None), loopback());
    assert_eq!(
        presence_modes(&p.hello(last).unwrap()),
        vec!["gateway", "webchat"]
    );
}

#[test]
fn the_hello_snapshot_lists_what_system_presence_answers() {
    let mut p = Sim::started(Instant::now(), Config::local_default());
    let mut ui = cli(None);
    ui.client.id = "webchat".into();
    ui.client.mode = "webchat".into();
    ui.client.display_name = Some("Browser \"tab\"".into());
    let first = p.open_client(ui, loopback());
    assert!(p.hello(first).is_some());
    let second = p.open_client(cli(None), loopback());
    let hello = p.hello(second).unwrap();
    let answer = p.call(second, "system-presence", None).unwrap();
    // The same instant: the gateway's own entry has the same `ts` in both.
    assert_eq!(hello["snapshot"]["presence"], answer);
    assert_eq!(presence_modes(&hello), vec!["gateway", "webchat"]);
    assert_eq!(answer[0]["reason"], "self");
    assert_eq!(answer[1]["host"], "Browser \"tab\"");
}
