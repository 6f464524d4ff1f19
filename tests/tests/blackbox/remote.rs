//! Remote peers for real: the gateway runs in a network namespace of its own and its clients
//! in others, joined by veth links (see `clawgate_tests::netns`), so what loopback cannot
//! show is shown: the locality rules for a non-loopback peer, the remote rate limit and
//! lockout, trusted proxies (addresses and CIDR ranges) with `X-Forwarded-For` and clients
//! that spoof it, and the `x-openclaw-scopes` cap. Skipped with a message where namespaces
//! cannot be created; required under `CI=true`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_core::device::DeviceKey;
use clawgate_host::url::GatewayUrl;
use clawgate_tests::both;
use clawgate_tests::harness::{Gateway, Options, Shell, Ws, raw};
use clawgate_tests::netns::Net;
use serde_json::{Value, json};

const TOKEN: &str = "remote-t0ken";

/// The gateway in `net`'s gateway namespace, listening on every address (`--bind lan`), with
/// token auth, the remote lockout after `max_attempts` failures and `extra` gateway keys.
fn gateway(shell: Shell, net: &Net, max_attempts: u32, extra: Value) -> Gateway {
    let mut gw = json!({
        "auth": {"rateLimit": {"maxAttempts": max_attempts, "windowMs": 60_000, "lockoutMs": 60_000}},
    });
    if let (Some(gw), Value::Object(extra)) = (gw.as_object_mut(), extra) {
        gw.extend(extra);
    }
    Options::new()
        .netns(&net.gateway)
        .arg("--bind")
        .arg("lan")
        .token(TOKEN)
        .config(&json!({ "gateway": gw }).to_string())
        .start(shell)
}

/// Where peer `i` reaches the gateway.
fn gateway_at(net: &Net, i: usize, gw: &Gateway) -> SocketAddr {
    SocketAddr::from((net.gateway_addr(i), gw.port()))
}

/// A CLI client of the gateway at `at` with `token`.
fn cli(at: SocketAddr, token: Option<&str>) -> ClientConfig {
    let mut cfg = ClientConfig::cli(&at.to_string());
    cfg.token = token.map(str::to_string);
    cfg
}

/// The outcome of peer `i`'s `connect` as `config`: hello-ok's payload, or the error.
fn remote_hello(net: &Net, i: usize, at: SocketAddr, config: ClientConfig) -> Result<Value, Value> {
    let tcp = net.peers[i].ns.tcp(at);
    let answer = raw::connect_over(tcp, &at.to_string(), &[], &config)
        .unwrap_or_else(|status| panic!("upgrade refused with {status}"));
    outcome(answer)
}

/// Peer `i`'s `connect` with `token`, with `X-Forwarded-For: xff` on the upgrade when given:
/// its outcome, or the status the upgrade was refused with.
fn forwarded(
    net: &Net,
    i: usize,
    gw: &Gateway,
    xff: Option<&str>,
    token: &str,
) -> Result<Result<Value, Value>, u16> {
    let at = gateway_at(net, i, gw);
    let tcp = net.peers[i].ns.tcp(at);
    let headers: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
    raw::connect_over(tcp, &at.to_string(), &headers, &cli(at, Some(token))).map(outcome)
}

/// A `connect` answer as hello-ok's payload, or the error.
fn outcome(answer: Value) -> Result<Value, Value> {
    if answer["ok"] == true {
        Ok(answer["payload"].clone())
    } else {
        Err(answer["error"].clone())
    }
}

/// An error's `details.code`.
fn code(error: &Value) -> &str {
    error["details"]["code"].as_str().unwrap_or("")
}

/// A session from inside the gateway's namespace over its loopback.
fn local(net: &Net, gw: &Gateway, config: ClientConfig) -> Ws {
    let port = gw.port();
    net.gateway.run(|| Ws::connect(port, config))
}

/// A session of peer `i`.
fn remote(net: &Net, i: usize, at: SocketAddr, config: ClientConfig) -> Ws {
    let url = GatewayUrl {
        host: at.ip().to_string(),
        port: at.port(),
        path: "/".into(),
    };
    net.peers[i]
        .ns
        .run(|| Ws::try_dial(&url, config))
        .expect("dial the gateway")
}

