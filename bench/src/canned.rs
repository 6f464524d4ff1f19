//! The frames the bare baseline answers with: captured once from a real clawgate run, so the
//! baseline puts the same bytes on the wire as the gateway does (challenge, `hello-ok`, the
//! `health` answer, `tick`) without any of the logic behind them.

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use clawgate_core::client::ClientConfig;
use clawgate_core::device::DeviceKey;
use serde_json::{Value, json};
use tungstenite::Message;

use crate::error::{BenchError, Context};
use crate::procs::{Launch, Server, TOKEN};
use crate::scenario::invoke;

/// Longest the capture waits for the gateway to come up and for each frame.
const CAPTURE_LIMIT: Duration = Duration::from_secs(10);

/// A captured frame with one value cut out, to be spliced back per use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template {
    /// The text before the value.
    pub before: String,
    /// The text after it.
    pub after: String,
}

impl Template {
    /// `text` cut around the first occurrence of `value` after `marker`.
    fn cut(text: &str, marker: &str, value: &str) -> Result<Self, BenchError> {
        let at = text
            .find(marker)
            .map(|i| i + marker.len())
            .filter(|&i| text.get(i..).is_some_and(|t| t.starts_with(value)))
            .ok_or_else(|| {
                BenchError::Protocol(format!("captured frame has no {marker}{value}"))
            })?;
        let (before, rest) = text.split_at(at);
        Ok(Self {
            before: before.into(),
            after: rest.get(value.len()..).unwrap_or("").into(),
        })
    }

    /// The frame with `value` spliced in.
    pub fn with(&self, value: &str) -> String {
        let mut s = String::with_capacity(self.before.len() + value.len() + self.after.len());
        s.push_str(&self.before);
        s.push_str(value);
        s.push_str(&self.after);
        s
    }
}

/// What the bare baseline sends: every frame as clawgate sent it to the bench's client.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Canned {
    /// The `connect.challenge` event, verbatim.
    pub challenge: String,
    /// The `hello-ok` response, around its request id.
    pub hello_ok: Template,
    /// The `health` response, around its request id.
    pub health: Template,
    /// The `tick` event, around its timestamp.
    pub tick: Template,
    /// The `node.invoke.request` event to the node, around the invocation's id.
    pub invoke_request: Template,
    /// The node's `node.invoke.result` acknowledged, around the request id.
    pub invoke_ack: Template,
    /// The operator's `node.invoke` answered, around the request id.
    pub invoke_answer: Template,
}

