//! What the WebSocket tests share: a peer's echo loop, and a socket opened on the loop's
//! HTTP client ([`crate::common::OnLoop`]) with its results on a channel.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use clawgate_core::{WorkId, WorkResult, WsOpen};
use clawgate_host::http_loop::HttpLimits;
use tungstenite::{Message, WebSocket};

use crate::common::{OnLoop, client};

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

/// What opens a socket to `url` reading messages of at most `max_message` bytes.
pub fn open_to(url: String, max_message: usize) -> WsOpen {
    WsOpen {
        url,
        headers: Vec::new(),
        max_message,
    }
}

/// A loop with socket `id` opening as `open` says, and the channel its results arrive on.
pub fn opening(id: WorkId, open: WsOpen) -> (OnLoop, mpsc::Receiver<(WorkId, WorkResult)>) {
    opening_with(HttpLimits::default(), id, open)
}

/// [`opening`] on a loop with these limits.
pub fn opening_with(
    limits: HttpLimits,
    id: WorkId,
    open: WsOpen,
) -> (OnLoop, mpsc::Receiver<(WorkId, WorkResult)>) {
    let (mut on_loop, rx) = client(limits);
    on_loop.ws_open(id, open);
    (on_loop, rx)
}

/// A loop with socket `id` open to `url` (its `WsOpened` already received), and the channel
/// its later results arrive on.
pub fn opened(id: WorkId, url: String) -> (OnLoop, mpsc::Receiver<(WorkId, WorkResult)>) {
    let (on_loop, rx) = opening(id, open_to(url, 1 << 20));
    match rx.recv_timeout(WAIT) {
        Ok((got, WorkResult::WsOpened)) if got == id => {}
        other => panic!("expected socket {id:?} open, got {other:?}"),
    }
    (on_loop, rx)
}
