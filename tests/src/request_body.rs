//! Reading a request body as real clients send it to the fakes: with `Content-Length` or with
//! `Transfer-Encoding: chunked` (Node's fetch streams some JSON bodies that way: upstream's
//! Discord plugin posts its messages chunked), and reading it as JSON, or as an object of its
//! fields when it is `application/x-www-form-urlencoded` (how Slack's Web API clients,
//! `@slack/web-api` among them, post by default; Slack accepts both).

use std::io::{self, BufRead};

use serde_json::{Map, Value};

/// The body after a head with `headers`, at most `max` bytes.
pub(crate) fn read(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    max: usize,
) -> io::Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader, max);
    }
    let length = header(headers, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > max {
        return Err(invalid("body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// `body` as JSON: parsed as JSON, or a form's fields as an object of strings when the
/// request says it is a form; `Value::Null` when it is neither.
pub(crate) fn json(headers: &[(String, String)], body: &[u8]) -> Value {
    let form = header(headers, "content-type").is_some_and(|v| {
        v.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if form {
        return form_fields(body).map_or(Value::Null, Value::Object);
    }
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A chunked body: size lines in hex (extensions ignored), each chunk and its CRLF, the
/// zero-size chunk, trailers up to the blank line.
fn read_chunked(reader: &mut impl BufRead, max: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            break;
        }
        if body.len() + size > max {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end_matches(['\r', '\n']).is_empty() {
            return Ok(body);
        }
    }
}

/// The fields of a form body (`a=1&b=x%20y`), a later field of a name replacing an earlier
/// one; `None` when a field is not valid percent-encoded UTF-8.
fn form_fields(body: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut fields = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.insert(form_decode(name)?, Value::String(form_decode(value)?));
    }
    Some(fields)
}

/// One form component: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn chunked_body_is_joined_and_the_next_request_left_in_the_stream() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut r = io::BufReader::new(&wire[..]);
        let h = head(&[("Transfer-Encoding", "chunked")]);
        assert_eq!(read(&mut r, &h, 1024).unwrap(), b"hello world");
        let mut rest = String::new();
        r.read_line(&mut rest).unwrap();
        assert_eq!(rest, "GET / HTTP/1.1\r\n");
    }

    #[test]
    fn chunked_body_over_the_bound_is_refused() {
        let wire = b"10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let h = head(&[("transfer-encoding", "chunked")]);
        assert!(read(&mut io::BufReader::new(&wire[..]), &h, 8).is_err());
    }

    #[test]
    fn form_body_reads_as_an_object_of_strings() {
        let h = head(&[("Content-Type", "application/x-www-form-urlencoded")]);
        let v = json(&h, b"channel=U1&text=hello%20there+you&unfurl_links=false");
        assert_eq!(
            v,
            serde_json::json!({"channel": "U1", "text": "hello there you", "unfurl_links": "false"})
        );
        assert_eq!(json(&h, b"text=%zz"), Value::Null);
    }

    #[test]
    fn json_body_still_reads_as_json() {
        let h = head(&[("content-type", "application/json")]);
        assert_eq!(json(&h, br#"{"a":1}"#), serde_json::json!({"a": 1}));
        assert_eq!(json(&h, b"not json"), Value::Null);
    }
}