impl Canned {
    /// Start the clawgate binary `bin` as the bench starts it, take its frames on one
    /// connection of the bench's client (`connect`, one `health`, the first `tick`) and one
    /// `node.invoke` through a second one, a node's (see [`capture_invoke`]), and stop it.
    pub fn capture(bin: &Path) -> Result<Self, BenchError> {
        let launch = Launch::Clawgate {
            bin: bin.to_path_buf(),
        };
        let server = Server::spawn("capture", &launch)?;
        let end = Instant::now() + CAPTURE_LIMIT;
        let config = {
            let mut c = ClientConfig::cli(&server.addr.to_string());
            c.token = Some(TOKEN.into());
            c
        };
        let (mut ws, challenge, hello) = connected(&server, end, &config)?;
        let hello_ok = Template::cut(&hello, ID, "1")?;
        send(
            &mut ws,
            &json!({"type": "req", "id": "2", "method": "health"}),
        )?;
        let (mut health, mut tick) = (None, None);
        while health.is_none() || tick.is_none() {
            let text = read_text(&mut ws, end)?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| BenchError::Protocol(format!("captured frame: {e}")))?;
            match (v["type"].as_str(), v["id"].as_str(), v["event"].as_str()) {
                (Some("res"), Some("2"), _) => health = Some(Template::cut(&text, ID, "2")?),
                (Some("event"), _, Some("tick")) => {
                    let ts = v.pointer("/payload/ts").map(Value::to_string);
                    tick = Some(Template::cut(&text, TS, &ts.unwrap_or_default())?);
                }
                _ => {}
            }
        }
        let (Some(health), Some(tick)) = (health, tick) else {
            return Err(BenchError::Protocol("capture ended early".into()));
        };
        let (invoke_request, invoke_ack, invoke_answer) = capture_invoke(&server, end)?;
        Ok(Self {
            challenge,
            hello_ok,
            health,
            tick,
            invoke_request,
            invoke_ack,
            invoke_answer,
        })
    }

    /// Write to `path` (JSON).
    pub fn save(&self, path: &Path) -> Result<(), BenchError> {
        let t = |t: &Template| json!([t.before, t.after]);
        let v = json!({"challenge": self.challenge, "helloOk": t(&self.hello_ok),
            "health": t(&self.health), "tick": t(&self.tick),
            "invokeRequest": t(&self.invoke_request), "invokeAck": t(&self.invoke_ack),
            "invokeAnswer": t(&self.invoke_answer)});
        std::fs::write(path, v.to_string()).context(format!("write {}", path.display()))
    }

    /// Read what [`Canned::save`] wrote.
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path).context(format!("read {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| BenchError::Usage(format!("{}: {e}", path.display())))?;
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| BenchError::Usage(format!("{}: no {p}", path.display())))
        };
        let t = |k: &str| -> Result<Template, BenchError> {
            Ok(Template {
                before: s(&format!("/{k}/0"))?,
                after: s(&format!("/{k}/1"))?,
            })
        };
        Ok(Self {
            challenge: s("/challenge")?,
            hello_ok: t("helloOk")?,
            health: t("health")?,
            tick: t("tick")?,
            invoke_request: t("invokeRequest")?,
            invoke_ack: t("invokeAck")?,
            invoke_answer: t("invokeAnswer")?,
        })
    }
}

/// One `node.invoke` through the gateway at `server` (until `end`), by an operator and a node
/// connecting as the bench's do: the event the node gets (cut around its invocation id), the
/// node's answer acknowledged and the operator's answer (each cut around its request id).
fn capture_invoke(
    server: &Server,
    end: Instant,
) -> Result<(Template, Template, Template), BenchError> {
    let host = server.addr.to_string();
    let key = DeviceKey::from_seed([7; 32]);
    let node_id = key.id();
    let (mut node, ..) = connected(server, end, &invoke::node_config(&host, key))?;
    let (mut op, ..) = connected(server, end, &invoke::operator_config(&host))?;
    let params = json!({"nodeId": node_id, "command": invoke::COMMAND, "params": {"i": 0},
        "idempotencyKey": "capture", "timeoutMs": 10_000});
    send(
        &mut op,
        &json!({"type": "req", "id": "2", "method": "node.invoke", "params": params}),
    )?;
    let (request, payload) = loop {
        let text = read_text(&mut node, end)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| BenchError::Protocol(format!("captured frame: {e}")))?;
        if v["event"] == "node.invoke.request" {
            break (text, v["payload"].clone());
        }
    };
    let invoke_id = payload["id"].as_str().unwrap_or_default();
    let request = Template::cut(&request, ID, invoke_id)?;
    let result = invoke::echo(&payload);
    send(
        &mut node,
        &json!({"type": "req", "id": "2", "method": "node.invoke.result", "params": result}),
    )?;
    let ack = Template::cut(&await_response(&mut node, "2", end)?, ID, "2")?;
    let answer = Template::cut(&await_response(&mut op, "2", end)?, ID, "2")?;
    Ok((request, ack, answer))
}

