//! A fake MCP server for the tests, over stdio (the `fake-mcp` binary of this crate, which
//! runs [`run_stdio`]) and over Streamable HTTP ([`FakeMcpHttp`], on a loopback port). Both
//! answer with [`answer`]: protocol 2025-06-18, two pages of tools (`echo`, `hang` on the
//! first, `big`, `crash` on the second, the cursor `"2"` between them):
//! - `echo {text}` → `echo: <text>`;
//! - `hang` never answers;
//! - `big {chars}` → that many `x`;
//! - `crash` makes the stdio server exit with status 3 (an error result over HTTP).
//!
//! The stdio server appends every message it reads to the file named by `FAKE_MCP_LOG`, if
//! set, so a test can see `notifications/initialized` and `notifications/cancelled`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_model::{RecordedRequest, read_request};

/// The session id the HTTP server hands out.
pub const SESSION_ID: &str = "fake-session-1";

/// What the server does with one message.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Send this message back.
    Reply(Value),
    /// Send nothing (a notification, or `hang`).
    Nothing,
    /// Exit the process (`crash`).
    Crash,
}

fn result(id: &Value, result: Value) -> Answer {
    Answer::Reply(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn text(id: &Value, text: String) -> Answer {
    result(id, json!({"content": [{"type": "text", "text": text}]}))
}

/// The answer to `message` (see the module docs).
pub fn answer(message: &Value) -> Answer {
    let id = &message["id"];
    if id.is_null() {
        return Answer::Nothing;
    }
    match message["method"].as_str().unwrap_or_default() {
        "initialize" => result(
            id,
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {"listChanged": true}},
                "serverInfo": {"name": "fake-mcp", "version": "1.0.0"},
            }),
        ),
        "tools/list" if message["params"]["cursor"] == "2" => result(
            id,
            json!({"tools": [
                {"name": "big", "description": "Returns many characters.",
                 "inputSchema": {"type": "object", "properties": {"chars": {"type": "integer"}}}},
                {"name": "crash", "description": "Makes the server exit.",
                 "inputSchema": {"type": "object"}},
            ]}),
        ),
        "tools/list" => result(
            id,
            json!({"tools": [
                {"name": "echo", "description": "Echoes its text.",
                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
                {"name": "hang", "description": "Never answers.",
                 "inputSchema": {"type": "object"}},
            ], "nextCursor": "2"}),
        ),
        "tools/call" => {
            let args = &message["params"]["arguments"];
            match message["params"]["name"].as_str().unwrap_or_default() {
                "echo" => text(
                    id,
                    format!("echo: {}", args["text"].as_str().unwrap_or_default()),
                ),
                "big" => text(id, "x".repeat(args["chars"].as_u64().unwrap_or(0) as usize)),
                "hang" => Answer::Nothing,
                "crash" => Answer::Crash,
                other => Answer::Reply(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32602, "message": format!("unknown tool {other}")}})),
            }
        }
        "ping" => result(id, json!({})),
        other => Answer::Reply(json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": format!("method not found: {other}")}})),
    }
}

/// The stdio server: one message per line on stdin, answers on stdout, until stdin ends.
pub fn run_stdio() -> io::Result<()> {
    let log = std::env::var_os("FAKE_MCP_LOG");
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    eprintln!("fake-mcp: started");
    for line in stdin.lines() {
        let line = line?;
        if let Some(path) = &log {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{line}")?;
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match answer(&message) {
            Answer::Reply(reply) => {
                writeln!(stdout, "{reply}")?;
                stdout.flush()?;
            }
            Answer::Nothing => {}
            Answer::Crash => std::process::exit(3),
        }
    }
    Ok(())
}

/// The Streamable HTTP server: `POST /mcp` answers JSON, except `tools/call`, which answers
/// as an SSE stream; the session id is handed out at initialize and required after it
/// (400 without). Every request is recorded.
pub struct FakeMcpHttp {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl FakeMcpHttp {
    /// Start on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake MCP server");
        let addr = listener.local_addr().expect("its address");
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let seen = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let seen = seen.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &seen);
                });
            }
        });
        FakeMcpHttp { addr, requests }
    }

    /// The endpoint to configure as `url`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<RecordedRequest>>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(request) = read_request(&mut reader)? {
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.clone());
        let message = request.json.clone();
        let initialize = message["method"] == "initialize";
        if !initialize && request.header("mcp-session-id") != Some(SESSION_ID) {
            respond(&mut out, "400 Bad Request", "application/json", &[], "{}")?;
            continue;
        }
        match answer(&message) {
            Answer::Nothing if !message["id"].is_null() => {
                // `hang`: hold the request until the client gives up on it.
                let mut rest = Vec::new();
                let _ = io::Read::read_to_end(&mut reader, &mut rest);
                return Ok(());
            }
            Answer::Nothing => respond(&mut out, "202 Accepted", "application/json", &[], "")?,
            Answer::Crash => {
                let reply = json!({"jsonrpc": "2.0", "id": message["id"],
                    "result": {"content": [{"type": "text", "text": "cannot crash over HTTP"}], "isError": true}});
                respond(
                    &mut out,
                    "200 OK",
                    "application/json",
                    &[],
                    &reply.to_string(),
                )?
            }
            Answer::Reply(reply) if message["method"] == "tools/call" => {
                let body = format!("event: message\ndata: {reply}\n\n");
                respond(&mut out, "200 OK", "text/event-stream", &[], &body)?
            }
            Answer::Reply(reply) => {
                let extra: &[(&str, &str)] = if initialize {
                    &[("Mcp-Session-Id", SESSION_ID)]
                } else {
                    &[]
                };
                respond(
                    &mut out,
                    "200 OK",
                    "application/json",
                    extra,
                    &reply.to_string(),
                )?
            }
        }
    }
    Ok(())
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_answers_as_documented() {
        let Answer::Reply(r) = answer(&json!({"id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"}}}))
        else {
            panic!()
        };
        assert_eq!(r["result"]["content"][0]["text"], "echo: hi");
        assert_eq!(
            answer(&json!({"id": 2, "method": "tools/call", "params": {"name": "hang"}})),
            Answer::Nothing
        );
        assert_eq!(
            answer(&json!({"method": "notifications/initialized"})),
            Answer::Nothing
        );
    }
}
