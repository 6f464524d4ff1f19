//! The bytes of Control UI responses: status line and headers (upstream's security headers,
//! cache rules, content types), the small answers (404, 302, 304, 416, the built-in page).
//! Every response closes its connection (`Connection: close`).

use core::fmt::Write as _;

use crate::config::UiRoot;

/// `Cache-Control` of fingerprinted and versioned assets.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else the UI serves (revalidate every time).
pub(crate) const NO_CACHE: &str = "no-cache";

/// upstream's `buildControlUiCspHeader`: `script_hashes` are the `sha256-…` sources of the
/// document's inline scripts, `portal_host` the request's `Host` (its name may be connected
/// to on any port).
pub(crate) fn csp(script_hashes: &[String], portal_host: Option<&str>) -> String {
    let mut script = String::from("'self'");
    for h in script_hashes {
        let _ = write!(script, " '{h}'");
    }
    let mut connect =
        String::from("'self' ws: wss: data: https://api.openai.com https://tweakcn.com");
    if let Some(name) = portal_host.and_then(host_name) {
        let _ = write!(connect, " http://{name}:* https://{name}:*");
    }
    [
        "default-src 'self'".to_string(),
        "base-uri 'none'".into(),
        "object-src 'none'".into(),
        "frame-ancestors 'none'".into(),
        "frame-src 'self' http: https:".into(),
        format!("script-src {script}"),
        "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com".into(),
        "img-src 'self' data: blob: https:".into(),
        "media-src 'self' data: blob:".into(),
        "font-src 'self' https://fonts.gstatic.com".into(),
        "worker-src 'self'".into(),
        format!("connect-src {connect}"),
    ]
    .join("; ")
}

/// The name part of a `Host` header that is only a host and port (letters, digits, `.`,
/// `-`, or a bracketed IPv6 literal); `None` for anything else.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        host.get(..end + 2)?
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    let port_ok = host.get(name.len()..).is_some_and(|p| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    });
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    (port_ok && name_ok).then_some(name)
}

/// The `Content-Type` of a file, by extension (upstream's table).
pub(crate) fn content_type(rel: &str) -> &'static str {
    match extension(rel).as_str() {
        "html" => "text/html; charset=utf-8",
        "js" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn extension(rel: &str) -> String {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// A file type upstream serves as a static asset: a missing one is a 404, never the SPA
/// fallback.
pub(crate) fn is_static_asset(rel: &str) -> bool {
    content_type(rel) != "application/octet-stream" && extension(rel) != "html"
}

/// Whether upstream serves precompressed variants of this file type.
pub(crate) fn is_compressible(rel: &str) -> bool {
    matches!(
        extension(rel).as_str(),
        "css" | "html" | "js" | "json" | "svg" | "txt" | "wasm" | "webmanifest"
    )
}

/// A response head under upstream's Control UI security headers.
pub(crate) struct Head {
    status: u16,
    headers: String,
}

impl Head {
    /// A head with `status` and the security headers (`csp` as the policy).
    pub(crate) fn new(status: u16, csp: &str) -> Self {
        let mut headers = String::with_capacity(1024);
        let _ = write!(
            headers,
            "X-Frame-Options: DENY\r\nContent-Security-Policy: {csp}\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nPermissions-Policy: camera=(self), microphone=*, geolocation=*, clipboard-write=*\r\n"
        );
        Self { status, headers }
    }

    /// Add a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        let _ = write!(self.headers, "{name}: {value}\r\n");
        self
    }

    /// The head's bytes, with `Content-Length: length` and `Connection: close`.
    pub(crate) fn finish(self, length: u64) -> Vec<u8> {
        format!(
            "HTTP/1.1 {} {}\r\n{}Content-Length: {length}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.headers
        )
        .into_bytes()
    }

    /// The head without a `Content-Length` (a `304`), with `Connection: close`.
    pub(crate) fn no_length(self) -> Vec<u8> {
        format!(
            "HTTP/1.1 {} {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.headers
        )
        .into_bytes()
    }

    /// The head followed by `body` (only the head for `HEAD`).
    pub(crate) fn with_body(self, body: &[u8], head_only: bool) -> Vec<u8> {
        let mut out = self.finish(body.len() as u64);
        if !head_only {
            out.extend_from_slice(body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A plain-text answer under the security headers.
pub(crate) fn text(status: u16, body: &str, head_only: bool) -> Vec<u8> {
    Head::new(status, &csp(&[], None))
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Cache-Control", "no-store")
        .with_body(body.as_bytes(), head_only)
}

/// `404 Not Found`, as upstream's `respondNotFound`.
pub(crate) fn not_found(head_only: bool) -> Vec<u8> {
    text(404, "Not Found", head_only)
}

/// `302 Found` to `location`.
pub(crate) fn redirect(location: &str) -> Vec<u8> {
    Head::new(302, &csp(&[], None))
        .header("Location", location)
        .finish(0)
}

/// The page served when there are no Control UI files: it names the key to set.
pub(crate) fn missing_page(root: &UiRoot, head_only: bool) -> Vec<u8> {
    let detail = match root {
        UiRoot::Configured(p) | UiRoot::Installed(p) => format!(
            "No <code>index.html</code> was found in <code>{}</code>.",
            escape_html(p)
        ),
        UiRoot::Missing => {
            "No installed <code>openclaw</code> package was found (looked in the global npm folders).".into()
        }
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>OpenClaw Control UI not found</title></head>\n<body><h1>Control UI files not found</h1>\n<p>{detail}</p>\n<p>clawgate serves OpenClaw's Control UI from an installed <code>openclaw</code> package (<code>npm install -g openclaw</code>) or from the folder named by <code>gateway.controlUi.root</code> in the config file: point it at <code>&lt;openclaw package&gt;/dist/control-ui</code> and restart the gateway.</p>\n</body></html>\n"
    );
    Head::new(503, &csp(&[], None))
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-store")
        .with_body(body.as_bytes(), head_only)
}

/// Escape text for HTML content and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("assets/a.JS"),
            "application/javascript; charset=utf-8"
        );
        assert!(
            is_static_asset("a/b.png") && !is_static_asset("chat") && !is_static_asset("x.html")
        );
    }

    #[test]
    fn csp_names_the_portal_host_only_when_clean() {
        let c = csp(&["sha256-abc".into()], Some("127.0.0.1:18789"));
        assert!(c.contains("script-src 'self' 'sha256-abc'"));
        assert!(c.ends_with("http://127.0.0.1:* https://127.0.0.1:*"));
        assert!(csp(&[], Some("[::1]:80")).contains("http://[::1]:*"));
        assert!(!csp(&[], Some("evil.com/x y")).contains("evil"));
        assert!(!csp(&[], Some("a:b")).contains("http://a"));
    }
}