/// A WebSocket to `server` connected as `config` says (its `connect` is request "1"), with
/// the challenge and the `hello-ok` it read.
fn connected(
    server: &Server,
    end: Instant,
    config: &ClientConfig,
) -> Result<(tungstenite::WebSocket<TcpStream>, String, String), BenchError> {
    let mut ws = open(server, end)?;
    let challenge = read_text(&mut ws, end)?;
    let nonce = field(&challenge, "/payload/nonce")?;
    let ts = field(&challenge, "/payload/ts")?.as_i64().unwrap_or(0);
    let connect = json!({"type": "req", "id": "1", "method": "connect",
        "params": config.connect_params(nonce.as_str().unwrap_or(""), ts)});
    send(&mut ws, &connect)?;
    let hello = await_response(&mut ws, "1", end)?;
    Ok((ws, challenge, hello))
}

/// A WebSocket to `server`, upgraded (connecting until it listens, until `end`).
fn open(server: &Server, end: Instant) -> Result<tungstenite::WebSocket<TcpStream>, BenchError> {
    let stream = loop {
        match TcpStream::connect(server.addr) {
            Ok(s) => break s,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e).context("connect to the gateway to capture"),
        }
    };
    stream
        .set_read_timeout(Some(CAPTURE_LIMIT))
        .context("set a read timeout")?;
    let url = format!("ws://{}/", server.addr);
    let (ws, _) = tungstenite::client(url.as_str(), stream)
        .map_err(|e| BenchError::Protocol(format!("capture upgrade: {e}")))?;
    Ok(ws)
}

/// The text of the response to request `id` (other frames skipped), until `end`; an error
/// response fails.
fn await_response(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    id: &str,
    end: Instant,
) -> Result<String, BenchError> {
    loop {
        let text = read_text(ws, end)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| BenchError::Protocol(format!("captured frame: {e}")))?;
        if v["type"] == "res" && v["id"] == id {
            if v["ok"] != true {
                return Err(BenchError::Protocol(format!("capture: {text}")));
            }
            return Ok(text);
        }
    }
}

/// Where a response's id starts.
const ID: &str = "\"id\":\"";
/// Where a tick's timestamp starts.
const TS: &str = "\"ts\":";

/// The value at `pointer` in the JSON `text`.
fn field(text: &str, pointer: &str) -> Result<Value, BenchError> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.pointer(pointer).cloned())
        .ok_or_else(|| BenchError::Protocol(format!("captured frame has no {pointer}")))
}

/// The next text frame, until `end` (the socket's read timeout bounds each read).
fn read_text(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    end: Instant,
) -> Result<String, BenchError> {
    loop {
        if Instant::now() >= end {
            return Err(BenchError::Timeout("the captured frames".into()));
        }
        match ws.read() {
            Ok(Message::Text(t)) => return Ok(t.as_str().to_string()),
            Ok(_) => {}
            Err(e) => return Err(BenchError::Protocol(format!("capture: {e}"))),
        }
    }
}

fn send(ws: &mut tungstenite::WebSocket<TcpStream>, v: &Value) -> Result<(), BenchError> {
    ws.send(Message::text(v.to_string()))
        .map_err(|e| BenchError::Protocol(format!("capture: {e}")))
}

/// The id of a request frame, found the way the bare baseline finds it: the first
/// `"id":"…"` (the bench's client writes `type`, then `id`).
pub fn request_id(frame: &str) -> Option<&str> {
    let start = frame.find(ID)? + ID.len();
    let rest = frame.get(start..)?;
    rest.get(..rest.find('"')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_splices_back_what_was_cut() {
        let text = r#"{"type":"res","id":"17","ok":true,"payload":{"id":"x"}}"#;
        let t = Template::cut(text, ID, "17").unwrap();
        assert_eq!(t.with("17"), text);
        assert_eq!(
            t.with("3"),
            r#"{"type":"res","id":"3","ok":true,"payload":{"id":"x"}}"#
        );
        assert!(Template::cut(text, ID, "18").is_err());
    }

    #[test]
    fn the_request_id_is_the_first_id() {
        let f = r#"{"type":"req","id":"42","method":"health","params":{"id":"no"}}"#;
        assert_eq!(request_id(f), Some("42"));
        assert_eq!(request_id(r#"{"type":"req"}"#), None);
    }
}
