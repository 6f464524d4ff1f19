//! A WebSocket upgrade request checked by hand from its parsed head, with the rules
//! tungstenite's server handshake applies (so the same requests are refused), and the
//! `101 Switching Protocols` answer written by hand in the bytes tungstenite writes: no second
//! parse of the head, no header map, no response builder per handshake.

use tungstenite::handshake::derive_accept_key;

/// The longest request target accepted (the `http` crate's URI limit, which tungstenite
/// applies).
const MAX_TARGET_BYTES: usize = u16::MAX as usize - 1;

/// Length of a `Sec-WebSocket-Key`: 16 bytes in base64.
const KEY_LEN: usize = 24;

/// What an upgrade request must carry for its 101 answer: its `Sec-WebSocket-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeKey([u8; KEY_LEN]);

/// The headers an upgrade is decided on, each its first occurrence (as tungstenite and the
/// `http` crate's map look them up), found in one pass over the head.
#[derive(Debug, Default)]
pub(crate) struct UpgradeHeaders<'h> {
    /// `Upgrade`.
    pub(crate) upgrade: Option<&'h [u8]>,
    connection: Option<&'h [u8]>,
    version: Option<&'h [u8]>,
    key: Option<&'h [u8]>,
    /// `Host`.
    pub(crate) host: Option<&'h [u8]>,
    /// `Origin`.
    pub(crate) origin: Option<&'h [u8]>,
    /// `Forwarded`.
    pub(crate) forwarded: Option<&'h [u8]>,
    /// `X-Forwarded-For`.
    pub(crate) x_forwarded_for: Option<&'h [u8]>,
    /// `X-Real-IP`.
    pub(crate) x_real_ip: Option<&'h [u8]>,
    /// `x-openclaw-scopes`.
    pub(crate) scope_cap: Option<&'h [u8]>,
}