/// A non-loopback peer is remote: the shared token admits it but, without a device, with no
/// scopes (a loopback CLI keeps them); no token is refused; a new device waits for an
/// approval instead of being paired silently (on loopback it is); failures are answered at
/// once and lock the address out after `maxAttempts`, even for the right token, while
/// loopback and another peer still get in.
fn remote_peer_rules(shell: Shell) {
    let Some(net) = Net::create(2) else { return };
    let gw = gateway(shell, &net, 3, json!({}));
    let at = gateway_at(&net, 0, &gw);

    let mut ws = remote(&net, 0, at, cli(at, Some(TOKEN)));
    let hello = ws.hello().expect("the token admits a remote CLI");
    assert_eq!(hello["auth"]["scopes"], json!([]), "{hello}");
    let denied = ws.call("status", None).expect_err("status needs a scope");
    assert_eq!(denied.message, "missing scope: operator.read");
    assert!(ws.call("health", None).is_ok());
    let mut lo = local(&net, &gw, cli(at, Some(TOKEN)));
    let hello = lo.hello().expect("loopback CLI hello-ok");
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]), "{hello}");

    let refused = remote_hello(&net, 0, at, cli(at, None)).expect_err("no token, no device");
    assert_eq!(code(&refused), "DEVICE_IDENTITY_REQUIRED", "{refused}");

    let mut device = cli(at, Some(TOKEN));
    device.device = Some(DeviceKey::from_seed([21; 32]));
    let pending = remote_hello(&net, 0, at, device.clone()).expect_err("a new remote device");
    assert_eq!(code(&pending), "PAIRING_REQUIRED", "{pending}");
    device.device = Some(DeviceKey::from_seed([22; 32]));
    let hello = local(&net, &gw, device)
        .hello()
        .expect("a new loopback device is paired silently");
    assert!(hello["auth"]["deviceToken"].is_string(), "{hello}");

    let started = Instant::now();
    for _ in 0..3 {
        let e = remote_hello(&net, 0, at, cli(at, Some("wrong"))).expect_err("wrong token");
        assert_eq!(code(&e), "AUTH_TOKEN_MISMATCH", "{e}");
    }
    // On loopback these three would take 250 + 500 + 1000 ms.
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "remote failures were held back like local ones: {:?}",
        started.elapsed()
    );
    let locked = remote_hello(&net, 0, at, cli(at, Some(TOKEN))).expect_err("locked out");
    assert_eq!(code(&locked), "AUTH_RATE_LIMITED", "{locked}");
    assert_eq!(locked["retryable"], true, "{locked}");
    let other = gateway_at(&net, 1, &gw);
    remote_hello(&net, 1, other, cli(other, Some(TOKEN))).expect("another peer is not locked");
    local(&net, &gw, cli(at, Some(TOKEN)))
        .hello()
        .expect("loopback is exempt from the lockout");
}

/// Peer 0 is a trusted proxy, peer 1 is not. Through the proxy a client is judged by the
/// right-most forwarded address the proxy did not write itself (what a client put further
/// left does not dodge its lockout), a forwarded loopback address is refused rather than made
/// local, and the proxy must name a client. Forwarding headers from peer 1 are refused
/// whatever they say; without them peer 1 is judged (and locked out) by its own address.
fn trusted_proxy_and_spoofers(shell: Shell) {
    let Some(net) = Net::create(2) else { return };
    let proxy = net.peers[0].addr.to_string();
    let gw = gateway(shell, &net, 2, json!({"trustedProxies": [proxy]}));
    let forwarded = |peer, xff, token| forwarded(&net, peer, &gw, xff, token);

    for _ in 0..2 {
        let e = forwarded(0, Some("203.0.113.9"), "wrong").expect("upgrade through the proxy");
        assert_eq!(code(&e.expect_err("wrong token")), "AUTH_TOKEN_MISMATCH");
    }
    let locked = forwarded(0, Some("203.0.113.9"), TOKEN).expect("upgrade");
    assert_eq!(code(&locked.expect_err("locked out")), "AUTH_RATE_LIMITED");
    let spoofed = forwarded(0, Some("203.0.113.10, 203.0.113.9"), TOKEN).expect("upgrade");
    assert_eq!(
        code(&spoofed.expect_err("still the locked-out client")),
        "AUTH_RATE_LIMITED"
    );
    let hello = forwarded(0, Some("203.0.113.10"), TOKEN)
        .expect("upgrade")
        .expect("another forwarded client is not locked out");
    assert_eq!(hello["auth"]["scopes"], json!([]), "not local: {hello}");
    assert!(
        gw.wait_for_log(
            "websocket open from 203.0.113.10 (local: false)",
            Duration::from_secs(2)
        ),
        "{}",
        gw.stderr()
    );
    assert_eq!(forwarded(0, Some("127.0.0.1"), TOKEN).err(), Some(403));
    assert_eq!(forwarded(0, None, TOKEN).err(), Some(403));

    for xff in ["127.0.0.1", "203.0.113.11"] {
        assert_eq!(forwarded(1, Some(xff), TOKEN).err(), Some(403), "{xff}");
    }
    for _ in 0..2 {
        let e = forwarded(1, None, "wrong").expect("direct upgrade");
        assert_eq!(code(&e.expect_err("wrong token")), "AUTH_TOKEN_MISMATCH");
    }
    let locked = forwarded(1, None, TOKEN).expect("direct upgrade");
    assert_eq!(code(&locked.expect_err("locked out")), "AUTH_RATE_LIMITED");
    assert!(
        gw.stderr().contains(&format!(
            "websocket open from {} (local: false)",
            net.peers[1].addr
        )),
        "{}",
        gw.stderr()
    );
}

