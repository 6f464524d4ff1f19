//! Plain blocking clients, one thread per connection: `std::net::TcpStream` with Nagle left
//! on, tungstenite's client handshake (the upgrade request written on its own, frames masked,
//! tungstenite's default 128 KiB read buffer), then the gateway protocol of [`super::proto`].

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::proto::{self, Frame, Ids};
use crate::error::{BenchError, Context};

/// Longest one read may block before the client gives up on the server.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// An open connection past `hello-ok`.
pub struct Session {
    ws: WebSocket<TcpStream>,
    ids: Ids,
}

/// Connect to `addr`, upgrade, answer the challenge with `connect` (token `token`) and wait
/// for `hello-ok`; `config` is the WebSocket configuration (`None`: tungstenite's default).
pub fn open(
    addr: SocketAddr,
    token: &str,
    ids: Ids,
    config: Option<WebSocketConfig>,
) -> Result<Session, BenchError> {
    let stream = TcpStream::connect(addr).context("connect")?;
    stream
        .set_read_timeout(Some(READ_LIMIT))
        .context("set a read timeout")?;
    let url = format!("ws://{addr}/");
    let (ws, _) = tungstenite::client::client_with_config(url.as_str(), stream, config)
        .map_err(|e| BenchError::Protocol(format!("upgrade: {e}")))?;
    let mut s = Session { ws, ids };
    loop {
        if let Frame::Challenge { .. } = s.read()? {
            break;
        }
    }
    let id = s.ids.next();
    let connect = proto::connect(&id, token, s.ids.uuid());
    s.send(connect)?;
    match s.answer(&id)? {
        Some(t) if t == "hello-ok" => Ok(s),
        other => Err(BenchError::Protocol(format!(
            "connect answered with payload type {other:?}"
        ))),
    }
}

impl Session {
    /// One `health` round trip.
    pub fn health(&mut self) -> Result<(), BenchError> {
        let id = self.ids.next();
        self.send(proto::health(&id))?;
        self.answer(&id).map(|_| ())
    }

    fn send(&mut self, text: String) -> Result<(), BenchError> {
        self.ws
            .send(Message::text(text))
            .map_err(|e| BenchError::Protocol(format!("send: {e}")))
    }

    /// The next gateway frame (control frames are tungstenite's business).
    fn read(&mut self) -> Result<Frame, BenchError> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return proto::parse(t.as_str())
                        .map_err(|e| BenchError::Protocol(e.to_string()));
                }
                Ok(Message::Close(c)) => {
                    return Err(BenchError::Protocol(format!("closed by the server: {c:?}")));
                }
                Ok(_) => {}
                Err(e) => return Err(BenchError::Protocol(format!("read: {e}"))),
            }
        }
    }

    /// Read until the response to `id`: its payload type, or the error it carries.
    fn answer(&mut self, id: &str) -> Result<Option<String>, BenchError> {
        loop {
            if let Frame::Response { id: got, result } = self.read()?
                && got == id
            {
                return result.map_err(|m| BenchError::Protocol(format!("refused: {m}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bare::{BareOptions, serve};
    use crate::canned::{Canned, Template};

    fn template(before: &str, after: &str) -> Template {
        Template {
            before: before.into(),
            after: after.into(),
        }
    }

    /// The bare baseline, with frames written here, on a free port for `lifetime`.
    fn bare_server(lifetime: Duration) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let canned = Canned {
            challenge:
                r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1}}"#
                    .into(),
            hello_ok: template(
                r#"{"type":"res","id":""#,
                r#"","ok":true,"payload":{"type":"hello-ok","protocol":4}}"#,
            ),
            health: template(
                r#"{"type":"res","id":""#,
                r#"","ok":true,"payload":{"ok":true}}"#,
            ),
            tick: template(r#"{"type":"event","event":"tick","payload":{"ts":"#, "}}"),
            // This client never invokes: frames of the right shape, never sent.
            invoke_request: template(
                r#"{"type":"event","event":"node.invoke.request","payload":{"id":""#,
                r#""}}"#,
            ),
            invoke_ack: template(r#"{"type":"res","id":""#, r#"","ok":true,"payload":{}}"#),
            invoke_answer: template(r#"{"type":"res","id":""#, r#"","ok":true,"payload":{}}"#),
        };
        let opts = BareOptions {
            port,
            // Ticks arrive between the answers: the client reads past them.
            tick: Duration::from_millis(20),
            lifetime,
            canned,
        };
        let server = std::thread::spawn(move || serve(&opts).expect("the bare server runs"));
        (SocketAddr::from(([127, 0, 0, 1], port)), server)
    }

    #[test]
    fn a_session_reaches_hello_ok_and_gets_its_health_answers_past_ticks() {
        let (addr, server) = bare_server(Duration::from_secs(3));
        let mut tries = 0;
        let mut session = loop {
            match open(addr, "t", Ids::new([7; 16]), None) {
                Ok(s) => break s,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "no session: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        for _ in 0..4 {
            session.health().expect("a health answer");
            std::thread::sleep(Duration::from_millis(30));
        }
        drop(session);
        server.join().expect("the server thread ends");
    }
}