impl<'h> UpgradeHeaders<'h> {
    /// The first occurrence of each header of interest in `headers`.
    pub(crate) fn of(headers: &[httparse::Header<'h>]) -> Self {
        let mut seen = Self::default();
        for h in headers {
            let slot = match h.name.len() {
                4 => Some(("host", &mut seen.host)),
                6 => Some(("origin", &mut seen.origin)),
                7 => Some(("upgrade", &mut seen.upgrade)),
                9 if h.name.as_bytes().first().is_some_and(|b| b | 0x20 == b'x') => {
                    Some(("x-real-ip", &mut seen.x_real_ip))
                }
                9 => Some(("forwarded", &mut seen.forwarded)),
                10 => Some(("connection", &mut seen.connection)),
                15 => Some(("x-forwarded-for", &mut seen.x_forwarded_for)),
                17 if h.name.as_bytes().first().is_some_and(|b| b | 0x20 == b'x') => {
                    Some(("x-openclaw-scopes", &mut seen.scope_cap))
                }
                17 => Some(("sec-websocket-key", &mut seen.key)),
                21 => Some(("sec-websocket-version", &mut seen.version)),
                _ => None,
            };
            if let Some((name, slot)) = slot
                && slot.is_none()
                && is_named(h.name, name)
            {
                *slot = Some(h.value);
            }
        }
        seen
    }

    /// Whether the first `Upgrade` header asks for a WebSocket.
    pub(crate) fn wants_websocket(&self) -> bool {
        self.upgrade
            .is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"))
    }
}

/// Whether header name `name` is `lower` (lower-case) in any case: only the header's bytes are
/// folded.
fn is_named(name: &str, lower: &str) -> bool {
    name.len() == lower.len()
        && name
            .bytes()
            .zip(lower.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b)
}

/// Check a `GET` upgrade request: HTTP/1.1 or later, `Connection` naming `Upgrade`, `Upgrade:
/// websocket`, `Sec-WebSocket-Version: 13`, a key of 16 base64 bytes, header values of visible
/// characters and a target that is a URI. Headers are looked up by their first occurrence
/// (`seen`, from the same request), as tungstenite looks them up.
pub(crate) fn check(
    req: &httparse::Request<'_, '_>,
    seen: &UpgradeHeaders<'_>,
) -> Option<UpgradeKey> {
    if req.method != Some("GET") || req.version.is_none_or(|v| v < 1) {
        return None;
    }
    if !req
        .headers
        .iter()
        .all(|h| h.value.iter().all(|&b| is_value_byte(b)))
    {
        return None;
    }
    let connection_upgrade = seen
        .connection
        .filter(|v| v.iter().all(|&b| is_visible_byte(b)))
        .is_some_and(|v| {
            v.split(|&b| b == b' ' || b == b',')
                .any(|token| token.eq_ignore_ascii_case(b"upgrade"))
        });
    let version_13 = seen.version == Some(b"13");
    if !(connection_upgrade && seen.wants_websocket() && version_13) {
        return None;
    }
    let key = seen.key.and_then(key_of_16_bytes)?;
    if !is_uri(req.path?) {
        return None;
    }
    Some(UpgradeKey(key))
}

/// `key` if it is 16 bytes in padded base64 as tungstenite decodes it (`data-encoding`'s
/// strict `BASE64`). The form every client sends (21 symbols, a 22nd whose low four bits are
/// zero: the 16th byte's last bits, then `==`) is checked byte by byte, nothing decoded; any
/// other 24 bytes are decoded into a stack buffer, as `BASE64` also takes concatenated padded
/// groups (`AAAAAAAAAAAAAAA=AAAAAAA=` is 11 + 5 bytes).
fn key_of_16_bytes(key: &[u8]) -> Option<[u8; KEY_LEN]> {
    let key: [u8; KEY_LEN] = key.try_into().ok()?;
    let (symbols, padding) = key.split_at(KEY_LEN - 2);
    let (last, full) = symbols.split_last()?;
    let usual = padding == b"=="
        && full.iter().all(|&b| is_base64_symbol(b))
        && matches!(last, b'A' | b'Q' | b'g' | b'w');
    let decodes_to_16 = || {
        let mut bytes = [0u8; KEY_LEN];
        data_encoding::BASE64
            .decode_mut(
                &key,
                &mut bytes[..data_encoding::BASE64.decode_len(KEY_LEN).ok()?],
            )
            .ok()
            .filter(|&n| n == 16)
    };
    (usual || decodes_to_16().is_some()).then_some(key)
}

/// A symbol of the standard base64 alphabet.
fn is_base64_symbol(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// A byte a header value may hold (`http::HeaderValue`): visible characters, space, tab and
/// bytes of 0x80 and above.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// A byte of a header value read as text (`HeaderValue::to_str`): no bytes above ASCII.
fn is_visible_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b)
}

/// Whether the request target parses as a URI, as tungstenite requires. An origin-form target
/// (`/path?query`, the only form clients send) is checked here; the rare other forms by the
/// `http` crate's parser.
fn is_uri(target: &str) -> bool {
    if target.len() > MAX_TARGET_BYTES {
        return false;
    }
    match target.as_bytes() {
        [b'/', rest @ ..] => is_origin_form(rest),
        _ => tungstenite::http::Uri::try_from(target).is_ok(),
    }
}

/// The `http` crate's rules for a path and query after the leading `/`: path bytes, then after
/// a `?` query bytes; a `#` ends what is checked (the fragment is dropped, whatever it holds);
/// bytes above ASCII must be UTF-8.
fn is_origin_form(rest: &[u8]) -> bool {
    let mut in_query = false;
    let mut end = rest.len();
    for (i, &b) in rest.iter().enumerate() {
        let ok = match b {
            b'#' => {
                end = i;
                break;
            }
            b'?' if !in_query => {
                in_query = true;
                true
            }
            0x80..=0xff => true,
            _ if in_query => is_query_byte(b),
            _ => is_path_byte(b),
        };
        if !ok {
            return false;
        }
    }
    rest.get(..end)
        .is_some_and(|r| r.is_ascii() || std::str::from_utf8(r).is_ok())
}

