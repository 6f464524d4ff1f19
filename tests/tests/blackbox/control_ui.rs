//! The Control UI's files on the gateway port, both shells: upstream's headers and cache
//! rules, the SPA fallback and an explicit HTML rejection, `basePath`, precompressed
//! variants, `ETag` revalidation, ranges, traversal and symlinks out of the root, and a 5 MB
//! asset that neither stalls other sockets nor arrives damaged; `/control-ui-config.json`
//! behind the gateway's token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clawgate_tests::both;
use clawgate_tests::harness::{
    Gateway, HttpResponse, Options, Shell, http_get, http_raw, http_request,
};
use clawgate_tests::tempdir::TempDir;

const INDEX: &str = "<!doctype html>\n<html lang=\"en\"><head><link rel=\"icon\" href=\"./favicon.svg\"><script>window.booted=1</script><script type=\"module\" src=\"./assets/app-1.js\"></script></head><body></body></html>\n";
const BIG: usize = 5 * 1024 * 1024;

/// A Control UI root: the shell, an asset with its precompressed variants, a service
/// worker, a large asset, and a symlink pointing out of the root.
fn ui_root(dir: &TempDir) -> String {
    let root = dir.path().join("ui");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("index.html"), INDEX).unwrap();
    std::fs::write(root.join("favicon.svg"), "<svg/>").unwrap();
    std::fs::write(root.join("assets/app-1.js"), "console.log('plain');").unwrap();
    std::fs::write(root.join("assets/app-1.js.br"), "BROTLI").unwrap();
    std::fs::write(root.join("assets/app-1.js.gz"), "GZIP").unwrap();
    std::fs::write(root.join("sw.js"), "self.v=1").unwrap();
    std::fs::write(root.join("assets/big.bin"), big_body()).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    root.display().to_string()
}

fn big_body() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

fn start(shell: Shell, dir: &TempDir, extra: &str) -> Gateway {
    let root = ui_root(dir);
    Options::new()
        .config(&format!(
            "{{ gateway: {{ controlUi: {{ root: {root:?} {extra} }} }} }}"
        ))
        .start(shell)
}

