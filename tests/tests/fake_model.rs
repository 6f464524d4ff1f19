//! The fake model provider over a plain `TcpStream`: what it records, how it frames and paces
//! its streams, its error answers, and that it goes away when dropped. Its streams are decoded
//! with the core's own `ChatStream`, so the fake and the decoder agree on the wire format.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clawgate_core::model::openai::{
    ChatRequest, ChatStream, ErrorKind, Message, classify_http_error,
};
use clawgate_tests::fake_model::{FakeModel, Framing, Reply};
use serde_json::json;

/// A response: status, headers, the body as it came off the socket.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    raw_body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body with chunked transfer coding removed when it was used.
    fn body(&self) -> Vec<u8> {
        if self.header("transfer-encoding") != Some("chunked") {
            return self.raw_body.clone();
        }
        let mut out = Vec::new();
        let mut rest = &self.raw_body[..];
        loop {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("size line");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16)
                .expect("hex size");
            rest = &rest[end + 2..];
            if size == 0 {
                assert_eq!(rest, b"\r\n", "chunked body ends with an empty trailer");
                return out;
            }
            out.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
    }
}

/// POST `body` to `path` with `Connection: close` and read the whole response.
fn post(model: &FakeModel, path: &str, key: &str, body: &[u8]) -> Response {
    let mut s = TcpStream::connect(model.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        model.addr(),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read the response");
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Response {
        status,
        headers,
        raw_body: all[split + 4..].to_vec(),
    }
}

fn request_body(user: &str) -> Vec<u8> {
    ChatRequest {
        model: "fake-1".into(),
        messages: vec![
            Message::System("Be brief.".into()),
            Message::User(user.into()),
        ],
        tools: vec![],
    }
    .to_http("unused", None)
    .body
}

/// The assistant text a body streams, decoded by the core.
fn streamed_text(body: &[u8]) -> String {
    let mut stream = ChatStream::default();
    let mut events = Vec::new();
    stream.feed(body, &mut events).expect("a valid stream");
    stream.finish().expect("a complete stream");
    clawgate_core::fuzzing::model_stream::text(&events)
}

#[test]
fn echo_streams_and_records_the_request() {
    let model = FakeModel::echo();
    assert!(model.base_url().starts_with("http://127.0.0.1:"));
    assert!(model.base_url().ends_with("/v1"));
    let r = post(
        &model,
        "/v1/chat/completions",
        "sk-fake",
        &request_body("hello"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(streamed_text(&r.body()), "Echo from fake LLM: hello");
    let seen = model.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-fake"));
    assert_eq!(seen[0].json["stream"], json!(true));
    assert_eq!(
        seen[0].json["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(seen[0].last_user_text().as_deref(), Some("hello"));
}

#[test]
fn scripted_delays_pace_the_chunks() {
    let model =
        FakeModel::start(|_| Reply::text(&["a", "b", "c"]).with_delay(Duration::from_millis(40)));
    let started = Instant::now();
    let r = post(&model, "/v1/chat/completions", "k", &request_body("x"));
    // Seven parts (role, three deltas, finish, usage, [DONE]) 40 ms apart.
    assert!(
        started.elapsed() >= Duration::from_millis(7 * 40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(streamed_text(&r.body()), "abc");
}

#[test]
fn connection_close_framing() {
    let model =
        FakeModel::start(|_| Reply::text(&["closed ", "body"]).with_framing(Framing::Close));
    let r = post(&model, "/v1/chat/completions", "k", &request_body("x"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(streamed_text(&r.body()), "closed body");
}

#[test]
fn rate_limit_with_retry_after() {
    let model = FakeModel::start(|_| {
        Reply::error(429, "Rate limit reached for fake-1").with_header("Retry-After", "7")
    });
    let r = post(&model, "/v1/chat/completions", "k", &request_body("x"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    let e = classify_http_error(r.status, r.header("retry-after"), &r.body());
    assert_eq!(e.kind, ErrorKind::RateLimit);
    assert_eq!(e.retry_after_secs, Some(7));
    assert_eq!(e.message_preview, "Rate limit reached for fake-1");
}

#[test]
fn other_paths_are_404_and_recorded() {
    let model = FakeModel::echo();
    let r = post(&model, "/v1/models", "k", b"");
    assert_eq!(r.status, 404);
    assert_eq!(model.requests()[0].path, "/v1/models");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let model =
        FakeModel::start(|req| Reply::error(400, &req.last_user_text().unwrap_or_default()));
    let mut s = TcpStream::connect(model.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for word in ["one", "two"] {
        let body = request_body(word);
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("the answer's head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        let length: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a length")
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        s.read_exact(&mut body).expect("the answer's body");
        let e = classify_http_error(400, None, &body);
        assert_eq!(e.message_preview, word);
    }
    assert_eq!(model.requests().len(), 2);
}

#[test]
fn dropping_stops_the_server() {
    let model = FakeModel::echo();
    let addr = model.addr();
    drop(model);
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening on {addr}"
    );
}

#[test]
fn the_anthropic_fake_streams_messages_events_the_core_decodes() {
    use clawgate_core::model::anthropic::MessagesStream;
    use clawgate_tests::fake_model::FakeApi;
    let model = FakeModel::with(FakeApi::Anthropic, None, |req| {
        Reply::anthropic_text(&["Hi ", &req.last_user_text().unwrap_or_default()])
    });
    assert!(!model.base_url().ends_with("/v1"));
    let body = br#"{"model":"fake-1","max_tokens":10,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"there"}]}]}"#;
    let r = post(&model, "/v1/messages", "unused", body);
    assert_eq!(r.status, 200);
    let mut stream = MessagesStream::default();
    let mut events = Vec::new();
    stream.feed(&r.body(), &mut events).expect("a valid stream");
    stream.finish().expect("a complete stream");
    assert_eq!(
        clawgate_core::fuzzing::model_stream::text(&events),
        "Hi there"
    );
    let r = post(&model, "/v1/chat/completions", "unused", body);
    assert_eq!(r.status, 404, "only the API's own path is answered");
}
