//! Gateway URLs: `ws://host[:port][/path]`. TLS (`wss://`) is not supported by clawgate's
//! client and is refused with a message that says so.

use std::fmt;
use std::net::IpAddr;

/// A parsed `ws://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayUrl {
    /// Host name or address, IPv6 without brackets.
    pub host: String,
    /// TCP port (80 when the URL names none, as for any `ws://` URL).
    pub port: u16,
    /// Request path, starting with `/`.
    pub path: String,
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// `wss://`: TLS is not supported.
    TlsUnsupported,
    /// Not a `ws://` URL.
    Scheme,
    /// No host.
    NoHost,
    /// The port is not a number from 1 to 65535.
    Port(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::TlsUnsupported => write!(
                f,
                "TLS (wss://) is not supported by clawgate; use ws:// on loopback or a private network, or put a TLS terminator in front and connect to it with ws:// locally"
            ),
            UrlError::Scheme => write!(
                f,
                "gateway URL must start with ws:// (for example ws://127.0.0.1:18789)"
            ),
            UrlError::NoHost => write!(
                f,
                "gateway URL has no host (for example ws://127.0.0.1:18789)"
            ),
            UrlError::Port(p) => write!(f, "gateway URL port {p:?} is not a port number (1-65535)"),
        }
    }
}

impl GatewayUrl {
    /// `ws://127.0.0.1:<port>`, the local gateway.
    pub fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
        }
    }

    /// Parse a `ws://` URL.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("wss://") {
            return Err(UrlError::TlsUnsupported);
        }
        let rest = if lower.starts_with("ws://") {
            s.get(5..).unwrap_or("")
        } else {
            return Err(UrlError::Scheme);
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or(UrlError::NoHost)?;
            (h, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::Port(p.to_string()))?,
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Whether the host is a loopback name or address.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    /// The `Host` header value (`host:port`, IPv6 in brackets).
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for GatewayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path == "/" {
            ""
        } else {
            self.path.as_str()
        };
        write!(f, "ws://{}{path}", self.host_header())
    }
}

/// Whether `host` (a URL's host, without brackets) is a loopback name or address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_paths() {
        let u = GatewayUrl::parse("ws://127.0.0.1:18789").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 18789, "/")
        );
        assert_eq!(u.to_string(), "ws://127.0.0.1:18789");
        assert!(u.is_loopback());
        let u = GatewayUrl::parse("WS://[::1]:9/gateway").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9, "/gateway")
        );
        assert_eq!(u.host_header(), "[::1]:9");
        assert_eq!(u.to_string(), "ws://[::1]:9/gateway");
        assert!(u.is_loopback());
        let u = GatewayUrl::parse("ws://gw.example:1234/").unwrap();
        assert!(!u.is_loopback());
        assert_eq!(GatewayUrl::parse("ws://localhost").unwrap().port, 80);
        assert!(GatewayUrl::parse("ws://localhost:1").unwrap().is_loopback());
        assert!(!GatewayUrl::parse("ws://10.0.0.2:1").unwrap().is_loopback());
    }

    #[test]
    fn refuses_tls_and_garbage() {
        assert_eq!(
            GatewayUrl::parse("wss://gw:443"),
            Err(UrlError::TlsUnsupported)
        );
        assert!(UrlError::TlsUnsupported.to_string().contains("TLS"));
        assert_eq!(GatewayUrl::parse("http://x:1"), Err(UrlError::Scheme));
        assert_eq!(GatewayUrl::parse("127.0.0.1:18789"), Err(UrlError::Scheme));
        assert_eq!(GatewayUrl::parse("ws://:1"), Err(UrlError::NoHost));
        assert_eq!(
            GatewayUrl::parse("ws://h:0"),
            Err(UrlError::Port("0".into()))
        );
        assert_eq!(
            GatewayUrl::parse("ws://h:99999"),
            Err(UrlError::Port("99999".into()))
        );
        assert_eq!(GatewayUrl::parse("ws://[::1"), Err(UrlError::NoHost));
    }
}