fn get(gw: &Gateway, path: &str, headers: &str) -> HttpResponse {
    http_request(
        gw.port(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}\r\n",
            gw.port()
        ),
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn assert_security_headers(r: &HttpResponse) {
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{r:?}");
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.starts_with("default-src 'self'; base-uri 'none'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

fn shell_and_fallback(shell: Shell) {
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, "");
    for path in ["/", "/chat/main", "/settings/devices?x=1"] {
        let r = get(&gw, path, "Accept: text/html,*/*;q=0.8\r\n");
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_security_headers(&r);
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert!(r.body.contains("src=\"/assets/app-1.js\""), "{}", r.body);
        assert!(r.body.contains("href=\"/favicon.svg\""), "{}", r.body);
        assert!(
            r.body.contains("data-openclaw-control-ui-base-path=\"\""),
            "{}",
            r.body
        );
        // The inline script is allowed by its hash, nothing else inline.
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    }
    // An explicit rejection of HTML gets no app shell; a missing asset is a 404.
    let r = get(&gw, "/chat/main", "Accept: text/html;q=0, */*\r\n");
    assert_eq!(r.status, 404, "{r:?}");
    assert_security_headers(&r);
    assert_eq!(get(&gw, "/assets/nope.js", "").status, 404);
    // Reserved paths and the probes are not the UI's.
    let r = http_get(gw.port(), "/api/nothing").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("not_found"), "{r:?}");
    assert_eq!(http_get(gw.port(), "/healthz").unwrap().status, 200);
}

fn assets_encodings_and_revalidation(shell: Shell) {
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, "");
    let r = get(
        &gw,
        "/assets/app-1.js",
        "Accept-Encoding: gzip, deflate, br\r\n",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "BROTLI"), "{r:?}");
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_security_headers(&r);
    let r = get(&gw, "/assets/app-1.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        (r.body.as_str(), r.header("content-encoding")),
        ("GZIP", Some("gzip"))
    );
    let r = get(&gw, "/assets/app-1.js", "");
    assert_eq!(r.body, "console.log('plain');");
    assert_eq!(r.header("content-encoding"), None);
    let etag = r.header("etag").expect("an ETag").to_string();
    assert!(
        r.header("last-modified")
            .is_some_and(|d| d.ends_with(" GMT"))
    );
    let r = get(
        &gw,
        "/assets/app-1.js",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((r.status, r.body.as_str()), (304, ""), "{r:?}");
    let r = get(&gw, "/assets/app-1.js", "If-None-Match: \"other\"\r\n");
    assert_eq!(r.status, 200);
    // The variants are chosen, never named.
    assert_eq!(get(&gw, "/assets/app-1.js.br", "").status, 404);
    // sw.js and unversioned public files revalidate; ?v= makes a public file immutable.
    assert_eq!(
        get(&gw, "/sw.js?v=9", "").header("cache-control"),
        Some("no-cache")
    );
    assert_eq!(
        get(&gw, "/favicon.svg", "").header("cache-control"),
        Some("no-cache")
    );
    assert_eq!(
        get(&gw, "/favicon.svg?v=9", "").header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    // Ranges: one satisfiable range, and an absurd one refused.
    let r = get(&gw, "/assets/app-1.js", "Range: bytes=0-6\r\n");
    assert_eq!((r.status, r.body.as_str()), (206, "console"), "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 0-6/21"));
    for absurd in ["bytes=999999-", "bytes=18446744073709551616-"] {
        let r = get(&gw, "/assets/app-1.js", &format!("Range: {absurd}\r\n"));
        assert_eq!(r.status, 416, "{absurd}: {r:?}");
        assert_eq!(r.header("content-range"), Some("bytes */21"));
    }
    // HEAD: the head of the 200, no body.
    let head = http_raw(
        gw.port(),
        "HEAD /assets/app-1.js HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let text = String::from_utf8_lossy(&head);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("Content-Length: 21\r\n"), "{text}");
}

fn traversal_and_symlinks_are_refused(shell: Shell) {
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, "");
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/%2fetc/passwd",
        "/leak.txt",
        "/up/secret.txt",
        "/a%00b.js",
        "/assets/..%5c..%5csecret.txt",
    ] {
        let raw = http_raw(
            gw.port(),
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("TOP SECRET"), "{path} leaked: {text}");
        // Refused outright, or the app shell (a page path the browser may navigate to).
        assert!(
            text.starts_with("HTTP/1.1 404") || text.contains("<!doctype html>"),
            "{path}: {text}"
        );
    }
}

fn base_path_and_switches(shell: Shell) {
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, ", basePath: \"/openclaw/\"");
    let r = get(&gw, "/openclaw?x=1", "");
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("/openclaw/?x=1"))
    );
    let r = get(&gw, "/openclaw/chat", "Accept: text/html\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("src=\"/openclaw/assets/app-1.js\""),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("data-openclaw-control-ui-base-path=\"/openclaw\"")
    );
    assert_eq!(
        get(&gw, "/openclaw/assets/app-1.js", "").body,
        "console.log('plain');"
    );
    // Outside the base path: the gateway's JSON 404.
    let r = get(&gw, "/", "");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("not_found"), "{r:?}");
    drop(gw);
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, ", enabled: false");
    let r = get(&gw, "/", "");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("not_found"), "{r:?}");
    // No root and no installed package: a page naming the setting.
    let gw = Options::new().start(shell);
    let r = get(&gw, "/", "Accept: text/html\r\n");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("gateway.controlUi.root"), "{}", r.body);
}

