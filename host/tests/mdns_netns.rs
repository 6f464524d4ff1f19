//! Advertise, then discover, over real multicast, inside a network namespace this test makes
//! for itself (only its loopback interface exists there), so no packet reaches a real network.
//!
//! The test re-runs this binary inside the namespace (`ip netns exec`) to run the helper, which
//! refuses to run anywhere that has an interface besides `lo`. Needs root and iproute2; without
//! them it says so and passes, except under `CI=true`, where it fails.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clawgate_core::Config;
use clawgate_core::config::MdnsMode;
use clawgate_core::discovery::advert;
use clawgate_host::discovery::{
    AdvertiserHandle, Beacon, MdnsResponder, RetryPolicy, browse, discover_main, spawn_advertiser,
    spawn_advertiser_with,
};
use clawgate_tests::threads::voluntary_switches;
use serde_json::Value;

/// Set in the helper's environment by the parent test.
const HELPER_ENV: &str = "CLAWGATE_MDNS_NETNS_HELPER";
const HELPER_TEST: &str = "netns_helper_advertise_then_discover";
const PORT: u16 = 18799;
/// A second address on the namespace's loopback interface, for a gateway bound to one address.
const EXTRA_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
/// The helper's whole run, bounded.
const HELPER_DEADLINE: Duration = Duration::from_secs(60);

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn create() -> Result<Self, String> {
        let name = format!("clawgate-mdns-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns.0, "link", "set", "lo", "multicast", "on"])?;
        ip(&[
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{EXTRA_ADDRESS}/32"),
            "dev",
            "lo",
        ])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn advertise_then_discover_in_a_private_network_namespace() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("a network namespace is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot make a network namespace ({e}); needs root and iproute2");
            return;
        }
    };
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([
            "--exact",
            HELPER_TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the helper in the namespace");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + HELPER_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the helper") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "helper failed ({status:?})\n{out}\n{err}"
    );
    assert!(
        out.contains("1 passed"),
        "the helper ran no test:\n{out}\n{err}"
    );

    // The harness prints `test <name> ... ` on the line the report starts on.
    let report: Value = out
        .lines()
        .find_map(|l| {
            l.find("{\"")
                .and_then(|at| serde_json::from_str(&l[at..]).ok())
        })
        .unwrap_or_else(|| panic!("no JSON report from `gateway discover --json`:\n{out}\n{err}"));
    assert_eq!(report["count"], 1, "{report}");
    assert_eq!(report["timeoutMs"], 2500);
    let beacon = &report["beacons"][0];
    assert_eq!(beacon["instanceName"], "netns-gw (OpenClaw)", "{beacon}");
    assert_eq!(beacon["displayName"], "netns-gw");
    assert_eq!(beacon["host"], "netns-gw.local");
    assert_eq!(beacon["port"], PORT);
    assert_eq!(beacon["lanHost"], "netns-gw.local");
    assert_eq!(
        beacon["wsUrl"],
        format!("ws://{EXTRA_ADDRESS}:{PORT}"),
        "the LAN-like address wins over 127.0.0.1"
    );
    assert_eq!(beacon["txt"]["role"], "gateway");
    assert_eq!(beacon["txt"]["transport"], "gateway");
    assert_eq!(beacon["txt"]["gatewayPort"], PORT.to_string());
    assert!(
        err.contains("mDNS: advertising \"netns-gw (OpenClaw)\""),
        "{err}"
    );
}

