//! What the WebSocket worker tests share: a peer's echo loop, and a socket opened through
//! [`WsWorkers`] with its results on a channel.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult, WsOpen};
use clawgate_host::ws_worker::WsWorkers;
use tungstenite::{Message, WebSocket};

/// How long a test waits for one result.
pub const WAIT: Duration = Duration::from_secs(10);

/// Answer each text frame with `echo <text>` until the socket closes or fails.
pub fn echo_until_closed<S: Read + Write>(ws: &mut WebSocket<S>) {
    while let Ok(m) = ws.read() {
        if let Message::Text(t) = m
            && ws
                .send(Message::text(format!("echo {}", t.as_str())))
                .is_err()
        {
            return;
        }
    }
}

/// Workers with socket `id` open to `url` (its `WsOpened` already received), and the channel
/// its later results arrive on.
pub fn opened(id: WorkId, url: String) -> (WsWorkers, mpsc::Receiver<(WorkId, WorkResult)>) {
    let (tx, rx) = mpsc::channel();
    let mut workers = WsWorkers::new(move |id, r| {
        let _ = tx.send((id, r));
    });
    let open = WsOpen {
        url,
        headers: Vec::new(),
        max_message: 1 << 20,
    };
    workers.open(id, open);
    match rx.recv_timeout(WAIT) {
        Ok((got, WorkResult::WsOpened)) if got == id => {}
        other => panic!("expected socket {id:?} open, got {other:?}"),
    }
    (workers, rx)
}
