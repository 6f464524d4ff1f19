//! The app shell as upstream serves it (`serveResolvedIndexHtml`): relative `./` links
//! anchored at the base path (so deep links load the same assets), the base path announced on
//! `<html>`, and a CSP that allows exactly the document's inline scripts by hash.

use sha2::{Digest, Sha256};

use super::response::escape_html;

/// `<html>` attribute naming the base path.
const BASE_PATH_ATTRIBUTE: &str = "data-openclaw-control-ui-base-path";
/// `<html>` attribute saying whether the operator terminal is available (never, here).
const TERMINAL_ATTRIBUTE: &str = "data-openclaw-terminal-enabled";

/// The document to send and the CSP sources of its inline scripts.
pub(crate) struct Shell {
    /// The rewritten document.
    pub(crate) html: String,
    /// `sha256-…` of each inline script's text.
    pub(crate) script_hashes: Vec<String>,
}

/// Rewrite `index.html` for `base_path` (normalized: empty or `/x`).
pub(crate) fn prepare(html: &str, base_path: &str) -> Shell {
    let html = html
        .replace("src=\"./", &format!("src=\"{base_path}/"))
        .replace("href=\"./", &format!("href=\"{base_path}/"));
    let attrs = format!(
        " {BASE_PATH_ATTRIBUTE}=\"{}\" {TERMINAL_ATTRIBUTE}=\"false\"",
        escape_html(base_path)
    );
    let html = match find_ascii_ci(&html, "<html") {
        Some(at) => {
            let (head, tail) = html.split_at(at + "<html".len());
            format!("{head}{attrs}{tail}")
        }
        None => html,
    };
    let script_hashes = inline_scripts(&html)
        .into_iter()
        .map(|body| {
            let digest = Sha256::digest(body.as_bytes());
            format!("sha256-{}", data_encoding::BASE64.encode(&digest))
        })
        .collect();
    Shell {
        html,
        script_hashes,
    }
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The text of every non-empty `<script>` element without a `src` attribute.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(open) = find_ascii_ci(rest, "<script") {
        let after = rest.get(open..).unwrap_or("");
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = after.get(..tag_end).unwrap_or("");
        let body_start = tag_end + 1;
        let body_rest = after.get(body_start..).unwrap_or("");
        let Some(close) = find_ascii_ci(body_rest, "</script>") else {
            break;
        };
        let body = body_rest.get(..close).unwrap_or("");
        if !has_src(tag) && !body.is_empty() {
            out.push(body);
        }
        rest = body_rest.get(close..).unwrap_or("");
    }
    out
}

/// Whether a `<script …` opening tag has a `src` attribute.
fn has_src(tag: &str) -> bool {
    let lower = tag.to_ascii_lowercase();
    let mut in_quote = None;
    let bytes = lower.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (in_quote, b) {
            (Some(q), _) if b == q => in_quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => in_quote = Some(b),
            (None, c) if c.is_ascii_whitespace() => {
                let name = lower.get(i + 1..).unwrap_or("");
                let name = name
                    .split(|c: char| c == '=' || c.is_ascii_whitespace() || c == '>')
                    .next()
                    .unwrap_or("");
                if name == "src" {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_links_and_hashes_inline_scripts() {
        let page = "<!doctype html>\n<html lang=\"en\"><head><link href=\"./favicon.svg\"><script>a()</script><script type=\"module\" src=\"./assets/i.js\"></script><script data-x=\"src\">b()</script></head></html>";
        let shell = prepare(page, "/ui");
        assert!(shell.html.contains("<html data-openclaw-control-ui-base-path=\"/ui\" data-openclaw-terminal-enabled=\"false\" lang=\"en\">"));
        assert!(shell.html.contains("href=\"/ui/favicon.svg\""));
        assert!(shell.html.contains("src=\"/ui/assets/i.js\""));
        // sha256("a()") and sha256("b()"), base64.
        let expect = |s: &str| {
            format!(
                "sha256-{}",
                data_encoding::BASE64.encode(&Sha256::digest(s.as_bytes()))
            )
        };
        assert_eq!(shell.script_hashes, [expect("a()"), expect("b()")]);
        assert_eq!(
            prepare(page, "")
                .html
                .matches("src=\"/assets/i.js\"")
                .count(),
            1
        );
    }
}