/// Runs only inside the namespace made above: advertises a gateway, lists it with
/// `gateway discover --json`, checks that its responder sleeps while nobody asks, stops
/// advertising and checks that a browser listening then hears the goodbye and that it is gone;
/// then advertises one bound to a single address, then two with one name.
#[test]
#[ignore = "run by advertise_then_discover_in_a_private_network_namespace inside its namespace"]
fn netns_helper_advertise_then_discover() {
    if std::env::var_os(HELPER_ENV).is_none() {
        eprintln!("not inside the test's network namespace: nothing to do");
        return;
    }
    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("list interfaces")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        interfaces,
        ["lo"],
        "refusing to send multicast outside a loopback-only namespace"
    );

    // A wildcard bind: every address of the namespace, listed by the CLI entry point.
    let handle = advertise(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT, "netns-gw");
    wait_for("netns-gw (OpenClaw)");
    let args = ["--timeout", "2500", "--json"]
        .map(std::ffi::OsString::from)
        .to_vec();
    assert_eq!(discover_main(args), 0);
    // Announced, and nobody asks: the responder's thread sleeps until a packet comes or it is
    // stopped (it woke every 100 ms to look for a stop request: 5 times in this window).
    let before = voluntary_switches("clawgate-mdns-io");
    thread::sleep(Duration::from_millis(500));
    let woke = voluntary_switches("clawgate-mdns-io") - before;
    assert!(woke <= 2, "an idle responder woke {woke} times in 500 ms");
    // A browser that hears the gateway and then its goodbye forgets it (its records would
    // otherwise live for their time to live, 75 minutes).
    let listening = thread::spawn(|| browse(Duration::from_millis(2500)).expect("browse"));
    thread::sleep(Duration::from_millis(1200));
    assert!(
        handle.shutdown(),
        "the advertiser stopped within its grace period"
    );
    let heard = listening.join().expect("the browse");
    assert!(heard.is_empty(), "no goodbye heard: {heard:?}");
    let after = browse(Duration::from_millis(1500)).expect("browse");
    assert!(
        after.is_empty(),
        "still advertised after shutdown: {after:?}"
    );

    // A gateway bound to one address advertises that address only.
    let handle = advertise(IpAddr::V4(EXTRA_ADDRESS), PORT + 1, "netns-one");
    let found = wait_for("netns-one (OpenClaw)");
    assert_eq!(found.addresses, [IpAddr::V4(EXTRA_ADDRESS)], "{found:?}");
    assert_eq!(
        found.ws_url(),
        Some(format!("ws://{EXTRA_ADDRESS}:{}", PORT + 1))
    );
    drop(handle);

    // Two gateways claiming one name: the later one is renamed, says so once, and both stay
    // discoverable.
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let policy = RetryPolicy {
        health_every: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    let twin = |port: u16| {
        let mut config = Config::local_default().with_token("netns-token");
        config.bind_host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        config.port = port;
        config.host_name = "netns-twin".into();
        let sink = Arc::clone(&lines);
        let log = move |line: String| {
            eprintln!("{line}");
            sink.lock().expect("log lock").push(line);
        };
        spawn_advertiser_with(
            MdnsResponder::new(),
            advert(&config).expect("advertises"),
            log,
            policy,
        )
    };
    let first = twin(PORT + 2);
    wait_for("netns-twin (OpenClaw)");
    let second = twin(PORT + 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines
        .lock()
        .expect("log lock")
        .iter()
        .any(|l| l.contains("name conflict"))
    {
        assert!(
            Instant::now() < deadline,
            "no conflict reported: {:?}",
            lines.lock().expect("log lock")
        );
        thread::sleep(Duration::from_millis(50));
    }
    let ports: Vec<u16> = browse(Duration::from_millis(2500))
        .expect("browse")
        .iter()
        .map(|b| b.port)
        .collect();
    assert!(
        ports.contains(&(PORT + 2)) && ports.contains(&(PORT + 3)),
        "{ports:?}"
    );
    let conflicts = lines
        .lock()
        .expect("log lock")
        .iter()
        .filter(|l| l.contains("name conflict"))
        .count();
    assert_eq!(conflicts, 1, "{:?}", lines.lock().expect("log lock"));
    drop((first, second));
}

/// Advertise a gateway bound to `bind`, checking that starting the advertiser does not wait.
fn advertise(bind: IpAddr, port: u16, host: &str) -> AdvertiserHandle {
    let mut config = Config::local_default().with_token("netns-token");
    config.bind_host = bind;
    config.port = port;
    config.host_name = host.into();
    config.mdns = MdnsMode::Minimal;
    let advert = advert(&config).expect("a non-loopback bind advertises");
    let spawning = Instant::now();
    let handle = spawn_advertiser(advert, |line| eprintln!("{line}"));
    assert!(
        spawning.elapsed() < Duration::from_millis(100),
        "spawn took {:?}",
        spawning.elapsed()
    );
    handle
}

/// Browse until `instance` shows up, for at most 20 s.
fn wait_for(instance: &str) -> Beacon {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = browse(Duration::from_millis(1500)).expect("browse");
        if let Some(b) = found.into_iter().find(|b| b.instance_name == instance) {
            return b;
        }
        assert!(Instant::now() < deadline, "{instance} never showed up");
    }
}
