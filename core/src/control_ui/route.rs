//! Which answer the Control UI gives a plain request, decided from the request and
//! `gateway.controlUi` alone (upstream's `classifyControlUiRequest` and the file mapping of
//! `handleControlUiHttpRequest`).

use crate::config::ControlUi;
use crate::http::PlainRequest;

use super::negotiate;

/// The Control UI's answer to a request, before any file is looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Not the Control UI's: the plain routes answer (the JSON 404).
    Elsewhere,
    /// `404 Not Found` under the Control UI's headers.
    NotFound,
    /// `302` to this location (the base path asked for without its trailing `/`).
    Redirect(String),
    /// A file under the root.
    File(FilePlan),
}

/// The file a request maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilePlan {
    /// The path under the root: percent-decoded, `/`-separated, no empty, `.` or `..`
    /// segment.
    pub(crate) rel: String,
    /// Whether a missing file falls back to `index.html` (the request accepts HTML).
    pub(crate) spa_fallback: bool,
    /// `Cache-Control: immutable` (fingerprinted `assets/`, or a `?v=` version).
    pub(crate) immutable: bool,
}

impl FilePlan {
    /// The app shell, rewritten before it is sent.
    pub(crate) fn is_index(&self) -> bool {
        self.rel == INDEX || self.rel.ends_with("/index.html")
    }

    /// The root's `index.html`, which a missing page falls back to.
    pub(crate) fn shell(&self) -> FilePlan {
        FilePlan {
            rel: INDEX.into(),
            spa_fallback: false,
            immutable: false,
        }
    }
}

/// The app shell's file name.
pub(crate) const INDEX: &str = "index.html";

/// Paths that belong to other gateway HTTP surfaces, never to the Control UI (with no base
/// path): upstream's API, OpenAI-compatible and join routes.
const RESERVED_PREFIXES: [&str; 4] = ["/api", "/v1", "/j", "/plugins"];

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Decide the Control UI's answer to `req`.
pub(crate) fn classify(ui: &ControlUi, req: &PlainRequest) -> Route {
    if !ui.enabled {
        return Route::Elsewhere;
    }
    let read = req.method == "GET" || req.method == "HEAD";
    let path = req.path.as_str();
    let base = ui.base_path.as_str();
    let ui_path = if base.is_empty() {
        if under(path, "/ui") {
            return Route::NotFound;
        }
        if RESERVED_PREFIXES.iter().any(|p| under(path, p)) || !read {
            return Route::Elsewhere;
        }
        path
    } else {
        if !under(path, base) || !read {
            return Route::Elsewhere;
        }
        if path == base {
            let query = req
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return Route::Redirect(format!("{base}/{query}"));
        }
        path.get(base.len()..).unwrap_or("/")
    };
    let rel = if ui_path == "/" {
        ""
    } else if let Some(i) = ui_path.find("/assets/") {
        ui_path.get(i + 1..).unwrap_or("")
    } else {
        ui_path.get(1..).unwrap_or("")
    };
    let requested = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}{INDEX}")
    } else {
        rel.to_string()
    };
    let Some(rel) = percent_decode(&requested).filter(|r| is_safe_relative(r)) else {
        return Route::NotFound;
    };
    // The precompressed variants are chosen by Accept-Encoding, never asked for by name.
    if rel.ends_with(".br") || rel.ends_with(".gz") {
        return Route::NotFound;
    }
    let versioned = req
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("v=") && kv.len() > 2));
    let is_index = rel == INDEX || rel.ends_with("/index.html");
    let immutable = !is_index && rel != "sw.js" && (rel.starts_with("assets/") || versioned);
    Route::File(FilePlan {
        rel,
        spa_fallback: negotiate::accepts_html(req.accept.as_deref()),
        immutable,
    })
}

/// Decode `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A relative path that cannot leave the root by name: no NUL or backslash, and no empty,
/// `.` or `..` segment (so no leading `/` either).
fn is_safe_relative(rel: &str) -> bool {
    !rel.contains(['\0', '\\'])
        && rel
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> PlainRequest {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        PlainRequest {
            method: "GET".into(),
            path,
            query,
            ..PlainRequest::default()
        }
    }

    fn rel(route: Route) -> String {
        match route {
            Route::File(plan) => plan.rel,
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn paths_map_to_files_under_the_root() {
        let ui = ControlUi::default();
        assert_eq!(rel(classify(&ui, &get("/"))), "index.html");
        assert_eq!(rel(classify(&ui, &get("/chat/main"))), "chat/main");
        assert_eq!(
            rel(classify(&ui, &get("/chat/assets/index-1.js"))),
            "assets/index-1.js"
        );
        assert_eq!(rel(classify(&ui, &get("/a%20b.css"))), "a b.css");
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/x/%2E%2E/%2E%2E/y",
            "/%2Fetc/passwd",
            "/a//b",
            "/a%00b",
            "/a%5c..%5cb",
            "/bad%zz",
            "/assets/index-1.js.br",
            "/ui/x",
        ] {
            assert_eq!(classify(&ui, &get(bad)), Route::NotFound, "{bad}");
        }
        for elsewhere in ["/api/x", "/v1/models", "/plugins"] {
            assert_eq!(
                classify(&ui, &get(elsewhere)),
                Route::Elsewhere,
                "{elsewhere}"
            );
        }
        let mut post = get("/");
        post.method = "POST".into();
        assert_eq!(classify(&ui, &post), Route::Elsewhere);
    }

    #[test]
    fn cache_rules_and_fallback() {
        let ui = ControlUi::default();
        let plan = |p: &str| match classify(&ui, &get(p)) {
            Route::File(plan) => plan,
            other => panic!("{other:?}"),
        };
        assert!(plan("/assets/index-1.js").immutable);
        assert!(plan("/favicon.svg?v=abc").immutable);
        assert!(!plan("/favicon.svg").immutable);
        assert!(!plan("/sw.js?v=abc").immutable);
        assert!(!plan("/?v=abc").immutable);
        assert!(plan("/chat").spa_fallback);
        let mut rejects = get("/chat");
        rejects.accept = Some("text/html;q=0, */*".into());
        assert!(matches!(classify(&ui, &rejects), Route::File(p) if !p.spa_fallback));
    }

    #[test]
    fn base_path_scopes_the_ui() {
        let ui = ControlUi {
            base_path: "/openclaw".into(),
            ..ControlUi::default()
        };
        assert_eq!(classify(&ui, &get("/")), Route::Elsewhere);
        assert_eq!(classify(&ui, &get("/openclawx")), Route::Elsewhere);
        assert_eq!(
            classify(&ui, &get("/openclaw?x=1")),
            Route::Redirect("/openclaw/?x=1".into())
        );
        assert_eq!(rel(classify(&ui, &get("/openclaw/"))), "index.html");
        assert_eq!(
            rel(classify(&ui, &get("/openclaw/assets/a.js"))),
            "assets/a.js"
        );
        let off = ControlUi {
            enabled: false,
            ..ControlUi::default()
        };
        assert_eq!(classify(&off, &get("/")), Route::Elsewhere);
    }
}