/// An ASCII byte the `http` crate takes in a path as it is.
fn is_path_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x3b | 0x3d | 0x40..=0x5f | 0x61..=0x7a | 0x7c | 0x7e | b'{' | b'}')
}

/// An ASCII byte the `http` crate takes in a query as it is.
fn is_query_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x24..=0x3b | 0x3d | 0x3f..=0x7e)
}

/// The `101 Switching Protocols` answer to an upgrade with `key`.
pub fn switching_protocols(key: &UpgradeKey) -> Vec<u8> {
    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ";
    let accept = derive_accept_key(&key.0);
    let mut out = Vec::with_capacity(HEAD.len() + accept.len() + 4);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// A request head from its parts.
    fn head(target: &str, version: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
        let mut h = format!("GET {target} HTTP/{version}\r\n").into_bytes();
        for (name, value) in headers {
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value);
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    const TARGETS: &[&str] = &[
        "/",
        "/ws",
        "/a?b=c",
        "/a?b?c",
        "/a<b",
        "/a`b",
        "/a?b`c",
        "/a\"b",
        "/a?b\"c",
        "/a{b}",
        "/a#<junk>",
        "/a?b#\"",
        "/é",
        "*",
        "http://h/ws",
        "h:80",
        "a",
        "?x",
        "//x",
        "/a>b",
    ];
    const CONNECTION: &[&[u8]] = &[
        b"Upgrade",
        b"upgrade",
        b"keep-alive, Upgrade",
        b"keep-alive,upgrade",
        b"Upgradex",
        b"close",
        b"Upgrade\xe9",
        b"\tUpgrade",
        b"",
    ];
    const UPGRADE: &[&[u8]] = &[b"websocket", b"WebSocket", b"websocket2", b"h2c"];
    const VERSION: &[&[u8]] = &[b"13", b"8", b"13 ", b"013"];
    const KEY: &[&[u8]] = &[
        b"dGhlIHNhbXBsZSBub25jZQ==",
        b"dGhlIHNhbXBsZSBub25jZR==",
        b"dGhlIHNhbXBsZSBub25jZQ",
        b"dGhlIHNhbXBsZSBub25jZQ===",
        b"dGhlIHNhbXBsZSBub25j*Q==",
        b"AAAAAAAAAAAAAAAAAAAAAA==",
        b"++++//////++++zz99Z0aw==",
        b"AAAAAAAAAAAAAAAAAAAAAg==",
        b"AAAAAAAAAAAAAAAAAAAAAB==",
        b"AAAAAAAAAAAAAAAAAAAAAAA=",
        b"AAAAAAAAAAAAAAAAAAAAAAAA",
        b"AAAAAAAAAAAAAAAAAAAA=A==",
        b"AAAAAAAAAAAAAAAAAAAAA-Q==",
        b"AAAAAAAAAA AAAAAAAAAAAQ==",
    ];

    proptest! {
        #[test]
        fn taken_and_answered_as_tungstenite_does(
            target in 0..TARGETS.len(),
            http_minor in 0..2u8,
            connection in proptest::collection::vec(0..CONNECTION.len(), 0..3),
            upgrade in 0..UPGRADE.len(),
            version in proptest::collection::vec(0..VERSION.len(), 0..3),
            key in proptest::collection::vec(0..KEY.len(), 0..3),
            extra in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut headers: Vec<(&str, &[u8])> = vec![("Host", b"x"), ("Upgrade", UPGRADE[upgrade])];
            headers.extend(connection.iter().map(|&i| ("Connection", CONNECTION[i])));
            headers.extend(version.iter().map(|&i| ("Sec-WebSocket-Version", VERSION[i])));
            headers.extend(key.iter().map(|&i| ("Sec-WebSocket-Key", KEY[i])));
            headers.push(("X-Extra", &extra));
            crate::fuzzing::http_head(&head(TARGETS[target], &format!("1.{http_minor}"), &headers));
        }
    }

    /// Header names of interest, in other cases, and names of the same lengths that are not.
    const NAMES: &[&str] = &[
        "Host",
        "HOST",
        "hosts",
        "Hose",
        "Origin",
        "origin",
        "Upgrade",
        "UPGRADE",
        "Upgrades",
        "Forwarded",
        "forwarder",
        "X-Real-IP",
        "x-real-ip",
        "x-real-iq",
        "y-real-ip",
        "Connection",
        "connectiom",
        "X-Forwarded-For",
        "x-forwarded-fox",
        "x-openclaw-scopes",
        "X-OpenClaw-Scopes",
        "sec-websocket-key",
        "Sec-WebSocket-Key",
        "sec-websocket-kez",
        "x-websocket-key",
        "Sec-WebSocket-Version",
        "sec-websocket-versiom",
        "",
    ];

    proptest! {
        #[test]
        fn the_first_of_each_header_is_found(
            names in proptest::collection::vec(0..NAMES.len(), 0..12),
        ) {
            let values: Vec<String> = (0..names.len()).map(|i| format!("v{i}")).collect();
            let headers: Vec<httparse::Header<'_>> = names
                .iter()
                .zip(&values)
                .map(|(&n, v)| httparse::Header { name: NAMES[n], value: v.as_bytes() })
                .collect();
            let first = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            let seen = super::UpgradeHeaders::of(&headers);
            prop_assert_eq!(seen.host, first("host"));
            prop_assert_eq!(seen.origin, first("origin"));
            prop_assert_eq!(seen.upgrade, first("upgrade"));
            prop_assert_eq!(seen.forwarded, first("forwarded"));
            prop_assert_eq!(seen.x_real_ip, first("x-real-ip"));
            prop_assert_eq!(seen.connection, first("connection"));
            prop_assert_eq!(seen.x_forwarded_for, first("x-forwarded-for"));
            prop_assert_eq!(seen.scope_cap, first("x-openclaw-scopes"));
            prop_assert_eq!(seen.key, first("sec-websocket-key"));
            prop_assert_eq!(seen.version, first("sec-websocket-version"));
        }
    }

    #[test]
    fn a_key_is_16_bytes_of_base64_as_data_encoding_decodes_it() {
        let mut keys: Vec<Vec<u8>> = KEY.iter().map(|k| k.to_vec()).collect();
        // Padded groups one after the other (the fuzzer's find), and padding in odd places.
        keys.extend(
            [
                &b"AAAAAAAAAAAAAAA=AAAAAAA="[..],
                b"AAAAAAAAAAAAAAAAAAA=AAA=",
                b"AAAA=AAAAAAAAAAAAAAAAAA=",
                b"AA==AAAAAAAAAAAAAAAAAAAA",
                b"AAAAAAAAAAAAAAAAAAAAAA=A",
            ]
            .map(<[u8]>::to_vec),
        );
        // Every symbol (and a few other bytes) in every place of a valid key.
        let valid = b"AAAAAAAAAAAAAAAAAAAAAA==";
        for at in 0..valid.len() {
            for b in (b'*'..=b'{').chain([0, b' ', 0x80, 0xff]) {
                let mut k = valid.to_vec();
                k[at] = b;
                keys.push(k);
            }
        }
        for key in keys {
            let theirs = data_encoding::BASE64
                .decode(&key)
                .is_ok_and(|bytes| bytes.len() == 16);
            assert_eq!(
                super::key_of_16_bytes(&key).is_some(),
                key.len() == super::KEY_LEN && theirs,
                "{}",
                String::from_utf8_lossy(&key)
            );
        }
    }

    #[test]
    fn answer_is_the_rfc_example() {
        let key = super::UpgradeKey(*b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            super::switching_protocols(&key),
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }
}