/// `gateway.trustedProxies` takes CIDR ranges: peer 0 (10.213.0.2) is inside the trusted
/// 10.213.0.0/24 and its forwarded client is believed; peer 1 (10.213.1.2) is outside it and
/// its forwarding headers are refused. An entry that is neither an address nor a range is
/// warned of by its key and matches nothing, and the gateway serves (as upstream's).
fn trusted_proxy_ranges(shell: Shell) {
    let Some(net) = Net::create(2) else { return };
    let proxies = json!({"trustedProxies": ["10.213.0.0/24", "proxy.lan"]});
    let gw = gateway(shell, &net, 10, proxies);
    assert!(
        gw.wait_for_log("gateway.trustedProxies[1]:", Duration::from_secs(2)),
        "{}",
        gw.stderr()
    );
    assert!(gw.stderr().contains("proxy.lan"), "{}", gw.stderr());
    let hello = forwarded(&net, 0, &gw, Some("203.0.113.20"), TOKEN)
        .expect("upgrade through a proxy inside the range")
        .expect("hello-ok");
    assert_eq!(hello["auth"]["scopes"], json!([]), "not local: {hello}");
    assert!(
        gw.wait_for_log(
            "websocket open from 203.0.113.20 (local: false)",
            Duration::from_secs(2)
        ),
        "{}",
        gw.stderr()
    );
    assert_eq!(
        forwarded(&net, 1, &gw, Some("203.0.113.21"), TOKEN).err(),
        Some(403),
        "a peer outside the range is not a proxy"
    );
}

/// `x-openclaw-scopes` on the upgrade caps what a remote device approved for read and write
/// may use: the named scopes only, none for an empty header, all without one.
fn scope_header_caps(shell: Shell) {
    let Some(net) = Net::create(1) else { return };
    let gw = gateway(shell, &net, 10, json!({}));
    let at = gateway_at(&net, 0, &gw);
    let mut device = cli(at, Some(TOKEN));
    device.device = Some(DeviceKey::from_seed([23; 32]));
    device.scopes = vec!["operator.read".into(), "operator.write".into()];
    let pending = remote_hello(&net, 0, at, device.clone()).expect_err("a new remote device");
    let request = pending["details"]["requestId"].clone();
    let mut admin = cli(at, Some(TOKEN));
    admin.scopes = vec!["operator.admin".into()];
    let mut admin = local(&net, &gw, admin);
    admin.hello().expect("admin hello-ok");
    admin
        .call("device.pair.approve", Some(json!({"requestId": request})))
        .expect("approve the remote device");

    let capped = |header: Option<&str>| {
        let tcp = net.peers[0].ns.tcp(at);
        let headers: Vec<(&str, &str)> = header
            .map(|v| ("x-openclaw-scopes", v))
            .into_iter()
            .collect();
        let answer = raw::connect_over(tcp, &at.to_string(), &headers, &device).expect("upgrade");
        outcome(answer).expect("the approved device connects")["auth"]["scopes"].clone()
    };
    assert_eq!(capped(None), json!(["operator.read", "operator.write"]));
    assert_eq!(
        capped(Some("operator.read, operator.admin")),
        json!(["operator.read"])
    );
    assert_eq!(capped(Some("")), json!([]));
}

both!(
    remote_peer_rules,
    trusted_proxy_and_spoofers,
    trusted_proxy_ranges,
    scope_header_caps
);