/// `/control-ui-config.json` (and upstream's older names for it) needs the gateway's token
/// as a `Bearer` credential, is never cached, carries the UI's security headers and names
/// the assistant and base path from the config; a wrong token is refused, `auth.mode: none`
/// serves a loopback client without one.
fn bootstrap_config(shell: Shell) {
    let dir = TempDir::new("ui");
    let root = ui_root(&dir);
    let gw = Options::new()
        .token("ui-config-token")
        .config(&format!(
            "{{ agents: {{ list: [{{ id: \"main\", identity: {{ name: \"Clawd\", emoji: \"🦀\" }} }}] }}, gateway: {{ controlUi: {{ root: {root:?}, basePath: \"/claw\" }} }} }}"
        ))
        .start(shell);
    let path = "/claw/control-ui-config.json";
    for (auth, status) in [
        ("", 401),
        ("Authorization: Bearer wrong\r\n", 401),
        ("Authorization: Basic ui-config-token\r\n", 401),
    ] {
        let r = get(&gw, path, auth);
        assert_eq!(r.status, status, "{auth}: {r:?}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{r:?}");
        assert!(r.body.contains("unauthorized"), "{r:?}");
        assert_security_headers(&r);
        assert!(!r.body.contains("ui-config-token"), "{r:?}");
    }
    let token = "Authorization: Bearer ui-config-token\r\nAccept: application/json\r\n";
    for p in [path, "/claw/__openclaw/control-ui-config.json"] {
        let r = get(&gw, p, token);
        assert_eq!(r.status, 200, "{p}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_security_headers(&r);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert_eq!(v["basePath"], "/claw", "{v}");
        assert_eq!(v["assistantName"], "Clawd", "{v}");
        assert_eq!(v["assistantAvatar"], "🦀", "{v}");
        assert_eq!(v["assistantAgentId"], "main", "{v}");
        assert_eq!(v["terminalEnabled"], false, "{v}");
        assert_eq!(v["pluginAssetsRequireAuth"], true, "{v}");
        assert!(v["serverVersion"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(!r.body.contains("ui-config-token"), "{v}");
    }
    // Without the base path, or under the default namespace (only without one): not the
    // config (the JSON 404 outside the UI).
    assert_eq!(get(&gw, "/control-ui-config.json", token).status, 404);
    drop(gw);
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, "");
    for p in [
        "/control-ui-config.json",
        "/__openclaw__/control-ui-config.json",
    ] {
        let r = get(&gw, p, "");
        assert_eq!(r.status, 200, "{p}: {r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert_eq!(
            (&v["basePath"], &v["assistantName"]),
            (&serde_json::json!(""), &serde_json::json!("Assistant")),
            "{v}"
        );
        assert_eq!(v["pluginAssetsRequireAuth"], false, "{v}");
    }
}

/// Read a socket until the gateway closes it (bounded by its read timeout).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    out
}

fn a_large_asset_does_not_stall_other_sockets(shell: Shell) {
    let dir = TempDir::new("ui");
    let gw = start(shell, &dir, "");
    // A reader that asks for 5 MB and reads nothing for a while.
    let mut slow = TcpStream::connect(("127.0.0.1", gw.port())).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Meanwhile the gateway answers others at once.
    for _ in 0..5 {
        let t = Instant::now();
        let r = http_get(gw.port(), "/healthz").unwrap();
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let r = get(&gw, "/assets/app-1.js", "");
        assert_eq!(r.status, 200);
    }
    let mut ws = gw.ws(gw.cli());
    ws.hello().expect("hello-ok while the body is held");
    ws.call("health", None).expect("health over the WebSocket");
    // Then the big body arrives whole and intact.
    let raw = read_all(&mut slow);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]);
    assert!(
        head.contains(&format!("Content-Length: {BIG}\r\n")),
        "{head}"
    );
    assert!(
        raw[split..] == big_body()[..],
        "the body differs ({} bytes)",
        raw.len() - split
    );
}

both!(
    shell_and_fallback,
    assets_encodings_and_revalidation,
    traversal_and_symlinks_are_refused,
    base_path_and_switches,
    a_large_asset_does_not_stall_other_sockets,
    bootstrap_config,
);
