//! A name pinned to several addresses (Telegram's fallback), asked for by this process's
//! first `https://` request: the request waits for a lookup thread to load the TLS roots
//! (the first pinned address is "looked up", which answers itself alone) and then races
//! every pinned address, not the lookup's one. A process of its own: in it the roots are
//! not loaded before the request (`http_tls.rs` covers a pinned name once they are).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult};
use clawgate_tests::fake_tls::TestCa;
use common::{PinnedRun, submit_pinned};

#[test]
fn a_pinned_name_waiting_for_the_tls_roots_races_every_pinned_address() {
    const NAME: &str = "api.telegram.test";
    // The first refuses (the fake server listens on 127.0.0.1 alone): only the second
    // answers.
    const PINNED: [IpAddr; 2] = [
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ];
    let ca = TestCa::new("pinned test CA");
    // SAFETY: the one test of this binary sets it before any thread of its own reads the
    // environment (the roots load on the lookup thread the request starts).
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SSL_CERT_FILE", ca.ca_path());
    }
    let server = ca.server_for(&[NAME]);
    // The model and the client live to the test's end.
    let PinnedRun {
        model: _model,
        pool: _pool,
        rx,
        looked_up,
    } = submit_pinned(server, NAME, &PINNED, WorkId(1));
    let (mut status, mut body) = (None, Vec::new());
    let end = loop {
        let (id, result) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a result in time");
        assert_eq!(id, WorkId(1));
        match result {
            WorkResult::HttpHead { status: s, .. } => status = Some(s),
            WorkResult::HttpBody(b) => body.extend(b),
            WorkResult::HttpEnd(end) => break end.map_err(|e| e.message),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(end, Ok(()));
    assert_eq!(status, Some(200));
    assert!(String::from_utf8_lossy(&body).contains("\"pinned\""));
    assert_eq!(looked_up.load(Ordering::SeqCst), 0, "no lookup of the name");
}
