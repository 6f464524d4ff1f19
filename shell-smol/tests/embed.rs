//! Embedding the smol driver: `serve` on a caller's executor, steered with `Control`, fed by a
//! worker thread.

use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawgate_core::client::{ClientConfig, Event};
use clawgate_core::{Config, Gateway, LogRecord, PairingStore, Work, WorkId, WorkResult};
use clawgate_host::WorkerQueue;
use clawgate_smol::{Control, Host};
use clawgate_tests::harness::Ws;

/// Keeps log lines where the test can read them; worker inputs are logged too.
#[derive(Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    inbox: WorkerQueue<String>,
}

impl Host for Recorder {
    type Input = String;

    fn log(&mut self, record: &LogRecord) {
        self.lines.lock().unwrap().push(record.message.clone());
    }

    fn flush_log(&mut self) {}

    /// No disk: a store batch is "written" at once.
    fn work(&mut self, _id: WorkId, _work: Work) -> Option<WorkResult> {
        Some(WorkResult::Stored(Ok(())))
    }

    fn signals(&self) -> Option<&UnixStream> {
        None
    }

    fn on_signals(&mut self, _gw: &mut Gateway, _now: Instant) {}

    fn inbox(&self) -> &WorkerQueue<String> {
        &self.inbox
    }

    fn on_worker_input(&mut self, _gw: &mut Gateway, _now: Instant, input: String) {
        self.lines.lock().unwrap().push(format!("worker: {input}"));
    }

    fn on_draining(&mut self) {}

    fn on_stopped(&mut self) {}
}

/// Wait (bounded) until `lines` holds `line`.
fn wait_for(lines: &Mutex<Vec<String>>, line: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if lines.lock().unwrap().iter().any(|l| l == line) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn serve_applies_reload_and_shuts_down_on_order() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = Gateway::new(
        Config::local_default(),
        Box::new(clawgate_host::entropy::OsEntropy::default()),
        PairingStore::default(),
        Instant::now(),
        0,
    );
    let mut host = Recorder::default();
    let logs = host.lines.clone();
    let worker = host.inbox.sender();
    let (orders, control) = smol::channel::unbounded();
    let server = std::thread::spawn(move || {
        let ex = smol::Executor::new();
        smol::block_on(ex.run(clawgate_smol::serve(&ex, listener, gw, &mut host, control)))
    });
    std::thread::spawn(move || worker.send("model delta".into()));
    assert!(
        wait_for(&logs, "worker: model delta"),
        "the driver woke for a worker's input"
    );
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
        logs.lock().unwrap().last().map(String::as_str),
        Some("stopped")
    );
}
