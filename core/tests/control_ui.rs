//! The Control UI served by the core over the in-memory harness: files come from the
//! simulated disk, bodies move in bounded pieces only as fast as the peer takes them, the app
//! shell is prepared, and a missing root gets the built-in page.

use std::time::{Duration, Instant};

use clawgate_core::Config;
use clawgate_core::config::UiRoot;
use clawgate_core::fuzzing::{Sim, loopback};

const ROOT: &str = "/srv/ui";
const MTIME: u64 = 1_700_000_000_000;

fn config() -> Config {
    let mut c = Config::local_default();
    c.control_ui.root = UiRoot::Configured(ROOT.into());
    c.limits.ui_chunk_bytes = 1024;
    c
}

fn sim_with(files: &[(&str, Vec<u8>)]) -> Sim {
    let mut sim = Sim::started(Instant::now(), config());
    for (rel, data) in files {
        sim.files
            .insert(format!("{ROOT}/{rel}"), (data.clone(), MTIME));
    }
    sim
}

fn get(sim: &mut Sim, target: &str, headers: &str) -> (String, Vec<u8>) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:18789\r\n{headers}\r\n");
    let id = sim.open_raw_sending(req.as_bytes(), loopback());
    let sent = sim.sent(id).to_vec();
    let split = sent
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    (
        String::from_utf8_lossy(&sent[..split]).into_owned(),
        sent[split..].to_vec(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

#[test]
fn a_large_asset_moves_only_as_fast_as_the_peer_reads() {
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut sim = sim_with(&[("assets/app-1.js", big.clone())]);
    let id = sim.open_raw(loopback());
    sim.toggle_acks(id);
    sim.input(id, b"GET /assets/app-1.js HTTP/1.1\r\nHost: x\r\n\r\n");
    // The head and the first piece went out; with that unacknowledged, one more read at most.
    assert!(sim.file_reads.len() <= 2, "{} reads", sim.file_reads.len());
    assert!(sim.sent(id).len() < 3 * 1024);
    let mut rounds = 0;
    while !sim.peer(id).closed {
        let n = sim.sent(id).len();
        sim.written(id, n);
        rounds += 1;
        assert!(rounds < 100, "the transfer does not end");
    }
    let sent = sim.sent(id).to_vec();
    let split = sent.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&sent[..split]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(header(&head, "Content-Length"), Some("10000"));
    assert_eq!(
        header(&head, "Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(&sent[split..], &big[..]);
    assert!(sim.file_reads.iter().all(|r| r.max_len <= 1024));
}

#[test]
fn a_stalled_reader_is_cut_off_but_a_slow_one_is_not() {
    let big = vec![7u8; 8192];
    let mut sim = sim_with(&[("assets/a.js", big)]);
    let id = sim.open_raw(loopback());
    sim.toggle_acks(id);
    sim.input(id, b"GET /assets/a.js HTTP/1.1\r\nHost: x\r\n\r\n");
    // Moving: each timeout period it took something.
    for _ in 0..3 {
        let n = sim.sent(id).len();
        sim.written(id, n);
        sim.advance(Duration::from_secs(15));
        assert!(!sim.peer(id).closed);
    }
    // Stalled for two periods: closed.
    sim.advance(Duration::from_secs(15));
    sim.advance(Duration::from_secs(15));
    assert!(sim.peer(id).closed);
}

#[test]
fn precompressed_variants_ranges_and_revalidation() {
    let mut sim = sim_with(&[
        ("assets/a.js", b"plain body".to_vec()),
        ("assets/a.js.br", b"BR".to_vec()),
        ("assets/a.js.gz", b"GZ".to_vec()),
        ("sw.js", b"self.x=1".to_vec()),
    ]);
    let (head, body) = get(&mut sim, "/assets/a.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(header(&head, "Content-Encoding"), Some("br"));
    assert_eq!(body, b"BR");
    let (head, body) = get(&mut sim, "/assets/a.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(header(&head, "Content-Encoding"), Some("gzip"));
    assert_eq!(body, b"GZ");
    let (head, body) = get(&mut sim, "/assets/a.js", "");
    assert_eq!(header(&head, "Content-Encoding"), None);
    assert_eq!(header(&head, "Vary"), Some("Accept-Encoding"));
    assert_eq!(body, b"plain body");
    let etag = header(&head, "ETag").unwrap().to_string();
    let (head, body) = get(
        &mut sim,
        "/assets/a.js",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    assert!(body.is_empty());
    let (head, body) = get(&mut sim, "/assets/a.js", "Range: bytes=6-\r\n");
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert_eq!(header(&head, "Content-Range"), Some("bytes 6-9/10"));
    assert_eq!(body, b"body");
    let (head, _) = get(&mut sim, "/assets/a.js", "Range: bytes=50-\r\n");
    assert!(head.starts_with("HTTP/1.1 416"), "{head}");
    let (head, _) = get(&mut sim, "/sw.js?v=1", "");
    assert_eq!(header(&head, "Cache-Control"), Some("no-cache"));
    assert_eq!(header(&head, "X-Frame-Options"), Some("DENY"));
}

#[test]
fn the_shell_answers_navigations_and_missing_assets_are_404() {
    let index = b"<!doctype html><html lang=\"en\"><head><script>boot()</script><script type=\"module\" src=\"./assets/a.js\"></script></head></html>".to_vec();
    let mut sim = sim_with(&[("index.html", index)]);
    let (head, body) = get(&mut sim, "/chat/main", "Accept: text/html\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("src=\"/assets/a.js\""), "{body}");
    let csp = header(&head, "Content-Security-Policy").unwrap();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("http://127.0.0.1:*"), "{csp}");
    assert_eq!(header(&head, "Cache-Control"), Some("no-cache"));
    let (head, _) = get(&mut sim, "/chat/main", "Accept: text/html;q=0, */*\r\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = get(&mut sim, "/assets/missing.js", "Accept: */*\r\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn without_files_a_page_names_the_setting() {
    let mut sim = Sim::started(Instant::now(), Config::local_default());
    let (head, body) = get(&mut sim, "/", "");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("gateway.controlUi.root")
    );
    let mut sim = sim_with(&[]);
    let (head, body) = get(&mut sim, "/", "");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(String::from_utf8(body).unwrap().contains(ROOT));
    // The probes still answer.
    let (head, _) = get(&mut sim, "/healthz", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
