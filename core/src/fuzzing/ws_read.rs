//! A client's bytes read by the core's WebSocket read ([`crate::conn::Ws::read_message`]: a
//! plain text frame read by the core, anything else by tungstenite) and by tungstenite alone:
//! the same messages, the same error, the same bytes to send, chunk by chunk.

use std::io::ErrorKind;

use tungstenite::{Error, Message};

use crate::conn::Ws;

/// The first byte: bits 0-5 the chunk size less one, bit 6 the stream in one chunk, bit 7 a
/// 64-byte message limit (else 1 MiB); the rest is the stream of bytes from the client.
pub fn ws_read(data: &[u8]) {
    let (&ctl, stream) = data.split_first().unwrap_or((&0, data));
    let max = if ctl & 0x80 != 0 { 64 } else { 1 << 20 };
    let step = if ctl & 0x40 != 0 {
        stream.len().max(1)
    } else {
        usize::from(ctl & 0x3f) + 1
    };
    let mut ours = Ws::loopback_server(max);
    let mut theirs = Ws::loopback_server(max);
    for chunk in stream.chunks(step) {
        ours.io.push(chunk);
        theirs.io.push(chunk);
        loop {
            let a = ours.read_message();
            let b = theirs.ctx.read(&mut theirs.io);
            if a.is_ok() {
                ours.io.took_message();
            }
            if b.is_ok() {
                theirs.io.took_message();
            }
            assert_eq!(seen(&a), seen(&b));
            assert_eq!(ours.io.take_output(), theirs.io.take_output());
            match a {
                Ok(_) => {}
                Err(Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

/// What a read gave, as text to compare.
fn seen(r: &tungstenite::Result<Message>) -> String {
    format!("{r:?}")
}
