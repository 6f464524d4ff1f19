//! Embedding the smol driver: `serve` on a caller's executor, steered with `Control`.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::{Config, Gateway, LogRecord, PairingStore};
use clawgate_smol::{Control, Host};
use clawgate_tests::harness::Ws;

/// Keeps log lines and snapshots where the test can read them.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Host for Recorder {
    fn log(&mut self, record: &LogRecord) {
        self.0.lock().unwrap().push(record.message.clone());
    }

    fn persist(&mut self, _snapshot: Vec<u8>) {}
}

#[test]
fn serve_applies_reload_and_shuts_down_on_order() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = Gateway::new(
        Config::local_default(),
        Box::new(clawgate::entropy::OsEntropy),
        PairingStore::default(),
        Instant::now(),
        0,
    );
    let logs = Recorder::default();
    let host = logs.clone();
    let (orders, control) = smol::channel::unbounded();
    let server = std::thread::spawn(move || {
        let ex = smol::Executor::new();
        smol::block_on(ex.run(clawgate_smol::serve(&ex, listener, gw, host, control)))
    });
    let host = format!("127.0.0.1:{port}");
    let mut first = Ws::connect(port, ClientConfig::cli(&host));
    assert!(first.hello().is_ok());

    orders
        .send_blocking(Control::Reload(Box::new(
            Config::local_default().with_token("rotated"),
        )))
        .unwrap();
    // A connection without the new token is refused; the open one, which rests on no
    // secret, stays.
    let mut second = Ws::connect(port, ClientConfig::cli(&host));
    assert_eq!(
        second.hello().unwrap_err().message,
        "device identity required"
    );
    assert!(first.call("health", None).is_ok());

    orders.send_blocking(Control::Shutdown).unwrap();
    first.expect("the shutdown event", |e| {
        matches!(e, Event::Event { event, .. } if event == "shutdown").then_some(())
    });
    assert_eq!(first.closed(), (Some(1012), "service restart".into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.is_finished(),
        "serve did not return after Control::Shutdown"
    );
    server.join().unwrap().unwrap();
    assert_eq!(
        logs.0.lock().unwrap().last().map(String::as_str),
        Some("stopped")
    );
}
